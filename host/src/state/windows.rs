//! Window arithmetic, as Kafka Streams defines it, and the layout of window and session keys
//! in a store and in output topics. The window definitions are `crate::topology::WindowSpec`.
//!
//! Store keys: `0x00 | key-len u32 BE | key | window` where the window is `start` for time
//! windows and `end | start` for sessions (so a key's sessions sort by end). Times are
//! encoded big-endian with the sign bit flipped, so they sort as numbers. Index entries
//! (prefix `0x01` for windows waiting to be emitted final, `0x02` for windows waiting to
//! expire) are `prefix | time | data key`.
//!
//! Output keys: `<key>@<start>/<end>` (milliseconds since the epoch; `end` exclusive for time
//! windows, inclusive for sessions and sliding windows, as in Kafka Streams), and the
//! headers `wasp.window.start` / `wasp.window.end` carry the same numbers.

/// A window: `[start, end)` for time windows, `[start, end]` for sliding and session ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

/// The time windows containing `t` (Kafka Streams' `TimeWindows.windowsFor`).
pub fn time_windows(t: i64, size: i64, advance: i64) -> impl Iterator<Item = Window> {
    let first = (t - size + advance).max(0) / advance * advance;
    (0..)
        .map(move |i| first + i * advance)
        .take_while(move |&start| start <= t)
        .map(move |start| Window { start, end: start + size })
}

pub const DATA: u8 = 0;
pub const EMIT_INDEX: u8 = 1;
pub const EXPIRE_INDEX: u8 = 2;

pub fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn time_from(b: &[u8]) -> Option<i64> {
    let a: [u8; 8] = b.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(a) ^ (1 << 63)) as i64)
}

/// The data-key prefix of every window of `key`.
pub fn key_prefix(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + key.len() + 16);
    k.push(DATA);
    k.extend_from_slice(&(key.len() as u32).to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// The data key of a time or sliding window.
pub fn window_key(key: &[u8], w: Window) -> Vec<u8> {
    let mut k = Vec::new();
    window_key_into(&mut k, key, w);
    k
}

/// [`window_key`], written into `out` (cleared first), whose allocation it reuses.
pub fn window_key_into(out: &mut Vec<u8>, key: &[u8], w: Window) {
    out.clear();
    out.push(DATA);
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&time_bytes(w.start));
}

/// The data key of a session.
pub fn session_key(key: &[u8], w: Window) -> Vec<u8> {
    let mut k = key_prefix(key);
    k.extend_from_slice(&time_bytes(w.end));
    k.extend_from_slice(&time_bytes(w.start));
    k
}

/// An index entry's key.
pub fn index_key(prefix: u8, time: i64, data_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + data_key.len());
    k.push(prefix);
    k.extend_from_slice(&time_bytes(time));
    k.extend_from_slice(data_key);
    k
}

/// The user key and window of a data key (`session` says which layout).
pub fn decode_data_key(k: &[u8], session: bool) -> Option<(&[u8], Window)> {
    let len = u32::from_be_bytes(k.get(1..5)?.try_into().ok()?) as usize;
    let key = k.get(5..5 + len)?;
    let rest = k.get(5 + len..)?;
    if session {
        Some((key, Window { end: time_from(rest)?, start: time_from(rest.get(8..)?)? }))
    } else {
        Some((key, Window { start: time_from(rest)?, end: 0 }))
    }
}

/// The key written to output topics for a windowed aggregate (`key@start/end`), appended to
/// `out`.
pub fn output_key_into(out: &mut impl Extend<u8>, key: &[u8], w: Window) {
    let mut n = itoa::Buffer::new();
    out.extend(key.iter().copied());
    out.extend([b'@']);
    out.extend(n.format(w.start).bytes());
    out.extend([b'/']);
    out.extend(n.format(w.end).bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hopping_windows_are_aligned_to_the_epoch() {
        let w: Vec<_> = time_windows(7_500, 5_000, 1_000).collect();
        let starts: Vec<i64> = w.iter().map(|w| w.start).collect();
        assert_eq!(starts, [3_000, 4_000, 5_000, 6_000, 7_000]);
        assert!(w.iter().all(|w| w.end - w.start == 5_000 && w.start <= 7_500 && 7_500 < w.end));
        assert_eq!(time_windows(4_999, 5_000, 5_000).collect::<Vec<_>>(), [Window { start: 0, end: 5_000 }]);
        assert_eq!(time_windows(5_000, 5_000, 5_000).collect::<Vec<_>>(), [Window { start: 5_000, end: 10_000 }]);
    }

    #[test]
    fn times_sort_as_numbers() {
        let mut v = [-5i64, 3, -1, 0, 1 << 40];
        let mut enc: Vec<[u8; 8]> = v.iter().map(|&t| time_bytes(t)).collect();
        enc.sort();
        v.sort();
        assert_eq!(enc.iter().map(|b| time_from(b).unwrap_or(i64::MIN)).collect::<Vec<_>>(), v);
    }

    #[test]
    fn keys_round_trip() {
        let w = Window { start: 10, end: 20 };
        assert_eq!(decode_data_key(&session_key(b"k", w), true), Some((&b"k"[..], w)));
        assert_eq!(decode_data_key(&window_key(b"k", w), false), Some((&b"k"[..], Window { start: 10, end: 0 })));
    }
}
