//! A versioned table's history (Kafka Streams' versioned key-value store, KIP-889): each
//! key's values by timestamp, a tombstone included, in a store of its own beside the table's
//! latest rows. A version is valid from its timestamp until the next version's. History is
//! kept for `history_ms` of the store's stream time: a lookup as of a time older than that
//! finds nothing, and older versions are removed once a newer one is valid at that bound.
//!
//! Keys: `0x00 | key-len u32 BE | key | timestamp` (the timestamp sorting as a number, see
//! [`super::windows`]); values: `0` for a tombstone, `1 | value` otherwise.

use super::windows::{key_prefix, time_bytes, time_from};
use super::{StateError, Store, prefix_end};

/// The most versions of one key a lookup reads.
const MAX_VERSIONS: usize = 100_000;

/// The key of `key`'s version at `ts`.
pub fn version_key(key: &[u8], ts: i64) -> Vec<u8> {
    let mut k = key_prefix(key);
    k.extend_from_slice(&time_bytes(ts));
    k
}

/// The stored form of a version's value (`None`: a tombstone).
pub fn version_value(value: Option<&[u8]>) -> Vec<u8> {
    match value {
        Some(v) => {
            let mut out = Vec::with_capacity(1 + v.len());
            out.push(1);
            out.extend_from_slice(v);
            out
        }
        None => vec![0],
    }
}

/// A version: its timestamp and value (`None`: a tombstone).
pub type Version = (i64, Option<Vec<u8>>);

/// Every version of `key` in `store`, oldest first.
pub fn versions_of(store: &Store, key: &[u8]) -> Result<Vec<Version>, StateError> {
    let prefix = key_prefix(key);
    let rows = store.range(&prefix, prefix_end(&prefix).as_deref(), MAX_VERSIONS)?;
    Ok(rows
        .into_iter()
        .filter_map(|(k, v)| {
            let ts = time_from(k.get(prefix.len()..)?)?;
            let value = match v.split_first() {
                Some((1, rest)) => Some(rest.to_vec()),
                _ => None,
            };
            Some((ts, value))
        })
        .collect())
}

/// `key`'s value as of `ts` (the version with the greatest timestamp not after `ts`), with
/// that version's timestamp; nothing for a tombstone, or when `ts` is older than the history
/// the store keeps (`history_ms` before its stream time).
pub fn as_of(store: &Store, key: &[u8], ts: i64) -> Result<Option<(i64, Vec<u8>)>, StateError> {
    if let (Some(history), Some(now)) = (store.spec.history_ms, store.stream_time())
        && ts < now.saturating_sub(history)
    {
        return Ok(None);
    }
    let versions = versions_of(store, key)?;
    let at = versions.partition_point(|(t, _)| *t <= ts);
    Ok(at.checked_sub(1).and_then(|i| versions[i].1.clone().map(|v| (versions[i].0, v))))
}

/// What putting a version did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// The newest version of its key: the table's current value.
    Latest,
    /// Older than the key's newest version: kept in its history only.
    History,
    /// Older than the history kept, and not the newest: dropped.
    TooOld,
}

/// Puts `key`'s version at `ts` (advancing the store's stream time), and removes the versions
/// no lookup can reach any more: those older than the newest one valid at the history bound.
pub fn put(store: &mut Store, key: &[u8], ts: i64, value: Option<&[u8]>) -> Result<Put, StateError> {
    let versions = versions_of(store, key)?;
    let now = store.advance_stream_time(ts);
    let bound = store.spec.history_ms.map_or(i64::MIN, |h| now.saturating_sub(h));
    let latest = versions.last().is_none_or(|(t, _)| ts >= *t);
    if !latest && ts < bound {
        return Ok(Put::TooOld);
    }
    store.put(version_key(key, ts), version_value(value));
    // Versions at or before the bound: all but the last are shadowed at every reachable time.
    let mut at_or_before: Vec<i64> = versions.iter().map(|(t, _)| *t).filter(|t| *t <= bound).collect();
    if ts <= bound {
        at_or_before.push(ts);
        at_or_before.sort_unstable();
        at_or_before.dedup();
    }
    if let Some((_, shadowed)) = at_or_before.split_last() {
        for &t in shadowed {
            store.delete(version_key(key, t));
        }
    }
    Ok(if latest { Put::Latest } else { Put::History })
}
