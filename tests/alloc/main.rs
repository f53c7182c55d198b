//! The record path allocates nothing per record in steady state: a counting allocator (around
//! the system one) measures a local pipeline run over N and over 2N records, and the
//! difference, divided by the N extra records, is what each further record costs. Setup,
//! plugin loading and per-commit work cancel out. A binary of its own: the counter is
//! process-wide, so no other test may run beside it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasp_host::app::{self, LocalOptions};

#[path = "../all/broker.rs"]
#[allow(dead_code)]
mod broker;
#[path = "../all/common.rs"]
#[allow(dead_code)]
mod common;

use common::{cache_dir, plugin};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// The tests of this binary run one at a time: the count is process-wide.
static SERIAL: Mutex<()> = Mutex::new(());

thread_local! {
    /// Set on a test's own threads (producing input, watching outputs): not counted.
    static UNCOUNTED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if !UNCOUNTED.try_with(Cell::get).unwrap_or(true) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
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

/// A manifest on one stream thread: `[application]` with `id` and `app` (the state dir, and
/// on Kafka its section), the stream `in` (`input`: its topic and, locally, its file), two
/// plugins `a` and `b`, and the pipeline `in` → `steps` → `to`; `tail` comes last.
fn manifest(id: &str, app: &str, input: &str, plugins: [&str; 2], steps: &str, to: &str, tail: &str) -> String {
    format!(
        "version = 1\n[application]\nid = \"{id}\"\nthreads = 1\n{app}\n[streams.in]\n{input}\n\
         [plugins.a]\npath = \"{a}\"\n[plugins.b]\npath = \"{b}\"\n\
         [pipelines.p]\nfrom = \"in\"\nto = \"{to}\"\nsteps = [ {steps} ]\n{tail}",
        a = plugin(plugins[0]),
        b = plugin(plugins[1]),
    )
}

/// Word count's steps over plugins `a` (split-words) and `b` (word-key), with `count`'s fields.
fn wordcount_steps(count: &str) -> String {
    format!(
        r#"{{ op = "flat_map_values", plugin = "a" }}, {{ op = "group_by", plugin = "b" }}, {{ op = "count"{count} }}"#
    )
}

/// Local mode: `{state}` and `{input}` are filled in per run.
const LOCAL_APP: &str = r#"state_dir = "{state}""#;
const LOCAL_INPUT: &str = "topic = \"in\"\nfile = \"{input}\"";

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
    let prepared = app::prepare(&path, Some(cache_dir())).expect("prepare");
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
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // Stateless: a JSON filter and a map through Wasm plugins, JSON lines in and out.
    let stateless = manifest(
        "alloc-stateless",
        LOCAL_APP,
        LOCAL_INPUT,
        ["bench-filter", "bench-map"],
        r#"{ op = "filter", plugin = "a" }, { op = "map_values", plugin = "b" }"#,
        "out",
        "",
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
    let wordcount = manifest(
        "alloc-wordcount",
        LOCAL_APP,
        LOCAL_INPUT,
        ["split-words", "word-key"],
        &wordcount_steps(""),
        "out",
        "",
    );
    let lines = |n: usize| -> String {
        (0..n).map(|i| format!("w{} w{} w{} w{}\n", i % 500, (i * 7) % 500, (i * 13) % 500, i % 11)).collect()
    };
    let per = marginal(&wordcount, lines, 20_000);
    assert!(per < PER_RECORD_CAP, "word count: {per:.3} allocations per line");
}

/// On a real broker (nisshi), word count through its repartition topic: the allocations
/// between a quarter and three quarters of the outputs, per output (one per word). The test's
/// own threads (producing, watching) are not counted. Each word is sent twice (to the
/// repartition topic, then as its count), and rdkafka's `BaseProducer::send` allocates the
/// topic name as a `CString` on every send (heaptrack on this test shows it and nothing else
/// of ours); librdkafka's own per-message allocations are C's `malloc`, not counted here. So
/// the bound is two per word, plus what per-batch work spreads over them: a poll on Kafka
/// returns what has been fetched, often a few hundred records, so the 40-odd allocations of a
/// batch come to 0.04–0.09 per word here (any allocation per record would add 1). The store
/// keeps no changelog here, whose sends (once per key per commit) would depend on timing.
#[test]
fn on_kafka_the_record_path_allocates_only_rdkafkas_topic_name_per_send() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    UNCOUNTED.with(|u| u.set(true));
    let broker = broker::Broker::start();
    broker.create_topics(&["alloc-lines", "alloc-counts"], 1);
    const LINES: usize = 40_000;
    let lines: Vec<(Option<String>, String)> = (0..LINES)
        .map(|i| (None, format!("w{} w{} w{} w{}", i % 500, (i * 7) % 500, (i * 13) % 500, i % 11)))
        .collect();
    broker.produce("alloc-lines", &lines);
    let words = (LINES * 4) as i64;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("wordcount.toml");
    let app = format!(
        "state_dir = \"{}\"\n[application.kafka]\nbootstrap_servers = \"{}\"",
        dir.path().join("state").display(),
        broker.bootstrap()
    );
    let text = manifest(
        "alloc-kafka",
        &app,
        "topic = \"alloc-lines\"",
        ["split-words", "word-key"],
        &wordcount_steps(r#", store = "counts""#),
        "alloc-counts",
        "[stores.counts]\nchangelog = false\n",
    );
    std::fs::write(&path, text).expect("write manifest");
    let prepared = app::prepare(&path, Some(cache_dir())).expect("prepare");
    let stop = AtomicBool::new(false);
    let config = broker.config();
    let (window, result) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            UNCOUNTED.with(|u| u.set(true));
            let consumer: rdkafka::consumer::BaseConsumer = config.create().expect("a metadata client");
            let outputs = || {
                rdkafka::consumer::Consumer::fetch_watermarks(&consumer, "alloc-counts", 0, Duration::from_secs(10))
                    .map_or(0, |(_, high)| high)
            };
            let deadline = Instant::now() + Duration::from_secs(300);
            let mut marks = Vec::new();
            for target in [words / 4, words * 3 / 4] {
                loop {
                    let n = outputs();
                    if n >= target {
                        marks.push((ALLOCATIONS.load(Ordering::Relaxed), n));
                        break;
                    }
                    if Instant::now() > deadline {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            stop.store(true, Ordering::SeqCst);
            marks
        });
        let result = prepared.run(&LocalOptions::default(), &stop);
        (watcher.join().expect("the watcher"), result)
    });
    result.expect("the run");
    assert_eq!(window.len(), 2, "the outputs reached three quarters of {words}");
    let ((a1, n1), (a2, n2)) = (window[0], window[1]);
    let per = (a2 - a1) as f64 / (n2 - n1) as f64;
    eprintln!("{} allocations over {} outputs: {per:.4} per output", a2 - a1, n2 - n1);
    // Two sends per word, each a `CString` inside rdkafka; per-batch work over smaller batches.
    let ours = per - 2.0;
    assert!(ours < 0.25, "word count on Kafka: {per:.3} allocations per output, {ours:.3} beyond rdkafka's two");
}
