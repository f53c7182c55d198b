//! Interactive queries (Kafka Streams' `KafkaStreams.store(…)`): reads of the stores the tasks
//! of this process own. Each store stays with its operator in its stream thread; a query goes
//! to every thread through a channel, which the thread answers between batches (so a reader
//! never sees half a batch), and the answers of all tasks are merged. While a thread restores
//! stores, a query answers "restoring" rather than what a store holds so far.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use crate::state::{QueryRow, StoreKind, StoreQuery};

/// The answer to a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryAnswer {
    /// The entries found, in key order, at most the limit asked for.
    Rows(Vec<QueryRow>),
    /// No task of this process has a store of that name (it may be another instance's, or
    /// not queryable).
    NoSuchStore,
    /// A store is being restored: an answer now could be stale.
    Restoring,
}

/// A query on its way to a stream thread.
pub struct Request {
    pub store: String,
    pub query: StoreQuery,
    pub limit: usize,
    /// The thread's answer: `None` when none of its tasks has the store.
    pub reply: Sender<Result<Option<Vec<QueryRow>>, String>>,
}

/// The process's side of queries: each stream thread's inbox, and the stores being restored
/// (by name, with how many tasks restore a copy of each).
#[derive(Clone, Default)]
pub struct Queries {
    threads: Arc<Mutex<Vec<Sender<Request>>>>,
    restoring: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl std::fmt::Debug for Queries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queries").field("restoring", &self.restoring).finish_non_exhaustive()
    }
}

/// How long a query waits for the threads (one batch each, normally).
const ANSWER_WAIT: Duration = Duration::from_secs(10);

impl Queries {
    /// A stream thread's inbox, registered for queries.
    pub fn register(&self) -> Receiver<Request> {
        let (tx, rx) = channel();
        self.threads.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(tx);
        rx
    }

    /// A task starts (`true`) or ends (`false`) restoring its copies of `stores`.
    pub fn restoring(&self, stores: &[&str], on: bool) {
        let mut r = self.restoring.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for &s in stores {
            if on {
                *r.entry(s.to_owned()).or_default() += 1;
            } else if let Some(n) = r.get_mut(s) {
                *n -= 1;
                if *n == 0 {
                    r.remove(s);
                }
            }
        }
    }

    /// Asks every stream thread, and merges what their tasks hold.
    pub fn ask(&self, store: &str, query: StoreQuery, limit: usize) -> Result<QueryAnswer, String> {
        if self.restoring.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains_key(store) {
            return Ok(QueryAnswer::Restoring);
        }
        let threads = self.threads.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let (tx, rx) = channel();
        let mut asked = 0;
        for t in &threads {
            let r = Request { store: store.to_owned(), query: query.clone(), limit, reply: tx.clone() };
            if t.send(r).is_ok() {
                asked += 1;
            }
        }
        let mut found = false;
        let mut rows: Vec<QueryRow> = Vec::new();
        for _ in 0..asked {
            match rx.recv_timeout(ANSWER_WAIT) {
                Ok(Ok(Some(mut r))) => {
                    found = true;
                    rows.append(&mut r);
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err("a stream thread did not answer in time".to_owned()),
            }
        }
        if !found {
            return Ok(QueryAnswer::NoSuchStore);
        }
        rows.sort();
        rows.truncate(limit);
        Ok(QueryAnswer::Rows(rows))
    }
}
