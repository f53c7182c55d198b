//! The command line: `--follow` tails input files, SIGTERM drains and exits cleanly,
//! `describe` and `validate` work on the examples.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Scratch, cache_dir, header, repo, wait_for};

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

/// `wasp describe --format FORMAT` of an example's manifest.
fn describe(example: &str, format: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_wasp"))
        .args(["describe", "--format", format])
        .arg(repo().join("pipelines").join(example).join("pipeline.toml"))
        .output()
        .expect("running wasp describe");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn describe_draws_dot_and_mermaid_graphs() {
    let describe = |format: &str| describe("clickstream", format);
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
fn describe_draws_an_svg_with_plugin_versions_and_a_page_that_loads_nothing() {
    let describe = |format: &str| describe("wordcount", format);
    let svg = describe("svg");
    roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("not well-formed: {e}\n{svg}"));
    // Each plugin with the digest of its file, as `GET /plugins` shows it.
    for name in ["split-words", "word-key"] {
        let digest = wasp_host::wasm::digest(&std::fs::read(crate::common::plugin(name)).unwrap());
        let shown = format!("plugin: {name}<tspan class=\"version\" data-plugin=\"{name}\">@{}</tspan>", &digest[..12]);
        assert!(svg.contains(&shown), "{shown} not in\n{svg}");
    }
    let html = describe("html");
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(html.contains(&svg), "the page embeds the drawing");
    assert!(html.contains("Sub-topology: 1"), "and the text description: {html}");
    // Nothing to load: no sources or links, and no URL but the SVG namespace.
    assert!(!html.contains("src=") && !html.contains("href="), "{html}");
    assert_eq!(html.matches("http").count(), html.matches("http://www.w3.org/2000/svg").count(), "{html}");
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

/// `wasp test` on a path: its report and exit status.
fn wasp_test(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wasp"))
        .env("WASP_CACHE_DIR", cache_dir())
        .arg("test")
        .args(args)
        .output()
        .expect("run wasp test");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Every example in `pipelines/` has a `wasp test` file, and each passes one record at a
/// time (each committed) and in batches alike: the results do not depend on batching.
#[test]
fn every_example_passes_its_wasp_test_one_record_at_a_time_and_in_batches() {
    let pipelines = repo().join("pipelines");
    let mut examples: Vec<String> = std::fs::read_dir(&pipelines)
        .expect("pipelines/")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("pipeline.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    examples.sort();
    for ex in &examples {
        let tests = std::fs::read_dir(pipelines.join(ex))
            .expect("an example's folder")
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().ends_with(".test.toml"));
        assert!(tests, "pipelines/{ex} has no `*.test.toml`");
    }
    for batch in ["1", "64"] {
        let (ok, report) = wasp_test(&["--batch-size".as_ref(), batch.as_ref(), pipelines.as_os_str()]);
        assert!(ok, "batch size {batch}:\n{report}");
        let last = report.lines().rfind(|l| l.ends_with("failed")).unwrap_or_default();
        assert!(last.ends_with(" passed, 0 failed") && !last.starts_with("0 "), "{report}");
    }
}

/// A wrong expectation fails with a diff of expected against actual records, and the run
/// exits non-zero; a step naming a topic no pipeline reads names the file, line and key.
#[test]
fn a_wrong_expectation_prints_a_diff_and_fails() {
    let sc = Scratch::new();
    let manifest = repo().join("pipelines/wordcount/pipeline.toml");
    let file = |expect: &str, topic: &str| {
        format!(
            "manifest = {:?}\n\n[[test]]\nname = \"counts\"\nsteps = [\n  {{ topic = \"{topic}\", value = \"b a b\" }},\n]\n\
             expect = [{{ topic = \"streams-wordcount-output\", records = [{expect}] }}]\n",
            manifest.display().to_string()
        )
    };
    let good = r#"{ key = "b", value = "1" }, { key = "a", value = "1" }, { key = "b", value = "2" }"#;
    let path = sc.write("good.test.toml", &file(good, "streams-plaintext-input"));
    let (ok, report) = wasp_test(&[path.as_os_str()]);
    assert!(ok && report.contains("1 passed, 0 failed"), "{report}");
    let wrong = r#"{ key = "b", value = "1" }, { key = "a", value = "1" }, { key = "b", value = "3" }"#;
    let path = sc.write("wrong.test.toml", &file(wrong, "streams-plaintext-input"));
    let (ok, report) = wasp_test(&[path.as_os_str()]);
    assert!(!ok, "{report}");
    assert!(report.contains("counts ... FAILED"), "{report}");
    assert!(report.contains("topic `streams-wordcount-output` (in order): 3 expected, 3 written"), "{report}");
    assert!(report.contains("-b → 3") && report.contains("+b → 2") && report.contains(" a → 1"), "{report}");
    assert!(report.contains("0 passed, 1 failed"), "{report}");
    let path = sc.write("typo.test.toml", &file(good, "streams-plaintext-inptu"));
    let (ok, report) = wasp_test(&[path.as_os_str()]);
    assert!(!ok, "{report}");
    assert!(
        report.contains("typo.test.toml:6:")
            && report.contains("`counts.steps[0].topic`: no pipeline reads topic `streams-plaintext-inptu`")
            && report.contains("did you mean `streams-plaintext-input`?"),
        "{report}"
    );
}

/// `wasp new LANG NAME --kind KIND`, then `wasp build` and `wasp test` on what it made: each
/// language's and kind's scaffold builds into a component of that kind and passes its own test
/// as generated, so the templates cannot rot.
#[test]
fn a_new_plugin_of_each_kind_builds_and_passes_its_own_test() {
    let sc = Scratch::new();
    // Not the target directory this test runs from: cargo holds it while tests run.
    let target = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("scaffold-target");
    let wasp = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(env!("CARGO_BIN_EXE_wasp"))
            .env("WASP_CACHE_DIR", cache_dir())
            .env("CARGO_TARGET_DIR", &target)
            .args(args)
            .output()
            .expect("run wasp");
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    // Every language and kind: Rust through cargo and wit-component, Python through
    // componentize-py, JavaScript through componentize-js, C and C++ through clang and
    // wit-bindgen's C generator (in-process).
    let exports = [
        ("filter", "filter"),
        ("map-values", "value-mapper"),
        ("flat-map", "flat-mapper"),
        ("aggregate", "aggregator"),
        // A key-value store and a stream-time timer, in each language.
        ("processor", "processor"),
    ];
    let kinds: Vec<&str> = wasp_host::app::NEW_KINDS.iter().map(|(k, _, _)| *k).collect();
    assert_eq!(exports.map(|(k, _)| k).to_vec(), kinds);
    let cases = wasp_host::app::NEW_LANGUAGES.iter().flat_map(|l| exports.iter().map(move |(k, e)| (*l, *k, *e)));
    for (lang, kind, export) in cases {
        let name = format!("{lang}-{kind}");
        let (ok, out) = wasp(&[
            "new".as_ref(),
            lang.as_ref(),
            name.as_ref(),
            "--kind".as_ref(),
            kind.as_ref(),
            "--dir".as_ref(),
            sc.dir.path().as_os_str(),
        ]);
        assert!(ok && out.contains(&format!("created {}", sc.path(&name).display())), "{out}");
        let (ok, out) = wasp(&["build".as_ref(), sc.path(&name).as_os_str()]);
        assert!(ok, "{out}");
        assert!(
            out.contains(&format!("built {}", sc.path(&name).join(format!("{name}.wasm")).display()))
                && out.contains(&format!("kinds: {export}, WIT wasp:plugin@0.1.0")),
            "{out}"
        );
        let (ok, out) = wasp(&["test".as_ref(), sc.path(&name).as_os_str()]);
        assert!(ok && out.contains("1 passed, 0 failed"), "{out}");
    }
    // A name that is not a crate name, a kind it cannot scaffold, an existing folder.
    let (ok, out) =
        wasp(&["new".as_ref(), "rust".as_ref(), "My Filter".as_ref(), "--dir".as_ref(), sc.dir.path().as_os_str()]);
    assert!(!ok && out.contains("lowercase letters, digits and `-`"), "{out}");
    let (ok, out) = wasp(&[
        "new".as_ref(),
        "rust".as_ref(),
        "x".as_ref(),
        "--kind".as_ref(),
        "reduce".as_ref(),
        "--dir".as_ref(),
        sc.dir.path().as_os_str(),
    ]);
    assert!(!ok && out.contains("--kind `reduce`"), "{out}");
    let (ok, out) =
        wasp(&["new".as_ref(), "rust".as_ref(), "rust-filter".as_ref(), "--dir".as_ref(), sc.dir.path().as_os_str()]);
    assert!(!ok && out.contains("exists already"), "{out}");
    let (ok, out) =
        wasp(&["new".as_ref(), "cobol".as_ref(), "x".as_ref(), "--dir".as_ref(), sc.dir.path().as_os_str()]);
    assert!(!ok && out.contains("rust, python, javascript"), "{out}");
}

/// `--log-format json`: every line on stderr is one JSON object with the time, level, target
/// and message, and the event's fields beside them (the run's totals on its last line).
#[test]
fn json_logs_are_one_object_per_line_with_the_fields_at_the_top() {
    let state = tempfile::tempdir().expect("a state directory");
    let out = Command::new(env!("CARGO_BIN_EXE_wasp"))
        .env("WASP_CACHE_DIR", cache_dir())
        .env_remove("WASP_LOG")
        .args(["--log-format", "json", "run"])
        .arg(repo().join("pipelines/wordcount/pipeline.toml"))
        .arg("--state-dir")
        .arg(state.path())
        .output()
        .expect("run wasp");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 3, "{stderr}");
    for l in &lines {
        for field in ["timestamp", "level", "target", "message"] {
            assert!(l.get(field).is_some(), "no `{field}` in {l}");
        }
    }
    let done = lines.iter().find(|l| l["message"] == "done").unwrap_or_else(|| panic!("no `done` line: {stderr}"));
    assert_eq!(done["level"], "INFO");
    assert!(done["records_in"].as_u64().is_some_and(|n| n > 0), "the totals are fields: {done}");
}

#[test]
fn input_and_output_take_a_streams_name_for_its_topic_and_refuse_a_name_nothing_reads() {
    // The word count reads stream `lines` (topic `streams-plaintext-input`) and writes stream
    // `counts` (topic `streams-wordcount-output`): both are named by their streams here.
    let sc = Scratch::new();
    let input = sc.write("mine.txt", "wasp wasp\n");
    let out = sc.path("counts.jsonl");
    let run = |input_arg: String| {
        Command::new(env!("CARGO_BIN_EXE_wasp"))
            .env("WASP_CACHE_DIR", cache_dir())
            .arg("run")
            .arg(repo().join("pipelines/wordcount/pipeline.toml"))
            .arg("--state-dir")
            .arg(sc.path("state"))
            .args(["--input", &input_arg, "--output"])
            .arg(format!("counts={}", out.display()))
            .output()
            .expect("run wasp")
    };
    let ran = run(format!("lines={}", input.display()));
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    let written = std::fs::read_to_string(&out).expect("the counts were written to the file");
    let counts: Vec<serde_json::Value> = written.lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    let pairs: Vec<(String, String)> = counts
        .iter()
        .map(|c| {
            (c["key"].as_str().unwrap_or_default().to_owned(), c["value"].to_string().trim_matches('"').to_owned())
        })
        .collect();
    assert_eq!(pairs, [("wasp".to_owned(), "1".to_owned()), ("wasp".to_owned(), "2".to_owned())], "{written}");
    // A name that is neither a topic the pipelines read nor a stream's: refused, not ignored.
    let refused = run(format!("lines2={}", input.display()));
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--input lines2=") && stderr.contains("streams-plaintext-input"), "{stderr}");
}
