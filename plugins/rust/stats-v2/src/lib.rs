//! Per-key statistics of numeric values, state format 2:
//! `{"version": 2, "n": n, "sum": s, "max": m}`, which `stats-v1`'s `{"count", "total"}` becomes.
//!
//! The migration follows wasp's rule for a plugin that changes its state format (README,
//! "State formats across a swap"): the host keeps each key's state as the plugin last wrote
//! it, so a new version reads its predecessor's format and converts a key's state the first
//! time it updates that key. Fields the old format did not keep (`max`) start from what the
//! new version sees.

use serde::{Deserialize, Serialize};
use wasp::Json;

#[derive(Serialize, Deserialize)]
pub struct Stats {
    pub version: u32,
    pub n: u64,
    pub sum: i64,
    pub max: Option<i64>,
}

/// Either format, as stored.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Stored {
    V2(Stats),
    V1 { count: u64, total: i64 },
}

impl Stored {
    fn migrate(self) -> Stats {
        match self {
            Self::V2(s) => s,
            Self::V1 { count, total } => Stats { version: 2, n: count, sum: total, max: None },
        }
    }
}

fn empty() -> Json<Stats> {
    Json(Stats { version: 2, n: 0, sum: 0, max: None })
}

#[wasp::aggregate(init = empty)]
fn add(value: &str, Json(stored): Json<Stored>) -> Result<Json<Stats>, String> {
    let v: i64 = value.trim().parse().map_err(|_| format!("`{value}` is not a number"))?;
    let mut stats = stored.migrate();
    stats.n += 1;
    stats.sum += v;
    stats.max = Some(stats.max.map_or(v, |m| m.max(v)));
    Ok(Json(stats))
}
