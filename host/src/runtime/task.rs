use std::sync::Arc;

use bytes::Bytes;

use std::time::{Duration, Instant};

use crate::manifest::{Format, OnError, RetryDef};
use crate::operators::{ConstructError, Emitted, Failure, Operator, PluginLookup, TaskContext, construct};
use crate::record::{Header, Record};
use crate::state::{POSITION_HEADER, Position, Sequencer, StateError, Store, StoreSpec};
use crate::topology::{NodeId, NodeOp, Topology};
use crate::wasm::MetricsRegistry;
use crate::wasm::host::metrics::StepMetrics;

/// What a batch produced: runs of records for output topics (sinks and dead letters), in
/// order. Records of one sink stay together, so the topic is named once per run, not per record.
#[derive(Debug, Default)]
pub struct TaskOutput {
    pub records: Vec<(String, Vec<Record>)>,
    /// Records that failed and were skipped or dead-lettered.
    pub failed: u64,
    /// Records dropped because their windows had closed, per step.
    pub late: Vec<(String, u64)>,
}

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

pub struct Task {
    topology: Arc<Topology>,
    /// The operator of each node of this task's sub-topology (others are `None`).
    operators: Vec<Option<Box<dyn Operator>>>,
    /// Input topics, indexed by `Origin::topic`.
    topics: Vec<String>,
    pub partition: i32,
    /// Numbers the records written to repartition topics that share an input position.
    sequencer: Sequencer,
    /// Each node's built-in metrics (sinks and repartitions have none).
    metrics: Vec<Option<StepMetrics>>,
}

impl Task {
    /// Builds the task's operators. `open_store` opens (and restores) each store the
    /// sub-topology uses.
    pub fn new(
        topology: Arc<Topology>,
        sub: usize,
        partition: i32,
        lookup: PluginLookup<'_>,
        open_store: &mut dyn FnMut(&StoreSpec) -> Result<Store, StateError>,
        metrics: &MetricsRegistry,
    ) -> Result<Self, ConstructError> {
        let mut operators: Vec<Option<Box<dyn Operator>>> = (0..topology.nodes.len()).map(|_| None).collect();
        let mut step_metrics: Vec<Option<StepMetrics>> = (0..topology.nodes.len()).map(|_| None).collect();
        let s = &topology.subtopologies[sub];
        let topics = s.source_topics.clone();
        let mut ctx = TaskContext { lookup, topics: &topics, open_store };
        for &id in &s.nodes {
            let node = topology.node(id);
            operators[id] = Some(construct(node, &topology.stores, &mut ctx)?);
            if !matches!(node.op, NodeOp::Sink { .. } | NodeOp::Repartition { .. }) {
                step_metrics[id] = Some(metrics.step(&node.pipeline, &node.name));
            }
        }
        Ok(Self { topology, operators, topics, partition, sequencer: Sequencer::default(), metrics: step_metrics })
    }

    /// Calls `f` on each of the task's state stores.
    pub fn with_stores(&mut self, f: &mut dyn FnMut(&mut Store)) {
        for op in self.operators.iter_mut().flatten() {
            op.with_stores(f);
        }
    }

    /// The task's name, `<sub-topology>_<partition>`, as in Kafka Streams.
    pub fn name(sub: usize, partition: i32) -> String {
        format!("{sub}_{partition}")
    }

    /// Runs one batch read from `topic` through the sub-topology.
    pub fn process(&mut self, topic: &str, mut records: Vec<Record>) -> Result<TaskOutput, TaskError> {
        let topic_index = self.topics.iter().position(|t| t == topic).unwrap_or(0) as u32;
        for r in &mut records {
            r.origin.topic = topic_index;
            r.origin.partition = self.partition;
        }
        let mut out = TaskOutput::default();
        let Some(&source) = self.topology.sources.get(topic) else {
            return Ok(out);
        };
        let records = self.deserialize(source, topic, records, &mut out)?;
        // Depth-first, so a batch's records reach the sinks in order.
        self.drive(vec![(source, records)], &mut out)?;
        Ok(out)
    }

    /// Wall-clock time passed: operators' timers may fire, and what they emit flows on.
    pub fn tick(&mut self, now_ms: i64) -> Result<TaskOutput, TaskError> {
        let mut out = TaskOutput::default();
        for id in 0..self.operators.len() {
            let Some(op) = self.operators[id].as_mut() else { continue };
            let emitted = op.tick(now_ms);
            let mut work = Vec::new();
            self.route(id, emitted, &mut work, &mut out)?;
            self.drive(work, &mut out)?;
        }
        Ok(out)
    }

