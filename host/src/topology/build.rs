use std::collections::{BTreeMap, BTreeSet};

use toml::Spanned;

use super::{ErrorPolicy, Node, NodeId, NodeOp, PluginKind, PluginRef, SubTopology, TopicFormats, Topology};
use crate::manifest::Loaded;
use crate::manifest::{ManifestError, StepDef, closest};

/// Builds the topology of a parsed manifest, checking every name it references.
pub fn build(loaded: &Loaded) -> Result<Topology, ManifestError> {
    let mut b = Builder { loaded, nodes: Vec::new(), sources: BTreeMap::new() };
    let m = &loaded.manifest;
    for (name, pipeline) in &m.pipelines {
        let name_str = name.get_ref().as_str();
        let key = format!("pipelines.{name_str}");
        let policy = ErrorPolicy {
            on_error: pipeline.on_error,
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
        let ends = b.chain(&ctx, &key, name_str, parents, &pipeline.steps)?;
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
    };
    Ok(topology)
}

struct Builder<'a> {
    loaded: &'a Loaded,
    nodes: Vec<Node>,
    sources: BTreeMap<String, NodeId>,
}

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
            policy: ErrorPolicy { on_error: Default::default(), dead_letter_topic: String::new() },
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
                        let ends = self.chain(ctx, &bkey, &format!("{name}-{j}"), vec![id], &br.steps)?;
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
        let takes_plugin = !matches!(op, "merge" | "to" | "branch");
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
        Ok(())
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
