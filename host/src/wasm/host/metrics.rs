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
        let r = &self.metrics.registry;
        if let (Some(Metric::Counter(f)), Some(l)) =
            (r.metric(&self.plugin, &name, "counter"), r.labels(&self.plugin, &name, labels))
        {
            f.get_or_create(&l).inc_by(delta);
        }
    }

    fn gauge_set(&mut self, name: String, labels: Labels, value: f64) {
        let r = &self.metrics.registry;
        if let (Some(Metric::Gauge(f)), Some(l)) =
            (r.metric(&self.plugin, &name, "gauge"), r.labels(&self.plugin, &name, labels))
        {
            f.get_or_create(&l).set(value);
        }
    }

    fn histogram_observe(&mut self, name: String, labels: Labels, value: f64) {
        let r = &self.metrics.registry;
        if let (Some(Metric::Histogram(f)), Some(l)) =
            (r.metric(&self.plugin, &name, "histogram"), r.labels(&self.plugin, &name, labels))
        {
            f.get_or_create(&l).observe(value);
        }
    }
}
