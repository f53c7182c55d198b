//! `suppress`. With `until = "window_closes"` the windowed aggregation before it emits each
//! window once, when it closes (the builder marks the aggregation, which does the holding).
//! With `until = "time_limit"` this operator holds each key's updates for `time_limit` of
//! stream time from the first one, then emits the latest (Kafka Streams'
//! `KTableSuppressProcessor` with `Suppressed.untilTimeLimit`): a key updated again while held
//! keeps its place, and stream time (the largest timestamp seen) decides what is due, so
//! nothing is emitted without a newer record. At most `max_records` keys are held: past that,
//! `when_full = "emit_early"` (the default) emits the oldest, `shut_down` fails the record
//! that would not fit, which the pipeline's `on_error` handles.
//!
//! The buffer lives in a key-value store (with a changelog on Kafka, so it survives a
//! restart): key → buffer time, the held record's timestamp, origin, headers and value.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::{ConstructError, Emitted, Failure, FailureCode, Operator, OperatorSpec, TaskContext, wrong_node};
use crate::record::{ABSENT, Header, Headers, Origin, Record};
use crate::state::Store;
use crate::state::windows::{time_bytes, time_from};
use crate::topology::{Field, Form, Node, NodeOp, PluginUse, StepSpec};

pub static SUPPRESS: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: "suppress",
        fields: &[Field::Until, Field::TimeLimit, Field::MaxRecords, Field::WhenFull],
        plugin: PluginUse::None,
        form: Form::Suppress,
        note: None, tables: true
    },
    construct: Some(construct),
};

fn construct(node: &Node, ctx: &mut TaskContext<'_>) -> Result<Box<dyn Operator>, ConstructError> {
    let NodeOp::Suppress { limit_ms, max_records, emit_early, store } = &node.op else {
        return Err(wrong_node("suppress", node));
    };
    let store = ctx.open(store)?;
    // The buffer's order, from the store (restored from its changelog on Kafka).
    let mut order = BTreeSet::new();
    for (key, held) in store.range(&[], None, usize::MAX)? {
        if let Some(time) = time_from(&held) {
            order.insert((time, key));
        }
    }
    Ok(Box::new(Suppress {
        limit_ms: *limit_ms,
        max_records: max_records.unwrap_or(usize::MAX),
        emit_early: *emit_early,
        store,
        order,
        node: node.name.clone(),
        read: Vec::new(),
        write: Vec::new(),
    }))
}

pub struct Suppress {
    limit_ms: i64,
    max_records: usize,
    emit_early: bool,
    store: Store,
    /// The held keys by buffer time (the time of their first held update).
    order: BTreeSet<(i64, Vec<u8>)>,
    node: String,
    /// A held record as read, and one as written: reused from record to record.
    read: Vec<u8>,
    write: Vec<u8>,
}

/// A held record: buffer time, timestamp, origin, headers, value; written into `out`
/// (cleared first), a buffer the operator keeps.
pub(super) fn encode_into(out: &mut Vec<u8>, time: i64, r: &Record) {
    out.clear();
    out.extend_from_slice(&time_bytes(time));
    out.extend_from_slice(&r.timestamp.to_be_bytes());
    out.extend_from_slice(&r.origin.topic.to_be_bytes());
    out.extend_from_slice(&r.origin.partition.to_be_bytes());
    out.extend_from_slice(&r.origin.offset.to_be_bytes());
    let field = |out: &mut Vec<u8>, b: Option<&[u8]>| match b {
        Some(b) => {
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        }
        None => out.extend_from_slice(&ABSENT.to_be_bytes()),
    };
    out.extend_from_slice(&(r.headers.len() as u32).to_be_bytes());
    for h in &r.headers {
        field(out, Some(h.name.as_bytes()));
        field(out, h.value.as_deref());
    }
    field(out, r.value.as_deref());
}

