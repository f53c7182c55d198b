//! Standby replicas (`[application] num_standby_replicas`, Kafka Streams'
//! `num.standby.replicas`): an instance keeps warm copies of the stores of tasks that run on
//! other instances, from their changelogs, so that a fail-over to it restores only the tail.
//!
//! Which instance keeps which: the instances announce their tasks ([`Hosts`]); for a task that
//! runs elsewhere, the `replicas` instances that follow its owner, in the order of their
//! addresses, keep standbys of it. Every [`CATCH_UP`] the standby thread brings each standby
//! task's changelogged stores up to their changelogs' ends by opening them (`commit::open_store`:
//! local files, then the changelog from their checkpoint, the same restore a task does) and
//! closing them again. A task that moves here finds its files a moment behind and opens them
//! itself; while the task runs here, its stores are locked, and the standby leaves them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::commit::open_store;
use super::hosts::{Hosts, TaskKey};
use super::{RunOptions, RunStats, Task};
use crate::io::ChangelogReader;
use crate::state::StateError;
use crate::topology::Topology;

/// How often the standby stores catch up with their changelogs.
pub const CATCH_UP: Duration = Duration::from_secs(1);

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
    let mut stats = RunStats::default();
    while !stop.load(Ordering::Acquire) {
        let started = Instant::now();
        let mut tasks = options.hosts.standby_tasks(replicas);
        tasks.retain(|&(sub, _)| standby_stores(topology, sub).next().is_some());
        for &(sub, partition) in tasks.iter().filter(|t| !kept.contains(*t)) {
            tracing::info!(task = %Task::name(sub, partition), "keeping a standby of the task's stores");
        }
        kept = tasks;
        for &(sub, partition) in &kept {
            if stop.load(Ordering::Acquire) {
                break;
            }
            catch_up(topology, options, (sub, partition), reader, &mut stats);
        }
        let left = CATCH_UP.saturating_sub(started.elapsed());
        let until = Instant::now() + left;
        while Instant::now() < until && !stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// Brings the changelogged stores of `task` up to their changelogs' ends, on disk.
fn catch_up(
    topology: &Topology,
    options: &RunOptions,
    (sub, partition): TaskKey,
    reader: &mut dyn ChangelogReader,
    stats: &mut RunStats,
) {
    let name = Task::name(sub, partition);
    for spec in standby_stores(topology, sub) {
        match open_store(topology, spec, &name, partition, options, Some(&mut *reader), stats) {
            Ok(store) => drop(store),
            // The task runs here now: its stores are its own.
            Err(StateError::Locked { .. }) => {}
            Err(e) => tracing::warn!(task = %name, store = %spec.name, error = %e, "a standby store did not catch up"),
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
