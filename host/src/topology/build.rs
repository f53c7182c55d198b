use std::collections::{BTreeMap, BTreeSet};

use toml::Spanned;

use super::WindowSpec;
use super::{ErrorPolicy, FoldOp, Node, NodeId, NodeOp, PluginKind, PluginRef, SubTopology, TopicFormats, Topology};
use crate::manifest::parse_duration;
use crate::manifest::{Duration, Loaded, OnError, WindowDef};
use crate::manifest::{ManifestError, StepDef, closest};
use crate::state::{StoreKind, StoreSpec};

/// Builds the topology of a parsed manifest, checking every name it references.
pub fn build(loaded: &Loaded) -> Result<Topology, ManifestError> {
    let mut b = Builder { loaded, nodes: Vec::new(), sources: BTreeMap::new(), stores: BTreeMap::new() };
    let m = &loaded.manifest;
    if let Some(t) = m.application.threads.as_ref().filter(|t| *t.get_ref() == 0) {
        return Err(b.err(t.span(), "application.threads", "a process runs at least one stream thread"));
    }
    for (name, pipeline) in &m.pipelines {
        let name_str = name.get_ref().as_str();
        let key = format!("pipelines.{name_str}");
        let retry = match (&pipeline.retry, pipeline.on_error) {
            (Some(r), _) if r.get_ref().then == OnError::Retry => {
                return Err(b.err(
                    r.span(),
                    format!("{key}.retry.then"),
                    "`then` is what happens after the last retry: `stop`, `skip` or `dead-letter`",
                ));
            }
            (Some(r), on_error) if on_error != OnError::Retry => {
                return Err(b.err(
                    r.span(),
                    format!("{key}.retry"),
                    "`retry` applies only with `on_error = \"retry\"`",
                ));
            }
            (r, _) => r.as_ref().map(|r| *r.get_ref()).unwrap_or_default(),
        };
        let policy = ErrorPolicy {
            on_error: pipeline.on_error,
            retry,
            dead_letter_topic: pipeline
                .dead_letter_topic
                .as_ref()
                .map(|t| t.get_ref().clone())
                .unwrap_or_else(|| format!("{}-dlq", m.application.id.get_ref())),
        };
        let ctx = Ctx { pipeline: name_str, policy: &policy };
        let mut parents = Vec::new();
        for from in pipeline.from.get_ref().names() {
            parents.push(b.source(from, pipeline.from.span(), &format!("{key}.from"))?);
        }
        if parents.is_empty() {
            return Err(b.err(pipeline.from.span(), format!("{key}.from"), "a pipeline reads at least one stream"));
        }
        let ends = b.chain(&ctx, &key, name_str, parents, &pipeline.steps, StreamState::default())?;
        match (&pipeline.to, ends) {
            (Some(to), Some(parents)) => {
                let topic = b.topic_of(to.get_ref());
                b.add(&ctx, format!("{name_str}-sink-{topic}"), NodeOp::Sink { topic }, parents);
            }
            (Some(to), None) => {
                return Err(b.err(
                    to.span(),
                    format!("{key}.to"),
                    "the pipeline already ends in a `branch`, `for_each` or `to` step, so there is nothing left to write",
                ));
            }
            (None, _) => {}
        }
    }
    if m.pipelines.is_empty() {
        return Err(loaded.source.error(0..0, "pipelines", "the manifest defines no pipeline"));
    }
    // A source shared by pipelines takes the error policy of the first that reads it: it
    // applies to records that do not deserialize.
    for id in 0..b.nodes.len() {
        if let (NodeOp::Source { .. }, Some(&first)) = (&b.nodes[id].op, b.nodes[id].children.first()) {
            let (pipeline, policy) = (b.nodes[first].pipeline.clone(), b.nodes[first].policy.clone());
            b.nodes[id].pipeline = pipeline;
            b.nodes[id].policy = policy;
        }
    }
    let subtopologies = b.subtopologies();
    let formats = m
        .streams
        .iter()
        .map(|(name, s)| {
            let topic = s.topic.as_ref().map_or_else(|| name.get_ref().clone(), |t| t.get_ref().clone());
            (topic, TopicFormats { key: s.key, value: s.value })
        })
        .collect();
    let topology = Topology {
        application_id: m.application.id.get_ref().clone(),
        nodes: b.nodes,
        sources: b.sources,
        subtopologies,
        formats,
        stores: b.stores,
    };
    Ok(topology)
}

