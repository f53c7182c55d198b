//! The semantics of each stateless operator, run through real plugins in local mode.

use crate::common::{Scratch, header, input, kvs, run_local};

fn s(k: &str, v: &str) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

fn one_step(op: &str, extra_step: &str) -> String {
    header("")
        + &format!(
            "[pipelines.p]\nfrom = \"in\"\nto = \"out\"\n[[pipelines.p.steps]]\nop = \"{op}\"\nplugin = \"kit\"\n{extra_step}"
        )
}

#[test]
fn filter_keeps_what_the_predicate_accepts_in_order() {
    let sc = Scratch::new();
    input(&sc, &[(Some("a"), "keep 1"), (Some("b"), "drop"), (None, "keep 2"), (Some("c"), "x keep")]);
    let out = run_local(&sc, &one_step("filter", ""), &["out"]).unwrap();
    assert_eq!(kvs(&out, "out"), vec![s("a", "keep 1"), s("null", "keep 2"), s("c", "x keep")]);
}

#[test]
fn filter_not_keeps_what_the_predicate_rejects() {
    let sc = Scratch::new();
    input(&sc, &[(Some("a"), "keep 1"), (Some("b"), "drop"), (Some("c"), "gone")]);
    let out = run_local(&sc, &one_step("filterNot", ""), &["out"]).unwrap();
    assert_eq!(kvs(&out, "out"), vec![s("b", "drop"), s("c", "gone")]);
}

#[test]
fn map_values_replaces_the_value_and_keeps_key_and_timestamp() {
    let sc = Scratch::new();
    input(&sc, &[(Some("a"), "one"), (None, "two")]);
    let out = run_local(&sc, &one_step("map_values", ""), &["out"]).unwrap();
    assert_eq!(kvs(&out, "out"), vec![s("a", "ONE"), s("null", "TWO")]);
    let ts: Vec<_> = out["out"].iter().map(|o| o.timestamp).collect();
    assert_eq!(ts, vec![Some(1000), Some(1001)]);
}

#[test]
fn a_value_mapper_that_returns_its_input_leaves_values_unchanged_without_copying_them_back() {
    // bench-identity's map_values returns the borrowed input value: the SDK marks it
    // "unchanged" (see `output` in the WIT), and the host keeps the input's bytes, a
    // tombstone included.
    let sc = Scratch::new();
    let lines = [
        r#"{"key": "a", "value": "x", "timestamp": 7}"#,
        r#"{"key": "b", "value": null, "timestamp": 8}"#,
        r#"{"key": "c", "value": "z", "timestamp": 9}"#,
    ];
    sc.write("in.jsonl", &(lines.join("\n") + "\n"));
    let manifest = header(&format!("[plugins.same]\npath = \"{}\"\n", crate::common::plugin("bench-identity")))
        + "[pipelines.p]\nfrom = \"in\"\nto = \"out\"\n[[pipelines.p.steps]]\nop = \"map_values\"\nplugin = \"same\"\n";
    let out = run_local(&sc, &manifest, &["out"]).unwrap();
    let got: Vec<(String, String, Option<i64>)> =
        out["out"].iter().map(|o| (o.kv().0, o.kv().1, o.timestamp)).collect();
    assert_eq!(
        got,
        vec![
            ("a".to_owned(), "x".to_owned(), Some(7)),
            ("b".to_owned(), "null".to_owned(), Some(8)),
            ("c".to_owned(), "z".to_owned(), Some(9))
        ]
    );
}

#[test]
fn map_replaces_key_and_value() {
    let sc = Scratch::new();
    input(&sc, &[(Some("k1"), "v1"), (Some("k2"), "v2")]);
    let out = run_local(&sc, &one_step("map", ""), &["out"]).unwrap();
    assert_eq!(kvs(&out, "out"), vec![s("v1", "k1"), s("v2", "k2")]);
}

#[test]
fn flat_map_emits_zero_or_more_records_per_input_in_order() {
    let sc = Scratch::new();
    input(&sc, &[(Some("x"), "the quick fox"), (Some("y"), ""), (Some("z"), "jumps")]);
    let out = run_local(&sc, &one_step("flat_map", ""), &["out"]).unwrap();
    assert_eq!(kvs(&out, "out"), vec![s("the", "the"), s("quick", "quick"), s("fox", "fox"), s("jumps", "jumps")]);
}

