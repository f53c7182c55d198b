//! Misbehaves on purpose, for the host's containment tests. By value: `boom` panics (a trap),
//! `oops` returns a per-record error, `loop` never returns (the deadline stops it), `grow`
//! allocates without bound (the memory cap stops it), `deep` recurses until the stack
//! overflows, `flaky` fails the first two times it is seen by an instance and then passes
//! (for retries). Anything else is returned unchanged.

use std::sync::atomic::{AtomicU32, Ordering};

/// How often this instance has seen `flaky`.
static FLAKY_SEEN: AtomicU32 = AtomicU32::new(0);

#[wasp::map_values]
fn explode(value: &str) -> Result<String, String> {
    match value {
        "boom" => panic!("the value was boom"),
        "oops" => Err("the value was oops".to_owned()),
        "flaky" if FLAKY_SEEN.fetch_add(1, Ordering::Relaxed) < 2 => Err("flaky: not yet".to_owned()),
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "grow" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "deep" => Ok(recurse(std::hint::black_box(1)).to_string()),
        other => Ok(other.to_owned()),
    }
}

#[expect(unconditional_recursion, reason = "it exists to overflow the stack")]
fn recurse(n: u64) -> u64 {
    let pad = std::hint::black_box([n; 64]);
    recurse(pad[0].wrapping_add(1)).wrapping_add(pad[63])
}
