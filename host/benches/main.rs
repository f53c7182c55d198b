//! `make bench`: what crossing the Wasm boundary costs, printed as figures, never asserted.
//!
//! One data set (1M records of about 100 B of JSON) goes through the same work three ways,
//! in batches of 1024:
//! - natively, in a Rust closure (the baseline every ratio is taken against);
//! - through the wasp batch encoding (`wit/plugin.wit`): two plugins built with the guest SDK,
//!   called through the host's operators, so record encoding and decoding are counted;
//! - through a naive `list<rec>` encoding (`wit/bench/naive.wit`), where every key and value
//!   is its own list.
//!
//! Identity functions on raw bytes then show the cost of the crossing alone. Each batch is
//! handed over as the Kafka consumer makes it (fresh copies, in cache), and only the work on it
//! is timed. Rounds are interleaved and the median is printed, with the best round and the
//! spread, since the machine may be shared. A first pass warms up and checks that every path
//! computes the same output. `WASP_BENCH_RECORDS` and `WASP_BENCH_ROUNDS` shrink a run, and
//! `WASP_BENCH_SKIP=sandbox,formats,joins,languages,state` leaves the later parts out.

use std::hash::{DefaultHasher, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bytes::Bytes;
use wasmtime::Store;
use wasmtime::component::{Component, Linker};
use wasp_host::manifest::{Grants, Limits};
use wasp_host::operators::{Operator, construct_stateless};
use wasp_host::record::{DecodedBatch, EncodedBatch, Record};
use wasp_host::topology::{NodeOp, PluginKind, PluginRef};
use wasp_host::wasm::{LoadedPlugin, MetricsRegistry, PluginInstance, PluginSlot, Runtime};

/// Host bindings for the naive world.
mod naive {
    wasmtime::component::bindgen!({
        world: "wasp:bench/naive@0.1.0",
        path: "../wit/bench",
    });
}

const RECORDS: usize = 1_000_000;
/// Lines for the word-count figures (8 words each).
const LINES: usize = 125_000;
const BATCH: usize = 1024;
const ROUNDS: usize = 5;
/// The size of each JSON value.
const VALUE_BYTES: usize = json_data::VALUE_BYTES;
/// The design's targets (DESIGN.md, "The WIT contract").
const BOUNDARY_TARGET_NS: f64 = 30.0;
const SPEED_TARGET: f64 = 0.5;

// The native baseline: the same types and work as the plugins.
#[path = "../../plugins/bench-work.rs"]
mod work;
use work::{THRESHOLD, keep as native_keep, tag as native_tag};

/// One step of a pipeline: a batch in, a batch out.
type Stage<'a> = Box<dyn FnMut(Vec<Record>) -> Result<Vec<Record>> + 'a>;

fn stage<'a>(f: impl FnMut(Vec<Record>) -> Result<Vec<Record>> + 'a) -> Stage<'a> {
    Box::new(f)
}

/// What a run produced, to check that every path computes the same thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Summary {
    records: usize,
    hash: u64,
}

/// Builds a [`Summary`] from the values and timestamps a run produced, in order.
#[derive(Default)]
struct Digest {
    hasher: DefaultHasher,
    records: usize,
}

impl Digest {
    fn add(&mut self, value: Option<&[u8]>, timestamp: i64) {
        self.records += 1;
        match value {
            Some(v) => {
                self.hasher.write_usize(v.len());
                self.hasher.write(v);
            }
            None => self.hasher.write_u8(0xff),
        }
        self.hasher.write_i64(timestamp);
    }

    fn add_records<'r>(&mut self, records: impl IntoIterator<Item = &'r Record>) {
        for r in records {
            self.add(r.value.as_deref(), r.timestamp);
        }
    }

    fn summary(&self) -> Summary {
        Summary { records: self.records, hash: self.hasher.finish() }
    }
}

/// A deep copy of `batch`, as the Kafka consumer hands records over (`Record::new`): freshly
/// allocated, unshared, and in cache. Made outside the timed part.
fn fresh(batch: &[Record]) -> Vec<Record> {
    batch.iter().map(|r| Record::new(r.key.as_deref(), r.value.as_deref(), r.timestamp)).collect()
}

