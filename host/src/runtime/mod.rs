//! The runtime: stream threads that run tasks. A task runs one sub-topology for one partition:
//! it owns its operators (and so its plugin instances and state stores) and turns an input
//! batch into output records. Each stream thread (`thread`) owns its tasks, its source and
//! sink (on Kafka: a consumer that is one group member, and a producer), and its commits;
//! threads share nothing on the batch path. The error policy (retry, bisection, dead letters)
//! is in `policy`; the commit order in `commit`.
//!
//! Every commit interval (and at the end) a thread commits: the outputs are flushed, the
//! stores' pending writes go to their changelogs and are flushed, then the stores write locally
//! and the input offsets are committed, in that order (at-least-once; the stores' positions make state updates
//! apply once, see [`crate::state`]).

mod commit;
pub mod driver;
pub mod eos;
pub mod global;
pub mod hosts;
mod order;
mod policy;
pub mod query;
pub mod standby;
mod task;
mod thread;

/// The registered operators, for the topology builder.
pub use crate::operators::step_specs as operator_specs;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use policy::{Stopped, TaskError};
pub use task::{Task, TaskOutput};

use crate::io::{ChangelogReader, RecordSink, RecordSource};
use crate::topology::Topology;
use crate::wasm::PluginDirectory;

/// What a finished run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunStats {
    pub records_in: u64,
    pub records_out: u64,
    pub batches: u64,
    pub failed_records: u64,
    /// Records dropped because their windows had closed.
    pub late_records: u64,
    pub commits: u64,
    /// Changelog entries applied while restoring stores.
    pub restored_entries: u64,
    /// Exactly-once: records a restarted task did not write again, because the task's
    /// previous owner had.
    pub suppressed_records: u64,
    /// exactly_once_v2: transactions aborted (a rebalance, or a refused commit), each
    /// followed by the thread going back to its last commit.
    pub aborted_transactions: u64,
}

impl RunStats {
    fn add(&mut self, o: &RunStats) {
        self.records_in += o.records_in;
        self.records_out += o.records_out;
        self.batches += o.batches;
        self.failed_records += o.failed_records;
        self.late_records += o.late_records;
        self.commits += o.commits;
        self.restored_entries += o.restored_entries;
        self.suppressed_records += o.suppressed_records;
        self.aborted_transactions += o.aborted_transactions;
    }
}

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub batch_size: usize,
    pub commit_interval: Duration,
    /// Where persistent stores live.
    pub state_dir: PathBuf,
    /// Whether stores write changelogs (off in local mode: there is no broker to keep them).
    pub changelogs: bool,
    /// Where built-in metrics (late records, steps, lag) are counted.
    pub metrics: crate::wasm::MetricsRegistry,
    /// Set once the loop runs (the admin endpoint's `/ready`).
    pub ready: Arc<AtomicBool>,
    /// How long a task that reads several topics waits for one with nothing buffered before
    /// it goes on with the others, when the source cannot tell whether more is coming
    /// (Kafka Streams' `max.task.idle.ms`).
    pub max_task_idle: Duration,
    /// The global tables' stores, by name, restored before the threads start
    /// ([`global::GlobalTables`]).
    pub globals: std::collections::BTreeMap<String, crate::operators::SharedStore>,
    /// Where interactive queries reach the stream threads.
    pub queries: query::Queries,
    /// Which instance runs which task: each thread reports its assignment here.
    pub hosts: hosts::Hosts,
    /// What a crash may do to output topics ([`eos`] for `exactly_once`; on Kafka only).
    pub guarantee: crate::manifest::ProcessingGuarantee,
    /// The converted topics' codecs (`avro`, `protobuf`, `json_schema`, `csv`): [`codecs`].
    pub codecs: Arc<crate::io::codec::Codecs>,
}

