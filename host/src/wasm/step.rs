//! A step's use of a plugin, from the operator's side: the instance it calls once per batch,
//! rebuilt after a trap, switched to a new version at a batch boundary, and rolled back if
//! the new version traps on its first batch. The versions themselves live in the plugin's
//! [`PluginSlot`] (`swap.rs`).

use std::sync::Arc;

use super::host::state::SharedStores;
use super::swap::Version;
use super::{CallFailure, LoadedPlugin, PluginError, PluginInstance, PluginKind, PluginSlot, Setup};
use crate::record::{EncodedBatch, Record};
use crate::state::Store;

/// A node's use of a plugin: the instance, rebuilt after a trap, and switched to a new version
/// at a batch boundary when the plugin's [`PluginSlot`] publishes one (see [`crate::wasm::swap`]).
/// Every instance it uses is set up first ([`PluginInstance::set_up`]: an aggregator's initial
/// aggregate, a processor's `init`), with the step's stores attached.
pub struct PluginStep {
    slot: Arc<PluginSlot>,
    /// The slot generation `instance` belongs to; `None` when the step runs a version the
    /// slot has moved on from (two reloads within one batch), so it switches at the next one.
    generation: Option<u64>,
    loaded: Arc<LoadedPlugin>,
    instance: PluginInstance,
    /// The version before a swap, kept until the new one has run its first batch.
    previous: Option<Previous>,
    pub function: String,
    pub kind: PluginKind,
    /// Reused between batches.
    pub encoded: EncodedBatch,
    label: String,
    /// A processor's stores, given to every instance (a rebuilt one too).
    stores: Option<SharedStores>,
    /// How many times the instance was replaced (a swap, a rollback, a rebuild after a trap).
    replaced: u64,
}

struct Previous {
    loaded: Arc<LoadedPlugin>,
    instance: PluginInstance,
    label: String,
}

impl PluginStep {
    /// The step's first instance of `function` of `kind`, set up (with `stores`, for a
    /// processor) and checked.
    pub fn new(
        slot: Arc<PluginSlot>,
        kind: PluginKind,
        function: &str,
        stores: Option<SharedStores>,
    ) -> Result<Self, PluginError> {
        let Version { loaded, generation, .. } = slot.current();
        let instance = loaded.trial(kind, function, stores.as_ref())?;
        let label = loaded.label();
        Ok(Self {
            slot,
            generation: Some(generation),
            loaded,
            instance,
            previous: None,
            function: function.to_owned(),
            kind,
            encoded: EncodedBatch::default(),
            label,
            stores,
            replaced: 0,
        })
    }

    /// A new instance of `loaded` for this step: the stores attached, then set up.
    fn fresh(&self, loaded: &LoadedPlugin) -> Result<PluginInstance, String> {
        let mut instance = loaded.instantiate().map_err(|e| e.to_string())?;
        if let Some(stores) = &self.stores {
            instance.attach_stores(stores.clone());
        }
        instance.set_up(self.kind, &self.function).map_err(|e| e.to_string())?;
        Ok(instance)
    }

    /// What the current instance answered when it was set up.
    pub fn setup(&self) -> &Setup {
        self.instance.setup()
    }

    /// Changes whenever the instance is replaced, and its [`PluginStep::setup`] with it.
    pub fn replaced(&self) -> u64 {
        self.replaced
    }

    /// Calls `f` on the instance without a batch (timers), with the same trap handling.
    pub fn call_plain<T>(
        &mut self,
        mut f: impl FnMut(&mut PluginInstance, &str) -> Result<T, CallFailure>,
    ) -> Result<T, CallFailure> {
        self.call(&[], |i, function, _| f(i, function))
    }

