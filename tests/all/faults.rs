//! Broker faults: a broker that is down when wasp starts is a clear error in the log, tried
//! again with backoff until it comes up; then the pipeline runs by itself.

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
