//! Misbehaves on purpose, for the containment tests: the value `grow` allocates without bound
//! (the memory cap must stop it). Other values pass unchanged.

#[wasp::map_values]
fn hoard(value: &str) -> String {
    if value == "grow" {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
    value.to_owned()
}
