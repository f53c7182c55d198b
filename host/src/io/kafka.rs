//! Kafka through rdkafka. The consumer group is the application id; offsets are committed by
//! hand, only after the outputs of the records before them are acknowledged (at-least-once).
//! Rebalances are cooperative and task-aware (see `GroupContext::rebalance`). A revocation
//! completes only once the runtime has committed the revoked tasks' work
//! ([`RecordSource::release_revoked`]); their buffered, unprocessed records are dropped at once,
//! to be read again from that commit by the new owner (which may be this consumer again:
//! records fetched after the revocation is released are kept).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use super::{InputBatch, Poll, RecordSink, RecordSource};
use crate::record::{Arena, Header, Record};

/// How long a poll waits for the first record of a batch.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// How long the outputs of one batch may take to be acknowledged.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one step of a flush waits for delivery reports (see [`KafkaSink::flush`]).
const FLUSH_STEP: Duration = Duration::from_millis(1);

/// Client settings shared by the consumer and the producer (each leaves out the properties
/// that only concern the other).
pub fn client_config(bootstrap: &str, properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}

/// librdkafka's consumer-only properties (`C` in its CONFIGURATION.md, 2.12): given to a
/// producer, each would only be ignored with a configuration warning.
const CONSUMER_ONLY: &[&str] = &[
    "auto.commit.enable",
    "auto.commit.interval.ms",
    "auto.offset.reset",
    "check.crcs",
    "consume.callback.max.messages",
    "coordinator.query.interval.ms",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "fetch.error.backoff.ms",
    "fetch.max.bytes",
    "fetch.message.max.bytes",
    "fetch.min.bytes",
    "fetch.queue.backoff.ms",
    "fetch.wait.max.ms",
    "group.id",
    "group.instance.id",
    "group.protocol",
    "group.protocol.type",
    "group.remote.assignor",
    "heartbeat.interval.ms",
    "isolation.level",
    "max.partition.fetch.bytes",
    "max.poll.interval.ms",
    "offset.store.method",
    "offset.store.path",
    "offset.store.sync.interval.ms",
    "partition.assignment.strategy",
    "queued.max.messages.kbytes",
    "queued.min.messages",
    "session.timeout.ms",
];

/// librdkafka's producer-only properties (`P` in its CONFIGURATION.md, 2.12).
const PRODUCER_ONLY: &[&str] = &[
    "acks",
    "batch.num.messages",
    "batch.size",
    "compression.codec",
    "compression.level",
    "compression.type",
    "delivery.report.only.error",
    "delivery.timeout.ms",
    "enable.gapless.guarantee",
    "enable.idempotence",
    "linger.ms",
    "message.send.max.retries",
    "message.timeout.ms",
    "partitioner",
    "produce.offset.report",
    "queue.buffering.backpressure.threshold",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.messages",
    "queue.buffering.max.ms",
    "queuing.strategy",
    "request.required.acks",
    "request.timeout.ms",
    "retries",
    "sticky.partitioning.linger.ms",
    "transaction.timeout.ms",
    "transactional.id",
];

/// `config` without the properties that only concern the other kind of client.
fn without(config: &ClientConfig, other_only: &[&str]) -> ClientConfig {
    let mut c = config.clone();
    for k in other_only {
        c.remove(k);
    }
    c
}

#[derive(Default)]
struct GroupContext {
    /// Co-partitioned topics: the topic the group assigns (a task's first topic) -> the other
    /// topics of its tasks, whose same-numbered partitions follow it (see `rebalance`).
    followers: BTreeMap<String, Vec<String>>,
    /// Whether the group has given this consumer an assignment yet (an empty one counts).
    assigned: std::sync::atomic::AtomicBool,
    /// Revoked partitions whose tasks the runtime has not closed yet.
    revoked: Mutex<Vec<(String, i32)>>,
    /// Revoked partitions whose buffered records the source has not dropped yet.
    unbuffer: Mutex<Vec<(String, i32)>>,
    /// Whether `unbuffer` has entries: checked once per polled record without a lock.
    any_unbuffer: std::sync::atomic::AtomicBool,
    /// The partitions assigned now, and whether that changed since the runtime last asked.
    assignment: Mutex<std::collections::BTreeSet<(String, i32)>>,
    assignment_changed: std::sync::atomic::AtomicBool,
    /// Each assigned partition's consumer lag, from librdkafka's last statistics.
    lag: Mutex<BTreeMap<(String, i32), i64>>,
    /// Revoked partitions still assigned: the group waits for them while the runtime commits
    /// their tasks' work ([`RecordSource::release_revoked`]), as Kafka Streams commits in
    /// `onPartitionsRevoked`. Their records polled meanwhile are dropped.
    deferred: Mutex<Vec<(String, i32)>>,
    any_deferred: std::sync::atomic::AtomicBool,
    /// The consumer is leaving the group: revocations complete at once.
    closing: std::sync::atomic::AtomicBool,
}

/// Of librdkafka's statistics, the one figure wasp reads: each partition's consumer lag. The
/// rest of the document (brokers, windows, every other counter) is skipped unread; rdkafka's
/// own `Statistics` builds all of it, thousands of allocations a second per consumer.
#[derive(serde::Deserialize)]
struct LagStatistics<'a> {
    #[serde(borrow, default)]
    topics: BTreeMap<std::borrow::Cow<'a, str>, TopicLag<'a>>,
}

#[derive(serde::Deserialize)]
struct TopicLag<'a> {
    #[serde(borrow, default)]
    partitions: BTreeMap<std::borrow::Cow<'a, str>, PartitionLag>,
}

#[derive(serde::Deserialize)]
struct PartitionLag {
    #[serde(default = "unknown_lag")]
    consumer_lag: i64,
}

fn unknown_lag() -> i64 {
    -1
}

