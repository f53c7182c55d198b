//! `mapValues`, `map`, `flatMap`, `flatMapValues` and `selectKey`: the plugin returns
//! produced records, each with the input position it came from; what the output replaces
//! depends on the [`Shape`].

use super::{ConstructError, Emitted, NODE, Operator, OperatorSpec, PluginStep, StepFailures, TaskContext};
use crate::record::{DecodedBatch, Record};
use super::table::ChangeValues;
use crate::topology::{Flow, Form, Node, PluginKind, PluginUse, StepSpec};
use crate::wasm::CallFailure;

const CHANGES_KEY: Form = Form::Node { changes_key: true, terminal: false };

pub static MAP_VALUES: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: "map_values",
        fields: &[],
        plugin: PluginUse::Required(PluginKind::ValueMapper),
        form: NODE,
        note: None, tables: true
    },
    construct: Some(|node, ctx| transform(node, ctx, Shape::Value)),
};

pub static MAP: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: "map",
        fields: &[],
        plugin: PluginUse::Required(PluginKind::KeyValueMapper),
        form: CHANGES_KEY,
        note: None, tables: false
    },
    construct: Some(|node, ctx| transform(node, ctx, Shape::KeyValue)),
};

pub static FLAT_MAP: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: "flat_map",
        fields: &[],
        plugin: PluginUse::Required(PluginKind::FlatMapper),
        form: CHANGES_KEY,
        note: None, tables: false
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
        note: Some("values only"), tables: false
    },
    construct: Some(|node, ctx| transform(node, ctx, Shape::Value)),
};

pub static SELECT_KEY: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: "select_key",
        fields: &[],
        plugin: PluginUse::Required(PluginKind::KeySelector),
        form: CHANGES_KEY,
        note: None, tables: false
    },
    construct: Some(|node, ctx| transform(node, ctx, Shape::Key)),
};

/// The operator of a node that maps records with the node's plugin.
pub fn transform(node: &Node, ctx: &mut TaskContext<'_>, shape: Shape) -> Result<Box<dyn Operator>, ConstructError> {
    let mut t = Transform::new(ctx.node_step(node)?, shape);
    if let Flow::Table { old_values } = node.flow {
        t.table = Some(old_values);
    }
    Ok(Box::new(t))
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
    /// On a table (`map_values`): whether its changes carry old values.
    table: Option<bool>,
}

/// What a plugin produced from a batch: the records, the input each came from (in order),
/// and each input's error, if it failed.
struct Produced {
    records: DecodedBatch,
    origins: Vec<u32>,
    failed: Vec<Option<(String, String)>>,
}

impl Transform {
    pub fn new(step: PluginStep, shape: Shape) -> Self {
        Self { step, shape, table: None }
    }

    /// One plugin call over `input`, its answer checked.
    fn produce(&mut self, input: &[Record]) -> Result<Produced, CallFailure> {
        let kind = self.step.kind;
        let output = self.step.call(input, |i, f, b| i.transform(kind, f, b))?;
        let malformed = |reason: String| CallFailure::Trap { plugin: self.step.label().to_owned(), reason };
        let records = DecodedBatch::output(output.records.index, output.records.timestamps, output.records.data)
            .map_err(|e| malformed(e.to_string()))?;
        // No origins: one output per input, in order (see `output` in the WIT).
        let origins = if output.origins.is_empty() && records.len() == input.len() {
            (0..input.len() as u32).collect()
        } else {
            output.origins
        };
        if origins.len() != records.len()
            || origins.iter().any(|&o| o as usize >= input.len())
            || origins.windows(2).any(|w| w[0] > w[1])
        {
            return Err(malformed("returned origins that do not match its input".to_owned()));
        }
        let mut failed = vec![None; input.len()];
        for e in output.errors {
            if let Some(slot) = failed.get_mut(e.index as usize) {
                *slot = Some((e.code, e.message));
            }
        }
        Ok(Produced { records, origins, failed })
    }

