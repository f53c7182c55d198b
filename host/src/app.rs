//! Putting it together: manifest → topology → plugins → a run, for the CLI and the tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::io::kafka::{
    KafkaChangelogReader, KafkaInstanceLog, KafkaSink, KafkaSource, client_config, ensure_topics, partition_count,
};
use crate::io::local::{LocalFile, LocalPlan, local_io};
use crate::manifest::{self, FileFormat, Loaded};
use crate::runtime::global::GlobalInput;
use crate::runtime::hosts::Hosts;
use crate::runtime::query::Queries;
use crate::runtime::{self, RunOptions, RunStats, ThreadIo};
use crate::topology::{self, NodeOp, PluginKind, Topology};
use crate::wasm::{EngineOptions, MetricsRegistry, PluginDirectory, PluginSpec, Runtime};

/// Records per plugin call when the manifest does not say.
pub const DEFAULT_BATCH_SIZE: usize = 1024;

/// A manifest that parsed, whose topology is sound and whose plugins loaded.
pub struct Prepared {
    pub loaded: Loaded,
    pub topology: Arc<Topology>,
    /// Every plugin's slot: the version that runs, swapped by reloads.
    pub plugins: Arc<PluginDirectory>,
    pub runtime: Runtime,
    /// The converted topics' codecs, schemas read: topics hold their formats' bytes on
    /// Kafka, JSON in local mode.
    pub codecs: Arc<crate::io::codec::Codecs>,
}

/// Parses the manifest and builds its topology, without touching plugins.
pub fn plan(path: &Path) -> anyhow::Result<(Loaded, Topology)> {
    let loaded = manifest::load(path)?;
    let topology = topology::build(&loaded, &runtime::operator_specs())?;
    Ok((loaded, topology))
}

/// Plans, then loads and validates every plugin the topology uses: each must exist, compile,
/// export the kinds its steps need, and know the functions they name.
pub fn prepare(path: &Path, cache_dir: Option<PathBuf>) -> anyhow::Result<Prepared> {
    prepare_with(path, cache_dir, &BTreeMap::new())
}

/// [`prepare`], with some plugins loaded from other files than the manifest says (`wasp test
/// --plugin NAME=PATH`: the same pipeline against another build of a plugin).
pub fn prepare_with(
    path: &Path,
    cache_dir: Option<PathBuf>,
    plugin_paths: &BTreeMap<String, PathBuf>,
) -> anyhow::Result<Prepared> {
    let (loaded, topology) = plan(path)?;
    for name in plugin_paths.keys() {
        if !loaded.manifest.plugins.keys().any(|p| p.get_ref() == name) {
            let names: Vec<&str> = loaded.manifest.plugins.keys().map(|p| p.get_ref().as_str()).collect();
            anyhow::bail!(
                "--plugin {name}=…: {} declares no plugin `{name}` (it has: {})",
                path.display(),
                names.join(", ")
            );
        }
    }
    let app = &loaded.manifest.application;
    let max_instances = app.max_instances.as_ref().map_or(crate::wasm::DEFAULT_MAX_INSTANCES, |m| *m.get_ref());
    let options = EngineOptions::for_limits(loaded.manifest.plugins.values().map(|d| &d.limits), max_instances);
    let runtime = Runtime::with_options(cache_dir, MetricsRegistry::default(), options)?;
    let mut uses: BTreeMap<&str, Vec<(PluginKind, String)>> = BTreeMap::new();
    for (_, r) in topology.plugin_uses() {
        let u = uses.entry(r.plugin.as_str()).or_default();
        if !u.contains(&(r.kind, r.function.clone())) {
            u.push((r.kind, r.function.clone()));
        }
    }
    let mut plugins = PluginDirectory::new(runtime.clone());
    for (name, def) in &loaded.manifest.plugins {
        let Some(uses) = uses.get(name.get_ref().as_str()) else {
            tracing::warn!(plugin = %name.get_ref(), "plugin declared but used by no step");
            continue;
        };
        let spec = PluginSpec {
            path: plugin_paths.get(name.get_ref()).cloned().unwrap_or_else(|| loaded.resolve(def.path.get_ref())),
            config: def.config.clone(),
            grants: def.grants.clone(),
            limits: def.limits,
            uses: uses.clone(),
        };
        let plugin = runtime
            .load(name.get_ref(), &spec.path, &def.config, &def.grants, &def.limits, &spec.kinds())
            .map_err(anyhow::Error::new)
            .with_context(|| {
                let (line, col) = loaded.source.line_col(def.path.span().start);
                format!("{}:{line}:{col}: loading plugin `{}`", loaded.source.path.display(), name.get_ref())
            })?;
        tracing::info!(
            plugin = %plugin.name,
            digest = crate::wasm::short_digest(&plugin.digest),
            cached = plugin.from_cache,
            ms = plugin.load_time.as_millis() as u64,
            "plugin loaded"
        );
        plugins.insert(Arc::new(plugin), spec);
    }
    // A trial instance of every step checks the named functions before anything runs.
    for (node, r) in topology.plugin_uses() {
        let slot = plugins.get(&r.plugin).context("plugin not loaded")?;
        crate::wasm::PluginStep::new(slot, r.kind, &r.function, None)
            .with_context(|| format!("step `{}` of pipeline `{}`", node.name, node.pipeline))?;
    }
    let mode = if loaded.manifest.application.kafka.is_some() {
        crate::io::codec::Mode::Wire
    } else {
        crate::io::codec::Mode::Json
    };
    let codecs = Arc::new(runtime::codecs(&topology, mode)?);
    Ok(Prepared { loaded, topology: Arc::new(topology), plugins: Arc::new(plugins), runtime, codecs })
}

/// The digest of each plugin whose component file exists (`wasp describe --format svg`
/// draws versions as `GET /plugins` shows them); plugins whose file is missing are left out.
pub fn plugin_digests(loaded: &Loaded) -> BTreeMap<String, String> {
    loaded
        .manifest
        .plugins
        .iter()
        .filter_map(|(name, def)| {
            let bytes = std::fs::read(loaded.resolve(def.path.get_ref())).ok()?;
            Some((name.get_ref().clone(), crate::wasm::digest(&bytes)))
        })
        .collect()
}

/// Where the manifest's admin endpoint listens, and where that was said (`file:line:col:
/// key`, for errors); `None` when the manifest has no `[application.admin]`.
pub fn admin_bind(loaded: &Loaded) -> Option<(String, String)> {
    let def = loaded.manifest.application.admin.as_ref()?;
    Some(match &def.bind {
        Some(b) => {
            let (line, col) = loaded.source.line_col(b.span().start);
            (b.get_ref().clone(), format!("{}:{line}:{col}: `application.admin.bind`", loaded.source.path.display()))
        }
        None => {
            (crate::admin::DEFAULT_BIND.to_owned(), format!("{}: [application.admin]", loaded.source.path.display()))
        }
    })
}

/// The admin token: the manifest's, else `$WASP_ADMIN_TOKEN`.
pub fn admin_token(loaded: &Loaded) -> Option<String> {
    let configured = loaded.manifest.application.admin.as_ref().and_then(|a| a.token.clone());
    configured.or_else(|| std::env::var("WASP_ADMIN_TOKEN").ok()).filter(|t| !t.is_empty())
}

/// What runs beside the batch loop; dropping it stops them.
pub struct Services {
    pub admin: Option<crate::admin::AdminServer>,
    pub watcher: Option<crate::wasm::watch::PluginWatcher>,
    /// The live status line, on a terminal.
    pub status: Option<StatusLine>,
}

/// `wasp run`'s status line; dropping it stops and clears it.
pub struct StatusLine {
    stop: Arc<AtomicBool>,
    bar: indicatif::ProgressBar,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for StatusLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.bar.finish_and_clear();
    }
}

/// The status line's text: records read from the application's input topics (the sources
/// named in `inputs`) per second between two readings `secs` apart and in all, errors and late records since the start, and the consumer lag summed over partitions.
pub fn status_text(
    id: &str,
    inputs: &BTreeSet<String>,
    before: &crate::admin::stats::Stats,
    now: &crate::admin::stats::Stats,
    secs: f64,
) -> String {
    let total = |s: &crate::admin::stats::Stats, f: fn(&crate::admin::stats::StepStats) -> u64, only_inputs: bool| {
        s.steps.iter().filter(|st| !only_inputs || inputs.contains(&st.step)).map(f).sum::<u64>()
    };
    let rate = |f: fn(&crate::admin::stats::StepStats) -> u64, only_inputs: bool| {
        let d = total(now, f, only_inputs).saturating_sub(total(before, f, only_inputs));
        if secs > 0.0 { (d as f64 / secs).round() as u64 } else { 0 }
    };
    let read = total(now, |s| s.records_in, true);
    let errors = total(now, |s| s.errors, false);
    let late = total(now, |s| s.late, false);
    let lag = if now.lag.is_empty() {
        "lag -".to_owned()
    } else {
        format!("lag {}", now.lag.iter().map(|l| l.lag.max(0)).sum::<i64>())
    };
    format!("{id}: {} rec/s · {read} read · {errors} errors · {late} late · {lag}", rate(|s| s.records_in, true))
}

