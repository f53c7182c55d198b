//! Putting it together: manifest → topology → plugins → a run, for the CLI and the tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;

use crate::io::kafka::{
    KafkaChangelogReader, KafkaInstanceLog, KafkaSink, KafkaSource, client_config, ensure_topics, partition_count,
};
use crate::io::local::{LocalFile, LocalPlan, local_io};
use crate::manifest::{self, FileFormat, Loaded};
use crate::runtime::global::GlobalInput;
use crate::runtime::hosts::Hosts;
use crate::runtime::query::Queries;
use crate::runtime::{self, RunOptions, RunStats, ThreadIo};
use crate::topology::{self, NodeOp, PluginKind, Topology};
use crate::wasm::{EngineOptions, MetricsRegistry, PluginDirectory, PluginSpec, Runtime};

/// Records per plugin call when the manifest does not say.
pub const DEFAULT_BATCH_SIZE: usize = 1024;

/// A manifest that parsed, whose topology is sound and whose plugins loaded.
pub struct Prepared {
    pub loaded: Loaded,
    pub topology: Arc<Topology>,
    /// Every plugin's slot: the version that runs, swapped by reloads.
    pub plugins: Arc<PluginDirectory>,
    pub runtime: Runtime,
}

/// Parses the manifest and builds its topology, without touching plugins.
pub fn plan(path: &Path) -> anyhow::Result<(Loaded, Topology)> {
    let loaded = manifest::load(path)?;
    let topology = topology::build(&loaded, &runtime::operator_specs())?;
    Ok((loaded, topology))
}

/// Plans, then loads and validates every plugin the topology uses: each must exist, compile,
/// export the kinds its steps need, and know the functions they name.
pub fn prepare(path: &Path, cache_dir: Option<PathBuf>) -> anyhow::Result<Prepared> {
    let (loaded, topology) = plan(path)?;
    let app = &loaded.manifest.application;
    let max_instances = app.max_instances.as_ref().map_or(crate::wasm::DEFAULT_MAX_INSTANCES, |m| *m.get_ref());
    let options = EngineOptions::for_limits(loaded.manifest.plugins.values().map(|d| &d.limits), max_instances);
    let runtime = Runtime::with_options(cache_dir, MetricsRegistry::default(), options)?;
    let mut uses: BTreeMap<&str, Vec<(PluginKind, String)>> = BTreeMap::new();
    for (_, r) in topology.plugin_uses() {
        let u = uses.entry(r.plugin.as_str()).or_default();
        if !u.contains(&(r.kind, r.function.clone())) {
            u.push((r.kind, r.function.clone()));
        }
    }
    let mut plugins = PluginDirectory::new(runtime.clone());
    for (name, def) in &loaded.manifest.plugins {
        let Some(uses) = uses.get(name.get_ref().as_str()) else {
            tracing::warn!(plugin = %name.get_ref(), "plugin declared but used by no step");
            continue;
        };
        let spec = PluginSpec {
            path: loaded.resolve(def.path.get_ref()),
            config: def.config.clone(),
            grants: def.grants.clone(),
            limits: def.limits,
            uses: uses.clone(),
        };
        let plugin = runtime
            .load(name.get_ref(), &spec.path, &def.config, &def.grants, &def.limits, &spec.kinds())
            .map_err(anyhow::Error::new)
            .with_context(|| {
                let (line, col) = loaded.source.line_col(def.path.span().start);
                format!("{}:{line}:{col}: loading plugin `{}`", loaded.source.path.display(), name.get_ref())
            })?;
        tracing::info!(
            plugin = %plugin.name,
            digest = crate::wasm::short_digest(&plugin.digest),
            cached = plugin.from_cache,
            ms = plugin.load_time.as_millis() as u64,
            "plugin loaded"
        );
        plugins.insert(Arc::new(plugin), spec);
    }
    // A trial instance of every step checks the named functions before anything runs.
    for (node, r) in topology.plugin_uses() {
        let slot = plugins.get(&r.plugin).context("plugin not loaded")?;
        crate::wasm::PluginStep::new(slot, r.kind, &r.function, None)
            .with_context(|| format!("step `{}` of pipeline `{}`", node.name, node.pipeline))?;
    }
    Ok(Prepared { loaded, topology: Arc::new(topology), plugins: Arc::new(plugins), runtime })
}

/// Where the manifest's admin endpoint listens, and where that was said (`file:line:col:
/// key`, for errors); `None` when the manifest has no `[application.admin]`.
pub fn admin_bind(loaded: &Loaded) -> Option<(String, String)> {
    let def = loaded.manifest.application.admin.as_ref()?;
    Some(match &def.bind {
        Some(b) => {
            let (line, col) = loaded.source.line_col(b.span().start);
            (b.get_ref().clone(), format!("{}:{line}:{col}: `application.admin.bind`", loaded.source.path.display()))
        }
        None => {
            (crate::admin::DEFAULT_BIND.to_owned(), format!("{}: [application.admin]", loaded.source.path.display()))
        }
    })
}

/// The admin token: the manifest's, else `$WASP_ADMIN_TOKEN`.
pub fn admin_token(loaded: &Loaded) -> Option<String> {
    let configured = loaded.manifest.application.admin.as_ref().and_then(|a| a.token.clone());
    configured.or_else(|| std::env::var("WASP_ADMIN_TOKEN").ok()).filter(|t| !t.is_empty())
}

/// What runs beside the batch loop; dropping it stops them.
pub struct Services {
    pub admin: Option<crate::admin::AdminServer>,
    pub watcher: Option<crate::wasm::watch::PluginWatcher>,
}

