use std::collections::{BTreeMap, BTreeSet};

use toml::Spanned;

use super::Converted;
use super::step::{JoinTarget, Step, StepKind};
use super::{
    ErrorPolicy, FkStage, Flow, Form, JoinKind, JoinWith, Node, NodeId, NodeOp, PluginUse, StepSpec, SubTopology,
    TopicFormats, Topology, WindowSpec,
};
use super::{REPARTITION, SINK, SOURCE, Suppression};
use crate::manifest::{Loaded, OnError};
use crate::manifest::{ManifestError, StepDef, closest};
use crate::state::{StoreKind, StoreSpec};

/// Builds the topology of a parsed manifest, checking every name it references. `specs` are
/// the registered operators (`operators::REGISTRY`): a step's op is one of theirs.
pub fn build(loaded: &Loaded, specs: &[&'static StepSpec]) -> Result<Topology, ManifestError> {
    for name in [SOURCE, SINK, REPARTITION] {
        if !specs.iter().any(|s| s.name == name && s.form == Form::Internal) {
            return Err(loaded.source.error(0..0, "", format!("no operator is registered for `{name}` nodes")));
        }
    }
    let mut b = Builder {
        loaded,
        specs,
        nodes: Vec::new(),
        sources: BTreeMap::new(),
        stores: BTreeMap::new(),
        tables: BTreeMap::new(),
        globals: BTreeMap::new(),
        flow: Flow::Stream,
    };
    let m = &loaded.manifest;
    if let Some(t) = m.application.threads.as_ref().filter(|t| *t.get_ref() == 0) {
        return Err(b.err(t.span(), "application.threads", "a process runs at least one stream thread"));
    }
    let mut topics: BTreeMap<&str, String> = BTreeMap::new();
    for (section, name, s) in m.declared() {
        if let Some(p) = s.partitions.as_ref().filter(|p| *p.get_ref() == 0) {
            let key = format!("{section}.{}.partitions", name.get_ref());
            return Err(b.err(p.span(), key, "a stream has at least one partition"));
        }
        if section == "streams"
            && let Some(st) = &s.store
        {
            let key = format!("streams.{}.store", name.get_ref());
            return Err(b.err(st.span(), key, "only a table has a store: declare it in [tables]"));
        }
        if section != "tables"
            && let Some(h) = &s.history_retention
        {
            let key = format!("{section}.{}.history_retention", name.get_ref());
            return Err(b.err(h.span(), key, "only a `[tables]` table keeps a history (a versioned store)"));
        }
        let topic = s.topic_or(name.get_ref());
        let here = format!("{section}.{}", name.get_ref());
        if let Some(first) = topics.insert(topic, here.clone()) {
            let span = s.topic.as_ref().map_or_else(|| name.span(), Spanned::span);
            return Err(b.err(
                span,
                here,
                format!("topic `{topic}` is already declared by `{first}`: a topic is read as one stream or table"),
            ));
        }
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
        let names = pipeline.from.get_ref().names();
        let mut state = StreamState::default();
        for from in &names {
            if b.is_table(from) {
                if names.len() > 1 {
                    return Err(b.err(
                        pipeline.from.span(),
                        format!("{key}.from"),
                        format!("`{from}` is a table: a pipeline reads one table, or streams (merged)"),
                    ));
                }
                let table = b.table(&ctx, from)?;
                state.table = Some(TableState { old_values: true, materialized: Some(table) });
                parents.push(table);
            } else {
                parents.push(b.source(from, pipeline.from.span(), &format!("{key}.from"))?);
            }
        }
        if parents.is_empty() {
            return Err(b.err(pipeline.from.span(), format!("{key}.from"), "a pipeline reads at least one stream"));
        }
        let ends = b.chain(&ctx, &key, name_str, parents, &pipeline.steps, state)?;
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
    let mut formats = BTreeMap::new();
    for (section, name, s) in m.declared() {
        let topic = s.topic_or(name.get_ref()).to_owned();
        let key = b.converted(section, name.get_ref(), &topic, "key", s.key.as_ref())?;
        let value = b.converted(section, name.get_ref(), &topic, "value", s.value.as_ref())?;
        let declared = |f: &Option<Spanned<crate::manifest::FormatDef>>| {
            f.as_ref().map(|f| f.get_ref().format()) == Some(crate::manifest::Format::String)
        };
        let f = TopicFormats {
            key: s.key_format(),
            value: s.value_format(),
            text_key: declared(&s.key),
            text_value: declared(&s.value),
            partitions: s.partitions.as_ref().map(|p| *p.get_ref()),
            key_codec: key,
            value_codec: value,
        };
        formats.insert(topic, f);
    }
    let store_formats = b.store_formats(m.application.id.get_ref())?;
    let schema_registry = match &m.application.schema_registry {
        Some(r) => Some(super::RegistrySpec { url: r.url.get_ref().clone(), wait_ms: b.registry_wait(r)? }),
        None => None,
    };
    let topology = Topology {
        store_formats,
        application_id: m.application.id.get_ref().clone(),
        nodes: b.nodes,
        sources: b.sources,
        subtopologies,
        formats,
        stores: b.stores,
        globals: b.globals,
        max_record_bytes: m
            .application
            .max_record_bytes
            .as_ref()
            .map_or(super::DEFAULT_MAX_RECORD_BYTES, |b| *b.get_ref()),
        schema_registry,
    };
    Ok(topology)
}

pub(super) struct Builder<'a> {
    pub(super) loaded: &'a Loaded,
    pub(super) specs: &'a [&'static StepSpec],
    nodes: Vec<Node>,
    sources: BTreeMap<String, NodeId>,
    stores: BTreeMap<String, StoreSpec>,
    /// The node that materializes each `[tables]` table, by name.
    tables: BTreeMap<String, NodeId>,
    /// The global tables joined so far, by name.
    globals: BTreeMap<String, super::GlobalTable>,
    /// What the nodes added next take in (set by each step of a chain).
    flow: Flow,
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
    /// The chain carries a table's changes (from a table, `to_table` or an aggregation).
    table: Option<TableState>,
    /// The grouping is a table's (`group_by` on a table): its aggregation subtracts.
    grouped_table: bool,
}

