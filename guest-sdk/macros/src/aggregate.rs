//! The kinds that fold records into aggregates the host keeps: `aggregate` (with its
//! initializer and, for session windows, its merger) and `reduce`.

use proc_macro2::TokenStream;
use quote::quote;

use crate::common::{AggregateParam, Kind, Signature, each_pair, finish_output, select};

pub const AGGREGATE: Kind = Kind {
    attribute: "aggregate",
    world: "aggregator-plugin",
    interface: "aggregator",
    arities: &[2, 3],
    body: aggregate,
    options: &["init", "merge"],
    aggregate: Some(AggregateParam::Last),
    context: false,
};

pub const REDUCE: Kind = Kind {
    attribute: "reduce",
    world: "reducer-plugin",
    interface: "reducer",
    arities: &[2, 3],
    body: reduce,
    options: &[],
    aggregate: Some(AggregateParam::BeforeValue),
    context: false,
};

/// The fold over the batch: each slot's aggregate lives as bytes between records, so the
/// next record of the same slot sees the one before it. `absent_is_first` (reduce): a slot
/// with no aggregate takes the record's value as it is.
fn fold(sig: &Signature, absent_is_first: bool) -> TokenStream {
    let call = sig.call();
    let finish = finish_output();
    let first = if absent_is_first {
        quote! {
            if aggregate.is_none() {
                return ::core::result::Result::Ok(rec.value.map(<[u8]>::to_vec));
            }
        }
    } else {
        quote! {}
    };
    quote! {
        let current = ::wasp::BatchView::new(&current.index, &current.timestamps, &current.data);
        let mut state: ::std::vec::Vec<::core::option::Option<::std::vec::Vec<u8>>> =
            current.iter().map(|r| r.value.map(<[u8]>::to_vec)).collect();
        if slots.len() != view.len() || slots.iter().any(|&s| s as usize >= state.len()) {
            return ::core::result::Result::Err(CallError::Failed("the host sent slots that do not match the batch".into()));
        }
        let mut out = ::wasp::BatchBuilder::with_capacity(view.len(), input.data.len());
        for (i, rec) in view.iter().enumerate() {
            let origin = i as u32;
            let slot = slots[i] as usize;
            let done: ::core::result::Result<::core::option::Option<::std::vec::Vec<u8>>, ::wasp::RecordError> = (|| {
                let aggregate: ::core::option::Option<&[u8]> = state[slot].as_deref();
                #first
                let produced = #call?;
                let mut bytes = ::std::vec::Vec::new();
                let present = ::wasp::IntoBytes::write_to(produced, &mut bytes)?;
                ::core::result::Result::Ok(present.then_some(bytes))
            })();
            match done {
                ::core::result::Result::Ok(next) => {
                    let pushed = out.push(origin, rec.timestamp, |_| Ok(false), |b| match &next {
                        ::core::option::Option::Some(v) => { b.extend_from_slice(v); Ok(true) }
                        ::core::option::Option::None => Ok(false),
                    });
                    match pushed {
                        ::core::result::Result::Ok(()) => state[slot] = next,
                        ::core::result::Result::Err(e) => out.fail(origin, e),
                    }
                }
                ::core::result::Result::Err(e) => out.fail(origin, e),
            }
        }
        #finish
    }
}

fn option<'a>(sig: &'a Signature, name: &str) -> Option<&'a syn::Path> {
    sig.options.iter().find(|(n, _)| n == name).map(|(_, p)| p)
}

fn aggregate(sig: &Signature) -> TokenStream {
    let select = select(sig);
    let fold = fold(sig, false);
    let name = &sig.name;
    let initialize = match option(sig, "init") {
        Some(init) => quote! {
            let mut bytes = ::std::vec::Vec::new();
            ::wasp::IntoBytes::write_to(super::#init(), &mut bytes).map_err(|e| CallError::Failed(e.to_string()))?;
            ::core::result::Result::Ok(bytes)
        },
        // Without an initializer, aggregates start empty: the aggregate parameter is then
        // typically an `Option<…>`.
        None => quote! { ::core::result::Result::Ok(::std::vec::Vec::new()) },
    };
    let merge = match option(sig, "merge") {
        Some(merge) => {
            let finish = finish_output();
            let ty = sig.aggregate_ty.as_ref().map_or_else(|| quote! { &[u8] }, |t| quote! { #t });
            // The merger is fallible exactly when the aggregator is.
            let unwrap = sig.fallible.then(|| {
                quote! { .map_err(|e| {
                    #[allow(unused_imports)]
                    use ::wasp::__rt::{DisplayRecordError as _, KeepRecordError as _};
                    (&::wasp::__rt::Failure(e)).record_error()
                })? }
            });
            let key = sig.key_ty.as_ref().map(|k| quote! { <#k as ::wasp::FromBytes>::from_bytes(rec.key)?, });
            let pairs = each_pair(
                "merge",
                quote! {
                    let merged = super::#merge(#key <#ty as ::wasp::FromBytes>::from_bytes(rec.value)?, <#ty as ::wasp::FromBytes>::from_bytes(other.value)?)#unwrap;
                    out.push(origin, rec.timestamp.max(other.timestamp), |_| Ok(false), |b| ::wasp::IntoBytes::write_to(merged, b))?;
                },
            );
            quote! {
                #pairs
                #finish
            }
        }
        None => quote! {
            let _ = (left, right);
            ::core::result::Result::Err(CallError::Failed(
                "this aggregator has no merger, which session windows need: add `merge = your_function` to #[wasp::aggregate]".into(),
            ))
        },
    };
    quote! {
        fn initialize(function: String) -> Result<::std::vec::Vec<u8>, CallError> {
            if !::wasp::__rt::selects(&function, #name) {
                return ::core::result::Result::Err(CallError::UnknownFunction(function));
            }
            #initialize
        }

        fn aggregate(function: String, input: Batch, slots: ::std::vec::Vec<u32>, current: Batch) -> Result<Output, CallError> {
            #select
            #fold
        }

        fn merge(function: String, left: Batch, right: Batch) -> Result<Output, CallError> {
            if !::wasp::__rt::selects(&function, #name) {
                return ::core::result::Result::Err(CallError::UnknownFunction(function));
            }
            #merge
        }
    }
}

fn reduce(sig: &Signature) -> TokenStream {
    let select = select(sig);
    let fold = fold(sig, true);
    quote! {
        fn reduce(function: String, input: Batch, slots: ::std::vec::Vec<u32>, current: Batch) -> Result<Output, CallError> {
            #select
            #fold
        }
    }
}
