//! `count`, `reduce` and `aggregate`, over keys or over windows (time, sliding, session),
//! emitting every update or only each window's final result.
//!
//! The host does the state I/O: for a batch it reads the aggregates the batch touches, calls
//! the plugin once with the records, a slot per record and the slots' current aggregates, and
//! writes back what the plugin returns (see `wit/plugin.wit`, `aggregator`). Session and
//! sliding windows read the aggregates of a key's neighbouring windows, so when a batch holds
//! several records of one key, the batch is split before the second one (one call per such
//! run). Merging sessions calls the plugin's merger.
//!
//! Stored values are `timestamp (8 bytes) | aggregate`; the timestamp is the largest event
//! time folded in, and becomes the output record's timestamp, as in Kafka Streams.

use std::collections::{BTreeSet, HashSet};

use bytes::Bytes;

use super::cache::RecordCache;
use super::{ConstructError, Emitted, Failure, FailureCode, Operator, OperatorSpec, PluginStep, TaskContext, wrong_node};
use crate::record::{EncodedBatch, Header, Headers, Origin, Record};
use crate::state::windows::{
    DATA, EMIT_INDEX, EXPIRE_INDEX, Window, decode_data_key, index_key, key_prefix, output_key_into, session_key,
    time_bytes, time_from, time_windows, window_key, window_key_into,
};
use crate::state::{DirectUpstream, Sequencer, Store, prefix_end, upstream_of};
use crate::topology::WindowSpec;
use crate::topology::{Field, FoldKind, FoldOp, Form, Node, NodeOp, PluginKind, PluginUse, StepSpec};
use crate::wasm::CallFailure;
use crate::wasm::host::state::MAX_STATE_VALUE_BYTES;

/// Sessions or windows of one key a record can touch are few; the cap guards a runaway key.
pub const MAX_WINDOWS_PER_KEY_SCAN: usize = 10_000;

const FIELDS: &[Field] = &[Field::Store, Field::LateTopic, Field::Subtractor];

pub static COUNT: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: "count",
        fields: FIELDS,
        plugin: PluginUse::None,
        form: Form::Fold(FoldKind::Count),
        note: None, tables: false
    },
    construct: Some(construct),
};

pub static REDUCE: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: "reduce",
        fields: FIELDS,
        plugin: PluginUse::Required(PluginKind::Reducer),
        form: Form::Fold(FoldKind::Reduce),
        note: None, tables: false
    },
    construct: Some(construct),
};

pub static AGGREGATE: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: "aggregate",
        fields: FIELDS,
        plugin: PluginUse::Required(PluginKind::Aggregator),
        form: Form::Fold(FoldKind::Aggregate),
        note: None, tables: false
    },
    construct: Some(construct),
};

fn construct(node: &Node, ctx: &mut TaskContext<'_>) -> Result<Box<dyn Operator>, ConstructError> {
    let NodeOp::Aggregate { fold, window, emit_final, store, late_topic, table } = &node.op else {
        return Err(wrong_node("aggregate", node));
    };
    if let Some(t) = table {
        return super::table_fold::construct(node, fold, t, store, ctx);
    }
    let fold = match fold {
        FoldOp::Count => Fold::Count,
        FoldOp::Reduce(p) => Fold::Reduce(ctx.step(p)?),
        FoldOp::Aggregate(p) => Fold::Aggregate(ctx.step(p)?),
    };
    let store = ctx.open(store)?;
    // Final results (suppress) are emitted once per window already.
    let cache = (store.spec.caching && !*emit_final).then(|| RecordCache::new(store.spec.cache_bytes));
    Ok(Box::new(Aggregate {
        fold,
        cache,
        texts: Default::default(),
        key_buf: Vec::new(),
        read_buf: Vec::new(),
        value_buf: Vec::new(),
        chunk: Chunk::default(),
        current_batch: EncodedBatch::default(),
        window: *window,
        emit_final: *emit_final,
        late_topic: late_topic.clone(),
        store,
        topics: ctx.topics.to_vec(),
        node: node.name.clone(),
        seq: Default::default(),
    }))
}

/// How values fold into an aggregate.
pub enum Fold {
    /// Built in: the aggregate is the number of records, kept as 8 big-endian bytes and
    /// emitted as decimal text.
    Count,
    Reduce(PluginStep),
    /// The initial aggregate comes from the instance that folds: each version (and each
    /// rebuilt instance) answers `initialize` once, when it is set up.
    Aggregate(PluginStep),
}

pub struct Aggregate {
    pub fold: Fold,
    /// The record cache, when the store has caching on: updates wait for the commit.
    cache: Option<RecordCache>,
    /// Where counts are written as text for their outputs.
    texts: bytes::BytesMut,
    /// A record's data key, written here rather than into a new buffer per record.
    key_buf: Vec<u8>,
    /// A stored aggregate as read, and one as written back: reused from key to key.
    read_buf: Vec<u8>,
    value_buf: Vec<u8>,
    /// The folds of the batch being processed, reused from batch to batch.
    chunk: Chunk,
    /// The slots' current aggregates, encoded for the plugin call.
    current_batch: EncodedBatch,
    pub window: Option<WindowSpec>,
    pub emit_final: bool,
    /// Where records too late for every window go (they are dropped otherwise).
    pub late_topic: Option<String>,
    pub store: Store,
    /// The task's input topics, by `Origin::topic`.
    pub topics: Vec<String>,
    pub node: String,
    pub seq: Sequencer,
}

enum EmitValue {
    /// The aggregate after fold entry `i`.
    Entry(usize),
    Known(Option<Bytes>),
}

struct Emit {
    key: Bytes,
    window: Option<Window>,
    value: EmitValue,
    timestamp: i64,
    /// Where the record that caused the update was read: an output carries it, so a
    /// repartition downstream stamps it with this task's partition and a position that is
    /// the same when the input is read again.
    origin: Origin,
}

/// A failed record's error code and message.
pub(super) type Error = (FailureCode, String);
/// The aggregate after each fold entry (`None`: the aggregate was deleted), or its error.
type EntryResults = Vec<Result<Option<Bytes>, Error>>;

