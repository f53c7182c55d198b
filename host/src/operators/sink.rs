//! The ends of a sub-topology: a sink writes to an output topic, a repartition to an internal
//! topic that another sub-topology reads. Both hand their batch to the task's output as one
//! run; a repartition first stamps each record with where its input was read, so the store
//! that reads it back applies it once even if it is written twice.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

use super::{Emitted, Operator};
use crate::record::{Header, Record};
use crate::state::{DirectUpstream, POSITION_HEADER, POSITION_TAIL, Position, Sequencer, encode_position};

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
        }
        Emitted { to_topics: vec![(self.topic.clone(), input)], ..Default::default() }
    }
}