    /// The plugin's name and version, for dead-letter headers.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// At a batch boundary: moves to the slot's version if it changed. The old instance is
    /// kept while the new version is on probation; if the new one cannot even be instantiated
    /// here, the step stays on the old one and the slot rolls back.
    fn follow_slot(&mut self) {
        if self.generation == Some(self.slot.generation()) {
            return;
        }
        let started = std::time::Instant::now();
        let Version { loaded, generation, on_probation } = self.slot.current();
        let instance = match self.fresh(&loaded) {
            Ok(i) => i,
            Err(e) => {
                tracing::error!(plugin = %self.label, error = %e, "cannot set up the new plugin version");
                if self.slot.roll_back(generation, &e) {
                    // This step runs the version it had; if the slot rolled back to another
                    // (two reloads in a row), the next batch switches to that one.
                    let target = self.slot.current();
                    self.generation = (target.loaded.digest == self.loaded.digest).then_some(target.generation);
                }
                return;
            }
        };
        self.replaced += 1;
        let label = loaded.label();
        let old_loaded = std::mem::replace(&mut self.loaded, loaded);
        let old_instance = std::mem::replace(&mut self.instance, instance);
        let old_label = std::mem::replace(&mut self.label, label);
        self.previous =
            on_probation.then_some(Previous { loaded: old_loaded, instance: old_instance, label: old_label });
        self.generation = Some(generation);
        let pause = started.elapsed();
        self.slot.record_pause(pause);
        tracing::debug!(plugin = %self.label, pause_us = pause.as_micros() as u64, "step switched to a new plugin version");
    }

    /// Encodes `records` and calls `f` on the instance. A trap throws the instance away; the
    /// call is retried once on a fresh one, as the design asks. A trap on the first batch of a
    /// newly swapped-in version instead rolls the swap back, and the old version runs the batch.
    /// Only a batch ends the probation: a call without records (a timer) neither confirms the
    /// new version nor rolls it back.
    pub fn call<T>(
        &mut self,
        records: &[Record],
        mut f: impl FnMut(&mut PluginInstance, &str, &mut EncodedBatch) -> Result<T, CallFailure>,
    ) -> Result<T, CallFailure> {
        self.follow_slot();
        self.encoded.encode(records.iter());
        let mut result = attempt(self.stores.as_ref(), &mut self.instance, &self.function, &mut self.encoded, &mut f);
        if let Err(CallFailure::Oversized { plugin, reason }) = &result {
            // The instance trapped while its result was taken: it cannot be entered again.
            // The same batch would trap the same way on a fresh one; the caller may split it.
            self.instance = self
                .fresh(&self.loaded)
                .map_err(|e| CallFailure::Trap { plugin: plugin.clone(), reason: format!("{reason}; and then {e}") })?;
            self.replaced += 1;
            return result;
        }
        if !records.is_empty()
            && let Some(previous) = self.previous.take()
        {
            let Err(CallFailure::Trap { reason, .. }) = &result else {
                if let Some(g) = self.generation {
                    self.slot.confirm(g);
                }
                return result;
            };
            // Another task may have confirmed the version already: then it stays, and this
            // trap is handled as any other.
            if self.generation.is_some_and(|g| self.slot.roll_back(g, reason)) {
                // The old instance runs this batch. If it is not the version rolled back to
                // (two reloads came within one batch), the next batch switches to that one.
                let target = self.slot.current();
                self.generation = (target.loaded.digest == previous.loaded.digest).then_some(target.generation);
                self.loaded = previous.loaded;
                self.instance = previous.instance;
                self.label = previous.label;
                self.replaced += 1;
                result = attempt(self.stores.as_ref(), &mut self.instance, &self.function, &mut self.encoded, &mut f);
            }
        }
        let Err(CallFailure::Trap { plugin, reason }) = result else { return result };
        tracing::warn!(plugin, reason, "plugin trapped; retrying the batch once on a fresh instance");
        self.instance = self
            .fresh(&self.loaded)
            .map_err(|e| CallFailure::Trap { plugin: plugin.clone(), reason: format!("{reason}; and then {e}") })?;
        self.replaced += 1;
        attempt(self.stores.as_ref(), &mut self.instance, &self.function, &mut self.encoded, &mut f)
    }
}

/// One call of `f` on `instance`. With a processor's `stores`, what the call wrote is undone if
/// it fails as a whole (a trap, or the batch refused): the batch runs again, or follows the
/// error policy, from the state before it.
fn attempt<T>(
    stores: Option<&SharedStores>,
    instance: &mut PluginInstance,
    function: &str,
    encoded: &mut EncodedBatch,
    f: &mut impl FnMut(&mut PluginInstance, &str, &mut EncodedBatch) -> Result<T, CallFailure>,
) -> Result<T, CallFailure> {
    let each = |g: &mut dyn FnMut(&mut Store)| {
        if let Some(Ok(mut stores)) = stores.map(|s| s.lock()) {
            stores.values_mut().for_each(g);
        }
    };
    each(&mut Store::savepoint);
    let result = f(instance, function, encoded);
    if result.is_ok() {
        each(&mut Store::release_savepoint);
    } else {
        each(&mut Store::roll_back_savepoint);
    }
    result
}
