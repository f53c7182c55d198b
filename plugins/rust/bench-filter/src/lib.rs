//! The filter of `make bench`: keeps payments whose JSON `amount` is above a threshold. The
//! benchmark runs the same work natively, and through the naive encoding (`bench-naive`).

use wasp::Json;

/// The only field the filter reads; serde skips the others.
#[derive(serde::Deserialize)]
struct Payment {
    amount: f64,
}

/// Kept payments are those above this amount (the benchmark's amounts run from 0 to 100).
const THRESHOLD: f64 = 50.0;

#[wasp::filter]
fn amount_over(Json(p): Json<Payment>) -> bool {
    p.amount > THRESHOLD
}
