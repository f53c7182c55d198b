//! A stream thread: it owns its source (on Kafka, a consumer that is one member of the
//! application's group, as each Kafka Streams `StreamThread` is), its sink (a producer), its
//! tasks and its commits. Nothing is shared with other threads on the batch path but the
//! read-only topology, the plugin slots (read with one atomic load per batch) and the metrics.
//!
//! The loop: close the tasks of revoked partitions; resume tasks whose retry is due; poll a
//! batch and run it through its task; send the outputs; let wall-clock timers fire; commit
//! every commit interval. A task that waits for a retry is parked: its partitions are paused
//! at the source, batches already read for it wait in its backlog, and its offsets are not
//! committed past the batch that failed, while the thread's other tasks go on.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::commit::{Committed, commit, open_store};
use super::eos::{Bounds, TaskLineage, ThreadLineage, decode_entry, output_topics};
use super::order::PartitionGroup;
use super::task::{Task, TaskOutput};
use super::{RunOptions, RunStats, ThreadIo};
use crate::io::{InputBatch, Poll};
use crate::state::{StateError, StoreSpec};
use crate::topology::Topology;
use crate::wasm::PluginDirectory;

/// How long a task may wait for its stores, held by a task of another thread of this
/// process that has not closed yet (a rebalance moved the partition between threads).
const LOCK_WAIT: Duration = Duration::from_secs(60);
/// How often the loop commits while its source is idle, at most.
const IDLE_COMMIT: Duration = Duration::from_millis(100);

/// A task that cannot take batches now: parked for a retry, or not yet open because its
/// stores are still held by another thread. Its batches wait here, in order.
#[derive(Default)]
struct Held {
    /// Batches of the task that ran but whose parked step has not finished:
    /// `(topic, partition, next offset, records)`.
    running: Vec<(String, i32, i64, usize)>,
    /// Batches read for the task that have not run yet.
    backlog: VecDeque<InputBatch>,
    /// Set while the task's stores are held elsewhere: when the wait began.
    locked_since: Option<Instant>,
}

/// Tells the threads to stop: the user's stop (SIGTERM, Ctrl-C), or another thread failed.
/// And counts the threads through their last commit, so that none leaves the consumer group
/// before the others have committed: leaving starts a rebalance, and a commit during a
/// rebalance is refused.
pub struct StopFlags<'a> {
    pub user: &'a AtomicBool,
    pub failed: &'a AtomicBool,
    pub committed: &'a AtomicUsize,
    /// Threads whose consumer has joined the group.
    pub joined: &'a AtomicUsize,
    pub threads: usize,
}

/// How long a thread holds its first batches while the process's other threads join the
/// group, at most.
const JOIN_WAIT: Duration = Duration::from_secs(10);

/// How long a thread waits for the others' last commits before it leaves the group anyway.
const LAST_COMMIT_WAIT: Duration = Duration::from_secs(15);

/// How long a thread tries again a last commit the group refused (less than
/// [`LAST_COMMIT_WAIT`], so that the others are still in the group meanwhile).
const LAST_COMMIT_RETRY: Duration = Duration::from_secs(10);

/// How long a thread serves the group's rebalance between two tries of its last commit.
const LAST_COMMIT_STEP: Duration = Duration::from_millis(250);

