//! Global tables (Kafka Streams' `GlobalKTable`): every instance keeps the whole topic, all
//! partitions, in a store of its own, shared by the joins of every task. The store is
//! restored before any task runs: on Kafka from the topic itself (from the positions the store
//! reached, to the end), in local mode from the table's file, read whole. On Kafka a thread of
//! the table's own then keeps it up to date while the pipeline runs, committing the store
//! every commit interval. As in Kafka Streams, a global table's updates are not in time order
//! with the streams that join it: a lookup sees what has arrived.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::RunOptions;
use super::task::table_record;
use crate::io::ChangelogReader;
use crate::io::kafka::{GlobalReader, KafkaChangelogReader, partition_count};
use crate::manifest::FileFormat;
use crate::operators::{SharedStore, locked};
use crate::record::Record;
use crate::state::{Position, Store, store_dir, table_row};
use crate::topology::Topology;

/// Where the global tables' records come from.
pub enum GlobalInput<'a> {
    /// Local mode: each table's file, by topic.
    Files(&'a BTreeMap<String, (PathBuf, FileFormat)>),
    Kafka(&'a rdkafka::ClientConfig),
}

/// The open global tables, and the thread that keeps them up to date (stopped on drop).
pub struct GlobalTables {
    pub stores: BTreeMap<String, SharedStore>,
    stop: Arc<AtomicBool>,
    updater: Option<std::thread::JoinHandle<()>>,
}

impl Drop for GlobalTables {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.updater.take() {
            let _ = t.join();
        }
    }
}

/// A topic to follow, its store, and the offset to start at in each partition.
type Follow = (String, SharedStore, Vec<(i32, i64)>);

/// The upstream name of a partition of a global table's topic.
fn upstream(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// Opens and restores every global table of `topology`; on Kafka, starts the thread that
/// follows their topics.
pub fn open(topology: &Topology, options: &RunOptions, input: GlobalInput<'_>) -> anyhow::Result<GlobalTables> {
    let mut stores = BTreeMap::new();
    // On Kafka: each table's topic, store, and where the thread that follows it starts.
    let mut follow: Vec<Follow> = Vec::new();
    for (name, g) in &topology.globals {
        let spec = topology
            .stores
            .get(&g.store)
            .cloned()
            .with_context(|| format!("global table `{name}`: no store `{}`", g.store))?;
        let dir = store_dir(&options.state_dir, &topology.application_id, "global", &g.store);
        let mut store =
            Store::open(spec, Some(&dir), None).with_context(|| format!("opening global table `{name}`"))?;
        let started = Instant::now();
        let mut restored = 0;
        match &input {
            GlobalInput::Files(files) => {
                // The file is the whole table: read it again from the start.
                store.wipe()?;
                let Some((path, format)) = files.get(&g.topic) else {
                    anyhow::bail!(
                        "`global_tables.{name}` has no `file`: local mode reads a global table from its file"
                    );
                };
                let mut restore = store.begin_table_restore(upstream(&g.topic, 0));
                let mut buf = Vec::new();
                for r in crate::io::local::read_all(path, *format)? {
                    if let Some(r) = table_record(&options.codecs, &g.topic, r, &mut buf) {
                        restore.apply(r.origin.offset, r)?;
                    }
                }
                restored += restore.finish()?;
            }
            GlobalInput::Kafka(config) => {
                let partitions = partition_count(config, &g.topic)?
                    .with_context(|| format!("global table `{name}`: topic `{}` does not exist", g.topic))?;
                let mut reader = KafkaChangelogReader::new(config, &topology.application_id)?;
                let mut from = Vec::new();
                for p in 0..partitions {
                    let start = store.position(&upstream(&g.topic, p)).map_or(0, |pos| pos.offset + 1);
                    let mut restore = store.begin_table_restore(upstream(&g.topic, p));
                    let mut buf = Vec::new();
                    reader.read(&g.topic, p, (start, None), &mut |offset, r| {
                        table_record(&options.codecs, &g.topic, r, &mut buf)
                            .map_or(Ok(()), |r| restore.apply(offset, r))
                    })?;
                    restored += restore.finish()?;
                    from.push((p, store.position(&upstream(&g.topic, p)).map_or(start, |pos| pos.offset + 1)));
                }
                let shared = Arc::new(Mutex::new(store));
                stores.insert(g.store.clone(), shared.clone());
                follow.push((g.topic.clone(), shared, from));
                log_restored(name, restored, started);
                continue;
            }
        }
        log_restored(name, restored, started);
        stores.insert(g.store.clone(), Arc::new(Mutex::new(store)));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let updater = match (&input, follow.is_empty()) {
        (GlobalInput::Kafka(config), false) => {
            let mut readers = Vec::new();
            for (topic, store, from) in follow {
                readers.push((GlobalReader::new(config, &topology.application_id, &topic, &from)?, topic, store));
            }
            let (stop, interval, codecs) = (stop.clone(), options.commit_interval, options.codecs.clone());
            Some(
                std::thread::Builder::new()
                    .name("wasp-global".to_owned())
                    .spawn(move || keep_up(readers, &stop, interval, &codecs))
                    .context("starting the global table thread")?,
            )
        }
        _ => None,
    };
    Ok(GlobalTables { stores, stop, updater })
}

/// `entries`: the records applied (upserts and deletes).
fn log_restored(name: &str, entries: u64, started: Instant) {
    tracing::info!(table = name, entries, elapsed_ms = started.elapsed().as_millis() as u64, "global table restored");
}

/// Applies a record of a global table's topic: an upsert, or a delete for a tombstone; a
/// record without a key has no row.
pub(super) fn apply(store: &mut Store, topic: &str, partition: i32, offset: i64, r: &Record, row: &mut Vec<u8>) {
    let Some(key) = &r.key else { return };
    if !store.first_time(&upstream(topic, partition), Position { offset, seq: 0 }) {
        return;
    }
    match &r.value {
        Some(v) => {
            table_row(row, r.timestamp, v);
            store.put_slice(key, row);
        }
        None => store.delete(key.to_vec()),
    }
}

/// The global thread: follows every global table's topic until `stop`, committing the stores
/// every `interval` (and at the end).
fn keep_up(
    mut readers: Vec<(GlobalReader, String, SharedStore)>,
    stop: &AtomicBool,
    interval: Duration,
    codecs: &crate::io::codec::Codecs,
) {
    let (mut row, mut buf) = (Vec::new(), Vec::new());
    let mut last_commit = Instant::now();
    let commit = |readers: &[(GlobalReader, String, SharedStore)]| {
        for (_, topic, store) in readers {
            let mut s = locked(store);
            s.prepare_commit();
            if let Err(e) = s.commit(None) {
                tracing::error!(topic, error = %e, "committing a global table's store");
            }
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let mut idle = true;
        for (reader, topic, store) in &mut readers {
            // Take what has arrived, a bounded run at a time.
            for _ in 0..1024 {
                match reader.poll(Duration::from_millis(if idle { 50 } else { 0 })) {
                    Ok(Some((p, offset, r))) => {
                        idle = false;
                        if let Some(r) = table_record(codecs, topic, r, &mut buf) {
                            apply(&mut locked(store), topic, p, offset, &r, &mut row);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(topic = %topic, error = format!("{e:#}"), "reading a global table's topic");
                        break;
                    }
                }
            }
        }
        if last_commit.elapsed() >= interval {
            commit(&readers);
            last_commit = Instant::now();
        }
    }
    commit(&readers);
}
