//! Misbehaving plugins on the real broker: one plugin each for a panic, an endless loop, a
//! memory bomb and a stack overflow, chained as four steps. Each is stopped by the sandbox, its
//! instance rebuilt, and the record that set it off reaches the dead-letter topic with headers
//! naming the error, the step, the plugin version and where the record was read, while the
//! records around it flow on through every step.

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
threads = 2
commit_interval_ms = 200
[application.kafka]
bootstrap_servers = "{bootstrap}"
[plugins.panics]
path = "{panics}"
[plugins.loop-forever]
path = "{spin}"
limits = {{ deadline_ms = 200 }}
[plugins.memory-bomb]
path = "{bomb}"
limits = {{ memory_mib = 32 }}
[plugins.stack-overflow]
path = "{deep}"
[pipelines.p]
from = "in"
to = "out"
on_error = "dead-letter"
dead_letter_topic = "dlq"
steps = [
  {{ op = "map_values", plugin = "panics" }},
  {{ op = "map_values", plugin = "loop-forever" }},
  {{ op = "map_values", plugin = "memory-bomb" }},
  {{ op = "map_values", plugin = "stack-overflow" }},
]
"#,
            bootstrap = broker.bootstrap(),
            panics = plugin("panics"),
            spin = plugin("loop-forever"),
            bomb = plugin("memory-bomb"),
            deep = plugin("stack-overflow"),
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
    let steps = ["p-0-map_values", "p-1-map_values", "p-2-map_values", "p-3-map_values"];
    let plugins = ["panics@", "loop-forever@", "memory-bomb@", "stack-overflow@"];
    for (i, r) in dlq.iter().enumerate() {
        let n: usize = r.key_str().trim_start_matches('k').parse().expect("a numbered key");
        assert_eq!(r.header("wasp.error.code"), Some("trap"), "{r:?}");
        assert_eq!(r.header("wasp.error.step"), Some(steps[i]), "{r:?}");
        assert!(r.header("wasp.error.plugin").is_some_and(|p| p.starts_with(plugins[i])), "{r:?}");
        assert_eq!(r.header("wasp.source.topic"), Some("in"), "{r:?}");
        assert_eq!(r.header("wasp.source.partition"), Some("0"), "{r:?}");
        assert_eq!(r.header("wasp.source.offset"), Some(n.to_string().as_str()), "{r:?}");
        assert!(r.header("wasp.error.message").is_some_and(|m| m.contains("trapped")), "{r:?}");
    }
    assert!(dlq[1].header("wasp.error.message").is_some_and(|m| m.contains("deadline")), "{:?}", dlq[1]);
    wasp.terminate();
    assert!(wasp.wait_exit(TIMEOUT).success());
}
