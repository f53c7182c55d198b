//! Exactly-once output on any Kafka-protocol broker, without transactions
//! (`processing_guarantee = "exactly_once"`).
//!
//! The stores already apply each input once (their positions, see [`crate::state`]); what a
//! crash could repeat is output: records a task sent after its last commit, which it sends
//! again when it processes the same input again. So:
//!
//! - Every record a task writes carries its **lineage**: the input it came from (the task's
//!   input `topic/partition`), the input offset, and a sequence number among the records of
//!   that input written to the same topic. Sink topics carry it in the `wasp.lineage` header;
//!   repartition topics already carry it in `wasp.position` (the same encoding).
//! - At each commit, once the outputs are acknowledged and before the input offsets are
//!   committed, each task whose input moved writes an **entry** to the application's bounds
//!   topic (`<application-id>-eos-bounds`): the input offsets it is about to commit, and its
//!   **bounds**: for each partition of each topic the task writes, an offset before which none
//!   of its output after this commit can lie (everything sent before is acknowledged by then,
//!   and what is sent after lands later). A task's first batch commits a base first, so a
//!   task never writes without an entry. (Not the offset commit's metadata: a broker may drop
//!   it, and nisshi does.)
//! - A task that starts finds the latest entry whose input offsets are the ones its group
//!   committed, reads its output partitions back from those bounds to their ends, and collects
//!   the lineages of its own records: what the previous owner wrote and did not commit. While
//!   it processes that input again, a record whose lineage is in the set is not sent again.
//!
//! This relies on a task's output being the same for the same input and state (plugins are
//! deterministic unless the manifest grants them a clock or randomness). What wall-clock
//! timers emit depends on when they fire, and a table's record cache emits at commits: both
//! are still sent once per lineage, but a rerun may emit different intermediate updates of a
//! table than the run that crashed did (the same final values).

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Bytes, BytesMut};

pub use crate::record::LINEAGE_HEADER;
use crate::record::{Header, POSITION_HEADER, Record};
use crate::state::{Position, decode_position, encode_position};
use crate::topology::{NodeOp, Topology};

/// The version tag that starts each half of a bounds entry.
const METADATA_TAG: &str = "wasp-eos1";

/// The topic of the bounds entries: one partition, compacted, keyed by task.
pub fn bounds_topic(application_id: &str) -> String {
    format!("{application_id}-eos-bounds")
}

/// A bounds entry's value: the input offsets being committed, a newline, the bounds.
pub fn encode_entry(inputs: &Bounds, bounds: &Bounds) -> String {
    format!("{}\n{}", encode_bounds(inputs), encode_bounds(bounds))
}

/// The input offsets and the bounds of an entry.
pub fn decode_entry(value: &[u8]) -> Option<(Bounds, Bounds)> {
    let (inputs, bounds) = std::str::from_utf8(value).ok()?.split_once('\n')?;
    Some((decode_bounds(inputs)?, decode_bounds(bounds)?))
}

/// Per output partition, an offset before which none of a task's uncommitted output lies.
pub type Bounds = BTreeMap<(String, i32), i64>;

/// Offsets per partition as text: `wasp-eos1;topic=0:15,1:20;other=0:3` (topic names are
/// `[a-zA-Z0-9._-]`, so the separators cannot occur in them).
pub fn encode_bounds(bounds: &Bounds) -> String {
    let mut out = String::from(METADATA_TAG);
    let mut last: Option<&str> = None;
    for ((topic, partition), offset) in bounds {
        if last == Some(topic.as_str()) {
            out.push(',');
        } else {
            out.push(';');
            out.push_str(topic);
            out.push('=');
            last = Some(topic);
        }
        out.push_str(&format!("{partition}:{offset}"));
    }
    out
}

/// Offsets per partition read back from [`encode_bounds`]' text; `None` for other text.
pub fn decode_bounds(metadata: &str) -> Option<Bounds> {
    let mut parts = metadata.split(';');
    if parts.next()? != METADATA_TAG {
        return None;
    }
    let mut bounds = Bounds::new();
    for part in parts {
        let (topic, list) = part.split_once('=')?;
        for entry in list.split(',').filter(|e| !e.is_empty()) {
            let (p, o) = entry.split_once(':')?;
            bounds.insert((topic.to_owned(), p.parse().ok()?), o.parse().ok()?);
        }
    }
    Some(bounds)
}

