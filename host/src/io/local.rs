//! Local mode, the embedded default: input topics are read from files, topics that a pipeline
//! writes and another reads live in memory, and the other outputs are printed or written to
//! files. A topic has one partition unless its stream says more (`partitions`): a file is then
//! read as that many partitions (keyed records by their key's murmur2 hash, the others in turn
//! by line), and in-memory topics are partitioned by key as Kafka's producer does. Without
//! `--follow` the run ends when every file is read and every in-memory record is processed;
//! with it, files are tailed.
//!
//! Each stream thread owns the topic partitions it reads ([`LocalPlan`] says which): its
//! files' partitions, and a channel that every thread's sink sends that thread's in-memory
//! partitions into, a batch at a time. Threads share two counters: the files not yet at their end, and the records in
//! flight (read or written to memory, and not yet processed). A thread's source is exhausted
//! when both are zero; files are not read further while too many records are in flight, so
//! memory holds a bounded number of records however far one thread runs ahead of another.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use super::format::{parse_line, to_display_line, write_json_line};
use super::partition::partition_of;
use super::{InputBatch, Poll, RecordSink, RecordSource};
use crate::manifest::{FileFormat, Format};
use crate::record::{Arena, Record};

/// A partition of an input file, and the stream thread that reads it.
#[derive(Debug, Clone)]
pub struct LocalFile {
    pub topic: String,
    pub path: PathBuf,
    pub format: FileFormat,
    pub partition: i32,
    /// The partitions the file is read as (its records are spread over them).
    pub partitions: i32,
    pub thread: usize,
}

/// What local mode reads and writes, and which thread reads what.
#[derive(Debug, Clone, Default)]
pub struct LocalPlan {
    pub files: Vec<LocalFile>,
    /// Topics that pipelines write and read, held in memory, with the thread that reads each
    /// of their partitions.
    pub memory: BTreeMap<String, Vec<usize>>,
    /// `--output topic=path`: topics written to files as JSON lines instead of printed.
    pub outputs: BTreeMap<String, PathBuf>,
    /// Key and value formats per topic, for printing and writing.
    pub formats: HashMap<String, (Format, Format)>,
    pub threads: usize,
    pub follow: bool,
    /// Records in flight past which no thread reads more of its files.
    pub max_in_flight: usize,
}

/// What the threads of one local run share.
struct Hub {
    /// Each thread's inbox, for the in-memory topics it reads.
    inboxes: Vec<Sender<InputBatch>>,
    /// In-memory topics: per partition, the reading thread and the next offset.
    memory: HashMap<String, Vec<(usize, AtomicI64)>>,
    /// Files not yet at their end (never zero with `--follow`).
    open_files: AtomicUsize,
    /// Records read or written to memory and not yet processed.
    in_flight: AtomicI64,
    max_in_flight: i64,
    /// Records the threads' record caches hold until their next commit: the run is not over
    /// while any are held.
    held: AtomicI64,
    /// `--output` files, shared by the threads (one lock per batch written to a file).
    outputs: HashMap<String, Mutex<std::io::BufWriter<File>>>,
    formats: HashMap<String, (Format, Format)>,
    follow: bool,
}

impl Hub {
    fn done(&self) -> bool {
        !self.follow
            && self.open_files.load(Ordering::Acquire) == 0
            && self.in_flight.load(Ordering::Acquire) == 0
            && self.held.load(Ordering::Acquire) == 0
    }

    fn formats(&self, topic: &str) -> (Format, Format) {
        self.formats.get(topic).copied().unwrap_or((Format::String, Format::String))
    }
}

/// One source and one sink per thread of `plan`.
pub fn local_io(plan: LocalPlan) -> anyhow::Result<Vec<(LocalSource, LocalSink)>> {
    let threads = plan.threads.max(1);
    let (inboxes, receivers): (Vec<_>, Vec<_>) = (0..threads).map(|_| std::sync::mpsc::channel()).unzip();
    let mut outputs = HashMap::new();
    for (topic, path) in &plan.outputs {
        let f = File::create(path)
            .with_context(|| format!("creating the output of topic `{topic}`: {}", path.display()))?;
        outputs.insert(topic.clone(), Mutex::new(std::io::BufWriter::new(f)));
    }
    let hub = Arc::new(Hub {
        inboxes,
        memory: plan
            .memory
            .iter()
            .map(|(t, th)| (t.clone(), th.iter().map(|th| (*th % threads, AtomicI64::new(0))).collect()))
            .collect(),
        open_files: AtomicUsize::new(plan.files.len()),
        in_flight: AtomicI64::new(0),
        max_in_flight: plan.max_in_flight.max(1) as i64,
        held: AtomicI64::new(0),
        outputs,
        formats: plan.formats,
        follow: plan.follow,
    });
    let mut files: Vec<Vec<FileInput>> = (0..threads).map(|_| Vec::new()).collect();
    for f in plan.files {
        let file = File::open(&f.path)
            .with_context(|| format!("opening the input of topic `{}`: {}", f.topic, f.path.display()))?;
        files[f.thread % threads].push(FileInput {
            topic: f.topic,
            path: f.path,
            format: f.format,
            partition: f.partition,
            partitions: f.partitions.max(1),
            reader: BufReader::new(file),
            line_no: 0,
            pending: String::new(),
            at_end: false,
            arena: Arena::default(),
        });
    }
    let mut out = Vec::with_capacity(threads);
    for (files, inbox) in files.into_iter().zip(receivers) {
        let source = LocalSource { files, inbox, hub: hub.clone(), paused: HashSet::new(), next: 0 };
        let sink = LocalSink { hub: hub.clone(), stdout: std::io::stdout(), unkeyed: 0 };
        out.push((source, sink));
    }
    Ok(out)
}

