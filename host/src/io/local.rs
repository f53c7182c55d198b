//! Local mode, the embedded default: input topics are read from files, topics that a pipeline
//! writes and another reads live in memory, and the other outputs are printed or written to
//! files. One partition per topic. Without `--follow` the run ends when every file is read and
//! every in-memory topic is consumed; with it, files are tailed.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use super::format::{parse_line, to_display_line, to_json_line};
use super::{InputBatch, Poll, RecordSink, RecordSource};
use crate::manifest::FileFormat;
use crate::record::Record;
use crate::topology::Topology;

/// Topics held in memory between a pipeline that writes them and the one source that reads
/// them. Records leave memory once read, so a long `--follow` run does not grow.
#[derive(Default)]
pub struct MemoryTopics {
    topics: HashMap<String, MemoryTopic>,
}

#[derive(Default)]
struct MemoryTopic {
    /// The offset of `records[0]`.
    base: i64,
    records: std::collections::VecDeque<Record>,
}

pub type SharedTopics = Arc<Mutex<MemoryTopics>>;

struct FileInput {
    topic: String,
    path: PathBuf,
    format: FileFormat,
    reader: BufReader<File>,
    line_no: i64,
    /// A partial last line, kept until its newline arrives (`--follow`).
    pending: String,
}

pub struct LocalSource {
    files: Vec<FileInput>,
    /// Topics read from memory.
    memory: Vec<String>,
    shared: SharedTopics,
    follow: bool,
    next: usize,
}

impl LocalSource {
    /// `inputs` maps a topic to its file; every other source topic is read from memory.
    pub fn new(
        topology: &Topology,
        inputs: &BTreeMap<String, (PathBuf, FileFormat)>,
        shared: SharedTopics,
        follow: bool,
    ) -> anyhow::Result<Self> {
        let mut files = Vec::new();
        let mut memory = Vec::new();
        for topic in topology.sources.keys() {
            match inputs.get(topic) {
                Some((path, format)) => {
                    let f = File::open(path)
                        .with_context(|| format!("opening the input of topic `{topic}`: {}", path.display()))?;
                    files.push(FileInput {
                        topic: topic.clone(),
                        path: path.clone(),
                        format: *format,
                        reader: BufReader::new(f),
                        line_no: 0,
                        pending: String::new(),
                    });
                }
                None => memory.push(topic.clone()),
            }
        }
        Ok(Self { files, memory, shared, follow, next: 0 })
    }

    fn read_file(f: &mut FileInput, max: usize, follow: bool) -> anyhow::Result<Vec<Record>> {
        let mut out = Vec::new();
        while out.len() < max {
            let mut line = String::new();
            let n = f.reader.read_line(&mut line).with_context(|| format!("reading {}", f.path.display()))?;
            if n == 0 {
                break;
            }
            if !line.ends_with('\n') && follow {
                f.pending.push_str(&line);
                break;
            }
            let mut full = std::mem::take(&mut f.pending);
            full.push_str(&line);
            let text = full.trim_end_matches(['\n', '\r']);
            let no = f.line_no;
            f.line_no += 1;
            if text.trim().is_empty() {
                continue;
            }
            let record =
                parse_line(text, f.format, no).map_err(|e| anyhow::anyhow!("{}:{}: {e}", f.path.display(), no + 1))?;
            out.push(record);
        }
        Ok(out)
    }
}

impl RecordSource for LocalSource {
    fn poll(&mut self, max: usize) -> anyhow::Result<Poll> {
        // In-memory topics first: what pipelines wrote is processed before more input is
        // read, so memory holds about one batch's outputs, not the whole input's.
        {
            let mut shared = self.shared.lock().map_err(|_| anyhow::anyhow!("the in-memory topics are poisoned"))?;
            for topic in &self.memory {
                if let Some(log) = shared.topics.get_mut(topic.as_str())
                    && !log.records.is_empty()
                {
                    let n = max.min(log.records.len());
                    let records: Vec<Record> = log.records.drain(..n).collect();
                    log.base += n as i64;
                    return Ok(Poll::Batch(InputBatch { topic: topic.clone(), partition: 0, records }));
                }
            }
        }
        for _ in 0..self.files.len() {
            let i = self.next % self.files.len();
            self.next = self.next.wrapping_add(1);
            let f = &mut self.files[i];
            let records = Self::read_file(f, max, self.follow)?;
            if !records.is_empty() {
                return Ok(Poll::Batch(InputBatch { topic: f.topic.clone(), partition: 0, records }));
            }
        }
        if self.follow {
            std::thread::sleep(Duration::from_millis(100));
            Ok(Poll::Idle)
        } else {
            Ok(Poll::Exhausted)
        }
    }

    fn commit(&mut self, _topic: &str, _partition: i32, _next_offset: i64) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Where one output topic goes.
enum Out {
    Memory,
    File(std::io::BufWriter<File>),
    Print,
}

pub struct LocalSink {
    shared: SharedTopics,
    outs: HashMap<String, Out>,
    topology: Arc<Topology>,
    files: BTreeMap<String, PathBuf>,
    stdout: std::io::Stdout,
}

impl LocalSink {
    /// Topics some pipeline reads stay in memory; topics in `files` go to those files (as JSON
    /// lines); the rest are printed.
    pub fn new(topology: Arc<Topology>, files: BTreeMap<String, PathBuf>, shared: SharedTopics) -> Self {
        Self { shared, outs: HashMap::new(), topology, files, stdout: std::io::stdout() }
    }

    fn out(&mut self, topic: &str) -> anyhow::Result<&mut Out> {
        if !self.outs.contains_key(topic) {
            let out = if let Some(path) = self.files.get(topic) {
                let f = File::create(path)
                    .with_context(|| format!("creating the output of topic `{topic}`: {}", path.display()))?;
                Out::File(std::io::BufWriter::new(f))
            } else if self.topology.sources.contains_key(topic) {
                Out::Memory
            } else {
                Out::Print
            };
            self.outs.insert(topic.to_owned(), out);
        }
        Ok(self.outs.get_mut(topic).expect("inserted above"))
    }
}

impl RecordSink for LocalSink {
    fn send(&mut self, topic: &str, records: &[Record]) -> anyhow::Result<()> {
        let formats = self.topology.formats(topic);
        if self.topology.sources.contains_key(topic) {
            let mut shared = self.shared.lock().map_err(|_| anyhow::anyhow!("the in-memory topics are poisoned"))?;
            let log = shared.topics.entry(topic.to_owned()).or_default();
            for record in records {
                let mut r = record.clone();
                r.origin.offset = log.base + log.records.len() as i64;
                log.records.push_back(r);
            }
        }
        match self.out(topic)? {
            Out::Memory => {}
            Out::File(w) => {
                for record in records {
                    writeln!(w, "{}", to_json_line(record, formats.key, formats.value))?;
                }
            }
            Out::Print => {
                let mut stdout = self.stdout.lock();
                for record in records {
                    writeln!(stdout, "{}", to_display_line(topic, record, formats.value))?;
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        for out in self.outs.values_mut() {
            if let Out::File(w) = out {
                w.flush()?;
            }
        }
        self.stdout.flush()?;
        Ok(())
    }
}
