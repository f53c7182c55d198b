//! The value mapper of `make bench`: reads a JSON payment, upper-cases `user` and adds a
//! `large` field. The benchmark runs the same work natively, and through the naive encoding
//! (`bench-naive`).

use serde::{Deserialize, Serialize};
use wasp::Json;

#[derive(Deserialize)]
struct Payment {
    id: u64,
    user: String,
    amount: f64,
    country: String,
    pad: String,
}

#[derive(Serialize)]
struct Tagged {
    id: u64,
    user: String,
    amount: f64,
    country: String,
    pad: String,
    large: bool,
}

/// Payments above this amount are tagged `large`.
const LARGE: f64 = 90.0;

#[wasp::map_values]
fn tag(Json(p): Json<Payment>) -> Json<Tagged> {
    Json(Tagged {
        id: p.id,
        user: p.user.to_uppercase(),
        amount: p.amount,
        country: p.country,
        pad: p.pad,
        large: p.amount > LARGE,
    })
}
