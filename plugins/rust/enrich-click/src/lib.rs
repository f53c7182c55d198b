//! Click-stream enrichment, after Kafka Streams' click-stream enrichment example: a click
//! (JSON, keyed by user id) joined with its user's profile from a table
//! (`pipelines/click-enrichment`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use wasp::Json;

/// A user's profile, as the profile table holds it.
#[derive(Serialize, Deserialize)]
struct Profile {
    name: String,
    region: String,
    tier: String,
}

/// A click with its user and the profile the table held for that user when the click was
/// processed.
#[derive(Serialize)]
struct EnrichedClick<'a> {
    user: Option<&'a str>,
    #[serde(flatten)]
    click: Map<String, Value>,
    profile: Option<Profile>,
}

/// The click's fields, with `user` (the key) first and `profile` last: `null` when the table
/// has no row for the user (there never was one, or it was deleted). The key and the table
/// win over fields of those names in the click.
#[wasp::value_joiner]
fn enrich<'a>(
    user: Option<&'a str>,
    Json(mut click): Json<Map<String, Value>>,
    profile: Option<Json<Profile>>,
) -> Json<EnrichedClick<'a>> {
    click.remove("user");
    click.remove("profile");
    Json(EnrichedClick { user, click, profile: profile.map(|Json(p)| p) })
}
