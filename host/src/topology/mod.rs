//! The manifest turned into a graph of named nodes, checked for dangling names, and split into
//! sub-topologies (the nodes reachable from a set of source topics), as in Kafka Streams.

mod build;
mod describe;
mod spec;
mod step;
mod svg;
mod window;

use std::collections::BTreeMap;

pub use build::build;
pub use describe::{describe, describe_dot, describe_mermaid};
pub use spec::{Field, FoldKind, Form, PluginUse, StepSpec};
pub use svg::{describe_html, describe_svg};
pub use window::WindowSpec;

use crate::manifest::{Format, OnError, RetryDef};
use crate::state::StoreSpec;

pub type NodeId = usize;

pub use crate::wasm::PluginKind;

/// A step's use of a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRef {
    pub plugin: String,
    /// The `function` argument; "" when the manifest names none.
    pub function: String,
    pub kind: PluginKind,
}

/// What a node does. Nodes that run one registered operator over the stream are
/// [`NodeOp::Operator`]; the rest give the graph its shape, and the builder makes them itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeOp {
    Source {
        topic: String,
    },
    /// A registered operator (`filter`, `map_values`, `peek`, …): `op` is its [`StepSpec`]'s
    /// name, which finds the code that runs it.
    Operator {
        op: &'static str,
        plugin: Option<PluginRef>,
        /// What the description adds after the plugin ([`StepSpec::note`]).
        note: Option<&'static str>,
    },
    /// Each record goes to the target of the first predicate that accepts it; `None` is the
    /// default branch.
    Branch {
        predicates: Vec<Option<PluginRef>>,
        targets: Vec<NodeId>,
    },
    /// Records from several parents continue as one stream.
    Merge,
    /// `count`, `reduce` or `aggregate` of grouped records, maybe over windows.
    Aggregate {
        fold: FoldOp,
        window: Option<WindowSpec>,
        /// Emit each window once, when it closes (`suppress`), instead of every update.
        emit_final: bool,
        store: String,
        late_topic: Option<String>,
        /// Aggregating a grouped table's changes (Kafka Streams' `KGroupedTable`): each
        /// change's old value is subtracted from its old group, its new value added to its new.
        table: Option<TableFold>,
    },
    /// `suppress` with `until = "time_limit"`: each key's updates held for `limit_ms` of
    /// stream time from the first, in a buffer kept in `store`, then the latest emitted.
    Suppress {
        limit_ms: i64,
        max_records: Option<usize>,
        /// A full buffer emits its oldest keys early (else it fails the record).
        emit_early: bool,
        store: String,
    },
    /// A stream's records (or a table's changes) as a table (Kafka Streams' `KTableSource`,
    /// `toTable`): each key's latest value kept in `store`, and each update passed on with
    /// the value it replaces ([`crate::record::Record::old`]). Null keys are dropped.
    ToTable {
        store: String,
        /// A versioned table's history (KIP-889): each key's values with their timestamps,
        /// kept for the store's `history_ms` of stream time.
        versions: Option<String>,
    },
    /// A join of the node's first parent (the left side) with its second (the right side).
    Join {
        kind: JoinKind,
        joiner: PluginRef,
        with: JoinWith,
    },
    /// A stage of a foreign-key table-table join (see [`FkStage`]).
    ForeignKey {
        kind: JoinKind,
        stage: FkStage,
    },
    /// A custom processor: its stores, and its named children (each a topic).
    Process {
        plugin: PluginRef,
        stores: Vec<String>,
        children: BTreeMap<String, String>,
    },
    /// Writes to an internal repartition topic, stamping each record with its input position
    /// so the reading store can skip duplicates.
    Repartition {
        topic: String,
    },
    Sink {
        topic: String,
    },
}