/// Folds gathered for one plugin call. Kept by the operator and cleared after each call, so
/// its buffers are reused from batch to batch: the slots' keys and current aggregates are
/// written back to back into two buffers, not one allocation per key.
#[derive(Default)]
struct Chunk {
    /// One entry per (record, window): the record to fold and its slot.
    entries: Vec<Record>,
    entry_slot: Vec<u32>,
    /// The input record (index into the batch) each entry came from.
    entry_input: Vec<usize>,
    /// Every slot's data key, back to back; `slot_key[s]` is where slot `s`'s is.
    key_data: Vec<u8>,
    slot_key: Vec<std::ops::Range<usize>>,
    slot_group: Vec<Option<Bytes>>,
    /// Every slot's aggregate as the chunk found it, back to back (`None`: none yet).
    current_data: Vec<u8>,
    slot_current: Vec<Option<std::ops::Range<usize>>>,
    slot_ts: Vec<i64>,
    /// The slot of each data key, hashed with foldhash.
    slot_of: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::FixedState,
    /// Grouping keys with entries in this chunk (session and sliding windows split on them).
    groups: HashSet<Bytes>,
    emits: Vec<Emit>,
}

impl Chunk {
    fn key(&self, s: usize) -> &[u8] {
        &self.key_data[self.slot_key[s].clone()]
    }

    fn current(&self, s: usize) -> Option<&[u8]> {
        self.slot_current[s].clone().map(|r| &self.current_data[r])
    }

    fn hash(&self, key: &[u8]) -> u64 {
        std::hash::BuildHasher::hash_one(&self.hasher, key)
    }

    fn slot(&self, key: &[u8]) -> Option<u32> {
        self.slot_of.find(self.hash(key), |&s| self.key(s as usize) == key).copied()
    }

    /// A new slot for `key`, starting from `current`.
    fn add_slot(&mut self, key: &[u8], group: &Bytes, current: Option<(i64, &[u8])>) -> u32 {
        let s = self.slot_key.len() as u32;
        let start = self.key_data.len();
        self.key_data.extend_from_slice(key);
        self.slot_key.push(start..self.key_data.len());
        self.slot_group.push(Some(group.clone()));
        let (ts, agg) = match current {
            Some((ts, agg)) => {
                let start = self.current_data.len();
                self.current_data.extend_from_slice(agg);
                (ts, Some(start..self.current_data.len()))
            }
            None => (i64::MIN, None),
        };
        self.slot_current.push(agg);
        self.slot_ts.push(ts);
        let hash = self.hash(key);
        let Self { slot_of, key_data, slot_key, hasher, .. } = self;
        slot_of.insert_unique(hash, s, |&x| std::hash::BuildHasher::hash_one(&*hasher, &key_data[slot_key[x as usize].clone()]));
        s
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.entry_slot.clear();
        self.entry_input.clear();
        self.key_data.clear();
        self.slot_key.clear();
        self.slot_group.clear();
        self.current_data.clear();
        self.slot_current.clear();
        self.slot_ts.clear();
        self.slot_of.clear();
        self.groups.clear();
        self.emits.clear();
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.emits.is_empty()
    }
}

/// Whether `store` can keep a plugin's aggregate, whose record fails if not: at most
/// [`MAX_STATE_VALUE_BYTES`] (a larger one could not ride the changelog), and in a store with a
/// declared format, one that converts to it (`serialization`, as a write to a topic would
/// fail). The aggregate as stored, when it was converted.
pub(super) fn keepable(store: &Store, agg: &[u8]) -> Result<Option<Vec<u8>>, Error> {
    let over = |n: usize| {
        (FailureCode::State, format!(
            "an aggregate of {n} bytes is over the cap of {MAX_STATE_VALUE_BYTES} bytes (MAX_STATE_VALUE_BYTES): not kept"
        ))
    };
    if agg.len() > MAX_STATE_VALUE_BYTES {
        return Err(over(agg.len()));
    }
    if !store.has_format() {
        return Ok(None);
    }
    let stored = store.stored(agg).map_err(|e| (FailureCode::Serialization, e.to_string()))?;
    if stored.len() > MAX_STATE_VALUE_BYTES {
        return Err(over(stored.len()));
    }
    Ok(Some(stored.into_owned()))
}

/// A stored value: the time, then the aggregate, into `out` (cleared first).
fn encode_value_into(out: &mut Vec<u8>, ts: i64, agg: &[u8]) {
    out.clear();
    out.extend_from_slice(&time_bytes(ts));
    out.extend_from_slice(agg);
}

fn decode_value(v: &[u8]) -> Option<(i64, &[u8])> {
    Some((time_from(v)?, v.get(8..)?))
}

/// A count as its store keeps it: 8 bytes, big-endian (Kafka's `LongSerializer` layout).
fn count_bytes(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// A stored count. Stores written before counts were fixed-width hold decimal text, which
/// never starts with a zero byte, while an 8-byte count below 2^56 always does.
fn count_of(b: &[u8]) -> u64 {
    match <[u8; 8]>::try_from(b) {
        Ok(be) if be[0] == 0 => u64::from_be_bytes(be),
        _ => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).unwrap_or(0),
    }
}

impl Aggregate {
    /// The aggregate a new key or window starts from, as the current instance says.
    fn initial(&self) -> Option<Vec<u8>> {
        match &self.fold {
            Fold::Count => Some(count_bytes(0).to_vec()),
            Fold::Reduce(_) => None,
            Fold::Aggregate(step) => initial_of(step.setup()).map(<[u8]>::to_vec),
        }
    }

    fn label(&self) -> String {
        match &self.fold {
            Fold::Count => "count (built in)".to_owned(),
            Fold::Reduce(s) | Fold::Aggregate(s) => s.label().to_owned(),
        }
    }

    fn fail(&self, record: Record, code: FailureCode, message: String) -> Failure {
        Failure { record, code, message, plugin: self.label() }
    }

    /// A store read, or a failure of the record that needed it.
    fn read(&self, key: &[u8]) -> Result<Option<(i64, Vec<u8>)>, String> {
        let mut v = Vec::new();
        Ok(self.read_into(key, &mut v)?.map(|t| (t, v)))
    }

