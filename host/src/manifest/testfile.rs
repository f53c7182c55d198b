//! The `wasp test` file: a manifest under test, and test cases that pipe records into its
//! topics, move the wall clock, and expect records on its output topics and entries in its
//! stores (Kafka Streams' `TopologyTestDriver`, written down). Pure parsing, like the rest of
//! this module; [`crate::runtime::driver`] runs the cases.
//!
//! ```toml
//! manifest = "pipeline.toml"
//!
//! [[test]]
//! name = "counts each word"
//! steps = [
//!   { topic = "lines", key = "l1", value = "a b a", timestamp = 1 },
//!   { advance_wall_clock = "10s" },
//! ]
//! expect = [
//!   { topic = "counts", order = "last_per_key", records = [{ key = "a", value = "2" }, { key = "b", value = "1" }] },
//! ]
//! stores = [{ store = "counts", entries = [{ key = "a", value = "2" }, { key = "b", value = "1" }] }]
//! metrics = [{ name = "wasp_plugin_words_total", labels = { plugin = "split" }, value = 3 }]
//! logs = [{ plugin = "split", level = "info", contains = "split 1 line" }]
//! ```
//!
//! An expected value written as a TOML table or array is JSON, compared as JSON (key order
//! and spacing aside); a string is compared byte for byte.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{Duration, ManifestError, SourceText, parse_duration};

/// A parsed test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The manifest the cases run, relative to the test file.
    pub manifest: Spanned<String>,
    #[serde(rename = "test", default)]
    pub tests: Vec<TestCase>,
}

/// One case: a fresh run of the manifest (empty stores, wall clock at `wall_clock_start`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: Spanned<String>,
    /// Records piped at once (default 1: one record at a time, each committed, as Kafka
    /// Streams' `TopologyTestDriver` does). `wasp test --batch-size` overrides it.
    pub batch_size: Option<Spanned<usize>>,
    /// The wall clock at the start, in milliseconds since the epoch (default 0).
    #[serde(default)]
    pub wall_clock_start: i64,
    /// Records to pipe and wall-clock moves, in order.
    #[serde(default)]
    pub steps: Vec<Spanned<StepDef>>,
    /// Records expected on output topics.
    #[serde(default)]
    pub expect: Vec<ExpectDef>,
    /// Entries expected in stores.
    #[serde(default)]
    pub stores: Vec<StoreExpectDef>,
    /// Metric samples expected after the case.
    #[serde(default)]
    pub metrics: Vec<MetricExpectDef>,
    /// Log lines the plugins are expected to have written during the case.
    #[serde(default)]
    pub logs: Vec<LogExpectDef>,
}

/// A metric sample, as the admin endpoint's `/metrics` names it (e.g.
/// `wasp_plugin_kit_records_total` for a plugin's counter `kit_records`). `labels` need only
/// be a subset of the sample's; the samples that match are summed. For a counter or a
/// histogram's `_count` and `_sum`, `value` is how much it went up during the case; for a
/// gauge, its value at the end.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricExpectDef {
    pub name: Spanned<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A log line: some line of the case's plugin logs contains `contains`, at `level` (any when
/// absent), from `plugin` (any when absent).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogExpectDef {
    pub contains: String,
    pub level: Option<Spanned<String>>,
    pub plugin: Option<String>,
}

/// A step: a record for `topic`, or `advance_wall_clock`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDef {
    pub topic: Option<Spanned<String>>,
    /// Text as it is; any other TOML value as JSON. Absent: a null key.
    pub key: Option<toml::Value>,
    /// Absent: a null value (a tombstone).
    pub value: Option<toml::Value>,
    /// Milliseconds; absent: the previous record's (0 for the first).
    pub timestamp: Option<i64>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Moves the wall clock on: wall-clock timers due by then fire.
    pub advance_wall_clock: Option<Spanned<Duration>>,
}

/// How actual records are held against the expected ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// The same records in the same order (default).
    #[default]
    InOrder,
    /// The same records, in any order.
    AnyOrder,
    /// Each key's last record is the one expected (the table the topic describes).
    LastPerKey,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectDef {
    pub topic: Spanned<String>,
    #[serde(default)]
    pub order: Order,
    pub records: Vec<ExpectedRecordDef>,
}