impl NodeOp {
    /// The name of the [`StepSpec`] whose code runs the node.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Source { .. } => SOURCE,
            Self::Operator { op, .. } => op,
            Self::Branch { .. } => "branch",
            Self::Merge => "merge",
            Self::Aggregate { fold, .. } => fold.name(),
            Self::Process { .. } => "process",
            Self::ToTable { .. } => "to_table",
            Self::ForeignKey { .. } => FOREIGN_KEY,
            Self::Join { kind, .. } => kind.name(),
            Self::Suppress { .. } => "suppress",
            Self::Repartition { .. } => REPARTITION,
            Self::Sink { .. } => SINK,
        }
    }

    /// The state stores the node's operator opens (a global table's store is the process's,
    /// not the node's).
    pub fn stores(&self) -> Vec<&str> {
        match self {
            Self::Aggregate { store, .. } | Self::Suppress { store, .. } => vec![store],
            Self::ToTable { store, versions } => std::iter::once(store).chain(versions).map(String::as_str).collect(),
            Self::Process { stores, .. } => stores.iter().map(String::as_str).collect(),
            Self::Join { with, .. } => match with {
                JoinWith::Table { grace, .. } => grace.iter().map(|(_, s)| s.as_str()).collect(),
                JoinWith::Global { .. } | JoinWith::Tables { .. } => vec![],
                JoinWith::Stream { left_store, right_store, unmatched, .. } => {
                    let mut v = vec![left_store.as_str(), right_store.as_str()];
                    v.extend(unmatched.as_deref());
                    v
                }
            },
            Self::ForeignKey { stage: FkStage::Respond { subscriptions, .. }, .. } => vec![subscriptions],
            _ => vec![],
        }
    }

    pub fn plugins(&self) -> Vec<&PluginRef> {
        match self {
            Self::Operator { plugin, .. } => plugin.iter().collect(),
            Self::Process { plugin, .. } => vec![plugin],
            Self::Join { joiner, with: JoinWith::Global { key_selector: Some(k), .. }, .. } => vec![joiner, k],
            Self::Join { joiner, .. } => vec![joiner],
            Self::ForeignKey {
                stage: FkStage::Subscribe { extractor: p } | FkStage::Result { joiner: p, .. }, ..
            } => {
                vec![p]
            }
            Self::ForeignKey { stage: FkStage::Respond { .. }, .. } => vec![],
            Self::Aggregate { fold: FoldOp::Reduce(p) | FoldOp::Aggregate(p), table, .. } => {
                let mut v = vec![p];
                v.extend(table.as_ref().and_then(|t| t.subtractor.as_ref()));
                v
            }
            Self::Aggregate { fold: FoldOp::Count, .. } | Self::Repartition { .. } | Self::Suppress { .. } => vec![],
            Self::Branch { predicates, .. } => predicates.iter().flatten().collect(),
            Self::Source { .. } | Self::Merge | Self::Sink { .. } | Self::ToTable { .. } => vec![],
        }
    }
}

/// The spec names of the nodes the builder makes itself ([`Form::Internal`]).
pub const SOURCE: &str = "source";
pub const SINK: &str = "sink";
pub const REPARTITION: &str = "repartition";
/// The stages of a foreign-key join.
pub const FOREIGN_KEY: &str = "foreign_key_join";

/// A foreign-key join's three stages (Kafka Streams' KIP-213 processors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FkStage {
    /// The left table's changes: each row's foreign key (`extractor`), sent as a subscription
    /// to the right side (and the old key's unsubscription when it changed).
    Subscribe { extractor: PluginRef },
    /// The right side: keeps the subscriptions in `subscriptions` and answers each, and each
    /// change of a right row (`right_store`) to its subscribers.
    Respond { subscriptions: String, right_store: String },
    /// The left side again: joins an answer with the left row (`left_store`) it was for, if
    /// that row is still the current one.
    Result { joiner: PluginRef, left_store: String },
}

/// Which unmatched records a join still emits (with the missing side absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Only matches.
    Inner,
    /// Every left record (or table row), matched or not.
    Left,
    /// Every record of either side, matched or not.
    Outer,
}

impl JoinKind {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Inner => "join",
            Self::Left => "left_join",
            Self::Outer => "outer_join",
        }
    }
}

