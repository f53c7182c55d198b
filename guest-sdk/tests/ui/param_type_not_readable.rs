#[wasp::map_values]
fn wrong(value: u64) -> String {
    value.to_string()
}

fn main() {}
