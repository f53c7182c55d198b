//! `mapValues`, `map`, `flatMap`, `flatMapValues` and `selectKey`: the plugin returns
//! produced records, each with the input position it came from; what the output replaces
//! depends on the [`Shape`].

use super::{ConstructError, Emitted, NODE, Operator, OperatorSpec, PluginStep, StepFailures, TaskContext};
use crate::record::{DecodedBatch, Record};
use crate::topology::{Form, Node, PluginKind, PluginUse, StepSpec};
use crate::wasm::CallFailure;

const CHANGES_KEY: Form = Form::Node { changes_key: true, terminal: false };

pub static MAP_VALUES: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: "map_values",
        fields: &[],
        plugin: PluginUse::Required(PluginKind::ValueMapper),
        form: NODE,
        note: None,
    },
    construct: Some(|node, ctx| transform(node, ctx, Shape::Value)),
};

pub static MAP: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: "map",
        fields: &[],
        plugin: PluginUse::Required(PluginKind::KeyValueMapper),
        form: CHANGES_KEY,
        note: None,
    },
    construct: Some(|node, ctx| transform(node, ctx, Shape::KeyValue)),
};

pub static FLAT_MAP: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: "flat_map",
        fields: &[],
        plugin: PluginUse::Required(PluginKind::FlatMapper),
        form: CHANGES_KEY,
        note: None,
    },
    construct: Some(|node, ctx| transform(node, ctx, Shape::KeyValue)),
};

/// flatMapValues: the flat-mapper's keys are ignored; each output keeps its input's key.
pub static FLAT_MAP_VALUES: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: "flat_map_values",
        fields: &[],
        plugin: PluginUse::Required(PluginKind::FlatMapper),
        form: NODE,
        note: Some("values only"),
    },
    construct: Some(|node, ctx| transform(node, ctx, Shape::Value)),
};

pub static SELECT_KEY: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: "select_key",
        fields: &[],
        plugin: PluginUse::Required(PluginKind::KeySelector),
        form: CHANGES_KEY,
        note: None,
    },
    construct: Some(|node, ctx| transform(node, ctx, Shape::Key)),
};

/// The operator of a node that maps records with the node's plugin.
pub fn transform(node: &Node, ctx: &mut TaskContext<'_>, shape: Shape) -> Result<Box<dyn Operator>, ConstructError> {
    Ok(Box::new(Transform::new(ctx.node_step(node)?, shape)))
}

/// Which fields of the produced records replace the input's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The value (mapValues, flatMapValues); the key is kept.
    Value,
    /// Key and value (map, flatMap).
    KeyValue,
    /// The key (selectKey); the value is kept.
    Key,
}

pub struct Transform {
    step: PluginStep,
    shape: Shape,
}

impl Transform {
    pub fn new(step: PluginStep, shape: Shape) -> Self {
        Self { step, shape }
    }
}

impl Operator for Transform {
    fn process(&mut self, input: Vec<Record>) -> Emitted {
        let kind = self.step.kind;
        let output = match self.step.call(&input, |i, f, b| i.transform(kind, f, b)) {
            Ok(o) => o,
            Err(e) => return Emitted { failures: self.step.fail_all(input, &e), ..Default::default() },
        };
        let malformed = |reason: String, input: Vec<Record>, step: &PluginStep| {
            let e = CallFailure::Trap { plugin: step.label().to_owned(), reason };
            Emitted { failures: step.fail_all(input, &e), ..Default::default() }
        };
        let produced = match DecodedBatch::output(output.records.index, output.records.timestamps, output.records.data)
        {
            Ok(p) => p,
            Err(e) => return malformed(e.to_string(), input, &self.step),
        };
        // No origins: one output per input, in order (see `output` in the WIT).
        let origins = if output.origins.is_empty() && produced.len() == input.len() {
            (0..input.len() as u32).collect()
        } else {
            output.origins
        };
        if origins.len() != produced.len()
            || origins.iter().any(|&o| o as usize >= input.len())
            || origins.windows(2).any(|w| w[0] > w[1])
        {
            return malformed("returned origins that do not match its input".to_owned(), input, &self.step);
        }
        let mut failed = vec![None; input.len()];
        for e in output.errors {
            if let Some(slot) = failed.get_mut(e.index as usize) {
                *slot = Some((e.code, e.message));
            }
        }
        let mut out = Emitted { all: Vec::with_capacity(produced.len()), ..Default::default() };
        // Origins are non-decreasing, so each input record is moved into the last output it
        // produced and cloned only for the ones before it (flatMap). Cloning a record fresh
        // from the consumer costs an allocation per key and value.
        let mut slots: Vec<Option<Record>> = input.into_iter().map(Some).collect();
        for (j, &origin) in origins.iter().enumerate() {
            let o = origin as usize;
            let last = origins.get(j + 1) != Some(&origin) && failed[o].is_none();
            let Some(mut r) = (if last { slots[o].take() } else { slots[o].clone() }) else { continue };
            if let Some(t) = produced.timestamp(j) {
                r.timestamp = t;
            }
            match self.shape {
                Shape::Value if produced.value_unchanged(j) => {}
                Shape::Value => r.value = produced.value(j),
                Shape::KeyValue => {
                    r.key = produced.key(j);
                    if !produced.value_unchanged(j) {
                        r.value = produced.value(j);
                    }
                }
                Shape::Key => r.key = produced.key(j),
            }
            out.all.push(r);
        }
        for (slot, f) in slots.into_iter().zip(failed) {
            if let (Some(record), Some((code, message))) = (slot, f) {
                out.failures.push(self.step.failure(record, code, message));
            }
        }
        out
    }
}
