//! The click-stream example against a real broker (nisshi, see `broker.rs`): the `wasp` binary
//! reads `raw-clicks`, writes the branches, the dead letters and, through the `product-views`
//! topic, the product interests. The tests kill and restart it and check at-least-once: no
//! record is ever missing, bots appear nowhere, and a clean stop commits everything it did.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::broker::{Broker, Process, Reader, Received};

const INPUT: &str = "raw-clicks";
const PRODUCT_VIEWS: &str = "product-views";
const CHECKOUT: &str = "checkout-clicks";
const OTHER: &str = "other-clicks";
const INTEREST: &str = "product-interest";
const BAD: &str = "clickstream-bad-clicks";
const OUTPUTS: [&str; 5] = [PRODUCT_VIEWS, CHECKOUT, OTHER, INTEREST, BAD];
const PARTITIONS: i32 = 4;

/// Failure bounds only, generous for a busy 2-core machine; nothing asserts speed.
/// With a cold cache the Python plugin compiles first: about 5 s in a release build, but
/// 150 s was measured for a debug build (`make test`) on a loaded 2-core machine.
const COMPILE_TIMEOUT: Duration = Duration::from_secs(900);
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(180);
const COMPLETE_TIMEOUT: Duration = Duration::from_secs(180);
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

const HUMAN_AGENTS: [&str; 3] = ["Mozilla/5.0 (X11; Linux x86_64)", "Mozilla/5.0 (Macintosh)", "Mozilla/5.0 (iPhone)"];
const BOT_AGENTS: [&str; 4] = [
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
    "curl/8.5.0",
    "AhrefsSpider/1.0",
    "Mozilla/5.0 (compatible; SomeCrawler/3.1)",
];

/// What input click `n` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A product page; `also` adds `?also=x<n>,y<n>` (two more interest records).
    Product {
        also: bool,
    },
    Checkout,
    Other,
    Bot,
    /// A line click-parse cannot read: dead-lettered.
    Garbage,
}

fn kind(n: u32) -> Kind {
    if n % 50 == 49 {
        return Kind::Garbage;
    }
    match n % 8 {
        0 => Kind::Product { also: true },
        1 | 2 => Kind::Product { also: false },
        3 | 4 => Kind::Checkout,
        5 | 6 => Kind::Other,
        _ => Kind::Bot,
    }
}

fn user(n: u32) -> String {
    format!("u{}", n % 97)
}

/// The page of click `n`; unique per click, so every output names the click it came from.
fn path(n: u32) -> String {
    match kind(n) {
        Kind::Product { also: true } => format!("/products/{n}?also=x{n},y{n}"),
        Kind::Product { also: false } | Kind::Bot => format!("/products/{n}"),
        Kind::Checkout if n.is_multiple_of(2) => format!("/cart?id={n}"),
        Kind::Checkout => format!("/checkout?id={n}"),
        Kind::Other if n.is_multiple_of(2) => format!("/search?q=item{n}"),
        Kind::Other => format!("/about?id={n}"),
        Kind::Garbage => String::new(),
    }
}

/// The access-log line of click `n`, keyed by user.
fn line(n: u32) -> (Option<String>, String) {
    let k = kind(n);
    if k == Kind::Garbage {
        return (Some(user(n)), format!("garbage line {n}"));
    }
    let method = if k == Kind::Checkout && n % 2 == 1 { "POST" } else { "GET" };
    let agent = if k == Kind::Bot {
        BOT_AGENTS[(n as usize / 8) % BOT_AGENTS.len()]
    } else {
        HUMAN_AGENTS[n as usize % HUMAN_AGENTS.len()]
    };
    let (h, m, s) = ((n / 3600) % 24, (n / 60) % 60, n % 60);
    (Some(user(n)), format!("2026-11-01T{h:02}:{m:02}:{s:02}Z {} {method} {} \"{agent}\"", user(n), path(n)))
}

