//! `join`, `left_join` and `outer_join`, with Kafka Streams' semantics (see each kind below).
//! A join node's first parent is its left side, its last the right; the value-joiner plugin
//! is called once per batch with both sides of every pair (`value-joiner.join`), a missing
//! side absent. The host does the state I/O.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::table::lookup;
use super::{
    ConstructError, Emitted, Failure, FailureCode, Operator, OperatorSpec, PluginStep, SharedStore, locked,
    TaskContext, wrong_node,
};
use crate::record::{DecodedBatch, EncodedBatch, Record};
use crate::state::windows::{key_prefix, time_bytes, time_from};
use crate::state::{DirectUpstream, Store, upstream_of, versions};
use crate::topology::{Field, Form, JoinKind, JoinWindow, JoinWith, Node, NodeId, NodeOp, PluginKind, PluginUse, StepSpec};

const FIELDS: &[Field] = &[Field::Table, Field::KeySelector, Field::ForeignKey, Field::Stream, Field::TimeDifference, Field::Before, Field::After, Field::Grace];

const fn spec(kind: JoinKind) -> OperatorSpec {
    OperatorSpec {
        step: StepSpec {
            name: kind.name(),
            fields: FIELDS,
            plugin: PluginUse::Required(PluginKind::ValueJoiner),
            form: Form::Join(kind),
            note: None,
            tables: true,
        },
        construct: Some(construct),
    }
}

pub static JOIN: OperatorSpec = spec(JoinKind::Inner);
pub static LEFT_JOIN: OperatorSpec = spec(JoinKind::Left);
pub static OUTER_JOIN: OperatorSpec = spec(JoinKind::Outer);

fn construct(node: &Node, ctx: &mut TaskContext<'_>) -> Result<Box<dyn Operator>, ConstructError> {
    let NodeOp::Join { kind, joiner, with } = &node.op else {
        return Err(wrong_node("join", node));
    };
    let (Some(&left), Some(&right)) = (node.parents.first(), node.parents.last()) else {
        return Err(wrong_node("join", node));
    };
    let table = |ctx: &TaskContext<'_>, store: &str| {
        ctx.tables.get(store).cloned().ok_or_else(|| crate::state::StateError::Backend {
            store: store.to_owned(),
            message: "the table's store is not open in this task".to_owned(),
        })
    };
    let joiner = Joiner { step: ctx.step(joiner)?, right: EncodedBatch::default() };
    let kind = *kind;
    Ok(match with {
        JoinWith::Table { table_store, versions, grace } => {
            // A versioned table is looked up in its history, as of each record's time.
            let (lookup, versioned) = match versions {
                Some(v) => (table(ctx, v)?, true),
                None => (table(ctx, table_store)?, false),
            };
            let grace = match grace {
                Some((ms, store)) => Some(GraceBuffer::open(*ms, ctx.open(store)?, ctx.topics.to_vec())?),
                None => None,
            };
            Box::new(StreamTable { kind, joiner, table: lookup, versioned, grace, table_node: right })
        }
        JoinWith::Global { store, key_selector } => Box::new(StreamGlobal {
            kind,
            joiner,
            table: table(ctx, store)?,
            selector: key_selector.as_ref().map(|k| ctx.step(k)).transpose()?,
        }),
        JoinWith::Tables { left_store, right_store } => Box::new(TableTable {
            kind,
            joiner,
            left: table(ctx, left_store)?,
            right: table(ctx, right_store)?,
            left_node: left,
        }),
        JoinWith::Stream { window, left_store, right_store, unmatched } => Box::new(StreamStream {
            kind,
            joiner,
            window: *window,
            left: ctx.open(left_store)?,
            right: ctx.open(right_store)?,
            unmatched: unmatched.as_deref().map(|s| ctx.open(s)).transpose()?,
            left_node: left,
            topics: ctx.topics.to_vec(),
            direct: DirectUpstream::default(),
            floors: Floors::default(),
        }),
    })
}

/// Which side of a join a record is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

/// One value-joiner call: the pairs of a batch, in order, and what each joined into.
pub(super) struct Joiner {
    step: PluginStep,
    /// The right sides, encoded as they are added.
    right: EncodedBatch,
}

/// A pair's joined value (absent when the joiner returned none), or why it failed.
pub(super) type Joined = Result<Option<Bytes>, (FailureCode, String)>;

