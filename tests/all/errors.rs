//! Bad input gets a clear error and loses nothing: bad manifests, missing or wrong plugins,
//! and plugins that trap or fail records, under each error policy.

use std::process::Command;

use crate::common::{Scratch, cache_dir, header, input, kvs, plugin, run_local};

fn prepare_err(sc: &Scratch, manifest: &str) -> String {
    let path = sc.write("pipeline.toml", manifest);
    match wasp_host::app::prepare(&path, Some(cache_dir())) {
        Ok(_) => panic!("the manifest should not load"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn a_missing_plugin_file_names_the_plugin_the_path_and_the_line() {
    let sc = Scratch::new();
    input(&sc, &[(None, "x")]);
    let manifest = r#"version = 1
[application]
id = "t"
[streams.in]
file = "in.jsonl"
file_format = "jsonl"
[plugins.ghost]
path = "no/such/plugin.wasm"
[pipelines.p]
from = "in"
to = "out"
[[pipelines.p.steps]]
op = "filter"
plugin = "ghost"
"#;
    let e = prepare_err(&sc, manifest);
    assert!(e.contains("pipeline.toml:8:8"), "{e}");
    assert!(e.contains("plugin `ghost`") && e.contains("no/such/plugin.wasm"), "{e}");
}

#[test]
fn a_plugin_without_the_named_kind_fails_at_load_naming_plugin_kind_and_wit_version() {
    let sc = Scratch::new();
    input(&sc, &[(None, "x")]);
    let manifest = header("")
        + "[pipelines.p]\nfrom = \"in\"\nto = \"out\"\n[[pipelines.p.steps]]\nop = \"filter\"\nplugin = \"trap\"\n";
    let e = prepare_err(&sc, &manifest);
    assert!(e.contains("plugin `trap`"), "{e}");
    assert!(e.contains("`filter` kind"), "{e}");
    assert!(e.contains("wasp:plugin/filter@0.1.0"), "{e}");
    assert!(e.contains("wasp:plugin/value-mapper@0.1.0"), "it lists what the component does export: {e}");
}

#[test]
fn a_function_name_the_plugin_lacks_fails_at_load() {
    let sc = Scratch::new();
    input(&sc, &[(None, "x")]);
    let manifest = header("")
        + "[pipelines.p]\nfrom = \"in\"\nto = \"out\"\n[[pipelines.p.steps]]\nop = \"map_values\"\nplugin = \"kit\"\nfunction = \"lower\"\n";
    let e = prepare_err(&sc, &manifest);
    assert!(e.contains("no function named `lower`"), "{e}");
    assert!(e.contains("p-0-map_values"), "the step is named: {e}");
}

#[test]
fn a_file_that_is_not_a_component_is_refused() {
    let sc = Scratch::new();
    input(&sc, &[(None, "x")]);
    sc.write("junk.wasm", "this is not wasm");
    let manifest = header("[plugins.junk]\npath = \"junk.wasm\"")
        + "[pipelines.p]\nfrom = \"in\"\nto = \"out\"\n[[pipelines.p.steps]]\nop = \"filter\"\nplugin = \"junk\"\n";
    let e = prepare_err(&sc, &manifest);
    assert!(e.contains("plugin `junk`") && e.contains("not a valid WebAssembly component"), "{e}");
}

fn trap_pipeline(policy: &str) -> String {
    header("")
        + &format!(
            "[pipelines.p]\nfrom = \"in\"\nto = \"out\"\non_error = \"{policy}\"\ndead_letter_topic = \"dlq\"\n[[pipelines.p.steps]]\nop = \"map_values\"\nplugin = \"trap\"\n"
        )
}

fn s(k: &str, v: &str) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

#[test]
fn a_trapping_plugin_is_contained_and_only_its_records_are_dead_lettered_with_headers() {
    let sc = Scratch::new();
    input(&sc, &[(Some("1"), "a"), (Some("2"), "boom"), (Some("3"), "c"), (Some("4"), "oops"), (Some("5"), "e")]);
    let out = run_local(&sc, &trap_pipeline("dead-letter"), &["out", "dlq"]).unwrap();
    assert_eq!(kvs(&out, "out"), vec![s("1", "a"), s("3", "c"), s("5", "e")]);
    let dlq = &out["dlq"];
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    assert_eq!(dlq[0].kv(), s("2", "boom"));
    let h = &dlq[0].headers;
    assert_eq!(h["wasp.error.code"], "trap");
    assert!(h["wasp.error.message"].as_str().unwrap().contains("trapped"), "{h:?}");
    assert_eq!(h["wasp.error.step"], "p-0-map_values");
    assert!(h["wasp.error.plugin"].as_str().unwrap().starts_with("trap@"), "{h:?}");
    assert_eq!(h["wasp.source.topic"], "in");
    assert_eq!(h["wasp.source.partition"], "0");
    assert_eq!(h["wasp.source.offset"], "1");
    assert_eq!(dlq[1].kv(), s("4", "oops"));
    assert_eq!(dlq[1].headers["wasp.error.code"], "plugin-error");
    assert_eq!(dlq[1].headers["wasp.error.message"], "the value was oops");
}

#[test]
fn skip_counts_failed_records_and_goes_on() {
    let sc = Scratch::new();
    input(&sc, &[(Some("1"), "a"), (Some("2"), "boom"), (Some("3"), "oops"), (Some("4"), "d")]);
    let stats = crate::common::run_local_full(&sc, &trap_pipeline("skip"), &["out"]).unwrap().stats;
    assert_eq!((stats.records_in, stats.records_out, stats.failed_records), (4, 2, 2));
}

#[test]
fn stop_fails_the_run_with_a_message_naming_the_step_plugin_and_record() {
    let sc = Scratch::new();
    input(&sc, &[(Some("1"), "a"), (Some("2"), "boom")]);
    let e = run_local(&sc, &trap_pipeline("stop"), &["out"]).unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("pipeline `p` stopped at step `p-0-map_values`"), "{e}");
    assert!(e.contains("trapped"), "{e}");
    assert!(e.contains("in[0]@1"), "names the record: {e}");
}

#[test]
fn the_cli_reports_a_malformed_manifest_with_file_line_and_key_and_does_not_panic() {
    let sc = Scratch::new();
    let path = sc.write("bad.toml", "version = 1\n[application]\nid = \"t\"\n[streams.in]\ntopc = \"x\"\n");
    let out = Command::new(env!("CARGO_BIN_EXE_wasp")).arg("validate").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml:5:1"), "{stderr}");
    assert!(stderr.contains("`topc`") && stderr.contains("did you mean `topic`?"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn the_cli_reports_a_trapping_plugin_and_exits_non_zero_without_panicking() {
    let sc = Scratch::new();
    input(&sc, &[(Some("1"), "boom")]);
    let path = sc.write("pipeline.toml", &trap_pipeline("stop"));
    let out = Command::new(env!("CARGO_BIN_EXE_wasp"))
        .env("WASP_CACHE_DIR", cache_dir())
        .arg("run")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error: pipeline `p` stopped") && stderr.contains("trapped"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn probe(grants: &str) -> Vec<String> {
    let sc = Scratch::new();
    std::fs::create_dir(sc.path("granted")).expect("create the granted dir");
    sc.write("granted/grant.txt", "hello");
    input(&sc, &[(None, "env"), (None, "file"), (None, "dir"), (None, "socket"), (None, "clock")]);
    let grants = grants.replace("GRANTED", &sc.path("granted").display().to_string());
    let manifest = header(&format!("[plugins.probe]\npath = \"{}\"\n{grants}", plugin("sandbox-probe")))
        + "[pipelines.p]\nfrom = \"in\"\nto = \"out\"\n[[pipelines.p.steps]]\nop = \"map_values\"\nplugin = \"probe\"\n";
    // SAFETY (test): the variable is set before any thread of this test reads the environment,
    // and no other test reads it.
    unsafe { std::env::set_var("WASP_PROBE_SECRET", "s3cret") };
    let out = run_local(&sc, &manifest, &["out"]).expect("the probe pipeline runs");
    kvs(&out, "out").into_iter().map(|(_, v)| v).collect()
}

#[test]
fn a_plugin_without_grants_cannot_read_env_files_sockets_or_clocks() {
    let got = probe("");
    assert!(got[0].starts_with("env: denied"), "{got:?}");
    assert!(got[1].starts_with("file: denied"), "{got:?}");
    assert!(got[2].starts_with("dir: denied"), "{got:?}");
    assert!(got[3].starts_with("socket: denied"), "{got:?}");
    assert_eq!(got[4], "clock: frozen", "{got:?}");
}

#[test]
fn grants_open_exactly_what_they_name() {
    let got = probe(
        "grants = { env = [\"WASP_PROBE_SECRET\"], clocks = true, dirs = [{ host = \"GRANTED\", guest = \"/data\" }] }",
    );
    assert_eq!(got[0], "env: read s3cret", "{got:?}");
    assert!(got[1].starts_with("file: denied"), "only /data is granted: {got:?}");
    assert_eq!(got[2], "dir: read hello", "{got:?}");
    assert!(got[3].starts_with("socket: denied"), "no grant opens the network: {got:?}");
    assert_eq!(got[4], "clock: real", "{got:?}");
}

#[test]
fn a_panic_loop_memory_bomb_and_stack_overflow_reach_the_dead_letter_topic_with_headers() {
    let sc = Scratch::new();
    input(&sc, &[(Some("1"), "boom"), (Some("2"), "loop"), (Some("3"), "grow"), (Some("4"), "deep"), (Some("5"), "e")]);
    let manifest = trap_pipeline("dead-letter")
        .replace("[plugins.trap]\npath", "[plugins.trap]\nlimits = { deadline_ms = 200, memory_mib = 32 }\npath");
    let out = run_local(&sc, &manifest, &["out", "dlq"]).unwrap();
    assert_eq!(kvs(&out, "out"), vec![s("5", "e")]);
    let dlq = &out["dlq"];
    assert_eq!(dlq.iter().map(|o| o.kv().1).collect::<Vec<_>>(), ["boom", "loop", "grow", "deep"], "{dlq:?}");
    for (i, o) in dlq.iter().enumerate() {
        let h = &o.headers;
        assert_eq!(h["wasp.error.code"], "trap", "{h:?}");
        assert_eq!(h["wasp.error.step"], "p-0-map_values", "{h:?}");
        assert!(h["wasp.error.plugin"].as_str().unwrap().starts_with("trap@"), "{h:?}");
        assert_eq!(h["wasp.source.topic"], "in", "{h:?}");
        assert_eq!(h["wasp.source.partition"], "0", "{h:?}");
        assert_eq!(h["wasp.source.offset"], i.to_string(), "{h:?}");
    }
    let message = |i: usize| dlq[i].headers["wasp.error.message"].as_str().unwrap_or_default().to_owned();
    assert!(message(0).contains("unreachable") || message(0).contains("trapped"), "{}", message(0));
    assert!(message(1).contains("deadline"), "{}", message(1));
    assert!(message(2).contains("memory") || message(2).contains("trapped"), "{}", message(2));
    // The shadow stack in linear memory runs out before the native one: out of bounds.
    assert!(message(3).contains("stack") || message(3).contains("out of bounds"), "{}", message(3));
}

#[test]
fn fuel_stops_an_endless_loop_when_the_deadline_is_off() {
    let sc = Scratch::new();
    input(&sc, &[(Some("1"), "a"), (Some("2"), "loop"), (Some("3"), "c")]);
    let manifest = trap_pipeline("dead-letter")
        .replace("[plugins.trap]\npath", "[plugins.trap]\nlimits = { deadline_ms = 0, fuel = 50_000_000 }\npath");
    let out = run_local(&sc, &manifest, &["out", "dlq"]).unwrap();
    assert_eq!(kvs(&out, "out"), vec![s("1", "a"), s("3", "c")]);
    let dlq = &out["dlq"];
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert!(dlq[0].headers["wasp.error.message"].as_str().unwrap().contains("fuel"), "{dlq:?}");
}

fn retry_pipeline(then: &str) -> String {
    trap_pipeline("retry") + &format!("[pipelines.p.retry]\nattempts = 3\nbackoff_ms = 1\nthen = \"{then}\"\n")
}

#[test]
fn retry_runs_a_failed_record_again_until_it_passes() {
    let sc = Scratch::new();
    input(&sc, &[(Some("1"), "a"), (Some("2"), "flaky"), (Some("3"), "c")]);
    let run = crate::common::run_local_full(&sc, &retry_pipeline("stop"), &["out", "dlq"]).unwrap();
    assert_eq!(
        kvs(&run.out, "out"),
        vec![s("1", "a"), s("2", "flaky"), s("3", "c")],
        "the retried record keeps its place"
    );
    assert_eq!(run.stats.failed_records, 0);
    let metrics = run.prepared.runtime.metrics().encode();
    assert!(metrics.contains(r#"wasp_step_retries_total{pipeline="p",step="p-0-map_values"} 2"#), "{metrics}");
}

#[test]
fn retry_then_dead_letters_what_still_fails_after_the_last_attempt() {
    let sc = Scratch::new();
    input(&sc, &[(Some("1"), "a"), (Some("2"), "oops"), (Some("3"), "c")]);
    let run = crate::common::run_local_full(&sc, &retry_pipeline("dead-letter"), &["out", "dlq"]).unwrap();
    assert_eq!(kvs(&run.out, "out"), vec![s("1", "a"), s("3", "c")]);
    assert_eq!(kvs(&run.out, "dlq"), vec![s("2", "oops")]);
    let metrics = run.prepared.runtime.metrics().encode();
    assert!(metrics.contains(r#"wasp_step_retries_total{pipeline="p",step="p-0-map_values"} 3"#), "{metrics}");
    assert!(
        metrics.contains(r#"wasp_step_errors_total{pipeline="p",step="p-0-map_values",policy="dead-letter"} 1"#),
        "{metrics}"
    );
}

#[test]
fn retry_then_stop_stops_after_the_last_attempt() {
    let sc = Scratch::new();
    input(&sc, &[(Some("1"), "a"), (Some("2"), "oops")]);
    let e = run_local(&sc, &retry_pipeline("stop"), &["out"]).unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("stopped at step `p-0-map_values`") && e.contains("oops"), "{e}");
}

#[test]
fn input_that_does_not_deserialize_follows_the_policy_and_never_reaches_a_plugin() {
    let sc = Scratch::new();
    let lines = [
        r#"{"key": "1", "value": {"n": 1}}"#,
        r#"{"key": "2", "value": "{not json"}"#,
        r#"{"key": "3", "value": [3]}"#,
    ];
    sc.write("in.jsonl", &(lines.join("\n") + "\n"));
    let manifest = header("").replace("[streams.in]\n", "[streams.in]\nvalue = \"json\"\n")
        + "[pipelines.p]\nfrom = \"in\"\nto = \"out\"\non_error = \"dead-letter\"\ndead_letter_topic = \"dlq\"\n[[pipelines.p.steps]]\nop = \"peek\"\n";
    let run = crate::common::run_local_full(&sc, &manifest, &["out", "dlq"]).unwrap();
    assert_eq!(run.out["out"].iter().map(|o| o.key.clone()).collect::<Vec<_>>(), ["1", "3"]);
    let dlq = &run.out["dlq"];
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0].headers["wasp.error.code"], "deserialization");
    assert!(dlq[0].headers["wasp.error.message"].as_str().unwrap().contains("not JSON"), "{dlq:?}");
    assert!(!dlq[0].headers.contains_key("wasp.error.plugin"), "no plugin saw it: {dlq:?}");
    assert_eq!(dlq[0].headers["wasp.source.offset"], "1");
}

#[test]
fn a_plugin_with_its_deadline_off_runs_without_epoch_checks_beside_one_that_keeps_its_deadline() {
    let sc = Scratch::new();
    input(&sc, &[(Some("1"), "a"), (Some("2"), "loop"), (Some("3"), "c")]);
    let manifest = trap_pipeline("dead-letter")
        .replace("[plugins.trap]\npath", "[plugins.trap]\nlimits = { deadline_ms = 200 }\npath")
        .replace("[plugins.kit]\npath", "[plugins.kit]\nlimits = { deadline_ms = 0 }\npath")
        + "[[pipelines.p.steps]]\nop = \"map_values\"\nplugin = \"kit\"\n";
    let run = crate::common::run_local_full(&sc, &manifest, &["out", "dlq"]).unwrap();
    assert_eq!(kvs(&run.out, "out"), vec![s("1", "A"), s("3", "C")], "the trusted plugin upper-cases");
    assert_eq!(kvs(&run.out, "dlq"), vec![s("2", "loop")], "the other's deadline still stops its loop");
    let report = run.prepared.plugins.report();
    let of = |name: &str| report.iter().find(|r| r.name == name).cloned().expect("reported");
    assert_eq!((of("trap").deadline_ms, of("trap").epoch_checks), (Some(200), true));
    assert_eq!((of("kit").deadline_ms, of("kit").epoch_checks), (None, false), "kit runs in the second engine");
}

#[test]
fn a_record_that_passes_on_a_retry_keeps_its_place_among_records_of_the_same_input() {
    let sc = Scratch::new();
    // One input record; flat_map makes three of it (one offset), and the middle one fails
    // twice before it passes.
    input(&sc, &[(Some("1"), "a flaky c")]);
    let manifest = header("")
        + "[pipelines.p]\nfrom = \"in\"\nto = \"out\"\non_error = \"retry\"\nsteps = [\n"
        + "  { op = \"flat_map\", plugin = \"kit\" },\n  { op = \"map_values\", plugin = \"trap\" },\n]\n"
        + "[pipelines.p.retry]\nattempts = 3\nbackoff_ms = 1\n";
    let run = crate::common::run_local_full(&sc, &manifest, &["out"]).unwrap();
    assert_eq!(kvs(&run.out, "out"), vec![s("a", "a"), s("flaky", "flaky"), s("c", "c")]);
    assert!(run.out["out"].iter().all(|o| o.headers.is_empty()), "no internal header leaves the step: {:?}", run.out);
}

/// A task waiting for a retry no longer stalls its thread: with one stream thread, pipeline
/// `p` parks on a record that fails twice (backoff 1 s, then 2 s) while pipeline `q`, read by
/// the same thread, runs through. Both write to `out`: `q`'s records come out before the
/// retried record, which before waited with the whole thread asleep.
#[test]
fn a_retry_in_one_task_does_not_stall_the_other_tasks_of_its_thread() {
    let sc = Scratch::new();
    input(&sc, &[(Some("1"), "flaky")]);
    let others: Vec<String> =
        (0..5).map(|i| serde_json::json!({"key": i.to_string(), "value": format!("q{i}")}).to_string()).collect();
    sc.write("other.jsonl", &(others.join("\n") + "\n"));
    let manifest = header("").replace("batch_size = 3", "batch_size = 3\nthreads = 1")
        + "[streams.other]\nfile = \"other.jsonl\"\nfile_format = \"jsonl\"\n"
        + "[pipelines.p]\nfrom = \"in\"\nto = \"out\"\non_error = \"retry\"\n"
        + "[[pipelines.p.steps]]\nop = \"map_values\"\nplugin = \"trap\"\n"
        + "[pipelines.p.retry]\nattempts = 3\nbackoff_ms = 1000\n"
        + "[pipelines.q]\nfrom = \"other\"\nto = \"out\"\n"
        + "[[pipelines.q.steps]]\nop = \"map_values\"\nplugin = \"trap\"\n";
    let run = crate::common::run_local_full(&sc, &manifest, &["out"]).unwrap();
    let values: Vec<String> = kvs(&run.out, "out").into_iter().map(|(_, v)| v).collect();
    assert_eq!(values, ["q0", "q1", "q2", "q3", "q4", "flaky"], "the other task ran while the retry waited");
    assert_eq!(run.stats.failed_records, 0);
}
