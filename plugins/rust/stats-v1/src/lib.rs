//! Per-key statistics of numeric values, state format 1: `{"count": n, "total": t}`. Swapped
//! for `stats-v2`, whose state format is different, in the state-schema swap test.

use serde::{Deserialize, Serialize};
use wasp::Json;

#[derive(Serialize, Deserialize, Default)]
pub struct Stats {
    pub count: u64,
    pub total: i64,
}

fn empty() -> Json<Stats> {
    Json(Stats::default())
}

#[wasp::aggregate(init = empty)]
fn add(value: &str, Json(mut stats): Json<Stats>) -> Result<Json<Stats>, String> {
    let v: i64 = value.trim().parse().map_err(|_| format!("`{value}` is not a number"))?;
    stats.count += 1;
    stats.total += v;
    Ok(Json(stats))
}
