//! State stores: what aggregations, windows and (later) processors remember between records.
//!
//! A [`Store`] is one store of one task. It keeps the writes of the current commit interval in
//! memory (the write cache: repeated writes to one key become one), and at a commit it turns
//! them into changelog records, followed by a *marker* that carries the store's input
//! positions and stream time. Only after the changelog is acknowledged does it write the same
//! entries to its [`Backend`] (RocksDB or memory) in one atomic batch. Restoring replays the
//! changelog up to its last marker, so a store never holds half a commit.
//!
//! The positions make updates idempotent: each store remembers, per upstream partition, the
//! last record (offset and sequence number) it applied, and skips records at or before it. A
//! record read twice after a crash, or written twice into a repartition topic by a restarted
//! upstream task, is applied once. Kafka Streams needs transactions for this; wasp keeps the
//! guarantee with the at-least-once brokers it can be tested against here.

mod memory;
mod rocks;
pub mod versions;
pub mod windows;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use memory::MemoryBackend;
pub use rocks::RocksBackend;

use crate::record::{Header, Record};

pub use crate::record::{MARKER_HEADER, POSITION_HEADER};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("store `{store}`: {message}")]
    Backend { store: String, message: String },
    #[error("store `{store}`: a changelog marker is malformed: {message}")]
    Marker { store: String, message: String },
    /// The store's files are held by another task of this process, which has not closed yet.
    #[error("store `{store}`: {message}")]
    Locked { store: String, message: String },
    /// A value does not convert between the store's declared format and the JSON plugins see.
    #[error("store `{store}`: a value {message}")]
    Format { store: String, message: String },
}

/// A store's declared value format (`[stores.NAME] value`, Kafka Streams' value serde of a
/// materialized store): the store keeps values in it, and plugins read and write them as
/// JSON. The runtime implements it over the topic codecs.
pub trait ValueFormat: Send + Sync {
    /// The stored bytes as plugins see them, in `out` (cleared); the error completes
    /// "a value …".
    fn read(&self, stored: &[u8], out: &mut Vec<u8>) -> Result<(), String>;
    /// JSON from a plugin as the store keeps it, in `out` (cleared).
    fn write(&self, json: &[u8], out: &mut Vec<u8>) -> Result<(), String>;
}

pub use crate::manifest::StoreKind;

/// A store's settings, from `[stores.*]` or the defaults of an implicit store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    /// Stable across restarts: the changelog topic is `<application-id>-<name>-changelog`.
    pub name: String,
    pub kind: StoreKind,
    /// RocksDB on disk, or memory (restored from the changelog alone).
    pub persistent: bool,
    pub changelog: bool,
    /// Entries not updated for this long (in stream time) read as absent.
    pub ttl_ms: Option<i64>,
    /// The RocksDB block cache, in bytes; pending writes past it force a commit, and the
    /// record cache holds at most this much.
    pub cache_bytes: usize,
    /// The record cache (Kafka Streams' caching, KIP-63): an aggregation's updates to a key
    /// collapse to the last one until the next commit.
    pub caching: bool,
    /// A table's store whose changelog is the topic the table reads (Kafka Streams' source
    /// topic optimization): restored from that topic, never written to it.
    pub source_topic: Option<String>,
    /// A versioned table's history store (KIP-889): each key's values by timestamp
    /// ([`versions`]), kept this long in stream time; restored from the table's topic too.
    pub history_ms: Option<i64>,
    /// A versioned table's latest rows: a restore from the table's topic keeps each key's row
    /// with the greatest timestamp (an older update is history only), not the last one read.
    pub latest_by_time: bool,
}

/// Where an upstream record was: the unit of idempotence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    pub offset: i64,
    pub seq: u32,
}

/// What a commit marker (and the backend's metadata) records besides the entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The last applied position per upstream `topic/partition`.
    pub positions: BTreeMap<String, Position>,
    /// The largest timestamp the store's operator has seen.
    pub stream_time: Option<i64>,
    /// The changelog offset to restore from next time (the backend's copy only).
    #[serde(default)]
    pub checkpoint: Option<i64>,
}

