//! Every host allocation a guest can trigger has a named cap. The cap-probe plugin tries to
//! pass each one (log line length and rate, metric names and label sets, state key and value
//! size, writes pending before a commit, records forwarded per call, scan entries and bytes,
//! the bytes one call moves into the host); going over is a per-record error or an ignored
//! call, counted, never host memory growth.

use wasp_host::record::MAX_RECORDS_PER_CALL;
use wasp_host::wasm::MAX_TRANSFER_BYTES;
use wasp_host::wasm::host::log::MAX_LOG_LINES_PER_SECOND;
use wasp_host::wasm::host::state::{
    MAX_PENDING_STATE_BYTES, MAX_SCAN, MAX_SCAN_BYTES, MAX_STATE_KEY_BYTES, MAX_STATE_VALUE_BYTES,
};
use wasp_host::wasm::metrics::{MAX_METRICS_PER_PLUGIN, MAX_SERIES_PER_METRIC};

use crate::common::{Scratch, cache_dir, header, input, plugin, run_local_full, wait_for};

const PROBES: [&str; 11] = [
    "state-key",
    "state-value",
    "state-huge-value",
    "scan",
    "scan-bytes",
    "state-pending",
    "forward-many",
    "log-long",
    "log-flood",
    "metric-labels",
    "metric-names",
];

/// The value of a sample of `metrics` (the Prometheus text) whose line starts with `series`.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no sample `{series}` in:\n{metrics}"))
}

/// The manifest of the probe pipeline: `in` through the cap-probe processor (with store `s`)
/// to `out`, failures to `dlq`.
fn probe_manifest() -> String {
    header(&format!(
        "[plugins.probe]\npath = \"{}\"\nlimits = {{ memory_mib = 256, deadline_ms = 20000 }}\n\
         [stores.s]\nkind = \"key_value\"\n",
        plugin("cap-probe")
    ))
    .replace("batch_size = 3", "batch_size = 1")
        + "[pipelines.p]\nfrom = \"in\"\nto = \"out\"\non_error = \"dead-letter\"\ndead_letter_topic = \"dlq\"\n\
           [[pipelines.p.steps]]\nop = \"process\"\nplugin = \"probe\"\nstores = [\"s\"]\n"
}