/// How long a pass over the data set took, and, when asked, what it produced.
type Measured = Result<(Duration, Option<Summary>)>;

/// A measured case. `run(check)` processes the whole data set once and returns the time it
/// took; with `check` it also returns what it produced (computed outside the timed part).
struct Case<'a> {
    label: &'static str,
    run: Box<dyn FnMut(bool) -> Measured + 'a>,
    /// Nanoseconds per input record, one per round.
    samples: Vec<f64>,
    summary: Option<Summary>,
}

impl<'a> Case<'a> {
    fn new(label: &'static str, run: impl FnMut(bool) -> Measured + 'a) -> Self {
        Self { label, run: Box::new(run), samples: Vec::new(), summary: None }
    }

    /// Runs `stages` in a chain over every batch of `input`. Only the stages are timed.
    fn pipeline(label: &'static str, input: &'a [Vec<Record>], mut stages: Vec<Stage<'a>>) -> Self {
        Self::new(label, move |check| {
            let mut digest = check.then(Digest::default);
            let mut elapsed = Duration::ZERO;
            for batch in input {
                let mut b = fresh(batch);
                let started = Instant::now();
                for stage in &mut stages {
                    b = stage(b)?;
                }
                elapsed += started.elapsed();
                if let Some(d) = &mut digest {
                    d.add_records(&b);
                }
            }
            Ok((elapsed, digest.as_ref().map(Digest::summary)))
        })
    }

    fn median(&self) -> f64 {
        median(&self.samples)
    }

    fn best(&self) -> f64 {
        self.samples.iter().copied().fold(f64::INFINITY, f64::min)
    }

    /// (max - min) / median, in percent.
    fn spread(&self) -> f64 {
        let min = self.samples.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        100.0 * (max - min) / self.median()
    }
}

/// `n` records keyed by user, with JSON values padded to `VALUE_BYTES` ([`json_data::dataset`]).
fn dataset(n: usize) -> Vec<Record> {
    json_data::dataset(n)
        .into_iter()
        .map(|r| Record {
            key: Some(Bytes::from(r.key.into_bytes())),
            value: Some(Bytes::from(r.value.into_bytes())),
            timestamp: r.timestamp,
            ..Record::default()
        })
        .collect()
}

fn plugin_path(name: &str) -> Result<PathBuf> {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/build")).join(format!("{name}.wasm"));
    if !path.exists() {
        bail!("{} is missing: run `make plugins` first (or `make bench`, which builds them)", path.display());
    }
    Ok(path)
}

/// A wasp operator as a pipeline stage. Per-record failures stop the benchmark: the data
/// set is valid, so a failure means a broken plugin.
fn operator_stage<'a>(mut op: Box<dyn Operator>) -> Stage<'a> {
    Box::new(move |batch| {
        let emitted = op.process(batch);
        if let Some(f) = emitted.failures.first() {
            bail!("{} failed a record: {}: {}", f.plugin, f.code, f.message);
        }
        Ok(emitted.all)
    })
}

fn plugin_ref(plugin: &str, kind: PluginKind) -> PluginRef {
    PluginRef { plugin: plugin.to_owned(), function: String::new(), kind }
}

/// One instance of the naive plugin, called through `bindgen!` bindings.
struct Naive {
    store: Store<()>,
    bindings: naive::Naive,
}

impl Naive {
    fn new(engine: &wasmtime::Engine) -> Result<Self> {
        let path = plugin_path("bench-naive")?;
        let component =
            Component::from_file(engine, &path).map_err(|e| anyhow::anyhow!("compiling {}: {e:#}", path.display()))?;
        let mut store = Store::new(engine, ());
        // The runtime's engine counts epochs; this store has no deadline worth the name.
        store.set_epoch_deadline(1 << 40);
        let bindings = naive::Naive::instantiate(&mut store, &component, &Linker::new(engine))?;
        Ok(Self { store, bindings })
    }

