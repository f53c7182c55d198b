//! The kinds of joins: `value_joiner` (both sides' values into one, Kafka Streams'
//! `ValueJoiner`) and `foreign_key` (a table value's foreign key, for KIP-213 joins).

use proc_macro2::TokenStream;
use quote::quote;

use crate::common::{AggregateParam, Kind, Signature, each_pair, finish_output, select};
use crate::transform::each_record;

/// The right side rides in the aggregate's place: `(left, right)` or `(key, left, right)`.
pub const VALUE_JOINER: Kind = Kind {
    attribute: "value_joiner",
    world: "value-joiner-plugin",
    interface: "value_joiner",
    arities: &[2, 3],
    body: value_joiner,
    options: &[],
    aggregate: Some(AggregateParam::Last),
    context: false,
};

pub const FOREIGN_KEY: Kind = Kind {
    attribute: "foreign_key",
    world: "foreign-key-extractor-plugin",
    interface: "foreign_key_extractor",
    arities: &[1, 2],
    body: foreign_key,
    options: &[],
    aggregate: None,
    context: false,
};

fn value_joiner(sig: &Signature) -> TokenStream {
    let name = &sig.name;
    let call = sig.call();
    let finish = finish_output();
    let pairs = each_pair(
        "join",
        quote! {
            // The right side's value, where the generated call reads its last parameter.
            let aggregate = other.value;
            let produced = #call?;
            out.push(origin, rec.timestamp, |_| Ok(false), |b| ::wasp::IntoBytes::write_to(produced, b))?;
        },
    );
    quote! {
        fn join(function: String, left: Batch, right: Batch) -> Result<Output, CallError> {
            if !::wasp::__rt::selects(&function, #name) {
                return ::core::result::Result::Err(CallError::UnknownFunction(function));
            }
            #pairs
            out.compact(&left.timestamps);
            #finish
        }
    }
}

fn foreign_key(sig: &Signature) -> TokenStream {
    let select = select(sig);
    let each = each_record(
        sig,
        quote! { out.push(origin, rec.timestamp, |b| ::wasp::IntoBytes::write_to(produced, b), |_| Ok(false))?; },
    );
    quote! {
        fn extract_foreign_key(function: String, input: Batch) -> Result<Output, CallError> {
            #select
            #each
        }
    }
}
