//! `count`, `reduce` and `aggregate` of a grouped table (Kafka Streams' `KTableAggregate` and
//! `KTableReduce`, after `KGroupedTable`). Each change from the repartition carries the value
//! that enters its group and, in the [`OLD_VALUE_HEADER`], the one that leaves it: the old
//! value is taken out of the aggregate by the subtractor (a count goes down by one), then the
//! new one folded in by the adder (a count goes up by one; an aggregate without one starts
//! from the adder's initial aggregate, a reduce from the value itself). Each update emits the
//! group's new aggregate with its old one beside it; an aggregate that becomes absent is
//! deleted (a count that reaches 0 stays 0, as in Kafka Streams). The result's timestamp is
//! the later of the record's and the aggregate's.
//!
//! Plugin calls are batched: the batch is cut into runs in which each group appears once, and
//! each run makes one subtractor call and one adder call (a batch of distinct groups: two
//! calls; the same group over and over: two per record).

use bytes::Bytes;

use super::aggregate::{decode_results, initial_of};
use super::{ConstructError, Emitted, Failure, FailureCode, Operator, PluginStep, TaskContext};
use crate::record::{EncodedBatch, OLD_VALUE_HEADER, Record};
use crate::state::{DirectUpstream, Store, table_row, table_row_parts, upstream_of};
use crate::topology::{FoldOp, Node, TableFold};

pub fn construct(
    node: &Node,
    fold: &FoldOp,
    table: &TableFold,
    store: &str,
    ctx: &mut TaskContext<'_>,
) -> Result<Box<dyn Operator>, ConstructError> {
    let sub = table.subtractor.as_ref().map(|s| ctx.step(s)).transpose()?;
    let kind = match (fold, sub) {
        (FoldOp::Count, _) => Kind::Count,
        (FoldOp::Reduce(p), Some(sub)) => Kind::Reduce { add: ctx.step(p)?, sub },
        (FoldOp::Aggregate(p), Some(sub)) => Kind::Aggregate { add: ctx.step(p)?, sub },
        (_, None) => return Err(super::wrong_node("a grouped table's fold without a subtractor", node)),
    };
    Ok(Box::new(TableAggregate {
        kind,
        store: ctx.open(store)?,
        topics: ctx.topics.to_vec(),
        direct: DirectUpstream::default(),
        current: EncodedBatch::default(),
        row: Vec::new(),
    }))
}

enum Kind {
    Count,
    Reduce { add: PluginStep, sub: PluginStep },
    Aggregate { add: PluginStep, sub: PluginStep },
}

struct TableAggregate {
    kind: Kind,
    store: Store,
    topics: Vec<String>,
    direct: DirectUpstream,
    /// The aggregates a call starts from, encoded: reused from call to call.
    current: EncodedBatch,
    row: Vec<u8>,
}

/// A record of the run being folded: its group's aggregate before it, and what it becomes.
struct Entry {
    record: Record,
    old: Option<Bytes>,
    /// The group's aggregate before the record, with its timestamp.
    before: Option<(i64, Bytes)>,
    /// After the subtractor, then after the adder.
    after: Option<Bytes>,
    failed: Option<(FailureCode, String, String)>,
}

impl TableAggregate {
    /// Calls `step` to fold `values[i]` into `current[i]` (one slot per entry): `reduce`, or
    /// `aggregate` with absent aggregates starting from the instance's initial one.
    fn call(
        step: &mut PluginStep,
        reduce: bool,
        records: &[Record],
        current: &[Option<Bytes>],
        encoded: &mut EncodedBatch,
    ) -> Vec<Result<Option<Bytes>, (FailureCode, String)>> {
        if records.is_empty() {
            return Vec::new();
        }
        let slots: Vec<u32> = (0..records.len() as u32).collect();
        let called = step.call(records, |i, f, b| {
            let initial = if reduce { None } else { initial_of(i.setup()) };
            encoded.clear();
            for (r, c) in records.iter().zip(current) {
                encoded.push(r.key.as_deref(), c.as_deref().or(initial), 0);
            }
            if reduce { i.reduce(f, b, &slots, encoded) } else { i.aggregate(f, b, &slots, encoded) }
        });
        match called.and_then(|o| decode_results(o, records.len(), step.label())) {
            Ok(r) => r,
            Err(e) => {
                let code = FailureCode::from(&e);
                vec![Err((code, e.to_string())); records.len()]
            }
        }
    }

