//! `process`: a custom processor plugin (Kafka Streams' Processor API). It gets each batch,
//! forwards what it likes down the pipeline or to its named children (topics), keeps state in
//! the stores its step names (through the WIT `state` interface), and is called back by
//! timers: on stream time after each batch, on wall-clock time whenever the loop ticks.

use std::collections::BTreeMap;

use super::{
    ConstructError, Emitted, Failure, Operator, OperatorSpec, PluginStep, StepFailures, TaskContext, wrong_node,
};
use crate::record::{DecodedBatch, Headers, Record};
use crate::state::{DirectUpstream, Sequencer, Store, upstream_of};
use crate::topology::{Field, Form, Node, NodeOp, PluginKind, PluginUse, StepSpec};
use crate::wasm::Setup;
use crate::wasm::bindings::processor::{Clock, Forwarded};
use crate::wasm::host::state::SharedStores;

/// The longest timer interval: a year. A longer one (`u64::MAX` for "never") is this.
pub const MAX_TIMER_INTERVAL_MS: i64 = 365 * 24 * 3_600_000;

struct Timer {
    name: String,
    interval: i64,
    clock: Clock,
    next: Option<i64>,
}

/// `process`: a processor plugin with the `stores` it opens and its named `children`.
pub static PROCESS: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: "process",
        fields: &[Field::Stores, Field::Children],
        plugin: PluginUse::Required(PluginKind::Processor),
        form: Form::Process,
        note: None, tables: false
    },
    construct: Some(construct),
};

fn construct(node: &Node, ctx: &mut TaskContext<'_>) -> Result<Box<dyn Operator>, ConstructError> {
    let NodeOp::Process { plugin, stores: names, children } = &node.op else {
        return Err(wrong_node("process", node));
    };
    let mut opened = BTreeMap::new();
    for name in names {
        opened.insert(name.clone(), ctx.open(name)?);
    }
    let opened: SharedStores = std::sync::Arc::new(std::sync::Mutex::new(opened));
    let step = ctx.step_with(plugin, Some(opened.clone()))?;
    Ok(Box::new(Processor::new(step, opened, children.clone(), ctx.topics.to_vec())))
}

pub struct Processor {
    step: PluginStep,
    stores: SharedStores,
    /// Child name → topic.
    children: BTreeMap<String, String>,
    topics: Vec<String>,
    seq: Sequencer,
    timers: Vec<Timer>,
    /// Stream time, when the processor has no store to keep it in.
    stream_time: Option<i64>,
    /// The step's [`PluginStep::replaced`] the timers were taken at.
    timers_of: u64,
    /// Where the last record came from: what wall-clock timers forward carries it, so a
    /// repartition downstream stamps this task's partition.
    last_origin: crate::record::Origin,
}

impl Processor {
    /// `step`'s instance has been set up with `stores` (its `init` has run).
    pub fn new(
        step: PluginStep,
        stores: SharedStores,
        children: BTreeMap<String, String>,
        topics: Vec<String>,
    ) -> Self {
        let mut p = Self {
            step,
            stores,
            children,
            topics,
            seq: Sequencer::default(),
            timers: Vec::new(),
            stream_time: None,
            timers_of: u64::MAX,
            last_origin: Default::default(),
        };
        p.take_timers();
        p
    }

    /// After the instance was replaced (a swap, a rollback, a rebuild after a trap), its
    /// `init` has run again: its timers replace the old ones. A timer it kept (same name and
    /// clock) keeps its next firing time, so a swap neither skips nor repeats a firing.
    fn take_timers(&mut self) {
        if self.timers_of == self.step.replaced() {
            return;
        }
        self.timers_of = self.step.replaced();
        let Setup::Timers(asked) = self.step.setup() else { return };
        let old = std::mem::take(&mut self.timers);
        self.timers = asked
            .iter()
            .map(|t| Timer {
                name: t.name.clone(),
                interval: i64::try_from(t.interval_ms).unwrap_or(i64::MAX).clamp(1, MAX_TIMER_INTERVAL_MS),
                clock: t.clock,
                next: old.iter().find(|o| o.name == t.name && o.clock == t.clock).and_then(|o| o.next),
            })
            .collect();
    }

