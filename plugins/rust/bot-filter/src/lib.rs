//! Keeps clicks from people: drops those whose user agent contains one of the configured
//! patterns (`config.patterns`, a list of strings; case-insensitive).

use std::sync::OnceLock;

use serde::Deserialize;
use wasp::Json;

#[derive(Deserialize)]
struct Click {
    agent: String,
}

fn patterns() -> &'static [String] {
    static PATTERNS: OnceLock<Vec<String>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let configured = match wasp::config::get_json::<Vec<String>>("patterns") {
            Some(Ok(list)) => list,
            Some(Err(e)) => {
                wasp::log::warn(&format!("config.patterns is not a list of strings ({e}); using the defaults"));
                Vec::new()
            }
            None => Vec::new(),
        };
        let list = if configured.is_empty() {
            vec!["bot".to_owned(), "crawler".to_owned(), "spider".to_owned()]
        } else {
            configured
        };
        list.into_iter().map(|p| p.to_lowercase()).collect()
    })
}

#[wasp::filter]
fn is_human(Json(click): Json<Click>) -> bool {
    let agent = click.agent.to_lowercase();
    let human = !patterns().iter().any(|p| agent.contains(p.as_str()));
    if !human {
        wasp::metrics::counter_add("bot_clicks_total", &[], 1);
    }
    human
}
