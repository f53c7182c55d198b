//! Every example pipeline runs, through the real `wasp` binary in local mode, and prints the
//! output in `expected.txt` beside its manifest.

use std::process::Command;

use crate::common::{cache_dir, repo};

fn run_example(name: &str) -> (String, String) {
    let state = tempfile::tempdir().expect("a state directory");
    run_example_in(name, state.path())
}

/// Runs an example with its state under `state` (stateful examples keep it between runs).
fn run_example_in(name: &str, state: &std::path::Path) -> (String, String) {
    run_example_with(name, state, &[])
}

/// Runs an example with its state under `state` and more arguments for `wasp run`.
fn run_example_with(name: &str, state: &std::path::Path, args: &[&std::ffi::OsStr]) -> (String, String) {
    run_manifest(&repo().join("pipelines").join(name).join("pipeline.toml"), state, args)
}

/// Runs a manifest with its state under `state` and more arguments for `wasp run`.
fn run_manifest(manifest: &std::path::Path, state: &std::path::Path, args: &[&std::ffi::OsStr]) -> (String, String) {
    let name = manifest.display();
    let out = Command::new(env!("CARGO_BIN_EXE_wasp"))
        .env("WASP_CACHE_DIR", cache_dir())
        .arg("run")
        .arg(manifest)
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .expect("run wasp");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{name} failed:\n{stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

fn sorted_lines(s: &str) -> Vec<&str> {
    let mut v: Vec<&str> = s.lines().collect();
    v.sort_unstable();
    v
}

#[test]
fn clickstream_parses_drops_bots_enriches_in_python_and_branches() {
    let (stdout, stderr) = run_example("clickstream");
    let expected = std::fs::read_to_string(repo().join("pipelines/clickstream/expected.txt")).expect("expected.txt");
    // Topics are printed as their batches finish; within a topic the order is the input's.
    assert_eq!(sorted_lines(&stdout), sorted_lines(&expected), "stdout:\n{stdout}");
    for topic in ["checkout-clicks", "other-clicks", "product-interest"] {
        let of = |s: &str| s.lines().filter(|l| l.starts_with(topic)).map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(of(&stdout), of(&expected), "order within {topic}");
    }
    assert!(!stdout.contains("bot") && !stdout.contains("curl"), "bots are filtered out");
    assert!(stderr.contains("records_in=15"), "{stderr}");
}

/// The expected output of an example.
fn expected(name: &str) -> String {
    std::fs::read_to_string(repo().join("pipelines").join(name).join("expected.txt")).expect("expected.txt")
}

#[test]
fn user_events_reads_avro_categorizes_in_python_and_writes_protobuf() {
    let (stdout, stderr) = run_example("user-events");
    // Local mode: the file holds the Avro events as JSON, each checked against the schema; the
    // output is printed as the Protobuf message's JSON, every field present.
    assert_eq!(stdout, expected("user-events"), "{stderr}");
    assert!(stderr.contains("records_in=6") && stderr.contains("failed=0"), "{stderr}");
}

#[test]
fn wordcount_counts_words_through_a_repartition_and_keeps_them_between_runs() {
    let state = tempfile::tempdir().expect("a state directory");
    let (stdout, stderr) = run_example_in("wordcount", state.path());
    // One task per topic partition, one partition locally: the updates come in input order.
    assert_eq!(stdout, expected("wordcount"), "{stderr}");
    assert!(stdout.lines().any(|l| l == "streams-wordcount-output\tkafka\t3"), "{stdout}");
    // The same input again, same state: every record was counted already.
    let (again, _) = run_example_in("wordcount", state.path());
    assert_eq!(again, "", "a second run over the same input counts nothing twice");
}

#[test]
fn stock_stats_emits_each_hopping_window_once_when_it_closes() {
    let (stdout, stderr) = run_example("stock-stats");
    assert_eq!(stdout, expected("stock-stats"), "{stderr}");
    assert!(stderr.contains("late=1"), "the late trade is dropped and counted: {stderr}");
    assert!(!stdout.contains("\"min_price\":1.0"), "the late trade is in no window");
}

#[test]
fn user_sessions_merge_when_an_event_bridges_the_gap() {
    let (stdout, stderr) = run_example("user-sessions");
    assert_eq!(stdout, expected("user-sessions"), "{stderr}");
    assert!(stdout.contains("alice@1700000000000/1700003000000\t{\"events\":5"), "{stdout}");
}

#[test]
fn fraud_detection_alerts_on_velocity_with_a_processor_and_its_stores() {
    let (stdout, stderr) = run_example("fraud-detection");
    assert_eq!(sorted_lines(&stdout), sorted_lines(&expected("fraud-detection")), "{stderr}");
    let alerts = stdout.lines().filter(|l| l.starts_with("fraud-alerts")).count();
    assert_eq!(alerts, 2, "{stdout}");
    // The stream-time timer fired and its clean-up removed transactions from the window store.
    assert!(stdout.lines().any(|l| l.starts_with("fraud-maintenance\tclean-up\t{\"older_than\"")), "{stdout}");
}

/// Runs an example with `topic` written as JSON lines instead of printed: each of its records'
/// key (`null` for none) and timestamp, in order.
fn keys_and_timestamps(name: &str, topic: &str) -> Vec<(String, i64)> {
    topics_keys_and_timestamps(name, &[topic]).remove(0)
}

/// Runs an example once with each of `topics` (a topic another pipeline reads too) written as
/// JSON lines instead of printed: per topic, each of its records' key (`null` for none) and
/// timestamp, in order.
fn topics_keys_and_timestamps(name: &str, topics: &[&str]) -> Vec<Vec<(String, i64)>> {
    let dir = tempfile::tempdir().expect("a directory");
    let paths: Vec<_> = (0..topics.len()).map(|i| dir.path().join(format!("out-{i}.jsonl"))).collect();
    let mut args = Vec::new();
    for (topic, path) in topics.iter().zip(&paths) {
        let mut output = std::ffi::OsString::from(format!("{topic}="));
        output.push(path);
        args.extend([std::ffi::OsString::from("--output"), output]);
    }
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsString::as_os_str).collect();
    run_example_with(name, &dir.path().join("state"), &args);
    let read = |path: &std::path::PathBuf| {
        let lines = std::fs::read_to_string(path).expect("the output file");
        lines
            .lines()
            .map(|l| {
                let r: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
                (r["key"].as_str().unwrap_or("null").to_owned(), r["timestamp"].as_i64().expect("a timestamp"))
            })
            .collect()
    };
    paths.iter().map(read).collect()
}

/// 2026-11-01 at `h:m:s` UTC, in milliseconds: the examples' event times.
fn at(h: i64, m: i64, s: i64) -> i64 {
    1_793_491_200_000 + ((h * 60 + m) * 60 + s) * 1000
}

#[test]
fn click_enrichment_joins_each_click_with_the_profile_its_user_had_then() {
    let (stdout, stderr) = run_example("click-enrichment");
    // One task reads the clicks and the profiles, the earliest timestamp first: each click
    // sees the table as of its own time, and the results come in the clicks' order.
    assert_eq!(stdout, expected("click-enrichment"), "{stderr}");
    // 8 clicks and 5 profile updates in, one result per click; the table's updates emit nothing.
    assert!(stderr.contains("records_in=13 records_out=8"), "{stderr}");
    let tiers: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("\"user\":\"u1\""))
        .map(|l| if l.contains("premium") { "premium" } else { "free" })
        .collect();
    assert_eq!(tiers, ["free", "free", "premium"], "u1's upgrade at 10:05 reaches only the later click");
    // A result keeps its click's key and timestamp (the anonymous click's key stays null).
    let clicks = [(1, 0), (2, 0), (3, 0), (4, 0), (5, 30), (6, 30), (7, 0), (9, 0)].map(|(m, s)| at(10, m, s));
    let keys = ["u1", "u2", "u3", "u1", "u1", "null", "u3", "u2"];
    let want: Vec<(String, i64)> = keys.iter().map(|k| k.to_string()).zip(clicks).collect();
    assert_eq!(keys_and_timestamps("click-enrichment", "enriched-clicks"), want);
}