    /// Turns what the plugin forwarded into records for the next step and the children.
    fn route(&self, forwarded: Forwarded, input: &[Record], origin: crate::record::Origin, out: &mut Emitted) {
        for e in forwarded.errors {
            if let Some(r) = input.get(e.index as usize) {
                out.failures.push(self.step.failure(r.clone(), e.code, e.message));
            }
        }
        let produced =
            match DecodedBatch::new(forwarded.records.index, forwarded.records.timestamps, forwarded.records.data) {
                Ok(p) if p.len() == forwarded.children.len() => p,
                other => {
                    let reason = match other {
                        Err(e) => format!("forwarded a malformed batch: {}", e.0),
                        Ok(p) => format!("forwarded {} records with {} children", p.len(), forwarded.children.len()),
                    };
                    let e = crate::wasm::CallFailure::Trap { plugin: self.step.label().to_owned(), reason };
                    out.failures.extend(self.step.fail_all(input.to_vec(), &e));
                    return;
                }
            };
        for (i, child) in forwarded.children.iter().enumerate() {
            let r = Record {
                key: produced.key(i),
                value: produced.value(i),
                timestamp: produced.timestamp(i).unwrap_or_else(|| input.first().map_or(0, |r| r.timestamp)),
                headers: Headers::new(),
                origin,
                old: None,
            };
            if child.is_empty() {
                out.all.push(r);
            } else if let Some(topic) = self.children.get(child) {
                match out.to_topics.last_mut() {
                    Some((t, records)) if t == topic => records.push(r),
                    _ => out.to_topics.push((topic.clone(), vec![r])),
                }
            } else {
                let known: Vec<&String> = self.children.keys().collect();
                out.failures.push(Failure {
                    record: r,
                    code: super::FailureCode::UnknownChild,
                    message: format!("forwarded to child `{child}`; the step's children are {known:?}"),
                    plugin: self.step.label().to_owned(),
                });
            }
        }
    }

    /// Whether a stream-time timer is due at stream time `now` (one never fired is due at once).
    fn stream_timer_due(&self, now: i64) -> bool {
        self.timers.iter().any(|t| matches!(t.clock, Clock::StreamTime) && t.next.unwrap_or(0) <= now)
    }

    /// Runs a run of records through the plugin.
    fn process_run(&mut self, run: &[Record], out: &mut Emitted) {
        let origin = run.last().map_or(self.last_origin, |r| r.origin);
        match self.step.call(run, |i, f, b| i.process(f, b)) {
            Ok(forwarded) => self.route(forwarded, run, origin, out),
            Err(e) => out.failures.extend(self.step.fail_all(run.to_vec(), &e)),
        }
        self.take_timers();
    }

    /// Fires each stream-time timer due at stream time `now`, as Kafka Streams'
    /// `PunctuationQueue` does: schedules are aligned to 0, so a timer first fires as soon as
    /// there is data; it is called back with the stream time (not the scheduled time); and an
    /// advance past several intervals fires it once, its next time the first aligned one
    /// after `now` (`PunctuationSchedule.next`: missed punctuations are skipped).
    fn fire_stream_timers(&mut self, now: i64, origin: crate::record::Origin, out: &mut Emitted) {
        for i in 0..self.timers.len() {
            if !matches!(self.timers[i].clock, Clock::StreamTime) {
                continue;
            }
            let due = self.timers[i].next.unwrap_or(0);
            if now < due {
                continue;
            }
            self.fire(i, now, origin, out);
            let interval = self.timers[i].interval.max(1);
            let missed = now.saturating_sub(due) / interval;
            self.timers[i].next = Some(due.saturating_add(missed.saturating_add(1).saturating_mul(interval)));
        }
    }

    fn fire(&mut self, index: usize, time: i64, origin: crate::record::Origin, out: &mut Emitted) {
        let name = self.timers[index].name.clone();
        match self.step.call_plain(|i, f| i.punctuate(f, &name, time)) {
            Ok(forwarded) => self.route(forwarded, &[], origin, out),
            Err(e) => {
                tracing::error!(plugin = %self.step.label(), timer = %name, error = %e, "a timer callback failed")
            }
        }
    }
}

