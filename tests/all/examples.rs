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
    let manifest = repo().join("pipelines").join(name).join("pipeline.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_wasp"))
        .env("WASP_CACHE_DIR", cache_dir())
        .arg("run")
        .arg(&manifest)
        .arg("--state-dir")
        .arg(state)
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
