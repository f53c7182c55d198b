//! `wasp:plugin/metrics`: plugin-defined counters, gauges and histograms, kept in the
//! process's Prometheus registry beside the built-in metrics.
//!
//! A guest chooses names and labels, so everything it can make the host allocate is capped:
//! [`MAX_METRICS_PER_PLUGIN`], [`MAX_LABELS`] and [`MAX_NAME_BYTES`]. A call past a cap is
//! counted in `wasp_plugin_metric_rejected_total` and otherwise ignored.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::HostState;
use crate::wasm::bindings::metrics::Host;

pub const MAX_METRICS_PER_PLUGIN: usize = 64;
pub const MAX_LABELS: usize = 8;
pub const MAX_NAME_BYTES: usize = 128;

type Labels = Vec<(String, String)>;

#[derive(Clone)]
enum Metric {
    Counter(Family<Labels, Counter>),
    Gauge(Family<Labels, Gauge<f64, AtomicU64>>),
    Histogram(Family<Labels, Histogram, fn() -> Histogram>),
}

fn new_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 4.0, 12))
}

struct Inner {
    registry: Registry,
    metrics: HashMap<String, Metric>,
    per_plugin: HashMap<String, usize>,
    rejected: Counter,
    late: Family<Labels, Counter>,
}

/// The process-wide registry.
#[derive(Clone)]
pub struct MetricsRegistry {
    inner: Arc<Mutex<Inner>>,
}

impl Default for MetricsRegistry {
    fn default() -> Self {
        let mut registry = Registry::default();
        let rejected = Counter::default();
        registry.register(
            "wasp_plugin_metric_rejected",
            "Plugin metric calls ignored because they passed a cap",
            rejected.clone(),
        );
        let late = Family::<Labels, Counter>::default();
        registry.register(
            "wasp_late_records",
            "Records dropped by a windowed step because every window they belong to had closed",
            late.clone(),
        );
        Self {
            inner: Arc::new(Mutex::new(Inner {
                registry,
                metrics: HashMap::new(),
                per_plugin: HashMap::new(),
                rejected,
                late,
            })),
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

impl std::fmt::Debug for MetricsRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsRegistry")
    }
}

impl MetricsRegistry {
    /// Counts records a windowed step dropped as late (`wasp_late_records_total{step}`).
    pub fn late_records(&self, step: &str, n: u64) {
        if let Ok(inner) = self.inner.lock() {
            inner.late.get_or_create(&vec![("step".to_owned(), step.to_owned())]).inc_by(n);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(inner) = self.inner.lock() {
            let _ = encode(&mut out, &inner.registry);
        }
        out
    }

    /// The metric `name` of `kind` for `plugin`, registering it on first use.
    fn metric(&self, plugin: &str, name: &str, kind: &str) -> Option<Metric> {
        let mut inner = self.inner.lock().ok()?;
        let base = name.strip_suffix("_total").unwrap_or(name);
        if !valid_name(base) {
            inner.rejected.inc();
            return None;
        }
        let full = format!("wasp_plugin_{base}");
        if let Some(m) = inner.metrics.get(&full) {
            let same = matches!(
                (m, kind),
                (Metric::Counter(_), "counter") | (Metric::Gauge(_), "gauge") | (Metric::Histogram(_), "histogram")
            );
            if same {
                return Some(m.clone());
            }
            inner.rejected.inc();
            return None;
        }
        let count = inner.per_plugin.entry(plugin.to_owned()).or_default();
        if *count >= MAX_METRICS_PER_PLUGIN {
            inner.rejected.inc();
            return None;
        }
        *count += 1;
        let help = format!("Defined by plugin {plugin}");
        let metric = match kind {
            "counter" => Metric::Counter(Family::default()),
            "gauge" => Metric::Gauge(Family::default()),
            _ => Metric::Histogram(Family::new_with_constructor(new_histogram as fn() -> Histogram)),
        };
        match &metric {
            Metric::Counter(f) => inner.registry.register(full.clone(), help, f.clone()),
            Metric::Gauge(f) => inner.registry.register(full.clone(), help, f.clone()),
            Metric::Histogram(f) => inner.registry.register(full.clone(), help, f.clone()),
        }
        inner.metrics.insert(full, metric.clone());
        Some(metric)
    }

    fn labels(&self, plugin: &str, labels: Labels) -> Option<Labels> {
        if labels.len() > MAX_LABELS
            || labels.iter().any(|(k, v)| !valid_name(k) || v.len() > MAX_NAME_BYTES || k == "plugin")
        {
            if let Ok(inner) = self.inner.lock() {
                inner.rejected.inc();
            }
            return None;
        }
        let mut all = Vec::with_capacity(labels.len() + 1);
        all.push(("plugin".to_owned(), plugin.to_owned()));
        all.extend(labels);
        Some(all)
    }
}

/// One plugin's handle on the registry.
#[derive(Clone)]
pub struct PluginMetrics {
    pub registry: MetricsRegistry,
}

impl Host for HostState {
    fn counter_add(&mut self, name: String, labels: Labels, delta: u64) {
        let r = &self.metrics.registry;
        if let (Some(Metric::Counter(f)), Some(l)) =
            (r.metric(&self.plugin, &name, "counter"), r.labels(&self.plugin, labels))
        {
            f.get_or_create(&l).inc_by(delta);
        }
    }

    fn gauge_set(&mut self, name: String, labels: Labels, value: f64) {
        let r = &self.metrics.registry;
        if let (Some(Metric::Gauge(f)), Some(l)) =
            (r.metric(&self.plugin, &name, "gauge"), r.labels(&self.plugin, labels))
        {
            f.get_or_create(&l).set(value);
        }
    }

    fn histogram_observe(&mut self, name: String, labels: Labels, value: f64) {
        let r = &self.metrics.registry;
        if let (Some(Metric::Histogram(f)), Some(l)) =
            (r.metric(&self.plugin, &name, "histogram"), r.labels(&self.plugin, labels))
        {
            f.get_or_create(&l).observe(value);
        }
    }
}