/// Options from the `wasp run` command line: local-mode inputs and outputs, state, and the
/// services beside the loop (admin endpoint, file watcher).
#[derive(Debug, Default, Clone)]
pub struct LocalOptions {
    /// `--input topic=path`: overrides or adds an input file (format from the extension:
    /// `.jsonl` is JSON lines, anything else text).
    pub inputs: BTreeMap<String, PathBuf>,
    /// `--output topic=path`: writes a topic to a file as JSON lines instead of printing it.
    pub outputs: BTreeMap<String, PathBuf>,
    pub follow: bool,
    /// `--state-dir`: overrides the manifest's `state_dir`.
    pub state_dir: Option<PathBuf>,
    /// `--watch` / `--no-watch`: overrides the manifest's `watch_plugins`.
    pub watch: Option<bool>,
    /// `--admin ADDR`: serves the admin endpoint there (overrides the manifest's address).
    pub admin: Option<String>,
}

/// The default commit interval.
pub const DEFAULT_COMMIT_INTERVAL_MS: u64 = 1000;

/// Where state lives when neither the command line nor the manifest says.
pub fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WASP_STATE_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".local/state/wasp")
}

impl Prepared {
    pub fn batch_size(&self) -> usize {
        self.loaded.manifest.application.batch_size.as_ref().map_or(DEFAULT_BATCH_SIZE, |b| (*b.get_ref()).max(1))
    }

    /// The state directory: `--state-dir`, else the manifest's `state_dir`, else the default.
    pub fn state_dir(&self, local: &LocalOptions) -> PathBuf {
        local.state_dir.clone().unwrap_or_else(|| {
            self.loaded
                .manifest
                .application
                .state_dir
                .as_ref()
                .map_or_else(default_state_dir, |d| self.loaded.resolve(d.get_ref()))
        })
    }

    /// Forgets the application's local state (`wasp run --reset`), as Kafka Streams'
    /// application reset tool does for local stores.
    pub fn reset_local_state(&self, local: &LocalOptions) -> anyhow::Result<()> {
        let dir = self.state_dir(local).join(&self.topology.application_id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            tracing::info!(dir = %dir.display(), "local state removed");
        }
        Ok(())
    }

    /// Whether plugin files are watched: `--watch`/`--no-watch`, else the manifest, else on
    /// in local mode with `--follow` (a run that ends with its input has nothing to swap) and
    /// off on Kafka.
    pub fn watches(&self, local: &LocalOptions) -> bool {
        local.watch.or(self.loaded.manifest.application.watch_plugins).unwrap_or(self.is_local() && local.follow)
    }

