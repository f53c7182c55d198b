//! The join kinds for the tests: a value joiner and a foreign-key extractor.

/// `key:left+right`; a missing right side (a left join's unmatched record) reads `none`.
#[wasp::value_joiner]
fn pair(key: &str, left: &str, right: Option<&str>) -> String {
    format!("{key}:{left}+{}", right.unwrap_or("none"))
}

/// The customer an order refers to: its value is `customer/item`. An order without a `/`
/// fails on its own.
#[wasp::foreign_key]
fn customer(order: &str) -> Result<String, String> {
    order.split_once('/').map(|(c, _)| c.to_owned()).ok_or_else(|| format!("`{order}` names no customer"))
}
