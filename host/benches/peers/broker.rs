//! The test broker and what the word-count runs need from it: nisshi started on a free port
//! (as `make bench` starts it), the input topics, and a watch on each run's output topic that
//! tells when every count is in and checks the final counts against the expected totals.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use wasp_host::io::kafka::client_config;

/// A nisshi broker with memory storage, killed when dropped.
pub struct Broker {
    child: Child,
    pub bootstrap: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where nisshi is: `$WASP_NISSHI`, else `~/.cargo/bin/nisshi` (where `make setup` installs
/// it), else the `PATH`.
fn nisshi_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WASP_NISSHI").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/nisshi"));
    home.filter(|p| p.exists())
        .or_else(|| std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join("nisshi")).find(|p| p.exists()))
}

impl Broker {
    /// Starts nisshi on a free 127.0.0.1 port; `None` if it is not installed.
    pub fn start() -> Result<Option<Self>> {
        let Some(bin) = nisshi_binary() else { return Ok(None) };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://nisshi/", "--group-initial-rebalance-delay", "0s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let broker = Self { child, bootstrap: format!("127.0.0.1:{port}") };
        let t = Instant::now();
        while std::net::TcpStream::connect(&broker.bootstrap).is_err() {
            if t.elapsed() > Duration::from_secs(10) {
                bail!("nisshi did not listen within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Some(broker))
    }

    pub fn config(&self) -> ClientConfig {
        client_config(&self.bootstrap, &BTreeMap::new())
    }

    /// Creates `topic` with `partitions` partitions, and Kafka's default retention set
    /// explicitly: nisshi describes only the settings a topic was created with, and Quix
    /// derives its repartition topic's settings from the input's `retention.ms` and
    /// `retention.bytes` (a `KeyError` without them).
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        use rdkafka::client::DefaultClientContext;
        use rdkafka::types::RDKafkaErrorCode;
        let admin: AdminClient<DefaultClientContext> = self.config().create().context("creating an admin client")?;
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1))
            .set("retention.ms", "604800000")
            .set("retention.bytes", "-1");
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for r in block_on(admin.create_topics([&new], &options)).with_context(|| format!("creating `{topic}`"))? {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, e)) => bail!("creating `{name}`: {e}"),
            }
        }
        Ok(())
    }

    /// Produces `lines` to `topic`, keyed by line number (so murmur2 spreads them over the
    /// partitions); returns the seconds it took.
    pub fn produce_lines(&self, topic: &str, lines: &[String]) -> Result<f64> {
        let producer: BaseProducer = self
            .config()
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .create()
            .context("creating the input producer")?;
        let t = Instant::now();
        for (i, line) in lines.iter().enumerate() {
            let key = i.to_string();
            send(&producer, BaseRecord::to(topic).key(key.as_bytes()).payload(line.as_bytes()));
        }
        producer.flush(Duration::from_secs(120)).with_context(|| format!("producing the lines to `{topic}`"))?;
        Ok(t.elapsed().as_secs_f64())
    }

    /// Deletes every topic whose name contains `marker` (a finished run's internal and output
    /// topics), so the broker's memory holds one run at a time.
    pub fn delete_topics_containing(&self, marker: &str) -> Result<()> {
        use rdkafka::admin::{AdminClient, AdminOptions};
        use rdkafka::client::DefaultClientContext;
        let consumer: BaseConsumer = self.config().create().context("creating a metadata client")?;
        let md = consumer.fetch_metadata(None, Duration::from_secs(10)).context("listing the topics")?;
        let names: Vec<String> =
            md.topics().iter().map(|t| t.name().to_owned()).filter(|n| n.contains(marker)).collect();
        if names.is_empty() {
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> = self.config().create().context("creating an admin client")?;
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for r in block_on(admin.delete_topics(&refs, &options)).context("deleting topics")? {
            if let Err((name, e)) = r {
                bail!("deleting `{name}`: {e}");
            }
        }
        Ok(())
    }
}

/// Sends one record, waiting while the producer's queue is full.
pub fn send<C: rdkafka::producer::ProducerContext<DeliveryOpaque = ()>>(
    producer: &BaseProducer<C>,
    mut record: BaseRecord<'_, [u8], [u8]>,
) {
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, back)) => {
                producer.poll(Duration::from_millis(5));
                record = back;
            }
        }
    }
}

