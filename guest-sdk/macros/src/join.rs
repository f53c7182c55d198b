//! The kinds of joins: `value_joiner` (both sides' values into one, Kafka Streams'
//! `ValueJoiner`) and `foreign_key` (a table value's foreign key, for KIP-213 joins).

use proc_macro2::TokenStream;
use quote::quote;

use crate::common::{AggregateParam, Kind, Signature, finish_output, select};
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
    quote! {
        fn join(function: String, left: Batch, right: Batch) -> Result<Output, CallError> {
            if !::wasp::__rt::selects(&function, #name) {
                return ::core::result::Result::Err(CallError::UnknownFunction(function));
            }
            let view = ::wasp::BatchView::new(&left.index, &left.timestamps, &left.data);
            let others = ::wasp::BatchView::new(&right.index, &right.timestamps, &right.data);
            if view.len() != others.len() {
                return ::core::result::Result::Err(CallError::Failed("join: left and right differ in length".into()));
            }
            let mut out = ::wasp::BatchBuilder::with_capacity(view.len(), left.data.len());
            for (i, (rec, other)) in view.iter().zip(others.iter()).enumerate() {
                let origin = i as u32;
                let checkpoint = out.checkpoint();
                // The right side's value, where the generated call reads its last parameter.
                let aggregate = other.value;
                let done: ::core::result::Result<(), ::wasp::RecordError> = (|| {
                    let produced = #call?;
                    out.push(origin, rec.timestamp, |_| Ok(false), |b| ::wasp::IntoBytes::write_to(produced, b))?;
                    Ok(())
                })();
                if let ::core::result::Result::Err(e) = done {
                    out.rollback(checkpoint);
                    out.fail(origin, e);
                }
            }
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
