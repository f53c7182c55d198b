//! The topology as a picture (`wasp describe --format svg|html`, and the admin dashboard): an
//! SVG laid out here, with no Graphviz at run time.
//!
//! The layout is a small layered one (Sugiyama's steps, simplified), one box per sub-topology,
//! the boxes stacked top to bottom:
//! 1. a node's layer is its longest path from a source, and nodes that write a topic (sinks)
//!    move to the last layer, so sources sit on the left edge and sinks on the right;
//! 2. an edge that spans layers gets a waypoint in each layer between, so it runs between the
//!    boxes of those layers instead of through them;
//! 3. a few sweeps order each layer by the mean position of its neighbours in the layer before
//!    (or after): the barycenter heuristic, which untangles most small graphs;
//! 4. layers become columns, left to right; a node's state stores hang below it, with their
//!    changelog topics.
//!
//! A topic that one sub-topology writes and another reads (a repartition topic, or a topic
//! between pipelines) is a dashed link from the sink around the boxes (through gutters on the
//! right and left and the gap above the reading box) to the source. Global tables get a box
//! of their own.
//!
//! The output depends on nothing but the topology and the plugin digests given: everything is
//! visited in the topology's order and coordinates are rounded to a tenth of a pixel, so one
//! manifest always gives the same bytes (the golden files rely on it). Text widths are
//! estimated for a 12 px monospace font.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::describe::{converted_text, formats_text, plugin as plugin_use, window_text};
use super::{FkStage, JoinWith, NodeOp, PluginRef, Topology};
use crate::manifest::OnError;

/// The width of a character of the 12 px monospace font (0.6 em).
const CHAR_W: f64 = 7.2;
const LINE_H: f64 = 16.0;
/// From a box's top to its first baseline, less [`PAD_Y`].
const ASCENT: f64 = 11.0;
const PAD_X: f64 = 10.0;
const PAD_Y: f64 = 7.0;
const COL_GAP: f64 = 64.0;
const ROW_GAP: f64 = 20.0;
const STORE_GAP: f64 = 14.0;
/// The height of a store cylinder's cap.
const CAP: f64 = 5.0;
const CLUSTER_PAD: f64 = 16.0;
const CLUSTER_TITLE: f64 = 24.0;
/// The space between two sub-topology boxes, besides the lanes of the links into the lower.
const CLUSTER_GAP: f64 = 20.0;
/// The distance between two parallel links.
const LANE: f64 = 8.0;
const MARGIN: f64 = 16.0;
const WAYPOINT_H: f64 = 6.0;
/// Room for the title and the legend above the first box.
const HEADER_H: f64 = 56.0;
/// How many barycenter sweeps order the layers.
const SWEEPS: usize = 6;

/// The short digest a drawing shows of a plugin's version (the first 12 hex digits).
const SHORT_DIGEST: usize = 12;

const STYLE: &str = "\
text{font-family:'DejaVu Sans Mono',Menlo,Consolas,monospace;font-size:12px;fill:#1e293b}\
.title{font-size:15px;font-weight:bold}\
.name{font-weight:bold}\
.detail{fill:#475569}\
.plugin{fill:#6d28d9}\
.version{fill:#9333ea}\
.policy{fill:#b91c1c}\
.cluster>rect{fill:#f8fafc;stroke:#94a3b8;stroke-width:1}\
.cluster>text{fill:#64748b;font-weight:bold}\
.node>rect{stroke-width:1.2}\
.op>rect{fill:#ffffff;stroke:#2563eb}\
.source>rect{fill:#dcfce7;stroke:#16a34a}\
.sink>rect{fill:#ffedd5;stroke:#ea580c}\
.repartition>rect{fill:#fef9c3;stroke:#ca8a04;stroke-dasharray:5 3}\
.store>path{fill:#e0f2fe;stroke:#0284c7;stroke-width:1.2}\
.edge{fill:none;stroke:#334155;stroke-width:1.2}\
.store-link{fill:none;stroke:#0284c7;stroke-width:1;stroke-dasharray:3 3}\
.topic-link{fill:none;stroke:#ca8a04;stroke-width:1.4;stroke-dasharray:6 4}\
.legend rect,.legend path{stroke-width:1.2}";

/// A node's kind of box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Source,
    Sink,
    Repartition,
    Operator,
    /// A topic a node writes besides its children: a processor's named outputs, late records.
    Topic,
    /// A global table (its topic, read whole).
    Global,
    /// Where an edge crosses a layer.
    Waypoint,
}

