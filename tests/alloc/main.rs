//! The record path allocates nothing per record in steady state: a counting allocator (around
//! the system one) measures a local pipeline run over N and over 2N records, and the
//! difference, divided by the N extra records, is what each further record costs. Setup,
//! plugin loading and per-commit work cancel out. A binary of its own: the counter is
//! process-wide, so no other test may run beside it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use wasp_host::app::{self, LocalOptions};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ has a parent").to_path_buf()
}

fn plugin(name: &str) -> String {
    let p = repo().join("plugins/build").join(format!("{name}.wasm"));
    assert!(p.exists(), "{} is missing: run `make plugins` (or `make test`, which builds them)", p.display());
    p.display().to_string()
}

/// Allocations of one local run of `manifest` (with `{input}` and `{state}` filled in) over
/// `input`, and the records it read.
fn allocations(dir: &Path, name: &str, manifest: &str, input: &str) -> (u64, u64) {
    let input_path = dir.join(format!("{name}.in"));
    std::fs::write(&input_path, input).expect("write input");
    let text = manifest
        .replace("{input}", &input_path.display().to_string())
        .replace("{state}", &dir.join(format!("state-{name}")).display().to_string());
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write manifest");
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("wasp-cache");
    let prepared = app::prepare(&path, Some(cache)).expect("prepare");
    let options = LocalOptions {
        outputs: [("out".to_owned(), dir.join(format!("{name}.out")))].into_iter().collect(),
        ..Default::default()
    };
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let stats = prepared.run(&options, &AtomicBool::new(false)).expect("run");
    (ALLOCATIONS.load(Ordering::Relaxed) - before, stats.records_in)
}

/// Allocations per extra record: runs over `n` and `2n` inputs made by `input(n)`, with
/// everything else equal, and divides the difference by the extra records read.
fn marginal(manifest: &str, input: impl Fn(usize) -> String, n: usize) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    // A warm-up run compiles the plugins into the cache, so both measured runs load them alike.
    allocations(dir.path(), "warm", manifest, &input(n / 10));
    let (a1, r1) = allocations(dir.path(), "small", manifest, &input(n));
    let (a2, r2) = allocations(dir.path(), "large", manifest, &input(2 * n));
    assert_eq!(r2, 2 * r1, "the larger input has twice the records");
    let per = (a2 as f64 - a1 as f64) / (r2 - r1) as f64;
    eprintln!("{a1} allocations over {r1} records, {a2} over {r2}: {per:.4} per extra record");
    per
}

/// What "nothing per record" allows: per-batch and per-commit work, spread over records.
const PER_RECORD_CAP: f64 = 0.05;

#[test]
fn the_record_path_allocates_nothing_per_record() {
    // Stateless: a JSON filter and a map through Wasm plugins, JSON lines in and out.
    let stateless = format!(
        r#"version = 1
[application]
id = "alloc-stateless"
threads = 1
state_dir = "{{state}}"
[streams.in]
topic = "in"
file = "{{input}}"
[plugins.f]
path = "{f}"
[plugins.m]
path = "{m}"
[pipelines.p]
from = "in"
to = "out"
steps = [ {{ op = "filter", plugin = "f" }}, {{ op = "map_values", plugin = "m" }} ]
"#,
        f = plugin("bench-filter"),
        m = plugin("bench-map"),
    );
    let json = |n: usize| -> String {
        (0..n)
            .map(|i| {
                format!(r#"{{"id":{i},"user":"u{}","amount":{}.5,"country":"NL","pad":"xxxxxxxx"}}"#, i % 97, i % 1000)
                    + "\n"
            })
            .collect()
    };
    let per = marginal(&stateless, json, 20_000);
    assert!(per < PER_RECORD_CAP, "filter + map_values: {per:.3} allocations per record");

    // Stateful: word count, a repartition and a RocksDB count, every update emitted.
    let wordcount = format!(
        r#"version = 1
[application]
id = "alloc-wordcount"
threads = 1
state_dir = "{{state}}"
[streams.in]
topic = "in"
file = "{{input}}"
[plugins.split]
path = "{s}"
[plugins.key]
path = "{k}"
[pipelines.p]
from = "in"
to = "out"
steps = [ {{ op = "flat_map_values", plugin = "split" }}, {{ op = "group_by", plugin = "key" }}, {{ op = "count" }} ]
"#,
        s = plugin("split-words"),
        k = plugin("word-key"),
    );
    let lines = |n: usize| -> String {
        (0..n).map(|i| format!("w{} w{} w{} w{}\n", i % 500, (i * 7) % 500, (i * 13) % 500, i % 11)).collect()
    };
    let per = marginal(&wordcount, lines, 20_000);
    assert!(per < PER_RECORD_CAP, "word count: {per:.3} allocations per line");
}
