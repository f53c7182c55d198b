//! `wasp:plugin/metrics`: plugin-defined counters, gauges and histograms, kept in the
//! process's registry ([`crate::wasm::metrics`]) beside the built-in metrics, under the caps
//! named there.

use wasmtime::StoreContextMut;
use wasmtime::component::{Lift, Linker, LinkerInstance, WasmList, WasmStr};

use super::HostState;
use crate::wasm::bindings::metrics::Host;
use crate::wasm::metrics::{Labels, MAX_LABELS, MAX_NAME_BYTES, Metric, MetricsRegistry};

/// One plugin's handle on the registry.
#[derive(Clone)]
pub struct PluginMetrics {
    pub registry: MetricsRegistry,
}

impl Host for HostState {
    fn counter_add(&mut self, name: String, labels: Labels, delta: u64) {
        if let Some((Metric::Counter(f), l)) = self.metrics.registry.series(&self.plugin, &name, "counter", labels) {
            f.get_or_create(&l).inc_by(delta);
        }
    }

    fn gauge_set(&mut self, name: String, labels: Labels, value: f64) {
        if let Some((Metric::Gauge(f), l)) = self.metrics.registry.series(&self.plugin, &name, "gauge", labels) {
            f.get_or_create(&l).set(value);
        }
    }

    fn histogram_observe(&mut self, name: String, labels: Labels, value: f64) {
        if let Some((Metric::Histogram(f), l)) = self.metrics.registry.series(&self.plugin, &name, "histogram", labels)
        {
            f.get_or_create(&l).observe(value);
        }
    }
}

/// A call's labels as the guest passed them: not yet copied.
type GuestLabels = WasmList<(WasmStr, WasmStr)>;

/// Defines the metric functions over the bindings' versions (the linker must allow
/// shadowing). The bindings copy every name and label out of the guest before any cap
/// applies, and the canonical ABI lets a `list<tuple<string, string>>` name one large string
/// in each of its elements: a guest of a few MiB could make the host copy gigabytes. These
/// read the list and its strings where the guest keeps them, and copy them only within the
/// caps ([`MAX_LABELS`], [`MAX_NAME_BYTES`]); a call past one is counted as rejected and
/// ignored, as [`MetricsRegistry`] treats any call past a cap.
pub(super) fn link_in_place(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    let mut metrics = linker.instance("wasp:plugin/metrics@0.1.0")?;
    define::<u64>(&mut metrics, "counter-add", HostState::counter_add)?;
    define::<f64>(&mut metrics, "gauge-set", HostState::gauge_set)?;
    define::<f64>(&mut metrics, "histogram-observe", HostState::histogram_observe)?;
    Ok(())
}

/// Defines metric function `name(name, labels, value)`, which calls `apply` with the name and
/// labels copied within the caps, or is counted as rejected.
fn define<V: Lift + Send + Sync + 'static>(
    metrics: &mut LinkerInstance<'_, HostState>,
    name: &str,
    apply: fn(&mut HostState, String, Labels, V),
) -> anyhow::Result<()> {
    metrics.func_wrap(
        name,
        move |mut store: StoreContextMut<'_, HostState>, (name, labels, value): (WasmStr, GuestLabels, V)| {
            if let Some((name, labels)) = copied(&mut store, &name, &labels)? {
                apply(store.data_mut(), name, labels, value);
            }
            Ok(())
        },
    )?;
    Ok(())
}

/// A call's name and labels, copied out of the guest if they are within the caps; `None`
/// (counted as rejected) past one. A string that is not UTF-8 is an error: the call traps,
/// as the bindings' lifting would.
fn copied(
    store: &mut StoreContextMut<'_, HostState>,
    name: &WasmStr,
    labels: &GuestLabels,
) -> wasmtime::Result<Option<(String, Labels)>> {
    // A counter's name may carry Prometheus' `_total` suffix past the cap of the base name.
    const NAME_BYTES: usize = MAX_NAME_BYTES + "_total".len();
    let within = |s: &str, cap: usize| (s.len() <= cap).then(|| s.to_owned());
    let mut read = || -> wasmtime::Result<Option<(String, Labels)>> {
        if labels.len() > MAX_LABELS {
            return Ok(None);
        }
        let Some(name) = within(&name.to_str(&*store)?, NAME_BYTES) else { return Ok(None) };
        let mut out = Vec::with_capacity(labels.len());
        for i in 0..labels.len() {
            let Some(label) = labels.get(&mut *store, i) else { return Ok(None) };
            let (k, v) = label?;
            let Some(k) = within(&k.to_str(&*store)?, MAX_NAME_BYTES) else { return Ok(None) };
            let Some(v) = within(&v.to_str(&*store)?, MAX_NAME_BYTES) else { return Ok(None) };
            out.push((k, v));
        }
        Ok(Some((name, out)))
    };
    let answer = read()?;
    if answer.is_none() {
        store.data().metrics.registry.reject();
    }
    Ok(answer)
}
