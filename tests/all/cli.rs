//! The command line: `--follow` tails input files, SIGTERM drains and exits cleanly,
//! `describe` and `validate` work on the examples.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Scratch, cache_dir, header, repo};

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn follow_tails_the_input_and_sigterm_drains_and_exits_zero() {
    let sc = Scratch::new();
    sc.write("in.jsonl", "{\"key\":\"a\",\"value\":\"keep 1\"}\n");
    let manifest = header("")
        + "[pipelines.p]\nfrom = \"in\"\nto = \"out\"\n[[pipelines.p.steps]]\nop = \"filter\"\nplugin = \"kit\"\n";
    let path = sc.write("pipeline.toml", &manifest);
    let out = sc.path("out.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasp"))
        .env("WASP_CACHE_DIR", cache_dir())
        .args(["run", "--follow", "--output"])
        .arg(format!("out={}", out.display()))
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wasp");
    let lines = || std::fs::read_to_string(&out).map(|s| s.lines().count()).unwrap_or(0);
    wait_for("the first record", Duration::from_secs(60), || lines() == 1);
    let mut f = std::fs::OpenOptions::new().append(true).open(sc.path("in.jsonl")).unwrap();
    writeln!(f, "{{\"key\":\"b\",\"value\":\"drop\"}}\n{{\"key\":\"c\",\"value\":\"keep 2\"}}").unwrap();
    drop(f);
    wait_for("the appended record", Duration::from_secs(60), || lines() == 2);
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    let start = Instant::now();
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "wasp did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert!(exit.success(), "exit {exit:?}: {stderr}");
    assert!(stderr.contains("records_in=3"), "{stderr}");
    assert_eq!(lines(), 2);
}

#[test]
fn describe_prints_sources_processors_and_sinks() {
    let out = Command::new(env!("CARGO_BIN_EXE_wasp"))
        .arg("describe")
        .arg(repo().join("pipelines/clickstream/pipeline.toml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Source: source-raw-clicks (topics: [raw-clicks])"), "{text}");
    assert!(text.contains("Processor: clicks-2-map_values (plugin: enrich, kind: value-mapper)"), "{text}");
    assert!(text.contains("Sink: interest-sink-product-interest (topic: product-interest)"), "{text}");
}

#[test]
fn describe_draws_dot_and_mermaid_graphs() {
    let describe = |format: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_wasp"))
            .args(["describe", "--format", format])
            .arg(repo().join("pipelines/clickstream/pipeline.toml"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let dot = describe("dot");
    assert!(dot.starts_with("digraph \"clickstream\" {"), "{dot}");
    assert!(dot.contains("n0 [label=\"source: raw-clicks\", shape=cds];"), "{dot}");
    assert!(dot.contains("n0 -> n1;"), "{dot}");
    let mermaid = describe("mermaid");
    assert!(mermaid.starts_with("flowchart LR"), "{mermaid}");
    assert!(mermaid.contains("n3[\"clicks-2-map_values<br/>enrich\"]"), "{mermaid}");
    assert!(mermaid.contains("n0 --> n1"), "{mermaid}");
}

#[test]
fn validate_loads_every_plugin_of_the_example() {
    let out = Command::new(env!("CARGO_BIN_EXE_wasp"))
        .env("WASP_CACHE_DIR", cache_dir())
        .arg("validate")
        .arg(repo().join("pipelines/clickstream/pipeline.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ok (2 pipelines, 6 plugins, 2 sub-topologies, local mode)"), "{stdout}");
}
