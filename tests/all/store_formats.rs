//! Stores that keep their values in a declared format (`[stores.NAME] value`), plugins reading
//! and writing JSON: an Avro store whose schema changes reads the values written before with
//! their writer's schema, resolved into the new one. Real plugins, real RocksDB, local mode
//! (the registry-framed case on Kafka is in `registry.rs`).

use crate::common::{Scratch, kvs, plugin, repo, run_local};

fn schema(name: &str) -> String {
    repo().join("tests/data/schemas").join(name).display().to_string()
}

/// A manifest reading `in` (two records per call) through `step`, whose plugin `p` is the
/// plugin file `plugin`, to `out`; store `store` keeps its values as `value` (a TOML inline
/// table) says.
fn manifest(plugin_name: &str, store: &str, value: &str, on_error: &str, step: &str) -> String {
    format!(
        r#"version = 1
[application]
id = "formats"
batch_size = 2
[streams.in]
file = "in.jsonl"
file_format = "jsonl"
[plugins.p]
path = "{plugin}"
[stores.{store}]
value = {value}
[pipelines.p]
from = "in"
to = "out"
on_error = "{on_error}"
steps = [{step}]
"#,
        plugin = plugin(plugin_name),
    )
}

/// `in` grouped by key and folded by `stats` (a plugin) into store `stats`, to `out`.
fn stats_pipeline(stats: &str, value: &str, on_error: &str) -> String {
    let step = r#"{ op = "group_by_key" }, { op = "aggregate", plugin = "p", store = "stats" }, { op = "to_stream" }"#;
    manifest(stats, "stats", value, on_error, step)
}

fn numbers(sc: &Scratch, records: &[(&str, i64)]) {
    let lines: Vec<String> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| serde_json::json!({"key": k, "value": v.to_string(), "timestamp": i}).to_string())
        .collect();
    sc.write("in.jsonl", &(lines.join("\n") + "\n"));
}

fn pair(k: &str, v: serde_json::Value) -> (String, serde_json::Value) {
    (k.to_owned(), v)
}

/// What `topic` received, each value parsed as JSON.
fn json_kvs(
    out: &std::collections::BTreeMap<String, Vec<crate::common::Out>>,
    topic: &str,
) -> Vec<(String, serde_json::Value)> {
    kvs(out, topic).into_iter().map(|(k, v)| (k, serde_json::from_str(&v).expect("a JSON value"))).collect()
}

