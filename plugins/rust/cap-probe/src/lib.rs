//! Tries to pass every cap the host puts on what a guest can make it hold, for the cap tests
//! (tests/all/caps.rs). The record's value names the probe; the forwarded value says what the
//! host answered.

use wasp::state::{KeyValueStore, StateError};

fn store() -> Result<KeyValueStore, wasp::RecordError> {
    KeyValueStore::open("s").map_err(|e| wasp::RecordError::new("state", format!("{e:?}")))
}

fn answer(r: Result<(), StateError>) -> String {
    match r {
        Ok(()) => "stored".to_owned(),
        Err(e) => format!("refused: {e:?}"),
    }
}

/// Writes `n` entries `{prefix}{i}` of `value`, then scans them all, asking for every one:
/// how many the scan returned.
fn fill_and_scan(prefix: &str, n: usize, value: &[u8]) -> Result<usize, wasp::RecordError> {
    let failed = |e: StateError| wasp::RecordError::new("state", format!("{e:?}"));
    let s = store()?;
    for i in 0..n {
        s.put(format!("{prefix}{i:05}").as_bytes(), value).map_err(failed)?;
    }
    Ok(s.prefix_scan(prefix.as_bytes(), u32::MAX).map_err(failed)?.len())
}

#[wasp::processor]
fn probe(ctx: &mut wasp::Context, key: Option<&str>, value: &str) -> Result<(), wasp::RecordError> {
    let report = match value {
        // A 1 MiB line, and 5,000 lines in one call.
        "log-long" => {
            wasp::log::info(&"x".repeat(1 << 20));
            "logged".to_owned()
        }
        "log-flood" => {
            for i in 0..5_000 {
                wasp::log::info(&format!("line {i}"));
            }
            "logged".to_owned()
        }
        // 5,000 label values of one metric, then 200 metric names.
        "metric-labels" => {
            for i in 0..5_000 {
                wasp::metrics::counter_add("probe_users", &[("user", &i.to_string())], 1);
            }
            "counted".to_owned()
        }
        "metric-names" => {
            for i in 0..200 {
                wasp::metrics::counter_add(&format!("probe_name_{i}"), &[], 1);
            }
            "counted".to_owned()
        }
        // A 100 KiB key, a 2 MiB value.
        "state-key" => answer(store()?.put(&vec![b'k'; 100 << 10], b"v")),
        "state-value" => answer(store()?.put(b"big", &vec![0u8; 2 << 20])),
        // A 160 MiB value: more than one call may move into the host (MAX_TRANSFER_BYTES).
        "state-huge-value" => answer(store()?.put(b"huge", &vec![0u8; 160 << 20])),
        // 1 MiB values under new keys until the store refuses one.
        "state-pending" => {
            let s = store()?;
            let value = vec![1u8; 1 << 20];
            let mut stored = 0;
            let mut refused = None;
            for i in 0..200 {
                match s.put(format!("pending-{i:03}").as_bytes(), &value) {
                    Ok(()) => stored += 1,
                    Err(e) => {
                        refused = Some(format!("{e:?}"));
                        break;
                    }
                }
            }
            format!("stored {stored}, then refused: {}", refused.unwrap_or_default())
        }
        // 12,000 small entries, then a scan asking for all of them.
        "scan" => format!("scan returned {}", fill_and_scan("small-", 12_000, b"0123456789")?),
        // 40 values of 1 MiB, then a scan of them.
        "scan-bytes" => format!("scan returned {}", fill_and_scan("large-", 40, &vec![2u8; 1 << 20])?),
        // 300,000 records forwarded by one call.
        "forward-many" => {
            for _ in 0..300_000 {
                ctx.forward(key.unwrap_or_default(), "x")?;
            }
            "forwarded".to_owned()
        }
        // 2,048 labels that all name one 1 MiB string, as the canonical ABI allows: 32 KiB of
        // list in the guest, 4 GiB if the host copied each element's strings.
        "metric-aliased-labels" => {
            let big = "v".repeat(1 << 20);
            let (ptr, len) = (big.as_ptr() as u32, big.len() as u32);
            let labels = vec![[ptr, len, ptr, len]; 2048];
            let name = "probe_aliased";
            // SAFETY: the arguments are the canonical ABI's flat lowering of `counter-add`
            // (name, labels, delta), pointing at memory that outlives the call.
            unsafe { raw::counter_add(name.as_ptr(), name.len(), labels.as_ptr(), labels.len(), 1) };
            "counted".to_owned()
        }
        other => format!("unknown probe {other}"),
    };
    ctx.forward(key.unwrap_or_default(), report)
}

/// `wasp:plugin/metrics` as the canonical ABI lowers it, below the SDK (which copies labels
/// into owned strings, one buffer each): a list of `(key ptr, key len, value ptr, value len)`.
mod raw {
    #[link(wasm_import_module = "wasp:plugin/metrics@0.1.0")]
    unsafe extern "C" {
        #[link_name = "counter-add"]
        pub fn counter_add(name: *const u8, name_len: usize, labels: *const [u32; 4], labels_len: usize, delta: i64);
    }
}