impl Shape {
    fn class(self) -> &'static str {
        match self {
            Self::Source | Self::Global => "source",
            Self::Sink | Self::Topic => "sink",
            Self::Repartition => "repartition",
            Self::Operator => "op",
            Self::Waypoint => "waypoint",
        }
    }

    fn writes_topic(self) -> bool {
        matches!(self, Self::Sink | Self::Repartition | Self::Topic)
    }
}

/// Part of a line of text.
#[derive(Debug, Clone)]
enum Part {
    Text(String),
    /// A plugin's version (`@` and its short digest, or nothing when unknown), marked so the
    /// dashboard can show a new one after a swap.
    Version {
        plugin: String,
        text: String,
    },
}

#[derive(Debug, Clone)]
struct Line {
    class: &'static str,
    parts: Vec<Part>,
}

impl Line {
    fn text(class: &'static str, text: impl Into<String>) -> Self {
        Self { class, parts: vec![Part::Text(text.into())] }
    }

    fn chars(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) | Part::Version { text: t, .. } => t.chars().count(),
            })
            .sum()
    }
}

fn text_width(lines: &[Line]) -> f64 {
    lines.iter().map(Line::chars).max().unwrap_or(0) as f64 * CHAR_W + 2.0 * PAD_X
}

/// A store drawn below the node that owns it.
#[derive(Debug, Clone)]
struct StoreBox {
    name: String,
    lines: Vec<Line>,
    w: f64,
    h: f64,
    x: f64,
    y: f64,
}

#[derive(Debug, Clone)]
struct Block {
    shape: Shape,
    /// The topology node's name ("" for what is not a node).
    name: String,
    /// The operator's spec name, for `data-op`.
    op: &'static str,
    /// The topic a source reads or a sink writes.
    topic: Option<String>,
    /// A source of a repartition topic: what it reads the application wrote (the dashboard
    /// counts records read from the other sources).
    internal: bool,
    lines: Vec<Line>,
    /// What a pointer over the box shows.
    tooltip: String,
    stores: Vec<StoreBox>,
    layer: usize,
    w: f64,
    h: f64,
    x: f64,
    y: f64,
    /// The left and right edges of the block's column: edges run straight from the box to
    /// them, and curve only between columns, where no box is.
    column: (f64, f64),
}

impl Block {
    fn new(shape: Shape, name: &str, op: &'static str, lines: Vec<Line>) -> Self {
        let (w, h) = if shape == Shape::Waypoint {
            (0.0, WAYPOINT_H)
        } else {
            (text_width(&lines), lines.len() as f64 * LINE_H + 2.0 * PAD_Y)
        };
        Self {
            shape,
            name: name.to_owned(),
            op,
            topic: None,
            internal: false,
            lines,
            tooltip: String::new(),
            stores: Vec::new(),
            layer: 0,
            w,
            h,
            x: 0.0,
            y: 0.0,
            column: (0.0, 0.0),
        }
    }

    /// The box with its stores below it.
    fn total_h(&self) -> f64 {
        self.h + self.stores.iter().map(|s| STORE_GAP + s.h).sum::<f64>()
    }

    fn total_w(&self) -> f64 {
        self.stores.iter().map(|s| s.w).fold(self.w, f64::max)
    }

    fn mid_y(&self) -> f64 {
        self.y + self.h / 2.0
    }
}

/// One sub-topology's (or the global tables') box and its graph.
#[derive(Debug)]
struct Cluster {
    title: String,
    blocks: Vec<Block>,
    /// Each edge, as the blocks it passes: its parent, its waypoints, its child.
    edges: Vec<Vec<usize>>,
    /// A store used by a node that does not own it: (user, owner, store index in the owner).
    store_links: Vec<(usize, usize, usize)>,
    w: f64,
    h: f64,
    x: f64,
    y: f64,
}

