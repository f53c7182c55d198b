//! The value mapper of `make bench`: reads a JSON payment, upper-cases `user` and adds a
//! `large` field. The benchmark runs the same work natively, and through the naive encoding
//! (`bench-naive`).

use wasp::Json;

#[path = "../../../bench-work.rs"]
mod work;

#[wasp::map_values]
fn tag(Json(p): Json<work::Payment>) -> Json<work::Tagged> {
    Json(work::tagged(p))
}
