//! Misbehaves on purpose, for the host's containment tests: panics (a trap) when a value is
//! `boom`, and returns a per-record error when it is `oops`.

#[wasp::map_values]
fn explode(value: &str) -> Result<String, String> {
    match value {
        "boom" => panic!("the value was boom"),
        "oops" => Err("the value was oops".to_owned()),
        other => Ok(other.to_owned()),
    }
}
