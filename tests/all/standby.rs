//! Standby replicas (`num_standby_replicas`): two instances of a word count with a large state
//! on the real broker; one is killed with -9, and the other takes its tasks over. With a
//! standby it kept a warm copy of the killed one's store and restores only the tail; without,
//! the whole changelog. Both print their fail-over figures; the README records them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::broker::{Broker, Process};
use crate::recovery::start;

use crate::chaos::{INPUT as LINES, OUTPUT as COUNTS};

/// The chaos test's word count, with `replicas` standbys and the admin endpoint (whose
/// address the instances announce).
fn manifest(dir: &Path, broker: &Broker, instance: usize, replicas: usize) -> PathBuf {
    let application = format!("num_standby_replicas = {replicas}\n\n[application.admin]\nbind = \"127.0.0.1:0\"\n");
    crate::chaos::manifest_with(dir, broker, instance, "at_least_once", &application, "")
}

/// What a fail-over took.
#[derive(Debug)]
struct Failover {
    /// Changelog entries the survivor restored for the task it took over.
    restored: u64,
    /// How long opening the task took there (its restore).
    open_ms: u64,
    /// From the kill to the task's opening on the survivor (the group's session timeout, the
    /// rebalance, the open).
    total: Duration,
}

/// `key=value` of a log line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

fn failover(replicas: usize, words: usize) -> Failover {
    let broker = Broker::start();
    broker.create_topics(&[LINES, COUNTS], 2);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let manifests: Vec<PathBuf> = (0..2).map(|i| manifest(dir.path(), &broker, i, replicas)).collect();
    let mut a: Process = start(&format!("standby{replicas}-a"), &manifests[0]);
    a.wait_logged("task opened task=", Duration::from_secs(60));
    let mut b: Process = start(&format!("standby{replicas}-b"), &manifests[1]);
    // Every word once: a store of `words` keys, half per task.
    let lines: Vec<String> = (0..words).map(|i| format!("u{i:07}")).collect();
    let records: Vec<crate::broker::Produced<'_>> = lines.iter().map(|l| (None, None, l.as_bytes())).collect();
    broker.produce_to(LINES, &records);
    let mut reader = broker.reader(&[COUNTS]);
    assert!(reader.read_until(Duration::from_secs(300), |r| r.len() >= words), "counted: {}", reader.records.len());
    // The counting task `a` runs when it is killed (the group moved tasks when `b` joined).
    let (_, topology) = wasp_host::app::plan(&manifests[0]).expect("the manifest plans");
    let counting = topology
        .subtopologies
        .iter()
        .position(|s| s.nodes.iter().any(|&n| !topology.node(n).op.stores().is_empty()))
        .expect("a sub-topology counts");
    let prefix = format!("task opened task={counting}_");
    let last_assigned = a.log_lines().into_iter().rfind(|l| l.contains(&prefix)).expect("a ran a counting task");
    let task = field(&last_assigned, "task").expect("the task").to_owned();
    if replicas > 0 {
        b.wait_logged(&format!("keeping a standby of the task's stores task={task}"), Duration::from_secs(60));
    }
    // The standby catches up (once a second); without one, the same wait.
    std::thread::sleep(Duration::from_secs(5));
    let before = b.log_lines().len();
    a.kill();
    let killed = Instant::now();
    let opened = format!("task opened task={task} ");
    let t = Instant::now();
    let line = loop {
        if let Some(l) = b.log_lines()[before..].iter().find(|l| l.contains(&opened)) {
            break l.clone();
        }
        b.assert_running();
        assert!(t.elapsed() < Duration::from_secs(120), "{task} did not move to the survivor");
        std::thread::sleep(Duration::from_millis(20));
    };
    let total = killed.elapsed();
    let open_ms = field(&line, "ms").and_then(|m| m.parse().ok()).expect("the open time");
    let restored = b.log_lines()[before..]
        .iter()
        .filter(|l| l.contains("store restored from its changelog") && l.contains(&format!("task=\"{task}\"")))
        .filter_map(|l| field(l, "entries")?.parse::<u64>().ok())
        .sum();
    // The state moved whole: the first 1,000 words again count 2.
    broker.produce_to(LINES, &records[..1000]);
    let twice = |r: &[crate::broker::Received]| r.iter().filter(|x| x.value_str() == "2").count();
    assert!(reader.read_until(Duration::from_secs(120), |r| twice(r) >= 1000), "recounted: {}", twice(&reader.records));
    b.terminate();
    assert!(b.wait_exit(Duration::from_secs(60)).success(), "the survivor exits cleanly");
    let f = Failover { restored, open_ms, total };
    eprintln!(
        "fail-over, num_standby_replicas = {replicas}, {words} keys: task {task} restored {} entries, opened in {} ms, \
         {:.1} s from the kill",
        f.restored,
        f.open_ms,
        f.total.as_secs_f64()
    );
    f
}

#[test]
fn a_standby_replica_makes_a_fail_over_restore_only_the_tail() {
    const WORDS: usize = 200_000;
    let cold = failover(0, WORDS);
    let warm = failover(1, WORDS);
    assert!(cold.restored as usize > WORDS / 4, "without a standby the whole changelog: {cold:?}");
    assert!((warm.restored as usize) < WORDS / 40, "with one, the tail: {warm:?}");
}
