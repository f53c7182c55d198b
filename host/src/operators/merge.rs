//! Sources and `merge`: the records pass on unchanged. A source node starts a sub-topology
//! (the task feeds it what it reads); a merge node has several parents.

use super::{Emitted, Operator, OperatorSpec};
use crate::record::Record;
use crate::topology::{self, Field, Form, PluginUse, StepSpec};

pub static SOURCE: OperatorSpec = OperatorSpec {
    step: StepSpec { name: topology::SOURCE, fields: &[], plugin: PluginUse::None, form: Form::Internal, note: None, tables: false },
    construct: Some(|_, _| Ok(Box::new(PassThrough))),
};

/// `merge`: the streams or topics `from` names join the stream.
pub static MERGE: OperatorSpec = OperatorSpec {
    step: StepSpec { name: "merge", fields: &[Field::From], plugin: PluginUse::None, form: Form::Merge, note: None, tables: false },
    construct: Some(|_, _| Ok(Box::new(PassThrough))),
};

/// The records pass on unchanged.
struct PassThrough;

impl Operator for PassThrough {
    fn process(&mut self, input: Vec<Record>) -> Emitted {
        Emitted { all: input, ..Default::default() }
    }
}
