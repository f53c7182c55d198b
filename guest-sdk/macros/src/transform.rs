//! The kinds that produce one field per input record: `map_values`, `select_key` and
//! `flat_map_values` (zero or more values).

use proc_macro2::TokenStream;
use quote::quote;

use crate::common::{Kind, Signature, finish_output, select};

pub const MAP_VALUES: Kind = Kind {
    attribute: "map_values",
    world: "value-mapper-plugin",
    interface: "value_mapper",
    arities: &[1, 2],
    body: map_values,
    options: &[],
    aggregate: None,
    context: false,
};

pub const SELECT_KEY: Kind = Kind {
    attribute: "select_key",
    world: "key-selector-plugin",
    interface: "key_selector",
    arities: &[1, 2],
    body: select_key,
    options: &[],
    aggregate: None,
    context: false,
};

pub const FLAT_MAP_VALUES: Kind = Kind {
    attribute: "flat_map_values",
    world: "flat-mapper-plugin",
    interface: "flat_mapper",
    arities: &[1, 2],
    body: flat_map_values,
    options: &[],
    aggregate: None,
    context: false,
};

/// A loop over the batch that runs `emit` (which may `?`) for each record, with `produced`
/// bound to the function's result, and rolls a failed record back.
pub fn each_record(sig: &Signature, emit: TokenStream) -> TokenStream {
    let call = sig.call();
    let finish = finish_output();
    quote! {
        let mut out = ::wasp::BatchBuilder::with_capacity(view.len(), input.data.len());
        for (i, rec) in view.iter().enumerate() {
            let origin = i as u32;
            let checkpoint = out.checkpoint();
            let done: ::core::result::Result<(), ::wasp::RecordError> = (|| {
                let produced = #call?;
                #emit
                Ok(())
            })();
            if let Err(e) = done {
                out.rollback(checkpoint);
                out.fail(origin, e);
            }
        }
        out.compact(&input.timestamps);
        #finish
    }
}

fn map_values(sig: &Signature) -> TokenStream {
    let select = select(sig);
    let each = each_record(sig, quote! { out.push_value(origin, rec.timestamp, rec.value, produced)?; });
    quote! {
        fn map_values(function: String, input: Batch) -> Result<Output, CallError> {
            #select
            #each
        }
    }
}

fn select_key(sig: &Signature) -> TokenStream {
    let select = select(sig);
    let each = each_record(
        sig,
        quote! { out.push(origin, rec.timestamp, |b| ::wasp::IntoBytes::write_to(produced, b), |_| Ok(false))?; },
    );
    quote! {
        fn select_key(function: String, input: Batch) -> Result<Output, CallError> {
            #select
            #each
        }
    }
}

fn flat_map_values(sig: &Signature) -> TokenStream {
    let select = select(sig);
    let each = each_record(
        sig,
        quote! {
            for value in produced {
                out.push(origin, rec.timestamp, |_| Ok(false), |b| ::wasp::IntoBytes::write_to(value, b))?;
            }
        },
    );
    quote! {
        fn flat_map(function: String, input: Batch) -> Result<Output, CallError> {
            #select
            #each
        }
    }
}