/// Key-value pairs, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// What an interactive query reads of a key-value store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreQuery {
    Key(Vec<u8>),
    /// A versioned table's value for a key as of a time (Kafka Streams' `VersionedKeyQuery`
    /// with `asOf`).
    KeyAsOf {
        key: Vec<u8>,
        ts: i64,
    },
    /// A key's windows in a window store whose start is in `from..=to` (Kafka Streams'
    /// `WindowStore.fetch(key, timeFrom, timeTo)`), or its sessions in a session store that
    /// end at `from` or later and start at `to` or earlier (`SessionStore.findSessions`).
    Windows {
        key: Vec<u8>,
        from: i64,
        to: i64,
    },
    /// Keys from `from` (inclusive) to `to` (exclusive; no bound without one).
    Range {
        from: Vec<u8>,
        to: Option<Vec<u8>>,
    },
    Prefix(Vec<u8>),
}

/// Durable key-value storage under a [`Store`]. Keys sort bytewise.
pub trait Backend: Send {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String>;
    /// Appends the value of `key` to `out`, if there is one: the hot path's read, which
    /// allocates nothing when `out` has room.
    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        Ok(self.get(key)?.map(|v| out.extend_from_slice(&v)).is_some())
    }
    /// Entries with `from <= key < to` (no upper bound when `to` is `None`), in key order, at
    /// most `limit` of them, and none past the one that brings their keys and values to
    /// `max_bytes`.
    fn range(&self, from: &[u8], to: Option<&[u8]>, limit: usize, max_bytes: usize) -> Result<Entries, String>;
    /// Applies the writes (`None` deletes) and the progress atomically.
    fn write(&mut self, writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>, progress: &Progress) -> Result<(), String>;
    /// The progress of the last write, if any.
    fn progress(&self) -> Result<Option<Progress>, String>;
    /// Removes every entry and the progress.
    fn clear(&mut self) -> Result<(), String>;
}

/// One store of one task.
pub struct Store {
    pub spec: StoreSpec,
    backend: Box<dyn Backend>,
    /// Writes since the last commit; `None` deletes.
    dirty: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// The bytes `dirty` holds, kept as it changes (the commit-on-size check reads it after
    /// every batch).
    dirty_bytes: usize,
    progress: Progress,
    /// The topic and partition of the changelog, when it has one.
    changelog: Option<(String, i32)>,
    /// Changelog records queued by `prepare_commit`, waiting for `commit`.
    committing: bool,
    /// While a savepoint is open: what each key written since held in `dirty` before, to undo
    /// a plugin call that trapped.
    undo: Option<BTreeMap<Vec<u8>, Pending>>,
    /// The declared value format, if any: its users convert values with [`Store::view`] and
    /// [`Store::stored`]. The changelog and restores carry the stored bytes as they are.
    format: Option<Arc<dyn ValueFormat>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("name", &self.spec.name).finish_non_exhaustive()
    }
}

/// A key's pending write before a savepoint: `None` when it had none, else the write
/// (`Some(None)` a delete).
type Pending = Option<Option<Vec<u8>>>;

/// What a pending write of a key of `key_len` bytes holds.
fn entry_bytes(key_len: usize, value: &Option<Vec<u8>>) -> usize {
    key_len + value.as_ref().map_or(0, Vec::len)
}

/// The directory of a task's store: `<state.dir>/<application-id>/<task>/<store>`.
pub fn store_dir(state_dir: &Path, application_id: &str, task: &str, store: &str) -> PathBuf {
    state_dir.join(application_id).join(task).join(store)
}

