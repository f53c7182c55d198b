use proc_macro2::TokenStream;
use quote::quote;

use crate::common::{Kind, Signature, select};

pub const FILTER: Kind =
    Kind { attribute: "filter", world: "filter-plugin", interface: "filter", arities: &[1, 2], body };

fn body(sig: &Signature) -> TokenStream {
    let select = select(sig);
    let call = sig.call();
    quote! {
        fn filter(function: String, input: Batch) -> Result<Verdicts, CallError> {
            #select
            let mut keep = ::std::vec::Vec::with_capacity(view.len());
            let mut errors = ::std::vec::Vec::new();
            for (i, rec) in view.iter().enumerate() {
                let verdict: ::core::result::Result<bool, ::wasp::RecordError> = (|| #call)();
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
