//! `processor`: a custom processor. The function runs once per record with a context to
//! forward through; `init = f` names the function that returns the timers
//! (`fn() -> Vec<wasp::Timer>`), `punctuate = g` the one they call
//! (`fn(&mut wasp::Context, timer: &str, time: i64)`, or returning `Result<(), E>`).

use proc_macro2::TokenStream;
use quote::quote;

use crate::common::{Kind, Signature, select};

pub const PROCESSOR: Kind = Kind {
    attribute: "processor",
    world: "processor-plugin",
    interface: "processor",
    arities: &[2, 3],
    body,
    options: &["init", "punctuate"],
    aggregate: None,
    context: true,
};

fn option<'a>(sig: &'a Signature, name: &str) -> Option<&'a syn::Path> {
    sig.options.iter().find(|(n, _)| n == name).map(|(_, p)| p)
}

fn body(sig: &Signature) -> TokenStream {
    let select = select(sig);
    let call = sig.call();
    let name = &sig.name;
    let timers = match option(sig, "init") {
        Some(init) => quote! { super::#init() },
        None => quote! { ::std::vec::Vec::<::wasp::Timer>::new() },
    };
    let punctuate = match option(sig, "punctuate") {
        Some(p) => quote! {
            ::wasp::__rt::TimerResult::into_result(super::#p(&mut ctx, &timer, time)).map_err(CallError::Failed)?;
        },
        None => quote! { let _ = (&mut ctx, timer); },
    };
    quote! {
        fn init(function: String) -> Result<::std::vec::Vec<self::exports::wasp::plugin::processor::Timer>, CallError> {
            if !::wasp::__rt::selects(&function, #name) {
                return ::core::result::Result::Err(CallError::UnknownFunction(function));
            }
            let timers: ::std::vec::Vec<::wasp::Timer> = #timers;
            ::core::result::Result::Ok(timers.into_iter().map(|t| self::exports::wasp::plugin::processor::Timer {
                name: t.name,
                interval_ms: t.interval_ms,
                clock: if t.wall_clock {
                    self::exports::wasp::plugin::processor::Clock::WallClock
                } else {
                    self::exports::wasp::plugin::processor::Clock::StreamTime
                },
            }).collect())
        }

        fn process(function: String, input: Batch) -> Result<self::exports::wasp::plugin::processor::Forwarded, CallError> {
            #select
            let mut ctx = ::wasp::Context::new(view.len(), input.data.len());
            for (i, rec) in view.iter().enumerate() {
                let checkpoint = ctx.__begin(i as u32, rec.timestamp);
                let done: ::core::result::Result<(), ::wasp::RecordError> = (|| {
                    #call?;
                    ::core::result::Result::Ok(())
                })();
                if let ::core::result::Result::Err(e) = done {
                    ctx.__fail(checkpoint, i as u32, e);
                }
            }
            ::core::result::Result::Ok(finish(ctx))
        }

        fn punctuate(function: String, timer: String, time: i64) -> Result<self::exports::wasp::plugin::processor::Forwarded, CallError> {
            if !::wasp::__rt::selects(&function, #name) {
                return ::core::result::Result::Err(CallError::UnknownFunction(function));
            }
            let mut ctx = ::wasp::Context::new(0, 0);
            ctx.__begin(0, time);
            #punctuate
            ::core::result::Result::Ok(finish(ctx))
        }
    }
}

/// The helper the generated impl uses to turn a context into the WIT result.
pub fn helpers() -> TokenStream {
    quote! {
        fn finish(ctx: ::wasp::Context) -> self::exports::wasp::plugin::processor::Forwarded {
            let out = ctx.out;
            self::exports::wasp::plugin::processor::Forwarded {
                records: Batch { index: out.index, timestamps: out.timestamps, data: out.data },
                children: ctx.children,
                errors: out
                    .errors
                    .into_iter()
                    .map(|(index, code, message)| RecordError { index, code, message })
                    .collect(),
            }
        }
    }
}