#[test]
fn an_avro_store_reads_the_values_of_its_older_schema_through_the_new_one() {
    let sc = Scratch::new();
    let v1 = format!(r#"{{ format = "avro", schema = "{}" }}"#, schema("stats-v1.avsc"));
    numbers(&sc, &[("a", 5), ("b", 7), ("a", 1)]);
    let first = run_local(&sc, &stats_pipeline("stats-v1", &v1, "stop"), &["out"]).unwrap();
    assert_eq!(
        json_kvs(&first, "out"),
        vec![
            pair("a", serde_json::json!({"count": 1, "total": 5})),
            pair("b", serde_json::json!({"count": 1, "total": 7})),
            pair("a", serde_json::json!({"count": 2, "total": 6})),
        ]
    );
    // The store moves to stats-v3.avsc (two fields more, with defaults), and the plugin to one
    // that takes exactly those fields. The values stats-v1 wrote name their schema: they read
    // into the new one, `max` null and `unit` at its default.
    let v3 = format!(
        r#"{{ format = "avro", schema = "{}", previous = ["{}"] }}"#,
        schema("stats-v3.avsc"),
        schema("stats-v1.avsc")
    );
    numbers(&sc, &[("a", 5), ("b", 7), ("a", 1), ("a", 9), ("b", -2)]);
    let second = run_local(&sc, &stats_pipeline("stats-v3", &v3, "stop"), &["out"]).unwrap();
    assert_eq!(
        json_kvs(&second, "out"),
        vec![
            pair("a", serde_json::json!({"count": 3, "total": 15, "max": 9, "unit": "unit"})),
            pair("b", serde_json::json!({"count": 2, "total": 5, "max": -2, "unit": "unit"})),
        ]
    );
    // Without `previous`, the store cannot know the older writer's schema: the record that
    // reads such a value fails (`state`) and says so, rather than being folded into a
    // misread aggregate.
    let sc = Scratch::new();
    numbers(&sc, &[("c", 4)]);
    run_local(&sc, &stats_pipeline("stats-v1", &v1, "stop"), &["out"]).unwrap();
    numbers(&sc, &[("c", 4), ("c", 6)]);
    let v3_alone = format!(r#"{{ format = "avro", schema = "{}" }}"#, schema("stats-v3.avsc"));
    let out = run_local(&sc, &stats_pipeline("stats-v3", &v3_alone, "dead-letter"), &["out", "formats-dlq"]).unwrap();
    assert_eq!(kvs(&out, "out"), vec![]);
    let dlq = &out["formats-dlq"];
    assert_eq!(dlq.iter().map(|o| o.kv()).collect::<Vec<_>>(), vec![("c".to_owned(), "6".to_owned())]);
    assert_eq!(dlq[0].headers["wasp.error.code"], "state");
    let message = dlq[0].headers["wasp.error.message"].as_str().unwrap_or_default();
    assert!(
        message.contains("store `stats`") && message.contains("neither the declared one nor in `previous`"),
        "{message}"
    );
}

#[test]
fn an_aggregate_that_does_not_match_the_stores_schema_fails_its_record_and_is_not_stored() {
    // stats-v1 writes `{"count", "total"}`; this store's schema also wants a `unit` with no
    // default, so no result converts: the first record is dead-lettered (`serialization`), and
    // the second, which the plugin folded on from the first's result in the same call, too.
    let sc = Scratch::new();
    let strict = sc.write(
        "strict.avsc",
        r#"{"type":"record","name":"Stats","fields":[{"name":"count","type":"long"},{"name":"total","type":"long"},{"name":"unit","type":"string"}]}"#,
    );
    numbers(&sc, &[("a", 5), ("a", 1)]);
    let value = format!(r#"{{ format = "avro", schema = "{}" }}"#, strict.display());
    let out = run_local(&sc, &stats_pipeline("stats-v1", &value, "dead-letter"), &["out", "formats-dlq"]).unwrap();
    assert_eq!(kvs(&out, "out"), vec![]);
    let dlq = &out["formats-dlq"];
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    let message = |i: usize| dlq[i].headers["wasp.error.message"].as_str().unwrap_or_default().to_owned();
    assert!(dlq.iter().all(|d| d.headers["wasp.error.code"] == "serialization"), "{dlq:?}");
    assert!(message(0).contains("does not match its Avro schema"), "{}", message(0));
    assert!(message(1).contains("after a result of its key that the store did not keep"), "{}", message(1));
}

/// `in` through the test kit's processor (`count` values add one to the key's count in its
/// `counts` store) to `out`.
fn counting_processor(value: &str) -> String {
    manifest("test-kit", "counts", value, "dead-letter", r#"{ op = "process", plugin = "p", stores = ["counts"] }"#)
}

/// The counts the kit forwarded (its timers forward records keyed by their names too).
fn counted(out: &std::collections::BTreeMap<String, Vec<crate::common::Out>>) -> Vec<String> {
    kvs(out, "out").into_iter().filter(|(k, _)| k == "a" || k == "b").map(|(_, v)| v).collect()
}

#[test]
fn a_processors_store_converts_what_the_plugin_reads_and_writes() {
    let sc = Scratch::new();
    let counts: Vec<(&str, i64)> = vec![("a", 0), ("a", 0), ("b", 0), ("a", 0)];
    let count_records = |sc: &Scratch| {
        let lines: Vec<String> = counts
            .iter()
            .enumerate()
            .map(|(i, (k, _))| serde_json::json!({"key": k, "value": "count", "timestamp": i}).to_string())
            .collect();
        sc.write("in.jsonl", &(lines.join("\n") + "\n"));
    };
    // The kit writes its counts as decimal text, which is JSON: kept as Avro `long`s here.
    let long = sc.write("count.avsc", r#""long""#);
    count_records(&sc);
    let out = run_local(
        &sc,
        &counting_processor(&format!(r#"{{ format = "avro", schema = "{}" }}"#, long.display())),
        &["out"],
    )
    .unwrap();
    assert_eq!(counted(&out), ["1", "2", "1", "3"]);
    // On disk, `a`'s count is Avro's single-object encoding of the long 3: C3 01, the
    // fingerprint of `"long"`, then 3 zig-zagged (6).
    let task = std::fs::read_dir(sc.path("state").join("formats"))
        .expect("the application's state directory")
        .map(|e| e.expect("an entry").path())
        .find(|p| p.join("counts").is_dir())
        .expect("a task with the counts store");
    let Ok(backend) = wasp_host::state::RocksBackend::open(&task.join("counts"), 1 << 20) else {
        panic!("the store opens")
    };
    let stored = wasp_host::state::Backend::get(&backend, &[&[wasp_host::state::windows::DATA][..], b"a"].concat())
        .expect("a read")
        .expect("a's count");
    let fingerprint = apache_avro::Schema::Long.fingerprint::<apache_avro::rabin::Rabin>().bytes;
    assert_eq!(stored, [&[0xC3, 0x01][..], &fingerprint, &[6]].concat());
    // A JSON Schema that allows counts up to 2: the put of a 3 fails, the plugin turns the
    // state error into its record's error, and the record is dead-lettered.
    let sc = Scratch::new();
    let upto2 = sc.write("count.json", r#"{"type": "integer", "maximum": 2}"#);
    count_records(&sc);
    let value = format!(r#"{{ format = "json_schema", schema = "{}" }}"#, upto2.display());
    let out = run_local(&sc, &counting_processor(&value), &["out", "formats-dlq"]).unwrap();
    assert_eq!(counted(&out), ["1", "2", "1"]);
    let dlq = &out["formats-dlq"];
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    let message = dlq[0].headers["wasp.error.message"].as_str().unwrap_or_default();
    assert!(message.contains("does not match its JSON Schema"), "{message}");
}

#[test]
fn wasp_test_converts_a_stores_values_as_a_run_does() {
    // `wasp test` keeps stores in memory, in their declared formats: stats-v1's results do not
    // fit a schema that wants a `unit`, so its record is dead-lettered there too.
    let sc = Scratch::new();
    let strict = sc.write(
        "strict.avsc",
        r#"{"type":"record","name":"Stats","fields":[{"name":"count","type":"long"},{"name":"total","type":"long"},{"name":"unit","type":"string"}]}"#,
    );
    let v1 = format!(r#"{{ format = "avro", schema = "{}" }}"#, schema("stats-v1.avsc"));
    let bad = format!(r#"{{ format = "avro", schema = "{}" }}"#, strict.display());
    sc.write("good.toml", &stats_pipeline("stats-v1", &v1, "dead-letter"));
    sc.write("bad.toml", &stats_pipeline("stats-v1", &bad, "dead-letter"));
    let fixture = |manifest: &str, expect: &str| {
        format!(
            r#"manifest = "{manifest}"
[[test]]
name = "two values of one key"
steps = [
  {{ topic = 'in', key = 'a', value = '5', timestamp = 1 }},
  {{ topic = 'in', key = 'b', value = '2', timestamp = 2 }},
]
{expect}
"#
        )
    };
    sc.write(
        "good.test.toml",
        &fixture(
            "good.toml",
            r#"[[test.expect]]
topic = 'out'
records = [
  { key = 'a', value = '{"count":1,"total":5}' },
  { key = 'b', value = '{"count":1,"total":2}' },
]"#,
        ),
    );
    sc.write(
        "bad.test.toml",
        &fixture(
            "bad.toml",
            r#"[[test.expect]]
topic = 'formats-dlq'
records = [
  { key = 'a', value = '5' },
  { key = 'b', value = '2' },
]"#,
        ),
    );
    for test in ["good.test.toml", "bad.test.toml"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasp"))
            .env("WASP_CACHE_DIR", crate::common::cache_dir())
            .arg("test")
            .arg(sc.path(test))
            .output()
            .expect("run wasp test");
        assert!(
            out.status.success(),
            "{test}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