/// A pair to join: the left value (a record, whose key, timestamp and headers the output
/// keeps) and the right value.
pub(super) struct Pair {
    pub(super) left: Record,
    pub(super) right: Option<Bytes>,
}

impl Joiner {
    pub(super) fn new(step: PluginStep) -> Self {
        Self { step, right: EncodedBatch::default() }
    }

    /// Joins every pair in one call: each result is the joined value, or why it failed.
    pub(super) fn join(&mut self, pairs: &[Pair]) -> Vec<Joined> {
        if pairs.is_empty() {
            return Vec::new();
        }
        self.right.clear();
        for p in pairs {
            self.right.push(p.left.key.as_deref(), p.right.as_deref(), p.left.timestamp);
        }
        let left: Vec<Record> = pairs
            .iter()
            .map(|p| Record { key: p.left.key.clone(), value: p.left.value.clone(), timestamp: p.left.timestamp, ..Default::default() })
            .collect();
        let right = &mut self.right;
        let trap = |e: &crate::wasm::CallFailure| {
            let code = FailureCode::from(e);
            vec![Err((code, e.to_string())); pairs.len()]
        };
        let output = match self.step.call(&left, |i, f, l| i.join(f, l, right)) {
            Ok(o) => o,
            Err(e) => return trap(&e),
        };
        let malformed = |reason: String| {
            trap(&crate::wasm::CallFailure::Trap { plugin: self.step.label().to_owned(), reason })
        };
        let produced = match DecodedBatch::output(output.records.index, output.records.timestamps, output.records.data)
        {
            Ok(p) => p,
            Err(e) => return malformed(e.to_string()),
        };
        let origins: Vec<u32> = if output.origins.is_empty() && produced.len() == pairs.len() {
            (0..pairs.len() as u32).collect()
        } else {
            output.origins
        };
        if origins.len() != produced.len() || origins.iter().any(|&o| o as usize >= pairs.len()) {
            return malformed("returned origins that do not match its pairs".to_owned());
        }
        let mut results: Vec<Joined> = vec![Ok(None); pairs.len()];
        let mut answered = vec![false; pairs.len()];
        for (j, &o) in origins.iter().enumerate() {
            results[o as usize] = Ok(produced.value(j));
            answered[o as usize] = true;
        }
        for e in output.errors {
            if let Some(slot) = results.get_mut(e.index as usize) {
                *slot = Err((FailureCode::from(e.code), e.message));
                answered[e.index as usize] = true;
            }
        }
        if answered.iter().any(|a| !a) {
            return malformed("joined fewer values than it was given pairs".to_owned());
        }
        results
    }

    pub(super) fn failure(&self, record: Record, code: FailureCode, message: String) -> Failure {
        Failure { record, code, message, plugin: self.step.label().to_owned() }
    }
}

/// A store read failed: the record fails with `state`.
pub(super) fn state_failure(record: Record, e: impl std::fmt::Display) -> Failure {
    Failure { record, code: FailureCode::State, message: e.to_string(), plugin: String::new() }
}

/// Looks up each record's row in `table` by the record's lookup key and joins them in one
/// call; an inner join leaves out records without a row. A result keeps its record's key,
/// timestamp and headers. With `versioned`, `table` is a versioned table's history, and each record finds the row
/// as of its own timestamp.
fn join_rows(
    kind: JoinKind,
    joiner: &mut Joiner,
    table: &SharedStore,
    versioned: bool,
    keyed: Vec<(Record, Option<Bytes>)>,
    out: &mut Emitted,
) {
    let mut pairs = Vec::with_capacity(keyed.len());
    {
        let table = locked(table);
        let find = |k: &[u8], ts: i64| {
            if versioned {
                versions::as_of(&table, k, ts).map(|row| row.map(|(t, v)| (t, Bytes::from(v))))
            } else {
                lookup(&table, k)
            }
        };
        for (r, key) in keyed {
            let row = match key.as_deref().map(|k| find(k, r.timestamp)).transpose() {
                Ok(row) => row.flatten(),
                Err(e) => {
                    out.failures.push(state_failure(r, e));
                    continue;
                }
            };
            if row.is_none() && kind == JoinKind::Inner {
                continue;
            }
            pairs.push(Pair { left: r, right: row.map(|(_, v)| v) });
        }
    }
    let results = joiner.join(&pairs);
    for (pair, result) in pairs.into_iter().zip(results) {
        let mut r = pair.left;
        match result {
            Ok(v) => {
                r.value = v;
                out.all.push(r);
            }
            Err((code, message)) => out.failures.push(joiner.failure(r, code, message)),
        }
    }
}