impl Store {
    /// Opens (or creates) the store. `changelog` is the changelog partition, when changelogs
    /// are on and there is a broker to write them to.
    pub fn open(spec: StoreSpec, dir: Option<&Path>, changelog: Option<(String, i32)>) -> Result<Self, StateError> {
        let name = spec.name.clone();
        let backend: Box<dyn Backend> = match (spec.persistent, dir) {
            (true, Some(dir)) => Box::new(RocksBackend::open(dir, spec.cache_bytes).map_err(|e| match e {
                rocks::OpenFailure::Locked(message) => StateError::Locked { store: name.clone(), message },
                rocks::OpenFailure::Other(message) => StateError::Backend { store: name.clone(), message },
            })?),
            _ => Box::new(MemoryBackend::default()),
        };
        let progress =
            backend.progress().map_err(|message| StateError::Backend { store: name, message })?.unwrap_or_default();
        let changelog = if spec.changelog { changelog } else { None };
        Ok(Self {
            spec,
            backend,
            dirty: BTreeMap::new(),
            dirty_bytes: 0,
            progress,
            changelog,
            committing: false,
            undo: None,
            format: None,
        })
    }

    /// Sets the declared value format (at open).
    pub fn set_format(&mut self, format: Option<Arc<dyn ValueFormat>>) {
        self.format = format;
    }

    /// Whether the store declares a value format.
    pub fn has_format(&self) -> bool {
        self.format.is_some()
    }