/// The codecs of `topology`'s converted keys and values, with their schemas read: topics
/// hold their formats' bytes (`Mode::Wire`, on Kafka) or JSON (`Mode::Json`, local files and
/// test fixtures). A schema that does not load is an error naming where the manifest
/// declares it.
pub fn codecs(topology: &Topology, mode: crate::io::codec::Mode) -> anyhow::Result<crate::io::codec::Codecs> {
    use crate::io::codec::{Codecs, Field};
    use anyhow::Context;
    let registry = topology.schema_registry.as_ref().map(|r| {
        let wait = std::time::Duration::from_millis(u64::try_from(r.wait_ms).unwrap_or(0));
        Arc::new(crate::io::registry::Registry::new(&r.url).waiting(wait))
    });
    let mut codecs = Codecs::none(mode);
    for (topic, f) in &topology.formats {
        for (field, converted) in [(Field::Key, &f.key_codec), (Field::Value, &f.value_codec)] {
            if let Some(c) = converted {
                codecs.add(topic, field, &c.spec, registry.as_ref()).with_context(|| c.at.clone())?;
            }
        }
    }
    for (store, c) in &topology.store_formats {
        codecs.add_store(store, &c.spec, registry.as_ref()).with_context(|| c.at.clone())?;
    }
    Ok(codecs)
}

/// A store's declared value format, over its codec.
struct StoreCodec(Arc<crate::io::codec::Codec>);

impl crate::state::ValueFormat for StoreCodec {
    fn read(&self, stored: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        self.0.read(stored, out).map_err(|e| e.to_string())
    }

    fn write(&self, json: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        self.0.write(json, out).map_err(|e| e.to_string())
    }
}

/// The value format of store `store`, as the store takes it.
pub(crate) fn store_format(
    codecs: &crate::io::codec::Codecs,
    store: &str,
) -> Option<Arc<dyn crate::state::ValueFormat>> {
    codecs.store(store).map(|c| Arc::new(StoreCodec(c.clone())) as Arc<dyn crate::state::ValueFormat>)
}

/// What one stream thread reads from and writes to.
pub struct ThreadIo {
    pub source: Box<dyn RecordSource + Send>,
    pub sink: Box<dyn RecordSink + Send>,
    /// Restores stores from their changelogs (on Kafka).
    pub restorer: Option<Box<dyn ChangelogReader + Send>>,
}

/// Wall-clock time in milliseconds since the Unix epoch (0 before it).
pub(crate) fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Runs the topology on one stream thread per entry of `threads`, until every source is
/// exhausted or `stop` is set. In-flight batches finish and are committed before it returns.
/// When one thread fails, the others stop (and commit) too, and the first error is returned.
pub fn run(
    topology: &Arc<Topology>,
    plugins: &PluginDirectory,
    threads: Vec<ThreadIo>,
    options: &RunOptions,
    stop: &AtomicBool,
) -> anyhow::Result<RunStats> {
    let failed = AtomicBool::new(false);
    let committed = std::sync::atomic::AtomicUsize::new(0);
    let joined = std::sync::atomic::AtomicUsize::new(0);
    let flags = thread::StopFlags {
        user: stop,
        failed: &failed,
        committed: &committed,
        joined: &joined,
        threads: threads.len(),
    };
    options.ready.store(true, Ordering::Relaxed);
    let results: Vec<anyhow::Result<RunStats>> = std::thread::scope(|s| {
        let handles: Vec<_> = threads
            .into_iter()
            .enumerate()
            .map(|(i, io)| {
                let flags = &flags;
                std::thread::Builder::new().name(format!("wasp-stream-{i}")).spawn_scoped(s, move || {
                    // A panic stops the other threads too: they may be waiting for its records.
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        thread::run(i, topology, plugins, io, options, flags)
                    }))
                    .unwrap_or_else(|_| {
                        // The others need not wait for its last commit.
                        flags.committed.fetch_add(1, Ordering::AcqRel);
                        Err(anyhow::anyhow!("stream thread {i} panicked"))
                    });
                    if r.is_err() {
                        flags.failed.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a stream thread panicked"))),
                Err(e) => {
                    flags.failed.store(true, Ordering::Relaxed);
                    Err(anyhow::Error::new(e).context("starting a stream thread"))
                }
            })
            .collect()
    });
    let mut stats = RunStats::default();
    let mut first_error = None;
    for r in results {
        match r {
            Ok(s) => stats.add(&s),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(stats),
    }
}