/// A stream joined with a table (Kafka Streams' `KStreamKTableJoin`): each stream record looks
/// up the table's current value for its key; the table's own updates emit nothing. An inner
/// join drops records without a key or value and records the table has no row for; a left
/// join drops only records without a value, and joins the others with the missing row absent
/// (a record without a key too, KIP-962). The result keeps the stream record's key, timestamp
/// and headers.
///
/// With a versioned table (`history_retention`), a record finds the row as of its own
/// timestamp. With a `grace` period too (KIP-923), records wait in a buffer until the join's
/// stream time passes their timestamp by the grace, then join in timestamp order, so table
/// updates that arrive late still count; a record already older than that joins at once.
struct StreamTable {
    kind: JoinKind,
    joiner: Joiner,
    /// The table's store, or its history when versioned.
    table: SharedStore,
    versioned: bool,
    grace: Option<GraceBuffer>,
    /// The table's node: its batches are the table's updates.
    table_node: NodeId,
}

impl Operator for StreamTable {
    fn process(&mut self, input: Vec<Record>) -> Emitted {
        self.process_from(NodeId::MAX, input)
    }

    fn process_from(&mut self, parent: NodeId, input: Vec<Record>) -> Emitted {
        let mut out = Emitted::default();
        if parent == self.table_node {
            return out;
        }
        let keep = |r: &Record| match self.kind {
            JoinKind::Inner => r.key.is_some() && r.value.is_some(),
            _ => r.value.is_some(),
        };
        let keyed: Vec<(Record, Option<Bytes>)> = input
            .into_iter()
            .filter(keep)
            .map(|r| {
                let key = r.key.clone();
                (r, key)
            })
            .collect();
        let keyed = match &mut self.grace {
            Some(g) => g.pass(keyed, &mut out),
            None => keyed,
        };
        join_rows(self.kind, &mut self.joiner, &self.table, self.versioned, keyed, &mut out);
        out
    }

    fn with_stores(&mut self, f: &mut dyn FnMut(&mut Store)) {
        if let Some(g) = &mut self.grace {
            f(&mut g.store);
        }
    }

    fn rerunnable(&self) -> bool {
        false
    }
}

/// The buffer of a stream-table join with a grace period: records by timestamp, then key,
/// then input position (Kafka Streams' time-ordered buffer), with the join's stream time.
struct GraceBuffer {
    grace_ms: i64,
    store: Store,
    topics: Vec<String>,
    direct: DirectUpstream,
    /// The earliest buffered timestamp (`None`: the buffer is empty).
    earliest: Option<i64>,
    encoded: Vec<u8>,
}

/// The most records one eviction takes from a join's grace buffer at once.
const EVICT_AT_ONCE: usize = 100_000;

impl GraceBuffer {
    fn open(grace_ms: i64, store: Store, topics: Vec<String>) -> Result<Self, crate::state::StateError> {
        let earliest = store.range(&[], None, 1)?.first().and_then(|(k, _)| time_from(k));
        Ok(Self { grace_ms, store, topics, direct: DirectUpstream::default(), earliest, encoded: Vec::new() })
    }

    /// Takes a batch of stream records; returns those to join now, in order: each late one as
    /// it comes, and after each buffered one, every buffered record its stream time made due.
    fn pass(&mut self, keyed: Vec<(Record, Option<Bytes>)>, out: &mut Emitted) -> Vec<(Record, Option<Bytes>)> {
        let mut now = Vec::with_capacity(keyed.len());
        for (r, key) in keyed {
            let Some((upstream, position)) = upstream_of(&r, self.direct.name(&self.topics, &r)) else { continue };
            // Buffered (or joined) before a restart.
            if !self.store.first_time(upstream, position) {
                continue;
            }
            let st = self.store.advance_stream_time(r.timestamp);
            let bound = st.saturating_sub(self.grace_ms);
            if r.timestamp < bound {
                now.push((r, key));
                continue;
            }
            let Some(k) = key.as_deref() else {
                // A left join's record without a key has nothing to wait for.
                now.push((r, key));
                continue;
            };
            let mut buffer_key = Vec::with_capacity(8 + 4 + k.len() + 12);
            buffer_key.extend_from_slice(&time_bytes(r.timestamp));
            buffer_key.extend_from_slice(&(k.len() as u32).to_be_bytes());
            buffer_key.extend_from_slice(k);
            buffer_key.extend_from_slice(&position.offset.to_be_bytes());
            buffer_key.extend_from_slice(&position.seq.to_be_bytes());
            super::suppress::encode_into(&mut self.encoded, r.timestamp, &r);
            self.store.put(buffer_key, self.encoded.clone());
            self.earliest = Some(self.earliest.map_or(r.timestamp, |e| e.min(r.timestamp)));
            if let Err(e) = self.evict(bound, &mut now) {
                out.failures.push(state_failure(r, e));
            }
        }
        now
    }

