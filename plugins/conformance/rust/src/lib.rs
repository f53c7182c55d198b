//! The conformance suite's kit in Rust: the functions every language's kit offers, as
//! `tests/conformance/README.md` describes them.

use serde::{Deserialize, Serialize};
use wasp::{Context, Json, RecordError, Timer};

/// An input event.
#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    user: String,
    amount: i64,
    #[serde(default)]
    text: String,
}

/// A session's aggregate.
#[derive(Serialize, Deserialize)]
struct Total {
    count: i64,
    sum: i64,
}

fn seen(function: &str) {
    wasp::metrics::counter_add("kit_records", &[("function", function)], 1);
}

fn event(value: Option<&[u8]>) -> Result<Event, RecordError> {
    let value = value.ok_or_else(|| RecordError::new("bad-json", "a tombstone has no event"))?;
    serde_json::from_slice(value).map_err(|e| RecordError::new("bad-json", format!("not an event: {e}")))
}

#[wasp::filter]
fn positive(value: Option<&[u8]>) -> Result<bool, RecordError> {
    seen("positive");
    let min = wasp::config::get_json::<i64>("min_amount").and_then(Result::ok).unwrap_or(0);
    Ok(event(value)?.amount >= min)
}

#[wasp::map_values]
fn describe(value: Option<&[u8]>) -> Result<Json<serde_json::Value>, RecordError> {
    seen("describe");
    let e = event(value)?;
    let label = wasp::config::get("label").unwrap_or_default();
    Ok(Json(serde_json::json!({ "user": e.user, "cents": e.amount * 100, "label": label })))
}

#[wasp::flat_map]
fn words(_key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Vec<(String, String)>, RecordError> {
    seen("words");
    let e = event(value)?;
    Ok(e.text.split(' ').filter(|w| !w.is_empty()).map(|w| (w.to_owned(), e.user.clone())).collect())
}

fn start() -> Json<Total> {
    Json(Total { count: 0, sum: 0 })
}

#[wasp::aggregate(init = start, merge = merge_totals)]
fn total(value: Option<&[u8]>, Json(t): Json<Total>) -> Result<Json<Total>, RecordError> {
    seen("total");
    let e = event(value)?;
    Ok(Json(Total { count: t.count + 1, sum: t.sum + e.amount }))
}

fn merge_totals(Json(a): Json<Total>, Json(b): Json<Total>) -> Result<Json<Total>, RecordError> {
    Ok(Json(Total { count: a.count + b.count, sum: a.sum + b.sum }))
}

fn timers() -> Vec<Timer> {
    vec![Timer::stream_time("report", 10_000)]
}

fn failed(e: wasp::state::StateError) -> RecordError {
    RecordError::new("state", format!("{e:?}"))
}

fn decimal(bytes: Option<Vec<u8>>) -> i64 {
    bytes.and_then(|b| String::from_utf8(b).ok()?.parse().ok()).unwrap_or(0)
}

#[wasp::processor(init = timers, punctuate = report)]
fn count(ctx: &mut Context, key: Option<&[u8]>, _value: Option<&[u8]>) -> Result<(), RecordError> {
    seen("count");
    let key = key.ok_or_else(|| RecordError::new("no-key", "a record without a key has nothing to count"))?;
    let counts = wasp::state::KeyValueStore::open("counts").map_err(failed)?;
    let n = decimal(counts.get(key).map_err(failed)?) + 1;
    counts.put(key, n.to_string().as_bytes()).map_err(failed)?;
    wasp::log::info(&format!("kit counted {n} for a key"));
    ctx.forward(key, n.to_string())
}

fn report(ctx: &mut Context, _timer: &str, time: i64) -> Result<(), RecordError> {
    let counts = wasp::state::KeyValueStore::open("counts").map_err(failed)?;
    let total: i64 = counts.prefix_scan(b"", 10_000).map_err(failed)?.into_iter().map(|e| decimal(Some(e.value))).sum();
    ctx.forward_at("", "total", total.to_string(), time)
}
