//! The identity functions of `make bench`: they do no work, so what they cost is the cost of
//! crossing the Wasm boundary with the batch encoding.

/// Keeps every record without reading it.
#[wasp::filter]
fn keep_all(_value: Option<&[u8]>) -> bool {
    true
}

/// Returns the value unchanged, as bytes.
#[wasp::map_values]
fn same(value: Option<&[u8]>) -> Option<&[u8]> {
    value
}
