//! The admin HTTP endpoint (axum, on its own thread with a small tokio runtime; the batch loop
//! never waits for it):
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the dashboard: the topology drawn, live rates, plugin versions and swaps, reloads ([`dashboard`]) |
//! | `GET /api/stats` | the counters the dashboard graphs, as JSON ([`stats`]) |
//! | `GET /health` | 200 while the process is up |
//! | `GET /ready` | 200 once the batch loop runs, else 503 |
//! | `GET /metrics` | every metric, built-in and plugin-defined, in the Prometheus text format |
//! | `GET /plugins` | each plugin's running version (digest, load time), its last swap and its recent swaps (`history`) |
//! | `POST /plugins/{name}/reload` | loads a new version (body `{"path": "…"}`, optional); needs `Authorization: Bearer <token>` |
//! | `GET /stores/{store}/keys/{key}` | a key's value in a table's store (404 when absent; 503 `restoring` while stores restore); a key another instance hosts is redirected there (307, `Location`); `?as_of=T`: a versioned table's value at time `T` |
//! | `GET /stores/{store}?from=&to=` or `?prefix=` | a range or a prefix of it across this instance's tasks, in key order, `limit` at most (10,000) |
//! | `GET /stores/{store}/keys/{key}/windows?from=&to=` | a key's windows (or sessions) in a window (session) store, each with its bounds |
//! | `GET /stores/{store}/hosts/{key}` | which instance hosts the key: its partition, task and `application_server` |
//! | `GET /instances` | every instance of the application id, with its address and tasks |
//!
//! It binds 127.0.0.1 unless told otherwise. Mutations need the token from the manifest
//! (`[application.admin] token`) or `$WASP_ADMIN_TOKEN`; without one configured, every
//! mutation is refused.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::wasm::{MetricsRegistry, PluginDirectory, SwapError};

pub mod dashboard;
pub mod stats;

pub use dashboard::Dashboard;

/// Where the endpoint listens when the manifest names no address.
pub const DEFAULT_BIND: &str = "127.0.0.1:9464";

/// What the handlers see.
#[derive(Clone)]
pub struct AdminState {
    pub metrics: MetricsRegistry,
    pub plugins: Arc<PluginDirectory>,
    pub ready: Arc<AtomicBool>,
    /// The token mutations must carry; `None` refuses them all.
    pub token: Option<String>,
    /// Interactive queries of the tasks' stores.
    pub queries: crate::runtime::query::Queries,
    /// Which instance hosts which task.
    pub hosts: crate::runtime::hosts::Hosts,
    /// What the dashboard draws.
    pub dashboard: Arc<Dashboard>,
}

/// A running endpoint; dropping it stops the server.
pub struct AdminServer {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AdminServer {
    /// The address it listens on (the real port when the bind address asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds `bind` and serves the endpoint on a thread of its own.
pub fn start(bind: &str, state: AdminState) -> anyhow::Result<AdminServer> {
    let listener =
        std::net::TcpListener::bind(bind).with_context(|| format!("binding the admin endpoint to {bind}"))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("starting the admin endpoint's runtime")?;
    let app = router(state);
    let thread = std::thread::Builder::new().name("wasp-admin".into()).spawn(move || {
        runtime.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "admin endpoint cannot listen");
                    return;
                }
            };
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "admin endpoint stopped");
            }
        });
    })?;
    tracing::info!("admin endpoint listening on http://{addr}");
    Ok(AdminServer { addr, shutdown: Some(tx), thread: Some(thread) })
}

fn router(state: AdminState) -> axum::Router {
    axum::Router::new()
        .route("/", get(dashboard::page))
        .route("/dashboard.js", get(dashboard::script))
        .route("/api/stats", get(api_stats))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/plugins", get(plugins))
        .route("/plugins/{name}/reload", post(reload))
        .route("/stores/{store}", get(store_scan))
        .route("/stores/{store}/keys/{key}", get(store_key))
        .route("/stores/{store}/keys/{key}/windows", get(store_windows))
        .route("/stores/{store}/hosts/{key}", get(store_host))
        .route("/instances", get(instances))
        .with_state(state)
}

async fn ready(State(s): State<AdminState>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

async fn metrics(State(s): State<AdminState>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.encode())
        .into_response()
}

/// The dashboard's counters, read now.
fn current_stats(s: &AdminState) -> stats::Stats {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    stats::read(&s.metrics.encode(), now)
}

async fn api_stats(State(s): State<AdminState>) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(current_stats(&s))).into_response()
}

/// The most entries a scan returns, whatever `limit` asks.
const MAX_QUERY_ROWS: usize = 10_000;

/// Entries as JSON: `[{"key": …, "value": …}]` (text where it is UTF-8, else lossy), with
/// `"window": {"start": …, "end": …}` for a window or session store's.
fn rows_json(rows: &[crate::runtime::query::QueryRow]) -> serde_json::Value {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    serde_json::Value::Array(
        rows.iter()
            .map(|r| match r.window {
                Some(w) => serde_json::json!({
                    "key": text(&r.key), "window": {"start": w.start, "end": w.end}, "value": text(&r.value),
                }),
                None => serde_json::json!({"key": text(&r.key), "value": text(&r.value)}),
            })
            .collect(),
    )
}

