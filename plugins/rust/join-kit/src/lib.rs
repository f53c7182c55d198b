//! The join kinds for the tests: a value joiner and a foreign-key extractor.

/// `key:left+right`; a missing side (an unmatched record of a left or outer join) reads
/// `none`, and so does a missing key (a left join's record without one).
#[wasp::value_joiner]
fn pair(key: Option<&str>, left: Option<&str>, right: Option<&str>) -> String {
    format!("{}:{}+{}", key.unwrap_or("none"), left.unwrap_or("none"), right.unwrap_or("none"))
}

/// The customer an order refers to: its value is `customer/item`. An order without a `/`
/// fails on its own.
#[wasp::foreign_key]
fn customer(order: &str) -> Result<String, String> {
    order.split_once('/').map(|(c, _)| c.to_owned()).ok_or_else(|| format!("`{order}` names no customer"))
}
