//! Manifest golden files: every `tests/ui/valid/*.toml` must build a topology whose description
//! matches the `.txt` beside it, and every `tests/ui/invalid/*.toml` must fail with the error in
//! the `.err` beside it. Adding a case means adding a file; `WASP_BLESS=1` writes the snapshots.

use std::path::Path;

use crate::common::repo;

fn cases(dir: &str) -> Vec<std::path::PathBuf> {
    let dir = repo().join("tests/ui").join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no cases in {}", dir.display());
    files
}

fn check(path: &Path, ext: &str, actual: &str) -> Option<String> {
    let snapshot = path.with_extension(ext);
    if std::env::var_os("WASP_BLESS").is_some() {
        std::fs::write(&snapshot, actual).expect("write snapshot");
        return None;
    }
    let expected = std::fs::read_to_string(&snapshot).unwrap_or_default();
    (expected != actual).then(|| {
        format!("{}:\n--- expected ({})\n{expected}\n--- actual\n{actual}", path.display(), snapshot.display())
    })
}

#[test]
fn valid_manifests_build_the_expected_topology() {
    let mut failures = Vec::new();
    for path in cases("valid") {
        match wasp_host::app::plan(&path) {
            Ok((_, topology)) => failures.extend(check(&path, "txt", &wasp_host::topology::describe(&topology))),
            Err(e) => failures.push(format!("{}: should be valid: {e:#}", path.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn invalid_manifests_fail_with_the_expected_error() {
    let root = format!("{}/", repo().display());
    let mut failures = Vec::new();
    for path in cases("invalid") {
        match wasp_host::app::plan(&path) {
            Ok(_) => failures.push(format!("{}: should be invalid", path.display())),
            Err(e) => failures.extend(check(&path, "err", &(format!("{e:#}").replace(&root, "") + "\n"))),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_example_manifests_are_valid() {
    for dir in std::fs::read_dir(repo().join("pipelines")).expect("pipelines/") {
        let manifest = dir.expect("entry").path().join("pipeline.toml");
        if manifest.exists() {
            wasp_host::app::plan(&manifest).unwrap_or_else(|e| panic!("{}: {e:#}", manifest.display()));
        }
    }
}
