//! The admin endpoint of a running `wasp` (the binary, in local mode with `--follow`): health,
//! readiness, metrics (built-in and plugin-defined), plugin versions, and reloads guarded by the
//! token.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::broker::Process;
use crate::common::{Scratch, cache_dir, plugin};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Where a running wasp's admin endpoint listens, from its log.
pub fn admin_address(p: &mut Process) -> String {
    let marker = "admin endpoint listening on http://";
    p.wait_logged(marker, TIMEOUT);
    let line = p.log_lines().into_iter().find(|l| l.contains(marker)).expect("logged");
    let rest = &line[line.find(marker).expect("marker") + marker.len()..];
    rest.split_whitespace().next().expect("an address").trim_end_matches(['"', ',']).to_owned()
}

/// `(status, body)` of a request; errors are statuses, not failures.
pub fn http(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let response = match method {
        "GET" => agent.get(url).call(),
        _ => {
            let mut r = agent.post(url).header("Content-Type", "application/json");
            if let Some(t) = token {
                r = r.header("Authorization", &format!("Bearer {t}"));
            }
            r.send(body.unwrap_or(""))
        }
    };
    let mut response = response.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap_or_default())
}

/// Waits until `GET url` answers 200 with a body for which `ok` holds.
pub fn wait_http(url: &str, what: &str, mut ok: impl FnMut(&str) -> bool) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (status, body) = http("GET", url, None, None);
        if status == 200 && ok(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}: last answer {status}: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn manifest(token: Option<&str>) -> String {
    let token = token.map(|t| format!("token = \"{t}\"\n")).unwrap_or_default();
    format!(
        r#"version = 1
[application]
id = "admin"
batch_size = 2
commit_interval_ms = 50
[application.admin]
bind = "127.0.0.1:0"
{token}
[streams.in]
file = "in.jsonl"
file_format = "jsonl"
[plugins.kit]
path = "{kit}"
[pipelines.p]
from = "in"
to = "out"
[[pipelines.p.steps]]
op = "peek"
plugin = "kit"
[[pipelines.p.steps]]
op = "map_values"
plugin = "kit"
"#,
        kit = plugin("test-kit")
    )
}

fn start(sc: &Scratch, manifest: &str) -> (Process, String, std::path::PathBuf) {
    let lines: Vec<String> =
        (0..3).map(|i| serde_json::json!({"key": i.to_string(), "value": format!("v{i}")}).to_string()).collect();
    sc.write("in.jsonl", &(lines.join("\n") + "\n"));
    let path = sc.write("admin.toml", manifest);
    let mut c = Command::new(env!("CARGO_BIN_EXE_wasp"));
    c.arg("run")
        .arg(&path)
        .arg("--follow")
        .arg("--output")
        .arg(format!("out={}", sc.path("out.jsonl").display()))
        .arg("--state-dir")
        .arg(sc.path("state"))
        .env("WASP_CACHE_DIR", cache_dir())
        .env_remove("WASP_ADMIN_TOKEN");
    let mut p = Process::spawn("wasp-admin", c);
    let addr = admin_address(&mut p);
    (p, format!("http://{addr}"), path)
}

fn wasp_reload(manifest: &Path, base: &str, plugin_name: &str, new: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wasp"))
        .args(["reload"])
        .arg(manifest)
        .arg(plugin_name)
        .arg("--path")
        .arg(new)
        .arg("--admin")
        .arg(base)
        .env_remove("WASP_ADMIN_TOKEN")
        .output()
        .expect("running wasp reload")
}