/// The topics a sub-topology's tasks write: sinks, repartitions and dead-letter topics.
pub fn output_topics(topology: &Topology, sub: usize) -> Vec<String> {
    let mut topics = BTreeSet::new();
    for &id in &topology.subtopologies[sub].nodes {
        let node = topology.node(id);
        match &node.op {
            NodeOp::Sink { topic } | NodeOp::Repartition { topic } => {
                topics.insert(topic.clone());
            }
            _ => {}
        }
        if node.policy.final_policy() == crate::manifest::OnError::DeadLetter {
            topics.insert(node.policy.dead_letter_topic.clone());
        }
    }
    topics.into_iter().collect()
}

/// One task's lineages: the numbering of what it writes, and what it must not write again.
#[derive(Debug, Default)]
pub struct TaskLineage {
    /// Its input `topic/partition` names, by `Origin::topic`.
    inputs: Vec<String>,
    /// The topics it writes (sinks and dead letters get a lineage header; repartitions
    /// carry `wasp.position`).
    outputs: Vec<String>,
    repartitions: BTreeSet<String>,
    /// The next sequence number per (output, input, offset), since the last commit.
    seqs: foldhash::HashMap<(u32, u32, i64), u32>,
    /// Lineages the previous owner wrote past the committed input: `(output, lineage)`.
    suppress: foldhash::HashSet<(u32, Bytes)>,
    /// The largest input offset in `suppress`, per input: past it, nothing is left to meet.
    suppress_until: BTreeMap<u32, i64>,
    /// Lineage values of a batch, written into one buffer: one allocation per batch.
    buffer: BytesMut,
    /// The committed next offset per input, by `Origin::topic`.
    next: BTreeMap<u32, i64>,
    /// Input partitions with no base committed yet: their first batch commits one.
    pub unbased: BTreeSet<(String, i32)>,
    /// Records not sent again, since the task started.
    pub suppressed: u64,
}

impl TaskLineage {
    /// A task reading `inputs` (topic names, by `Origin::topic`) of `partition` and writing
    /// `outputs` (of which `repartitions` are repartition topics).
    pub fn new(inputs: &[String], partition: i32, outputs: Vec<String>, repartitions: BTreeSet<String>) -> Self {
        Self {
            inputs: inputs.iter().map(|t| format!("{t}/{partition}")).collect(),
            outputs,
            repartitions,
            ..Default::default()
        }
    }

    pub fn outputs(&self) -> &[String] {
        &self.outputs
    }

    /// A record read back from `topic` during recovery, past the bounds of the task's last
    /// commit: if this task wrote it (its lineage names one of the task's inputs), it is not
    /// to be written again.
    pub fn remember(&mut self, topic: &str, record: &Record) {
        let Some(out) = self.outputs.iter().position(|t| t == topic) else { return };
        let header = if self.repartitions.contains(topic) { POSITION_HEADER } else { LINEAGE_HEADER };
        let Some(value) = record.headers.iter().find(|h| h.name == header).and_then(|h| h.value.clone()) else {
            return;
        };
        let Some((upstream, position)) = decode_position(&value) else { return };
        let Some(input) = self.inputs.iter().position(|i| i == upstream) else { return };
        let until = self.suppress_until.entry(input as u32).or_insert(position.offset);
        *until = (*until).max(position.offset);
        self.suppress.insert((out as u32, value));
    }

    /// How many records of the previous owner wait to be met again.
    pub fn pending(&self) -> usize {
        self.suppress.len()
    }

    /// Gives each record written to `topic` its lineage, and drops those the previous owner
    /// wrote already.
    pub fn stamp(&mut self, topic: &str, records: &mut Vec<Record>) {
        let out = match self.outputs.iter().position(|t| t == topic) {
            Some(i) => i as u32,
            None => {
                // A topic the topology did not name (it cannot happen): numbered all the same.
                self.outputs.push(topic.to_owned());
                (self.outputs.len() - 1) as u32
            }
        };
        let repartition = self.repartitions.contains(topic);
        if !repartition {
            let longest = self.inputs.iter().map(String::len).max().unwrap_or(0) + crate::state::POSITION_TAIL;
            self.buffer.reserve(records.len() * longest);
            for r in records.iter_mut() {
                let seq = self.seqs.entry((out, r.origin.topic, r.origin.offset)).or_insert(0);
                let p = Position { offset: r.origin.offset, seq: *seq };
                *seq += 1;
                let upstream = self.inputs.get(r.origin.topic as usize).map_or("", String::as_str);
                encode_position(&mut self.buffer, upstream, p);
                let value = self.buffer.split().freeze();
                match r.headers.iter_mut().find(|h| h.name == LINEAGE_HEADER) {
                    Some(h) => h.value = Some(value),
                    None => {
                        r.headers.push(Header { name: std::borrow::Cow::Borrowed(LINEAGE_HEADER), value: Some(value) })
                    }
                }
            }
        }
        if self.suppress.is_empty() {
            return;
        }
        let header = if repartition { POSITION_HEADER } else { LINEAGE_HEADER };
        let before = records.len();
        let suppress = &mut self.suppress;
        records.retain(|r| {
            let Some(v) = r.headers.iter().find(|h| h.name == header).and_then(|h| h.value.clone()) else {
                return true;
            };
            !suppress.remove(&(out, v))
        });
        self.suppressed += (before - records.len()) as u64;
    }