impl ClientContext for GroupContext {
    fn stats_raw(&self, statistics: &[u8]) {
        let parsed: LagStatistics<'_> = match serde_json::from_slice(statistics) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "librdkafka's statistics do not parse");
                return;
            }
        };
        let mut lags = BTreeMap::new();
        for (topic, t) in parsed.topics {
            let topic = topic.into_owned();
            for (partition, p) in t.partitions {
                // -1 is librdkafka's "unknown", and partition -1 its internal UA partition.
                let Ok(partition) = partition.parse::<i32>() else { continue };
                if partition >= 0 && p.consumer_lag >= 0 {
                    lags.insert((topic.clone(), partition), p.consumer_lag);
                }
            }
        }
        if let Ok(mut l) = self.lag.lock() {
            *l = lags;
        }
    }
}

impl GroupContext {
    /// `tpl`, and for each partition of a task's first topic the same partition of the task's
    /// other topics.
    fn with_followers(&self, tpl: &TopicPartitionList) -> TopicPartitionList {
        let mut all = tpl.clone();
        for e in tpl.elements() {
            for f in self.followers.get(e.topic()).into_iter().flatten() {
                all.add_partition(f, e.partition());
            }
        }
        all
    }
}

impl ConsumerContext for GroupContext {
    /// As rdkafka's own, but a task's co-partitioned topics move as one. The group assigns only
    /// the first topic of each task that reads several: an assignor that places each partition
    /// on its own (cooperative-sticky) could otherwise give partition 3 of a join's two topics
    /// to two members, and neither could run the task. Kafka Streams' task-aware assignor does
    /// this in the group protocol; librdkafka has no pluggable assignor, so the followers are
    /// added here, on the member that was given the task's first topic, and committed through
    /// the group like any partition.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: rdkafka::types::RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        use rdkafka::consumer::RebalanceProtocol;
        use rdkafka::types::RDKafkaRespErr::{
            RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS as ASSIGN, RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS as REVOKE,
        };
        let all = self.with_followers(tpl);
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let done = match err {
            ASSIGN => {
                self.pre_rebalance(consumer, &Rebalance::Assign(&all));
                let r = if cooperative { consumer.incremental_assign(&all) } else { consumer.assign(&all) };
                self.post_rebalance(consumer, &Rebalance::Assign(&all));
                r
            }
            REVOKE => {
                self.pre_rebalance(consumer, &Rebalance::Revoke(&all));
                // Partitions lost (this member was dropped from the group) can commit nothing,
                // and a closing consumer has committed: those go at once. Otherwise the
                // revocation completes once the runtime has committed the revoked tasks (the
                // group waits for it, up to `max.poll.interval.ms`).
                let lost = consumer.assignment_lost();
                if lost || self.closing.load(std::sync::atomic::Ordering::Acquire) {
                    if let Ok(mut d) = self.deferred.lock() {
                        d.clear();
                    }
                    let r = if cooperative { consumer.incremental_unassign(&all) } else { consumer.unassign() };
                    self.post_rebalance(consumer, &Rebalance::Revoke(&all));
                    r
                } else {
                    if let Ok(mut d) = self.deferred.lock() {
                        d.extend(all.elements().iter().map(|e| (e.topic().to_owned(), e.partition())));
                    }
                    self.any_deferred.store(true, std::sync::atomic::Ordering::Release);
                    Ok(())
                }
            }
            other => {
                let code: RDKafkaErrorCode = other.into();
                tracing::error!(error = %code, "the consumer group's rebalance failed");
                // As rdkafka's: the partitions are dropped, and the group assigns again.
                let failed = Rebalance::Error(KafkaError::Rebalance(code));
                self.pre_rebalance(consumer, &failed);
                let r = if cooperative { consumer.incremental_unassign(&all) } else { consumer.unassign() };
                self.post_rebalance(consumer, &failed);
                r
            }
        };
        if let Err(e) = done {
            tracing::error!(error = %e, "applying the group's assignment failed");
        }
    }

    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let parts: Vec<(String, i32)> =
                tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
            tracing::info!(partitions = ?parts, "partitions revoked");
            if let Ok(mut r) = self.unbuffer.lock() {
                r.extend(parts.iter().cloned());
                self.any_unbuffer.store(true, std::sync::atomic::Ordering::Release);
            }
            if let Ok(mut a) = self.assignment.lock() {
                for p in &parts {
                    a.remove(p);
                }
                self.assignment_changed.store(true, std::sync::atomic::Ordering::Release);
            }
            if let Ok(mut r) = self.revoked.lock() {
                r.extend(parts);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let parts: Vec<(String, i32)> =
                tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
            let protocol = match consumer.rebalance_protocol() {
                rdkafka::consumer::RebalanceProtocol::Cooperative => "cooperative",
                _ => "eager",
            };
            tracing::info!(partitions = ?parts, protocol, "partitions assigned");
            if let Ok(mut a) = self.assignment.lock() {
                a.extend(parts.iter().cloned());
                self.assignment_changed.store(true, std::sync::atomic::Ordering::Release);
            }
            self.assigned.store(true, std::sync::atomic::Ordering::Release);
        }
    }
}

pub struct KafkaSource {
    consumer: BaseConsumer<GroupContext>,
    pending: VecDeque<InputBatch>,
    /// Keys, values and header values copied out of librdkafka's buffers.
    arena: Arena,
    /// exactly_once_v2: the thread's transactional producer, which commits the offsets.
    transactions: Option<Transactions>,
    /// exactly_once_v2: the last commit aborted the transaction instead.
    aborted: bool,
    /// Where a partition with no committed offset starts (`auto.offset.reset`).
    reset_earliest: bool,
}