/// Runs a query on a blocking thread (the stream threads answer between batches).
async fn query(
    s: AdminState,
    store: String,
    q: crate::runtime::query::StoreQuery,
    limit: usize,
    one: bool,
) -> Response {
    use crate::runtime::query::QueryAnswer;
    let asked = store.clone();
    let answer = tokio::task::spawn_blocking(move || s.queries.ask(&store, q, limit)).await;
    match answer {
        Ok(Ok(QueryAnswer::Rows(rows))) if one => match rows.first() {
            Some(_) => Json(rows_json(&rows[..1])[0].clone()).into_response(),
            None => (StatusCode::NOT_FOUND, Json(serde_json::json!({"error": "no such key"}))).into_response(),
        },
        Ok(Ok(QueryAnswer::Rows(rows))) => Json(rows_json(&rows)).into_response(),
        Ok(Ok(QueryAnswer::NoSuchStore)) => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": format!("no queryable store `{asked}` in this instance's tasks")})),
        )
            .into_response(),
        Ok(Ok(QueryAnswer::Restoring)) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"status": "restoring"}))).into_response()
        }
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, Json(serde_json::json!({"error": e}))).into_response(),
        Err(e) => {
            (StatusCode::INTERNAL_SERVER_ERROR, Json(serde_json::json!({"error": e.to_string()}))).into_response()
        }
    }
}

/// `GET /stores/{store}/keys/{key}`: a key's value in a table's store, or where to ask for
/// it.
///
/// `?as_of=T` asks a versioned table for the key's value at time `T`.
async fn store_key(
    State(s): State<AdminState>,
    Path((store, key)): Path<(String, String)>,
    axum::extract::Query(params): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    use crate::runtime::query::StoreQuery;
    if let Some(refused) = wrong_kind(&s, &store, false) {
        return refused;
    }
    let (q, suffix) = match params.get("as_of") {
        None => (StoreQuery::Key(key.clone().into_bytes()), String::new()),
        Some(t) => {
            let Ok(ts) = t.parse::<i64>() else {
                return error(StatusCode::BAD_REQUEST, format!("`as_of` must be a time in milliseconds, not `{t}`"));
            };
            if !s.hosts.versioned(&store) {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("`{store}` keeps no history: `as_of` asks a versioned table (`history_retention`)"),
                );
            }
            (StoreQuery::KeyAsOf { key: key.clone().into_bytes(), ts }, format!("?as_of={ts}"))
        }
    };
    keyed(s, store, key, q, &suffix, true).await
}

/// `GET /stores/{store}/keys/{key}/windows?from=&to=`: a key's windows whose start is in
/// `from..=to` (milliseconds; default all), or its sessions that end at `from` or later and
/// start at `to` or earlier, each with its bounds, in time order.
async fn store_windows(
    State(s): State<AdminState>,
    Path((store, key)): Path<(String, String)>,
    axum::extract::Query(params): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Some(refused) = wrong_kind(&s, &store, true) {
        return refused;
    }
    let bound = |name: &str, default: i64| match params.get(name) {
        None => Ok(default),
        Some(t) => t.parse::<i64>().map_err(|_| format!("`{name}` must be a time in milliseconds, not `{t}`")),
    };
    let (from, to) = match (bound("from", i64::MIN), bound("to", i64::MAX)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    let query = params.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect::<Vec<_>>().join("&");
    let q = crate::runtime::query::StoreQuery::Windows { key: key.clone().into_bytes(), from, to };
    let suffix = if query.is_empty() { "/windows".to_owned() } else { format!("/windows?{query}") };
    keyed(s, store, key, q, &suffix, false).await
}

/// A query about one key: answered here when this instance hosts it, else redirected to the
/// instance that does (`suffix` follows the key in the redirect).
async fn keyed(
    s: AdminState,
    store: String,
    key: String,
    q: crate::runtime::query::StoreQuery,
    suffix: &str,
    one: bool,
) -> Response {
    use crate::runtime::hosts::Location;
    match s.hosts.locate(&store, key.as_bytes()) {
        Location::There { server, partition, .. } => {
            let to = format!("http://{server}/stores/{}/keys/{}{suffix}", encode(&store), encode(&key));
            let body = serde_json::json!({
                "error": "another instance hosts this key",
                "host": server,
                "partition": partition,
                "location": to,
            });
            (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to.clone())], Json(body)).into_response()
        }
        Location::Unknown { partition, .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "rebalancing", "partition": partition})),
        )
            .into_response(),
        Location::Here { .. } | Location::NoSuchStore => {
            let limit = if one { 1 } else { MAX_QUERY_ROWS };
            query(s, store, q, limit, one).await
        }
    }
}

