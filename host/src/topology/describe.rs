//! The topology as text, sources to sinks, in the shape of Kafka Streams'
//! `Topology.describe()`.

use std::fmt::Write;

use super::WindowSpec;
use super::{FkStage, FoldOp, JoinWindow, JoinWith, NodeOp, PluginRef, Topology};

pub(super) fn window_text(w: &WindowSpec) -> String {
    match *w {
        WindowSpec::Time { size, advance, grace } if size == advance => format!("tumbling {size}ms, grace {grace}ms"),
        WindowSpec::Time { size, advance, grace } => {
            format!("hopping {size}ms advancing {advance}ms, grace {grace}ms")
        }
        WindowSpec::Sliding { difference, grace } => format!("sliding {difference}ms, grace {grace}ms"),
        WindowSpec::Session { gap, grace } => format!("session gap {gap}ms, grace {grace}ms"),
    }
}

pub(super) fn plugin(p: &PluginRef) -> String {
    if p.function.is_empty() {
        format!("plugin: {}, kind: {}", p.plugin, p.kind.interface())
    } else {
        format!("plugin: {}#{}, kind: {}", p.plugin, p.function, p.kind.interface())
    }
}

/// A converted format in a few words: `avro user_event.avsc (registry)`, `protobuf
/// pkg.Message order.proto (registry, registers)`; a store's older schemas are counted.
pub(super) fn converted_text(c: &super::Converted) -> String {
    let spec = &c.spec;
    let mut text = spec.format.name().to_owned();
    if let Some(m) = &spec.message {
        let _ = write!(text, " {m}");
    }
    if let Some(schema) = &spec.schema {
        let file = std::path::Path::new(schema).file_name().map_or(schema.as_str(), |f| f.to_str().unwrap_or(schema));
        let _ = write!(text, " {file}");
    }
    let mut notes = Vec::new();
    if !spec.columns.is_empty() {
        notes.push(format!("columns {}", spec.columns.join(", ")));
    }
    if spec.registry == Some(true) {
        notes.push("registry".to_owned());
        if spec.register {
            notes.push("registers".to_owned());
        }
    }
    if !spec.previous.is_empty() {
        notes.push(format!("{} previous", spec.previous.len()));
    }
    if !notes.is_empty() {
        let _ = write!(text, " ({})", notes.join(", "));
    }
    text
}

/// What a declared topic's keys and values are, a line each: `key: string`, `value: avro
/// user_event.avsc (registry)`.
pub(super) fn formats_text(f: &super::TopicFormats) -> [String; 2] {
    let one = |format: crate::manifest::Format, codec: Option<&super::Converted>| {
        codec.map_or_else(|| format.name().to_owned(), converted_text)
    };
    [format!("key: {}", one(f.key, f.key_codec.as_ref())), format!("value: {}", one(f.value, f.value_codec.as_ref()))]
}