    /// A stored value as plugins see it: itself, or read from the declared format.
    pub fn view<'a>(&self, stored: &'a [u8]) -> Result<Cow<'a, [u8]>, StateError> {
        self.convert(stored, |f, v, out| f.read(v, out))
    }

    /// A value from a plugin as the store keeps it: itself, or written in the declared format.
    pub fn stored<'a>(&self, json: &'a [u8]) -> Result<Cow<'a, [u8]>, StateError> {
        self.convert(json, |f, v, out| f.write(v, out))
    }

    /// [`Store::view`] of a value read whole (`Vec` in, `Vec` out: no copy without a format).
    pub fn view_owned(&self, stored: Vec<u8>) -> Result<Vec<u8>, StateError> {
        self.convert_owned(stored, |f, v, out| f.read(v, out))
    }

    /// [`Store::stored`] of a value given whole.
    pub fn stored_owned(&self, json: Vec<u8>) -> Result<Vec<u8>, StateError> {
        self.convert_owned(json, |f, v, out| f.write(v, out))
    }

    fn convert_owned(
        &self,
        value: Vec<u8>,
        f: impl FnOnce(&dyn ValueFormat, &[u8], &mut Vec<u8>) -> Result<(), String>,
    ) -> Result<Vec<u8>, StateError> {
        match &self.format {
            None => Ok(value),
            Some(_) => self.convert(&value, f).map(Cow::into_owned),
        }
    }

    fn convert<'a>(
        &self,
        value: &'a [u8],
        f: impl FnOnce(&dyn ValueFormat, &[u8], &mut Vec<u8>) -> Result<(), String>,
    ) -> Result<Cow<'a, [u8]>, StateError> {
        let Some(format) = &self.format else { return Ok(Cow::Borrowed(value)) };
        let mut out = Vec::new();
        f(&**format, value, &mut out)
            .map_err(|message| StateError::Format { store: self.spec.name.clone(), message })?;
        Ok(Cow::Owned(out))
    }

    fn err(&self, message: String) -> StateError {
        StateError::Backend { store: self.spec.name.clone(), message }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The changelog partition this store writes, if any.
    pub fn changelog(&self) -> Option<&(String, i32)> {
        self.changelog.as_ref()
    }

    /// The changelog offset to restore from: after the last locally committed marker.
    pub fn checkpoint(&self) -> Option<i64> {
        self.progress.checkpoint
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        if let Some(v) = self.dirty.get(key) {
            return Ok(v.clone());
        }
        self.backend.get(key).map_err(|e| self.err(e))
    }

    /// [`Store::get`], appending the value to `out`; `false` when the key has none.
    pub fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, StateError> {
        if let Some(v) = self.dirty.get(key) {
            return Ok(v.as_ref().map(|v| out.extend_from_slice(v)).is_some());
        }
        self.backend.get_into(key, out).map_err(|e| self.err(e))
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.write(key, Some(value));
    }

    /// [`Store::put`] from borrowed bytes: a key written again before the commit has its
    /// pending value overwritten in place, so the steady state allocates nothing.
    pub fn put_slice(&mut self, key: &[u8], value: &[u8]) {
        if self.undo.is_none()
            && let Some(Some(pending)) = self.dirty.get_mut(key)
        {
            self.dirty_bytes = self.dirty_bytes - pending.len() + value.len();
            pending.clear();
            pending.extend_from_slice(value);
            return;
        }
        self.write(key.to_vec(), Some(value.to_vec()));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.write(key, None);
    }

    fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let k = key.len();
        self.dirty_bytes += entry_bytes(k, &value);
        match &mut self.undo {
            Some(undo) => {
                let before = self.dirty.insert(key.clone(), value);
                if let Some(b) = &before {
                    self.dirty_bytes -= entry_bytes(k, b);
                }
                undo.entry(key).or_insert(before);
            }
            None => {
                if let Some(b) = self.dirty.insert(key, value) {
                    self.dirty_bytes -= entry_bytes(k, &b);
                }
            }
        }
    }

    /// Opens a savepoint: the writes from here on can be undone together
    /// ([`Store::roll_back_savepoint`]), as when a plugin call traps halfway and its batch runs
    /// again. A savepoint already open is kept.
    pub fn savepoint(&mut self) {
        self.undo.get_or_insert_with(BTreeMap::new);
    }

    /// Undoes every write since the savepoint, and closes it.
    pub fn roll_back_savepoint(&mut self) {
        for (key, before) in self.undo.take().unwrap_or_default() {
            let k = key.len();
            let undone = match before {
                Some(v) => {
                    self.dirty_bytes += entry_bytes(k, &v);
                    self.dirty.insert(key, v)
                }
                None => self.dirty.remove(&key),
            };
            if let Some(u) = &undone {
                self.dirty_bytes -= entry_bytes(k, u);
            }
        }
    }

    /// Keeps the writes since the savepoint, and closes it.
    pub fn release_savepoint(&mut self) {
        self.undo = None;
    }

    /// Entries with `from <= key < to`, the pending writes included, at most `limit`.
    pub fn range(&self, from: &[u8], to: Option<&[u8]>, limit: usize) -> Result<Entries, StateError> {
        self.range_within(from, to, limit, usize::MAX)
    }

    /// [`Store::range`], ending with the entry that brings the keys and values read to
    /// `max_bytes` (a guest's scan: `wasm/host/state.rs`'s `MAX_SCAN_BYTES`).
    pub fn range_within(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Entries, StateError> {
        let upper = match to {
            Some(t) => std::ops::Bound::Excluded(t),
            None => std::ops::Bound::Unbounded,
        };
        let pending: Vec<(&Vec<u8>, &Option<Vec<u8>>)> =
            self.dirty.range::<[u8], _>((std::ops::Bound::Included(from), upper)).collect();
        // Deleted pending keys in the range may hide stored ones, so read enough to still fill
        // `limit` (counted in the range only: a scan costs what it covers, not every pending
        // write).
        let deletes = pending.iter().filter(|(_, v)| v.is_none()).count();
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        let stored = self.backend.range(from, to, limit.saturating_add(deletes), max_bytes).map_err(|e| self.err(e))?;
        // Cut short by `max_bytes`, the stored entries end at their last key: pending ones
        // past it would skip stored ones not read.
        let cut = (stored.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() >= max_bytes)
            .then(|| stored.last().map(|(k, _)| k.clone()))
            .flatten();
        for (k, v) in stored {
            merged.insert(k, Some(v));
        }
        for (k, v) in pending {
            if cut.as_ref().is_some_and(|c| k > c) {
                break;
            }
            merged.insert(k.clone(), v.clone());
        }
        let mut bytes = 0usize;
        Ok(merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .take(limit)
            .take_while(|(k, v)| {
                let within = bytes < max_bytes;
                bytes = bytes.saturating_add(k.len() + v.len());
                within
            })
            .collect())
    }

    /// Entries whose key starts with `prefix`.
    pub fn prefix(&self, prefix: &[u8], limit: usize) -> Result<Entries, StateError> {
        self.range(prefix, prefix_end(prefix).as_deref(), limit)
    }

    /// [`Store::prefix`] within `max_bytes` (see [`Store::range_within`]).
    pub fn prefix_within(&self, prefix: &[u8], limit: usize, max_bytes: usize) -> Result<Entries, StateError> {
        self.range_within(prefix, prefix_end(prefix).as_deref(), limit, max_bytes)
    }

    /// Whether the record at `position` of `upstream` was applied already; if not, it is
    /// recorded as applied (in the pending commit).
    pub fn first_time(&mut self, upstream: &str, position: Position) -> bool {
        match self.progress.positions.get_mut(upstream) {
            Some(p) if *p >= position => false,
            Some(p) => {
                *p = position;
                true
            }
            None => {
                self.progress.positions.insert(upstream.to_owned(), position);
                true
            }
        }
    }

    pub fn stream_time(&self) -> Option<i64> {
        self.progress.stream_time
    }

    pub fn advance_stream_time(&mut self, t: i64) -> i64 {
        let st = self.progress.stream_time.map_or(t, |s| s.max(t));
        self.progress.stream_time = Some(st);
        st
    }

    /// Bytes held by the pending writes (for the commit-on-size rule).
    pub fn pending_bytes(&self) -> usize {
        self.dirty_bytes
    }

    /// The changelog records of the pending writes, ending with a marker. Empty when the
    /// store has no changelog.
    pub fn prepare_commit(&mut self) -> Vec<Record> {
        self.committing = true;
        if self.changelog.is_none() {
            return Vec::new();
        }
        let mut out: Vec<Record> = self
            .dirty
            .iter()
            .map(|(k, v)| Record {
                key: Some(Bytes::copy_from_slice(k)),
                value: v.as_ref().map(|v| Bytes::copy_from_slice(v)),
                ..Default::default()
            })
            .collect();
        let marker = Progress { checkpoint: None, ..self.progress.clone() };
        let body = serde_json::to_vec(&marker).unwrap_or_default();
        out.push(Record {
            key: Some(Bytes::from_static(b"")),
            value: Some(Bytes::from(body)),
            headers: smallvec::smallvec![Header { name: MARKER_HEADER.into(), value: None }],
            ..Default::default()
        });
        out
    }

    /// After the changelog is acknowledged: the pending writes go to the backend, with the
    /// changelog offset of the marker (`acked`), so the next restore reads only what follows.
    pub fn commit(&mut self, acked: Option<i64>) -> Result<(), StateError> {
        if !self.committing {
            return Ok(());
        }
        if let Some(offset) = acked {
            self.progress.checkpoint = Some(offset + 1);
        }
        self.backend.write(&self.dirty, &self.progress).map_err(|e| self.err(e))?;
        self.dirty.clear();
        self.dirty_bytes = 0;
        self.committing = false;
        Ok(())
    }

    /// Starts restoring from changelog records read from the checkpoint on (see
    /// [`Restore`]).
    pub fn begin_restore(&mut self) -> Restore<'_> {
        Restore { store: self, pending: BTreeMap::new(), applied: 0, rows_of: None, latest: Default::default() }
    }

    /// Starts restoring a table's store from the topic the table reads (`upstream` names its
    /// partition): every record is a row ([`table_row`]), applied in runs, each with the
    /// position it reached.
    pub fn begin_table_restore(&mut self, upstream: String) -> Restore<'_> {
        Restore {
            store: self,
            pending: BTreeMap::new(),
            applied: 0,
            rows_of: Some(upstream),
            latest: Default::default(),
        }
    }

    /// The position up to which `upstream`'s records are applied, if any are.
    pub fn position(&self, upstream: &str) -> Option<Position> {
        self.progress.positions.get(upstream).copied()
    }

    /// Forgets everything (the local files are gone or stale): the restore starts from the
    /// changelog's beginning.
    pub fn wipe(&mut self) -> Result<(), StateError> {
        self.backend.clear().map_err(|e| self.err(e))?;
        self.progress = Progress::default();
        self.dirty.clear();
        self.dirty_bytes = 0;
        Ok(())
    }
}