/// A table in a chain.
#[derive(Clone, Copy, PartialEq, Eq)]
struct TableState {
    /// Each change carries the value it replaces.
    old_values: bool,
    /// The [`NodeOp::ToTable`] whose store holds the table's rows, when no step changed
    /// them since.
    materialized: Option<NodeId>,
}

impl StreamState {
    fn flow(&self) -> Flow {
        match self.table {
            Some(t) => Flow::Table { old_values: t.old_values },
            None => Flow::Stream,
        }
    }
}

/// The default read cache of a store.
pub const DEFAULT_CACHE_BYTES: usize = 10 << 20;

struct Ctx<'a> {
    pipeline: &'a str,
    policy: &'a ErrorPolicy,
}

impl<'a> Builder<'a> {
    /// A declared key or value format that the host converts: checked, with its schema's path
    /// resolved and its registry settings filled in. `None` for the formats that pass as they are.
    fn converted(
        &self,
        section: &str,
        name: &str,
        topic: &str,
        field: &str,
        def: Option<&Spanned<crate::manifest::FormatDef>>,
    ) -> Result<Option<Converted>, ManifestError> {
        use crate::manifest::Format;
        let Some(def) = def else { return Ok(None) };
        let mut spec = def.get_ref().spec();
        if !spec.format.converted() {
            return Ok(None);
        }
        let key = format!("{section}.{name}.{field}");
        let span = def.span();
        let registry = self.loaded.manifest.application.schema_registry.is_some();
        let format = spec.format.name();
        if spec.format == Format::Csv {
            if spec.registry == Some(true) || spec.register || spec.schema.is_some() {
                return Err(self.err(
                    span,
                    key,
                    "`csv` takes `columns` and `delimiter`; it has no schema and no registry",
                ));
            }
        } else {
            if !spec.columns.is_empty() || spec.delimiter.is_some() {
                return Err(self.err(span, key, format!("`columns` and `delimiter` are for `csv`, not `{format}`")));
            }
            let framed = spec.registry.unwrap_or(registry);
            if framed && !registry {
                return Err(self.err(
                    span,
                    key,
                    "`registry = true` needs a schema registry: set `[application.schema_registry] url`",
                ));
            }
            if spec.schema.is_none() && !framed {
                return Err(self.err(
                    span,
                    key,
                    format!(
                        "`{format}` needs a `schema` file, or the schema registry (`[application.schema_registry]`)"
                    ),
                ));
            }
            if spec.register && (spec.schema.is_none() || !framed) {
                return Err(self.err(
                    span,
                    key,
                    "`register = true` registers the `schema` file: give one, and a registry",
                ));
            }
            if spec.message.is_some() && spec.format != Format::Protobuf {
                return Err(self.err(span, key, format!("`message` names a Protobuf message; `{format}` has none")));
            }
            spec.registry = Some(framed);
            if framed && spec.subject.is_none() {
                spec.subject = Some(format!("{topic}-{field}"));
            }
        }
        if !spec.previous.is_empty()
            && (section != "stores" || spec.format != Format::Avro || spec.registry == Some(true))
        {
            return Err(self.err(
                span,
                key,
                "`previous` lists an Avro store's older schemas when it has no registry (the registry keeps them)",
            ));
        }
        let resolve = |schema: &str| {
            let path = self.loaded.resolve(schema);
            if !path.is_file() {
                return Err(self.err(
                    span.clone(),
                    key.clone(),
                    format!("the schema file {} does not exist", path.display()),
                ));
            }
            Ok(path.to_string_lossy().into_owned())
        };
        if let Some(schema) = &spec.schema {
            spec.schema = Some(resolve(schema)?);
        }
        spec.previous = spec.previous.iter().map(|p| resolve(p)).collect::<Result<_, _>>()?;
        let (line, col) = self.loaded.source.line_col(span.start);
        let at = format!("{}:{line}:{col}: `{key}`", self.loaded.source.path.display());
        Ok(Some(Converted { spec, at }))
    }