#[test]
fn flat_map_values_keeps_the_input_key() {
    let sc = Scratch::new();
    input(&sc, &[(Some("x"), "a b"), (Some("y"), "c")]);
    let out = run_local(&sc, &one_step("flat_map_values", ""), &["out"]).unwrap();
    assert_eq!(kvs(&out, "out"), vec![s("x", "a"), s("x", "b"), s("y", "c")]);
}

#[test]
fn select_key_replaces_the_key_and_keeps_the_value() {
    let sc = Scratch::new();
    input(&sc, &[(Some("old"), "apple"), (None, "banana")]);
    let out = run_local(&sc, &one_step("select_key", ""), &["out"]).unwrap();
    assert_eq!(kvs(&out, "out"), vec![s("a", "apple"), s("b", "banana")]);
}

#[test]
fn peek_passes_records_on_and_for_each_ends_the_chain() {
    let sc = Scratch::new();
    input(&sc, &[(Some("a"), "1"), (Some("b"), "2")]);
    let manifest = header("")
        + r#"
[pipelines.p]
from = "in"
to = "out"
[[pipelines.p.steps]]
op = "peek"
plugin = "kit"
[[pipelines.p.steps]]
op = "peek"

[pipelines.q]
from = "in"
[[pipelines.q.steps]]
op = "for_each"
plugin = "kit"
"#;
    let run = crate::common::run_local_full(&sc, &manifest, &["out"]).unwrap();
    assert_eq!(run.stats.records_out, 2);
    assert_eq!(run.out["out"].len(), 2);
    // The plugin's counter went up once per record and per step that saw it (peek + for_each).
    let metrics = run.prepared.runtime.metrics().encode();
    assert!(
        metrics.contains("wasp_plugin_seen_total{plugin=\"kit\",source=\"test-kit\"} 4"),
        "the for-each plugin's counter is in the registry:\n{metrics}"
    );
}

#[test]
fn branch_sends_each_record_to_the_first_matching_branch_and_the_rest_to_the_default() {
    let sc = Scratch::new();
    input(&sc, &[(Some("1"), "keep a"), (Some("2"), "other"), (Some("3"), "keep b"), (Some("4"), "zzz")]);
    let kit2 =
        format!("[plugins.kit2]\npath = \"{}\"\nconfig = {{ needle = \"other\" }}", crate::common::plugin("test-kit"));
    let manifest = header(&kit2)
        + r#"
[pipelines.p]
from = "in"
[[pipelines.p.steps]]
op = "branch"
branches = [
  { plugin = "kit", to = "kept" },
  { plugin = "kit2", steps = [{ op = "map_values", plugin = "kit" }], to = "others" },
  { to = "rest" },
]
"#;
    let out = run_local(&sc, &manifest, &["kept", "others", "rest"]).unwrap();
    assert_eq!(kvs(&out, "kept"), vec![s("1", "keep a"), s("3", "keep b")]);
    assert_eq!(kvs(&out, "others"), vec![s("2", "OTHER")]);
    assert_eq!(kvs(&out, "rest"), vec![s("4", "zzz")]);
}

#[test]
fn branch_without_default_drops_unmatched_records() {
    let sc = Scratch::new();
    input(&sc, &[(Some("1"), "keep"), (Some("2"), "nope")]);
    let manifest = header("")
        + r#"
[pipelines.p]
from = "in"
[[pipelines.p.steps]]
op = "branch"
branches = [{ plugin = "kit", to = "kept" }]
"#;
    let out = run_local(&sc, &manifest, &["kept"]).unwrap();
    assert_eq!(kvs(&out, "kept"), vec![s("1", "keep")]);
}

#[test]
fn merge_combines_streams_and_pipelines_chain_through_topics() {
    let sc = Scratch::new();
    input(&sc, &[(Some("a"), "x"), (Some("b"), "y")]);
    sc.write("second.jsonl", "{\"key\":\"c\",\"value\":\"z\"}\n");
    let manifest = header(
        r#"[streams.second]
file = "second.jsonl"
file_format = "jsonl""#,
    ) + r#"
[pipelines.first]
from = "in"
to = "middle"
[[pipelines.first.steps]]
op = "merge"
from = "second"
[[pipelines.first.steps]]
op = "map_values"
plugin = "kit"

[pipelines.then]
from = "middle"
to = "out"
[[pipelines.then.steps]]
op = "map"
plugin = "kit"
"#;
    let out = run_local(&sc, &manifest, &["out"]).unwrap();
    let mut got = kvs(&out, "out");
    got.sort();
    assert_eq!(got, vec![s("X", "a"), s("Y", "b"), s("Z", "c")]);
}

