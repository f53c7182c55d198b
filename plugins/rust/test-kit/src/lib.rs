//! One component exporting every stateless kind, for the host's operator tests. Values are
//! text.

/// Keeps values that contain `config.needle` (default `keep`); fails values equal to `bad`.
#[wasp::filter]
fn contains_needle(value: &str) -> Result<bool, String> {
    if value == "bad" {
        return Err("the value is `bad`".to_owned());
    }
    let needle = wasp::config::get("needle").unwrap_or_else(|| "keep".to_owned());
    Ok(value.contains(&needle))
}

/// Upper-cases the value.
#[wasp::map_values]
fn upper(value: &str) -> String {
    value.to_uppercase()
}

/// Swaps key and value.
#[wasp::map]
fn swap(key: Option<&str>, value: &str) -> (String, String) {
    (value.to_owned(), key.unwrap_or_default().to_owned())
}

/// One record per word, keyed by the word.
#[wasp::flat_map]
fn words(_key: Option<&[u8]>, value: &str) -> Vec<(String, String)> {
    value.split_whitespace().map(|w| (w.to_owned(), w.to_owned())).collect()
}

/// The first character of the value becomes the key.
#[wasp::select_key]
fn first_char(value: &str) -> String {
    value.chars().next().map(String::from).unwrap_or_default()
}

/// Counts the records it sees in the `seen_total` counter.
#[wasp::for_each]
fn count(_value: Option<&[u8]>) {
    wasp::metrics::counter_add("seen_total", &[("source", "test-kit")], 1);
}
