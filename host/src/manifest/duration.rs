//! Durations in the manifest.

/// A duration in the manifest: `"500ms"`, `"5s"`, `"30m"`, `"1h"`, `"1d"`, or an integer
/// number of milliseconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: i64 = n.parse().map_err(|_| format!("`{text}` is not a duration such as `500ms`, `5s`, `30m` or `1h`"))?;
    let scale = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => return Err(format!("unknown unit `{other}` in `{text}`: use ms, s, m, h or d")),
    };
    n.checked_mul(scale).ok_or_else(|| format!("`{text}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("5s"), Ok(5_000));
        assert_eq!(parse_duration("250"), Ok(250));
        assert!(parse_duration("5 parsecs").is_err());
    }
}
