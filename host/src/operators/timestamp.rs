//! `with_timestamp`: the event time of each record comes from a timestamp-extractor plugin
//! (Kafka Streams' `TimestampExtractor`), for the windows downstream.

use super::{Emitted, NODE, Operator, OperatorSpec, PluginStep, StepFailures};
use crate::record::Record;
use crate::topology::{PluginKind, PluginUse, StepSpec};

pub static WITH_TIMESTAMP: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: "with_timestamp",
        fields: &[],
        plugin: PluginUse::Required(PluginKind::TimestampExtractor),
        form: NODE,
        note: None, tables: false
    },
    construct: Some(|node, ctx| Ok(Box::new(WithTimestamp { step: ctx.node_step(node)? }))),
};

pub struct WithTimestamp {
    pub step: PluginStep,
}

impl Operator for WithTimestamp {
    fn process(&mut self, mut input: Vec<Record>) -> Emitted {
        let got = match self.step.call(&input, |i, f, b| i.extract_timestamps(f, b)) {
            Ok(t) => t,
            Err(e) => return Emitted { failures: self.step.fail_all(input, &e), ..Default::default() },
        };
        if got.timestamps.len() != input.len() {
            let e = crate::wasm::CallFailure::Trap {
                plugin: self.step.label().to_owned(),
                reason: "returned a timestamp count that does not match its input".to_owned(),
            };
            return Emitted { failures: self.step.fail_all(input, &e), ..Default::default() };
        }
        let mut failed = vec![None; input.len()];
        for e in got.errors {
            if let Some(slot) = failed.get_mut(e.index as usize) {
                *slot = Some((e.code, e.message));
            }
        }
        for (r, t) in input.iter_mut().zip(&got.timestamps) {
            r.timestamp = *t;
        }
        let mut out = Emitted::default();
        for (r, f) in input.into_iter().zip(failed) {
            match f {
                Some((code, message)) => out.failures.push(self.step.failure(r, code, message)),
                None => out.all.push(r),
            }
        }
        out
    }
}
