//! Broker faults: a broker that is down when wasp starts is a clear error in the log, tried
//! again with backoff until it comes up; then the pipeline runs by itself. A broker killed
//! with -9 in the middle of a run and started again (its data kept in PostgreSQL) loses
//! nothing, and processing resumes by itself.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::broker::Broker;

const INPUT: &str = "streams-plaintext-input";
const OUTPUT: &str = "streams-wordcount-output";

#[test]
fn a_broker_down_at_start_is_reported_and_retried_until_it_comes_up() {
    let port = Broker::free_port();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/kafka/wordcount.toml");
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/build");
    let plugins = plugins.canonicalize().unwrap_or(plugins);
    let text = std::fs::read_to_string(&template)
        .expect("the manifest template")
        .replace("@BOOTSTRAP@", &format!("127.0.0.1:{port}"))
        .replace("@PLUGINS@", plugins.to_str().expect("UTF-8"))
        .replace("@STATE_DIR@", dir.path().join("state").to_str().expect("UTF-8"))
        .replace("@BATCH_SIZE@", "16");
    let manifest = dir.path().join("wordcount.toml");
    std::fs::write(&manifest, text).expect("writing the manifest");

    let mut wasp = crate::recovery::start("wasp-no-broker", &manifest);
    wasp.wait_logged("cannot reach the Kafka cluster", Duration::from_secs(60));
    let error = wasp.log_lines().into_iter().find(|l| l.contains("cannot reach the Kafka cluster")).expect("the error");
    assert!(error.contains(&format!("127.0.0.1:{port}")), "the error names the address: {error}");
    assert!(error.contains("retrying in"), "the error says it retries: {error}");

    // The broker comes up: wasp connects by itself and counts.
    let broker = Broker::start_on(port);
    broker.create_topics(&[INPUT, OUTPUT], 1);
    let mut reader = broker.reader(&[OUTPUT]);
    broker.produce(INPUT, &[(None::<&str>, "a b a"), (None, "c a")]);
    let t = Instant::now();
    let done = reader.read_until(Duration::from_secs(120), |records| {
        records.iter().any(|r| r.key_str() == "a" && r.value_str() == "3")
    });
    wasp.assert_running();
    assert!(done, "the count of `a` reached 3 after {:?}: {} outputs", t.elapsed(), reader.records.len());
    assert!(wasp.logged("the Kafka cluster answers"), "wasp says it reached the cluster");
    wasp.terminate();
    assert!(wasp.wait_exit(Duration::from_secs(60)).success(), "wasp exits cleanly on SIGTERM");
}

/// nisshi keeps its topics and the group's offsets in Debian's PostgreSQL (started here); the
/// broker is killed with -9 while wasp counts, and started again on the same database a few
/// seconds later. wasp rides it out by itself, and under exactly_once every word's counts
/// 1..N are each written once: nothing lost, nothing repeated.
#[test]
fn a_broker_killed_and_restarted_mid_run_loses_nothing_and_processing_resumes() {
    use crate::chaos::{INPUT as LINES, OUTPUT as COUNTS, check, expected, line, manifest};
    const LINES_EACH_HALF: usize = 1500;
    let pg = crate::postgres::Postgres::start();
    let port = Broker::free_port();
    let broker = Broker::start_stored(port, &pg.url());
    broker.create_topics(&[LINES, COUNTS], 3);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let manifest = manifest(dir.path(), &broker, 0, "exactly_once");
    let mut wasp = crate::recovery::start("wasp-broker-restart", &manifest);
    let produce = |broker: &Broker, lines: std::ops::Range<usize>| {
        let values: Vec<String> = lines.map(line).collect();
        let records: Vec<crate::broker::Produced<'_>> = values.iter().map(|v| (None, None, v.as_bytes())).collect();
        broker.produce_to(LINES, &records);
    };
    produce(&broker, 0..LINES_EACH_HALF);

    // Mid-run: some counts are out, most of the first half is still to be counted.
    let mut reader = broker.reader(&[COUNTS]);
    assert!(
        reader.read_until(Duration::from_secs(120), |r| r.len() >= 200),
        "wasp started counting: {} outputs",
        reader.records.len()
    );
    drop(reader);
    broker.kill();
    let down = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    wasp.assert_running();
    let broker = Broker::start_stored(port, &pg.url());
    eprintln!("broker restarted after {:.1} s down", down.elapsed().as_secs_f64());
    produce(&broker, LINES_EACH_HALF..2 * LINES_EACH_HALF);

    // Every word reaches its final count, read by a new reader from the topic's start: what
    // was written before the kill survived it.
    let want = expected(2 * LINES_EACH_HALF);
    let mut reader = broker.reader(&[COUNTS]);
    let converged = reader.read_until(Duration::from_secs(180), |records| {
        let mut latest: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
        for r in records {
            let c: u64 = r.value_str().parse().unwrap_or(0);
            let e = latest.entry(r.key_str()).or_default();
            *e = (*e).max(c);
        }
        want.iter().all(|(w, n)| latest.get(w.as_str()).is_some_and(|c| c >= n))
    });
    wasp.assert_running();
    assert!(converged, "the counts converged after the broker restart: {} outputs read", reader.records.len());
    reader.drain(Duration::from_secs(2), Duration::from_secs(30));
    let (lost, duplicated) = check(&reader.records, &want);
    eprintln!("broker restart: records checked {}, lost {lost}, duplicated {duplicated}", reader.records.len());
    assert_eq!((lost, duplicated), (0, 0), "nothing lost or repeated across the broker restart");
    wasp.terminate();
    assert!(wasp.wait_exit(Duration::from_secs(60)).success(), "wasp exits cleanly on SIGTERM");
}
