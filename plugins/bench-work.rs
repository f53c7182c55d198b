//! The work `make bench` measures, written once: the bench plugins (`bench-filter`,
//! `bench-map`, `bench-naive`) and the native baseline in `host/benches/main.rs` all include
//! this file with `#[path]`, so every path computes exactly the same thing.
#![allow(dead_code, reason = "each includer uses part of it")]

use serde::{Deserialize, Serialize};

/// The only field the filter reads; serde skips the others.
#[derive(Deserialize)]
pub struct Amount {
    pub amount: f64,
}

#[derive(Deserialize)]
pub struct Payment {
    pub id: u64,
    pub user: String,
    pub amount: f64,
    pub country: String,
    pub pad: String,
}

#[derive(Serialize)]
pub struct Tagged {
    pub id: u64,
    pub user: String,
    pub amount: f64,
    pub country: String,
    pub pad: String,
    pub large: bool,
}

/// Kept payments are those above this amount (the benchmark's amounts run from 0 to 100).
pub const THRESHOLD: f64 = 50.0;
/// Payments above this amount are tagged `large`.
pub const LARGE: f64 = 90.0;

/// The filter: is the payment above the threshold?
pub fn over_threshold(p: &Amount) -> bool {
    p.amount > THRESHOLD
}

/// The map: `user` upper-cased and a `large` field added.
pub fn tagged(p: Payment) -> Tagged {
    Tagged {
        id: p.id,
        user: p.user.to_uppercase(),
        amount: p.amount,
        country: p.country,
        pad: p.pad,
        large: p.amount > LARGE,
    }
}

/// The filter on raw bytes (native and naive paths).
pub fn keep(value: Option<&[u8]>) -> bool {
    value.and_then(|v| serde_json::from_slice::<Amount>(v).ok()).is_some_and(|p| over_threshold(&p))
}

/// The map on raw bytes (native and naive paths).
pub fn tag(value: &[u8]) -> Option<Vec<u8>> {
    serde_json::to_vec(&tagged(serde_json::from_slice(value).ok()?)).ok()
}