/// The identities every output topic must hold for clicks `range`: the page for the branches,
/// the key (product id) for the interests, the line for the dead letters.
fn expected(range: std::ops::Range<u32>) -> BTreeMap<&'static str, BTreeSet<String>> {
    let mut e: BTreeMap<&str, BTreeSet<String>> = OUTPUTS.iter().map(|t| (*t, BTreeSet::new())).collect();
    let mut add = |topic: &'static str, id: String| {
        e.get_mut(topic).expect("an output topic").insert(id);
    };
    for n in range {
        match kind(n) {
            Kind::Product { also } => {
                add(PRODUCT_VIEWS, path(n));
                add(INTEREST, n.to_string());
                if also {
                    add(INTEREST, format!("x{n}"));
                    add(INTEREST, format!("y{n}"));
                }
            }
            Kind::Checkout => add(CHECKOUT, path(n)),
            Kind::Other => add(OTHER, path(n)),
            Kind::Bot => {}
            Kind::Garbage => add(BAD, line(n).1),
        }
    }
    e
}

/// The identity of an output record (see [`expected`]); checks the record's shape on the way.
fn identity(r: &Received) -> String {
    match r.topic.as_str() {
        PRODUCT_VIEWS | CHECKOUT | OTHER => {
            let v: serde_json::Value = serde_json::from_str(r.value_str()).unwrap_or_else(|e| {
                panic!("{}[{}]@{}: not JSON ({e}): {}", r.topic, r.partition, r.offset, r.value_str())
            });
            let path = v["path"].as_str().unwrap_or_else(|| panic!("no path in {v}")).to_owned();
            let category = v["category"].as_str().unwrap_or_else(|| panic!("no category in {v}"));
            let want = match r.topic.as_str() {
                PRODUCT_VIEWS => &["product"][..],
                CHECKOUT => &["checkout"][..],
                _ => &["search", "other"][..],
            };
            assert!(want.contains(&category), "{}: category `{category}` in {v}", r.topic);
            assert_eq!(Some(r.key_str()), v["user"].as_str(), "{}: the key is the user: {v}", r.topic);
            assert!(v["hour"].is_u64(), "{}: no hour in {v}", r.topic);
            path
        }
        INTEREST => {
            let v: serde_json::Value = serde_json::from_str(r.value_str())
                .unwrap_or_else(|e| panic!("{INTEREST}: not JSON ({e}): {}", r.value_str()));
            let direct = v["direct"].as_bool().unwrap_or_else(|| panic!("no `direct` in {v}"));
            assert_eq!(direct, !r.key_str().starts_with(['x', 'y']), "{INTEREST}: key {} with {v}", r.key_str());
            r.key_str().to_owned()
        }
        BAD => {
            assert_eq!(r.header("wasp.source.topic"), Some(INPUT), "dead letter headers: {:?}", r.headers);
            assert_eq!(
                r.header("wasp.error.step").map(str::is_empty),
                Some(false),
                "dead letter headers: {:?}",
                r.headers
            );
            r.value_str().to_owned()
        }
        t => panic!("a record from an unexpected topic `{t}`"),
    }
}

/// How often each identity was seen, per topic.
fn seen(records: &[Received]) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut s: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for r in records {
        *s.entry(r.topic.clone()).or_default().entry(identity(r)).or_default() += 1;
    }
    s
}

/// Reads until every expected output has come, while `wasp` runs.
fn read_complete(reader: &mut Reader, wasp: &mut Process, expected: &BTreeMap<&'static str, BTreeSet<String>>) -> bool {
    reader.read_until(COMPLETE_TIMEOUT, |r| {
        wasp.assert_running();
        complete(expected, r)
    })
}

/// Whether every expected identity has been seen.
fn complete(expected: &BTreeMap<&'static str, BTreeSet<String>>, records: &[Received]) -> bool {
    let s = seen(records);
    expected.iter().all(|(topic, ids)| s.get(*topic).is_some_and(|got| ids.iter().all(|id| got.contains_key(id))))
}

