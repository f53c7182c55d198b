//! The word-count data: lines of words from a fixed vocabulary, drawn by a seeded PRNG, so
//! every run (and every runner) sees the same lines and the same expected totals.

use std::collections::{HashMap, HashSet};

/// Lines produced to each input topic.
pub const LINES: usize = 200_000;
/// Distinct words the lines are drawn from.
pub const VOCABULARY: usize = 5_000;
/// Words per line: 6 to 10, uniform, so 8 on average.
const MIN_WORDS: u64 = 6;
const MAX_WORDS: u64 = 10;
/// The seed of every draw (vocabulary and lines).
pub const SEED: u64 = 0x0077_6173_7021; // "wasp!" in ASCII

/// splitmix64 (Steele, Lea and Flood): a tiny, well-mixed generator, enough for test data and
/// the same on every platform.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (the modulo bias is irrelevant for `n` this small).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The generated input and what a correct word count ends with.
pub struct WordData {
    pub lines: Vec<String>,
    /// The final count of every word.
    pub expected: HashMap<String, u64>,
    /// Words in all lines together.
    pub words: usize,
}

/// `VOCABULARY` distinct lower-case words of 3 to 10 letters. Letters only, so every runner's
/// tokenizer (wasp's `split-words`, Python's `str.split`, the native split) sees the same words.
fn vocabulary(rng: &mut SplitMix64) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut words = Vec::with_capacity(VOCABULARY);
    while words.len() < VOCABULARY {
        let len = 3 + rng.below(8) as usize;
        let word: String = (0..len).map(|_| char::from(b'a' + rng.below(26) as u8)).collect();
        if seen.insert(word.clone()) {
            words.push(word);
        }
    }
    words
}

/// `lines` lines of 6 to 10 words drawn uniformly from the vocabulary, and their totals.
pub fn generate(lines: usize) -> WordData {
    let mut rng = SplitMix64::new(SEED);
    let vocabulary = vocabulary(&mut rng);
    let mut expected: HashMap<String, u64> = HashMap::with_capacity(VOCABULARY);
    let mut words = 0;
    let lines = (0..lines)
        .map(|_| {
            let n = MIN_WORDS + rng.below(MAX_WORDS - MIN_WORDS + 1);
            let picked: Vec<&str> =
                (0..n).map(|_| vocabulary[rng.below(VOCABULARY as u64) as usize].as_str()).collect();
            for w in &picked {
                *expected.entry((*w).to_owned()).or_default() += 1;
            }
            words += picked.len();
            picked.join(" ")
        })
        .collect();
    WordData { lines, expected, words }
}

/// wasp's tokenizer (`plugins/rust/split-words`): split on anything not a letter or a digit,
/// lower-cased.
pub fn split(line: &str) -> impl Iterator<Item = String> + '_ {
    line.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase)
}