    /// A store read into `out` (cleared first): the aggregate's time, with the aggregate
    /// in `out`, or `None` when the key has none.
    fn read_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<Option<i64>, String> {
        out.clear();
        if !self.store.get_into(key, out).map_err(|e| e.to_string())? {
            return Ok(None);
        }
        // The stored value is the time then the aggregate.
        let Some(t) = time_from(out) else { return Ok(None) };
        out.drain(..8);
        // An entry not updated within the store's TTL (in stream time) reads as absent.
        if let (Some(ttl), Some(now)) = (self.store.spec.ttl_ms, self.store.stream_time())
            && t < now - ttl
        {
            return Ok(None);
        }
        if self.store.has_format() {
            let view = self.store.view(out).map_err(|e| e.to_string())?.into_owned();
            *out = view;
        }
        Ok(Some(t))
    }

    /// A stored `time | aggregate` as `time | the aggregate plugins see`, in a store that
    /// declares a format.
    fn viewed(&self, stored: Vec<u8>) -> Result<Vec<u8>, crate::state::StateError> {
        if stored.len() < 8 {
            return Ok(stored);
        }
        let view = self.store.view(&stored[8..])?;
        let mut v = Vec::with_capacity(8 + view.len());
        v.extend_from_slice(&stored[..8]);
        v.extend_from_slice(&view);
        Ok(v)
    }

    /// Writes `time | agg` at `key`, the aggregate in the store's format.
    fn write(&mut self, key: &[u8], ts: i64, agg: &[u8]) -> Result<(), crate::state::StateError> {
        let stored = self.store.stored(agg)?;
        encode_value_into(&mut self.value_buf, ts, &stored);
        self.store.put_slice(key, &self.value_buf);
        Ok(())
    }

    /// Adds a fold of `record` into the window stored at `data_key`, starting (if the chunk
    /// has no slot for it yet) from `current`.
    #[allow(clippy::too_many_arguments)]
    fn fold_into(
        &mut self,
        chunk: &mut Chunk,
        data_key: &[u8],
        group: &Bytes,
        window: Option<Window>,
        current: Option<(i64, &[u8])>,
        record: &Record,
        input: usize,
        track_groups: bool,
    ) {
        let slot = match chunk.slot(data_key) {
            Some(s) => s,
            None => {
                if let Some(w) = window
                    && current.is_none()
                {
                    self.index_new_window(data_key, w);
                }
                // A slot without a stored aggregate starts from none: a count from zero,
                // an aggregator from the initial aggregate of the instance that runs the
                // call (so a swap, or its rollback, at that batch boundary brings the right
                // one), a reducer from its first record.
                chunk.add_slot(data_key, group, current)
            }
        };
        // The fold needs the key, value and time; a built-in count needs only the time.
        chunk.entries.push(match self.fold {
            Fold::Count => Record { timestamp: record.timestamp, ..Default::default() },
            _ => Record {
                key: record.key.clone(),
                value: record.value.clone(),
                timestamp: record.timestamp,
                ..Default::default()
            },
        });
        chunk.entry_slot.push(slot);
        chunk.entry_input.push(input);
        if track_groups {
            chunk.groups.insert(group.clone());
        }
        if !self.emit_final {
            chunk.emits.push(Emit {
                key: group.clone(),
                window,
                value: EmitValue::Entry(chunk.entries.len() - 1),
                timestamp: record.timestamp,
                origin: record.origin,
            });
        }
    }

    /// A new window waits to be emitted (emit-final) and to expire.
    fn index_new_window(&mut self, data_key: &[u8], w: Window) {
        let Some(spec) = self.window else { return };
        if self.emit_final {
            self.store.put(index_key(EMIT_INDEX, w.end, data_key), Vec::new());
        }
        self.store.put(index_key(EXPIRE_INDEX, w.end + spec.retention_after_end(), data_key), Vec::new());
    }

    /// Removes a window and its index entries.
    fn remove_window(&mut self, data_key: &[u8], w: Window) {
        let Some(spec) = self.window else { return };
        self.store.delete(data_key.to_vec());
        self.store.delete(index_key(EMIT_INDEX, w.end, data_key));
        self.store.delete(index_key(EXPIRE_INDEX, w.end + spec.retention_after_end(), data_key));
    }