/// A restore in progress. Entries are applied a commit at a time, when its marker arrives;
/// entries after the last marker belong to a commit that did not finish and are dropped.
pub struct Restore<'a> {
    store: &'a mut Store,
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    applied: u64,
    /// A table's restore from its own topic: the upstream name of that topic's partition.
    rows_of: Option<String>,
    /// With [`StoreSpec::latest_by_time`], the timestamp of each key's row restored so far.
    latest: std::collections::HashMap<Vec<u8>, i64>,
}

/// The rows a table's restore writes at once.
const ROWS_PER_WRITE: usize = 10_000;

/// A table's row as its store keeps it: the record's timestamp (big-endian), then its value.
pub fn table_row(out: &mut Vec<u8>, timestamp: i64, value: &[u8]) {
    out.clear();
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(value);
}

/// Answers an interactive query from a store of table rows ([`table_row`]: a table's, a
/// grouped table's aggregates): the values alone, at most `limit`.
pub fn query_rows(store: &Store, query: &StoreQuery, limit: usize) -> Result<Vec<QueryRow>, StateError> {
    let rows = match query {
        StoreQuery::Key(k) => store.get(k)?.map(|v| vec![(k.clone(), v)]).unwrap_or_default(),
        StoreQuery::Range { from, to } => store.range(from, to.as_deref(), limit)?,
        StoreQuery::Prefix(p) => store.prefix(p, limit)?,
        // A key-value store has no windows, and (this one) no history.
        StoreQuery::Windows { .. } | StoreQuery::KeyAsOf { .. } => Vec::new(),
    };
    rows.into_iter()
        .filter_map(|(key, row)| table_row_parts(&row).map(|(_, v)| (key, store.view(v).map(Cow::into_owned))))
        .take(limit)
        .map(|(key, value)| Ok(QueryRow { key, window: None, value: value? }))
        .collect()
}

