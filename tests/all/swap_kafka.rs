//! Hot swap under continuous load against the real broker: `wasp run` maps values with plugin
//! `m` while a producer keeps writing; the test swaps `m` twice, first by replacing its file
//! (the watcher) and then through the admin endpoint, and checks that every input key comes
//! out exactly once and that the output changes behaviour at the swap points, in every
//! partition's order.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::admin::{admin_address, http, wait_http};
use crate::broker::{Broker, Process};
use crate::common::{cache_dir, plugin};
use crate::swap::{copy_plugin, replace_file};

const PARTITIONS: i32 = 4;
const TOTAL: u32 = 4000;
const CHUNK: u32 = 50;
const TIMEOUT: Duration = Duration::from_secs(180);

/// Which version produced an output: test-kit upper-cases, trap returns the value as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Upper,
    Same,
}

fn phase(n: u32, value: &str) -> Phase {
    if value == format!("V{n}") {
        Phase::Upper
    } else if value == format!("v{n}") {
        Phase::Same
    } else {
        panic!("record {n}: unexpected value {value}")
    }
}

/// Plugin `m`'s entry in `/plugins`.
fn plugin_m(base: &str) -> serde_json::Value {
    let (_, body) = http("GET", &format!("{base}/plugins"), None, None);
    let all: serde_json::Value = serde_json::from_str(&body).expect("/plugins is JSON");
    all.as_array().and_then(|a| a.iter().find(|p| p["name"] == "m").cloned()).expect("m in /plugins")
}

/// Waits until `m` runs a version whose digest is (`same`) or is not `digest`, and that swap
/// is active.
fn wait_until_swapped(base: &str, digest: &serde_json::Value, same: bool) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let m = plugin_m(base);
        if (m["digest"] == *digest) == same && m["last_swap"]["result"] == "active" {
            return;
        }
        assert!(Instant::now() < deadline, "no active swap of m within {TIMEOUT:?}: {m}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a short count of outputs (which a fresh reading of `out` confirmed) says: which keys
/// are missing, where their inputs lie in `in`, and what wasp says it consumed and still lags.
fn shortfall(broker: &Broker, base: &str, reader: &crate::broker::Reader, expected: usize) -> String {
    let have: std::collections::BTreeSet<&str> = reader.records.iter().map(|r| r.key_str()).collect();
    let missing: Vec<String> =
        (0..expected as u32).map(|n| format!("k{n}")).filter(|k| !have.contains(k.as_str())).take(20).collect();
    let inputs = broker.consume(&["in"], TOTAL as usize, Duration::from_secs(10));
    let placed: Vec<String> = inputs
        .iter()
        .filter(|r| missing.iter().any(|k| k == r.key_str()))
        .map(|r| format!("{}@in[{}]:{}", r.key_str(), r.partition, r.offset))
        .collect();
    let metrics = http("GET", &format!("{base}/metrics"), None, None).1;
    let lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("wasp_consumer_lag") || l.starts_with("wasp_plugin_seen_total"))
        .collect();
    format!(
        "missing (first 20) {missing:?}; their inputs {placed:?} ({} inputs in all); wasp says {lines:?}",
        inputs.len(),
    )
}

