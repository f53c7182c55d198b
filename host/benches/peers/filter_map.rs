//! The stateless peer: `make bench`'s JSON filter + map (1M records of about 100 B, batch
//! 1024, the work in `plugins/bench-work.rs`) through wasp's operators and two SDK plugins, and
//! through fluvio-smartengine with the same work as two SmartModules. fluvio-smartengine pulls
//! its own wasmtime, so it runs in its own binary (`fluvio/`, built by `make bench-peers`),
//! which times fluvio and a native baseline in its process; this one times wasp and the same
//! native baseline in its own. Every path's output is checked against the native output.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use wasp_host::manifest::{Grants, Limits};
use wasp_host::operators::{Operator, construct_stateless};
use wasp_host::record::Record;
use wasp_host::topology::{NodeOp, PluginKind, PluginRef};
use wasp_host::wasm::{MetricsRegistry, PluginSlot, Runtime};

use crate::json_data::{self, BATCH, Digest, median, spread};
use crate::{thousands, work};

/// The design's target: wasp at least this many times fluvio-smartengine's speed.
const FLUVIO_TARGET: f64 = 3.0;

/// What the fluvio bench prints (one JSON line).
#[derive(serde::Deserialize)]
struct FluvioFigures {
    fluvio_version: String,
    fluvio_ns: f64,
    fluvio_spread: f64,
    native_ns: f64,
    native_spread: f64,
    records_out: u64,
    hash: u64,
}

fn plugin_path(name: &str) -> Result<PathBuf> {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/build")).join(format!("{name}.wasm"));
    if !path.exists() {
        bail!("{} is missing: run `make plugins` first (or `make bench-peers`, which builds them)", path.display());
    }
    Ok(path)
}

/// Where `make bench-peers` builds the fluvio bench and its SmartModules:
/// `$WASP_PEERS_FLUVIO` and `$WASP_PEERS_SMARTMODULES`, else under the cargo target directory.
fn fluvio_paths() -> Result<(PathBuf, PathBuf)> {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache/wasp/target"),
    };
    let base = target.join("peers-fluvio");
    let bench =
        std::env::var_os("WASP_PEERS_FLUVIO").map_or_else(|| base.join("release/wasp-peers-fluvio"), PathBuf::from);
    let modules = std::env::var_os("WASP_PEERS_SMARTMODULES")
        .map_or_else(|| base.join("wasm32-unknown-unknown/smartmodule"), PathBuf::from);
    if !bench.exists() {
        bail!("{} is missing: `make bench-peers` builds it", bench.display());
    }
    Ok((bench, modules))
}

/// A pipeline stage: a batch in, a batch out.
type Stage<'a> = Box<dyn FnMut(Vec<Record>) -> Result<Vec<Record>> + 'a>;

/// A wasp operator as a stage; a per-record failure stops the benchmark (the data is valid).
fn operator_stage<'a>(mut op: Box<dyn Operator>) -> Stage<'a> {
    Box::new(move |batch| {
        let emitted = op.process(batch);
        if let Some(f) = emitted.failures.first() {
            bail!("{} failed a record: {}: {}", f.plugin, f.code, f.message);
        }
        Ok(emitted.all)
    })
}

