//! Fraud detection with a custom processor, after the reference documents' example: a
//! velocity check over a window store (too many transactions of one card within a minute
//! raise an alert), a per-card summary in a key-value store, and a periodic clean-up of old
//! transactions on a stream-time timer.

use serde::{Deserialize, Serialize};
use wasp::state::{KeyValueStore, WindowStore};
use wasp::{Context, Json, Timer};

#[derive(Deserialize)]
struct Transaction {
    amount: f64,
    merchant: String,
}

#[derive(Serialize, Deserialize, Default)]
struct Summary {
    transactions: u64,
    total: f64,
    alerts: u64,
}

#[derive(Serialize)]
struct Alert<'a> {
    card: &'a str,
    reason: &'static str,
    transactions_in_window: usize,
    merchant: &'a str,
    amount: f64,
}

/// The velocity window and the number of transactions within it that raise an alert.
const WINDOW_MS: i64 = 60_000;
const MAX_IN_WINDOW: usize = 3;
/// Transactions older than this (in stream time) are removed by the clean-up timer.
const KEEP_MS: i64 = 5 * 60_000;

fn timers() -> Vec<Timer> {
    vec![Timer::stream_time("clean-up", 60_000)]
}

#[wasp::processor(init = timers, punctuate = clean_up)]
fn check(ctx: &mut Context, card: &str, Json(txn): Json<Transaction>) -> Result<(), String> {
    let recent = WindowStore::open("recent").map_err(|e| e.to_string())?;
    let summaries = KeyValueStore::open("summaries").map_err(|e| e.to_string())?;
    let now = ctx.timestamp();
    recent.put(card.as_bytes(), now, txn.amount.to_string().as_bytes()).map_err(|e| e.to_string())?;
    let in_window = recent.fetch(card.as_bytes(), now - WINDOW_MS, now, 1_000).map_err(|e| e.to_string())?.len();

    let mut summary: Summary = match summaries.get(card.as_bytes()).map_err(|e| e.to_string())? {
        Some(b) => serde_json::from_slice(&b).map_err(|e| e.to_string())?,
        None => Summary::default(),
    };
    summary.transactions += 1;
    summary.total = ((summary.total + txn.amount) * 100.0).round() / 100.0;
    if in_window > MAX_IN_WINDOW {
        summary.alerts += 1;
        let alert = Alert {
            card,
            reason: "velocity",
            transactions_in_window: in_window,
            merchant: &txn.merchant,
            amount: txn.amount,
        };
        ctx.forward_to("alerts", card, Json(alert)).map_err(|e| e.to_string())?;
    }
    let bytes = serde_json::to_vec(&summary).map_err(|e| e.to_string())?;
    summaries.put(card.as_bytes(), &bytes).map_err(|e| e.to_string())?;
    ctx.forward(card, Json(summary)).map_err(|e| e.to_string())?;
    Ok(())
}

/// Drops transactions older than `KEEP_MS`, so the window store stays small, and reports
/// what it removed to the `maintenance` child.
fn clean_up(ctx: &mut Context, timer: &str, now: i64) -> Result<(), String> {
    let recent = WindowStore::open("recent").map_err(|e| e.to_string())?;
    let old = recent.fetch_until(now - KEEP_MS, 10_000).map_err(|e| e.to_string())?;
    for o in &old {
        recent.delete(&o.key, o.start).map_err(|e| e.to_string())?;
    }
    if !old.is_empty() {
        let report = serde_json::json!({ "removed": old.len(), "older_than": now - KEEP_MS });
        ctx.forward_to("maintenance", timer, Json(report)).map_err(|e| e.to_string())?;
    }
    Ok(())
}
