//! The admin HTTP endpoint (axum, on its own thread with a small tokio runtime; the batch loop
//! never waits for it):
//!
//! | route | what |
//! |---|---|
//! | `GET /health` | 200 while the process is up |
//! | `GET /ready` | 200 once the batch loop runs, else 503 |
//! | `GET /metrics` | every metric, built-in and plugin-defined, in the Prometheus text format |
//! | `GET /plugins` | each plugin's running version (digest, load time) and its last swap |
//! | `POST /plugins/{name}/reload` | loads a new version (body `{"path": "…"}`, optional); needs `Authorization: Bearer <token>` |
//! | `GET /stores/{store}/keys/{key}` | a key's value in a table's store, across this instance's tasks (404 when absent; 503 `restoring` while stores restore) |
//! | `GET /stores/{store}?from=&to=` or `?prefix=` | a range or a prefix of it, in key order, `limit` at most (10,000) |
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
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/plugins", get(plugins))
        .route("/plugins/{name}/reload", post(reload))
        .route("/stores/{store}", get(store_scan))
        .route("/stores/{store}/keys/{key}", get(store_key))
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

/// The most entries a scan returns, whatever `limit` asks.
const MAX_QUERY_ROWS: usize = 10_000;

/// Entries as JSON: `[{"key": …, "value": …}]` (text where it is UTF-8, else lossy).
fn rows_json(rows: &[(Vec<u8>, Vec<u8>)]) -> serde_json::Value {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    serde_json::Value::Array(rows.iter().map(|(k, v)| serde_json::json!({"key": text(k), "value": text(v)})).collect())
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

/// `GET /stores/{store}/keys/{key}`: a key's value in a table's store.
async fn store_key(State(s): State<AdminState>, Path((store, key)): Path<(String, String)>) -> Response {
    query(s, store, crate::runtime::query::StoreQuery::Key(key.into_bytes()), 1, true).await
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