/// Asserts that the outputs are exactly `expected`, each at least once: nothing missing,
/// nothing unexpected (bots, wrong branches), and prints the duplicates per topic.
fn verify(expected: &BTreeMap<&'static str, BTreeSet<String>>, records: &[Received]) -> usize {
    let s = seen(records);
    let mut duplicates = 0;
    let mut problems = Vec::new();
    for (topic, ids) in expected {
        let empty = BTreeMap::new();
        let got = s.get(*topic).unwrap_or(&empty);
        let missing: Vec<&String> = ids.iter().filter(|id| !got.contains_key(*id)).collect();
        let unexpected: Vec<&String> = got.keys().filter(|id| !ids.contains(*id)).collect();
        let total: usize = got.values().sum();
        let dups = total - got.len();
        duplicates += dups;
        eprintln!(
            "{topic:>24}: expected {:>5}, distinct {:>5}, received {:>5} ({dups} duplicates)",
            ids.len(),
            got.len(),
            total
        );
        if !missing.is_empty() {
            problems.push(format!("{topic}: {} missing, e.g. {:?}", missing.len(), &missing[..missing.len().min(10)]));
        }
        if !unexpected.is_empty() {
            problems.push(format!(
                "{topic}: {} unexpected, e.g. {:?}",
                unexpected.len(),
                &unexpected[..unexpected.len().min(10)]
            ));
        }
        assert_eq!(got.len() + missing.len(), ids.len() + unexpected.len());
    }
    for r in records {
        for agent in BOT_AGENTS {
            if r.value_str().contains(agent) {
                problems.push(format!("a bot's click in {}[{}]@{}: {}", r.topic, r.partition, r.offset, r.value_str()));
            }
        }
    }
    assert!(problems.is_empty(), "the outputs are wrong:\n{}", problems.join("\n"));
    duplicates
}

fn plugin_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/build");
    let dir = dir.canonicalize().unwrap_or(dir);
    for p in ["click-parse", "bot-filter", "enrich", "page-is", "product-interest"] {
        let file = dir.join(format!("{p}.wasm"));
        assert!(file.is_file(), "{} is missing: build the plugins first (`make plugins`)", file.display());
    }
    dir
}

/// Writes the Kafka variant of the click-stream manifest into `dir`.
fn write_manifest(dir: &Path, broker: &Broker, batch_size: usize) -> PathBuf {
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/kafka/clickstream.toml");
    let text = std::fs::read_to_string(&template).unwrap_or_else(|e| panic!("reading {}: {e}", template.display()));
    let plugins = plugin_dir();
    let plugins = plugins.to_str().expect("a UTF-8 plugin path");
    assert!(!plugins.contains(['"', '\\']), "the plugin path {plugins} needs TOML escaping");
    let text = text
        .replace("@BOOTSTRAP@", &broker.bootstrap())
        .replace("@PLUGINS@", plugins)
        .replace("@BATCH_SIZE@", &batch_size.to_string());
    let path = dir.join("clickstream.toml");
    std::fs::write(&path, text).expect("writing the manifest");
    path
}

fn wasp_command(command: &str, manifest: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wasp"));
    c.arg(command)
        .arg(manifest)
        .env("WASP_CACHE_DIR", crate::common::cache_dir())
        .env("WASP_LOG", "info,wasmtime=warn,cranelift=warn");
    c
}

/// Compiles the plugins into the cache the tests share, once (`wasp validate`, which also
/// checks the manifest), so that the timed steps start warm and tests running at the same
/// time do not each compile them.
fn warm_cache(manifest: &Path) {
    static WARM: Mutex<bool> = Mutex::new(false);
    let mut warm = WARM.lock().unwrap_or_else(PoisonError::into_inner);
    if *warm {
        return;
    }
    let t = Instant::now();
    let mut validate = Process::spawn("wasp-validate", wasp_command("validate", manifest));
    let status = validate.wait_exit(COMPILE_TIMEOUT);
    assert!(status.success(), "`wasp validate {}` failed: {status}", manifest.display());
    eprintln!("plugins validated and cached in {:.1?}", t.elapsed());
    *warm = true;
}

pub(crate) fn start_wasp(name: &str, manifest: &Path) -> Process {
    Process::spawn(name, wasp_command("run", manifest))
}

fn produce(broker: &Broker, range: std::ops::Range<u32>) {
    let records: Vec<(Option<String>, String)> = range.map(line).collect();
    broker.produce(INPUT, &records);
}

/// A broker with the click-stream topics, a manifest for it, and a reader of the outputs.
fn setup(batch_size: usize) -> (Broker, tempfile::TempDir, PathBuf, Reader) {
    let broker = Broker::start();
    let mut topics = vec![INPUT];
    topics.extend(OUTPUTS);
    broker.create_topics(&topics, PARTITIONS);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let manifest = write_manifest(dir.path(), &broker, batch_size);
    warm_cache(&manifest);
    let reader = broker.reader(&OUTPUTS);
    (broker, dir, manifest, reader)
}

