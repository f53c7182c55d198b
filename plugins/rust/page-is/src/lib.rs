//! A branch predicate: is the enriched click's `category` the configured one
//! (`config.category`)? Declare the plugin once per category in the manifest.

use std::sync::OnceLock;

use serde::Deserialize;
use wasp::Json;

#[derive(Deserialize)]
struct Enriched {
    category: String,
}

fn wanted() -> &'static str {
    static WANTED: OnceLock<String> = OnceLock::new();
    WANTED.get_or_init(|| wasp::config::get("category").unwrap_or_default())
}

#[wasp::filter]
fn category_is(Json(click): Json<Enriched>) -> bool {
    click.category == wanted()
}