/// An expected record: its key and value (absent: null); its timestamp and headers are
/// compared only when given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedRecordDef {
    pub key: Option<toml::Value>,
    pub value: Option<toml::Value>,
    pub timestamp: Option<i64>,
    pub headers: Option<BTreeMap<String, String>>,
}

/// A store's whole contents, in key order.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreExpectDef {
    pub store: Spanned<String>,
    pub entries: Vec<EntryDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryDef {
    pub key: toml::Value,
    pub value: toml::Value,
}

/// A test file read and parsed, with where it came from.
#[derive(Debug)]
pub struct LoadedTests {
    pub file: TestFile,
    pub source: SourceText,
}

impl LoadedTests {
    /// The manifest the cases run.
    pub fn manifest_path(&self) -> PathBuf {
        let p = Path::new(self.file.manifest.get_ref());
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.source.path.parent().map(Path::to_path_buf).unwrap_or_default().join(p)
        }
    }

    /// An error at `span` of the test file.
    pub fn error(
        &self,
        span: std::ops::Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ManifestError {
        self.source.error(span, key, message)
    }
}

/// Bytes of a key or value written in a test file: text as it is, anything else as JSON.
pub fn value_bytes(v: &toml::Value) -> Vec<u8> {
    match v {
        toml::Value::String(s) => s.clone().into_bytes(),
        other => serde_json::to_vec(other).unwrap_or_default(),
    }
}

/// The levels a log expectation names, as the WIT `log.level`.
pub const LOG_LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error"];

/// Whether an expected value is JSON (written as a TOML table or array): then it is compared
/// as JSON.
pub fn is_json(v: &toml::Value) -> bool {
    matches!(v, toml::Value::Table(_) | toml::Value::Array(_))
}

/// Milliseconds of a duration written in a test file.
pub fn duration_ms(d: &Duration) -> Result<i64, String> {
    match d {
        Duration::Millis(ms) if *ms >= 0 => Ok(*ms),
        Duration::Millis(ms) => Err(format!("{ms} is negative")),
        Duration::Text(t) => parse_duration(t),
    }
}

/// Reads and parses the test file at `path`. Each step must be a record (with `topic`) or a
/// wall-clock move, not both.
pub fn load_tests(path: &Path) -> Result<LoadedTests, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|e| ManifestError::io(path, &e))?;
    let source = SourceText::new(path.to_path_buf(), text);
    let file: TestFile = toml::from_str(&source.text).map_err(|e| source.from_toml(&e))?;
    for (i, case) in file.tests.iter().enumerate() {
        for (j, log) in case.logs.iter().enumerate() {
            if let Some(level) = &log.level
                && !LOG_LEVELS.contains(&level.get_ref().as_str())
            {
                let message = format!("`{}` is not a level: {}", level.get_ref(), LOG_LEVELS.join(", "));
                return Err(source.error(level.span(), format!("test[{i}].logs[{j}].level"), message));
            }
        }
        for (j, step) in case.steps.iter().enumerate() {
            let s = step.get_ref();
            let key = format!("test[{i}].steps[{j}]");
            match (&s.topic, &s.advance_wall_clock) {
                (Some(_), Some(_)) => {
                    return Err(source.error(
                        step.span(),
                        key,
                        "a step is a record (`topic`) or `advance_wall_clock`, not both",
                    ));
                }
                (None, None) => {
                    return Err(source.error(
                        step.span(),
                        key,
                        "a step needs `topic` (a record to pipe) or `advance_wall_clock`",
                    ));
                }
                (None, Some(d)) => {
                    if let Err(e) = duration_ms(d.get_ref()) {
                        return Err(source.error(d.span(), format!("{key}.advance_wall_clock"), e));
                    }
                }
                (Some(_), None) => {}
            }
        }
        if let Some(b) = case.batch_size.as_ref().filter(|b| *b.get_ref() == 0) {
            return Err(source.error(b.span(), format!("test[{i}].batch_size"), "a batch has at least one record"));
        }
    }
    Ok(LoadedTests { file, source })
}