/// The entries of a key-value store whose keys are `namespace | key` and whose values are what
/// its writer put (a processor's store: [`windows::DATA`] is its namespace), for a query.
pub fn query_values(
    store: &Store,
    namespace: &[u8],
    query: &StoreQuery,
    limit: usize,
) -> Result<Vec<QueryRow>, StateError> {
    let within = |k: &[u8]| [namespace, k].concat();
    let rows = match query {
        StoreQuery::Key(k) => store.get(&within(k))?.map(|v| vec![(within(k), v)]).unwrap_or_default(),
        StoreQuery::Range { from, to } => {
            let end = match to {
                Some(t) => Some(within(t)),
                None => prefix_end(namespace),
            };
            store.range(&within(from), end.as_deref(), limit)?
        }
        StoreQuery::Prefix(p) => store.prefix(&within(p), limit)?,
        StoreQuery::Windows { .. } | StoreQuery::KeyAsOf { .. } => Vec::new(),
    };
    rows.into_iter()
        .filter_map(|(k, value)| Some((k.strip_prefix(namespace)?.to_vec(), value)))
        .take(limit)
        .map(|(key, value)| Ok(QueryRow { key, window: None, value: store.view_owned(value)? }))
        .collect()
}

/// A store's answer to an interactive query.
pub type QueryResult = Result<Vec<QueryRow>, StateError>;

/// What an interactive query found: a key's value, and for window and session stores the
/// window it is the value of.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct QueryRow {
    pub key: Vec<u8>,
    pub window: Option<windows::Window>,
    pub value: Vec<u8>,
}

/// A row's timestamp and value.
pub fn table_row_parts(row: &[u8]) -> Option<(i64, &[u8])> {
    let ts = i64::from_be_bytes(row.get(..8)?.try_into().ok()?);
    Some((ts, &row[8..]))
}

