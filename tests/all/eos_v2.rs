//! `processing_guarantee = "exactly_once_v2"`: Kafka transactions. No broker that installs
//! here supports them, so this is what can be shown:
//! - on nisshi (a real broker without transactions), the run fails at start with an error that
//!   gives the broker's answer and points to `exactly_once`;
//! - on librdkafka's mock cluster, the transactional flow runs end to end: a transactional
//!   producer per thread, outputs written in transactions, and the input offsets committed
//!   through them (`send_offsets_to_transaction`). The mock is not a faithful broker (it shows
//!   aborted records to read_committed readers), so this does not prove the path on a real
//!   cluster.

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::broker::{Broker, Process};
use crate::common::plugin;

fn manifest(dir: &Path, bootstrap: &str, input: &str, output: &str) -> std::path::PathBuf {
    let text = format!(
        r#"version = 1

[application]
id = "eos-v2"
batch_size = 16
threads = 1
state_dir = "{state}"
processing_guarantee = "exactly_once_v2"

[application.kafka]
bootstrap_servers = "{bootstrap}"

[application.kafka.properties]
"auto.offset.reset" = "earliest"

[streams.in]
topic = "{input}"

[streams.out]
topic = "{output}"

[plugins.kit]
path = "{kit}"

[pipelines.upper]
from = "in"
steps = [{{ op = "map_values", plugin = "kit", function = "upper" }}]
to = "out"
"#,
        state = dir.join("state").display(),
        kit = plugin("test-kit"),
    );
    let path = dir.join("eos-v2.toml");
    std::fs::write(&path, text).expect("writing the manifest");
    path
}

#[test]
fn exactly_once_v2_on_a_broker_without_transactions_fails_at_start_pointing_to_exactly_once() {
    let broker = Broker::start();
    broker.create_topics(&["v2-in", "v2-out"], 1);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let manifest = manifest(dir.path(), &broker.bootstrap(), "v2-in", "v2-out");
    let mut wasp = crate::recovery::start("wasp-eos-v2-nisshi", &manifest);
    let status = wasp.wait_exit(Duration::from_secs(90));
    assert!(!status.success(), "wasp stops: the broker has no transactions");
    let lines = wasp.log_lines();
    let error = lines.iter().find(|l| l.contains("refused transactions")).unwrap_or_else(|| {
        panic!("an error says the cluster refused transactions; the log ends:\n{}", lines.join("\n"))
    });
    assert!(error.contains("init_transactions:"), "it gives the broker's answer: {error}");
    assert!(error.contains("\"exactly_once\""), "it points to exactly_once: {error}");
}

#[test]
fn exactly_once_v2_on_the_mock_cluster_writes_in_transactions_and_commits_offsets_through_them() {
    const RECORDS: usize = 200;
    let mock = MockCluster::new(1).expect("librdkafka's mock cluster");
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("v2-in", 2, 1).expect("the input topic");
    mock.create_topic("v2-out", 2, 1).expect("the output topic");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("a producer for the mock");
    for i in 0..RECORDS {
        let (k, v) = (format!("k{i}"), format!("word{i}"));
        producer.send(BaseRecord::to("v2-in").key(&k).payload(&v)).expect("queueing an input");
    }
    producer.flush(Duration::from_secs(30)).expect("the inputs are on the mock");

    let dir = tempfile::tempdir().expect("a temporary directory");
    let manifest = manifest(dir.path(), &bootstrap, "v2-in", "v2-out");
    let mut wasp: Process = crate::recovery::start("wasp-eos-v2-mock", &manifest);

    // Every output arrives, to a read_committed reader (the mock's idea of one).
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "eos-v2-reader")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset("v2-out", p, Offset::Beginning).expect("a partition");
    }
    reader.assign(&tpl).expect("assigning the reader");
    let mut got = Vec::new();
    let t = Instant::now();
    while got.len() < RECORDS && t.elapsed() < Duration::from_secs(120) {
        wasp.assert_running();
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(200)) {
            got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    assert_eq!(got.len(), RECORDS, "every output within the time");
    got.sort();
    let mut want: Vec<String> = (0..RECORDS).map(|i| format!("WORD{i}")).collect();
    want.sort();
    assert_eq!(got, want, "each output once, upper-cased");
    assert!(wasp.logged("task opened"), "the task ran");

    // The group's offsets were committed through the transactions: all the input.
    let group: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).set("group.id", "eos-v2").create().expect("a client");
    let mut committed = 0;
    let t = Instant::now();
    while committed < RECORDS as i64 && t.elapsed() < Duration::from_secs(30) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("v2-in", 0);
        tpl.add_partition("v2-in", 1);
        committed = group
            .committed_offsets(tpl, Duration::from_secs(10))
            .map(|c| c.elements().iter().filter_map(|e| e.offset().to_raw()).filter(|o| *o > 0).sum())
            .unwrap_or(0);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(committed, RECORDS as i64, "the input offsets are committed, through the transactions");
    wasp.terminate();
    assert!(wasp.wait_exit(Duration::from_secs(60)).success(), "wasp exits cleanly on SIGTERM");
    assert!(!wasp.logged("transaction aborted"), "no transaction was aborted");
}