impl KafkaSource {
    /// Joins the group `application_id` and reads `tasks_topics`, the topics of each
    /// sub-topology's tasks: a task's partition of each of its topics comes to one member.
    /// Rebalances are cooperative (KIP-429) unless the properties choose another assignor:
    /// a member that joins or leaves moves only the partitions that change owner, and the
    /// others keep flowing meanwhile.
    pub fn new(config: &ClientConfig, application_id: &str, tasks_topics: &[Vec<&str>]) -> anyhow::Result<Self> {
        let mut c = without(config, PRODUCER_ONLY);
        c.set("group.id", application_id).set("enable.auto.commit", "false").set("enable.auto.offset.store", "false");
        if c.get("auto.offset.reset").is_none() {
            c.set("auto.offset.reset", "earliest");
        }
        // Statistics carry each partition's consumer lag (`wasp_consumer_lag`).
        if c.get("statistics.interval.ms").is_none() {
            c.set("statistics.interval.ms", "1000");
        }
        // librdkafka prefetches up to 64 MiB per consumer by default, and each stream thread
        // has one: 16 MiB keeps several batches of every partition ahead, in a bounded
        // footprint (the user's `properties` still decide).
        if c.get("queued.max.messages.kbytes").is_none() {
            c.set("queued.max.messages.kbytes", "16384");
        }
        if c.get("partition.assignment.strategy").is_none() {
            c.set("partition.assignment.strategy", "cooperative-sticky");
        }
        let mut context = GroupContext::default();
        let mut topics = Vec::new();
        for sub in tasks_topics {
            if let Some((first, rest)) = sub.split_first() {
                topics.push(*first);
                if !rest.is_empty() {
                    context.followers.insert((*first).to_owned(), rest.iter().map(|t| (*t).to_owned()).collect());
                }
            }
        }
        let consumer: BaseConsumer<GroupContext> =
            c.create_with_context(context).context("creating the Kafka consumer")?;
        consumer.subscribe(&topics).with_context(|| format!("subscribing to {topics:?}"))?;
        let reset_earliest = !matches!(c.get("auto.offset.reset"), Some("latest" | "largest" | "end"));
        Ok(Self {
            consumer,
            pending: VecDeque::new(),
            arena: Arena::default(),
            transactions: None,
            aborted: false,
            reset_earliest,
        })
    }

    /// exactly_once_v2: commits offsets in the transactions of `sink`'s producer.
    pub fn with_transactions(mut self, sink: &KafkaSink) -> Self {
        self.transactions = Some(Transactions(sink.producer.clone()));
        self
    }

    fn record(arena: &mut Arena, m: &rdkafka::message::BorrowedMessage<'_>) -> Record {
        let mut r = Record {
            key: m.key().map(|k| arena.copy(k)),
            value: m.payload().map(|v| arena.copy(v)),
            timestamp: m.timestamp().to_millis().unwrap_or(0),
            ..Default::default()
        };
        if let Some(hs) = m.headers() {
            r.headers = hs
                .iter()
                .map(|h| Header { name: Header::name_from(h.key), value: h.value.map(|v| arena.copy(v)) })
                .collect();
        }
        r.origin.partition = m.partition();
        r.origin.offset = m.offset();
        r
    }
}

/// Drops the buffered records of the partitions revoked since the last call: they will be read
/// again from the committed offset, by whichever member owns the partition next.
fn unbuffer_revoked(context: &GroupContext, pending: &mut VecDeque<InputBatch>, groups: &mut Vec<InputBatch>) {
    if !context.any_unbuffer.swap(false, std::sync::atomic::Ordering::AcqRel) {
        return;
    }
    let revoked = context.unbuffer.lock().map(|mut r| std::mem::take(&mut *r)).unwrap_or_default();
    pending.retain(|b| !revoked.iter().any(|(t, p)| *t == b.topic && *p == b.partition));
    groups.retain(|b| !revoked.iter().any(|(t, p)| *t == b.topic && *p == b.partition));
}

