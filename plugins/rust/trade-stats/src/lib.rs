//! Stock statistics, after Kafka Streams' `StockStatsExample`: per ticker and window, the
//! minimum ask price, the number of trades and the average ask price.

use serde::{Deserialize, Serialize};
use wasp::Json;

#[derive(Deserialize)]
pub struct Trade {
    #[serde(rename = "type")]
    pub kind: String,
    pub ticker: String,
    pub price: f64,
    pub size: u64,
}

#[derive(Serialize, Deserialize, Default)]
pub struct TradeStats {
    #[serde(rename = "type")]
    pub kind: String,
    pub ticker: String,
    pub count_trades: u64,
    pub sum_price: f64,
    pub min_price: Option<f64>,
    pub avg_price: Option<f64>,
}

fn empty() -> Json<TradeStats> {
    Json(TradeStats::default())
}

/// Folds one trade into the window's statistics.
#[wasp::aggregate(init = empty)]
fn add(Json(trade): Json<Trade>, Json(mut stats): Json<TradeStats>) -> Json<TradeStats> {
    if trade.kind == "ASK" {
        stats.kind = trade.kind;
        stats.ticker = trade.ticker;
        stats.count_trades += 1;
        stats.sum_price = ((stats.sum_price + trade.price) * 100.0).round() / 100.0;
        stats.min_price = Some(stats.min_price.map_or(trade.price, |m| m.min(trade.price)));
    }
    let _ = trade.size;
    Json(stats)
}

/// The average ask price, computed from the sum and count.
#[wasp::map_values]
fn with_average(Json(mut stats): Json<TradeStats>) -> Json<TradeStats> {
    if stats.count_trades > 0 {
        stats.avg_price = Some((stats.sum_price / stats.count_trades as f64 * 100.0).round() / 100.0);
    }
    Json(stats)
}
