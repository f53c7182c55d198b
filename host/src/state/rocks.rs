//! The persistent backend: one RocksDB database per store and task, with the entries in the
//! default column family and the progress in `wasp-meta`, written together in one
//! `WriteBatch`.

use std::collections::BTreeMap;
use std::path::Path;

use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch};

use super::{Backend, Entries, Progress};

/// Debian's RocksDB (7.8.3, `librocksdb-dev`) has every C function the host calls, with the
/// same signatures as the bundled 11.8's, but one: the write buffer manager came later. The
/// `rocksdb` crate's `Options` frees one on drop if it holds one; the host never makes one, so
/// this is never called, and it exists so that the host links.
#[cfg(wasp_system_rocksdb)]
#[unsafe(no_mangle)]
pub extern "C" fn rocksdb_write_buffer_manager_destroy(_manager: *mut std::ffi::c_void) {}

const META: &str = "wasp-meta";
const PROGRESS_KEY: &[u8] = b"progress";

pub struct RocksBackend {
    db: DB,
}

/// Why a database did not open.
pub enum OpenFailure {
    /// Another store of this process holds it: its task has not closed yet (it moves between
    /// stream threads in a rebalance). Kafka Streams retries such a task later; so do we.
    Locked(String),
    Other(String),
}

impl RocksBackend {
    pub fn open(dir: &Path, cache_bytes: usize) -> Result<Self, OpenFailure> {
        std::fs::create_dir_all(dir).map_err(|e| OpenFailure::Other(format!("creating {}: {e}", dir.display())))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // RocksDB's own LOG file keeps fatal messages only (and its header): wasp reports
        // every failed write itself. At RocksDB's default level a full disk aborted the
        // process with Debian's librocksdb, which is built with assertions: its logger (and
        // its disk-space recovery thread's, every few seconds) appended again to the LOG
        // after an append had failed.
        opts.set_log_level(rocksdb::LogLevel::Fatal);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&Cache::new_lru_cache(cache_bytes.max(1 << 20)));
        opts.set_block_based_table_factory(&table);
        let cfs = vec![
            ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, opts.clone()),
            ColumnFamilyDescriptor::new(META, Options::default()),
        ];
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(|e| {
            let message = format!("opening {}: {e}", dir.display());
            if e.kind() == rocksdb::ErrorKind::IOError && e.as_ref().contains("lock") {
                OpenFailure::Locked(message)
            } else {
                OpenFailure::Other(message)
            }
        })?;
        Ok(Self { db })
    }
}

impl Backend for RocksBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        self.db.get(key).map_err(|e| e.to_string())
    }

    fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        // Pinned: read in place from RocksDB's block cache or memtable, copied once, into `out`.
        Ok(self.db.get_pinned(key).map_err(|e| e.to_string())?.map(|v| out.extend_from_slice(&v)).is_some())
    }

    fn range(&self, from: &[u8], to: Option<&[u8]>, limit: usize, max_bytes: usize) -> Result<Entries, String> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        // The upper bound goes to RocksDB too: without it a seek past the last live key of
        // the range walks every deleted key after it (a join's expired records) to find one.
        let mut read = rocksdb::ReadOptions::default();
        if let Some(t) = to {
            read.set_iterate_upper_bound(t.to_vec());
        }
        for item in self.db.iterator_opt(IteratorMode::From(from, Direction::Forward), read) {
            let (k, v) = item.map_err(|e| e.to_string())?;
            if to.is_some_and(|t| &*k >= t) || out.len() >= limit || bytes >= max_bytes {
                break;
            }
            bytes = bytes.saturating_add(k.len() + v.len());
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    fn write(&mut self, writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>, progress: &Progress) -> Result<(), String> {
        let meta = self.db.cf_handle(META).ok_or("the wasp-meta column family is missing")?;
        let mut batch = WriteBatch::default();
        for (k, v) in writes {
            match v {
                Some(v) => batch.put(k, v),
                None => batch.delete(k),
            }
        }
        let body = serde_json::to_vec(progress).map_err(|e| e.to_string())?;
        batch.put_cf(&meta, PROGRESS_KEY, body);
        self.db.write(batch).map_err(|e| e.to_string())
    }

    fn progress(&self) -> Result<Option<Progress>, String> {
        let meta = self.db.cf_handle(META).ok_or("the wasp-meta column family is missing")?;
        match self.db.get_cf(&meta, PROGRESS_KEY).map_err(|e| e.to_string())? {
            Some(b) => serde_json::from_slice(&b).map(Some).map_err(|e| format!("reading the progress: {e}")),
            None => Ok(None),
        }
    }

    fn clear(&mut self) -> Result<(), String> {
        let meta = self.db.cf_handle(META).ok_or("the wasp-meta column family is missing")?;
        let mut batch = WriteBatch::default();
        for item in self.db.iterator(IteratorMode::Start) {
            let (k, _) = item.map_err(|e| e.to_string())?;
            batch.delete(k);
        }
        batch.delete_cf(&meta, PROGRESS_KEY);
        self.db.write(batch).map_err(|e| e.to_string())
    }
}
