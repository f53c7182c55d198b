#[wasp::map]
fn only_value(value: &str) -> (String, String) {
    (value.to_owned(), value.to_owned())
}

fn main() {}
