//! Plugin languages side by side: the filter and the value mapper `wasp new` scaffolds, in each
//! language, built by `wasp build` and called through the host's typed calls on the same
//! batches. Per-record cost is a ratio to the Rust plugin's in the same run; beside it, each
//! component's size, its cold compile (an empty cache) and its cached load.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use wasp_host::manifest::{Grants, Limits};
use wasp_host::record::{EncodedBatch, Record};
use wasp_host::topology::PluginKind;
use wasp_host::wasm::{MetricsRegistry, PluginInstance, Runtime};

const LANGUAGES: [&str; 5] = ["rust", "python", "javascript", "c", "cpp"];
const BATCH: usize = 1024;

/// `n` events in batches: a click, a view, a checkout in turn.
fn batches(n: usize) -> Vec<Vec<Record>> {
    let kinds = ["click", "view", "checkout"];
    let events: Vec<Record> = (0..n)
        .map(|i| {
            let v = format!(r#"{{"kind":"{}","page":"/p/{}"}}"#, kinds[i % 3], i % 97);
            Record::new(Some(format!("u{}", i % 1000).as_bytes()), Some(v.as_bytes()), i as i64)
        })
        .collect();
    events.chunks(BATCH).map(<[Record]>::to_vec).collect()
}

/// Time per record of `call` on every batch, after one warm-up pass; and the records out.
fn per_record(
    instance: &mut PluginInstance,
    input: &[Vec<Record>],
    mut call: impl FnMut(&mut PluginInstance, &mut EncodedBatch) -> Result<usize>,
) -> Result<(Duration, usize)> {
    let mut encoded = EncodedBatch::default();
    for batch in input.iter().take(4) {
        encoded.encode(batch.iter());
        call(instance, &mut encoded)?;
    }
    let (mut elapsed, mut out, mut n) = (Duration::ZERO, 0, 0);
    for batch in input {
        encoded.encode(batch.iter());
        let started = Instant::now();
        out += call(instance, &mut encoded)?;
        elapsed += started.elapsed();
        n += batch.len();
    }
    Ok((elapsed / n.max(1) as u32, out))
}

struct Figures {
    lang: &'static str,
    kind: &'static str,
    bytes: u64,
    cold: Duration,
    cached: Duration,
    per_record: Duration,
    out: usize,
}

fn measure(dir: &Path, lang: &'static str, kind: &'static str, input: &[Vec<Record>]) -> Result<Figures> {
    let name = format!("{lang}-{kind}");
    let made = wasp_host::app::new_plugin(lang, &name, kind, dir)?;
    // Not the target directory `cargo run` built this from: kept between runs, so the Rust
    // plugin's dependencies build once.
    let target = std::env::var_os("HOME")
        .map_or_else(std::env::temp_dir, std::path::PathBuf::from)
        .join(".cache/wasp/scaffold-target");
    let built = wasp_host::app::build_plugin(&made, None, Some(&target))
        .with_context(|| format!("building the {lang} {kind} (make setup installs the toolchains)"))?;
    let cache = dir.join(format!("cache-{name}"));
    let plugin_kind = if kind == "filter" { PluginKind::Filter } else { PluginKind::ValueMapper };
    let load = || -> Result<(Duration, wasp_host::wasm::LoadedPlugin)> {
        let runtime = Runtime::new(Some(cache.clone()), MetricsRegistry::default())?;
        let started = Instant::now();
        let loaded = runtime.load(
            &name,
            &built.component,
            &toml::Table::new(),
            &Grants::default(),
            &Limits::default(),
            &[plugin_kind],
        )?;
        Ok((started.elapsed(), loaded))
    };
    let (cold, _) = load()?;
    let (cached, loaded) = load()?;
    let mut instance = loaded.instantiate()?;
    let (per_record, out) = per_record(&mut instance, input, |i, b| {
        Ok(if kind == "filter" {
            i.filter("", b)?.keep.iter().filter(|k| **k == 1).count()
        } else {
            // Six index entries per record (the timestamps may be left out).
            i.transform(PluginKind::ValueMapper, "", b)?.records.index.len() / 6
        })
    })?;
    Ok(Figures { lang, kind, bytes: built.bytes, cold, cached, per_record, out })
}

pub fn run(records: usize) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("wasp-bench-languages-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run_in(&dir, records);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(dir: &Path, records: usize) -> Result<()> {
    let input = batches(records);
    println!(
        "\nplugin languages: the scaffolded filter and value mapper (`wasp new`), {} events in batches of {BATCH}, \
         per-record cost against the Rust plugin in this run",
        crate::util::thousands(records)
    );
    for kind in ["filter", "map-values"] {
        let mut figures = Vec::new();
        for lang in LANGUAGES {
            figures.push(measure(dir, lang, kind, &input)?);
        }
        let rust = figures[0].per_record.as_secs_f64().max(1e-12);
        for f in &figures {
            if f.out != figures[0].out {
                anyhow::bail!("{} {}: {} records out, Rust gave {}", f.lang, f.kind, f.out, figures[0].out);
            }
            println!(
                "  {:<10} {:<10} {:>8.0} ns/record  {:>6.1}× Rust   component {:>8.1} KiB   cold compile {:>7.0} ms   cached load {:>5.1} ms",
                f.kind,
                f.lang,
                f.per_record.as_secs_f64() * 1e9,
                f.per_record.as_secs_f64() / rust,
                f.bytes as f64 / 1024.0,
                f.cold.as_secs_f64() * 1e3,
                f.cached.as_secs_f64() * 1e3,
            );
        }
    }
    Ok(())
}
