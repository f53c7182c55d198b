//! Misbehaves on purpose, for the containment tests: the value `loop` never returns (the
//! per-call deadline or fuel must stop it). Other values pass unchanged.

#[wasp::map_values]
fn spin(value: &str) -> String {
    if value == "loop" {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
    value.to_owned()
}
