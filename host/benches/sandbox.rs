//! `make bench`, the sandbox figures:
//! - the cost of the limits: the filter+map plugins run with the limits on (pooling allocator,
//!   epoch deadlines, memory and table caps: the default), with fuel metering on top, and with
//!   everything off, on the same batches; ratios against "off";
//! - the swap pause: four tasks (four operators on one plugin slot) run batches in a loop while
//!   a side thread reloads the plugin back and forth between two versions; each task's pause
//!   at the batch boundary where it switches is recorded (p50, p99, max), with the new versions
//!   precompiled (the on-disk cache holds them) and uncompiled (compiled during the reload,
//!   beside the running tasks), along with the batch times the tasks saw meanwhile.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use wasp_host::manifest::{Grants, Limits};
use wasp_host::operators::{Operator, construct_stateless};
use wasp_host::record::Record;
use wasp_host::topology::{NodeOp, PluginKind, PluginRef};
use wasp_host::wasm::{EngineOptions, MetricsRegistry, PluginDirectory, PluginSlot, PluginSpec, Runtime, SwapResult};

/// Swaps per mode.
const SWAPS: usize = 20;
/// Tasks that each switch on every swap.
const TASKS: usize = 4;

fn plugin(name: &str) -> Result<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/build").join(format!("{name}.wasm"));
    p.canonicalize().with_context(|| format!("{} is missing: run `make plugins`", p.display()))
}

