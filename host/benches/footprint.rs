//! Latency and footprint: the time from `wasp run` to its first output with five plugins
//! loaded from the compiled cache; and on the broker, the word count's peak RSS and peak rate,
//! then its p50/p99 end-to-end latency (input record's timestamp, set when it is produced, to
//! its count consumed from the output topic) at half that rate. Each runs the `wasp` binary
//! as a child process, as a user would.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use wasp_host::io::kafka::client_config;

/// The `wasp` binary beside this one.
fn wasp_bin() -> Result<PathBuf> {
    let me = std::env::current_exe().context("finding this executable")?;
    let bin = me.with_file_name("wasp");
    if !bin.is_file() {
        bail!("{} is missing: build it with `cargo build --release --bin wasp`", bin.display());
    }
    Ok(bin)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Time from spawning `wasp run` to its first line of output, five plugins from the cache.
pub fn start_to_first_output(dir: &Path, plugins: &Path) -> Result<()> {
    let input = dir.join("startup.txt");
    std::fs::write(&input, "hello wasp\nsecond line\n")?;
    let p = plugins.display();
    let manifest = dir.join("startup.toml");
    std::fs::write(
        &manifest,
        format!(
            r#"version = 1
[application]
id = "bench-startup"
state_dir = "{state}"
[streams.lines]
file = "{input}"
[plugins.split-words]
path = "{p}/split-words.wasm"
[plugins.keep]
path = "{p}/bench-identity.wasm"
[plugins.upper]
path = "{p}/test-kit.wasm"
[plugins.seen]
path = "{p}/test-kit.wasm"
[plugins.word-key]
path = "{p}/word-key.wasm"
[pipelines.p]
from = "lines"
to = "out"
steps = [
  {{ op = "flat_map_values", plugin = "split-words" }},
  {{ op = "filter", plugin = "keep" }},
  {{ op = "map_values", plugin = "upper" }},
  {{ op = "peek", plugin = "seen" }},
  {{ op = "group_by", plugin = "word-key" }},
  {{ op = "count" }},
]
"#,
            state = dir.join("startup-state").display(),
            input = input.display(),
        ),
    )?;
    let bin = wasp_bin()?;
    let mut times = Vec::new();
    // The first run fills the compiled cache; the others load from it.
    for round in 0..6 {
        let t = Instant::now();
        let mut child = Command::new(&bin)
            .args(["run", "--reset"])
            .arg(&manifest)
            .env("WASP_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting wasp")?;
        let stdout = child.stdout.take().context("wasp's stdout")?;
        let mut first = String::new();
        BufReader::new(stdout).read_line(&mut first)?;
        let took = t.elapsed();
        child.wait()?;
        if first.is_empty() {
            bail!("wasp printed nothing");
        }
        if round > 0 {
            times.push(took);
        }
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "  {:<52} {:>8.0} ms  (median of {}; target <= 1000 ms: {})",
        "start to first output, 5 plugins from the cache",
        median.as_secs_f64() * 1e3,
        times.len(),
        if median <= Duration::from_secs(1) { "met" } else { "NOT met" }
    );
    Ok(())
}

/// The word count on the broker from `lines_topic` to `<id>-out`, its fetches short (the
/// latency run needs them).
fn broker_manifest(dir: &Path, plugins: &Path, bootstrap: &str, id: &str, lines_topic: &str) -> Result<PathBuf> {
    let output = format!("{id}-out");
    let properties = [("fetch.wait.max.ms", "5")];
    let wc = crate::util::BrokerWordCount {
        id,
        bootstrap,
        input: lines_topic,
        output: &output,
        threads: 2,
        properties: &properties,
    };
    wc.write(dir, plugins)
}

/// The peak resident set of a running process, from `/proc`.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// A process's resident memory by where it lives, from `/proc/PID/smaps`, in MiB.
#[derive(Debug, Default, Clone, Copy)]
struct Resident {
    total: f64,
    /// The binary's and the shared libraries' code and data (file-backed mappings).
    code: f64,
    /// glibc's heaps: `[heap]` and the per-thread arenas (anonymous mappings aligned to
    /// glibc's 64 MiB heap size): what RocksDB and librdkafka allocate (C and C++ code calls
    /// `malloc`, not Rust's allocator).
    glibc: f64,
    /// mimalloc's arenas (anonymous mappings of 256 MiB and more): what Rust allocates.
    rust: f64,
    /// Everything else: Wasm linear memories, thread stacks, wasmtime's code.
    other: f64,
}

fn resident(pid: u32) -> Option<Resident> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let mut r = Resident::default();
    let mut kind = 0u8;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16))
        {
            let name = fields.nth(4).unwrap_or("");
            kind = if name.starts_with('/') {
                0
            } else if name == "[heap]" || (name.is_empty() && a % (64 << 20) == 0 && b - a <= 64 << 20) {
                1
            } else if name.is_empty() && b - a >= 256 << 20 {
                2
            } else {
                3
            };
        } else if first == "Rss:" {
            let mib = fields.next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 1024.0;
            r.total += mib;
            match kind {
                0 => r.code += mib,
                1 => r.glibc += mib,
                2 => r.rust += mib,
                _ => r.other += mib,
            }
        }
    }
    Some(r)
}

