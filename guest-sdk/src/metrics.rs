//! Metrics kept in the host's registry (Prometheus names: letters, digits and `_`).

use crate::host_bindings::wasp::plugin::metrics as host;

fn owned(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// Adds `delta` to the counter `name`.
pub fn counter_add(name: &str, labels: &[(&str, &str)], delta: u64) {
    host::counter_add(name, &owned(labels), delta);
}

/// Sets the gauge `name`.
pub fn gauge_set(name: &str, labels: &[(&str, &str)], value: f64) {
    host::gauge_set(name, &owned(labels), value);
}

/// Records one observation in the histogram `name`.
pub fn histogram_observe(name: &str, labels: &[(&str, &str)], value: f64) {
    host::histogram_observe(name, &owned(labels), value);
}
