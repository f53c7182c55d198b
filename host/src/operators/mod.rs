//! The operators: one file per kind, one [`Operator`] trait, and one table of them
//! ([`REGISTRY`]). Each file declares its [`OperatorSpec`]s: the op's name in the manifest,
//! the fields and plugin kind its steps take and the shape it gives the graph (for the
//! topology builder), and how a task builds the operator of one of its nodes. Operators know
//! nothing about Kafka: they see batches of records, and call plugins through [`PluginStep`],
//! which owns the instance, rebuilds it after a trap and retries once.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::record::Record;
use crate::state::{Store, StoreSpec};
use crate::topology::{Form, Node, NodeId, NodeOp, PluginRef, StepSpec};
pub use crate::wasm::PluginStep;
use crate::wasm::host::state::SharedStores;
use crate::wasm::{CallFailure, PluginError, PluginSlot};

/// Why a record failed at a step: the classes the host tells apart, or the code a plugin gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureCode {
    /// The plugin trapped (a panic, a deadline, out of memory) on the record's batch.
    Trap,
    /// The plugin refused the batch as a whole (a malformed answer).
    Refused,
    /// The record's key or value does not parse as its topic's format.
    Deserialization,
    /// The record's key or value does not convert to its output topic's format (an Avro,
    /// Protobuf, JSON Schema or CSV topic).
    Serialization,
    /// A processor forwarded to a child it does not have.
    UnknownChild,
    /// The step's state store failed to read the record's aggregate, or cannot keep the one its
    /// plugin returned.
    State,
    /// The record has no key, and the step needs one (an aggregation groups by it).
    NullKey,
    /// The plugin's own code for a per-record error.
    Plugin(String),
}

impl From<&CallFailure> for FailureCode {
    /// A failed call's code: a trap (an oversized result is one), or a refused batch.
    fn from(e: &CallFailure) -> Self {
        match e {
            CallFailure::Trap { .. } | CallFailure::Oversized { .. } => FailureCode::Trap,
            CallFailure::Refused { .. } => FailureCode::Refused,
        }
    }
}

impl FailureCode {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Trap => "trap",
            Self::Refused => "refused",
            Self::Deserialization => "deserialization",
            Self::Serialization => "serialization",
            Self::UnknownChild => "unknown-child",
            Self::State => "state",
            Self::NullKey => "null-key",
            Self::Plugin(code) => code,
        }
    }
}

impl std::fmt::Display for FailureCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for FailureCode {
    /// The host's own codes by name, anything else as the plugin's.
    fn from(code: String) -> Self {
        match code.as_str() {
            "trap" => Self::Trap,
            "refused" => Self::Refused,
            "deserialization" => Self::Deserialization,
            "serialization" => Self::Serialization,
            "unknown-child" => Self::UnknownChild,
            "state" => Self::State,
            "null-key" => Self::NullKey,
            _ => Self::Plugin(code),
        }
    }
}

/// A record a step could not handle, with why. The task applies the step's error policy.
#[derive(Debug, Clone)]
pub struct Failure {
    pub record: Record,
    pub code: FailureCode,
    pub message: String,
    /// `name@digest-prefix`, for dead-letter headers.
    pub plugin: String,
}

/// Where an operator sends what it produced.
#[derive(Default)]
pub struct Emitted {
    /// Records for every child.
    pub all: Vec<Record>,
    /// Records for one child each (branch).
    pub routed: Vec<(NodeId, Vec<Record>)>,
    pub failures: Vec<Failure>,
    /// Records for named topics outside the graph (late records).
    pub to_topics: Vec<(String, Vec<Record>)>,
    /// Records dropped because their windows had closed.
    pub late: u64,
}

/// One node's behaviour in one task.
pub trait Operator: Send {
    /// Processes one batch. Called once per batch that reaches the node, never per record.
    /// Every failure, a trap included, is per record: it goes into [`Emitted::failures`] with
    /// the record, so the task can apply the step's error policy to it.
    fn process(&mut self, input: Vec<Record>) -> Emitted;

    /// [`Operator::process`] for a batch from `parent`: a node with several parents that
    /// treats them differently (a join's two sides) tells them apart here.
    fn process_from(&mut self, parent: NodeId, input: Vec<Record>) -> Emitted {
        let _ = parent;
        self.process(input)
    }

    /// Calls `f` on each state store the operator owns, for the task to commit them.
    /// Stateless operators have none.
    fn with_stores(&mut self, f: &mut dyn FnMut(&mut Store)) {
        let _ = f;
    }

    /// The task is about to commit: emit what the operator held back (its record cache), so
    /// it is downstream before the input that caused it is committed.
    fn flush(&mut self) -> Emitted {
        Emitted::default()
    }

    /// How many records the operator holds back until [`Operator::flush`].
    fn held(&self) -> usize {
        0
    }

    /// Wall-clock time passed (`now_ms`, since the Unix epoch): timers may fire. Called
    /// after every batch and whenever the loop is idle.
    fn tick(&mut self, now_ms: i64) -> Emitted {
        let _ = now_ms;
        Emitted::default()
    }

