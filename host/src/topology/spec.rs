//! What the topology builder knows of an operator kind: its name in the manifest, the step
//! fields it takes, the plugin kind it calls and the shape it gives the graph. Each operator
//! file in `operators/` declares its [`StepSpec`] beside the code that runs it and registers
//! it in one table there; [`build`](super::build) takes that table, so the builder has no list
//! of ops of its own.

use super::PluginKind;

/// One op of the manifest.
#[derive(Debug)]
pub struct StepSpec {
    /// The op's name in the manifest, in snake_case (`mapValues` and `map-values` also name
    /// `map_values`). Nodes name their op by it.
    pub name: &'static str,
    /// The step fields it takes besides `op` (and `plugin` and `function`, which
    /// [`StepSpec::plugin`] decides). Any other field is an error that names it.
    pub fields: &'static [Field],
    /// The plugin the step calls.
    pub plugin: PluginUse,
    /// How the step shapes the graph.
    pub form: Form,
    /// Words the topology's description adds after the plugin (`negated`).
    pub note: Option<&'static str>,
    /// Whether the op also takes a table's changes (Kafka Streams' `KTable` has it): the
    /// others need `to_stream` first.
    pub tables: bool,
}

impl StepSpec {
    /// Whether a manifest may name this op (sources, sinks and repartitions are made by the
    /// builder itself).
    pub fn in_manifest(&self) -> bool {
        !matches!(self.form, Form::Internal)
    }
}

/// Whether a step calls a plugin, and of which kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginUse {
    None,
    /// The step works without one; `otherwise` says what it does then (`peek`: `log`).
    Optional {
        kind: PluginKind,
        otherwise: &'static str,
    },
    Required(PluginKind),
}

impl PluginUse {
    pub fn kind(self) -> Option<PluginKind> {
        match self {
            Self::None => None,
            Self::Optional { kind: k, .. } | Self::Required(k) => Some(k),
        }
    }
}

/// A step field besides `op`, `plugin` and `function`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    From,
    Topic,
    Branches,
    Store,
    Window,
    Until,
    TimeLimit,
    MaxRecords,
    WhenFull,
    LateTopic,
    Stores,
    Children,
    Table,
    KeySelector,
    Subtractor,
    ForeignKey,
    Stream,
    TimeDifference,
    Before,
    After,
    Grace,
}

impl Field {
    /// Every field, in the order a step's fields are checked.
    pub const ALL: [Field; 21] = [
        Self::From,
        Self::Topic,
        Self::Branches,
        Self::Store,
        Self::LateTopic,
        Self::Window,
        Self::Until,
        Self::TimeLimit,
        Self::MaxRecords,
        Self::WhenFull,
        Self::Stores,
        Self::Children,
        Self::Table,
        Self::KeySelector,
        Self::Subtractor,
        Self::ForeignKey,
        Self::Stream,
        Self::TimeDifference,
        Self::Before,
        Self::After,
        Self::Grace,
    ];

    /// The field's name in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Self::From => "from",
            Self::Topic => "topic",
            Self::Branches => "branches",
            Self::Store => "store",
            Self::Window => "window",
            Self::Until => "until",
            Self::TimeLimit => "time_limit",
            Self::MaxRecords => "max_records",
            Self::WhenFull => "when_full",
            Self::LateTopic => "late_topic",
            Self::Stores => "stores",
            Self::Children => "children",
            Self::Table => "table",
            Self::KeySelector => "key_selector",
            Self::Subtractor => "subtractor",
            Self::ForeignKey => "foreign_key",
            Self::Stream => "stream",
            Self::TimeDifference => "time_difference",
            Self::Before => "before",
            Self::After => "after",
            Self::Grace => "grace",
        }
    }
}

/// The shape a step gives the graph: what the builder does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// One node that runs the operator on the stream's batches. `changes_key`: grouping by
    /// key afterwards repartitions. `terminal`: nothing follows (the stream ends in it).
    Node { changes_key: bool, terminal: bool },
    /// Streams merged into this one (`from`).
    Merge,
    /// The stream written to a topic (`topic`); the end of the chain.
    To,
    /// Ordered branches, each a predicate and a chain of its own.
    Branch,
    /// Group by the current key (repartitioning first if it changed).
    GroupByKey,
    /// Group by the key a key-selector plugin picks (always repartitions).
    GroupBy,
    /// A window for the grouped stream's aggregation (`window`).
    WindowedBy,
    /// An aggregation of the grouped (and maybe windowed) stream into a store.
    Fold(FoldKind),
    /// Hold an aggregation's updates: each window's until it closes, or each key's for a time
    /// (`until`).
    Suppress,
    /// An aggregation's updates as a stream (the updates already flow on).
    ToStream,
    /// A custom processor with stores and named children.
    Process,
    /// The stream as a table (each key's latest value, in a store).
    ToTable,
    /// A join with a table (`table`) or a stream (`stream`, within `time_difference`).
    Join(super::JoinKind),
    /// Made by the builder, never named in a manifest: sources, sinks, repartitions.
    Internal,
}

/// How an aggregation folds values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoldKind {
    Count,
    Reduce,
    Aggregate,
}
