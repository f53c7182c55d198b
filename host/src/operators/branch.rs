//! `branch`: each record goes to the first branch whose predicate accepts it, in order; the
//! default branch (no predicate) takes the rest. A record no branch accepts is dropped, as in
//! Kafka Streams' `split()`.

use super::{ConstructError, Emitted, Operator, OperatorSpec, PluginStep, StepFailures, TaskContext};
use crate::record::Record;
use crate::topology::{Field, Form, Node, NodeId, NodeOp, PluginUse, StepSpec};
use crate::wasm::CallFailure;

/// `branch`: each of its `branches` names a filter plugin as predicate (the last may not).
pub static BRANCH: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: "branch",
        fields: &[Field::Branches],
        plugin: PluginUse::None,
        form: Form::Branch,
        note: None, tables: false
    },
    construct: Some(construct),
};

fn construct(node: &Node, ctx: &mut TaskContext<'_>) -> Result<Box<dyn Operator>, ConstructError> {
    let NodeOp::Branch { predicates, targets } = &node.op else {
        return Err(super::wrong_node("branch", node));
    };
    Ok(Box::new(Branch {
        predicates: predicates.iter().map(|p| p.as_ref().map(|p| ctx.step(p)).transpose()).collect::<Result<_, _>>()?,
        targets: targets.clone(),
    }))
}

pub struct Branch {
    pub predicates: Vec<Option<PluginStep>>,
    pub targets: Vec<NodeId>,
}

impl Operator for Branch {
    fn process(&mut self, input: Vec<Record>) -> Emitted {
        let mut out = Emitted::default();
        let mut rest = input;
        for (pred, &target) in self.predicates.iter_mut().zip(&self.targets) {
            if rest.is_empty() {
                break;
            }
            let Some(step) = pred else {
                out.routed.push((target, std::mem::take(&mut rest)));
                break;
            };
            let verdicts = match step.call(&rest, |i, f, b| i.filter(f, b)) {
                Ok(v) if v.keep.len() == rest.len() => v,
                Ok(v) => {
                    let e = CallFailure::Trap {
                        plugin: step.label().to_owned(),
                        reason: format!("returned {} verdicts for {} records", v.keep.len(), rest.len()),
                    };
                    out.failures.extend(step.fail_all(std::mem::take(&mut rest), &e));
                    break;
                }
                Err(e) => {
                    out.failures.extend(step.fail_all(std::mem::take(&mut rest), &e));
                    break;
                }
            };
            let mut failed = vec![None; rest.len()];
            for e in verdicts.errors {
                if let Some(slot) = failed.get_mut(e.index as usize) {
                    *slot = Some((e.code, e.message));
                }
            }
            let mut matched = Vec::new();
            let mut unmatched = Vec::new();
            for ((record, keep), f) in rest.into_iter().zip(verdicts.keep).zip(failed) {
                match f {
                    Some((code, message)) => out.failures.push(step.failure(record, code, message)),
                    None if keep != 0 => matched.push(record),
                    None => unmatched.push(record),
                }
            }
            if !matched.is_empty() {
                out.routed.push((target, matched));
            }
            rest = unmatched;
        }
        out
    }
}