/// `wasp run manifest`, quiet.
fn spawn_wasp(manifest: &Path) -> Result<Child> {
    let mut c = Command::new(wasp_bin()?);
    c.arg("run").arg(manifest).env("WASP_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::null());
    c.spawn().context("starting wasp")
}

fn stop(mut child: Child) -> Result<()> {
    // SIGTERM: the run commits and leaves the group.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let t = Instant::now();
    while child.try_wait()?.is_none() {
        if t.elapsed() > Duration::from_secs(30) {
            child.kill()?;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Peak RSS and peak rate of the broker word count over `lines`; then latency at half rate.
pub fn on_broker(dir: &Path, plugins: &Path, bootstrap: &str, lines: &[String]) -> Result<()> {
    let config = client_config(bootstrap, &BTreeMap::new());
    let words: usize = lines.iter().map(|l| l.split_whitespace().count()).sum();
    let topics: Vec<(String, i32, bool)> = ["foot-lines", "foot-live", "bench-foot-out", "bench-live-out"]
        .iter()
        .map(|t| ((*t).to_owned(), 4, false))
        .collect();
    wasp_host::io::kafka::ensure_topics(&config, &topics)?;
    let producer: BaseProducer = config.clone().set("linger.ms", "1").create()?;
    for (i, l) in lines.iter().enumerate() {
        let key = i.to_string();
        crate::bench_state::send(&producer, BaseRecord::to("foot-lines").key(key.as_str()).payload(l.as_str()));
    }
    producer.flush(Duration::from_secs(60))?;

    // Peak: everything is there; how fast is it counted, and how much memory does it take?
    let watcher: BaseConsumer = config.clone().set("group.id", "bench-foot-watch").create()?;
    let outputs = |topic: &str| -> Result<i64> {
        let mut total = 0;
        for p in 0..4 {
            let (lo, hi) = watcher.fetch_watermarks(topic, p, Duration::from_secs(5))?;
            total += hi - lo;
        }
        Ok(total)
    };
    let manifest = broker_manifest(dir, plugins, bootstrap, "bench-foot", "foot-lines")?;
    let child = spawn_wasp(&manifest)?;
    let pid = child.id();
    let t = Instant::now();
    let mut peak: f64 = 0.0;
    // Where the memory was when the most was resident (of the samples taken).
    let mut at_peak = Resident::default();
    let mut sample = |peak: &mut f64| {
        *peak = peak.max(peak_rss_mib(pid).unwrap_or(0.0));
        if let Some(r) = resident(pid)
            && r.total > at_peak.total
        {
            at_peak = r;
        }
    };
    while (outputs("bench-foot-out")? as usize) < words {
        sample(&mut peak);
        if t.elapsed() > Duration::from_secs(600) {
            stop(child)?;
            bail!("the footprint run did not count every word");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let seconds = t.elapsed().as_secs_f64();
    sample(&mut peak);
    stop(child)?;
    let rate = words as f64 / seconds;
    println!(
        "  {:<52} {:>8.0} MiB  (target <= 200 MiB: {}; {:.2} Mwords/s, process start included)",
        "peak RSS, broker word count",
        peak,
        if peak <= 200.0 { "met" } else { "NOT met" },
        rate / 1e6
    );
    let r = at_peak;
    println!(
        "    at the largest sample ({:.0} MiB): glibc heaps (librdkafka, RocksDB) {:.0} MiB; Rust heap (mimalloc) {:.0} MiB; \
         code and data {:.0} MiB; other (Wasm memories, stacks) {:.0} MiB",
        r.total, r.glibc, r.rust, r.code, r.other
    );

    // Latency at half the peak rate: lines are produced at a steady pace, each stamped with
    // the time it is produced; each count update carries its line's timestamp.
    let manifest = broker_manifest(dir, plugins, bootstrap, "bench-live", "foot-live")?;
    let child = spawn_wasp(&manifest)?;
    let reader: BaseConsumer = config
        .clone()
        .set("group.id", "bench-live-reader")
        .set("auto.offset.reset", "latest")
        .set("fetch.wait.max.ms", "1")
        .create()?;
    reader.subscribe(&["bench-live-out"])?;
    // Let wasp and the reader join their groups before the clock starts.
    let t = Instant::now();
    while reader.assignment().map(|a| a.count()).unwrap_or(0) < 4 && t.elapsed() < Duration::from_secs(30) {
        reader.poll(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3));
    let lines_per_s = rate / 2.0 / 8.0;
    let run = Duration::from_secs(5);
    let total_lines = (lines_per_s * run.as_secs_f64()) as usize;
    let mut latencies: Vec<i64> = Vec::with_capacity(total_lines * 8);
    let started = Instant::now();
    let mut sent = 0usize;
    while sent < total_lines || started.elapsed() < run + Duration::from_secs(2) {
        let due = ((started.elapsed().as_secs_f64() * lines_per_s) as usize).min(total_lines);
        while sent < due {
            let l = &lines[sent % lines.len()];
            let key = sent.to_string();
            crate::bench_state::send(
                &producer,
                BaseRecord::to("foot-live").key(key.as_str()).payload(l.as_str()).timestamp(now_ms()),
            );
            sent += 1;
        }
        producer.poll(Duration::ZERO);
        while let Some(m) = reader.poll(Duration::from_micros(200)) {
            let m = m?;
            if let Some(ts) = m.timestamp().to_millis() {
                latencies.push(now_ms() - ts);
            }
        }
        if started.elapsed() > run + Duration::from_secs(30) {
            break;
        }
    }
    stop(child)?;
    if latencies.is_empty() {
        bail!("no output was read in the latency run");
    }
    latencies.sort_unstable();
    let q = |f: f64| latencies[((latencies.len() - 1) as f64 * f) as usize];
    println!(
        "  {:<52} {:>5} / {} ms  (target p99 <= 10 ms: {}; {} updates at {:.0} lines/s)",
        "end-to-end latency p50 / p99, half the peak rate",
        q(0.5),
        q(0.99),
        if q(0.99) <= 10 { "met" } else { "NOT met" },
        latencies.len(),
        lines_per_s
    );
    Ok(())
}