/// Options from the `wasp run` command line: local-mode inputs and outputs, state, and the
/// services beside the loop (admin endpoint, file watcher).
#[derive(Debug, Default, Clone)]
pub struct LocalOptions {
    /// `--input topic=path`: overrides or adds an input file (format from the extension:
    /// `.jsonl` is JSON lines, anything else text).
    pub inputs: BTreeMap<String, PathBuf>,
    /// `--output topic=path`: writes a topic to a file as JSON lines instead of printing it.
    pub outputs: BTreeMap<String, PathBuf>,
    pub follow: bool,
    /// `--state-dir`: overrides the manifest's `state_dir`.
    pub state_dir: Option<PathBuf>,
    /// `--watch` / `--no-watch`: overrides the manifest's `watch_plugins`.
    pub watch: Option<bool>,
    /// `--admin ADDR`: serves the admin endpoint there (overrides the manifest's address).
    pub admin: Option<String>,
}

/// The default commit interval.
pub const DEFAULT_COMMIT_INTERVAL_MS: u64 = 1000;

/// Where state lives when neither the command line nor the manifest says.
pub fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WASP_STATE_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".local/state/wasp")
}

impl Prepared {
    pub fn batch_size(&self) -> usize {
        self.loaded.manifest.application.batch_size.as_ref().map_or(DEFAULT_BATCH_SIZE, |b| (*b.get_ref()).max(1))
    }

    /// The state directory: `--state-dir`, else the manifest's `state_dir`, else the default.
    pub fn state_dir(&self, local: &LocalOptions) -> PathBuf {
        local.state_dir.clone().unwrap_or_else(|| {
            self.loaded
                .manifest
                .application
                .state_dir
                .as_ref()
                .map_or_else(default_state_dir, |d| self.loaded.resolve(d.get_ref()))
        })
    }

    /// Forgets the application's local state (`wasp run --reset`), as Kafka Streams'
    /// application reset tool does for local stores.
    pub fn reset_local_state(&self, local: &LocalOptions) -> anyhow::Result<()> {
        let dir = self.state_dir(local).join(&self.topology.application_id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            tracing::info!(dir = %dir.display(), "local state removed");
        }
        Ok(())
    }

    /// Whether plugin files are watched: `--watch`/`--no-watch`, else the manifest, else on
    /// in local mode with `--follow` (a run that ends with its input has nothing to swap) and
    /// off on Kafka.
    pub fn watches(&self, local: &LocalOptions) -> bool {
        local.watch.or(self.loaded.manifest.application.watch_plugins).unwrap_or(self.is_local() && local.follow)
    }

    /// Starts what runs beside the batch loop: the admin endpoint (when the manifest or
    /// `--admin` asks for it) and the plugin file watcher (see [`Self::watches`]).
    pub fn start_services(
        &self,
        local: &LocalOptions,
        ready: Arc<AtomicBool>,
        queries: Queries,
        hosts: &Hosts,
    ) -> anyhow::Result<Services> {
        let bind = match &local.admin {
            Some(addr) => Some((addr.clone(), "--admin".to_owned())),
            None => admin_bind(&self.loaded),
        };
        let admin = match bind {
            Some((addr, set_by)) => Some(
                crate::admin::start(
                    &addr,
                    crate::admin::AdminState {
                        metrics: self.runtime.metrics().clone(),
                        plugins: self.plugins.clone(),
                        ready,
                        token: admin_token(&self.loaded),
                        queries,
                        hosts: hosts.clone(),
                    },
                )
                .with_context(|| format!("{set_by}: the admin endpoint cannot listen on `{addr}`"))?,
            ),
            None => None,
        };
        hosts.set_server(self.application_server(admin.as_ref().map(crate::admin::AdminServer::addr)));
        let watcher = if self.watches(local) { Some(crate::wasm::watch::watch(self.plugins.clone())?) } else { None };
        Ok(Services { admin, watcher })
    }

    /// This instance's address for the others: `application_server`, else the admin
    /// endpoint's (none without an endpoint).
    fn application_server(&self, admin: Option<std::net::SocketAddr>) -> Option<String> {
        let configured = self.loaded.manifest.application.admin.as_ref().and_then(|a| a.application_server.as_ref());
        if let Some(s) = configured {
            return Some(s.get_ref().clone());
        }
        let addr = admin?;
        if addr.ip().is_unspecified() && !self.is_local() {
            tracing::warn!(
                %addr,
                "the admin endpoint listens on every interface: set `application.admin.application_server` to the \
                 address other instances and clients reach it at"
            );
        }
        Some(addr.to_string())
    }

    fn run_options(&self, local: &LocalOptions, ready: Arc<AtomicBool>, queries: Queries, hosts: Hosts) -> RunOptions {
        let interval = self
            .loaded
            .manifest
            .application
            .commit_interval_ms
            .as_ref()
            .map_or(DEFAULT_COMMIT_INTERVAL_MS, |c| *c.get_ref());
        RunOptions {
            batch_size: self.batch_size(),
            commit_interval: std::time::Duration::from_millis(interval),
            state_dir: self.state_dir(local),
            changelogs: !self.is_local(),
            metrics: self.runtime.metrics().clone(),
            ready,
            max_task_idle: std::time::Duration::from_millis(
                self.loaded.manifest.application.max_task_idle_ms.as_ref().map_or(0, |m| *m.get_ref()),
            ),
            globals: BTreeMap::new(),
            queries,
            hosts,
        }
    }

    /// Stream threads: the manifest's `threads`, else one per core.
    pub fn threads(&self) -> usize {
        self.loaded.manifest.application.threads.as_ref().map_or_else(
            || std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            |t| (*t.get_ref()).max(1),
        )
    }

