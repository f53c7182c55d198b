//! The host's record, and the batch encoding that carries records across the Wasm boundary
//! (see `wit/plugin.wit`, `types.batch`).

use std::borrow::Cow;

use bytes::Bytes;

/// Where a record was read: its input topic (an index into the task's topic table),
/// partition and offset. Carried to dead-letter headers and used for commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Origin {
    pub topic: u32,
    pub partition: i32,
    pub offset: i64,
}

/// A record header. Names wasp writes itself are static; others are owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: Cow<'static, str>,
    pub value: Option<Bytes>,
}

/// The header that marks a changelog record as a commit marker rather than an entry.
pub const MARKER_HEADER: &str = "wasp.marker";
/// The header a repartitioned record carries: where its upstream record was read
/// (`<topic>/<partition>/<offset>/<seq>`), so the downstream store can skip duplicates.
pub const POSITION_HEADER: &str = "wasp.position";

/// The header that carries a table change's old value ([`Record::old`]) through a
/// repartition topic (a grouped table's); a record without it has none.
pub const OLD_VALUE_HEADER: &str = "wasp.old";

/// The header that carries a record's lineage under `processing_guarantee = "exactly_once"`
/// (see `runtime::eos`): the input partition, offset and sequence number it came from.
pub const LINEAGE_HEADER: &str = "wasp.lineage";

/// Header names read back from topics that wasp writes on every record: shared, so reading
/// them allocates nothing.
const WELL_KNOWN_HEADERS: &[&str] = &[POSITION_HEADER, MARKER_HEADER, OLD_VALUE_HEADER, LINEAGE_HEADER];

impl Header {
    /// A header name read from a topic: static when wasp knows it, else copied.
    pub fn name_from(name: &str) -> Cow<'static, str> {
        match WELL_KNOWN_HEADERS.iter().find(|k| **k == name) {
            Some(k) => Cow::Borrowed(k),
            None => Cow::Owned(name.to_owned()),
        }
    }
}

/// A record's headers: one is held inline (the repartition position every repartitioned
/// record carries), so the common case allocates nothing.
pub type Headers = smallvec::SmallVec<[Header; 1]>;

/// One record. Keys and values are bytes; a `None` key is a null key, a `None` value a
/// tombstone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// Event time, milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub headers: Headers,
    pub origin: Origin,
    /// On a table's changes (Kafka Streams' `Change<V>`): the key's value before this
    /// update, `None` when it had none; `value` is the new one. Streams leave it `None`.
    pub old: Option<Bytes>,
}

impl Record {
    pub fn new(key: Option<&[u8]>, value: Option<&[u8]>, timestamp: i64) -> Self {
        Self {
            key: key.map(Bytes::copy_from_slice),
            value: value.map(Bytes::copy_from_slice),
            timestamp,
            headers: Headers::new(),
            origin: Origin::default(),
            old: None,
        }
    }
}

/// Copies of many small byte strings (the keys and values read from a file or from
/// librdkafka's buffers), carved from shared chunks: one allocation per [`Arena::CHUNK`] of
/// input, not one per copy. A chunk lives while any record (or anything keyed by one) still
/// refers to it; what a store keeps is copied into the store, so a chunk is freed once its
/// batch and the commit interval's caches let go of it.
#[derive(Debug, Default)]
pub struct Arena {
    chunk: bytes::BytesMut,
}

impl Arena {
    /// The allocation unit (a larger string gets a chunk of its own size).
    pub const CHUNK: usize = 64 << 10;

    /// Copies `bytes` into the arena and returns the copy.
    pub fn copy(&mut self, bytes: &[u8]) -> Bytes {
        if self.chunk.capacity() - self.chunk.len() < bytes.len() {
            // A fresh chunk: the old one stays alive as long as the copies taken from it.
            self.chunk = bytes::BytesMut::with_capacity(Self::CHUNK.max(bytes.len()));
        }
        self.chunk.extend_from_slice(bytes);
        self.chunk.split().freeze()
    }
}

/// The length that marks an absent field.
pub const ABSENT: u32 = u32::MAX;
/// `u32`s per record in the index.
pub const INDEX_STRIDE: usize = 6;