/// The record [`encode`] held for `key`.
pub(super) fn decode(key: &[u8], held: &[u8]) -> Option<Record> {
    let mut at = 8usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = held.get(at..at + n)?;
        at += n;
        Some(s)
    };
    let timestamp = i64::from_be_bytes(take(8)?.try_into().ok()?);
    let topic = u32::from_be_bytes(take(4)?.try_into().ok()?);
    let partition = i32::from_be_bytes(take(4)?.try_into().ok()?);
    let offset = i64::from_be_bytes(take(8)?.try_into().ok()?);
    let count = u32::from_be_bytes(take(4)?.try_into().ok()?);
    let mut field = || -> Option<Option<Bytes>> {
        let len = u32::from_be_bytes(take(4)?.try_into().ok()?);
        if len == ABSENT { Some(None) } else { Some(Some(Bytes::copy_from_slice(take(len as usize)?))) }
    };
    let mut headers = Headers::new();
    for _ in 0..count {
        let name = field()??;
        let value = field()?;
        headers.push(Header { name: Header::name_from(&String::from_utf8_lossy(&name)), value });
    }
    let value = field()?;
    Some(Record {
        key: Some(Bytes::copy_from_slice(key)),
        value,
        timestamp,
        headers,
        origin: Origin { topic, partition, offset },
        old: None,
    })
}

impl Suppress {
    /// Emits the held record of the oldest key, and forgets it.
    fn emit_oldest(&mut self, out: &mut Emitted) {
        let Some((_, key)) = self.order.pop_first() else { return };
        match self.store.get(&key) {
            Ok(Some(held)) => match decode(&key, &held) {
                Some(r) => out.all.push(r),
                None => tracing::error!(step = %self.node, "a held record does not decode; it is dropped"),
            },
            Ok(None) => {}
            Err(e) => tracing::error!(step = %self.node, error = %e, "reading a held record failed"),
        }
        self.store.delete(key);
    }
}

impl Operator for Suppress {
    fn process(&mut self, input: Vec<Record>) -> Emitted {
        let mut out = Emitted::default();
        for r in input {
            let stream_time = self.store.advance_stream_time(r.timestamp);
            let Some(key) = r.key.clone() else {
                // A table's updates have keys; one without passes on at once.
                out.all.push(r);
                continue;
            };
            self.read.clear();
            let held = match self.store.get_into(&key, &mut self.read) {
                Ok(held) => held,
                Err(e) => {
                    let message = e.to_string();
                    out.failures.push(Failure { record: r, code: FailureCode::State, message, plugin: self.node.clone() });
                    continue;
                }
            };
            // A key held already keeps its buffer time; a new one starts it.
            let time = match held.then(|| time_from(&self.read)).flatten() {
                Some(t) => t,
                None => {
                    if self.order.len() >= self.max_records && !self.emit_early {
                        let message = format!(
                            "the suppression buffer holds {} keys, its `max_records`, and `when_full` is `shut_down`",
                            self.order.len()
                        );
                        let code = FailureCode::Plugin("buffer-full".into());
                        out.failures.push(Failure { record: r, code, message, plugin: self.node.clone() });
                        continue;
                    }
                    self.order.insert((r.timestamp, key.to_vec()));
                    r.timestamp
                }
            };
            encode_into(&mut self.write, time, &r);
            self.store.put_slice(&key, &self.write);
            let expiry = stream_time.saturating_sub(self.limit_ms);
            while self.order.first().is_some_and(|(t, _)| *t <= expiry) {
                self.emit_oldest(&mut out);
            }
            while self.order.len() > self.max_records {
                self.emit_oldest(&mut out);
            }
        }
        out
    }

    fn with_stores(&mut self, f: &mut dyn FnMut(&mut Store)) {
        f(&mut self.store);
    }

    fn rerunnable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_record_decodes_as_it_was_encoded() {
        let r = Record {
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            timestamp: -5,
            headers: smallvec::smallvec![Header { name: "h".into(), value: None }],
            origin: Origin { topic: 1, partition: 2, offset: 3 },
            old: None,
        };
        let mut held = Vec::new();
        encode_into(&mut held, 42, &r);
        assert_eq!(time_from(&held), Some(42));
        assert_eq!(decode(b"k", &held), Some(r));
        let tomb = Record { key: Some(Bytes::from_static(b"k")), ..Default::default() };
        encode_into(&mut held, 0, &tomb);
        assert_eq!(decode(b"k", &held), Some(tomb));
    }
}