/// One pass of `stages` over every batch: the time the stages took, and the output's digest.
fn pass(input: &[Vec<Record>], stages: &mut [Stage<'_>]) -> Result<(Duration, Digest)> {
    let mut digest = Digest::default();
    let mut elapsed = Duration::ZERO;
    for batch in input {
        // A fresh copy, as the Kafka consumer hands records over; made outside the timed part.
        let mut b: Vec<Record> =
            batch.iter().map(|r| Record::new(r.key.as_deref(), r.value.as_deref(), r.timestamp)).collect();
        let started = Instant::now();
        for stage in stages.iter_mut() {
            b = stage(b)?;
        }
        elapsed += started.elapsed();
        for r in &b {
            digest.add(r.value.as_deref());
        }
    }
    Ok((elapsed, digest))
}

pub fn run(records: usize, rounds: usize) -> Result<()> {
    println!();
    println!(
        "JSON filter + map against fluvio-smartengine: {} records of {} B, batch {BATCH}, median of {rounds} rounds",
        thousands(records),
        json_data::VALUE_BYTES
    );
    let (fluvio_bench, modules) = fluvio_paths()?;
    let data = json_data::dataset(records);
    let input: Vec<Vec<Record>> = data
        .chunks(BATCH)
        .map(|c| {
            c.iter()
                .map(|r| Record {
                    key: Some(Bytes::from(r.key.clone().into_bytes())),
                    value: Some(Bytes::from(r.value.clone().into_bytes())),
                    timestamp: r.timestamp,
                    ..Record::default()
                })
                .collect()
        })
        .collect();
    drop(data);

    let runtime = Runtime::new(None, MetricsRegistry::default())?;
    let load = |name: &str, kind: PluginKind| -> Result<Arc<PluginSlot>> {
        let plugin = runtime.load(
            name,
            &plugin_path(name)?,
            &toml::Table::new(),
            &Grants::default(),
            &Limits::default(),
            &[kind],
        )?;
        Ok(PluginSlot::fixed(Arc::new(plugin)))
    };
    let slots = [load("bench-filter", PluginKind::Filter)?, load("bench-map", PluginKind::ValueMapper)?];
    let lookup = |name: &str| slots.iter().find(|s| s.name() == name).cloned();
    let plugin = |name: &str, kind| PluginRef { plugin: name.to_owned(), function: String::new(), kind };
    let filter =
        NodeOp::Operator { op: "filter", plugin: Some(plugin("bench-filter", PluginKind::Filter)), note: None };
    let map =
        NodeOp::Operator { op: "map_values", plugin: Some(plugin("bench-map", PluginKind::ValueMapper)), note: None };
    let mut wasp: Vec<Stage<'_>> = vec![
        operator_stage(construct_stateless(&filter, &lookup)?),
        operator_stage(construct_stateless(&map, &lookup)?),
    ];
    let mut native: Vec<Stage<'_>> = vec![
        Box::new(|b: Vec<Record>| Ok(b.into_iter().filter(|r| work::keep(r.value.as_deref())).collect())),
        Box::new(|b: Vec<Record>| {
            Ok(b.into_iter()
                .map(|mut r| {
                    r.value = r.value.as_deref().and_then(work::tag).map(Bytes::from);
                    r
                })
                .collect())
        }),
    ];

    // Round 0 warms up and checks; the rounds after it are timed, the two paths interleaved.
    let (mut wasp_ns, mut native_ns) = (Vec::new(), Vec::new());
    let mut digests = (Digest::default(), Digest::default());
    for round in 0..=rounds {
        let (t_native, d_native) = pass(&input, &mut native)?;
        let (t_wasp, d_wasp) = pass(&input, &mut wasp)?;
        if round == 0 {
            digests = (d_native, d_wasp);
        } else {
            native_ns.push(t_native.as_nanos() as f64 / records as f64);
            wasp_ns.push(t_wasp.as_nanos() as f64 / records as f64);
        }
    }
    if digests.0 != digests.1 {
        bail!("wasp's filter + map output differs from the native one: {:?} against {:?}", digests.1, digests.0);
    }

    let out = std::process::Command::new(&fluvio_bench)
        .arg(modules.join("wasp_peers_sm_filter.wasm"))
        .arg(modules.join("wasp_peers_sm_map.wasm"))
        .arg(records.to_string())
        .arg(rounds.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", fluvio_bench.display()))?;
    if !out.status.success() {
        bail!("{} failed: {}", fluvio_bench.display(), out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().context("the fluvio bench printed nothing")?;
    let fluvio: FluvioFigures =
        serde_json::from_str(line).with_context(|| format!("reading the fluvio bench's figures from {line:?}"))?;
    if (fluvio.records_out, fluvio.hash) != (digests.0.records, digests.0.hash) {
        bail!(
            "fluvio's filter + map output differs from the native one: {} records (hash {:x}) against {} ({:x})",
            fluvio.records_out,
            fluvio.hash,
            digests.0.records,
            digests.0.hash
        );
    }

    let (wasp_m, native_m) = (median(&wasp_ns), median(&native_ns));
    println!("  {:<60} {:>9} {:>8} {:>7}", "", "ns/record", "×native", "spread");
    let row = |label: &str, ns: f64, native: f64, spread: f64| {
        println!("  {label:<60} {ns:>9.0} {:>7.2}× {spread:>6.0}%", native / ns);
    };
    row("native Rust closure (this process)", native_m, native_m, spread(&native_ns));
    row("wasp: 2 SDK plugins through the operators (limits on)", wasp_m, native_m, spread(&wasp_ns));
    row("native Rust closure (the fluvio bench's process)", fluvio.native_ns, fluvio.native_ns, fluvio.native_spread);
    row(
        &format!("fluvio-smartengine {}: filter + map SmartModule chain", fluvio.fluvio_version),
        fluvio.fluvio_ns,
        fluvio.native_ns,
        fluvio.fluvio_spread,
    );
    println!(
        "  outputs: all three paths produce the same {} records ({:.1}% kept)",
        thousands(digests.0.records as usize),
        100.0 * digests.0.records as f64 / records as f64
    );
    let ratio = fluvio.fluvio_ns / wasp_m;
    println!(
        "  target: wasp ≥ {FLUVIO_TARGET}× fluvio-smartengine's speed: {ratio:.2}× ({:.0} against {wasp_m:.0} ns/record): {}",
        fluvio.fluvio_ns,
        if ratio >= FLUVIO_TARGET { "met" } else { "NOT met" }
    );
    Ok(())
}
