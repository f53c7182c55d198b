//! The naive encoding of `make bench`: the same filter and value mapper as `bench-filter` and
//! `bench-map`, and the identity functions of `bench-identity`, exported through the
//! `wasp:bench/naive` world (`wit/bench/naive.wit`), where a batch is a `list<rec>` and every
//! key and value is its own list. Written against the bindings generator directly.

use serde::{Deserialize, Serialize};

wit_bindgen::generate!({
    world: "wasp:bench/naive@0.1.0",
    path: "../../../wit/bench",
});

/// The only field the filter reads.
#[derive(Deserialize)]
struct Amount {
    amount: f64,
}

#[derive(Deserialize)]
struct Payment {
    id: u64,
    user: String,
    amount: f64,
    country: String,
    pad: String,
}

#[derive(Serialize)]
struct Tagged {
    id: u64,
    user: String,
    amount: f64,
    country: String,
    pad: String,
    large: bool,
}

/// As in `bench-filter`.
const THRESHOLD: f64 = 50.0;
/// As in `bench-map`.
const LARGE: f64 = 90.0;

fn keep(value: Option<&[u8]>) -> bool {
    value.and_then(|v| serde_json::from_slice::<Amount>(v).ok()).is_some_and(|p| p.amount > THRESHOLD)
}

fn tag(value: &[u8]) -> Option<Vec<u8>> {
    let p: Payment = serde_json::from_slice(value).ok()?;
    serde_json::to_vec(&Tagged {
        id: p.id,
        user: p.user.to_uppercase(),
        amount: p.amount,
        country: p.country,
        pad: p.pad,
        large: p.amount > LARGE,
    })
    .ok()
}

struct Bench;

impl Guest for Bench {
    fn filter(input: Vec<Rec>) -> Vec<bool> {
        input.iter().map(|r| keep(r.value.as_deref())).collect()
    }

    fn map_values(input: Vec<Rec>) -> Vec<Rec> {
        input
            .into_iter()
            .map(|r| Rec { key: None, value: r.value.as_deref().and_then(tag), timestamp: r.timestamp })
            .collect()
    }

    fn filter_identity(input: Vec<Rec>) -> Vec<bool> {
        vec![true; input.len()]
    }

    fn map_values_identity(input: Vec<Rec>) -> Vec<Rec> {
        input.into_iter().map(|r| Rec { key: None, value: r.value, timestamp: r.timestamp }).collect()
    }
}

export!(Bench);
