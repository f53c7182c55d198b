//! The conformance suite (tests/conformance): each language's kit is built with `wasp build`
//! and must pass `wasp test` on the suite's one pipeline, one record at a time and in
//! batches. A language that falls behind the contract fails here.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::cache_dir;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `wasp ARGS` from the repository's root: (succeeded, stdout and stderr).
fn wasp(args: &[&str]) -> (bool, String) {
    // Not the target directory this test runs from: cargo holds it while tests run. The
    // scaffold test builds its Rust crates there too, so the dependencies build once.
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("scaffold-target");
    let out = Command::new(env!("CARGO_BIN_EXE_wasp"))
        .current_dir(root())
        .env("WASP_CACHE_DIR", cache_dir())
        .env("CARGO_TARGET_DIR", target)
        .args(args)
        .output()
        .expect("run wasp");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Builds `plugins/conformance/LANG` and runs the suite on it, record by record and in batches
/// of 100.
fn passes_the_suite(lang: &str) {
    let dir = format!("plugins/conformance/{lang}");
    let (ok, out) = wasp(&["build", &dir]);
    assert!(ok, "wasp build {dir}:\n{out}");
    let kinds = "kinds: filter, value-mapper, flat-mapper, aggregator, processor, WIT wasp:plugin@0.1.0";
    assert!(out.contains(kinds), "the {lang} kit exports the kit-plugin world:\n{out}");
    let plugin = format!("kit={dir}/kit.wasm");
    for batch in ["1", "100"] {
        let (ok, out) = wasp(&["test", "tests/conformance", "--plugin", &plugin, "--batch-size", batch]);
        assert!(ok && out.contains("1 passed, 0 failed"), "the {lang} kit, batches of {batch}:\n{out}");
    }
}

#[test]
fn the_rust_kit_passes_the_conformance_suite() {
    passes_the_suite("rust");
}

/// A case whose metric or log expectation does not hold fails, saying what was seen.
#[test]
fn a_wrong_metric_or_missing_log_line_fails_the_case() {
    let (ok, out) = wasp(&["build", "plugins/conformance/rust"]);
    assert!(ok, "{out}");
    let sc = crate::common::Scratch::new();
    let suite = std::fs::read_to_string(root().join("tests/conformance/conformance.test.toml")).expect("the suite");
    let manifest = root().join("tests/conformance/pipeline.toml");
    let wrong = suite
        .replace("manifest = \"pipeline.toml\"", &format!("manifest = {:?}", manifest.display().to_string()))
        .replace("function = \"describe\" }, value = 6", "function = \"describe\" }, value = 9")
        .replace("contains = \"kit counted\"", "contains = \"kit never says this\"");
    let file = sc.path("wrong.test.toml");
    std::fs::write(&file, wrong).expect("write the test file");
    let plugin = format!("kit={}", root().join("plugins/conformance/rust/kit.wasm").display());
    let (ok, out) = wasp(&["test", file.to_str().expect("a UTF-8 path"), "--plugin", &plugin]);
    assert!(!ok && out.contains("0 passed, 1 failed"), "{out}");
    assert!(
        out.contains(
            "metric wasp_plugin_kit_records_total{function=\"describe\",plugin=\"kit\"}: expected 9, went up by 6"
        ),
        "{out}"
    );
    assert!(
        out.contains("no log line at info from `kit` contains `kit never says this`; the plugins logged:"),
        "{out}"
    );
    assert!(out.contains("info kit: kit counted 1 for a key"), "{out}");
}

#[test]
fn the_python_kit_passes_the_conformance_suite() {
    passes_the_suite("python");
}

#[test]
fn the_javascript_kit_passes_the_conformance_suite() {
    passes_the_suite("javascript");
}

#[test]
fn the_c_kit_passes_the_conformance_suite() {
    passes_the_suite("c");
}

#[test]
fn the_cpp_kit_passes_the_conformance_suite() {
    passes_the_suite("cpp");
}
