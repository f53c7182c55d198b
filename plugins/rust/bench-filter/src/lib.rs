//! The filter of `make bench`: keeps payments whose JSON `amount` is above a threshold. The
//! benchmark runs the same work natively, and through the naive encoding (`bench-naive`).

use wasp::Json;

#[path = "../../../bench-work.rs"]
mod work;

#[wasp::filter]
fn amount_over(Json(p): Json<work::Amount>) -> bool {
    work::over_threshold(&p)
}
