//! What every kind shares: reading the attribute and the signature, the hidden module and the
//! per-record call.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as Tokens};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, LitStr, ReturnType, Type};

/// One exported kind.
pub struct Kind {
    /// The attribute's name, for messages.
    pub attribute: &'static str,
    /// The WIT world that exports the kind, e.g. `filter-plugin`.
    pub world: &'static str,
    /// The exported interface's Rust module name, e.g. `filter`.
    pub interface: &'static str,
    /// The parameter counts the kind accepts; 1 means the value alone.
    pub arities: &'static [usize],
    /// The `Guest` impl body.
    pub body: fn(&Signature) -> Tokens,
    /// Options the attribute takes besides `name`, each `option = path::to::function`.
    pub options: &'static [&'static str],
    /// Where the aggregate parameter sits, for kinds that fold records into one.
    pub aggregate: Option<AggregateParam>,
    /// The first parameter is a `&mut wasp::Context` (processors).
    pub context: bool,
}

/// The position of the aggregate among the parameters.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum AggregateParam {
    /// `(key, value, aggregate)`, as Kafka Streams' `Aggregator`.
    Last,
    /// `(key, aggregate, value)`, as Kafka Streams' `Reducer` (`value1`, `value2`).
    BeforeValue,
}

/// The user's function as the generators see it.
pub struct Signature {
    pub ident: syn::Ident,
    /// Where the aggregate parameter sits (copied from the kind).
    pub aggregate: Option<AggregateParam>,
    /// Whether the first argument is the processor's context, `ctx`.
    pub context: bool,
    /// The name the manifest's `function` field selects.
    pub name: String,
    pub key_ty: Option<Type>,
    pub value_ty: Type,
    /// Whether it returns `Result<_, _>`.
    pub fallible: bool,
    pub ret_span: Span,
    /// The aggregate's type, for kinds that fold.
    pub aggregate_ty: Option<Type>,
    /// The attribute's options (e.g. `init = start`).
    pub options: Vec<(String, syn::Path)>,
}

impl Signature {
    /// An expression of type `Result<R, ::wasp::RecordError>` calling the function on the
    /// record `rec`, where `R` is the function's success type.
    pub fn call(&self) -> Tokens {
        let ident = &self.ident;
        let value_ty = &self.value_ty;
        let value = quote_spanned! {value_ty.span()=>
            <#value_ty as ::wasp::FromBytes>::from_bytes(rec.value)?
        };
        let mut args = Vec::new();
        if self.context {
            args.push(quote! { &mut ctx });
        }
        if let Some(key_ty) = &self.key_ty {
            args.push(quote_spanned! {key_ty.span()=> <#key_ty as ::wasp::FromBytes>::from_bytes(rec.key)? });
        }
        let aggregate = self.aggregate_ty.as_ref().map(|ty| {
            quote_spanned! {ty.span()=> <#ty as ::wasp::FromBytes>::from_bytes(aggregate)? }
        });
        match (self.aggregate, aggregate) {
            (Some(AggregateParam::BeforeValue), Some(a)) => args.extend([a, value]),
            (_, Some(a)) => args.extend([value, a]),
            (_, None) => args.push(value),
        }
        let call = quote! { super::#ident(#(#args),*) };
        if self.fallible {
            quote_spanned! {self.ret_span=> #call.map_err(|e| {
                #[allow(unused_imports)]
                use ::wasp::__rt::{DisplayRecordError as _, KeepRecordError as _};
                (&::wasp::__rt::Failure(e)).record_error()
            }) }
        } else {
            quote_spanned! {self.ret_span=> ::core::result::Result::<_, ::wasp::RecordError>::Ok(#call) }
        }
    }
}

fn error(span: Span, message: impl std::fmt::Display) -> TokenStream {
    syn::Error::new(span, message).into_compile_error().into()
}

/// The whole expansion: the function unchanged, and the hidden module.
pub fn expand(attr: TokenStream, item: TokenStream, kind: &Kind) -> TokenStream {
    let func: ItemFn = match syn::parse(item) {
        Ok(f) => f,
        Err(e) => {
            return error(e.span(), format!("#[wasp::{}] goes on a function: {e}", kind.attribute));
        }
    };
    let mut name = func.sig.ident.to_string();
    let mut options = Vec::new();
    if !attr.is_empty() {
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("name") {
                name = meta.value()?.parse::<LitStr>()?.value();
                Ok(())
            } else if let Some(o) = kind.options.iter().find(|o| meta.path.is_ident(o)) {
                options.push(((*o).to_owned(), meta.value()?.parse::<syn::Path>()?));
                Ok(())
            } else {
                let more: String = kind.options.iter().map(|o| format!(", `{o} = function`")).collect();
                Err(meta.error(format!("#[wasp::{}] takes only `name = \"…\"`{more}", kind.attribute)))
            }
        });
        if let Err(e) = syn::parse::Parser::parse(parser, attr) {
            return e.into_compile_error().into();
        }
    }
    let sig = &func.sig;
    if let Some(a) = &sig.asyncness {
        return error(a.span(), format!("#[wasp::{}] functions cannot be async", kind.attribute));
    }
    if sig.generics.params.iter().any(|p| !matches!(p, syn::GenericParam::Lifetime(_))) {
        return error(
            sig.generics.span(),
            format!("#[wasp::{}] functions cannot have type or const parameters", kind.attribute),
        );
    }
    let mut types = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => {
                return error(r.span(), format!("#[wasp::{}] goes on a free function, not a method", kind.attribute));
            }
            FnArg::Typed(t) => types.push(erase_lifetimes((*t.ty).clone())),
        }
    }
    if !kind.arities.contains(&types.len()) {
        let expected = match (kind.aggregate, kind.arities) {
            (Some(AggregateParam::Last), _) if kind.attribute == "value_joiner" => {
                "(left, right) or (key, left, right)".to_owned()
            }
            (Some(AggregateParam::Last), _) => "(value, aggregate) or (key, value, aggregate)".to_owned(),
            (Some(AggregateParam::BeforeValue), _) => "(aggregate, value) or (key, aggregate, value)".to_owned(),
            (None, _) if kind.context => "(ctx: &mut wasp::Context, value) or (ctx, key, value)".to_owned(),
            (None, [2]) => "two parameters: (key, value)".to_owned(),
            (None, _) => "one parameter (value) or two (key, value)".to_owned(),
        };
        let span = if sig.inputs.is_empty() { sig.paren_token.span.join() } else { sig.inputs.span() };
        return error(span, format!("#[wasp::{}] expects {expected}, found {}", kind.attribute, types.len()));
    }
    let aggregate_ty = match kind.aggregate {
        Some(AggregateParam::Last) => types.pop(),
        Some(AggregateParam::BeforeValue) => types.len().checked_sub(2).map(|i| types.remove(i)),
        None => None,
    };
    if kind.context {
        types.remove(0);
    }
    let value_ty = types.pop().expect("arity checked above");
    let key_ty = types.pop();
    let (fallible, ret_span) = match &sig.output {
        ReturnType::Default => (false, sig.ident.span()),
        ReturnType::Type(_, ty) => (is_result(ty), ty.span()),
    };
    let signature = Signature {
        ident: sig.ident.clone(),
        aggregate: kind.aggregate,
        context: kind.context,
        name,
        key_ty,
        value_ty,
        fallible,
        ret_span,
        aggregate_ty,
        options,
    };
    let body = (kind.body)(&signature);
    let module = format_ident!("__wasp_export_{}", kind.interface);
    let world = format!("wasp:plugin/{}@0.1.0", kind.world);
    let wit = concat!(env!("CARGO_MANIFEST_DIR"), "/../../wit");
    let interface = format_ident!("{}", kind.interface);
    let helpers = if kind.context {
        crate::processor::helpers()
    } else {
        quote! {}
    };
    quote! {
        #func

        /// The component export generated by `#[wasp::...]`. One function of each kind per plugin.
        #[doc(hidden)]
        #[allow(warnings, clippy::all, clippy::pedantic)]
        mod #module {
            // The user's types, as written in the signature. Names below shadow these.
            use super::*;
            ::wasp::__rt::wit_bindgen::generate!({
                world: #world,
                path: #wit,
                runtime_path: "::wasp::__rt::wit_bindgen::rt",
            });
            use self::wasp::plugin::types::{Batch, CallError, Output, RecordError, Verdicts};
            #helpers
            struct Plugin;
            impl self::exports::wasp::plugin::#interface::Guest for Plugin {
                #body
            }
            export!(Plugin);
        }
    }
    .into()
}

