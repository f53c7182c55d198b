//! Which instance hosts which task (Kafka Streams' `StreamsMetadata` and
//! `queryMetadataForKey`). Instances of one application id share the partitions; each runs
//! the tasks of the partitions the group assigned to its stream threads. To answer "who hosts
//! this key", every instance announces its tasks and its address (`application_server`, the
//! admin endpoint other instances and clients reach) in a compacted topic,
//! `<application-id>-instances`, keyed by address, whenever its assignment changes, and reads
//! everyone else's. A task claimed by two instances (one has not announced its loss yet) is
//! the one whose announcement came later in the log. A key's task is its store's sub-topology
//! and the partition Kafka's default partitioner (murmur2) gives the key among that
//! sub-topology's partitions: the key must have been partitioned that way, as Kafka Streams
//! assumes too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::io::InstanceLog;
use crate::io::partition::partition_of;
use crate::topology::Topology;

/// A task: `(sub-topology, partition)`.
pub type TaskKey = (usize, i32);

/// Where a key's task runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// In this instance.
    Here { partition: i32, task: TaskKey },
    /// In the instance reached at `server`.
    There { partition: i32, task: TaskKey, server: String },
    /// No instance has announced the task: a rebalance is under way (or the others have not
    /// been heard from yet).
    Unknown { partition: i32, task: TaskKey },
    /// No sub-topology owns a store of that name.
    NoSuchStore,
}

/// An instance and the tasks it runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Instance {
    pub server: Option<String>,
    pub tasks: Vec<String>,
    /// Whether it is the instance answering.
    pub this_instance: bool,
}

#[derive(Debug, Default)]
struct Inner {
    /// This instance's address, if it has one.
    server: Option<String>,
    /// Every task runs here (local mode: one process has them all).
    all_here: bool,
    /// The partitions of each sub-topology's topics (0 when not known).
    partitions: Vec<usize>,
    /// Each stream thread's assigned tasks.
    mine: BTreeMap<usize, BTreeSet<TaskKey>>,
    /// What the others announced last, with the order it was read in.
    others: BTreeMap<String, (u64, BTreeSet<TaskKey>)>,
    read: u64,
    /// `mine` changed since the last announcement.
    dirty: bool,
}

/// The process's view of who hosts what; cheap to clone.
#[derive(Clone)]
pub struct Hosts {
    topology: Arc<Topology>,
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Hosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hosts").field("inner", &self.inner).finish_non_exhaustive()
    }
}

/// The announcement an instance writes: its address and tasks.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Announcement {
    server: String,
    tasks: Vec<TaskKey>,
}

