//! Tasks and the loop that feeds them. A task runs one sub-topology for one partition: it owns
//! its operators (and so its plugin instances and state stores) and turns an input batch into
//! output records. The loop is the same for local files and for Kafka: it polls a
//! [`RecordSource`], runs the task, and hands the outputs to a [`RecordSink`].
//!
//! Every commit interval (and at the end) the loop commits: the stores' pending writes go to
//! their changelogs, the sink is flushed, then the stores write locally and the input offsets
//! are committed, in that order (at-least-once; the stores' positions make state updates
//! apply once, see [`crate::state`]).

mod task;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

pub use task::{Stopped, Task, TaskError, TaskOutput};

use crate::io::{ChangelogReader, Poll, RecordSink, RecordSource};
use crate::state::{Store, StoreSpec, store_dir};
use crate::topology::Topology;
use crate::wasm::PluginDirectory;

/// What a finished run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunStats {
    pub records_in: u64,
    pub records_out: u64,
    pub batches: u64,
    pub failed_records: u64,
    /// Records dropped because their windows had closed.
    pub late_records: u64,
    pub commits: u64,
    /// Changelog entries applied while restoring stores.
    pub restored_entries: u64,
}

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub batch_size: usize,
    pub commit_interval: Duration,
    /// Where persistent stores live.
    pub state_dir: PathBuf,
    /// Whether stores write changelogs (off in local mode: there is no broker to keep them).
    pub changelogs: bool,
    /// Where built-in metrics (late records, steps, lag) are counted.
    pub metrics: crate::wasm::MetricsRegistry,
    /// Set once the loop runs (the admin endpoint's `/ready`).
    pub ready: Arc<AtomicBool>,
}

/// Runs the topology until the source is exhausted or `stop` is set. In-flight batches finish
/// and are committed before it returns.
pub fn run(
    topology: &Arc<Topology>,
    plugins: &PluginDirectory,
    source: &mut dyn RecordSource,
    sink: &mut dyn RecordSink,
    mut restorer: Option<&mut dyn ChangelogReader>,
    options: &RunOptions,
    stop: &AtomicBool,
) -> anyhow::Result<RunStats> {
    let mut tasks: BTreeMap<(usize, i32), Task> = BTreeMap::new();
    let mut stats = RunStats::default();
    let mut offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut last_commit = Instant::now();
    let lookup = |name: &str| plugins.get(name);
    options.ready.store(true, Ordering::Relaxed);
    while !stop.load(Ordering::Relaxed) {
        for (topic, partition) in source.take_revoked() {
            if let Some(sub) = topology.subtopologies.iter().find(|s| s.source_topics.contains(&topic))
                && tasks.remove(&(sub.id, partition)).is_some()
            {
                // What the task did since the last commit is not committed: the partition's
                // new owner reads it again, and its stores skip what they applied.
                offsets.retain(|(t, p), _| !(sub.source_topics.contains(t) && *p == partition));
                tracing::info!(task = %Task::name(sub.id, partition), "task closed: partition revoked");
            }
        }
        let batch = match source.poll(options.batch_size)? {
            Poll::Batch(b) => b,
            Poll::Idle => {
                tick(&mut tasks, sink, &mut stats)?;
                if !offsets.is_empty() {
                    commit(&mut tasks, source, sink, &mut offsets, &mut stats)?;
                    last_commit = Instant::now();
                    report_lag(source, &options.metrics);
                }
                continue;
            }
            Poll::Exhausted => break,
        };
        let sub = topology
            .subtopologies
            .iter()
            .find(|s| s.source_topics.contains(&batch.topic))
            .with_context(|| format!("no sub-topology reads topic `{}`", batch.topic))?;
        let key = (sub.id, batch.partition);
        let task = match tasks.entry(key) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let name = Task::name(sub.id, batch.partition);
                let mut open = |spec: &StoreSpec| {
                    open_store(topology, spec, &name, batch.partition, options, restorer.as_deref_mut(), &mut stats)
                };
                let task = Task::new(topology.clone(), sub.id, batch.partition, &lookup, &mut open, &options.metrics)
                    .with_context(|| format!("starting task {name}"))?;
                tracing::debug!(task = %name, "task started");
                e.insert(task)
            }
        };
        let n = batch.records.len() as u64;
        let last_offset = batch.records.last().map(|r| r.origin.offset);
        let output = task.process(&batch.topic, batch.records)?;
        stats.records_in += n;
        stats.batches += 1;
        stats.failed_records += output.failed;
        for (step, n) in &output.late {
            stats.late_records += n;
            options.metrics.late_records(step, *n);
        }
        for (topic, records) in &output.records {
            sink.send(topic, records)?;
            stats.records_out += records.len() as u64;
        }
        if let Some(offset) = last_offset {
            offsets.insert((batch.topic.clone(), batch.partition), offset + 1);
        }
        let mut cache_full = false;
        for t in tasks.values_mut() {
            t.with_stores(&mut |s| cache_full |= s.pending_bytes() > s.spec.cache_bytes);
        }
        tick(&mut tasks, sink, &mut stats)?;
        if last_commit.elapsed() >= options.commit_interval || cache_full {
            commit(&mut tasks, source, sink, &mut offsets, &mut stats)?;
            last_commit = Instant::now();
            report_lag(source, &options.metrics);
        }
    }
    commit(&mut tasks, source, sink, &mut offsets, &mut stats)?;
    source.close()?;
    Ok(stats)
}

