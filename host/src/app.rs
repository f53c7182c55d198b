//! Putting it together: manifest → topology → plugins → a run, for the CLI and the tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;

use crate::io::kafka::{KafkaSink, KafkaSource, client_config};
use crate::io::local::{LocalSink, LocalSource, SharedTopics};
use crate::manifest::{self, FileFormat, Loaded};
use crate::runtime::{self, RunStats};
use crate::topology::{self, PluginKind, Topology};
use crate::wasm::{LoadedPlugin, MetricsRegistry, Runtime};

/// Records per plugin call when the manifest does not say.
pub const DEFAULT_BATCH_SIZE: usize = 1024;

/// A manifest that parsed, whose topology is sound and whose plugins loaded.
pub struct Prepared {
    pub loaded: Loaded,
    pub topology: Arc<Topology>,
    pub plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    pub runtime: Runtime,
}

/// Parses the manifest and builds its topology, without touching plugins.
pub fn plan(path: &Path) -> anyhow::Result<(Loaded, Topology)> {
    let loaded = manifest::load(path)?;
    let topology = topology::build(&loaded)?;
    Ok((loaded, topology))
}

/// Plans, then loads and validates every plugin the topology uses: each must exist, compile,
/// export the kinds its steps need, and know the functions they name.
pub fn prepare(path: &Path, cache_dir: Option<PathBuf>) -> anyhow::Result<Prepared> {
    let (loaded, topology) = plan(path)?;
    let runtime = Runtime::new(cache_dir, MetricsRegistry::default())?;
    let mut needs: BTreeMap<&str, Vec<PluginKind>> = BTreeMap::new();
    for (_, r) in topology.plugin_uses() {
        let kinds = needs.entry(r.plugin.as_str()).or_default();
        if !kinds.contains(&r.kind) {
            kinds.push(r.kind);
        }
    }
    let mut plugins = BTreeMap::new();
    for (name, def) in &loaded.manifest.plugins {
        let Some(kinds) = needs.get(name.get_ref().as_str()) else {
            tracing::warn!(plugin = %name.get_ref(), "plugin declared but used by no step");
            continue;
        };
        let path = loaded.resolve(def.path.get_ref());
        let plugin = runtime
            .load(name.get_ref(), &path, &def.config, &def.grants, &def.limits, kinds)
            .map_err(anyhow::Error::new)
            .with_context(|| {
                let (line, col) = loaded.source.line_col(def.path.span().start);
                format!("{}:{line}:{col}: loading plugin `{}`", loaded.source.path.display(), name.get_ref())
            })?;
        tracing::info!(
            plugin = %plugin.name,
            digest = &plugin.digest[..12],
            cached = plugin.from_cache,
            ms = plugin.load_time.as_millis() as u64,
            "plugin loaded"
        );
        plugins.insert(name.get_ref().clone(), Arc::new(plugin));
    }
    // A trial instance of every step checks the named functions before anything runs.
    for (node, r) in topology.plugin_uses() {
        let plugin = plugins.get(&r.plugin).context("plugin not loaded")?;
        crate::operators::PluginStep::new(plugin.clone(), r)
            .with_context(|| format!("step `{}` of pipeline `{}`", node.name, node.pipeline))?;
    }
    Ok(Prepared { loaded, topology: Arc::new(topology), plugins, runtime })
}

/// Local-mode options from the command line.
#[derive(Debug, Default, Clone)]
pub struct LocalOptions {
    /// `--input topic=path`: overrides or adds an input file (format from the extension:
    /// `.jsonl` is JSON lines, anything else text).
    pub inputs: BTreeMap<String, PathBuf>,
    /// `--output topic=path`: writes a topic to a file as JSON lines instead of printing it.
    pub outputs: BTreeMap<String, PathBuf>,
    pub follow: bool,
}

impl Prepared {
    pub fn batch_size(&self) -> usize {
        self.loaded.manifest.application.batch_size.as_ref().map_or(DEFAULT_BATCH_SIZE, |b| (*b.get_ref()).max(1))
    }

    pub fn is_local(&self) -> bool {
        self.loaded.manifest.application.kafka.is_none()
    }

    /// Runs until the input is exhausted (local mode) or `stop` is set.
    pub fn run(&self, local: &LocalOptions, stop: &AtomicBool) -> anyhow::Result<RunStats> {
        match &self.loaded.manifest.application.kafka {
            None => {
                let mut inputs = BTreeMap::new();
                for (name, s) in &self.loaded.manifest.streams {
                    if let Some(file) = &s.file {
                        let topic = s.topic.as_ref().map_or_else(|| name.get_ref().clone(), |t| t.get_ref().clone());
                        inputs.insert(topic, (self.loaded.resolve(file.get_ref()), s.file_format));
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
                let shared = SharedTopics::default();
                let mut source = LocalSource::new(&self.topology, &inputs, shared.clone(), local.follow)?;
                let mut sink = LocalSink::new(self.topology.clone(), local.outputs.clone(), shared);
                runtime::run(&self.topology, &self.plugins, &mut source, &mut sink, self.batch_size(), stop)
            }
            Some(kafka) => {
                let config = client_config(kafka.bootstrap_servers.get_ref(), &kafka.properties);
                let topics: Vec<&str> = self.topology.sources.keys().map(String::as_str).collect();
                let mut source = KafkaSource::new(&config, &self.topology.application_id, &topics)?;
                let mut sink = KafkaSink::new(&config)?;
                runtime::run(&self.topology, &self.plugins, &mut source, &mut sink, self.batch_size(), stop)
            }
        }
    }
}