#[test]
fn orders_payments_emits_an_unpaid_order_once_stream_time_closes_its_window() {
    let (stdout, stderr) = run_example("orders-payments");
    // One task, both streams in timestamp order: joined pairs as their payment arrives, an
    // unpaid order when the record that moves stream time past its window (+ grace) arrives.
    assert_eq!(stdout, expected("orders-payments"), "{stderr}");
    // o6's window (to 10:41, grace to 10:42) never closes: no record is later than 10:32.
    assert!(!stdout.contains("\"order\":\"o6\""), "{stdout}");
    assert!(stderr.contains("late=0"), "the out-of-order payment is within its grace: {stderr}");
    // A pair takes the later of its timestamps; an unpaid order keeps its own.
    let want = [
        ("o1", at(10, 3, 0)),
        ("o3", at(10, 12, 30)),
        ("o2", at(10, 11, 30)),
        ("o4", at(10, 6, 0)),
        ("o5", at(10, 20, 0)),
    ]
    .map(|(k, t)| (k.to_owned(), t));
    assert_eq!(keys_and_timestamps("orders-payments", "order-settlements"), want);
}

#[test]
fn ksml_modular_ingests_enriches_from_a_global_table_and_aggregates_in_three_pipelines() {
    let state = tempfile::tempdir().expect("a state directory");
    let (stdout, stderr) = run_example_in("ksml-modular", state.path());
    // One partition throughout: the category totals come in the purchases' order.
    assert_eq!(stdout, expected("ksml-modular"), "{stderr}");
    // In: 12 raw events, 8 normalized purchases, 6 enriched ones, 6 repartitioned ones; the
    // catalog is not among them, it is read before the tasks start.
    assert!(stderr.contains("records_in=32 records_out=26"), "{stderr}");
    // The catalog is read whole first: the head lamp bought at 10:10 is counted in the category
    // the catalog gives it at 10:30.
    let camping = |l: &&str| l.starts_with("category-sales\tcamping\t");
    assert!(stdout.lines().filter(camping).any(|l| l.contains("\"Head lamp\"")), "{stdout}");
    assert!(!stdout.contains("lighting"), "{stdout}");
    // Each stage, by the order ids it passes on: ingestion drops o4 (quantity 0), o6 (price
    // `eighty`), o1's refund and o9 (not JSON); enrichment drops o5 (its product deleted from
    // the catalog) and o8 (its product never in it). Every record keeps its purchase's time.
    let purchases = [
        ("o1", at(10, 0, 0)),
        ("o2", at(10, 2, 0)),
        ("o3", at(10, 4, 0)),
        ("o5", at(10, 7, 0)),
        ("o7", at(10, 10, 0)),
        ("o8", at(10, 12, 0)),
        ("o10", at(10, 18, 0)),
        ("o11", at(10, 20, 0)),
    ]
    .map(|(k, t)| (k.to_owned(), t));
    let topics = ["normalized-purchases", "enriched-purchases", "category-sales"];
    let [normalized, enriched, sales] =
        <[_; 3]>::try_from(topics_keys_and_timestamps("ksml-modular", &topics)).expect("three topics");
    assert_eq!(normalized, purchases);
    let joined: Vec<_> = purchases.iter().filter(|(k, _)| k != "o5" && k != "o8").cloned().collect();
    assert_eq!(enriched, joined);
    // Each total has the category's key and the time of the purchase that updated it.
    let categories = ["camping", "footwear", "camping", "camping", "footwear", "camping"];
    let want: Vec<(String, i64)> =
        categories.iter().map(|c| c.to_string()).zip(joined.iter().map(|(_, t)| *t)).collect();
    assert_eq!(sales, want);
    // The same input again, same state: the totals count nothing twice.
    let (again, _) = run_example_in("ksml-modular", state.path());
    assert_eq!(again, "", "a second run over the same input counts nothing twice");
}

