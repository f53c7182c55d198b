//! The three stages of a foreign-key table-table join (Kafka Streams' KIP-213; the builder
//! wires them, see `topology::build`): the left table's rows subscribe to the right table's
//! row of their foreign key, the right side answers, and the left side joins each answer with
//! the row it was for, if that row is still current (a hash of its value rides the round trip,
//! so an answer for a row changed since is dropped as stale). When a row's foreign key
//! changes, its old subscription is deleted, so no result stays behind from the old key.
//!
//! Instructions follow Kafka Streams' `SubscriptionSendProcessorSupplier` (4.x): an inner join
//! retracts a row's result when its foreign key becomes absent, and asks for an answer only
//! when a row joins; a left join subscribes with an absent foreign key too, and is answered
//! with no right row.

use bytes::Bytes;

use super::join::{Joiner, Pair, state_failure};
use super::table::{ChangeValues, lookup};
use super::{
    ConstructError, Emitted, Operator, OperatorSpec, PluginStep, SharedStore, StepFailures, TaskContext, locked,
    wrong_node,
};
use crate::record::{DecodedBatch, Record};
use crate::state::{DirectUpstream, Store, upstream_of};
use crate::topology::{self, FkStage, Form, JoinKind, Node, NodeId, NodeOp, PluginUse, StepSpec};
use crate::wasm::CallFailure;

pub static FOREIGN_KEY: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: topology::FOREIGN_KEY,
        fields: &[],
        plugin: PluginUse::None,
        form: Form::Internal,
        note: None,
        tables: true,
    },
    construct: Some(construct),
};

fn construct(node: &Node, ctx: &mut TaskContext<'_>) -> Result<Box<dyn Operator>, ConstructError> {
    let NodeOp::ForeignKey { kind, stage } = &node.op else {
        return Err(wrong_node(topology::FOREIGN_KEY, node));
    };
    let shared = |ctx: &TaskContext<'_>, store: &str| {
        ctx.tables.get(store).cloned().ok_or_else(|| crate::state::StateError::Backend {
            store: store.to_owned(),
            message: "the table's store is not open in this task".to_owned(),
        })
    };
    let other = node.parents.last().copied().unwrap_or(NodeId::MAX);
    Ok(match stage {
        FkStage::Subscribe { extractor } => Box::new(Subscribe { kind: *kind, extractor: ctx.step(extractor)? }),
        FkStage::Respond { subscriptions, right_store } => Box::new(Respond {
            subscriptions: ctx.open(subscriptions)?,
            right: shared(ctx, right_store)?,
            right_node: other,
            topics: ctx.topics.to_vec(),
            direct: DirectUpstream::default(),
        }),
        FkStage::Result { joiner, left_store } => Box::new(Respond::result(
            *kind,
            Joiner::new(ctx.step(joiner)?),
            shared(ctx, left_store)?,
            other,
        )),
    })
}

/// What a subscription asks of the right side (Kafka Streams' `SubscriptionWrapper.Instruction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Instruction {
    /// Unsubscribe; answer nothing (the row moved to another key that answers).
    DeleteKeyNoPropagate = 0,
    /// Unsubscribe, and answer with nothing (the row is gone: its result too).
    DeleteKeyAndPropagate = 1,
    /// Subscribe; answer with the right row, or with nothing when there is none.
    PropagateNullIfNoFkVal = 2,
    /// Subscribe; answer only when there is a right row.
    PropagateOnlyIfFkValAvailable = 3,
}

impl Instruction {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::DeleteKeyNoPropagate,
            1 => Self::DeleteKeyAndPropagate,
            2 => Self::PropagateNullIfNoFkVal,
            3 => Self::PropagateOnlyIfFkValAvailable,
            _ => return None,
        })
    }
}

/// The hash of a left row's value that rides a subscription and its answer (FNV-1a, 64 bits:
/// fixed, so it means the same in every process and version).
fn value_hash(v: Option<&[u8]>) -> Option<u64> {
    v.map(|v| v.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)))
}