    /// Local mode's plan: which thread reads which topic partition. A file has the
    /// partitions its stream declares (1 by default), an in-memory topic those of the
    /// sub-topology that writes it (as Kafka Streams sizes a repartition topic), and a
    /// sub-topology those of its topics, which must agree (they are co-partitioned). Task
    /// `(sub, partition)` runs on thread `(sub + partition) % threads`, and all its topics'
    /// partitions go to that thread; more threads than tasks would have nothing to do.
    fn local_plan(
        &self,
        inputs: &BTreeMap<String, (PathBuf, FileFormat)>,
        local: &LocalOptions,
    ) -> anyhow::Result<LocalPlan> {
        let t = &self.topology;
        let declared = |topic: &str| t.formats(topic).partitions.unwrap_or(1).max(1) as usize;
        let mut parts: BTreeMap<&str, usize> = BTreeMap::new();
        for sub in &t.subtopologies {
            for topic in &sub.source_topics {
                parts.insert(topic, declared(topic));
            }
        }
        let writes = |sub: &crate::topology::SubTopology| -> Vec<&str> {
            sub.nodes
                .iter()
                .filter_map(|&id| match &t.node(id).op {
                    NodeOp::Sink { topic } | NodeOp::Repartition { topic } => Some(topic.as_str()),
                    _ => None,
                })
                .collect()
        };
        // Partition counts flow from files through the sub-topologies that write in-memory
        // topics: to a fixpoint, at most one round per sub-topology.
        for _ in 0..=t.subtopologies.len() {
            for sub in &t.subtopologies {
                let n = sub.source_topics.iter().filter_map(|s| parts.get(s.as_str())).copied().max().unwrap_or(1);
                for topic in writes(sub) {
                    if !inputs.contains_key(topic)
                        && let Some(p) = parts.get_mut(topic)
                    {
                        *p = (*p).max(n);
                    }
                }
            }
        }
        let mut tasks = 0;
        let mut sub_parts = Vec::with_capacity(t.subtopologies.len());
        for sub in &t.subtopologies {
            let counts: Vec<(&str, usize)> =
                sub.source_topics.iter().map(|s| (s.as_str(), parts[s.as_str()])).collect();
            let n = counts.iter().map(|(_, n)| *n).max().unwrap_or(1);
            if counts.iter().any(|(_, c)| *c != n) {
                // The streams that read these topics, whose `partitions` the user can change.
                let keys: Vec<String> = self
                    .loaded
                    .manifest
                    .declared()
                    .filter(|(_, name, def)| counts.iter().any(|(s, _)| *s == def.topic_or(name.get_ref())))
                    .map(|(section, name, _)| format!("`{section}.{}.partitions`", name.get_ref()))
                    .collect();
                return Err(self.not_copartitioned(&counts, &format!("set {} alike", keys.join(", "))));
            }
            tasks += n;
            sub_parts.push(n);
        }
        let threads = self.threads().min(tasks).max(1);
        let mut plan = LocalPlan {
            outputs: local.outputs.clone(),
            threads,
            follow: local.follow,
            max_in_flight: self.batch_size().saturating_mul(64),
            ..Default::default()
        };
        for (i, sub) in t.subtopologies.iter().enumerate() {
            let n = sub_parts[i];
            for topic in &sub.source_topics {
                match inputs.get(topic) {
                    Some((path, format)) => {
                        for p in 0..n {
                            plan.files.push(LocalFile {
                                topic: topic.clone(),
                                path: path.clone(),
                                format: *format,
                                partition: p as i32,
                                partitions: n as i32,
                                thread: (i + p) % threads,
                            });
                        }
                    }
                    None => {
                        plan.memory.insert(topic.clone(), (0..n).map(|p| (i + p) % threads).collect());
                    }
                }
            }
        }
        for (topic, f) in &self.topology.formats {
            plan.formats.insert(topic.clone(), (f.key, f.value));
        }
        Ok(plan)
    }

    pub fn is_local(&self) -> bool {
        self.loaded.manifest.application.kafka.is_none()
    }

    /// Runs until the input is exhausted (local mode) or `stop` is set, with the admin
    /// endpoint and the plugin file watcher beside it.
    pub fn run(&self, local: &LocalOptions, stop: &AtomicBool) -> anyhow::Result<RunStats> {
        let ready = Arc::new(AtomicBool::new(false));
        let queries = Queries::default();
        let hosts = Hosts::new(self.topology.clone());
        let _services = self.start_services(local, ready.clone(), queries.clone(), &hosts)?;
        match &self.loaded.manifest.application.kafka {
            None => {
                let (mut inputs, mut global_files) = (BTreeMap::new(), BTreeMap::new());
                for (section, name, s) in self.loaded.manifest.declared() {
                    if let Some(file) = &s.file {
                        let topic = s.topic_or(name.get_ref()).to_owned();
                        // A global table's file is read before the tasks start, not by them.
                        let into = if section == "global_tables" { &mut global_files } else { &mut inputs };
                        into.insert(topic, (self.loaded.resolve(file.get_ref()), s.file_format));
                    }
                }
                for (topic, path) in &local.inputs {
                    let format = if path.extension().is_some_and(|e| e == "jsonl") {
                        FileFormat::Jsonl
                    } else {
                        FileFormat::Text
                    };
                    inputs.insert(topic.clone(), (path.clone(), format));
                }
                let plan = self.local_plan(&inputs, local)?;
                hosts.all_here(self.local_partitions(&plan));
                let io = local_io(plan)?
                    .into_iter()
                    .map(|(source, sink)| ThreadIo { source: Box::new(source), sink: Box::new(sink), restorer: None })
                    .collect();
                let mut options = self.run_options(local, ready, queries, hosts);
                let globals = runtime::global::open(&self.topology, &options, GlobalInput::Files(&global_files))
                    .context("restoring the global tables")?;
                options.globals = globals.stores.clone();
                runtime::run(&self.topology, &self.plugins, io, &options, stop)
            }
            Some(kafka) => {
                let config = client_config(kafka.bootstrap_servers.get_ref(), &kafka.properties);
                self.create_internal_topics(&config)?;
                self.check_copartitioned(&config)?;
                let topics: Vec<&str> = self.topology.sources.keys().map(String::as_str).collect();
                // One consumer (a group member), producer and changelog reader per thread.
                let mut io = Vec::new();
                for _ in 0..self.threads() {
                    let id = &self.topology.application_id;
                    io.push(ThreadIo {
                        source: Box::new(KafkaSource::new(&config, id, &topics)?),
                        sink: Box::new(KafkaSink::new(&config)?),
                        restorer: Some(Box::new(KafkaChangelogReader::new(&config, id)?)),
                    });
                }
                hosts.spread(self.kafka_partitions(&config)?);
                let mut options = self.run_options(local, ready, queries, hosts.clone());
                let globals = runtime::global::open(&self.topology, &options, GlobalInput::Kafka(&config))
                    .context("restoring the global tables")?;
                options.globals = globals.stores.clone();
                let follower = self.follow_instances(&config, &hosts)?;
                let result = runtime::run(&self.topology, &self.plugins, io, &options, stop);
                if let Some(f) = follower {
                    f.stop()?;
                }
                result
            }
        }
    }