impl Restore<'_> {
    pub fn apply(&mut self, offset: i64, r: Record) -> Result<(), StateError> {
        if let Some(upstream) = &self.rows_of {
            let Some(k) = r.key else { return Ok(()) };
            if self.store.spec.history_ms.is_some() {
                // A versioned table's history: every record is a version (pruned by later puts).
                self.pending
                    .insert(versions::version_key(&k, r.timestamp), Some(versions::version_value(r.value.as_deref())));
                self.store.advance_stream_time(r.timestamp);
                self.store.progress.positions.insert(upstream.clone(), Position { offset, seq: 0 });
                if self.pending.len() >= ROWS_PER_WRITE {
                    self.write_rows()?;
                }
                return Ok(());
            }
            if self.store.spec.latest_by_time && self.newer_row(&k, r.timestamp)? {
                self.store.progress.positions.insert(upstream.clone(), Position { offset, seq: 0 });
                return Ok(());
            }
            let row = r.value.map(|v| {
                let mut row = Vec::with_capacity(8 + v.len());
                table_row(&mut row, r.timestamp, &v);
                row
            });
            if self.store.spec.latest_by_time {
                self.latest.insert(k.to_vec(), r.timestamp);
            }
            self.pending.insert(k.to_vec(), row);
            self.store.progress.positions.insert(upstream.clone(), Position { offset, seq: 0 });
            if self.pending.len() >= ROWS_PER_WRITE {
                self.write_rows()?;
            }
            return Ok(());
        }
        if r.headers.iter().any(|h| h.name == MARKER_HEADER) {
            let mut progress: Progress = serde_json::from_slice(r.value.as_deref().unwrap_or_default())
                .map_err(|e| StateError::Marker { store: self.store.spec.name.clone(), message: e.to_string() })?;
            progress.checkpoint = Some(offset + 1);
            self.applied += self.pending.len() as u64;
            self.store.backend.write(&self.pending, &progress).map_err(|e| self.store.err(e))?;
            self.store.progress = progress;
            self.pending.clear();
        } else if let Some(k) = r.key {
            self.pending.insert(k.to_vec(), r.value.map(|v| v.to_vec()));
        }
        Ok(())
    }

    /// Whether `key` has a row newer than `ts` already: from this restore (a tombstone too),
    /// or in the store before it.
    fn newer_row(&self, key: &[u8], ts: i64) -> Result<bool, StateError> {
        if let Some(&t) = self.latest.get(key) {
            return Ok(t > ts);
        }
        let row = self.store.backend.get(key).map_err(|e| self.store.err(e))?;
        Ok(row.as_deref().and_then(table_row_parts).is_some_and(|(t, _)| t > ts))
    }

    fn write_rows(&mut self) -> Result<(), StateError> {
        self.applied += self.pending.len() as u64;
        self.store.backend.write(&self.pending, &self.store.progress).map_err(|e| self.store.err(e))?;
        self.pending.clear();
        Ok(())
    }

    /// How many entries were applied.
    pub fn finish(mut self) -> Result<u64, StateError> {
        if self.rows_of.is_some() {
            self.write_rows()?;
        }
        if !self.pending.is_empty() {
            tracing::info!(
                store = %self.store.spec.name,
                entries = self.pending.len(),
                "dropped the changelog entries of an unfinished commit"
            );
        }
        Ok(self.applied)
    }
}

/// The smallest key greater than every key starting with `prefix` (`None`: no such key).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A record's upstream and position: its repartition header when it has one, otherwise
/// where it was read (`topic/partition`, offset, and `seq` among records of that offset).
/// `direct` names the upstream of records read directly (the caller builds it once per batch).
pub fn upstream_of<'a>(r: &'a Record, direct: &'a str) -> Option<(&'a str, Position)> {
    if let Some(h) = r.headers.iter().find(|h| h.name == POSITION_HEADER) {
        return decode_position(h.value.as_deref()?);
    }
    Some((direct, Position { offset: r.origin.offset, seq: 0 }))
}

/// The length of a position header after its upstream name: a zero byte, the offset (`i64`)
/// and the sequence number (`u32`), big-endian.
pub const POSITION_TAIL: usize = 13;

/// Writes the position header's value: `<topic>/<partition>`, then [`POSITION_TAIL`] bytes.
/// (Headers written before 2026-12 are text, `<topic>/<partition>/<offset>/<seq>`; both read.)
pub fn encode_position(out: &mut bytes::BytesMut, upstream: &str, p: Position) {
    out.extend_from_slice(upstream.as_bytes());
    out.extend_from_slice(&[0]);
    out.extend_from_slice(&p.offset.to_be_bytes());
    out.extend_from_slice(&p.seq.to_be_bytes());
}

