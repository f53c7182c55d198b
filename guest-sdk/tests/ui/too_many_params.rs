#[wasp::filter]
fn three(_key: &[u8], _value: &[u8], _extra: &[u8]) -> bool {
    true
}

fn main() {}