impl RecordSource for KafkaSource {
    fn poll(&mut self, max: usize) -> anyhow::Result<Poll> {
        if let Some(b) = self.pending.pop_front() {
            return Ok(Poll::Batch(b));
        }
        // One batch per partition; a record's topic is compared, not copied.
        let mut groups: Vec<InputBatch> = Vec::new();
        let mut n = 0;
        let started = Instant::now();
        let mut wait = POLL_WAIT;
        while n < max {
            let polled = self.consumer.poll(wait);
            // Rebalances are served inside that poll, before the record it returns, which
            // belongs to the new assignment: drop what was buffered for revoked partitions now,
            // not later, or records fetched again for a partition assigned back would go too.
            unbuffer_revoked(self.consumer.context(), &mut self.pending, &mut groups);
            match polled {
                None => break,
                Some(Err(KafkaError::PartitionEOF(_))) => continue,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    break;
                }
                Some(Ok(m)) => {
                    let (topic, partition) = (m.topic(), m.partition());
                    // A partition revoked, not yet released: its new owner reads it.
                    if self.consumer.context().any_deferred.load(std::sync::atomic::Ordering::Acquire)
                        && self
                            .consumer
                            .context()
                            .deferred
                            .lock()
                            .is_ok_and(|d| d.iter().any(|(t, p)| *p == partition && t == topic))
                    {
                        continue;
                    }
                    let i = match groups.iter().position(|b| b.partition == partition && b.topic == topic) {
                        Some(i) => i,
                        None => {
                            let records = Vec::with_capacity(max.min(1024));
                            groups.push(InputBatch { topic: topic.to_owned(), partition, records });
                            groups.len() - 1
                        }
                    };
                    groups[i].records.push(Self::record(&mut self.arena, &m));
                    n += 1;
                }
            }
            // After the first record, take what is already fetched, briefly.
            wait = Duration::ZERO;
            if started.elapsed() > POLL_WAIT {
                break;
            }
        }
        self.pending.extend(groups);
        Ok(self.pending.pop_front().map_or(Poll::Idle, Poll::Batch))
    }

    fn commit(&mut self, offsets: &BTreeMap<(String, i32), i64>) -> anyhow::Result<bool> {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
        }
        if let Some(t) = &self.transactions {
            let group = self.consumer.group_metadata().context("reading the consumer group's metadata")?;
            let committed = t.commit(&tpl, &group)?;
            self.aborted = !committed;
            return Ok(committed);
        }
        match self.consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => Ok(true),
            // A rebalance is in progress, or this member was replaced: the runtime keeps the
            // offsets and commits them after it, for the partitions it still owns; a partition
            // that moved is read again from its last committed offset (outputs may be
            // produced twice, never lost).
            Err(KafkaError::ConsumerCommit(
                RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::UnknownMemberId,
            )) => {
                tracing::info!(?offsets, "commit refused during a rebalance; it is tried again at the next commit");
                Ok(false)
            }
            // The broker or the group's coordinator is away for now (restarting, moving): the
            // offsets stay, and are committed once it answers; nothing past them is lost.
            Err(KafkaError::ConsumerCommit(code)) if away(code) => {
                tracing::warn!(error = %code, "the offsets could not be committed now; they are tried again at the next commit");
                Ok(false)
            }
            Err(e) => Err(e).with_context(|| format!("committing the offsets {offsets:?}")),
        }
    }

    fn lag(&self) -> Vec<(String, i32, i64)> {
        // From librdkafka's statistics (every second): no round trip to the broker.
        let lag = self.consumer.context().lag.lock().map(|l| l.clone()).unwrap_or_default();
        lag.into_iter().map(|((t, p), l)| (t, p, l)).collect()
    }

    fn pause(&mut self, topic: &str, partition: i32) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        if let Err(e) = self.consumer.pause(&tpl) {
            tracing::warn!(topic, partition, error = %e, "cannot pause the partition");
        }
    }

    fn resume(&mut self, topic: &str, partition: i32) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        if let Err(e) = self.consumer.resume(&tpl) {
            tracing::warn!(topic, partition, error = %e, "cannot resume the partition");
        }
    }

    fn joined(&self) -> bool {
        self.consumer.context().assigned.load(std::sync::atomic::Ordering::Acquire)
    }

    fn take_revoked(&mut self) -> Vec<(String, i32)> {
        // Their buffered records are already gone (see `poll`).
        self.consumer.context().revoked.lock().map(|mut r| std::mem::take(&mut *r)).unwrap_or_default()
    }

    fn take_assignment(&mut self) -> Option<Vec<(String, i32)>> {
        let c = self.consumer.context();
        if !c.assignment_changed.swap(false, std::sync::atomic::Ordering::AcqRel) {
            return None;
        }
        c.assignment.lock().ok().map(|a| a.iter().cloned().collect())
    }

    fn settle(&mut self, wait: Duration) -> anyhow::Result<()> {
        self.pending.clear();
        let started = Instant::now();
        while started.elapsed() < wait {
            // Paused partitions return no records; partitions the rebalance assigns are paused
            // as they come. A record polled anyway is dropped, uncommitted.
            let assigned = self.consumer.assignment().context("reading the consumer's assignment")?;
            if assigned.count() > 0 {
                self.consumer.pause(&assigned).context("pausing the partitions")?;
            }
            match self.consumer.poll(wait.saturating_sub(started.elapsed()).min(POLL_WAIT)) {
                Some(Err(e)) if !matches!(e, KafkaError::PartitionEOF(_)) => {
                    tracing::warn!(error = %e, "consumer error")
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn release_revoked(&mut self) -> anyhow::Result<()> {
        let c = self.consumer.context();
        if !c.any_deferred.swap(false, std::sync::atomic::Ordering::AcqRel) {
            return Ok(());
        }
        let parts = c.deferred.lock().map(|mut d| std::mem::take(&mut *d)).unwrap_or_default();
        if parts.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (t, p) in &parts {
            tpl.add_partition(t, *p);
        }
        let r = match self.consumer.rebalance_protocol() {
            rdkafka::consumer::RebalanceProtocol::Cooperative => self.consumer.incremental_unassign(&tpl),
            _ => self.consumer.unassign(),
        };
        c.post_rebalance(&self.consumer, &Rebalance::Revoke(&tpl));
        // The group moved on without them (this member was dropped meanwhile): nothing is left
        // to release.
        if let Err(e) = r {
            tracing::warn!(partitions = ?parts, error = %e, "releasing the revoked partitions");
        }
        Ok(())
    }

    fn close(&mut self) -> anyhow::Result<()> {
        self.consumer.context().closing.store(true, std::sync::atomic::Ordering::Release);
        self.release_revoked()?;
        self.consumer.unsubscribe();
        Ok(())
    }

    fn take_aborted(&mut self) -> bool {
        std::mem::take(&mut self.aborted)
    }

    fn rewind(&mut self) -> anyhow::Result<()> {
        self.pending.clear();
        let assigned = self.consumer.assignment().context("reading the consumer's assignment")?;
        if assigned.count() == 0 {
            return Ok(());
        }
        let committed =
            self.consumer.committed(Duration::from_secs(30)).context("reading the committed offsets to go back to")?;
        let _ = self.consumer.resume(&assigned);
        for e in committed.elements() {
            let to = match e.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ if self.reset_earliest => Offset::Beginning,
                _ => Offset::End,
            };
            self.consumer
                .seek(e.topic(), e.partition(), to, Duration::from_secs(30))
                .with_context(|| format!("going back to {to:?} in {}[{}]", e.topic(), e.partition()))?;
        }
        Ok(())
    }
}

/// The transactions of a stream thread's producer (exactly_once_v2): its outputs and
/// changelogs are sent inside the open transaction, and a commit adds the input offsets to it
/// (with the group's metadata, which fences a member the group has moved on from) and
/// commits it.
#[derive(Clone)]
pub struct Transactions(std::sync::Arc<BaseProducer<DeliveryContext>>);

/// How long a transactional call may wait for the broker.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a transactional call that failed with a retriable error is made again.
const TRANSACTION_RETRIES: u32 = 10;

impl Transactions {
    /// Commits the open transaction with `offsets` and begins the next. `Ok(false)` when the
    /// transaction had to be aborted instead (the group moved on, or a send failed): what it
    /// held is not written, and the thread goes back to its last commit.
    fn commit(
        &self,
        offsets: &TopicPartitionList,
        group: &rdkafka::consumer::ConsumerGroupMetadata,
    ) -> anyhow::Result<bool> {
        // librdkafka's retriable errors (a timeout, a coordinator moving) ask for the same
        // call again.
        let retried = |call: &dyn Fn() -> KafkaResult<()>| {
            let mut attempt = 0;
            loop {
                match call() {
                    Err(KafkaError::Transaction(e)) if e.is_retriable() && attempt < TRANSACTION_RETRIES => {
                        attempt += 1;
                        tracing::warn!(error = %e, attempt, "a transactional call is tried again");
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    other => return other,
                }
            }
        };
        let done = (|| {
            if offsets.count() > 0 {
                retried(&|| self.0.send_offsets_to_transaction(offsets, group, TRANSACTION_TIMEOUT))?;
            }
            retried(&|| self.0.commit_transaction(TRANSACTION_TIMEOUT))
        })();
        match done {
            Ok(()) => {
                self.0.begin_transaction().context("beginning the next transaction")?;
                Ok(true)
            }
            Err(KafkaError::Transaction(e)) if e.txn_requires_abort() => {
                tracing::warn!(error = %e, "the transaction is aborted: the thread goes back to its last commit");
                self.abort()?;
                Ok(false)
            }
            Err(e) => Err(e).context(
                "committing the transaction (a fatal error: another producer with this \
                                      transactional id, or the broker's answer)",
            ),
        }
    }

    /// Aborts the open transaction and begins the next.
    fn abort(&self) -> anyhow::Result<()> {
        self.0.abort_transaction(TRANSACTION_TIMEOUT).context("aborting the transaction")?;
        self.0.begin_transaction().context("beginning the next transaction")
    }
}

#[derive(Default)]
struct DeliveryContext {
    failures: Mutex<Vec<String>>,
    /// The last acknowledged offset per partition (changelog checkpoints; every partition
    /// under exactly-once), by topic, then partition: a topic is looked up without a copy of
    /// its name.
    acked: Mutex<HashMap<String, HashMap<i32, i64>>>,
}

impl ClientContext for DeliveryContext {}

/// The delivery opaque of records whose acknowledged offsets are tracked (changelogs: a
/// store's checkpoint); the others take no lock when they are acknowledged.
const TRACK_ACK: usize = 1;

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, track: usize) {
        match result {
            Err((e, m)) => {
                if let Ok(mut f) = self.failures.lock() {
                    f.push(format!("{}[{}]: {e}", m.topic(), m.partition()));
                }
            }
            Ok(m) if track == TRACK_ACK => {
                if let Ok(mut a) = self.acked.lock() {
                    let partitions = match a.get_mut(m.topic()) {
                        Some(p) => p,
                        None => a.entry(m.topic().to_owned()).or_default(),
                    };
                    let e = partitions.entry(m.partition()).or_insert(m.offset());
                    *e = (*e).max(m.offset());
                }
            }
            Ok(_) => {}
        }
    }
}

pub struct KafkaSink {
    /// Shared with the thread's source under exactly_once_v2 ([`Transactions`]).
    producer: std::sync::Arc<BaseProducer<DeliveryContext>>,
    transactional: bool,
    /// Track the acknowledged offsets of every record, not only of changelogs.
    track_all: bool,
}

impl KafkaSink {
    pub fn new(config: &ClientConfig) -> anyhow::Result<Self> {
        let mut c = without(config, CONSUMER_ONLY);
        // murmur2 partitions keys as the Java client does, so wasp and Kafka Streams
        // applications agree on co-partitioning.
        // The producer's queue is bounded at 32 MiB and 20,000 messages (librdkafka's defaults
        // are 1 GiB and 100,000): past it,
        // `send` waits for acknowledgements, which is the backpressure a full broker needs.
        for (k, v) in [
            ("partitioner", "murmur2_random"),
            ("enable.idempotence", "true"),
            ("linger.ms", "5"),
            ("queue.buffering.max.kbytes", "32768"),
            // Counted in messages too: each queued message costs librdkafka a few hundred bytes
            // beside its payload, so for word-sized records its default of 100,000 held tens
            // of MiB per thread (peak RSS of the broker word count: 250-270 MiB before, 198-225
            // after, at the same throughput).
            ("queue.buffering.max.messages", "20000"),
        ] {
            if c.get(k).is_none() {
                c.set(k, v);
            }
        }
        let producer = c.create_with_context(DeliveryContext::default()).context("creating the Kafka producer")?;
        Ok(Self { producer: std::sync::Arc::new(producer), transactional: false, track_all: false })
    }

    /// A transactional producer (exactly_once_v2), with its first transaction begun.
    /// `transactional_id` fences an older producer that had it. A broker without
    /// transactions refuses `init_transactions`: the error gives its answer and points to
    /// `exactly_once`.
    pub fn transactional(config: &ClientConfig, transactional_id: &str) -> anyhow::Result<Self> {
        let mut c = config.clone();
        c.set("transactional.id", transactional_id);
        // Kafka Streams' default under exactly-once: a transaction a crashed thread left open
        // holds back read_committed readers for at most this long.
        if c.get("transaction.timeout.ms").is_none() {
            c.set("transaction.timeout.ms", crate::manifest::DEFAULT_TRANSACTION_TIMEOUT_MS.to_string());
        }
        let mut sink = Self::new(&c)?;
        sink.transactional = true;
        if let Err(e) = sink.producer.init_transactions(TRANSACTION_TIMEOUT) {
            bail!(
                "the Kafka cluster refused transactions (init_transactions: {e}). processing_guarantee = \
                 \"exactly_once_v2\" needs a cluster that supports them; \"exactly_once\" gives exactly-once \
                 output on any Kafka-protocol broker, without transactions"
            );
        }
        sink.producer.begin_transaction().context("beginning the first transaction")?;
        Ok(sink)
    }
}

impl RecordSink for KafkaSink {
    fn send(&mut self, topic: &str, records: &[Record]) -> anyhow::Result<()> {
        for record in records {
            self.send_one(topic, None, record)?;
        }
        Ok(())
    }

    fn send_to(&mut self, topic: &str, partition: i32, records: &[Record]) -> anyhow::Result<()> {
        for record in records {
            self.send_one(topic, Some(partition), record)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.flush_all()
    }

    fn abort_transaction(&mut self) -> anyhow::Result<()> {
        if self.transactional {
            Transactions(self.producer.clone()).abort()?;
        }
        Ok(())
    }

    fn acked_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.producer.context().acked.lock().ok()?.get(topic)?.get(&partition).copied()
    }

    fn track_all_acks(&mut self) {
        self.track_all = true;
    }

    fn acked_offsets(&self) -> Vec<(String, i32, i64)> {
        let Ok(acked) = self.producer.context().acked.lock() else { return Vec::new() };
        acked.iter().flat_map(|(t, ps)| ps.iter().map(|(p, o)| (t.clone(), *p, *o))).collect()
    }
}

/// Reads changelog partitions with a consumer of its own (no group, no commits).
pub struct KafkaChangelogReader {
    consumer: BaseConsumer,
    /// A client in the application's group, which never joins it: it only reads the
    /// group's committed offsets.
    group: BaseConsumer,
    /// Show a progress bar (stderr is a terminal).
    progress_bar: bool,
    /// How long a read may go without progress before it fails ([`RESTORE_TIMEOUT`]).
    stall: Duration,
}

/// Restores of more entries than this log their progress.
const RESTORE_LOG_EVERY: i64 = 100_000;

impl KafkaChangelogReader {
    pub fn new(config: &ClientConfig, application_id: &str) -> anyhow::Result<Self> {
        let mut g = without(config, PRODUCER_ONLY);
        g.set("group.id", application_id);
        g.set("enable.auto.commit", "false");
        let group: BaseConsumer = g.create().context("creating the committed-offsets reader")?;
        let mut c = without(config, PRODUCER_ONLY);
        // librdkafka assigns partitions only to a consumer with a group id; this one never
        // joins the group (it assigns by hand) and never commits.
        c.set("group.id", format!("{application_id}-restore"));
        c.set("enable.auto.commit", "false");
        c.set("enable.partition.eof", "false");
        // It reads known ranges to their end: a fetch held for new data only delays the last
        // one (librdkafka's 500 ms default made each output partition read back at a task's
        // exactly-once start cost half a second).
        c.set("fetch.wait.max.ms", "10");
        let consumer: BaseConsumer = c.create().context("creating the changelog reader")?;
        Ok(Self {
            consumer,
            group,
            progress_bar: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            stall: RESTORE_TIMEOUT,
        })
    }

    /// Fails a read that goes `stall` without progress (default [`RESTORE_TIMEOUT`]).
    #[must_use]
    pub fn stalling_after(mut self, stall: Duration) -> Self {
        self.stall = stall;
        self
    }
}

impl KafkaChangelogReader {
    /// The reader's position in `topic[partition]` (the next offset it reads), if known.
    fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        let p = self.consumer.position().ok()?;
        match p.find_partition(topic, partition)?.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    }
}

