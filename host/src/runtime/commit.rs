//! Committing a thread's work, and opening the stores of its tasks.
//!
//! A commit goes outputs → flush → changelogs (and exactly-once bounds) → flush → local state
//! → input offsets, so that nothing is committed before what it depends on is acknowledged (at-least-once; the stores' positions
//! make state updates apply once, see [`crate::state`]). Under exactly_once_v2 the input
//! offsets commit with the outputs and changelogs in one Kafka transaction, before the local
//! state is written.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;

use super::task::Task;
use super::{RunOptions, RunStats};
use crate::io::{ChangelogReader, RecordSink, RecordSource};
use crate::state::{StateError, Store, StoreSpec, store_dir};
use crate::topology::Topology;

/// What became of a thread's commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// Stores and input offsets are committed.
    All,
    /// The stores are, but the group refused the input offsets for now (a rebalance is in
    /// progress, or the coordinator is away): they stay, to be committed with the next ones.
    OffsetsRefused,
    /// exactly_once_v2: the transaction was aborted; the thread goes back to its last commit.
    Aborted,
}

/// Commits every task of a thread, and the input offsets of what they finished. A task parked
/// to retry a step is left out, offsets and stores: the batch it is in the middle of has
/// updated its stores but not yet reached its sinks, so its last commit stands until it is
/// through (its records are then processed again after a crash, and applied once).
pub fn commit(
    tasks: &mut BTreeMap<(usize, i32), Task>,
    source: &mut dyn RecordSource,
    sink: &mut dyn RecordSink,
    offsets: &mut BTreeMap<(String, i32), i64>,
    stats: &mut RunStats,
    mut lineage: Option<&mut super::eos::ThreadLineage>,
    transactional: bool,
) -> anyhow::Result<Committed> {
    let parked: Vec<(Vec<String>, i32)> =
        tasks.values().filter(|t| t.parked_until().is_some()).map(|t| (t.topics.clone(), t.partition)).collect();
    // The outputs first: a changelog marker records the inputs a store applied, and a
    // restarted task skips them, so the marker must not land before their outputs have (a
    // kill during one flush of both could keep the marker and lose outputs).
    sink.flush().context("waiting for the outputs to be acknowledged")?;
    let mut result = Ok(());
    for task in tasks.values_mut().filter(|t| t.parked_until().is_none()) {
        task.with_stores(&mut |store| {
            let records = store.prepare_commit();
            if let (Some((topic, partition)), Ok(())) = (store.changelog(), &result) {
                result = sink.send_to(topic, *partition, &records);
            }
        });
    }
    result?;
    // Offsets the group refused (a rebalance) stay, to be committed with the next ones; the
    // partitions the rebalance takes away drop theirs when their tasks close.
    let ready: BTreeMap<(String, i32), i64> = offsets
        .iter()
        .filter(|((t, p), _)| !parked.iter().any(|(topics, pp)| pp == p && topics.contains(t)))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    // Exactly-once: what is sent from now on lies past everything acknowledged; each task
    // whose input moved writes its bounds entry before its offsets are committed.
    let mut moved = Vec::new();
    if let Some(l) = lineage.as_deref_mut() {
        for (topic, partition, offset) in sink.acked_offsets() {
            l.raise(&topic, partition, offset + 1);
        }
        let mut entries = Vec::new();
        for (key, task) in tasks.iter() {
            let inputs: super::eos::Bounds = task
                .topics
                .iter()
                .filter_map(|t| ready.get(&(t.clone(), task.partition)).map(|o| ((t.clone(), task.partition), *o)))
                .collect();
            if inputs.is_empty() {
                continue;
            }
            if let Some(entry) = l.entry(*key, &inputs) {
                entries.push(entry);
                let next: Vec<Option<i64>> =
                    task.topics.iter().map(|t| inputs.get(&(t.clone(), task.partition)).copied()).collect();
                moved.push((*key, next));
            }
        }
        if !entries.is_empty() {
            let topic = l.topic.clone();
            sink.send_to(&topic, 0, &entries)?;
        }
    }
    sink.flush().context("waiting for the changelogs to be acknowledged")?;
    // exactly_once_v2: the transaction (outputs, changelogs, offsets) commits before the
    // stores are written: a crash between leaves stores behind their changelogs, and the
    // restore reads the committed changelog records. An aborted one leaves them as they were.
    if transactional {
        if !source.commit(&ready)? {
            return Ok(Committed::Aborted);
        }
        offsets.retain(|k, _| !ready.contains_key(k));
    }
    let mut result = Ok(());
    for (&(sub, partition), task) in tasks.iter_mut().filter(|(_, t)| t.parked_until().is_none()) {
        task.with_stores(&mut |store| {
            let acked = store.changelog().and_then(|(t, p)| sink.acked_offset(t, *p));
            if result.is_ok() {
                // The store's error names it; this names the task, and what is not done.
                result = store.commit(acked).with_context(|| {
                    format!(
                        "task {}: writing its stores failed; no input offset is committed past it",
                        Task::name(sub, partition)
                    )
                });
            }
        });
    }
    result?;
    let mut outcome = Committed::All;
    if !transactional && !ready.is_empty() && !source.commit(&ready)? {
        outcome = Committed::OffsetsRefused;
    } else if !transactional && !ready.is_empty() {
        offsets.retain(|k, _| !ready.contains_key(k));
        // The numbering of what the moved tasks write starts again.
        if let Some(l) = lineage {
            for (key, next) in moved {
                if let Some(tl) = l.tasks.get_mut(&key) {
                    tl.committed(&next);
                }
            }
        }
    }
    stats.commits += 1;
    Ok(outcome)
}

