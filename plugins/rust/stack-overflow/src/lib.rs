//! Misbehaves on purpose, for the containment tests: the value `deep` recurses until the stack
//! overflows. Other values pass unchanged.

#[wasp::map_values]
fn descend(value: &str) -> String {
    if value == "deep" {
        return recurse(std::hint::black_box(1)).to_string();
    }
    value.to_owned()
}

#[expect(unconditional_recursion, reason = "it exists to overflow the stack")]
fn recurse(n: u64) -> u64 {
    let pad = std::hint::black_box([n; 64]);
    recurse(pad[0].wrapping_add(1)).wrapping_add(pad[63])
}