    /// The value formats of `[stores]` (`value`), checked as a topic's are, by store name. A
    /// framed store's subject is its changelog topic's (`<changelog>-value`), as Kafka Streams'
    /// registry serdes name it. Only the stores whose values plugins write take one: those of
    /// `reduce`, `aggregate` and processors.
    fn store_formats(&self, application_id: &str) -> Result<BTreeMap<String, super::Converted>, ManifestError> {
        let mut formats = BTreeMap::new();
        for (name, def) in &self.loaded.manifest.stores {
            let Some(value) = &def.value else { continue };
            let name = name.get_ref();
            let key = format!("stores.{name}.value");
            let user = self.nodes.iter().find(|n| n.op.stores().contains(&name.as_str()));
            let refused = match user.map(|n| &n.op) {
                None => Some(format!("no step uses store `{name}`")),
                Some(NodeOp::Aggregate { fold: super::FoldOp::Count, .. }) => {
                    Some("`count` keeps its counts as 8-byte numbers; only plugins' values take a format".to_owned())
                }
                Some(NodeOp::Aggregate { .. } | NodeOp::Process { .. }) => None,
                Some(_) => Some(format!(
                    "store `{name}` holds what wasp writes (a table's rows, a join's or a buffer's); only the stores \
                     of `reduce`, `aggregate` and processors take a value format"
                )),
            };
            if let Some(message) = refused {
                return Err(self.err(value.span(), key, message));
            }
            let changelog = format!("{application_id}-{name}-changelog");
            let converted = self.converted("stores", name, &changelog, "value", Some(value))?;
            let Some(converted) = converted else {
                return Err(self.err(
                    value.span(),
                    key,
                    "a store keeps its values as plugins write them unless it names `avro`, `protobuf` or `json_schema`",
                ));
            };
            if converted.spec.format == crate::manifest::Format::Csv {
                return Err(self.err(
                    value.span(),
                    key,
                    "a store's values are `avro`, `protobuf` or `json_schema`, not `csv`",
                ));
            }
            if converted.spec.schema.is_none() {
                return Err(self.err(
                    value.span(),
                    key,
                    "a store's format needs its `schema` file: the store writes with it (and registers it)",
                ));
            }
            // A framed store registers its schema under its own subject, as Kafka Streams'
            // registry serdes do by default (`auto.register.schemas`).
            let mut converted = converted;
            converted.spec.register |= converted.spec.registry == Some(true);
            formats.insert(name.clone(), converted);
        }
        Ok(formats)
    }

    /// `[application.schema_registry] wait`. Under exactly_once_v2 on Kafka it stays within
    /// half of the transaction timeout: a stream thread waits for the registry while its
    /// transaction is open, and a transaction open past its timeout is aborted by the broker.
    /// A longer `wait` is refused; the default is lowered to that half.
    fn registry_wait(&self, r: &crate::manifest::SchemaRegistryDef) -> Result<i64, ManifestError> {
        let app = &self.loaded.manifest.application;
        let v2 = app.processing_guarantee.as_ref().map(|g| *g.get_ref())
            == Some(crate::manifest::ProcessingGuarantee::ExactlyOnceV2);
        // The half of the transaction timeout, under exactly_once_v2 on Kafka.
        let limit = app.kafka.as_ref().filter(|_| v2).map(|kafka| {
            let timeout = kafka
                .properties
                .get("transaction.timeout.ms")
                .and_then(|t| t.trim().parse::<i64>().ok())
                .unwrap_or(crate::manifest::DEFAULT_TRANSACTION_TIMEOUT_MS);
            (timeout, timeout / 2)
        });
        let Some(w) = &r.wait else {
            return Ok(
                limit.map_or(super::DEFAULT_REGISTRY_WAIT_MS, |(_, half)| super::DEFAULT_REGISTRY_WAIT_MS.min(half))
            );
        };
        let key = "application.schema_registry.wait";
        let ms = self.duration(w, key.to_owned())?;
        match limit {
            Some((timeout, half)) if ms > half => Err(self.err(
                w.span(),
                key,
                format!(
                    "{ms} ms is longer than half of transaction.timeout.ms ({timeout} ms) under exactly_once_v2: a \
                     stream thread waiting that long for the registry would outlive its open transaction, which \
                     the broker then aborts; set at most {half} ms, or raise transaction.timeout.ms in \
                     [application.kafka.properties]"
                ),
            )),
            _ => Ok(ms),
        }
    }

