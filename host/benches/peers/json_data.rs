//! The stateless workload's data, shared by `wasp-peers` and the fluvio bench
//! (`fluvio/bench`, which includes this file with `#[path]`): records keyed by user with JSON
//! values of about 100 B, the same records as `make bench` makes (`dataset` in
//! `host/benches/main.rs`: the same xorshift generator, seed and layout), and a digest of a
//! run's output that both processes compute the same way.
#![allow(dead_code, reason = "each includer uses part of it")]

/// The size of each JSON value.
pub const VALUE_BYTES: usize = 100;
/// Records per call, as `make bench` runs them.
pub const BATCH: usize = 1024;

/// One input record.
pub struct JsonRecord {
    pub key: String,
    pub value: String,
    pub timestamp: i64,
}

/// `n` records keyed by user, with JSON values padded to `VALUE_BYTES`. Deterministic.
pub fn dataset(n: usize) -> Vec<JsonRecord> {
    const COUNTRIES: [&str; 8] = ["NL", "DE", "FR", "BE", "ES", "IT", "PL", "SE"];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|id| {
            let user = format!("u{}", next() % 1000);
            let amount = (next() % 10_000) as f64 / 100.0;
            let country = COUNTRIES[(next() % COUNTRIES.len() as u64) as usize];
            let head = format!(r#"{{"id":{id},"user":"{user}","amount":{amount},"country":"{country}","pad":""#);
            let pad = VALUE_BYTES.saturating_sub(head.len() + 2);
            let value = format!("{head}{}\"}}", "x".repeat(pad));
            JsonRecord { key: user, value, timestamp: 1_700_000_000_000 + id as i64 }
        })
        .collect()
}

/// The output values in order, as a count and an FNV-1a hash: the same in every process and on
/// every platform (std's hashers promise neither).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub records: u64,
    pub hash: u64,
}

impl Default for Digest {
    fn default() -> Self {
        Self { records: 0, hash: 0xcbf2_9ce4_8422_2325 }
    }
}

impl Digest {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.hash ^= u64::from(*b);
            self.hash = self.hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Adds one output value (`None`: a record without a value).
    pub fn add(&mut self, value: Option<&[u8]>) {
        self.records += 1;
        match value {
            Some(v) => {
                self.write(&(v.len() as u64).to_le_bytes());
                self.write(v);
            }
            None => self.write(&[0xff]),
        }
    }
}

/// The median of `samples` (NaN when empty).
pub fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

/// (max - min) / median, in percent.
pub fn spread(samples: &[f64]) -> f64 {
    let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
    let max = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    100.0 * (max - min) / median(samples)
}
