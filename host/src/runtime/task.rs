//! A task: one sub-topology for one partition. It owns its operators (and so its plugin
//! instances and state stores) and turns an input batch into output records, depth-first, so
//! a batch's records reach the sinks in order. A step whose error policy retries parks the
//! task ([`Task::parked_until`]); the thread resumes it when the backoff ends
//! ([`Task::resume`]) and meanwhile runs its other tasks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::policy::{Retrying, TaskError, Work, backoff, isolate, numbered, retry_once, unnumber};
use crate::io::codec::{Codecs, Field, Mode};
use crate::manifest::{Format, OnError};
use crate::operators::{
    ConstructError, Emitted, Failure, FailureCode, Operator, PluginLookup, SharedStore, TaskContext, construct,
};
use crate::record::Record;
use crate::state::{StateError, Store, StoreSpec};
use crate::topology::{NodeId, NodeOp, Topology};
use crate::wasm::MetricsRegistry;
use crate::wasm::StepMetrics;

/// What a batch produced: runs of records for output topics (sinks, repartitions and dead
/// letters), in order. Records of one sink stay together, so the topic is named once per run,
/// not per record.
#[derive(Debug, Default)]
pub struct TaskOutput {
    pub records: Vec<(String, Vec<Record>)>,
    /// Records that failed and were skipped or dead-lettered.
    pub failed: u64,
    /// Records dropped because their windows had closed, per step.
    pub late: Vec<(String, u64)>,
}