/// What a join joins, and the stores it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinWith {
    /// A stream record looks up the table's current value; the table's updates (the second
    /// parent, a [`NodeOp::ToTable`] that owns `table_store`) emit nothing.
    Table {
        table_store: String,
        /// The table's history, when it is versioned: lookups are as of the record's time.
        versions: Option<String>,
        /// With a versioned table, how long records wait (in stream time) for table updates
        /// that arrive late, and the store they wait in (KIP-923).
        grace: Option<(i64, String)>,
    },
    /// A stream record looks up a global table's row for the key `key_selector` picks (the
    /// record's key without one); the store is the process's, kept by the global table's
    /// own consumer.
    Global { store: String, key_selector: Option<PluginRef> },
    /// Two tables, each materialized by a [`NodeOp::ToTable`] parent: an update on either side
    /// looks up the other's current value.
    Tables { left_store: String, right_store: String },
    /// Two streams, each buffered in a window store for the join window; `unmatched` keeps
    /// left (and outer) records without a partner until their window closes.
    Stream { window: JoinWindow, left_store: String, right_store: String, unmatched: Option<String> },
}

/// A stream-stream join's window: a left record at `t` joins right records from
/// `t - before_ms` to `t + after_ms`; records later than `grace_ms` after a window closes
/// are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinWindow {
    pub before_ms: i64,
    pub after_ms: i64,
    pub grace_ms: i64,
}

/// What a node's records are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Flow {
    /// Independent records.
    #[default]
    Stream,
    /// A table's changes: each record is a key's new value (a tombstone deletes it).
    /// `old_values`: each also carries the value it replaces ([`crate::record::Record::old`]).
    Table { old_values: bool },
}

/// What `suppress` holds back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suppression {
    /// Each window's updates until it closes (Kafka Streams' `untilWindowCloses`).
    WindowCloses,
    /// Each key's updates for `limit_ms` of stream time from the first, then the latest
    /// (Kafka Streams' `untilTimeLimit`), within `max_records` keys.
    TimeLimit { limit_ms: i64, max_records: Option<usize>, emit_early: bool },
}

/// A grouped table's aggregation: the plugin that takes a value back out of an aggregate (a
/// reducer for `reduce`, an aggregator for `aggregate`; `count` needs none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFold {
    pub subtractor: Option<PluginRef>,
}

/// How an aggregation folds values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FoldOp {
    Count,
    Reduce(PluginRef),
    Aggregate(PluginRef),
}

impl FoldOp {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Reduce(_) => "reduce",
            Self::Aggregate(_) => "aggregate",
        }
    }
}

/// What a pipeline does with records its plugins fail on.
#[derive(Debug, Clone, Default)]
pub struct ErrorPolicy {
    pub on_error: OnError,
    /// With `on_error = Retry`: how often, and what then.
    pub retry: RetryDef,
    pub dead_letter_topic: String,
}

impl ErrorPolicy {
    /// The policy for a record that failed for good: after its retries, or at once when it
    /// cannot be retried (input that does not deserialize).
    pub fn final_policy(&self) -> OnError {
        match self.on_error {
            OnError::Retry => self.retry.then,
            other => other,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub id: NodeId,
    /// Stable across restarts and swaps: `<pipeline>-<step>-<op>`.
    pub name: String,
    pub op: NodeOp,
    pub children: Vec<NodeId>,
    pub parents: Vec<NodeId>,
    pub pipeline: String,
    pub policy: ErrorPolicy,
    /// Whether the node's input is a stream or a table's changes.
    pub flow: Flow,
}

/// A topic's formats, from `[streams.*]` (string/string when undeclared).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopicFormats {
    pub key: Format,
    pub value: Format,
    /// Declared `string` (not left to the default): records whose key, or value, is not
    /// UTF-8 fail to deserialize.
    pub text_key: bool,
    pub text_value: bool,
    /// Local mode: the partitions its file is read as (`[streams.NAME] partitions`).
    pub partitions: Option<u32>,
    /// Keys and values the host converts to and from JSON (`avro`, `protobuf`,
    /// `json_schema`, `csv`).
    pub key_codec: Option<Converted>,
    pub value_codec: Option<Converted>,
}

/// The formats of an undeclared topic.
static UNDECLARED: TopicFormats = TopicFormats {
    key: Format::String,
    value: Format::String,
    text_key: false,
    text_value: false,
    partitions: None,
    key_codec: None,
    value_codec: None,
};

/// A converted format, checked: its schema file's path resolved, `registry` and (when framed)
/// `subject` filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    pub spec: crate::manifest::FormatSpec,
    /// Where the manifest declares it (`file:line:col: \`streams.NAME.value\``), for errors.
    pub at: String,
}

