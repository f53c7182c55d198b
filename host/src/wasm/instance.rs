//! One sandboxed instance of a plugin, owned by one task, called once per batch.

use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{Store, StoreLimitsBuilder};
use wasmtime_wasi::{FsPerms, HostMonotonicClock, HostWallClock, WasiCtxBuilder};

use super::PluginKind;
use super::bindings::{
    Batch, CallError, RecordError, Verdicts, WasmOutput, aggregator, filter, flat_mapper, for_each, key_selector,
    key_value_mapper, processor, reducer, timestamp_extractor, value_mapper,
};
use super::host::metrics::PluginMetrics;
use super::{EPOCH_TICK, HostState, LoadedPlugin, PluginError};
use crate::record::EncodedBatch;

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum CallFailure {
    /// The instance trapped (panic, deadline, memory cap): it is broken and must be rebuilt.
    #[error("plugin `{plugin}` trapped: {reason}")]
    Trap { plugin: String, reason: String },
    /// The plugin refused the whole call without trapping.
    #[error("plugin `{plugin}` failed the batch: {reason}")]
    Refused { plugin: String, reason: String },
}

struct Exports {
    filter: Option<filter::Guest>,
    value_mapper: Option<value_mapper::Guest>,
    key_value_mapper: Option<key_value_mapper::Guest>,
    flat_mapper: Option<flat_mapper::Guest>,
    key_selector: Option<key_selector::Guest>,
    for_each: Option<for_each::Guest>,
    aggregator: Option<aggregator::Guest>,
    reducer: Option<reducer::Guest>,
    timestamp_extractor: Option<timestamp_extractor::Guest>,
    processor: Option<processor::Guest>,
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

fn trap(plugin: &str, e: &wasmtime::Error) -> CallFailure {
    let reason = match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => "it ran past its deadline".to_owned(),
        Some(wasmtime::Trap::OutOfFuel) => "it ran out of fuel".to_owned(),
        Some(t) => format!("{t}"),
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
        };
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|s| &mut s.limits);
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
        macro_rules! export {
            ($kind:expr, $module:ident) => {
                if self.kinds.contains(&$kind) {
                    Some(
                        $module::GuestIndices::new(&self.pre)
                            .and_then(|i| i.load(&mut store, &instance))
                            .map_err(fail)?,
                    )
                } else {
                    None
                }
            };
        }
        let exports = Exports {
            filter: export!(PluginKind::Filter, filter),
            value_mapper: export!(PluginKind::ValueMapper, value_mapper),
            key_value_mapper: export!(PluginKind::KeyValueMapper, key_value_mapper),
            flat_mapper: export!(PluginKind::FlatMapper, flat_mapper),
            key_selector: export!(PluginKind::KeySelector, key_selector),
            for_each: export!(PluginKind::ForEach, for_each),
            aggregator: export!(PluginKind::Aggregator, aggregator),
            reducer: export!(PluginKind::Reducer, reducer),
            timestamp_extractor: export!(PluginKind::TimestampExtractor, timestamp_extractor),
            processor: export!(PluginKind::Processor, processor),
        };
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