struct FileInput {
    topic: String,
    path: PathBuf,
    format: FileFormat,
    /// This reader's partition of the file, of `partitions`.
    partition: i32,
    partitions: i32,
    reader: BufReader<File>,
    line_no: i64,
    /// A partial last line, kept until its newline arrives (`--follow`).
    pending: String,
    /// Read to its end (without `--follow`).
    at_end: bool,
    /// The records' keys and values, carved from shared chunks.
    arena: Arena,
}

impl FileInput {
    fn read(&mut self, max: usize, follow: bool) -> anyhow::Result<Vec<Record>> {
        let mut out = Vec::new();
        let mut line = String::new();
        while out.len() < max {
            line.clear();
            let n = self.reader.read_line(&mut line).with_context(|| format!("reading {}", self.path.display()))?;
            if n == 0 {
                break;
            }
            if !line.ends_with('\n') && follow {
                self.pending.push_str(&line);
                break;
            }
            let full;
            let text = if self.pending.is_empty() {
                line.trim_end_matches(['\n', '\r'])
            } else {
                full = std::mem::take(&mut self.pending) + &line;
                full.trim_end_matches(['\n', '\r'])
            };
            let no = self.line_no;
            self.line_no += 1;
            if text.trim().is_empty() {
                continue;
            }
            if self.partitions > 1
                && self.format == FileFormat::Text
                && no % i64::from(self.partitions) != i64::from(self.partition)
            {
                continue;
            }
            let mut record = parse_line(text, self.format, no, &mut self.arena)
                .map_err(|e| anyhow::anyhow!("{}:{}: {e}", self.path.display(), no + 1))?;
            if self.partitions > 1 && self.format != FileFormat::Text {
                let n = self.partitions as usize;
                let p = match &record.key {
                    Some(k) => partition_of(k, n),
                    None => (no as usize) % n,
                };
                if p != self.partition as usize {
                    continue;
                }
            }
            // The line number: increasing within each partition, the same from run to run.
            record.origin.offset = no;
            out.push(record);
        }
        Ok(out)
    }
}

pub struct LocalSource {
    files: Vec<FileInput>,
    inbox: Receiver<InputBatch>,
    hub: Arc<Hub>,
    /// Topic partitions not read for now (a task waits for a retry).
    paused: HashSet<(String, i32)>,
    next: usize,
}

impl LocalSource {
    fn next_from_inbox(&mut self, wait: Duration) -> anyhow::Result<Option<InputBatch>> {
        let got = if wait.is_zero() {
            match self.inbox.try_recv() {
                Ok(b) => Some(b),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => anyhow::bail!("the in-memory topics are gone"),
            }
        } else {
            match self.inbox.recv_timeout(wait) {
                Ok(b) => Some(b),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => anyhow::bail!("the in-memory topics are gone"),
            }
        };
        Ok(got)
    }
}