    /// The task committed bounds, and its input up to `next` (the next offset per input, by
    /// `Origin::topic`; `None` where it did not move): the numbering starts again, unless
    /// records of the previous owner are still to be met. Those past which the input has
    /// gone were not written again: the stores had their inputs applied already (their
    /// changelogs went further than the offsets), or the output was not the same (a clock, a
    /// wall-clock timer); they are forgotten.
    pub fn committed(&mut self, next: &[Option<i64>]) {
        for (i, n) in next.iter().enumerate() {
            if let Some(n) = n {
                self.next.insert(i as u32, *n);
            }
        }
        if !self.suppress.is_empty() {
            let passed =
                self.suppress_until.iter().all(|(input, until)| self.next.get(input).is_some_and(|n| n > until));
            if !passed {
                return;
            }
            tracing::warn!(
                records = self.suppress.len(),
                "records the previous owner of the task wrote were not produced again; they stay in the topic. \
                 Either its stores already held their updates (restored from changelogs written after the last \
                 offset commit, e.g. when a store write failed), or its output was not deterministic (a clock, a \
                 wall-clock timer), and what replaced them was written too"
            );
            self.suppress.clear();
            self.suppress_until.clear();
        }
        self.seqs.clear();
    }
}

/// What a thread keeps for exactly-once: the bounds of the partitions its tasks write, and
/// each task's lineages.
#[derive(Debug, Default)]
pub struct ThreadLineage {
    /// The bounds topic.
    pub topic: String,
    pub bounds: Bounds,
    pub tasks: BTreeMap<(usize, i32), TaskLineage>,
}

impl ThreadLineage {
    pub fn new(application_id: &str) -> Self {
        Self { topic: bounds_topic(application_id), ..Default::default() }
    }

    /// The bounds entry of `task` about to commit `inputs`: keyed by the task's name.
    pub fn entry(&self, task: (usize, i32), inputs: &Bounds) -> Option<Record> {
        let lineage = self.tasks.get(&task)?;
        let bounds: Bounds = self
            .bounds
            .iter()
            .filter(|((t, _), _)| lineage.outputs.iter().any(|o| o == t))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let key = super::Task::name(task.0, task.1);
        // Wall-clock time: a topic's retention goes by its records' timestamps.
        let now = super::wall_clock_ms();
        Some(Record::new(Some(key.as_bytes()), Some(encode_entry(inputs, &bounds).as_bytes()), now))
    }