/// An encoded batch: the three lists of `types.batch`.
#[derive(Debug, Default, Clone)]
pub struct EncodedBatch {
    pub index: Vec<u32>,
    pub timestamps: Vec<i64>,
    pub data: Vec<u8>,
}

impl EncodedBatch {
    /// Encodes `records`, reusing this batch's buffers.
    pub fn encode<'a>(&mut self, records: impl ExactSizeIterator<Item = &'a Record>) {
        self.index.clear();
        self.timestamps.clear();
        self.data.clear();
        self.index.reserve(records.len() * INDEX_STRIDE);
        self.timestamps.reserve(records.len());
        for r in records {
            let (ko, kl) = put(&mut self.data, r.key.as_deref());
            let (vo, vl) = put(&mut self.data, r.value.as_deref());
            let (ho, hl) = if r.headers.is_empty() {
                (0, 0)
            } else {
                let start = self.data.len();
                self.data.extend_from_slice(&(r.headers.len() as u32).to_le_bytes());
                for h in &r.headers {
                    self.data.extend_from_slice(&(h.name.len() as u32).to_le_bytes());
                    self.data.extend_from_slice(h.name.as_bytes());
                    match &h.value {
                        Some(v) => {
                            self.data.extend_from_slice(&(v.len() as u32).to_le_bytes());
                            self.data.extend_from_slice(v);
                        }
                        None => self.data.extend_from_slice(&ABSENT.to_le_bytes()),
                    }
                }
                (start as u32, (self.data.len() - start) as u32)
            };
            self.index.extend_from_slice(&[ko, kl, vo, vl, ho, hl]);
            self.timestamps.push(r.timestamp);
        }
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.index.clear();
        self.timestamps.clear();
        self.data.clear();
    }

    /// Appends a record without headers, from borrowed fields.
    pub fn push(&mut self, key: Option<&[u8]>, value: Option<&[u8]>, timestamp: i64) {
        let (ko, kl) = put(&mut self.data, key);
        let (vo, vl) = put(&mut self.data, value);
        self.index.extend_from_slice(&[ko, kl, vo, vl, 0, 0]);
        self.timestamps.push(timestamp);
    }

    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }
}

fn put(data: &mut Vec<u8>, field: Option<&[u8]>) -> (u32, u32) {
    match field {
        Some(b) => {
            let off = data.len() as u32;
            data.extend_from_slice(b);
            (off, b.len() as u32)
        }
        None => (0, ABSENT),
    }
}

/// Why a batch a plugin returned cannot be read. A correct guest never causes it; it is
/// treated like a trap.
#[derive(Debug, thiserror::Error)]
#[error("the plugin returned a malformed batch: {0}")]
pub struct MalformedBatch(pub String);

/// The most records one plugin call may produce (a flat-map, a processor's forwards): each
/// becomes a host record downstream. Past it, the call's output is refused as malformed, and
/// its input records follow the step's error policy. 256 Ki is 256 outputs per input of the
/// largest batch most pipelines use (1,024).
pub const MAX_RECORDS_PER_CALL: usize = 256 << 10;

/// A decoded output batch: fields slice one shared buffer, so decoding copies nothing.
pub struct DecodedBatch {
    index: Vec<u32>,
    /// Empty when every record keeps its input's timestamp (an output may leave them out).
    timestamps: Vec<i64>,
    data: Bytes,
    len: usize,
}

/// In a transform's output, the value length that means "the input's value, unchanged".
pub const UNCHANGED: u32 = u32::MAX - 1;

impl DecodedBatch {
    /// A batch whose every field is in `data` (or absent).
    pub fn new(index: Vec<u32>, timestamps: Vec<i64>, data: Vec<u8>) -> Result<Self, MalformedBatch> {
        Self::decode(index, timestamps, data, false)
    }

    /// A transform's output: values may also be [`UNCHANGED`] (see [`Self::value_unchanged`]).
    pub fn output(index: Vec<u32>, timestamps: Vec<i64>, data: Vec<u8>) -> Result<Self, MalformedBatch> {
        Self::decode(index, timestamps, data, true)
    }