    /// The error for topics of one sub-topology whose partition counts differ: task
    /// `(sub, p)` reads partition `p` of each, so their records meet by key only when they are
    /// partitioned alike (Kafka Streams' co-partitioning). `fix` says what to change.
    fn not_copartitioned(&self, counts: &[(&str, usize)], fix: &str) -> anyhow::Error {
        let list: Vec<String> = counts.iter().map(|(s, c)| format!("`{s}` ({c})")).collect();
        anyhow::anyhow!(
            "{}: topics {} feed one sub-topology, so they are co-partitioned and need the same number of \
             partitions ({fix})",
            self.loaded.source.path.display(),
            list.join(", "),
        )
    }

    /// On Kafka, the partition counts the broker reports for each sub-topology's topics must
    /// agree, as local mode's plan checks for files. A topic that does not exist yet is left
    /// out (the consumer waits for it).
    fn check_copartitioned(&self, config: &rdkafka::ClientConfig) -> anyhow::Result<()> {
        for sub in &self.topology.subtopologies {
            let mut counts: Vec<(&str, usize)> = Vec::new();
            for topic in &sub.source_topics {
                if let Some(n) = partition_count(config, topic)? {
                    counts.push((topic, n as usize));
                }
            }
            if counts.windows(2).any(|w| w[0].1 != w[1].1) {
                return Err(self.not_copartitioned(
                    &counts,
                    "on the broker: create or repartition them with one count, e.g. through a `to` topic of that count",
                ));
            }
        }
        Ok(())
    }

    /// Each sub-topology's task count in local mode: the partitions of its topics.
    fn local_partitions(&self, plan: &LocalPlan) -> Vec<usize> {
        self.topology
            .subtopologies
            .iter()
            .map(|sub| {
                sub.source_topics
                    .iter()
                    .filter_map(|t| {
                        plan.files
                            .iter()
                            .find(|f| f.topic == *t)
                            .map(|f| f.partitions as usize)
                            .or_else(|| plan.memory.get(t).map(Vec::len))
                    })
                    .max()
                    .unwrap_or(1)
            })
            .collect()
    }

    /// Each sub-topology's task count on Kafka: the partitions of its topics (0 for one whose
    /// topics do not exist yet).
    fn kafka_partitions(&self, config: &rdkafka::ClientConfig) -> anyhow::Result<Vec<usize>> {
        let mut out = Vec::with_capacity(self.topology.subtopologies.len());
        for sub in &self.topology.subtopologies {
            let mut n = 0;
            for topic in &sub.source_topics {
                n = n.max(partition_count(config, topic)?.unwrap_or(0) as usize);
            }
            out.push(n);
        }
        Ok(out)
    }

    /// The instances topic: the one where instances announce their tasks.
    fn instances_topic(&self) -> String {
        format!("{}-instances", self.topology.application_id)
    }

    /// With an address to announce, a thread that announces this instance's tasks and reads
    /// the others' ([`runtime::hosts::follow`]).
    fn follow_instances(&self, config: &rdkafka::ClientConfig, hosts: &Hosts) -> anyhow::Result<Option<Follower>> {
        if hosts.server().is_none() {
            return Ok(None);
        }
        let topic = self.instances_topic();
        ensure_topics(config, &[(topic.clone(), 1, true)])?;
        let mut log = KafkaInstanceLog::new(config, &self.topology.application_id, &topic)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hosts.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("wasp-hosts".into())
            .spawn(move || runtime::hosts::follow(&h, &mut log, &s))
            .context("starting the instances thread")?;
        Ok(Some(Follower { stop, thread }))
    }

    /// Repartition and changelog topics get as many partitions as the largest input topic
    /// (Kafka Streams does the same), so tasks line up with partitions.
    fn create_internal_topics(&self, config: &rdkafka::ClientConfig) -> anyhow::Result<()> {
        let internal: Vec<&str> = self.topology.repartition_topics();
        let mut partitions = 1;
        for topic in self.topology.sources.keys().filter(|t| !internal.contains(&t.as_str())) {
            if let Some(n) = partition_count(config, topic)? {
                partitions = partitions.max(n);
            }
        }
        let mut topics: Vec<(String, i32, bool)> =
            internal.iter().map(|t| ((*t).to_owned(), partitions, false)).collect();
        for spec in self.topology.stores.values().filter(|s| s.changelog && s.source_topic.is_none()) {
            topics.push((self.topology.changelog_topic(&spec.name), partitions, true));
        }
        ensure_topics(config, &topics)
    }
}