/// Opens a store of a task and brings it up to date: local files, then the changelog tail.
pub fn open_store<'d>(
    topology: &Topology,
    spec: &StoreSpec,
    task: &str,
    partition: i32,
    options: &RunOptions,
    restorer: Option<&mut (dyn ChangelogReader + 'd)>,
    stats: &mut RunStats,
) -> Result<Store, StateError> {
    let dir = store_dir(&options.state_dir, &topology.application_id, task, &spec.name);
    // A table's store restores from the table's own topic and writes no changelog.
    let changelog =
        (options.changelogs && spec.source_topic.is_none()).then(|| (topology.changelog_topic(&spec.name), partition));
    let mut store = Store::open(spec.clone(), Some(&dir), changelog)?;
    store.set_format(super::store_format(&options.codecs, &spec.name));
    restore_store(&mut store, spec, task, partition, options, restorer, stats)?;
    Ok(store)
}

/// Brings an open store up to date from its checkpoint: the changelog's tail, or for a table's
/// store its own topic up to the offset the group committed.
pub fn restore_store<'d>(
    store: &mut Store,
    spec: &StoreSpec,
    task: &str,
    partition: i32,
    options: &RunOptions,
    mut restorer: Option<&mut (dyn ChangelogReader + 'd)>,
    stats: &mut RunStats,
) -> Result<(), StateError> {
    let failed = |e: anyhow::Error| StateError::Backend { store: spec.name.clone(), message: format!("{e:#}") };
    let restore_from = match (&spec.source_topic, store.changelog().cloned()) {
        (Some(topic), _) if options.changelogs => {
            // Up to the offset the group committed: the records after it are the task's to
            // process (and emit) as new.
            let upstream = format!("{topic}/{partition}");
            let from = store.position(&upstream).map_or(0, |p| p.offset + 1);
            match restorer.as_deref_mut().map(|r| r.committed(topic, partition)).transpose().map_err(failed)?.flatten()
            {
                Some(to) if to > from => Some((topic.clone(), (from, Some(to)), Some(upstream))),
                _ => None,
            }
        }
        (None, Some((topic, _))) => Some((topic, (store.checkpoint().unwrap_or(0), None), None)),
        _ => None,
    };
    if let (Some(reader), Some((topic, range, rows_of))) = (restorer, restore_from) {
        let from = range.0;
        let started = Instant::now();
        let mut restore = match rows_of.clone() {
            Some(upstream) => store.begin_table_restore(upstream),
            None => store.begin_restore(),
        };
        // A table's own topic holds its format's bytes: read into JSON as a task reads them.
        let (codecs, mut buf) = (&options.codecs, Vec::new());
        let table = rows_of.is_some();
        reader
            .read(&topic, partition, range, &mut |offset, record| {
                let record =
                    if table { super::task::table_record(codecs, &topic, record, &mut buf) } else { Some(record) };
                record.map_or(Ok(()), |r| restore.apply(offset, r))
            })
            .map_err(failed)?;
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
    Ok(())
}
