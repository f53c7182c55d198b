//! Manifest golden files: every `tests/ui/valid/*.toml` must build a topology whose description
//! matches the `.txt` beside it, and every `tests/ui/invalid/*.toml` must fail with the error in
//! the `.err` beside it. Every valid case and example pipeline (`pipelines/*/pipeline.toml`) must
//! draw the `.svg` beside it (`wasp describe --format svg`, without plugin digests, which change
//! with every build of a plugin). Adding a case means adding a file; `WASP_BLESS=1` writes the
//! snapshots.

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

/// The example pipelines' manifests.
fn examples() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repo().join("pipelines"))
        .expect("pipelines/")
        .map(|dir| dir.expect("entry").path().join("pipeline.toml"))
        .filter(|p| p.exists())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no pipelines/*/pipeline.toml");
    files
}

/// What is wrong with `svg` as a drawing of `topology`: it must be well-formed XML, an SVG
/// document, and show every node (a group with its name, and its name as text), every store,
/// every repartition topic, and the converted formats of drawn topics and of stores.
fn drawing_faults(topology: &wasp_host::topology::Topology, svg: &str) -> Vec<String> {
    let doc = match roxmltree::Document::parse(svg) {
        Ok(d) => d,
        Err(e) => return vec![format!("not well-formed XML: {e}")],
    };
    let root = doc.root_element();
    let mut faults = Vec::new();
    if root.tag_name().name() != "svg" || root.tag_name().namespace() != Some("http://www.w3.org/2000/svg") {
        faults.push(format!("the root element is {:?}, not an SVG", root.tag_name()));
    }
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.descendants().filter_map(|t| t.text()).collect())
        .collect();
    let shows = |s: &str| texts.iter().any(|t| t.contains(s));
    let attr = |name: &str, value: &str| doc.descendants().any(|n| n.attribute(name) == Some(value));
    for n in &topology.nodes {
        if !attr("data-node", &n.name) || !shows(&n.name) {
            faults.push(format!("node `{}` is not drawn", n.name));
        }
        for p in n.op.plugins() {
            if !shows(&format!("plugin: {}", p.plugin)) {
                faults.push(format!("plugin `{}` of node `{}` is not shown", p.plugin, n.name));
            }
        }
    }
    for store in topology.stores.keys() {
        if !attr("data-store", store) {
            faults.push(format!("store `{store}` is not drawn"));
        }
    }
    for topic in topology.repartition_topics() {
        if !shows(topic) {
            faults.push(format!("repartition topic `{topic}` is not shown"));
        }
    }
    // A converted format is shown with its schema file: a drawn topic's key and value, and a
    // store's values.
    let shows_format = |field: &str, c: &wasp_host::topology::Converted| {
        let file = c.spec.schema.as_deref().map(|s| s.rsplit('/').next().unwrap_or(s)).unwrap_or("");
        texts.iter().any(|t| t.contains(&format!("{field}: {}", c.spec.format.name())) && t.contains(file))
    };
    for (topic, f) in topology.formats.iter().filter(|(topic, _)| shows(&format!("topic: {topic}"))) {
        for (field, c) in [("key", &f.key_codec), ("value", &f.value_codec)] {
            if let Some(c) = c.as_ref().filter(|c| !shows_format(field, c)) {
                faults.push(format!("the {field} format of `{topic}` ({}) is not shown", c.spec.format.name()));
            }
        }
    }
    for (store, c) in &topology.store_formats {
        if !shows_format("value", c) {
            faults.push(format!("the value format of store `{store}` ({}) is not shown", c.spec.format.name()));
        }
    }
    faults
}

#[test]
fn every_valid_manifest_and_example_draws_the_expected_svg() {
    let mut failures = Vec::new();
    for path in cases("valid").into_iter().chain(examples()) {
        let topology = match wasp_host::app::plan(&path) {
            Ok((_, t)) => t,
            Err(e) => {
                failures.push(format!("{}: should be valid: {e:#}", path.display()));
                continue;
            }
        };
        let svg = wasp_host::topology::describe_svg(&topology, &std::collections::BTreeMap::new());
        for fault in drawing_faults(&topology, &svg) {
            failures.push(format!("{}: {fault}", path.display()));
        }
        failures.extend(check(&path, "svg", &svg));
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