    /// Starts what runs beside the batch loop: the admin endpoint (when the manifest or
    /// `--admin` asks for it) and the plugin file watcher (see [`Self::watches`]).
    pub fn start_services(
        &self,
        local: &LocalOptions,
        ready: Arc<AtomicBool>,
        queries: Queries,
        hosts: &Hosts,
    ) -> anyhow::Result<Services> {
        let bind = match &local.admin {
            Some(addr) => Some((addr.clone(), "--admin".to_owned())),
            None => admin_bind(&self.loaded),
        };
        let admin = match bind {
            Some((addr, set_by)) => Some(
                crate::admin::start(
                    &addr,
                    crate::admin::AdminState {
                        metrics: self.runtime.metrics().clone(),
                        plugins: self.plugins.clone(),
                        ready,
                        token: admin_token(&self.loaded),
                        queries,
                        hosts: hosts.clone(),
                        dashboard: Arc::new(self.dashboard()),
                    },
                )
                .with_context(|| format!("{set_by}: the admin endpoint cannot listen on `{addr}`"))?,
            ),
            None => None,
        };
        hosts.set_server(self.application_server(admin.as_ref().map(crate::admin::AdminServer::addr)));
        let watcher = if self.watches(local) { Some(crate::wasm::watch::watch(self.plugins.clone())?) } else { None };
        let status = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| self.status_line());
        Ok(Services { admin, watcher, status })
    }

    /// `wasp run`'s live line on a terminal: records read and written per second, errors and
    /// late records, and the consumer lag, redrawn every second below the logs.
    fn status_line(&self) -> StatusLine {
        let metrics = self.runtime.metrics().clone();
        let written: BTreeSet<&str> = self.topology.sink_topics().into_iter().collect();
        let inputs: BTreeSet<String> = self
            .topology
            .nodes
            .iter()
            .filter(|n| matches!(&n.op, NodeOp::Source { topic } if !written.contains(topic.as_str())))
            .map(|n| n.name.clone())
            .collect();
        let id = self.topology.application_id.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let bar = crate::io::terminal().add(indicatif::ProgressBar::new_spinner());
        let style = indicatif::ProgressStyle::with_template("{spinner:.green} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
        bar.set_style(style);
        let (s, b) = (stop.clone(), bar.clone());
        let thread = std::thread::Builder::new()
            .name("wasp-status".into())
            .spawn(move || {
                let read = || (Instant::now(), crate::admin::stats::read(&metrics.encode(), 0));
                let mut before = read();
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(250));
                    b.tick();
                    if before.0.elapsed() >= Duration::from_secs(1) {
                        let now = read();
                        b.set_message(status_text(&id, &inputs, &before.1, &now.1, (now.0 - before.0).as_secs_f64()));
                        before = now;
                    }
                }
            })
            .ok();
        StatusLine { stop, bar, thread }
    }

    /// What the admin dashboard draws: the topology, with the running plugins' digests.
    fn dashboard(&self) -> crate::admin::Dashboard {
        let digests = self.plugins.report().into_iter().map(|r| (r.name, r.digest)).collect();
        crate::admin::Dashboard {
            application_id: self.topology.application_id.clone(),
            topology_svg: topology::describe_svg(&self.topology, &digests),
        }
    }

    /// This instance's address for the others: `application_server`, else the admin
    /// endpoint's (none without an endpoint).
    fn application_server(&self, admin: Option<std::net::SocketAddr>) -> Option<String> {
        let configured = self.loaded.manifest.application.admin.as_ref().and_then(|a| a.application_server.as_ref());
        if let Some(s) = configured {
            return Some(s.get_ref().clone());
        }
        let addr = admin?;
        if addr.ip().is_unspecified() && !self.is_local() {
            tracing::warn!(
                %addr,
                "the admin endpoint listens on every interface: set `application.admin.application_server` to the \
                 address other instances and clients reach it at"
            );
        }
        Some(addr.to_string())
    }

    fn run_options(&self, local: &LocalOptions, ready: Arc<AtomicBool>, queries: Queries, hosts: Hosts) -> RunOptions {
        let interval = self
            .loaded
            .manifest
            .application
            .commit_interval_ms
            .as_ref()
            .map_or(self.default_commit_interval_ms(), |c| *c.get_ref());
        RunOptions {
            batch_size: self.batch_size(),
            commit_interval: std::time::Duration::from_millis(interval),
            state_dir: self.state_dir(local),
            changelogs: !self.is_local(),
            metrics: self.runtime.metrics().clone(),
            ready,
            max_task_idle: std::time::Duration::from_millis(
                self.loaded.manifest.application.max_task_idle_ms.as_ref().map_or(0, |m| *m.get_ref()),
            ),
            globals: BTreeMap::new(),
            queries,
            hosts,
            guarantee: self.guarantee(),
            codecs: self.codecs.clone(),
        }
    }

    /// `[application] processing_guarantee` (default `at_least_once`).
    pub fn guarantee(&self) -> crate::manifest::ProcessingGuarantee {
        self.loaded.manifest.application.processing_guarantee.as_ref().map(|g| *g.get_ref()).unwrap_or_default()
    }

    /// As in Kafka Streams: 1 s, or 100 ms under exactly-once, whose restarts redo what
    /// came after the last commit.
    fn default_commit_interval_ms(&self) -> u64 {
        match self.guarantee() {
            crate::manifest::ProcessingGuarantee::AtLeastOnce => DEFAULT_COMMIT_INTERVAL_MS,
            crate::manifest::ProcessingGuarantee::ExactlyOnce | crate::manifest::ProcessingGuarantee::ExactlyOnceV2 => {
                100
            }
        }
    }

    /// Stream threads: the manifest's `threads`, else one per core.
    pub fn threads(&self) -> usize {
        self.loaded.manifest.application.threads.as_ref().map_or_else(
            || std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            |t| (*t.get_ref()).max(1),
        )
    }

    /// Local mode's plan: which thread reads which topic partition. A file has the
    /// partitions its stream declares (1 by default), an in-memory topic those of the
    /// sub-topology that writes it (as Kafka Streams sizes a repartition topic), and a
    /// sub-topology those of its topics, which must agree (they are co-partitioned). Task
    /// `(sub, partition)` runs on thread `(sub + partition) % threads`, and all its topics'
    /// partitions go to that thread; more threads than tasks would have nothing to do.
    /// The topic `--input NAME=…` feeds: NAME is a topic the pipelines read, or the name of a
    /// stream or table that reads one.
    fn input_topic(&self, name: &str) -> anyhow::Result<String> {
        let t = &self.topology;
        let read: BTreeSet<&str> = t
            .subtopologies
            .iter()
            .flat_map(|s| s.source_topics.iter().map(String::as_str))
            .chain(t.globals.values().map(|g| g.topic.as_str()))
            .collect();
        let topic = self.loaded.manifest.topic_of(name);
        if !read.contains(topic.as_str()) {
            let read: Vec<&str> = read.into_iter().collect();
            anyhow::bail!(
                "--input {name}=…: the pipelines read no topic `{name}` and no stream or table of that name \
                 reads one; they read {}",
                read.join(", ")
            );
        }
        Ok(topic)
    }

    fn local_plan(
        &self,
        inputs: &BTreeMap<String, (PathBuf, FileFormat)>,
        local: &LocalOptions,
    ) -> anyhow::Result<LocalPlan> {
        let t = &self.topology;
        let declared = |topic: &str| t.formats(topic).partitions.unwrap_or(1).max(1) as usize;
        let mut parts: BTreeMap<&str, usize> = BTreeMap::new();
        for sub in &t.subtopologies {
            for topic in &sub.source_topics {
                parts.insert(topic, declared(topic));
            }
        }
        let writes = |sub: &crate::topology::SubTopology| -> Vec<&str> {
            sub.nodes
                .iter()
                .filter_map(|&id| match &t.node(id).op {
                    NodeOp::Sink { topic } | NodeOp::Repartition { topic } => Some(topic.as_str()),
                    _ => None,
                })
                .collect()
        };
        // Partition counts flow from files through the sub-topologies that write in-memory
        // topics: to a fixpoint, at most one round per sub-topology.
        for _ in 0..=t.subtopologies.len() {
            for sub in &t.subtopologies {
                let n = sub.source_topics.iter().filter_map(|s| parts.get(s.as_str())).copied().max().unwrap_or(1);
                for topic in writes(sub) {
                    if !inputs.contains_key(topic)
                        && let Some(p) = parts.get_mut(topic)
                    {
                        *p = (*p).max(n);
                    }
                }
            }
        }
        let mut tasks = 0;
        let mut sub_parts = Vec::with_capacity(t.subtopologies.len());
        for sub in &t.subtopologies {
            let counts: Vec<(&str, usize)> =
                sub.source_topics.iter().map(|s| (s.as_str(), parts[s.as_str()])).collect();
            let n = counts.iter().map(|(_, n)| *n).max().unwrap_or(1);
            if counts.iter().any(|(_, c)| *c != n) {
                // The streams that read these topics, whose `partitions` the user can change.
                let keys: Vec<String> = self
                    .loaded
                    .manifest
                    .declared()
                    .filter(|(_, name, def)| counts.iter().any(|(s, _)| *s == def.topic_or(name.get_ref())))
                    .map(|(section, name, _)| format!("`{section}.{}.partitions`", name.get_ref()))
                    .collect();
                return Err(self.not_copartitioned(&counts, &format!("set {} alike", keys.join(", "))));
            }
            tasks += n;
            sub_parts.push(n);
        }
        let threads = self.threads().min(tasks).max(1);
        let mut plan = LocalPlan {
            outputs: local.outputs.clone(),
            threads,
            follow: local.follow,
            max_in_flight: self.batch_size().saturating_mul(64),
            ..Default::default()
        };
        for (i, sub) in t.subtopologies.iter().enumerate() {
            let n = sub_parts[i];
            for topic in &sub.source_topics {
                match inputs.get(topic) {
                    Some((path, format)) => {
                        for p in 0..n {
                            plan.files.push(LocalFile {
                                topic: topic.clone(),
                                path: path.clone(),
                                format: *format,
                                partition: p as i32,
                                partitions: n as i32,
                                thread: (i + p) % threads,
                            });
                        }
                    }
                    None => {
                        plan.memory.insert(topic.clone(), (0..n).map(|p| (i + p) % threads).collect());
                    }
                }
            }
        }
        for (topic, f) in &self.topology.formats {
            plan.formats.insert(topic.clone(), (f.key, f.value));
        }
        Ok(plan)
    }

    pub fn is_local(&self) -> bool {
        self.loaded.manifest.application.kafka.is_none()
    }

    /// Runs until the input is exhausted (local mode) or `stop` is set, with the admin
    /// endpoint and the plugin file watcher beside it.
    pub fn run(&self, local: &LocalOptions, stop: &AtomicBool) -> anyhow::Result<RunStats> {
        let ready = Arc::new(AtomicBool::new(false));
        let queries = Queries::default();
        let hosts = Hosts::new(self.topology.clone());
        let _services = self.start_services(local, ready.clone(), queries.clone(), &hosts)?;
        match &self.loaded.manifest.application.kafka {
            None => {
                let (mut inputs, mut global_files) = (BTreeMap::new(), BTreeMap::new());
                for (section, name, s) in self.loaded.manifest.declared() {
                    if let Some(file) = &s.file {
                        let topic = s.topic_or(name.get_ref()).to_owned();
                        // A global table's file is read before the tasks start, not by them.
                        let into = if section == "global_tables" { &mut global_files } else { &mut inputs };
                        into.insert(topic, (self.loaded.resolve(file.get_ref()), s.file_format));
                    }
                }
                for (name, path) in &local.inputs {
                    let format = if path.extension().is_some_and(|e| e == "jsonl") {
                        FileFormat::Jsonl
                    } else {
                        FileFormat::Text
                    };
                    let topic = self.input_topic(name)?;
                    let global = self.topology.globals.values().any(|g| g.topic == topic);
                    let into = if global { &mut global_files } else { &mut inputs };
                    into.insert(topic, (path.clone(), format));
                }
                let mut local = local.clone();
                local.outputs = local
                    .outputs
                    .into_iter()
                    .map(|(name, path)| (self.loaded.manifest.topic_of(&name), path))
                    .collect();
                let local = &local;
                let plan = self.local_plan(&inputs, local)?;
                hosts.all_here(self.local_partitions(&plan));
                let io = local_io(plan)?
                    .into_iter()
                    .map(|(source, sink)| ThreadIo { source: Box::new(source), sink: Box::new(sink), restorer: None })
                    .collect();
                let mut options = self.run_options(local, ready, queries, hosts);
                let globals = runtime::global::open(&self.topology, &options, GlobalInput::Files(&global_files))
                    .context("restoring the global tables")?;
                options.globals = globals.stores.clone();
                runtime::run(&self.topology, &self.plugins, io, &options, stop)
            }
            Some(kafka) => {
                let config = client_config(kafka.bootstrap_servers.get_ref(), &kafka.properties);
                wait_for_cluster(&config, kafka.bootstrap_servers.get_ref(), stop)?;
                self.create_internal_topics(&config)?;
                self.check_copartitioned(&config)?;
                let topics: Vec<Vec<&str>> = self
                    .topology
                    .subtopologies
                    .iter()
                    .map(|s| s.source_topics.iter().map(String::as_str).collect())
                    .collect();
                // One consumer (a group member), producer and changelog reader per thread;
                // under exactly_once_v2 the producer is transactional, and commits the offsets.
                let transactional = self.guarantee() == crate::manifest::ProcessingGuarantee::ExactlyOnceV2;
                let mut io = Vec::new();
                for thread in 0..self.threads() {
                    let id = &self.topology.application_id;
                    let source = KafkaSource::new(&config, id, &topics)?;
                    let (source, sink) = if transactional {
                        // As Kafka Streams' exactly_once_v2: one id per process and thread.
                        let tid = format!("{id}-{}-{thread}", std::process::id());
                        let sink = KafkaSink::transactional(&config, &tid).map_err(|e| {
                            self.application_error(
                                self.loaded.manifest.application.processing_guarantee.as_ref().map(|g| g.span()),
                                "application.processing_guarantee",
                                format!("{e:#}"),
                            )
                        })?;
                        (source.with_transactions(&sink), sink)
                    } else {
                        (source, KafkaSink::new(&config)?)
                    };
                    io.push(ThreadIo {
                        source: Box::new(source),
                        sink: Box::new(sink),
                        restorer: Some(Box::new(KafkaChangelogReader::new(&config, id)?)),
                    });
                }
                hosts.spread(self.kafka_partitions(&config)?);
                let mut options = self.run_options(local, ready, queries, hosts.clone());
                let globals = runtime::global::open(&self.topology, &options, GlobalInput::Kafka(&config))
                    .context("restoring the global tables")?;
                options.globals = globals.stores.clone();
                let follower = self.follow_instances(&config, &hosts)?;
                let replicas =
                    self.loaded.manifest.application.num_standby_replicas.as_ref().map_or(0, |n| *n.get_ref());
                let standby = if replicas > 0 {
                    if hosts.server().is_none() {
                        return Err(self.application_error(
                            self.loaded.manifest.application.num_standby_replicas.as_ref().map(|n| n.span()),
                            "application.num_standby_replicas",
                            format!(
                                "{replicas} standby replicas need each instance to announce an address: run the \
                                 admin endpoint ([application.admin] or --admin; its `application_server` if it \
                                 listens on every interface)"
                            ),
                        ));
                    }
                    let reader = KafkaChangelogReader::new(&config, &self.topology.application_id)?;
                    Some(runtime::standby::Standby::start(
                        self.topology.clone(),
                        options.clone(),
                        replicas,
                        Box::new(reader),
                    )?)
                } else {
                    None
                };
                let result = runtime::run(&self.topology, &self.plugins, io, &options, stop);
                if let Some(s) = standby {
                    s.stop()?;
                }
                if let Some(f) = follower {
                    f.stop()?;
                }
                result
            }
        }
    }

    /// An error about an `[application]` setting, naming the manifest, the line and the key.
    fn application_error(&self, span: Option<std::ops::Range<usize>>, key: &str, message: String) -> anyhow::Error {
        anyhow::Error::new(self.loaded.source.error(span.unwrap_or(0..0), key, message))
    }

    /// The error for topics of one sub-topology whose partition counts differ: task
    /// `(sub, p)` reads partition `p` of each, so their records meet by key only when they are
    /// partitioned alike (Kafka Streams' co-partitioning). `fix` says what to change.
    fn not_copartitioned(&self, counts: &[(&str, usize)], fix: &str) -> anyhow::Error {
        let list: Vec<String> = counts.iter().map(|(s, c)| format!("`{s}` ({c})")).collect();
        anyhow::anyhow!(
            "{}: topics {} feed one sub-topology, so they are co-partitioned and need the same number of \
             partitions ({fix})",
            self.loaded.source.path.display(),
            list.join(", "),
        )
    }

    /// On Kafka, the partition counts the broker reports for each sub-topology's topics must
    /// agree, as local mode's plan checks for files. A topic that does not exist yet is left
    /// out (the consumer waits for it).
    fn check_copartitioned(&self, config: &rdkafka::ClientConfig) -> anyhow::Result<()> {
        for sub in &self.topology.subtopologies {
            let mut counts: Vec<(&str, usize)> = Vec::new();
            for topic in &sub.source_topics {
                if let Some(n) = partition_count(config, topic)? {
                    counts.push((topic, n as usize));
                }
            }
            if counts.windows(2).any(|w| w[0].1 != w[1].1) {
                return Err(self.not_copartitioned(
                    &counts,
                    "on the broker: create or repartition them with one count, e.g. through a `to` topic of that count",
                ));
            }
        }
        Ok(())
    }

    /// Each sub-topology's task count in local mode: the partitions of its topics.
    fn local_partitions(&self, plan: &LocalPlan) -> Vec<usize> {
        self.topology
            .subtopologies
            .iter()
            .map(|sub| {
                sub.source_topics
                    .iter()
                    .filter_map(|t| {
                        plan.files
                            .iter()
                            .find(|f| f.topic == *t)
                            .map(|f| f.partitions as usize)
                            .or_else(|| plan.memory.get(t).map(Vec::len))
                    })
                    .max()
                    .unwrap_or(1)
            })
            .collect()
    }

    /// Each sub-topology's task count on Kafka: the partitions of its topics (0 for one whose
    /// topics do not exist yet).
    fn kafka_partitions(&self, config: &rdkafka::ClientConfig) -> anyhow::Result<Vec<usize>> {
        let mut out = Vec::with_capacity(self.topology.subtopologies.len());
        for sub in &self.topology.subtopologies {
            let mut n = 0;
            for topic in &sub.source_topics {
                n = n.max(partition_count(config, topic)?.unwrap_or(0) as usize);
            }
            out.push(n);
        }
        Ok(out)
    }

    /// The instances topic: the one where instances announce their tasks.
    fn instances_topic(&self) -> String {
        format!("{}-instances", self.topology.application_id)
    }

    /// With an address to announce, a thread that announces this instance's tasks and reads
    /// the others' ([`runtime::hosts::follow`]).
    fn follow_instances(&self, config: &rdkafka::ClientConfig, hosts: &Hosts) -> anyhow::Result<Option<Follower>> {
        if hosts.server().is_none() {
            return Ok(None);
        }
        let topic = self.instances_topic();
        ensure_topics(config, &[(topic.clone(), 1, true)])?;
        let mut log = KafkaInstanceLog::new(config, &self.topology.application_id, &topic)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hosts.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("wasp-hosts".into())
            .spawn(move || runtime::hosts::follow(&h, &mut log, &s))
            .context("starting the instances thread")?;
        Ok(Some(Follower { stop, thread }))
    }

    /// Repartition and changelog topics get as many partitions as the largest input topic
    /// (Kafka Streams does the same), so tasks line up with partitions.
    fn create_internal_topics(&self, config: &rdkafka::ClientConfig) -> anyhow::Result<()> {
        let internal: Vec<&str> = self.topology.repartition_topics();
        let mut partitions = 1;
        for topic in self.topology.sources.keys().filter(|t| !internal.contains(&t.as_str())) {
            if let Some(n) = partition_count(config, topic)? {
                partitions = partitions.max(n);
            }
        }
        let mut topics: Vec<(String, i32, bool)> =
            internal.iter().map(|t| ((*t).to_owned(), partitions, false)).collect();
        for spec in self.topology.stores.values().filter(|s| s.changelog && s.source_topic.is_none()) {
            topics.push((self.topology.changelog_topic(&spec.name), partitions, true));
        }
        if self.guarantee() == crate::manifest::ProcessingGuarantee::ExactlyOnce {
            topics.push((runtime::eos::bounds_topic(&self.topology.application_id), 1, true));
        }
        ensure_topics(config, &topics)
    }
}

