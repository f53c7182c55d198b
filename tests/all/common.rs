//! Helpers shared by the integration tests: paths, a scratch manifest, and local runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use wasp_host::app::{self, LocalOptions};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ has a parent").to_path_buf()
}

/// A built plugin component; `make plugins` builds them before the tests run.
pub fn plugin(name: &str) -> String {
    let p = repo().join("plugins/build").join(format!("{name}.wasm"));
    assert!(p.exists(), "{} is missing: run `make plugins` (or `make test`, which builds them)", p.display());
    p.display().to_string()
}

/// The compiled-component cache the tests share, so each plugin compiles once.
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("wasp-cache")
}

/// A manifest and its input files in a temporary directory.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write scratch file");
        p
    }
}

/// One output record, as the local sink writes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Out {
    pub key: serde_json::Value,
    pub value: serde_json::Value,
    #[serde(default)]
    pub timestamp: Option<i64>,
    #[serde(default)]
    pub headers: BTreeMap<String, serde_json::Value>,
}

impl Out {
    /// `(key, value)` as strings (`null` for absent), for compact assertions.
    pub fn kv(&self) -> (String, String) {
        let s = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        (s(&self.key), s(&self.value))
    }
}

/// What a local run left behind: the prepared manifest (its runtime holds the metrics), the
/// run's statistics, and what each requested topic received.
pub struct LocalRun {
    pub prepared: app::Prepared,
    pub stats: wasp_host::runtime::RunStats,
    pub out: BTreeMap<String, Vec<Out>>,
}

/// Runs `manifest` (text) in local mode and returns what each of `topics` received.
pub fn run_local(scratch: &Scratch, manifest: &str, topics: &[&str]) -> anyhow::Result<BTreeMap<String, Vec<Out>>> {
    run_local_full(scratch, manifest, topics).map(|r| r.out)
}

/// [`run_local`], keeping the statistics and the prepared manifest.
pub fn run_local_full(scratch: &Scratch, manifest: &str, topics: &[&str]) -> anyhow::Result<LocalRun> {
    let path = scratch.write("pipeline.toml", manifest);
    let prepared = app::prepare(&path, Some(cache_dir()))?;
    let outputs: BTreeMap<String, PathBuf> =
        topics.iter().map(|t| (t.to_string(), scratch.path(&format!("out-{t}.jsonl")))).collect();
    for file in outputs.values() {
        // A run that writes nothing to a topic leaves no file: not the last run's.
        let _ = std::fs::remove_file(file);
    }
    let options =
        LocalOptions { outputs: outputs.clone(), state_dir: Some(scratch.path("state")), ..Default::default() };
    let stats = prepared.run(&options, &AtomicBool::new(false))?;
    let mut out = BTreeMap::new();
    for (topic, file) in outputs {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let records = text.lines().map(|l| serde_json::from_str(l).expect("output is JSON lines")).collect();
        out.insert(topic, records);
    }
    Ok(LocalRun { prepared, stats, out })
}

/// Key/value pairs of a topic's output.
pub fn kvs(out: &BTreeMap<String, Vec<Out>>, topic: &str) -> Vec<(String, String)> {
    out.get(topic).map(|v| v.iter().map(Out::kv).collect()).unwrap_or_default()
}

/// What a task emitted, every topic together, as (key, value) text.
pub fn task_kvs(out: wasp_host::runtime::TaskOutput) -> Vec<(String, String)> {
    let text = |b: Option<bytes::Bytes>| String::from_utf8_lossy(b.as_deref().unwrap_or_default()).into_owned();
    out.records.into_iter().flat_map(|(_, rs)| rs).map(|r| (text(r.key), text(r.value))).collect()
}

/// Writes `in.jsonl` with `(key, value)` records (key `None` is a null key).
pub fn input(scratch: &Scratch, records: &[(Option<&str>, &str)]) {
    let lines: Vec<String> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| serde_json::json!({"key": k, "value": v, "timestamp": 1000 + i as i64}).to_string())
        .collect();
    scratch.write("in.jsonl", &(lines.join("\n") + "\n"));
}

/// The header of a test manifest: application `t`, stream `in` from `in.jsonl`, and the
/// test-kit and trap plugins.
pub fn header(extra: &str) -> String {
    format!(
        r#"version = 1
[application]
id = "t"
batch_size = 3
[streams.in]
file = "in.jsonl"
file_format = "jsonl"
[plugins.kit]
path = "{kit}"
[plugins.trap]
path = "{trap}"
{extra}
"#,
        kit = plugin("test-kit"),
        trap = plugin("trap"),
    )
}

/// Writes `in.jsonl` with `(key, value, timestamp)` records.
pub fn input_at(scratch: &Scratch, records: &[(&str, &str, i64)]) {
    let lines: Vec<String> =
        records.iter().map(|(k, v, t)| serde_json::json!({"key": k, "value": v, "timestamp": t}).to_string()).collect();
    scratch.write("in.jsonl", &(lines.join("\n") + "\n"));
}

/// Waits until `f` holds, failing after `timeout` with `what`.
pub fn wait_for(what: &str, timeout: std::time::Duration, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
