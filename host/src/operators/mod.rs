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

use crate::record::{EncodedBatch, Record};
use crate::state::{Store, StoreSpec};
use crate::topology::{FoldOp, NodeId, NodeOp, PluginKind, PluginRef};
use crate::wasm::host::state::SharedStores;
use crate::wasm::{CallFailure, LoadedPlugin, PluginError, PluginInstance, PluginSlot, Setup};

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

/// A node's use of a plugin: the instance, rebuilt after a trap, and switched to a new version
/// at a batch boundary when the plugin's [`PluginSlot`] publishes one (see [`crate::wasm::swap`]).
/// Every instance it uses is set up first ([`PluginInstance::set_up`]: an aggregator's initial
/// aggregate, a processor's `init`), with the step's stores attached.
pub struct PluginStep {
    slot: Arc<PluginSlot>,
    /// The slot generation `instance` belongs to.
    generation: u64,
    loaded: Arc<LoadedPlugin>,
    instance: PluginInstance,
    /// The version before a swap, kept until the new one has run its first batch.
    previous: Option<Previous>,
    pub function: String,
    pub kind: PluginKind,
    /// Reused between batches.
    pub encoded: EncodedBatch,
    label: String,
    /// A processor's stores, given to every instance (a rebuilt one too).
    stores: Option<SharedStores>,
    /// How many times the instance was replaced (a swap, a rollback, a rebuild after a trap).
    replaced: u64,
}

struct Previous {
    loaded: Arc<LoadedPlugin>,
    instance: PluginInstance,
    label: String,
}

impl PluginStep {
    /// The step's first instance, set up (with `stores`, for a processor) and checked.
    pub fn new(slot: Arc<PluginSlot>, r: &PluginRef, stores: Option<SharedStores>) -> Result<Self, PluginError> {
        let (loaded, generation, _) = slot.current();
        let instance = loaded.trial(r.kind, &r.function, stores.as_ref())?;
        let label = loaded.label();
        Ok(Self {
            slot,
            generation,
            loaded,
            instance,
            previous: None,
            function: r.function.clone(),
            kind: r.kind,
            encoded: EncodedBatch::default(),
            label,
            stores,
            replaced: 0,
        })
    }

    /// A new instance of `loaded` for this step: the stores attached, then set up.
    fn fresh(&self, loaded: &LoadedPlugin) -> Result<PluginInstance, String> {
        let mut instance = loaded.instantiate().map_err(|e| e.to_string())?;
        if let Some(stores) = &self.stores {
            instance.attach_stores(stores.clone());
        }
        instance.set_up(self.kind, &self.function).map_err(|e| e.to_string())?;
        Ok(instance)
    }

    /// What the current instance answered when it was set up.
    pub fn setup(&self) -> &Setup {
        self.instance.setup()
    }

    /// Changes whenever the instance is replaced, and its [`PluginStep::setup`] with it.
    pub fn replaced(&self) -> u64 {
        self.replaced
    }

    /// Calls `f` on the instance without a batch (timers), with the same trap handling.
    pub fn call_plain<T>(
        &mut self,
        mut f: impl FnMut(&mut PluginInstance, &str) -> Result<T, CallFailure>,
    ) -> Result<T, CallFailure> {
        self.call(&[], |i, function, _| f(i, function))
    }

    /// The plugin's name and version, for dead-letter headers.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// At a batch boundary: moves to the slot's version if it changed. The old instance is
    /// kept while the new version is on probation; if the new one cannot even be instantiated
    /// here, the step stays on the old one and the slot rolls back.
    fn follow_slot(&mut self) {
        if self.slot.generation() == self.generation {
            return;
        }
        let started = std::time::Instant::now();
        let (loaded, generation, on_probation) = self.slot.current();
        let instance = match self.fresh(&loaded) {
            Ok(i) => i,
            Err(e) => {
                tracing::error!(plugin = %self.label, error = %e, "cannot set up the new plugin version");
                if self.slot.roll_back(generation, &e) {
                    // This step runs the version it had; if the slot rolled back to another
                    // (two reloads in a row), the next batch switches to that one.
                    let (target, rolled_back, _) = self.slot.current();
                    self.generation = if target.digest == self.loaded.digest { rolled_back } else { u64::MAX };
                }
                return;
            }
        };
        self.replaced += 1;
        let label = loaded.label();
        let old_loaded = std::mem::replace(&mut self.loaded, loaded);
        let old_instance = std::mem::replace(&mut self.instance, instance);
        let old_label = std::mem::replace(&mut self.label, label);
        self.previous =
            on_probation.then_some(Previous { loaded: old_loaded, instance: old_instance, label: old_label });
        self.generation = generation;
        let pause = started.elapsed();
        self.slot.record_pause(pause);
        tracing::debug!(plugin = %self.label, pause_us = pause.as_micros() as u64, "step switched to a new plugin version");
    }