/// Nodes connected through their edges, fed by `source_topics`. One task runs a sub-topology
/// for one partition.
#[derive(Debug, Clone)]
pub struct SubTopology {
    pub id: usize,
    pub source_topics: Vec<String>,
    pub nodes: Vec<NodeId>,
}

#[derive(Debug, Clone)]
pub struct Topology {
    pub application_id: String,
    pub nodes: Vec<Node>,
    /// The source node of each input topic.
    pub sources: BTreeMap<String, NodeId>,
    pub subtopologies: Vec<SubTopology>,
    pub formats: BTreeMap<String, TopicFormats>,
    /// Every state store, by name.
    pub stores: BTreeMap<String, StoreSpec>,
    /// The declared value formats of stores (`[stores.NAME] value`), by store name.
    pub store_formats: BTreeMap<String, Converted>,
    /// The global tables joins read, by name.
    pub globals: BTreeMap<String, GlobalTable>,
    /// A record read whose key, value and headers are larger fails to deserialize
    /// (`[application] max_record_bytes`).
    pub max_record_bytes: usize,
    /// `[application.schema_registry]`: the registry of `avro`, `protobuf` and `json_schema`
    /// topics and stores.
    pub schema_registry: Option<RegistrySpec>,
}

/// `[application.schema_registry]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySpec {
    pub url: String,
    /// How long a request it cannot answer now is tried again (`wait`).
    pub wait_ms: i64,
}

/// The registry's `wait` when the manifest sets none.
pub const DEFAULT_REGISTRY_WAIT_MS: i64 = 30_000;

/// `[application] max_record_bytes` when left out: 1 MiB, Kafka's `message.max.bytes`.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;

/// A global table: its topic, read whole by every instance, and its store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalTable {
    pub topic: String,
    pub store: String,
}

impl Topology {
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    /// Every topic some sink writes.
    pub fn sink_topics(&self) -> Vec<&str> {
        let mut topics: Vec<&str> = self
            .nodes
            .iter()
            .filter_map(|n| match &n.op {
                NodeOp::Sink { topic } | NodeOp::Repartition { topic } => Some(topic.as_str()),
                _ => None,
            })
            .collect();
        topics.sort_unstable();
        topics.dedup();
        topics
    }

    /// Repartition topics (internal: written and read by this application).
    pub fn repartition_topics(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .filter_map(|n| match &n.op {
                NodeOp::Repartition { topic } => Some(topic.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The changelog topic of a store.
    pub fn changelog_topic(&self, store: &str) -> String {
        format!("{}-{store}-changelog", self.application_id)
    }

    /// Formats of `topic`.
    pub fn formats(&self, topic: &str) -> &TopicFormats {
        self.formats.get(topic).unwrap_or(&UNDECLARED)
    }

    /// The sub-topology whose tasks own the store named `store` (each task its partition's
    /// copy), if a node of one does. Global tables' stores belong to no sub-topology.
    pub fn store_subtopology(&self, store: &str) -> Option<usize> {
        self.subtopologies
            .iter()
            .find(|s| s.nodes.iter().any(|&id| self.node(id).op.stores().contains(&store)))
            .map(|s| s.id)
    }

    /// Every plugin use, with the node it is in.
    pub fn plugin_uses(&self) -> impl Iterator<Item = (&Node, &PluginRef)> {
        self.nodes.iter().flat_map(|n| n.op.plugins().into_iter().map(move |p| (n, p)))
    }
}