#[test]
fn the_admin_endpoint_serves_health_metrics_plugins_and_guards_reloads_with_the_token() {
    let sc = Scratch::new();
    let (mut p, base, manifest) = start(&sc, &manifest(Some("t0ken")));
    assert_eq!(http("GET", &format!("{base}/health"), None, None).0, 200);
    wait_http(&format!("{base}/ready"), "ready", |_| true);
    // The peek step's plugin counts what it sees in a counter it defines, from inside Wasm.
    let metrics = wait_http(&format!("{base}/metrics"), "the plugin's counter", |m| {
        m.contains(r#"wasp_plugin_seen_total{plugin="kit",source="test-kit"} 3"#)
    });
    assert!(metrics.contains(r#"wasp_step_records_in_total{pipeline="p",step="p-1-map_values"} 3"#), "{metrics}");
    assert!(metrics.contains(r#"wasp_step_batch_seconds_count{pipeline="p",step="p-1-map_values"}"#), "{metrics}");
    let (status, plugins) = http("GET", &format!("{base}/plugins"), None, None);
    assert_eq!(status, 200);
    let plugins: serde_json::Value = serde_json::from_str(&plugins).expect("JSON");
    assert_eq!(plugins[0]["name"], "kit");
    assert_eq!(plugins[0]["digest"].as_str().map(str::len), Some(64), "{plugins}");
    assert!(plugins[0]["loaded_at_ms"].as_u64().is_some_and(|t| t > 0), "{plugins}");

    let reload = format!("{base}/plugins/kit/reload");
    let (status, body) = http("POST", &reload, None, None);
    assert_eq!(status, 401, "{body}");
    let (status, body) = http("POST", &reload, Some("guess"), None);
    assert_eq!(status, 403, "{body}");
    let (status, body) = http("POST", &reload, Some("t0ken"), Some("{}"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"unchanged\""), "the same file: {body}");
    let (status, body) = http("POST", &format!("{base}/plugins/nope/reload"), Some("t0ken"), None);
    assert_eq!(status, 404, "{body}");

    // `wasp reload` takes the token from the manifest. bot-filter lacks the kinds kit is used
    // as (value-mapper, for-each): refused, and the command says why.
    let out = wasp_reload(&manifest, &base, "kit", &plugin("bot-filter"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused") && stderr.contains("does not export the `value-mapper` kind"), "{stderr}");
    let (_, plugins) = http("GET", &format!("{base}/plugins"), None, None);
    assert!(plugins.contains("\"rejected\""), "{plugins}");

    // A new version of kit (the same component with a custom section: another digest).
    let v2 = crate::swap::same_component(&sc.path("kit-v2.wasm"), "test-kit");
    let out = wasp_reload(&manifest, &base, "kit", &v2.display().to_string());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("validated"), "{stdout}");
    // It becomes active with the next batch.
    let line = serde_json::json!({"key": "9", "value": "v9"}).to_string();
    let mut input = std::fs::OpenOptions::new().append(true).open(sc.path("in.jsonl")).expect("open the input");
    std::io::Write::write_all(&mut input, format!("{line}\n").as_bytes()).expect("append");
    wait_http(&format!("{base}/plugins"), "the swap to v2", |b| {
        serde_json::from_str::<serde_json::Value>(b).is_ok_and(|v| v[0]["last_swap"]["result"] == "active")
    });

    p.terminate();
    assert!(p.wait_exit(TIMEOUT).success());
}

#[test]
fn without_a_token_the_endpoint_refuses_every_reload() {
    let sc = Scratch::new();
    let (mut p, base, manifest) = start(&sc, &manifest(None));
    let (status, body) = http("POST", &format!("{base}/plugins/kit/reload"), Some("anything"), None);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("reloads are disabled"), "{body}");
    let out = wasp_reload(&manifest, &base, "kit", &plugin("test-kit"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no admin token"));
    p.terminate();
    assert!(p.wait_exit(TIMEOUT).success());
}

#[test]
fn an_admin_address_that_cannot_be_bound_names_the_file_line_and_key() {
    let sc = Scratch::new();
    sc.write("in.jsonl", "{\"key\": \"1\", \"value\": \"v\"}\n");
    let text = manifest(Some("t0ken")).replace("bind = \"127.0.0.1:0\"", "bind = \"not-an-address\"");
    let e = crate::common::run_local(&sc, &text, &["out"]).expect_err("the run fails");
    let e = format!("{e:#}");
    assert!(e.contains("pipeline.toml:7:8: `application.admin.bind`"), "{e}");
    assert!(e.contains("cannot listen on `not-an-address`"), "{e}");
}

/// Interactive queries: a table's store read through the endpoint while the pipeline runs (a
/// key, a prefix, a range, a key it does not have, a store it does not have), a count's store,
/// and a row appended to the table's file read back once processed.
#[test]
fn a_tables_store_answers_key_prefix_and_range_queries_while_the_pipeline_runs() {
    let sc = Scratch::new();
    let rows = [("u1", "alice"), ("u2", "bob"), ("v1", "vera"), ("u1", "alicia")];
    let lines: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, (k, v))| serde_json::json!({"key": k, "value": v, "timestamp": i}).to_string())
        .collect();
    sc.write("users.jsonl", &(lines.join("\n") + "\n"));
    let manifest = r#"version = 1
[application]
id = "iq"
commit_interval_ms = 50
[application.admin]
bind = "127.0.0.1:0"
[tables.users]
file = "users.jsonl"
file_format = "jsonl"
[pipelines.p]
from = "users"
steps = [{ op = "to_stream" }]
to = "out"
[pipelines.q]
from = "out"
steps = [{ op = "group_by_key" }, { op = "count", store = "updates" }, { op = "to_stream" }]
to = "counts"
"#;
    let path = sc.write("iq.toml", manifest);
    let mut c = Command::new(env!("CARGO_BIN_EXE_wasp"));
    c.arg("run").arg(&path).arg("--follow").arg("--state-dir").arg(sc.path("state")).env("WASP_CACHE_DIR", cache_dir());
    let mut p = Process::spawn("wasp-iq", c);
    let base = format!("http://{}", admin_address(&mut p));
    let key = wait_http(&format!("{base}/stores/users-store/keys/u1"), "u1", |b| b.contains("alicia"));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&key).expect("JSON"),
        serde_json::json!({"key": "u1", "value": "alicia"})
    );
    let json = |url: &str| serde_json::from_str::<serde_json::Value>(&http("GET", url, None, None).1).expect("JSON");
    assert_eq!(
        json(&format!("{base}/stores/users-store?prefix=u")),
        serde_json::json!([{"key": "u1", "value": "alicia"}, {"key": "u2", "value": "bob"}])
    );
    assert_eq!(
        json(&format!("{base}/stores/users-store?from=u2&to=v2&limit=5")),
        serde_json::json!([{"key": "u2", "value": "bob"}, {"key": "v1", "value": "vera"}])
    );
    assert_eq!(http("GET", &format!("{base}/stores/users-store/keys/nobody"), None, None).0, 404);
    // A count's store: each user's updates so far.
    let counts = wait_http(&format!("{base}/stores/updates?prefix=u"), "counts", |b| b.contains("\"u2\""));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&counts).expect("JSON"),
        serde_json::json!([{"key": "u1", "value": "2"}, {"key": "u2", "value": "1"}])
    );
    let (status, body) = http("GET", &format!("{base}/stores/no-such-store/keys/u1"), None, None);
    assert!(status == 404 && body.contains("no queryable store `no-such-store`"), "{status}: {body}");
    // A row appended to the file (tailed) is in the store once processed.
    let more = serde_json::json!({"key": "u3", "value": "cid", "timestamp": 10}).to_string();
    std::fs::write(sc.path("users.jsonl"), lines.join("\n") + "\n" + &more + "\n").expect("append");
    wait_http(&format!("{base}/stores/users-store/keys/u3"), "u3", |b| b.contains("cid"));
    p.kill();
}

/// Interactive queries of window and session stores: a key's windows in a time range, each
/// with its bounds (Kafka Streams' `WindowStore.fetch` and `SessionStore.findSessions`); a
/// key query on a window store, or a windows query on a key-value one, says what to ask.
#[test]
fn window_and_session_stores_answer_a_keys_windows_in_a_time_range() {
    let sc = Scratch::new();
    let clicks = [("a", 1), ("a", 4), ("a", 12), ("b", 5), ("a", 40), ("a", 45)];
    let lines: Vec<String> =
        clicks.iter().map(|(k, t)| serde_json::json!({"key": k, "value": "x", "timestamp": t}).to_string()).collect();
    sc.write("clicks.jsonl", &(lines.join("\n") + "\n"));
    let manifest = r#"version = 1
[application]
id = "iqw"
commit_interval_ms = 50
[application.admin]
bind = "127.0.0.1:0"
[streams.clicks]
file = "clicks.jsonl"
file_format = "jsonl"
[pipelines.tumbling]
from = "clicks"
steps = [{ op = "group_by_key" }, { op = "windowed_by", window = { type = "tumbling", size = 10, grace = 1000 } }, { op = "count", store = "per-ten" }, { op = "to_stream" }]
to = "tumbling-out"
[pipelines.sessions]
from = "clicks"
steps = [{ op = "group_by_key" }, { op = "windowed_by", window = { type = "session", gap = 5, grace = 1000 } }, { op = "count", store = "visits" }, { op = "to_stream" }]
to = "session-out"
[pipelines.totals]
from = "clicks"
steps = [{ op = "group_by_key" }, { op = "count", store = "totals" }, { op = "to_stream" }]
to = "totals-out"
"#;
    let path = sc.write("iqw.toml", manifest);
    let mut c = Command::new(env!("CARGO_BIN_EXE_wasp"));
    c.arg("run").arg(&path).arg("--follow").arg("--state-dir").arg(sc.path("state")).env("WASP_CACHE_DIR", cache_dir());
    let mut p = Process::spawn("wasp-iqw", c);
    let base = format!("http://{}", admin_address(&mut p));
    let json = |body: &str| serde_json::from_str::<serde_json::Value>(body).expect("JSON");
    let all =
        wait_http(&format!("{base}/stores/per-ten/keys/a/windows"), "a's windows", |b| b.contains("\"start\":40"));
    let w = |start: i64, end: i64, value: &str| serde_json::json!({"key": "a", "window": {"start": start, "end": end}, "value": value});
    assert_eq!(json(&all), serde_json::json!([w(0, 10, "2"), w(10, 20, "1"), w(40, 50, "2")]));
    // Windows that start from 5 to 40, both included.
    let (status, some) = http("GET", &format!("{base}/stores/per-ten/keys/a/windows?from=5&to=40"), None, None);
    assert_eq!((status, json(&some)), (200, serde_json::json!([w(10, 20, "1"), w(40, 50, "2")])));
    // Sessions (gap 5): [1,4] merged, [12], [40,45]; those ending at 10 or later and starting
    // at 40 or earlier.
    let sessions = wait_http(&format!("{base}/stores/visits/keys/a/windows?from=10&to=40"), "a's sessions", |b| {
        b.contains("\"start\":40")
    });
    assert_eq!(json(&sessions), serde_json::json!([w(12, 12, "1"), w(40, 45, "2")]));
    let (status, b_windows) = http("GET", &format!("{base}/stores/per-ten/keys/b/windows"), None, None);
    assert_eq!(
        (status, json(&b_windows)),
        (200, serde_json::json!([{"key": "b", "window": {"start": 0, "end": 10}, "value": "1"}]))
    );
    // The wrong question for a store's kind says which to ask.
    let (status, body) = http("GET", &format!("{base}/stores/per-ten/keys/a"), None, None);
    assert!(status == 400 && body.contains("/stores/per-ten/keys/KEY/windows"), "{status}: {body}");
    let (status, body) = http("GET", &format!("{base}/stores/totals/keys/a/windows"), None, None);
    assert!(status == 400 && body.contains("key-value store"), "{status}: {body}");
    let (status, body) = http("GET", &format!("{base}/stores/per-ten/keys/a/windows?from=soon"), None, None);
    assert!(status == 400 && body.contains("`from` must be a time"), "{status}: {body}");
    assert_eq!(
        json(&http("GET", &format!("{base}/stores/totals/keys/a"), None, None).1),
        serde_json::json!({"key": "a", "value": "5"})
    );
    p.kill();
}

/// A versioned table answers for a key as of a time (Kafka Streams' `VersionedKeyQuery`):
/// the value valid then, nothing before its first version or after a tombstone; a table
/// without history refuses `as_of`.
#[test]
fn a_versioned_table_answers_a_key_as_of_a_time() {
    let sc = Scratch::new();
    let rows = [("u1", Some("alice"), 1), ("u1", Some("alicia"), 10), ("u1", Some("ally"), 6), ("u1", None, 20)];
    let lines: Vec<String> =
        rows.iter().map(|(k, v, t)| serde_json::json!({"key": k, "value": v, "timestamp": t}).to_string()).collect();
    sc.write("users.jsonl", &(lines.join("\n") + "\n"));
    sc.write("plain.jsonl", &(lines.join("\n") + "\n"));
    let manifest = r#"version = 1
[application]
id = "iqv"
commit_interval_ms = 50
[application.admin]
bind = "127.0.0.1:0"
[tables.users]
file = "users.jsonl"
file_format = "jsonl"
history_retention = "1h"
[tables.plain]
file = "plain.jsonl"
file_format = "jsonl"
[pipelines.p]
from = "users"
steps = [{ op = "to_stream" }]
to = "out"
[pipelines.q]
from = "plain"
steps = [{ op = "to_stream" }]
to = "plain-out"
"#;
    let path = sc.write("iqv.toml", manifest);
    let mut c = Command::new(env!("CARGO_BIN_EXE_wasp"));
    c.arg("run").arg(&path).arg("--follow").arg("--state-dir").arg(sc.path("state")).env("WASP_CACHE_DIR", cache_dir());
    let mut p = Process::spawn("wasp-iqv", c);
    let base = format!("http://{}", admin_address(&mut p));
    // Once the tombstone is in, the current value is gone; the history is not.
    let deadline = Instant::now() + TIMEOUT;
    while http("GET", &format!("{base}/stores/users-store/keys/u1?as_of=100"), None, None).0 != 404 {
        assert!(Instant::now() < deadline, "the tombstone never arrived");
        std::thread::sleep(Duration::from_millis(100));
    }
    let at = |t: i64| http("GET", &format!("{base}/stores/users-store/keys/u1?as_of={t}"), None, None);
    for (t, name) in [(1, "alice"), (5, "alice"), (6, "ally"), (9, "ally"), (10, "alicia"), (19, "alicia")] {
        let (status, body) = at(t);
        assert_eq!(status, 200, "as of {t}: {body}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).expect("JSON"),
            serde_json::json!({"key": "u1", "value": name}),
            "as of {t}"
        );
    }
    assert_eq!(at(0).0, 404, "before its first version");
    assert_eq!(http("GET", &format!("{base}/stores/users-store/keys/u1"), None, None).0, 404, "deleted now");
    let (status, body) = http("GET", &format!("{base}/stores/plain-store/keys/u1?as_of=5"), None, None);
    assert!(status == 400 && body.contains("keeps no history"), "{status}: {body}");
    p.kill();
}