    /// Runs the chunk's folds (one plugin call), writes the aggregates back, and turns its
    /// emits into records.
    fn run_chunk(&mut self, chunk: &mut Chunk, input: &[Record], out: &mut Emitted, failed: &mut BTreeSet<usize>) {
        if chunk.is_empty() {
            chunk.clear();
            return;
        }
        let n = chunk.entries.len();
        // The aggregate after each entry, or the error that failed it.
        let reduce = matches!(self.fold, Fold::Reduce(_));
        let results: EntryResults = match &mut self.fold {
            Fold::Count => {
                let mut state: Vec<u64> =
                    (0..chunk.slot_key.len()).map(|s| chunk.current(s).map_or(0, count_of)).collect();
                // Every count of the chunk is written into one buffer, and each result is a
                // slice of it: one allocation per chunk, not one per record.
                let mut counts = bytes::BytesMut::with_capacity(chunk.entry_slot.len() * 8);
                chunk
                    .entry_slot
                    .iter()
                    .map(|&s| {
                        state[s as usize] += 1;
                        counts.extend_from_slice(&count_bytes(state[s as usize]));
                        Ok(Some(counts.split().freeze()))
                    })
                    .collect()
            }
            Fold::Reduce(step) | Fold::Aggregate(step) => {
                let current_batch = &mut self.current_batch;
                let chunk = &*chunk;
                let called = step.call(&chunk.entries, |i, f, b| {
                    // A slot with no aggregate yet starts from this instance's initial one
                    // (a reducer's from its first record).
                    let initial = if reduce { None } else { initial_of(i.setup()) };
                    current_batch.clear();
                    for s in 0..chunk.slot_key.len() {
                        current_batch.push(chunk.slot_group[s].as_deref(), chunk.current(s).or(initial), 0);
                    }
                    let slots = &chunk.entry_slot;
                    if reduce {
                        i.reduce(f, b, slots, current_batch)
                    } else {
                        i.aggregate(f, b, slots, current_batch)
                    }
                });
                match called.and_then(|o| decode_results(o, n, step.label())) {
                    Ok(r) => r,
                    Err(e) => {
                        let code = FailureCode::from(&e);
                        vec![Err((code, e.to_string())); n]
                    }
                }
            }
        };
        // Fold the results into the slots, in order. A slot's new aggregate (`None` while it
        // has none but its current one) is `Bytes`, shared with its outputs, not copied.
        let mut slot_agg: Vec<Option<Option<Bytes>>> = vec![None; chunk.slot_key.len()];
        let mut slot_ts = chunk.slot_ts.clone();
        let mut slot_touched = vec![false; chunk.slot_key.len()];
        let mut after: Vec<Option<(i64, Option<Bytes>)>> = Vec::with_capacity(n);
        // In a store with a declared format: each slot's last result as stored.
        let mut slot_stored: Vec<Option<Vec<u8>>> =
            if self.store.has_format() { vec![None; chunk.slot_key.len()] } else { Vec::new() };
        // Slots with a result the store did not keep, and why: the plugin folded the slot's later
        // entries of this call on from it, so they fail too, or the refused record would count
        // in them.
        let mut refused: Vec<Option<FailureCode>> = Vec::new();
        for (i, r) in results.into_iter().enumerate() {
            let s = chunk.entry_slot[i] as usize;
            let r = match (refused.get(s).cloned().flatten(), r) {
                (Some(code), _) => {
                    Err((code, "folded in the same call after a result of its key that the store did not keep".to_owned()))
                }
                (None, Ok(Some(agg))) => keepable(&self.store, &agg).map(|stored| {
                    if let Some(stored) = stored {
                        slot_stored[s] = Some(stored);
                    }
                    Some(agg)
                }),
                (None, r) => r,
            };
            if let Err((code @ (FailureCode::State | FailureCode::Serialization), _)) = &r {
                refused.resize(chunk.slot_key.len(), None);
                refused[s] = Some(code.clone());
            }
            match r {
                Ok(agg) => {
                    slot_ts[s] = slot_ts[s].max(chunk.entries[i].timestamp);
                    after.push(Some((slot_ts[s], agg.clone())));
                    slot_agg[s] = Some(agg);
                    slot_touched[s] = true;
                }
                Err((code, message)) => {
                    let origin = chunk.entry_input[i];
                    if failed.insert(origin) {
                        out.failures.push(self.fail(input[origin].clone(), code, message));
                    }
                    after.push(None);
                }
            }
        }
        for s in 0..chunk.slot_key.len() {
            // A slot no entry changed keeps its aggregate (a session removed to be merged
            // into it is written back).
            if !slot_touched[s] && chunk.slot_ts[s] == i64::MIN {
                continue;
            }
            let agg = match &slot_agg[s] {
                Some(new) => new.as_deref(),
                None => chunk.current(s),
            };
            // A new result is stored as converted above.
            let converted = match slot_agg[s] {
                Some(Some(_)) => slot_stored.get_mut(s).and_then(Option::take),
                _ => None,
            };
            match (agg, converted) {
                (Some(_), Some(stored)) => {
                    encode_value_into(&mut self.value_buf, slot_ts[s], &stored);
                    self.store.put_slice(chunk.key(s), &self.value_buf);
                }
                (Some(agg), None) => {
                    // A result that does not match the store's format failed its entry above;
                    // the slot keeps its last good aggregate, which converts.
                    if let Err(e) = self.write(chunk.key(s), slot_ts[s], agg) {
                        tracing::error!(node = %self.node, error = %e, "an aggregate could not be stored");
                    }
                }
                (None, _) => self.store.delete(chunk.key(s).to_vec()),
            }
        }
        for e in chunk.emits.drain(..) {
            let (ts, value) = match e.value {
                EmitValue::Entry(i) => match &after[i] {
                    Some((ts, v)) => (*ts, v.clone()),
                    None => continue,
                },
                EmitValue::Known(v) => (e.timestamp, v),
            };
            let record = self.output(&e.key, e.window, value, ts, e.origin);
            match &mut self.cache {
                Some(cache) => {
                    if cache.put(record) {
                        out.all.extend(cache.drain());
                    }
                }
                None => out.all.push(record),
            }
        }
        chunk.clear();
    }

    /// An output record. A count goes out as decimal text (the store keeps it fixed-width),
    /// written into one buffer shared by many outputs.
    fn output(
        &mut self,
        key: &Bytes,
        window: Option<Window>,
        value: Option<Bytes>,
        timestamp: i64,
        origin: Origin,
    ) -> Record {
        let value = match (&self.fold, value) {
            (Fold::Count, Some(v)) => {
                if self.texts.capacity() - self.texts.len() < 20 {
                    self.texts.reserve(4096);
                }
                self.texts.extend_from_slice(itoa::Buffer::new().format(count_of(&v)).as_bytes());
                Some(self.texts.split().freeze())
            }
            (_, v) => v,
        };
        let (key, headers) = match window {
            Some(w) => {
                // The windowed key and the bounds' texts, into the shared buffer too.
                if self.texts.capacity() - self.texts.len() < key.len() + 80 {
                    self.texts.reserve(4096.max(key.len() + 80));
                }
                output_key_into(&mut self.texts, key, w);
                let key = self.texts.split().freeze();
                let mut n = itoa::Buffer::new();
                self.texts.extend_from_slice(n.format(w.start).as_bytes());
                let start = self.texts.split().freeze();
                self.texts.extend_from_slice(n.format(w.end).as_bytes());
                let end = self.texts.split().freeze();
                let headers = smallvec::smallvec![
                    Header { name: "wasp.window.start".into(), value: Some(start) },
                    Header { name: "wasp.window.end".into(), value: Some(end) },
                ];
                (key, headers)
            }
            None => (key.clone(), Headers::new()),
        };
        Record { key: Some(key), value, timestamp, headers, origin, old: None }
    }

