//! The source/sink seam. The runtime reads batches from a [`RecordSource`] and writes outputs
//! to a [`RecordSink`]; [`local`] serves them from files and memory (the embedded default),
//! [`kafka`] from a Kafka cluster. Nothing here knows about Wasm.

mod avro_json;
pub mod codec;
pub mod format;
pub mod kafka;
pub mod local;
pub mod partition;
pub mod registry;

use crate::record::Record;

/// The terminal's live lines: the state restore bars and `wasp run`'s status line, drawn
/// together on stderr (hidden when stderr is not a terminal). Logs written meanwhile go
/// through [`MultiProgress::suspend`](indicatif::MultiProgress::suspend), so the lines are
/// redrawn below them instead of being torn.
pub fn terminal() -> &'static indicatif::MultiProgress {
    static TERMINAL: std::sync::OnceLock<indicatif::MultiProgress> = std::sync::OnceLock::new();
    TERMINAL.get_or_init(|| indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr()))
}

/// Records read from one topic partition, in offset order.
#[derive(Debug)]
pub struct InputBatch {
    pub topic: String,
    pub partition: i32,
    pub records: Vec<Record>,
}

pub enum Poll {
    Batch(InputBatch),
    /// Nothing right now; poll again.
    Idle,
    /// Nothing ever again (local mode without `--follow`).
    Exhausted,
}