/// SIGKILL in the middle of the stream, then a restart: every click still comes out.
#[test]
fn kafka_at_least_once_across_sigkill() {
    const TOTAL: u32 = 4000;
    const FIRST: u32 = 2400;
    let started = Instant::now();
    // Small batches: a run is many batches and commits, so the kill lands between some of them.
    let (broker, _dir, manifest, mut reader) = setup(20);
    let all = expected(0..TOTAL);
    let total_outputs: usize = all.values().map(BTreeSet::len).sum();
    let first_outputs: usize = expected(0..FIRST).values().map(BTreeSet::len).sum();

    produce(&broker, 0..FIRST);
    eprintln!("setup and {FIRST} clicks produced in {:.1?}", started.elapsed());

    let mut wasp = start_wasp("wasp-1", &manifest);
    let t = Instant::now();
    let some = reader.read_until(START_TIMEOUT, |r| {
        wasp.assert_running();
        !r.is_empty()
    });
    assert!(some, "no output within {START_TIMEOUT:?}");
    eprintln!("first output {:.1?} after the start", t.elapsed());
    // Let a little more through, then kill it mid-stream.
    reader.read_until(COMPLETE_TIMEOUT, |r| {
        wasp.assert_running();
        r.len() >= 150
    });
    wasp.kill();
    let at_kill = reader.records.len();
    eprintln!(
        "SIGKILLed wasp-1 with {at_kill} outputs read ({first_outputs} expected for the first {FIRST} clicks, \
         {total_outputs} in all)"
    );
    assert!(at_kill > 0 && at_kill < total_outputs, "the kill should come after some, not all, output");

    produce(&broker, FIRST..TOTAL);
    let mut wasp = start_wasp("wasp-2", &manifest);
    let t = Instant::now();
    let done = read_complete(&mut reader, &mut wasp, &all);
    if !done {
        verify(&all, &reader.records);
        panic!("the outputs did not complete within {COMPLETE_TIMEOUT:?}");
    }
    eprintln!("outputs complete {:.1?} after the restart", t.elapsed());
    wasp.terminate();
    let status = wasp.wait_exit(EXIT_TIMEOUT);
    assert!(status.success(), "wasp-2 exited with {status} after SIGTERM");
    reader.drain(Duration::from_secs(1), Duration::from_secs(30));

    let duplicates = verify(&all, &reader.records);
    eprintln!(
        "{TOTAL} clicks, {} outputs read, {duplicates} duplicates (at-least-once), {:.1?} in all",
        reader.records.len(),
        started.elapsed()
    );
}