impl RecordSource for LocalSource {
    fn poll(&mut self, max: usize) -> anyhow::Result<Poll> {
        // In-memory topics first: what pipelines wrote is processed before more input is
        // read.
        if let Some(b) = self.next_from_inbox(Duration::ZERO)? {
            return Ok(Poll::Batch(b));
        }
        let follow = self.hub.follow;
        if self.hub.in_flight.load(Ordering::Acquire) < self.hub.max_in_flight {
            for _ in 0..self.files.len() {
                let i = self.next % self.files.len();
                self.next = self.next.wrapping_add(1);
                let f = &mut self.files[i];
                if f.at_end || self.paused.contains(&(f.topic.clone(), f.partition)) {
                    continue;
                }
                let records = f.read(max, follow)?;
                if !records.is_empty() {
                    self.hub.in_flight.fetch_add(records.len() as i64, Ordering::AcqRel);
                    return Ok(Poll::Batch(InputBatch { topic: f.topic.clone(), partition: f.partition, records }));
                }
                if !follow {
                    f.at_end = true;
                    self.hub.open_files.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
        if self.hub.done() {
            return Ok(Poll::Exhausted);
        }
        // Wait for another thread's output (or, with `--follow`, for the files to grow).
        let wait = if follow { Duration::from_millis(100) } else { Duration::from_millis(1) };
        Ok(self.next_from_inbox(wait)?.map_or(Poll::Idle, Poll::Batch))
    }

    fn commit(&mut self, _offsets: &BTreeMap<(String, i32), i64>) -> anyhow::Result<bool> {
        Ok(true)
    }

    fn processed(&mut self, _topic: &str, _partition: i32, records: usize) {
        self.hub.in_flight.fetch_sub(records as i64, Ordering::AcqRel);
    }

    fn hold(&mut self, delta: i64) {
        self.hub.held.fetch_add(delta, Ordering::AcqRel);
    }

    fn caught_up(&self, topic: &str, partition: i32) -> Option<bool> {
        // A file is caught up once read to its end; an in-memory topic has what other threads
        // wrote so far, and nobody knows what they will write. A followed file may grow at any
        // time: that is not known either.
        if self.hub.follow {
            return None;
        }
        Some(self.files.iter().find(|f| f.topic == topic && f.partition == partition).is_none_or(|f| f.at_end))
    }

    fn pause(&mut self, topic: &str, partition: i32) {
        self.paused.insert((topic.to_owned(), partition));
    }

    fn resume(&mut self, topic: &str, partition: i32) {
        self.paused.remove(&(topic.to_owned(), partition));
    }
}

pub struct LocalSink {
    hub: Arc<Hub>,
    stdout: std::io::Stdout,
    /// Spreads records without a key over a partitioned topic, in turn.
    unkeyed: usize,
}

impl LocalSink {
    /// Hands records to the threads that read `topic` from memory: each record to the
    /// partition of its key (Kafka's murmur2; records without a key in turn), numbered in its
    /// partition's order.
    fn send_to_memory(&mut self, topic: &str, records: Vec<Record>) -> anyhow::Result<()> {
        let hub = self.hub.clone();
        let Some(partitions) = hub.memory.get(topic) else { return Ok(()) };
        if records.is_empty() {
            return Ok(());
        }
        if partitions.len() == 1 {
            return Self::deliver(&hub, topic, 0, &partitions[0], records);
        }
        let n = partitions.len();
        let mut split: Vec<Vec<Record>> = (0..n).map(|_| Vec::new()).collect();
        for r in records {
            let p = match &r.key {
                Some(k) => partition_of(k, n),
                None => {
                    self.unkeyed = self.unkeyed.wrapping_add(1);
                    self.unkeyed % n
                }
            };
            split[p].push(r);
        }
        for (p, records) in split.into_iter().enumerate() {
            if !records.is_empty() {
                Self::deliver(&hub, topic, p as i32, &partitions[p], records)?;
            }
        }
        Ok(())
    }

    fn deliver(
        hub: &Hub,
        topic: &str,
        partition: i32,
        (thread, next): &(usize, AtomicI64),
        mut records: Vec<Record>,
    ) -> anyhow::Result<()> {
        let base = next.fetch_add(records.len() as i64, Ordering::AcqRel);
        for (i, r) in records.iter_mut().enumerate() {
            r.origin.offset = base + i as i64;
        }
        hub.in_flight.fetch_add(records.len() as i64, Ordering::AcqRel);
        let batch = InputBatch { topic: topic.to_owned(), partition, records };
        hub.inboxes[*thread].send(batch).map_err(|_| anyhow::anyhow!("the thread reading `{topic}` is gone"))
    }

    /// Writes records to their file, or prints them, unless the topic only lives in memory.
    fn write_out(&mut self, topic: &str, records: &[Record]) -> anyhow::Result<()> {
        let (key, value) = self.hub.formats(topic);
        if let Some(w) = self.hub.outputs.get(topic) {
            let mut w = w.lock().map_err(|_| anyhow::anyhow!("the output of `{topic}` is poisoned"))?;
            for record in records {
                write_json_line(&mut *w, record, key, value)?;
            }
        } else if !self.hub.memory.contains_key(topic) {
            let mut stdout = self.stdout.lock();
            for record in records {
                writeln!(stdout, "{}", to_display_line(topic, record, value))?;
            }
        }
        Ok(())
    }
}

impl RecordSink for LocalSink {
    fn send(&mut self, topic: &str, records: &[Record]) -> anyhow::Result<()> {
        self.write_out(topic, records)?;
        if self.hub.memory.contains_key(topic) {
            self.send_to_memory(topic, records.to_vec())?;
        }
        Ok(())
    }

    fn send_owned(&mut self, topic: &str, records: Vec<Record>) -> anyhow::Result<()> {
        self.write_out(topic, &records)?;
        self.send_to_memory(topic, records)
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        for w in self.hub.outputs.values() {
            w.lock().map_err(|_| anyhow::anyhow!("an output file is poisoned"))?.flush()?;
        }
        self.stdout.flush()?;
        Ok(())
    }
}

/// Every record of a local input file, in order (a global table's file, read whole before the
/// tasks start); each record's offset is its line.
pub fn read_all(path: &std::path::Path, format: FileFormat) -> anyhow::Result<Vec<Record>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut input = FileInput {
        topic: String::new(),
        path: path.to_path_buf(),
        format,
        partition: 0,
        partitions: 1,
        reader: BufReader::new(file),
        line_no: 0,
        pending: String::new(),
        at_end: false,
        arena: Arena::default(),
    };
    let mut out = Vec::new();
    loop {
        let batch = input.read(4096, false)?;
        if batch.is_empty() {
            return Ok(out);
        }
        out.extend(batch);
    }
}
