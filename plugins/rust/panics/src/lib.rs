//! Misbehaves on purpose, for the containment tests: the value `boom` panics (a trap). Other
//! values pass unchanged.

#[wasp::map_values]
fn explode(value: &str) -> String {
    assert!(value != "boom", "the value was boom");
    value.to_owned()
}