    /// Merges several aggregates of one key into one (session windows).
    /// As Kafka Streams does, an aggregator's merge starts from its initial aggregate and
    /// folds every session into it with the merger (so a merger that is not a plain union,
    /// one that nests or counts merges, sees the initial aggregate too); a count and a reducer
    /// (which have no initializer of their own) start from the first session.
    fn merge(&mut self, key: &Bytes, aggs: Vec<Vec<u8>>) -> Result<Vec<u8>, Error> {
        let mut it = aggs.into_iter();
        let first = match (&self.fold, self.initial()) {
            (Fold::Aggregate(_), Some(initial)) => Some(initial),
            _ => it.next(),
        };
        let Some(mut acc) = first else {
            return Err((FailureCode::Plugin("merge".into()), "nothing to merge".into()));
        };
        for next in it {
            acc = match &mut self.fold {
                Fold::Count => count_bytes(count_of(&acc) + count_of(&next)).to_vec(),
                Fold::Reduce(step) => {
                    // A reducer merges two aggregates as it folds a value into an aggregate.
                    let current =
                        [Record { key: Some(key.clone()), value: Some(Bytes::from(acc)), ..Default::default() }];
                    let mut current_batch = EncodedBatch::default();
                    current_batch.encode(current.iter());
                    let entry =
                        [Record { key: Some(key.clone()), value: Some(Bytes::from(next)), ..Default::default() }];
                    let called = step.call(&entry, |i, f, b| i.reduce(f, b, &[0], &mut current_batch));
                    single(called.and_then(|o| decode_results(o, 1, step.label())))?
                }
                Fold::Aggregate(step) => {
                    let left = [Record { key: Some(key.clone()), value: Some(Bytes::from(acc)), ..Default::default() }];
                    let mut left_batch = EncodedBatch::default();
                    left_batch.encode(left.iter());
                    let right =
                        [Record { key: Some(key.clone()), value: Some(Bytes::from(next)), ..Default::default() }];
                    let called = step.call(&right, |i, f, b| i.merge(f, &mut left_batch, b));
                    single(called.and_then(|o| decode_results(o, 1, step.label())))?
                }
            };
        }
        Ok(acc)
    }

    /// A key's windows from `from` to `to` (exclusive), the neighbours a session or sliding
    /// record touches; `None` when the store failed, and the record then fails with `state`.
    fn neighbours(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        r: &Record,
        input: usize,
        out: &mut Emitted,
        failed: &mut BTreeSet<usize>,
    ) -> Option<crate::state::Entries> {
        let found = self.store.range(from, to, MAX_WINDOWS_PER_KEY_SCAN).and_then(|found| match self.store.has_format() {
            false => Ok(found),
            true => found.into_iter().map(|(k, v)| Ok((k, self.viewed(v)?))).collect(),
        });
        match found {
            Ok(found) => Some(found),
            Err(e) => {
                failed.insert(input);
                out.failures.push(self.fail(r.clone(), FailureCode::State, e.to_string()));
                None
            }
        }
    }

    /// Kafka Streams' session aggregation for one record.
    #[allow(clippy::too_many_arguments)]
    fn session(
        &mut self,
        chunk: &mut Chunk,
        r: &Record,
        input: usize,
        group: &Bytes,
        gap: i64,
        close: i64,
        out: &mut Emitted,
        failed: &mut BTreeSet<usize>,
    ) -> bool {
        let t = r.timestamp;
        let prefix = key_prefix(group);
        let mut from = prefix.clone();
        from.extend_from_slice(&time_bytes(t - gap));
        let Some(found) = self.neighbours(&from, prefix_end(&prefix).as_deref(), r, input, out, failed) else { return true };
        let sessions: Vec<(Vec<u8>, Window, i64, Vec<u8>)> = found
            .into_iter()
            .filter_map(|(k, v)| {
                let (_, w) = decode_data_key(&k, true)?;
                let (ts, agg) = decode_value(&v)?;
                (w.start <= t + gap).then(|| (k.clone(), w, ts, agg.to_vec()))
            })
            .collect();
        let merged = sessions.iter().fold(Window { start: t, end: t }, |m, s| Window {
            start: m.start.min(s.1.start),
            end: m.end.max(s.1.end),
        });
        if merged.end < close {
            return false;
        }
        // Kafka Streams: the record's session starts from the initializer, and every session it
        // bridges is merged into it, even when there is only one.
        let current = match sessions.len() {
            0 => None,
            _ => {
                let ts = sessions.iter().map(|s| s.2).max().unwrap_or(t);
                match self.merge(group, sessions.iter().map(|s| s.3.clone()).collect()) {
                    Ok(agg) => Some((ts, agg)),
                    Err((code, message)) => {
                        failed.insert(input);
                        out.failures.push(self.fail(r.clone(), code, message));
                        return true;
                    }
                }
            }
        };
        // When the record lands on a session [t, t] of its own and nothing else, that session
        // is updated in place: no tombstone for it (Kafka Streams compares the merged window
        // with the record's).
        let in_place = merged == Window { start: t, end: t };
        for (k, w, ts, _) in sessions.iter().filter(|_| !in_place) {
            self.remove_window(k, *w);
            if !self.emit_final {
                chunk.emits.push(Emit {
                    key: group.clone(),
                    window: Some(*w),
                    value: EmitValue::Known(None),
                    timestamp: *ts,
                    origin: r.origin,
                });
            }
        }
        let data_key = session_key(group, merged);
        if !sessions.is_empty() && !in_place {
            self.index_new_window(&data_key, merged);
        }
        let current = current.as_ref().map(|(ts, agg)| (*ts, agg.as_slice()));
        self.fold_into(chunk, &data_key, group, Some(merged), current, r, input, true);
        true
    }

    /// Kafka Streams' sliding-window aggregation for one record (`processInOrder`).
    #[allow(clippy::too_many_arguments)]
    fn sliding(
        &mut self,
        chunk: &mut Chunk,
        r: &Record,
        input: usize,
        group: &Bytes,
        diff: i64,
        close: i64,
        out: &mut Emitted,
        failed: &mut BTreeSet<usize>,
    ) -> bool {
        let t = r.timestamp;
        if t + 1 + diff <= close {
            return false;
        }
        if t < diff {
            return self.sliding_early(chunk, r, input, group, diff, close, out, failed);
        }
        let from = window_key(group, Window { start: (t - 2 * diff).max(0), end: 0 });
        let to = window_key(group, Window { start: t + 2, end: 0 });
        let Some(found) = self.neighbours(&from, Some(&to), r, input, out, failed) else { return true };
        let mut starts = HashSet::new();
        let (mut left_agg, mut right_agg, mut previous) = (None, None, None);
        let (mut left_created, mut right_created) = (false, false);
        for (k, v) in found {
            let (Some((_, w)), Some((ts, agg))) = (decode_data_key(&k, false), decode_value(&v)) else { continue };
            let (start, end) = (w.start, w.start + diff);
            starts.insert(start);
            let agg = agg.to_vec();
            if end < t {
                left_agg = Some(agg);
                previous = Some(ts);
            } else if end == t {
                left_created = true;
                if ts < t {
                    previous = Some(ts);
                }
                self.update_window(chunk, &k, group, Window { start, end }, Some((ts, agg)), r, input, close);
            } else if start <= t {
                right_agg = Some((ts, agg.clone()));
                self.update_window(chunk, &k, group, Window { start, end }, Some((ts, agg)), r, input, close);
            } else if start == t + 1 {
                right_created = true;
            }
        }
        if let Some(p) = previous {
            let start = p + 1;
            if !starts.contains(&start) && start + diff >= t {
                let w = Window { start, end: start + diff };
                self.update_window(chunk, &window_key(group, w), group, w, None, r, input, close);
            }
        }
        if !left_created {
            let w = Window { start: t - diff, end: t };
            let base = match (previous, left_agg) {
                (Some(p), Some(agg)) if t - diff <= p => Some((t, agg)),
                _ => None,
            };
            let key = window_key(group, w);
            if base.is_none() {
                self.update_window(chunk, &key, group, w, None, r, input, close);
            } else {
                self.index_new_window(&key, w);
                self.update_window(chunk, &key, group, w, base, r, input, close);
            }
        }
        if !right_created
            && let Some((ts, agg)) = right_agg
            && ts > t
        {
            self.create_right_window(chunk, group, Window { start: t + 1, end: t + 1 + diff }, ts, agg, r.origin);
        }
        true
    }

