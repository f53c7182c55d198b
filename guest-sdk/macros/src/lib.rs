//! The attribute macros of the wasp guest SDK. Each keeps the user's function as written and
//! emits a hidden module that generates the bindings for one exported kind and calls the
//! function once per record of each batch. One generator file per kind.

mod common;
mod filter;
mod for_each;
mod map;
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
