//! The word count on the broker, three ways on the same lines: Quix Streams, a native rdkafka
//! service, and wasp (threads = 1 and 2), each on a 1-partition and a 4-partition input topic.
//! Each run is timed from the moment the runner is ready (its code loaded) until its output
//! topic holds one update per input word; then the final count of every word is read back and
//! must equal the expected total, or the run fails.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::ScopedJoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use wasp_host::app::{self, LocalOptions};

use crate::broker::{Broker, OutputWatch};
use crate::words::{VOCABULARY, WordData};
use crate::{native, quix, thousands};

/// The partition counts of the two input topics.
const PARTITIONS: [i32; 2] = [1, 4];
/// How long one run may take before it counts as failed (Quix at 10k words/s takes ~3 min).
const RUN_TIMEOUT: Duration = Duration::from_secs(900);
/// How long counts may take to settle after the output holds enough updates (an
/// at-least-once runner may write an update twice, so the count of updates arrives early).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The targets, on the 4-partition topic.
const QUIX_TARGET: f64 = 10.0;
const NATIVE_TARGET: f64 = 0.5;

/// Between the bench and a runner on its thread: the runner says when it is ready (the clock
/// starts), and returns once told to stop.
#[derive(Default)]
pub struct Control {
    started: OnceLock<Instant>,
    stop: AtomicBool,
}

impl Control {
    pub fn ready(&self) {
        let _ = self.started.set(Instant::now());
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The flag a wasp run watches.
    fn stop_flag(&self) -> &AtomicBool {
        &self.stop
    }
}

/// The runners, in the order they run on each topic.
#[derive(Clone, Copy)]
enum Runner {
    Native,
    Wasp { threads: usize },
    Quix,
}

impl Runner {
    const ALL: [Runner; 4] = [Runner::Native, Runner::Wasp { threads: 1 }, Runner::Wasp { threads: 2 }, Runner::Quix];