pub struct Task {
    pub(super) topology: Arc<Topology>,
    /// The operator of each node of this task's sub-topology (others are `None`).
    operators: Vec<Option<Box<dyn Operator>>>,
    /// Input topics, indexed by `Origin::topic`.
    pub(super) topics: Vec<String>,
    pub partition: i32,
    /// Each node's built-in metrics (sinks and repartitions have none).
    pub(super) metrics: Vec<Option<StepMetrics>>,
    /// A step waiting to retry what failed, and the rest of its batch's work.
    retrying: Option<Retrying>,
    /// The converted topics' codecs: what is read is converted to JSON, what is written to
    /// the topic's format.
    codecs: Arc<Codecs>,
    /// A conversion's output, reused.
    converted: Vec<u8>,
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
        Self::with_globals(topology, sub, partition, lookup, open_store, metrics, &BTreeMap::new())
    }

    /// [`Task::new`], for a process that keeps `globals`: the global tables' stores, by name.
    pub fn with_globals(
        topology: Arc<Topology>,
        sub: usize,
        partition: i32,
        lookup: PluginLookup<'_>,
        open_store: &mut dyn FnMut(&StoreSpec) -> Result<Store, StateError>,
        metrics: &MetricsRegistry,
        globals: &BTreeMap<String, SharedStore>,
    ) -> Result<Self, ConstructError> {
        let mut operators: Vec<Option<Box<dyn Operator>>> = (0..topology.nodes.len()).map(|_| None).collect();
        let mut step_metrics: Vec<Option<StepMetrics>> = (0..topology.nodes.len()).map(|_| None).collect();
        let s = &topology.subtopologies[sub];
        let topics = s.source_topics.clone();
        let mut ctx =
            TaskContext { lookup, topics: &topics, stores: &topology.stores, open_store, tables: globals.clone() };
        for &id in &s.nodes {
            let node = topology.node(id);
            operators[id] = Some(construct(node, &mut ctx)?);
            if !matches!(node.op, NodeOp::Sink { .. } | NodeOp::Repartition { .. }) {
                step_metrics[id] = Some(metrics.step(&node.pipeline, &node.name));
            }
        }
        Ok(Self {
            topology,
            operators,
            topics,
            partition,
            metrics: step_metrics,
            retrying: None,
            codecs: Arc::new(Codecs::none(Mode::Json)),
            converted: Vec::new(),
        })
    }

    /// An interactive query of the store named `store`, if one of the task's operators owns
    /// it and answers queries.
    pub fn query(
        &mut self,
        store: &str,
        query: &crate::state::StoreQuery,
        limit: usize,
    ) -> Option<crate::state::QueryResult> {
        self.operators.iter_mut().flatten().find_map(|op| op.query(store, query, limit))
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

    /// When a step of the task waits to retry, the time its next attempt may run. The task
    /// takes no new batch and fires no timer until then.
    pub fn parked_until(&self) -> Option<Instant> {
        self.retrying.as_ref().map(|r| r.until)
    }

    /// Runs one batch read from `topic` through the sub-topology. The batch may end with the
    /// task parked ([`Self::parked_until`]): the rest of it runs in [`Self::resume`].
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
        self.drive(vec![(source, source, records)], &mut out)?;
        Ok(out)
    }

    /// Runs the next attempt of a parked step if its time has come, and what is left of its
    /// batch when the step is through.
    pub fn resume(&mut self, now: Instant) -> Result<TaskOutput, TaskError> {
        let mut out = TaskOutput::default();
        let Some(mut r) = self.retrying.take_if(|r| r.until <= now) else { return Ok(out) };
        let policy = &self.topology.node(r.node).policy;
        let Some(op) = self.operators[r.node].as_mut() else { return Ok(out) };
        let metrics = self.metrics[r.node].as_ref();
        retry_once(op.as_mut(), &policy.retry, &mut r, metrics);
        if !r.emitted.failures.is_empty() && r.attempt < policy.retry.attempts {
            r.until = Instant::now() + backoff(&policy.retry, r.attempt);
            self.retrying = Some(r);
            return Ok(out);
        }
        let Retrying { node, mut emitted, mut work, .. } = r;
        unnumber(&mut emitted);
        self.count_out(node, &emitted);
        self.route(node, emitted, &mut work, &mut out)?;
        self.drive(work, &mut out)?;
        Ok(out)
    }

    /// Records the task's operators hold back until the next [`Task::flush`].
    pub fn held(&self) -> usize {
        self.operators.iter().flatten().map(|op| op.held()).sum()
    }

    /// The task is about to commit: operators emit what they held back (record caches),
    /// upstream first, and it flows on to the sinks. A parked task is not committed, so it
    /// flushes nothing; a step that parks the task during the flush stops it there.
    pub fn flush(&mut self) -> Result<TaskOutput, TaskError> {
        let mut out = TaskOutput::default();
        // Node ids follow the manifest: a node comes after the nodes that feed it.
        for id in 0..self.operators.len() {
            if self.retrying.is_some() {
                break;
            }
            let Some(op) = self.operators[id].as_mut() else { continue };
            let emitted = op.flush();
            if emitted.all.is_empty() && emitted.routed.is_empty() && emitted.to_topics.is_empty() {
                continue;
            }
            self.count_out(id, &emitted);
            let mut work = Vec::new();
            self.route(id, emitted, &mut work, &mut out)?;
            self.drive(work, &mut out)?;
        }
        Ok(out)
    }

    /// Wall-clock time passed: operators' timers may fire, and what they emit flows on.
    pub fn tick(&mut self, now_ms: i64) -> Result<TaskOutput, TaskError> {
        let mut out = TaskOutput::default();
        if self.retrying.is_some() {
            return Ok(out);
        }
        for id in 0..self.operators.len() {
            let Some(op) = self.operators[id].as_mut() else { continue };
            let emitted = op.tick(now_ms);
            let mut work = Vec::new();
            self.route(id, emitted, &mut work, &mut out)?;
            self.drive(work, &mut out)?;
        }
        Ok(out)
    }

    /// Runs `work` (a stack: the last entry first) through the operators until it is done, or
    /// a step parks the task to retry; then the rest waits in [`Retrying::work`].
    fn drive(&mut self, mut work: Vec<Work>, out: &mut TaskOutput) -> Result<(), TaskError> {
        while let Some((id, from, batch)) = work.pop() {
            if batch.is_empty() {
                continue;
            }
            let Some(op) = self.operators[id].as_mut() else { continue };
            let started = Instant::now();
            let n = batch.len() as u64;
            let policy = &self.topology.node(id).policy;
            let retrying = policy.on_error == OnError::Retry && op.rerunnable() && policy.retry.attempts > 0;
            // A step that retries numbers its input, so what passes on a retry can take its
            // place again (the number rides in a header the plugin never sees).
            let batch = if retrying { numbered(batch) } else { batch };
            let mut emitted = isolate(op.as_mut(), from, batch);
            if let Some(m) = &self.metrics[id] {
                m.records_in.inc_by(n);
                m.batch_seconds.observe(started.elapsed().as_secs_f64());
            }
            if retrying {
                if !emitted.failures.is_empty() {
                    let until = Instant::now() + backoff(&policy.retry, 0);
                    let work = std::mem::take(&mut work);
                    self.retrying = Some(Retrying { node: id, emitted, attempt: 0, until, from, work });
                    return Ok(());
                }
                unnumber(&mut emitted);
            }
            self.count_out(id, &emitted);
            self.route(id, emitted, &mut work, out)?;
        }
        Ok(())
    }

    fn count_out(&self, id: NodeId, emitted: &Emitted) {
        if let Some(m) = &self.metrics[id] {
            let routed: usize = emitted.routed.iter().map(|(_, r)| r.len()).sum();
            m.records_out.inc_by((emitted.all.len() + routed) as u64);
        }
    }

    /// Converts the keys and values of the topics whose formats the host converts (Avro,
    /// Protobuf, JSON Schema, CSV) with `codecs`: read into JSON, and written from it.
    pub fn set_codecs(&mut self, codecs: Arc<Codecs>) {
        self.codecs = codecs;
    }

    /// Checks what is read (Kafka Streams' deserialization step): keys and values of a topic
    /// declared `json` parse as JSON, those declared `string` are UTF-8, and no record is
    /// larger than `max_record_bytes`. A record that fails follows the error policy of the
    /// pipeline reading it, with the code `deserialization`, and never reaches a plugin.
    fn deserialize(
        &mut self,
        source: NodeId,
        topic: &str,
        records: Vec<Record>,
        out: &mut TaskOutput,
    ) -> Result<Vec<Record>, TaskError> {
        let formats = self.topology.formats(topic);
        let (key, value) = (formats.key == Format::Json, formats.value == Format::Json);
        let max = self.topology.max_record_bytes;
        let size = |r: &Record| {
            let headers: usize = r.headers.iter().map(|h| h.name.len() + h.value.as_ref().map_or(0, Bytes::len)).sum();
            r.key.as_ref().map_or(0, Bytes::len) + r.value.as_ref().map_or(0, Bytes::len) + headers
        };
        let converts = self.codecs.converts(topic);
        if !key
            && !value
            && !formats.text_key
            && !formats.text_value
            && !converts
            && records.iter().all(|r| size(r) <= max)
        {
            return Ok(records);
        }
        let json = |field: &str, b: Option<&Bytes>| -> Result<(), String> {
            match b {
                Some(b) => serde_json::from_slice::<serde::de::IgnoredAny>(b)
                    .map(drop)
                    .map_err(|e| format!("the {field} is not JSON: {e}")),
                None => Ok(()),
            }
        };
        let text = |field: &str, b: Option<&Bytes>| -> Result<(), String> {
            match b {
                Some(b) => std::str::from_utf8(b).map(drop).map_err(|e| format!("the {field} is not UTF-8 text: {e}")),
                None => Ok(()),
            }
        };
        let mut good = Vec::with_capacity(records.len());
        let mut failed = Vec::new();
        let mut buf = std::mem::take(&mut self.converted);
        for mut r in records {
            let bytes = size(&r);
            let verdict = if bytes > max {
                Err(format!("the record is {bytes} bytes, over `max_record_bytes` ({max})"))
            } else {
                Ok(())
            }
            .and_then(|()| if key { json("key", r.key.as_ref()) } else { Ok(()) })
            .and_then(|()| if value { json("value", r.value.as_ref()) } else { Ok(()) })
            .and_then(|()| if formats.text_key { text("key", r.key.as_ref()) } else { Ok(()) })
            .and_then(|()| if formats.text_value { text("value", r.value.as_ref()) } else { Ok(()) })
            .and_then(|()| {
                if converts { convert(&self.codecs, topic, &mut r, &mut buf, Direction::Read) } else { Ok(()) }
            });
            match verdict {
                Ok(()) => good.push(r),
                Err(message) => failed.push(Failure {
                    record: r,
                    code: FailureCode::Deserialization,
                    message,
                    plugin: String::new(),
                }),
            }
        }
        self.converted = buf;
        self.apply_policy(source, failed, out)?;
        Ok(good)
    }

    /// Converts what a step writes to topics whose formats the host converts; what does not
    /// convert fails with the code `serialization` and follows `id`'s error policy.
    fn serialize(&mut self, to_topics: &mut [(String, Vec<Record>)]) -> Vec<Failure> {
        let mut failed = Vec::new();
        if self.codecs.is_empty() {
            return failed;
        }
        let mut buf = std::mem::take(&mut self.converted);
        for (topic, records) in to_topics.iter_mut().filter(|(t, _)| self.codecs.converts(t)) {
            let mut kept = Vec::with_capacity(records.len());
            for mut r in records.drain(..) {
                match convert(&self.codecs, topic, &mut r, &mut buf, Direction::Write) {
                    Ok(()) => kept.push(r),
                    Err(message) => failed.push(Failure {
                        record: r,
                        code: FailureCode::Serialization,
                        message: format!("writing to `{topic}`: {message}"),
                        plugin: String::new(),
                    }),
                }
            }
            *records = kept;
        }
        self.converted = buf;
        failed
    }

    /// Applies the error policy to what failed at `id`, and queues what it emitted for its
    /// children (the last child first in line, so records reach sinks in order).
    fn route(
        &mut self,
        id: NodeId,
        mut emitted: Emitted,
        work: &mut Vec<Work>,
        out: &mut TaskOutput,
    ) -> Result<(), TaskError> {
        let unwritable = self.serialize(&mut emitted.to_topics);
        self.apply_policy(id, emitted.failures, out)?;
        self.apply_policy(id, unwritable, out)?;
        if emitted.late > 0 {
            out.late.push((self.topology.node(id).name.clone(), emitted.late));
        }
        out.records.extend(emitted.to_topics);
        let children = &self.topology.node(id).children;
        for (target, recs) in emitted.routed.into_iter().rev() {
            work.push((target, id, recs));
        }
        if !emitted.all.is_empty()
            && let Some((&last, rest)) = children.split_last()
        {
            for &c in rest.iter().rev() {
                work.push((c, id, emitted.all.clone()));
            }
            // The last child takes the batch itself; pushed first so it runs last.
            let pos = work.len() - rest.len();
            work.insert(pos, (last, id, emitted.all));
        }
        Ok(())
    }
}

