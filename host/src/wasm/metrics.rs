//! The process-wide Prometheus registry: the built-in metrics (steps, swaps, lag, late
//! records) and the plugins' own (`wasp:plugin/metrics`, served in `host/metrics.rs`).
//!
//! A guest chooses names and labels, so everything it can make the host allocate is capped:
//! [`MAX_METRICS_PER_PLUGIN`], [`MAX_LABELS`], [`MAX_NAME_BYTES`] and, per metric, the label
//! sets it may create ([`MAX_SERIES_PER_METRIC`]). A call past a cap is counted in
//! `wasp_plugin_metric_rejected_total` and otherwise ignored.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub const MAX_METRICS_PER_PLUGIN: usize = 64;
pub const MAX_LABELS: usize = 8;
pub const MAX_NAME_BYTES: usize = 128;
/// The label sets (series) one plugin metric may have: label values chosen per record (a user
/// id) would otherwise grow the registry without end.
pub const MAX_SERIES_PER_METRIC: usize = 256;

pub(crate) type Labels = Vec<(String, String)>;

#[derive(Clone)]
pub(crate) enum Metric {
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
    /// The label sets each plugin metric has, by hash of plugin and labels (see
    /// [`MAX_SERIES_PER_METRIC`]).
    series: HashMap<String, HashSet<u64>>,
    rejected: Counter,
    /// Plugin log lines cut to the line cap, and dropped over the rate cap (`wasm/host/log.rs`).
    log_truncated: Family<Labels, Counter>,
    log_dropped: Family<Labels, Counter>,
    late: Family<Labels, Counter>,
    builtin: Builtin,
}

type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// The metrics wasp keeps of itself, beside the plugins' own.
struct Builtin {
    records_in: Family<Labels, Counter>,
    records_out: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    batch_seconds: HistogramFamily,
    swaps: Family<Labels, Counter>,
    swap_pause: HistogramFamily,
    lag: Family<Labels, Gauge>,
}

fn latency_histogram() -> Histogram {
    // 10 µs to about 2.6 s.
    Histogram::new(exponential_buckets(1e-5, 4.0, 10))
}

fn pause_histogram() -> Histogram {
    // 10 µs to about 0.33 s.
    Histogram::new(exponential_buckets(1e-5, 2.0, 16))
}

impl Builtin {
    fn register(registry: &mut Registry) -> Self {
        let b = Self {
            records_in: Family::default(),
            records_out: Family::default(),
            errors: Family::default(),
            retries: Family::default(),
            batch_seconds: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            swaps: Family::default(),
            swap_pause: Family::new_with_constructor(pause_histogram as fn() -> Histogram),
            lag: Family::default(),
        };
        registry.register("wasp_step_records_in", "Records that reached a step", b.records_in.clone());
        registry.register("wasp_step_records_out", "Records a step passed on", b.records_out.clone());
        registry.register(
            "wasp_step_errors",
            "Records a step failed on (after retries), by the policy applied",
            b.errors.clone(),
        );
        registry.register("wasp_step_retries", "Records run again by on_error = \"retry\"", b.retries.clone());
        registry.register("wasp_step_batch_seconds", "Time a step took per batch", b.batch_seconds.clone());
        registry.register("wasp_plugin_swaps", "Plugin reloads, by result", b.swaps.clone());
        registry.register(
            "wasp_plugin_swap_pause_seconds",
            "How long a task paused at a batch boundary to switch to a new plugin version",
            b.swap_pause.clone(),
        );
        registry.register(
            "wasp_consumer_lag",
            "Records in a partition not yet read (high watermark minus position)",
            b.lag.clone(),
        );
        b
    }
}

/// A step's built-in metric handles, resolved once per task so the hot path only adds.
#[derive(Clone)]
pub struct StepMetrics {
    pub records_in: Counter,
    pub records_out: Counter,
    pub batch_seconds: Histogram,
    pub retries: Counter,
    errors: Family<Labels, Counter>,
    labels: Labels,
}

