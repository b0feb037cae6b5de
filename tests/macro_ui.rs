//! Compile-fail snapshots of `secure_model!` errors: each mistake gives one error, spanned at the offending layer.

#[test]
fn secure_model_errors() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
