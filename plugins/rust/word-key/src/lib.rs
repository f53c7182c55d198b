//! Word count, step 2: the word becomes the key, so counting groups by word.

#[wasp::select_key]
fn the_word(word: &str) -> String {
    word.to_owned()
}
