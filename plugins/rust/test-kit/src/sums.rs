//! The summing aggregator's work, shared by `test-kit` and `kit-v2` (which include this file
//! with `#[path]`): the two versions differ only in their initial aggregate.

/// Adds a decimal value to a decimal aggregate; fails what is not a number.
pub fn add(value: &str, aggregate: &str) -> Result<String, String> {
    let v: i64 = value.trim().parse().map_err(|_| format!("`{value}` is not a number"))?;
    let a: i64 = aggregate.parse().map_err(|_| format!("aggregate `{aggregate}` is not a number"))?;
    Ok((a + v).to_string())
}

/// Merges two sums (session windows).
pub fn merge(left: &str, right: &str) -> Result<String, String> {
    let l: i64 = left.parse().map_err(|_| format!("`{left}` is not a number"))?;
    let r: i64 = right.parse().map_err(|_| format!("`{right}` is not a number"))?;
    Ok((l + r).to_string())
}