    /// Moves every buffered record with a timestamp at or before `bound` to `to`.
    fn evict(&mut self, bound: i64, to: &mut Vec<(Record, Option<Bytes>)>) -> Result<(), crate::state::StateError> {
        if self.earliest.is_none_or(|e| e > bound) {
            return Ok(());
        }
        let end = time_bytes(bound.saturating_add(1));
        let due = self.store.range(&[], Some(&end), EVICT_AT_ONCE)?;
        for (k, v) in due {
            let len = k.get(8..12).map_or(0, |l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize);
            if let Some(record) = k.get(12..12 + len).and_then(|key| super::suppress::decode(key, &v)) {
                let key = record.key.clone();
                to.push((record, key));
            }
            self.store.delete(k);
        }
        self.earliest = self.store.range(&end, None, 1)?.first().and_then(|(k, _)| time_from(k));
        Ok(())
    }
}

/// A stream joined with a global table (Kafka Streams' `KStreamGlobalKTableJoin`): each
/// record looks up the row of the key its key selector picks (the record's own key without
/// one) in the table every instance keeps whole; the stream needs no co-partitioning. An inner
/// join drops records without a value, without a lookup key, or without a row; a left join
/// drops records without a value, and records with a key whose selector picks none; the rest
/// join with the row absent. The result keeps the stream record's key and timestamp.
struct StreamGlobal {
    kind: JoinKind,
    joiner: Joiner,
    table: SharedStore,
    selector: Option<PluginStep>,
}

impl StreamGlobal {
    /// Each record's lookup key, or why its selector failed.
    fn lookup_keys(&mut self, input: &[Record]) -> Vec<Result<Option<Bytes>, (FailureCode, String)>> {
        let Some(step) = &mut self.selector else {
            return input.iter().map(|r| Ok(r.key.clone())).collect();
        };
        let failed = |e: &crate::wasm::CallFailure| {
            let code = FailureCode::from(e);
            vec![Err((code, e.to_string())); input.len()]
        };
        let output = match step.call(input, |i, f, b| i.transform(PluginKind::KeySelector, f, b)) {
            Ok(o) => o,
            Err(e) => return failed(&e),
        };
        let malformed = |reason: &str| {
            failed(&crate::wasm::CallFailure::Trap { plugin: step.label().to_owned(), reason: reason.to_owned() })
        };
        let Ok(keys) = DecodedBatch::output(output.records.index, output.records.timestamps, output.records.data)
        else {
            return malformed("returned a malformed batch");
        };
        let mut out: Vec<Result<Option<Bytes>, (FailureCode, String)>> = vec![Ok(None); input.len()];
        if output.origins.is_empty() && keys.len() == input.len() {
            for (i, slot) in out.iter_mut().enumerate() {
                *slot = Ok(keys.key(i));
            }
        } else if output.origins.len() == keys.len() && output.origins.iter().all(|&o| (o as usize) < input.len()) {
            for (j, &o) in output.origins.iter().enumerate() {
                out[o as usize] = Ok(keys.key(j));
            }
        } else {
            return malformed("returned keys that do not match its input");
        }
        for e in output.errors {
            if let Some(slot) = out.get_mut(e.index as usize) {
                *slot = Err((FailureCode::from(e.code), e.message));
            }
        }
        out
    }
}

impl Operator for StreamGlobal {
    fn process(&mut self, input: Vec<Record>) -> Emitted {
        let mut out = Emitted::default();
        let keys = self.lookup_keys(&input);
        let mut keyed = Vec::with_capacity(input.len());
        for (r, key) in input.into_iter().zip(keys) {
            let key = match key {
                Ok(k) => k,
                Err((code, message)) => {
                    let label = self.selector.as_ref().map_or("", |s| s.label()).to_owned();
                    out.failures.push(Failure { record: r, code, message, plugin: label });
                    continue;
                }
            };
            let keep = match self.kind {
                JoinKind::Inner => key.is_some() && r.value.is_some(),
                // KIP-962: a record without a key still joins; one whose key the selector
                // maps to none does not.
                _ => r.value.is_some() && (key.is_some() || r.key.is_none()),
            };
            if keep {
                keyed.push((r, key));
            }
        }
        join_rows(self.kind, &mut self.joiner, &self.table, false, keyed, &mut out);
        out
    }

