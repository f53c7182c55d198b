//! The naive encoding of `make bench`: the same filter and value mapper as `bench-filter` and
//! `bench-map`, and the identity functions of `bench-identity`, exported through the
//! `wasp:bench/naive` world (`wit/bench/naive.wit`), where a batch is a `list<rec>` and every
//! key and value is its own list. Written against the bindings generator directly.

wit_bindgen::generate!({
    world: "wasp:bench/naive@0.1.0",
    path: "../../../wit/bench",
});

#[path = "../../../bench-work.rs"]
mod work;
use work::{keep, tag};

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
