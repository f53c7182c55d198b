//! Per-key statistics of numeric values, state format 3: `stats-v1`'s `{"count", "total"}`
//! with two fields more, `max` and `unit`, for a store kept in Avro (schema
//! `tests/data/schemas/stats-v3.avsc`, whose new fields have defaults).
//!
//! Unlike `stats-v2`, this version knows no older format: it takes exactly its own fields. It
//! reads a key that `stats-v1` wrote only because the host resolves the stored Avro value, written
//! with `stats-v1.avsc`, into the store's new schema (Avro's schema resolution: the new fields at
//! their defaults).

use serde::{Deserialize, Serialize};
use wasp::Json;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stats {
    pub count: u64,
    pub total: i64,
    pub max: Option<i64>,
    pub unit: String,
}

fn empty() -> Json<Stats> {
    Json(Stats { count: 0, total: 0, max: None, unit: "unit".to_owned() })
}

#[wasp::aggregate(init = empty)]
fn add(value: &str, Json(mut stats): Json<Stats>) -> Result<Json<Stats>, String> {
    let v: i64 = value.trim().parse().map_err(|_| format!("`{value}` is not a number"))?;
    stats.count += 1;
    stats.total += v;
    stats.max = Some(stats.max.map_or(v, |m| m.max(v)));
    Ok(Json(stats))
}