#[test]
fn from_several_streams_merges_them() {
    let sc = Scratch::new();
    input(&sc, &[(Some("a"), "keep 1")]);
    sc.write("second.jsonl", "{\"key\":\"b\",\"value\":\"keep 2\"}\n");
    let manifest = header("[streams.second]\nfile = \"second.jsonl\"\nfile_format = \"jsonl\"")
        + "[pipelines.p]\nfrom = [\"in\", \"second\"]\nto = \"out\"\n[[pipelines.p.steps]]\nop = \"filter\"\nplugin = \"kit\"\n";
    let out = run_local(&sc, &manifest, &["out"]).unwrap();
    let mut got = kvs(&out, "out");
    got.sort();
    assert_eq!(got, vec![s("a", "keep 1"), s("b", "keep 2")]);
}

#[test]
fn a_chain_of_steps_applies_them_in_order_across_batches() {
    let sc = Scratch::new();
    let values: Vec<String> = (0..10).map(|i| format!("keep {i}")).collect();
    let records: Vec<(Option<&str>, &str)> = values.iter().map(|v| (None, v.as_str())).collect();
    input(&sc, &records);
    let manifest = header("")
        + r#"
[pipelines.p]
from = "in"
to = "out"
[[pipelines.p.steps]]
op = "filter"
plugin = "kit"
[[pipelines.p.steps]]
op = "map_values"
plugin = "kit"
[[pipelines.p.steps]]
op = "select_key"
plugin = "kit"
"#;
    let out = run_local(&sc, &manifest, &["out"]).unwrap();
    let got = kvs(&out, "out");
    assert_eq!(got.len(), 10, "batch_size is 3, so 10 records take 4 batches");
    for (i, (k, v)) in got.iter().enumerate() {
        assert_eq!((k.as_str(), v.clone()), ("K", format!("KEEP {i}")));
    }
}

#[test]
fn print_writes_each_record_to_stdout_and_ends_the_stream() {
    // Kafka Streams' `print(Printed.toSysOut())`: `[label]: key, value`, a null as `null`.
    let sc = Scratch::new();
    input(&sc, &[(Some("a"), "one"), (None, "two"), (Some("c"), "three"), (Some("d"), "four")]);
    let manifest =
        sc.write("p.toml", &(header("") + "[pipelines.p]\nfrom = \"in\"\n[[pipelines.p.steps]]\nop = \"print\"\n"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasp"))
        .args(["run", "--reset"])
        .arg(&manifest)
        .env("WASP_STATE_DIR", sc.path("state"))
        .env("WASP_CACHE_DIR", crate::common::cache_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let printed: Vec<&str> = text.lines().filter(|l| l.starts_with("[p-0-print]")).collect();
    assert_eq!(
        printed,
        vec!["[p-0-print]: a, one", "[p-0-print]: null, two", "[p-0-print]: c, three", "[p-0-print]: d, four"]
    );
    // Nothing can follow it.
    let after = header("")
        + "[pipelines.p]\nfrom = \"in\"\n[[pipelines.p.steps]]\nop = \"print\"\n[[pipelines.p.steps]]\nop = \"peek\"\n";
    let Err(err) = run_local(&sc, &after, &[]) else { panic!("a step after print is an error") };
    let err = err.to_string();
    assert!(err.contains("nothing can follow `print`"), "{err}");
}

#[test]
fn a_task_reading_several_topics_takes_their_records_in_timestamp_order() {
    let sc = Scratch::new();
    // Batches of 3 (the header's batch_size): the source hands over 1, 3, 5 of `in` before
    // 2, 4, 6 of `second`; Kafka Streams' PartitionGroup takes the earliest head first.
    crate::common::input_at(&sc, &[("a", "1", 1), ("a", "3", 3), ("a", "5", 5), ("a", "7", 7), ("a", "9", 9)]);
    let second: Vec<String> = [2, 4, 6, 8, 10, 12]
        .iter()
        .map(|t| serde_json::json!({"key": "b", "value": t.to_string(), "timestamp": t}).to_string())
        .collect();
    sc.write("second.jsonl", &(second.join("\n") + "\n"));
    let manifest = header("[streams.second]\nfile = \"second.jsonl\"\nfile_format = \"jsonl\"")
        + "[pipelines.p]\nfrom = [\"in\", \"second\"]\nto = \"out\"\n";
    let out = run_local(&sc, &manifest, &["out"]).unwrap();
    let values: Vec<String> = kvs(&out, "out").into_iter().map(|(_, v)| v).collect();
    assert_eq!(values, ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "12"]);
}
