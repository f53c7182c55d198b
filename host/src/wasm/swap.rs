//! Hot swap: replacing a plugin while the pipeline runs.
//!
//! Every plugin of a running manifest has a [`PluginSlot`]: the version tasks should run, a
//! generation number that changes when it does, and what happened to the last swap. A reload
//! ([`PluginDirectory::reload`]) runs off the hot path, on the caller's thread (the file
//! watcher, the admin endpoint): it compiles the new component, checks that it exports every
//! kind and function the manifest uses, makes a trial instance of each use with the plugin's
//! config, and only then publishes it. Each task's [`crate::operators::PluginStep`] sees the new
//! generation at its next batch boundary and switches there, so no record is lost or processed
//! twice by the swap itself. It keeps the old instance until the new one has run its first
//! batch: if that batch traps, the step goes back to the old instance for the same batch and the
//! slot rolls the version back for every task.
//!
//! State in host stores survives a swap; memory inside the guest does not (a new instance
//! starts empty).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use super::PluginKind;
use super::{LoadedPlugin, Runtime, short_digest};
use crate::manifest::{Grants, Limits};

/// What the manifest says of a plugin: what a reload needs to load a new version the same way.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    pub path: PathBuf,
    pub config: toml::Table,
    pub grants: Grants,
    pub limits: Limits,
    /// Every (kind, function) the manifest's steps use.
    pub uses: Vec<(PluginKind, String)>,
}

impl PluginSpec {
    /// The kinds the uses need, each once: what a component must export.
    pub fn kinds(&self) -> Vec<PluginKind> {
        let mut k: Vec<PluginKind> = self.uses.iter().map(|(k, _)| *k).collect();
        k.sort_unstable();
        k.dedup();
        k
    }
}

/// The version tasks should run.
struct Current {
    loaded: Arc<LoadedPlugin>,
    generation: u64,
    /// Published by a reload and not yet through a first batch: tasks keep their old instance
    /// until it is.
    on_probation: bool,
    /// The version before the last reload, to roll back to.
    previous: Option<Arc<LoadedPlugin>>,
}

/// How a swap ended, for `/plugins` and the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SwapResult {
    /// Published; tasks switch at their next batch boundary.
    Pending,
    /// The new version ran its first batch.
    Active,
    /// The new version was refused before any task ran it (it did not compile, lacks a kind
    /// or function, or trapped at start); the old version runs on.
    Rejected,
    /// The new version trapped on its first batch; the old version runs again.
    RolledBack,
    /// The file's content is the version already running.
    Unchanged,
}

/// The last swap of a plugin.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SwapEvent {
    pub result: SwapResult,
    /// The digest the swap tried to install.
    pub digest: String,
    pub path: PathBuf,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Why it was rejected or rolled back.
    pub reason: Option<String>,
}

/// What `/plugins` shows of one plugin.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginReport {
    pub name: String,
    pub path: PathBuf,
    pub digest: String,
    /// When the running version was loaded, in milliseconds since the Unix epoch.
    pub loaded_at_ms: u64,
    pub generation: u64,
    pub kinds: Vec<&'static str>,
    /// Each call's deadline, in milliseconds; `None` when it is off (`deadline_ms = 0`).
    pub deadline_ms: Option<u64>,
    /// Whether the plugin's code checks the epoch on loops and calls (what the deadline costs).
    /// A plugin with its deadline off runs without, in a second engine when others keep theirs.
    pub epoch_checks: bool,
    /// Swaps that became active.
    pub swaps: u64,
    /// The last pause of a task switching to a new version, in microseconds.
    pub last_pause_us: Option<u64>,
    pub last_swap: Option<SwapEvent>,
    /// The recent swaps, oldest first (at most [`SWAP_HISTORY`]).
    pub history: Vec<SwapEvent>,
}

/// Why a reload did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error("there is no plugin `{0}` in this pipeline")]
    UnknownPlugin(String),
    #[error("the new version of plugin `{plugin}` was rejected; the old version keeps running: {reason}")]
    Rejected { plugin: String, reason: String },
}

/// The version of a plugin tasks should run.
#[derive(Clone)]
pub struct Version {
    pub loaded: Arc<LoadedPlugin>,
    /// Changes with every swap and rollback.
    pub generation: u64,
    /// Swapped in, and not yet through a first batch anywhere (see [`PluginSlot::confirm`]).
    pub on_probation: bool,
}

/// One plugin's slot: the version to run, and its swap history.
pub struct PluginSlot {
    name: String,
    spec: PluginSpec,
    current: Mutex<Current>,
    /// `current.generation`, for the check every batch makes without taking the lock.
    generation: AtomicU64,
    /// The most recent swaps (not `unchanged` reloads), oldest first, at most
    /// [`SWAP_HISTORY`]; the last is `/plugins`' `last_swap`.
    history: Mutex<std::collections::VecDeque<SwapEvent>>,
    /// Serialises reloads of this plugin.
    reloading: Mutex<()>,
    /// The most recent switch pauses of tasks, at most [`PAUSE_SAMPLES`].
    pauses: Mutex<std::collections::VecDeque<Duration>>,
    metrics: SlotMetrics,
}

