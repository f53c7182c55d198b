#[wasp::map_values]
async fn later(value: &str) -> String {
    value.to_owned()
}

fn main() {}