/// Runs one admin future to completion on this thread.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context as TaskContext, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = TaskContext::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// Watches one run's output topic: how many updates it holds (cheap, from the watermarks,
/// while the run is timed), and the latest count of each word (read in full, after).
pub struct OutputWatch {
    topic: String,
    partitions: i32,
    consumer: BaseConsumer,
    /// Where each partition's high watermark stood before the run.
    base: i64,
    /// The latest count read for each word.
    latest: HashMap<String, u64>,
    /// The next offset to read, per partition.
    next: Vec<i64>,
    /// Whether the topic is assigned to the consumer yet: not while the run is timed, or
    /// librdkafka would prefetch the output on the runner's cores.
    assigned: bool,
}

impl OutputWatch {
    pub fn new(broker: &Broker, topic: &str, partitions: i32) -> Result<Self> {
        let consumer: BaseConsumer = broker
            .config()
            .set("group.id", format!("peers-watch-{topic}"))
            .set("enable.auto.commit", "false")
            .create()
            .context("creating the output reader")?;
        let mut watch = Self {
            topic: topic.to_owned(),
            partitions,
            consumer,
            base: 0,
            latest: HashMap::new(),
            next: vec![0; partitions as usize],
            assigned: false,
        };
        watch.base = watch.updates()?;
        Ok(watch)
    }

    /// Updates the topic holds beyond those it held when the watch started.
    pub fn updates(&self) -> Result<i64> {
        let mut total = 0;
        for p in 0..self.partitions {
            let (lo, hi) = self
                .consumer
                .fetch_watermarks(&self.topic, p, Duration::from_secs(5))
                .with_context(|| format!("reading the watermarks of `{}`", self.topic))?;
            total += hi - lo;
        }
        Ok(total - self.base)
    }

    /// Reads the topic up to its current end, keeping each word's latest count.
    pub fn catch_up(&mut self) -> Result<()> {
        if !self.assigned {
            let mut tpl = TopicPartitionList::new();
            for p in 0..self.partitions {
                tpl.add_partition_offset(&self.topic, p, Offset::Beginning)?;
            }
            self.consumer.assign(&tpl).with_context(|| format!("assigning `{}`", self.topic))?;
            self.assigned = true;
        }
        let mut ends = Vec::with_capacity(self.partitions as usize);
        for p in 0..self.partitions {
            ends.push(self.consumer.fetch_watermarks(&self.topic, p, Duration::from_secs(5))?.1);
        }
        let t = Instant::now();
        while self.next.iter().zip(&ends).any(|(n, e)| n < e) {
            if t.elapsed() > Duration::from_secs(120) {
                bail!("reading `{}` stalled at {:?} of {:?}", self.topic, self.next, ends);
            }
            let Some(m) = self.consumer.poll(Duration::from_millis(100)) else { continue };
            let m = m.with_context(|| format!("reading `{}`", self.topic))?;
            let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
            let value = m.payload().map(|v| String::from_utf8_lossy(v).into_owned());
            let (Some(key), Some(value)) = (key, value) else {
                bail!("`{}`[{}]@{} has no key or no value", self.topic, m.partition(), m.offset());
            };
            let count = value.trim().parse::<u64>().with_context(|| {
                format!("`{}`[{}]@{}: `{value}` is not a count", self.topic, m.partition(), m.offset())
            })?;
            self.latest.insert(key, count);
            if let Some(n) = self.next.get_mut(m.partition() as usize) {
                *n = m.offset() + 1;
            }
        }
        Ok(())
    }

    /// Compares the latest counts with `expected`: `None` when every word has its total, else
    /// a description of the first differences.
    pub fn mismatch(&self, expected: &HashMap<String, u64>) -> Option<String> {
        let mut wrong: Vec<String> = expected
            .iter()
            .filter(|(w, c)| self.latest.get(*w) != Some(c))
            .map(|(w, c)| match self.latest.get(w) {
                Some(got) => format!("{w}: {got} (expected {c})"),
                None => format!("{w}: missing (expected {c})"),
            })
            .collect();
        wrong.extend(
            self.latest.keys().filter(|w| !expected.contains_key(*w)).map(|w| format!("{w}: not a word of the input")),
        );
        if wrong.is_empty() {
            return None;
        }
        wrong.sort();
        let shown: Vec<&str> = wrong.iter().take(5).map(String::as_str).collect();
        Some(format!("{} of {} words differ, e.g. {}", wrong.len(), expected.len(), shown.join(", ")))
    }
}