impl crate::io::ChangelogReader for KafkaChangelogReader {
    fn read(
        &mut self,
        topic: &str,
        partition: i32,
        (from, to): (i64, Option<i64>),
        apply: &mut dyn FnMut(i64, Record) -> Result<(), crate::state::StateError>,
    ) -> anyhow::Result<()> {
        let mut deadline = Instant::now() + self.stall;
        let (low, high) =
            while_away(deadline, topic, || self.consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)))
                .with_context(|| format!("reading the end of changelog {topic}[{partition}]"))?;
        let high = to.map_or(high, |to| to.min(high));
        let start = from.max(low);
        if start >= high {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(start))?;
        self.consumer.assign(&tpl).context("assigning the changelog partition")?;
        let total = (high - start) as u64;
        let bar = (self.progress_bar && total > RESTORE_LOG_EVERY as u64).then(|| {
            let b = super::terminal().add(indicatif::ProgressBar::new(total));
            b.set_message(format!("restoring {topic}[{partition}]"));
            b
        });
        let mut next = start;
        let mut arena = Arena::default();
        while next < high {
            let now = Instant::now();
            if now > deadline {
                bail!("restoring {topic}[{partition}]: stuck at offset {next} of {high}");
            }
            let Some(m) = self.consumer.poll(Duration::from_millis(100)) else {
                // Under exactly_once_v2 a changelog ends with a transaction marker, which is
                // never returned: the position passes it.
                if self.position(topic, partition).is_some_and(|p| p >= high) {
                    break;
                }
                continue;
            };
            let m = match m {
                Ok(m) => m,
                // The broker is away: the consumer reconnects and fetches on from `next`.
                Err(e) if passing(&e) => {
                    tracing::warn!(topic, partition, error = %e, "restoring waits for the broker");
                    continue;
                }
                Err(e) => return Err(e).with_context(|| format!("reading changelog {topic}[{partition}]")),
            };
            next = m.offset() + 1;
            apply(m.offset(), KafkaSource::record(&mut arena, &m))?;
            // A restore fails when it stalls, not when it is long: each record read moves the
            // deadline on.
            deadline = now + self.stall;
            if let Some(b) = &bar {
                b.set_position((next - start) as u64);
            } else if (next - start) % RESTORE_LOG_EVERY == 0 {
                tracing::info!(topic, partition, done = next - start, of = high - start, "restoring");
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        self.consumer.unassign().context("unassigning the changelog partition")?;
        Ok(())
    }

    fn committed(&mut self, topic: &str, partition: i32) -> anyhow::Result<Option<i64>> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let got = while_away(Instant::now() + self.stall, topic, || {
            self.group.committed_offsets(tpl.clone(), Duration::from_secs(10))
        })
        .with_context(|| format!("reading the committed offset of {topic}[{partition}]"))?;
        Ok(got.find_partition(topic, partition).and_then(|p| match p.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }))
    }

    fn ends(&mut self, topic: &str) -> anyhow::Result<Vec<(i32, i64)>> {
        let deadline = Instant::now() + self.stall;
        let md = while_away(deadline, topic, || self.consumer.fetch_metadata(Some(topic), Duration::from_secs(10)))
            .with_context(|| format!("reading the metadata of `{topic}`"))?;
        let Some(t) = md.topics().first().filter(|t| t.error().is_none()) else { return Ok(Vec::new()) };
        // One ListOffsets request for every partition (timestamp -1: each one's end), not a
        // round trip per partition: a task opening under exactly_once asks this per output.
        let mut tpl = TopicPartitionList::new();
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::End)?;
        }
        let got = while_away(deadline, topic, || self.consumer.offsets_for_times(tpl.clone(), Duration::from_secs(10)))
            .with_context(|| format!("reading the end offsets of `{topic}`"))?;
        let mut ends = Vec::new();
        for e in got.elements() {
            let Offset::Offset(high) = e.offset() else {
                bail!("reading the end of {topic}[{}]: the broker answered {:?}", e.partition(), e.offset());
            };
            ends.push((e.partition(), high));
        }
        ends.sort_unstable();
        Ok(ends)
    }
}

