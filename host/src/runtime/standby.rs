//! Standby replicas (`[application] num_standby_replicas`, Kafka Streams'
//! `num.standby.replicas`): an instance keeps warm copies of the stores of tasks that run on
//! other instances, from their changelogs, so that a fail-over to it restores only the tail.
//!
//! Which instance keeps which: the instances announce their tasks ([`Hosts`]); for a task that
//! runs elsewhere, the `replicas` instances that follow its owner, in the order of their
//! addresses, keep standbys of it. Every [`CATCH_UP`] the standby thread brings each standby
//! task's changelogged stores up to their changelogs' ends: it opens them once
//! (`commit::open_store`: local files, then the changelog from their checkpoint, the same
//! restore a task does) and keeps them open, reading each changelog's tail from where it left
//! off. It closes a task's stores as soon as the task is no longer one it keeps, within
//! [`RECHECK`]: a task that moves here waits for them (its open finds them locked and retries)
//! and finds its files a moment behind.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::commit::{open_store, restore_store};
use super::hosts::{Hosts, TaskKey};
use super::{RunOptions, RunStats, Task};
use crate::io::ChangelogReader;
use crate::state::{StateError, Store};
use crate::topology::Topology;

/// How often the standby stores catch up with their changelogs.
pub const CATCH_UP: Duration = Duration::from_secs(1);
/// How often the standby thread looks for tasks it no longer keeps, whose stores it closes.
pub const RECHECK: Duration = Duration::from_millis(50);

/// The standby stores open, by task and store name.
type OpenStores = BTreeMap<(TaskKey, String), Store>;

/// The standby thread; stopped (and joined) by [`Standby::stop`].
pub struct Standby {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl Standby {
    /// Starts keeping standbys of `replicas` per task, reading changelogs with `reader`.
    pub fn start(
        topology: Arc<Topology>,
        options: RunOptions,
        replicas: usize,
        mut reader: Box<dyn ChangelogReader + Send>,
    ) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wasp-standby".into())
            .spawn(move || run(&topology, &options, replicas, reader.as_mut(), &s))
            .map_err(|e| anyhow::anyhow!("starting the standby thread: {e}"))?;
        Ok(Self { stop, thread })
    }

    pub fn stop(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Release);
        self.thread.join().map_err(|_| anyhow::anyhow!("the standby thread panicked"))?
    }
}

fn run(
    topology: &Topology,
    options: &RunOptions,
    replicas: usize,
    reader: &mut dyn ChangelogReader,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut kept = BTreeSet::new();
    let mut open = OpenStores::new();
    let mut stats = RunStats::default();
    while !stop.load(Ordering::Acquire) {
        let started = Instant::now();
        let mut tasks = options.hosts.standby_tasks(replicas);
        tasks.retain(|&(sub, _)| standby_stores(topology, sub).next().is_some());
        for &(sub, partition) in tasks.iter().filter(|t| !kept.contains(*t)) {
            tracing::info!(task = %Task::name(sub, partition), "keeping a standby of the task's stores");
        }
        kept = tasks;
        open.retain(|(task, _), _| kept.contains(task));
        for &(sub, partition) in &kept {
            if stop.load(Ordering::Acquire) {
                break;
            }
            catch_up(topology, options, (sub, partition), reader, &mut stats, &mut open);
        }
        let left = CATCH_UP.saturating_sub(started.elapsed());
        let until = Instant::now() + left;
        while Instant::now() < until && !stop.load(Ordering::Acquire) {
            std::thread::sleep(RECHECK);
            // A task that moved here (or away) gets its stores back at once.
            if !open.is_empty() {
                let now = options.hosts.standby_tasks(replicas);
                open.retain(|(task, _), _| now.contains(task));
            }
        }
    }
    Ok(())
}

/// Brings the changelogged stores of `task` up to their changelogs' ends, on disk, opening the
/// ones not open yet.
fn catch_up(
    topology: &Topology,
    options: &RunOptions,
    (sub, partition): TaskKey,
    reader: &mut dyn ChangelogReader,
    stats: &mut RunStats,
    open: &mut OpenStores,
) {
    let name = Task::name(sub, partition);
    for spec in standby_stores(topology, sub) {
        let key = ((sub, partition), spec.name.clone());
        let caught_up = match open.get_mut(&key) {
            Some(store) => {
                restore_store(store, spec, &name, partition, options, Some(&mut *reader), stats).map(|()| None)
            }
            None => open_store(topology, spec, &name, partition, options, Some(&mut *reader), stats).map(Some),
        };
        match caught_up {
            Ok(Some(store)) => {
                open.insert(key, store);
            }
            Ok(None) => {}
            // The task runs here now: its stores are its own.
            Err(StateError::Locked { .. }) => {}
            Err(e) => {
                // Opened again from its files next time.
                open.remove(&key);
                tracing::warn!(task = %name, store = %spec.name, error = %e, "a standby store did not catch up");
            }
        }
    }
}

/// The stores of sub-topology `sub` a standby keeps: persistent ones with a changelog (a
/// table's store restores from its own topic, up to the group's offset, when its task opens).
fn standby_stores(topology: &Topology, sub: usize) -> impl Iterator<Item = &crate::state::StoreSpec> {
    topology.subtopologies[sub]
        .nodes
        .iter()
        .flat_map(|&id| topology.node(id).op.stores())
        .filter_map(|name| topology.stores.get(name))
        .filter(|s| s.persistent && s.changelog && s.source_topic.is_none())
}

impl Hosts {
    /// The tasks this instance keeps standbys of: those that run on another instance whose
    /// `replicas` followers, in the order of the instances' addresses, include this one.
    pub fn standby_tasks(&self, replicas: usize) -> BTreeSet<TaskKey> {
        let instances = self.task_owners();
        let Some(me) = instances.iter().position(|(_, _, mine)| *mine) else { return BTreeSet::new() };
        let n = instances.len();
        let mut out = BTreeSet::new();
        for (i, (_, tasks, _)) in instances.iter().enumerate() {
            if i == me {
                continue;
            }
            // The owner's followers: i+1, i+2, … around the ring, `replicas` of them.
            let keeps = (1..=replicas.min(n - 1)).any(|k| (i + k) % n == me);
            if keeps {
                out.extend(tasks.iter().copied());
            }
        }
        let mine = &instances[me].1;
        out.retain(|t| !mine.contains(t));
        out
    }
}
