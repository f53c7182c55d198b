//! Subtractors for grouped tables (Kafka Streams' `KGroupedTable.aggregate` and `reduce` take
//! one): a decimal value taken back out of a decimal sum, as an aggregator and as a reducer.

fn minus_of(aggregate: &str, value: &str) -> Result<String, String> {
    let v: i64 = value.trim().parse().map_err(|_| format!("`{value}` is not a number"))?;
    let a: i64 = aggregate.parse().map_err(|_| format!("aggregate `{aggregate}` is not a number"))?;
    Ok((a - v).to_string())
}

/// `aggregate - value` (an aggregator's subtractor).
#[wasp::aggregate]
fn minus(value: &str, aggregate: &str) -> Result<String, String> {
    minus_of(aggregate, value)
}

/// `aggregate - value` (a reducer's subtractor).
#[wasp::reduce]
fn minus_reduced(aggregate: &str, value: &str) -> Result<String, String> {
    minus_of(aggregate, value)
}