/// The thread of [`runtime::hosts::follow`].
struct Follower {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl Follower {
    /// Stops it: it withdraws this instance's announcement first.
    fn stop(self) -> anyhow::Result<()> {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        match self.thread.join() {
            Ok(r) => r.context("announcing this instance's tasks"),
            Err(_) => anyhow::bail!("the instances thread panicked"),
        }
    }
}

/// What `wasp test` counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TestCount {
    pub passed: usize,
    pub failed: usize,
}

/// The test files `paths` name: files as they are, and every `*.test.toml` under a directory,
/// in path order.
pub fn test_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
        let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        for e in entries {
            let p = e.with_context(|| format!("reading {}", dir.display()))?.path();
            if p.is_dir() {
                walk(&p, out)?;
            } else if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(".test.toml")) {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found)?;
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Runs every case of the test file at `path` (`wasp test`), writing `test … ok` or
/// `FAILED` with what differed to `out`. `batch_size` overrides the cases' own.
pub fn run_test_file(
    path: &Path,
    batch_size: Option<usize>,
    cache_dir: Option<PathBuf>,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<TestCount> {
    let tests = manifest::testfile::load_tests(path)?;
    let manifest = tests.manifest_path();
    let prepared = prepare(&manifest, cache_dir).with_context(|| {
        let (line, col) = tests.source.line_col(tests.file.manifest.span().start);
        format!("{}:{line}:{col}: `manifest`: the manifest under test", path.display())
    })?;
    let mut count = TestCount::default();
    for case in &tests.file.tests {
        let name = case.name.get_ref();
        match run_case(&prepared, &tests, case, batch_size) {
            Ok(failures) if failures.is_empty() => {
                count.passed += 1;
                writeln!(out, "test {} :: {name} ... ok", path.display())?;
            }
            Ok(failures) => {
                count.failed += 1;
                writeln!(out, "test {} :: {name} ... FAILED", path.display())?;
                for f in failures {
                    for l in f.lines() {
                        writeln!(out, "    {l}")?;
                    }
                }
            }
            Err(e) => {
                count.failed += 1;
                writeln!(out, "test {} :: {name} ... FAILED\n    error: {e:#}", path.display())?;
            }
        }
    }
    Ok(count)
}

/// An error at `span` of a test file about a name that is not there, with the closest of
/// `known` as a suggestion.
fn unknown_name<'a>(
    tests: &manifest::testfile::LoadedTests,
    span: std::ops::Range<usize>,
    key: String,
    message: String,
    name: &str,
    known: impl Iterator<Item = &'a str>,
) -> anyhow::Error {
    let mut e = tests.error(span, key, message);
    if let Some(c) = manifest::closest(name, known) {
        e = e.with_help(format!("did you mean `{c}`?"));
    }
    e.into()
}

/// Runs one case; what did not match, each with its diff.
fn run_case(
    p: &Prepared,
    tests: &manifest::testfile::LoadedTests,
    case: &manifest::testfile::TestCase,
    batch_size: Option<usize>,
) -> anyhow::Result<Vec<String>> {
    use manifest::testfile::{Order, duration_ms, value_bytes};
    use runtime::driver::{Driver, Expected, Match, check_entries, check_records};
    let batch = batch_size.or(case.batch_size.as_ref().map(|b| *b.get_ref())).unwrap_or(1).max(1);
    let mut driver = Driver::new(p.topology.clone(), &p.plugins, p.runtime.metrics(), case.wall_clock_start)?;
    let mut pending: Option<(String, Vec<crate::record::Record>)> = None;
    let mut last_ts = 0;
    let flush = |driver: &mut Driver, pending: &mut Option<(String, Vec<crate::record::Record>)>| match pending.take() {
        Some((topic, records)) => driver.pipe(&topic, records),
        None => Ok(()),
    };
    for (j, step) in case.steps.iter().enumerate() {
        let s = step.get_ref();
        if let Some(d) = &s.advance_wall_clock {
            flush(&mut driver, &mut pending)?;
            let ms = duration_ms(d.get_ref()).map_err(|e| anyhow::anyhow!(e))?;
            driver.advance_wall_clock(ms)?;
            continue;
        }
        let Some(topic) = &s.topic else { continue };
        if !driver.reads(topic.get_ref()) {
            let key = format!("{}.steps[{j}].topic", case.name.get_ref());
            let message = format!("no pipeline reads topic `{}`", topic.get_ref());
            let read = p.topology.sources.keys().map(String::as_str);
            return Err(unknown_name(tests, topic.span(), key, message, topic.get_ref(), read));
        }
        last_ts = s.timestamp.unwrap_or(last_ts);
        let key = s.key.as_ref().map(value_bytes);
        let value = s.value.as_ref().map(value_bytes);
        let mut r = crate::record::Record::new(key.as_deref(), value.as_deref(), last_ts);
        for (k, v) in &s.headers {
            r.headers.push(crate::record::Header {
                name: crate::record::Header::name_from(k),
                value: Some(bytes::Bytes::copy_from_slice(v.as_bytes())),
            });
        }
        let same = pending.as_ref().is_some_and(|(t, rs)| t == topic.get_ref() && rs.len() < batch);
        if !same {
            flush(&mut driver, &mut pending)?;
            pending = Some((topic.get_ref().clone(), Vec::new()));
        }
        if let Some((_, rs)) = &mut pending {
            rs.push(r);
        }
    }
    flush(&mut driver, &mut pending)?;
    let mut failures = Vec::new();
    for (i, e) in case.expect.iter().enumerate() {
        let topic = e.topic.get_ref();
        let expected: Vec<Expected> = e
            .records
            .iter()
            .map(|r| Expected {
                key: r.key.as_ref().map(value_bytes),
                value: r.value.as_ref().map(value_bytes),
                timestamp: r.timestamp,
                headers: r.headers.clone(),
            })
            .collect();
        let (order, how) = match e.order {
            Order::InOrder => (Match::InOrder, "in order"),
            Order::AnyOrder => (Match::AnyOrder, "in any order"),
            Order::LastPerKey => (Match::LastPerKey, "last per key"),
        };
        let actual = driver.output(topic);
        let dead_letters = p.topology.nodes.iter().any(|n| n.policy.dead_letter_topic == *topic);
        if actual.is_empty() && !dead_letters && !p.topology.sink_topics().contains(&topic.as_str()) {
            let key = format!("{}.expect[{i}].topic", case.name.get_ref());
            let message = format!("no step writes topic `{topic}`");
            let known = p.topology.sink_topics().into_iter().chain(driver.written());
            return Err(unknown_name(tests, e.topic.span(), key, message, topic, known));
        }
        if let Err(diff) = check_records(order, &expected, actual) {
            failures.push(format!(
                "topic `{topic}` ({how}): {} expected, {} written\n{diff}",
                expected.len(),
                actual.len()
            ));
        }
    }
    for (i, s) in case.stores.iter().enumerate() {
        let name = s.store.get_ref();
        if let Some(spec) = p.topology.stores.get(name.as_str())
            && spec.kind != crate::state::StoreKind::KeyValue
        {
            return Err(tests
                .error(
                    s.store.span(),
                    format!("{}.stores[{i}].store", case.name.get_ref()),
                    format!("`{name}` is a {} store: expect its output topic instead", spec.kind),
                )
                .into());
        }
        let Some(rows) = driver.store(name)? else {
            if !failures.is_empty() {
                failures.push(format!("and no queryable store `{name}`"));
                continue;
            }
            let key = format!("{}.stores[{i}].store", case.name.get_ref());
            let names = p.topology.stores.keys().map(String::as_str);
            return Err(unknown_name(tests, s.store.span(), key, format!("no queryable store `{name}`"), name, names));
        };
        let expected: Vec<(Vec<u8>, Vec<u8>)> =
            s.entries.iter().map(|e| (value_bytes(&e.key), value_bytes(&e.value))).collect();
        if let Err(diff) = check_entries(&expected, &rows) {
            failures.push(format!("store `{name}`: {} expected, {} held\n{diff}", expected.len(), rows.len()));
        }
    }
    Ok(failures)
}