impl StepMetrics {
    /// Counts `n` records failed at the step, by the policy that was applied.
    pub fn failed(&self, policy: &str, n: u64) {
        let mut l = self.labels.clone();
        l.push(("policy".to_owned(), policy.to_owned()));
        self.errors.get_or_create(&l).inc_by(n);
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
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
        let log_truncated = Family::<Labels, Counter>::default();
        registry.register(
            "wasp_plugin_log_truncated",
            "Plugin log lines cut to the line cap (4 KiB)",
            log_truncated.clone(),
        );
        let log_dropped = Family::<Labels, Counter>::default();
        registry.register(
            "wasp_plugin_log_dropped",
            "Plugin log lines dropped over the rate cap (per instance and second)",
            log_dropped.clone(),
        );
        let builtin = Builtin::register(&mut registry);
        Self {
            inner: Arc::new(Mutex::new(Inner {
                registry,
                metrics: HashMap::new(),
                per_plugin: HashMap::new(),
                series: HashMap::new(),
                rejected,
                log_truncated,
                log_dropped,
                late,
                builtin,
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

    fn builtin<T>(&self, f: impl FnOnce(&Builtin) -> T) -> T {
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&inner.builtin)
    }

    /// The handles of one step's metrics (`{pipeline, step}`).
    pub fn step(&self, pipeline: &str, step: &str) -> StepMetrics {
        let l = labels(&[("pipeline", pipeline), ("step", step)]);
        self.builtin(|b| StepMetrics {
            records_in: b.records_in.get_or_create(&l).clone(),
            records_out: b.records_out.get_or_create(&l).clone(),
            batch_seconds: b.batch_seconds.get_or_create(&l).clone(),
            retries: b.retries.get_or_create(&l).clone(),
            errors: b.errors.clone(),
            labels: l,
        })
    }

    /// The counter of a plugin's swaps that ended with `result`.
    pub fn swaps(&self, plugin: &str, result: &str) -> Counter {
        self.builtin(|b| b.swaps.get_or_create(&labels(&[("plugin", plugin), ("result", result)])).clone())
    }

    /// The histogram of a plugin's swap pauses.
    pub fn swap_pause(&self, plugin: &str) -> Histogram {
        self.builtin(|b| b.swap_pause.get_or_create(&labels(&[("plugin", plugin)])).clone())
    }

    /// Sets the consumer lag of a partition.
    pub fn consumer_lag(&self, topic: &str, partition: i32, lag: i64) {
        let p = partition.to_string();
        self.builtin(|b| b.lag.get_or_create(&labels(&[("topic", topic), ("partition", &p)])).set(lag));
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(inner) = self.inner.lock() {
            let _ = encode(&mut out, &inner.registry);
        }
        out
    }

    /// Counts a call refused past a cap before it reached [`Self::series`].
    pub(crate) fn reject(&self) {
        if let Ok(inner) = self.inner.lock() {
            inner.rejected.inc();
        }
    }

    /// The series of metric `name` of `kind` that `plugin` writes with `labels`: the metric
    /// (registered on first use) and the full label set, or `None` past a cap (a bad or
    /// unknown-kind name, too many metrics, too many labels, too long a value, or a new label
    /// set of a metric that has [`MAX_SERIES_PER_METRIC`] already). One lock per call.
    pub(crate) fn series(&self, plugin: &str, name: &str, kind: &str, labels: Labels) -> Option<(Metric, Labels)> {
        let mut inner = self.inner.lock().ok()?;
        let base = name.strip_suffix("_total").unwrap_or(name);
        if !valid_name(base)
            || labels.len() > MAX_LABELS
            || labels.iter().any(|(k, v)| !valid_name(k) || v.len() > MAX_NAME_BYTES || k == "plugin")
        {
            inner.rejected.inc();
            return None;
        }
        let full = format!("wasp_plugin_{base}");
        let metric = match inner.metrics.get(&full) {
            Some(m) => {
                let same = matches!(
                    (m, kind),
                    (Metric::Counter(_), "counter") | (Metric::Gauge(_), "gauge") | (Metric::Histogram(_), "histogram")
                );
                if !same {
                    inner.rejected.inc();
                    return None;
                }
                m.clone()
            }
            None => {
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
                inner.metrics.insert(full.clone(), metric.clone());
                metric
            }
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (plugin, &labels).hash(&mut hasher);
        let hash = hasher.finish();
        let known = inner.series.entry(full).or_default();
        if !known.contains(&hash) {
            if known.len() >= MAX_SERIES_PER_METRIC {
                inner.rejected.inc();
                return None;
            }
            known.insert(hash);
        }
        let mut all = Vec::with_capacity(labels.len() + 1);
        all.push(("plugin".to_owned(), plugin.to_owned()));
        all.extend(labels);
        Some((metric, all))
    }

    /// Counts a plugin's log lines cut to the line cap (`dropped: false`) or dropped over the
    /// rate cap (`dropped: true`).
    pub(crate) fn log_capped(&self, plugin: &str, dropped: bool, n: u64) {
        if let Ok(inner) = self.inner.lock() {
            let family = if dropped { &inner.log_dropped } else { &inner.log_truncated };
            family.get_or_create(&labels(&[("plugin", plugin)])).inc_by(n);
        }
    }
}