/// Reads every partition of a global table's topic as records arrive, with no group: the
/// global table's own consumer, beside the stream threads'.
pub struct GlobalReader {
    consumer: BaseConsumer,
    arena: Arena,
}

impl GlobalReader {
    /// Starts reading `topic` from `from` (`(partition, offset)` for each partition).
    pub fn new(config: &ClientConfig, application_id: &str, topic: &str, from: &[(i32, i64)]) -> anyhow::Result<Self> {
        let mut c = without(config, PRODUCER_ONLY);
        c.set("group.id", format!("{application_id}-global"));
        c.set("enable.auto.commit", "false");
        c.set("enable.partition.eof", "false");
        let consumer: BaseConsumer = c.create().context("creating the global table reader")?;
        let mut tpl = TopicPartitionList::new();
        for &(p, offset) in from {
            tpl.add_partition_offset(topic, p, Offset::Offset(offset))?;
        }
        consumer.assign(&tpl).with_context(|| format!("assigning the partitions of global table topic `{topic}`"))?;
        Ok(Self { consumer, arena: Arena::default() })
    }

    /// The next record, with its partition and offset, if one arrives within `timeout`.
    pub fn poll(&mut self, timeout: Duration) -> anyhow::Result<Option<(i32, i64, Record)>> {
        let Some(m) = self.consumer.poll(timeout) else { return Ok(None) };
        let m = m.context("reading a global table's topic")?;
        Ok(Some((m.partition(), m.offset(), KafkaSource::record(&mut self.arena, &m))))
    }
}

