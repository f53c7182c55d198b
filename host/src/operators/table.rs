//! Tables: `[tables.NAME]` and a stream's `to_table` (Kafka Streams' `KTableSource`). Each
//! key's latest value is kept in a key-value store; each update passes on with the value it
//! replaces ([`Record::old`]), which table operations, joins and aggregations downstream need
//! to be right under updates and deletes. A tombstone deletes the key (and passes on, old
//! value and all; for a key that had none, as a change from nothing to nothing, as Kafka
//! Streams forwards it without a cache). Records without a key are dropped, as in Kafka
//! Streams: a table has no row for them.
//!
//! A `[tables]` table's store restores from the table's own topic (Kafka Streams' source-topic
//! changelog) and writes no changelog; a `to_table` store has one. Rows are kept with their
//! timestamp ([`table_row`]): a table-table join's result takes the later of its two rows'.
//! The store is shared with the joins of the task that read the table.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::{ConstructError, Emitted, Operator, OperatorSpec, SharedStore, TaskContext, locked, wrong_node};
use crate::record::Record;
use crate::state::{DirectUpstream, Store, table_row, table_row_parts, upstream_of, versions};
use crate::topology::{Form, Node, NodeOp, PluginUse, StepSpec};

pub static TO_TABLE: OperatorSpec = OperatorSpec {
    step: StepSpec {
        name: "to_table",
        fields: &[],
        plugin: PluginUse::None,
        form: Form::ToTable,
        note: None,
        // The builder answers a table's `to_table` itself.
        tables: true,
    },
    construct: Some(construct),
};

fn construct(node: &Node, ctx: &mut TaskContext<'_>) -> Result<Box<dyn Operator>, ConstructError> {
    let NodeOp::ToTable { store, versions } = &node.op else {
        return Err(wrong_node("to_table", node));
    };
    let opened: SharedStore = Arc::new(Mutex::new(ctx.open(store)?));
    ctx.tables.insert(store.clone(), opened.clone());
    let versions = match versions {
        Some(v) => {
            let history: SharedStore = Arc::new(Mutex::new(ctx.open(v)?));
            ctx.tables.insert(v.clone(), history.clone());
            Some(history)
        }
        None => None,
    };
    Ok(Box::new(ToTable {
        store: opened,
        versions,
        topics: ctx.topics.to_vec(),
        direct: DirectUpstream::default(),
        row: Vec::new(),
    }))
}

pub struct ToTable {
    store: SharedStore,
    /// A versioned table's history ([`crate::state::versions`]).
    versions: Option<SharedStore>,
    /// The task's input topics (for the upstream names of records read directly).
    topics: Vec<String>,
    direct: DirectUpstream,
    /// A row as written: reused from record to record.
    row: Vec<u8>,
}

/// The value of a table's row for `key` in `store`, with its timestamp.
pub fn lookup(store: &Store, key: &[u8]) -> Result<Option<(i64, Bytes)>, crate::state::StateError> {
    Ok(store.get(key)?.and_then(|row| table_row_parts(&row).map(|(ts, v)| (ts, Bytes::copy_from_slice(v)))))
}

impl Operator for ToTable {
    fn process(&mut self, input: Vec<Record>) -> Emitted {
        let mut out = Emitted { all: Vec::with_capacity(input.len()), ..Default::default() };
        let mut store = locked(&self.store);
        let mut keyless = 0u64;
        for mut r in input {
            let Some(key) = r.key.clone() else {
                keyless += 1;
                continue;
            };
            let Some((upstream, position)) = upstream_of(&r, self.direct.name(&self.topics, &r)) else { continue };
            // A versioned table keeps every update in the key's history; one older than the
            // key's newest is history only: the current value, and so the table's changes
            // downstream, stay as they are (KIP-914).
            if let Some(versions) = &self.versions {
                let mut history = locked(versions);
                if history.first_time(upstream, position) {
                    match versions::put(&mut history, &key, r.timestamp, r.value.as_deref()) {
                        Ok(versions::Put::Latest) => {}
                        Ok(put) => {
                            tracing::debug!(?put, timestamp = r.timestamp, "an out-of-order table update went into the history only");
                            store.first_time(upstream, position);
                            continue;
                        }
                        Err(e) => {
                            out.failures.push(super::join::state_failure(r, e));
                            continue;
                        }
                    }
                }
            }
            // Applied before a restart: its update went downstream then.
            if !store.first_time(upstream, position) {
                continue;
            }
            let old = match lookup(&store, &key) {
                Ok(old) => old.map(|(_, v)| v),
                Err(e) => {
                    out.failures.push(super::join::state_failure(r, e));
                    continue;
                }
            };
            store.advance_stream_time(r.timestamp);
            match &r.value {
                Some(v) => {
                    table_row(&mut self.row, r.timestamp, v);
                    store.put_slice(&key, &self.row);
                }
                None => store.delete(key.to_vec()),
            }
            r.old = old;
            out.all.push(r);
        }
        if keyless > 0 {
            tracing::debug!(records = keyless, "records without a key dropped: a table has no row for them");
        }
        out
    }

    fn with_stores(&mut self, f: &mut dyn FnMut(&mut Store)) {
        f(&mut locked(&self.store));
        if let Some(v) = &self.versions {
            f(&mut locked(v));
        }
    }

    fn query(
        &mut self,
        store: &str,
        query: &crate::state::StoreQuery,
        limit: usize,
    ) -> Option<crate::state::QueryResult> {
        let s = locked(&self.store);
        if s.name() != store {
            return None;
        }
        if let (crate::state::StoreQuery::KeyAsOf { key, ts }, Some(history)) = (query, &self.versions) {
            let found = versions::as_of(&locked(history), key, *ts);
            return Some(found.map(|row| {
                row.map(|(_, value)| crate::state::QueryRow { key: key.clone(), window: None, value }).into_iter().collect()
            }));
        }
        Some(crate::state::query_rows(&s, query, limit))
    }

    fn rerunnable(&self) -> bool {
        false
    }
}

/// The values of a batch of table changes, for one plugin call that sees each once: every
/// present new value, then (with old values) every present old value, as records of their
/// own. `at[i]` is where change `i`'s new and old values are in that batch.
pub struct ChangeValues {
    pub records: Vec<Record>,
    pub at: Vec<(Option<usize>, Option<usize>)>,
}

impl ChangeValues {
    pub fn of(input: &[Record], old_values: bool) -> Self {
        let mut records = Vec::with_capacity(input.len() * 2);
        let mut at = Vec::with_capacity(input.len());
        let mut push = |r: &Record, v: &Option<Bytes>| {
            v.as_ref().map(|v| {
                records.push(Record { value: Some(v.clone()), old: None, ..r.clone() });
                records.len() - 1
            })
        };
        for r in input {
            let new = push(r, &r.value);
            let old = if old_values { push(r, &r.old) } else { None };
            at.push((new, old));
        }
        Self { records, at }
    }

}
