//! One sandboxed instance of a plugin, owned by one task, called once per batch.

use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{Store, StoreLimitsBuilder};
use wasmtime_wasi::{FsPerms, HostMonotonicClock, HostWallClock, WasiCtxBuilder};

use super::PluginKind;
use super::bindings::{Batch, CallError, processor};
use super::host::metrics::PluginMetrics;
use super::kind::Exports;
use super::{EPOCH_TICK, HostState, LoadedPlugin, PluginError};
use crate::record::EncodedBatch;

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum CallFailure {
    /// The instance trapped (panic, deadline, memory cap): it is broken and must be rebuilt.
    #[error("plugin `{plugin}` trapped: {reason}")]
    Trap { plugin: String, reason: String },
    /// The call's result (or an import's arguments) was more than the plugin may move into
    /// the host in one call (`limits.transfer_mib`): the instance trapped, and a smaller
    /// batch may pass.
    #[error("plugin `{plugin}` trapped: {reason}")]
    Oversized { plugin: String, reason: String },
    /// The plugin refused the whole call without trapping.
    #[error("plugin `{plugin}` failed the batch: {reason}")]
    Refused { plugin: String, reason: String },
}

pub struct PluginInstance {
    store: Store<HostState>,
    exports: Exports,
    name: String,
    /// Epoch ticks one call may run (`None`: the engine has no epoch deadlines).
    deadline_ticks: Option<u64>,
    /// Fuel one call may burn (`None`: the engine does not meter fuel).
    fuel: Option<u64>,
    /// What the instance answered when it was set up ([`PluginInstance::set_up`]).
    setup: Setup,
}

/// What an instance answers when it is set up, before its first batch: an aggregator's
/// initial aggregate, a processor's timers. Each instance keeps its own answer, so a new
/// version (or a rebuilt instance) brings its own, and a rolled-back one keeps the old.
#[derive(Debug, Clone, Default)]
pub enum Setup {
    /// The kind needs no set-up call (or the instance has not been set up).
    #[default]
    None,
    /// `aggregator.initialize`: the aggregate a new key or window starts from.
    Initial(Vec<u8>),
    /// `processor.init`: the timers it asked for.
    Timers(Vec<processor::Timer>),
}

/// Clocks that read zero, for plugins not granted the real ones.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

fn trap(plugin: &str, e: &wasmtime::Error, transfer_mib: u64) -> CallFailure {
    let reason = match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => "it ran past its deadline".to_owned(),
        Some(wasmtime::Trap::OutOfFuel) => "it ran out of fuel".to_owned(),
        Some(t) => format!("{t}"),
        // wasmtime's hostcall fuel, whose error type is private: named by its message.
        None if format!("{e:#}").contains("fuel allocated for hostcalls has been exhausted") => {
            let reason = format!(
                "it moved more than {transfer_mib} MiB into the host in one call (`limits.transfer_mib`, default MAX_TRANSFER_BYTES, {} MiB: an import's arguments, or a result's records, errors and strings)",
                crate::manifest::DEFAULT_TRANSFER_MIB
            );
            return CallFailure::Oversized { plugin: plugin.to_owned(), reason };
        }
        None => format!("{e:#}"),
    };
    CallFailure::Trap { plugin: plugin.to_owned(), reason }
}

fn refused(plugin: &str, e: CallError) -> CallFailure {
    let reason = match e {
        CallError::UnknownFunction(f) => format!("it has no function named `{f}` of this kind"),
        CallError::Failed(m) => m,
    };
    CallFailure::Refused { plugin: plugin.to_owned(), reason }
}