    fn drive(&mut self, mut work: Vec<(NodeId, Vec<Record>)>, out: &mut TaskOutput) -> Result<(), TaskError> {
        while let Some((id, batch)) = work.pop() {
            if batch.is_empty() {
                continue;
            }
            let node = self.topology.node(id);
            if let NodeOp::Sink { topic } = &node.op {
                out.records.push((topic.clone(), batch));
                continue;
            }
            if let NodeOp::Repartition { topic } = &node.op {
                let topic = topic.clone();
                let mut batch = batch;
                self.stamp_positions(&mut batch);
                out.records.push((topic, batch));
                continue;
            }
            let Some(op) = self.operators[id].as_mut() else { continue };
            let started = Instant::now();
            let n = batch.len() as u64;
            let policy = &self.topology.node(id).policy;
            let retrying = policy.on_error == OnError::Retry && op.rerunnable();
            // A step that retries numbers its input, so what passes on a retry can take its
            // place again (the number rides in a header the plugin never sees).
            let batch = if retrying { numbered(batch) } else { batch };
            let mut emitted = isolate(op.as_mut(), batch);
            if retrying {
                if !emitted.failures.is_empty() {
                    retry(op.as_mut(), &policy.retry, &mut emitted, self.metrics[id].as_ref());
                }
                unnumber(&mut emitted);
            }
            if let Some(m) = &self.metrics[id] {
                m.records_in.inc_by(n);
                let routed: usize = emitted.routed.iter().map(|(_, r)| r.len()).sum();
                m.records_out.inc_by((emitted.all.len() + routed) as u64);
                m.batch_seconds.observe(started.elapsed().as_secs_f64());
            }
            self.route(id, emitted, &mut work, out)?;
        }
        Ok(())
    }

    /// Checks keys and values of a topic declared `json` (Kafka Streams' deserialization
    /// step): a record that does not parse follows the error policy of the pipeline reading it,
    /// with the code `deserialization`, and never reaches a plugin.
    fn deserialize(
        &self,
        source: NodeId,
        topic: &str,
        records: Vec<Record>,
        out: &mut TaskOutput,
    ) -> Result<Vec<Record>, TaskError> {
        let formats = self.topology.formats(topic);
        let (key, value) = (formats.key == Format::Json, formats.value == Format::Json);
        if !key && !value {
            return Ok(records);
        }
        let check = |field: &str, b: Option<&Bytes>| -> Result<(), String> {
            match b {
                Some(b) => serde_json::from_slice::<serde::de::IgnoredAny>(b)
                    .map(drop)
                    .map_err(|e| format!("the {field} is not JSON: {e}")),
                None => Ok(()),
            }
        };
        let mut good = Vec::with_capacity(records.len());
        let mut failed = Vec::new();
        for r in records {
            let verdict = if key { check("key", r.key.as_ref()) } else { Ok(()) }
                .and_then(|()| if value { check("value", r.value.as_ref()) } else { Ok(()) });
            match verdict {
                Ok(()) => good.push(r),
                Err(message) => failed.push(Failure {
                    record: r,
                    code: "deserialization".to_owned(),
                    message,
                    plugin: String::new(),
                }),
            }
        }
        self.apply_policy(source, failed, out)?;
        Ok(good)
    }

    /// Applies the error policy to what failed at `id`, and queues what it emitted for its
    /// children (the last child first in line, so records reach sinks in order).
    fn route(
        &self,
        id: NodeId,
        emitted: Emitted,
        work: &mut Vec<(NodeId, Vec<Record>)>,
        out: &mut TaskOutput,
    ) -> Result<(), TaskError> {
        self.apply_policy(id, emitted.failures, out)?;
        if emitted.late > 0 {
            out.late.push((self.topology.node(id).name.clone(), emitted.late));
        }
        out.records.extend(emitted.to_topics);
        let children = &self.topology.node(id).children;
        for (target, recs) in emitted.routed.into_iter().rev() {
            work.push((target, recs));
        }
        if !emitted.all.is_empty()
            && let Some((&last, rest)) = children.split_last()
        {
            for &c in rest.iter().rev() {
                work.push((c, emitted.all.clone()));
            }
            // The last child takes the batch itself; pushed first so it runs last.
            let pos = work.len() - rest.len();
            work.insert(pos, (last, emitted.all));
        }
        Ok(())
    }

    /// Every record written to a repartition topic carries where its input was read, so the
    /// store that reads it back applies it once even if it is written twice.
    fn stamp_positions(&mut self, batch: &mut [Record]) {
        let mut direct = crate::state::DirectUpstream::default();
        for r in batch {
            let upstream = direct.name(&self.topics, r);
            let p = self.sequencer.next(upstream, Position { offset: r.origin.offset, seq: 0 });
            let value = Bytes::from(format!("{upstream}/{}/{}", p.offset, p.seq));
            match r.headers.iter_mut().find(|h| h.name == POSITION_HEADER) {
                Some(h) => h.value = Some(value),
                None => r.headers.push(Header { name: POSITION_HEADER.to_owned(), value: Some(value) }),
            }
        }
    }

