//! The operators: one file per kind, one [`Operator`] trait, one constructor ([`construct`]).
//! Operators know nothing about Kafka: they see batches of records, and call plugins through
//! [`PluginStep`], which owns the instance, rebuilds it after a trap and retries once.

mod aggregate;
mod branch;
mod filter;
mod peek;
mod processor;
mod sink;
mod timestamp;
mod transform;

use std::sync::Arc;

use crate::record::Record;
use crate::state::{Store, StoreSpec};
use crate::topology::{FoldOp, NodeId, NodeOp, PluginRef};
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
    /// A processor forwarded to a child it does not have.
    UnknownChild,
    /// The step's state store failed to read the record's aggregate.
    State,
    /// The plugin's own code for a per-record error.
    Plugin(String),
}

impl FailureCode {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Trap => "trap",
            Self::Refused => "refused",
            Self::Deserialization => "deserialization",
            Self::UnknownChild => "unknown-child",
            Self::State => "state",
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
            "unknown-child" => Self::UnknownChild,
            "state" => Self::State,
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

    /// Calls `f` on each state store the operator owns, for the task to commit them.
    /// Stateless operators have none.
    fn with_stores(&mut self, f: &mut dyn FnMut(&mut Store)) {
        let _ = f;
    }

    /// Wall-clock time passed (`now_ms`, since the Unix epoch): timers may fire. Called
    /// after every batch and whenever the loop is idle.
    fn tick(&mut self, now_ms: i64) -> Emitted {
        let _ = now_ms;
        Emitted::default()
    }

    /// Whether the task may run records of a batch that trapped again, in halves, to find the
    /// ones that trap. Not for operators that remember what they have seen.
    fn rerunnable(&self) -> bool {
        true
    }
}

/// The records pass on unchanged (sources and merges).
struct PassThrough;

impl Operator for PassThrough {
    fn process(&mut self, input: Vec<Record>) -> Emitted {
        Emitted { all: input, ..Default::default() }
    }
}

/// How an operator turns a plugin call that failed into failed records.
pub trait StepFailures {
    /// The plugin's name and version, for dead-letter headers.
    fn label(&self) -> &str;