    /// An interactive query of the store named `store`, if the operator owns it and answers
    /// queries: its entries (values as users wrote them), at most `limit`.
    fn query(
        &mut self,
        store: &str,
        query: &crate::state::StoreQuery,
        limit: usize,
    ) -> Option<crate::state::QueryResult> {
        let _ = (store, query, limit);
        None
    }

    /// Whether the task may run records of a batch that trapped again, in halves, to find the
    /// ones that trap. Not for operators that remember what they have seen.
    fn rerunnable(&self) -> bool {
        true
    }
}

/// Declares the operator files and the table of their specs, one line per file.
macro_rules! registry {
    ($($file:ident => [$($spec:ident),* $(,)?]),* $(,)?) => {
        $(mod $file;)*

        /// Every operator kind. Adding one is a file with its [`OperatorSpec`] and a line here.
        pub static REGISTRY: &[&OperatorSpec] = &[$($(&$file::$spec,)*)*];
    };
}

mod cache;
mod table_fold;

registry! {
    merge => [SOURCE, MERGE],
    sink => [SINK, TO, REPARTITION],
    filter => [FILTER, FILTER_NOT],
    transform => [MAP_VALUES, MAP, FLAT_MAP, FLAT_MAP_VALUES, SELECT_KEY],
    peek => [PEEK, FOR_EACH],
    timestamp => [WITH_TIMESTAMP],
    branch => [BRANCH],
    group => [GROUP_BY_KEY, GROUP_BY, WINDOWED_BY, TO_STREAM],
    suppress => [SUPPRESS],
    table => [TO_TABLE],
    join => [JOIN, LEFT_JOIN, OUTER_JOIN],
    foreign_key => [FOREIGN_KEY],
    aggregate => [COUNT, REDUCE, AGGREGATE],
    processor => [PROCESS],
    print => [PRINT],
}

/// An operator kind: what the topology builder needs to know of its steps, and how a task
/// builds the operator of one of its nodes.
pub struct OperatorSpec {
    pub step: StepSpec,
    /// Builds a node's operator. `None` for steps that make no node of their own
    /// (`group_by_key`, `windowed_by`, `to_stream`, and `to`, which makes a sink).
    pub construct: Option<Construct>,
}

/// Builds the operator of `node` for a task.
pub type Construct = fn(&Node, &mut TaskContext<'_>) -> Result<Box<dyn Operator>, ConstructError>;

/// The form of a step that runs on the stream and passes it on, keeping its key.
pub const NODE: Form = Form::Node { changes_key: false, terminal: false };

/// What the topology builder needs of every registered kind.
pub fn step_specs() -> Vec<&'static StepSpec> {
    REGISTRY.iter().map(|s| &s.step).collect()
}

/// How an operator turns a plugin call that failed into failed records.
pub trait StepFailures {
    /// The plugin's name and version, for dead-letter headers.
    fn label(&self) -> &str;

    /// Every record of the batch, failed with the same error (the batch could not run).
    fn fail_all(&self, records: Vec<Record>, e: &CallFailure) -> Vec<Failure> {
        let code = FailureCode::from(e);
        records
            .into_iter()
            .map(|record| Failure {
                record,
                code: code.clone(),
                message: e.to_string(),
                plugin: self.label().to_owned(),
            })
            .collect()
    }

    fn failure(&self, record: Record, code: String, message: String) -> Failure {
        Failure { record, code: code.into(), message, plugin: self.label().to_owned() }
    }
}

impl StepFailures for PluginStep {
    fn label(&self) -> &str {
        PluginStep::label(self)
    }
}

/// Finds the slot of the plugin a step names.
pub type PluginLookup<'a> = &'a dyn Fn(&str) -> Option<Arc<PluginSlot>>;

/// Why a node's operator could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConstructError {
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("no operator is registered for `{op}` (node {node})")]
    Unregistered { op: &'static str, node: String },
    #[error("the `{spec}` operator cannot run node {node}, a `{op}` node")]
    WrongNode { spec: &'static str, op: &'static str, node: String },
}

/// What a task gives the operators it builds.
pub struct TaskContext<'a> {
    pub lookup: PluginLookup<'a>,
    /// The task's input topics, by `Origin::topic`.
    pub topics: &'a [String],
    /// Every store of the topology, by name.
    pub stores: &'a BTreeMap<String, StoreSpec>,
    /// Opens (and restores) one of the task's stores.
    pub open_store: &'a mut dyn FnMut(&StoreSpec) -> Result<Store, crate::state::StateError>,
    /// The stores of the task's tables, by name, as their [`NodeOp::ToTable`] nodes opened
    /// them: the joins built after read them.
    pub tables: BTreeMap<String, SharedStore>,
}

/// A store one operator owns (and commits) and others of its task read.
pub type SharedStore = Arc<std::sync::Mutex<Store>>;

