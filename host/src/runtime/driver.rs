//! The broker-free test driver behind `wasp test` (Kafka Streams' `TopologyTestDriver`): the
//! real topology, plugins and operators, in one thread, one partition per topic, stores in
//! memory. Records are piped into a topic; each sub-topology that reads it runs them, and
//! what it writes to a topic that another sub-topology reads (a repartition topic, another
//! pipeline's input, a global table's topic) is run at once, in the order written; everything
//! written is kept per topic for the test to read. After each pipe the tasks commit: record
//! caches are flushed and the stores' writes applied, as a stream thread commits. The wall
//! clock is the driver's: it moves only when told to, and fires the wall-clock timers due.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::task::{Task, TaskOutput};
use crate::operators::{SharedStore, locked};
use crate::record::Record;
use crate::state::{QueryRow, Store, StoreQuery};
use crate::topology::Topology;
use crate::wasm::{MetricsRegistry, PluginDirectory};

/// The most entries a store expectation reads.
const MAX_STORE_ROWS: usize = 1_000_000;

/// A topology run by hand.
pub struct Driver {
    topology: Arc<Topology>,
    /// One task per sub-topology (partition 0).
    tasks: Vec<Task>,
    globals: BTreeMap<String, SharedStore>,
    /// The next offset of each topic.
    offsets: BTreeMap<String, i64>,
    /// Everything written, per topic, in order.
    outputs: BTreeMap<String, Vec<Record>>,
    wall_clock_ms: i64,
    /// A global table's row as written: reused.
    row: Vec<u8>,
}

impl Driver {
    /// Opens every task of `topology` with empty in-memory stores, the wall clock at
    /// `wall_clock_ms`.
    pub fn new(
        topology: Arc<Topology>,
        plugins: &PluginDirectory,
        metrics: &MetricsRegistry,
        wall_clock_ms: i64,
    ) -> anyhow::Result<Self> {
        let mut globals = BTreeMap::new();
        for (name, g) in &topology.globals {
            let spec = topology.stores.get(&g.store).with_context(|| format!("global table `{name}` has no store"))?;
            let store: SharedStore = Arc::new(Mutex::new(Store::open(spec.clone(), None, None)?));
            globals.insert(g.store.clone(), store);
        }
        let lookup = |n: &str| plugins.get(n);
        // Fixtures give converted topics' values as JSON, checked against their schemas.
        let codecs = Arc::new(super::codecs(&topology, crate::io::codec::Mode::Json)?);
        let mut open = |spec: &crate::state::StoreSpec| {
            let mut store = Store::open(spec.clone(), None, None)?;
            store.set_format(super::store_format(&codecs, &spec.name));
            Ok(store)
        };
        let mut tasks = Vec::with_capacity(topology.subtopologies.len());
        for sub in &topology.subtopologies {
            let mut task = Task::with_globals(topology.clone(), sub.id, 0, &lookup, &mut open, metrics, &globals)
                .with_context(|| format!("starting task {}", Task::name(sub.id, 0)))?;
            task.set_codecs(codecs.clone());
            tasks.push(task);
        }
        let mut d = Self {
            topology,
            tasks,
            globals,
            offsets: BTreeMap::new(),
            outputs: BTreeMap::new(),
            wall_clock_ms,
            row: Vec::new(),
        };
        // Wall-clock timers are scheduled from the first tick.
        d.advance_wall_clock(0)?;
        Ok(d)
    }

    /// Whether a sub-topology or a global table reads `topic`.
    pub fn reads(&self, topic: &str) -> bool {
        self.topology.subtopologies.iter().any(|s| s.source_topics.iter().any(|t| t == topic))
            || self.topology.globals.values().any(|g| g.topic == topic)
    }

    /// Pipes `records` into `topic`, runs everything they cause, and commits.
    pub fn pipe(&mut self, topic: &str, records: Vec<Record>) -> anyhow::Result<()> {
        let mut queue = VecDeque::from([(topic.to_owned(), records)]);
        while let Some((topic, mut records)) = queue.pop_front() {
            let next = self.offsets.entry(topic.clone()).or_default();
            for r in &mut records {
                r.origin.offset = *next;
                *next += 1;
            }
            if let Some(g) = self.topology.globals.values().find(|g| g.topic == topic)
                && let Some(store) = self.globals.get(&g.store)
            {
                let mut store = locked(store);
                for r in &records {
                    super::global::apply(&mut store, &topic, 0, r.origin.offset, r, &mut self.row);
                }
            }
            for i in 0..self.tasks.len() {
                if !self.topology.subtopologies[i].source_topics.contains(&topic) {
                    continue;
                }
                let out = self.tasks[i].process(&topic, records.clone())?;
                let out = self.finish(i, out)?;
                self.route(out, &mut queue);
            }
            if queue.is_empty() {
                self.commit(&mut queue)?;
            }
        }
        Ok(())
    }