/// The picture of a topology, as an SVG document. `versions` maps plugin names to their
/// digests, for the plugins whose component file was found; plugins without one are drawn
/// by name alone.
pub fn describe_svg(t: &Topology, versions: &BTreeMap<String, String>) -> String {
    let mut clusters: Vec<Cluster> = t.subtopologies.iter().map(|s| subtopology(t, s.id, versions)).collect();
    if !t.globals.is_empty() {
        clusters.push(globals(t));
    }
    for c in &mut clusters {
        c.layout();
    }
    let links = topic_links(&clusters);
    let mut incoming = vec![0usize; clusters.len()];
    for l in &links {
        incoming[l.to.0] += 1;
    }
    let gutter = if links.is_empty() { 0.0 } else { 2.0 * LANE + LANE * links.len() as f64 };
    let mut y = HEADER_H;
    for (c, n) in clusters.iter_mut().zip(&incoming) {
        c.x = MARGIN + gutter;
        c.y = y + CLUSTER_GAP + LANE * *n as f64;
        y = c.y + c.h;
    }
    let right = clusters.iter().map(|c| c.x + c.w).fold(MARGIN + gutter + legend_width(), f64::max);
    let width = right + gutter + MARGIN;
    let height = y + MARGIN;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"wasp-topology\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" role=\"img\" aria-labelledby=\"wasp-topology-title\">",
        w = num(width),
        h = num(height)
    );
    let _ = writeln!(
        out,
        "<title id=\"wasp-topology-title\">topology of {} ({} sub-topologies)</title>",
        esc(&t.application_id),
        t.subtopologies.len()
    );
    let _ = writeln!(out, "<style>{STYLE}</style>");
    out.push_str(
        "<defs><marker id=\"wasp-arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" \
         markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#334155\"/></marker>\
         <marker id=\"wasp-arrow-topic\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" \
         markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#ca8a04\"/></marker></defs>\n",
    );
    let _ = writeln!(
        out,
        "<text class=\"title\" x=\"{}\" y=\"{}\">application: {}</text>",
        num(MARGIN),
        num(MARGIN + 12.0),
        esc(&t.application_id)
    );
    legend(&mut out, MARGIN, MARGIN + 26.0);
    for c in &clusters {
        c.render(&mut out);
    }
    for (i, l) in links.iter().enumerate() {
        let (from, to) = (&clusters[l.from.0], &clusters[l.to.0]);
        let (a, b) = (&from.blocks[l.from.1], &to.blocks[l.to.1]);
        let (x0, y0) = (from.x + a.x + a.w, from.y + a.mid_y());
        let (x1, y1) = (to.x + b.x, to.y + b.mid_y());
        let lane_right = right + LANE * (i + 1) as f64;
        let lane_left = MARGIN + gutter - LANE * (i + 1) as f64;
        let lane_gap = to.y - LANE * (l.lane + 1) as f64;
        let _ = writeln!(
            out,
            "<path class=\"topic-link\" data-topic=\"{topic}\" d=\"M{} {} H{} V{} H{} V{} H{}\" \
             marker-end=\"url(#wasp-arrow-topic)\"><title>topic {topic}</title></path>",
            num(x0),
            num(y0),
            num(lane_right),
            num(lane_gap),
            num(lane_left),
            num(y1),
            num(x1),
            topic = esc(&l.topic),
        );
    }
    out.push_str("</svg>\n");
    out
}

