//! Word count against a real broker (nisshi): state in RocksDB, changelogs and a repartition
//! topic on the broker. A SIGKILL in the middle of the stream, or a lost state directory,
//! must not change the final counts: stores restore from their changelogs, and each store
//! applies every record once (see `host/src/state/mod.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::broker::{Broker, Process, Reader};

const INPUT: &str = "streams-plaintext-input";
const OUTPUT: &str = "streams-wordcount-output";
const PARTITIONS: i32 = 4;
const VOCABULARY: usize = 40;
const START_TIMEOUT: Duration = Duration::from_secs(300);
const COMPLETE_TIMEOUT: Duration = Duration::from_secs(240);
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

fn word(i: usize) -> String {
    format!("w{i:02}")
}

/// Line `n`: five words, spread over the vocabulary.
fn line(n: usize) -> String {
    (0..5).map(|j| word((n * 7 + j * 13 + j * j) % VOCABULARY)).collect::<Vec<_>>().join(" ")
}

fn expected(lines: std::ops::Range<usize>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for n in lines {
        for w in line(n).split(' ') {
            *counts.entry(w.to_owned()).or_default() += 1;
        }
    }
    counts
}

/// The latest count of each word: the last record of its key, in offset order (a key lives
/// in one partition).
fn latest(reader: &Reader) -> BTreeMap<String, u64> {
    let mut last: BTreeMap<String, (i64, u64)> = BTreeMap::new();
    for r in &reader.records {
        let count: u64 = r.value_str().parse().unwrap_or_else(|_| panic!("a count: {}", r.value_str()));
        let e = last.entry(r.key_str().to_owned()).or_insert((r.offset, count));
        if r.offset >= e.0 {
            *e = (r.offset, count);
        }
    }
    last.into_iter().map(|(k, (_, c))| (k, c)).collect()
}

fn produce(broker: &Broker, lines: std::ops::Range<usize>) {
    let records: Vec<(Option<String>, String)> = lines.map(|n| (None, line(n))).collect();
    broker.produce(INPUT, &records);
}

fn write_manifest(dir: &Path, broker: &Broker) -> PathBuf {
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/kafka/wordcount.toml");
    let text = std::fs::read_to_string(&template).unwrap_or_else(|e| panic!("reading {}: {e}", template.display()));
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/build");
    let plugins = plugins.canonicalize().unwrap_or(plugins);
    for p in ["split-words", "word-key"] {
        assert!(plugins.join(format!("{p}.wasm")).is_file(), "{p}.wasm is missing: run `make plugins`");
    }
    let state = dir.join("state");
    let text = text
        .replace("@BOOTSTRAP@", &broker.bootstrap())
        .replace("@PLUGINS@", plugins.to_str().expect("UTF-8"))
        .replace("@STATE_DIR@", state.to_str().expect("UTF-8"))
        .replace("@BATCH_SIZE@", "16");
    let path = dir.join("wordcount.toml");
    std::fs::write(&path, text).expect("writing the manifest");
    path
}

/// `wasp run MANIFEST` as a child process named `name`, logging at info.
pub fn start(name: &str, manifest: &Path) -> Process {
    Process::spawn(name, run_command(manifest))
}

/// [`start`], its stores under `state` (`--state-dir`).
pub fn start_in(name: &str, manifest: &Path, state: &Path) -> Process {
    let mut c = run_command(manifest);
    c.arg("--state-dir").arg(state);
    Process::spawn(name, c)
}

fn run_command(manifest: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wasp"));
    c.arg("run")
        .arg(manifest)
        .env("WASP_CACHE_DIR", crate::common::cache_dir())
        .env("WASP_LOG", "info,wasmtime=warn,cranelift=warn");
    c
}

fn setup() -> (Broker, tempfile::TempDir, PathBuf, Reader) {
    let broker = Broker::start();
    broker.create_topics(&[INPUT, OUTPUT], PARTITIONS);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let manifest = write_manifest(dir.path(), &broker);
    let reader = broker.reader(&[OUTPUT]);
    (broker, dir, manifest, reader)
}

/// Reads until every word's latest count is the expected one, then a little longer, and
/// checks nothing moved past it (a count applied twice would).
fn finish(reader: &mut Reader, wasp: &mut Process, want: &BTreeMap<String, u64>) {
    let t = Instant::now();
    while latest(reader) != *want {
        reader.poll_for(Duration::from_millis(200));
        wasp.assert_running();
        assert!(t.elapsed() < COMPLETE_TIMEOUT, "counts not reached: {:?}", diff(&latest(reader), want));
    }
    reader.drain(Duration::from_secs(2), Duration::from_secs(30));
    assert_eq!(diff(&latest(reader), want), Vec::<String>::new(), "the final counts");
}

