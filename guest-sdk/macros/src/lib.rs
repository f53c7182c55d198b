//! The attribute macros of the wasp guest SDK. Each keeps the user's function as written and
//! emits a hidden module that generates the bindings for one exported kind and calls the
//! function once per record of each batch. One generator file per kind.

mod aggregate;
mod common;
mod filter;
mod for_each;
mod join;
mod map;
mod processor;
mod timestamp;
mod transform;

use proc_macro::TokenStream;

/// A predicate for `filter`, `filterNot` and `branch`: `fn(value) -> bool` or
/// `fn(key, value) -> bool`, or `Result<bool, E>`.
#[proc_macro_attribute]
pub fn filter(attr: TokenStream, item: TokenStream) -> TokenStream {
    common::expand(attr, item, &filter::FILTER)
}

/// `mapValues`: `fn(value) -> V` or `fn(key, value) -> V`; the key is kept.
#[proc_macro_attribute]
pub fn map_values(attr: TokenStream, item: TokenStream) -> TokenStream {
    common::expand(attr, item, &transform::MAP_VALUES)
}

/// `map`: `fn(key, value) -> (K, V)`.
#[proc_macro_attribute]
pub fn map(attr: TokenStream, item: TokenStream) -> TokenStream {
    common::expand(attr, item, &map::MAP)
}

/// `flatMap`: `fn(key, value) -> impl IntoIterator<Item = (K, V)>`.
#[proc_macro_attribute]
pub fn flat_map(attr: TokenStream, item: TokenStream) -> TokenStream {
    common::expand(attr, item, &map::FLAT_MAP)
}

/// `flatMapValues`: `fn(value) -> impl IntoIterator<Item = V>`; the key is kept.
#[proc_macro_attribute]
pub fn flat_map_values(attr: TokenStream, item: TokenStream) -> TokenStream {
    common::expand(attr, item, &transform::FLAT_MAP_VALUES)
}

/// `selectKey`: `fn(value) -> K` or `fn(key, value) -> K`; the value is kept.
#[proc_macro_attribute]
pub fn select_key(attr: TokenStream, item: TokenStream) -> TokenStream {
    common::expand(attr, item, &transform::SELECT_KEY)
}

/// `peek` and `forEach`: `fn(value)` or `fn(key, value)`, returning `()` or `Result<(), E>`.
#[proc_macro_attribute]
pub fn for_each(attr: TokenStream, item: TokenStream) -> TokenStream {
    common::expand(attr, item, &for_each::FOR_EACH)
}

/// A value joiner for `join`, `left_join` and `outer_join`: `fn(left, right) -> V` or
/// `fn(key, left, right) -> V` (or `Result<V, E>`). A side that may be missing (a left join's
/// right side, either side of an outer join) is an `Option<…>`; a missing partner read as a
/// required type fails the record with `absent`.
#[proc_macro_attribute]
pub fn value_joiner(attr: TokenStream, item: TokenStream) -> TokenStream {
    common::expand(attr, item, &join::VALUE_JOINER)
}

/// A foreign-key extractor for a foreign-key table join: `fn(value) -> K` or
/// `fn(key, value) -> K` (or `Option<K>`: `None` joins nothing), the key of the other table.
#[proc_macro_attribute]
pub fn foreign_key(attr: TokenStream, item: TokenStream) -> TokenStream {
    common::expand(attr, item, &join::FOREIGN_KEY)
}

/// `aggregate`: `fn(value, aggregate) -> A` or `fn(key, value, aggregate) -> A`, folded over
/// each key's (or window's) records. `init = f` names the initializer (`fn() -> A`); without
/// it an aggregate starts as empty bytes. `merge = g` names the merger session windows need
/// (`fn(left: A, right: A) -> A`, or `fn(key, left, right)` when the aggregator takes a key;
/// it returns `Result` exactly when the aggregator does).
#[proc_macro_attribute]
pub fn aggregate(attr: TokenStream, item: TokenStream) -> TokenStream {
    common::expand(attr, item, &aggregate::AGGREGATE)
}

/// `reduce`: `fn(aggregate, value) -> V` or `fn(key, aggregate, value) -> V`; a key's first
/// value is its first aggregate.
#[proc_macro_attribute]
pub fn reduce(attr: TokenStream, item: TokenStream) -> TokenStream {
    common::expand(attr, item, &aggregate::REDUCE)
}

/// A timestamp extractor: `fn(value) -> i64` or `fn(key, value) -> i64`, the event time in
/// milliseconds since the Unix epoch (or `Result<i64, E>`).
#[proc_macro_attribute]
pub fn timestamp(attr: TokenStream, item: TokenStream) -> TokenStream {
    common::expand(attr, item, &timestamp::TIMESTAMP)
}

/// A custom processor (the Processor API): `fn(ctx: &mut wasp::Context, value)` or
/// `fn(ctx, key, value)`, returning `()` or `Result<(), E>`, called once per record; it forwards
/// through `ctx` and keeps state in [`wasp::state`] stores. `init = f` returns the timers
/// (`fn() -> Vec<wasp::Timer>`); `punctuate = g` handles them (`fn(&mut wasp::Context, &str, i64)`).
#[proc_macro_attribute]
pub fn processor(attr: TokenStream, item: TokenStream) -> TokenStream {
    common::expand(attr, item, &processor::PROCESSOR)
}