/// A batch whose result is more than its plugin may move into the host in one call
/// (`limits.transfer_mib`) traps, and is split and run again in halves as any batch that
/// traps, down to one record: every record of a batch of eight 300 KB values is mapped under a
/// 1 MiB cap, in order, and only a record whose own result is past the cap fails, naming it.
#[test]
fn a_batch_whose_result_is_past_the_transfer_cap_is_run_in_halves_and_only_the_oversized_record_fails() {
    let sc = Scratch::new();
    let value = |c: char, n: usize| c.to_string().repeat(n);
    let mut records: Vec<(String, String)> = (0..8).map(|i| (format!("k{i}"), value('a', 300_000))).collect();
    records.insert(4, ("big".to_owned(), value('b', 1_500_000)));
    let refs: Vec<(Option<&str>, &str)> = records.iter().map(|(k, v)| (Some(k.as_str()), v.as_str())).collect();
    input(&sc, &refs);
    let manifest =
        header(&format!("[plugins.upper]\npath = \"{}\"\nlimits = {{ transfer_mib = 1 }}\n", plugin("test-kit")))
            .replace("batch_size = 3", "batch_size = 16\nmax_record_bytes = 4194304")
            + "[pipelines.p]\nfrom = \"in\"\nto = \"out\"\non_error = \"dead-letter\"\ndead_letter_topic = \"dlq\"\n\
           [[pipelines.p.steps]]\nop = \"map_values\"\nplugin = \"upper\"\nfunction = \"upper\"\n";
    let run = run_local_full(&sc, &manifest, &["out", "dlq"]).expect("the pipeline runs");
    let out: Vec<(String, String)> = run.out["out"].iter().map(|o| o.kv()).collect();
    let keys: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"], "every small record, in order");
    assert!(out.iter().all(|(_, v)| *v == value('A', 300_000)), "each one upper-cased");
    let dlq = &run.out["dlq"];
    assert_eq!(dlq.iter().map(|o| o.kv().0).collect::<Vec<_>>(), ["big"]);
    let message = dlq[0].headers["wasp.error.message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("more than 1 MiB") && message.contains("limits.transfer_mib"), "{message}");
}

/// The canonical ABI lets a list's elements all name one string: 2,048 metric labels that
/// each point at one 1 MiB string are 32 KiB in the guest and would be 4 GiB copied into the
/// host. The host reads a call's labels where the guest keeps them, refuses the call as past
/// `MAX_LABELS` before copying anything, and goes on: `wasp run`'s peak memory (VmHWM, read
/// from /proc while it follows its input) stays far below one copy of the labels.
#[test]
fn a_guest_that_names_one_large_string_in_thousands_of_labels_makes_the_host_copy_none() {
    let sc = Scratch::new();
    input(&sc, &[(Some("metric-aliased-labels"), "metric-aliased-labels"), (Some("after"), "metric-names")]);
    let path = sc.write("pipeline.toml", &probe_manifest());
    let out = sc.path("out.jsonl");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wasp"));
    command
        .env("WASP_CACHE_DIR", cache_dir())
        .args(["run", "--follow", "--state-dir"])
        .arg(sc.path("state"))
        .arg("--output")
        .arg(format!("out={}", out.display()))
        .arg(&path);
    let wasp = crate::broker::Process::spawn("wasp-aliased-labels", command);
    let peak_mib = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", wasp.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib >> 10)
    };
    let answers = || std::fs::read_to_string(&out).unwrap_or_default();
    wait_for("both probes' answers", std::time::Duration::from_secs(120), || {
        let peak = peak_mib();
        assert!(peak < 1024, "wasp's peak resident memory reached {peak} MiB: the aliased labels are being copied");
        answers().lines().count() == 2
    });
    let peak = peak_mib();
    eprintln!("peak resident memory: {peak} MiB");
    let answers = answers();
    assert!(answers.contains("\"metric-aliased-labels\"") && answers.contains("counted"), "{answers}");
    assert!(peak < 1024, "wasp's peak resident memory is {peak} MiB: the aliased labels were copied");
}

