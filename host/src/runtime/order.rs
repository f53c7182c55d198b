//! A task's input when it reads several topics (a `merge`, a pipeline `from` several): its
//! records are buffered per topic and taken in timestamp order across them, as Kafka
//! Streams' `PartitionGroup` does, so what the task emits does not depend on how the source
//! interleaves its batches. A topic with nothing buffered holds the others back while the
//! source says more of it is coming (a local file not yet read to its end) or, when the
//! source cannot tell (Kafka), for up to `max_task_idle_ms` (Kafka Streams'
//! `max.task.idle.ms`; default 0: what is buffered goes on at once).

use std::collections::VecDeque;
use std::time::Instant;

use crate::record::Record;

/// The buffered input of one task, one queue per input topic (of the task's partition).
pub struct PartitionGroup {
    queues: Vec<Queue>,
}

struct Queue {
    topic: String,
    records: VecDeque<Record>,
    /// Since when the queue has been empty while another held records: the task's wait for
    /// it (`max_task_idle_ms`) counts from there, as Kafka Streams' idle deadline does. A
    /// record for it ends the wait; so does a time when the task had nothing buffered at all
    /// (the next record to come starts a new wait, not one that ran out while nothing did).
    idle_since: Option<Instant>,
    /// The source was asked to stop reading this topic while so much of it is buffered.
    paused: bool,
}

impl PartitionGroup {
    pub fn new(topics: &[String]) -> Self {
        let queues = topics
            .iter()
            .map(|t| Queue { topic: t.clone(), records: VecDeque::new(), idle_since: None, paused: false })
            .collect();
        Self { queues }
    }

    fn queue(&mut self, topic: &str) -> Option<&mut Queue> {
        self.queues.iter_mut().find(|q| q.topic == topic)
    }

    /// Buffers a batch of `topic`; returns how many records of it are buffered now.
    pub fn push(&mut self, topic: &str, records: Vec<Record>) -> usize {
        if records.is_empty() {
            return self.queue(topic).map_or(0, |q| q.records.len());
        }
        if self.is_empty() {
            for q in &mut self.queues {
                q.idle_since = None;
            }
        }
        match self.queue(topic) {
            Some(q) => {
                q.idle_since = None;
                q.records.extend(records);
                q.records.len()
            }
            None => 0,
        }
    }