    /// `TaskError::Stopped` for a failure at `node`.
    fn stopped(&self, node: NodeId, f: &Failure) -> TaskError {
        let n = self.topology.node(node);
        let origin = f.record.origin;
        TaskError::Stopped(Box::new(Stopped {
            pipeline: n.pipeline.clone(),
            step: n.name.clone(),
            plugin: f.plugin.clone(),
            code: f.code.clone(),
            message: f.message.clone(),
            topic: self.topics.get(origin.topic as usize).cloned().unwrap_or_default(),
            partition: origin.partition,
            offset: origin.offset,
        }))
    }

    /// Applies the node's error policy to what failed there in one batch; the metric is
    /// counted once per batch, not per record.
    fn apply_policy(&self, node: NodeId, failures: Vec<Failure>, out: &mut TaskOutput) -> Result<(), TaskError> {
        if failures.is_empty() {
            return Ok(());
        }
        let policy = self.topology.node(node).policy.final_policy();
        let applied = if matches!(policy, OnError::Stop | OnError::Retry) { 1 } else { failures.len() };
        if let Some(m) = &self.metrics[node] {
            m.failed(policy.name(), applied as u64);
        }
        for f in failures {
            self.apply_one(node, policy, f, out)?;
        }
        Ok(())
    }

    fn apply_one(&self, node: NodeId, policy: OnError, f: Failure, out: &mut TaskOutput) -> Result<(), TaskError> {
        let n = self.topology.node(node);
        match policy {
            OnError::Stop | OnError::Retry => Err(self.stopped(node, &f)),
            OnError::Skip => {
                tracing::warn!(
                    step = %n.name, plugin = %f.plugin, code = %f.code, error = %f.message,
                    offset = f.record.origin.offset, "record skipped"
                );
                out.failed += 1;
                Ok(())
            }
            OnError::DeadLetter => {
                let mut r = f.record;
                let topic = self.topics.get(r.origin.topic as usize).cloned().unwrap_or_default();
                let h = |name: &str, value: String| Header { name: name.to_owned(), value: Some(Bytes::from(value)) };
                r.headers.extend([
                    h("wasp.error.code", f.code),
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
                out.failed += 1;
                out.records.push((n.policy.dead_letter_topic.clone(), vec![r]));
                Ok(())
            }
        }
    }
}

/// The longest wait between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// `on_error = "retry"`: runs the records that failed through `op` again, up to
/// `retry.attempts` times, waiting `backoff_ms`, doubled each time, before each run. What
/// passes joins the output; what still fails is left in `emitted.failures` for the policy
/// after the retries.
fn retry(op: &mut dyn Operator, retry: &RetryDef, emitted: &mut Emitted, metrics: Option<&StepMetrics>) {
    for attempt in 0..retry.attempts {
        if emitted.failures.is_empty() {
            return;
        }
        let wait = Duration::from_millis(retry.backoff_ms.saturating_mul(1 << attempt.min(20))).min(MAX_BACKOFF);
        std::thread::sleep(wait);
        let records: Vec<Record> = std::mem::take(&mut emitted.failures).into_iter().map(|f| f.record).collect();
        if let Some(m) = metrics {
            m.retries.inc_by(records.len() as u64);
        }
        tracing::info!(records = records.len(), attempt = attempt + 1, of = retry.attempts, "retrying failed records");
        let again = isolate(op, records);
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
}

/// The header that numbers a retrying step's input records; it never leaves the step.
const INPUT_INDEX_HEADER: &str = "wasp.internal.input-index";

/// `batch` with each record numbered in order (stateless operators keep an input record's
/// headers on what they make of it).
fn numbered(mut batch: Vec<Record>) -> Vec<Record> {
    for (i, r) in batch.iter_mut().enumerate() {
        let index = Bytes::copy_from_slice(&(i as u32).to_le_bytes());
        r.headers.push(Header { name: INPUT_INDEX_HEADER.to_owned(), value: Some(index) });
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
fn unnumber(emitted: &mut Emitted) {
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
fn isolate(op: &mut dyn Operator, batch: Vec<Record>) -> Emitted {
    let len = batch.len();
    let emitted = op.process(batch);
    let all_trapped = len > 1
        && op.rerunnable()
        && emitted.all.is_empty()
        && emitted.routed.is_empty()
        && emitted.failures.len() == len
        && emitted.failures.iter().all(|f| f.code == "trap");
    if !all_trapped {
        return emitted;
    }
    let mut records: Vec<Record> = emitted.failures.into_iter().map(|f| f.record).collect();
    let second = records.split_off(len / 2);
    let mut out = isolate(op, records);
    let more = isolate(op, second);
    out.all.extend(more.all);
    out.routed.extend(more.routed);
    out.failures.extend(more.failures);
    out.to_topics.extend(more.to_topics);
    out.late += more.late;
    out
}