/// The first wait between attempts to reach the cluster at start, doubled after each, up to
/// [`CONNECT_BACKOFF_MAX`].
const CONNECT_BACKOFF: std::time::Duration = std::time::Duration::from_secs(1);
const CONNECT_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits until the cluster answers a metadata request: a broker that is down at start is an
/// error in the log, tried again with backoff (as Kafka Streams' clients do), until it comes
/// up or the user stops wasp.
fn wait_for_cluster(config: &rdkafka::ClientConfig, bootstrap: &str, stop: &AtomicBool) -> anyhow::Result<()> {
    let mut backoff = CONNECT_BACKOFF;
    let mut attempt = 1u32;
    loop {
        match crate::io::kafka::cluster_brokers(config) {
            Ok(n) => {
                if attempt > 1 {
                    tracing::info!(bootstrap, brokers = n, attempt, "the Kafka cluster answers");
                }
                return Ok(());
            }
            Err(e) => {
                tracing::error!(
                    bootstrap,
                    attempt,
                    error = %format!("{e:#}"),
                    "cannot reach the Kafka cluster; retrying in {backoff:?} (check `application.kafka.bootstrap_servers`)"
                );
            }
        }
        let until = std::time::Instant::now() + backoff;
        while std::time::Instant::now() < until {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                anyhow::bail!("stopped while waiting for the Kafka cluster at `{bootstrap}`");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        backoff = (backoff * 2).min(CONNECT_BACKOFF_MAX);
        attempt += 1;
    }
}

/// The thread of [`runtime::hosts::follow`].
struct Follower {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl Follower {
    /// Stops it: it withdraws this instance's announcement first.
    fn stop(self) -> anyhow::Result<()> {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        match self.thread.join() {
            Ok(r) => r.context("announcing this instance's tasks"),
            Err(_) => anyhow::bail!("the instances thread panicked"),
        }
    }
}

/// What `wasp test` counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TestCount {
    pub passed: usize,
    pub failed: usize,
}

/// The test files `paths` name: files as they are, and every `*.test.toml` under a directory,
/// in path order.
pub fn test_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
        let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        for e in entries {
            let p = e.with_context(|| format!("reading {}", dir.display()))?.path();
            if p.is_dir() {
                walk(&p, out)?;
            } else if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(".test.toml")) {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found)?;
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Runs every case of the test file at `path` (`wasp test`), writing `test … ok` or
/// `FAILED` with what differed to `out`. `batch_size` overrides the cases' own.
pub fn run_test_file(
    path: &Path,
    options: &TestOptions,
    cache_dir: Option<PathBuf>,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<TestCount> {
    let batch_size = options.batch_size;
    let tests = manifest::testfile::load_tests(path)?;
    let manifest = tests.manifest_path();
    let prepared = prepare_with(&manifest, cache_dir, &options.plugins).with_context(|| {
        let (line, col) = tests.source.line_col(tests.file.manifest.span().start);
        format!("{}:{line}:{col}: `manifest`: the manifest under test", path.display())
    })?;
    let mut count = TestCount::default();
    for case in &tests.file.tests {
        let name = case.name.get_ref();
        let logs = runtime::driver::LogCapture::default();
        match logs.during(|| run_case(&prepared, &tests, case, batch_size, &logs)) {
            Ok(failures) if failures.is_empty() => {
                count.passed += 1;
                writeln!(out, "test {} :: {name} ... ok", path.display())?;
            }
            Ok(failures) => {
                count.failed += 1;
                writeln!(out, "test {} :: {name} ... FAILED", path.display())?;
                for f in failures {
                    for l in f.lines() {
                        writeln!(out, "    {l}")?;
                    }
                }
            }
            Err(e) => {
                count.failed += 1;
                writeln!(out, "test {} :: {name} ... FAILED\n    error: {e:#}", path.display())?;
            }
        }
    }
    Ok(count)
}

/// An error at `span` of a test file about a name that is not there, with the closest of
/// `known` as a suggestion.
fn unknown_name<'a>(
    tests: &manifest::testfile::LoadedTests,
    span: std::ops::Range<usize>,
    key: String,
    message: String,
    name: &str,
    known: impl Iterator<Item = &'a str>,
) -> anyhow::Error {
    let mut e = tests.error(span, key, message);
    if let Some(c) = manifest::closest(name, known) {
        e = e.with_help(format!("did you mean `{c}`?"));
    }
    e.into()
}

/// Runs one case; what did not match, each with its diff.
fn run_case(
    p: &Prepared,
    tests: &manifest::testfile::LoadedTests,
    case: &manifest::testfile::TestCase,
    batch_size: Option<usize>,
    logs: &runtime::driver::LogCapture,
) -> anyhow::Result<Vec<String>> {
    use manifest::testfile::{Order, duration_ms, is_json, value_bytes};
    use runtime::driver::{Driver, Expected, Match, check_entries, check_records, metric_samples};
    let metrics_before = metric_samples(&p.runtime.metrics().encode());
    let batch = batch_size.or(case.batch_size.as_ref().map(|b| *b.get_ref())).unwrap_or(1).max(1);
    let mut driver = Driver::new(p.topology.clone(), &p.plugins, p.runtime.metrics(), case.wall_clock_start)?;
    let mut pending: Option<(String, Vec<crate::record::Record>)> = None;
    let mut last_ts = 0;
    let flush = |driver: &mut Driver, pending: &mut Option<(String, Vec<crate::record::Record>)>| match pending.take() {
        Some((topic, records)) => driver.pipe(&topic, records),
        None => Ok(()),
    };
    for (j, step) in case.steps.iter().enumerate() {
        let s = step.get_ref();
        if let Some(d) = &s.advance_wall_clock {
            flush(&mut driver, &mut pending)?;
            let ms = duration_ms(d.get_ref()).map_err(|e| anyhow::anyhow!(e))?;
            driver.advance_wall_clock(ms)?;
            continue;
        }
        let Some(topic) = &s.topic else { continue };
        if !driver.reads(topic.get_ref()) {
            let key = format!("{}.steps[{j}].topic", case.name.get_ref());
            let message = format!("no pipeline reads topic `{}`", topic.get_ref());
            let read = p.topology.sources.keys().map(String::as_str);
            return Err(unknown_name(tests, topic.span(), key, message, topic.get_ref(), read));
        }
        last_ts = s.timestamp.unwrap_or(last_ts);
        let key = s.key.as_ref().map(value_bytes);
        let value = s.value.as_ref().map(value_bytes);
        let mut r = crate::record::Record::new(key.as_deref(), value.as_deref(), last_ts);
        for (k, v) in &s.headers {
            r.headers.push(crate::record::Header {
                name: crate::record::Header::name_from(k),
                value: Some(bytes::Bytes::copy_from_slice(v.as_bytes())),
            });
        }
        let same = pending.as_ref().is_some_and(|(t, rs)| t == topic.get_ref() && rs.len() < batch);
        if !same {
            flush(&mut driver, &mut pending)?;
            pending = Some((topic.get_ref().clone(), Vec::new()));
        }
        if let Some((_, rs)) = &mut pending {
            rs.push(r);
        }
    }
    flush(&mut driver, &mut pending)?;
    let mut failures = Vec::new();
    for (i, e) in case.expect.iter().enumerate() {
        let topic = e.topic.get_ref();
        let expected: Vec<Expected> = e
            .records
            .iter()
            .map(|r| Expected {
                key: r.key.as_ref().map(value_bytes),
                value: r.value.as_ref().map(value_bytes),
                timestamp: r.timestamp,
                headers: r.headers.clone(),
                json: r.value.as_ref().is_some_and(is_json),
            })
            .collect();
        let (order, how) = match e.order {
            Order::InOrder => (Match::InOrder, "in order"),
            Order::AnyOrder => (Match::AnyOrder, "in any order"),
            Order::LastPerKey => (Match::LastPerKey, "last per key"),
        };
        let actual = driver.output(topic);
        let dead_letters = p.topology.nodes.iter().any(|n| n.policy.dead_letter_topic == *topic);
        if actual.is_empty() && !dead_letters && !p.topology.sink_topics().contains(&topic.as_str()) {
            let key = format!("{}.expect[{i}].topic", case.name.get_ref());
            let message = format!("no step writes topic `{topic}`");
            let known = p.topology.sink_topics().into_iter().chain(driver.written());
            return Err(unknown_name(tests, e.topic.span(), key, message, topic, known));
        }
        if let Err(diff) = check_records(order, &expected, actual) {
            failures.push(format!(
                "topic `{topic}` ({how}): {} expected, {} written\n{diff}",
                expected.len(),
                actual.len()
            ));
        }
    }
    for (i, s) in case.stores.iter().enumerate() {
        let name = s.store.get_ref();
        if let Some(spec) = p.topology.stores.get(name.as_str())
            && spec.kind != crate::state::StoreKind::KeyValue
        {
            return Err(tests
                .error(
                    s.store.span(),
                    format!("{}.stores[{i}].store", case.name.get_ref()),
                    format!("`{name}` is a {} store: expect its output topic instead", spec.kind),
                )
                .into());
        }
        let Some(rows) = driver.store(name)? else {
            if !failures.is_empty() {
                failures.push(format!("and no queryable store `{name}`"));
                continue;
            }
            let key = format!("{}.stores[{i}].store", case.name.get_ref());
            let names = p.topology.stores.keys().map(String::as_str);
            return Err(unknown_name(tests, s.store.span(), key, format!("no queryable store `{name}`"), name, names));
        };
        let expected: Vec<(Vec<u8>, Vec<u8>)> =
            s.entries.iter().map(|e| (value_bytes(&e.key), value_bytes(&e.value))).collect();
        let json = s.entries.iter().any(|e| is_json(&e.value));
        if let Err(diff) = check_entries(&expected, json, &rows) {
            failures.push(format!("store `{name}`: {} expected, {} held\n{diff}", expected.len(), rows.len()));
        }
    }
    if !case.metrics.is_empty() {
        let after = metric_samples(&p.runtime.metrics().encode());
        for m in &case.metrics {
            let name = m.name.get_ref();
            let matching = |samples: &[(String, String, BTreeMap<String, String>, f64)]| -> (bool, f64, String) {
                let mut found = (false, 0.0, String::new());
                for (kind, n, labels, v) in samples {
                    if n == name && m.labels.iter().all(|(k, want)| labels.get(k) == Some(want)) {
                        found = (true, found.1 + v, kind.clone());
                    }
                }
                found
            };
            let (seen, end, kind) = matching(&after);
            let value = if kind == "gauge" { end } else { end - matching(&metrics_before).1 };
            let labels: Vec<String> = m.labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let shown = format!("{name}{{{}}}", labels.join(","));
            if !seen {
                let names: std::collections::BTreeSet<&str> = after.iter().map(|s| s.1.as_str()).collect();
                let hint = manifest::closest(name, names).map(|c| format!(" (did you mean `{c}`?)"));
                failures.push(format!("metric {shown}: no such sample{}", hint.unwrap_or_default()));
            } else if (value - m.value).abs() > 1e-9 * m.value.abs().max(1.0) {
                let how = if kind == "gauge" { "is" } else { "went up by" };
                failures.push(format!("metric {shown}: expected {}, {how} {value}", m.value));
            }
        }
    }
    let lines = logs.lines();
    for l in &case.logs {
        let found = lines.iter().any(|line| {
            line.message.contains(&l.contains)
                && l.level.as_ref().is_none_or(|lv| line.level == lv.get_ref())
                && l.plugin.as_ref().is_none_or(|p| &line.plugin == p)
        });
        if !found {
            let level = l.level.as_ref().map(|lv| format!(" at {}", lv.get_ref())).unwrap_or_default();
            let plugin = l.plugin.as_ref().map(|p| format!(" from `{p}`")).unwrap_or_default();
            let mut f = format!("no log line{level}{plugin} contains `{}`; the plugins logged:", l.contains);
            for line in lines.iter().take(20) {
                f.push_str(&format!("\n  {} {}: {}", line.level, line.plugin, line.message));
            }
            if lines.is_empty() {
                f.push_str(" nothing");
            }
            failures.push(f);
        }
    }
    Ok(failures)
}

/// How `wasp test` runs.
#[derive(Debug, Clone, Default)]
pub struct TestOptions {
    /// Records piped at once, over each case's own `batch_size`.
    pub batch_size: Option<usize>,
    /// Plugins loaded from these files instead of the manifest's paths.
    pub plugins: BTreeMap<String, PathBuf>,
}

/// The function kinds `wasp new` scaffolds: the manifest step that uses each, and the WIT
/// world a plugin of that kind exports.
pub const NEW_KINDS: &[(&str, &str, &str)] = &[
    ("filter", "filter", "filter-plugin"),
    ("map-values", "map_values", "value-mapper-plugin"),
    ("flat-map", "flat_map", "flat-mapper-plugin"),
    ("aggregate", "aggregate", "aggregator-plugin"),
    ("processor", "process", "processor-plugin"),
];

/// The languages `wasp new` scaffolds.
pub const NEW_LANGUAGES: &[&str] = &["rust", "python", "javascript", "c", "cpp"];

/// The componentize-js release `make setup` installs (into `~/.cache/wasp/npm`).
pub const COMPONENTIZE_JS: &str = "0.23.0";

mod template {
    pub const CARGO: &str = include_str!("../../guest-sdk/template/Cargo.toml.tmpl");
    pub const PIPELINE: &str = include_str!("../../guest-sdk/template/pipeline.toml.tmpl");
    pub const EVENTS: &str = include_str!("../../guest-sdk/template/events.jsonl.tmpl");
    pub const GITIGNORE: &str = include_str!("../../guest-sdk/template/gitignore.tmpl");
    /// The plugins' lock file: a new crate starts from the versions the examples build with.
    pub const LOCK: &str = include_str!("../../plugins/Cargo.lock");
    pub const PY_PROJECT: &str = include_str!("../../guest-sdk/template/python/pyproject.toml.tmpl");
    pub const PY_GITIGNORE: &str = include_str!("../../guest-sdk/template/python/gitignore.tmpl");
    /// The Python SDK, which `wasp build` puts on componentize-py's path.
    pub const PY_SDK: &str = include_str!("../../guest-sdk/python/wasp.py");
    pub const JS_PACKAGE: &str = include_str!("../../guest-sdk/template/javascript/package.json.tmpl");
    /// The JavaScript SDK, put into a new plugin's `app.js`.
    pub const JS_SDK: &str = include_str!("../../guest-sdk/javascript/wasp.js");
    pub const JS_GITIGNORE: &str = include_str!("../../guest-sdk/template/javascript/gitignore.tmpl");
    pub const C_PLUGIN: &str = include_str!("../../guest-sdk/template/c/wasp.toml.tmpl");
    pub const C_GITIGNORE: &str = include_str!("../../guest-sdk/template/c/gitignore.tmpl");
    /// The C SDK (header-only), written beside a C or C++ plugin's generated bindings.
    pub const C_SDK: &str = include_str!("../../guest-sdk/c/wasp.h");
    pub const C_JSON: &str = include_str!("../../guest-sdk/c/wasp_json.h");
    /// The C++ SDK, on the C one.
    pub const CPP_SDK: &str = include_str!("../../guest-sdk/c/wasp.hpp");
    /// The WIT contract, for componentize-py and componentize-js.
    pub const WIT: &str = include_str!("../../wit/plugin.wit");

    /// The `wasp test` file of each kind: one per kind, whatever the language.
    pub const TESTS: &[(&str, &str)] = &[
        ("filter", include_str!("../../guest-sdk/template/filter.test.toml.tmpl")),
        ("map-values", include_str!("../../guest-sdk/template/map-values.test.toml.tmpl")),
        ("flat-map", include_str!("../../guest-sdk/template/flat-map.test.toml.tmpl")),
        ("aggregate", include_str!("../../guest-sdk/template/aggregate.test.toml.tmpl")),
        ("processor", include_str!("../../guest-sdk/template/processor.test.toml.tmpl")),
    ];

    macro_rules! code {
        ($($lang:literal, $kind:literal => $file:literal;)*) => {
            /// The code of each language and kind.
            pub const CODE: &[(&str, &str, &str)] =
                &[$(($lang, $kind, include_str!(concat!("../../guest-sdk/template/", $file)))),*];
        };
    }
    code! {
        "rust", "filter" => "filter.rs.tmpl";
        "rust", "map-values" => "map-values.rs.tmpl";
        "rust", "flat-map" => "flat-map.rs.tmpl";
        "rust", "aggregate" => "aggregate.rs.tmpl";
        "rust", "processor" => "processor.rs.tmpl";
        "python", "filter" => "python/filter.py.tmpl";
        "python", "map-values" => "python/map-values.py.tmpl";
        "python", "flat-map" => "python/flat-map.py.tmpl";
        "python", "aggregate" => "python/aggregate.py.tmpl";
        "python", "processor" => "python/processor.py.tmpl";
        "javascript", "filter" => "javascript/filter.js.tmpl";
        "javascript", "map-values" => "javascript/map-values.js.tmpl";
        "javascript", "flat-map" => "javascript/flat-map.js.tmpl";
        "javascript", "aggregate" => "javascript/aggregate.js.tmpl";
        "javascript", "processor" => "javascript/processor.js.tmpl";
        "c", "filter" => "c/filter.c.tmpl";
        "c", "map-values" => "c/map-values.c.tmpl";
        "c", "flat-map" => "c/flat-map.c.tmpl";
        "c", "aggregate" => "c/aggregate.c.tmpl";
        "c", "processor" => "c/processor.c.tmpl";
        "cpp", "filter" => "cpp/filter.cpp.tmpl";
        "cpp", "map-values" => "cpp/map-values.cpp.tmpl";
        "cpp", "flat-map" => "cpp/flat-map.cpp.tmpl";
        "cpp", "aggregate" => "cpp/aggregate.cpp.tmpl";
        "cpp", "processor" => "cpp/processor.cpp.tmpl";
    }

    /// A template of the table, by language and kind (both from the tables above).
    pub fn code(lang: &str, kind: &str) -> &'static str {
        CODE.iter().find(|(l, k, _)| *l == lang && *k == kind).map_or("", |(_, _, c)| c)
    }

    pub fn test(kind: &str) -> &'static str {
        TESTS.iter().find(|(k, _)| *k == kind).map_or("", |(_, t)| t)
    }
}