/// The instances topic (`<application-id>-instances`, one compacted partition), read whole
/// from its start by a consumer of its own and written by an idempotent producer.
pub struct KafkaInstanceLog {
    topic: String,
    producer: rdkafka::producer::BaseProducer,
    consumer: BaseConsumer,
}

impl KafkaInstanceLog {
    pub fn new(config: &ClientConfig, application_id: &str, topic: &str) -> anyhow::Result<Self> {
        let mut c = without(config, PRODUCER_ONLY);
        c.set("group.id", format!("{application_id}-instances"));
        c.set("enable.auto.commit", "false");
        c.set("enable.partition.eof", "false");
        let consumer: BaseConsumer = c.create().context("creating the instances topic reader")?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
        consumer.assign(&tpl).with_context(|| format!("reading the instances topic `{topic}`"))?;
        let mut p = without(config, CONSUMER_ONLY);
        p.set("enable.idempotence", "true");
        let producer = p.create().context("creating the instances topic writer")?;
        Ok(Self { topic: topic.to_owned(), producer, consumer })
    }
}

impl crate::io::InstanceLog for KafkaInstanceLog {
    fn publish(&mut self, key: &str, value: Option<&[u8]>) -> anyhow::Result<()> {
        let mut r: BaseRecord<'_, str, [u8]> = BaseRecord::to(&self.topic).key(key).partition(0);
        if let Some(v) = value {
            r = r.payload(v);
        }
        self.producer.send(r).map_err(|(e, _)| e).with_context(|| format!("announcing to `{}`", self.topic))?;
        self.producer.flush(Duration::from_secs(10)).with_context(|| format!("announcing to `{}`", self.topic))?;
        Ok(())
    }

    fn poll(&mut self, timeout: Duration) -> anyhow::Result<Vec<(String, Option<Vec<u8>>)>> {
        let mut out = Vec::new();
        let mut wait = timeout;
        while let Some(m) = self.consumer.poll(wait) {
            let m = match m {
                Ok(m) => m,
                // The broker is away: the consumer reconnects and reads on.
                Err(e) if passing(&e) => {
                    tracing::warn!(topic = %self.topic, error = %e, "the instances topic waits for the broker");
                    break;
                }
                Err(e) => return Err(e).with_context(|| format!("reading `{}`", self.topic)),
            };
            let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
            out.push((key, m.payload().map(<[u8]>::to_vec)));
            wait = Duration::ZERO;
        }
        Ok(out)
    }
}

/// How long a restore may stall before it fails.
pub const RESTORE_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether `code` says the broker, a coordinator or a partition's leader is away for now:
/// librdkafka reconnects by itself, and what failed can be tried again.
fn away(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::CoordinatorLoadInProgress
            | RDKafkaErrorCode::WaitingForCoordinator
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::NotLeaderForPartition
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
    )
}

/// Whether a consumer's error passes with the broker's absence (see [`away`]): a read that
/// meets one goes on, and is not ended by it.
fn passing(e: &KafkaError) -> bool {
    match e {
        KafkaError::MessageConsumption(code) | KafkaError::Global(code) | KafkaError::MetadataFetch(code) => {
            away(*code)
        }
        _ => false,
    }
}

/// Asks `ask` (about `topic`) again while the broker is away (a restarting broker, a moving
/// leader), until `deadline`; any other error, or the last one, is returned.
fn while_away<T>(deadline: Instant, topic: &str, mut ask: impl FnMut() -> KafkaResult<T>) -> KafkaResult<T> {
    loop {
        match ask() {
            Err(e) if passing(&e) && Instant::now() < deadline => {
                tracing::warn!(topic, error = %e, "waiting for the broker");
                std::thread::sleep(Duration::from_millis(500));
            }
            answer => return answer,
        }
    }
}

/// The number of brokers the cluster reports: one metadata round trip, which fails when no
/// broker answers within 5 s.
pub fn cluster_brokers(config: &ClientConfig) -> anyhow::Result<usize> {
    let consumer: BaseConsumer = without(config, PRODUCER_ONLY).create().context("creating a metadata client")?;
    let md = consumer.fetch_metadata(None, Duration::from_secs(5)).context("asking the cluster for its metadata")?;
    Ok(md.brokers().len())
}

