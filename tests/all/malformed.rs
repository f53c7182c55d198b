//! Bad input on a real broker: 10,000 malformed records (bad JSON, oversized, keys declared
//! `string` that are not UTF-8, null keys reaching a count) among good ones all land in the
//! dead-letter topic with error headers, and records in = records out + dead letters, exactly.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use crate::broker::{Broker, Process, Produced};

const INPUT: &str = "malformed-in";
const OUTPUT: &str = "malformed-out";
const DEAD: &str = "malformed-dead";
const MAX_RECORD_BYTES: usize = 2048;
/// Each kind of bad record: what its error message says, and its error code.
const KINDS: [(&str, &str); 4] = [
    ("not JSON", "deserialization"),
    ("over `max_record_bytes`", "deserialization"),
    ("not UTF-8", "deserialization"),
    ("has no key", "null-key"),
];

#[test]
fn ten_thousand_malformed_records_all_reach_the_dead_letter_topic_and_nothing_is_lost() {
    const GOOD: usize = 2_000;
    const BAD: usize = 10_000;
    let broker = Broker::start();
    broker.create_topics(&[INPUT, OUTPUT, DEAD], 2);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let manifest = dir.path().join("malformed.toml");
    std::fs::write(
        &manifest,
        format!(
            r#"version = 1

[application]
id = "malformed"
max_record_bytes = {MAX_RECORD_BYTES}
state_dir = "{state}"

[application.kafka]
bootstrap_servers = "{bootstrap}"

[application.kafka.properties]
"auto.offset.reset" = "earliest"

[streams.events]
topic = "{INPUT}"
key = "string"
value = "json"

[streams.out]
topic = "{OUTPUT}"

[pipelines.pass]
from = "events"
steps = [{{ op = "group_by_key" }}, {{ op = "count" }}, {{ op = "to_stream" }}]
to = "out"
on_error = "dead-letter"
dead_letter_topic = "{DEAD}"
"#,
            state = dir.path().join("state").display(),
            bootstrap = broker.bootstrap(),
        ),
    )
    .expect("writing the manifest");

    // Good and bad interleaved: a third of the bad ones each kind.
    let big = format!("\"{}\"", "x".repeat(MAX_RECORD_BYTES + 10));
    let bad_key: &[u8] = b"k\xff\xfe";
    let mut values: Vec<(Option<Vec<u8>>, Vec<u8>)> = Vec::new();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut good, mut bad) = (0, 0);
    for i in 0..GOOD + BAD {
        if i % 6 == 0 && good < GOOD {
            values.push((Some(format!("k{i}").into_bytes()), format!("{{\"n\":{i}}}").into_bytes()));
            good += 1;
            continue;
        }
        if bad == BAD {
            values.push((Some(format!("k{i}").into_bytes()), format!("{{\"n\":{i}}}").into_bytes()));
            good += 1;
            continue;
        }
        let which = bad % 4;
        *kinds.entry(KINDS[which].0).or_default() += 1;
        bad += 1;
        values.push(match which {
            0 => (Some(format!("k{i}").into_bytes()), format!("{{\"n\":{i}").into_bytes()),
            1 => (Some(format!("k{i}").into_bytes()), big.clone().into_bytes()),
            2 => (Some(bad_key.to_vec()), format!("{{\"n\":{i}}}").into_bytes()),
            _ => (None, format!("{{\"n\":{i}}}").into_bytes()),
        });
    }
    assert_eq!((good, bad), (GOOD, BAD));
    let records: Vec<Produced<'_>> = values.iter().map(|(k, v)| (None, k.as_deref(), v.as_slice())).collect();
    broker.produce_to(INPUT, &records);

    let mut reader = broker.reader(&[OUTPUT, DEAD]);
    let mut c = Command::new(env!("CARGO_BIN_EXE_wasp"));
    c.arg("run")
        .arg(&manifest)
        .env("WASP_CACHE_DIR", crate::common::cache_dir())
        .env("WASP_LOG", "warn,wasmtime=warn,cranelift=warn");
    let mut wasp = Process::spawn("wasp-malformed", c);
    let done = reader.read_until(Duration::from_secs(180), |r| {
        wasp.assert_running();
        r.len() >= GOOD + BAD
    });
    reader.drain(Duration::from_secs(2), Duration::from_secs(30));
    let out = reader.records.iter().filter(|r| r.topic == OUTPUT).count();
    let dead: Vec<_> = reader.records.iter().filter(|r| r.topic == DEAD).collect();
    assert!(done, "{out} out and {} dead letters within the time", dead.len());
    assert_eq!((out, dead.len()), (GOOD, BAD), "records in ({}) = records out + dead letters, exactly", GOOD + BAD);
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &dead {
        let message = d.header("wasp.error.message").unwrap_or_default();
        let (kind, code) = KINDS
            .iter()
            .find(|(k, _)| message.contains(*k))
            .unwrap_or_else(|| panic!("an unexpected error: {message}"));
        assert_eq!(d.header("wasp.error.code"), Some(*code), "{d:?}");
        *seen.entry(kind).or_default() += 1;
    }
    assert_eq!(seen, kinds, "each kind of bad record lands with its own error");
    wasp.terminate();
    assert!(wasp.wait_exit(Duration::from_secs(60)).success(), "wasp exits cleanly on SIGTERM");
}