    fn slug(self) -> String {
        match self {
            Runner::Native => "native".to_owned(),
            Runner::Wasp { threads } => format!("wasp-t{threads}"),
            Runner::Quix => "quix".to_owned(),
        }
    }
}

/// Runs `runner` on a thread of its own and times it (see the module comment); stops it in
/// every case.
fn measure(
    broker: &Broker,
    output: &str,
    partitions: i32,
    data: &WordData,
    runner: impl FnOnce(&Control) -> Result<()> + Send,
) -> Result<f64> {
    broker.create_topic(output, partitions)?;
    let mut watch = OutputWatch::new(broker, output, partitions)?;
    let control = Control::default();
    std::thread::scope(|s| {
        let handle = s.spawn(|| runner(&control));
        let timed = time_until_counted(&control, &handle, &mut watch, data);
        control.stop.store(true, Ordering::Relaxed);
        let ran = handle.join().map_err(|_| anyhow!("the runner panicked")).and_then(|r| r);
        match (timed, ran) {
            (Ok(seconds), Ok(())) => Ok(seconds),
            (Err(e), Ok(())) => Err(e),
            (Ok(_), Err(e)) => Err(e.context("the runner failed when stopped")),
            // The runner's own error says more than "it ended early".
            (Err(e), Err(r)) => Err(r.context(format!("{e:#}"))),
        }
    })
}

fn time_until_counted(
    control: &Control,
    runner: &ScopedJoinHandle<'_, Result<()>>,
    watch: &mut OutputWatch,
    data: &WordData,
) -> Result<f64> {
    let words = data.words as i64;
    let waiting = Instant::now();
    let started = loop {
        if let Some(t) = control.started.get() {
            break *t;
        }
        if runner.is_finished() {
            bail!("the runner ended before it was ready");
        }
        if waiting.elapsed() > RUN_TIMEOUT {
            bail!("the runner was not ready after {} s", RUN_TIMEOUT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let mut end = loop {
        let updates = watch.updates()?;
        if updates >= words {
            break Instant::now();
        }
        if runner.is_finished() {
            bail!("the runner ended with {updates} of {words} updates written");
        }
        if started.elapsed() > RUN_TIMEOUT {
            bail!("{updates} of {words} updates after {} s", RUN_TIMEOUT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    watch.catch_up()?;
    while let Some(mismatch) = watch.mismatch(&data.expected) {
        if end.elapsed() > SETTLE_TIMEOUT || runner.is_finished() {
            bail!("the final counts are wrong: {mismatch}");
        }
        std::thread::sleep(Duration::from_millis(500));
        watch.catch_up()?;
        end = Instant::now();
    }
    Ok(end.duration_since(started).as_secs_f64())
}

/// wasp's word count (as `make bench`'s): split-words, group_by word-key, count.
fn wasp_manifest(dir: &Path, id: &str, bootstrap: &str, input: &str, output: &str, threads: usize) -> Result<PathBuf> {
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/build")
        .canonicalize()
        .context("plugins/build is missing: run `make plugins` (make bench-peers does)")?;
    crate::util::BrokerWordCount { id, bootstrap, input, output, threads, properties: &[] }.write(dir, &plugins)
}

/// One run of `runner` on the `partitions`-partition input; its words/s.
fn run_one(
    broker: &Broker,
    dir: &Path,
    data: &WordData,
    runner: Runner,
    partitions: i32,
    python: &Result<(PathBuf, String)>,
) -> Result<f64> {
    let input = format!("peers-lines-p{partitions}");
    // Unique per run: a group that has committed offsets would read nothing the second time.
    let id = format!("peers-{}-p{partitions}-{}", runner.slug(), std::process::id());
    let output = format!("{id}-counts");
    let run_dir = dir.join(&id);
    std::fs::create_dir_all(&run_dir)?;
    let seconds = match runner {
        Runner::Native => {
            let repartition = format!("{id}-repartition");
            broker.create_topic(&repartition, partitions)?;
            let topics = native::Topics { input: &input, repartition: &repartition, output: &output };
            let config = broker.config();
            measure(broker, &output, partitions, data, |c| native::run(&config, &topics, &id, c))
        }
        Runner::Wasp { threads } => {
            let manifest = wasp_manifest(&run_dir, &id, &broker.bootstrap, &input, &output, threads)?;
            measure(broker, &output, partitions, data, |c| {
                let prepared = app::prepare(&manifest, wasp_host::wasm::default_cache_dir())?;
                let options = LocalOptions::default();
                prepared.reset_local_state(&options)?;
                c.ready();
                prepared.run(&options, c.stop_flag()).map(drop)
            })
        }
        Runner::Quix => {
            let (python, _) = python.as_ref().map_err(|e| anyhow!("Quix Streams is not available: {e:#}"))?;
            let q = quix::QuixRun {
                python,
                bootstrap: &broker.bootstrap,
                input: &input,
                output: &output,
                group: &id,
                dir: &run_dir,
            };
            measure(broker, &output, partitions, data, |c| quix::run(&q, c))
        }
    };
    // Each run's topics go once it is done, so the broker's memory holds one run at a time.
    if let Err(e) = broker.delete_topics_containing(&id) {
        println!("    (could not delete the run's topics: {e:#})");
    }
    let _ = std::fs::remove_dir_all(&run_dir);
    Ok(data.words as f64 / seconds?)
}

/// A row of the table: a runner's words/s on each topic.
struct Row {
    label: String,
    rates: Vec<Result<f64>>,
    /// Left out by `WASP_PEERS_SKIP` (its cells are errors, but not failures).
    skipped: bool,
}

impl Row {
    fn cell(&self, col: usize) -> String {
        match &self.rates[col] {
            Ok(v) => thousands(*v as usize),
            Err(_) if self.skipped => "skipped".to_owned(),
            Err(_) => "FAILED".to_owned(),
        }
    }
}

/// Runs every runner on both topics and prints the figures; fails if any run failed.
pub fn run(broker: &Broker, dir: &Path, data: &WordData, skip_quix: bool) -> Result<()> {
    let python = if skip_quix { Err(anyhow!("skipped (WASP_PEERS_SKIP)")) } else { quix::python() };
    let quix_label = match &python {
        Ok((_, v)) => format!("Quix Streams {v} (Python, RocksDB state)"),
        Err(_) => "Quix Streams 3.28 (Python, RocksDB state)".to_owned(),
    };
    for p in PARTITIONS {
        let topic = format!("peers-lines-p{p}");
        broker.create_topic(&topic, p)?;
        let s = broker.produce_lines(&topic, &data.lines)?;
        println!("  produced {} lines to {topic} ({p} partition(s)) in {s:.1} s", thousands(data.lines.len()));
    }

    let mut rows: Vec<Row> = Runner::ALL
        .iter()
        .map(|r| Row {
            label: match r {
                Runner::Native => "native Rust (rdkafka, HashMap; split | count threads)".to_owned(),
                Runner::Wasp { threads } => format!("wasp, threads = {threads}"),
                Runner::Quix => quix_label.clone(),
            },
            rates: Vec::new(),
            skipped: matches!(r, Runner::Quix) && skip_quix,
        })
        .collect();
    for p in PARTITIONS {
        for (runner, row) in Runner::ALL.into_iter().zip(&mut rows) {
            if row.skipped {
                row.rates.push(Err(anyhow!("skipped (WASP_PEERS_SKIP)")));
                continue;
            }
            let r = run_one(broker, dir, data, runner, p, &python);
            match &r {
                Ok(v) => {
                    println!("  {:<56} {p} partition(s): {} words/s, counts checked", row.label, thousands(*v as usize))
                }
                Err(e) => println!("  {:<56} {p} partition(s): FAILED: {e:#}", row.label),
            }
            row.rates.push(r);
        }
    }

    println!();
    println!(
        "word count on nisshi: {} lines, {} words, {} distinct; words/s from ready to the last count",
        thousands(data.lines.len()),
        thousands(data.words),
        thousands(VOCABULARY)
    );
    println!("  {:<56} {:>13} {:>13}", "", "1 partition", "4 partitions");
    for row in &rows {
        println!("  {:<56} {:>13} {:>13}", row.label, row.cell(0), row.cell(1));
    }
    // wasp's figure for the ratios: the faster of its two thread settings on each topic.
    let rate = |i: usize, col: usize| rows[i].rates[col].as_ref().ok().copied();
    let wasp_best = |col: usize| -> Option<(f64, usize)> {
        [(rate(1, col), 1), (rate(2, col), 2)]
            .into_iter()
            .filter_map(|(r, t)| Some((r?, t)))
            .max_by(|a, b| a.0.total_cmp(&b.0))
    };
    let ratio = |col: usize, peer: usize| Some(wasp_best(col)?.0 / rate(peer, col)?);
    let cell = |r: Option<f64>| r.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.2}×"));
    println!(
        "  {:<56} {:>13} {:>13}",
        "wasp/Quix (wasp's faster thread setting)",
        cell(ratio(0, 3)),
        cell(ratio(1, 3))
    );
    println!("  {:<56} {:>13} {:>13}", "wasp/native", cell(ratio(0, 0)), cell(ratio(1, 0)));

    let verdict = |r: Option<f64>, target: f64| match r {
        Some(r) if r >= target => format!("{r:.2}×: met"),
        Some(r) => format!("{r:.2}×: NOT met"),
        None => "cannot be judged (a run failed or was skipped)".to_owned(),
    };
    let threads = wasp_best(1).map_or_else(|| "n/a".to_owned(), |(_, t)| t.to_string());
    println!("targets, 4 partitions, the same run (wasp at threads = {threads}):");
    println!("  wasp ≥ {QUIX_TARGET}× Quix Streams: {}", verdict(ratio(1, 3), QUIX_TARGET));
    println!("  wasp ≥ {NATIVE_TARGET}× native: {}", verdict(ratio(1, 0), NATIVE_TARGET));

    let failed: Vec<String> = rows
        .iter()
        .filter(|row| !row.skipped)
        .flat_map(|row| row.rates.iter().zip(PARTITIONS).filter_map(move |(r, p)| Some((row, r.as_ref().err()?, p))))
        .map(|(row, e, p)| format!("{} on {p} partition(s): {e:#}", row.label))
        .collect();
    if !failed.is_empty() {
        bail!("word-count runs failed:\n  {}", failed.join("\n  "));
    }
    Ok(())
}