impl Hosts {
    /// Hosts of `topology`'s tasks; none known until the run says where they are
    /// ([`Self::all_here`] or [`Self::spread`]).
    pub fn new(topology: Arc<Topology>) -> Self {
        let partitions = vec![0; topology.subtopologies.len()];
        let inner = Inner { partitions, ..Inner::default() };
        Self { topology, inner: Arc::new(Mutex::new(inner)) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// This instance's address (the admin endpoint's, or `application_server`).
    pub fn set_server(&self, server: Option<String>) {
        let mut i = self.lock();
        i.server = server;
        i.dirty = true;
    }

    pub fn server(&self) -> Option<String> {
        self.lock().server.clone()
    }

    /// The tasks are spread over the instances of the group: each sub-topology has
    /// `partitions[sub]` tasks, and this instance runs those its threads report.
    pub fn spread(&self, partitions: Vec<usize>) {
        let mut i = self.lock();
        i.all_here = false;
        i.partitions = partitions;
    }

    /// Local mode: this process runs every task; `partitions` is each sub-topology's count.
    pub fn all_here(&self, partitions: Vec<usize>) {
        let mut i = self.lock();
        i.all_here = true;
        i.partitions = partitions;
    }

    /// Stream thread `thread` now runs `tasks`.
    pub fn set_thread(&self, thread: usize, tasks: BTreeSet<TaskKey>) {
        let mut i = self.lock();
        if i.mine.get(&thread) != Some(&tasks) {
            i.mine.insert(thread, tasks);
            i.dirty = true;
        }
    }

    /// The kind of the store named `store`, if the topology has one.
    pub fn store_kind(&self, store: &str) -> Option<crate::state::StoreKind> {
        self.topology.stores.get(store).map(|s| s.kind)
    }

    /// Whether `store` is a versioned table's (it keeps each key's history).
    pub fn versioned(&self, store: &str) -> bool {
        self.topology
            .nodes
            .iter()
            .any(|n| matches!(&n.op, crate::topology::NodeOp::ToTable { store: s, versions: Some(_) } if s == store))
    }

    /// Where the task that owns `key` in `store` runs.
    pub fn locate(&self, store: &str, key: &[u8]) -> Location {
        let Some(sub) = self.topology.store_subtopology(store) else { return Location::NoSuchStore };
        let i = self.lock();
        let n = i.partitions.get(sub).copied().unwrap_or(0).max(1);
        let partition = partition_of(key, n) as i32;
        let task = (sub, partition);
        if i.all_here || i.mine.values().any(|t| t.contains(&task)) {
            return Location::Here { partition, task };
        }
        let claim = i.others.iter().filter(|(_, (_, tasks))| tasks.contains(&task)).max_by_key(|(_, (read, _))| *read);
        match claim {
            Some((server, _)) => Location::There { partition, task, server: server.clone() },
            None => Location::Unknown { partition, task },
        }
    }

    /// Every instance known, this one first, each with its tasks (`<sub>_<partition>`); a
    /// task two claim is listed with the later claim only.
    pub fn instances(&self) -> Vec<Instance> {
        let i = self.lock();
        let name = |&(s, p): &TaskKey| super::Task::name(s, p);
        let mine: BTreeSet<TaskKey> = if i.all_here {
            i.partitions.iter().enumerate().flat_map(|(s, &n)| (0..n.max(1) as i32).map(move |p| (s, p))).collect()
        } else {
            i.mine.values().flatten().copied().collect()
        };
        let mut out =
            vec![Instance { server: i.server.clone(), tasks: mine.iter().map(name).collect(), this_instance: true }];
        for (server, tasks) in others(&i, &mine) {
            out.push(Instance { server: Some(server), tasks: tasks.iter().map(name).collect(), this_instance: false });
        }
        out
    }

    /// Every instance with an address, ordered by it: its address, its tasks (a task two
    /// claim goes with the later claim), and whether it is this one.
    pub(super) fn task_owners(&self) -> Vec<(String, BTreeSet<TaskKey>, bool)> {
        let i = self.lock();
        let mine: BTreeSet<TaskKey> = i.mine.values().flatten().copied().collect();
        let mut out: Vec<_> = others(&i, &mine).into_iter().map(|(s, t)| (s, t, false)).collect();
        if let Some(server) = &i.server {
            out.push((server.clone(), mine, true));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// This instance's announcement, if its tasks changed since the last one (and it has an
    /// address to announce).
    fn announcement(&self) -> Option<(String, Vec<u8>)> {
        let mut i = self.lock();
        if !i.dirty {
            return None;
        }
        let server = i.server.clone()?;
        i.dirty = false;
        let tasks = i.mine.values().flatten().copied().collect::<BTreeSet<_>>().into_iter().collect();
        let bytes = serde_json::to_vec(&Announcement { server: server.clone(), tasks }).ok()?;
        Some((server, bytes))
    }

    /// Applies an entry of the instances topic: an announcement, or a tombstone (the
    /// instance left). This instance's own entries are skipped: it knows its tasks.
    fn apply(&self, key: &str, value: Option<&[u8]>) {
        let mut i = self.lock();
        if i.server.as_deref() == Some(key) {
            return;
        }
        i.read += 1;
        let read = i.read;
        match value.map(serde_json::from_slice::<Announcement>) {
            None => {
                i.others.remove(key);
            }
            Some(Ok(a)) => {
                i.others.insert(key.to_owned(), (read, a.tasks.into_iter().collect()));
            }
            Some(Err(e)) => tracing::warn!(instance = key, error = %e, "an unreadable instance announcement; ignored"),
        }
    }
}

/// The other instances and the tasks each runs by its announcements: a task this one runs,
/// or that two claim, goes with this one or with the later claim.
fn others(i: &Inner, mine: &BTreeSet<TaskKey>) -> Vec<(String, BTreeSet<TaskKey>)> {
    i.others
        .iter()
        .map(|(server, (read, tasks))| {
            let tasks = tasks
                .iter()
                .filter(|t| !mine.contains(t) && !i.others.values().any(|(r, ts)| r > read && ts.contains(t)))
                .copied()
                .collect();
            (server.clone(), tasks)
        })
        .collect()
}

/// How long the follower waits for the topic between announcements.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Runs beside the stream threads until `stop`: announces this instance's tasks whenever
/// they change, and reads the other instances' announcements. On the way out it withdraws
/// this instance's entry (a tombstone), so the others stop sending clients here.
pub fn follow(hosts: &Hosts, log: &mut dyn InstanceLog, stop: &AtomicBool) -> anyhow::Result<()> {
    while !stop.load(Ordering::Acquire) {
        // A broker away for a while (restarting) fails an announcement or a read: both are
        // tried again, and the thread lives on (it ending would freeze the instances map).
        if let Some((server, bytes)) = hosts.announcement() {
            match log.publish(&server, Some(&bytes)) {
                Ok(()) => tracing::debug!(%server, "announced this instance's tasks"),
                Err(e) => {
                    tracing::warn!(%server, error = format!("{e:#}"), "announcing this instance's tasks; tried again");
                    hosts.lock().dirty = true;
                }
            }
        }
        match log.poll(FOLLOW_POLL) {
            Ok(entries) => {
                for (key, value) in entries {
                    hosts.apply(&key, value.as_deref());
                }
            }
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "reading the instances topic; tried again");
                std::thread::sleep(FOLLOW_POLL);
            }
        }
    }
    if let Some(server) = hosts.server() {
        log.publish(&server, None)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Arc<Topology> {
        let toml = r#"version = 1
[application]
id = "hosts-test"
[application.kafka]
bootstrap_servers = "127.0.0.1:9"
[streams.words]
[tables.profiles]
store = "profiles-store"
[pipelines.p]
from = "words"
steps = [{ op = "peek" }]
to = "out"
[pipelines.t]
from = "profiles"
steps = [{ op = "to_stream" }]
to = "profiles-out"
"#;
        let loaded = crate::manifest::parse(std::path::Path::new("hosts.toml"), toml.to_owned()).expect("manifest");
        Arc::new(crate::topology::build(&loaded, &crate::runtime::operator_specs()).expect("topology"))
    }

    #[test]
    fn a_key_is_here_there_or_unknown_by_its_partition_and_the_later_claim_wins() {
        let hosts = Hosts::new(topology());
        let store = "profiles-store";
        let sub = hosts.topology.store_subtopology(store).expect("the table's sub-topology");
        hosts.set_server(Some("a:1".into()));
        hosts.spread(vec![4; hosts.topology.subtopologies.len()]);
        let key = b"alice";
        let p = partition_of(key, 4) as i32;
        assert_eq!(hosts.locate(store, key), Location::Unknown { partition: p, task: (sub, p) });
        hosts.apply("b:2", Some(format!(r#"{{"server":"b:2","tasks":[[{sub},{p}]]}}"#).as_bytes()));
        assert_eq!(hosts.locate(store, key), Location::There { partition: p, task: (sub, p), server: "b:2".into() });
        // c took the task over; b has not announced its loss yet.
        hosts.apply("c:3", Some(format!(r#"{{"server":"c:3","tasks":[[{sub},{p}]]}}"#).as_bytes()));
        assert_eq!(hosts.locate(store, key), Location::There { partition: p, task: (sub, p), server: "c:3".into() });
        let listed = hosts.instances();
        assert!(listed.iter().find(|i| i.server.as_deref() == Some("b:2")).is_some_and(|i| i.tasks.is_empty()));
        // Now this instance has it.
        hosts.set_thread(0, [(sub, p)].into());
        assert_eq!(hosts.locate(store, key), Location::Here { partition: p, task: (sub, p) });
        let (server, bytes) = hosts.announcement().expect("changed tasks are announced");
        assert_eq!(server, "a:1");
        assert_eq!(String::from_utf8_lossy(&bytes), format!(r#"{{"server":"a:1","tasks":[[{sub},{p}]]}}"#));
        assert!(hosts.announcement().is_none(), "nothing new to announce");
        // Its own entry, read back, changes nothing; a tombstone removes an instance.
        hosts.apply("a:1", None);
        hosts.apply("c:3", None);
        assert_eq!(hosts.instances().len(), 2);
        assert_eq!(hosts.locate("no-such-store", key), Location::NoSuchStore);
    }
}