    /// Runs a task's step that waits to retry until it is through (the driver does not wait).
    fn finish(&mut self, i: usize, mut out: TaskOutput) -> anyhow::Result<TaskOutput> {
        while self.tasks[i].parked_until().is_some() {
            let more = self.tasks[i].resume(Instant::now() + Duration::from_secs(86_400))?;
            out.records.extend(more.records);
        }
        Ok(out)
    }

    /// Keeps what a task wrote, and queues what a sub-topology reads.
    fn route(&mut self, out: TaskOutput, queue: &mut VecDeque<(String, Vec<Record>)>) {
        for (topic, records) in out.records {
            if records.is_empty() {
                continue;
            }
            self.outputs.entry(topic.clone()).or_default().extend(records.iter().cloned());
            if self.reads(&topic) {
                queue.push_back((topic, records));
            }
        }
    }

    /// Flushes every task's record caches (running what that writes), then applies the
    /// stores' writes.
    fn commit(&mut self, queue: &mut VecDeque<(String, Vec<Record>)>) -> anyhow::Result<()> {
        for i in 0..self.tasks.len() {
            let out = self.tasks[i].flush()?;
            let out = self.finish(i, out)?;
            self.route(out, queue);
        }
        for task in &mut self.tasks {
            let mut result = Ok(());
            task.with_stores(&mut |store| {
                store.prepare_commit();
                if result.is_ok() {
                    result = store.commit(None);
                }
            });
            result?;
        }
        Ok(())
    }

    /// Moves the wall clock on by `ms`, firing the wall-clock timers due.
    pub fn advance_wall_clock(&mut self, ms: i64) -> anyhow::Result<()> {
        self.wall_clock_ms += ms;
        let mut queue = VecDeque::new();
        for i in 0..self.tasks.len() {
            let out = self.tasks[i].tick(self.wall_clock_ms)?;
            let out = self.finish(i, out)?;
            self.route(out, &mut queue);
        }
        while let Some((topic, records)) = queue.pop_front() {
            self.pipe(&topic, records)?;
        }
        Ok(())
    }

    /// Everything written to `topic` so far.
    pub fn output(&self, topic: &str) -> &[Record] {
        self.outputs.get(topic).map_or(&[], Vec::as_slice)
    }

    /// Every topic written so far.
    pub fn written(&self) -> impl Iterator<Item = &str> {
        self.outputs.keys().map(String::as_str)
    }

    /// A store's entries in key order (values as queries show them), or `None` when no task
    /// (and no global table) has a queryable store of that name.
    pub fn store(&mut self, name: &str) -> anyhow::Result<Option<Vec<QueryRow>>> {
        let everything = StoreQuery::Range { from: Vec::new(), to: None };
        if let Some(g) = self.globals.get(name) {
            let rows = crate::state::query_rows(&locked(g), &everything, MAX_STORE_ROWS)?;
            return Ok(Some(rows));
        }
        let mut found = None::<Vec<QueryRow>>;
        for task in &mut self.tasks {
            if let Some(rows) = task.query(name, &everything, MAX_STORE_ROWS) {
                found.get_or_insert_with(Vec::new).extend(rows?);
            }
        }
        Ok(found)
    }
}

/// A record a test expects: its key and value (`None`: null); its timestamp and headers only
/// when given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: Option<i64>,
    pub headers: Option<BTreeMap<String, String>>,
    /// The value is JSON, compared as JSON: key order and spacing aside.
    pub json: bool,
}

/// How a topic's records are held against the expected ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    InOrder,
    AnyOrder,
    /// Each key's last record (a tombstone removes the key), as `TopologyTestDriver`'s
    /// `readKeyValuesToMap`.
    LastPerKey,
}

/// Text of a key or value: UTF-8 as it is, else lossy; `null` for none.
fn text(b: Option<&[u8]>) -> String {
    b.map_or_else(|| "null".to_owned(), |b| String::from_utf8_lossy(b).into_owned())
}

/// One record per line: `key → value`, with `@timestamp` and `{headers}` when compared.
fn line(key: Option<&[u8]>, value: Option<&[u8]>, ts: Option<Option<i64>>, headers: Option<String>) -> String {
    let mut l = format!("{} → {}", text(key), text(value));
    if let Some(t) = ts {
        l.push_str(&t.map_or_else(|| " @?".to_owned(), |t| format!(" @{t}")));
    }
    if let Some(h) = headers {
        l.push(' ');
        l.push_str(&h);
    }
    l
}

