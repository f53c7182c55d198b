//! The native word count: what a hand-written Rust service on rdkafka reaches, the ceiling for
//! wasp. It has wasp's shape (lines in, words out to a repartition topic keyed by word with the
//! murmur2 partitioner, counts kept per word, every updated count produced) but no Wasm, no
//! RocksDB, no changelog and no commit protocol: a HashMap, and librdkafka's auto-commit.
//! Two threads, one per stage (split | count), as a service on two cores would be written.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};

use crate::broker::send;
use crate::wordcount::Control;
use crate::words::split;

/// Where a stage's records go and where they come from.
pub struct Topics<'a> {
    pub input: &'a str,
    pub repartition: &'a str,
    pub output: &'a str,
}

/// Counts deliveries that failed, so a lost record fails the run instead of a count.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// wasp's sink settings (`io/kafka.rs`): murmur2 as the Java client partitions, idempotence,
/// a 5 ms linger.
fn producer(config: &ClientConfig) -> Result<BaseProducer<Deliveries>> {
    let mut c = config.clone();
    c.set("partitioner", "murmur2_random").set("enable.idempotence", "true").set("linger.ms", "5");
    c.create_with_context(Deliveries::default()).context("creating a producer")
}

fn consumer(config: &ClientConfig, group: &str, topic: &str) -> Result<BaseConsumer> {
    let consumer: BaseConsumer = config
        .clone()
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .create()
        .context("creating a consumer")?;
    consumer.subscribe(&[topic]).with_context(|| format!("subscribing to `{topic}`"))?;
    Ok(consumer)
}

/// Runs until `control` says stop; `group` prefixes both stages' consumer groups.
pub fn run(config: &ClientConfig, topics: &Topics<'_>, group: &str, control: &Control) -> Result<()> {
    let splitter = (consumer(config, group, topics.input)?, producer(config)?);
    let counter = (consumer(config, &format!("{group}-count"), topics.repartition)?, producer(config)?);
    // One stage failing stops the other.
    let abort = AtomicBool::new(false);
    let stopped = || control.stopped() || abort.load(Ordering::Relaxed);
    control.ready();
    std::thread::scope(|s| {
        let split = s.spawn(|| {
            let r = split_stage(&splitter.0, &splitter.1, topics.repartition, &stopped);
            if r.is_err() {
                abort.store(true, Ordering::Relaxed);
            }
            r
        });
        let count = s.spawn(|| {
            let r = count_stage(&counter.0, &counter.1, topics.output, &stopped);
            if r.is_err() {
                abort.store(true, Ordering::Relaxed);
            }
            r
        });
        let joined = [split.join(), count.join()];
        for r in joined {
            match r {
                Ok(r) => r?,
                Err(_) => bail!("a native stage panicked"),
            }
        }
        Ok(())
    })
}

/// Reads lines, writes each word keyed by itself to the repartition topic.
fn split_stage(
    consumer: &BaseConsumer,
    producer: &BaseProducer<Deliveries>,
    repartition: &str,
    stopped: &dyn Fn() -> bool,
) -> Result<()> {
    let mut n = 0u64;
    while !stopped() {
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            producer.poll(Duration::ZERO);
            continue;
        };
        let m = m.context("reading the lines")?;
        let line = std::str::from_utf8(m.payload().unwrap_or_default()).context("a line that is not UTF-8")?;
        for word in split(line) {
            send(producer, BaseRecord::to(repartition).key(word.as_bytes()).payload(word.as_bytes()));
        }
        n += 1;
        if n.is_multiple_of(1024) {
            producer.poll(Duration::ZERO);
        }
    }
    finish(producer)
}

/// Reads words, counts them, writes each word's new count.
fn count_stage(
    consumer: &BaseConsumer,
    producer: &BaseProducer<Deliveries>,
    output: &str,
    stopped: &dyn Fn() -> bool,
) -> Result<()> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut text = String::new();
    let mut n = 0u64;
    while !stopped() {
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            producer.poll(Duration::ZERO);
            continue;
        };
        let m = m.context("reading the repartition topic")?;
        let word = std::str::from_utf8(m.key().unwrap_or_default()).context("a word that is not UTF-8")?;
        let count = match counts.get_mut(word) {
            Some(c) => c,
            None => counts.entry(word.to_owned()).or_default(),
        };
        *count += 1;
        text.clear();
        let _ = write!(text, "{count}");
        send(producer, BaseRecord::to(output).key(word.as_bytes()).payload(text.as_bytes()));
        n += 1;
        if n.is_multiple_of(1024) {
            producer.poll(Duration::ZERO);
        }
    }
    finish(producer)
}

/// Waits for what is in flight, and fails if any delivery failed.
fn finish(producer: &BaseProducer<Deliveries>) -> Result<()> {
    producer.flush(Duration::from_secs(30)).context("flushing")?;
    let failed = producer.context().failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} records were not delivered");
    }
    Ok(())
}
