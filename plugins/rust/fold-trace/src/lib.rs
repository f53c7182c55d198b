//! An aggregator whose result records how it was folded, for the semantics tests: values are
//! appended, and a merge nests both sides, so a test sees which aggregates were merged, in
//! which order, and whether a merge started from the initial aggregate (as Kafka Streams'
//! session windows do).

/// The initial aggregate: empty.
fn empty() -> String {
    String::new()
}

/// Appends the value.
#[wasp::aggregate(init = empty, merge = nest)]
fn append(value: &str, aggregate: &str) -> String {
    format!("{aggregate}{value}")
}

/// `(left|right)`: not a plain union, so merging from the initial aggregate shows.
fn nest(left: &str, right: &str) -> String {
    format!("({left}|{right})")
}