    /// The host's side of the naive encoding: a `rec` per record, each field its own list.
    fn recs(batch: &[Record]) -> Vec<naive::Rec> {
        batch
            .iter()
            .map(|r| naive::Rec {
                key: r.key.as_ref().map(|k| k.to_vec()),
                value: r.value.as_ref().map(|v| v.to_vec()),
                timestamp: r.timestamp,
            })
            .collect()
    }

    fn filter(&mut self, batch: Vec<Record>, identity: bool) -> Result<Vec<Record>> {
        let recs = Self::recs(&batch);
        let keep = if identity {
            self.bindings.call_filter_identity(&mut self.store, &recs)?
        } else {
            self.bindings.call_filter(&mut self.store, &recs)?
        };
        if keep.len() != batch.len() {
            bail!("the naive filter returned {} verdicts for {} records", keep.len(), batch.len());
        }
        Ok(batch.into_iter().zip(keep).filter_map(|(r, k)| k.then_some(r)).collect())
    }

    fn map_values(&mut self, batch: Vec<Record>, identity: bool) -> Result<Vec<Record>> {
        let recs = Self::recs(&batch);
        let out = if identity {
            self.bindings.call_map_values_identity(&mut self.store, &recs)?
        } else {
            self.bindings.call_map_values(&mut self.store, &recs)?
        };
        if out.len() != batch.len() {
            bail!("the naive mapper returned {} records for {}", out.len(), batch.len());
        }
        Ok(batch
            .into_iter()
            .zip(out)
            .map(|(mut r, o)| {
                r.value = o.value.map(Bytes::from);
                r.timestamp = o.timestamp;
                r
            })
            .collect())
    }
}

#[path = "util.rs"]
mod util;
use util::{env_usize, machine, thousands};

/// The records, shared with `wasp-peers` and the fluvio bench.
#[path = "peers/json_data.rs"]
mod json_data;

#[path = "footprint.rs"]
mod bench_footprint;
#[path = "formats.rs"]
mod bench_formats;
#[path = "joins.rs"]
mod bench_joins;
#[path = "languages.rs"]
mod bench_languages;
#[path = "sandbox.rs"]
mod bench_sandbox;
#[path = "state.rs"]
mod bench_state;