/// The picture in a page of its own, with the text description below it: one file, nothing
/// loaded from elsewhere.
pub fn describe_html(t: &Topology, versions: &BTreeMap<String, String>) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>wasp: {app}</title>\n\
         <style>body{{font-family:system-ui,sans-serif;margin:1.5em;color:#1e293b}}\
         pre{{background:#f1f5f9;padding:1em;overflow:auto}}.drawing{{overflow:auto}}</style>\n</head>\n<body>\n\
         <h1>{app}</h1>\n<div class=\"drawing\">\n{svg}</div>\n<h2>Description</h2>\n<pre>{text}</pre>\n\
         </body>\n</html>\n",
        app = esc(&t.application_id),
        svg = describe_svg(t, versions),
        text = esc(&super::describe(t)),
    )
}

/// Escapes text for XML content and attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A coordinate, to a tenth of a pixel.
fn num(v: f64) -> String {
    let tenths = (v * 10.0).round() as i64;
    let sign = if tenths < 0 { "-" } else { "" };
    let a = tenths.unsigned_abs();
    if a.is_multiple_of(10) { format!("{sign}{}", a / 10) } else { format!("{sign}{}.{}", a / 10, a % 10) }
}

/// A topic one box writes and another reads: from (cluster, block) to (cluster, block), in
/// the `lane`-th place of the links into the reading box.
struct TopicLink {
    topic: String,
    from: (usize, usize),
    to: (usize, usize),
    lane: usize,
}

fn topic_links(clusters: &[Cluster]) -> Vec<TopicLink> {
    let mut links = Vec::new();
    let mut lanes = vec![0usize; clusters.len()];
    for (ci, c) in clusters.iter().enumerate() {
        for (bi, b) in c.blocks.iter().enumerate() {
            let Some(topic) = b.topic.as_ref().filter(|_| b.shape.writes_topic()) else { continue };
            for (cj, d) in clusters.iter().enumerate() {
                for (bj, s) in d.blocks.iter().enumerate() {
                    if s.shape == Shape::Source && s.topic.as_ref() == Some(topic) {
                        links.push(TopicLink { topic: topic.clone(), from: (ci, bi), to: (cj, bj), lane: lanes[cj] });
                        lanes[cj] += 1;
                    }
                }
            }
        }
    }
    links
}

/// A plugin use as a line: `plugin: NAME[#FUNCTION]@DIGEST (KIND)`.
fn plugin_line(p: &PluginRef, versions: &BTreeMap<String, String>) -> Line {
    let name = if p.function.is_empty() { p.plugin.clone() } else { format!("{}#{}", p.plugin, p.function) };
    let version = versions.get(&p.plugin).map(|d| format!("@{}", &d[..SHORT_DIGEST.min(d.len())])).unwrap_or_default();
    Line {
        class: "plugin",
        parts: vec![
            Part::Text(format!("plugin: {name}")),
            Part::Version { plugin: p.plugin.clone(), text: version },
            Part::Text(format!(" ({})", p.kind.interface())),
        ],
    }
}

/// What a node does, in a line or two below its name.
fn detail(t: &Topology, op: &NodeOp) -> Vec<String> {
    let repartition = |topic: &str| t.repartition_topics().contains(&topic);
    match op {
        NodeOp::Source { topic } if repartition(topic) => vec![format!("repartition topic: {topic}")],
        NodeOp::Source { topic } | NodeOp::Sink { topic } => {
            let mut v = vec![format!("topic: {topic}")];
            if t.formats.contains_key(topic) {
                v.extend(formats_text(t.formats(topic)));
            }
            v
        }
        NodeOp::Repartition { topic } => vec![format!("repartition topic: {topic}")],
        NodeOp::Operator { op, note, .. } => vec![note.map_or_else(|| (*op).to_owned(), |n| format!("{op}, {n}"))],
        NodeOp::Branch { predicates, .. } => {
            let default = if predicates.iter().any(Option::is_none) { ", the last the default" } else { "" };
            vec![format!("branch: {} ways{default}", predicates.len())]
        }
        NodeOp::Merge => vec!["merge".to_owned()],
        NodeOp::Process { .. } => vec!["processor".to_owned()],
        NodeOp::Aggregate { fold, window, emit_final, table, .. } => {
            let mut d = fold.name().to_owned();
            if table.is_some() {
                d.push_str(" of a table");
            }
            let mut v = vec![d];
            if let Some(w) = window {
                v.push(format!("window: {}{}", window_text(w), if *emit_final { ", emit: final" } else { "" }));
            }
            v
        }
        NodeOp::Suppress { limit_ms, max_records, .. } => {
            let cap = max_records.map_or_else(String::new, |m| format!(", at most {m} keys"));
            vec![format!("suppress: time limit {limit_ms} ms{cap}")]
        }
        NodeOp::ToTable { versions, .. } => {
            vec![if versions.is_some() { "to table (versioned)" } else { "to table" }.to_owned()]
        }
        NodeOp::Join { kind, with, .. } => vec![match with {
            JoinWith::Table { .. } => format!("{} with a table", kind.name()),
            JoinWith::Global { store, .. } => format!("{} with global table {store}", kind.name()),
            JoinWith::Tables { .. } => format!("{} of two tables", kind.name()),
            JoinWith::Stream { window, .. } => format!(
                "{} with a stream, -{} ms/+{} ms, grace {} ms",
                kind.name(),
                window.before_ms,
                window.after_ms,
                window.grace_ms
            ),
        }],
        NodeOp::ForeignKey { kind, stage } => {
            let s = match stage {
                FkStage::Subscribe { .. } => "subscribe",
                FkStage::Respond { .. } => "respond",
                FkStage::Result { .. } => "join",
            };
            vec![format!("{} by foreign key: {s}", kind.name())]
        }
    }
}

/// Every store a node reads or writes, as the text description lists them.
fn node_stores(op: &NodeOp) -> Vec<&str> {
    match op {
        NodeOp::Join { with: JoinWith::Table { table_store, versions, grace }, .. } => {
            let mut v = vec![table_store.as_str()];
            v.extend(versions.as_deref());
            v.extend(grace.as_ref().map(|(_, s)| s.as_str()));
            v
        }
        NodeOp::Join { with: JoinWith::Tables { left_store, right_store }, .. } => {
            vec![left_store.as_str(), right_store.as_str()]
        }
        NodeOp::ForeignKey { stage: FkStage::Respond { subscriptions, right_store }, .. } => {
            vec![subscriptions.as_str(), right_store.as_str()]
        }
        NodeOp::ForeignKey { stage: FkStage::Result { left_store, .. }, .. } => vec![left_store.as_str()],
        op => op.stores(),
    }
}

fn store_box(t: &Topology, name: &str) -> StoreBox {
    let mut lines = vec![Line::text("name", name)];
    if let Some(s) = t.stores.get(name) {
        lines.push(Line::text("detail", format!("{}, {}", s.kind, if s.persistent { "rocksdb" } else { "memory" })));
        lines.push(Line::text(
            "detail",
            match (&s.source_topic, s.changelog) {
                (Some(topic), _) => format!("changelog: {topic} (its source)"),
                (None, true) => format!("changelog: {}", t.changelog_topic(name)),
                (None, false) => "changelog: off".to_owned(),
            },
        ));
        if let Some(c) = t.store_formats.get(name) {
            lines.push(Line::text("detail", format!("value: {}", converted_text(c))));
        }
    }
    let w = text_width(&lines);
    let h = 2.0 * CAP + lines.len() as f64 * LINE_H + 2.0 * PAD_Y;
    StoreBox { name: name.to_owned(), lines, w, h, x: 0.0, y: 0.0 }
}

fn subtopology(t: &Topology, sub: usize, versions: &BTreeMap<String, String>) -> Cluster {
    let s = &t.subtopologies[sub];
    let mut c = Cluster::new(format!("sub-topology {}", s.id));
    let mut index = BTreeMap::new();
    for &id in &s.nodes {
        let n = t.node(id);
        let shape = match n.op {
            NodeOp::Source { .. } => Shape::Source,
            NodeOp::Sink { .. } => Shape::Sink,
            NodeOp::Repartition { .. } => Shape::Repartition,
            _ => Shape::Operator,
        };
        let mut lines = vec![Line::text("name", n.name.clone())];
        lines.extend(detail(t, &n.op).into_iter().map(|d| Line::text("detail", d)));
        let plugins = n.op.plugins();
        lines.extend(plugins.iter().map(|p| plugin_line(p, versions)));
        let policy = n.policy.final_policy();
        if !plugins.is_empty() && policy == OnError::DeadLetter {
            lines.push(Line::text("policy", format!("on error: dead letter to {}", n.policy.dead_letter_topic)));
        }
        let mut b = Block::new(shape, &n.name, n.op.name(), lines);
        b.internal = matches!(&n.op, NodeOp::Source { topic } if t.repartition_topics().contains(&topic.as_str()));
        b.topic = match &n.op {
            NodeOp::Source { topic } | NodeOp::Sink { topic } | NodeOp::Repartition { topic } => Some(topic.clone()),
            _ => None,
        };
        let mut tip = format!("{} (pipeline {})", n.name, n.pipeline);
        for d in detail(t, &n.op) {
            let _ = write!(tip, "\n{d}");
        }
        for p in &plugins {
            let _ = write!(tip, "\n{}", plugin_use(p));
            if let Some(d) = versions.get(&p.plugin) {
                let _ = write!(tip, ", sha256 {d}");
            }
        }
        if !plugins.is_empty() {
            let _ = write!(tip, "\non error: {}", policy.name());
        }
        b.tooltip = tip;
        index.insert(id, c.blocks.len());
        c.blocks.push(b);
    }
    // Topics a node writes besides its children.
    for &id in &s.nodes {
        let n = t.node(id);
        let outputs: Vec<(String, String)> = match &n.op {
            NodeOp::Process { children, .. } => {
                children.iter().map(|(child, topic)| (format!("output {child}"), topic.clone())).collect()
            }
            NodeOp::Aggregate { late_topic: Some(topic), .. } => vec![("late records".to_owned(), topic.clone())],
            _ => vec![],
        };
        for (what, topic) in outputs {
            let mut b = Block::new(
                Shape::Topic,
                "",
                "topic",
                vec![Line::text("name", what.clone()), Line::text("detail", format!("topic: {topic}"))],
            );
            b.tooltip = format!("{} writes {what} to topic {topic}", n.name);
            b.topic = Some(topic);
            let parent = index[&id];
            c.edges.push(vec![parent, c.blocks.len()]);
            c.blocks.push(b);
        }
    }
    for &id in &s.nodes {
        for child in &t.node(id).children {
            if let Some(&ci) = index.get(child) {
                c.edges.push(vec![index[&id], ci]);
            }
        }
    }
    c.edges.sort();
    // Each store hangs below the first node that uses it; the others link to it.
    let mut owner: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for &id in &s.nodes {
        let bi = index[&id];
        for store in node_stores(&t.node(id).op) {
            match owner.get(store) {
                Some(&(o, si)) => {
                    if o != bi {
                        c.store_links.push((bi, o, si));
                    }
                }
                None => {
                    let si = c.blocks[bi].stores.len();
                    c.blocks[bi].stores.push(store_box(t, store));
                    owner.insert(store, (bi, si));
                }
            }
        }
    }
    c
}

fn globals(t: &Topology) -> Cluster {
    let mut c = Cluster::new("global tables".to_owned());
    for (name, g) in &t.globals {
        let mut lines = vec![
            Line::text("name", format!("global table {name}")),
            Line::text("detail", format!("topic: {}", g.topic)),
        ];
        if t.formats.contains_key(&g.topic) {
            lines.extend(formats_text(t.formats(&g.topic)).map(|l| Line::text("detail", l)));
        }
        let mut b = Block::new(Shape::Global, "", "global_table", lines);
        b.tooltip =
            format!("global table {name}: every instance reads all of topic {} into store {}", g.topic, g.store);
        b.stores.push(store_box(t, &g.store));
        c.blocks.push(b);
    }
    c
}

impl Cluster {
    fn new(title: String) -> Self {
        Self { title, blocks: Vec::new(), edges: Vec::new(), store_links: Vec::new(), w: 0.0, h: 0.0, x: 0.0, y: 0.0 }
    }

    fn layout(&mut self) {
        let n = self.blocks.len();
        // 1. Layers: the longest path from a source (Kahn's order; a cycle, which a valid
        // topology has not, would leave its nodes after their known parents).
        let mut parents = vec![Vec::new(); n];
        let mut children = vec![Vec::new(); n];
        for e in &self.edges {
            let (p, c) = (e[0], e[e.len() - 1]);
            parents[c].push(p);
            children[p].push(c);
        }
        let mut indegree: Vec<usize> = parents.iter().map(Vec::len).collect();
        let mut layer = vec![0usize; n];
        let mut done = vec![false; n];
        let mut ready: std::collections::VecDeque<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
        while let Some(i) = ready.pop_front() {
            done[i] = true;
            for &c in &children[i] {
                layer[c] = layer[c].max(layer[i] + 1);
                indegree[c] -= 1;
                if indegree[c] == 0 {
                    ready.push_back(c);
                }
            }
        }
        for i in 0..n {
            if !done[i] {
                layer[i] = parents[i].iter().filter(|&&p| done[p]).map(|&p| layer[p] + 1).max().unwrap_or(0);
                done[i] = true;
            }
        }
        let last = layer.iter().copied().max().unwrap_or(0);
        for i in 0..n {
            if self.blocks[i].shape.writes_topic() && children[i].is_empty() {
                layer[i] = last;
            }
        }
        for (b, l) in self.blocks.iter_mut().zip(&layer) {
            b.layer = *l;
        }
        // 2. Waypoints where an edge spans layers.
        for e in 0..self.edges.len() {
            let (p, c) = (self.edges[e][0], self.edges[e][1]);
            let (lp, lc) = (self.blocks[p].layer, self.blocks[c].layer);
            if lc > lp + 1 {
                let mut path = vec![p];
                for l in lp + 1..lc {
                    let mut w = Block::new(Shape::Waypoint, "", "", Vec::new());
                    w.layer = l;
                    path.push(self.blocks.len());
                    self.blocks.push(w);
                }
                path.push(c);
                self.edges[e] = path;
            }
        }
        // 3. Order each layer by the barycenter of its neighbours, sweeping down and up.
        let layers_n = self.blocks.iter().map(|b| b.layer + 1).max().unwrap_or(0);
        let mut layers: Vec<Vec<usize>> = vec![Vec::new(); layers_n];
        for (i, b) in self.blocks.iter().enumerate() {
            layers[b.layer].push(i);
        }
        let mut up = vec![Vec::new(); self.blocks.len()];
        let mut down = vec![Vec::new(); self.blocks.len()];
        for e in &self.edges {
            for w in e.windows(2) {
                if self.blocks[w[1]].layer == self.blocks[w[0]].layer + 1 {
                    up[w[1]].push(w[0]);
                    down[w[0]].push(w[1]);
                }
            }
        }
        let mut pos = vec![0.0f64; self.blocks.len()];
        for l in &layers {
            for (k, &i) in l.iter().enumerate() {
                pos[i] = k as f64;
            }
        }
        for sweep in 0..SWEEPS {
            let (range, near): (Vec<usize>, &Vec<Vec<usize>>) = if sweep % 2 == 0 {
                ((1..layers_n).collect(), &up)
            } else {
                ((0..layers_n.saturating_sub(1)).rev().collect(), &down)
            };
            for l in range {
                let key = |i: usize| {
                    let ns = &near[i];
                    if ns.is_empty() { pos[i] } else { ns.iter().map(|&j| pos[j]).sum::<f64>() / ns.len() as f64 }
                };
                let mut keyed: Vec<(f64, usize)> = layers[l].iter().map(|&i| (key(i), i)).collect();
                keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(pos[a.1].total_cmp(&pos[b.1])));
                layers[l] = keyed.into_iter().map(|(_, i)| i).collect();
                for (k, &i) in layers[l].iter().enumerate() {
                    pos[i] = k as f64;
                }
            }
        }
        // 4. Columns, left to right; each column's boxes stacked and centred vertically.
        let widths: Vec<f64> =
            layers.iter().map(|l| l.iter().map(|&i| self.blocks[i].total_w()).fold(0.0, f64::max)).collect();
        let heights: Vec<f64> = layers
            .iter()
            .map(|l| {
                l.iter().map(|&i| self.blocks[i].total_h()).sum::<f64>() + ROW_GAP * l.len().saturating_sub(1) as f64
            })
            .collect();
        let inner_h = heights.iter().copied().fold(0.0, f64::max);
        let mut x = CLUSTER_PAD;
        for (l, ids) in layers.iter().enumerate() {
            let mut y = CLUSTER_TITLE + CLUSTER_PAD + (inner_h - heights[l]) / 2.0;
            for &i in ids {
                let b = &mut self.blocks[i];
                if b.shape == Shape::Waypoint {
                    b.x = x;
                    b.w = widths[l];
                } else {
                    b.x = x + (widths[l] - b.w) / 2.0;
                }
                b.y = y;
                b.column = (x, x + widths[l]);
                let centre = b.x + b.w / 2.0;
                let mut sy = y + b.h;
                for s in &mut b.stores {
                    s.x = centre - s.w / 2.0;
                    s.y = sy + STORE_GAP;
                    sy = s.y + s.h;
                }
                y += b.total_h() + ROW_GAP;
            }
            x += widths[l] + COL_GAP;
        }
        let title_w = self.title.chars().count() as f64 * CHAR_W + 2.0 * CLUSTER_PAD;
        self.w = (x - COL_GAP + CLUSTER_PAD).max(title_w);
        self.h = CLUSTER_TITLE + 2.0 * CLUSTER_PAD + inner_h;
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "<g class=\"cluster\" data-cluster=\"{}\" transform=\"translate({},{})\">",
            esc(&self.title),
            num(self.x),
            num(self.y)
        );
        let _ = writeln!(
            out,
            "<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" rx=\"6\"/><text x=\"{}\" y=\"17\">{}</text>",
            num(self.w),
            num(self.h),
            num(CLUSTER_PAD),
            esc(&self.title)
        );
        for e in &self.edges {
            // Straight from the box to its column's edge, a curve across the gap to the next
            // column, straight on to the box (or across a waypoint's column, and on).
            let first = &self.blocks[e[0]];
            let mut d = format!("M{} {}", num(first.x + first.w), num(first.mid_y()));
            for w in e.windows(2) {
                let (a, b) = (&self.blocks[w[0]], &self.blocks[w[1]]);
                let (x0, y0, x1, y1) = (a.column.1, a.mid_y(), b.column.0, b.mid_y());
                let dx = ((x1 - x0) / 2.0).max(30.0);
                let _ = write!(
                    d,
                    " H{} C{} {} {} {} {} {} H{}",
                    num(x0),
                    num(x0 + dx),
                    num(y0),
                    num(x1 - dx),
                    num(y1),
                    num(x1),
                    num(y1),
                    num(if b.shape == Shape::Waypoint { b.column.1 } else { b.x }),
                );
            }
            let _ = writeln!(out, "<path class=\"edge\" d=\"{d}\" marker-end=\"url(#wasp-arrow)\"/>");
        }
        for &(user, owner, si) in &self.store_links {
            let (u, s) = (&self.blocks[user], &self.blocks[owner].stores[si]);
            let (x0, y0) = (u.x + u.w / 2.0, u.y + u.h);
            let (x1, y1) = (if x0 < s.x { s.x } else { s.x + s.w }, s.y + s.h / 2.0);
            let _ = writeln!(
                out,
                "<path class=\"store-link\" d=\"M{} {} C{} {} {} {} {} {}\"/>",
                num(x0),
                num(y0),
                num(x0),
                num(y1),
                num(x0),
                num(y1),
                num(x1),
                num(y1)
            );
        }
        for b in &self.blocks {
            if b.shape == Shape::Waypoint {
                continue;
            }
            let mut attrs = format!("class=\"node {}{}\"", b.shape.class(), if b.internal { " internal" } else { "" });
            if !b.name.is_empty() {
                let _ = write!(attrs, " data-node=\"{}\"", esc(&b.name));
            }
            if !b.op.is_empty() {
                let _ = write!(attrs, " data-op=\"{}\"", b.op);
            }
            let _ = writeln!(out, "<g {attrs}><title>{}</title>", esc(&b.tooltip));
            let rx = if b.shape == Shape::Operator { 4.0 } else { 12.0 };
            let _ = writeln!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"{rx}\"/>",
                num(b.x),
                num(b.y),
                num(b.w),
                num(b.h)
            );
            lines(out, &b.lines, b.x + PAD_X, b.y + PAD_Y + ASCENT);
            out.push_str("</g>\n");
            for s in &b.stores {
                let _ = writeln!(
                    out,
                    "<path class=\"store-link\" d=\"M{x} {} V{}\"/>",
                    num(b.y + b.h),
                    num(s.y),
                    x = num(b.x + b.w / 2.0)
                );
                let _ = writeln!(
                    out,
                    "<g class=\"store\" data-store=\"{}\"><title>store {}</title>",
                    esc(&s.name),
                    esc(&s.name)
                );
                cylinder(out, s.x, s.y, s.w, s.h);
                lines(out, &s.lines, s.x + PAD_X, s.y + 2.0 * CAP + PAD_Y + ASCENT);
                out.push_str("</g>\n");
            }
        }
        out.push_str("</g>\n");
    }
}