    fn decode(index: Vec<u32>, timestamps: Vec<i64>, data: Vec<u8>, unchanged: bool) -> Result<Self, MalformedBatch> {
        let len = index.len() / INDEX_STRIDE;
        if len > MAX_RECORDS_PER_CALL {
            return Err(MalformedBatch(format!(
                "{len} records produced by one call, over the cap of {MAX_RECORDS_PER_CALL} (MAX_RECORDS_PER_CALL)"
            )));
        }
        if !index.len().is_multiple_of(INDEX_STRIDE) || !(timestamps.is_empty() || timestamps.len() == len) {
            return Err(MalformedBatch(format!(
                "{} index entries for {} timestamps (want {} per record, and a timestamp per record or none)",
                index.len(),
                timestamps.len(),
                INDEX_STRIDE
            )));
        }
        let data = Bytes::from(data);
        for (i, h) in index.chunks_exact(INDEX_STRIDE).enumerate() {
            for (field, (off, len)) in [(h[0], h[1]), (h[2], h[3])].into_iter().enumerate() {
                if unchanged && field == 1 && len == UNCHANGED {
                    continue;
                }
                if len != ABSENT && (off as usize).checked_add(len as usize).is_none_or(|end| end > data.len()) {
                    return Err(MalformedBatch(format!("record {i} points past the end of the data")));
                }
            }
        }
        Ok(Self { index, timestamps, data, len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn field(&self, off: u32, len: u32) -> Option<Bytes> {
        (len != ABSENT).then(|| self.data.slice(off as usize..off as usize + len as usize))
    }

    pub fn key(&self, i: usize) -> Option<Bytes> {
        self.field(self.index[i * INDEX_STRIDE], self.index[i * INDEX_STRIDE + 1])
    }

    /// Whether record `i`'s value is its input's, unchanged (only in [`Self::output`] batches).
    pub fn value_unchanged(&self, i: usize) -> bool {
        self.index[i * INDEX_STRIDE + 3] == UNCHANGED
    }

    pub fn value(&self, i: usize) -> Option<Bytes> {
        self.field(self.index[i * INDEX_STRIDE + 2], self.index[i * INDEX_STRIDE + 3])
    }

    /// The record's timestamp; `None` when the batch left timestamps out (each record keeps
    /// its input's).
    pub fn timestamp(&self, i: usize) -> Option<i64> {
        self.timestamps.get(i).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arena_copies_share_a_chunk_until_it_is_full() {
        let mut arena = Arena::default();
        let a = arena.copy(b"hello");
        let b = arena.copy(b"world");
        assert_eq!((&a[..], &b[..]), (&b"hello"[..], &b"world"[..]));
        // Adjacent in one chunk.
        assert_eq!(a.as_ptr().wrapping_add(5), b.as_ptr());
        // A copy larger than a chunk gets its own; the next small one starts a fresh chunk.
        let big = vec![7u8; Arena::CHUNK + 1];
        let c = arena.copy(&big);
        assert_eq!(&c[..], &big[..]);
        let d = arena.copy(b"x");
        assert_eq!(&d[..], b"x");
        drop(arena);
        assert_eq!(&a[..], b"hello", "copies outlive the arena");
    }

    #[test]
    fn encode_then_decode_keeps_absent_fields_apart_from_empty_ones() {
        let records =
            [Record::new(Some(b"k"), Some(b"v"), 5), Record::new(None, Some(b""), 6), Record::new(Some(b""), None, 7)];
        let mut enc = EncodedBatch::default();
        enc.encode(records.iter());
        let dec = DecodedBatch::new(enc.index.clone(), enc.timestamps.clone(), enc.data.clone()).unwrap();
        assert_eq!(dec.len(), 3);
        assert_eq!((dec.key(0).as_deref(), dec.value(0).as_deref()), (Some(&b"k"[..]), Some(&b"v"[..])));
        assert_eq!((dec.key(1).as_deref(), dec.value(1).as_deref()), (None, Some(&b""[..])));
        assert_eq!((dec.key(2).as_deref(), dec.value(2).as_deref()), (Some(&b""[..]), None));
        assert_eq!(dec.timestamp(2), Some(7));
    }

    #[test]
    fn a_batch_pointing_outside_its_data_is_rejected() {
        assert!(DecodedBatch::new(vec![0, 10, 0, ABSENT, 0, 0], vec![1], vec![1, 2]).is_err());
        assert!(DecodedBatch::new(vec![0, 1], vec![1], vec![1, 2]).is_err());
    }
}