/// SIGTERM in the middle of the stream: wasp finishes the batch in flight, commits and exits 0;
/// a restart goes on from the committed offsets and redoes nothing that came out before.
#[test]
fn kafka_sigterm_commits_and_restart_resumes() {
    const FIRST: u32 = 1200;
    const TOTAL: u32 = 1500;
    let started = Instant::now();
    let (broker, _dir, manifest, mut reader) = setup(20);
    let first_outputs: usize = expected(0..FIRST).values().map(BTreeSet::len).sum();
    produce(&broker, 0..FIRST);

    let mut wasp = start_wasp("wasp-a", &manifest);
    let some = reader.read_until(START_TIMEOUT, |r| {
        wasp.assert_running();
        r.len() >= 100
    });
    assert!(some, "too little output within {START_TIMEOUT:?}");
    let t = Instant::now();
    wasp.terminate();
    let status = wasp.wait_exit(EXIT_TIMEOUT);
    eprintln!(
        "wasp-a exited with {status} {:.2?} after SIGTERM (sent with {} of {first_outputs} outputs read)",
        t.elapsed(),
        reader.records.len()
    );
    assert!(status.success(), "wasp-a exited with {status} after SIGTERM");
    assert!(wasp.logged("done"), "wasp-a did not report its run as done");
    reader.drain(Duration::from_secs(1), Duration::from_secs(30));
    // Everything that came out so far was committed: none of it may come out again. What
    // came out before is what lies below these end offsets.
    let ends = broker.end_offsets(&OUTPUTS);
    let below = |r: &Received| r.offset < ends.get(&(r.topic.clone(), r.partition)).copied().unwrap_or(0);
    eprintln!("wasp-a wrote {} outputs", ends.values().sum::<i64>());

    let mut wasp = start_wasp("wasp-b", &manifest);
    wasp.wait_logged("partitions assigned", START_TIMEOUT);
    produce(&broker, FIRST..TOTAL);
    let input = broker.consume(&[INPUT], TOTAL as usize, COMPLETE_TIMEOUT);
    assert_eq!(input.len(), TOTAL as usize, "the input topic holds every click produced");
    let all = expected(0..TOTAL);
    let done = read_complete(&mut reader, &mut wasp, &all);
    if !done {
        verify(&all, &reader.records);
        panic!("the outputs did not complete within {COMPLETE_TIMEOUT:?}");
    }
    let t = Instant::now();
    wasp.terminate();
    let status = wasp.wait_exit(EXIT_TIMEOUT);
    eprintln!("wasp-b exited with {status} {:.2?} after SIGTERM", t.elapsed());
    assert!(status.success(), "wasp-b exited with {status} after SIGTERM");
    reader.drain(Duration::from_secs(1), Duration::from_secs(30));
    let duplicates = verify(&all, &reader.records);

    let before_records: Vec<Received> = reader.records.iter().filter(|r| below(r)).cloned().collect();
    let before = seen(&before_records);
    let after: Vec<&Received> = reader.records.iter().filter(|r| !below(r)).collect();
    let redone: Vec<String> = after
        .iter()
        .map(|r| (r.topic.as_str(), identity(r)))
        .filter(|(topic, id)| before.get(*topic).is_some_and(|ids| ids.contains_key(id)))
        .map(|(topic, id)| format!("{topic}: {id}"))
        .collect();
    assert!(
        redone.is_empty(),
        "the restart wrote {} outputs again that came out before the SIGTERM, e.g. {:?}",
        redone.len(),
        &redone[..redone.len().min(10)]
    );
    eprintln!(
        "wasp-b wrote {} outputs, none redone; {duplicates} duplicates in all; {:.1?} in all",
        after.len(),
        started.elapsed()
    );
}

/// The `records_in` a stopped wasp reported in its `done` line.
pub(crate) fn records_in(p: &Process) -> u64 {
    p.log_lines()
        .iter()
        .filter(|l| l.contains("done"))
        .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("records_in=")?.parse().ok()))
        .unwrap_or_else(|| panic!("{} reported no records_in", p.name))
}

/// Two instances with the same application id share the partitions, as Kafka Streams
/// instances do: each is assigned some, each processes some, and together they produce every
/// output.
#[test]
fn kafka_two_instances_share_the_partitions() {
    const TOTAL: u32 = 1600;
    let (broker, _dir, manifest, mut reader) = setup(50);
    let mut x = start_wasp("wasp-x", &manifest);
    x.wait_logged("partitions assigned", START_TIMEOUT);
    let mut y = start_wasp("wasp-y", &manifest);
    y.wait_logged("partitions assigned", START_TIMEOUT);
    x.wait_logged("partitions revoked", START_TIMEOUT);
    produce(&broker, 0..TOTAL);
    let all = expected(0..TOTAL);
    let done = reader.read_until(COMPLETE_TIMEOUT, |r| {
        x.assert_running();
        y.assert_running();
        complete(&all, r)
    });
    if !done {
        verify(&all, &reader.records);
        panic!("the outputs did not complete within {COMPLETE_TIMEOUT:?}");
    }
    x.terminate();
    y.terminate();
    for p in [&mut x, &mut y] {
        let status = p.wait_exit(EXIT_TIMEOUT);
        assert!(status.success(), "{} exited with {status} after SIGTERM", p.name);
    }
    let (in_x, in_y) = (records_in(&x), records_in(&y));
    eprintln!("wasp-x read {in_x} records, wasp-y {in_y}");
    assert!(in_x > 0 && in_y > 0, "both instances process part of the input: {in_x} and {in_y}");
    reader.drain(Duration::from_secs(1), Duration::from_secs(30));
    verify(&all, &reader.records);
}

