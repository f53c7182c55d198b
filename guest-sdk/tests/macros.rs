//! Misusing an attribute is a compile error with a span on the mistake. Each case under `ui/`
//! has its expected compiler output beside it (`TRYBUILD=overwrite` rewrites them).

#[test]
fn misuse_is_a_spanned_compile_error() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