#[test]
fn a_guest_that_tries_every_cap_gets_errors_or_ignored_calls_never_host_memory() {
    let sc = Scratch::new();
    let records: Vec<(Option<&str>, &str)> = PROBES.iter().map(|p| (Some(*p), *p)).collect();
    input(&sc, &records);
    let run = run_local_full(&sc, &probe_manifest(), &["out", "dlq"]).expect("the probe pipeline runs");
    let out: std::collections::BTreeMap<String, String> = run.out["out"].iter().map(|o| o.kv()).collect();
    let answer = |probe: &str| out.get(probe).cloned().unwrap_or_else(|| panic!("no answer to {probe}: {out:?}"));

    // State: keys and values past their caps are refused by name; writes pending before a
    // commit stop at their cap; scans end at their entry and byte caps.
    let key = answer("state-key");
    assert!(key.starts_with("refused") && key.contains("MAX_STATE_KEY_BYTES"), "{key}");
    assert!(key.contains(&MAX_STATE_KEY_BYTES.to_string()), "{key}");
    let value = answer("state-value");
    assert!(value.starts_with("refused") && value.contains("MAX_STATE_VALUE_BYTES"), "{value}");
    assert!(value.contains(&MAX_STATE_VALUE_BYTES.to_string()), "{value}");
    let pending = answer("state-pending");
    let stored: usize = pending
        .strip_prefix("stored ")
        .and_then(|p| p.split(',').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{pending}"));
    assert!(stored < MAX_PENDING_STATE_BYTES >> 20, "at most the cap in 1 MiB values: {pending}");
    assert!(stored > 8, "a few dozen 1 MiB values fit: {pending}");
    assert!(pending.contains("MAX_PENDING_STATE_BYTES"), "{pending}");
    assert_eq!(answer("scan"), format!("scan returned {MAX_SCAN}"));
    let scanned: usize = answer("scan-bytes").trim_start_matches("scan returned ").parse().expect("a count");
    assert_eq!(scanned, MAX_SCAN_BYTES >> 20, "1 MiB entries up to {MAX_SCAN_BYTES} bytes");

    // Too many records from one call: its input record is dead-lettered, naming the cap; the
    // other probes' records all came through.
    let dlq = &run.out["dlq"];
    assert_eq!(dlq.iter().map(|o| o.kv().0).collect::<Vec<_>>(), ["state-huge-value", "forward-many"], "{dlq:?}");
    let message = |i: usize| dlq[i].headers["wasp.error.message"].as_str().unwrap_or_default().to_owned();
    assert!(
        message(1).contains("MAX_RECORDS_PER_CALL") && message(1).contains(&MAX_RECORDS_PER_CALL.to_string()),
        "{}",
        message(1)
    );
    // A value larger than one call may move into the host: the call traps before the host
    // holds it (wasmtime's hostcall fuel, set to the named cap), and the record is dead-lettered.
    assert!(
        message(0).contains("MAX_TRANSFER_BYTES") && message(0).contains(&(MAX_TRANSFER_BYTES >> 20).to_string()),
        "{}",
        message(0)
    );
    assert_eq!(out.len(), PROBES.len() - 2, "{out:?}");

    // Logs and metrics: cut (to MAX_LOG_LINE_BYTES), dropped and rejected calls are counted.
    let metrics = run.prepared.runtime.metrics().encode();
    assert_eq!(sample(&metrics, "wasp_plugin_log_truncated_total{plugin=\"probe\"}"), 1.0);
    let dropped = sample(&metrics, "wasp_plugin_log_dropped_total{plugin=\"probe\"}");
    assert!(dropped >= f64::from(5_000 - MAX_LOG_LINES_PER_SECOND), "{dropped} of 5000 lines dropped");
    let series = metrics.lines().filter(|l| l.starts_with("wasp_plugin_probe_users_total{")).count();
    assert_eq!(series, MAX_SERIES_PER_METRIC, "label sets of one metric");
    let names = metrics.lines().filter(|l| l.starts_with("# TYPE wasp_plugin_probe_")).count();
    assert_eq!(names, MAX_METRICS_PER_PLUGIN, "metrics of one plugin");
    let rejected = sample(&metrics, "wasp_plugin_metric_rejected_total");
    let expected = (5_000 - MAX_SERIES_PER_METRIC) + (200 - (MAX_METRICS_PER_PLUGIN - 1));
    assert_eq!(rejected, expected as f64, "every call past a metric cap is counted");
}

#[test]
fn an_aggregate_over_the_state_value_cap_fails_its_record_and_the_key_keeps_the_last_one() {
    // The kit's reducer concatenates `aggregate+value`: two values of 60 % of the cap make an
    // aggregate past it, which the store does not keep (it could not ride the changelog). The
    // record that made it is dead-lettered (`state`), and so is the next one of the key in the
    // same call (three records per call here), which the plugin folded on from it; the next
    // call folds on from what the key held.
    let sc = Scratch::new();
    let big = "x".repeat(MAX_STATE_VALUE_BYTES * 6 / 10);
    input(&sc, &[(Some("k"), big.as_str()), (Some("k"), big.as_str()), (Some("k"), "y"), (Some("k"), "z")]);
    let manifest = header("")
        + "[pipelines.p]\nfrom = \"in\"\nto = \"out\"\non_error = \"dead-letter\"\n\
           steps = [{ op = \"group_by_key\" }, { op = \"reduce\", plugin = \"kit\" }]\n";
    let run = run_local_full(&sc, &manifest, &["out", "t-dlq"]).expect("the run ends");
    let out: Vec<String> = run.out["out"].iter().map(|o| o.kv().1).collect();
    assert_eq!(out, [big.clone(), format!("{big}+z")]);
    let dlq: Vec<(String, String)> = run.out["t-dlq"]
        .iter()
        .map(|d| {
            let text = |h: &str| d.headers[h].as_str().unwrap_or_default().to_owned();
            (text("wasp.error.code"), text("wasp.error.message"))
        })
        .collect();
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    assert!(dlq.iter().all(|(code, _)| code == "state"), "{dlq:?}");
    assert!(dlq[0].1.contains("MAX_STATE_VALUE_BYTES"), "{dlq:?}");
    assert!(dlq[1].1.contains("after a result of its key that the store did not keep"), "{dlq:?}");
}
