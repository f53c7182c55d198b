//! The kinds that produce keys and values: `map` and `flat_map`.

use proc_macro2::TokenStream;
use quote::quote;

use crate::common::{Kind, Signature, select};
use crate::transform::each_record;

pub const MAP: Kind = Kind {
    attribute: "map",
    world: "key-value-mapper-plugin",
    interface: "key_value_mapper",
    arities: &[2],
    body: map,
    options: &[],
    aggregate: None,
    context: false,
};

pub const FLAT_MAP: Kind = Kind {
    attribute: "flat_map",
    world: "flat-mapper-plugin",
    interface: "flat_mapper",
    arities: &[2],
    body: flat_map,
    options: &[],
    aggregate: None,
    context: false,
};

fn map(sig: &Signature) -> TokenStream {
    let select = select(sig);
    let each = each_record(
        sig,
        quote! {
            let (key, value) = produced;
            out.push(
                origin,
                rec.timestamp,
                |b| ::wasp::IntoBytes::write_to(key, b),
                |b| ::wasp::IntoBytes::write_to(value, b),
            )?;
        },
    );
    quote! {
        fn map_pairs(function: String, input: Batch) -> Result<Output, CallError> {
            #select
            #each
        }
    }
}

fn flat_map(sig: &Signature) -> TokenStream {
    let select = select(sig);
    let each = each_record(
        sig,
        quote! {
            for (key, value) in produced {
                out.push(
                    origin,
                    rec.timestamp,
                    |b| ::wasp::IntoBytes::write_to(key, b),
                    |b| ::wasp::IntoBytes::write_to(value, b),
                )?;
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
