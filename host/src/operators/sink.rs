//! The ends of a sub-topology: a sink writes to an output topic, a repartition to an internal
//! topic that another sub-topology reads. Both hand their batch to the task's output as one
//! run; a repartition first stamps each record with where its input was read, so the store
//! that reads it back applies it once even if it is written twice.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

use super::{ConstructError, Emitted, Operator, OperatorSpec, TaskContext, wrong_node};
use crate::record::{Header, OLD_VALUE_HEADER, Record};
use crate::state::{DirectUpstream, POSITION_HEADER, POSITION_TAIL, Position, Sequencer, encode_position};
use crate::topology::{self, Field, Form, Node, NodeOp, PluginUse, StepSpec};

/// The nodes that write a topic: a pipeline's `to`, a `to` step, a branch's `to`.
pub static SINK: OperatorSpec = OperatorSpec {
    step: StepSpec { name: topology::SINK, fields: &[], plugin: PluginUse::None, form: Form::Internal, note: None, tables: true },
    construct: Some(|node, _| match &node.op {
        NodeOp::Sink { topic } => Ok(Box::new(Sink { topic: topic.clone() })),
        _ => Err(wrong_node(topology::SINK, node)),
    }),
};

/// The `to` step: the stream written to `topic` (a sink node).
pub static TO: OperatorSpec = OperatorSpec {
    step: StepSpec { name: "to", fields: &[Field::Topic], plugin: PluginUse::None, form: Form::To, note: None, tables: true },
    construct: None,
};

pub static REPARTITION: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: topology::REPARTITION,
        fields: &[],
        plugin: PluginUse::None,
        form: Form::Internal,
        note: None, tables: false
    },
    construct: Some(repartition),
};

fn repartition(node: &Node, ctx: &mut TaskContext<'_>) -> Result<Box<dyn Operator>, ConstructError> {
    let NodeOp::Repartition { topic } = &node.op else {
        return Err(wrong_node(topology::REPARTITION, node));
    };
    Ok(Box::new(Repartition {
        topic: topic.clone(),
        topics: ctx.topics.to_vec(),
        sequencer: Default::default(),
        buffer: Default::default(),
    }))
}

/// `to`: the batch goes to `topic`.
pub struct Sink {
    pub topic: String,
}

impl Operator for Sink {
    fn process(&mut self, input: Vec<Record>) -> Emitted {
        Emitted { to_topics: vec![(self.topic.clone(), input)], ..Default::default() }
    }
}

/// The write half of a repartition (`group_by`, a key change before `group_by_key`).
pub struct Repartition {
    pub topic: String,
    /// The task's input topics, by `Origin::topic`.
    pub topics: Vec<String>,
    /// Numbers the records that share an input position.
    pub sequencer: Sequencer,
    /// The batch's position headers, written into one buffer: one allocation per batch.
    pub buffer: BytesMut,
}

impl Operator for Repartition {
    fn process(&mut self, mut input: Vec<Record>) -> Emitted {
        let mut direct = DirectUpstream::default();
        let longest = self.topics.iter().map(String::len).max().unwrap_or(0) + 12 + POSITION_TAIL;
        self.buffer.reserve(input.len() * longest);
        for r in &mut input {
            let upstream = direct.name(&self.topics, r);
            let p = self.sequencer.next(upstream, Position { offset: r.origin.offset, seq: 0 });
            encode_position(&mut self.buffer, upstream, p);
            let value: Bytes = self.buffer.split().freeze();
            match r.headers.iter_mut().find(|h| h.name == POSITION_HEADER) {
                Some(h) => h.value = Some(value),
                None => r.headers.push(Header { name: Cow::Borrowed(POSITION_HEADER), value: Some(value) }),
            }
            // A grouped table's change keeps its old value across the topic.
            if let Some(old) = r.old.take() {
                r.headers.push(Header { name: Cow::Borrowed(OLD_VALUE_HEADER), value: Some(old) });
            }
        }
        Emitted { to_topics: vec![(self.topic.clone(), input)], ..Default::default() }
    }
}
