//! `filter` and `filterNot`.

use super::{ConstructError, Emitted, NODE, Operator, OperatorSpec, PluginStep, StepFailures, TaskContext};
use crate::record::Record;
use crate::topology::{Node, PluginKind, PluginUse, StepSpec};
use crate::wasm::CallFailure;

pub static FILTER: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: "filter",
        fields: &[],
        plugin: PluginUse::Required(PluginKind::Filter),
        form: NODE,
        note: None,
    },
    construct: Some(|node, ctx| filter(node, ctx, false)),
};

pub static FILTER_NOT: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: "filter_not",
        fields: &[],
        plugin: PluginUse::Required(PluginKind::Filter),
        form: NODE,
        note: Some("negated"),
    },
    construct: Some(|node, ctx| filter(node, ctx, true)),
};

fn filter(node: &Node, ctx: &mut TaskContext<'_>, negate: bool) -> Result<Box<dyn Operator>, ConstructError> {
    Ok(Box::new(Filter { step: ctx.node_step(node)?, negate }))
}

pub struct Filter {
    pub step: PluginStep,
    pub negate: bool,
}

impl Operator for Filter {
    fn process(&mut self, input: Vec<Record>) -> Emitted {
        let verdicts = match self.step.call(&input, |i, f, b| i.filter(f, b)) {
            Ok(v) => v,
            Err(e) => return Emitted { failures: self.step.fail_all(input, &e), ..Default::default() },
        };
        if verdicts.keep.len() != input.len() {
            let e = CallFailure::Trap {
                plugin: self.step.label().to_owned(),
                reason: format!("returned {} verdicts for {} records", verdicts.keep.len(), input.len()),
            };
            return Emitted { failures: self.step.fail_all(input, &e), ..Default::default() };
        }
        let mut errors: Vec<(u32, String, String)> =
            verdicts.errors.into_iter().map(|e| (e.index, e.code, e.message)).collect();
        errors.sort_by_key(|e| e.0);
        let mut errors = errors.into_iter().peekable();
        let mut out = Emitted::default();
        for (i, (record, keep)) in input.into_iter().zip(verdicts.keep).enumerate() {
            if errors.peek().is_some_and(|e| e.0 as usize == i) {
                let (_, code, message) = errors.next().expect("peeked");
                out.failures.push(self.step.failure(record, code, message));
                while errors.peek().is_some_and(|e| e.0 as usize == i) {
                    errors.next();
                }
            } else if (keep != 0) != self.negate {
                out.all.push(record);
            }
        }
        out
    }
}