fn headers_text(h: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = h.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", parts.join(", "))
}

/// Whether `actual` (a topic's records) matches `expected`; if not, a unified diff of the
/// two, a record a line.
///
/// When some expected value is JSON, every value that parses as JSON is shown (and compared)
/// in one canonical form. Headers are compared when some expected record gives them: the
/// record's own, and wasp's (`wasp.error.code`, …) that an expected record names.
pub fn check_records(order: Match, expected: &[Expected], actual: &[Record]) -> Result<(), String> {
    let with_ts = expected.iter().any(|e| e.timestamp.is_some());
    let with_headers = expected.iter().any(|e| e.headers.is_some());
    let json = expected.iter().any(|e| e.json);
    let named: std::collections::BTreeSet<&str> =
        expected.iter().flat_map(|e| e.headers.iter().flat_map(|h| h.keys().map(String::as_str))).collect();
    let value = |v: Option<&[u8]>| match v {
        Some(v) if json => canonical_json(v).map_or_else(|| v.to_vec(), String::into_bytes),
        v => v.map(<[u8]>::to_vec).unwrap_or_default(),
    };
    let mut want: Vec<(Option<Vec<u8>>, String)> = expected
        .iter()
        .map(|e| {
            let ts = with_ts.then_some(e.timestamp);
            let h = with_headers.then(|| headers_text(&e.headers.clone().unwrap_or_default()));
            let v = e.value.as_deref().map(|v| value(Some(v)));
            (e.key.clone(), line(e.key.as_deref(), v.as_deref(), ts, h))
        })
        .collect();
    let show = |r: &Record| {
        let ts = with_ts.then_some(Some(r.timestamp));
        let h = with_headers.then(|| {
            let map: BTreeMap<String, String> = r
                .headers
                .iter()
                .filter(|h| !h.name.starts_with("wasp.") || named.contains(&*h.name))
                .map(|h| (h.name.to_string(), text(h.value.as_deref())))
                .collect();
            headers_text(&map)
        });
        let v = r.value.as_deref().map(|v| value(Some(v)));
        line(r.key.as_deref(), v.as_deref(), ts, h)
    };
    let mut got: Vec<(Option<Vec<u8>>, String)> = match order {
        Match::LastPerKey => {
            let mut last: BTreeMap<Option<Vec<u8>>, &Record> = BTreeMap::new();
            for r in actual {
                let k = r.key.as_deref().map(<[u8]>::to_vec);
                if r.value.is_none() {
                    last.remove(&k);
                } else {
                    last.insert(k, r);
                }
            }
            last.into_iter().map(|(k, r)| (k, show(r))).collect()
        }
        _ => actual.iter().map(|r| (r.key.as_deref().map(<[u8]>::to_vec), show(r))).collect(),
    };
    match order {
        Match::InOrder => {}
        Match::AnyOrder => {
            want.sort_by(|a, b| a.1.cmp(&b.1));
            got.sort_by(|a, b| a.1.cmp(&b.1));
        }
        Match::LastPerKey => want.sort_by(|a, b| a.0.cmp(&b.0)),
    }
    let want: Vec<String> = want.into_iter().map(|(_, l)| l).collect();
    let got: Vec<String> = got.into_iter().map(|(_, l)| l).collect();
    if want == got {
        return Ok(());
    }
    Err(diff(&want, &got))
}

/// `bytes` as JSON text in one form (object keys sorted, no spaces), if they are JSON.
fn canonical_json(bytes: &[u8]) -> Option<String> {
    fn sorted(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let m: BTreeMap<String, serde_json::Value> = m.into_iter().map(|(k, v)| (k, sorted(v))).collect();
                serde_json::Value::Object(m.into_iter().collect())
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.into_iter().map(sorted).collect()),
            v => v,
        }
    }
    serde_json::from_slice(bytes).ok().map(|v| sorted(v).to_string())
}

/// Whether a store's entries match `expected` (`(key, value)`, in key order); if not, a diff.
/// With `json`, values that parse as JSON are compared as JSON.
pub fn check_entries(expected: &[(Vec<u8>, Vec<u8>)], json: bool, actual: &[QueryRow]) -> Result<(), String> {
    let value =
        |v: &[u8]| if json { canonical_json(v).map_or_else(|| v.to_vec(), String::into_bytes) } else { v.to_vec() };
    let mut want: Vec<String> = expected.iter().map(|(k, v)| line(Some(k), Some(&value(v)), None, None)).collect();
    want.sort();
    let got: Vec<String> = actual.iter().map(|r| line(Some(&r.key), Some(&value(&r.value)), None, None)).collect();
    if want == got {
        return Ok(());
    }
    Err(diff(&want, &got))
}

