//! `wasp:plugin/state`: the stores of a custom processor, as resources. A handle names one of
//! the stores the processor's step owns; the stores themselves stay with the task (they are
//! committed, changelogged and restored with it), shared with the instance through
//! [`SharedStores`].
//!
//! What a guest can make the host hold is capped: a key at [`MAX_STATE_KEY_BYTES`], a value
//! at [`MAX_STATE_VALUE_BYTES`], a store's writes since its last commit at
//! [`MAX_PENDING_STATE_BYTES`] (commits come between batches, so this bounds one call), and a
//! scan at [`MAX_SCAN`] entries and [`MAX_SCAN_BYTES`]. A write past a cap fails with a
//! `state-error` naming it, which the SDKs turn into a per-record error; a scan past one
//! returns its first part, as one past `limit` does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use wasmtime::component::Resource;

use super::HostState;
use crate::state::windows::{
    DATA, EMIT_INDEX, Window, decode_data_key, index_key, key_prefix, session_key, time_bytes, window_key,
};
use crate::state::{Store, StoreKind, prefix_end};
use crate::wasm::bindings::state::{
    Entry, Host, HostKeyValueStore, HostSessionStore, HostWindowStore, SessionEntry, StateError, WindowedEntry,
};

/// The most entries one scan returns, whatever `limit` the guest asks for.
pub const MAX_SCAN: u32 = 10_000;
/// A scan ends with the entry that brings its keys and values to this many bytes.
pub const MAX_SCAN_BYTES: usize = 16 << 20;
/// The longest key a guest may write.
pub const MAX_STATE_KEY_BYTES: usize = 64 << 10;
/// The longest value a guest may write (about what a default broker takes as one changelog
/// record).
pub const MAX_STATE_VALUE_BYTES: usize = 1 << 20;
/// The most bytes a store's writes may hold until its next commit.
pub const MAX_PENDING_STATE_BYTES: usize = 64 << 20;

/// A processor's stores, by name, shared by the task (which commits them) and the instance
/// (whose host calls read and write them).
pub type SharedStores = Arc<Mutex<BTreeMap<String, Store>>>;

/// What a store resource stands for: the name of one of the step's stores.
pub struct StoreHandle {
    name: String,
}

pub type KvHandle = StoreHandle;
pub type WindowHandle = StoreHandle;
pub type SessionHandle = StoreHandle;

impl HostState {
    fn open(&mut self, name: String, kind: StoreKind) -> Result<Resource<StoreHandle>, StateError> {
        let Some(stores) = &self.stores else {
            return Err(StateError::NoSuchStore(format!("{name}: this step has no stores")));
        };
        let stores = stores.lock().map_err(|_| StateError::Failed("the stores are poisoned".into()))?;
        match stores.get(&name) {
            None => {
                let names: Vec<&String> = stores.keys().collect();
                return Err(StateError::NoSuchStore(format!("{name}: the step's stores are {names:?}")));
            }
            Some(s) if s.spec.kind != kind => {
                return Err(StateError::WrongKind(format!("{name} is a {} store, not {kind}", s.spec.kind)));
            }
            Some(_) => {}
        }
        drop(stores);
        self.table.push(StoreHandle { name }).map_err(|e| StateError::Failed(e.to_string()))
    }

    /// Runs `f` on the store behind `handle`.
    fn with_store<T>(
        &mut self,
        handle: &Resource<StoreHandle>,
        f: impl FnOnce(&mut Store) -> Result<T, crate::state::StateError>,
    ) -> Result<T, StateError> {
        let name = self.table.get(handle).map_err(|e| StateError::Failed(e.to_string()))?.name.clone();
        let stores = self.stores.as_ref().ok_or_else(|| StateError::NoSuchStore(name.clone()))?;
        let mut stores = stores.lock().map_err(|_| StateError::Failed("the stores are poisoned".into()))?;
        let store = stores.get_mut(&name).ok_or(StateError::NoSuchStore(name))?;
        f(store).map_err(|e| StateError::Failed(e.to_string()))
    }
}

fn data_key(key: &[u8]) -> Vec<u8> {
    [&[DATA][..], key].concat()
}

fn cap(limit: u32) -> usize {
    limit.min(MAX_SCAN) as usize
}

