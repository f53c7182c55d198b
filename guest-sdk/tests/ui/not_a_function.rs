#[wasp::filter]
struct NotAFunction;

fn main() {}