fn put_hash(out: &mut Vec<u8>, h: Option<u64>) {
    match h {
        Some(h) => {
            out.push(1);
            out.extend_from_slice(&h.to_be_bytes());
        }
        None => out.extend_from_slice(&[0; 9]),
    }
}

fn get_hash(b: &[u8]) -> Option<Option<u64>> {
    let flag = *b.first()?;
    let h = u64::from_be_bytes(b.get(1..9)?.try_into().ok()?);
    Some((flag == 1).then_some(h))
}

/// A value's foreign key (absent when it has none), or the extractor's error code and message.
type ForeignKey = Result<Option<Bytes>, (String, String)>;

/// The left side's subscriptions: one record per foreign key a change subscribes to or
/// leaves, keyed by the foreign key (an empty key for an absent one), valued
/// `instruction | hash of the new value | left key`.
struct Subscribe {
    kind: JoinKind,
    extractor: PluginStep,
}

impl Subscribe {
    /// The foreign key of each value of `values`, or why the extractor failed on it.
    fn foreign_keys(&mut self, values: &[Record]) -> Result<Vec<ForeignKey>, CallFailure> {
        let output = self.extractor.call(values, |i, f, b| i.extract_foreign_keys(f, b))?;
        let malformed = |reason: &str| CallFailure::Trap { plugin: self.extractor.label().to_owned(), reason: reason.to_owned() };
        let keys = DecodedBatch::output(output.records.index, output.records.timestamps, output.records.data)
            .map_err(|e| malformed(&e.to_string()))?;
        let mut out = vec![Ok(None); values.len()];
        let origins: Vec<u32> =
            if output.origins.is_empty() && keys.len() == values.len() { (0..values.len() as u32).collect() } else { output.origins };
        if origins.len() != keys.len() || origins.iter().any(|&o| o as usize >= values.len()) {
            return Err(malformed("returned foreign keys that do not match its input"));
        }
        for (j, &o) in origins.iter().enumerate() {
            out[o as usize] = Ok(keys.key(j));
        }
        for e in output.errors {
            if let Some(slot) = out.get_mut(e.index as usize) {
                *slot = Err((e.code, e.message));
            }
        }
        Ok(out)
    }
}

impl Operator for Subscribe {
    fn process(&mut self, input: Vec<Record>) -> Emitted {
        let values = ChangeValues::of(&input, true);
        let keys = match self.foreign_keys(&values.records) {
            Ok(k) => k,
            Err(e) => return Emitted { failures: self.extractor.fail_all(input, &e), ..Default::default() },
        };
        let mut out = Emitted::default();
        for (r, (new, old)) in input.into_iter().zip(values.at) {
            let Some(pk) = r.key.clone() else { continue };
            if let Some((code, message)) = [new, old].into_iter().flatten().find_map(|j| keys[j].clone().err()) {
                out.failures.push(self.extractor.failure(r, code, message));
                continue;
            }
            let fk = |j: Option<usize>| j.and_then(|j| keys[j].clone().ok().flatten());
            let (new_fk, old_fk) = (fk(new), fk(old));
            let hash = value_hash(r.value.as_deref());
            let mut send = |fk: Option<Bytes>, instruction: Instruction| {
                let mut v = Vec::with_capacity(10 + pk.len());
                v.push(instruction as u8);
                put_hash(&mut v, hash);
                v.extend_from_slice(&pk);
                out.all.push(Record {
                    key: Some(fk.unwrap_or_default()),
                    value: Some(Bytes::from(v)),
                    timestamp: r.timestamp,
                    origin: r.origin,
                    ..Default::default()
                });
            };
            let (had_old, has_new) = (r.old.is_some(), r.value.is_some());
            match self.kind {
                JoinKind::Left => {
                    if !had_old && !has_new {
                        continue;
                    }
                    // A row that moved leaves its old key without an answer: the new key's
                    // answer (with nothing, if it has no row) replaces the result.
                    if old_fk.is_some() && old_fk != new_fk {
                        send(old_fk, Instruction::DeleteKeyNoPropagate);
                    }
                    send(new_fk, Instruction::PropagateNullIfNoFkVal);
                }
                _ => match (has_new, new_fk.is_some(), old_fk.is_some()) {
                    // No valid foreign key any more: the old result goes.
                    (true, false, true) | (false, _, true) => send(old_fk, Instruction::DeleteKeyAndPropagate),
                    (true, false, false) | (false, _, false) => {}
                    (true, true, true) if old_fk != new_fk => {
                        send(old_fk, Instruction::DeleteKeyNoPropagate);
                        send(new_fk, Instruction::PropagateNullIfNoFkVal);
                    }
                    // The same key, or a new row: an answer only if it joins.
                    (true, true, _) => send(new_fk, Instruction::PropagateOnlyIfFkValAvailable),
                },
            }
        }
        out
    }