/// The allocator the `wasp` binary uses, so the figures are what users get.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let records = env_usize("WASP_BENCH_RECORDS", RECORDS)?;
    let rounds = env_usize("WASP_BENCH_ROUNDS", ROUNDS)?.max(1);
    println!(
        "wasp-bench: {} records of {VALUE_BYTES} B JSON, batch {BATCH}, median of {rounds} interleaved rounds",
        thousands(records)
    );
    println!("machine: {}", machine());

    let runtime = Runtime::new(None, MetricsRegistry::default())?;
    let load = |name: &str, kinds: &[PluginKind]| -> Result<Arc<LoadedPlugin>> {
        let plugin = runtime.load(
            name,
            &plugin_path(name)?,
            &toml::Table::new(),
            &Grants::default(),
            &Limits::default(),
            kinds,
        )?;
        Ok(Arc::new(plugin))
    };
    let plugins = [
        load("bench-filter", &[PluginKind::Filter])?,
        load("bench-map", &[PluginKind::ValueMapper])?,
        load("bench-identity", &[PluginKind::Filter, PluginKind::ValueMapper])?,
    ];
    let slots: Vec<Arc<PluginSlot>> = plugins.iter().map(|p| PluginSlot::fixed(p.clone())).collect();
    let lookup = |name: &str| slots.iter().find(|s| s.name() == name).cloned();
    let op = |node: NodeOp| -> Result<Stage<'_>> { Ok(operator_stage(construct_stateless(&node, &lookup)?)) };
    let filter_node = |plugin: &str| NodeOp::Operator {
        op: "filter",
        plugin: Some(plugin_ref(plugin, PluginKind::Filter)),
        note: None,
    };
    let map_node = |plugin: &str| NodeOp::Operator {
        op: "map_values",
        plugin: Some(plugin_ref(plugin, PluginKind::ValueMapper)),
        note: None,
    };
    let naive = std::cell::RefCell::new(Naive::new(runtime.engine())?);

    let data = dataset(records);
    let input: Vec<Vec<Record>> = data.chunks(BATCH).map(<[Record]>::to_vec).collect();
    drop(data);
    let mut all = Digest::default();
    all.add_records(input.iter().flatten());
    let input_summary = all.summary();
    let input = &input[..];

    let mut work = vec![
        Case::pipeline(
            "native Rust closure (serde_json)",
            input,
            vec![
                stage(|b: Vec<Record>| Ok(b.into_iter().filter(|r| native_keep(r.value.as_deref())).collect())),
                stage(|b: Vec<Record>| {
                    Ok(b.into_iter()
                        .map(|mut r| {
                            r.value = r.value.as_deref().and_then(native_tag).map(Bytes::from);
                            r
                        })
                        .collect())
                }),
            ],
        ),
        Case::pipeline(
            "wasp batch: 2 SDK plugins, operators",
            input,
            vec![op(filter_node("bench-filter"))?, op(map_node("bench-map"))?],
        ),
        Case::pipeline(
            "naive list<rec>: wit-bindgen guest",
            input,
            vec![stage(|b| naive.borrow_mut().filter(b, false)), stage(|b| naive.borrow_mut().map_values(b, false))],
        ),
    ];

    let mut raw_filter = LoadedPlugin::instantiate(&plugins[2])?;
    let mut raw_map = LoadedPlugin::instantiate(&plugins[2])?;
    let mut boundary = vec![
        Case::pipeline(
            "native closure, filter + map_values",
            input,
            vec![
                stage(|b: Vec<Record>| Ok(b.into_iter().filter(|r| r.value.is_some()).collect())),
                stage(|b: Vec<Record>| {
                    Ok(b.into_iter()
                        .map(|mut r| {
                            r.value = r.value.take();
                            r
                        })
                        .collect())
                }),
            ],
        ),
        Case::new("wasp batch, filter: call only", move |check| batch_filter(&mut raw_filter, input, check)),
        Case::new("wasp batch, map_values: call only", move |check| batch_map(&mut raw_map, input, check)),
        Case::pipeline("wasp batch, filter: operator", input, vec![op(filter_node("bench-identity"))?]),
        Case::pipeline("wasp batch, map_values: operator", input, vec![op(map_node("bench-identity"))?]),
        Case::pipeline(
            "wasp batch, filter + map_values: operators",
            input,
            vec![op(filter_node("bench-identity"))?, op(map_node("bench-identity"))?],
        ),
        Case::new("naive list<rec>, filter: call only", |check| naive_filter(&mut naive.borrow_mut(), input, check)),
        Case::new("naive list<rec>, map_values: call only", |check| naive_map(&mut naive.borrow_mut(), input, check)),
        Case::pipeline(
            "naive list<rec>, filter: host path",
            input,
            vec![stage(|b| naive.borrow_mut().filter(b, true))],
        ),
        Case::pipeline(
            "naive list<rec>, map_values: host path",
            input,
            vec![stage(|b| naive.borrow_mut().map_values(b, true))],
        ),
        Case::pipeline(
            "naive list<rec>, filter + map_values: host path",
            input,
            vec![stage(|b| naive.borrow_mut().filter(b, true)), stage(|b| naive.borrow_mut().map_values(b, true))],
        ),
    ];

    // A first pass warms every path up and checks what each computes; then the timed rounds.
    let started = Instant::now();
    for round in 0..=rounds {
        for case in work.iter_mut().chain(boundary.iter_mut()) {
            let (elapsed, digest) = (case.run)(round == 0)?;
            if round == 0 {
                case.summary = digest;
            } else {
                case.samples.push(elapsed.as_nanos() as f64 / records as f64);
            }
        }
    }
    let took = started.elapsed();

    let native = work[0].median();
    println!();
    println!("filter (JSON amount > {THRESHOLD}) then map_values (user upper-cased, a field added), serde_json");
    println!("  {:<48} {:>9} {:>7} {:>10} {:>8} {:>7}", "", "ns/record", "best", "Mrecords/s", "×native", "spread");
    for case in &work {
        let ns = case.median();
        println!(
            "  {:<48} {:>9.1} {:>7.1} {:>10.2} {:>7.2}× {:>6.0}%",
            case.label,
            ns,
            case.best(),
            1e3 / ns,
            native / ns,
            case.spread()
        );
    }
    println!();
    println!("boundary alone: identity functions on raw bytes, every record kept (all calls at batch {BATCH})");
    println!("  {:<48} {:>9} {:>7} {:>10} {:>8} {:>7}", "", "ns/record", "best", "Mrecords/s", "%native", "spread");
    for case in &boundary {
        let ns = case.median();
        println!(
            "  {:<48} {:>9.1} {:>7.1} {:>10.2} {:>7.1}% {:>6.0}%",
            case.label,
            ns,
            case.best(),
            1e3 / ns,
            100.0 * ns / native,
            case.spread()
        );
    }
    println!(
        "  ns/record: median over the rounds, per input record; best: the fastest round; spread: (max - min) / median."
    );
    println!("  ×native: native ns/record ÷ this row's; %native: this row's ÷ the native JSON baseline's.");
    println!("  call only: each batch encoded just before, outside the timed part; operator / host path: with the");
    println!("  host's record encoding and decoding, as a pipeline runs them.");

    let by = |label: &str| boundary.iter().find(|c| c.label == label).map_or(f64::NAN, Case::median);
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    let (call_f, call_m) = (by("wasp batch, filter: call only"), by("wasp batch, map_values: call only"));
    let (op_f, op_m) = (by("wasp batch, filter: operator"), by("wasp batch, map_values: operator"));
    let speed = native / work[1].median();
    println!();
    println!("targets (information, not assertions)");
    println!(
        "  batch boundary ≤ {BOUNDARY_TARGET_NS} ns/record per call, call only: filter {call_f:.1}, map_values {call_m:.1}: {}",
        met(call_f.max(call_m) <= BOUNDARY_TARGET_NS)
    );
    println!(
        "  batch boundary ≤ {BOUNDARY_TARGET_NS} ns/record per call, operator: filter {op_f:.1}, map_values {op_m:.1}: {}",
        met(op_f.max(op_m) <= BOUNDARY_TARGET_NS)
    );
    println!("  Wasm filter+map ≥ {SPEED_TARGET}× native: {speed:.2}×: {}", met(speed >= SPEED_TARGET));
    println!(
        "  naive list<rec> against the batch encoding: {:.2}× slower on the work, {:.2}× on map_values identity calls",
        work[2].median() / work[1].median(),
        by("naive list<rec>, map_values: call only") / call_m
    );

    println!();
    let reference = work[0].summary;
    let differ: Vec<&str> = work.iter().filter(|c| c.summary != reference).map(|c| c.label).collect();
    match (reference, differ.is_empty()) {
        (Some(d), true) => println!(
            "outputs: all three paths produce the same {} records ({:.1}% kept)",
            thousands(d.records),
            100.0 * d.records as f64 / records as f64
        ),
        _ => println!("outputs: DIFFER from the native baseline's for {}", differ.join(", ")),
    }
    let differ: Vec<&str> = boundary.iter().filter(|c| c.summary != Some(input_summary)).map(|c| c.label).collect();
    if differ.is_empty() {
        println!("identity outputs: every path returns its input unchanged");
    } else {
        println!("identity outputs: DIFFER from the input for {}", differ.join(", "));
    }
    println!("timed part: {:.1} s", took.as_secs_f64());
    // `WASP_BENCH_SKIP=sandbox,state` leaves parts out of a shorter run.
    let skip = std::env::var("WASP_BENCH_SKIP").unwrap_or_default();
    if !skip.split(',').any(|s| s == "sandbox") {
        bench_sandbox::run(input)?;
    }
    if !skip.split(',').any(|s| s == "formats") {
        bench_formats::run(env_usize("WASP_BENCH_FORMAT_RECORDS", FORMAT_RECORDS)?)?;
    }
    if !skip.split(',').any(|s| s == "joins") {
        bench_joins::run(env_usize("WASP_BENCH_JOIN_RECORDS", JOIN_RECORDS)?)?;
    }
    if !skip.split(',').any(|s| s == "languages") {
        bench_languages::run(env_usize("WASP_BENCH_LANGUAGE_RECORDS", LANGUAGE_RECORDS)?)?;
    }
    if skip.split(',').any(|s| s == "state") {
        return Ok(());
    }
    bench_state::run(env_usize("WASP_BENCH_LINES", LINES)?)
}

