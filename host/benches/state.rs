//! `make bench`, the state figures: word count in local mode against a native Rust word count,
//! an aggregate through a plugin against the built-in count, and on a real broker (nisshi, if
//! it is installed) word-count throughput and the restore rate of a store from its changelog.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use wasp_host::app::{self, LocalOptions};
use wasp_host::io::ChangelogReader;
use wasp_host::io::kafka::{KafkaChangelogReader, client_config};
use wasp_host::state::{Store, StoreKind, StoreSpec};

const VOCABULARY: usize = 1000;
const WORDS_PER_LINE: usize = 8;

fn line(n: usize) -> String {
    (0..WORDS_PER_LINE)
        .map(|j| format!("w{}", (n * 31 + j * 17 + j * j * 7) % VOCABULARY))
        .collect::<Vec<_>>()
        .join(" ")
}

fn plugins_dir() -> Result<std::path::PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/build").canonicalize()?;
    Ok(d)
}

/// The native baseline: split, count in a map, and format each update as the sink would.
fn native_wordcount(lines: &[String]) -> usize {
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut out = 0usize;
    for l in lines {
        for w in l.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
            let c = counts.entry(w.to_lowercase()).or_default();
            *c += 1;
            out += format!("{w}\t{c}").len();
        }
    }
    out
}

