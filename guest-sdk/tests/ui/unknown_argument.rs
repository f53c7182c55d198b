#[wasp::filter(nmae = "x")]
fn typo(_value: &[u8]) -> bool {
    true
}

fn main() {}