fn lines(out: &mut String, lines: &[Line], x: f64, y: f64) {
    for (k, line) in lines.iter().enumerate() {
        let _ = write!(out, "<text class=\"{}\" x=\"{}\" y=\"{}\">", line.class, num(x), num(y + k as f64 * LINE_H));
        for p in &line.parts {
            match p {
                Part::Text(t) => out.push_str(&esc(t)),
                Part::Version { plugin, text } => {
                    let _ =
                        write!(out, "<tspan class=\"version\" data-plugin=\"{}\">{}</tspan>", esc(plugin), esc(text));
                }
            }
        }
        out.push_str("</text>\n");
    }
}

fn cylinder(out: &mut String, x: f64, y: f64, w: f64, h: f64) {
    let r = w / 2.0;
    let _ = writeln!(
        out,
        "<path d=\"M{x0} {top} A{r} {CAP} 0 0 1 {x1} {top} V{bottom} A{r} {CAP} 0 0 1 {x0} {bottom} Z \
         M{x0} {top} A{r} {CAP} 0 0 0 {x1} {top}\"/>",
        x0 = num(x),
        x1 = num(x + w),
        top = num(y + CAP),
        bottom = num(y + h - CAP),
        r = num(r),
    );
}

const LEGEND: [(&str, &str); 6] = [
    ("source", "source topic"),
    ("op", "step"),
    ("store", "state store"),
    ("sink", "sink topic"),
    ("repartition", "repartition topic"),
    ("topic-link", "topic read by another sub-topology"),
];