/// The function kinds `wasp new` scaffolds: the manifest step that uses each, and the WIT
/// world a Python plugin of that kind exports.
pub const NEW_KINDS: &[(&str, &str, &str)] = &[
    ("filter", "filter", "filter-plugin"),
    ("map-values", "map_values", "value-mapper-plugin"),
    ("processor", "process", "processor-plugin"),
];

/// The languages `wasp new` scaffolds.
pub const NEW_LANGUAGES: &[&str] = &["rust", "python", "javascript"];

/// The componentize-js release `make setup` installs (into `~/.cache/wasp/npm`).
pub const COMPONENTIZE_JS: &str = "0.23.0";

mod template {
    pub const CARGO: &str = include_str!("../../guest-sdk/template/Cargo.toml.tmpl");
    pub const PIPELINE: &str = include_str!("../../guest-sdk/template/pipeline.toml.tmpl");
    pub const EVENTS: &str = include_str!("../../guest-sdk/template/events.jsonl.tmpl");
    pub const GITIGNORE: &str = include_str!("../../guest-sdk/template/gitignore.tmpl");
    pub const FILTER: &str = include_str!("../../guest-sdk/template/filter.rs.tmpl");
    pub const FILTER_TEST: &str = include_str!("../../guest-sdk/template/filter.test.toml.tmpl");
    pub const MAP_VALUES: &str = include_str!("../../guest-sdk/template/map-values.rs.tmpl");
    pub const MAP_VALUES_TEST: &str = include_str!("../../guest-sdk/template/map-values.test.toml.tmpl");
    pub const PROCESSOR: &str = include_str!("../../guest-sdk/template/processor.rs.tmpl");
    pub const PROCESSOR_TEST: &str = include_str!("../../guest-sdk/template/processor.test.toml.tmpl");
    pub const PY_PROCESSOR: &str = include_str!("../../guest-sdk/template/python/processor.py.tmpl");
    /// The plugins' lock file: a new crate starts from the versions the examples build with.
    pub const LOCK: &str = include_str!("../../plugins/Cargo.lock");
    pub const PY_PROJECT: &str = include_str!("../../guest-sdk/template/python/pyproject.toml.tmpl");
    pub const PY_FILTER: &str = include_str!("../../guest-sdk/template/python/filter.py.tmpl");
    pub const PY_MAP_VALUES: &str = include_str!("../../guest-sdk/template/python/map-values.py.tmpl");
    pub const PY_GITIGNORE: &str = include_str!("../../guest-sdk/template/python/gitignore.tmpl");
    /// The batch helpers of the Python SDK, copied beside a new Python plugin.
    pub const PY_BATCH: &str = include_str!("../../plugins/python/sdk/wasp_batch.py");
    pub const JS_PACKAGE: &str = include_str!("../../guest-sdk/template/javascript/package.json.tmpl");
    pub const JS_FILTER: &str = include_str!("../../guest-sdk/template/javascript/filter.js.tmpl");
    pub const JS_MAP_VALUES: &str = include_str!("../../guest-sdk/template/javascript/map-values.js.tmpl");
    pub const JS_PROCESSOR: &str = include_str!("../../guest-sdk/template/javascript/processor.js.tmpl");
    /// The batch helpers a JavaScript plugin starts with, put into its `app.js`.
    pub const JS_BATCH: &str = include_str!("../../guest-sdk/template/javascript/batch.js.part");
    pub const JS_GITIGNORE: &str = include_str!("../../guest-sdk/template/javascript/gitignore.tmpl");
    /// The WIT contract, for componentize-py and componentize-js.
    pub const WIT: &str = include_str!("../../wit/plugin.wit");
}

