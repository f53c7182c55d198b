#[wasp::filter]
fn not_bool(value: &str) -> String {
    value.to_owned()
}

fn main() {}