fn missing(plugin: &str, kind: PluginKind) -> CallFailure {
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
    /// into a [`CallFailure`]. A new kind's method is one line on top of it.
    fn call<G, R, const N: usize>(
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
        r.map_err(|e| trap(name, &e))?.map_err(|e| refused(name, e))
    }

    /// Runs a filter over the batch.
    pub fn filter(&mut self, function: &str, batch: &mut EncodedBatch) -> Result<Verdicts, CallFailure> {
        self.call(PluginKind::Filter, |e| e.filter.as_ref(), [batch], |g, s, [b]| g.call_filter(s, function, b))
    }

    /// Runs a transforming kind (value mapper, key-value mapper, flat mapper, key selector).
    pub fn transform(
        &mut self,
        kind: PluginKind,
        function: &str,
        batch: &mut EncodedBatch,
    ) -> Result<WasmOutput, CallFailure> {
        let f = function;
        match kind {
            PluginKind::ValueMapper => {
                self.call(kind, |e| e.value_mapper.as_ref(), [batch], |g, s, [b]| g.call_map_values(s, f, b))
            }
            PluginKind::KeyValueMapper => {
                self.call(kind, |e| e.key_value_mapper.as_ref(), [batch], |g, s, [b]| g.call_map_pairs(s, f, b))
            }
            PluginKind::FlatMapper => {
                self.call(kind, |e| e.flat_mapper.as_ref(), [batch], |g, s, [b]| g.call_flat_map(s, f, b))
            }
            PluginKind::KeySelector => {
                self.call(kind, |e| e.key_selector.as_ref(), [batch], |g, s, [b]| g.call_select_key(s, f, b))
            }
            _ => Err(missing(&self.name, kind)),
        }
    }

    /// Runs a for-each over the batch.
    pub fn for_each(&mut self, function: &str, batch: &mut EncodedBatch) -> Result<Vec<RecordError>, CallFailure> {
        self.call(PluginKind::ForEach, |e| e.for_each.as_ref(), [batch], |g, s, [b]| g.call_for_each(s, function, b))
    }

    /// Folds a batch into aggregates (see `aggregator.aggregate` in the WIT).
    pub fn aggregate(
        &mut self,
        function: &str,
        batch: &mut EncodedBatch,
        slots: &[u32],
        current: &mut EncodedBatch,
    ) -> Result<WasmOutput, CallFailure> {
        self.call(
            PluginKind::Aggregator,
            |e| e.aggregator.as_ref(),
            [batch, current],
            |g, s, [b, c]| g.call_aggregate(s, function, b, slots, c),
        )
    }

    /// Folds a batch into reduced values (see `reducer.reduce` in the WIT).
    pub fn reduce(
        &mut self,
        function: &str,
        batch: &mut EncodedBatch,
        slots: &[u32],
        current: &mut EncodedBatch,
    ) -> Result<WasmOutput, CallFailure> {
        self.call(
            PluginKind::Reducer,
            |e| e.reducer.as_ref(),
            [batch, current],
            |g, s, [b, c]| g.call_reduce(s, function, b, slots, c),
        )
    }

    /// Merges aggregates pairwise (session windows).
    pub fn merge(
        &mut self,
        function: &str,
        left: &mut EncodedBatch,
        right: &mut EncodedBatch,
    ) -> Result<WasmOutput, CallFailure> {
        self.call(
            PluginKind::Aggregator,
            |e| e.aggregator.as_ref(),
            [left, right],
            |g, s, [l, r]| g.call_merge(s, function, l, r),
        )
    }

    /// The aggregator's initial aggregate.
    pub fn initialize(&mut self, function: &str) -> Result<Vec<u8>, CallFailure> {
        self.call(PluginKind::Aggregator, |e| e.aggregator.as_ref(), [], |g, s, []| g.call_initialize(s, function))
    }

    /// The event time of each record.
    pub fn extract_timestamps(
        &mut self,
        function: &str,
        batch: &mut EncodedBatch,
    ) -> Result<timestamp_extractor::Timestamps, CallFailure> {
        let kind = PluginKind::TimestampExtractor;
        self.call(kind, |e| e.timestamp_extractor.as_ref(), [batch], |g, s, [b]| g.call_extract(s, function, b))
    }

    /// Gives a processor instance its step's stores.
    pub fn attach_stores(&mut self, stores: super::host::state::SharedStores) {
        self.store.data_mut().stores = Some(stores);
    }

    /// A processor's timers.
    pub fn processor_init(&mut self, function: &str) -> Result<Vec<processor::Timer>, CallFailure> {
        self.call(PluginKind::Processor, |e| e.processor.as_ref(), [], |g, s, []| g.call_init(s, function))
    }

    /// Runs a processor over the batch.
    pub fn process(&mut self, function: &str, batch: &mut EncodedBatch) -> Result<processor::Forwarded, CallFailure> {
        self.call(PluginKind::Processor, |e| e.processor.as_ref(), [batch], |g, s, [b]| g.call_process(s, function, b))
    }

    /// Fires a processor's timer.
    pub fn punctuate(&mut self, function: &str, timer: &str, time: i64) -> Result<processor::Forwarded, CallFailure> {
        self.call(
            PluginKind::Processor,
            |e| e.processor.as_ref(),
            [],
            |g, s, []| g.call_punctuate(s, function, timer, time),
        )
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

    /// Checks that `function` names a function of `kind`: the set-up call for kinds that have
    /// one, else an empty batch, which costs nothing and answers `unknown-function` if not.
    pub fn probe(&mut self, kind: PluginKind, function: &str) -> Result<(), CallFailure> {
        let mut empty = EncodedBatch::default();
        match kind {
            PluginKind::Aggregator | PluginKind::Processor => self.set_up(kind, function),
            PluginKind::Filter => self.filter(function, &mut empty).map(drop),
            PluginKind::ForEach => self.for_each(function, &mut empty).map(drop),
            PluginKind::Reducer => self.reduce(function, &mut empty, &[], &mut EncodedBatch::default()).map(drop),
            PluginKind::TimestampExtractor => self.extract_timestamps(function, &mut empty).map(drop),
            _ => self.transform(kind, function, &mut empty).map(drop),
        }
    }
}