fn legend_width() -> f64 {
    LEGEND.iter().map(|(_, label)| 30.0 + label.chars().count() as f64 * CHAR_W + 16.0).sum()
}

fn legend(out: &mut String, x: f64, y: f64) {
    out.push_str("<g class=\"legend\">\n");
    let mut x = x;
    for (class, label) in LEGEND {
        match class {
            "store" => {
                out.push_str("<g class=\"store\">");
                cylinder(out, x, y, 22.0, 16.0);
                out.push_str("</g>");
            }
            "topic-link" => {
                let _ =
                    write!(out, "<path class=\"topic-link\" d=\"M{} {} H{}\"/>", num(x), num(y + 8.0), num(x + 22.0));
            }
            _ => {
                let rx = if class == "op" { 3 } else { 7 };
                let _ = write!(
                    out,
                    "<g class=\"node {class}\"><rect x=\"{}\" y=\"{}\" width=\"22\" height=\"14\" rx=\"{rx}\"/></g>",
                    num(x),
                    num(y + 1.0)
                );
            }
        }
        let _ = writeln!(out, "<text x=\"{}\" y=\"{}\">{label}</text>", num(x + 30.0), num(y + 12.0));
        x += 30.0 + label.chars().count() as f64 * CHAR_W + 16.0;
    }
    out.push_str("</g>\n");
}

#[cfg(test)]
mod tests {
    use super::{esc, num};

    #[test]
    fn coordinates_round_to_a_tenth() {
        assert_eq!(num(12.0), "12");
        assert_eq!(num(12.04), "12");
        assert_eq!(num(12.06), "12.1");
        assert_eq!(num(-3.5), "-3.5");
        assert_eq!(num(-0.5), "-0.5");
    }

    #[test]
    fn text_is_escaped_for_xml() {
        assert_eq!(esc("a<b & \"c\" 'd'>"), "a&lt;b &amp; &quot;c&quot; &#39;d&#39;&gt;");
    }
}