    fn rerunnable(&self) -> bool {
        false
    }
}

/// Two tables joined (Kafka Streams' `KTableKTableJoin`): an update on either side looks up
/// the other side's current row, and emits the change of the joined value, with the old
/// result beside the new one, so a result that disappears (a deleted row, an inner join that
/// no longer matches) is a tombstone downstream. The result's timestamp is the later of the
/// two rows'.
struct TableTable {
    kind: JoinKind,
    joiner: Joiner,
    left: SharedStore,
    right: SharedStore,
    left_node: NodeId,
}

/// What one table update needs joined: the new result (if any) and the old one.
struct TableChange {
    record: Record,
    /// Indexes into the pairs of the batch.
    new: Option<usize>,
    old: Option<usize>,
    timestamp: i64,
}

impl Operator for TableTable {
    fn process(&mut self, input: Vec<Record>) -> Emitted {
        self.process_from(self.left_node, input)
    }

    fn process_from(&mut self, parent: NodeId, input: Vec<Record>) -> Emitted {
        let side = if parent == self.left_node { Side::Left } else { Side::Right };
        let mut out = Emitted::default();
        let mut pairs: Vec<Pair> = Vec::new();
        let mut changes: Vec<TableChange> = Vec::with_capacity(input.len());
        {
            let other = match side {
                Side::Left => &self.right,
                Side::Right => &self.left,
            };
            let other = locked(other);
            for r in input {
                let Some(key) = r.key.clone() else { continue };
                let row = match lookup(&other, &key) {
                    Ok(row) => row,
                    Err(e) => {
                        out.failures.push(state_failure(r, e));
                        continue;
                    }
                };
                let o = row.as_ref().map(|(_, v)| v.clone());
                let (new, old) = (r.value.clone(), r.old.clone());
                // Which results exist, by Kafka Streams' inner / left (this side and the
                // other) / outer processors: `Some(this side's value)` joins it with `o`.
                let (new_in, old_in) = match (self.kind, side) {
                    (JoinKind::Inner, _) => {
                        if o.is_none() {
                            continue;
                        }
                        (new.clone().map(Some), old.clone().map(Some))
                    }
                    (JoinKind::Left, Side::Left) | (JoinKind::Outer, _) => {
                        if o.is_none() && new.is_none() && old.is_none() {
                            continue;
                        }
                        let outer = self.kind == JoinKind::Outer;
                        let result = |v: &Option<Bytes>| (v.is_some() || (outer && o.is_some())).then(|| v.clone());
                        (result(&new), result(&old))
                    }
                    // A right update in a left join: only rows the left table has.
                    (JoinKind::Left, Side::Right) => {
                        if o.is_none() {
                            continue;
                        }
                        (Some(new.clone()), Some(old.clone()))
                    }
                };
                let timestamp = row.as_ref().map_or(r.timestamp, |(ts, _)| r.timestamp.max(*ts));
                let mut pair = |this: Option<Bytes>| {
                    let (left, right) = match side {
                        Side::Left => (this, o.clone()),
                        Side::Right => (o.clone(), this),
                    };
                    pairs.push(Pair {
                        left: Record { key: Some(key.clone()), value: left, timestamp, ..Default::default() },
                        right,
                    });
                    pairs.len() - 1
                };
                let new = new_in.map(&mut pair);
                let old = old_in.map(&mut pair);
                changes.push(TableChange { record: r, new, old, timestamp });
            }
        }
        let results = self.joiner.join(&pairs);
        for c in changes {
            let mut r = c.record;
            let pick = |i: Option<usize>| i.map(|i| results[i].clone()).transpose();
            match (pick(c.new), pick(c.old)) {
                (Ok(new), Ok(old)) => {
                    r.value = new.flatten();
                    r.old = old.flatten();
                    r.timestamp = c.timestamp;
                    out.all.push(r);
                }
                (Err((code, message)), _) | (_, Err((code, message))) => {
                    out.failures.push(self.joiner.failure(r, code, message));
                }
            }
        }
        out
    }