/// Locks a shared store. A holder that panicked leaves it poisoned, not broken (every write
/// is a whole entry in the pending map), so the store is used as it is rather than its
/// records dropped.
pub fn locked(store: &SharedStore) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl TaskContext<'_> {
    /// The plugin step of `r`.
    pub fn step(&self, r: &PluginRef) -> Result<PluginStep, PluginError> {
        self.step_with(r, None)
    }

    /// A step whose instances get `stores` (a processor's).
    pub(super) fn step_with(&self, r: &PluginRef, stores: Option<SharedStores>) -> Result<PluginStep, PluginError> {
        let slot = (self.lookup)(&r.plugin).ok_or_else(|| PluginError::Instantiate {
            plugin: r.plugin.clone(),
            reason: "the plugin was not loaded".to_owned(),
        })?;
        PluginStep::new(slot, r.kind, &r.function, stores)
    }

    /// The step of the plugin an operator node calls; the node must have one.
    pub fn node_step(&self, node: &Node) -> Result<PluginStep, PluginError> {
        self.node_step_opt(node)?.ok_or_else(|| PluginError::Instantiate {
            plugin: node.name.clone(),
            reason: format!("`{}` needs a plugin", node.op.name()),
        })
    }

    /// The step of the plugin an operator node calls, if it has one.
    pub fn node_step_opt(&self, node: &Node) -> Result<Option<PluginStep>, PluginError> {
        match &node.op {
            NodeOp::Operator { plugin, .. } => plugin.as_ref().map(|p| self.step(p)).transpose(),
            _ => Ok(None),
        }
    }

    /// Opens the store named `name`.
    pub fn open(&mut self, name: &str) -> Result<Store, crate::state::StateError> {
        let spec = self.stores.get(name).cloned().ok_or_else(|| crate::state::StateError::Backend {
            store: name.to_owned(),
            message: "the topology has no such store".to_owned(),
        })?;
        (self.open_store)(&spec)
    }
}

/// A stateless node's operator outside a task (benchmarks and tests).
pub fn construct_stateless(op: &NodeOp, lookup: PluginLookup<'_>) -> Result<Box<dyn Operator>, ConstructError> {
    let node = Node {
        id: 0,
        name: "standalone".to_owned(),
        op: op.clone(),
        children: Vec::new(),
        parents: Vec::new(),
        pipeline: String::new(),
        policy: crate::topology::ErrorPolicy::default(),
        flow: crate::topology::Flow::Stream,
    };
    let mut no_stores = |spec: &StoreSpec| {
        Err(crate::state::StateError::Backend { store: spec.name.clone(), message: "no stores here".to_owned() })
    };
    let stores = BTreeMap::new();
    let mut ctx =
        TaskContext { lookup, topics: &[], stores: &stores, open_store: &mut no_stores, tables: BTreeMap::new() };
    construct(&node, &mut ctx)
}

/// The one constructor: a node's operator, with its plugin instances and stores, by the
/// registered kind its op names.
pub fn construct(node: &Node, ctx: &mut TaskContext<'_>) -> Result<Box<dyn Operator>, ConstructError> {
    let op = node.op.name();
    let construct = REGISTRY
        .iter()
        .filter(|s| s.step.name == op)
        .find_map(|s| s.construct)
        .ok_or_else(|| ConstructError::Unregistered { op, node: node.name.clone() })?;
    construct(node, ctx)
}

/// The error of a constructor handed a node of another kind.
fn wrong_node(spec: &'static str, node: &Node) -> ConstructError {
    ConstructError::WrongNode { spec, op: node.op.name(), node: node.name.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::PluginUse;

    #[test]
    fn the_registry_names_each_kind_once_and_is_consistent() {
        let mut names: Vec<&str> = REGISTRY.iter().map(|s| s.step.name).collect();
        names.sort_unstable();
        let len = names.len();
        names.dedup();
        assert_eq!(names.len(), len, "two specs share a name");
        for s in REGISTRY {
            let needs_kind = matches!(
                s.step.form,
                Form::GroupBy
                    | Form::Process
                    | Form::Fold(crate::topology::FoldKind::Reduce | crate::topology::FoldKind::Aggregate)
            );
            assert!(!needs_kind || s.step.plugin.kind().is_some(), "`{}` needs a plugin kind", s.step.name);
            let makes_node = matches!(
                s.step.form,
                Form::Node { .. }
                    | Form::Merge
                    | Form::Branch
                    | Form::GroupBy
                    | Form::Fold(_)
                    | Form::Process
                    | Form::Suppress
                    | Form::ToTable
                    | Form::Join(_)
                    | Form::Internal
            );
            assert_eq!(makes_node, s.construct.is_some(), "`{}`: a node needs a constructor", s.step.name);
            if matches!(s.step.form, Form::Branch | Form::Merge | Form::To | Form::Internal) {
                assert_eq!(s.step.plugin, PluginUse::None, "`{}` takes no plugin of its own", s.step.name);
            }
        }
    }
}
