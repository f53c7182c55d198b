//! Tasks and the loop that feeds them. A task runs one sub-topology for one partition: it owns
//! its operators (and so its plugin instances) and turns an input batch into output records.
//! The loop is the same for local files and for Kafka: it polls a [`RecordSource`], runs the
//! task, hands the outputs to a [`RecordSink`], waits until they are acknowledged, and only
//! then commits the input offsets (at-least-once).

mod task;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;

pub use task::{Stopped, Task, TaskError, TaskOutput};

use crate::io::{Poll, RecordSink, RecordSource};
use crate::topology::Topology;
use crate::wasm::LoadedPlugin;

/// What a finished run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunStats {
    pub records_in: u64,
    pub records_out: u64,
    pub batches: u64,
    pub failed_records: u64,
}

/// Runs the topology until the source is exhausted or `stop` is set. In-flight batches finish
/// and are committed before it returns.
pub fn run(
    topology: &Arc<Topology>,
    plugins: &BTreeMap<String, Arc<LoadedPlugin>>,
    source: &mut dyn RecordSource,
    sink: &mut dyn RecordSink,
    batch_size: usize,
    stop: &AtomicBool,
) -> anyhow::Result<RunStats> {
    let mut tasks: BTreeMap<(usize, i32), Task> = BTreeMap::new();
    let mut stats = RunStats::default();
    let lookup = |name: &str| plugins.get(name).cloned();
    while !stop.load(Ordering::Relaxed) {
        for (topic, partition) in source.take_revoked() {
            if let Some(sub) = topology.subtopologies.iter().find(|s| s.source_topics.contains(&topic))
                && tasks.remove(&(sub.id, partition)).is_some()
            {
                tracing::info!(task = %format!("{}_{partition}", sub.id), "task closed: partition revoked");
            }
        }
        let batch = match source.poll(batch_size)? {
            Poll::Batch(b) => b,
            Poll::Idle => continue,
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
                let task = Task::new(topology.clone(), sub.id, batch.partition, &lookup)
                    .with_context(|| format!("starting task {}_{}", sub.id, batch.partition))?;
                tracing::debug!(task = %format!("{}_{}", sub.id, batch.partition), "task started");
                e.insert(task)
            }
        };
        let n = batch.records.len() as u64;
        let last_offset = batch.records.last().map(|r| r.origin.offset);
        let output = task.process(&batch.topic, batch.records)?;
        stats.records_in += n;
        stats.batches += 1;
        stats.failed_records += output.failed;
        for (topic, records) in &output.records {
            sink.send(topic, records)?;
            stats.records_out += records.len() as u64;
        }
        sink.flush().context("waiting for the outputs to be acknowledged")?;
        if let Some(offset) = last_offset {
            source.commit(&batch.topic, batch.partition, offset + 1)?;
        }
    }
    source.close()?;
    Ok(stats)
}
