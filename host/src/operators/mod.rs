//! The operators: one file per kind, one [`Operator`] trait, one constructor ([`construct`]).
//! Operators know nothing about Kafka: they see batches of records, and call plugins through
//! [`PluginStep`], which owns the instance, rebuilds it after a trap and retries once.

mod branch;
mod filter;
mod peek;
mod transform;

use std::sync::Arc;

use crate::record::{EncodedBatch, Record};
use crate::topology::{NodeId, NodeOp, PluginKind, PluginRef};
use crate::wasm::{CallFailure, LoadedPlugin, PluginError, PluginInstance};

/// A record a step could not handle, with why. The task applies the step's error policy.
#[derive(Debug, Clone)]
pub struct Failure {
    pub record: Record,
    pub code: String,
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
}

/// One node's behaviour in one task.
pub trait Operator: Send {
    /// Processes one batch. Called once per batch that reaches the node, never per record.
    /// Every failure, a trap included, is per record: it goes into [`Emitted::failures`] with
    /// the record, so the task can apply the step's error policy to it.
    fn process(&mut self, input: Vec<Record>) -> Emitted;
}

/// The records pass on unchanged (sources and merges).
struct PassThrough;

impl Operator for PassThrough {
    fn process(&mut self, input: Vec<Record>) -> Emitted {
        Emitted { all: input, ..Default::default() }
    }
}

/// A node's use of a plugin: the instance, rebuilt after a trap.
pub struct PluginStep {
    loaded: Arc<LoadedPlugin>,
    instance: PluginInstance,
    pub function: String,
    pub kind: PluginKind,
    /// Reused between batches.
    pub encoded: EncodedBatch,
    label: String,
}

impl PluginStep {
    pub fn new(loaded: Arc<LoadedPlugin>, r: &PluginRef) -> Result<Self, PluginError> {
        let mut instance = loaded.instantiate()?;
        instance.probe(r.kind, &r.function).map_err(|e| PluginError::Instantiate {
            plugin: r.plugin.clone(),
            reason: match e {
                CallFailure::Refused { reason, .. } => {
                    let f = if r.function.is_empty() { "(default)" } else { &r.function };
                    format!("function {f} of kind {}: {reason}", r.kind.interface())
                }
                CallFailure::Trap { reason, .. } => format!("trapped on an empty batch: {reason}"),
            },
        })?;
        let label = format!("{}@{}", loaded.name, &loaded.digest[..12.min(loaded.digest.len())]);
        Ok(Self {
            loaded,
            instance,
            function: r.function.clone(),
            kind: r.kind,
            encoded: EncodedBatch::default(),
            label,
        })
    }

    /// The plugin's name and version, for dead-letter headers.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Encodes `records` and calls `f` on the instance. A trap throws the instance away; the
    /// call is retried once on a fresh one, as the design asks.
    pub fn call<T>(
        &mut self,
        records: &[Record],
        mut f: impl FnMut(&mut PluginInstance, &str, &mut EncodedBatch) -> Result<T, CallFailure>,
    ) -> Result<T, CallFailure> {
        self.encoded.encode(records.iter());
        match f(&mut self.instance, &self.function, &mut self.encoded) {
            Err(CallFailure::Trap { plugin, reason }) => {
                tracing::warn!(plugin, reason, "plugin trapped; retrying the batch once on a fresh instance");
                self.instance = self.loaded.instantiate().map_err(|e| CallFailure::Trap {
                    plugin: plugin.clone(),
                    reason: format!("{reason}; and then {e}"),
                })?;
                f(&mut self.instance, &self.function, &mut self.encoded)
            }
            other => other,
        }
    }

    /// Every record of the batch, failed with the same error (the batch could not run).
    pub fn fail_all(&self, records: Vec<Record>, e: &CallFailure) -> Vec<Failure> {
        let code = match e {
            CallFailure::Trap { .. } => "trap",
            CallFailure::Refused { .. } => "refused",
        };
        records
            .into_iter()
            .map(|record| Failure { record, code: code.to_owned(), message: e.to_string(), plugin: self.label.clone() })
            .collect()
    }

    pub fn failure(&self, record: Record, code: String, message: String) -> Failure {
        Failure { record, code, message, plugin: self.label.clone() }
    }
}

/// Finds the loaded plugin a step names.
pub type PluginLookup<'a> = &'a dyn Fn(&str) -> Option<Arc<LoadedPlugin>>;

fn step(lookup: PluginLookup<'_>, r: &PluginRef) -> Result<PluginStep, PluginError> {
    let loaded = lookup(&r.plugin).ok_or_else(|| PluginError::Instantiate {
        plugin: r.plugin.clone(),
        reason: "the plugin was not loaded".to_owned(),
    })?;
    PluginStep::new(loaded, r)
}

/// The one constructor: a node's operator, with its plugin instances.
pub fn construct(op: &NodeOp, lookup: PluginLookup<'_>) -> Result<Box<dyn Operator>, PluginError> {
    Ok(match op {
        NodeOp::Source { .. } | NodeOp::Merge | NodeOp::Sink { .. } => Box::new(PassThrough),
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
