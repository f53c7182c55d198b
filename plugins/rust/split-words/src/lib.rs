//! Word count, step 1 (as in Kafka Streams' `WordCountDemo`): a line becomes its words,
//! lower-cased, split on anything that is not a letter or a digit.

#[wasp::flat_map_values]
fn words(line: &str) -> Vec<String> {
    line.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}