    /// Folds a run in which each group appears once.
    fn fold_run(&mut self, run: Vec<Entry>, out: &mut Emitted) {
        let mut run = run;
        // Take the old values out.
        let subtract: Vec<usize> =
            (0..run.len()).filter(|&i| run[i].old.is_some() && run[i].before.is_some()).collect();
        let reduce = self.kind_is_reduce();
        match &mut self.kind {
            Kind::Count => {
                for e in &mut run {
                    let mut n: i64 =
                        e.before.as_ref().and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok()).unwrap_or(0);
                    let present = e.before.is_some();
                    if e.old.is_some() && present {
                        n -= 1;
                    }
                    if e.record.value.is_some() {
                        n += 1;
                    }
                    e.after = (present || e.record.value.is_some()).then(|| Bytes::from(n.to_string()));
                }
            }
            Kind::Reduce { add: adder, sub } | Kind::Aggregate { add: adder, sub } => {
                for e in &mut run {
                    e.after = e.before.as_ref().map(|(_, v)| v.clone());
                }
                let records: Vec<Record> = subtract
                    .iter()
                    .map(|&i| Record {
                        key: run[i].record.key.clone(),
                        value: run[i].old.clone(),
                        ..Default::default()
                    })
                    .collect();
                let current: Vec<Option<Bytes>> = subtract.iter().map(|&i| run[i].after.clone()).collect();
                let results = Self::call(sub, reduce, &records, &current, &mut self.current);
                for (&i, r) in subtract.iter().zip(results) {
                    match r {
                        Ok(v) => run[i].after = v,
                        Err((code, message)) => run[i].failed = Some((code, message, sub.label().to_owned())),
                    }
                }
                // Then add the new ones: a reduce starts an absent aggregate from the value.
                let add: Vec<usize> =
                    (0..run.len()).filter(|&i| run[i].failed.is_none() && run[i].record.value.is_some()).collect();
                let mut call_add = Vec::new();
                for &i in &add {
                    if reduce && run[i].after.is_none() {
                        run[i].after = run[i].record.value.clone();
                    } else {
                        call_add.push(i);
                    }
                }
                let records: Vec<Record> = call_add
                    .iter()
                    .map(|&i| Record {
                        key: run[i].record.key.clone(),
                        value: run[i].record.value.clone(),
                        ..Default::default()
                    })
                    .collect();
                let current: Vec<Option<Bytes>> = call_add.iter().map(|&i| run[i].after.clone()).collect();
                let results = Self::call(adder, reduce, &records, &current, &mut self.current);
                for (&i, r) in call_add.iter().zip(results) {
                    match r {
                        Ok(v) => run[i].after = v,
                        Err((code, message)) => run[i].failed = Some((code, message, adder.label().to_owned())),
                    }
                }
            }
        }
        for e in run {
            let mut r = e.record;
            if let Some((code, message, plugin)) = e.failed {
                r.old = e.old;
                out.failures.push(Failure { record: r, code, message, plugin });
                continue;
            }
            let Some(key) = r.key.clone() else { continue };
            let ts = match &e.before {
                Some((t, _)) => r.timestamp.max(*t),
                None => r.timestamp,
            };
            // A result the store cannot keep (past the cap, or not in its format) fails its record.
            match e.after.as_deref().map(|v| super::aggregate::keepable(&self.store, v).map(|s| (v, s))) {
                Some(Ok((v, stored))) => {
                    table_row(&mut self.row, ts, stored.as_deref().unwrap_or(v));
                    self.store.put_slice(&key, &self.row);
                }
                Some(Err((code, message))) => {
                    let plugin = self.plugin_label();
                    r.old = e.old;
                    out.failures.push(Failure { record: r, code, message, plugin });
                    continue;
                }
                None => self.store.delete(key.to_vec()),
            }
            r.headers.retain(|h| h.name != OLD_VALUE_HEADER);
            r.value = e.after;
            r.old = e.before.map(|(_, v)| v);
            r.timestamp = ts;
            out.all.push(r);
        }
    }

    /// The adder's label, for failures of its results.
    fn plugin_label(&self) -> String {
        match &self.kind {
            Kind::Count => "count (built in)".to_owned(),
            Kind::Reduce { add, .. } | Kind::Aggregate { add, .. } => add.label().to_owned(),
        }
    }

    fn kind_is_reduce(&self) -> bool {
        matches!(self.kind, Kind::Reduce { .. })
    }
}

impl Operator for TableAggregate {
    fn process(&mut self, input: Vec<Record>) -> Emitted {
        let mut out = Emitted::default();
        let mut run: Vec<Entry> = Vec::new();
        for r in input {
            let Some(key) = r.key.clone() else { continue };
            let Some((upstream, position)) = upstream_of(&r, self.direct.name(&self.topics, &r)) else { continue };
            let upstream = upstream.to_owned();
            // A group already in the run is folded first: its aggregate is then the latest.
            if run.iter().any(|e| e.record.key.as_ref() == Some(&key)) {
                self.fold_run(std::mem::take(&mut run), &mut out);
            }
            if !self.store.first_time(&upstream, position) {
                continue;
            }
            self.store.advance_stream_time(r.timestamp);
            let read = self.store.get(&key).and_then(|row| {
                let Some((t, v)) = row.as_deref().and_then(table_row_parts) else { return Ok(None) };
                Ok(Some((t, Bytes::from(self.store.view(v)?.into_owned()))))
            });
            let before = match read {
                Ok(before) => before,
                Err(e) => {
                    out.failures.push(Failure {
                        record: r,
                        code: FailureCode::State,
                        message: e.to_string(),
                        plugin: String::new(),
                    });
                    continue;
                }
            };
            let old =
                r.headers.iter().find(|h| h.name == OLD_VALUE_HEADER).and_then(|h| h.value.clone()).or(r.old.clone());
            run.push(Entry { record: r, old, before, after: None, failed: None });
        }
        self.fold_run(run, &mut out);
        out
    }

    fn with_stores(&mut self, f: &mut dyn FnMut(&mut Store)) {
        f(&mut self.store);
    }

    fn query(
        &mut self,
        store: &str,
        query: &crate::state::StoreQuery,
        limit: usize,
    ) -> Option<crate::state::QueryResult> {
        (self.store.name() == store).then(|| crate::state::query_rows(&self.store, query, limit))
    }

    fn rerunnable(&self) -> bool {
        false
    }
}