/// `wasp new LANG NAME --kind KIND`: a plugin in `parent/NAME` with one function of `kind` (a
/// Rust crate, or a Python module with its `pyproject.toml`), a pipeline that uses it on sample
/// events, and a `wasp test` file that passes as generated. Returns the new folder.
pub fn new_plugin(lang: &str, name: &str, kind: &str, parent: &Path) -> anyhow::Result<PathBuf> {
    if !NEW_LANGUAGES.contains(&lang) {
        anyhow::bail!("`wasp new` scaffolds {} plugins so far, not `{lang}`", NEW_LANGUAGES.join(", "));
    }
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_lowercase());
    if !valid {
        anyhow::bail!("`{name}`: a plugin's name is lowercase letters, digits and `-`, starting with a letter");
    }
    let Some(&(_, op, world)) = NEW_KINDS.iter().find(|(k, _, _)| *k == kind) else {
        let kinds: Vec<&str> = NEW_KINDS.iter().map(|(k, _, _)| *k).collect();
        anyhow::bail!("--kind `{kind}`: `wasp new` scaffolds {} so far", kinds.join(", "));
    };
    let dir = parent.join(name);
    if dir.exists() {
        anyhow::bail!("{} exists already", dir.display());
    }
    // The guest SDK beside this wasp's sources.
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
    let sdk = sdk.canonicalize().with_context(|| format!("the guest SDK at {}", sdk.display()))?;
    // A processor names the store it keeps its counts in.
    let step = if kind == "processor" {
        format!(r#"{{ op = "process", plugin = "{name}", stores = ["counts"] }}"#)
    } else {
        format!(r#"{{ op = "{op}", plugin = "{name}" }}"#)
    };
    let fill = |t: &str| {
        t.replace("{{step}}", &step)
            .replace("{{name}}", name)
            .replace("{{op}}", op)
            .replace("{{world}}", world)
            .replace("{{sdk}}", &sdk.display().to_string())
    };
    // Each kind's code in each language, and its test.
    let pick = |filter: &'static str, map_values: &'static str, processor: &'static str| match kind {
        "filter" => filter,
        "map-values" => map_values,
        _ => processor,
    };
    let test = pick(template::FILTER_TEST, template::MAP_VALUES_TEST, template::PROCESSOR_TEST);
    let test_file = format!("{name}.test.toml");
    let mut files: Vec<(&str, String)> = vec![
        ("pipeline.toml", fill(template::PIPELINE)),
        ("data/events.jsonl", template::EVENTS.to_owned()),
        (&test_file, fill(test)),
    ];
    if lang == "rust" {
        let code = pick(template::FILTER, template::MAP_VALUES, template::PROCESSOR);
        files.extend([
            ("Cargo.toml", fill(template::CARGO)),
            ("Cargo.lock", template::LOCK.to_owned()),
            ("src/lib.rs", fill(code)),
            (".gitignore", fill(template::GITIGNORE)),
        ]);
    } else if lang == "javascript" {
        let code = pick(template::JS_FILTER, template::JS_MAP_VALUES, template::JS_PROCESSOR);
        files.extend([
            ("package.json", fill(template::JS_PACKAGE)),
            ("app.js", fill(code).replace("{{batch}}", template::JS_BATCH)),
            (".gitignore", fill(template::JS_GITIGNORE)),
        ]);
    } else {
        let code = pick(template::PY_FILTER, template::PY_MAP_VALUES, template::PY_PROCESSOR);
        files.extend([
            ("pyproject.toml", fill(template::PY_PROJECT)),
            ("app.py", fill(code)),
            ("wasp_batch.py", template::PY_BATCH.to_owned()),
            (".gitignore", fill(template::PY_GITIGNORE)),
        ]);
    }
    for (file, text) in files {
        let path = dir.join(file);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(dir)
}

/// What `wasp build` made.
#[derive(Debug)]
pub struct Built {
    pub component: PathBuf,
    pub bytes: u64,
    pub kinds: Vec<PluginKind>,
}

/// `wasp build DIR`: builds the plugin in `dir` into a component, by its language. A Rust
/// crate (`Cargo.toml`) is built for `wasm32-unknown-unknown` with cargo, and its core module
/// made a component in-process (`wit-component`, what `wasm-tools component new` does),
/// written as `DIR/<crate>.wasm`. A Python plugin (`pyproject.toml` with `[tool.wasp] world`)
/// is built by componentize-py from `app.py` against wasp's WIT, as `DIR/<project>.wasm`.
///
/// `target_dir` is where cargo builds (default: its own choice, `$CARGO_TARGET_DIR` or the
/// crate's `target/`).
pub fn build_plugin(dir: &Path, cache_dir: Option<PathBuf>, target_dir: Option<&Path>) -> anyhow::Result<Built> {
    let (name, out) = if dir.join("Cargo.toml").exists() {
        build_rust(dir, target_dir)?
    } else if dir.join("pyproject.toml").exists() {
        build_python(dir)?
    } else if dir.join("package.json").exists() {
        build_javascript(dir)?
    } else {
        anyhow::bail!(
            "{}: not a Rust crate (Cargo.toml), a Python plugin (pyproject.toml) or a JavaScript one (package.json); `wasp new` starts one",
            dir.display()
        );
    };
    let bytes = std::fs::metadata(&out).with_context(|| format!("{}", out.display()))?.len();
    let runtime = Runtime::new(cache_dir, MetricsRegistry::default())?;
    let loaded = runtime
        .load(&name, &out, &toml::Table::new(), &Default::default(), &Default::default(), &[])
        .with_context(|| format!("loading {}", out.display()))?;
    Ok(Built { component: out, bytes, kinds: loaded.kinds.clone() })
}

/// The WIT contract in a temporary folder of its own, for a componentizer to read.
fn wit_dir() -> anyhow::Result<PathBuf> {
    let wit = std::env::temp_dir().join(format!("wasp-wit-{}", std::process::id()));
    std::fs::create_dir_all(&wit).with_context(|| format!("creating {}", wit.display()))?;
    std::fs::write(wit.join("plugin.wit"), template::WIT).with_context(|| format!("writing {}", wit.display()))?;
    Ok(wit)
}

/// A JavaScript plugin through componentize-js, from `app.js`, exporting the world that
/// `package.json` names in `wasp.world`, with every WASI feature componentize-js can leave out
/// disabled: `(name, component)`.
fn build_javascript(dir: &Path) -> anyhow::Result<(String, PathBuf)> {
    let path = dir.join("package.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let package: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
    let name = package["name"].as_str().with_context(|| format!("{}: no `name`", path.display()))?.to_owned();
    let world = package["wasp"]["world"]
        .as_str()
        .with_context(|| format!("{}: no `wasp.world` (e.g. \"value-mapper-plugin\")", path.display()))?
        .to_owned();
    let tool = match std::env::var_os("WASP_COMPONENTIZE_JS") {
        Some(t) => PathBuf::from(t),
        None => {
            let cached = std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/wasp/npm/node_modules/.bin/componentize-js"));
            cached.filter(|c| c.exists()).unwrap_or_else(|| PathBuf::from("componentize-js"))
        }
    };
    let wit = wit_dir()?;
    let out = dir.join(format!("{name}.wasm"));
    let status = std::process::Command::new(&tool)
        .arg(dir.join("app.js"))
        .arg("--wit")
        .arg(&wit)
        .args(["--world-name", &world, "-d", "stdio", "random", "clocks", "http", "fetch-event", "-o"])
        .arg(&out)
        .status();
    let _ = std::fs::remove_dir_all(&wit);
    let status = status.with_context(|| {
        format!(
            "running {} (`make setup` installs @bytecodealliance/componentize-js {COMPONENTIZE_JS} into ~/.cache/wasp/npm)",
            tool.display()
        )
    })?;
    if !status.success() {
        anyhow::bail!("componentize-js failed in {} ({status})", dir.display());
    }
    Ok((name, out))
}

/// A Python plugin through componentize-py: `(name, component)`.
fn build_python(dir: &Path) -> anyhow::Result<(String, PathBuf)> {
    let path = dir.join("pyproject.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let project: toml::Table = toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
    let name = project
        .get("project")
        .and_then(|p| p.get("name"))
        .and_then(toml::Value::as_str)
        .with_context(|| format!("{}: no `[project] name`", path.display()))?
        .to_owned();
    let world = project
        .get("tool")
        .and_then(|t| t.get("wasp"))
        .and_then(|w| w.get("world"))
        .and_then(toml::Value::as_str)
        .with_context(|| format!("{}: no `[tool.wasp] world` (e.g. \"value-mapper-plugin\")", path.display()))?
        .to_owned();
    let wit = wit_dir()?;
    let out = dir.join(format!("{name}.wasm"));
    let status = std::process::Command::new("componentize-py")
        .arg("-d")
        .arg(&wit)
        .args(["-w", &world, "componentize", "app", "-p"])
        .arg(dir)
        .arg("-o")
        .arg(&out)
        .status();
    let _ = std::fs::remove_dir_all(&wit);
    let status = status.context("running componentize-py (`make setup` installs it)")?;
    if !status.success() {
        anyhow::bail!("componentize-py failed in {} ({status})", dir.display());
    }
    Ok((name, out))
}

/// A Rust crate through cargo and wit-component: `(name, component)`.
fn build_rust(dir: &Path, target_dir: Option<&Path>) -> anyhow::Result<(String, PathBuf)> {
    let manifest = dir.join("Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let cargo_in = |args: &[&str]| {
        let mut c = std::process::Command::new(&cargo);
        c.current_dir(dir).args(args);
        if let Some(t) = target_dir {
            c.env("CARGO_TARGET_DIR", t);
        }
        c
    };
    let status =
        cargo_in(&["build", "--release", "--target", "wasm32-unknown-unknown"]).status().context("running cargo")?;
    if !status.success() {
        anyhow::bail!("cargo build failed in {} ({status})", dir.display());
    }
    let meta =
        cargo_in(&["metadata", "--no-deps", "--format-version", "1"]).output().context("running cargo metadata")?;
    let meta: serde_json::Value = serde_json::from_slice(&meta.stdout).context("reading cargo metadata")?;
    let want = manifest.canonicalize().with_context(|| format!("{}", manifest.display()))?;
    let package = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["manifest_path"].as_str().and_then(|m| Path::new(m).canonicalize().ok()).is_some_and(|m| m == want))
        .context("cargo metadata names no package for this Cargo.toml")?;
    let name = package["name"].as_str().context("a package without a name")?;
    let target = meta["target_directory"].as_str().context("cargo metadata gives no target directory")?;
    let module =
        Path::new(target).join("wasm32-unknown-unknown/release").join(format!("{}.wasm", name.replace('-', "_")));
    let bytes = std::fs::read(&module).with_context(|| format!("reading the built module {}", module.display()))?;
    let component = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&bytes)
        .and_then(|e| e.encode())
        .with_context(|| format!("making {} a component", module.display()))?;
    let out = dir.join(format!("{name}.wasm"));
    std::fs::write(&out, &component).with_context(|| format!("writing {}", out.display()))?;
    Ok((name.to_owned(), out))
}
