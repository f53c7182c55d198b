//! The error policy of a step: what happens to the records that failed there. `stop` ends the
//! run, `skip` logs and drops, `dead-letter` sends them, with headers saying why, to the
//! dead-letter topic as one run per batch, and `retry` runs them again later (see
//! [`Retrying`]): the task is parked until the backoff ends, and the other tasks of its
//! thread go on meanwhile. A batch that traps as a whole is split in halves ([`isolate`]), so
//! only the records that really make the plugin trap follow the policy.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::task::Task;
use crate::manifest::{OnError, RetryDef};
use crate::operators::{Emitted, Failure, FailureCode, Operator};
use crate::record::{Header, Record};
use crate::topology::NodeId;
use crate::wasm::StepMetrics;

/// A batch the task could not finish.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{0}")]
    Stopped(Box<Stopped>),
}

/// Where and why a pipeline with `on_error = "stop"` stopped.
#[derive(Debug, thiserror::Error)]
#[error(
    "pipeline `{pipeline}` stopped at step `{step}` (plugin {plugin}): {code}: {message} (record from {topic}[{partition}]@{offset}); set `on_error` to `skip` or `dead-letter` to go on past such records"
)]
pub struct Stopped {
    pub pipeline: String,
    pub step: String,
    pub plugin: String,
    pub code: String,
    pub message: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// The longest wait between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The wait before retry number `attempt` (from 0): `backoff_ms`, doubled each time.
pub fn backoff(retry: &RetryDef, attempt: u32) -> Duration {
    Duration::from_millis(retry.backoff_ms.saturating_mul(1 << attempt.min(20))).min(MAX_BACKOFF)
}

/// Records on their way to a node (`.0`) from one of its parents (`.1`).
pub type Work = (NodeId, NodeId, Vec<Record>);

/// A step that is waiting to run its failed records again. The task holds it, with the work
/// that was still to do when the step failed, and does nothing else until it is done: what
/// the batch emits after the step keeps its order.
pub struct Retrying {
    pub node: NodeId,
    /// What the step emitted so far; its failures are what the next attempt runs.
    pub emitted: Emitted,
    /// Attempts made so far.
    pub attempt: u32,
    /// When the next attempt may run.
    pub until: Instant,
    /// The node that sent the step what failed (joins tell their sides apart by it).
    pub from: NodeId,
    /// The rest of the batch's work in the task, to do once the step is through.
    pub work: Vec<Work>,
}

/// One more attempt at the records that failed: what passes joins the output in its input's
/// place; what still fails is left in `emitted.failures`.
pub fn retry_once(op: &mut dyn Operator, retry: &RetryDef, r: &mut Retrying, metrics: Option<&StepMetrics>) {
    let emitted = &mut r.emitted;
    let records: Vec<Record> = std::mem::take(&mut emitted.failures).into_iter().map(|f| f.record).collect();
    if let Some(m) = metrics {
        m.retries.inc_by(records.len() as u64);
    }
    r.attempt += 1;
    tracing::info!(records = records.len(), attempt = r.attempt, of = retry.attempts, "retrying failed records");
    let again = isolate(op, r.from, records);
    // What passes now takes its input's place among what passed before, so the batch's
    // output keeps the input order.
    emitted.all = in_input_order(std::mem::take(&mut emitted.all), again.all);
    for (target, records) in again.routed {
        match emitted.routed.iter_mut().find(|(t, _)| *t == target) {
            Some((_, before)) => *before = in_input_order(std::mem::take(before), records),
            None => emitted.routed.push((target, records)),
        }
    }
    for (topic, records) in again.to_topics {
        match emitted.to_topics.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, before)) => *before = in_input_order(std::mem::take(before), records),
            None => emitted.to_topics.push((topic, records)),
        }
    }
    emitted.late += again.late;
    emitted.failures = again.failures;
}

/// The header that numbers a retrying step's input records; it never leaves the step.
const INPUT_INDEX_HEADER: &str = "wasp.internal.input-index";

/// `batch` with each record numbered in order (stateless operators keep an input record's
/// headers on what they make of it).
pub fn numbered(mut batch: Vec<Record>) -> Vec<Record> {
    for (i, r) in batch.iter_mut().enumerate() {
        let index = Bytes::copy_from_slice(&(i as u32).to_le_bytes());
        r.headers.push(Header { name: Cow::Borrowed(INPUT_INDEX_HEADER), value: Some(index) });
    }
    batch
}

fn input_index(r: &Record) -> u32 {
    r.headers
        .iter()
        .rev()
        .find(|h| h.name == INPUT_INDEX_HEADER)
        .and_then(|h| Some(u32::from_le_bytes(h.value.as_deref()?.try_into().ok()?)))
        .unwrap_or(u32::MAX)
}

