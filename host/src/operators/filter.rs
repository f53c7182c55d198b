//! `filter` and `filterNot`. On a table (Kafka Streams' `KTableFilter`) the plugin sees each
//! change's new and old values, and a change passes on with the ones that match: a key whose
//! new value stops matching gets a tombstone, a key that matched neither before nor now gets
//! nothing (without old values, as after an aggregation, every update that does not match
//! is a tombstone).

use super::{ConstructError, Emitted, NODE, Operator, OperatorSpec, PluginStep, StepFailures, TaskContext};
use crate::record::Record;
use super::table::ChangeValues;
use crate::topology::{Flow, Node, PluginKind, PluginUse, StepSpec};
use crate::wasm::CallFailure;

pub static FILTER: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: "filter",
        fields: &[],
        plugin: PluginUse::Required(PluginKind::Filter),
        form: NODE,
        note: None, tables: true
    },
    construct: Some(|node, ctx| filter(node, ctx, false)),
};

pub static FILTER_NOT: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: "filter_not",
        fields: &[],
        plugin: PluginUse::Required(PluginKind::Filter),
        form: NODE,
        note: Some("negated"), tables: true
    },
    construct: Some(|node, ctx| filter(node, ctx, true)),
};

fn filter(node: &Node, ctx: &mut TaskContext<'_>, negate: bool) -> Result<Box<dyn Operator>, ConstructError> {
    let table = match node.flow {
        Flow::Stream => None,
        Flow::Table { old_values } => Some(old_values),
    };
    Ok(Box::new(Filter { step: ctx.node_step(node)?, negate, table }))
}

pub struct Filter {
    pub step: PluginStep,
    pub negate: bool,
    /// On a table: whether its changes carry old values.
    pub table: Option<bool>,
}

/// Per record of a batch: whether it passes, or why it failed.
type Verdicts = Vec<Result<bool, (String, String)>>;

impl Filter {
    /// One plugin call over `input`: each record's verdict (negated for `filter_not`).
    fn verdicts(&mut self, input: &[Record]) -> Result<Verdicts, CallFailure> {
        let verdicts = self.step.call(input, |i, f, b| i.filter(f, b))?;
        if verdicts.keep.len() != input.len() {
            return Err(CallFailure::Trap {
                plugin: self.step.label().to_owned(),
                reason: format!("returned {} verdicts for {} records", verdicts.keep.len(), input.len()),
            });
        }
        let mut out: Verdicts = verdicts.keep.iter().map(|&k| Ok((k != 0) != self.negate)).collect();
        for e in verdicts.errors.into_iter().rev() {
            if let Some(slot) = out.get_mut(e.index as usize) {
                *slot = Err((e.code, e.message));
            }
        }
        Ok(out)
    }

    /// A table's changes: each value is kept when it matches, else absent.
    fn changes(&mut self, old_values: bool, input: Vec<Record>) -> Emitted {
        let values = ChangeValues::of(&input, old_values);
        let verdicts = match self.verdicts(&values.records) {
            Ok(v) => v,
            Err(e) => return Emitted { failures: self.step.fail_all(input, &e), ..Default::default() },
        };
        let mut out = Emitted { all: Vec::with_capacity(input.len()), ..Default::default() };
        for (mut r, (new, old)) in input.into_iter().zip(values.at) {
            let failed = [new, old].into_iter().flatten().find_map(|j| verdicts[j].clone().err());
            if let Some((code, message)) = failed {
                out.failures.push(self.step.failure(r, code, message));
                continue;
            }
            let passes = |j: Option<usize>| j.is_some_and(|j| verdicts[j] == Ok(true));
            if !passes(new) {
                r.value = None;
            }
            if !passes(old) {
                r.old = None;
            }
            if old_values && r.value.is_none() && r.old.is_none() {
                continue;
            }
            out.all.push(r);
        }
        out
    }

    fn stream(&mut self, input: Vec<Record>) -> Emitted {
        let verdicts = match self.verdicts(&input) {
            Ok(v) => v,
            Err(e) => return Emitted { failures: self.step.fail_all(input, &e), ..Default::default() },
        };
        let mut out = Emitted::default();
        for (record, verdict) in input.into_iter().zip(verdicts) {
            match verdict {
                Ok(true) => out.all.push(record),
                Ok(false) => {}
                Err((code, message)) => out.failures.push(self.step.failure(record, code, message)),
            }
        }
        out
    }
}

impl Operator for Filter {
    fn process(&mut self, input: Vec<Record>) -> Emitted {
        match self.table {
            Some(old_values) => self.changes(old_values, input),
            None => self.stream(input),
        }
    }
}