    fn rerunnable(&self) -> bool {
        false
    }
}

/// Two streams joined within a window (Kafka Streams' `KStreamKStreamJoin`, with the fix for
/// spurious left/outer results since Kafka 3.1). A left record at `t` joins the right records
/// of its key from `t - before` to `t + after` (a right record at `t`, the left ones from
/// `t - after` to `t + before`); each side is kept in a window store for `before + after +
/// grace` of stream time, which the two sides share. The result's timestamp is the later of
/// the pair's.
///
/// Left and outer joins keep a record without a partner in `unmatched` and emit it, joined
/// with nothing, once its window has closed: when stream time passes `t + after + grace` (a
/// right record: `t + before + grace`), checked when an in-order record arrives. A record
/// whose window has closed already, but not its grace, and that finds no partner is emitted
/// at once (as Kafka Streams does). A record later than its window's grace is dropped and
/// counted as late (Kafka Streams still probes it: KAFKA-16123). Records without a value are
/// dropped; one without a key joins nothing, and a left (outer) join emits it at once, alone
/// (KIP-962).
struct StreamStream {
    kind: JoinKind,
    joiner: Joiner,
    window: JoinWindow,
    left: Store,
    right: Store,
    unmatched: Option<Store>,
    left_node: NodeId,
    topics: Vec<String>,
    direct: DirectUpstream,
    floors: Floors,
}

/// Where the scans of a stream-stream join's stores start: below each floor, everything was
/// emitted or expired already (deleted, though still in the backend until the commit, which a
/// scan from the start would read again and again). A record put below a floor lowers it; a
/// new operator (a restart) starts from the bottom.
#[derive(Debug, Clone, Copy)]
struct Floors {
    /// The time of the oldest unmatched record that may still be waiting.
    unmatched: i64,
    /// The expiry time up to which each side's buffer has been expired.
    expiry: [i64; 2],
}

impl Default for Floors {
    fn default() -> Self {
        Self { unmatched: i64::MIN, expiry: [i64::MIN; 2] }
    }
}