    fn rerunnable(&self) -> bool {
        false
    }
}

/// The right side (`store` set) answers subscriptions and its rows' changes; the result
/// stage (`result` set) joins the answers on the left side.
struct Respond {
    subscriptions: Store,
    right: SharedStore,
    right_node: NodeId,
    topics: Vec<String>,
    direct: DirectUpstream,
}

/// A subscription's store key: `foreign key length | foreign key | left key`, so a right row's
/// subscribers are one prefix.
fn subscription_key(fk: &[u8], pk: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + fk.len() + pk.len());
    k.extend_from_slice(&(fk.len() as u32).to_be_bytes());
    k.extend_from_slice(fk);
    k.extend_from_slice(pk);
    k
}

/// An answer: keyed by the left key, valued `hash | 1 and the right value, or 0`.
fn answer(pk: Bytes, hash: Option<u64>, right: Option<&[u8]>, timestamp: i64, origin: crate::record::Origin) -> Record {
    let mut v = Vec::with_capacity(10 + right.map_or(0, <[u8]>::len));
    put_hash(&mut v, hash);
    match right {
        Some(r) => {
            v.push(1);
            v.extend_from_slice(r);
        }
        None => v.push(0),
    }
    Record { key: Some(pk), value: Some(Bytes::from(v)), timestamp, origin, ..Default::default() }
}

impl Respond {
    fn result(kind: JoinKind, joiner: Joiner, left: SharedStore, left_node: NodeId) -> JoinAnswers {
        JoinAnswers { kind, joiner, left, left_node }
    }

    /// A subscription arrived: keep (or forget) it, and answer as it asks.
    fn subscription(&mut self, r: Record, out: &mut Emitted) {
        let Some(fk) = r.key.clone() else { return };
        let Some(v) = r.value.as_deref().filter(|v| v.len() >= 10) else { return };
        let (Some(instruction), Some(hash)) = (Instruction::from_byte(v[0]), get_hash(&v[1..10])) else { return };
        let pk = Bytes::copy_from_slice(&v[10..]);
        let Some((upstream, position)) = upstream_of(&r, self.direct.name(&self.topics, &r)) else { return };
        if !self.subscriptions.first_time(upstream, position) {
            return;
        }
        let key = subscription_key(&fk, &pk);
        match instruction {
            Instruction::DeleteKeyNoPropagate | Instruction::DeleteKeyAndPropagate => self.subscriptions.delete(key),
            _ => {
                let mut h = Vec::with_capacity(9);
                put_hash(&mut h, hash);
                self.subscriptions.put(key, h);
            }
        }
        // An empty foreign key is an absent one: no right row.
        let row = if fk.is_empty() {
            Ok(None)
        } else {
            lookup(&locked(&self.right), &fk)
        };
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                out.failures.push(state_failure(r, e));
                return;
            }
        };
        let ts = row.as_ref().map_or(r.timestamp, |(t, _)| r.timestamp.max(*t));
        let value = row.as_ref().map(|(_, v)| v.as_ref());
        match instruction {
            Instruction::DeleteKeyNoPropagate => {}
            Instruction::DeleteKeyAndPropagate => out.all.push(answer(pk, hash, None, ts, r.origin)),
            Instruction::PropagateNullIfNoFkVal => out.all.push(answer(pk, hash, value, ts, r.origin)),
            Instruction::PropagateOnlyIfFkValAvailable if value.is_some() => {
                out.all.push(answer(pk, hash, value, ts, r.origin))
            }
            Instruction::PropagateOnlyIfFkValAvailable => {}
        }
    }

    /// A right row changed: answer each of its subscribers with the new value.
    fn right_change(&mut self, r: Record, out: &mut Emitted) {
        let Some(fk) = r.key.clone() else { return };
        let prefix = subscription_key(&fk, &[]);
        let subscribers = match self.subscriptions.prefix(&prefix, usize::MAX) {
            Ok(s) => s,
            Err(e) => {
                out.failures.push(state_failure(r, e));
                return;
            }
        };
        for (k, h) in subscribers {
            let Some(hash) = get_hash(&h) else { continue };
            let pk = Bytes::copy_from_slice(&k[prefix.len()..]);
            out.all.push(answer(pk, hash, r.value.as_deref(), r.timestamp, r.origin));
        }
    }
}

