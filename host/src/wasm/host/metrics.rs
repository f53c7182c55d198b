//! `wasp:plugin/metrics`: plugin-defined counters, gauges and histograms, kept in the
//! process's registry ([`crate::wasm::metrics`]) beside the built-in metrics, under the caps
//! named there.

use super::HostState;
use crate::wasm::bindings::metrics::Host;
use crate::wasm::metrics::{Labels, Metric, MetricsRegistry};

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