/// The word count (`op = "count"`; `"count-cached"` with the record cache on) or a keyed
/// aggregate, on `threads` stream threads.
fn wordcount_manifest(
    dir: &Path,
    input: &Path,
    kafka: Option<&str>,
    op: &str,
    threads: usize,
    partitions: usize,
) -> Result<std::path::PathBuf> {
    let plugins = plugins_dir()?;
    let (app, source) = match kafka {
        Some(b) => (
            format!(
                "[application.kafka]\nbootstrap_servers = \"{b}\"\n[application.kafka.properties]\n\"auto.offset.reset\" = \"earliest\"\n"
            ),
            String::new(),
        ),
        None => (String::new(), format!("file = \"{}\"\npartitions = {partitions}\n", input.display())),
    };
    let steps = match op {
        "count" => {
            r#"{ op = "flat_map_values", plugin = "split-words" }, { op = "group_by", plugin = "word-key" }, { op = "count" },"#
        }
        "count-cached" => {
            r#"{ op = "flat_map_values", plugin = "split-words" }, { op = "group_by", plugin = "word-key" }, { op = "count", store = "counts" },"#
        }
        _ => r#"{ op = "group_by_key" }, { op = "aggregate", plugin = "kit" },"#,
    };
    let stores = if op == "count-cached" { "[stores.counts]\ncaching = true\n" } else { "" };
    let text = format!(
        r#"version = 1
[application]
id = "bench-{op}-t{threads}-p{partitions}"
threads = {threads}
state_dir = "{state}"
{app}
[streams.lines]
topic = "bench-lines"
{source}
[plugins.split-words]
path = "{p}/split-words.wasm"
[plugins.word-key]
path = "{p}/word-key.wasm"
[plugins.kit]
path = "{p}/test-kit.wasm"
{stores}
[pipelines.p]
from = "lines"
to = "bench-out"
steps = [ {steps} ]
"#,
        state = dir.join("state").display(),
        p = plugins.display(),
    );
    let path = dir.join(format!("{op}-t{threads}-p{partitions}.toml"));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Runs a local manifest over its input; returns the seconds the run took.
pub(crate) fn run_local(manifest: &Path, out: &Path) -> Result<(f64, u64)> {
    let prepared = app::prepare(manifest, wasp_host::wasm::default_cache_dir())?;
    let options = LocalOptions {
        outputs: [("bench-out".to_owned(), out.to_path_buf())].into_iter().collect(),
        ..Default::default()
    };
    prepared.reset_local_state(&options)?;
    let t = Instant::now();
    let stats = prepared.run(&options, &AtomicBool::new(false))?;
    Ok((t.elapsed().as_secs_f64(), stats.records_in))
}

/// A scratch directory removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> Result<Self> {
        let d = std::env::temp_dir().join(format!("wasp-bench-{}", std::process::id()));
        std::fs::create_dir_all(&d)?;
        Ok(Self(d))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(lines_n: usize) -> Result<()> {
    let dir = Scratch::new()?;
    let lines: Vec<String> = (0..lines_n).map(line).collect();
    let words = lines_n * WORDS_PER_LINE;
    let input = dir.path().join("lines.txt");
    std::fs::write(&input, lines.join("\n") + "\n")?;

    println!();
    println!("state: word count over {lines_n} lines ({words} words, {VOCABULARY} distinct), local mode, RocksDB");
    let t = Instant::now();
    std::hint::black_box(native_wordcount(&lines));
    let native = t.elapsed().as_secs_f64();
    let rate = |s: f64| words as f64 / s / 1e6;
    // Seconds of a local word count (`op`) on `threads` threads with the file read as
    // `partitions` partitions.
    let seconds = |op: &str, threads: usize, partitions: usize| -> Result<f64> {
        let manifest = wordcount_manifest(dir.path(), &input, None, op, threads, partitions)?;
        Ok(run_local(&manifest, &dir.path().join("out.jsonl"))?.0)
    };
    let wasp_s = [seconds("count", 1, 1)?, seconds("count", 2, 1)?];
    // The same with the file read as two partitions: each stage is two tasks, which the two
    // threads share, instead of one stage per thread.
    let parted_s = [seconds("count", 1, 2)?, seconds("count", 2, 2)?];
    let cached_s = seconds("count-cached", 1, 1)?;
    println!(
        "  {:<52} {:>8.2} Mwords/s {:>7}",
        "native Rust (split, HashMap, format each update)",
        rate(native),
        "1.00×"
    );
    // One row: the rate, its ratio to native, and a note.
    let row = |label: &str, s: f64, note: String| {
        println!("  {label:<52} {:>8.2} Mwords/s {:>6.3}×  ({note})", rate(s), native / s);
    };
    row("wasp, local mode, 1 thread", wasp_s[0], "repartition, RocksDB, JSON-lines output".into());
    row("wasp, local mode, threads = 2", wasp_s[1], format!("{:.2}× 1 thread", wasp_s[0] / wasp_s[1]));
    row(
        "wasp, local mode, 1 thread, record cache on",
        cached_s,
        "each word's updates collapse until the commit".into(),
    );
    row("wasp, local mode, 1 thread, partitions = 2", parted_s[0], "two tasks per stage".into());
    row(
        "wasp, local mode, threads = 2, partitions = 2",
        parted_s[1],
        format!(
            "{:.2}× 1 thread; {:.2}× 1 thread with partitions = 2",
            wasp_s[0] / parted_s[1],
            parted_s[0] / parted_s[1]
        ),
    );
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    let best2 = wasp_s[1].min(parted_s[1]);
    println!(
        "  target: 1 thread >= 1.2 Mwords/s: {}; threads = 2 >= 1.7x 1 thread: {} ({:.2}x)",
        met(rate(wasp_s[0]) >= 1.2),
        met(wasp_s[0] / best2 >= 1.7),
        wasp_s[0] / best2
    );

    // An aggregate through a plugin against the built-in count, on the same keyed input.
    let keyed = dir.path().join("keyed.jsonl");
    let body: String = (0..words)
        .map(|i| format!("{{\"key\":\"k{}\",\"value\":\"{}\",\"timestamp\":{i}}}\n", i % VOCABULARY, i % 10))
        .collect();
    std::fs::write(&keyed, body)?;
    let mut rates = BTreeMap::new();
    for op in ["count", "aggregate"] {
        let m = wordcount_manifest(dir.path(), &keyed, None, op, 1, 1)?;
        let text = std::fs::read_to_string(&m)?
            .replace(&format!("file = \"{}\"", keyed.display()), &format!("file = \"{}\"\nfile_format = \"jsonl\"", keyed.display()))
            .replace(r#"{ op = "flat_map_values", plugin = "split-words" }, { op = "group_by", plugin = "word-key" }, { op = "count" },"#, r#"{ op = "group_by_key" }, { op = "count" },"#);
        std::fs::write(&m, text)?;
        let (s, n) = run_local(&m, &dir.path().join(format!("{op}.out")))?;
        rates.insert(op, n as f64 / s);
    }
    println!(
        "  group_by_key + count (built in): {:.2} Mrecords/s; + aggregate (sum plugin): {:.2} Mrecords/s = {:.2}× the built-in",
        rates["count"] / 1e6,
        rates["aggregate"] / 1e6,
        rates["aggregate"] / rates["count"]
    );

    println!();
    println!("latency and footprint");
    crate::bench_footprint::start_to_first_output(dir.path(), &plugins_dir()?)?;
    match broker() {
        Ok(Some((mut child, bootstrap))) => {
            let r = on_broker(dir.path(), &input, &lines, &bootstrap, words)
                .and_then(|()| crate::bench_footprint::on_broker(dir.path(), &plugins_dir()?, &bootstrap, &lines));
            let _ = child.kill();
            let _ = child.wait();
            r?;
        }
        Ok(None) => println!("  broker: nisshi not installed (make setup installs it); broker figures skipped"),
        Err(e) => println!("  broker: could not start nisshi: {e:#}"),
    }
    Ok(())
}

/// Starts nisshi on a free port, if it is installed.
fn broker() -> Result<Option<(Child, String)>> {
    let bin = std::env::var_os("WASP_NISSHI").map(std::path::PathBuf::from).or_else(|| {
        let home = std::env::var_os("HOME")?;
        let p = Path::new(&home).join(".cargo/bin/nisshi");
        p.exists().then_some(p)
    });
    let Some(bin) = bin else { return Ok(None) };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(bin)
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://nisshi/", "--group-initial-rebalance-delay", "0s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting nisshi")?;
    let bootstrap = format!("127.0.0.1:{port}");
    let t = Instant::now();
    while std::net::TcpStream::connect(&bootstrap).is_err() {
        if t.elapsed() > Duration::from_secs(10) {
            bail!("nisshi did not listen within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Some((child, bootstrap)))
}

/// Entries in the changelog the restore rate is measured on.
const RESTORE_ENTRIES: usize = 200_000;

/// Sends one record, waiting while the producer's queue is full.
pub fn send(producer: &BaseProducer, mut record: BaseRecord<'_, str, str>) {
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, back)) => {
                producer.poll(Duration::from_millis(5));
                record = back;
            }
        }
    }
}

fn on_broker(dir: &Path, input: &Path, lines: &[String], bootstrap: &str, words: usize) -> Result<()> {
    let config = client_config(bootstrap, &BTreeMap::new());
    wasp_host::io::kafka::ensure_topics(
        &config,
        &[("bench-lines".to_owned(), 4, false), ("bench-out".to_owned(), 4, false)],
    )?;
    let producer: BaseProducer = config.create()?;
    for (i, l) in lines.iter().enumerate() {
        let key = i.to_string();
        send(&producer, BaseRecord::to("bench-lines").key(key.as_str()).payload(l.as_str()));
    }
    producer.flush(Duration::from_secs(60))?;

    let watcher: BaseConsumer = config.clone().set("group.id", "bench-watch").create()?;
    let outputs = || -> Result<i64> {
        let mut total = 0;
        for p in 0..4 {
            let (lo, hi) = watcher.fetch_watermarks("bench-out", p, Duration::from_secs(5))?;
            total += hi - lo;
        }
        Ok(total)
    };
    let mut at_least_once = 0.0;
    for threads in [1, 2] {
        let manifest = wordcount_manifest(dir, input, Some(bootstrap), "count", threads, 1)?;
        let seconds = broker_run(&manifest, words, &outputs)?;
        if threads == 1 {
            at_least_once = seconds;
        }
        println!(
            "  {:<52} {:>8.2} Mwords/s   (nisshi on 127.0.0.1, 4 partitions, changelog + repartition topics)",
            format!("wasp on a broker, threads = {threads}"),
            words as f64 / seconds / 1e6
        );
    }
    // Exactly-once output (runtime::eos): lineage headers, bounds committed with the offsets,
    // and its default commit interval (100 ms, as in Kafka Streams), then at 1 s as above.
    let plain = wordcount_manifest(dir, input, Some(bootstrap), "count", 1, 1)?;
    let text = std::fs::read_to_string(&plain)?;
    for (interval, label) in [(None, "100 ms"), (Some(1000), "1 s")] {
        let mut eos = text.replacen("[application]\n", "[application]\nprocessing_guarantee = \"exactly_once\"\n", 1);
        if let Some(ms) = interval {
            eos = eos.replacen("[application]\n", &format!("[application]\ncommit_interval_ms = {ms}\n"), 1);
        }
        let id = format!("id = \"bench-count-t1-p1-eos-{}\"", label.replace(' ', ""));
        let eos = eos.replacen("id = \"bench-count-t1-p1\"", &id, 1);
        let manifest = dir.join(format!("count-eos-{}.toml", label.replace(' ', "")));
        std::fs::write(&manifest, eos)?;
        let seconds = broker_run(&manifest, words, &outputs)?;
        println!(
            "  {:<52} {:>8.2} Mwords/s   ({:.2}x at_least_once's throughput, threads = 1)",
            format!("  exactly_once, commits every {label}"),
            words as f64 / seconds / 1e6,
            at_least_once / seconds
        );
    }
    restore_rate(dir, &config, &producer)
}

/// Runs a broker manifest until `outputs` grew by `words`; returns the seconds it took.
fn broker_run(manifest: &Path, words: usize, outputs: &dyn Fn() -> Result<i64>) -> Result<f64> {
    let prepared = app::prepare(manifest, wasp_host::wasm::default_cache_dir())?;
    let options = LocalOptions::default();
    prepared.reset_local_state(&options)?;
    let stop = AtomicBool::new(false);
    let base = outputs()?;
    let t = Instant::now();
    let mut seconds = 0.0;
    std::thread::scope(|s| -> Result<()> {
        let runner = s.spawn(|| prepared.run(&options, &stop));
        loop {
            let total = outputs()? - base;
            if total as usize >= words {
                seconds = t.elapsed().as_secs_f64();
                break;
            }
            if t.elapsed() > Duration::from_secs(600) || runner.is_finished() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        match runner.join() {
            Ok(r) => r.map(drop),
            Err(_) => bail!("the wasp run panicked"),
        }
    })?;
    if seconds == 0.0 {
        bail!("the broker run did not produce every count");
    }
    Ok(seconds)
}

/// The restore rate of a store from its changelog.
fn restore_rate(dir: &Path, config: &rdkafka::ClientConfig, producer: &BaseProducer) -> Result<()> {
    // The restore rate: a changelog of RESTORE_ENTRIES distinct keys (a commit marker every
    // thousand, as stores write them) read back into an empty RocksDB store.
    let topic = "bench-restore-changelog";
    wasp_host::io::kafka::ensure_topics(config, &[(topic.to_owned(), 1, true)])?;
    let marker = serde_json::json!({"positions": {}, "stream_time": null}).to_string();
    let mut headers = rdkafka::message::OwnedHeaders::new();
    headers = headers.insert(rdkafka::message::Header { key: wasp_host::state::MARKER_HEADER, value: None::<&[u8]> });
    for i in 0..RESTORE_ENTRIES {
        let key = format!("\0key-{i:08}");
        let value = format!("{:016}", i);
        send(producer, BaseRecord::to(topic).partition(0).key(key.as_str()).payload(value.as_str()));
        if i % 1000 == 999 {
            send(
                producer,
                BaseRecord::to(topic).partition(0).key("").payload(marker.as_str()).headers(headers.clone()),
            );
        }
    }
    producer.flush(Duration::from_secs(60))?;
    let mut reader = KafkaChangelogReader::new(config, "bench-restore")?;
    let spec = StoreSpec {
        source_topic: None,
        history_ms: None,
        latest_by_time: false,
        name: "restore".to_owned(),
        kind: StoreKind::KeyValue,
        persistent: true,
        changelog: true,
        ttl_ms: None,
        cache_bytes: 10 << 20,
        caching: false,
    };
    let mut store = Store::open(spec, Some(&dir.join("restore")), Some((topic.to_owned(), 0)))?;
    let t = Instant::now();
    let mut restore = store.begin_restore();
    reader.read(topic, 0, (0, None), &mut |o, r| restore.apply(o, r))?;
    let applied = restore.finish()?;
    let s = t.elapsed().as_secs_f64();
    println!(
        "  {:<52} {:>8.0} entries/s ({applied} entries from the broker into RocksDB)",
        "restore from a changelog",
        applied as f64 / s
    );
    Ok(())
}
