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
        let mut open = |spec: &crate::state::StoreSpec| Store::open(spec.clone(), None, None);
        let mut tasks = Vec::with_capacity(topology.subtopologies.len());
        for sub in &topology.subtopologies {
            let task = Task::with_globals(topology.clone(), sub.id, 0, &lookup, &mut open, metrics, &globals)
                .with_context(|| format!("starting task {}", Task::name(sub.id, 0)))?;
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
pub fn check_records(order: Match, expected: &[Expected], actual: &[Record]) -> Result<(), String> {
    let with_ts = expected.iter().any(|e| e.timestamp.is_some());
    let with_headers = expected.iter().any(|e| e.headers.is_some());
    let mut want: Vec<(Option<Vec<u8>>, String)> = expected
        .iter()
        .map(|e| {
            let ts = with_ts.then_some(e.timestamp);
            let h = with_headers.then(|| headers_text(&e.headers.clone().unwrap_or_default()));
            (e.key.clone(), line(e.key.as_deref(), e.value.as_deref(), ts, h))
        })
        .collect();
    let show = |r: &Record| {
        let ts = with_ts.then_some(Some(r.timestamp));
        let h = with_headers.then(|| {
            let map: BTreeMap<String, String> = r
                .headers
                .iter()
                .filter(|h| !h.name.starts_with("wasp."))
                .map(|h| (h.name.to_string(), text(h.value.as_deref())))
                .collect();
            headers_text(&map)
        });
        line(r.key.as_deref(), r.value.as_deref(), ts, h)
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

/// Whether a store's entries match `expected` (`(key, value)`, in key order); if not, a diff.
pub fn check_entries(expected: &[(Vec<u8>, Vec<u8>)], actual: &[QueryRow]) -> Result<(), String> {
    let mut want: Vec<String> = expected.iter().map(|(k, v)| line(Some(k), Some(v), None, None)).collect();
    want.sort();
    let got: Vec<String> = actual.iter().map(|r| line(Some(&r.key), Some(&r.value), None, None)).collect();
    if want == got {
        return Ok(());
    }
    Err(diff(&want, &got))
}

/// A unified diff, expected against actual, a line each.
fn diff(want: &[String], got: &[String]) -> String {
    let (a, b) = (want.join("\n") + "\n", got.join("\n") + "\n");
    similar::TextDiff::from_lines(&a, &b).unified_diff().context_radius(3).header("expected", "actual").to_string()
}