/// The table that printed changes leave: each key's last value, a tombstone (`null`)
/// removing the key.
fn final_table(printed: &str) -> std::collections::BTreeMap<String, String> {
    let mut table = std::collections::BTreeMap::new();
    for line in printed.lines() {
        let mut fields = line.splitn(3, '\t').skip(1);
        let (Some(key), Some(value)) = (fields.next(), fields.next()) else { panic!("not topic, key, value: {line}") };
        if value == "null" {
            table.remove(key);
        } else {
            table.insert(key.to_owned(), value.to_owned());
        }
    }
    table
}

#[test]
fn orders_customers_joins_each_order_with_the_customer_it_names_and_follows_both_tables() {
    let (stdout, stderr) = run_example("orders-customers");
    // One thread, a record at a time, the two files alternating in time: the three stages of
    // the join run in timestamp order, and the result table's changes come out the same in
    // every run.
    assert_eq!(stdout, expected("orders-customers"), "{stderr}");
    // 12 changes in; through the internal topics, 6 subscriptions (o1's move is two: leave c1,
    // join c2) and 9 answers; 9 results out.
    assert!(stderr.contains("records_in=27 records_out=24"), "{stderr}");
    let customer_of = |order: &str| {
        let prefix = format!("orders-with-customers\t{order}\t");
        stdout
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|v| {
                let v: serde_json::Value = serde_json::from_str(v).expect("a JSON value");
                let id = v["customer_id"].as_str().unwrap_or("none");
                let tier = v["customer"]["tier"].as_str().unwrap_or("none");
                format!("{id}:{tier}")
            })
            .collect::<Vec<_>>()
    };
    // Ann's upgrades reach o1 while it is hers, and not after it moves to Bob; o2 sees both.
    assert_eq!(customer_of("o1"), ["c1:silver", "c1:gold", "c2:gold"], "{stdout}");
    assert_eq!(customer_of("o2"), ["c1:silver", "c1:gold", "c1:platinum"], "{stdout}");
    // An inner join: o3 enters once its customer exists; o4 leaves when its customer is deleted.
    assert_eq!(customer_of("o3"), ["c3:bronze"], "{stdout}");
    assert_eq!(customer_of("o4"), ["c4:silver", "none:none"], "{stdout}");
    // A result has the later timestamp of its order's and its customer's change.
    let want = [
        ("o1", at(10, 0, 0)),
        ("o2", at(10, 2, 0)),
        ("o1", at(10, 5, 0)),
        ("o2", at(10, 5, 0)),
        ("o1", at(10, 6, 0)),
        ("o3", at(10, 7, 0)),
        ("o4", at(10, 8, 0)),
        ("o2", at(10, 9, 0)),
        ("o4", at(10, 10, 0)),
    ]
    .map(|(k, t)| (k.to_owned(), t));
    assert_eq!(keys_and_timestamps("orders-customers", "orders-with-customers"), want);
}

