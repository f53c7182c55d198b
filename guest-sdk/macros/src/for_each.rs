use proc_macro2::TokenStream;
use quote::quote;

use crate::common::{Kind, Signature, select};

pub const FOR_EACH: Kind = Kind {
    attribute: "for_each",
    world: "for-each-plugin",
    interface: "for_each",
    arities: &[1, 2],
    body,
    options: &[],
    aggregate: None,
    context: false,
};

fn body(sig: &Signature) -> TokenStream {
    let select = select(sig);
    let call = sig.call();
    quote! {
        fn for_each(function: String, input: Batch) -> Result<::std::vec::Vec<RecordError>, CallError> {
            #select
            let mut errors = ::std::vec::Vec::new();
            for (i, rec) in view.iter().enumerate() {
                let done: ::core::result::Result<(), ::wasp::RecordError> = (|| #call)();
                if let Err(e) = done {
                    errors.push(RecordError { index: i as u32, code: e.code, message: e.message });
                }
            }
            Ok(errors)
        }
    }
}