/// A refusal of a key query on a window or session store (`windows` false), or of a windows
/// query on a key-value store, saying which to ask instead.
fn wrong_kind(s: &AdminState, store: &str, windows: bool) -> Option<Response> {
    use crate::runtime::query::StoreKind;
    let kind = s.hosts.store_kind(store)?;
    match (kind, windows) {
        (StoreKind::KeyValue, true) => Some(error(
            StatusCode::BAD_REQUEST,
            format!("`{store}` is a key-value store: ask for a key with GET /stores/{store}/keys/KEY"),
        )),
        (StoreKind::Window | StoreKind::Session, false) => Some(error(
            StatusCode::BAD_REQUEST,
            format!("`{store}` is a {kind} store: ask for a key's windows with GET /stores/{store}/keys/KEY/windows"),
        )),
        _ => None,
    }
}

/// What a path segment keeps as it is: RFC 3986's unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A path segment, percent-encoded.
fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}

/// `GET /stores/{store}/hosts/{key}`: the instance that hosts `key` of `store` (Kafka
/// Streams' `queryMetadataForKey`).
async fn store_host(State(s): State<AdminState>, Path((store, key)): Path<(String, String)>) -> Response {
    use crate::runtime::hosts::Location;
    let task = |(sub, p): (usize, i32)| crate::runtime::Task::name(sub, p);
    match s.hosts.locate(&store, key.as_bytes()) {
        Location::Here { partition, task: t } => Json(serde_json::json!({
            "store": store, "key": key, "partition": partition, "task": task(t),
            "host": s.hosts.server(), "this_instance": true,
        }))
        .into_response(),
        Location::There { partition, task: t, server } => Json(serde_json::json!({
            "store": store, "key": key, "partition": partition, "task": task(t),
            "host": server, "this_instance": false,
        }))
        .into_response(),
        Location::Unknown { partition, task: t } => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({
                "store": store, "key": key, "partition": partition, "task": task(t),
                "status": "rebalancing: no instance has announced this task yet",
            })),
        )
            .into_response(),
        Location::NoSuchStore => {
            error(StatusCode::NOT_FOUND, format!("no sub-topology of this application has a store `{store}`"))
        }
    }
}

/// `GET /instances`: every instance of the application id and its tasks (Kafka Streams'
/// `metadataForAllStreamsClients`).
async fn instances(State(s): State<AdminState>) -> Response {
    Json(s.hosts.instances()).into_response()
}

/// `GET /stores/{store}?from=&to=` (a range) or `?prefix=`, with `limit` (default and most
/// 10,000).
async fn store_scan(
    State(s): State<AdminState>,
    Path(store): Path<String>,
    axum::extract::Query(params): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    use crate::runtime::query::StoreQuery;
    let limit = params.get("limit").and_then(|l| l.parse().ok()).unwrap_or(MAX_QUERY_ROWS).min(MAX_QUERY_ROWS);
    let q = match params.get("prefix") {
        Some(p) => StoreQuery::Prefix(p.clone().into_bytes()),
        None => StoreQuery::Range {
            from: params.get("from").cloned().unwrap_or_default().into_bytes(),
            to: params.get("to").map(|t| t.clone().into_bytes()),
        },
    };
    query(s, store, q, limit, false).await
}

async fn plugins(State(s): State<AdminState>) -> Response {
    Json(s.plugins.report()).into_response()
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReloadRequest {
    /// The new component; the manifest's path when absent.
    path: Option<PathBuf>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// Compares without stopping at the first difference, so the time taken says nothing of
/// how much of a guess was right.
fn same_token(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn reload(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(expected) = s.token.as_deref() else {
        return error(
            StatusCode::FORBIDDEN,
            "reloads are disabled: set [application.admin] token in the manifest or WASP_ADMIN_TOKEN",
        );
    };
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match given {
        None => return error(StatusCode::UNAUTHORIZED, "this request needs `Authorization: Bearer <token>`"),
        Some(t) if !same_token(t, expected) => return error(StatusCode::FORBIDDEN, "wrong admin token"),
        Some(_) => {}
    }
    let request: ReloadRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReloadRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("the body is not a reload request: {e}")),
        }
    };
    // Compiling takes milliseconds to seconds: off the server's thread, as off the hot path.
    let plugins = s.plugins.clone();
    let result = tokio::task::spawn_blocking(move || plugins.reload(&name, request.path.as_deref())).await;
    match result {
        Ok(Ok(event)) => Json(event).into_response(),
        Ok(Err(e @ SwapError::UnknownPlugin(_))) => error(StatusCode::NOT_FOUND, e.to_string()),
        Ok(Err(e @ SwapError::Rejected { .. })) => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("the reload failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::same_token;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(same_token("s3cret", "s3cret"));
        assert!(!same_token("s3cre", "s3cret"));
        assert!(!same_token("s3creT", "s3cret"));
        assert!(!same_token("", "s3cret"));
    }
}
