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
mod kind;
mod loader;
pub mod metrics;
mod step;
pub mod swap;
pub mod watch;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use bindings::{CallError, Verdicts, WasmOutput};
pub use cache::digest;
pub use host::HostState;
pub use instance::{CallFailure, PluginInstance, Setup};
pub use kind::PluginKind;
pub use loader::{LoadedPlugin, PluginError, WIT_PACKAGE, WIT_VERSION, short_digest};
pub use metrics::{MetricsRegistry, StepMetrics};
pub use step::PluginStep;
pub use swap::{PluginDirectory, PluginSlot, PluginSpec, SwapError, SwapEvent, SwapResult, Version};

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch ticker advances; per-call deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The most bytes one call may move from a guest into the host, unless the plugin's
/// `limits.transfer_mib` says otherwise: an import's arguments, or an export's result (its
/// records, errors and strings). wasmtime counts every byte it copies out of the guest
/// against it (its hostcall fuel), so the canonical ABI's aliasing — a list whose elements all
/// name one large string — cannot make the host copy more than this. A call past it fails
/// with [`CallFailure::Oversized`] (a trap; the instance is rebuilt, and the same batch is not
/// tried again on it): the runtime splits a batch whose records all trapped and runs the
/// halves again (`runtime::policy::isolate`), so only a record whose own result is past the
/// cap fails, under the step's error policy.
pub const MAX_TRANSFER_BYTES: usize = (crate::manifest::DEFAULT_TRANSFER_MIB as usize) << 20;

/// The process-wide Wasm runtime: an engine (with its linker, compiled-component cache and
/// epoch ticker), and, when the manifest mixes plugins with and without a deadline, a second
/// engine without epoch checks for the trusted ones ([`EngineOptions::trusted_engine`]).
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<wasmtime::component::Linker<HostState>>,
    cache: cache::ComponentCache,
    metrics: MetricsRegistry,
    /// Stops the epoch ticker thread when the last clone of the runtime is gone.
    _ticker: Arc<TickerStop>,
    options: EngineOptions,
    /// Where plugins with `deadline_ms = 0` are compiled and run, when this engine has epoch
    /// checks.
    trusted: Option<Arc<Runtime>>,
}

/// Engine-wide sandbox settings. Per-plugin limits (memory, tables, deadline, fuel) are set
/// per instance within these.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// Instances come from a pre-reserved pool (fast instantiation, and a hard cap on how many
    /// exist at once) instead of fresh allocations.
    pub pooling: bool,
    /// Plugin instances the pool holds at once (`[application] max_instances`).
    pub max_instances: u32,
    /// The largest linear memory of any plugin, in MiB (the pool's slot size).
    pub max_memory_mib: u64,
    /// The largest table of any plugin, in elements.
    pub max_table_elements: u32,
    /// Epoch interruption, for per-call deadlines. Off only when every plugin turns its
    /// deadline off.
    pub epoch_deadlines: bool,
    /// Fuel metering, when some plugin sets `fuel`.
    pub fuel: bool,
    /// With epoch deadlines on: plugins whose deadline is off (`deadline_ms = 0`) go to a
    /// second engine without epoch checks, so they run at full speed beside the others.
    pub trusted_engine: bool,
}

/// Plugin instances the pool holds when the manifest does not say.
pub const DEFAULT_MAX_INSTANCES: u32 = 256;

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            pooling: true,
            max_instances: DEFAULT_MAX_INSTANCES,
            max_memory_mib: crate::manifest::Limits::default().memory_mib,
            max_table_elements: crate::manifest::Limits::default().table_elements,
            epoch_deadlines: true,
            fuel: false,
            trusted_engine: false,
        }
    }
}

impl EngineOptions {
    /// The options that fit every plugin's limits.
    pub fn for_limits<'a>(limits: impl IntoIterator<Item = &'a crate::manifest::Limits>, max_instances: u32) -> Self {
        let mut o = Self { max_instances, epoch_deadlines: false, ..Self::default() };
        let mut any = false;
        let mut trusted = false;
        for l in limits {
            any = true;
            o.max_memory_mib = o.max_memory_mib.max(l.memory_mib);
            o.max_table_elements = o.max_table_elements.max(l.table_elements);
            o.epoch_deadlines |= l.deadline_ms > 0;
            trusted |= l.deadline_ms == 0;
            o.fuel |= l.fuel.is_some();
        }
        if !any {
            o.epoch_deadlines = true;
        }
        // Only a mix needs two engines; with every deadline off the one engine has no checks.
        o.trusted_engine = o.epoch_deadlines && trusted;
        o
    }

    fn config(&self) -> Config {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(self.epoch_deadlines);
        config.consume_fuel(self.fuel);
        if self.pooling {
            let n = self.max_instances.max(1);
            let mut pool = PoolingAllocationConfig::default();
            // A component may hold several core instances, memories and tables (a Python
            // component holds a dozen modules); the totals bound them all.
            pool.total_component_instances(n)
                .total_core_instances(n.saturating_mul(16))
                .total_memories(n.saturating_mul(2))
                .total_tables(n.saturating_mul(16))
                .max_core_instances_per_component(64)
                .max_memories_per_component(8)
                .max_tables_per_component(32)
                .max_tables_per_module(4)
                .max_memories_per_module(2)
                .max_core_instance_size(8 << 20)
                .max_component_instance_size(8 << 20)
                .table_elements(self.max_table_elements as usize)
                .max_memory_size(usize::try_from(self.max_memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX));
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        config
    }
}

impl Runtime {
    /// A runtime whose compiled artifacts live under `cache_dir` (none: no disk cache), with
    /// the default engine options.
    pub fn new(cache_dir: Option<std::path::PathBuf>, metrics: MetricsRegistry) -> anyhow::Result<Self> {
        Self::with_options(cache_dir, metrics, EngineOptions::default())
    }

    /// A runtime with explicit engine options.
    pub fn with_options(
        cache_dir: Option<std::path::PathBuf>,
        metrics: MetricsRegistry,
        options: EngineOptions,
    ) -> anyhow::Result<Self> {
        let trusted = if options.epoch_deadlines && options.trusted_engine {
            let unchecked = EngineOptions { epoch_deadlines: false, trusted_engine: false, ..options };
            Some(Arc::new(Self::with_options(cache_dir.clone(), metrics.clone(), unchecked)?))
        } else {
            None
        };
        let engine = Engine::new(&options.config())?;
        let linker = Arc::new(host::linker(&engine)?);
        let ticker = Arc::new(TickerStop(Arc::new(AtomicBool::new(false))));
        if options.epoch_deadlines {
            let (e, stop) = (engine.clone(), ticker.0.clone());
            std::thread::Builder::new().name("wasp-epoch".into()).spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    e.increment_epoch();
                }
            })?;
        }
        let cache = cache::ComponentCache::new(cache_dir, &engine);
        Ok(Self { engine, linker, cache, metrics, _ticker: ticker, options, trusted })
    }

    /// The runtime a plugin with `limits` is compiled and run in: the trusted engine for a
    /// plugin whose deadline is off, when there is one.
    pub fn for_limits(&self, limits: &crate::manifest::Limits) -> &Runtime {
        match &self.trusted {
            Some(t) if limits.deadline_ms == 0 => t,
            _ => self,
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn metrics(&self) -> &MetricsRegistry {
        &self.metrics
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }
}

/// Shared by every clone of a runtime; dropped with the last, it stops the ticker thread.
struct TickerStop(Arc<AtomicBool>);

impl Drop for TickerStop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
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