/// Takes the numbers off again, before anything leaves the step.
pub fn unnumber(emitted: &mut Emitted) {
    let strip = |r: &mut Record| r.headers.retain(|h| h.name != INPUT_INDEX_HEADER);
    emitted.all.iter_mut().for_each(strip);
    emitted.routed.iter_mut().flat_map(|(_, rs)| rs.iter_mut()).for_each(strip);
    emitted.to_topics.iter_mut().flat_map(|(_, rs)| rs.iter_mut()).for_each(strip);
    emitted.failures.iter_mut().for_each(|f| strip(&mut f.record));
}

/// Merges two outputs of one batch, each in input order, by the number of the input record
/// each came from; outputs of one input record are all on one side.
fn in_input_order(a: Vec<Record>, b: Vec<Record>) -> Vec<Record> {
    if a.is_empty() || b.is_empty() {
        return if a.is_empty() { b } else { a };
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    while let (Some(x), Some(y)) = (a.peek(), b.peek()) {
        let next = if input_index(y) < input_index(x) { b.next() } else { a.next() };
        out.extend(next);
    }
    out.extend(a);
    out.extend(b);
    out
}

/// Runs `op` on `batch`. When the whole batch fails with a trap (after the operator's own retry
/// on a fresh instance), the batch is split in halves and each is run again, so that only the
/// records that really make the plugin trap follow the error policy, and the others go on.
pub fn isolate(op: &mut dyn Operator, from: NodeId, batch: Vec<Record>) -> Emitted {
    let len = batch.len();
    let emitted = op.process_from(from, batch);
    let all_trapped = len > 1
        && op.rerunnable()
        && emitted.all.is_empty()
        && emitted.routed.is_empty()
        && emitted.failures.len() == len
        && emitted.failures.iter().all(|f| f.code == FailureCode::Trap);
    if !all_trapped {
        return emitted;
    }
    let mut records: Vec<Record> = emitted.failures.into_iter().map(|f| f.record).collect();
    let second = records.split_off(len / 2);
    let mut out = isolate(op, from, records);
    let more = isolate(op, from, second);
    out.all.extend(more.all);
    out.routed.extend(more.routed);
    out.failures.extend(more.failures);
    out.to_topics.extend(more.to_topics);
    out.late += more.late;
    out
}

impl Task {
    /// `TaskError::Stopped` for a failure at `node`.
    fn stopped(&self, node: NodeId, f: &Failure) -> TaskError {
        let n = self.topology.node(node);
        let origin = f.record.origin;
        TaskError::Stopped(Box::new(Stopped {
            pipeline: n.pipeline.clone(),
            step: n.name.clone(),
            plugin: f.plugin.clone(),
            code: f.code.to_string(),
            message: f.message.clone(),
            topic: self.topics.get(origin.topic as usize).cloned().unwrap_or_default(),
            partition: origin.partition,
            offset: origin.offset,
        }))
    }

    /// Applies the node's final error policy to what failed there in one batch: the metric
    /// is counted once, and dead letters leave as one run.
    pub(super) fn apply_policy(
        &self,
        node: NodeId,
        failures: Vec<Failure>,
        out: &mut super::TaskOutput,
    ) -> Result<(), TaskError> {
        if failures.is_empty() {
            return Ok(());
        }
        let n = self.topology.node(node);
        let policy = n.policy.final_policy();
        let applied = if matches!(policy, OnError::Stop | OnError::Retry) { 1 } else { failures.len() };
        if let Some(m) = &self.metrics[node] {
            m.failed(policy.name(), applied as u64);
        }
        match policy {
            OnError::Stop | OnError::Retry => Err(self.stopped(node, &failures[0])),
            OnError::Skip => {
                for f in &failures {
                    tracing::warn!(
                        step = %n.name, plugin = %f.plugin, code = %f.code, error = %f.message,
                        offset = f.record.origin.offset, "record skipped"
                    );
                }
                out.failed += failures.len() as u64;
                Ok(())
            }
            OnError::DeadLetter => {
                out.failed += failures.len() as u64;
                let letters = failures.into_iter().map(|f| self.dead_letter(node, f)).collect();
                out.records.push((n.policy.dead_letter_topic.clone(), letters));
                Ok(())
            }
        }
    }

    /// A failed record with the headers that say where it failed and why.
    fn dead_letter(&self, node: NodeId, f: Failure) -> Record {
        let n = self.topology.node(node);
        let mut r = f.record;
        let topic = self.topics.get(r.origin.topic as usize).cloned().unwrap_or_default();
        let h =
            |name: &'static str, value: String| Header { name: Cow::Borrowed(name), value: Some(Bytes::from(value)) };
        r.headers.extend([
            h("wasp.error.code", f.code.to_string()),
            h("wasp.error.message", f.message),
            h("wasp.error.step", n.name.clone()),
        ]);
        if !f.plugin.is_empty() {
            r.headers.push(h("wasp.error.plugin", f.plugin));
        }
        r.headers.extend([
            h("wasp.source.topic", topic),
            h("wasp.source.partition", r.origin.partition.to_string()),
            h("wasp.source.offset", r.origin.offset.to_string()),
        ]);
        r
    }
}
