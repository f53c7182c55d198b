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
}

/// The user's function as the generators see it.
pub struct Signature {
    pub ident: syn::Ident,
    /// The name the manifest's `function` field selects.
    pub name: String,
    pub key_ty: Option<Type>,
    pub value_ty: Type,
    /// Whether it returns `Result<_, _>`.
    pub fallible: bool,
    pub ret_span: Span,
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
        let call = match &self.key_ty {
            Some(key_ty) => {
                let key = quote_spanned! {key_ty.span()=> <#key_ty as ::wasp::FromBytes>::from_bytes(rec.key)? };
                quote! { super::#ident(#key, #value) }
            }
            None => quote! { super::#ident(#value) },
        };
        if self.fallible {
            quote_spanned! {self.ret_span=> #call.map_err(::wasp::__rt::plugin_error) }
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
    if !attr.is_empty() {
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("name") {
                name = meta.value()?.parse::<LitStr>()?.value();
                Ok(())
            } else {
                Err(meta.error(format!("#[wasp::{}] takes only `name = \"…\"`", kind.attribute)))
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
        let expected = match kind.arities {
            [2] => "two parameters: (key, value)".to_owned(),
            _ => "one parameter (value) or two (key, value)".to_owned(),
        };
        let span = if sig.inputs.is_empty() { sig.paren_token.span.join() } else { sig.inputs.span() };
        return error(span, format!("#[wasp::{}] expects {expected}, found {}", kind.attribute, types.len()));
    }
    let value_ty = types.pop().expect("arity checked above");
    let key_ty = types.pop();
    let (fallible, ret_span) = match &sig.output {
        ReturnType::Default => (false, sig.ident.span()),
        ReturnType::Type(_, ty) => (is_result(ty), ty.span()),
    };
    let signature = Signature { ident: sig.ident.clone(), name, key_ty, value_ty, fallible, ret_span };
    let body = (kind.body)(&signature);
    let module = format_ident!("__wasp_export_{}", kind.interface);
    let world = format!("wasp:plugin/{}@0.1.0", kind.world);
    let wit = concat!(env!("CARGO_MANIFEST_DIR"), "/../../wit");
    let interface = format_ident!("{}", kind.interface);
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