/// Partitions move while records flow: a second instance joins mid-stream, then leaves. As in
/// Kafka Streams, a task's work is committed before its partition is released to the group,
/// so its new owner starts where it stopped: under at_least_once, with no crash, nothing
/// comes out twice.
#[test]
fn kafka_partitions_that_move_between_running_instances_repeat_nothing() {
    const BACKLOG: u32 = 120_000;
    const TOTAL: u32 = 124_000;
    let (broker, _dir, manifest, mut reader) = setup(50);
    let mut x = start_wasp("wasp-mx", &manifest);
    x.wait_logged("partitions assigned", START_TIMEOUT);
    // A backlog keeps the first instance busy (its tasks always hold work not yet committed)
    // while the second joins, takes tasks, and leaves again.
    produce(&broker, 0..BACKLOG);
    let busy = reader.read_until(START_TIMEOUT, |r| {
        x.assert_running();
        r.len() >= 500
    });
    assert!(busy, "output before the second instance: {}", reader.records.len());
    let mut y = start_wasp("wasp-my", &manifest);
    // It took tasks (the wait fails the test if it does not), and runs them a while.
    y.wait_logged("task opened", START_TIMEOUT);
    std::thread::sleep(Duration::from_secs(1));
    y.terminate();
    assert!(y.wait_exit(EXIT_TIMEOUT).success(), "wasp-my stops cleanly");
    produce(&broker, BACKLOG..TOTAL);
    let all = expected(0..TOTAL);
    let done = read_complete(&mut reader, &mut x, &all);
    x.terminate();
    assert!(x.wait_exit(EXIT_TIMEOUT).success(), "wasp-mx stops cleanly");
    reader.drain(Duration::from_secs(1), Duration::from_secs(30));
    let duplicates = verify(&all, &reader.records);
    assert!(done, "the outputs did not complete");
    let (in_x, in_y) = (records_in(&x), records_in(&y));
    eprintln!("wasp-mx read {in_x} records, wasp-my {in_y}");
    assert!(in_y > 0, "the second instance processed part of the input: {in_x} and {in_y}");
    let refused: Vec<String> = [&x, &y].iter().flat_map(|p| p.log_lines()).filter(|l| l.contains("refused")).collect();
    assert_eq!(duplicates, 0, "outputs repeated when partitions moved; refused commits: {refused:#?}");
}

/// A manifest without plugins on `broker`, written as `<state>.toml` in `dir` with its state
/// under `dir/<state>`: `[application]` with `id` and `settings`, and `pipeline`, the body
/// of `[pipelines.p]`.
pub(crate) fn plain_manifest(
    dir: &Path,
    broker: &Broker,
    state: &str,
    id: &str,
    settings: &str,
    pipeline: &str,
) -> PathBuf {
    let path = dir.join(format!("{state}.toml"));
    let text = format!(
        "version = 1\n[application]\nid = \"{id}\"\n{settings}\nstate_dir = \"{}\"\n\
         [application.kafka]\nbootstrap_servers = \"{}\"\n[pipelines.p]\n{pipeline}\n",
        dir.join(state).display(),
        broker.bootstrap()
    );
    std::fs::write(&path, text).expect("writing the manifest");
    path
}

/// The topics that feed one sub-topology must have one partition count on the broker, as
/// local mode requires of its files: the run is refused, naming both topics and their counts.
#[test]
fn kafka_topics_of_one_sub_topology_with_different_partition_counts_are_refused() {
    let broker = Broker::start();
    broker.create_topics(&["cp-one"], 1);
    broker.create_topics(&["cp-two"], 2);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let manifest =
        plain_manifest(dir.path(), &broker, "pipeline", "cp", "", "from = [\"cp-one\", \"cp-two\"]\nto = \"cp-out\"");
    let prepared = wasp_host::app::prepare(&manifest, None).expect("the manifest loads");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let Err(e) = prepared.run(&wasp_host::app::LocalOptions::default(), &stop) else {
        panic!("topics of one sub-topology with 1 and 2 partitions must be refused")
    };
    let e = format!("{e:#}");
    assert!(e.contains("`cp-one` (1)") && e.contains("`cp-two` (2)") && e.contains("co-partitioned"), "{e}");
    assert!(e.contains("pipeline.toml") && e.contains("on the broker"), "names the manifest and the fix: {e}");
}

