//! `timestamp`: the event time of each record.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

use crate::common::{Kind, Signature, select};

pub const TIMESTAMP: Kind = Kind {
    attribute: "timestamp",
    world: "timestamp-extractor-plugin",
    interface: "timestamp_extractor",
    arities: &[1, 2],
    body,
    options: &[],
    aggregate: None,
    context: false,
};

fn body(sig: &Signature) -> TokenStream {
    let select = select(sig);
    let call = sig.call();
    let extract = quote_spanned! {sig.ret_span=>
        let ts: ::core::result::Result<i64, ::wasp::RecordError> = (|| #call)();
    };
    quote! {
        fn extract(function: String, input: Batch) -> Result<self::exports::wasp::plugin::timestamp_extractor::Timestamps, CallError> {
            #select
            let mut timestamps = ::std::vec::Vec::with_capacity(view.len());
            let mut errors = ::std::vec::Vec::new();
            for (i, rec) in view.iter().enumerate() {
                #extract
                match ts {
                    ::core::result::Result::Ok(t) => timestamps.push(t),
                    ::core::result::Result::Err(e) => {
                        timestamps.push(rec.timestamp);
                        errors.push(RecordError { index: i as u32, code: e.code, message: e.message });
                    }
                }
            }
            ::core::result::Result::Ok(self::exports::wasp::plugin::timestamp_extractor::Timestamps { timestamps, errors })
        }
    }
}