/// Whether a write of `key` and `value` bytes stays within the caps.
fn within_caps(store: &Store, key: usize, value: usize) -> Result<(), crate::state::StateError> {
    let over = |what: String| {
        Err(crate::state::StateError::Backend { store: store.name().to_owned(), message: format!("{what}: refused") })
    };
    if key > MAX_STATE_KEY_BYTES {
        return over(format!("a key of {key} bytes is over the cap of {MAX_STATE_KEY_BYTES} (MAX_STATE_KEY_BYTES)"));
    }
    if value > MAX_STATE_VALUE_BYTES {
        return over(format!(
            "a value of {value} bytes is over the cap of {MAX_STATE_VALUE_BYTES} (MAX_STATE_VALUE_BYTES)"
        ));
    }
    if store.pending_bytes().saturating_add(key + value) > MAX_PENDING_STATE_BYTES {
        return over(format!(
            "the store's writes since its last commit would pass {MAX_PENDING_STATE_BYTES} bytes \
             (MAX_PENDING_STATE_BYTES)"
        ));
    }
    Ok(())
}

impl Host for HostState {}

impl HostKeyValueStore for HostState {
    fn open(&mut self, name: String) -> Result<Resource<KvHandle>, StateError> {
        HostState::open(self, name, StoreKind::KeyValue)
    }

    fn get(&mut self, h: Resource<KvHandle>, key: Vec<u8>) -> Result<Option<Vec<u8>>, StateError> {
        self.with_store(&h, |s| s.get(&data_key(&key))?.map(|v| s.view_owned(v)).transpose())
    }

    fn put(&mut self, h: Resource<KvHandle>, key: Vec<u8>, value: Vec<u8>) -> Result<(), StateError> {
        self.with_store(&h, |s| {
            // The guest's bytes within the caps before they are converted, and after.
            within_caps(s, key.len(), value.len())?;
            let value = s.stored_owned(value)?;
            within_caps(s, key.len(), value.len())?;
            s.put(data_key(&key), value);
            Ok(())
        })
    }

    fn delete(&mut self, h: Resource<KvHandle>, key: Vec<u8>) -> Result<(), StateError> {
        self.with_store(&h, |s| {
            within_caps(s, key.len(), 0)?;
            s.delete(data_key(&key));
            Ok(())
        })
    }

    fn range(
        &mut self,
        h: Resource<KvHandle>,
        from: Vec<u8>,
        to: Option<Vec<u8>>,
        limit: u32,
    ) -> Result<Vec<Entry>, StateError> {
        self.with_store(&h, |s| {
            let to = match to {
                Some(t) => Some(data_key(&t)),
                None => prefix_end(&[DATA]),
            };
            let found = s.range_within(&data_key(&from), to.as_deref(), cap(limit), MAX_SCAN_BYTES)?;
            found
                .into_iter()
                .map(|(k, value)| Ok(Entry { key: k[1..].to_vec(), value: s.view_owned(value)? }))
                .collect()
        })
    }

    fn prefix_scan(&mut self, h: Resource<KvHandle>, prefix: Vec<u8>, limit: u32) -> Result<Vec<Entry>, StateError> {
        self.with_store(&h, |s| {
            let found = s.prefix_within(&data_key(&prefix), cap(limit), MAX_SCAN_BYTES)?;
            found
                .into_iter()
                .map(|(k, value)| Ok(Entry { key: k[1..].to_vec(), value: s.view_owned(value)? }))
                .collect()
        })
    }

    fn drop(&mut self, h: Resource<KvHandle>) -> wasmtime::Result<()> {
        self.table.delete(h)?;
        Ok(())
    }
}

impl HostWindowStore for HostState {
    fn open(&mut self, name: String) -> Result<Resource<WindowHandle>, StateError> {
        HostState::open(self, name, StoreKind::Window)
    }

    fn put(&mut self, h: Resource<WindowHandle>, key: Vec<u8>, start: i64, value: Vec<u8>) -> Result<(), StateError> {
        self.with_store(&h, |s| {
            // The guest's bytes within the caps before they are converted, and after.
            within_caps(s, key.len(), value.len())?;
            let value = s.stored_owned(value)?;
            within_caps(s, key.len(), value.len())?;
            let k = window_key(&key, Window { start, end: 0 });
            s.put(index_key(EMIT_INDEX, start, &k), Vec::new());
            s.put(k, value);
            Ok(())
        })
    }