    /// Records buffered in all.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.queues.iter().map(|q| q.records.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.queues.iter().all(|q| q.records.is_empty())
    }

    /// Marks `topic` as paused (`true`) or not at the source; returns whether that changed.
    pub fn set_paused(&mut self, topic: &str, paused: bool) -> bool {
        match self.queue(topic) {
            Some(q) if q.paused != paused => {
                q.paused = paused;
                true
            }
            _ => false,
        }
    }

    /// Topics paused at the source whose buffer has drained below `low`.
    pub fn drained(&self, low: usize) -> Vec<String> {
        self.queues.iter().filter(|q| q.paused && q.records.len() < low).map(|q| q.topic.clone()).collect()
    }

    /// The next run of records of one topic, at most `max`, taken in timestamp order across
    /// the topics (the earliest head first; on a tie, the topic listed first). `None` when
    /// nothing is buffered, or when a topic with nothing buffered holds the rest back:
    /// `waits(topic, idle_since)` says whether it does.
    pub fn next_run(&mut self, max: usize, waits: impl Fn(&str, Instant) -> bool) -> Option<(String, Vec<Record>)> {
        let mut run: Vec<Record> = Vec::new();
        let mut from: Option<usize> = None;
        while run.len() < max {
            if self.is_empty() {
                break;
            }
            let now = Instant::now();
            let mut held = false;
            for q in self.queues.iter_mut().filter(|q| q.records.is_empty()) {
                held |= waits(&q.topic, *q.idle_since.get_or_insert(now));
            }
            if held {
                break;
            }
            let next =
                self.queues.iter().enumerate().filter_map(|(i, q)| q.records.front().map(|r| (r.timestamp, i))).min();
            let Some((_, i)) = next else { break };
            if from.is_some_and(|f| f != i) {
                break;
            }
            from = Some(i);
            let q = &mut self.queues[i];
            if let Some(r) = q.records.pop_front() {
                run.push(r);
            }
        }
        let i = from?;
        Some((self.queues[i].topic.clone(), run))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ts: &[i64]) -> Vec<Record> {
        ts.iter().map(|&t| Record { timestamp: t, ..Default::default() }).collect()
    }

    fn runs(
        g: &mut PartitionGroup,
        max: usize,
        waits: impl Fn(&str, Instant) -> bool + Copy,
    ) -> Vec<(String, Vec<i64>)> {
        std::iter::from_fn(|| g.next_run(max, waits))
            .map(|(t, rs)| (t, rs.iter().map(|r| r.timestamp).collect()))
            .collect()
    }

    #[test]
    fn records_come_out_in_timestamp_order_across_topics_in_runs_per_topic() {
        let mut g = PartitionGroup::new(&["a".into(), "b".into()]);
        g.push("a", at(&[1, 3, 4, 9]));
        g.push("b", at(&[2, 3, 10]));
        let never = |_: &str, _: Instant| false;
        assert_eq!(
            runs(&mut g, 10, never),
            vec![
                ("a".into(), vec![1]),
                ("b".into(), vec![2]),
                // A tie goes to the topic listed first.
                ("a".into(), vec![3]),
                ("b".into(), vec![3]),
                ("a".into(), vec![4, 9]),
                ("b".into(), vec![10]),
            ]
        );
        assert!(g.is_empty());
    }

    #[test]
    fn an_empty_topic_that_waits_holds_the_others_back_and_runs_are_capped() {
        let mut g = PartitionGroup::new(&["a".into(), "b".into()]);
        g.push("a", at(&[1, 2, 3]));
        let b_waits = |t: &str, _: Instant| t == "b";
        assert_eq!(g.next_run(10, b_waits), None, "b has nothing yet and more is coming");
        assert_eq!(runs(&mut g, 2, |_, _| false), vec![("a".into(), vec![1, 2]), ("a".into(), vec![3])]);
        g.push("a", at(&[5]));
        g.push("b", at(&[4]));
        // b's only record goes; then b is empty and waits again, holding a's 5 back.
        assert_eq!(runs(&mut g, 10, b_waits), vec![("b".into(), vec![4])]);
        assert_eq!(g.len(), 1);
    }

    /// The wait for an empty topic counts from when the task first found it empty while
    /// another held records (Kafka Streams' idle deadline), not from when it last emptied:
    /// a record after a quiet spell waits its full `max_task_idle_ms` for the other topic.
    /// The clock starts again after the task had nothing buffered.
    #[test]
    fn the_wait_for_an_empty_topic_starts_when_another_has_records() {
        let mut g = PartitionGroup::new(&["a".into(), "b".into()]);
        let seen = std::cell::Cell::new(None);
        let note = |t: &str, since: Instant| {
            if t == "b" {
                seen.set(Some(since));
            }
            false
        };
        assert_eq!(g.next_run(10, note), None, "nothing buffered: nothing waits");
        assert_eq!(seen.get(), None);
        g.push("a", at(&[1]));
        assert_eq!(g.next_run(10, note).map(|(t, rs)| (t, rs.len())), Some(("a".into(), 1)));
        let first = seen.get().expect("b was found empty while a had a record");
        std::thread::sleep(std::time::Duration::from_millis(2));
        g.push("a", at(&[2]));
        g.next_run(10, note);
        let second = seen.get().expect("b was found empty again");
        assert!(second > first, "after a time with nothing buffered, the wait starts again");
        // While a keeps records, b's wait goes on from where it started.
        g.push("a", at(&[3, 4]));
        let held_since = std::cell::Cell::new(None);
        let hold = |t: &str, since: Instant| {
            held_since.set(Some(since));
            t == "b"
        };
        assert_eq!(g.next_run(10, hold), None);
        let started = held_since.get().expect("b waits");
        assert!(started > second, "b waits from when a's records came after an empty time");
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_eq!(g.next_run(10, hold), None);
        assert_eq!(held_since.get(), Some(started), "the wait goes on from where it started");
        // A record of b ends its wait.
        g.push("b", at(&[5]));
        assert_eq!(runs(&mut g, 10, |_, _| false), vec![("a".into(), vec![3, 4]), ("b".into(), vec![5])]);
    }
}