impl StopFlags<'_> {
    fn stopped(&self) -> bool {
        self.user.load(Ordering::Relaxed) || self.failed.load(Ordering::Relaxed)
    }

    /// This thread made its last commit (or failed); waits for the others to.
    fn last_commit_done(&self) {
        self.committed.fetch_add(1, Ordering::AcqRel);
        let t = Instant::now();
        while self.committed.load(Ordering::Acquire) < self.threads && t.elapsed() < LAST_COMMIT_WAIT {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

struct StreamThread<'a> {
    /// The thread's index in the process.
    index: usize,
    topology: &'a Arc<Topology>,
    plugins: &'a PluginDirectory,
    options: &'a RunOptions,
    io: ThreadIo,
    /// Interactive queries for this thread's tasks' stores.
    inbox: std::sync::mpsc::Receiver<super::query::Request>,
    tasks: BTreeMap<(usize, i32), Task>,
    held: BTreeMap<(usize, i32), Held>,
    /// The next offset to commit per input partition, for the batches that are done.
    offsets: BTreeMap<(String, i32), i64>,
    stats: RunStats,
    last_commit: Instant,
    /// Records were sent since the last flush.
    unflushed: bool,
    /// Batches polled while the threads joined the group, not run yet.
    early: VecDeque<InputBatch>,
    /// Records the tasks' record caches held at the last count ([`Self::report_held`]).
    held_records: usize,
    /// The buffered input of each task that reads several topics, taken in timestamp order.
    groups: BTreeMap<(usize, i32), PartitionGroup>,
    /// Exactly-once output ([`super::eos`]): on Kafka under `exactly_once`.
    lineage: Option<ThreadLineage>,
}

/// Batches of one topic a task that reads several may buffer before that topic is paused at
/// the source (so that the source reads the others, which the task waits for).
const GROUP_BATCHES: usize = 4;

/// Runs one stream thread until its source is exhausted or `stop` says so. In-flight batches
/// finish and are committed before it returns.
pub fn run(
    index: usize,
    topology: &Arc<Topology>,
    plugins: &PluginDirectory,
    io: ThreadIo,
    options: &RunOptions,
    stop: &StopFlags<'_>,
) -> anyhow::Result<RunStats> {
    let mut t = StreamThread {
        index,
        topology,
        plugins,
        options,
        io,
        inbox: options.queries.register(),
        tasks: BTreeMap::new(),
        held: BTreeMap::new(),
        offsets: BTreeMap::new(),
        stats: RunStats::default(),
        last_commit: Instant::now(),
        unflushed: false,
        early: VecDeque::new(),
        held_records: 0,
        groups: BTreeMap::new(),
        lineage: None,
    };
    if options.guarantee == crate::manifest::ProcessingGuarantee::ExactlyOnce && t.io.restorer.is_some() {
        t.io.sink.track_all_acks();
        t.lineage = Some(ThreadLineage::new(&topology.application_id));
    }
    // A thread that failed commits nothing more: what it did since its last commit is done
    // again by whoever reads the partitions next.
    let result = t.run_loop(stop);
    let committed = if result.is_ok() { t.commit_last() } else { Ok(()) };
    stop.last_commit_done();
    let closed = t.io.source.close();
    result?;
    committed?;
    closed?;
    Ok(t.stats)
}

impl StreamThread<'_> {
    fn run_loop(&mut self, stop: &StopFlags<'_>) -> anyhow::Result<()> {
        self.join(stop)?;
        while !stop.stopped() {
            self.close_revoked()?;
            self.sync_assignment()?;
            self.resume_held()?;
            let polled = match self.early.pop_front() {
                Some(b) => Poll::Batch(b),
                None => self.io.source.poll(self.options.batch_size)?,
            };
            match polled {
                Poll::Batch(batch) => {
                    let key = self.task_key(&batch)?;
                    if self.topology.subtopologies[key.0].source_topics.len() > 1 {
                        self.buffer(key, batch)?;
                    } else if let Some(h) = self.held.get_mut(&key) {
                        h.backlog.push_back(batch);
                    } else {
                        self.run_batch(key, batch)?;
                    }
                    self.tick()?;
                    if self.last_commit.elapsed() >= self.options.commit_interval || self.cache_full(key) {
                        self.commit()?;
                    }
                }
                Poll::Idle => {
                    // A topic a task waited for may have come to its end, or waited long enough.
                    self.drain_groups()?;
                    self.tick()?;
                    // Caught up: what was sent leaves now (a file being tailed shows it), and
                    // the work done is committed soon, not a whole interval later.
                    let due = self.last_commit.elapsed() >= self.options.commit_interval.min(IDLE_COMMIT);
                    if (!self.offsets.is_empty() || self.held_records > 0) && due {
                        self.commit()?;
                    } else if self.unflushed {
                        self.io.sink.flush().context("flushing the outputs")?;
                        self.unflushed = false;
                    }
                }
                Poll::Exhausted if self.held.is_empty() => break,
                Poll::Exhausted => std::thread::sleep(self.until_next_resume()),
            }
            self.report_held();
            self.answer_queries();
        }
        Ok(())
    }

    /// Answers the interactive queries waiting, from the stores of this thread's tasks.
    fn answer_queries(&mut self) {
        while let Ok(q) = self.inbox.try_recv() {
            let mut found = None::<Vec<crate::state::QueryRow>>;
            let mut failed = None;
            for task in self.tasks.values_mut() {
                match task.query(&q.store, &q.query, q.limit) {
                    Some(Ok(mut rows)) => found.get_or_insert_with(Vec::new).append(&mut rows),
                    Some(Err(e)) => failed = Some(e.to_string()),
                    None => {}
                }
            }
            let _ = q.reply.send(match failed {
                Some(e) => Err(e),
                None => Ok(found),
            });
        }
    }

    /// Polls without running anything until every thread of the process has joined the group
    /// (or [`JOIN_WAIT`] passed): a thread that ran batches before the others joined would
    /// lose that work, uncommitted, to the rebalance their joining starts. What the first
    /// polls return waits in `early`, minus what that rebalance revokes.
    fn join(&mut self, stop: &StopFlags<'_>) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut counted = false;
        loop {
            if !counted && self.io.source.joined() {
                stop.joined.fetch_add(1, Ordering::AcqRel);
                counted = true;
            }
            if stop.stopped() || started.elapsed() > JOIN_WAIT {
                return Ok(());
            }
            if counted && stop.joined.load(Ordering::Acquire) >= stop.threads {
                return Ok(());
            }
            // Nothing ran yet, so nothing is committed first.
            let revoked = self.io.source.take_revoked();
            self.early.retain(|b| !revoked.iter().any(|(t, p)| *t == b.topic && *p == b.partition));
            self.io.source.release_revoked()?;
            match self.io.source.poll(self.options.batch_size)? {
                Poll::Batch(b) => self.early.push_back(b),
                Poll::Exhausted => return Ok(()),
                Poll::Idle => {}
            }
        }
    }

    /// The last commit, before the thread leaves the group. A commit the group refuses
    /// (a rebalance in progress: another member joined or left) is tried again once the
    /// rebalance is served, for [`LAST_COMMIT_RETRY`] at most: what is left uncommitted is
    /// processed again by whoever owns the partitions next.
    fn commit_last(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        while self.commit()? == Committed::OffsetsRefused {
            if started.elapsed() > LAST_COMMIT_RETRY {
                tracing::warn!(
                    offsets = ?self.offsets,
                    "the group refused the last commit; these partitions are processed again from their last committed offsets"
                );
                break;
            }
            tracing::info!("the group refused the last commit; it is tried again once the rebalance is served");
            self.io.source.settle(LAST_COMMIT_STEP)?;
            self.close_revoked()?;
        }
        Ok(())
    }

    fn commit(&mut self) -> anyhow::Result<Committed> {
        // exactly_once_v2: partitions may have been taken away in the poll just before; the
        // open transaction then holds work their new owners do again, and must not commit.
        if self.transactional() {
            self.close_revoked()?;
        }
        // Record caches first: what they held goes downstream before the input that caused
        // it is committed. A step that parks its task during the flush holds the task.
        let keys: Vec<(usize, i32)> = self.tasks.keys().copied().collect();
        for key in keys {
            let Some(task) = self.tasks.get_mut(&key) else { continue };
            let output = task.flush()?;
            let parked = task.parked_until().is_some();
            self.emit(key, output)?;
            if parked && !self.held.contains_key(&key) {
                self.held.insert(key, Held::default());
                self.pause(key, true);
            }
        }
        self.report_held();
        let transactional = self.transactional();
        let committed = commit(
            &mut self.tasks,
            self.io.source.as_mut(),
            self.io.sink.as_mut(),
            &mut self.offsets,
            &mut self.stats,
            self.lineage.as_mut(),
            transactional,
        )?;
        if committed == Committed::Aborted {
            self.rewind()?;
        }
        self.last_commit = Instant::now();
        self.unflushed = false;
        for (topic, partition, lag) in self.io.source.lag() {
            self.options.metrics.consumer_lag(&topic, partition, lag);
        }
        Ok(committed)
    }

    /// exactly_once_v2 on Kafka: the thread's outputs, changelogs and offsets commit in
    /// transactions.
    fn transactional(&self) -> bool {
        self.options.guarantee == crate::manifest::ProcessingGuarantee::ExactlyOnceV2 && self.io.restorer.is_some()
    }

    /// exactly_once_v2: the transaction was aborted, so what the thread did since its last
    /// commit is not written. Its tasks close without committing (their stores drop their
    /// pending writes; a store's files hold only committed work) and the consumer goes back
    /// to the committed offsets; the tasks open again with their next batch, from their
    /// stores and the committed records of their changelogs.
    fn rewind(&mut self) -> anyhow::Result<()> {
        let tasks = self.tasks.len() + self.held.len();
        self.tasks.clear();
        self.held.clear();
        self.groups.clear();
        self.early.clear();
        self.offsets.clear();
        self.io.source.rewind()?;
        self.report_held();
        self.stats.aborted_transactions += 1;
        tracing::warn!(tasks, "transaction aborted: the thread's tasks go back to their last commit");
        Ok(())
    }

    /// Tells the source how many records the tasks' record caches hold (local mode does not
    /// end while any are held).
    fn report_held(&mut self) {
        let held: usize = self.tasks.values().map(Task::held).sum();
        if held != self.held_records {
            self.io.source.hold(held as i64 - self.held_records as i64);
            self.held_records = held;
        }
    }

    /// Whether the stores of the task that just ran hold more pending writes than their
    /// cache: then the thread commits now.
    fn cache_full(&mut self, key: (usize, i32)) -> bool {
        let mut full = false;
        if let Some(t) = self.tasks.get_mut(&key) {
            t.with_stores(&mut |s| full |= s.pending_bytes() > s.spec.cache_bytes);
        }
        full
    }

    fn task_key(&self, batch: &InputBatch) -> anyhow::Result<(usize, i32)> {
        let sub = self
            .topology
            .subtopologies
            .iter()
            .find(|s| s.source_topics.contains(&batch.topic))
            .with_context(|| format!("no sub-topology reads topic `{}`", batch.topic))?;
        Ok((sub.id, batch.partition))
    }

    /// Closes the tasks of partitions taken away. As Kafka Streams does on revocation, what
    /// they did is committed first, while the group waits (the partitions are released to it
    /// after): their new owners start where they stopped. A commit the group refuses anyway
    /// (this member was dropped from it) leaves that work to the new owner, whose stores skip
    /// what they applied. Under exactly_once_v2 the open transaction is aborted instead.
    fn close_revoked(&mut self) -> anyhow::Result<()> {
        let revoked = self.io.source.take_revoked();
        if revoked.is_empty() {
            return self.io.source.release_revoked();
        }
        let owned = revoked.iter().any(|(topic, partition)| {
            self.topology.subtopologies.iter().find(|s| s.source_topics.contains(topic)).is_some_and(|s| {
                self.tasks.contains_key(&(s.id, *partition)) || self.held.contains_key(&(s.id, *partition))
            })
        });
        if owned && !self.transactional() && self.commit()? == Committed::OffsetsRefused {
            tracing::info!(partitions = ?revoked, "the commit of revoked tasks was refused; their new owners redo it");
        }
        let mut any = false;
        for (topic, partition) in revoked {
            self.early.retain(|b| !(b.topic == topic && b.partition == partition));
            let Some(sub) = self.topology.subtopologies.iter().find(|s| s.source_topics.contains(&topic)) else {
                continue;
            };
            let key = (sub.id, partition);
            let closed = self.tasks.remove(&key).is_some();
            if let Some(l) = &mut self.lineage {
                l.tasks.remove(&key);
            }
            let held = self.held.remove(&key).is_some();
            // Records buffered for it were never run: the new owner reads them again.
            self.groups.remove(&key);
            if closed || held {
                self.offsets.retain(|(t, p), _| !(sub.source_topics.contains(t) && *p == partition));
                tracing::info!(task = %Task::name(sub.id, partition), "task closed: partition revoked");
                any = true;
            }
        }
        // Exactly-once: what the closed tasks sent lands before their new owners read their
        // output back (as far as this thread gets here first).
        if any
            && self.lineage.is_some()
            && let Err(e) = self.io.sink.flush()
        {
            tracing::warn!(error = %format!("{e:#}"), "flushing the outputs of revoked tasks");
        }
        // exactly_once_v2: the open transaction holds what the closed tasks did since the last
        // commit, which their new owners do again: it is aborted, and the thread goes back to
        // its last commit (Kafka Streams commits on revocation instead; this redoes at most
        // one commit interval).
        if any && self.transactional() {
            self.io.sink.abort_transaction().context("aborting the transaction of revoked tasks")?;
            self.rewind()?;
        }
        self.io.source.release_revoked()
    }

    /// When the group changed what this thread's consumer owns: reports the tasks to the
    /// process's [`super::hosts::Hosts`] (for "which instance hosts this key"), and opens the
    /// new ones now, as Kafka Streams does on assignment, so that their stores are restored
    /// and queryable before (or without) new input. A task whose stores another thread of
    /// the process still holds opens with its first batch instead.
    fn sync_assignment(&mut self) -> anyhow::Result<()> {
        let Some(parts) = self.io.source.take_assignment() else { return Ok(()) };
        let mut keys = std::collections::BTreeSet::new();
        for (topic, partition) in parts {
            if let Some(sub) = self.topology.subtopologies.iter().find(|s| s.source_topics.contains(&topic)) {
                keys.insert((sub.id, partition));
            }
        }
        self.options.hosts.set_thread(self.index, keys.clone());
        for key in keys {
            if self.tasks.contains_key(&key) || self.held.contains_key(&key) {
                continue;
            }
            match self.open_task(key) {
                Ok(task) => {
                    self.tasks.insert(key, task);
                }
                Err(e) if is_locked(&e) => {
                    // Retried by the loop (`resume_held`) until it opens, input or not: its
                    // stores are then restored and queryable, as for a task that opens now.
                    tracing::debug!(task = %Task::name(key.0, key.1), "stores held by a closing task; opened later");
                    self.held.entry(key).or_default().locked_since.get_or_insert_with(Instant::now);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Runs a batch through its task, opening the task first if it is new.
    fn run_batch(&mut self, key: (usize, i32), batch: InputBatch) -> anyhow::Result<()> {
        if !self.tasks.contains_key(&key) {
            match self.open_task(key) {
                Ok(task) => {
                    self.tasks.insert(key, task);
                }
                Err(e) if is_locked(&e) => {
                    tracing::info!(task = %Task::name(key.0, key.1), "stores held by a closing task; waiting");
                    let held = self.held.entry(key).or_default();
                    held.locked_since = Some(Instant::now());
                    held.backlog.push_back(batch);
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        if !self.based(key, &batch)? {
            // The group refused the base commit (a rebalance): the batch waits for the next
            // turn, or goes if the partition was taken away.
            self.early.push_front(batch);
            return Ok(());
        }
        let Some(task) = self.tasks.get_mut(&key) else { return Ok(()) };
        let n = batch.records.len();
        let next_offset = batch.records.last().map(|r| r.origin.offset + 1);
        let output = task.process(&batch.topic, batch.records)?;
        let parked = task.parked_until().is_some();
        self.stats.records_in += n as u64;
        self.stats.batches += 1;
        self.emit(key, output)?;
        if parked {
            let held = self.held.entry(key).or_default();
            held.running.push((batch.topic, batch.partition, next_offset.unwrap_or(-1), n));
            self.pause(key, true);
        } else {
            self.done(&batch.topic, batch.partition, next_offset, n);
        }
        Ok(())
    }

    /// A batch is through its task: its offset may be committed.
    fn done(&mut self, topic: &str, partition: i32, next_offset: Option<i64>, n: usize) {
        if let Some(offset) = next_offset.filter(|o| *o >= 0) {
            self.offsets.insert((topic.to_owned(), partition), offset);
        }
        self.io.source.processed(topic, partition, n);
    }

    fn open_task(&mut self, key: (usize, i32)) -> anyhow::Result<Task> {
        // Queries of its stores answer "restoring" meanwhile.
        let topology = self.topology.clone();
        let stores: Vec<&str> =
            topology.subtopologies[key.0].nodes.iter().flat_map(|&id| topology.node(id).op.stores()).collect();
        self.options.queries.restoring(&stores, true);
        let started = std::time::Instant::now();
        let task = self.build_task(key);
        let task = match task {
            Ok(t) if self.lineage.is_some() => self.open_lineage(key, &t).map(|()| t),
            other => other,
        };
        self.options.queries.restoring(&stores, false);
        if task.is_ok() {
            tracing::info!(task = %Task::name(key.0, key.1), ms = started.elapsed().as_millis() as u64, "task opened");
        }
        task
    }

    /// Exactly-once: reads back what the task's previous owner wrote past its last commit,
    /// so that it is not written again, and notes the inputs with no base committed yet.
    fn open_lineage(&mut self, key: (usize, i32), task: &Task) -> anyhow::Result<()> {
        let (Some(lineage), Some(reader)) = (self.lineage.as_mut(), self.io.restorer.as_deref_mut()) else {
            return Ok(());
        };
        let outputs = output_topics(self.topology, key.0);
        let repartitions = self.topology.repartition_topics().into_iter().map(str::to_owned).collect();
        let mut tl = TaskLineage::new(&task.topics, key.1, outputs.clone(), repartitions);
        // Nothing the task writes from now on lies before the partitions' ends.
        let mut ends = BTreeMap::new();
        for topic in &outputs {
            for (p, end) in reader.ends(topic)? {
                lineage.raise(topic, p, end);
                ends.insert((topic.clone(), p), end);
            }
        }
        // The bounds of the task's last commit: its latest entry for the offsets its group
        // committed. Inputs with no entry commit a base with their first batch.
        let mut committed = Bounds::new();
        let mut next = Vec::new();
        for topic in &task.topics {
            let c = reader.committed(topic, key.1)?;
            next.push(c);
            if let Some(o) = c {
                committed.insert((topic.clone(), key.1), o);
            }
        }
        let found = latest_entry(reader, &lineage.topic, &Task::name(key.0, key.1), &committed)?;
        let bounds = match found {
            Some((_, bounds)) => {
                for topic in task.topics.iter().filter(|t| !committed.contains_key(&((*t).clone(), key.1))) {
                    tl.unbased.insert((topic.clone(), key.1));
                }
                bounds
            }
            None => {
                for topic in &task.topics {
                    tl.unbased.insert((topic.clone(), key.1));
                }
                Bounds::new()
            }
        };
        for ((topic, p), from) in &bounds {
            let Some(&to) = ends.get(&(topic.clone(), *p)) else { continue };
            if to > *from && tl.outputs().contains(topic) {
                reader.read(topic, *p, (*from, Some(to)), &mut |_, r| {
                    tl.remember(topic, &r);
                    Ok(())
                })?;
            }
        }
        tl.committed(&next);
        if tl.pending() > 0 {
            tracing::info!(
                task = %Task::name(key.0, key.1),
                records = tl.pending(),
                "the task's previous owner wrote records past its last commit: they are not written again"
            );
        }
        lineage.tasks.insert(key, tl);
        Ok(())
    }

    /// Exactly-once: an input partition's first batch commits a base (its first offset, with
    /// a bounds entry) before the task writes anything. `Ok(false)` if the group refused it.
    fn based(&mut self, key: (usize, i32), batch: &InputBatch) -> anyhow::Result<bool> {
        let Some(lineage) = self.lineage.as_mut() else { return Ok(true) };
        let Some(tl) = lineage.tasks.get(&key).filter(|tl| !tl.unbased.is_empty()) else { return Ok(true) };
        let Some(first) = batch.records.first().map(|r| r.origin.offset) else { return Ok(true) };
        // Past each input's first batch the set is empty: no key is built per batch.
        let part = (batch.topic.clone(), batch.partition);
        if !tl.unbased.contains(&part) {
            return Ok(true);
        }
        let offsets = BTreeMap::from([(part.clone(), first)]);
        let Some(entry) = lineage.entry(key, &offsets) else { return Ok(true) };
        self.io.sink.send_to(&lineage.topic, 0, &[entry])?;
        self.io.sink.flush().context("waiting for the exactly-once base to be acknowledged")?;
        let committed = self.io.source.commit(&offsets)?;
        if committed && let Some(tl) = lineage.tasks.get_mut(&key) {
            tl.unbased.remove(&part);
        }
        Ok(committed)
    }

    fn build_task(&mut self, (sub, partition): (usize, i32)) -> anyhow::Result<Task> {
        let name = Task::name(sub, partition);
        let (topology, options, stats) = (self.topology, self.options, &mut self.stats);
        let mut restorer = self.io.restorer.as_deref_mut();
        let mut open = |spec: &StoreSpec| {
            let reader = restorer.as_deref_mut().map(|r| r as &mut dyn crate::io::ChangelogReader);
            open_store(topology, spec, &name, partition, options, reader, stats)
        };
        let lookup = |n: &str| self.plugins.get(n);
        let task = Task::with_globals(
            topology.clone(),
            sub,
            partition,
            &lookup,
            &mut open,
            &options.metrics,
            &options.globals,
        )
        .with_context(|| format!("starting task {name}"))?;
        let mut task = task;
        task.set_codecs(options.codecs.clone());
        tracing::debug!(task = %name, "task started");
        Ok(task)
    }

    /// Pauses (or resumes) reading the partitions of a task's input topics.
    fn pause(&mut self, (sub, partition): (usize, i32), pause: bool) {
        for topic in &self.topology.subtopologies[sub].source_topics {
            if pause {
                self.io.source.pause(topic, partition);
            } else {
                self.io.source.resume(topic, partition);
            }
        }
    }

    /// Resumes the held tasks whose time has come: a parked step retries, a task whose stores
    /// were held elsewhere opens; then their backlogs run, until one parks again.
    fn resume_held(&mut self) -> anyhow::Result<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        let keys: Vec<(usize, i32)> = self.held.keys().copied().collect();
        for key in keys {
            if let Some(task) = self.tasks.get_mut(&key) {
                if task.parked_until().is_some_and(|t| t > now) {
                    continue;
                }
                let output = task.resume(now)?;
                let parked = task.parked_until().is_some();
                self.emit(key, output)?;
                if parked {
                    continue;
                }
                let running = self.held.get_mut(&key).map(|h| std::mem::take(&mut h.running)).unwrap_or_default();
                for (topic, partition, next, n) in running {
                    self.done(&topic, partition, Some(next), n);
                }
            } else {
                let since = self.held.get(&key).and_then(|h| h.locked_since);
                match self.open_task(key) {
                    Ok(task) => {
                        self.tasks.insert(key, task);
                    }
                    Err(e) if is_locked(&e) => {
                        if since.is_some_and(|s| s.elapsed() > LOCK_WAIT) {
                            return Err(e.context(format!("waited {LOCK_WAIT:?} for the stores")));
                        }
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            // The task is free again: its backlog runs, in order, until it parks again.
            while let Some(batch) = self.held.get_mut(&key).and_then(|h| h.backlog.pop_front()) {
                self.run_batch(key, batch)?;
                if self.tasks.get(&key).is_some_and(|t| t.parked_until().is_some()) {
                    break;
                }
            }
            let free = self.held.get(&key).is_some_and(|h| h.backlog.is_empty() && h.running.is_empty());
            if free {
                self.held.remove(&key);
                self.pause(key, false);
                self.drain(key)?;
            }
        }
        Ok(())
    }

    /// Buffers a batch of a task that reads several topics, and runs what can run. A topic
    /// with much buffered is paused at the source, so that it reads the ones the task waits
    /// for.
    fn buffer(&mut self, key: (usize, i32), batch: InputBatch) -> anyhow::Result<()> {
        let topology = self.topology;
        let group =
            self.groups.entry(key).or_insert_with(|| PartitionGroup::new(&topology.subtopologies[key.0].source_topics));
        let buffered = group.push(&batch.topic, batch.records);
        if buffered >= GROUP_BATCHES * self.options.batch_size && group.set_paused(&batch.topic, true) {
            self.io.source.pause(&batch.topic, batch.partition);
        }
        self.drain(key)
    }

    /// Runs the buffered records of a task that reads several topics, in timestamp order,
    /// until a topic with nothing buffered holds them back. Not while the task is held (a
    /// retry, stores not yet free): its records wait in the buffer, not in its backlog.
    fn drain(&mut self, key: (usize, i32)) -> anyhow::Result<()> {
        if self.held.contains_key(&key) {
            return Ok(());
        }
        let Some(mut group) = self.groups.remove(&key) else { return Ok(()) };
        let idle = self.options.max_task_idle;
        let result = loop {
            let source = &self.io.source;
            let waits = |topic: &str, since: Instant| match source.caught_up(topic, key.1) {
                Some(caught_up) => !caught_up,
                None => since.elapsed() < idle,
            };
            let Some((topic, records)) = group.next_run(self.options.batch_size, waits) else { break Ok(()) };
            if let Err(e) = self.run_batch(key, InputBatch { topic, partition: key.1, records }) {
                break Err(e);
            }
            if self.held.contains_key(&key) {
                break Ok(());
            }
        };
        for topic in group.drained(self.options.batch_size) {
            group.set_paused(&topic, false);
            self.io.source.resume(&topic, key.1);
        }
        self.groups.insert(key, group);
        result
    }

    /// [`Self::drain`] for every task with records buffered.
    fn drain_groups(&mut self) -> anyhow::Result<()> {
        let keys: Vec<(usize, i32)> = self.groups.iter().filter(|(_, g)| !g.is_empty()).map(|(k, _)| *k).collect();
        for key in keys {
            self.drain(key)?;
        }
        Ok(())
    }

    /// How long to wait for the next parked task's retry (at most 10 ms).
    fn until_next_resume(&self) -> Duration {
        let now = Instant::now();
        let next = self.tasks.values().filter_map(Task::parked_until).min();
        next.map_or(Duration::from_millis(10), |t| t.saturating_duration_since(now)).min(Duration::from_millis(10))
    }

    /// Sends what a task produced (under exactly-once, with its lineage and without what the
    /// task's previous owner wrote already), and counts it.
    fn emit(&mut self, key: (usize, i32), output: TaskOutput) -> anyhow::Result<()> {
        self.stats.failed_records += output.failed;
        for (step, n) in &output.late {
            self.stats.late_records += n;
            self.options.metrics.late_records(step, *n);
        }
        for (topic, mut records) in output.records {
            if let Some(tl) = self.lineage.as_mut().and_then(|l| l.tasks.get_mut(&key)) {
                let before = tl.suppressed;
                tl.stamp(&topic, &mut records);
                self.stats.suppressed_records += tl.suppressed - before;
                if records.is_empty() {
                    continue;
                }
            }
            self.unflushed = true;
            self.stats.records_out += records.len() as u64;
            self.io.sink.send_owned(&topic, records)?;
        }
        Ok(())
    }

    /// Lets the tasks' wall-clock timers fire, and sends what they emit.
    fn tick(&mut self) -> anyhow::Result<()> {
        let now_ms = super::wall_clock_ms();
        let mut outputs = Vec::new();
        for (key, task) in &mut self.tasks {
            outputs.push((*key, task.tick(now_ms)?));
        }
        for (key, output) in outputs {
            self.emit(key, output)?;
        }
        Ok(())
    }
}

/// The latest entry of `task` in the bounds topic whose input offsets are the ones its group
/// committed (`committed`): read from the topic's tail, in chunks that double in size going
/// back (entries are small, and a task's latest one is almost always in the first). `None`
/// when nothing was committed, or no entry matches.
fn latest_entry(
    reader: &mut dyn crate::io::ChangelogReader,
    topic: &str,
    task: &str,
    committed: &Bounds,
) -> anyhow::Result<Option<(Bounds, Bounds)>> {
    const FIRST_CHUNK: i64 = 4096;
    if committed.is_empty() {
        return Ok(None);
    }
    let Some(&(_, end)) = reader.ends(topic)?.first() else { return Ok(None) };
    let mut to = end;
    let mut chunk = FIRST_CHUNK;
    while to > 0 {
        let from = (to - chunk).max(0);
        chunk = chunk.saturating_mul(2);
        let mut found = None;
        reader.read(topic, 0, (from, Some(to)), &mut |_, r| {
            if r.key.as_deref() == Some(task.as_bytes())
                && let Some((inputs, bounds)) = r.value.as_deref().and_then(decode_entry)
                && !inputs.is_empty()
                && inputs.iter().all(|(k, v)| committed.get(k) == Some(v))
            {
                found = Some((inputs, bounds));
            }
            Ok(())
        })?;
        if found.is_some() {
            return Ok(found);
        }
        to = from;
    }
    Ok(None)
}

/// Whether opening a task failed only because its stores are held by another thread's task.
fn is_locked(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(c.downcast_ref::<StateError>(), Some(StateError::Locked { .. }))
            || matches!(
                c.downcast_ref::<crate::operators::ConstructError>(),
                Some(crate::operators::ConstructError::State(StateError::Locked { .. }))
            )
    })
}