    /// A table's changes (Kafka Streams' `KTableMapValues`): each present value, new and
    /// old, mapped to exactly one; an absent one stays absent.
    fn changes(&mut self, old_values: bool, input: Vec<Record>) -> Emitted {
        let values = ChangeValues::of(&input, old_values);
        let p = match self.produce(&values.records) {
            Ok(p) if p.origins.iter().enumerate().all(|(j, &o)| o as usize == j) && p.origins.len() == values.records.len() => p,
            Ok(_) => {
                let e = CallFailure::Trap {
                    plugin: self.step.label().to_owned(),
                    reason: "a table's `map_values` maps each value to exactly one".to_owned(),
                };
                return Emitted { failures: self.step.fail_all(input, &e), ..Default::default() };
            }
            Err(e) => return Emitted { failures: self.step.fail_all(input, &e), ..Default::default() },
        };
        let mut out = Emitted { all: Vec::with_capacity(input.len()), ..Default::default() };
        for (mut r, (new, old)) in input.into_iter().zip(values.at) {
            if let Some((code, message)) = [new, old].into_iter().flatten().find_map(|j| p.failed[j].clone()) {
                out.failures.push(self.step.failure(r, code, message));
                continue;
            }
            let mapped = |j: Option<usize>, before: Option<bytes::Bytes>| {
                j.and_then(|j| if p.records.value_unchanged(j) { before } else { p.records.value(j) })
            };
            r.value = mapped(new, r.value.take());
            r.old = mapped(old, r.old.take());
            out.all.push(r);
        }
        out
    }

    fn stream(&mut self, input: Vec<Record>) -> Emitted {
        let Produced { records: produced, origins, failed } = match self.produce(&input) {
            Ok(p) => p,
            Err(e) => return Emitted { failures: self.step.fail_all(input, &e), ..Default::default() },
        };
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

impl Operator for Transform {
    fn process(&mut self, input: Vec<Record>) -> Emitted {
        match (self.table, self.shape) {
            (Some(_), Shape::Key) => self.regroup(input),
            (Some(old_values), _) => self.changes(old_values, input),
            (None, _) => self.stream(input),
        }
    }
}

impl Transform {
    /// `group_by` on a table (Kafka Streams' `KTableRepartitionMap`): each change's new and
    /// old values get their groups' keys. A change that stays in its group goes on as one
    /// record with both values; one that moves becomes a record that takes the old value out
    /// of the old group, then one that adds the new value to the new group. A value whose
    /// selector picks no key is left out.
    fn regroup(&mut self, input: Vec<Record>) -> Emitted {
        let values = ChangeValues::of(&input, true);
        let p = match self.produce(&values.records) {
            Ok(p) if p.origins.len() == values.records.len() && p.origins.iter().enumerate().all(|(j, &o)| o as usize == j) => p,
            Ok(_) => {
                let e = CallFailure::Trap {
                    plugin: self.step.label().to_owned(),
                    reason: "a table's `group_by` picks exactly one key per value".to_owned(),
                };
                return Emitted { failures: self.step.fail_all(input, &e), ..Default::default() };
            }
            Err(e) => return Emitted { failures: self.step.fail_all(input, &e), ..Default::default() },
        };
        let mut out = Emitted { all: Vec::with_capacity(input.len()), ..Default::default() };
        for (r, (new, old)) in input.into_iter().zip(values.at) {
            if let Some((code, message)) = [new, old].into_iter().flatten().find_map(|j| p.failed[j].clone()) {
                out.failures.push(self.step.failure(r, code, message));
                continue;
            }
            let new_key = new.and_then(|j| p.records.key(j));
            let old_key = old.and_then(|j| p.records.key(j));
            match (old_key, new_key) {
                (Some(ok), Some(nk)) if ok == nk => out.all.push(Record { key: Some(nk), ..r }),
                (ok, nk) => {
                    if let Some(ok) = ok {
                        out.all.push(Record { key: Some(ok), value: None, old: r.old.clone(), ..r.clone() });
                    }
                    if let Some(nk) = nk {
                        out.all.push(Record { key: Some(nk), old: None, ..r });
                    }
                }
            }
        }
        out
    }
}