    pub(super) fn err(
        &self,
        span: std::ops::Range<usize>,
        key: impl Into<String>,
        msg: impl Into<String>,
    ) -> ManifestError {
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
            flow: self.flow,
        });
        id
    }

    /// Whether `name` is declared in `[tables]`.
    fn is_table(&self, name: &str) -> bool {
        self.loaded.manifest.tables.keys().any(|k| k.get_ref() == name)
    }

    /// The node that materializes the table declared as `name`, created on first use: its
    /// topic's source, then a [`NodeOp::ToTable`] whose store restores from the topic itself.
    fn table(&mut self, ctx: &Ctx<'_>, name: &str) -> Result<NodeId, ManifestError> {
        if let Some(&id) = self.tables.get(name) {
            return Ok(id);
        }
        let m = &self.loaded.manifest;
        let Some((k, def)) = m.tables.iter().find(|(k, _)| k.get_ref() == name) else {
            unreachable!("`{name}` is a table")
        };
        let key = format!("tables.{name}");
        let source = self.source(name, k.span(), &key)?;
        let topic = def.topic_or(name).to_owned();
        let (store, span) = match &def.store {
            Some(s) => (s.get_ref().clone(), s.span()),
            None => (format!("{name}-store"), k.span()),
        };
        let store = self.store(store, span, StoreKind::KeyValue, &key)?;
        if let Some(spec) = self.stores.get_mut(&store) {
            spec.source_topic = Some(topic.clone());
        }
        // A versioned table: its history in a store of its own, restored from the topic too.
        let versions = match &def.history_retention {
            Some(h) => {
                let retention = self.duration(h, format!("{key}.history_retention"))?;
                let versions = self.store(format!("{store}-versions"), h.span(), StoreKind::KeyValue, &key)?;
                if let Some(spec) = self.stores.get_mut(&versions) {
                    spec.source_topic = Some(topic);
                    spec.history_ms = Some(retention);
                }
                if let Some(spec) = self.stores.get_mut(&store) {
                    spec.latest_by_time = true;
                }
                Some(versions)
            }
            None => None,
        };
        let flow = std::mem::replace(&mut self.flow, Flow::Stream);
        let id = self.add(ctx, format!("table-{name}"), NodeOp::ToTable { store, versions }, vec![source]);
        self.flow = flow;
        self.tables.insert(name.to_owned(), id);
        Ok(id)
    }

    /// The topic a stream name stands for (a name not declared as a stream is a topic).
    pub(super) fn topic_of(&self, name: &str) -> String {
        self.loaded.manifest.topic_of(name)
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
            let mut candidates: Vec<String> = m.declared().map(|(_, k, _)| k.get_ref().clone()).collect();
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
            flow: Flow::Stream,
        });
        self.sources.insert(topic, id);
        Ok(id)
    }

    fn has_local_input(&self, topic: &str) -> bool {
        let m = &self.loaded.manifest;
        m.declared().any(|(_, k, s)| s.topic_or(k.get_ref()) == topic && s.file.is_some())
            || self.written_topics().iter().any(|t| t == topic)
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

    /// Builds `steps` after `parents`. Returns the nodes the chain ends in, or `None` when it
    /// ends in a branch, a `to` or a terminal step such as `for_each` (nothing flows on).
    fn chain(
        &mut self,
        ctx: &Ctx<'_>,
        key: &str,
        prefix: &str,
        mut parents: Vec<NodeId>,
        steps: &'a [Spanned<StepDef>],
        mut state: StreamState,
    ) -> Result<Option<Vec<NodeId>>, ManifestError> {
        for (i, def) in steps.iter().enumerate() {
            let step = self.step(def, format!("{key}.steps[{i}]"))?;
            let Step { spec, key: skey, span, kind } = step;
            let op = spec.name;
            let name = format!("{prefix}-{i}-{op}");
            let ends_chain = matches!(spec.form, Form::To | Form::Branch | Form::Node { terminal: true, .. });
            if ends_chain && i + 1 < steps.len() {
                return Err(self.err(
                    steps[i + 1].span(),
                    format!("{key}.steps[{}]", i + 1),
                    format!("nothing can follow `{op}`: it is the end of the pipeline"),
                ));
            }
            if state.grouped.is_some() && !matches!(spec.form, Form::WindowedBy | Form::Fold(_)) {
                return Err(self.err(
                    span,
                    format!("{skey}.op"),
                    format!("`{op}` cannot follow a grouping: after `group_by_key` or `group_by` comes `windowed_by`, `count`, `reduce` or `aggregate`"),
                ));
            }
            let last_aggregate = state.last_aggregate.take();
            self.flow = state.flow();
            if state.table.is_some() && !spec.tables {
                let help = match spec.form {
                    Form::GroupByKey => {
                        "a table is grouped with `group_by` (a key-selector plugin), as Kafka Streams' `KTable.groupBy`; `to_stream` first groups its updates as a stream"
                    }
                    _ => "put `to_stream` before it to work on the table's updates as a stream",
                };
                return Err(self
                    .err(
                        span,
                        format!("{skey}.op"),
                        format!(
                            "`{op}` works on a stream, and here the pipeline carries a table (from a table, `to_table` or an aggregation)"
                        ),
                    )
                    .with_help(help));
            }
            match kind {
                StepKind::Node { plugin } => {
                    let Form::Node { changes_key, terminal } = spec.form else {
                        unreachable!("a node step has the node form")
                    };
                    state.key_changed |= changes_key;
                    let note = match (&plugin, spec.plugin) {
                        (None, PluginUse::Optional { otherwise, .. }) => Some(otherwise),
                        _ => spec.note,
                    };
                    let id = self.add(ctx, name, NodeOp::Operator { op, plugin, note }, parents);
                    if terminal {
                        return Ok(None);
                    }
                    parents = vec![id];
                    if let Some(t) = &mut state.table {
                        t.materialized = None;
                    }
                }
                StepKind::GroupByKey => {
                    if state.key_changed {
                        parents = vec![self.repartition(ctx, &name, parents)];
                        state.key_changed = false;
                    }
                    state.grouped = Some(None);
                }
                StepKind::GroupBy { selector } => {
                    let grouped_table = match state.table {
                        // The selector sees each change's old value too: a table whose changes
                        // carry none (an aggregation's) is materialized first, which adds them.
                        Some(t) => {
                            if !t.old_values {
                                let store = self.store(
                                    format!("{name}-source-store"),
                                    span.clone(),
                                    StoreKind::KeyValue,
                                    &skey,
                                )?;
                                parents = vec![self.add(
                                    ctx,
                                    format!("{name}-source"),
                                    NodeOp::ToTable { store, versions: None },
                                    parents,
                                )];
                                self.flow = Flow::Table { old_values: true };
                            }
                            true
                        }
                        None => false,
                    };
                    let select = NodeOp::Operator { op, plugin: Some(selector), note: spec.note };
                    let id = self.add(ctx, name.clone(), select, parents);
                    parents = vec![self.repartition(ctx, &name, vec![id])];
                    state = StreamState { grouped: Some(None), grouped_table, ..Default::default() };
                }
                StepKind::WindowedBy { window } => {
                    if state.grouped_table {
                        return Err(self.err(
                            span,
                            format!("{skey}.op"),
                            "a grouped table has no windows: `windowed_by` follows a grouped stream",
                        ));
                    }
                    if state.grouped != Some(None) {
                        return Err(self.err(
                            span,
                            format!("{skey}.op"),
                            "`windowed_by` follows `group_by_key` or `group_by` (once)",
                        ));
                    }
                    state.grouped = Some(Some(window));
                }
                StepKind::Fold { fold, store, late_topic, subtractor } => {
                    let table_fold = match (state.grouped_table, subtractor, &fold) {
                        (true, None, super::FoldOp::Reduce(_) | super::FoldOp::Aggregate(_)) => {
                            return Err(self.err(
                                span,
                                format!("{skey}.subtractor"),
                                format!("`{op}` of a grouped table needs a `subtractor`: the plugin that takes a value back out of an aggregate when it leaves the group"),
                            ));
                        }
                        (true, s, _) => Some(super::TableFold { subtractor: s.map(|(p, _)| p) }),
                        (false, Some((_, sspan)), _) => {
                            return Err(self.err(
                                sspan,
                                format!("{skey}.subtractor"),
                                "`subtractor` is for a grouped table (`group_by` on a table): a stream's records are only added",
                            ));
                        }
                        (false, None, _) => None,
                    };
                    let Some(window) = state.grouped.take() else {
                        return Err(self.err(
                            span,
                            format!("{skey}.op"),
                            format!("`{op}` needs grouped records: put `group_by_key` or `group_by` before it"),
                        ));
                    };
                    let kind = match window {
                        None => StoreKind::KeyValue,
                        Some(WindowSpec::Session { .. }) => StoreKind::Session,
                        Some(_) => StoreKind::Window,
                    };
                    let (store_name, store_span) = match store {
                        Some(n) => (n.get_ref().clone(), n.span()),
                        None => (format!("{name}-store"), span.clone()),
                    };
                    let store = self.store(store_name, store_span, kind, &skey)?;
                    let late_topic = match (late_topic, window) {
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
                    let old_values = table_fold.is_some();
                    let op =
                        NodeOp::Aggregate { fold, window, emit_final: false, store, late_topic, table: table_fold };
                    let id = self.add(ctx, name, op, parents);
                    parents = vec![id];
                    // The aggregation's results are a table; a stream's updates carry no old
                    // values, a grouped table's do.
                    let table = Some(TableState { old_values, materialized: None });
                    state = StreamState { last_aggregate: Some(id), table, ..Default::default() };
                }
                StepKind::Suppress(Suppression::TimeLimit { limit_ms, max_records, emit_early }) => {
                    if last_aggregate.is_none() && state.table.is_none() {
                        return Err(self.err(
                            span,
                            format!("{skey}.op"),
                            "`suppress` holds a table's updates: it follows a table, `to_table`, or a `count`, `reduce` or `aggregate`",
                        ));
                    }
                    let store = self.store(format!("{name}-store"), span.clone(), StoreKind::KeyValue, &skey)?;
                    let op = NodeOp::Suppress { limit_ms, max_records, emit_early, store };
                    let id = self.add(ctx, name, op, parents);
                    parents = vec![id];
                    // What it emits late carries no old value.
                    if let Some(t) = &mut state.table {
                        *t = TableState { old_values: false, materialized: None };
                    }
                    state.last_aggregate = last_aggregate;
                }
                StepKind::Suppress(Suppression::WindowCloses) => {
                    let Some(agg) = last_aggregate else {
                        return Err(self.err(
                            span,
                            format!("{skey}.op"),
                            "`suppress` follows a windowed `count`, `reduce` or `aggregate`",
                        ));
                    };
                    match &mut self.nodes[agg].op {
                        NodeOp::Aggregate { window: Some(_), emit_final, .. } => *emit_final = true,
                        _ => {
                            return Err(self.err(
                                span,
                                format!("{skey}.op"),
                                "`suppress` needs a windowed aggregate: without windows nothing ever closes",
                            ));
                        }
                    }
                    state.last_aggregate = Some(agg);
                }
                StepKind::ToStream => {
                    state.last_aggregate = last_aggregate;
                    state.table = None;
                }
                StepKind::ToTable => {
                    if state.table.is_some() {
                        return Err(self.err(span, format!("{skey}.op"), "the pipeline already carries a table here"));
                    }
                    if state.key_changed {
                        parents = vec![self.repartition(ctx, &name, parents)];
                        state.key_changed = false;
                    }
                    let store = self.store(format!("{name}-store"), span.clone(), StoreKind::KeyValue, &skey)?;
                    let id = self.add(ctx, name, NodeOp::ToTable { store, versions: None }, parents);
                    parents = vec![id];
                    state.table = Some(TableState { old_values: true, materialized: Some(id) });
                }
                StepKind::Join { kind, joiner, with } => {
                    let (id, table) =
                        self.join(ctx, &name, &skey, span.clone(), kind, joiner, with, parents, &mut state)?;
                    parents = vec![id];
                    state.table = table;
                }
                StepKind::Merge { from, span } => {
                    for f in from {
                        let src = self.source(f, span.clone(), &format!("{skey}.from"))?;
                        parents.push(src);
                    }
                    let id = self.add(ctx, name, NodeOp::Merge, parents);
                    parents = vec![id];
                }
                StepKind::To { topic } => {
                    self.add(ctx, format!("{name}-{topic}"), NodeOp::Sink { topic }, parents);
                    return Ok(None);
                }
                StepKind::Process { plugin, stores: names, children } => {
                    let mut stores = Vec::new();
                    if let Some(names) = names {
                        for n in names.get_ref() {
                            let def = self.loaded.manifest.stores.iter().find(|(k, _)| k.get_ref() == n);
                            let kind =
                                def.and_then(|(_, d)| d.kind.as_ref()).map_or(StoreKind::KeyValue, |k| *k.get_ref());
                            stores.push(self.store(n.clone(), names.span(), kind, &skey)?);
                        }
                    }
                    let id = self.add(ctx, name, NodeOp::Process { plugin, stores, children }, parents);
                    parents = vec![id];
                }
                StepKind::Branch { branches } => {
                    let id =
                        self.add(ctx, name.clone(), NodeOp::Branch { predicates: vec![], targets: vec![] }, parents);
                    let mut predicates = Vec::new();
                    let mut targets = Vec::new();
                    for (j, branch) in branches.into_iter().enumerate() {
                        let br = branch.def;
                        let first = self.nodes.len();
                        let sub = StreamState { key_changed: state.key_changed, ..Default::default() };
                        let ends = self.chain(ctx, &branch.key, &format!("{name}-{j}"), vec![id], &br.steps, sub)?;
                        match (&br.to, ends) {
                            (Some(to), Some(ends)) => {
                                let topic = self.topic_of(to.get_ref());
                                self.add(ctx, format!("{name}-{j}-sink-{topic}"), NodeOp::Sink { topic }, ends);
                            }
                            (None, Some(_)) if br.steps.is_empty() => {
                                return Err(self.err(
                                    branch.span,
                                    &branch.key,
                                    "the branch has no `steps` and no `to`",
                                ));
                            }
                            _ => {}
                        }
                        predicates.push(branch.predicate);
                        targets.push(first);
                    }
                    self.nodes[id].op = NodeOp::Branch { predicates, targets };
                    return Ok(None);
                }
            }
        }
        Ok(Some(parents))
    }

    /// A join node after `parents` (the left side), and the table the chain then carries
    /// (`None`: a stream).
    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        ctx: &Ctx<'_>,
        name: &str,
        skey: &str,
        span: std::ops::Range<usize>,
        kind: JoinKind,
        joiner: super::PluginRef,
        with: JoinTarget<'_>,
        mut parents: Vec<NodeId>,
        state: &mut StreamState,
    ) -> Result<(NodeId, Option<TableState>), ManifestError> {
        let op = kind.name();
        if let JoinTarget::Table(t, selector, _, grace) = &with {
            if let Some((_, g)) = grace.as_ref().filter(|_| {
                state.table.is_some()
                    || self.loaded.manifest.global_tables.iter().any(|(k, _)| k.get_ref() == t.get_ref())
            }) {
                return Err(self.err(
                    g.clone(),
                    format!("{skey}.grace"),
                    "`grace` is for a stream joined with a stream, or with a versioned table (`history_retention`)",
                ));
            }
            let global = self.loaded.manifest.global_tables.iter().find(|(k, _)| k.get_ref() == t.get_ref());
            match (global, selector, state.table) {
                (Some((k, def)), _, None) => {
                    if kind == JoinKind::Outer {
                        return Err(self.err(
                            span,
                            format!("{skey}.op"),
                            "a stream joins a global table with `join` or `left_join`",
                        ));
                    }
                    // Every instance has the whole table: no repartition, no co-partitioning.
                    let store = match &def.store {
                        Some(s) => s.get_ref().clone(),
                        None => format!("{}-store", t.get_ref()),
                    };
                    if !self.globals.contains_key(t.get_ref()) {
                        let store_span = def.store.as_ref().map_or_else(|| k.span(), Spanned::span);
                        self.store(
                            store.clone(),
                            store_span,
                            StoreKind::KeyValue,
                            &format!("global_tables.{}", t.get_ref()),
                        )?;
                        let topic = def.topic_or(t.get_ref()).to_owned();
                        if let Some(spec) = self.stores.get_mut(&store) {
                            spec.source_topic = Some(topic.clone());
                        }
                        self.globals.insert(t.get_ref().clone(), super::GlobalTable { topic, store: store.clone() });
                    }
                    let with = JoinWith::Global { store, key_selector: selector.clone() };
                    let id = self.add(ctx, name.to_owned(), NodeOp::Join { kind, joiner, with }, parents);
                    return Ok((id, None));
                }
                (Some(_), _, Some(_)) => {
                    return Err(self.err(
                        t.span(),
                        format!("{skey}.table"),
                        "a global table joins a stream: put `to_stream` before it",
                    ));
                }
                (None, Some(_), _) => {
                    return Err(self.err(
                        t.span(),
                        format!("{skey}.key_selector"),
                        "`key_selector` picks the lookup key of a global table join; a table is joined by the record's key",
                    ));
                }
                (None, None, _) => {}
            }
        }
        if state.key_changed {
            // A key changed before the join: the left side is repartitioned by its new key, so
            // its records meet the other side's in the same partition.
            parents = vec![self.repartition(ctx, name, parents)];
            state.key_changed = false;
        }
        let not_a_table = |b: &Self, t: &Spanned<String>, field: &str| {
            let mut e = b.err(
                t.span(),
                format!("{skey}.{field}"),
                format!("no table named `{}` in [tables] or [global_tables]", t.get_ref()),
            );
            let m = &b.loaded.manifest;
            let names = m.tables.keys().chain(m.global_tables.keys()).map(|k| k.get_ref().as_str());
            if let Some(c) = closest(t.get_ref(), names) {
                e = e.with_help(format!("did you mean `{c}`?"));
            }
            e
        };
        match (with, state.table) {
            (JoinTarget::Table(t, _, None, grace), None) => {
                if kind == JoinKind::Outer {
                    return Err(self.err(
                        span,
                        format!("{skey}.op"),
                        "a stream joins a table with `join` or `left_join` (Kafka Streams has no stream-table outer join)",
                    ));
                }
                if !self.is_table(t.get_ref()) {
                    return Err(not_a_table(self, t, "table"));
                }
                let table = self.table(ctx, t.get_ref())?;
                let table_store = self.materialized_store(table);
                let versions = match &self.nodes[table].op {
                    NodeOp::ToTable { versions, .. } => versions.clone(),
                    _ => None,
                };
                let grace = match (grace, &versions) {
                    (Some((_, g)), None) => {
                        return Err(self
                            .err(g, format!("{skey}.grace"), format!("`{}` is not versioned: a stream-table join waits for late table updates only with the table's history", t.get_ref()))
                            .with_help(format!("give `[tables.{}]` a `history_retention` (e.g. \"1h\"), at least the grace period", t.get_ref())));
                    }
                    (Some((ms, _)), Some(_)) => {
                        let buffer = self.store(format!("{name}-buffer"), span.clone(), StoreKind::KeyValue, skey)?;
                        Some((ms, buffer))
                    }
                    (None, _) => None,
                };
                parents.push(table);
                let with = JoinWith::Table { table_store, versions, grace };
                let id = self.add(ctx, name.to_owned(), NodeOp::Join { kind, joiner, with }, parents);
                self.nodes[id].flow = Flow::Stream;
                Ok((id, None))
            }
            (JoinTarget::Table(t, _, Some(extractor), _), Some(left)) => {
                if !self.is_table(t.get_ref()) {
                    return Err(not_a_table(self, t, "table"));
                }
                if kind == JoinKind::Outer {
                    return Err(self.err(
                        span,
                        format!("{skey}.op"),
                        "a foreign-key join is a `join` or a `left_join` (Kafka Streams has no outer one)",
                    ));
                }
                self.foreign_key_join(ctx, name, skey, span, kind, joiner, extractor, t, left, parents)
            }
            (JoinTarget::Table(_, _, Some(_), _), None) => Err(self.err(
                span,
                format!("{skey}.foreign_key"),
                "a foreign-key join joins two tables: the pipeline carries a stream here (`to_table` makes it one)",
            )),
            (JoinTarget::Table(t, _, None, _), Some(left)) => {
                if !self.is_table(t.get_ref()) {
                    return Err(not_a_table(self, t, "table"));
                }
                let left = self.materialize(ctx, name, skey, span.clone(), left, parents)?;
                let right = self.table(ctx, t.get_ref())?;
                let with = JoinWith::Tables { left_store: self.materialized_store(left), right_store: self.materialized_store(right) };
                self.flow = Flow::Table { old_values: true };
                let id = self.add(ctx, name.to_owned(), NodeOp::Join { kind, joiner, with }, vec![left, right]);
                Ok((id, Some(TableState { old_values: true, materialized: None })))
            }
            (JoinTarget::Stream(st, window), None) => {
                if self.is_table(st.get_ref()) {
                    return Err(self.err(
                        st.span(),
                        format!("{skey}.stream"),
                        format!("`{}` is a table: join it with `table = \"{}\"`", st.get_ref(), st.get_ref()),
                    ));
                }
                let right = self.source(st.get_ref(), st.span(), &format!("{skey}.stream"))?;
                let store = |b: &mut Self, side: &str, kind: StoreKind| {
                    b.store(format!("{name}-{side}-store"), span.clone(), kind, skey)
                };
                let left_store = store(self, "left", StoreKind::Window)?;
                let right_store = store(self, "right", StoreKind::Window)?;
                let unmatched = match kind {
                    JoinKind::Inner => None,
                    JoinKind::Left | JoinKind::Outer => Some(store(self, "unmatched", StoreKind::KeyValue)?),
                };
                parents.push(right);
                let with = JoinWith::Stream { window, left_store, right_store, unmatched };
                let id = self.add(ctx, name.to_owned(), NodeOp::Join { kind, joiner, with }, parents);
                Ok((id, None))
            }
            (JoinTarget::Stream(st, _), Some(_)) => Err(self.err(
                st.span(),
                format!("{skey}.stream"),
                format!("`{op}` with a `stream` joins two streams, and here the pipeline carries a table: put `to_stream` before it, or join a `table`"),
            )),
        }
    }

    /// A foreign-key table-table join (Kafka Streams' KIP-213): the left table's rows
    /// subscribe, by the foreign key the extractor picks, to the right table's row of that key,
    /// through the internal topic `<id>-<step>-subscription` (keyed by the foreign key, so the
    /// subscriptions meet the right table's partition); the right side answers each
    /// subscription, and each change of a row with subscribers, through `<id>-<step>-response`
    /// (keyed by the left key), where the left side joins the answer if the row it was for is
    /// still current. The result is a table (materialized, for its old values).
    #[allow(clippy::too_many_arguments)]
    fn foreign_key_join(
        &mut self,
        ctx: &Ctx<'_>,
        name: &str,
        skey: &str,
        span: std::ops::Range<usize>,
        kind: JoinKind,
        joiner: super::PluginRef,
        extractor: super::PluginRef,
        table: &Spanned<String>,
        left: TableState,
        parents: Vec<NodeId>,
    ) -> Result<(NodeId, Option<TableState>), ManifestError> {
        let left = self.materialize(ctx, name, skey, span.clone(), left, parents)?;
        let right = self.table(ctx, table.get_ref())?;
        let (left_store, right_store) = (self.materialized_store(left), self.materialized_store(right));
        self.flow = Flow::Table { old_values: true };
        let subscribe = self.add(
            ctx,
            format!("{name}-subscribe"),
            NodeOp::ForeignKey { kind, stage: FkStage::Subscribe { extractor } },
            vec![left],
        );
        self.flow = Flow::Stream;
        let subscriptions_in = self.through(ctx, name, "subscription", vec![subscribe]);
        let subscriptions =
            self.store(format!("{name}-subscriptions-store"), span.clone(), StoreKind::KeyValue, skey)?;
        let respond = self.add(
            ctx,
            format!("{name}-respond"),
            NodeOp::ForeignKey { kind, stage: FkStage::Respond { subscriptions, right_store } },
            vec![subscriptions_in, right],
        );
        let responses_in = self.through(ctx, name, "response", vec![respond]);
        let result = self.add(
            ctx,
            format!("{name}-result"),
            NodeOp::ForeignKey { kind, stage: FkStage::Result { joiner, left_store } },
            vec![responses_in, left],
        );
        let store = self.store(format!("{name}-store"), span, StoreKind::KeyValue, skey)?;
        let id = self.add(ctx, name.to_owned(), NodeOp::ToTable { store, versions: None }, vec![result]);
        Ok((id, Some(TableState { old_values: true, materialized: Some(id) })))
    }

    /// The node whose store holds the table a join's left side carries: its own
    /// [`NodeOp::ToTable`], or (a table derived by a step) a new one after `parents`.
    fn materialize(
        &mut self,
        ctx: &Ctx<'_>,
        name: &str,
        skey: &str,
        span: std::ops::Range<usize>,
        table: TableState,
        parents: Vec<NodeId>,
    ) -> Result<NodeId, ManifestError> {
        Ok(match table.materialized {
            Some(id) => id,
            None => {
                let store = self.store(format!("{name}-left-store"), span, StoreKind::KeyValue, skey)?;
                self.add(ctx, format!("{name}-left"), NodeOp::ToTable { store, versions: None }, parents)
            }
        })
    }

    /// The store of a [`NodeOp::ToTable`] node.
    fn materialized_store(&self, id: NodeId) -> String {
        match &self.nodes[id].op {
            NodeOp::ToTable { store, .. } => store.clone(),
            other => unreachable!("node {id} materializes no table: {other:?}"),
        }
    }

    /// A repartition through `<application-id>-<step>-repartition`: a sink stamping positions,
    /// and the source that reads it back (a new sub-topology).
    fn repartition(&mut self, ctx: &Ctx<'_>, step: &str, parents: Vec<NodeId>) -> NodeId {
        self.through(ctx, step, "repartition", parents)
    }

    /// Records written to the internal topic `<application-id>-<step>-<what>`, stamped with
    /// their positions, and read back from it (a new sub-topology): the source's id.
    fn through(&mut self, ctx: &Ctx<'_>, step: &str, what: &str, parents: Vec<NodeId>) -> NodeId {
        let topic = format!("{}-{step}-{what}", self.loaded.manifest.application.id.get_ref());
        self.add(ctx, format!("{step}-{what}-sink"), NodeOp::Repartition { topic: topic.clone() }, parents);
        let id = self.nodes.len();
        self.nodes.push(Node {
            id,
            name: format!("source-{topic}"),
            op: NodeOp::Source { topic: topic.clone() },
            children: Vec::new(),
            parents: Vec::new(),
            pipeline: ctx.pipeline.to_owned(),
            policy: ctx.policy.clone(),
            flow: Flow::Stream,
        });
        self.sources.insert(topic, id);
        id
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
            source_topic: None,
            history_ms: None,
            latest_by_time: false,
            name: name.clone(),
            kind,
            persistent: def.is_none_or(|d| d.persistent),
            changelog: def.is_none_or(|d| d.changelog),
            ttl_ms,
            cache_bytes: def.and_then(|d| d.cache_bytes).unwrap_or(DEFAULT_CACHE_BYTES),
            caching: def.is_some_and(|d| d.caching),
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