    /// Raises the bound of `topic[partition]` to `offset`.
    pub fn raise(&mut self, topic: &str, partition: i32, offset: i64) {
        match self.bounds.get_mut(&(topic.to_owned(), partition)) {
            Some(b) => *b = (*b).max(offset),
            None => {
                self.bounds.insert((topic.to_owned(), partition), offset);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(topic: u32, offset: i64) -> Record {
        Record { origin: crate::record::Origin { topic, partition: 3, offset }, ..Default::default() }
    }

    #[test]
    fn bounds_read_back_from_their_entries() {
        let mut b = Bounds::new();
        b.insert(("out".to_owned(), 0), 15);
        b.insert(("out".to_owned(), 1), 20);
        b.insert(("app-x-repartition".to_owned(), 0), 3);
        let text = encode_bounds(&b);
        assert_eq!(text, "wasp-eos1;app-x-repartition=0:3;out=0:15,1:20");
        assert_eq!(decode_bounds(&text), Some(b.clone()));
        assert_eq!(decode_bounds("wasp-eos1"), Some(Bounds::new()));
        assert_eq!(decode_bounds(""), None);
        assert_eq!(decode_bounds("something else"), None);
        assert_eq!(decode_bounds("wasp-eos1;out=0:x"), None);
        let inputs: Bounds = [(("in".to_owned(), 2), 40)].into();
        let entry = encode_entry(&inputs, &b);
        assert_eq!(decode_entry(entry.as_bytes()), Some((inputs, b)));
        assert_eq!(decode_entry(b"wasp-eos1;in=2:40"), None);
    }

    #[test]
    fn records_of_one_input_are_numbered_per_topic_and_the_numbering_restarts_at_a_commit() {
        let mut l = TaskLineage::new(&["in".to_owned()], 3, vec!["a".to_owned(), "b".to_owned()], BTreeSet::new());
        let mut a = vec![record(0, 7), record(0, 7), record(0, 8)];
        l.stamp("a", &mut a);
        let mut b = vec![record(0, 7)];
        l.stamp("b", &mut b);
        let lineage = |r: &Record| {
            let v = r.headers.iter().find(|h| h.name == LINEAGE_HEADER).and_then(|h| h.value.clone()).expect("stamped");
            decode_position(&v).map(|(u, p)| (u.to_owned(), p.offset, p.seq)).expect("decodes")
        };
        let got: Vec<_> = a.iter().chain(&b).map(lineage).collect();
        assert_eq!(
            got,
            [
                ("in/3".to_owned(), 7, 0),
                ("in/3".to_owned(), 7, 1),
                ("in/3".to_owned(), 8, 0),
                ("in/3".to_owned(), 7, 0)
            ]
        );
        l.committed(&[Some(9)]);
        let mut again = vec![record(0, 7)];
        l.stamp("a", &mut again);
        assert_eq!(lineage(&again[0]).2, 0);
    }

    #[test]
    fn what_the_previous_owner_wrote_past_the_commit_is_not_written_again() {
        let outputs = vec!["out".to_owned()];
        // The run that crashed: input offsets 10..13 written, committed up to 10.
        let mut crashed = TaskLineage::new(&["in".to_owned()], 0, outputs.clone(), BTreeSet::new());
        let mut written: Vec<Record> = (10..13).map(|o| record(0, o)).collect();
        crashed.stamp("out", &mut written);
        // The new owner reads back what lies past the bounds of the last commit (up to 10).
        let mut next = TaskLineage::new(&["in".to_owned()], 0, outputs, BTreeSet::new());
        for r in &written {
            next.remember("out", r);
        }
        assert_eq!(next.pending(), 3);
        // It processes 10..15 again: 10..13 are met, 13 and 14 are new.
        let mut rerun: Vec<Record> = (10..15).map(|o| record(0, o)).collect();
        next.stamp("out", &mut rerun);
        let offsets: Vec<i64> = rerun.iter().map(|r| r.origin.offset).collect();
        assert_eq!(offsets, [13, 14]);
        assert_eq!((next.pending(), next.suppressed), (0, 3));
    }

    #[test]
    fn records_not_produced_again_are_forgotten_once_the_input_passed_them() {
        let mut crashed = TaskLineage::new(&["in".to_owned()], 0, vec!["out".to_owned()], BTreeSet::new());
        let mut written = vec![record(0, 10), record(0, 10)];
        crashed.stamp("out", &mut written);
        let mut next = TaskLineage::new(&["in".to_owned()], 0, vec!["out".to_owned()], BTreeSet::new());
        for r in &written {
            next.remember("out", r);
        }
        // The rerun writes one record for offset 10, not two.
        let mut rerun = vec![record(0, 10)];
        next.stamp("out", &mut rerun);
        assert!(rerun.is_empty());
        next.committed(&[Some(10)]);
        assert_eq!(next.pending(), 1, "not passed yet: still waiting");
        next.committed(&[Some(11)]);
        assert_eq!(next.pending(), 0, "passed: forgotten");
    }

    #[test]
    fn repartition_records_are_matched_by_their_position() {
        let repartitions: BTreeSet<String> = ["app-r".to_owned()].into();
        let mut next = TaskLineage::new(&["in".to_owned()], 0, vec!["app-r".to_owned()], repartitions);
        let positioned = |offset: i64, seq: u32| {
            let mut buf = BytesMut::new();
            encode_position(&mut buf, "in/0", Position { offset, seq });
            let mut r = record(0, offset);
            r.headers.push(Header { name: std::borrow::Cow::Borrowed(POSITION_HEADER), value: Some(buf.freeze()) });
            r
        };
        next.remember("app-r", &positioned(5, 0));
        next.remember("app-r", &positioned(5, 0));
        assert_eq!(next.pending(), 1);
        let mut rerun = vec![positioned(5, 0), positioned(5, 1)];
        next.stamp("app-r", &mut rerun);
        assert_eq!(rerun.len(), 1);
        assert!(rerun[0].headers.iter().all(|h| h.name != LINEAGE_HEADER), "repartitions carry no second header");
    }
}
