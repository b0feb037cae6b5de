//! `secure_model!`: the procedural macro that turns a network declaration into a typed cryptgpu model.
//!
//! This crate will own the parsing (syn), compile-time shape checking with errors spanned at the offending layer,
//! reusable parameterised blocks and repetition, and the expansion (quote) into `cryptgpu-dsl` model graphs.
//! It is empty until the model issue lands; the crate exists now so the workspace has its final shape.
