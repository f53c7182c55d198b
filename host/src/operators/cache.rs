//! The record cache of Kafka Streams (KIP-63): an operator's updates to a key collapse to the
//! last one until the task commits, which flushes them downstream first. It cuts the output
//! (and downstream) traffic of aggregations whose keys update often; the store's own write
//! cache already collapses the changelog. When the cached records pass `max_bytes`, the
//! cache is emptied downstream at once (Kafka Streams evicts its least recently used entries
//! one at a time; emptying it keeps the order of updates without a second index).

use std::collections::HashMap;

use bytes::Bytes;

use crate::record::{Arena, Record};

#[derive(Default)]
pub struct RecordCache {
    /// The last update per output key, and when it came (its order among the updates).
    entries: HashMap<Bytes, (u64, Record), foldhash::fast::RandomState>,
    /// Where held keys and values are copied: a record's own are slices of its batch's
    /// buffers (a 64 KiB input chunk, a plugin's whole output), which the cache would
    /// otherwise keep alive until the commit. Copies into chunks of its own cost no
    /// allocation per update.
    arena: Arena,
    next: u64,
    bytes: usize,
    max_bytes: usize,
}

fn size(r: &Record) -> usize {
    r.key.as_ref().map_or(0, Bytes::len) + r.value.as_ref().map_or(0, Bytes::len) + 64
}

impl RecordCache {
    pub fn new(max_bytes: usize) -> Self {
        Self { max_bytes, ..Default::default() }
    }

    /// Holds `record` in place of the last update to its key. Returns whether the cache is
    /// past its size and should be emptied now.
    pub fn put(&mut self, mut record: Record) -> bool {
        self.bytes += size(&record);
        let seq = self.next;
        self.next += 1;
        record.value = record.value.as_deref().map(|v| self.arena.copy(v));
        let key = record.key.as_deref().unwrap_or_default();
        if let Some((at, held)) = self.entries.get_mut(key) {
            // The key's copy made when it came first stays.
            record.key = held.key.take();
            let old = std::mem::replace(held, record);
            *at = seq;
            self.bytes -= size(&old);
        } else {
            let copy = self.arena.copy(key);
            record.key = record.key.is_some().then(|| copy.clone());
            self.entries.insert(copy, (seq, record));
        }
        self.bytes > self.max_bytes
    }

    /// Every held update, in the order of their last updates; the cache is then empty.
    pub fn drain(&mut self) -> Vec<Record> {
        let mut held: Vec<(u64, Record)> = self.entries.drain().map(|(_, v)| v).collect();
        held.sort_unstable_by_key(|(seq, _)| *seq);
        self.bytes = 0;
        held.into_iter().map(|(_, r)| r).collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(k: &str, v: &str) -> Record {
        Record {
            key: Some(Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            ..Default::default()
        }
    }

    #[test]
    fn updates_collapse_to_the_last_per_key_in_the_order_of_last_updates() {
        let mut c = RecordCache::new(1 << 20);
        for (k, v) in [("a", "1"), ("b", "1"), ("a", "2"), ("c", "1"), ("b", "2")] {
            assert!(!c.put(rec(k, v)));
        }
        let got: Vec<(Bytes, Bytes)> =
            c.drain().into_iter().map(|r| (r.key.unwrap_or_default(), r.value.unwrap_or_default())).collect();
        let want: Vec<(Bytes, Bytes)> =
            [("a", "2"), ("c", "1"), ("b", "2")].iter().map(|(k, v)| (Bytes::from(*k), Bytes::from(*v))).collect();
        assert_eq!(got, want);
        assert!(c.is_empty());
    }

    #[test]
    fn a_cache_of_zero_bytes_asks_to_be_emptied_at_every_update() {
        let mut c = RecordCache::new(0);
        assert!(c.put(rec("a", "1")));
    }
}