/// `&'a str` becomes `&'_ str`: the glue names parameter types outside the function, where
/// its lifetime parameters do not exist.
fn erase_lifetimes(mut ty: Type) -> Type {
    struct Erase;
    impl syn::visit_mut::VisitMut for Erase {
        fn visit_lifetime_mut(&mut self, l: &mut syn::Lifetime) {
            if l.ident != "static" {
                *l = syn::Lifetime::new("'_", l.span());
            }
        }
    }
    syn::visit_mut::VisitMut::visit_type_mut(&mut Erase, &mut ty);
    ty
}

fn is_result(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Result"))
}

/// The guard every export starts with: the manifest's `function` must name this function.
pub fn select(sig: &Signature) -> Tokens {
    let name = &sig.name;
    quote! {
        if !::wasp::__rt::selects(&function, #name) {
            return ::core::result::Result::Err(CallError::UnknownFunction(function));
        }
        let view = ::wasp::BatchView::new(&input.index, &input.timestamps, &input.data);
    }
}

/// A loop over the records of the batches `left` and `right` pair by pair (`rec` and
/// `other`), after refusing batches of different lengths (`what` names the call). `each`
/// (which may `?` a `RecordError`) pushes the pair's output into `out`; a failed pair is
/// rolled back and fails alone. Leaves `out` filled.
pub fn each_pair(what: &str, each: Tokens) -> Tokens {
    let mismatch = format!("{what}: left and right differ in length");
    quote! {
        let view = ::wasp::BatchView::new(&left.index, &left.timestamps, &left.data);
        let others = ::wasp::BatchView::new(&right.index, &right.timestamps, &right.data);
        if view.len() != others.len() {
            return ::core::result::Result::Err(CallError::Failed(#mismatch.into()));
        }
        let mut out = ::wasp::BatchBuilder::with_capacity(view.len(), left.data.len());
        for (i, (rec, other)) in view.iter().zip(others.iter()).enumerate() {
            let origin = i as u32;
            let checkpoint = out.checkpoint();
            let done: ::core::result::Result<(), ::wasp::RecordError> = (|| {
                #each
                Ok(())
            })();
            if let ::core::result::Result::Err(e) = done {
                out.rollback(checkpoint);
                out.fail(origin, e);
            }
        }
    }
}

/// Converts a filled `BatchBuilder` named `out` into the WIT `output`.
pub fn finish_output() -> Tokens {
    quote! {
        ::core::result::Result::Ok(Output {
            records: Batch { index: out.index, timestamps: out.timestamps, data: out.data },
            origins: out.origins,
            errors: out
                .errors
                .into_iter()
                .map(|(index, code, message)| RecordError { index, code, message })
                .collect(),
        })
    }
}