/// Values per format benchmark row.
const FORMAT_RECORDS: usize = 200_000;

/// The median of `samples` (NaN when there are none).
fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs `f` in a new directory under the system's temporary one, removed afterwards.
fn in_temp_dir(name: &str, f: impl FnOnce(&std::path::Path) -> Result<()>) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("wasp-bench-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = f(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Stream records per join benchmark.
const JOIN_RECORDS: usize = 300_000;

/// Events per plugin-language benchmark.
const LANGUAGE_RECORDS: usize = 100_000;

/// The identity filter, called on each batch once it is encoded: the call alone is timed.
fn batch_filter(instance: &mut PluginInstance, input: &[Vec<Record>], check: bool) -> Measured {
    let mut encoded = EncodedBatch::default();
    let mut digest = check.then(Digest::default);
    let mut elapsed = Duration::ZERO;
    for batch in input {
        encoded.encode(batch.iter());
        let started = Instant::now();
        let verdicts = instance.filter("", &mut encoded)?;
        elapsed += started.elapsed();
        if let Some(d) = &mut digest {
            d.add_records(batch.iter().zip(&verdicts.keep).filter(|(_, k)| **k == 1).map(|(r, _)| r));
        }
    }
    Ok((elapsed, digest.as_ref().map(Digest::summary)))
}

/// The identity value mapper, called on each batch once it is encoded.
fn batch_map(instance: &mut PluginInstance, input: &[Vec<Record>], check: bool) -> Measured {
    let mut encoded = EncodedBatch::default();
    let mut digest = check.then(Digest::default);
    let mut elapsed = Duration::ZERO;
    for batch in input {
        encoded.encode(batch.iter());
        let started = Instant::now();
        let output = instance.transform(PluginKind::ValueMapper, "", &mut encoded)?;
        elapsed += started.elapsed();
        if let Some(d) = &mut digest {
            let r = output.records;
            let view = DecodedBatch::output(r.index, r.timestamps, r.data)?;
            for (i, record) in batch.iter().enumerate().take(view.len()) {
                let value = if view.value_unchanged(i) { record.value.clone() } else { view.value(i) };
                d.add(value.as_deref(), view.timestamp(i).unwrap_or(record.timestamp));
            }
        }
    }
    Ok((elapsed, digest.as_ref().map(Digest::summary)))
}

/// The naive identity filter, called on each batch once it is converted to `rec`s.
fn naive_filter(naive: &mut Naive, input: &[Vec<Record>], check: bool) -> Measured {
    let mut digest = check.then(Digest::default);
    let mut elapsed = Duration::ZERO;
    for batch in input {
        let recs = Naive::recs(batch);
        let started = Instant::now();
        let keep = naive.bindings.call_filter_identity(&mut naive.store, &recs)?;
        elapsed += started.elapsed();
        if let Some(d) = &mut digest {
            d.add_records(batch.iter().zip(&keep).filter(|(_, k)| **k).map(|(r, _)| r));
        }
    }
    Ok((elapsed, digest.as_ref().map(Digest::summary)))
}

/// The naive identity value mapper, called on each batch once it is converted to `rec`s.
fn naive_map(naive: &mut Naive, input: &[Vec<Record>], check: bool) -> Measured {
    let mut digest = check.then(Digest::default);
    let mut elapsed = Duration::ZERO;
    for batch in input {
        let recs = Naive::recs(batch);
        let started = Instant::now();
        let output = naive.bindings.call_map_values_identity(&mut naive.store, &recs)?;
        elapsed += started.elapsed();
        if let Some(d) = &mut digest {
            for r in &output {
                d.add(r.value.as_deref(), r.timestamp);
            }
        }
    }
    Ok((elapsed, digest.as_ref().map(Digest::summary)))
}