struct Builder<'a> {
    loaded: &'a Loaded,
    nodes: Vec<Node>,
    sources: BTreeMap<String, NodeId>,
    stores: BTreeMap<String, StoreSpec>,
}

/// What a chain of steps knows about its stream while it is built.
#[derive(Default, Clone, Copy)]
struct StreamState {
    /// A step changed the key since the last source or repartition, so grouping by key
    /// must repartition.
    key_changed: bool,
    /// After `group_by_key`/`group_by` (and `windowed_by`): the window, if any.
    grouped: Option<Option<WindowSpec>>,
    /// The aggregate the previous step created (for `suppress`).
    last_aggregate: Option<NodeId>,
}

/// The default read cache of a store.
pub const DEFAULT_CACHE_BYTES: usize = 10 << 20;

struct Ctx<'a> {
    pipeline: &'a str,
    policy: &'a ErrorPolicy,
}

/// Op names, in the manifest's snake_case.
const OPS: &[&str] = &[
    "filter",
    "filter_not",
    "map_values",
    "map",
    "flat_map",
    "flat_map_values",
    "select_key",
    "peek",
    "for_each",
    "branch",
    "merge",
    "to",
    "with_timestamp",
    "group_by_key",
    "group_by",
    "windowed_by",
    "count",
    "reduce",
    "aggregate",
    "suppress",
    "to_stream",
    "process",
];

/// `mapValues`, `map-values` and `map_values` are the same op.
fn normalize_op(op: &str) -> String {
    let mut out = String::new();
    for c in op.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else if c == '-' {
            out.push('_');
        } else {
            out.push(c);
        }
    }
    if out == "foreach" { "for_each".to_owned() } else { out }
}