    /// Encodes `records` and calls `f` on the instance. A trap throws the instance away; the
    /// call is retried once on a fresh one, as the design asks. A trap on the first batch of a
    /// newly swapped-in version instead rolls the swap back, and the old version runs the batch.
    /// Only a batch ends the probation: a call without records (a timer) neither confirms the
    /// new version nor rolls it back.
    pub fn call<T>(
        &mut self,
        records: &[Record],
        mut f: impl FnMut(&mut PluginInstance, &str, &mut EncodedBatch) -> Result<T, CallFailure>,
    ) -> Result<T, CallFailure> {
        self.follow_slot();
        self.encoded.encode(records.iter());
        let mut result = attempt(self.stores.as_ref(), &mut self.instance, &self.function, &mut self.encoded, &mut f);
        if !records.is_empty()
            && let Some(previous) = self.previous.take()
        {
            let Err(CallFailure::Trap { reason, .. }) = &result else {
                self.slot.confirm(self.generation);
                return result;
            };
            // Another task may have confirmed the version already: then it stays, and this
            // trap is handled as any other.
            if self.slot.roll_back(self.generation, reason) {
                // The old instance runs this batch. If it is not the version rolled back to
                // (two reloads came within one batch), the next batch switches to that one.
                let (target, generation, _) = self.slot.current();
                self.generation = if target.digest == previous.loaded.digest { generation } else { u64::MAX };
                self.loaded = previous.loaded;
                self.instance = previous.instance;
                self.label = previous.label;
                self.replaced += 1;
                result = attempt(self.stores.as_ref(), &mut self.instance, &self.function, &mut self.encoded, &mut f);
            }
        }
        let Err(CallFailure::Trap { plugin, reason }) = result else { return result };
        tracing::warn!(plugin, reason, "plugin trapped; retrying the batch once on a fresh instance");
        self.instance = self
            .fresh(&self.loaded)
            .map_err(|e| CallFailure::Trap { plugin: plugin.clone(), reason: format!("{reason}; and then {e}") })?;
        self.replaced += 1;
        attempt(self.stores.as_ref(), &mut self.instance, &self.function, &mut self.encoded, &mut f)
    }

    /// Every record of the batch, failed with the same error (the batch could not run).
    pub fn fail_all(&self, records: Vec<Record>, e: &CallFailure) -> Vec<Failure> {
        let code = match e {
            CallFailure::Trap { .. } => FailureCode::Trap,
            CallFailure::Refused { .. } => FailureCode::Refused,
        };
        records
            .into_iter()
            .map(|record| Failure { record, code: code.clone(), message: e.to_string(), plugin: self.label.clone() })
            .collect()
    }

    pub fn failure(&self, record: Record, code: String, message: String) -> Failure {
        Failure { record, code: code.into(), message, plugin: self.label.clone() }
    }
}

/// One call of `f` on `instance`. With a processor's `stores`, what the call wrote is undone if
/// it fails as a whole (a trap, or the batch refused): the batch runs again, or follows the
/// error policy, from the state before it.
fn attempt<T>(
    stores: Option<&SharedStores>,
    instance: &mut PluginInstance,
    function: &str,
    encoded: &mut EncodedBatch,
    f: &mut impl FnMut(&mut PluginInstance, &str, &mut EncodedBatch) -> Result<T, CallFailure>,
) -> Result<T, CallFailure> {
    let each = |g: &mut dyn FnMut(&mut Store)| {
        if let Some(Ok(mut stores)) = stores.map(|s| s.lock()) {
            stores.values_mut().for_each(g);
        }
    };
    each(&mut Store::savepoint);
    let result = f(instance, function, encoded);
    if result.is_ok() {
        each(&mut Store::release_savepoint);
    } else {
        each(&mut Store::roll_back_savepoint);
    }
    result
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
    PluginStep::new(slot, r, stores)
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