/// A record of a table's topic as the table's store keeps it, read by a restore rather than a
/// task: converted keys and values read into JSON, as the task reads them. One that does not
/// convert gets no row (the task that processed it sent it where its error policy says); it is
/// logged.
pub(super) fn table_record(codecs: &Codecs, topic: &str, mut r: Record, buf: &mut Vec<u8>) -> Option<Record> {
    if !codecs.converts(topic) {
        return Some(r);
    }
    match convert(codecs, topic, &mut r, buf, Direction::Read) {
        Ok(()) => Some(r),
        Err(error) => {
            tracing::warn!(topic, offset = r.origin.offset, %error, "a table's record that does not convert has no row");
            None
        }
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Read,
    Write,
}

/// Converts `r`'s key and value, those of `topic` that `codecs` converts, in place (a null
/// stays null); the error names the field.
fn convert(codecs: &Codecs, topic: &str, r: &mut Record, buf: &mut Vec<u8>, dir: Direction) -> Result<(), String> {
    for field in [Field::Key, Field::Value] {
        let Some(codec) = codecs.get(topic, field) else { continue };
        let slot = match field {
            Field::Key => &mut r.key,
            Field::Value => &mut r.value,
        };
        let Some(bytes) = slot.as_ref() else { continue };
        let done = match dir {
            Direction::Read => codec.read(bytes, buf),
            Direction::Write => codec.write(bytes, buf),
        };
        done.map_err(|e| format!("the {} {e}", field.name()))?;
        *slot = Some(Bytes::copy_from_slice(buf));
    }
    Ok(())
}
