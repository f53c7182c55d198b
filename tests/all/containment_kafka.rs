//! Misbehaving plugins on the real broker: a panic, an endless loop, a memory bomb and a stack
//! overflow are each stopped by the sandbox, and their records reach the dead-letter topic with
//! headers naming the error, the step, the plugin version and where the record was read, while
//! the records around them flow on.

use std::process::Command;
use std::time::Duration;

use crate::broker::{Broker, Process};
use crate::common::{cache_dir, plugin};

const TIMEOUT: Duration = Duration::from_secs(180);

#[test]
fn kafka_misbehaving_plugins_are_contained_and_dead_lettered_with_headers() {
    let broker = Broker::start();
    broker.create_topics(&["in", "out", "dlq"], 1);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let manifest = dir.path().join("contain.toml");
    std::fs::write(
        &manifest,
        format!(
            r#"version = 1
[application]
id = "contain"
batch_size = 8
commit_interval_ms = 200
[application.kafka]
bootstrap_servers = "{bootstrap}"
[plugins.trap]
path = "{trap}"
limits = {{ deadline_ms = 200, memory_mib = 32 }}
[pipelines.p]
from = "in"
to = "out"
on_error = "dead-letter"
dead_letter_topic = "dlq"
[[pipelines.p.steps]]
op = "map_values"
plugin = "trap"
"#,
            bootstrap = broker.bootstrap(),
            trap = plugin("trap"),
        ),
    )
    .expect("write the manifest");
    let values = ["a", "boom", "b", "loop", "c", "grow", "d", "deep", "e"];
    let records: Vec<(Option<String>, &str)> =
        values.iter().enumerate().map(|(i, v)| (Some(format!("k{i}")), *v)).collect();
    broker.produce("in", &records);
    let mut c = Command::new(env!("CARGO_BIN_EXE_wasp"));
    c.arg("run").arg(&manifest).env("WASP_CACHE_DIR", cache_dir()).env("WASP_LOG", "info,wasmtime=warn");
    let mut wasp = Process::spawn("wasp-contain", c);
    let mut reader = broker.reader(&["out", "dlq"]);
    assert!(
        reader.read_count(values.len(), TIMEOUT),
        "only {} of {} records came out",
        reader.records.len(),
        values.len()
    );
    wasp.assert_running();
    let out: Vec<&str> = reader.records.iter().filter(|r| r.topic == "out").map(|r| r.value_str()).collect();
    assert_eq!(out, ["a", "b", "c", "d", "e"], "the well-behaved records flow on, in order");
    let dlq: Vec<_> = reader.records.iter().filter(|r| r.topic == "dlq").collect();
    assert_eq!(dlq.iter().map(|r| r.value_str()).collect::<Vec<_>>(), ["boom", "loop", "grow", "deep"]);
    for r in &dlq {
        let n: usize = r.key_str().trim_start_matches('k').parse().expect("a numbered key");
        assert_eq!(r.header("wasp.error.code"), Some("trap"), "{r:?}");
        assert_eq!(r.header("wasp.error.step"), Some("p-0-map_values"), "{r:?}");
        assert!(r.header("wasp.error.plugin").is_some_and(|p| p.starts_with("trap@")), "{r:?}");
        assert_eq!(r.header("wasp.source.topic"), Some("in"), "{r:?}");
        assert_eq!(r.header("wasp.source.partition"), Some("0"), "{r:?}");
        assert_eq!(r.header("wasp.source.offset"), Some(n.to_string().as_str()), "{r:?}");
        assert!(r.header("wasp.error.message").is_some_and(|m| m.contains("trapped")), "{r:?}");
    }
    assert!(dlq[1].header("wasp.error.message").is_some_and(|m| m.contains("deadline")), "{:?}", dlq[1]);
    wasp.terminate();
    assert!(wasp.wait_exit(TIMEOUT).success());
}
