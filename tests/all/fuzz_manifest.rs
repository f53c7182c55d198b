//! The manifest fuzzer: every example manifest, mangled (lines deleted, doubled or cut, keys
//! and values replaced, bytes inserted), is parsed and planned. Whatever the input, wasp never
//! panics, and every error names the manifest's file and a line in it. A fixed budget with a
//! fixed seed: the same cases every run, and a failure shrinks to a small mutation.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// Cases per example manifest.
const CASES: u32 = 192;

/// Values a mutation puts where one was: each a type or a range some key does not expect.
const VALUES: &[&str] = &[
    "\"\"",
    "0",
    "-1",
    "1e400",
    "18446744073709551616",
    "true",
    "[]",
    "{}",
    "[[1]]",
    "\"x\"",
    "\"\\u0000\"",
    "\"9999999999999d\"",
    "\"-5s\"",
    "{ op = \"nope\" }",
    "[{ op = \"count\" }]",
    "\"../../../etc/passwd\"",
    "nan",
    "\"ms\"",
];

/// Keys a mutation puts where one was: misspellings and keys from other sections.
const KEYS: &[&str] =
    &["frm", "op", "steps", "to", "id", "plugin", "store", "window", "topic", "version", "x.y", "\"\""];

/// Text a mutation inserts.
const SNIPPETS: &[&str] = &["=", "[", "]", "\"", "{", "}", "\n", "[[pipelines]]", "\n[x]\n", "#", "'''", "\u{0}", "é"];

#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(usize),
    DoubleLine(usize),
    ReplaceValue(usize, usize),
    ReplaceKey(usize, usize),
    Insert(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteLine),
        any::<usize>().prop_map(Mutation::DoubleLine),
        (any::<usize>(), 0..VALUES.len()).prop_map(|(l, v)| Mutation::ReplaceValue(l, v)),
        (any::<usize>(), 0..KEYS.len()).prop_map(|(l, k)| Mutation::ReplaceKey(l, k)),
        (any::<usize>(), 0..SNIPPETS.len()).prop_map(|(at, s)| Mutation::Insert(at, s)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if lines.is_empty() {
        return text.to_owned();
    }
    let n = lines.len();
    match *m {
        Mutation::DeleteLine(l) => {
            lines.remove(l % n);
        }
        Mutation::DoubleLine(l) => {
            let line = lines[l % n].clone();
            lines.insert(l % n, line);
        }
        Mutation::ReplaceValue(l, v) => {
            let line = &mut lines[l % n];
            if let Some(eq) = line.find('=') {
                *line = format!("{}= {}", &line[..eq], VALUES[v]);
            }
        }
        Mutation::ReplaceKey(l, k) => {
            let line = &mut lines[l % n];
            if let Some(eq) = line.find('=') {
                *line = format!("{} {}", KEYS[k], &line[eq..]);
            }
        }
        Mutation::Insert(at, s) => {
            let joined = lines.join("\n");
            let mut at = at % (joined.len() + 1);
            while !joined.is_char_boundary(at) {
                at -= 1;
            }
            return format!("{}{}{}", &joined[..at], SNIPPETS[s], &joined[at..]);
        }
        Mutation::Truncate(at) => {
            let joined = lines.join("\n");
            let mut at = at % (joined.len() + 1);
            while !joined.is_char_boundary(at) {
                at -= 1;
            }
            return joined[..at].to_owned();
        }
    }
    lines.join("\n")
}

/// Parses and plans `text` as the manifest at `path`: no panic, and an error names `path`
/// and a line.
fn check(path: &Path, text: String) -> Result<(), TestCaseError> {
    let shown = text.clone();
    let planned = std::panic::catch_unwind(|| {
        let loaded = wasp_host::manifest::parse(path, text)?;
        wasp_host::topology::build(&loaded, &wasp_host::runtime::operator_specs()).map(drop)
    });
    match planned {
        Err(_) => Err(TestCaseError::fail(format!("planning panicked on:\n{shown}"))),
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            prop_assert_eq!(&e.file, &path.to_path_buf(), "the error names the file: {}", e);
            prop_assert!(e.line > 0, "the error names a line: {}\nmanifest:\n{}", e, shown);
            let shown_error = e.to_string();
            prop_assert!(shown_error.contains(&path.display().to_string()), "{}", shown_error);
            Ok(())
        }
    }
}

fn examples() -> Vec<PathBuf> {
    let dir = crate::common::repo().join("pipelines");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path().join("pipeline.toml")))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found
}

#[test]
fn mangled_manifests_never_panic_and_every_error_names_the_file_and_line() {
    let examples = examples();
    assert!(examples.len() >= 5, "the examples are found: {examples:?}");
    let mut failures = Vec::new();
    for path in &examples {
        let text = std::fs::read_to_string(path).expect("the example");
        let config = Config { cases: CASES, failure_persistence: None, ..Config::default() };
        let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
        let mut runner = TestRunner::new_with_rng(config, rng);
        let result = runner.run(&proptest::collection::vec(mutation(), 1..4), |ms| {
            let mut t = text.clone();
            for m in &ms {
                t = apply(&t, m);
            }
            check(path, t)
        });
        if let Err(e) = result {
            failures.push(format!("{}: {e}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