#[test]
fn kafka_swap_under_load_loses_and_repeats_nothing_and_changes_behaviour_at_the_swap() {
    let broker = Broker::start();
    broker.create_topics(&["in", "out"], PARTITIONS);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let m = copy_plugin(dir.path(), "test-kit", "m");
    let manifest = dir.path().join("swap.toml");
    std::fs::write(
        &manifest,
        format!(
            r#"version = 1
[application]
id = "swap-under-load"
batch_size = 20
threads = 2
commit_interval_ms = 200
watch_plugins = true
[application.admin]
bind = "127.0.0.1:0"
token = "t0ken"
[application.kafka]
bootstrap_servers = "{bootstrap}"
[application.kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"
[plugins.m]
path = "{m}"
[plugins.kit]
path = "{kit}"
[pipelines.p]
from = "in"
to = "out"
[[pipelines.p.steps]]
op = "peek"
plugin = "kit"
[[pipelines.p.steps]]
op = "map_values"
plugin = "m"
"#,
            bootstrap = broker.bootstrap(),
            m = m.display(),
            kit = plugin("test-kit"),
        ),
    )
    .expect("write the manifest");
    let mut c = Command::new(env!("CARGO_BIN_EXE_wasp"));
    c.arg("run").arg(&manifest).env("WASP_CACHE_DIR", cache_dir()).env("WASP_LOG", "info,wasmtime=warn");
    let mut wasp = Process::spawn("wasp-swap", c);
    let base = format!("http://{}", admin_address(&mut wasp));
    wait_http(&format!("{base}/ready"), "ready", |_| true);

    // The load: record n goes to partition n % 4, so each partition's offsets follow n.
    let produced = Arc::new(AtomicU32::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let producer = {
        let (produced, done) = (produced.clone(), done.clone());
        let remote = broker.producer();
        std::thread::spawn(move || {
            let mut n = 0;
            while n < TOTAL {
                let chunk: Vec<(String, String)> = (n..n + CHUNK).map(|i| (format!("k{i}"), format!("v{i}"))).collect();
                let records: Vec<crate::broker::Produced<'_>> = chunk
                    .iter()
                    .enumerate()
                    .map(|(j, (k, v))| {
                        (Some(((n as usize + j) % PARTITIONS as usize) as i32), Some(k.as_bytes()), v.as_bytes())
                    })
                    .collect();
                remote.produce_to("in", &records);
                n += CHUNK;
                produced.store(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(30));
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut reader = broker.reader(&["out"]);
    let wait_outputs = |reader: &mut crate::broker::Reader, n: usize| {
        if !reader.read_count(n, TIMEOUT) {
            panic!("only {} outputs of {n}: {}", reader.records.len(), shortfall(&broker, &base, reader, n));
        }
    };

    // Swap 1, the file watcher: trap's map_values returns values unchanged.
    wait_outputs(&mut reader, (TOTAL / 4) as usize);
    let first = plugin_m(&base);
    replace_file(&m, Path::new(&plugin("trap")));
    wait_until_swapped(&base, &first["digest"], false);
    assert!(produced.load(Ordering::SeqCst) < TOTAL, "the swap happened under load");

    // Swap 2, the admin endpoint: back to test-kit.
    wait_outputs(&mut reader, (TOTAL / 2) as usize);
    let reload = format!("{base}/plugins/m/reload");
    assert_eq!(http("POST", &reload, None, None).0, 401, "no token, no reload");
    let body = serde_json::json!({ "path": plugin("test-kit") }).to_string();
    let (status, answer) = http("POST", &reload, Some("t0ken"), Some(&body));
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("\"pending\""), "{answer}");
    wait_until_swapped(&base, &first["digest"], true);
    assert!(produced.load(Ordering::SeqCst) < TOTAL, "the second swap happened under load");

    producer.join().expect("the producer");
    assert!(done.load(Ordering::SeqCst));
    wait_outputs(&mut reader, TOTAL as usize);
    reader.drain(Duration::from_secs(2), TIMEOUT);

    // Exactly once per key, and per input partition the phases go Upper → Same → Upper.
    let mut seen: BTreeMap<u32, Vec<Phase>> = BTreeMap::new();
    for r in &reader.records {
        let n: u32 = r.key_str().trim_start_matches('k').parse().expect("a numbered key");
        seen.entry(n).or_default().push(phase(n, r.value_str()));
    }
    let missing: Vec<u32> = (0..TOTAL).filter(|n| !seen.contains_key(n)).collect();
    let repeated: Vec<(&u32, &Vec<Phase>)> = seen.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(missing.is_empty(), "{} keys missing, e.g. {:?}", missing.len(), &missing[..missing.len().min(10)]);
    assert!(repeated.is_empty(), "{} keys repeated, e.g. {:?}", repeated.len(), &repeated[..repeated.len().min(10)]);
    for p in 0..PARTITIONS as u32 {
        let phases: Vec<Phase> = (0..TOTAL).filter(|n| n % PARTITIONS as u32 == p).map(|n| seen[&n][0]).collect();
        let mut runs: Vec<Phase> = phases.clone();
        runs.dedup();
        assert_eq!(runs, [Phase::Upper, Phase::Same, Phase::Upper], "partition {p}: the phases in offset order");
    }
    let metrics = http("GET", &format!("{base}/metrics"), None, None).1;
    assert!(metrics.contains(r#"wasp_plugin_swaps_total{plugin="m",result="swapped"} 2"#), "{metrics}");
    assert!(
        metrics.contains(&format!(r#"wasp_plugin_seen_total{{plugin="kit",source="test-kit"}} {TOTAL}"#)),
        "{metrics}"
    );
    assert!(metrics.contains("wasp_consumer_lag{"), "{metrics}");
    let started = Instant::now();
    wasp.terminate();
    assert!(wasp.wait_exit(TIMEOUT).success(), "a clean stop after {:?}", started.elapsed());
}