    /// Every record of the batch, failed with the same error (the batch could not run).
    fn fail_all(&self, records: Vec<Record>, e: &CallFailure) -> Vec<Failure> {
        let code = match e {
            CallFailure::Trap { .. } => FailureCode::Trap,
            CallFailure::Refused { .. } => FailureCode::Refused,
        };
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

fn step(lookup: PluginLookup<'_>, r: &PluginRef) -> Result<PluginStep, PluginError> {
    step_with(lookup, r, None)
}

/// A step whose instances get `stores` (a processor's).
fn step_with(lookup: PluginLookup<'_>, r: &PluginRef, stores: Option<SharedStores>) -> Result<PluginStep, PluginError> {
    let slot = lookup(&r.plugin).ok_or_else(|| PluginError::Instantiate {
        plugin: r.plugin.clone(),
        reason: "the plugin was not loaded".to_owned(),
    })?;
    PluginStep::new(slot, r.kind, &r.function, stores)
}

/// Why a node's operator could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConstructError {
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// What a task gives the operators it builds.
pub struct TaskContext<'a> {
    pub lookup: PluginLookup<'a>,
    /// The task's input topics, by `Origin::topic`.
    pub topics: &'a [String],
    /// Opens (and restores) one of the task's stores.
    pub open_store: &'a mut dyn FnMut(&StoreSpec) -> Result<Store, crate::state::StateError>,
}

/// A stateless node's operator outside a task (benchmarks and tests).
pub fn construct_stateless(op: &NodeOp, lookup: PluginLookup<'_>) -> Result<Box<dyn Operator>, ConstructError> {
    let node = crate::topology::Node {
        id: 0,
        name: "standalone".to_owned(),
        op: op.clone(),
        children: Vec::new(),
        parents: Vec::new(),
        pipeline: String::new(),
        policy: crate::topology::ErrorPolicy::default(),
    };
    let mut no_stores = |spec: &StoreSpec| {
        Err(crate::state::StateError::Backend { store: spec.name.clone(), message: "no stores here".to_owned() })
    };
    let mut ctx = TaskContext { lookup, topics: &[], open_store: &mut no_stores };
    construct(&node, &Default::default(), &mut ctx)
}

/// The one constructor: a node's operator, with its plugin instances and stores.
pub fn construct(
    node: &crate::topology::Node,
    stores: &std::collections::BTreeMap<String, StoreSpec>,
    ctx: &mut TaskContext<'_>,
) -> Result<Box<dyn Operator>, ConstructError> {
    let lookup = ctx.lookup;
    Ok(match &node.op {
        NodeOp::Source { .. } | NodeOp::Merge => Box::new(PassThrough),
        NodeOp::Sink { topic } => Box::new(sink::Sink { topic: topic.clone() }),
        NodeOp::Repartition { topic } => Box::new(sink::Repartition {
            topic: topic.clone(),
            topics: ctx.topics.to_vec(),
            sequencer: Default::default(),
            buffer: Default::default(),
        }),
        NodeOp::WithTimestamp { plugin } => Box::new(timestamp::WithTimestamp { step: step(lookup, plugin)? }),
        NodeOp::Process { plugin, stores: names, children } => {
            let mut opened = std::collections::BTreeMap::new();
            for name in names {
                let spec = stores.get(name).cloned().ok_or_else(|| crate::state::StateError::Backend {
                    store: name.clone(),
                    message: "the topology has no such store".to_owned(),
                })?;
                opened.insert(name.clone(), (ctx.open_store)(&spec)?);
            }
            let opened: SharedStores = Arc::new(std::sync::Mutex::new(opened));
            let step = step_with(lookup, plugin, Some(opened.clone()))?;
            Box::new(processor::Processor::new(step, opened, children.clone(), ctx.topics.to_vec()))
        }
        NodeOp::Aggregate { fold, window, emit_final, store, late_topic } => {
            let spec = stores.get(store).cloned().ok_or_else(|| crate::state::StateError::Backend {
                store: store.clone(),
                message: "the topology has no such store".to_owned(),
            })?;
            let fold = match fold {
                FoldOp::Count => aggregate::Fold::Count,
                FoldOp::Reduce(p) => aggregate::Fold::Reduce(step(lookup, p)?),
                FoldOp::Aggregate(p) => aggregate::Fold::Aggregate(step(lookup, p)?),
            };
            Box::new(aggregate::Aggregate {
                fold,
                window: *window,
                emit_final: *emit_final,
                late_topic: late_topic.clone(),
                store: (ctx.open_store)(&spec)?,
                topics: ctx.topics.to_vec(),
                node: node.name.clone(),
                seq: Default::default(),
            })
        }
        NodeOp::Filter { plugin, negate } => Box::new(filter::Filter { step: step(lookup, plugin)?, negate: *negate }),
        NodeOp::MapValues { plugin } => {
            Box::new(transform::Transform::new(step(lookup, plugin)?, transform::Shape::Value))
        }
        NodeOp::Map { plugin } => {
            Box::new(transform::Transform::new(step(lookup, plugin)?, transform::Shape::KeyValue))
        }
        NodeOp::FlatMap { plugin, values_only } => Box::new(transform::Transform::new(
            step(lookup, plugin)?,
            if *values_only { transform::Shape::Value } else { transform::Shape::KeyValue },
        )),
        NodeOp::SelectKey { plugin } => {
            Box::new(transform::Transform::new(step(lookup, plugin)?, transform::Shape::Key))
        }
        NodeOp::Peek { plugin } => {
            Box::new(peek::Peek { step: plugin.as_ref().map(|p| step(lookup, p)).transpose()?, pass_on: true })
        }
        NodeOp::ForEach { plugin } => Box::new(peek::Peek { step: Some(step(lookup, plugin)?), pass_on: false }),
        NodeOp::Branch { predicates, targets } => Box::new(branch::Branch {
            predicates: predicates
                .iter()
                .map(|p| p.as_ref().map(|p| step(lookup, p)).transpose())
                .collect::<Result<_, _>>()?,
            targets: targets.clone(),
        }),
    })
}