/// Renders the topology.
pub fn describe(t: &Topology) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Topologies (application: {}):", t.application_id);
    for sub in &t.subtopologies {
        let _ = writeln!(out, "   Sub-topology: {}", sub.id);
        for &id in &sub.nodes {
            let n = t.node(id);
            let detail = match &n.op {
                NodeOp::Source { topic } => format!("Source: {} (topics: [{topic}])", n.name),
                NodeOp::Sink { topic } => format!("Sink: {} (topic: {topic})", n.name),
                NodeOp::Operator { plugin: Some(p), note, .. } => {
                    format!(
                        "Processor: {} ({}{})",
                        n.name,
                        plugin(p),
                        note.map(|n| format!(", {n}")).unwrap_or_default()
                    )
                }
                NodeOp::Operator { plugin: None, note, .. } => {
                    format!("Processor: {} ({})", n.name, note.unwrap_or("no plugin"))
                }
                NodeOp::Branch { predicates, .. } => {
                    let preds: Vec<String> = predicates
                        .iter()
                        .map(|p| p.as_ref().map_or_else(|| "default".to_owned(), |p| p.plugin.clone()))
                        .collect();
                    format!("Processor: {} (branches: [{}])", n.name, preds.join(", "))
                }
                NodeOp::Merge => format!("Processor: {} (merge)", n.name),
                NodeOp::Process { plugin: p, stores, children } => {
                    let kids: Vec<String> = children.iter().map(|(k, v)| format!("{k} -> {v}")).collect();
                    format!(
                        "Processor: {} ({}, children: [{}])\n      stores: [{}]",
                        n.name,
                        plugin(p),
                        kids.join(", "),
                        stores.join(", ")
                    )
                }
                NodeOp::Repartition { topic } => format!("Sink: {} (topic: {topic})", n.name),
                NodeOp::ForeignKey { kind, stage } => match stage {
                    FkStage::Subscribe { extractor } => {
                        format!(
                            "Processor: {} ({} by foreign key: subscribe, {})",
                            n.name,
                            kind.name(),
                            plugin(extractor)
                        )
                    }
                    FkStage::Respond { subscriptions, right_store } => format!(
                        "Processor: {} ({} by foreign key: respond)\n      stores: [{subscriptions}, {right_store}]",
                        n.name,
                        kind.name()
                    ),
                    FkStage::Result { joiner, left_store } => format!(
                        "Processor: {} ({} by foreign key: join, {})\n      stores: [{left_store}]",
                        n.name,
                        kind.name(),
                        plugin(joiner)
                    ),
                },
                NodeOp::ToTable { store, versions } => match versions {
                    Some(v) => format!("Processor: {} (to table)\n      stores: [{store}, {v}]", n.name),
                    None => format!("Processor: {} (to table)\n      stores: [{store}]", n.name),
                },
                NodeOp::Join { kind, joiner, with } => {
                    let (what, stores) = match with {
                        JoinWith::Table { table_store, versions, grace } => {
                            let mut stores = vec![table_store.as_str()];
                            stores.extend(versions.as_deref());
                            stores.extend(grace.as_ref().map(|(_, s)| s.as_str()));
                            ("with a table".to_owned(), stores)
                        }
                        JoinWith::Global { store, key_selector } => {
                            let by = key_selector.as_ref().map_or_else(|| "its key".to_owned(), plugin);
                            (format!("with a global table, by {by}"), vec![store.as_str()])
                        }
                        JoinWith::Tables { left_store, right_store } => {
                            ("of two tables".to_owned(), vec![left_store.as_str(), right_store.as_str()])
                        }
                        JoinWith::Stream { window, left_store, right_store, unmatched } => {
                            let mut stores = vec![left_store.as_str(), right_store.as_str()];
                            stores.extend(unmatched.as_deref());
                            let JoinWindow { before_ms, after_ms, grace_ms } = window;
                            (
                                format!(
                                    "with a stream, before {before_ms} ms, after {after_ms} ms, grace {grace_ms} ms"
                                ),
                                stores,
                            )
                        }
                    };
                    format!(
                        "Processor: {} ({} {what}, {})\n      stores: [{}]",
                        n.name,
                        kind.name(),
                        plugin(joiner),
                        stores.join(", ")
                    )
                }
                NodeOp::Suppress { limit_ms, max_records, emit_early, store } => {
                    let cap = max_records.map_or_else(String::new, |m| {
                        format!(", at most {m} keys, then {}", if *emit_early { "emit early" } else { "shut down" })
                    });
                    format!(
                        "Processor: {} (suppress, until: time limit {limit_ms} ms{cap})\n      stores: [{store}]",
                        n.name
                    )
                }
                NodeOp::Aggregate { fold, window, emit_final, store, .. } => {
                    let mut d = fold.name().to_owned();
                    if let FoldOp::Reduce(p) | FoldOp::Aggregate(p) = fold {
                        d = format!("{d}, {}", plugin(p));
                    }
                    if let Some(w) = window {
                        d = format!("{d}, window: {}", window_text(w));
                    }
                    if *emit_final {
                        d.push_str(", emit: final");
                    }
                    format!("Processor: {} ({d})\n      stores: [{store}]", n.name)
                }
            };
            let _ = writeln!(out, "    {detail}");
            let names = |ids: &[usize]| ids.iter().map(|&c| t.node(c).name.clone()).collect::<Vec<_>>().join(", ");
            let _ = writeln!(
                out,
                "      --> {}",
                if n.children.is_empty() { "none".to_owned() } else { names(&n.children) }
            );
            if !n.parents.is_empty() {
                let _ = writeln!(out, "      <-- {}", names(&n.parents));
            }
        }
        out.push('\n');
    }
    out
}

/// A node's label for the graph formats: its name and what it runs.
fn label(t: &Topology, id: usize) -> String {
    let n = t.node(id);
    match &n.op {
        NodeOp::Source { topic } => format!("source: {topic}"),
        NodeOp::Sink { topic } | NodeOp::Repartition { topic } => format!("to: {topic}"),
        NodeOp::Branch { .. } => n.name.clone(),
        op => match op.plugins().first() {
            Some(p) => format!("{}\\n{}", n.name, p.plugin),
            None => n.name.clone(),
        },
    }
}

/// The topology as a Graphviz DOT digraph, one cluster per sub-topology.
pub fn describe_dot(t: &Topology) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", t.application_id);
    let _ = writeln!(out, "  rankdir=LR;");
    for sub in &t.subtopologies {
        let _ = writeln!(out, "  subgraph cluster_{} {{", sub.id);
        let _ = writeln!(out, "    label=\"sub-topology {}\";", sub.id);
        for &id in &sub.nodes {
            let shape = match t.node(id).op {
                NodeOp::Source { .. } | NodeOp::Sink { .. } | NodeOp::Repartition { .. } => "cds",
                _ => "box",
            };
            let _ = writeln!(out, "    n{id} [label=\"{}\", shape={shape}];", label(t, id));
        }
        let _ = writeln!(out, "  }}");
    }
    for n in &t.nodes {
        for &c in &n.children {
            let _ = writeln!(out, "  n{} -> n{c};", n.id);
        }
    }
    out.push_str("}\n");
    out
}

/// The topology as a Mermaid flowchart, one subgraph per sub-topology.
pub fn describe_mermaid(t: &Topology) -> String {
    let mut out = String::from("flowchart LR\n");
    for sub in &t.subtopologies {
        let _ = writeln!(out, "  subgraph sub{}[\"sub-topology {}\"]", sub.id, sub.id);
        for &id in &sub.nodes {
            let text = label(t, id).replace("\\n", "<br/>");
            let _ = match t.node(id).op {
                NodeOp::Source { .. } | NodeOp::Sink { .. } | NodeOp::Repartition { .. } => {
                    writeln!(out, "    n{id}[(\"{text}\")]")
                }
                _ => writeln!(out, "    n{id}[\"{text}\"]"),
            };
        }
        let _ = writeln!(out, "  end");
    }
    for n in &t.nodes {
        for &c in &n.children {
            let _ = writeln!(out, "  n{} --> n{c}", n.id);
        }
    }
    out
}