/// Sets `wasp_consumer_lag` from what the source knows without asking the broker.
fn report_lag(source: &dyn RecordSource, metrics: &crate::wasm::MetricsRegistry) {
    for (topic, partition, lag) in source.lag() {
        metrics.consumer_lag(&topic, partition, lag);
    }
}

/// Lets the tasks' wall-clock timers fire, and sends what they emit.
fn tick(
    tasks: &mut BTreeMap<(usize, i32), Task>,
    sink: &mut dyn RecordSink,
    stats: &mut RunStats,
) -> anyhow::Result<()> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    for task in tasks.values_mut() {
        let output = task.tick(now_ms)?;
        stats.failed_records += output.failed;
        for (topic, records) in &output.records {
            sink.send(topic, records)?;
            stats.records_out += records.len() as u64;
        }
    }
    Ok(())
}

/// Changelogs, flush, local state, input offsets: in this order, so that nothing is
/// committed before what it depends on is acknowledged.
fn commit(
    tasks: &mut BTreeMap<(usize, i32), Task>,
    source: &mut dyn RecordSource,
    sink: &mut dyn RecordSink,
    offsets: &mut BTreeMap<(String, i32), i64>,
    stats: &mut RunStats,
) -> anyhow::Result<()> {
    let mut result = Ok(());
    for task in tasks.values_mut() {
        task.with_stores(&mut |store| {
            let records = store.prepare_commit();
            if let (Some((topic, partition)), Ok(())) = (store.changelog(), &result) {
                result = sink.send_to(topic, *partition, &records);
            }
        });
    }
    result?;
    sink.flush().context("waiting for the outputs to be acknowledged")?;
    let mut result = Ok(());
    for task in tasks.values_mut() {
        task.with_stores(&mut |store| {
            let acked = store.changelog().and_then(|(t, p)| sink.acked_offset(t, *p));
            if result.is_ok() {
                result = store.commit(acked).with_context(|| format!("committing store `{}`", store.name()));
            }
        });
    }
    result?;
    for ((topic, partition), offset) in std::mem::take(offsets) {
        source.commit(&topic, partition, offset)?;
    }
    stats.commits += 1;
    Ok(())
}

/// Opens a store of a task and brings it up to date: local files, then the changelog tail.
fn open_store<'d>(
    topology: &Topology,
    spec: &StoreSpec,
    task: &str,
    partition: i32,
    options: &RunOptions,
    restorer: Option<&mut (dyn ChangelogReader + 'd)>,
    stats: &mut RunStats,
) -> Result<Store, crate::state::StateError> {
    let dir = store_dir(&options.state_dir, &topology.application_id, task, &spec.name);
    let changelog = options.changelogs.then(|| (topology.changelog_topic(&spec.name), partition));
    let mut store = Store::open(spec.clone(), Some(&dir), changelog)?;
    if let (Some(reader), Some((topic, partition))) = (restorer, store.changelog().cloned()) {
        let from = store.checkpoint().unwrap_or(0);
        let started = Instant::now();
        let mut restore = store.begin_restore();
        reader
            .read(&topic, partition, from, &mut |offset, record| restore.apply(offset, record))
            .map_err(|e| crate::state::StateError::Backend { store: spec.name.clone(), message: format!("{e:#}") })?;
        let applied = restore.finish()?;
        stats.restored_entries += applied;
        if applied > 0 {
            let secs = started.elapsed().as_secs_f64();
            tracing::info!(
                store = %spec.name, task, entries = applied, from_offset = from,
                rate = format!("{:.0}/s", applied as f64 / secs.max(1e-9)),
                "store restored from its changelog"
            );
        }
    }
    Ok(store)
}