/// A unified diff, expected against actual, a line each.
fn diff(want: &[String], got: &[String]) -> String {
    let lines = |l: &[String]| if l.is_empty() { String::new() } else { l.join("\n") + "\n" };
    let (a, b) = (lines(want), lines(got));
    similar::TextDiff::from_lines(&a, &b).unified_diff().context_radius(3).header("expected", "actual").to_string()
}

/// A plugin's log line, as a test saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub plugin: String,
    /// `trace` … `error`.
    pub level: &'static str,
    pub message: String,
}

/// Keeps the plugins' log lines (the `wasp::plugin` events) while it is the thread's
/// subscriber: `wasp test` holds them against a case's `logs`. Other events go to stderr at
/// `WASP_LOG` (default `warn`), as outside a case.
#[derive(Clone, Default)]
pub struct LogCapture {
    lines: Arc<Mutex<Vec<LogLine>>>,
}

/// The most lines a capture keeps: past it, lines are counted out, not kept.
const MAX_CAPTURED_LINES: usize = 100_000;

impl LogCapture {
    /// Runs `f` with this capture as the thread's subscriber.
    pub fn during<T>(&self, f: impl FnOnce() -> T) -> T {
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt;
        let filter = tracing_subscriber::EnvFilter::try_from_env("WASP_LOG").unwrap_or_else(|_| "warn".into());
        let print = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter);
        let subscriber = tracing_subscriber::registry().with(self.clone()).with(print);
        tracing::subscriber::with_default(subscriber, f)
    }

    /// The lines kept so far.
    pub fn lines(&self) -> Vec<LogLine> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogCapture {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != "wasp::plugin" {
            return;
        }
        struct Fields(String, String);
        impl tracing::field::Visit for Fields {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "plugin" {
                    self.0 = value.to_owned();
                }
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                match field.name() {
                    "message" => self.1 = format!("{value:?}"),
                    "plugin" => self.0 = format!("{value:?}"),
                    _ => {}
                }
            }
        }
        let mut fields = Fields(String::new(), String::new());
        event.record(&mut fields);
        let level = match *event.metadata().level() {
            tracing::Level::TRACE => "trace",
            tracing::Level::DEBUG => "debug",
            tracing::Level::INFO => "info",
            tracing::Level::WARN => "warn",
            tracing::Level::ERROR => "error",
        };
        if let Ok(mut lines) = self.lines.lock()
            && lines.len() < MAX_CAPTURED_LINES
        {
            lines.push(LogLine { plugin: fields.0, level, message: fields.1 });
        }
    }
}

/// The samples of a Prometheus text exposition: `(type, name, labels, value)`, the type from
/// the family's `# TYPE` line.
pub fn metric_samples(text: &str) -> Vec<(String, String, BTreeMap<String, String>, f64)> {
    let mut types: BTreeMap<&str, &str> = BTreeMap::new();
    let mut samples = Vec::new();
    for l in text.lines() {
        if let Some(t) = l.strip_prefix("# TYPE ") {
            let mut it = t.split_whitespace();
            if let (Some(n), Some(k)) = (it.next(), it.next()) {
                types.insert(n, k);
            }
            continue;
        }
        if l.starts_with('#') || l.trim().is_empty() {
            continue;
        }
        let (head, value) = match l.rsplit_once(' ') {
            Some((h, v)) => (h, v),
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else { continue };
        let (name, labels) = match head.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (head, ""),
        };
        let mut map = BTreeMap::new();
        let mut rest = labels;
        while let Some((k, after)) = rest.split_once("=\"") {
            // A label value ends at the first `"` not escaped.
            let mut end = None;
            let mut escaped = false;
            for (i, c) in after.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => {
                        end = Some(i);
                        break;
                    }
                    _ => escaped = false,
                }
            }
            let Some(end) = end else { break };
            let v = after[..end].replace("\\\"", "\"").replace("\\\\", "\\");
            map.insert(k.trim_start_matches(',').to_owned(), v);
            rest = &after[end + 1..];
        }
        let family =
            types.keys().filter(|f| name.starts_with(**f)).max_by_key(|f| f.len()).map_or("untyped", |f| types[*f]);
        samples.push((family.to_owned(), name.to_owned(), map, value));
    }
    samples
}