impl Operator for Processor {
    fn process(&mut self, input: Vec<Record>) -> Emitted {
        let mut out = Emitted::default();
        let Some(last_origin) = input.last().map(|r| r.origin) else { return out };
        self.last_origin = last_origin;
        // Records applied before (read again after a crash) are skipped, as in aggregations.
        let mut fresh = Vec::with_capacity(input.len());
        let mut stream_time = self.stream_time;
        // Stream time before this batch (a store keeps it across restarts).
        let mut prior = self.stream_time;
        let mut direct = DirectUpstream::default();
        if let Ok(mut stores) = self.stores.lock() {
            prior = prior.or_else(|| stores.values().next().and_then(|s| s.stream_time()));
            for r in input {
                let name = direct.name(&self.topics, &r);
                let new = match (upstream_of(&r, name), stores.values_mut().next()) {
                    (Some((upstream, p)), Some(first)) => {
                        let p = self.seq.next(upstream, p);
                        first.first_time(upstream, p)
                    }
                    _ => true,
                };
                if new {
                    stream_time = Some(stream_time.map_or(r.timestamp, |t| t.max(r.timestamp)));
                    for s in stores.values_mut() {
                        s.advance_stream_time(r.timestamp);
                    }
                    fresh.push(r);
                }
            }
            if let Some(first) = stores.values().next() {
                stream_time = first.stream_time().or(stream_time);
            }
        } else {
            fresh = input;
        }
        self.stream_time = stream_time;
        // Stream-time timers fire as stream time passes them, between the records, as Kafka
        // Streams punctuates after each record: the batch goes to the plugin in runs, cut
        // after each record that makes a timer due, so the outputs do not depend on batching.
        let mut st = prior;
        let mut start = 0;
        for j in 0..fresh.len() {
            st = Some(st.map_or(fresh[j].timestamp, |t| t.max(fresh[j].timestamp)));
            if st.is_some_and(|now| self.stream_timer_due(now)) {
                self.process_run(&fresh[start..=j], &mut out);
                start = j + 1;
                if let Some(now) = st {
                    self.fire_stream_timers(now, fresh[j].origin, &mut out);
                }
            }
        }
        if start < fresh.len() {
            self.process_run(&fresh[start..], &mut out);
        }
        self.take_timers();
        if let Some(now) = self.stream_time {
            self.fire_stream_timers(now, last_origin, &mut out);
        }
        out
    }

    fn tick(&mut self, now_ms: i64) -> Emitted {
        // Timers fire by index below; a swap during a callback takes effect at the next batch
        // or tick.
        self.take_timers();
        let mut out = Emitted::default();
        for i in 0..self.timers.len() {
            if !matches!(self.timers[i].clock, Clock::WallClock) {
                continue;
            }
            match self.timers[i].next {
                None => self.timers[i].next = Some(now_ms.saturating_add(self.timers[i].interval)),
                // As Kafka Streams: called back with the wall-clock time, the schedule kept
                // aligned to when it started, missed intervals skipped.
                Some(due) if now_ms >= due => {
                    self.fire(i, now_ms, self.last_origin, &mut out);
                    let interval = self.timers[i].interval.max(1);
                    let missed = now_ms.saturating_sub(due) / interval;
                    self.timers[i].next = Some(due.saturating_add(missed.saturating_add(1).saturating_mul(interval)));
                }
                Some(_) => {}
            }
        }
        out
    }

    fn with_stores(&mut self, f: &mut dyn FnMut(&mut Store)) {
        if let Ok(mut stores) = self.stores.lock() {
            for s in stores.values_mut() {
                f(s);
            }
        }
    }

    /// A processor's key-value stores answer queries with the keys and values it wrote (its
    /// window and session stores answer nothing yet).
    fn query(
        &mut self,
        store: &str,
        query: &crate::state::StoreQuery,
        limit: usize,
    ) -> Option<crate::state::QueryResult> {
        let stores = self.stores.lock().ok()?;
        let s = stores.get(store)?;
        (s.spec.kind == crate::state::StoreKind::KeyValue).then(|| crate::state::query_values(s, &[crate::state::windows::DATA], query, limit))
    }

    fn rerunnable(&self) -> bool {
        false
    }
}
