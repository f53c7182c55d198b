//! Sums of decimal values, as a reducer and as an aggregator starting from `0`: the adders of
//! a grouped table's `reduce` and `aggregate` in the tests (with `sum-sub` as subtractor).

fn plus_of(aggregate: &str, value: &str) -> Result<String, String> {
    let v: i64 = value.trim().parse().map_err(|_| format!("`{value}` is not a number"))?;
    let a: i64 = aggregate.parse().map_err(|_| format!("aggregate `{aggregate}` is not a number"))?;
    Ok((a + v).to_string())
}

fn zero() -> String {
    "0".to_owned()
}

/// `aggregate + value`, from `0`.
#[wasp::aggregate(init = zero)]
fn plus(value: &str, aggregate: &str) -> Result<String, String> {
    plus_of(aggregate, value)
}

/// `aggregate + value`; a group's first value is its first sum.
#[wasp::reduce]
fn plus_reduced(aggregate: &str, value: &str) -> Result<String, String> {
    plus_of(aggregate, value)
}