    /// Kafka Streams' `processEarly`: a record earlier than the time difference would make
    /// windows that start before 0, so it goes into the window [0, difference], which holds
    /// every early record; the right windows of early records are made as later ones come.
    #[allow(clippy::too_many_arguments)]
    fn sliding_early(
        &mut self,
        chunk: &mut Chunk,
        r: &Record,
        input: usize,
        group: &Bytes,
        diff: i64,
        close: i64,
        out: &mut Emitted,
        failed: &mut BTreeSet<usize>,
    ) -> bool {
        let t = r.timestamp;
        let from = window_key(group, Window { start: 0, end: 0 });
        let to = window_key(group, Window { start: t + 2, end: 0 });
        let Some(found) = self.neighbours(&from, Some(&to), r, input, out, failed) else { return true };
        let mut starts = HashSet::new();
        let (mut combined, mut right_agg, mut previous, mut right_created) = (None, None, None, false);
        for (k, v) in found {
            let (Some((_, w)), Some((ts, agg))) = (decode_data_key(&k, false), decode_value(&v)) else { continue };
            starts.insert(w.start);
            if w.start == 0 {
                // The previous record's right window is made below, unless it is older.
                if ts < t {
                    previous = Some(ts);
                }
                combined = Some((k, ts, agg.to_vec()));
            } else if w.start <= t {
                right_agg = Some((ts, agg.to_vec()));
                let w = Window { start: w.start, end: w.start + diff };
                self.update_window(chunk, &k, group, w, Some((ts, agg.to_vec())), r, input, close);
            } else if w.start == t + 1 {
                right_created = true;
            }
        }
        // Without a later window, the combined window holds only records after this one.
        if right_agg.is_none()
            && let Some((_, ts, agg)) = &combined
            && *ts > t
        {
            right_agg = Some((*ts, agg.clone()));
        }
        if !right_created
            && let Some((ts, agg)) = right_agg
            && ts > t
        {
            self.create_right_window(chunk, group, Window { start: t + 1, end: t + 1 + diff }, ts, agg, r.origin);
        }
        if let Some(p) = previous
            && !starts.contains(&(p + 1))
        {
            let w = Window { start: p + 1, end: p + 1 + diff };
            self.update_window(chunk, &window_key(group, w), group, w, None, r, input, close);
        }
        let w = Window { start: 0, end: diff };
        match combined {
            None => self.update_window(chunk, &window_key(group, w), group, w, None, r, input, close),
            Some((k, ts, agg)) => self.update_window(chunk, &k, group, w, Some((ts, agg)), r, input, close),
        }
        true
    }