/// A side store's key: `key prefix | time | offset` (records of one key and time are kept
/// apart by their input offset).
fn buffered_key(key: &[u8], ts: i64, offset: i64) -> Vec<u8> {
    let mut k = key_prefix(key);
    k.extend_from_slice(&time_bytes(ts));
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

/// The expiry index entry of a buffered record: `0x02 | time | data key`.
const EXPIRY: u8 = 2;

/// An unmatched record's key: `time | side (right 0, left 1) | key length | key | offset`,
/// so they come out by time, the right side first, as in Kafka Streams' outer store.
fn unmatched_key(side: Side, key: &[u8], ts: i64, offset: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + 1 + 4 + key.len() + 8);
    k.extend_from_slice(&time_bytes(ts));
    k.push(u8::from(side == Side::Left));
    k.extend_from_slice(&(key.len() as u32).to_be_bytes());
    k.extend_from_slice(key);
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

fn decode_unmatched(k: &[u8]) -> Option<(i64, Side, &[u8])> {
    let ts = time_from(k)?;
    let side = if *k.get(8)? == 1 { Side::Left } else { Side::Right };
    let len = u32::from_be_bytes(k.get(9..13)?.try_into().ok()?) as usize;
    Some((ts, side, k.get(13..13 + len)?))
}

/// What a batch will emit, in order: a pair joined, or a record's failure.
enum Out {
    Pair(usize),
    Failed(Box<Failure>),
}

impl StreamStream {
    /// How far before and after its own time a record of `side` finds partners.
    fn bounds(&self, side: Side) -> (i64, i64) {
        match side {
            Side::Left => (self.window.before_ms, self.window.after_ms),
            Side::Right => (self.window.after_ms, self.window.before_ms),
        }
    }

    fn stores(&mut self, side: Side) -> (&mut Store, &mut Store) {
        match side {
            Side::Left => (&mut self.left, &mut self.right),
            Side::Right => (&mut self.right, &mut self.left),
        }
    }

    /// Whether this kind keeps `side`'s unmatched records.
    fn outer(&self, side: Side) -> bool {
        matches!((self.kind, side), (JoinKind::Outer, _) | (JoinKind::Left, Side::Left))
    }

    /// Emits (into `pairs`) the unmatched records whose windows closed by `stream_time`.
    fn emit_closed(&mut self, stream_time: i64, trigger: &Record, pairs: &mut Vec<Pair>, order: &mut Vec<Out>) {
        let Some(store) = &mut self.unmatched else { return };
        // Only records older than this can have closed windows; and none is older than the
        // floor (what was below it is emitted), so nothing closed if the floor is not.
        let lookahead = self.window.after_ms.min(self.window.before_ms) + self.window.grace_ms;
        if self.floors.unmatched >= stream_time - lookahead {
            return;
        }
        let from = time_bytes(self.floors.unmatched);
        let entries = match store.range(&from, Some(&time_bytes(stream_time - lookahead)), usize::MAX) {
            Ok(e) => e,
            Err(e) => {
                order.push(Out::Failed(Box::new(state_failure(trigger.clone(), e))));
                return;
            }
        };
        let mut open = (false, false);
        // The scan ends at the first record still open, or after the last one it read.
        let mut floor = stream_time - lookahead;
        for (k, v) in entries {
            let Some((ts, side, key)) = decode_unmatched(&k) else { continue };
            let lookahead = match side {
                Side::Left => self.window.after_ms,
                Side::Right => self.window.before_ms,
            };
            if ts + lookahead + self.window.grace_ms >= stream_time {
                floor = floor.min(ts);
                match side {
                    Side::Left => open.0 = true,
                    Side::Right => open.1 = true,
                }
                if open.0 && open.1 {
                    break;
                }
                continue;
            }
            let value = Some(Bytes::from(v));
            let (left, right) = match side {
                Side::Left => (value, None),
                Side::Right => (None, value),
            };
            let r = Record {
                key: Some(Bytes::copy_from_slice(key)),
                value: left,
                timestamp: ts,
                headers: trigger.headers.clone(),
                origin: trigger.origin,
                old: None,
            };
            pairs.push(Pair { left: r, right });
            order.push(Out::Pair(pairs.len() - 1));
            store.delete(k);
        }
        self.floors.unmatched = floor;
    }
}

impl Operator for StreamStream {
    fn process(&mut self, input: Vec<Record>) -> Emitted {
        self.process_from(self.left_node, input)
    }

    fn process_from(&mut self, parent: NodeId, input: Vec<Record>) -> Emitted {
        let side = if parent == self.left_node { Side::Left } else { Side::Right };
        let (before, after) = self.bounds(side);
        let window = self.window;
        let retention = window.before_ms + window.after_ms + window.grace_ms;
        let mut out = Emitted::default();
        let mut pairs: Vec<Pair> = Vec::new();
        let mut order: Vec<Out> = Vec::new();
        for r in input {
            let Some((upstream, position)) = upstream_of(&r, self.direct.name(&self.topics, &r)) else { continue };
            let upstream = upstream.to_owned();
            let t = r.timestamp;
            let (this, other) = self.stores(side);
            if !this.first_time(&upstream, position) {
                continue;
            }
            // Stream time is shared by both sides (each store keeps the same), and moved by
            // every record, those dropped below too (as in Kafka Streams).
            let stream_time = this.advance_stream_time(t).max(other.stream_time().unwrap_or(i64::MIN));
            other.advance_stream_time(stream_time);
            this.advance_stream_time(stream_time);
            let Some(value) = r.value.clone() else { continue };
            let Some(key) = r.key.clone() else {
                // KIP-962: a record without a key joins nothing; a left (outer) join's side
                // emits it at once, alone.
                if self.outer(side) {
                    let mut alone = r.clone();
                    let right = match side {
                        Side::Left => None,
                        Side::Right => {
                            alone.value = None;
                            Some(value)
                        }
                    };
                    pairs.push(Pair { left: alone, right });
                    order.push(Out::Pair(pairs.len() - 1));
                }
                continue;
            };
            if t + after + window.grace_ms < stream_time {
                out.late += 1;
                continue;
            }
            if t == stream_time {
                self.emit_closed(stream_time, &r, &mut pairs, &mut order);
            }
            let floor = &mut self.floors.expiry[usize::from(side == Side::Right)];
            *floor = (*floor).min(t + retention);
            let (this, other) = self.stores(side);
            // Keep the record for the other side's later records, until it expires.
            let data_key = buffered_key(&key, t, r.origin.offset);
            let mut expiry = vec![EXPIRY];
            expiry.extend_from_slice(&time_bytes(t + retention));
            expiry.extend_from_slice(&data_key);
            this.put(data_key, value.to_vec());
            this.put(expiry, Vec::new());
            // Partners from `t - before` to `t + after`, both inclusive.
            let time_key = |ts: i64| {
                let mut k = key_prefix(&key);
                k.extend_from_slice(&time_bytes(ts));
                k
            };
            let (from, to) = (time_key((t - before).max(0)), time_key((t + after).max(0) + 1));
            let matches = match other.range(&from, Some(&to), usize::MAX) {
                Ok(m) => m,
                Err(e) => {
                    order.push(Out::Failed(Box::new(state_failure(r, e))));
                    continue;
                }
            };
            let other_side = match side {
                Side::Left => Side::Right,
                Side::Right => Side::Left,
            };
            for (k, v) in &matches {
                let prefix = key_prefix(&key).len();
                let (Some(mts), Some(moffset)) =
                    (time_from(&k[prefix..]), k.get(prefix + 8..).and_then(|o| o.try_into().ok()).map(i64::from_be_bytes))
                else {
                    continue;
                };
                if let Some(u) = &mut self.unmatched {
                    u.delete(unmatched_key(other_side, &key, mts, moffset));
                }
                let mine = Some(value.clone());
                let theirs = Some(Bytes::copy_from_slice(v));
                let (left, right) = match side {
                    Side::Left => (mine, theirs),
                    Side::Right => (theirs, mine),
                };
                let mut joined = r.clone();
                joined.value = left;
                joined.timestamp = t.max(mts);
                pairs.push(Pair { left: joined, right });
                order.push(Out::Pair(pairs.len() - 1));
            }
            if matches.is_empty() && self.outer(side) {
                let closed = t + after < stream_time;
                match (&mut self.unmatched, closed) {
                    (Some(u), false) => {
                        u.put(unmatched_key(side, &key, t, r.origin.offset), value.to_vec());
                        self.floors.unmatched = self.floors.unmatched.min(t);
                    }
                    _ => {
                        let mut alone = r.clone();
                        let right = match side {
                            Side::Left => None,
                            Side::Right => {
                                alone.value = None;
                                Some(value.clone())
                            }
                        };
                        pairs.push(Pair { left: alone, right });
                        order.push(Out::Pair(pairs.len() - 1));
                    }
                }
            }
        }
        if let Err(e) = self.expire() {
            tracing::warn!(error = %e, "expiring a stream-stream join's buffered records");
        }
        let results = self.joiner.join(&pairs);
        let mut results: Vec<Option<Joined>> = results.into_iter().map(Some).collect();
        let mut pairs: Vec<Option<Pair>> = pairs.into_iter().map(Some).collect();
        for o in order {
            match o {
                Out::Failed(f) => out.failures.push(*f),
                Out::Pair(i) => {
                    let (Some(pair), Some(result)) = (pairs[i].take(), results[i].take()) else { continue };
                    let mut r = pair.left;
                    match result {
                        Ok(v) => {
                            r.value = v;
                            out.all.push(r);
                        }
                        Err((code, message)) => {
                            // The record as it came: its own value on its own side.
                            if r.value.is_none() {
                                r.value = pair.right;
                            }
                            out.failures.push(self.joiner.failure(r, code, message));
                        }
                    }
                }
            }
        }
        out
    }

    fn with_stores(&mut self, f: &mut dyn FnMut(&mut Store)) {
        f(&mut self.left);
        f(&mut self.right);
        if let Some(u) = &mut self.unmatched {
            f(u);
        }
    }

    fn rerunnable(&self) -> bool {
        false
    }
}

impl StreamStream {
    /// Forgets buffered records older than the join can still use: `before + after + grace`
    /// of stream time.
    fn expire(&mut self) -> Result<(), crate::state::StateError> {
        for (i, store) in [&mut self.left, &mut self.right].into_iter().enumerate() {
            let Some(now) = store.stream_time() else { continue };
            let floor = &mut self.floors.expiry[i];
            if *floor >= now {
                continue;
            }
            let mut from = vec![EXPIRY];
            from.extend_from_slice(&time_bytes(*floor));
            let mut to = vec![EXPIRY];
            to.extend_from_slice(&time_bytes(now));
            let expired = store.range(&from, Some(&to), usize::MAX)?;
            *floor = now;
            let mut keys = BTreeMap::new();
            for (k, _) in expired {
                keys.insert(k[9..].to_vec(), ());
                store.delete(k);
            }
            for (k, ()) in keys {
                store.delete(k);
            }
        }
        Ok(())
    }
}
