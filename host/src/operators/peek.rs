//! `peek` (records pass on) and `forEach` (the end of a chain). Without a plugin, `peek` logs
//! each record.

use super::{Emitted, NODE, Operator, OperatorSpec, PluginStep, StepFailures};
use crate::record::Record;
use crate::topology::{Form, PluginKind, PluginUse, StepSpec};

pub static PEEK: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: "peek",
        fields: &[],
        plugin: PluginUse::Optional { kind: PluginKind::ForEach, otherwise: "log" },
        form: NODE,
        note: None, tables: false,
    },
    construct: Some(|node, ctx| Ok(Box::new(Peek { step: ctx.node_step_opt(node)?, pass_on: true }))),
};

pub static FOR_EACH: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: "for_each",
        fields: &[],
        plugin: PluginUse::Required(PluginKind::ForEach),
        form: Form::Node { changes_key: false, terminal: true },
        note: None, tables: false,
    },
    construct: Some(|node, ctx| Ok(Box::new(Peek { step: Some(ctx.node_step(node)?), pass_on: false }))),
};

pub struct Peek {
    pub step: Option<PluginStep>,
    pub pass_on: bool,
}

impl Operator for Peek {
    fn process(&mut self, input: Vec<Record>) -> Emitted {
        let mut out = Emitted::default();
        let mut failed_at = std::collections::HashSet::new();
        match &mut self.step {
            None => {
                for r in &input {
                    tracing::info!(
                        key = %r.key.as_deref().map(String::from_utf8_lossy).unwrap_or_default(),
                        value = %r.value.as_deref().map(String::from_utf8_lossy).unwrap_or_default(),
                        timestamp = r.timestamp,
                        "peek"
                    );
                }
            }
            Some(step) => match step.call(&input, |i, f, b| i.for_each(f, b)) {
                Ok(errors) => {
                    for e in errors {
                        // One failure per record, however many errors the plugin named for it.
                        if let Some(r) = input.get(e.index as usize)
                            && failed_at.insert(e.index as usize)
                        {
                            out.failures.push(step.failure(r.clone(), e.code, e.message));
                        }
                    }
                }
                Err(e) => {
                    out.failures = step.fail_all(input, &e);
                    return out;
                }
            },
        }
        if self.pass_on {
            // A record the plugin failed on follows the error policy; the others pass on.
            out.all = if failed_at.is_empty() {
                input
            } else {
                input.into_iter().enumerate().filter(|(i, _)| !failed_at.contains(i)).map(|(_, r)| r).collect()
            };
        }
        out
    }
}
