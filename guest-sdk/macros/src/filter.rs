use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

use crate::common::{Kind, Signature, select};

pub const FILTER: Kind = Kind {
    attribute: "filter",
    world: "filter-plugin",
    interface: "filter",
    arities: &[1, 2],
    body,
    options: &[],
    aggregate: None,
    context: false,
};

fn body(sig: &Signature) -> TokenStream {
    let select = select(sig);
    let call = sig.call();
    // Typed at the user's return type, so a filter that does not return `bool` is an error there.
    let verdict = quote_spanned! {sig.ret_span=>
        let verdict: ::core::result::Result<bool, ::wasp::RecordError> = (|| #call)();
    };
    quote! {
        fn filter(function: String, input: Batch) -> Result<Verdicts, CallError> {
            #select
            let mut keep = ::std::vec::Vec::with_capacity(view.len());
            let mut errors = ::std::vec::Vec::new();
            for (i, rec) in view.iter().enumerate() {
                #verdict
                match verdict {
                    Ok(k) => keep.push(k as u8),
                    Err(e) => {
                        keep.push(0);
                        errors.push(RecordError { index: i as u32, code: e.code, message: e.message });
                    }
                }
            }
            Ok(Verdicts { keep, errors })
        }
    }
}