impl Builder<'_> {
    fn err(&self, span: std::ops::Range<usize>, key: impl Into<String>, msg: impl Into<String>) -> ManifestError {
        self.loaded.source.error(span, key, msg)
    }

    fn add(&mut self, ctx: &Ctx<'_>, name: String, op: NodeOp, parents: Vec<NodeId>) -> NodeId {
        let id = self.nodes.len();
        for &p in &parents {
            self.nodes[p].children.push(id);
        }
        self.nodes.push(Node {
            id,
            name,
            op,
            children: Vec::new(),
            parents,
            pipeline: ctx.pipeline.to_owned(),
            policy: ctx.policy.clone(),
        });
        id
    }

    /// The topic a stream name stands for (a name not declared as a stream is a topic).
    fn topic_of(&self, name: &str) -> String {
        let streams = &self.loaded.manifest.streams;
        streams
            .iter()
            .find(|(k, _)| k.get_ref() == name)
            .map(|(k, s)| s.topic.as_ref().map_or_else(|| k.get_ref().clone(), |t| t.get_ref().clone()))
            .unwrap_or_else(|| name.to_owned())
    }

    /// The source node of a stream, created on first use. In local mode the topic must have
    /// an input file or be written by a pipeline.
    fn source(&mut self, from: &str, span: std::ops::Range<usize>, key: &str) -> Result<NodeId, ManifestError> {
        let topic = self.topic_of(from);
        if let Some(&id) = self.sources.get(&topic) {
            return Ok(id);
        }
        let m = &self.loaded.manifest;
        if m.application.kafka.is_none() && !self.has_local_input(&topic) {
            let mut candidates: Vec<String> = m.streams.keys().map(|k| k.get_ref().clone()).collect();
            candidates.extend(self.written_topics());
            let mut e = self.err(
                span,
                key,
                format!(
                    "`{from}` has no records in local mode: it is not a stream with a `file`, and no pipeline writes it"
                ),
            );
            if let Some(s) = closest(from, candidates.iter().map(String::as_str)) {
                e = e.with_help(format!("did you mean `{s}`?"));
            }
            return Err(e);
        }
        let id = self.nodes.len();
        self.nodes.push(Node {
            id,
            name: format!("source-{topic}"),
            op: NodeOp::Source { topic: topic.clone() },
            children: Vec::new(),
            parents: Vec::new(),
            pipeline: String::new(),
            policy: ErrorPolicy::default(),
        });
        self.sources.insert(topic, id);
        Ok(id)
    }

    fn has_local_input(&self, topic: &str) -> bool {
        let m = &self.loaded.manifest;
        m.streams.iter().any(|(k, s)| {
            let t = s.topic.as_ref().map_or(k.get_ref().as_str(), |t| t.get_ref().as_str());
            t == topic && s.file.is_some()
        }) || self.written_topics().iter().any(|t| t == topic)
    }

    /// Topics some pipeline's `to` (or `to` step, or branch `to`) names.
    fn written_topics(&self) -> BTreeSet<String> {
        fn steps(out: &mut Vec<String>, list: &[Spanned<StepDef>]) {
            for s in list {
                let s = s.get_ref();
                if let Some(t) = &s.topic {
                    out.push(t.get_ref().clone());
                }
                if let Some(c) = &s.children {
                    out.extend(c.get_ref().values().cloned());
                }
                if let Some(t) = &s.late_topic {
                    out.push(t.get_ref().clone());
                }
                for b in s.branches.iter().flatten() {
                    let b = b.get_ref();
                    if let Some(t) = &b.to {
                        out.push(t.get_ref().clone());
                    }
                    steps(out, &b.steps);
                }
            }
        }
        let mut names = Vec::new();
        for p in self.loaded.manifest.pipelines.values() {
            if let Some(t) = &p.to {
                names.push(t.get_ref().clone());
            }
            steps(&mut names, &p.steps);
        }
        names.iter().map(|n| self.topic_of(n)).collect()
    }

    fn plugin_ref(
        &self,
        plugin: Option<&Spanned<String>>,
        function: Option<&String>,
        kind: PluginKind,
        op_span: std::ops::Range<usize>,
        key: &str,
        op: &str,
    ) -> Result<PluginRef, ManifestError> {
        let Some(plugin) = plugin else {
            return Err(self.err(
                op_span,
                key,
                format!("`{op}` needs a `plugin` that exports the {} kind", kind.interface()),
            ));
        };
        let plugins = &self.loaded.manifest.plugins;
        if !plugins.keys().any(|k| k.get_ref() == plugin.get_ref()) {
            let mut e = self.err(
                plugin.span(),
                format!("{key}.plugin"),
                format!("no plugin named `{}` in [plugins]", plugin.get_ref()),
            );
            if let Some(s) = closest(plugin.get_ref(), plugins.keys().map(|k| k.get_ref().as_str())) {
                e = e.with_help(format!("did you mean `{s}`?"));
            }
            return Err(e);
        }
        Ok(PluginRef { plugin: plugin.get_ref().clone(), function: function.cloned().unwrap_or_default(), kind })
    }

    /// Builds `steps` after `parents`. Returns the nodes the chain ends in, or `None` when it
    /// ends in a branch or for_each (nothing flows on).
    fn chain(
        &mut self,
        ctx: &Ctx<'_>,
        key: &str,
        prefix: &str,
        mut parents: Vec<NodeId>,
        steps: &[Spanned<StepDef>],
        mut state: StreamState,
    ) -> Result<Option<Vec<NodeId>>, ManifestError> {
        for (i, step) in steps.iter().enumerate() {
            let skey = format!("{key}.steps[{i}]");
            let s = step.get_ref();
            let op = normalize_op(s.op.get_ref());
            let name = format!("{prefix}-{i}-{op}");
            let terminal = |b: &Self| -> Result<(), ManifestError> {
                if i + 1 < steps.len() {
                    return Err(b.err(
                        steps[i + 1].span(),
                        format!("{key}.steps[{}]", i + 1),
                        format!("nothing can follow `{op}`: it is the end of the pipeline"),
                    ));
                }
                Ok(())
            };
            let plugin =
                |b: &Self, kind| b.plugin_ref(s.plugin.as_ref(), s.function.as_ref(), kind, s.op.span(), &skey, &op);
            self.reject_fields(s, &op, &skey)?;
            if state.grouped.is_some() && !matches!(op.as_str(), "windowed_by" | "count" | "reduce" | "aggregate") {
                return Err(self.err(
                    s.op.span(),
                    format!("{skey}.op"),
                    format!("`{op}` cannot follow a grouping: after `group_by_key` or `group_by` comes `windowed_by`, `count`, `reduce` or `aggregate`"),
                ));
            }
            let last_aggregate = state.last_aggregate.take();
            match op.as_str() {
                "map" | "flat_map" | "select_key" => state.key_changed = true,
                "group_by_key" => {
                    if state.key_changed {
                        parents = vec![self.repartition(ctx, &name, parents)];
                        state.key_changed = false;
                    }
                    state.grouped = Some(None);
                    continue;
                }
                "windowed_by" => {
                    if state.grouped != Some(None) {
                        return Err(self.err(
                            s.op.span(),
                            format!("{skey}.op"),
                            "`windowed_by` follows `group_by_key` or `group_by` (once)",
                        ));
                    }
                    let Some(w) = &s.window else {
                        return Err(self.err(s.op.span(), &skey, "`windowed_by` needs `window = { type = \"tumbling\", size = \"5s\" }` (or hopping, sliding, session)"));
                    };
                    state.grouped = Some(Some(self.window(w, &format!("{skey}.window"))?));
                    continue;
                }
                "suppress" => {
                    let Some(agg) = last_aggregate else {
                        return Err(self.err(
                            s.op.span(),
                            format!("{skey}.op"),
                            "`suppress` follows a windowed `count`, `reduce` or `aggregate`",
                        ));
                    };
                    let until = s.until.as_ref().map(|u| normalize_op(u.get_ref()));
                    if until.as_deref() != Some("until_window_closes") && until.as_deref() != Some("window_closes") {
                        let span = s.until.as_ref().map_or_else(|| s.op.span(), |u| u.span());
                        return Err(self.err(
                            span,
                            format!("{skey}.until"),
                            "`suppress` needs `until = \"window_closes\"` (emit each window once, when it closes)",
                        ));
                    }
                    match &mut self.nodes[agg].op {
                        NodeOp::Aggregate { window: Some(_), emit_final, .. } => *emit_final = true,
                        _ => {
                            return Err(self.err(
                                s.op.span(),
                                format!("{skey}.op"),
                                "`suppress` needs a windowed aggregate: without windows nothing ever closes",
                            ));
                        }
                    }
                    state.last_aggregate = Some(agg);
                    continue;
                }
                "to_stream" => {
                    state.last_aggregate = last_aggregate;
                    continue;
                }
                _ => {}
            }
            let node_op = match op.as_str() {
                "filter" | "filter_not" => {
                    NodeOp::Filter { plugin: plugin(self, PluginKind::Filter)?, negate: op == "filter_not" }
                }
                "map_values" => NodeOp::MapValues { plugin: plugin(self, PluginKind::ValueMapper)? },
                "map" => NodeOp::Map { plugin: plugin(self, PluginKind::KeyValueMapper)? },
                "flat_map" | "flat_map_values" => NodeOp::FlatMap {
                    plugin: plugin(self, PluginKind::FlatMapper)?,
                    values_only: op == "flat_map_values",
                },
                "select_key" => NodeOp::SelectKey { plugin: plugin(self, PluginKind::KeySelector)? },
                "with_timestamp" => NodeOp::WithTimestamp { plugin: plugin(self, PluginKind::TimestampExtractor)? },
                "process" => {
                    let p = plugin(self, PluginKind::Processor)?;
                    let mut stores = Vec::new();
                    if let Some(names) = &s.stores {
                        for n in names.get_ref() {
                            let def = self.loaded.manifest.stores.iter().find(|(k, _)| k.get_ref() == n);
                            let kind =
                                def.and_then(|(_, d)| d.kind.as_ref()).map_or(StoreKind::KeyValue, |k| *k.get_ref());
                            stores.push(self.store(n.clone(), names.span(), kind, &skey)?);
                        }
                    }
                    let children = s
                        .children
                        .as_ref()
                        .map(|c| c.get_ref().iter().map(|(k, v)| (k.clone(), self.topic_of(v))).collect())
                        .unwrap_or_default();
                    NodeOp::Process { plugin: p, stores, children }
                }
                "group_by" => {
                    let select = NodeOp::SelectKey { plugin: plugin(self, PluginKind::KeySelector)? };
                    let id = self.add(ctx, name.clone(), select, parents);
                    parents = vec![self.repartition(ctx, &name, vec![id])];
                    state = StreamState { grouped: Some(None), ..Default::default() };
                    continue;
                }
                "count" | "reduce" | "aggregate" => {
                    let Some(window) = state.grouped.take() else {
                        return Err(self.err(
                            s.op.span(),
                            format!("{skey}.op"),
                            format!("`{op}` needs grouped records: put `group_by_key` or `group_by` before it"),
                        ));
                    };
                    let fold = match op.as_str() {
                        "count" => FoldOp::Count,
                        "reduce" => FoldOp::Reduce(plugin(self, PluginKind::Reducer)?),
                        _ => FoldOp::Aggregate(plugin(self, PluginKind::Aggregator)?),
                    };
                    let kind = match window {
                        None => StoreKind::KeyValue,
                        Some(WindowSpec::Session { .. }) => StoreKind::Session,
                        Some(_) => StoreKind::Window,
                    };
                    let (store_name, span) = match &s.store {
                        Some(n) => (n.get_ref().clone(), n.span()),
                        None => (format!("{name}-store"), s.op.span()),
                    };
                    let store = self.store(store_name, span, kind, &skey)?;
                    let late_topic = match (&s.late_topic, window) {
                        (Some(t), Some(_)) => Some(self.topic_of(t.get_ref())),
                        (Some(t), None) => {
                            return Err(self.err(
                                t.span(),
                                format!("{skey}.late_topic"),
                                "`late_topic` needs windows: records are late only for a window",
                            ));
                        }
                        (None, _) => None,
                    };
                    let id = self.add(
                        ctx,
                        name,
                        NodeOp::Aggregate { fold, window, emit_final: false, store, late_topic },
                        parents,
                    );
                    parents = vec![id];
                    state = StreamState { last_aggregate: Some(id), ..Default::default() };
                    continue;
                }
                "peek" => NodeOp::Peek {
                    plugin: match s.plugin {
                        Some(_) => Some(plugin(self, PluginKind::ForEach)?),
                        None => None,
                    },
                },
                "for_each" => {
                    terminal(self)?;
                    let op = NodeOp::ForEach { plugin: plugin(self, PluginKind::ForEach)? };
                    self.add(ctx, name, op, parents);
                    return Ok(None);
                }
                "merge" => {
                    let Some(from) = &s.from else {
                        return Err(self.err(s.op.span(), &skey, "`merge` needs `from`: the streams merged in"));
                    };
                    for f in from.get_ref().names() {
                        let src = self.source(f, from.span(), &format!("{skey}.from"))?;
                        parents.push(src);
                    }
                    NodeOp::Merge
                }
                "to" => {
                    terminal(self)?;
                    let Some(topic) = &s.topic else {
                        return Err(self.err(s.op.span(), &skey, "`to` needs `topic`"));
                    };
                    let topic = self.topic_of(topic.get_ref());
                    self.add(ctx, format!("{name}-{topic}"), NodeOp::Sink { topic }, parents);
                    return Ok(None);
                }
                "branch" => {
                    terminal(self)?;
                    let Some(branches) = &s.branches else {
                        return Err(self.err(s.op.span(), &skey, "`branch` needs `branches`"));
                    };
                    let id =
                        self.add(ctx, name.clone(), NodeOp::Branch { predicates: vec![], targets: vec![] }, parents);
                    let mut predicates = Vec::new();
                    let mut targets = Vec::new();
                    for (j, branch) in branches.iter().enumerate() {
                        let bkey = format!("{skey}.branches[{j}]");
                        let br = branch.get_ref();
                        let pred = match &br.plugin {
                            Some(p) => Some(self.plugin_ref(
                                Some(p),
                                br.function.as_ref(),
                                PluginKind::Filter,
                                branch.span(),
                                &bkey,
                                "branch",
                            )?),
                            None if j + 1 == branches.len() => None,
                            None => {
                                return Err(self.err(
                                    branch.span(),
                                    &bkey,
                                    "only the last branch may leave out `plugin` (it is the default branch)",
                                ));
                            }
                        };
                        let first = self.nodes.len();
                        let sub = StreamState { key_changed: state.key_changed, ..Default::default() };
                        let ends = self.chain(ctx, &bkey, &format!("{name}-{j}"), vec![id], &br.steps, sub)?;
                        match (&br.to, ends) {
                            (Some(to), Some(ends)) => {
                                let topic = self.topic_of(to.get_ref());
                                self.add(ctx, format!("{name}-{j}-sink-{topic}"), NodeOp::Sink { topic }, ends);
                            }
                            (None, Some(_)) if br.steps.is_empty() => {
                                return Err(self.err(branch.span(), &bkey, "the branch has no `steps` and no `to`"));
                            }
                            _ => {}
                        }
                        predicates.push(pred);
                        targets.push(first);
                    }
                    if branches.is_empty() {
                        return Err(self.err(s.op.span(), &skey, "`branch` needs at least one branch"));
                    }
                    self.nodes[id].op = NodeOp::Branch { predicates, targets };
                    return Ok(None);
                }
                other => {
                    let mut e = self.err(s.op.span(), format!("{skey}.op"), format!("unknown op `{other}`"));
                    if let Some(c) = closest(other, OPS.iter().copied()) {
                        e = e.with_help(format!("did you mean `{c}`?"));
                    } else {
                        e = e.with_help(format!("the ops are: {}", OPS.join(", ")));
                    }
                    return Err(e);
                }
            };
            let id = self.add(ctx, name, node_op, parents);
            parents = vec![id];
        }
        Ok(Some(parents))
    }

    /// Fields that do not belong to the op are mistakes, not silently ignored settings.
    fn reject_fields(&self, s: &StepDef, op: &str, key: &str) -> Result<(), ManifestError> {
        let takes_plugin = !matches!(
            op,
            "merge" | "to" | "branch" | "group_by_key" | "windowed_by" | "count" | "suppress" | "to_stream"
        );
        let bad = |field: &str, span: std::ops::Range<usize>| {
            Err(self.err(span, format!("{key}.{field}"), format!("`{op}` does not take `{field}`")))
        };
        if !takes_plugin && let Some(p) = &s.plugin {
            return bad("plugin", p.span());
        }
        if op != "merge"
            && let Some(f) = &s.from
        {
            return bad("from", f.span());
        }
        if op != "to"
            && let Some(t) = &s.topic
        {
            return bad("topic", t.span());
        }
        if op != "branch"
            && let Some(b) = s.branches.as_ref().and_then(|b| b.first())
        {
            return bad("branches", b.span());
        }
        let aggregates = matches!(op, "count" | "reduce" | "aggregate");
        if !aggregates && let Some(x) = &s.store {
            return bad("store", x.span());
        }
        if !aggregates && let Some(x) = &s.late_topic {
            return bad("late_topic", x.span());
        }
        if op != "windowed_by"
            && let Some(x) = &s.window
        {
            return bad("window", x.span());
        }
        if op != "suppress"
            && let Some(x) = &s.until
        {
            return bad("until", x.span());
        }
        if op != "process"
            && let Some(x) = &s.stores
        {
            return bad("stores", x.span());
        }
        if op != "process"
            && let Some(x) = &s.children
        {
            return bad("children", x.span());
        }
        Ok(())
    }

    /// A repartition through `<application-id>-<step>-repartition`: a sink stamping positions,
    /// and the source that reads it back (a new sub-topology).
    fn repartition(&mut self, ctx: &Ctx<'_>, step: &str, parents: Vec<NodeId>) -> NodeId {
        let topic = format!("{}-{step}-repartition", self.loaded.manifest.application.id.get_ref());
        self.add(ctx, format!("{step}-repartition-sink"), NodeOp::Repartition { topic: topic.clone() }, parents);
        let id = self.nodes.len();
        self.nodes.push(Node {
            id,
            name: format!("source-{topic}"),
            op: NodeOp::Source { topic: topic.clone() },
            children: Vec::new(),
            parents: Vec::new(),
            pipeline: ctx.pipeline.to_owned(),
            policy: ctx.policy.clone(),
        });
        self.sources.insert(topic, id);
        id
    }

    fn duration(&self, d: &Spanned<Duration>, key: String) -> Result<i64, ManifestError> {
        let ms = match d.get_ref() {
            Duration::Millis(ms) => Ok(*ms),
            Duration::Text(t) => parse_duration(t),
        }
        .map_err(|m| self.err(d.span(), &key, m))?;
        if ms < 0 {
            return Err(self.err(d.span(), key, "a duration cannot be negative"));
        }
        Ok(ms)
    }

    fn window(&self, w: &Spanned<WindowDef>, key: &str) -> Result<WindowSpec, ManifestError> {
        let def = w.get_ref();
        let need = |field: &str, v: &Option<Spanned<Duration>>| -> Result<i64, ManifestError> {
            match v {
                Some(d) => {
                    let ms = self.duration(d, format!("{key}.{field}"))?;
                    if ms == 0 {
                        return Err(self.err(
                            d.span(),
                            format!("{key}.{field}"),
                            format!("`{field}` must be longer than 0"),
                        ));
                    }
                    Ok(ms)
                }
                None => Err(self.err(w.span(), key, format!("a {} window needs `{field}`", def.kind.get_ref()))),
            }
        };
        let grace = match &def.grace {
            Some(g) => self.duration(g, format!("{key}.grace"))?,
            None => 0,
        };
        let unused = |field: &str, v: &Option<Spanned<Duration>>| -> Result<(), ManifestError> {
            match v {
                Some(d) => Err(self.err(
                    d.span(),
                    format!("{key}.{field}"),
                    format!("a {} window does not take `{field}`", def.kind.get_ref()),
                )),
                None => Ok(()),
            }
        };
        Ok(match def.kind.get_ref().as_str() {
            "tumbling" => {
                unused("advance", &def.advance)?;
                unused("gap", &def.gap)?;
                unused("difference", &def.difference)?;
                let size = need("size", &def.size)?;
                WindowSpec::Time { size, advance: size, grace }
            }
            "hopping" => {
                unused("gap", &def.gap)?;
                unused("difference", &def.difference)?;
                let size = need("size", &def.size)?;
                let advance = need("advance", &def.advance)?;
                if advance > size {
                    let span = def.advance.as_ref().map_or_else(|| w.span(), |a| a.span());
                    return Err(self.err(span, format!("{key}.advance"), "`advance` cannot be longer than `size`"));
                }
                WindowSpec::Time { size, advance, grace }
            }
            "sliding" => {
                unused("size", &def.size)?;
                unused("advance", &def.advance)?;
                unused("gap", &def.gap)?;
                WindowSpec::Sliding { difference: need("difference", &def.difference)?, grace }
            }
            "session" => {
                unused("size", &def.size)?;
                unused("advance", &def.advance)?;
                unused("difference", &def.difference)?;
                WindowSpec::Session { gap: need("gap", &def.gap)?, grace }
            }
            other => {
                let mut e = self.err(def.kind.span(), format!("{key}.type"), format!("unknown window type `{other}`"));
                if let Some(c) = closest(other, ["tumbling", "hopping", "sliding", "session"]) {
                    e = e.with_help(format!("did you mean `{c}`?"));
                } else {
                    e = e.with_help("the window types are: tumbling, hopping, sliding, session");
                }
                return Err(e);
            }
        })
    }

    /// The store of an aggregation step: the one `store` names (declared in `[stores]` or
    /// not), or one named after the step.
    fn store(
        &mut self,
        name: String,
        span: std::ops::Range<usize>,
        kind: StoreKind,
        key: &str,
    ) -> Result<String, ManifestError> {
        if self.stores.contains_key(&name) {
            return Err(self.err(
                span,
                format!("{key}.store"),
                format!("store `{name}` is already used by another step; each step needs its own"),
            ));
        }
        let def = self.loaded.manifest.stores.iter().find(|(k, _)| k.get_ref() == &name).map(|(_, d)| d);
        if let Some(declared) = def.and_then(|d| d.kind.as_ref())
            && *declared.get_ref() != kind
        {
            return Err(self.err(
                declared.span(),
                format!("stores.{name}.kind"),
                format!("the step that uses store `{name}` needs a {kind} store, not {}", declared.get_ref()),
            ));
        }
        let ttl_ms = match def.and_then(|d| d.ttl.as_ref()) {
            Some(t) => Some(self.duration(t, format!("stores.{name}.ttl"))?),
            None => None,
        };
        let spec = StoreSpec {
            name: name.clone(),
            kind,
            persistent: def.is_none_or(|d| d.persistent),
            changelog: def.is_none_or(|d| d.changelog),
            ttl_ms,
            cache_bytes: def.and_then(|d| d.cache_bytes).unwrap_or(DEFAULT_CACHE_BYTES),
        };
        self.stores.insert(name.clone(), spec);
        Ok(name)
    }

    /// Connected components of the graph, numbered by their first source topic.
    fn subtopologies(&self) -> Vec<SubTopology> {
        let n = self.nodes.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn find(p: &mut [usize], x: usize) -> usize {
            let mut r = x;
            while p[r] != r {
                r = p[r];
            }
            let mut c = x;
            while p[c] != r {
                let next = p[c];
                p[c] = r;
                c = next;
            }
            r
        }
        for node in &self.nodes {
            for &c in &node.children {
                let (a, b) = (find(&mut parent, node.id), find(&mut parent, c));
                parent[a] = b;
            }
        }
        let mut groups: BTreeMap<usize, Vec<NodeId>> = BTreeMap::new();
        for id in 0..n {
            let root = find(&mut parent, id);
            groups.entry(root).or_default().push(id);
        }
        let mut subs: Vec<SubTopology> = groups
            .into_values()
            .map(|nodes| {
                let source_topics = nodes
                    .iter()
                    .filter_map(|&id| match &self.nodes[id].op {
                        NodeOp::Source { topic } => Some(topic.clone()),
                        _ => None,
                    })
                    .collect();
                SubTopology { id: 0, source_topics, nodes }
            })
            .collect();
        subs.sort_by(|a, b| a.source_topics.cmp(&b.source_topics));
        for (i, s) in subs.iter_mut().enumerate() {
            s.id = i;
        }
        subs
    }
}
