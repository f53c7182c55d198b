//! Aggregations and windows, with the semantics Kafka Streams documents: each test fixes its
//! inputs, timestamps and expected outputs. Real plugins, real RocksDB, local mode.

use crate::common::{Scratch, header, input_at, kvs, run_local, run_local_full};

fn s(k: &str, v: &str) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

/// A pipeline `in` → steps → `out`.
fn pipeline(steps: &str) -> String {
    header("") + &format!("[pipelines.p]\nfrom = \"in\"\nto = \"out\"\nsteps = [\n{steps}\n]\n")
}

const TUMBLING_10: &str = r#"{ op = "windowed_by", window = { type = "tumbling", size = 10 } },"#;

#[test]
fn count_emits_every_update_of_each_key() {
    let sc = Scratch::new();
    input_at(&sc, &[("a", "x", 1), ("b", "x", 2), ("a", "x", 3), ("a", "x", 4), ("b", "x", 5)]);
    let out =
        run_local(&sc, &pipeline(r#"{ op = "group_by_key" }, { op = "count" }, { op = "to_stream" },"#), &["out"])
            .unwrap();
    assert_eq!(kvs(&out, "out"), vec![s("a", "1"), s("b", "1"), s("a", "2"), s("a", "3"), s("b", "2")]);
    let ts: Vec<_> = out["out"].iter().map(|o| o.timestamp).collect();
    assert_eq!(ts, vec![Some(1), Some(2), Some(3), Some(4), Some(5)], "an update carries the newest timestamp");
}

/// `count` into store `counts` with the given `[stores.counts]` settings.
fn cached_count(store: &str) -> String {
    header(&format!("[stores.counts]\n{store}"))
        + "[pipelines.p]\nfrom = \"in\"\nto = \"out\"\nsteps = [\n{ op = \"group_by_key\" }, { op = \"count\", store = \"counts\" },\n]\n"
}

#[test]
fn the_record_cache_collapses_a_keys_updates_to_the_last_before_the_commit() {
    // Kafka Streams' caching (KIP-63): with one commit, at the end of the input, each key's
    // updates collapse to its final count, in the order of their last updates, with the
    // timestamp of the last record.
    let sc = Scratch::new();
    let records: Vec<(&str, &str, i64)> =
        (0..30).map(|i| (["a", "b", "c", "a", "b", "a"][i % 6], "x", i as i64)).collect();
    input_at(&sc, &records);
    let out = run_local(&sc, &cached_count("caching = true\n"), &["out"]).unwrap();
    assert_eq!(kvs(&out, "out"), vec![s("c", "5"), s("b", "10"), s("a", "15")]);
    let ts: Vec<_> = out["out"].iter().map(|o| o.timestamp).collect();
    assert_eq!(ts, vec![Some(26), Some(28), Some(29)]);
}

#[test]
fn a_record_cache_of_zero_bytes_emits_every_update() {
    let sc = Scratch::new();
    input_at(&sc, &[("a", "x", 1), ("b", "x", 2), ("a", "x", 3)]);
    let out = run_local(&sc, &cached_count("caching = true\ncache_bytes = 0\n"), &["out"]).unwrap();
    assert_eq!(kvs(&out, "out"), vec![s("a", "1"), s("b", "1"), s("a", "2")]);
}

#[test]
fn a_stream_read_as_two_partitions_on_two_threads_counts_each_key_in_order() {
    // `partitions = 2`: the file is read as two partitions (keyed records by their key's
    // murmur2 hash), each a task; the two stream threads share the tasks. Every key lives in
    // one partition, so its updates still come one by one, in order.
    let sc = Scratch::new();
    let keys = ["a", "b", "c", "d", "e", "f", "g"];
    let records: Vec<(&str, &str, i64)> = (0..700).map(|i| (keys[(i * 3 + i / 7) % 7], "x", i as i64)).collect();
    input_at(&sc, &records);
    let manifest = header("")
        .replace("[streams.in]\n", "[streams.in]\npartitions = 2\n")
        .replace("[application]\n", "[application]\nthreads = 2\n")
        + "[pipelines.p]\nfrom = \"in\"\nto = \"out\"\nsteps = [ { op = \"group_by_key\" }, { op = \"count\" } ]\n";
    let out = run_local(&sc, &manifest, &["out"]).unwrap();
    let got = kvs(&out, "out");
    assert_eq!(got.len(), records.len(), "one update per record");
    let mut last: std::collections::BTreeMap<String, u64> = Default::default();
    for (k, v) in &got {
        let n: u64 = v.parse().unwrap();
        let before = last.insert(k.clone(), n).unwrap_or(0);
        assert_eq!(n, before + 1, "{k}: the updates of one key come in order");
    }
    assert_eq!(last.values().sum::<u64>(), 700);
    assert_eq!(last.len(), keys.len());
}

#[test]
fn topics_of_one_sub_topology_with_different_partition_counts_are_refused() {
    let sc = Scratch::new();
    input_at(&sc, &[("a", "x", 1)]);
    sc.write("other.jsonl", "{\"key\":\"b\",\"value\":\"y\",\"timestamp\":2}\n");
    let manifest = header("[streams.other]\nfile = \"other.jsonl\"\nfile_format = \"jsonl\"\n")
        .replace("[streams.in]\n", "[streams.in]\npartitions = 2\n")
        + "[pipelines.p]\nfrom = [\"in\", \"other\"]\nto = \"out\"\n";
    let Err(e) = run_local(&sc, &manifest, &["out"]) else { panic!("co-partitioned topics must agree") };
    let e = format!("{e:#}");
    assert!(e.contains("`in` (2)") && e.contains("`other` (1)") && e.contains("co-partitioned"), "{e}");
    assert!(e.contains("pipeline.toml") && e.contains("`streams.in.partitions`"), "names the file and keys: {e}");
}

#[test]
fn reduce_folds_values_in_order_starting_from_the_first() {
    let sc = Scratch::new();
    input_at(&sc, &[("a", "1", 1), ("b", "2", 2), ("a", "3", 3), ("a", "4", 4)]);
    let out =
        run_local(&sc, &pipeline(r#"{ op = "group_by_key" }, { op = "reduce", plugin = "kit" },"#), &["out"]).unwrap();
    assert_eq!(kvs(&out, "out"), vec![s("a", "1"), s("b", "2"), s("a", "1+3"), s("a", "1+3+4")]);
}

#[test]
fn aggregate_starts_from_the_initializer_and_a_null_key_follows_the_error_policy() {
    // A fresh scratch (state directory) per policy.
    let scratch = || {
        let sc = Scratch::new();
        sc.write(
            "in.jsonl",
            "{\"key\":\"a\",\"value\":\"5\",\"timestamp\":1}\n{\"key\":null,\"value\":\"7\",\"timestamp\":2}\n{\"key\":\"a\",\"value\":\"6\",\"timestamp\":3}\n",
        );
        sc
    };
    let steps = r#"{ op = "group_by_key" }, { op = "aggregate", plugin = "kit" },"#;
    // Dead-lettered with `null-key`; the aggregate goes on without it.
    let manifest = pipeline(steps).replace("[pipelines.p]\n", "[pipelines.p]\non_error = \"dead-letter\"\n");
    let out = run_local(&scratch(), &manifest, &["out", "t-dlq"]).unwrap();
    assert_eq!(kvs(&out, "out"), vec![s("a", "5"), s("a", "11")]);
    let dlq = &out["t-dlq"];
    assert_eq!(dlq.iter().map(|o| o.kv().1).collect::<Vec<_>>(), ["7"], "{dlq:?}");
    assert_eq!(dlq[0].headers["wasp.error.code"], "null-key");
    // Skipped (as Kafka Streams drops it), and counted.
    let manifest = pipeline(steps).replace("[pipelines.p]\n", "[pipelines.p]\non_error = \"skip\"\n");
    let run = run_local_full(&scratch(), &manifest, &["out"]).unwrap();
    assert_eq!(kvs(&run.out, "out"), vec![s("a", "5"), s("a", "11")]);
    let metrics = run.prepared.runtime.metrics().encode();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("wasp_step_errors_total{") && l.contains("policy=\"skip\"") && l.ends_with(" 1")),
        "{metrics}"
    );
    // The default, stop: the run stops with an error that says why.
    let err = run_local(&scratch(), &pipeline(steps), &["out"]).expect_err("a null key stops the default policy");
    assert!(format!("{err:#}").contains("no key"), "{err:#}");
}

#[test]
fn an_aggregator_error_fails_only_its_record_and_keeps_the_aggregate() {
    let sc = Scratch::new();
    input_at(&sc, &[("a", "5", 1), ("a", "oops", 2), ("a", "6", 3)]);
    let manifest = pipeline(r#"{ op = "group_by_key" }, { op = "aggregate", plugin = "kit" },"#)
        .replace("[pipelines.p]\n", "[pipelines.p]\non_error = \"dead-letter\"\n");
    let out = run_local(&sc, &manifest, &["out", "t-dlq"]).unwrap();
    assert_eq!(kvs(&out, "out"), vec![s("a", "5"), s("a", "11")]);
    assert_eq!(kvs(&out, "t-dlq"), vec![s("a", "oops")]);
}

#[test]
fn group_by_repartitions_by_the_new_key() {
    let sc = Scratch::new();
    input_at(&sc, &[("k1", "apple", 1), ("k2", "banana", 2), ("k3", "avocado", 3)]);
    let steps = r#"{ op = "group_by", plugin = "kit" }, { op = "count" },"#;
    let manifest = pipeline(steps);
    let out = run_local(&sc, &manifest, &["out"]).unwrap();
    assert_eq!(kvs(&out, "out"), vec![s("a", "1"), s("b", "1"), s("a", "2")]);
    let (_, topology) = wasp_host::app::plan(&sc.path("pipeline.toml")).unwrap();
    assert_eq!(topology.repartition_topics(), vec!["t-p-0-group_by-repartition"]);
    assert_eq!(topology.subtopologies.len(), 2, "the repartition splits the topology");
}

#[test]
fn group_by_key_after_a_key_change_repartitions() {
    let sc = Scratch::new();
    sc.write(
        "p.toml",
        &pipeline(r#"{ op = "select_key", plugin = "kit" }, { op = "group_by_key" }, { op = "count" },"#),
    );
    let (_, topology) = wasp_host::app::plan(&sc.path("p.toml")).unwrap();
    assert_eq!(topology.repartition_topics(), vec!["t-p-1-group_by_key-repartition"]);
    sc.write("q.toml", &pipeline(r#"{ op = "group_by_key" }, { op = "count" },"#));
    let (_, topology) = wasp_host::app::plan(&sc.path("q.toml")).unwrap();
    assert!(topology.repartition_topics().is_empty(), "no key change, no repartition");
}

#[test]
fn tumbling_windows_start_at_multiples_of_the_size_and_end_exclusive() {
    let sc = Scratch::new();
    input_at(&sc, &[("a", "x", 0), ("a", "x", 9), ("a", "x", 10), ("b", "x", 19)]);
    let steps = format!(r#"{{ op = "group_by_key" }}, {TUMBLING_10} {{ op = "count" }},"#);
    let out = run_local(&sc, &pipeline(&steps), &["out"]).unwrap();
    assert_eq!(kvs(&out, "out"), vec![s("a@0/10", "1"), s("a@0/10", "2"), s("a@10/20", "1"), s("b@10/20", "1")]);
    let h = &out["out"][2].headers;
    assert_eq!((h["wasp.window.start"].as_str(), h["wasp.window.end"].as_str()), (Some("10"), Some("20")));
}

#[test]
fn hopping_windows_overlap_and_a_record_updates_each_of_its_windows() {
    let sc = Scratch::new();
    input_at(&sc, &[("a", "x", 7), ("a", "x", 12)]);
    let steps = r#"{ op = "group_by_key" }, { op = "windowed_by", window = { type = "hopping", size = 10, advance = 5 } }, { op = "count" },"#;
    let out = run_local(&sc, &pipeline(steps), &["out"]).unwrap();
    assert_eq!(
        kvs(&out, "out"),
        vec![s("a@0/10", "1"), s("a@5/15", "1"), s("a@5/15", "2"), s("a@10/20", "1")],
        "t=7 is in [0,10) and [5,15); t=12 in [5,15) and [10,20)"
    );
}

#[test]
fn sliding_windows_follow_the_records() {
    let sc = Scratch::new();
    // Kafka Streams' SlidingWindows (time difference 10): a window ends at each record, and
    // one starts just after each record while a later record is within the difference.
    input_at(&sc, &[("a", "x", 100), ("a", "x", 105), ("a", "x", 103)]);
    let steps = r#"{ op = "group_by_key" }, { op = "windowed_by", window = { type = "sliding", difference = 10, grace = 100 } }, { op = "count" },"#;
    let out = run_local(&sc, &pipeline(steps), &["out"]).unwrap();
    assert_eq!(
        kvs(&out, "out"),
        vec![
            s("a@90/100", "1"),
            s("a@101/111", "1"),
            s("a@95/105", "2"),
            s("a@95/105", "3"),
            s("a@101/111", "2"),
            s("a@93/103", "2"),
            s("a@104/114", "1"),
        ]
    );
}

#[test]
fn session_merge_emits_the_old_sessions_tombstones_then_the_merged_session() {
    let sc = Scratch::new();
    input_at(&sc, &[("a", "x", 0), ("a", "x", 5), ("a", "x", 22), ("a", "x", 13)]);
    let steps = r#"{ op = "group_by_key" }, { op = "windowed_by", window = { type = "session", gap = 10 } }, { op = "count" },"#;
    let out = run_local(&sc, &pipeline(steps), &["out"]).unwrap();
    let got: Vec<(String, String)> = kvs(&out, "out");
    assert_eq!(
        got,
        vec![
            s("a@0/0", "1"),
            s("a@0/0", "null"),
            s("a@0/5", "2"),
            s("a@22/22", "1"),
            // 13 is within the gap of both sessions: they merge into one.
            s("a@0/5", "null"),
            s("a@22/22", "null"),
            s("a@0/22", "4"),
        ]
    );
}

#[test]
fn session_windows_merge_aggregates_with_the_plugins_merger() {
    let sc = Scratch::new();
    input_at(&sc, &[("a", "1", 0), ("a", "2", 5), ("a", "10", 22), ("a", "100", 13)]);
    let steps = r#"{ op = "group_by_key" }, { op = "windowed_by", window = { type = "session", gap = 10 } }, { op = "aggregate", plugin = "kit" },"#;
    let out = run_local(&sc, &pipeline(steps), &["out"]).unwrap();
    let got = kvs(&out, "out");
    assert_eq!(got.last(), Some(&s("a@0/22", "113")), "[0,5] (3) and [22,22] (10) merge, then 100 is added: {got:?}");
}

#[test]
fn grace_accepts_records_until_the_window_closes_then_drops_and_routes_them() {
    let sc = Scratch::new();
    input_at(&sc, &[("a", "x", 0), ("a", "x", 14), ("a", "x", 3), ("a", "x", 16), ("a", "x", 4)]);
    let steps = r#"{ op = "group_by_key" }, { op = "windowed_by", window = { type = "tumbling", size = 10, grace = 5 } }, { op = "count", late_topic = "late" },"#;
    let run = run_local_full(&sc, &pipeline(steps), &["out", "late"]).unwrap();
    assert_eq!(
        kvs(&run.out, "out"),
        vec![s("a@0/10", "1"), s("a@10/20", "1"), s("a@0/10", "2"), s("a@10/20", "2")],
        "t=3 arrives at stream time 14: [0,10) closes at 10+5, so it counts; t=4 arrives at 16: too late"
    );
    assert_eq!(kvs(&run.out, "late"), vec![s("a", "x")]);
    assert_eq!(run.stats.late_records, 1);
    let metrics = run.prepared.runtime.metrics().encode();
    assert!(metrics.contains("wasp_late_records_total{step=\"p-2-count\"} 1"), "{metrics}");
}

#[test]
fn emit_final_emits_each_window_once_when_it_closes_in_end_then_key_order() {
    let sc = Scratch::new();
    input_at(&sc, &[("b", "x", 1), ("a", "x", 2), ("a", "x", 5), ("b", "x", 12), ("a", "x", 25)]);
    let steps = format!(
        r#"{{ op = "group_by_key" }}, {TUMBLING_10} {{ op = "count" }}, {{ op = "suppress", until = "window_closes" }}, {{ op = "to_stream" }},"#
    );
    let out = run_local(&sc, &pipeline(&steps), &["out"]).unwrap();
    assert_eq!(
        kvs(&out, "out"),
        vec![s("a@0/10", "2"), s("b@0/10", "1"), s("b@10/20", "1")],
        "[20,30) never closes, so it is never emitted"
    );
}

#[test]
fn a_timestamp_extractor_sets_event_time_for_windows() {
    let sc = Scratch::new();
    input_at(&sc, &[("a", "3 first", 100), ("a", "12 second", 0), ("a", "nope", 5)]);
    let steps = format!(
        r#"{{ op = "with_timestamp", plugin = "kit" }}, {{ op = "group_by_key" }}, {TUMBLING_10} {{ op = "count" }},"#
    );
    let manifest = pipeline(&steps).replace("[pipelines.p]\n", "[pipelines.p]\non_error = \"skip\"\n");
    let run = run_local_full(&sc, &manifest, &["out"]).unwrap();
    assert_eq!(kvs(&run.out, "out"), vec![s("a@0/10", "1"), s("a@10/20", "1")]);
    assert_eq!(run.stats.failed_records, 1, "a value without a timestamp follows the error policy");
}

#[test]
fn local_state_survives_runs_and_records_read_again_are_applied_once() {
    let sc = Scratch::new();
    let manifest = pipeline(r#"{ op = "group_by", plugin = "kit" }, { op = "count" },"#);
    input_at(&sc, &[("1", "apple", 1), ("2", "avocado", 2)]);
    let first = run_local(&sc, &manifest, &["out"]).unwrap();
    assert_eq!(kvs(&first, "out"), vec![s("a", "1"), s("a", "2")]);
    // The same file again: every record was applied already.
    let again = run_local(&sc, &manifest, &["out"]).unwrap();
    assert_eq!(kvs(&again, "out"), vec![]);
    // One more line: counting goes on from the stored count.
    input_at(&sc, &[("1", "apple", 1), ("2", "avocado", 2), ("3", "apricot", 3)]);
    let more = run_local(&sc, &manifest, &["out"]).unwrap();
    assert_eq!(kvs(&more, "out"), vec![s("a", "3")]);
}

#[test]
fn stateful_manifest_mistakes_are_named() {
    let sc = Scratch::new();
    let cases = [
        (r#"{ op = "count" },"#, "`count` needs grouped records"),
        (r#"{ op = "group_by_key" }, { op = "map_values", plugin = "kit" },"#, "cannot follow a grouping"),
        (
            r#"{ op = "group_by_key" }, { op = "windowed_by", window = { type = "tumbled", size = 5 } }, { op = "count" },"#,
            "did you mean `tumbling`?",
        ),
        (
            r#"{ op = "group_by_key" }, { op = "windowed_by", window = { type = "hopping", size = 5 } }, { op = "count" },"#,
            "a hopping window needs `advance`",
        ),
        (
            r#"{ op = "group_by_key" }, { op = "count" }, { op = "suppress", until = "window_closes" },"#,
            "needs a windowed aggregate",
        ),
        (r#"{ op = "group_by_key" }, { op = "count", late_topic = "x" },"#, "`late_topic` needs windows"),
    ];
    for (steps, message) in cases {
        let path = sc.write("bad.toml", &pipeline(steps));
        let e = match wasp_host::app::plan(&path) {
            Ok(_) => panic!("accepted: {steps}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(e.contains(message), "{steps}: {e}");
        assert!(e.contains("bad.toml:"), "names the file and line: {e}");
    }
}

#[test]
fn a_store_ttl_forgets_keys_not_updated_within_it_in_stream_time() {
    let sc = Scratch::new();
    input_at(&sc, &[("a", "x", 0), ("a", "x", 5), ("b", "x", 100), ("a", "x", 101)]);
    let manifest =
        pipeline(r#"{ op = "group_by_key" }, { op = "count", store = "counts" },"#) + "[stores.counts]\nttl = 50\n";
    let out = run_local(&sc, &manifest, &["out"]).unwrap();
    assert_eq!(
        kvs(&out, "out"),
        vec![s("a", "1"), s("a", "2"), s("b", "1"), s("a", "1")],
        "a was last updated at 5, more than 50 ms of stream time before 101"
    );
}

#[test]
fn processor_timers_fire_on_stream_time_and_on_wall_clock_time() {
    use std::sync::Arc;
    let sc = Scratch::new();
    input_at(&sc, &[("a", "x", 5)]);
    let path = sc.write("p.toml", &pipeline(r#"{ op = "process", plugin = "kit" },"#));
    let prepared = wasp_host::app::prepare(&path, Some(crate::common::cache_dir())).unwrap();
    let lookup = |name: &str| prepared.plugins.get(name);
    let mut no_stores = |spec: &wasp_host::state::StoreSpec| {
        Err(wasp_host::state::StateError::Backend { store: spec.name.clone(), message: "none".into() })
    };
    let topology = Arc::clone(&prepared.topology);
    let mut task =
        wasp_host::runtime::Task::new(topology, 0, 0, &lookup, &mut no_stores, prepared.runtime.metrics()).unwrap();
    let record = |t: i64| wasp_host::record::Record::new(Some(b"a"), Some(b"x"), t);
    let values = crate::common::task_kvs;
    // Stream time, as Kafka Streams punctuates: the schedule is aligned to 0, so the timer
    // fires with the first record; it is called back with the stream time; an advance past
    // several intervals (10 → 30) fires it once, and the next is the first aligned time after.
    assert_eq!(values(task.process("in", vec![record(5)]).unwrap()), vec![s("a", "x"), s("stream", "5")]);
    assert_eq!(values(task.process("in", vec![record(9)]).unwrap()), vec![s("a", "x")]);
    assert_eq!(values(task.process("in", vec![record(27)]).unwrap()), vec![s("a", "x"), s("stream", "27")]);
    assert_eq!(values(task.process("in", vec![record(29)]).unwrap()), vec![s("a", "x")]);
    assert_eq!(values(task.process("in", vec![record(30)]).unwrap()), vec![s("a", "x"), s("stream", "30")]);
    // Wall clock: scheduled at the first tick, fired once 10 ms later.
    assert_eq!(values(task.tick(1_000).unwrap()), vec![]);
    assert_eq!(values(task.tick(1_005).unwrap()), vec![]);
    assert_eq!(values(task.tick(1_012).unwrap()), vec![s("wall", "1012")]);
    assert_eq!(values(task.tick(1_015).unwrap()), vec![]);
}

#[test]
fn a_count_of_counts_through_a_second_repartition_counts_every_update() {
    let sc = Scratch::new();
    input_at(&sc, &[("a", "x", 1), ("b", "x", 2), ("a", "x", 3), ("c", "x", 4)]);
    // The first count emits a:1, b:1, a:2, c:1; the second counts those updates by value.
    let steps = r#"{ op = "group_by_key" }, { op = "count" }, { op = "to_stream" },
        { op = "group_by", plugin = "kit" }, { op = "count" },"#;
    let out = run_local(&sc, &pipeline(steps), &["out"]).unwrap();
    assert_eq!(kvs(&out, "out"), vec![s("1", "1"), s("1", "2"), s("2", "1"), s("1", "3")]);
}

#[test]
fn aggregate_updates_from_several_partitions_reach_a_second_aggregation_through_a_repartition() {
    use std::sync::Arc;
    // Two upstream tasks (input partitions 0 and 3) count keys and re-key each update by its
    // count; one downstream task counts those. Each update carries the input record it came
    // from, so the downstream store tells the two tasks' updates apart and applies each once.
    let sc = Scratch::new();
    let steps = r#"{ op = "group_by_key" }, { op = "count" }, { op = "to_stream" },
        { op = "group_by", plugin = "kit" }, { op = "count" },"#;
    let path = sc.write("p.toml", &pipeline(steps));
    let prepared = wasp_host::app::prepare(&path, Some(crate::common::cache_dir())).unwrap();
    let lookup = |name: &str| prepared.plugins.get(name);
    let mut memory = |spec: &wasp_host::state::StoreSpec| wasp_host::state::Store::open(spec.clone(), None, None);
    let topology = Arc::clone(&prepared.topology);
    let metrics = prepared.runtime.metrics();
    let mut task = |sub, partition| {
        wasp_host::runtime::Task::new(topology.clone(), sub, partition, &lookup, &mut memory, metrics).unwrap()
    };
    let (mut up0, mut up3, mut down) = (task(0, 0), task(0, 3), task(1, 0));
    let batch = |keys: &[&str]| -> Vec<wasp_host::record::Record> {
        keys.iter()
            .enumerate()
            .map(|(i, k)| {
                let mut r = wasp_host::record::Record::new(Some(k.as_bytes()), Some(b"x"), i as i64);
                r.origin.offset = i as i64;
                r
            })
            .collect()
    };
    let repartitioned = |out: wasp_host::runtime::TaskOutput| -> Vec<wasp_host::record::Record> {
        out.records.into_iter().filter(|(t, _)| t.ends_with("-repartition")).flat_map(|(_, rs)| rs).collect()
    };
    let from0 = repartitioned(up0.process("in", batch(&["a", "b", "a"])).unwrap());
    let from3 = repartitioned(up3.process("in", batch(&["c", "c", "d"])).unwrap());
    let position = |r: &wasp_host::record::Record| {
        assert!(r.headers.iter().any(|h| h.name == "wasp.position"), "a position header");
        let (upstream, p) = wasp_host::state::upstream_of(r, "not read directly").expect("a readable position");
        format!("{upstream}/{}/{}", p.offset, p.seq)
    };
    assert_eq!(from3.iter().map(position).collect::<Vec<_>>(), ["in/3/0/0", "in/3/1/0", "in/3/2/0"]);
    // Interleaved, as one repartition partition receives them.
    let mut interleaved = Vec::new();
    for (x, y) in from0.into_iter().zip(from3) {
        interleaved.push(x);
        interleaved.push(y);
    }
    let out = down.process(topology.repartition_topics()[0], interleaved).unwrap();
    let counted = crate::common::task_kvs(out);
    // Updates a:1 c:1 b:1 c:2 a:2 d:1, counted by their count.
    assert_eq!(counted, vec![s("1", "1"), s("1", "2"), s("1", "3"), s("2", "1"), s("2", "2"), s("1", "4")]);
}

/// `header` with the fold-trace aggregator as `trace`.
fn with_trace(steps: &str) -> String {
    header(&format!("[plugins.trace]\npath = \"{}\"\n", crate::common::plugin("fold-trace")))
        + &format!("[pipelines.p]\nfrom = \"in\"\nto = \"out\"\nsteps = [\n{steps}\n]\n")
}

#[test]
fn a_session_merge_starts_from_the_initial_aggregate_even_for_one_session() {
    let sc = Scratch::new();
    // fold-trace appends values and merges as `(left|right)`: Kafka Streams'
    // KStreamSessionWindowAggregate starts from the initializer ("") and merges every session
    // it finds into it, then applies the aggregator.
    input_at(&sc, &[("a", "x", 0), ("a", "y", 5), ("a", "z", 22), ("a", "w", 13), ("b", "p", 50), ("b", "q", 50)]);
    let steps = r#"{ op = "group_by_key" }, { op = "windowed_by", window = { type = "session", gap = 10 } }, { op = "aggregate", plugin = "trace" },"#;
    let out = run_local(&sc, &with_trace(steps), &["out"]).unwrap();
    assert_eq!(
        kvs(&out, "out"),
        vec![
            s("a@0/0", "x"),
            s("a@0/0", "null"),
            s("a@0/5", "(|x)y"),
            s("a@22/22", "z"),
            s("a@0/5", "null"),
            s("a@22/22", "null"),
            s("a@0/22", "((|(|x)y)|z)w"),
            // A record on a session [t, t] of its own: merged in place, no tombstone.
            s("b@50/50", "p"),
            s("b@50/50", "(|p)q"),
        ]
    );
}

#[test]
fn sliding_windows_put_early_records_into_the_window_from_zero() {
    let sc = Scratch::new();
    // Kafka Streams' processEarly: records before the time difference (10) go into [0, 10].
    input_at(&sc, &[("a", "x", 3), ("a", "x", 8), ("a", "x", 20)]);
    let steps = r#"{ op = "group_by_key" }, { op = "windowed_by", window = { type = "sliding", difference = 10, grace = 100 } }, { op = "count" },"#;
    let out = run_local(&sc, &pipeline(steps), &["out"]).unwrap();
    assert_eq!(
        kvs(&out, "out"),
        vec![
            s("a@0/10", "1"),
            // t=8: the right window of t=3 ([4, 14]), then the combined window.
            s("a@4/14", "1"),
            s("a@0/10", "2"),
            // t=20: its left window [10, 20] holds only itself (t=8 is 12 before it).
            s("a@10/20", "1"),
        ]
    );
}

#[test]
fn a_sliding_window_takes_records_until_stream_time_passes_its_inclusive_end() {
    let sc = Scratch::new();
    // Grace 0: a record's own left window ends at the record, which is the close time when it
    // is the newest; Kafka Streams keeps windows with `end >= close` open.
    input_at(&sc, &[("a", "x", 100), ("a", "x", 105)]);
    let steps = r#"{ op = "group_by_key" }, { op = "windowed_by", window = { type = "sliding", difference = 10, grace = 0 } }, { op = "count" },"#;
    let out = run_local(&sc, &pipeline(steps), &["out"]).unwrap();
    assert_eq!(kvs(&out, "out"), vec![s("a@90/100", "1"), s("a@101/111", "1"), s("a@95/105", "2")]);
}

#[test]
fn a_sliding_window_is_final_once_stream_time_passes_its_inclusive_end() {
    let sc = Scratch::new();
    // Grace 0, final results only. At stream time 111, [101, 111] is still open (its end is
    // inclusive), so a@104 still counts in it; it closes at 112.
    input_at(&sc, &[("a", "x", 100), ("a", "x", 105), ("b", "x", 111), ("a", "x", 104), ("b", "x", 112)]);
    let steps = r#"{ op = "group_by_key" }, { op = "windowed_by", window = { type = "sliding", difference = 10, grace = 0 } }, { op = "count" }, { op = "suppress", until = "window_closes" }, { op = "to_stream" },"#;
    let out = run_local(&sc, &pipeline(steps), &["out"]).unwrap();
    assert_eq!(
        kvs(&out, "out"),
        vec![s("a@90/100", "1"), s("a@95/105", "2"), s("a@101/111", "2"), s("b@101/111", "1")]
    );
}

#[test]
fn suppress_until_a_time_limit_emits_each_keys_latest_update_once_its_first_is_old_enough() {
    let sc = Scratch::new();
    // Kafka Streams' suppress(untilTimeLimit(10 ms)): a key's updates are held from its first,
    // and stream time (the largest timestamp seen) decides when 10 ms have passed.
    input_at(&sc, &[("a", "x", 0), ("a", "x", 3), ("b", "x", 5), ("a", "x", 8), ("b", "x", 11), ("c", "x", 20)]);
    let steps = r#"{ op = "group_by_key" }, { op = "count" }, { op = "suppress", until = "time_limit", time_limit = 10 }, { op = "to_stream" },"#;
    let out = run_local(&sc, &pipeline(steps), &["out"]).unwrap();
    // At 11, a (held since 0) is due with its count then; at 20, b (since 5). c stays held.
    assert_eq!(kvs(&out, "out"), vec![s("a", "3"), s("b", "2")]);
    let ts: Vec<_> = out["out"].iter().map(|o| o.timestamp).collect();
    assert_eq!(ts, vec![Some(8), Some(11)], "an emitted update keeps its own timestamp");
}

#[test]
fn a_full_suppression_buffer_emits_its_oldest_key_early_or_fails_the_record() {
    let sc = Scratch::new();
    input_at(&sc, &[("a", "x", 0), ("b", "x", 1), ("a", "x", 2)]);
    let early = r#"{ op = "group_by_key" }, { op = "count" }, { op = "suppress", until = "time_limit", time_limit = "1h", max_records = 1 }, { op = "to_stream" },"#;
    let out = run_local(&sc, &pipeline(early), &["out"]).unwrap();
    assert_eq!(kvs(&out, "out"), vec![s("a", "1"), s("b", "1")], "b pushes a out, then a's return pushes b out");

    let sc = Scratch::new();
    input_at(&sc, &[("a", "x", 0), ("b", "x", 1)]);
    let shut = r#"{ op = "group_by_key" }, { op = "count" }, { op = "suppress", until = "time_limit", time_limit = "1h", max_records = 1, when_full = "shut_down" }, { op = "to_stream" },"#;
    let Err(e) = run_local(&sc, &pipeline(shut), &["out"]) else {
        panic!("a full buffer that shuts down stops the run")
    };
    let e = format!("{e:#}");
    assert!(e.contains("buffer-full") && e.contains("max_records"), "{e}");
}

#[test]
fn suppress_until_a_time_limit_needs_its_limit_and_a_table_before_it() {
    let sc = Scratch::new();
    input_at(&sc, &[("a", "x", 0)]);
    let no_limit = r#"{ op = "group_by_key" }, { op = "count" }, { op = "suppress", until = "time_limit" },"#;
    let e = format!("{:#}", run_local(&sc, &pipeline(no_limit), &["out"]).expect_err("refused"));
    assert!(e.contains("steps[2].time_limit") && e.contains("needs `time_limit`"), "{e}");
    let no_table = r#"{ op = "suppress", until = "time_limit", time_limit = 5 },"#;
    let e = format!("{:#}", run_local(&sc, &pipeline(no_table), &["out"]).expect_err("refused"));
    assert!(e.contains("holds a table's updates"), "{e}");
}