fn diff(got: &BTreeMap<String, u64>, want: &BTreeMap<String, u64>) -> Vec<String> {
    want.iter()
        .filter(|(k, v)| got.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: got {:?}, want {v}", got.get(k)))
        .collect()
}

#[test]
fn word_counts_survive_sigkill() {
    // Large enough that processing takes seconds (about ten), so the kill lands after some
    // commits (every 100 ms) and well before the end, however late the reader sees its first
    // updates on a busy machine (two stream threads got through 40,000 lines before it saw
    // 1,000 updates while the other broker tests ran).
    const FIRST: usize = 150_000;
    const TOTAL: usize = 160_000;
    let (broker, _dir, manifest, mut reader) = setup();
    produce(&broker, 0..FIRST);
    let mut wasp = start("wasp-1", &manifest);
    let some = reader.read_until(START_TIMEOUT, |r| {
        wasp.assert_running();
        r.len() >= 1_000
    });
    assert!(some, "too little output within {START_TIMEOUT:?}");
    wasp.kill();
    let at_kill = latest(&reader);
    let first = expected(0..FIRST);
    assert!(at_kill != first, "the kill should land mid-stream");
    eprintln!("SIGKILLed with {} outputs read", reader.records.len());

    produce(&broker, FIRST..TOTAL);
    let mut wasp = start("wasp-2", &manifest);
    finish(&mut reader, &mut wasp, &expected(0..TOTAL));
    wasp.terminate();
    assert!(wasp.wait_exit(EXIT_TIMEOUT).success(), "wasp-2 exits cleanly on SIGTERM");
}

#[test]
fn word_counts_restore_from_the_changelog_when_the_state_is_gone() {
    const FIRST: usize = 400;
    const TOTAL: usize = 700;
    let (broker, dir, manifest, mut reader) = setup();
    produce(&broker, 0..FIRST);
    let mut wasp = start("wasp-a", &manifest);
    finish(&mut reader, &mut wasp, &expected(0..FIRST));
    wasp.terminate();
    assert!(wasp.wait_exit(EXIT_TIMEOUT).success(), "wasp-a exits cleanly on SIGTERM");

    let state = dir.path().join("state");
    assert!(state.join("wordcount").is_dir(), "the stores lived on disk");
    std::fs::remove_dir_all(&state).expect("deleting the state directory");

    produce(&broker, FIRST..TOTAL);
    let mut wasp = start("wasp-b", &manifest);
    finish(&mut reader, &mut wasp, &expected(0..TOTAL));
    assert!(
        wasp.logged("store restored from its changelog"),
        "the store was restored:\n{}",
        wasp.log_lines().join("\n")
    );
    wasp.terminate();
    assert!(wasp.wait_exit(EXIT_TIMEOUT).success(), "wasp-b exits cleanly on SIGTERM");
}

#[test]
fn word_counts_with_the_record_cache_reach_the_final_counts_with_fewer_updates() {
    // caching = true (KIP-63): a word's updates collapse until the commit, which sends them
    // before the input offsets; the final counts are the same, across a SIGTERM and restart.
    const FIRST: usize = 4_000;
    const TOTAL: usize = 4_400;
    let (broker, dir, manifest, mut reader) = setup();
    let text = std::fs::read_to_string(&manifest).expect("the manifest");
    let cached = text.replace("[stores.counts]\n", "[stores.counts]\ncaching = true\n");
    assert_ne!(cached, text, "the template has [stores.counts]");
    let manifest = dir.path().join("wordcount-cached.toml");
    std::fs::write(&manifest, cached).expect("writing the manifest");
    produce(&broker, 0..FIRST);
    let mut wasp = start("wasp-c", &manifest);
    finish(&mut reader, &mut wasp, &expected(0..FIRST));
    let updates = FIRST * 5;
    assert!(
        reader.records.len() < updates / 2,
        "{} outputs for {updates} updates: the cache collapses a word's updates",
        reader.records.len()
    );
    wasp.terminate();
    assert!(wasp.wait_exit(EXIT_TIMEOUT).success(), "wasp-c exits cleanly on SIGTERM");
    produce(&broker, FIRST..TOTAL);
    let mut wasp = start("wasp-d", &manifest);
    finish(&mut reader, &mut wasp, &expected(0..TOTAL));
    wasp.terminate();
    assert!(wasp.wait_exit(EXIT_TIMEOUT).success(), "wasp-d exits cleanly on SIGTERM");
}