/// `wasp new LANG NAME --kind KIND`: a plugin in `parent/NAME` with one function of `kind` (a
/// Rust crate, or a Python module with its `pyproject.toml`), a pipeline that uses it on sample
/// events, and a `wasp test` file that passes as generated. Returns the new folder.
pub fn new_plugin(lang: &str, name: &str, kind: &str, parent: &Path) -> anyhow::Result<PathBuf> {
    if !NEW_LANGUAGES.contains(&lang) {
        anyhow::bail!("`wasp new` scaffolds {} plugins so far, not `{lang}`", NEW_LANGUAGES.join(", "));
    }
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_lowercase());
    if !valid {
        anyhow::bail!("`{name}`: a plugin's name is lowercase letters, digits and `-`, starting with a letter");
    }
    let Some(&(_, op, world)) = NEW_KINDS.iter().find(|(k, _, _)| *k == kind) else {
        let kinds: Vec<&str> = NEW_KINDS.iter().map(|(k, _, _)| *k).collect();
        anyhow::bail!("--kind `{kind}`: `wasp new` scaffolds {} so far", kinds.join(", "));
    };
    let dir = parent.join(name);
    if dir.exists() {
        anyhow::bail!("{} exists already", dir.display());
    }
    // The guest SDK beside this wasp's sources.
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
    let sdk = sdk.canonicalize().with_context(|| format!("the guest SDK at {}", sdk.display()))?;
    // A processor names the store it keeps its counts in; an aggregate groups by key first.
    let step = match kind {
        "processor" => format!(r#"{{ op = "process", plugin = "{name}", stores = ["counts"] }}"#),
        "aggregate" => {
            format!(r#"{{ op = "group_by_key" }}, {{ op = "aggregate", plugin = "{name}" }}, {{ op = "to_stream" }}"#)
        }
        _ => format!(r#"{{ op = "{op}", plugin = "{name}" }}"#),
    };
    let fill = |t: &str| {
        t.replace("{{step}}", &step)
            .replace("{{name}}", name)
            .replace("{{op}}", op)
            .replace("{{world}}", world)
            .replace("{{sdk}}", &sdk.display().to_string())
    };
    let code = fill(template::code(lang, kind));
    let test_file = format!("{name}.test.toml");
    let mut files: Vec<(&str, String)> = vec![
        ("pipeline.toml", fill(template::PIPELINE)),
        ("data/events.jsonl", template::EVENTS.to_owned()),
        (&test_file, fill(template::test(kind))),
    ];
    match lang {
        "rust" => files.extend([
            ("Cargo.toml", fill(template::CARGO)),
            ("Cargo.lock", template::LOCK.to_owned()),
            ("src/lib.rs", code),
            (".gitignore", fill(template::GITIGNORE)),
        ]),
        "javascript" => files.extend([
            ("package.json", fill(template::JS_PACKAGE)),
            ("app.js", code),
            (".gitignore", fill(template::JS_GITIGNORE)),
        ]),
        "python" => files.extend([
            ("pyproject.toml", fill(template::PY_PROJECT)),
            ("app.py", code),
            (".gitignore", fill(template::PY_GITIGNORE)),
        ]),
        "c" => files.extend([
            ("wasp.toml", fill(template::C_PLUGIN)),
            ("app.c", code),
            (".gitignore", fill(template::C_GITIGNORE)),
        ]),
        _ => files.extend([
            ("wasp.toml", fill(template::C_PLUGIN)),
            ("app.cpp", code),
            (".gitignore", fill(template::C_GITIGNORE)),
        ]),
    }
    for (file, text) in files {
        let path = dir.join(file);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(dir)
}

/// What `wasp build` made.
#[derive(Debug)]
pub struct Built {
    pub component: PathBuf,
    pub bytes: u64,
    pub kinds: Vec<PluginKind>,
}

/// `wasp build DIR`: builds the plugin in `dir` into a component, by its language. A Rust
/// crate (`Cargo.toml`) is built for `wasm32-unknown-unknown` with cargo, and its core module
/// made a component in-process (`wit-component`, what `wasm-tools component new` does),
/// written as `DIR/<crate>.wasm`. A Python plugin (`pyproject.toml` with `[tool.wasp] world`)
/// is built by componentize-py from `app.py` against wasp's WIT, as `DIR/<project>.wasm`.
///
/// `target_dir` is where cargo builds (default: its own choice, `$CARGO_TARGET_DIR` or the
/// crate's `target/`).
pub fn build_plugin(dir: &Path, cache_dir: Option<PathBuf>, target_dir: Option<&Path>) -> anyhow::Result<Built> {
    let (name, out) = if dir.join("Cargo.toml").exists() {
        build_rust(dir, target_dir)?
    } else if dir.join("pyproject.toml").exists() {
        build_python(dir)?
    } else if dir.join("package.json").exists() {
        build_javascript(dir)?
    } else if dir.join("wasp.toml").exists() {
        build_c(dir)?
    } else {
        anyhow::bail!(
            "{}: not a Rust crate (Cargo.toml), a Python plugin (pyproject.toml), a JavaScript one (package.json) or a C or C++ one (wasp.toml); `wasp new` starts one",
            dir.display()
        );
    };
    loaded(&name, &out, cache_dir)
}

/// `wasp build MODULE -o OUT`: a core module made a component in-process, as `wasm-tools
/// component new` does (the module carries its world in the custom section its bindings
/// generator embeds); WASI preview 1 imports go through the adapter.
pub fn build_module(module: &Path, out: &Path, cache_dir: Option<PathBuf>) -> anyhow::Result<Built> {
    let bytes = std::fs::read(module).with_context(|| format!("reading {}", module.display()))?;
    let component = componentize(&bytes).with_context(|| format!("making {} a component", module.display()))?;
    std::fs::write(out, &component).with_context(|| format!("writing {}", out.display()))?;
    let name = out.file_stem().and_then(|s| s.to_str()).unwrap_or("plugin").to_owned();
    loaded(&name, out, cache_dir)
}

/// A core module as a component: its world from its embedded component type, WASI preview 1
/// imports (wasi-libc's) through the adapter of our wasmtime's release.
fn componentize(module: &[u8]) -> anyhow::Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(module)?
        .adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .encode()
}

/// What `wasp build` made, loaded once to say its kinds (and compiled into the cache).
fn loaded(name: &str, out: &Path, cache_dir: Option<PathBuf>) -> anyhow::Result<Built> {
    let bytes = std::fs::metadata(out).with_context(|| format!("{}", out.display()))?.len();
    let runtime = Runtime::new(cache_dir, MetricsRegistry::default())?;
    let loaded = runtime
        .load(name, out, &toml::Table::new(), &Default::default(), &Default::default(), &[])
        .with_context(|| format!("loading {}", out.display()))?;
    Ok(Built { component: out.to_path_buf(), bytes, kinds: loaded.kinds.clone() })
}

/// The WIT contract in a temporary folder of its own, for a componentizer to read.
fn wit_dir() -> anyhow::Result<PathBuf> {
    let wit = std::env::temp_dir().join(format!("wasp-wit-{}", std::process::id()));
    std::fs::create_dir_all(&wit).with_context(|| format!("creating {}", wit.display()))?;
    std::fs::write(wit.join("plugin.wit"), template::WIT).with_context(|| format!("writing {}", wit.display()))?;
    Ok(wit)
}

/// A JavaScript plugin through componentize-js, from `app.js`, exporting the world that
/// `package.json` names in `wasp.world`, with every WASI feature componentize-js can leave out
/// disabled: `(name, component)`.
fn build_javascript(dir: &Path) -> anyhow::Result<(String, PathBuf)> {
    let path = dir.join("package.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let package: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
    let name = package["name"].as_str().with_context(|| format!("{}: no `name`", path.display()))?.to_owned();
    let world = package["wasp"]["world"]
        .as_str()
        .with_context(|| format!("{}: no `wasp.world` (e.g. \"value-mapper-plugin\")", path.display()))?
        .to_owned();
    let tool = match std::env::var_os("WASP_COMPONENTIZE_JS") {
        Some(t) => PathBuf::from(t),
        None => {
            let cached = std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/wasp/npm/node_modules/.bin/componentize-js"));
            cached.filter(|c| c.exists()).unwrap_or_else(|| PathBuf::from("componentize-js"))
        }
    };
    let app = dir.join("app.js");
    let code = std::fs::read_to_string(&app).with_context(|| format!("reading {}", app.display()))?;
    // componentize-js takes one file: the SDK goes in place of its import.
    let source = std::env::temp_dir().join(format!("wasp-js-{}-{name}.js", std::process::id()));
    std::fs::write(&source, with_js_sdk(&code).with_context(|| app.display().to_string())?)
        .with_context(|| format!("writing {}", source.display()))?;
    let wit = wit_dir()?;
    let out = dir.join(format!("{name}.wasm"));
    let status = std::process::Command::new(&tool)
        .arg(&source)
        .arg("--wit")
        .arg(&wit)
        .args(["--world-name", &world, "-d", "stdio", "random", "clocks", "http", "fetch-event", "-o"])
        .arg(&out)
        .status();
    let _ = std::fs::remove_dir_all(&wit);
    let _ = std::fs::remove_file(&source);
    let status = status.with_context(|| {
        format!(
            "running {} (`make setup` installs @bytecodealliance/componentize-js {COMPONENTIZE_JS} into ~/.cache/wasp/npm)",
            tool.display()
        )
    })?;
    if !status.success() {
        anyhow::bail!("componentize-js failed in {} ({status})", dir.display());
    }
    Ok((name, out))
}

/// A JavaScript plugin's source with the wasp SDK in place of its import from "wasp" (a line
/// `import wasp, { RecordError } from "wasp";`; the SDK gives those two names). Source without
/// such an import is taken as it is (an app.js that carries the SDK itself).
fn with_js_sdk(code: &str) -> anyhow::Result<String> {
    let is_import = |line: &str| {
        let l = line.trim().trim_end_matches(';').trim_end();
        l.starts_with("import ") && (l.ends_with("from \"wasp\"") || l.ends_with("from 'wasp'"))
    };
    let mut out = String::with_capacity(code.len() + template::JS_SDK.len());
    let mut spliced = false;
    for (n, line) in code.lines().enumerate() {
        if !is_import(line) {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let names = line.trim()["import ".len()..].split(" from ").next().unwrap_or_default();
        if let Some(other) = names
            .split(|c: char| c == ',' || c == '{' || c == '}' || c.is_whitespace())
            .find(|n| !n.is_empty() && *n != "wasp" && *n != "RecordError")
        {
            anyhow::bail!(
                "line {}: the wasp SDK gives `wasp` and `RecordError` (`import wasp, {{ RecordError }} from \"wasp\";`), not `{other}`",
                n + 1
            );
        }
        if spliced {
            anyhow::bail!("line {}: the wasp SDK is imported twice", n + 1);
        }
        out.push_str(template::JS_SDK);
        spliced = true;
    }
    Ok(out)
}

/// A Python plugin through componentize-py: `(name, component)`.
fn build_python(dir: &Path) -> anyhow::Result<(String, PathBuf)> {
    let path = dir.join("pyproject.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let project: toml::Table = toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
    let name = project
        .get("project")
        .and_then(|p| p.get("name"))
        .and_then(toml::Value::as_str)
        .with_context(|| format!("{}: no `[project] name`", path.display()))?
        .to_owned();
    let world = project
        .get("tool")
        .and_then(|t| t.get("wasp"))
        .and_then(|w| w.get("world"))
        .and_then(toml::Value::as_str)
        .with_context(|| format!("{}: no `[tool.wasp] world` (e.g. \"value-mapper-plugin\")", path.display()))?
        .to_owned();
    let wit = wit_dir()?;
    // The SDK (`import wasp`), after the plugin's own folder on the path.
    let sdk = std::env::temp_dir().join(format!("wasp-python-sdk-{}", std::process::id()));
    std::fs::create_dir_all(&sdk).with_context(|| format!("creating {}", sdk.display()))?;
    std::fs::write(sdk.join("wasp.py"), template::PY_SDK).with_context(|| format!("writing {}", sdk.display()))?;
    let out = dir.join(format!("{name}.wasm"));
    let status = std::process::Command::new("componentize-py")
        .arg("-d")
        .arg(&wit)
        .args(["-w", &world, "componentize", "app", "-p"])
        .arg(dir)
        .arg("-p")
        .arg(&sdk)
        .arg("-o")
        .arg(&out)
        .status();
    let _ = std::fs::remove_dir_all(&sdk);
    let _ = std::fs::remove_dir_all(&wit);
    let status = status.context("running componentize-py (`make setup` installs it)")?;
    if !status.success() {
        anyhow::bail!("componentize-py failed in {} ({status})", dir.display());
    }
    Ok((name, out))
}

/// The file extensions of C++ sources; `.c` is C.
const CPP_SOURCES: &[&str] = &["cpp", "cc", "cxx"];

/// A C or C++ plugin: `wasp.toml` names it and its world (`[plugin] name`, `world`); its
/// sources are the folder's `.c` files, or `.cpp`/`.cc`/`.cxx` ones for C++. The bindings of
/// the world are generated in-process (`wit-bindgen-c`, the world named `plugin`, so types
/// are `plugin_string_t`, …) into `bindings/` with the SDK headers (`wasp.h`, `wasp.hpp`);
/// Debian's clang compiles for `wasm32-wasi` (wasi-libc, libc++ for C++) as a reactor, and
/// the module becomes a component in-process, through the WASI preview 1 adapter when it
/// imports WASI (which the host then links deny-by-default). `(name, component)`.
fn build_c(dir: &Path) -> anyhow::Result<(String, PathBuf)> {
    // clang runs in `dir`: every path it is given is absolute.
    let dir = &dir.canonicalize().with_context(|| format!("{}", dir.display()))?;
    let path = dir.join("wasp.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let loaded: toml::Table = toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
    let field = |key: &str, example: &str| {
        loaded
            .get("plugin")
            .and_then(|p| p.get(key))
            .and_then(toml::Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("{}: no `[plugin] {key}` (e.g. {example})", path.display()))
    };
    let name = field("name", "\"my-filter\"")?;
    let world = field("world", "\"filter-plugin\"")?;
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = entry.with_context(|| format!("reading {}", dir.display()))?.path();
        if let Some(ext) = p.extension().and_then(|e| e.to_str())
            && (ext == "c" || CPP_SOURCES.contains(&ext))
        {
            sources.push(p);
        }
    }
    sources.sort();
    if sources.is_empty() {
        anyhow::bail!("{}: no .c or .cpp sources beside wasp.toml", dir.display());
    }
    let cpp = sources.iter().any(|p| p.extension().and_then(|e| e.to_str()).is_some_and(|e| CPP_SOURCES.contains(&e)));
    // The world's bindings, and the SDK headers.
    let generated = dir.join("bindings");
    std::fs::create_dir_all(&generated).with_context(|| format!("creating {}", generated.display()))?;
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve.push_str("plugin.wit", template::WIT).context("wasp's WIT")?;
    let id = resolve
        .select_world(&[package], Some(&world))
        .with_context(|| format!("{}: `[plugin] world`: wasp's WIT has no world `{world}`", path.display()))?;
    // What the world has, for the SDK: `WASP_EXPORTS_FILTER`, `WASP_IMPORTS_STATE`, ….
    let mut world_h = String::from("/* Generated by `wasp build`: what this plugin's world has. */\n");
    let w = &resolve.worlds[id];
    for (what, items) in [("EXPORTS", &w.exports), ("IMPORTS", &w.imports)] {
        for key in items.keys() {
            if let wit_parser::WorldKey::Interface(i) = key
                && let Some(name) = &resolve.interfaces[*i].name
            {
                world_h.push_str(&format!("#define WASP_{what}_{} 1\n", name.to_uppercase().replace('-', "_")));
            }
        }
    }
    let mut files = wit_bindgen_core::Files::default();
    let options = wit_bindgen_c::Opts { rename_world: Some("plugin".into()), ..Default::default() };
    wit_bindgen_core::WorldGenerator::generate(&mut *options.build(), &mut resolve, id, &mut files)
        .with_context(|| format!("generating the C bindings of `{world}`"))?;
    let sdk: [(&str, &[u8]); 4] = [
        ("wasp_world.h", world_h.as_bytes()),
        ("wasp.h", template::C_SDK.as_bytes()),
        ("wasp_json.h", template::C_JSON.as_bytes()),
        ("wasp.hpp", template::CPP_SDK.as_bytes()),
    ];
    for (file, bytes) in files.iter().chain(sdk) {
        let p = generated.join(file);
        std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
    }
    // Compile and link.
    let module = generated.join(format!("{name}.core.wasm"));
    let clang = |cxx: bool| {
        let tool = if cxx { "clang++" } else { "clang" };
        let mut c = std::process::Command::new(tool);
        c.current_dir(dir).args(["--target=wasm32-wasi", "-O2", "-Wall", "-Ibindings"]);
        if cxx {
            c.args(["-std=c++17", "-fno-exceptions"]);
        }
        (tool, c)
    };
    let run = |(tool, mut c): (&str, std::process::Command)| -> anyhow::Result<()> {
        let status = c.status().with_context(|| {
            format!("running {tool} (`make setup` installs Debian's clang, lld, wasi-libc and libc++ for wasm32)")
        })?;
        if !status.success() {
            anyhow::bail!("{tool} failed in {} ({status})", dir.display());
        }
        Ok(())
    };
    let bindings_object = generated.join("plugin.o");
    let (tool, mut c) = clang(false);
    c.args(["-c", "bindings/plugin.c", "-o"]).arg(&bindings_object);
    run((tool, c))?;
    let (tool, mut c) = clang(cpp);
    c.arg("-mexec-model=reactor")
        .args(&sources)
        .arg(&bindings_object)
        .arg(generated.join("plugin_component_type.o"))
        .arg("-o")
        .arg(&module);
    run((tool, c))?;
    let bytes = std::fs::read(&module).with_context(|| format!("reading {}", module.display()))?;
    let component = componentize(&bytes).with_context(|| format!("making {} a component", module.display()))?;
    let out = dir.join(format!("{name}.wasm"));
    std::fs::write(&out, &component).with_context(|| format!("writing {}", out.display()))?;
    Ok((name, out))
}

/// A Rust crate through cargo and wit-component: `(name, component)`.
fn build_rust(dir: &Path, target_dir: Option<&Path>) -> anyhow::Result<(String, PathBuf)> {
    let manifest = dir.join("Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let cargo_in = |args: &[&str]| {
        let mut c = std::process::Command::new(&cargo);
        c.current_dir(dir).args(args);
        if let Some(t) = target_dir {
            c.env("CARGO_TARGET_DIR", t);
        }
        c
    };
    let status =
        cargo_in(&["build", "--release", "--target", "wasm32-unknown-unknown"]).status().context("running cargo")?;
    if !status.success() {
        anyhow::bail!("cargo build failed in {} ({status})", dir.display());
    }
    let meta =
        cargo_in(&["metadata", "--no-deps", "--format-version", "1"]).output().context("running cargo metadata")?;
    let meta: serde_json::Value = serde_json::from_slice(&meta.stdout).context("reading cargo metadata")?;
    let want = manifest.canonicalize().with_context(|| format!("{}", manifest.display()))?;
    let package = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["manifest_path"].as_str().and_then(|m| Path::new(m).canonicalize().ok()).is_some_and(|m| m == want))
        .context("cargo metadata names no package for this Cargo.toml")?;
    let name = package["name"].as_str().context("a package without a name")?;
    let target = meta["target_directory"].as_str().context("cargo metadata gives no target directory")?;
    let module =
        Path::new(target).join("wasm32-unknown-unknown/release").join(format!("{}.wasm", name.replace('-', "_")));
    let bytes = std::fs::read(&module).with_context(|| format!("reading the built module {}", module.display()))?;
    let component = componentize(&bytes).with_context(|| format!("making {} a component", module.display()))?;
    let out = dir.join(format!("{name}.wasm"));
    std::fs::write(&out, &component).with_context(|| format!("writing {}", out.display()))?;
    Ok((name.to_owned(), out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::stats::{Lag, Stats, StepStats};

    /// The registry `wait` of a Kafka manifest with `guarantee`, `[application.kafka.properties]`
    /// lines and `[application.schema_registry]` lines.
    fn wait(guarantee: &str, properties: &str, registry: &str) -> Result<i64, String> {
        let text = format!(
            "version = 1\n[application]\nid = \"t\"\nprocessing_guarantee = \"{guarantee}\"\n\
             [application.kafka]\nbootstrap_servers = \"127.0.0.1:9092\"\n\
             [application.kafka.properties]\n{properties}\n\
             [application.schema_registry]\nurl = \"http://127.0.0.1:8081\"\n{registry}\n\
             [pipelines.p]\nfrom = \"in\"\nto = \"out\"\n"
        );
        let loaded = crate::manifest::parse(std::path::Path::new("w.toml"), text).map_err(|e| e.to_string())?;
        let topology = crate::topology::build(&loaded, &crate::runtime::operator_specs()).map_err(|e| e.to_string())?;
        Ok(topology.schema_registry.expect("a registry").wait_ms)
    }

    #[test]
    fn under_exactly_once_v2_the_registry_wait_stays_within_half_the_transaction_timeout() {
        assert_eq!(wait("at_least_once", "", ""), Ok(30_000));
        assert_eq!(wait("exactly_once", "", "wait = \"1m\""), Ok(60_000));
        // The default is lowered to half of the transaction timeout (10 s unless set).
        assert_eq!(wait("exactly_once_v2", "", ""), Ok(5_000));
        assert_eq!(wait("exactly_once_v2", "\"transaction.timeout.ms\" = \"120000\"", ""), Ok(30_000));
        assert_eq!(wait("exactly_once_v2", "\"transaction.timeout.ms\" = \"20000\"", "wait = \"10s\""), Ok(10_000));
        // A longer wait is refused where it is written.
        let e = wait("exactly_once_v2", "", "wait = \"6s\"").expect_err("6 s is past half of 10 s");
        assert!(e.contains("w.toml:11") && e.contains("application.schema_registry.wait"), "{e}");
        assert!(e.contains("at most 5000 ms"), "{e}");
    }

    fn step(name: &str, records_in: u64, errors: u64) -> StepStats {
        StepStats { step: name.to_owned(), records_in, errors, ..StepStats::default() }
    }

    /// `wasp build` of JavaScript: the SDK goes in place of the import from "wasp", once;
    /// other names are refused with the line; a file without the import is taken as it is.
    #[test]
    fn the_javascript_sdk_goes_in_place_of_its_import() {
        let code = "import { KeyValueStore } from \"wasp:plugin/state@0.1.0\";\nimport wasp, { RecordError } from \"wasp\";\nexport const filter = wasp.filter({});\n";
        let out = with_js_sdk(code).expect("spliced");
        let sdk_at = out.find(template::JS_SDK).expect("the SDK, whole");
        assert!(out[..sdk_at].ends_with("state@0.1.0\";\n"), "the lines before stay before");
        assert!(out.ends_with("export const filter = wasp.filter({});\n"), "and the code after, after");
        assert!(!out.replace(template::JS_SDK, "").contains("from \"wasp\""), "the import itself is gone");
        assert_eq!(
            with_js_sdk("import wasp from 'wasp'\nx();\n").expect("single quotes").matches(template::JS_SDK).count(),
            1
        );

        let e = with_js_sdk("\nimport wasp, { Frobnicate } from \"wasp\";\n").expect_err("an unknown name");
        assert!(format!("{e}").contains("line 2") && format!("{e}").contains("`Frobnicate`"), "{e}");
        let twice = "import wasp from \"wasp\";\nimport { RecordError } from \"wasp\";\n";
        assert!(
            format!("{}", with_js_sdk(twice).expect_err("twice")).contains("line 2: the wasp SDK is imported twice")
        );
        let carried = "// an app.js with the SDK pasted in\nconst wasp = {};\n";
        assert_eq!(with_js_sdk(carried).expect("as it is"), carried);
    }

    #[test]
    fn the_status_line_counts_input_sources_only_and_sums_the_lag() {
        let inputs: BTreeSet<String> = ["source-in".to_owned()].into();
        let before =
            Stats { steps: vec![step("source-in", 100, 0), step("source-repartition", 900, 0)], ..Stats::default() };
        let now = Stats {
            steps: vec![step("source-in", 300, 0), step("source-repartition", 2900, 0), step("p-0-map_values", 300, 2)],
            lag: vec![
                Lag { topic: "in".into(), partition: 0, lag: 5 },
                Lag { topic: "in".into(), partition: 1, lag: 7 },
            ],
            ..Stats::default()
        };
        assert_eq!(
            status_text("app", &inputs, &before, &now, 2.0),
            "app: 100 rec/s · 300 read · 2 errors · 0 late · lag 12"
        );
        let quiet = Stats { steps: now.steps.clone(), ..Stats::default() };
        assert_eq!(
            status_text("app", &inputs, &now, &quiet, 1.0),
            "app: 0 rec/s · 300 read · 2 errors · 0 late · lag -"
        );
    }
}
