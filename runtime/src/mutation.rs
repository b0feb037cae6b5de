//! Deliberate protocol breaks for testing the privacy tests themselves (mutation testing).
//!
//! A privacy test that cannot fail proves nothing. With the cargo feature `mutations`, a test can switch one of these
//! breaks on for one party ([`crate::Party::set_mutation`]) and assert that the privacy suite then fails. Only this
//! crate's own dev-dependency on itself enables the feature: `cargo build`/`cargo install` of the library or the CLI
//! never has it. (Cargo unifies features per invocation, so a command that also compiles the runtime's tests, such as
//! `cargo clippy --all-targets` or `cargo test --workspace`, compiles the hooks into that invocation's binaries too —
//! switched off: nothing but a test calls `set_mutation`.) Without the feature the switch does not exist and every
//! check below is a constant `false` that the compiler removes.
//!
//! Each break keeps the protocol's *result* correct (the parties still compute the right answer); only what a
//! party can learn changes. That is exactly the kind of bug no correctness test can see.

/// A deliberate break of one protocol's privacy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// Bit injection (ReLU, multiplication by a shared bit): R0's private bit `r` is forced to 0, so `c = β ⊕ r`
    /// opens the secret bit `β` to R1 and R2.
    InjectionBitZero,
    /// Exact truncation: R0's piece `a − p` of its wrap bit is masked with the same PRF words `s` as its other
    /// message to R2, so R2 can cancel the masks and recover the truncated product (modulo `2^k`: the piece travels
    /// as a packed `k`-bit value).
    TruncationMaskReuse,
    /// Input sharing: the owner's PRF pads are drawn at a fixed step instead of a fresh one, so two inputs shared by
    /// the same owner are masked alike and their difference is opened to the other parties.
    InputStepReuse,
    /// Sign circuit (DReLU, ReLU, comparisons): R0 sends its digits' one-hot codes unmasked (and R1 takes `ρ = 0`),
    /// so R2 reads `x_{R0} + x_{R1}` digit by digit and, with its own piece, the secret.
    SignOneHotUnmasked,
    /// Plain reshare (ring products): the zero share that masks each party's local cross terms is not added, so the
    /// message carries the unmasked sum of products.
    ZeroShareDropped,
}

impl Mutation {
    /// Every mutation, for tests that iterate over them.
    pub const ALL: [Mutation; 5] = [
        Mutation::InjectionBitZero,
        Mutation::TruncationMaskReuse,
        Mutation::InputStepReuse,
        Mutation::SignOneHotUnmasked,
        Mutation::ZeroShareDropped,
    ];
}