impl LoadedPlugin {
    /// A fresh instance, with the manifest's grants and limits.
    pub fn instantiate(&self) -> Result<PluginInstance, PluginError> {
        let fail = |e: wasmtime::Error| PluginError::Instantiate {
            plugin: self.name.to_string(),
            reason: format!("instantiation failed: {e:#}"),
        };
        let mut wasi = WasiCtxBuilder::new();
        wasi.allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
        if self.grants.stdio {
            wasi.inherit_stdout().inherit_stderr();
        }
        if !self.grants.clocks {
            wasi.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
        }
        for var in &self.grants.env {
            if let Ok(value) = std::env::var(var) {
                wasi.env(var, value);
            }
        }
        for dir in &self.grants.dirs {
            wasi.preopened_dir(&dir.host, &dir.guest, FsPerms::ReadOnly).map_err(|e| PluginError::Instantiate {
                plugin: self.name.to_string(),
                reason: format!("cannot grant directory {}: {e:#}", dir.host),
            })?;
        }
        let limits = StoreLimitsBuilder::new()
            .memory_size(usize::try_from(self.limits.memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX))
            .table_elements(self.limits.table_elements as usize)
            .instances(64)
            .trap_on_grow_failure(true)
            .build();
        let state = HostState {
            plugin: self.name.clone(),
            config: self.config.clone(),
            metrics: PluginMetrics { registry: self.runtime.metrics.clone() },
            stores: None,
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits,
            log: Default::default(),
        };
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|s| &mut s.limits);
        store
            .set_hostcall_fuel(usize::try_from(self.limits.transfer_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX));
        let deadline_ticks = match self.limits.deadline_ms {
            // No deadline; wasmtime adds this to the current epoch, so not u64::MAX.
            0 => u64::MAX / 2,
            ms => (ms / EPOCH_TICK.as_millis() as u64).max(1),
        };
        let fuel = self.runtime.options.fuel.then(|| self.limits.fuel.unwrap_or(u64::MAX));
        if self.runtime.options.epoch_deadlines {
            store.set_epoch_deadline(deadline_ticks);
        }
        if let Some(f) = fuel {
            store.set_fuel(f).map_err(fail)?;
        }
        let instance = self.pre.instantiate(&mut store).map_err(fail)?;
        // Only the kinds the component exports are looked up; the others stay `None`.
        let exports = Exports::load(&self.kinds, &self.pre, &mut store, &instance).map_err(fail)?;
        Ok(PluginInstance {
            store,
            exports,
            name: self.name.to_string(),
            deadline_ticks: self.runtime.options.epoch_deadlines.then_some(deadline_ticks),
            fuel,
            setup: Setup::None,
        })
    }
}

/// Moves the encoded lists into the WIT record for a call, and back afterwards, so buffers
/// are reused and nothing is copied on the host side.
fn lend(batch: &mut EncodedBatch) -> Batch {
    Batch {
        index: std::mem::take(&mut batch.index),
        timestamps: std::mem::take(&mut batch.timestamps),
        data: std::mem::take(&mut batch.data),
    }
}

fn give_back(batch: &mut EncodedBatch, b: Batch) {
    batch.index = b.index;
    batch.timestamps = b.timestamps;
    batch.data = b.data;
}

pub(super) fn missing(plugin: &str, kind: PluginKind) -> CallFailure {
    CallFailure::Refused {
        plugin: plugin.to_owned(),
        reason: format!("it does not export the {} kind", kind.interface()),
    }
}

impl PluginInstance {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Before each call: a fresh deadline, and a fresh fuel budget (per call, so a loop within
    /// one call always runs out).
    fn arm(&mut self) {
        if let Some(ticks) = self.deadline_ticks {
            self.store.set_epoch_deadline(ticks);
        }
        if let Some(fuel) = self.fuel {
            // Cannot fail: the engine meters fuel whenever `fuel` is set.
            let _ = self.store.set_fuel(fuel);
        }
    }

    /// The one call path of every kind: arms the limits, finds the kind's export, lends the
    /// encoded batches to the call and takes them back, and turns a trap or a refused batch
    /// into a [`CallFailure`]. Each kind's typed call, in `kind.rs`, is one line on top of it.
    pub(super) fn call<G, R, const N: usize>(
        &mut self,
        kind: PluginKind,
        export: impl FnOnce(&Exports) -> Option<&G>,
        batches: [&mut EncodedBatch; N],
        call: impl FnOnce(&G, &mut Store<HostState>, &[Batch; N]) -> wasmtime::Result<Result<R, CallError>>,
    ) -> Result<R, CallFailure> {
        self.arm();
        let Self { store, exports, name, .. } = self;
        let guest = export(exports).ok_or_else(|| missing(name, kind))?;
        let mut batches = batches;
        let lent: [Batch; N] = std::array::from_fn(|i| lend(batches[i]));
        let r = call(guest, store, &lent);
        for (batch, b) in batches.iter_mut().zip(lent) {
            give_back(batch, b);
        }
        r.map_err(|e| trap(name, &e, (store.hostcall_fuel() >> 20) as u64))?.map_err(|e| refused(name, e))
    }

    /// Gives a processor instance its step's stores.
    pub fn attach_stores(&mut self, stores: super::host::state::SharedStores) {
        self.store.data_mut().stores = Some(stores);
    }

    /// Sets the instance up for one use before its first batch: an aggregator's `initialize`,
    /// a processor's `init` (Kafka Streams calls both once per instance). Other kinds need no
    /// call. The answer stays with the instance ([`PluginInstance::setup`]).
    pub fn set_up(&mut self, kind: PluginKind, function: &str) -> Result<(), CallFailure> {
        self.setup = match kind {
            PluginKind::Aggregator => Setup::Initial(self.initialize(function)?),
            PluginKind::Processor => Setup::Timers(self.processor_init(function)?),
            _ => Setup::None,
        };
        Ok(())
    }

    /// What the instance answered when it was set up.
    pub fn setup(&self) -> &Setup {
        &self.setup
    }
}
