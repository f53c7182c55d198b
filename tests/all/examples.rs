//! Every example pipeline runs, through the real `wasp` binary in local mode, and prints the
//! output in `expected.txt` beside its manifest.

use std::process::Command;

use crate::common::{cache_dir, repo};

fn run_example(name: &str) -> (String, String) {
    let manifest = repo().join("pipelines").join(name).join("pipeline.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_wasp"))
        .env("WASP_CACHE_DIR", cache_dir())
        .arg("run")
        .arg(&manifest)
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
