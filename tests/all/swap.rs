//! Hot swap in local mode, in process: a run tails its input (`--follow`) while the test
//! replaces the plugin through the directory (as the watcher and the admin endpoint do), and
//! checks what comes out. Broken new versions are refused and the old version keeps running.
//! The real-broker swap under load is in `swap_kafka.rs`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasp_host::app::{self, LocalOptions};
use wasp_host::wasm::{SwapError, SwapResult};

use crate::common::{Scratch, cache_dir, plugin};

/// Generous failure bounds for a busy machine; nothing asserts speed.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A local run with `--follow` on a thread; dropping it stops the run.
pub struct Following {
    pub plugins: Arc<wasp_host::wasm::PluginDirectory>,
    pub metrics: wasp_host::wasm::MetricsRegistry,
    input: std::fs::File,
    output: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<wasp_host::runtime::RunStats>>>,
    next_key: usize,
}

impl Following {
    /// Starts `manifest` (reading `in.jsonl`, writing topic `out`) with the file watcher as
    /// `watch` says.
    pub fn start(sc: &Scratch, manifest: &str, watch: bool) -> Self {
        let input = sc.write("in.jsonl", "");
        let path = sc.write("pipeline.toml", manifest);
        let prepared = app::prepare(&path, Some(cache_dir())).expect("the manifest prepares");
        let plugins = prepared.plugins.clone();
        let metrics = prepared.runtime.metrics().clone();
        let output = sc.path("out.jsonl");
        let options = LocalOptions {
            outputs: [("out".to_owned(), output.clone())].into_iter().collect(),
            state_dir: Some(sc.path("state")),
            follow: true,
            watch: Some(watch),
            ..Default::default()
        };
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || prepared.run(&options, &s));
        let input = std::fs::OpenOptions::new().append(true).open(input).expect("open the input");
        Self { plugins, metrics, input, output, stop, thread: Some(thread), next_key: 0 }
    }

    /// Appends records with these values (keys count up from 0).
    pub fn send(&mut self, values: &[&str]) {
        for v in values {
            let line = serde_json::json!({"key": self.next_key.to_string(), "value": v, "timestamp": 0});
            writeln!(self.input, "{line}").expect("append to the input");
            self.next_key += 1;
        }
        self.input.flush().expect("flush the input");
    }

    /// What `out` has received so far, as (key, value).
    pub fn output(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(&self.output).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str::<crate::common::Out>(l).ok()).map(|o| o.kv()).collect()
    }

    /// Waits until `out` holds `n` records.
    pub fn wait_for(&self, n: usize) -> Vec<(String, String)> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let out = self.output();
            if out.len() >= n {
                return out;
            }
            assert!(Instant::now() < deadline, "only {} of {n} outputs within {TIMEOUT:?}: {out:?}", out.len());
            assert!(!self.thread.as_ref().is_some_and(|t| t.is_finished()), "the run ended early: {out:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the run and returns its result.
    pub fn finish(mut self) -> wasp_host::runtime::RunStats {
        self.stop.store(true, Ordering::SeqCst);
        let t = self.thread.take().expect("running");
        t.join().expect("the run does not panic").expect("the run succeeds")
    }

    /// The plugin's report, by name.
    pub fn report(&self, name: &str) -> wasp_host::wasm::swap::PluginReport {
        self.plugins.report().into_iter().find(|r| r.name == name).expect("the plugin is in the report")
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A copy of a built plugin at `dir/name.wasm`, so a test can replace the file.
pub fn copy_plugin(dir: &Path, from: &str, to: &str) -> PathBuf {
    let dest = dir.join(format!("{to}.wasm"));
    replace_file(&dest, Path::new(&plugin(from)));
    dest
}

/// Replaces `dest` with a copy of `src` in one rename, as a build tool would.
pub fn replace_file(dest: &Path, src: &Path) {
    let tmp = dest.with_extension("wasm.tmp");
    std::fs::copy(src, &tmp).unwrap_or_else(|e| panic!("copying {}: {e}", src.display()));
    std::fs::rename(&tmp, dest).expect("rename over the plugin");
}

/// One pipeline: `in` → `steps` (TOML, using plugin `m` at `m_path`) → `out`.
fn manifest_with(m_path: &Path, policy: &str, steps: &str) -> String {
    format!(
        r#"version = 1
[application]
id = "swap"
batch_size = 4
threads = 2
commit_interval_ms = 50
[streams.in]
file = "in.jsonl"
file_format = "jsonl"
[plugins.m]
path = "{}"
[pipelines.p]
from = "in"
to = "out"
on_error = "{policy}"
dead_letter_topic = "dlq"
steps = [{steps}]
"#,
        m_path.display()
    )
}

/// `in` → map_values with plugin `m` → `out`.
fn manifest(m_path: &Path, policy: &str) -> String {
    manifest_with(m_path, policy, r#"{ op = "map_values", plugin = "m" }"#)
}

fn values(out: &[(String, String)]) -> Vec<&str> {
    out.iter().map(|(_, v)| v.as_str()).collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen within {TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_reload_switches_at_a_batch_boundary_and_the_output_changes_there() {
    let sc = Scratch::new();
    let m = copy_plugin(sc.dir.path(), "test-kit", "m");
    let mut run = Following::start(&sc, &manifest(&m, "stop"), false);
    let before = run.report("m");
    run.send(&["a", "b", "c"]);
    assert_eq!(values(&run.wait_for(3)), ["A", "B", "C"]);
    // The trap plugin's map_values returns ordinary values unchanged.
    let event = run.plugins.reload("m", Some(Path::new(&plugin("trap")))).expect("the new version is valid");
    assert_eq!(event.result, SwapResult::Pending);
    run.send(&["d", "e"]);
    assert_eq!(values(&run.wait_for(5)), ["A", "B", "C", "d", "e"]);
    let after = run.report("m");
    assert_ne!(after.digest, before.digest);
    assert_eq!(after.swaps, 1);
    assert_eq!(after.last_swap.as_ref().map(|s| &s.result), Some(&SwapResult::Active), "{after:?}");
    // A reload of the same content changes nothing.
    let again = run.plugins.reload("m", Some(Path::new(&plugin("trap")))).expect("reloads");
    assert_eq!(again.result, SwapResult::Unchanged);
    let metrics = run.metrics.encode();
    assert!(metrics.contains(r#"wasp_plugin_swaps_total{plugin="m",result="swapped"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"wasp_plugin_swap_pause_seconds_count{plugin="m"} 1"#), "{metrics}");
    let stats = run.finish();
    assert_eq!((stats.records_in, stats.records_out), (5, 5));
}

#[test]
fn broken_new_versions_are_refused_and_the_old_version_keeps_running() {
    let sc = Scratch::new();
    let m = copy_plugin(sc.dir.path(), "test-kit", "m");
    let mut run = Following::start(&sc, &manifest(&m, "stop"), false);
    let digest = run.report("m").digest;
    run.send(&["a"]);
    run.wait_for(1);

    // Wrong exports: bot-filter has no value-mapper.
    let e = run.plugins.reload("m", Some(Path::new(&plugin("bot-filter")))).unwrap_err();
    assert!(matches!(e, SwapError::Rejected { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("value-mapper") && text.contains("0.1.0"), "names the kind and WIT version: {text}");
    // A trap at start: its constructor aborts on the trial call.
    let e = run.plugins.reload("m", Some(Path::new(&plugin("start-trap")))).unwrap_err().to_string();
    assert!(e.contains("rejected") && e.contains("trap"), "{e}");
    // Not a component at all.
    let junk = sc.write("junk.wasm", "not wasm");
    let e = run.plugins.reload("m", Some(&junk)).unwrap_err().to_string();
    assert!(e.contains("not a valid WebAssembly component"), "{e}");
    let report = run.report("m");
    assert_eq!(report.digest, digest, "the old version still runs");
    assert_eq!(report.last_swap.as_ref().map(|s| &s.result), Some(&SwapResult::Rejected));
    assert!(report.last_swap.as_ref().and_then(|s| s.reason.as_deref()).is_some_and(|r| r.contains("component")));

    // A trap on the first batch: the new version (trap) panics on `boom`; the batch is run
    // again by the old version, and the swap is rolled back for good.
    run.plugins.reload("m", Some(Path::new(&plugin("trap")))).expect("trap passes validation");
    run.send(&["boom", "b"]);
    assert_eq!(values(&run.wait_for(3)), ["A", "BOOM", "B"]);
    let report = run.report("m");
    assert_eq!(report.digest, digest, "rolled back to the old version");
    assert_eq!(report.last_swap.as_ref().map(|s| &s.result), Some(&SwapResult::RolledBack), "{report:?}");
    run.send(&["c"]);
    assert_eq!(values(&run.wait_for(4)), ["A", "BOOM", "B", "C"]);
    let metrics = run.metrics.encode();
    assert!(metrics.contains(r#"wasp_plugin_swaps_total{plugin="m",result="rejected"} 3"#), "{metrics}");
    assert!(metrics.contains(r#"wasp_plugin_swaps_total{plugin="m",result="rolled_back"} 1"#), "{metrics}");
    let stats = run.finish();
    assert_eq!((stats.records_in, stats.records_out, stats.failed_records), (4, 4, 0));
}

#[test]
fn the_file_watcher_swaps_a_plugin_whose_file_changes() {
    let sc = Scratch::new();
    let m = copy_plugin(sc.dir.path(), "test-kit", "m");
    let mut run = Following::start(&sc, &manifest(&m, "stop"), true);
    run.send(&["a"]);
    run.wait_for(1);
    let before = run.report("m").digest;
    replace_file(&m, Path::new(&plugin("trap")));
    wait_until("the watcher's reload", || run.report("m").digest != before);
    run.send(&["b"]);
    assert_eq!(values(&run.wait_for(2)), ["A", "b"]);
    // A broken file is refused; the running version stays.
    let running = run.report("m").digest;
    replace_file(&m, Path::new(&plugin("bot-filter")));
    wait_until("the watcher's rejection", || {
        run.report("m").last_swap.is_some_and(|s| s.result == SwapResult::Rejected)
    });
    run.send(&["c"]);
    assert_eq!(values(&run.wait_for(3)), ["A", "b", "c"]);
    assert_eq!(run.report("m").digest, running);
    run.finish();
}

#[test]
fn state_in_host_stores_survives_a_swap() {
    let sc = Scratch::new();
    let m = copy_plugin(sc.dir.path(), "test-kit", "m");
    let text =
        manifest_with(&m, "stop", r#"{ op = "group_by_key" }, { op = "reduce", plugin = "m" }, { op = "to_stream" }"#);
    let mut run = Following::start(&sc, &text, false);
    run.input_for_key("a", "x");
    run.input_for_key("b", "y");
    assert_eq!(values(&run.wait_for(2)), ["x", "y"]);
    // A new version of the same reducer.
    let v2 = same_component(&sc.dir.path().join("kit-v2.wasm"), "test-kit");
    let event = run.plugins.reload("m", Some(&v2)).expect("v2 is valid");
    assert_eq!(event.result, SwapResult::Pending);
    run.input_for_key("a", "z");
    let out = run.wait_for(3);
    assert_eq!(out[2], ("a".to_owned(), "x+z".to_owned()), "the aggregate from before the swap is kept: {out:?}");
    assert_eq!(run.report("m").last_swap.map(|s| s.result), Some(SwapResult::Active));
    run.finish();
}

/// A copy of built plugin `from` at `dest` with a custom section appended: the component
/// means the same, its digest differs (a new version that behaves as the old).
pub fn same_component(dest: &Path, from: &str) -> PathBuf {
    let mut bytes = std::fs::read(plugin(from)).unwrap_or_else(|e| panic!("reading {from}: {e}"));
    bytes.extend_from_slice(&custom_section("wasp-test", b"v2"));
    std::fs::write(dest, &bytes).unwrap_or_else(|e| panic!("writing {}: {e}", dest.display()));
    dest.to_owned()
}

/// A WebAssembly custom section (id 0) named `name`: appending one to a component changes its
/// bytes, not its meaning.
pub fn custom_section(name: &str, payload: &[u8]) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    let mut section = vec![0u8];
    leb(body.len(), &mut section);
    section.extend(body);
    section
}

impl Following {
    /// Appends one record with an explicit key.
    fn input_for_key(&mut self, key: &str, value: &str) {
        let line = serde_json::json!({"key": key, "value": value, "timestamp": 0});
        writeln!(self.input, "{line}").expect("append to the input");
        self.input.flush().expect("flush the input");
    }
}

/// `in` → group by key → aggregate with plugin `m` (a copy of built plugin `from`) → `out`.
fn aggregating(sc: &Scratch, from: &str) -> Following {
    let m = copy_plugin(sc.dir.path(), from, "m");
    let text = manifest_with(
        &m,
        "stop",
        r#"{ op = "group_by_key" }, { op = "aggregate", plugin = "m" }, { op = "to_stream" }"#,
    );
    Following::start(sc, &text, false)
}

#[test]
fn a_new_version_brings_its_own_initial_aggregate_and_old_aggregates_are_kept() {
    let sc = Scratch::new();
    let mut run = aggregating(&sc, "test-kit");
    run.input_for_key("a", "1");
    assert_eq!(values(&run.wait_for(1)), ["1"], "test-kit's aggregates start from 0");
    let event = run.plugins.reload("m", Some(Path::new(&plugin("kit-v2")))).expect("kit-v2 is valid");
    assert_eq!(event.result, SwapResult::Pending);
    run.input_for_key("a", "2");
    run.input_for_key("b", "5");
    let out = run.wait_for(3);
    assert_eq!(
        out[1..],
        [("a".to_owned(), "3".to_owned()), ("b".to_owned(), "105".to_owned())],
        "a keeps its aggregate; b, new after the swap, starts from kit-v2's 100: {out:?}"
    );
    assert_eq!(run.report("m").last_swap.map(|s| s.result), Some(SwapResult::Active));
    run.finish();
}

/// A task of a one-step pipeline (`in` → `step` with plugin `m` → `out`, on_error = skip),
/// driven by hand: the test calls `process` and sees what each batch emits. Its stores are
/// in memory.
struct HandTask {
    prepared: app::Prepared,
    task: wasp_host::runtime::Task,
}

impl HandTask {
    fn new(sc: &Scratch, m: &Path, step: &str) -> Self {
        Self::with(sc, m, step, "")
    }

    /// With `more` TOML after the pipeline (stores).
    fn with(sc: &Scratch, m: &Path, step: &str, more: &str) -> Self {
        let path = sc.write("pipeline.toml", &(manifest_with(m, "skip", step) + more));
        let prepared = app::prepare(&path, Some(cache_dir())).expect("the manifest prepares");
        let plugins = prepared.plugins.clone();
        let lookup = |name: &str| plugins.get(name);
        let mut memory = |spec: &wasp_host::state::StoreSpec| wasp_host::state::Store::open(spec.clone(), None, None);
        let task = wasp_host::runtime::Task::new(
            prepared.topology.clone(),
            0,
            0,
            &lookup,
            &mut memory,
            prepared.runtime.metrics(),
        )
        .expect("the task starts");
        Self { prepared, task }
    }

    /// One batch of records keyed `a`, at these (value, timestamp); what reached `out`, and
    /// how many records failed.
    fn process(&mut self, records: &[(&str, i64)]) -> (Vec<(String, String)>, u64) {
        let batch =
            records.iter().map(|(v, t)| wasp_host::record::Record::new(Some(b"a"), Some(v.as_bytes()), *t)).collect();
        let out = self.task.process("in", batch).expect("the batch runs");
        let failed = out.failed;
        (crate::common::task_kvs(out), failed)
    }

    /// The result of the last swap of plugin `m`.
    fn last_swap(&self) -> Option<SwapResult> {
        let report = self.prepared.plugins.report().into_iter().find(|r| r.name == "m").expect("m is reported");
        report.last_swap.map(|s| s.result)
    }
}

fn kv(k: &str, v: &str) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

#[test]
fn a_processor_instance_rebuilt_after_a_trap_is_initialized_before_its_next_record() {
    let sc = Scratch::new();
    let m = copy_plugin(sc.dir.path(), "test-kit", "m");
    let mut t = HandTask::new(&sc, &m, r#"{ op = "process", plugin = "m" }"#);
    // test-kit's processor fails a record with `not-initialized` if its instance's `init`
    // has not run.
    assert_eq!(t.process(&[("x", 5)]), (vec![kv("a", "x"), kv("stream", "5")], 0));
    // A trap, retried once on a rebuilt instance that traps too: skipped.
    assert_eq!(t.process(&[("trap", 6)]), (vec![], 1));
    // The next record goes to another rebuilt instance, initialized first; the timers go on.
    assert_eq!(t.process(&[("y", 16)]), (vec![kv("a", "y"), kv("stream", "16")], 0));
}

#[test]
fn a_processor_takes_the_timers_of_the_new_version_at_the_swap() {
    let sc = Scratch::new();
    let m = copy_plugin(sc.dir.path(), "test-kit", "m");
    let mut t = HandTask::new(&sc, &m, r#"{ op = "process", plugin = "m" }"#);
    assert_eq!(t.process(&[("x", 5)]).0, [kv("a", "x"), kv("stream", "5")]);
    let event = t.prepared.plugins.reload("m", Some(Path::new(&plugin("kit-v2")))).expect("kit-v2 is valid");
    assert_eq!(event.result, SwapResult::Pending);
    // kit-v2 asks for `other` every 5 ms of stream time instead of test-kit's `stream` (10 ms)
    // and `wall`; the new timer fires first at once, as a timer does after `init`, then once
    // per advance of stream time past its next aligned time (Kafka Streams skips the missed).
    assert_eq!(t.process(&[("y", 9)]).0, [kv("a", "y"), kv("other", "9")]);
    assert_eq!(t.process(&[("z", 20)]).0, [kv("a", "z"), kv("other", "20")]);
    assert_eq!(t.last_swap(), Some(SwapResult::Active));
}

#[test]
fn only_a_batch_ends_a_new_versions_probation_not_a_timer() {
    let sc = Scratch::new();
    let m = copy_plugin(sc.dir.path(), "test-kit", "m");
    let mut t = HandTask::new(&sc, &m, r#"{ op = "process", plugin = "m" }"#);
    assert_eq!(t.process(&[("x", 5)]).0, [kv("a", "x"), kv("stream", "5")]);
    let ticked = |t: &mut HandTask, now: i64| t.task.tick(now).expect("the tick runs").records.len();
    assert_eq!(ticked(&mut t, 1_000), 0, "the wall-clock timer is scheduled");
    // The same processor with another digest, published while the task is idle.
    let v2 = same_component(&sc.dir.path().join("kit-v2-same.wasm"), "test-kit");
    assert_eq!(t.prepared.plugins.reload("m", Some(&v2)).expect("v2 is valid").result, SwapResult::Pending);
    // The timer is the new version's first call; it does not confirm the version.
    assert_eq!(ticked(&mut t, 1_011), 1, "the wall-clock timer fires on the new version");
    assert_eq!(t.last_swap(), Some(SwapResult::Pending));
    // Its first batch traps: the swap is rolled back.
    assert_eq!(t.process(&[("trap", 6)]).1, 1);
    assert_eq!(t.last_swap(), Some(SwapResult::RolledBack));
}

#[test]
fn a_processor_batch_that_traps_leaves_no_writes_in_its_stores() {
    let sc = Scratch::new();
    let m = copy_plugin(sc.dir.path(), "test-kit", "m");
    let step = r#"{ op = "process", plugin = "m", stores = ["counts"] }"#;
    let mut t = HandTask::with(&sc, &m, step, "[stores.counts]\nkind = \"key_value\"\n");
    assert_eq!(t.process(&[("count", 1)]).0, [kv("a", "1"), kv("stream", "1")]);
    // Two counts, then a trap: the batch traps again on a fresh instance and is skipped. The
    // counts it wrote on either run are undone, not applied twice.
    assert_eq!(t.process(&[("count", 2), ("count", 3), ("trap", 4)]), (vec![], 3));
    assert_eq!(t.process(&[("count", 5)]).0, [kv("a", "2")]);
}

/// Issue 14's state-schema swap: `stats-v1` keeps `{"count", "total"}` per key; while records
/// flow, it is swapped for `stats-v2`, whose state is `{"version": 2, "n", "sum", "max"}` and
/// which converts a v1 state the first time it updates its key (the rule in the README's
/// "State formats across a swap"). Every key's updates count up by one across the swap, none
/// lost or repeated, each key's first v2 update carries its v1 count and total on, and once a
/// key is in the new format it stays there.
#[test]
fn a_plugin_that_changes_its_state_format_migrates_each_key_under_load() {
    let sc = Scratch::new();
    let mut run = aggregating(&sc, "stats-v1");
    let keys = ["a", "b", "c", "d", "e"];
    let mut sent = 0usize;
    let mut send = |run: &mut Following, n: usize| {
        for _ in 0..n {
            run.input_for_key(keys[sent % keys.len()], &(sent + 1).to_string());
            sent += 1;
        }
    };
    send(&mut run, 200);
    // Swapped while the first records are still being processed.
    run.wait_for(20);
    let event = run.plugins.reload("m", Some(Path::new(&plugin("stats-v2")))).expect("stats-v2 is valid");
    assert_eq!(event.result, SwapResult::Pending);
    send(&mut run, 200);
    let out = run.wait_for(400);
    assert_eq!(out.len(), 400, "each record updates its key once");
    assert_eq!(run.report("m").last_swap.map(|s| s.result), Some(SwapResult::Active));
    let mut v1_seen = 0;
    for (i, key) in keys.iter().enumerate() {
        let states: Vec<serde_json::Value> = out
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| serde_json::from_str(v).unwrap_or_else(|e| panic!("a JSON state `{v}`: {e}")))
            .collect();
        let (mut count, mut total, mut migrated) = (0u64, 0i64, false);
        for (j, s) in states.iter().enumerate() {
            // The j-th record of key i has the value i + 1 + 5j.
            count += 1;
            total += (i + 1 + keys.len() * j) as i64;
            if s.get("version").is_some() {
                migrated = true;
                assert_eq!((s["n"].as_u64(), s["sum"].as_i64()), (Some(count), Some(total)), "{key} update {j}: {s}");
                assert!(s["max"].as_i64().is_some(), "{key}: v2 keeps the max from its first update: {s}");
            } else {
                assert!(!migrated, "{key} went back to the v1 format after the swap: {states:?}");
                v1_seen += 1;
                assert_eq!(
                    (s["count"].as_u64(), s["total"].as_i64()),
                    (Some(count), Some(total)),
                    "{key} update {j}: {s}"
                );
            }
        }
        assert!(migrated, "{key}'s state ends in the v2 format: {states:?}");
    }
    assert!(v1_seen >= 20, "the swap came while records flowed ({v1_seen} v1 updates)");
    run.finish();
}
