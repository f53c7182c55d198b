//! Reading, compiling and validating a plugin once per process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{Component, InstancePre, types::ComponentItem};

use super::PluginKind;
use super::{HostState, Runtime, cache};
use crate::manifest::{Grants, Limits};

/// The WIT package plugins are built against.
pub const WIT_PACKAGE: &str = "wasp:plugin";
pub const WIT_VERSION: &str = "0.1.0";

/// Why a plugin cannot be used. Each names the plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin `{plugin}`: cannot read {}: {source}", path.display())]
    Read { plugin: String, path: PathBuf, source: std::io::Error },
    #[error("plugin `{plugin}`: {} is not a valid WebAssembly component: {reason}", path.display())]
    Compile { plugin: String, path: PathBuf, reason: String },
    #[error(
        "plugin `{plugin}` ({}) does not export the `{kind}` kind: a `{kind}` plugin exports `{WIT_PACKAGE}/{kind}@{WIT_VERSION}`, and this component exports {found}; build it with {attribute}",
        path.display()
    )]
    MissingKind { plugin: String, path: PathBuf, kind: &'static str, attribute: &'static str, found: String },
    #[error("plugin `{plugin}`: cannot prepare an instance: {reason}")]
    Link { plugin: String, reason: String },
    #[error("plugin `{plugin}`: {reason}")]
    Instantiate { plugin: String, reason: String },
}

/// A compiled, validated plugin, shared by every task's instances.
pub struct LoadedPlugin {
    pub name: Arc<str>,
    pub path: PathBuf,
    /// Hex SHA-256 of the component file.
    pub digest: String,
    pub from_cache: bool,
    pub load_time: std::time::Duration,
    /// When it was loaded, in milliseconds since the Unix epoch.
    pub loaded_at_ms: u64,
    pub(super) pre: InstancePre<HostState>,
    pub(super) config: Arc<Vec<(String, String)>>,
    pub(super) grants: Grants,
    pub(super) limits: Limits,
    pub(super) runtime: Runtime,
    /// The kinds the component exports.
    pub kinds: Vec<PluginKind>,
}

/// The first 12 hex digits of a digest: enough to tell versions apart in logs and headers.
pub fn short_digest(digest: &str) -> &str {
    &digest[..12.min(digest.len())]
}

impl LoadedPlugin {
    /// `name@digest-prefix`: the plugin and its version, for logs and dead-letter headers.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, short_digest(&self.digest))
    }

    /// Each call's deadline in milliseconds, or `None` when it is off: then the plugin's engine
    /// has no epoch checks (a trusted plugin runs in the runtime's second engine).
    pub fn deadline_ms(&self) -> Option<u64> {
        (self.runtime.options.epoch_deadlines && self.limits.deadline_ms > 0).then_some(self.limits.deadline_ms)
    }

    /// An instance for one use, set up and checked: it must instantiate with the plugin's
    /// config and know `function` of `kind` ([`super::PluginInstance::probe`]). A processor's
    /// instance gets its step's `stores` before its `init`. Used when a manifest is prepared,
    /// when a step starts, and when a new version is validated.
    pub fn trial(
        &self,
        kind: PluginKind,
        function: &str,
        stores: Option<&super::host::state::SharedStores>,
    ) -> Result<super::PluginInstance, PluginError> {
        let mut instance = self.instantiate()?;
        if let Some(stores) = stores {
            instance.attach_stores(stores.clone());
        }
        instance.probe(kind, function).map_err(|e| PluginError::Instantiate {
            plugin: self.name.to_string(),
            reason: match e {
                super::CallFailure::Refused { reason, .. } => {
                    let f = if function.is_empty() { "(default)" } else { function };
                    format!("function {f} of kind {}: {reason}", kind.interface())
                }
                super::CallFailure::Trap { reason, .. } | super::CallFailure::Oversized { reason, .. } => {
                    format!("trapped on its first call: {reason}")
                }
            },
        })?;
        Ok(instance)
    }
}

/// The kind's export name, e.g. `wasp:plugin/filter@0.1.0`.
pub fn export_name(kind: PluginKind) -> String {
    format!("{WIT_PACKAGE}/{}@{WIT_VERSION}", kind.interface())
}

/// A TOML config value as the plugin sees it: strings as they are, the rest as JSON.
fn config_value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap_or_else(|_| other.to_string()),
    }
}

impl Runtime {
    /// Loads the plugin `name` from `path`, and checks that it exports every kind in `needs`.
    pub fn load(
        &self,
        name: &str,
        path: &Path,
        config: &toml::Table,
        grants: &Grants,
        limits: &Limits,
        needs: &[PluginKind],
    ) -> Result<LoadedPlugin, PluginError> {
        let runtime = self.for_limits(limits);
        if !std::ptr::eq(runtime, self) {
            return runtime.load(name, path, config, grants, limits, needs);
        }
        let started = Instant::now();
        let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
            plugin: name.to_owned(),
            path: path.to_owned(),
            source,
        })?;
        let digest = cache::digest(&bytes);
        let (component, from_cache) = self.cache.get(&self.engine, &bytes, &digest).map_err(|e| {
            PluginError::Compile { plugin: name.to_owned(), path: path.to_owned(), reason: format!("{e:#}") }
        })?;
        let exports = exported_interfaces(&component, &self.engine);
        let kinds: Vec<PluginKind> =
            PluginKind::ALL.iter().copied().filter(|k| exports.iter().any(|e| *e == export_name(*k))).collect();
        for &kind in needs {
            if !kinds.contains(&kind) {
                let ours: Vec<&String> = exports.iter().filter(|e| e.starts_with(WIT_PACKAGE)).collect();
                let found = if ours.is_empty() {
                    if exports.is_empty() {
                        "nothing".to_owned()
                    } else {
                        format!("no wasp interface (only {})", exports.join(", "))
                    }
                } else {
                    ours.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
                };
                return Err(PluginError::MissingKind {
                    plugin: name.to_owned(),
                    path: path.to_owned(),
                    kind: kind.interface(),
                    attribute: kind.attribute(),
                    found,
                });
            }
        }
        let pre = self.linker.instantiate_pre(&component).map_err(|e| PluginError::Link {
            plugin: name.to_owned(),
            reason: format!(
                "{e:#}; a plugin may import only `{WIT_PACKAGE}` host interfaces (log, metrics, config) and WASI 0.2"
            ),
        })?;
        let config = Arc::new(config.iter().map(|(k, v)| (k.clone(), config_value(v))).collect());
        Ok(LoadedPlugin {
            name: name.into(),
            path: path.to_owned(),
            digest,
            from_cache,
            load_time: started.elapsed(),
            loaded_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            pre,
            config,
            grants: grants.clone(),
            limits: *limits,
            runtime: self.clone(),
            kinds,
        })
    }
}

/// The names of the instances a component exports.
fn exported_interfaces(component: &Component, engine: &wasmtime::Engine) -> Vec<String> {
    component
        .component_type()
        .exports(engine)
        .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentInstance(_)))
        .map(|(name, _)| name.to_owned())
        .collect()
}
