//! The fluvio-smartengine half of `make bench-peers`' stateless comparison (the other half is
//! `host/benches/peers/filter_map.rs`, which runs this binary and reads its one JSON line).
//!
//! Usage: `wasp-peers-fluvio FILTER.wasm MAP.wasm RECORDS ROUNDS`. The data is `make bench`'s
//! (`json_data.rs`, shared with `wasp-peers`), in batches of 1024. Each batch goes through a
//! chain of the two SmartModules as fluvio's SPU runs a chain: records encoded into one
//! `SmartModuleInput`, then `SmartModuleChainInstance::process`. As in wasp's figure, the
//! timed part starts from fresh records and ends with output records; the copies are made
//! outside it. Rounds interleave the chain with the same work done natively, and medians are
//! printed. The chain is built afresh each round, outside the timed part: DESIGN.md found
//! fluvio's guests leaking memory on every call, and a chain's store is capped at 1 GB.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fluvio_smartengine::{
    DEFAULT_SMARTENGINE_VERSION, SmartEngine, SmartModuleChainBuilder, SmartModuleChainInstance, SmartModuleConfig,
};
use fluvio_smartmodule::Record;
use fluvio_smartmodule::dataplane::smartmodule::SmartModuleInput;

#[path = "../../../json_data.rs"]
mod json_data;
#[path = "../../../../../../plugins/bench-work.rs"]
mod work;

use json_data::{BATCH, Digest, median, spread};

/// The fluvio-smartengine version this binary was built against, from the lock file.
fn fluvio_version() -> &'static str {
    let lock = include_str!("../../Cargo.lock");
    let mut lines = lock.lines().skip_while(|l| *l != "name = \"fluvio-smartengine\"");
    lines.nth(1).and_then(|l| l.strip_prefix("version = \"")).and_then(|l| l.strip_suffix('"')).unwrap_or("unknown")
}

/// A chain of the filter then the map.
fn chain(engine: &SmartEngine, filter: &[u8], map: &[u8]) -> Result<SmartModuleChainInstance> {
    let mut builder = SmartModuleChainBuilder::default();
    for (name, bytes) in [("filter", filter), ("map", map)] {
        let config = SmartModuleConfig::builder()
            .smartmodule_names(vec![name.to_owned()])
            .build()
            .with_context(|| format!("configuring the {name} SmartModule"))?;
        builder.add_smart_module(config, bytes.to_vec());
    }
    builder.initialize(engine).context("initializing the SmartModule chain")
}

/// One pass through the chain: its time and output digest.
fn fluvio_pass(chain: &mut SmartModuleChainInstance, input: &[Vec<Record>]) -> Result<(Duration, Digest)> {
    let mut digest = Digest::default();
    let mut elapsed = Duration::ZERO;
    for batch in input {
        let records = batch.clone();
        let started = Instant::now();
        let encoded = SmartModuleInput::try_from_records(records, DEFAULT_SMARTENGINE_VERSION)?;
        let output = chain.process(encoded)?;
        elapsed += started.elapsed();
        if let Some(e) = output.error {
            bail!("the chain failed a record: {e:?}");
        }
        for r in &output.successes {
            digest.add(Some(r.value.as_ref()));
        }
    }
    Ok((elapsed, digest))
}

/// One pass of the same work natively.
fn native_pass(input: &[Vec<Record>]) -> (Duration, Digest) {
    let mut digest = Digest::default();
    let mut elapsed = Duration::ZERO;
    for batch in input {
        let records = batch.clone();
        let started = Instant::now();
        let out: Vec<Record> = records
            .into_iter()
            .filter(|r| work::keep(Some(r.value.as_ref())))
            .filter_map(|mut r| {
                r.value = work::tag(r.value.as_ref())?.into();
                Some(r)
            })
            .collect();
        elapsed += started.elapsed();
        for r in &out {
            digest.add(Some(r.value.as_ref()));
        }
    }
    (elapsed, digest)
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Result<T> {
    let a = args
        .get(i)
        .with_context(|| format!("usage: wasp-peers-fluvio FILTER.wasm MAP.wasm RECORDS ROUNDS ({what} missing)"))?;
    a.parse().map_err(|_| anyhow::anyhow!("{what}: `{a}` is not valid"))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let filter_path: String = arg(&args, 1, "FILTER.wasm")?;
    let map_path: String = arg(&args, 2, "MAP.wasm")?;
    let records: usize = arg(&args, 3, "RECORDS")?;
    let rounds: usize = arg(&args, 4, "ROUNDS")?;
    let filter = std::fs::read(&filter_path).with_context(|| format!("reading {filter_path}"))?;
    let map = std::fs::read(&map_path).with_context(|| format!("reading {map_path}"))?;

    let input: Vec<Vec<Record>> = json_data::dataset(records)
        .chunks(BATCH)
        .map(|c| {
            c.iter().map(|r| Record::new_key_value(r.key.as_bytes().to_vec(), r.value.as_bytes().to_vec())).collect()
        })
        .collect();
    let engine = SmartEngine::new();

    // Round 0 warms up; every round checks the chain's output against the native one.
    let (mut fluvio_ns, mut native_ns) = (Vec::new(), Vec::new());
    let mut d = Digest::default();
    for round in 0..=rounds.max(1) {
        let mut chain = chain(&engine, &filter, &map)?;
        let (t_native, d_native) = native_pass(&input);
        let (t_fluvio, d_fluvio) = fluvio_pass(&mut chain, &input)?;
        if d_native != d_fluvio {
            bail!("the chain's output differs from the native one: {d_fluvio:?} against {d_native:?}");
        }
        d = d_native;
        if round > 0 {
            native_ns.push(t_native.as_nanos() as f64 / records as f64);
            fluvio_ns.push(t_fluvio.as_nanos() as f64 / records as f64);
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "fluvio_version": fluvio_version(),
            "fluvio_ns": median(&fluvio_ns),
            "fluvio_spread": spread(&fluvio_ns),
            "native_ns": median(&native_ns),
            "native_spread": spread(&native_ns),
            "records_out": d.records,
            "hash": d.hash,
        })
    );
    Ok(())
}