#[test]
fn orders_customers_ends_in_the_same_table_when_the_orders_run_ahead_of_the_answers() {
    // The example with larger batches and the default threads: the orders run ahead of the
    // answers, which are dropped as stale when their order changed since, so fewer changes
    // come out (which ones may vary), but the result table ends the same.
    let dir = repo().join("pipelines/orders-customers");
    let manifest = std::fs::read_to_string(dir.join("pipeline.toml")).expect("the manifest");
    let want = final_table(&expected("orders-customers"));
    assert_eq!(want.keys().collect::<Vec<_>>(), ["o1", "o2", "o3"], "o4's result was retracted");
    for batch_size in ["\n", "\nbatch_size = 2\n"] {
        let other = manifest
            .replace("\nthreads = 1\nbatch_size = 1\n", batch_size)
            .replace("\"data/", &format!("\"{}/data/", dir.display()))
            .replace("\"../../plugins/", &format!("\"{}/plugins/", repo().display()));
        assert!(!other.contains("\nthreads = 1\n") && !other.contains("\"../../"), "{other}");
        let scratch = tempfile::tempdir().expect("a directory");
        let path = scratch.path().join("pipeline.toml");
        std::fs::write(&path, other).expect("write the manifest");
        let (stdout, stderr) = run_manifest(&path, &scratch.path().join("state"), &[]);
        assert_eq!(final_table(&stdout), want, "{batch_size:?}: {stdout}{stderr}");
    }
}