/// The number of partitions of `topic`.
pub fn partition_count(config: &ClientConfig, topic: &str) -> anyhow::Result<Option<i32>> {
    let consumer: BaseConsumer = without(config, PRODUCER_ONLY).create().context("creating a metadata client")?;
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("reading the metadata of `{topic}`"))?;
    Ok(md
        .topics()
        .first()
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len() as i32))
}

/// Creates the application's internal topics that do not exist yet: `(name, partitions,
/// compacted)`.
pub fn ensure_topics(config: &ClientConfig, topics: &[(String, i32, bool)]) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let mut missing = Vec::new();
    for (name, partitions, compact) in topics {
        if partition_count(config, name)?.is_none() {
            missing.push((name.as_str(), *partitions, *compact));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> =
        without(config, CONSUMER_ONLY).create().context("creating the Kafka admin client")?;
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|(name, partitions, compact)| {
            let t = NewTopic::new(name, *partitions, TopicReplication::Fixed(1));
            if *compact { t.set("cleanup.policy", "compact") } else { t }
        })
        .collect();
    let rt = futures_executor(
        admin.create_topics(&new, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))),
    )
    .context("creating the internal topics")?;
    for r in rt {
        match r {
            Ok(name) => tracing::info!(topic = %name, "internal topic created"),
            Err((name, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(topic = %name, "internal topic exists")
            }
            Err((name, e)) => bail!("creating internal topic `{name}`: {e}"),
        }
    }
    Ok(())
}

/// Runs one admin future to completion on this thread.
fn futures_executor<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context as TaskContext, Poll as TaskPoll, Wake, Waker};
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(std::sync::Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = TaskContext::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            TaskPoll::Ready(v) => return v,
            TaskPoll::Pending => std::thread::park_timeout(Duration::from_millis(10)),
        }
    }
}

impl KafkaSink {
    fn send_one(&mut self, topic: &str, partition: Option<i32>, record: &Record) -> anyhow::Result<()> {
        let track = if partition.is_some() || self.track_all { TRACK_ACK } else { 0 };
        let mut r: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(topic, track).timestamp(record.timestamp);
        // librdkafka's header list is an allocation of its own: only records with headers
        // (repartitions, dead letters) pay for one.
        if !record.headers.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for h in &record.headers {
                headers = headers.insert(KafkaHeader { key: &h.name, value: h.value.as_deref() });
            }
            r = r.headers(headers);
        }
        if let Some(p) = partition {
            r = r.partition(p);
        }
        if let Some(k) = record.key.as_deref() {
            r = r.key(k);
        }
        if let Some(v) = record.value.as_deref() {
            r = r.payload(v);
        }
        loop {
            match self.producer.send(r) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    self.producer.poll(Duration::from_millis(10));
                    r = back;
                }
                Err((e, _)) => bail!("producing to `{topic}`: {e}"),
            }
        }
    }

    fn flush_all(&mut self) -> anyhow::Result<()> {
        // Not `producer.flush(FLUSH_TIMEOUT)`: while records are in flight, rdkafka's flush
        // serves delivery reports with `poll(100 ms)`, and that poll always waits out its
        // timeout, so every batch would take at least 100 ms. Flushing in short steps waits
        // about as long as the acknowledgements take.
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        loop {
            match self.producer.flush(FLUSH_STEP) {
                Ok(()) => break,
                Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) if Instant::now() < deadline => {}
                Err(e) => return Err(e).context("the outputs were not acknowledged in time"),
            }
        }
        let failures: Vec<String> =
            self.producer.context().failures.lock().map(|mut f| std::mem::take(&mut *f)).unwrap_or_default();
        if !failures.is_empty() {
            bail!("{} output record(s) were not delivered: {}", failures.len(), failures.join("; "));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_gets_only_its_properties() {
        let properties = [("session.timeout.ms", "6000"), ("linger.ms", "20"), ("client.id", "x")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let c = client_config("127.0.0.1:9092", &properties);
        let consumer = without(&c, PRODUCER_ONLY);
        let producer = without(&c, CONSUMER_ONLY);
        assert_eq!(consumer.get("session.timeout.ms"), Some("6000"));
        assert_eq!(consumer.get("linger.ms"), None);
        assert_eq!(producer.get("session.timeout.ms"), None);
        assert_eq!(producer.get("linger.ms"), Some("20"));
        for c in [&consumer, &producer] {
            assert_eq!(c.get("client.id"), Some("x"));
            assert_eq!(c.get("bootstrap.servers"), Some("127.0.0.1:9092"));
        }
    }

    #[test]
    fn a_revocation_drops_only_what_was_buffered_before_it() {
        let context = GroupContext::default();
        let batch = |topic: &str, partition| InputBatch { topic: topic.to_owned(), partition, records: Vec::new() };
        let mut pending: VecDeque<InputBatch> = [batch("a", 0), batch("a", 1), batch("b", 0)].into_iter().collect();
        let mut groups: Vec<InputBatch> = vec![batch("a", 0), batch("a", 2)];
        unbuffer_revoked(&context, &mut pending, &mut groups);
        assert_eq!((pending.len(), groups.len()), (3, 2), "nothing revoked, nothing dropped");
        context.unbuffer.lock().expect("lock").push(("a".to_owned(), 0));
        context.any_unbuffer.store(true, std::sync::atomic::Ordering::Release);
        context.revoked.lock().expect("lock").push(("a".to_owned(), 0));
        unbuffer_revoked(&context, &mut pending, &mut groups);
        let left: Vec<(&str, i32)> = pending.iter().map(|b| (b.topic.as_str(), b.partition)).collect();
        assert_eq!(left, [("a", 1), ("b", 0)]);
        let kept: Vec<(&str, i32)> = groups.iter().map(|b| (b.topic.as_str(), b.partition)).collect();
        assert_eq!(kept, [("a", 2)]);
        // Records of the partition fetched after it was assigned back are kept.
        groups.push(batch("a", 0));
        unbuffer_revoked(&context, &mut pending, &mut groups);
        assert_eq!(groups.len(), 2);
        assert_eq!(context.revoked.lock().expect("lock").len(), 1, "the runtime still closes the task");
    }
}