    fn delete(&mut self, h: Resource<WindowHandle>, key: Vec<u8>, start: i64) -> Result<(), StateError> {
        self.with_store(&h, |s| {
            within_caps(s, key.len(), 0)?;
            let k = window_key(&key, Window { start, end: 0 });
            s.delete(index_key(EMIT_INDEX, start, &k));
            s.delete(k);
            Ok(())
        })
    }

    fn fetch(
        &mut self,
        h: Resource<WindowHandle>,
        key: Vec<u8>,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<WindowedEntry>, StateError> {
        self.with_store(&h, |s| {
            let lo = window_key(&key, Window { start: from, end: 0 });
            let hi = match to.checked_add(1) {
                Some(t) => window_key(&key, Window { start: t, end: 0 }),
                None => prefix_end(&key_prefix(&key)).unwrap_or_default(),
            };
            let found = s.range_within(&lo, Some(&hi), cap(limit), MAX_SCAN_BYTES)?;
            found
                .into_iter()
                .filter_map(|(k, value)| {
                    let (_, w) = decode_data_key(&k, false)?;
                    Some(s.view_owned(value).map(|value| WindowedEntry { key: key.clone(), start: w.start, value }))
                })
                .collect()
        })
    }

    fn fetch_until(
        &mut self,
        h: Resource<WindowHandle>,
        to: i64,
        limit: u32,
    ) -> Result<Vec<WindowedEntry>, StateError> {
        self.with_store(&h, |s| {
            let hi = match to.checked_add(1) {
                Some(t) => [&[EMIT_INDEX][..], &time_bytes(t)].concat(),
                None => vec![EMIT_INDEX + 1],
            };
            let index = s.range(&[EMIT_INDEX], Some(&hi), cap(limit))?;
            let mut out = Vec::with_capacity(index.len());
            let mut bytes = 0usize;
            for (k, _) in index {
                if bytes >= MAX_SCAN_BYTES {
                    break;
                }
                let data = &k[9..];
                let (Some((key, w)), Some(value)) = (decode_data_key(data, false), s.get(data)?) else { continue };
                bytes = bytes.saturating_add(key.len() + value.len());
                out.push(WindowedEntry { key: key.to_vec(), start: w.start, value: s.view_owned(value)? });
            }
            Ok(out)
        })
    }

    fn drop(&mut self, h: Resource<WindowHandle>) -> wasmtime::Result<()> {
        self.table.delete(h)?;
        Ok(())
    }
}

impl HostSessionStore for HostState {
    fn open(&mut self, name: String) -> Result<Resource<SessionHandle>, StateError> {
        HostState::open(self, name, StoreKind::Session)
    }

    fn put(
        &mut self,
        h: Resource<SessionHandle>,
        key: Vec<u8>,
        start: i64,
        end: i64,
        value: Vec<u8>,
    ) -> Result<(), StateError> {
        self.with_store(&h, |s| {
            // The guest's bytes within the caps before they are converted, and after.
            within_caps(s, key.len(), value.len())?;
            let value = s.stored_owned(value)?;
            within_caps(s, key.len(), value.len())?;
            s.put(session_key(&key, Window { start, end }), value);
            Ok(())
        })
    }

    fn remove(&mut self, h: Resource<SessionHandle>, key: Vec<u8>, start: i64, end: i64) -> Result<(), StateError> {
        self.with_store(&h, |s| {
            within_caps(s, key.len(), 0)?;
            s.delete(session_key(&key, Window { start, end }));
            Ok(())
        })
    }

    fn find(
        &mut self,
        h: Resource<SessionHandle>,
        key: Vec<u8>,
        earliest_end: i64,
        latest_start: i64,
        limit: u32,
    ) -> Result<Vec<SessionEntry>, StateError> {
        self.with_store(&h, |s| {
            let prefix = key_prefix(&key);
            let from = [&prefix[..], &time_bytes(earliest_end)].concat();
            let found = s.range_within(&from, prefix_end(&prefix).as_deref(), cap(limit), MAX_SCAN_BYTES)?;
            found
                .into_iter()
                .filter_map(|(k, value)| {
                    let (_, w) = decode_data_key(&k, true)?;
                    (w.start <= latest_start).then(|| {
                        s.view_owned(value).map(|value| SessionEntry {
                            key: key.clone(),
                            start: w.start,
                            end: w.end,
                            value,
                        })
                    })
                })
                .collect()
        })
    }

    fn drop(&mut self, h: Resource<SessionHandle>) -> wasmtime::Result<()> {
        self.table.delete(h)?;
        Ok(())
    }
}