/// How many recent swaps a slot keeps for `/plugins` (`history`) and the dashboard.
pub const SWAP_HISTORY: usize = 32;

/// How many recent swap pauses a slot keeps (for `/plugins` and `make bench`).
pub const PAUSE_SAMPLES: usize = 4096;

struct SlotMetrics {
    swapped: Counter,
    rejected: Counter,
    rolled_back: Counter,
    pause: Histogram,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PluginSlot {
    fn new(loaded: Arc<LoadedPlugin>, spec: PluginSpec) -> Self {
        let registry = loaded.runtime.metrics.clone();
        let name = loaded.name.to_string();
        let metrics = SlotMetrics {
            swapped: registry.swaps(&name, "swapped"),
            rejected: registry.swaps(&name, "rejected"),
            rolled_back: registry.swaps(&name, "rolled_back"),
            pause: registry.swap_pause(&name),
        };
        Self {
            name,
            spec,
            current: Mutex::new(Current { loaded, generation: 0, on_probation: false, previous: None }),
            generation: AtomicU64::new(0),
            history: Mutex::new(std::collections::VecDeque::new()),
            reloading: Mutex::new(()),
            pauses: Mutex::new(std::collections::VecDeque::new()),
            metrics,
        }
    }

    /// A slot that is never reloaded (benchmarks, tests of single operators).
    pub fn fixed(loaded: Arc<LoadedPlugin>) -> Arc<Self> {
        let spec = PluginSpec {
            path: loaded.path.clone(),
            config: toml::Table::new(),
            grants: loaded.grants.clone(),
            limits: loaded.limits,
            uses: Vec::new(),
        };
        Arc::new(Self::new(loaded, spec))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The generation tasks should run; it changes with every swap and rollback.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The version to run.
    pub fn current(&self) -> Version {
        let c = lock(&self.current);
        Version { loaded: c.loaded.clone(), generation: c.generation, on_probation: c.on_probation }
    }

    /// A task's switch to a new version took `pause`.
    pub fn record_pause(&self, pause: Duration) {
        self.metrics.pause.observe(pause.as_secs_f64());
        let mut p = lock(&self.pauses);
        if p.len() == PAUSE_SAMPLES {
            p.pop_front();
        }
        p.push_back(pause);
    }

    /// The most recent switch pauses, oldest first.
    pub fn pauses(&self) -> Vec<Duration> {
        lock(&self.pauses).iter().copied().collect()
    }

    /// A task ran its first batch on `generation` without a trap: the swap is active.
    pub fn confirm(&self, generation: u64) {
        let mut c = lock(&self.current);
        if c.generation != generation || !c.on_probation {
            return;
        }
        c.on_probation = false;
        c.previous = None;
        let digest = c.loaded.digest.clone();
        drop(c);
        let mut history = lock(&self.history);
        if let Some(e) = history.back_mut().filter(|e| e.digest == digest && e.result == SwapResult::Pending) {
            e.result = SwapResult::Active;
        }
        self.metrics.swapped.inc();
        tracing::info!(plugin = %self.name, digest = short_digest(&digest), "plugin swap active: the new version ran its first batch");
    }

    /// A task's first batch on `generation` trapped: every task goes back to the version
    /// before. False when that is no longer possible (the version is active, or another swap
    /// came since).
    pub fn roll_back(&self, generation: u64, reason: &str) -> bool {
        let mut c = lock(&self.current);
        if c.generation != generation || !c.on_probation {
            return false;
        }
        let Some(previous) = c.previous.take() else { return false };
        let failed = std::mem::replace(&mut c.loaded, previous);
        c.generation += 1;
        self.generation.store(c.generation, Ordering::Release);
        c.on_probation = false;
        drop(c);
        tracing::error!(
            plugin = %self.name, digest = short_digest(&failed.digest), reason,
            "the new plugin version trapped on its first batch; rolled back to the previous version"
        );
        self.remember(SwapEvent {
            result: SwapResult::RolledBack,
            digest: failed.digest.clone(),
            path: failed.path.clone(),
            at_ms: now_ms(),
            reason: Some(reason.to_owned()),
        });
        self.metrics.rolled_back.inc();
        true
    }

    /// Adds a swap to the history, forgetting the oldest past [`SWAP_HISTORY`].
    fn remember(&self, event: SwapEvent) {
        let mut history = lock(&self.history);
        if history.len() == SWAP_HISTORY {
            history.pop_front();
        }
        history.push_back(event);
    }

    fn reject(&self, digest: String, path: &Path, reason: String) -> SwapError {
        tracing::error!(plugin = %self.name, path = %path.display(), reason, "plugin reload rejected; the old version keeps running");
        self.remember(SwapEvent {
            result: SwapResult::Rejected,
            digest,
            path: path.to_owned(),
            at_ms: now_ms(),
            reason: Some(reason.clone()),
        });
        self.metrics.rejected.inc();
        SwapError::Rejected { plugin: self.name.clone(), reason }
    }

    /// Loads, validates and publishes a new version from `path` (default: the manifest's).
    fn reload(&self, runtime: &Runtime, path: Option<&Path>) -> Result<SwapEvent, SwapError> {
        let _one_at_a_time = lock(&self.reloading);
        let path = path.map_or_else(|| self.spec.path.clone(), Path::to_path_buf);
        let kinds = self.spec.kinds();
        let loaded =
            match runtime.load(&self.name, &path, &self.spec.config, &self.spec.grants, &self.spec.limits, &kinds) {
                Ok(l) => l,
                Err(e) => return Err(self.reject(String::new(), &path, e.to_string())),
            };
        let current = lock(&self.current).loaded.digest.clone();
        if loaded.digest == current {
            return Ok(SwapEvent {
                result: SwapResult::Unchanged,
                digest: loaded.digest,
                path,
                at_ms: now_ms(),
                reason: None,
            });
        }
        // A trial instance of every use, with the plugin's config: it must instantiate and
        // know each function the manifest names.
        let loaded = Arc::new(loaded);
        for (kind, function) in &self.spec.uses {
            if let Err(e) = loaded.trial(*kind, function, None) {
                return Err(self.reject(loaded.digest.clone(), &path, e.to_string()));
            }
        }
        let event = SwapEvent {
            result: SwapResult::Pending,
            digest: loaded.digest.clone(),
            path,
            at_ms: now_ms(),
            reason: None,
        };
        {
            let mut c = lock(&self.current);
            let old = std::mem::replace(&mut c.loaded, loaded);
            c.previous = Some(old);
            c.generation += 1;
            c.on_probation = true;
            self.generation.store(c.generation, Ordering::Release);
        }
        self.remember(event.clone());
        tracing::info!(
            plugin = %self.name, digest = short_digest(&event.digest), path = %event.path.display(),
            "new plugin version validated; tasks switch at their next batch boundary"
        );
        Ok(event)
    }

    fn report(&self) -> PluginReport {
        let history: Vec<SwapEvent> = lock(&self.history).iter().cloned().collect();
        let c = lock(&self.current);
        PluginReport {
            name: self.name.clone(),
            path: c.loaded.path.clone(),
            digest: c.loaded.digest.clone(),
            loaded_at_ms: c.loaded.loaded_at_ms,
            generation: c.generation,
            kinds: c.loaded.kinds.iter().map(|k| k.interface()).collect(),
            deadline_ms: c.loaded.deadline_ms(),
            epoch_checks: c.loaded.runtime.options.epoch_deadlines,
            swaps: self.metrics.swapped.get(),
            last_pause_us: lock(&self.pauses).back().map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            last_swap: history.last().cloned(),
            history,
        }
    }
}

/// Every plugin of a running manifest, by name.
pub struct PluginDirectory {
    runtime: Runtime,
    slots: BTreeMap<String, Arc<PluginSlot>>,
}

impl PluginDirectory {
    pub fn new(runtime: Runtime) -> Self {
        Self { runtime, slots: BTreeMap::new() }
    }

    /// Adds a loaded plugin.
    pub fn insert(&mut self, loaded: Arc<LoadedPlugin>, spec: PluginSpec) {
        let name = loaded.name.to_string();
        self.slots.insert(name, Arc::new(PluginSlot::new(loaded, spec)));
    }

    pub fn get(&self, name: &str) -> Option<Arc<PluginSlot>> {
        self.slots.get(name).cloned()
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The plugins' component paths, for the file watcher.
    pub fn paths(&self) -> Vec<(String, PathBuf)> {
        self.slots.iter().map(|(n, s)| (n.clone(), s.spec.path.clone())).collect()
    }

    /// Loads a new version of `name` from `path` (default: the manifest's path), validates it
    /// and publishes it; tasks switch at their next batch boundary. Compiles on this thread.
    pub fn reload(&self, name: &str, path: Option<&Path>) -> Result<SwapEvent, SwapError> {
        let slot = self.slots.get(name).ok_or_else(|| SwapError::UnknownPlugin(name.to_owned()))?;
        slot.reload(&self.runtime, path)
    }

    /// What `/plugins` shows.
    pub fn report(&self) -> Vec<PluginReport> {
        self.slots.values().map(|s| s.report()).collect()
    }
}
