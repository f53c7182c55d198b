#[wasp::select_key]
fn generic<T: AsRef<str>>(value: T) -> String {
    value.as_ref().to_owned()
}

fn main() {}
