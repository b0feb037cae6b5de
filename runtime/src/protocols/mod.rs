//! The protocols, one concept per module, each a short sequence of stages (kernel launches) and messages, with its
//! communication cost declared beside it ([`cost`]) and checked by the tests.
//!
//! | protocol | module | rounds | bytes sent per element, by role |
//! |---|---|---|---|
//! | share from an owner | [`input`] | 1 | owner 16 (8 to each peer), others 0 |
//! | reveal to all / to one | [`reveal`] | 1 | 8, 8, 8 / 8, 0, 0 |
//! | add, sub, neg, public add/scale, sum pooling | [`local`], [`pool`] | 0 | 0 |
//! | ring mul, matmul, conv2d | [`mul`], [`matmul`], [`conv`] | 1 | 8, 8, 8 per output |
//! | fixed-point mul, matmul, conv2d, truncation fused (default: exact) | [`mul`], [`matmul`], [`conv`], [`exact`] | 2 | 8 + 8/3 each per output (`t ≤ 21`) |
//! | … with probabilistic truncation ([`TruncationMode::Probabilistic`]) | same | 1 | 8, 8, 8 per output |
//! | truncation by `2^k` (default: exact) | [`exact`] | 2 | 8 + 8/3, 8/3, 8/3 per output (`k ≤ 21`) |
//! | division by a public non-power of two, average pooling (any mode), probabilistic truncation | [`divide`], [`pool`] | 1 | 8, 0, 0 per output |
//!
//! The non-linear protocols declare their rounds and bytes in [`cost`]: the sign circuit (DReLU), ReLU and
//! multiplication by a shared bit ([`sign`], [`injection`]); comparisons of two shares ([`comparison`]); binary shares ([`binary`]);
//! max and max pooling ([`max`]); exp, reciprocal, log, rsqrt and softmax, over the exponent normalisation
//! ([`normalize`]).
//!
//! **Layers.** [`base`] holds what every protocol builds on (roles, public divisors, zero-share pieces, the local
//! epilogue of a reshare) and imports no protocol module; [`reshare`] runs a reshare's messages; [`exact`] and
//! [`divide`] are the two truncations, [`joint`] runs several products' truncations in shared rounds; the other
//! modules build on these.

pub mod base;
pub mod binary;
pub mod comparison;
pub mod conv;
pub mod cost;
pub mod divide;
pub mod exact;
pub mod exp;
pub mod injection;
pub mod input;
pub mod joint;
pub mod local;
pub mod log;
pub mod matmul;
pub mod max;
pub mod mul;
pub mod normalize;
pub mod pool;
pub mod reciprocal;
pub mod relu;
pub mod reshare;
pub mod reveal;
pub mod rsqrt;
pub mod sign;
pub mod softmax;
pub mod zero;

pub use base::{Divisor, ZeroKind, MAX_DIVISOR};
pub use binary::BinShare;
pub use cost::Cost;
pub use exact::TruncationMode;
pub use injection::ReluMask;
pub use max::{MaxPoolArgmax, MAX_POOL_PAD};
pub use sign::SignBits;