pub trait RecordSource {
    /// Up to `max` records of one partition.
    fn poll(&mut self, max: usize) -> anyhow::Result<Poll>;
    /// Marks everything before each `next_offset` as done, for every partition at once (one
    /// round trip on Kafka): `(topic, partition) -> next_offset`. `Ok(false)` when the group
    /// refused it for now (a rebalance is in progress): the caller keeps the offsets and
    /// commits them again later, for the partitions it still owns.
    fn commit(&mut self, offsets: &std::collections::BTreeMap<(String, i32), i64>) -> anyhow::Result<bool>;
    /// Completes the revocation of the partitions [`Self::take_revoked`] returned, once the
    /// runtime has committed what their tasks did (on Kafka the group waits for this; the
    /// partitions' new owners then start from those commits).
    fn release_revoked(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    /// Partitions taken away since the last call (their tasks are closed).
    fn take_revoked(&mut self) -> Vec<(String, i32)> {
        Vec::new()
    }
    /// The partitions assigned to this source, when they changed since the last call (its
    /// whole assignment, not the change). `None` from sources that are not group members.
    fn take_assignment(&mut self) -> Option<Vec<(String, i32)>> {
        None
    }
    /// Records not yet read, per assigned partition, as far as the source knows without a
    /// round trip (`(topic, partition, lag)`).
    fn lag(&self) -> Vec<(String, i32, i64)> {
        Vec::new()
    }
    /// The thread's record caches hold `delta` more records (fewer, when negative) that
    /// have yet to reach their sinks (local mode does not end while any are held).
    fn hold(&mut self, delta: i64) {
        let _ = delta;
    }
    /// The runtime is through with `records` records of a batch it polled from
    /// `topic[partition]`: their outputs are sent (local mode counts what is in flight).
    fn processed(&mut self, topic: &str, partition: i32, records: usize) {
        let _ = (topic, partition, records);
    }
    /// Whether everything of `topic[partition]` that exists now has been returned:
    /// `Some(false)` when more is there to read (a local file not read to its end), `None`
    /// when the source cannot tell without a round trip (Kafka). A task that reads several
    /// topics waits for one with nothing buffered while more of it is coming.
    fn caught_up(&self, topic: &str, partition: i32) -> Option<bool> {
        let _ = (topic, partition);
        None
    }
    /// Stops returning records of `topic[partition]` until [`Self::resume`] (a task waits for
    /// a retry, or holds enough of it). Records already returned are the runtime's to keep.
    fn pause(&mut self, topic: &str, partition: i32) {
        let _ = (topic, partition);
    }
    fn resume(&mut self, topic: &str, partition: i32) {
        let _ = (topic, partition);
    }
    /// Whether the source has joined its group (on Kafka: it has had an assignment, empty or
    /// not). Sources without a group are always joined.
    fn joined(&self) -> bool {
        true
    }
    /// Serves the group for `wait` without taking records (on Kafka: a rebalance in progress
    /// completes, its revocations reach [`Self::take_revoked`]), before a commit the group
    /// refused is tried again. What was buffered is dropped: the source is about to close.
    fn settle(&mut self, wait: std::time::Duration) -> anyhow::Result<()> {
        let _ = wait;
        Ok(())
    }
    /// Commits what is pending and leaves the group.
    fn close(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    /// exactly_once_v2: whether the last [`Self::commit`] aborted the transaction instead of
    /// committing it (then the thread goes back to its last commit). Cleared by the call.
    fn take_aborted(&mut self) -> bool {
        false
    }
    /// Goes back to the committed offset of every assigned partition, dropping what was read
    /// past it (exactly_once_v2, after an aborted transaction).
    fn rewind(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

pub trait RecordSink {
    /// Queues records for `topic`, in order; the partition follows the key.
    fn send(&mut self, topic: &str, records: &[Record]) -> anyhow::Result<()>;
    /// Like [`Self::send`], taking the records: a sink that keeps them (local mode's
    /// in-memory topics) needs no copy.
    fn send_owned(&mut self, topic: &str, records: Vec<Record>) -> anyhow::Result<()> {
        self.send(topic, &records)
    }
    /// Queues records for one partition of `topic` (changelogs: a task's partition).
    fn send_to(&mut self, topic: &str, partition: i32, records: &[Record]) -> anyhow::Result<()> {
        let _ = partition;
        self.send(topic, records)
    }
    /// Returns once every queued record is acknowledged, or fails.
    fn flush(&mut self) -> anyhow::Result<()>;
    /// exactly_once_v2: aborts the open transaction (what was sent since the last commit is
    /// not written) and begins the next. A sink without transactions does nothing.
    fn abort_transaction(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    /// The offset of the last acknowledged record of a partition, where the sink knows it.
    fn acked_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        let _ = (topic, partition);
        None
    }
    /// Tracks the acknowledged offset of every partition written from now on, not only of
    /// changelogs (exactly-once's bounds, see `runtime::eos`).
    fn track_all_acks(&mut self) {}
    /// The last acknowledged offset of every partition tracked: `(topic, partition, offset)`.
    fn acked_offsets(&self) -> Vec<(String, i32, i64)> {
        Vec::new()
    }
}

/// Reads a changelog partition back, to restore a store.
pub trait ChangelogReader {
    /// Calls `apply` with every record of `topic[partition]` from offset `from` up to `to`
    /// (exclusive), or up to the end the partition had when the call started.
    fn read(
        &mut self,
        topic: &str,
        partition: i32,
        range: (i64, Option<i64>),
        apply: &mut dyn FnMut(i64, Record) -> Result<(), crate::state::StateError>,
    ) -> anyhow::Result<()>;

    /// The offset the application's consumer group has committed for `topic[partition]`:
    /// a table read from its own topic is restored up to there, and what follows is
    /// processed (and emitted) as new.
    fn committed(&mut self, topic: &str, partition: i32) -> anyhow::Result<Option<i64>>;

    /// The end offset of each partition of `topic` (none if it does not exist yet).
    fn ends(&mut self, topic: &str) -> anyhow::Result<Vec<(i32, i64)>> {
        let _ = topic;
        Ok(Vec::new())
    }
}

/// A small log of keyed entries every instance of an application writes and reads whole (on
/// Kafka, a compacted topic): the instances announce which tasks they run in it.
pub trait InstanceLog {
    /// Writes `key`'s entry (`None`: a tombstone) and waits until the log has it.
    fn publish(&mut self, key: &str, value: Option<&[u8]>) -> anyhow::Result<()>;
    /// The entries read within `timeout`, in log order.
    fn poll(&mut self, timeout: std::time::Duration) -> anyhow::Result<Vec<(String, Option<Vec<u8>>)>>;
}