/// Reads a position header's value (or a lineage header's: the same encoding).
pub fn decode_position(v: &[u8]) -> Option<(&str, Position)> {
    if let Some(split) = v.len().checked_sub(POSITION_TAIL).filter(|&i| v[i] == 0) {
        let upstream = std::str::from_utf8(&v[..split]).ok()?;
        let offset = i64::from_be_bytes(v[split + 1..split + 9].try_into().ok()?);
        let seq = u32::from_be_bytes(v[split + 9..].try_into().ok()?);
        return Some((upstream, Position { offset, seq }));
    }
    let text = std::str::from_utf8(v).ok()?;
    let mut parts = text.rsplitn(3, '/');
    let seq = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    let upstream = parts.next()?;
    Some((upstream, Position { offset, seq }))
}

/// The upstream name of records read directly from `topic[partition]`, cached for a batch.
#[derive(Default)]
pub struct DirectUpstream {
    last: Option<(u32, i32, String)>,
}

impl DirectUpstream {
    pub fn name(&mut self, topics: &[String], r: &Record) -> &str {
        let (t, p) = (r.origin.topic, r.origin.partition);
        if !matches!(&self.last, Some((lt, lp, _)) if *lt == t && *lp == p) {
            let topic = topics.get(t as usize).map_or("", String::as_str);
            self.last = Some((t, p, format!("{topic}/{p}")));
        }
        self.last.as_ref().map_or("", |(_, _, s)| s.as_str())
    }
}

/// Numbers records that share an upstream position (a flatMap's outputs) 0, 1, 2…, so
/// each has a position of its own.
#[derive(Default)]
pub struct Sequencer {
    /// Looked up once per record: foldhash, not SipHash.
    last: foldhash::HashMap<String, Position>,
}

impl Sequencer {
    pub fn next(&mut self, upstream: &str, mut p: Position) -> Position {
        if let Some(last) = self.last.get_mut(upstream) {
            if last.offset == p.offset && p.seq <= last.seq {
                p.seq = last.seq + 1;
            }
            *last = p;
        } else {
            self.last.insert(upstream.to_owned(), p);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_read_back_in_binary_and_in_the_old_text() {
        let mut buf = bytes::BytesMut::new();
        encode_position(&mut buf, "in/3", Position { offset: 42, seq: 7 });
        assert_eq!(decode_position(&buf), Some(("in/3", Position { offset: 42, seq: 7 })));
        assert_eq!(decode_position(b"in/3/42/7"), Some(("in/3", Position { offset: 42, seq: 7 })));
        assert_eq!(decode_position(b"garbage"), None);
    }

    #[test]
    fn pending_bytes_follow_writes_deletes_and_undone_savepoints() {
        let spec = StoreSpec {
            name: "s".to_owned(),
            kind: StoreKind::KeyValue,
            persistent: false,
            changelog: false,
            ttl_ms: None,
            cache_bytes: 1 << 20,
            caching: false,
            source_topic: None,
            history_ms: None,
            latest_by_time: false,
        };
        let mut store = Store::open(spec, None, None).unwrap();
        let recount = |s: &Store| s.dirty.iter().map(|(k, v)| entry_bytes(k.len(), v)).sum::<usize>();
        store.put(b"ab".to_vec(), b"123".to_vec());
        store.put(b"ab".to_vec(), b"1".to_vec());
        store.delete(b"c".to_vec());
        assert_eq!((store.pending_bytes(), recount(&store)), (4, 4));
        store.savepoint();
        store.put(b"ab".to_vec(), b"123456".to_vec());
        store.put(b"d".to_vec(), b"xy".to_vec());
        store.delete(b"ab".to_vec());
        assert_eq!(store.pending_bytes(), recount(&store));
        store.roll_back_savepoint();
        assert_eq!((store.pending_bytes(), recount(&store)), (4, 4));
    }
}