impl Operator for Respond {
    fn process(&mut self, input: Vec<Record>) -> Emitted {
        self.process_from(NodeId::MAX, input)
    }

    fn process_from(&mut self, parent: NodeId, input: Vec<Record>) -> Emitted {
        let mut out = Emitted::default();
        for r in input {
            if parent == self.right_node {
                self.right_change(r, &mut out);
            } else {
                self.subscription(r, &mut out);
            }
        }
        out
    }

    fn with_stores(&mut self, f: &mut dyn FnMut(&mut Store)) {
        f(&mut self.subscriptions);
    }

    fn rerunnable(&self) -> bool {
        false
    }
}

/// The left side joins each answer with the row it was for, if it is still the current one;
/// an inner join's answer without a right row, or one for a row now gone, is a tombstone.
struct JoinAnswers {
    kind: JoinKind,
    joiner: Joiner,
    left: SharedStore,
    left_node: NodeId,
}

impl Operator for JoinAnswers {
    fn process(&mut self, input: Vec<Record>) -> Emitted {
        self.process_from(NodeId::MAX, input)
    }

    fn process_from(&mut self, parent: NodeId, input: Vec<Record>) -> Emitted {
        let mut out = Emitted::default();
        // The left table's own changes reach here only to keep it in this task.
        if parent == self.left_node {
            return out;
        }
        // Which answers join (index into `pairs`), and which are tombstones.
        let mut pairs = Vec::new();
        let mut order: Vec<(Record, Option<usize>)> = Vec::new();
        {
            let left = locked(&self.left);
            for r in input {
                let Some(pk) = r.key.clone() else { continue };
                let Some(v) = r.value.as_deref().filter(|v| v.len() >= 10) else { continue };
                let Some(hash) = get_hash(&v[..9]) else { continue };
                let right = (v[9] == 1).then(|| Bytes::copy_from_slice(&v[10..]));
                let current = match lookup(&left, &pk) {
                    Ok(c) => c.map(|(_, v)| v),
                    Err(e) => {
                        out.failures.push(state_failure(r, e));
                        continue;
                    }
                };
                // An answer for a value the row no longer has is stale.
                if value_hash(current.as_deref()) != hash {
                    continue;
                }
                let tombstone = current.is_none() || (right.is_none() && self.kind == JoinKind::Inner);
                if tombstone {
                    order.push((r, None));
                } else {
                    let left_record = Record { key: Some(pk), value: current, timestamp: r.timestamp, ..Default::default() };
                    pairs.push(Pair { left: left_record, right });
                    order.push((r, Some(pairs.len() - 1)));
                }
            }
        }
        let results = self.joiner.join(&pairs);
        for (mut r, i) in order {
            match i.map(|i| results[i].clone()) {
                None => {
                    r.value = None;
                    out.all.push(r);
                }
                Some(Ok(v)) => {
                    r.value = v;
                    out.all.push(r);
                }
                Some(Err((code, message))) => out.failures.push(self.joiner.failure(r, code, message)),
            }
        }
        out
    }

    fn rerunnable(&self) -> bool {
        false
    }
}