    /// A record's right window, made from the aggregate of the records after it (Kafka
    /// Streams' `createCurrentRecordRightWindow`: stored and emitted as it is, not folded).
    fn create_right_window(&mut self, chunk: &mut Chunk, group: &Bytes, w: Window, ts: i64, agg: Vec<u8>, origin: Origin) {
        let key = window_key(group, w);
        self.index_new_window(&key, w);
        if let Err(e) = self.write(&key, ts, &agg) {
            tracing::error!(node = %self.node, error = %e, "an aggregate could not be stored");
        }
        if !self.emit_final {
            chunk.emits.push(Emit {
                key: group.clone(),
                window: Some(w),
                value: EmitValue::Known(Some(Bytes::from(agg))),
                timestamp: ts,
                origin,
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn update_window(
        &mut self,
        chunk: &mut Chunk,
        key: &[u8],
        group: &Bytes,
        w: Window,
        current: Option<(i64, Vec<u8>)>,
        r: &Record,
        input: usize,
        close: i64,
    ) {
        // A sliding window's end is inclusive: it takes records while `end >= close`
        // (`KStreamSlidingWindowAggregate.updateWindowAndForward`).
        if w.end >= close {
            let current = current.as_ref().map(|(ts, agg)| (*ts, agg.as_slice()));
            self.fold_into(chunk, key, group, Some(w), current, r, input, true);
        }
    }

    /// Emits (emit-final) and forgets the windows that closed by `close`. `closes` holds, for
    /// each record of the batch applied in order, the close time after it and where it was
    /// read: a final result carries the origin of the record that closed its window (the
    /// same however the input is batched), else `fallback`'s.
    fn close_windows(
        &mut self,
        close: i64,
        closes: &[(i64, Origin)],
        fallback: Origin,
        out: &mut Emitted,
    ) -> Result<(), String> {
        let Some(spec) = self.window else { return Ok(()) };
        let session = matches!(spec, WindowSpec::Session { .. });
        // A time window (end exclusive) is open while `end > close`; a session and a sliding
        // window (ends inclusive) while `end >= close`. Index entries below `limit` are due.
        let inclusive = !matches!(spec, WindowSpec::Time { .. });
        let limit = if inclusive { close } else { close + 1 };
        if self.emit_final {
            let to = index_key(EMIT_INDEX, limit, &[]);
            let due = self.store.range(&[EMIT_INDEX], Some(&to), usize::MAX).map_err(|e| e.to_string())?;
            for (k, _) in due {
                let data_key = k[9..].to_vec();
                self.store.delete(k);
                let Some((ts, agg)) = self.read(&data_key)? else { continue };
                let Some((group, mut w)) = decode_data_key(&data_key, session) else { continue };
                if let WindowSpec::Time { size, .. } = spec {
                    w.end = w.start + size;
                } else if let WindowSpec::Sliding { difference, .. } = spec {
                    w.end = w.start + difference;
                }
                let group = Bytes::copy_from_slice(group);
                let closer = closes.partition_point(|(c, _)| if inclusive { *c <= w.end } else { *c < w.end });
                let origin = closes.get(closer).map_or(fallback, |(_, o)| *o);
                out.all.push(self.output(&group, Some(w), Some(Bytes::from(agg)), ts, origin));
            }
        }
        let to = index_key(EXPIRE_INDEX, limit, &[]);
        let expired = self.store.range(&[EXPIRE_INDEX], Some(&to), usize::MAX).map_err(|e| e.to_string())?;
        for (k, _) in expired {
            self.store.delete(k[9..].to_vec());
            self.store.delete(k);
        }
        Ok(())
    }
}

/// An aggregator instance's initial aggregate.
pub(super) fn initial_of(setup: &crate::wasm::Setup) -> Option<&[u8]> {
    match setup {
        crate::wasm::Setup::Initial(v) => Some(v),
        _ => None,
    }
}

/// The per-entry results of an aggregate or reduce call.
pub(super) fn decode_results(o: crate::wasm::WasmOutput, n: usize, label: &str) -> Result<EntryResults, CallFailure> {
    let bad = |reason: &str| CallFailure::Trap { plugin: label.to_owned(), reason: reason.to_owned() };
    let produced = crate::record::DecodedBatch::new(o.records.index, o.records.timestamps, o.records.data)
        .map_err(|e| bad(&e.to_string()))?;
    let mut results: Vec<Option<Result<Option<Bytes>, Error>>> = vec![None; n];
    for e in o.errors {
        if let Some(slot) = results.get_mut(e.index as usize) {
            *slot = Some(Err((e.code.into(), e.message)));
        }
    }
    let origins = if o.origins.is_empty() && produced.len() == n { (0..n as u32).collect() } else { o.origins };
    if origins.len() != produced.len() || origins.iter().any(|&x| x as usize >= n) {
        return Err(bad("returned aggregates that do not match its input"));
    }
    for (j, &origin) in origins.iter().enumerate() {
        // Slices of the plugin's output buffer: no copy per aggregate.
        results[origin as usize] = Some(Ok(produced.value(j)));
    }
    results.into_iter().map(|r| r.ok_or_else(|| bad("returned no aggregate and no error for a record"))).collect()
}

fn single(r: Result<EntryResults, CallFailure>) -> Result<Vec<u8>, Error> {
    match r {
        Ok(mut v) => match v.pop() {
            Some(Ok(Some(agg))) => Ok(agg.to_vec()),
            Some(Ok(None)) => Err((FailureCode::Plugin("merge".into()), "the merger returned no aggregate".into())),
            Some(Err(e)) => Err(e),
            None => Err((FailureCode::Plugin("merge".into()), "the merger returned nothing".into())),
        },
        Err(e) => Err((FailureCode::Trap, e.to_string())),
    }
}

impl Operator for Aggregate {
    fn process(&mut self, input: Vec<Record>) -> Emitted {
        let mut out = Emitted::default();
        let mut failed = BTreeSet::new();
        let mut chunk = std::mem::take(&mut self.chunk);
        let per_key_split = matches!(self.window, Some(WindowSpec::Session { .. } | WindowSpec::Sliding { .. }));
        let mut late = Vec::new();
        let mut direct = DirectUpstream::default();
        let mut closes: Vec<(i64, Origin)> = Vec::new();
        for (i, r) in input.iter().enumerate() {
            // Kafka Streams drops records with a null key in aggregations, with a warning and
            // its dropped-records metric; here such a record fails with `null-key` and follows
            // the step's `on_error` (dead-lettered, skipped and counted, or stopping the run),
            // so none goes unseen. A null value (a tombstone in a stream) is ignored, as in
            // Kafka Streams.
            let Some(group) = &r.key else {
                let message = "the record has no key, and an aggregation groups by its key (Kafka Streams drops \
                               such records; on_error = \"skip\" does too, and counts them)";
                out.failures.push(self.fail(r.clone(), FailureCode::NullKey, message.to_owned()));
                continue;
            };
            if r.value.is_none() {
                tracing::debug!(step = %self.node, offset = r.origin.offset, "record with a null value skipped");
                continue;
            }
            let direct = direct.name(&self.topics, r);
            let Some((upstream, position)) = upstream_of(r, direct) else { continue };
            let position = self.seq.next(upstream, position);
            if !self.store.first_time(upstream, position) {
                continue;
            }
            let stream_time = self.store.advance_stream_time(r.timestamp);
            if let Some(spec) = self.window {
                closes.push((stream_time - spec.grace(), r.origin));
            }
            if per_key_split && chunk.groups.contains(group) {
                self.run_chunk(&mut chunk, &input, &mut out, &mut failed);
            }
            let group = group.clone();
            let accepted = match self.window {
                None => {
                    // The data key is written into a buffer kept from record to record.
                    let mut key = std::mem::take(&mut self.key_buf);
                    key.clear();
                    key.push(DATA);
                    key.extend_from_slice(&group);
                    // A key already in the chunk folds on from its slot: no store read.
                    let mut read = std::mem::take(&mut self.read_buf);
                    let current =
                        if chunk.slot(&key).is_some() { Ok(None) } else { self.read_into(&key, &mut read) };
                    match current {
                        Ok(current) => {
                            let current = current.map(|ts| (ts, read.as_slice()));
                            self.fold_into(&mut chunk, &key, &group, None, current, r, i, per_key_split);
                        }
                        Err(e) => {
                            failed.insert(i);
                            out.failures.push(self.fail(r.clone(), FailureCode::State, e));
                        }
                    }
                    self.key_buf = key;
                    self.read_buf = read;
                    true
                }
                Some(WindowSpec::Time { size, advance, grace }) => {
                    let close = stream_time - grace;
                    let mut any = false;
                    let mut key = std::mem::take(&mut self.key_buf);
                    let mut read = std::mem::take(&mut self.read_buf);
                    for w in time_windows(r.timestamp, size, advance) {
                        if w.end <= close {
                            continue;
                        }
                        any = true;
                        window_key_into(&mut key, &group, w);
                        let current = if chunk.slot(&key).is_some() {
                            None
                        } else {
                            match self.read_into(&key, &mut read) {
                                Ok(c) => c.map(|ts| (ts, read.as_slice())),
                                Err(e) => {
                                    failed.insert(i);
                                    out.failures.push(self.fail(r.clone(), FailureCode::State, e));
                                    break;
                                }
                            }
                        };
                        self.fold_into(&mut chunk, &key, &group, Some(w), current, r, i, per_key_split);
                    }
                    self.key_buf = key;
                    self.read_buf = read;
                    any
                }
                Some(WindowSpec::Session { gap, grace }) => {
                    self.session(&mut chunk, r, i, &group, gap, stream_time - grace, &mut out, &mut failed)
                }
                Some(WindowSpec::Sliding { difference, grace }) => {
                    self.sliding(&mut chunk, r, i, &group, difference, stream_time - grace, &mut out, &mut failed)
                }
            };
            if !accepted {
                late.push(i);
            }
        }
        self.run_chunk(&mut chunk, &input, &mut out, &mut failed);
        self.chunk = chunk;
        if let (Some(spec), Some(st)) = (self.window, self.store.stream_time())
            && let Err(e) = self.close_windows(
                st - spec.grace(),
                &closes,
                input.last().map_or_else(Origin::default, |r| r.origin),
                &mut out,
            )
        {
            tracing::error!(step = %self.node, error = %e, "closing windows failed; they close at the next batch");
        }
        if !late.is_empty() {
            tracing::debug!(step = %self.node, records = late.len(), "late records dropped: their windows had closed");
            out.late = late.len() as u64;
            if let Some(topic) = &self.late_topic {
                out.to_topics.push((topic.clone(), late.into_iter().map(|i| input[i].clone()).collect()));
            }
        }
        out
    }

    fn with_stores(&mut self, f: &mut dyn FnMut(&mut Store)) {
        f(&mut self.store);
    }

    /// An aggregation's store: each group's aggregate (a count as decimal text). Without
    /// windows, by key, range or prefix, an entry past the store's TTL reading as absent; with
    /// windows, a key's windows (or sessions) in a time range, each with its bounds.
    fn query(
        &mut self,
        store: &str,
        query: &crate::state::StoreQuery,
        limit: usize,
    ) -> Option<crate::state::QueryResult> {
        use crate::state::{QueryRow, StoreQuery};
        if self.store.name() != store {
            return None;
        }
        let value = |agg: &[u8]| match self.fold {
            Fold::Count => Ok(count_of(agg).to_string().into_bytes()),
            // A value that does not read in the store's format fails the query (Kafka
            // Streams' serde throws there too).
            _ => self.store.view(agg).map(std::borrow::Cow::into_owned),
        };
        if let Some(spec) = self.window {
            let StoreQuery::Windows { key, from, to } = query else { return Some(Ok(Vec::new())) };
            let session = matches!(spec, WindowSpec::Session { .. });
            let prefix = key_prefix(key);
            // Sessions sort by end, windows by start: either way `from` is where to begin.
            let first = [&prefix[..], &time_bytes(*from)].concat();
            let past = match crate::state::prefix_end(&prefix) {
                Some(p) => p,
                None => return Some(Ok(Vec::new())),
            };
            let rows = match self.store.range(&first, Some(&past), MAX_WINDOWS_PER_KEY_SCAN) {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            };
            let found = rows
                .into_iter()
                .filter_map(|(k, v)| {
                    let (_, mut w) = decode_data_key(&k, session)?;
                    match spec {
                        WindowSpec::Time { size, .. } => w.end = w.start + size,
                        WindowSpec::Sliding { difference, .. } => w.end = w.start + difference,
                        WindowSpec::Session { .. } => {}
                    }
                    (w.start <= *to).then_some((w, v))
                })
                .take(limit)
                .filter_map(|(w, v)| {
                    let (_, agg) = decode_value(&v)?;
                    Some(value(agg).map(|value| QueryRow { key: key.clone(), window: Some(w), value }))
                })
                .collect();
            return Some(found);
        }
        let data = |k: &[u8]| [&[DATA][..], k].concat();
        let rows = match query {
            StoreQuery::Key(k) => self.store.get(&data(k)).map(|v| v.map(|v| vec![(data(k), v)]).unwrap_or_default()),
            StoreQuery::Range { from, to } => {
                let end = to.as_deref().map_or_else(|| vec![DATA + 1], data);
                self.store.range(&data(from), Some(&end), limit)
            }
            StoreQuery::Prefix(p) => self.store.prefix(&data(p), limit),
            StoreQuery::Windows { .. } | StoreQuery::KeyAsOf { .. } => Ok(Vec::new()),
        };
        let live = |t: i64| match (self.store.spec.ttl_ms, self.store.stream_time()) {
            (Some(ttl), Some(now)) => t >= now - ttl,
            _ => true,
        };
        Some(rows.and_then(|rows| {
            rows.into_iter()
                .filter_map(|(k, v)| {
                    let (t, _) = decode_value(&v)?;
                    (live(t) && k.len() > 1).then_some((k, v))
                })
                .take(limit)
                .map(|(k, v)| Ok(QueryRow { key: k[1..].to_vec(), window: None, value: value(&v[8..])? }))
                .collect()
        }))
    }

    fn held(&self) -> usize {
        self.cache.as_ref().map_or(0, RecordCache::len)
    }

    fn flush(&mut self) -> Emitted {
        match &mut self.cache {
            Some(cache) if !cache.is_empty() => Emitted { all: cache.drain(), ..Default::default() },
            _ => Emitted::default(),
        }
    }

    fn rerunnable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::{count_bytes, count_of};

    #[test]
    fn counts_are_stored_fixed_width_and_decimal_text_of_older_stores_still_reads() {
        assert_eq!(count_bytes(5), [0, 0, 0, 0, 0, 0, 0, 5]);
        for n in [0, 1, 255, 12_345_678, 1 << 40] {
            assert_eq!(count_of(&count_bytes(n)), n);
        }
        // Eight decimal digits are eight bytes too, but never start with a zero byte.
        assert_eq!(count_of(b"12345678"), 12_345_678);
        assert_eq!(count_of(b"7"), 7);
    }
}