/// A task that reads two topics takes their records in timestamp order: with
/// `max_task_idle_ms`, it waits for the topic it has nothing of yet (Kafka Streams'
/// `max.task.idle.ms`), so the first batch fetched does not run ahead of the other topic.
#[test]
fn kafka_a_task_reading_two_topics_waits_for_the_empty_one_and_takes_records_in_time_order() {
    let broker = Broker::start();
    broker.create_topics(&["ord-a", "ord-b", "ord-out"], 1);
    // One acknowledged record at a time: the timestamps interleave a0 < b0 < a1 < b1 < …
    let mut expected = Vec::new();
    for i in 0..5 {
        for topic in ["ord-a", "ord-b"] {
            let value = format!("{}{i}", &topic[4..]);
            broker.produce(topic, &[(Some("k"), value.as_str())]);
            expected.push(value);
        }
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let manifest = plain_manifest(
        dir.path(),
        &broker,
        "pipeline",
        "ord",
        "batch_size = 100\nmax_task_idle_ms = 5000",
        "from = [\"ord-a\", \"ord-b\"]\nto = \"ord-out\"",
    );
    let mut reader = broker.reader(&["ord-out"]);
    let mut wasp = start_wasp("wasp-ord", &manifest);
    let all = reader.read_until(START_TIMEOUT, |r| {
        wasp.assert_running();
        r.len() >= expected.len()
    });
    wasp.kill();
    assert!(all, "{} of {} outputs came", reader.records.len(), expected.len());
    let got: Vec<&str> = reader.records.iter().map(Received::value_str).collect();
    assert_eq!(got, expected, "in timestamp order across the two topics");
}

/// `suppress` until a time limit keeps its buffer in a store with a changelog: an instance
/// that starts with no local state (another machine, a lost disk) restores what was held and
/// emits it when stream time moves past the limit.
#[test]
fn kafka_a_suppression_buffer_survives_a_restart_on_a_fresh_state_dir() {
    let broker = Broker::start();
    broker.create_topics(&["sup-in", "sup-out"], 1);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pipeline = "from = \"sup-in\"\nto = \"sup-out\"\nsteps = [ { op = \"group_by_key\" }, { op = \"count\" }, \
                    { op = \"suppress\", until = \"time_limit\", time_limit = \"2s\" }, { op = \"to_stream\" } ]";
    let manifest = |state: &str| plain_manifest(dir.path(), &broker, state, "sup", "threads = 1", pipeline);
    broker.produce("sup-in", &[(Some("a"), "x"), (Some("a"), "x"), (Some("b"), "x")]);
    let mut first = start_wasp("wasp-sup-1", &manifest("state-1"));
    let deadline = Instant::now() + START_TIMEOUT;
    // Held, not emitted: once the partition is assigned the three records are read at once;
    // then stop (a commit, changelog included).
    while !first.logged("partitions assigned") && Instant::now() < deadline {
        first.assert_running();
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    first.terminate();
    assert!(first.wait_exit(Duration::from_secs(60)).success(), "the first run stops cleanly");
    assert_eq!(records_in(&first), 3, "the first run read the three records: {:#?}", first.log_lines());
    let mut reader = broker.reader(&["sup-out"]);
    assert_eq!(reader.poll_for(Duration::from_secs(1)), 0, "nothing was due yet");
    // More than the limit later, on a new state dir: the buffer comes back from its changelog.
    std::thread::sleep(Duration::from_millis(2500));
    broker.produce("sup-in", &[(Some("c"), "x")]);
    let mut second = start_wasp("wasp-sup-2", &manifest("state-2"));
    let got = reader.read_until(START_TIMEOUT, |r| {
        second.assert_running();
        r.len() >= 2
    });
    second.kill();
    assert!(got, "the held updates came out after the restart: {}", reader.records.len());
    let pairs: Vec<(&str, &str)> = reader.records.iter().map(|r| (r.key_str(), r.value_str())).collect();
    assert_eq!(pairs, [("a", "2"), ("b", "1")]);
}