fn reference(plugin: &str, kind: PluginKind) -> PluginRef {
    PluginRef { plugin: plugin.to_owned(), function: String::new(), kind }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The plugins of a filter+map run: the JSON work of `make bench`, or the identity functions
/// (the crossing alone).
#[derive(Clone, Copy, PartialEq)]
enum Work {
    Json,
    Identity,
}

/// A filter then a map on a runtime of its own with some engine options.
struct FilterMap {
    _runtime: Runtime,
    filter: Box<dyn Operator>,
    map: Box<dyn Operator>,
}

impl FilterMap {
    fn new(work: Work, options: EngineOptions, limits: &Limits) -> Result<Self> {
        let (f, m) = match work {
            Work::Json => ("bench-filter", "bench-map"),
            Work::Identity => ("bench-identity", "bench-identity"),
        };
        let runtime = Runtime::with_options(None, MetricsRegistry::default(), options)?;
        let load = |name: &str, kind: PluginKind| -> Result<Arc<PluginSlot>> {
            let loaded =
                runtime.load(name, &plugin(name)?, &toml::Table::new(), &Grants::default(), limits, &[kind])?;
            Ok(PluginSlot::fixed(Arc::new(loaded)))
        };
        let slots = [load(f, PluginKind::Filter)?, load(m, PluginKind::ValueMapper)?];
        let lookup = |name: &str| slots.iter().find(|s| s.name() == name).cloned();
        let filter = construct_stateless(
            &NodeOp::Operator { op: "filter", plugin: Some(reference(f, PluginKind::Filter)), note: None },
            &lookup,
        )?;
        let map = construct_stateless(
            &NodeOp::Operator { op: "map_values", plugin: Some(reference(m, PluginKind::ValueMapper)), note: None },
            &lookup,
        )?;
        Ok(Self { _runtime: runtime, filter, map })
    }

    /// One batch through both operators; the time it took.
    fn run(&mut self, batch: Vec<Record>) -> Result<Duration> {
        let started = Instant::now();
        let kept = self.filter.process(batch).all;
        let out = self.map.process(kept);
        let took = started.elapsed();
        anyhow::ensure!(out.failures.is_empty(), "the bench plugins failed: {}", out.failures[0].message);
        Ok(took)
    }
}

/// ns per record of each configuration, one entry per round. Every batch goes through every
/// configuration in turn (the order rotating by batch), so a noisy neighbour slows them all
/// alike instead of one configuration's whole round.
fn limits_rounds(
    configs: &[(Work, EngineOptions, &Limits)],
    input: &[Vec<Record>],
    rounds: usize,
) -> Result<Vec<Vec<f64>>> {
    let mut runs: Vec<FilterMap> = configs.iter().map(|(w, o, l)| FilterMap::new(*w, *o, l)).collect::<Result<_>>()?;
    // A warm-up pass: instances made, code paged in.
    for batch in input.iter().take(16) {
        for r in &mut runs {
            r.run(batch.clone())?;
        }
    }
    let records: usize = input.iter().map(Vec::len).sum();
    let mut samples = vec![Vec::with_capacity(rounds); configs.len()];
    for _ in 0..rounds {
        let mut elapsed = vec![Duration::ZERO; configs.len()];
        for (b, batch) in input.iter().enumerate() {
            for k in 0..runs.len() {
                let i = (b + k) % runs.len();
                elapsed[i] += runs[i].run(batch.clone())?;
            }
        }
        for (s, e) in samples.iter_mut().zip(elapsed) {
            s.push(e.as_nanos() as f64 / records as f64);
        }
    }
    Ok(samples)
}

/// A copy of `src` with a custom section appended: the same component, another digest.
fn variant(src: &Path, dir: &Path, tag: &str) -> Result<PathBuf> {
    let mut bytes = std::fs::read(src)?;
    let payload = tag.as_bytes();
    let name = b"wasp-bench";
    let body_len = 1 + name.len() + payload.len();
    anyhow::ensure!(body_len < 128, "the tag is too long");
    bytes.extend_from_slice(&[0, body_len as u8, name.len() as u8]);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    let dest = dir.join(format!("bench-map-{tag}.wasm"));
    std::fs::write(&dest, bytes)?;
    Ok(dest)
}

struct SwapFigures {
    pauses_us: Vec<f64>,
    steady_batch_us: Vec<f64>,
    swapping_batch_us: Vec<f64>,
}

/// Four tasks run batches while a side thread swaps the plugin `SWAPS` times between
/// `versions`, waiting for each swap to become active.
fn swaps(cache: Option<PathBuf>, versions: &[PathBuf], input: &[Vec<Record>]) -> Result<SwapFigures> {
    let runtime = Runtime::new(cache, MetricsRegistry::default())?;
    let limits = Limits::default();
    let first = runtime.load(
        "m",
        &versions[0],
        &toml::Table::new(),
        &Grants::default(),
        &limits,
        &[PluginKind::ValueMapper],
    )?;
    let mut directory = PluginDirectory::new(runtime.clone());
    directory.insert(
        Arc::new(first),
        PluginSpec {
            path: versions[0].clone(),
            config: toml::Table::new(),
            grants: Grants::default(),
            limits,
            uses: vec![(PluginKind::ValueMapper, String::new())],
        },
    );
    let directory = Arc::new(directory);
    let lookup = |name: &str| directory.get(name);
    let node = NodeOp::Operator { op: "map_values", plugin: Some(reference("m", PluginKind::ValueMapper)), note: None };
    let mut tasks: Vec<Box<dyn Operator>> =
        (0..TASKS).map(|_| construct_stateless(&node, &lookup)).collect::<Result<_, _>>()?;
    let swapping = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let side = {
        let (directory, swapping, finished) = (directory.clone(), swapping.clone(), finished.clone());
        let versions = versions.to_vec();
        std::thread::spawn(move || -> Result<()> {
            for i in 0..SWAPS {
                std::thread::sleep(Duration::from_millis(30));
                swapping.store(true, Ordering::SeqCst);
                let path = &versions[(i + 1) % versions.len()];
                let event = directory.reload("m", Some(path)).map_err(|e| anyhow::anyhow!("{e}"))?;
                anyhow::ensure!(event.result == SwapResult::Pending, "swap {i}: {:?}", event.result);
                let deadline = Instant::now() + Duration::from_secs(30);
                while directory.report()[0].last_swap.as_ref().map(|s| &s.result) != Some(&SwapResult::Active) {
                    anyhow::ensure!(Instant::now() < deadline, "swap {i} did not become active");
                    std::thread::sleep(Duration::from_micros(200));
                }
                swapping.store(false, Ordering::SeqCst);
            }
            finished.store(true, Ordering::SeqCst);
            Ok(())
        })
    };
    let mut steady = Vec::new();
    let mut during = Vec::new();
    let mut next = 0usize;
    while !finished.load(Ordering::SeqCst) {
        for task in &mut tasks {
            let batch = input[next % input.len()].clone();
            next += 1;
            let in_swap = swapping.load(Ordering::SeqCst);
            let started = Instant::now();
            let out = task.process(batch);
            let us = started.elapsed().as_secs_f64() * 1e6;
            anyhow::ensure!(out.failures.is_empty(), "the plugin failed: {}", out.failures[0].message);
            if in_swap { during.push(us) } else { steady.push(us) }
        }
        if side.is_finished() && !finished.load(Ordering::SeqCst) {
            break;
        }
    }
    side.join().map_err(|_| anyhow::anyhow!("the swap thread panicked"))??;
    let slot = directory.get("m").context("the slot")?;
    let mut pauses_us: Vec<f64> = slot.pauses().iter().map(|d| d.as_secs_f64() * 1e6).collect();
    pauses_us.sort_by(f64::total_cmp);
    steady.sort_by(f64::total_cmp);
    during.sort_by(f64::total_cmp);
    Ok(SwapFigures { pauses_us, steady_batch_us: steady, swapping_batch_us: during })
}

/// Prints both sets of figures. `input` is the main benchmark's batches.
pub fn run(input: &[Vec<Record>]) -> Result<()> {
    println!();
    println!("sandbox limits: filter+map plugins through the operators, same batches");
    let limits = Limits::default();
    let fueled = Limits { fuel: Some(u64::MAX / 2), ..Limits::default() };
    let off = EngineOptions { pooling: false, epoch_deadlines: false, fuel: false, ..EngineOptions::default() };
    let pool_only = EngineOptions { pooling: true, ..off };
    let epoch_only = EngineOptions { epoch_deadlines: true, ..off };
    let on = EngineOptions::default();
    let with_fuel = EngineOptions { fuel: true, ..EngineOptions::default() };
    // A plugin with its deadline off, in a manifest where others keep theirs: it runs in the
    // second engine, without epoch checks.
    let trusted = Limits { deadline_ms: 0, ..Limits::default() };
    let split = EngineOptions { trusted_engine: true, ..EngineOptions::default() };
    // The last two: the same limits on the identity plugins, against their own "off".
    let configs: [(&str, Work, EngineOptions, &Limits); 8] = [
        ("limits off (no pool, no epoch deadline, no fuel)", Work::Json, off, &limits),
        ("pooling allocator only", Work::Json, pool_only, &limits),
        ("epoch deadline only", Work::Json, epoch_only, &limits),
        ("limits on: pool, epoch deadline, memory + table caps", Work::Json, on, &limits),
        ("limits on + fuel metering", Work::Json, with_fuel, &fueled),
        ("limits on, deadline_ms = 0 beside plugins with deadlines", Work::Json, split, &trusted),
        ("identity plugins (the crossing alone), limits off", Work::Identity, off, &limits),
        ("identity plugins (the crossing alone), limits on", Work::Identity, on, &limits),
    ];
    let rounds = crate::env_usize("WASP_BENCH_ROUNDS", 5)?.max(1);
    let samples = limits_rounds(&configs.iter().map(|(_, w, o, l)| (*w, *o, *l)).collect::<Vec<_>>(), input, rounds)?;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = samples.iter().cloned().map(median).collect();
    // Each configuration against "off" in the same round, the median of those ratios.
    let ratios: Vec<f64> = samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            // "off" for each row: the first row with the same plugins.
            let base = configs.iter().position(|c| c.1 == configs[i].1).unwrap_or(0);
            let off = &samples[base];
            median(s.iter().zip(off).map(|(x, off)| x / off).collect())
        })
        .collect();
    let on_ratio = ratios[3];
    println!("  {:<58} {:>9} {:>9}", "", "ns/record", "×off");
    for ((label, _, _, _), (ns, ratio)) in configs.iter().zip(medians.iter().zip(&ratios)) {
        println!("  {label:<58} {ns:>9.1} {ratio:>8.2}×");
    }
    println!("  every batch runs through each configuration in turn; ×off: the median over the rounds of");
    println!("  each round's ratio to \"off\" (the identity rows: to their own \"off\"). Epoch interruption checks");
    println!(
        "  every loop back-edge and function entry in the guest: its cost follows the guest's loops, not the calls"
    );
    let cost = 100.0 * (on_ratio - 1.0);
    println!(
        "  target: epoch + memory limits cost ≤ 10%: {cost:.1}%: {}",
        if cost <= 10.0 { "met" } else { "NOT met" }
    );

    println!();
    println!(
        "swap pause: {TASKS} tasks running batches of the map plugin, {SWAPS} swaps, each task switching once per swap"
    );
    let dir = std::env::temp_dir().join(format!("wasp-bench-swap-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let base = plugin("bench-map")?;
    let versions = vec![variant(&base, &dir, "a")?, variant(&base, &dir, "b")?];
    let cache = dir.join("cache");
    // Warm the cache with both versions: "precompiled".
    {
        let warm = Runtime::new(Some(cache.clone()), MetricsRegistry::default())?;
        for v in &versions {
            warm.load("m", v, &toml::Table::new(), &Grants::default(), &limits, &[PluginKind::ValueMapper])?;
        }
    }
    println!(
        "  {:<24} {:>8} {:>8} {:>8} {:>7} {:>18} {:>18}",
        "", "p50 µs", "p99 µs", "max µs", "pauses", "batch p99 steady", "batch p99 swapping"
    );
    for (label, cache) in [("precompiled (cached)", Some(cache.clone())), ("uncompiled", None)] {
        let f = swaps(cache, &versions, input)?;
        println!(
            "  {:<24} {:>8.0} {:>8.0} {:>8.0} {:>7} {:>15.0} µs {:>15.0} µs",
            label,
            percentile(&f.pauses_us, 0.5),
            percentile(&f.pauses_us, 0.99),
            f.pauses_us.last().copied().unwrap_or(f64::NAN),
            f.pauses_us.len(),
            percentile(&f.steady_batch_us, 0.99),
            percentile(&f.swapping_batch_us, 0.99),
        );
        if label == "precompiled (cached)" {
            let p99 = percentile(&f.pauses_us, 0.99);
            println!(
                "  target: swap pause p99 ≤ 10 ms: {:.2} ms: {}",
                p99 / 1e3,
                if p99 <= 10_000.0 { "met" } else { "NOT met" }
            );
        }
    }
    println!("  pause: the time a task spends at the batch boundary instantiating the new version (the");
    println!("  compile and validation run on the reloading thread, off the hot path); batch p99: batch times");
    println!("  of the tasks while no reload runs, and while one compiles, validates and switches.");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
