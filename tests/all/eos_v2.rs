//! `processing_guarantee = "exactly_once_v2"`: Kafka transactions. No broker that installs
//! here supports them, so this is what can be shown:
//! - on nisshi (a real broker without transactions), the run fails at start with an error that
//!   gives the broker's answer and points to `exactly_once`;
//! - on librdkafka's mock cluster, the transactional flow runs end to end: a transactional
//!   producer per thread, outputs written in transactions, the input offsets sent through them
//!   (`send_offsets_to_transaction`), and a refused offset commit that aborts the transaction
//!   and sends the thread back to its last commit. The mock is not a faithful broker (it shows
//!   aborted records to read_committed readers, and keeps no offsets committed in a
//!   transaction), so this does not prove the path on a real cluster.

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
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
fn exactly_once_v2_on_the_mock_cluster_writes_in_transactions_and_goes_back_after_an_abort() {
    const RECORDS: usize = 200;
    const MORE: usize = 50;
    let mock = MockCluster::new(1).expect("librdkafka's mock cluster");
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("v2-in", 2, 1).expect("the input topic");
    mock.create_topic("v2-out", 2, 1).expect("the output topic");
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).create().expect("a producer for the mock");
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
    assert!(!wasp.logged("transaction aborted"), "no transaction was aborted");

    // The input offsets go through the transactions (`TxnOffsetCommit`; the mock answers it
    // but keeps nothing, so the group's committed offsets cannot be read back here). The mock
    // refuses the next one as a stale member's: the transaction is aborted, the thread goes
    // back to its last commit, reads those records again, and goes on.
    mock.request_errors(RDKafkaApiKey::TxnOffsetCommit, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION]);
    for i in RECORDS..RECORDS + MORE {
        let (k, v) = (format!("k{i}"), format!("word{i}"));
        producer.send(BaseRecord::to("v2-in").key(&k).payload(&v)).expect("queueing an input");
    }
    producer.flush(Duration::from_secs(30)).expect("the inputs are on the mock");
    wasp.wait_logged("transaction aborted", Duration::from_secs(60));
    let t = Instant::now();
    let want: std::collections::BTreeSet<String> = (0..RECORDS + MORE).map(|i| format!("WORD{i}")).collect();
    let mut seen: std::collections::BTreeSet<String> = got.into_iter().collect();
    while seen != want && t.elapsed() < Duration::from_secs(60) {
        wasp.assert_running();
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(200)) {
            seen.insert(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    assert_eq!(seen, want, "every output after the aborted transaction");
    wasp.terminate();
    assert!(wasp.wait_exit(Duration::from_secs(60)).success(), "wasp exits cleanly on SIGTERM");
    let done = wasp.log_lines().into_iter().find(|l| l.contains(" done ")).expect("the closing line");
    let records_in: usize = done
        .split_whitespace()
        .find_map(|w| w.strip_prefix("records_in=")?.parse().ok())
        .unwrap_or_else(|| panic!("records_in in {done}"));
    assert!(records_in > RECORDS + MORE, "the aborted transaction's records were read again: {done}");
}
