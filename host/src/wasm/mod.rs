//! The Wasm side of the host: one [`Engine`] per process, components compiled once and cached
//! on disk by content digest, plugins checked against the kinds the manifest needs, and
//! sandboxed instances that take one batch per call.
//!
//! The lifecycle has named steps, as in spin's factors: [`Runtime::load`] reads, compiles and
//! validates a plugin once ([`LoadedPlugin`]); [`LoadedPlugin::instantiate`] prepares one
//! instance per task ([`PluginInstance`]); the operators then call it once per batch.

pub(crate) mod bindings;
mod cache;
pub mod host;
mod instance;
mod loader;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use bindings::{CallError, Verdicts, WasmOutput};
pub use host::HostState;
pub use host::metrics::MetricsRegistry;
pub use instance::{CallFailure, PluginInstance};
pub use loader::{LoadedPlugin, PluginError};

use wasmtime::{Config, Engine};

/// How often the epoch ticker advances; per-call deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The process-wide Wasm runtime.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<wasmtime::component::Linker<HostState>>,
    cache: cache::ComponentCache,
    metrics: MetricsRegistry,
    ticker_stop: Arc<AtomicBool>,
}

impl Runtime {
    /// A runtime whose compiled artifacts live under `cache_dir` (none: no disk cache).
    pub fn new(cache_dir: Option<std::path::PathBuf>, metrics: MetricsRegistry) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        let linker = Arc::new(host::linker(&engine)?);
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (e, stop) = (engine.clone(), ticker_stop.clone());
        std::thread::Builder::new().name("wasp-epoch".into()).spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                e.increment_epoch();
            }
        })?;
        let cache = cache::ComponentCache::new(cache_dir, &engine);
        Ok(Self { engine, linker, cache, metrics, ticker_stop })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn metrics(&self) -> &MetricsRegistry {
        &self.metrics
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if Arc::strong_count(&self.ticker_stop) == 2 {
            self.ticker_stop.store(true, Ordering::Relaxed);
        }
    }
}

/// The default cache directory: `$WASP_CACHE_DIR`, else `$XDG_CACHE_HOME/wasp`, else
/// `~/.cache/wasp`.
pub fn default_cache_dir() -> Option<std::path::PathBuf> {
    if let Some(d) = std::env::var_os("WASP_CACHE_DIR") {
        return Some(d.into());
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(std::path::PathBuf::from(d).join("wasp"));
    }
    std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache").join("wasp"))
}
