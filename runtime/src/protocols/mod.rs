//! The protocols, one concept per module, each a short sequence of stages (kernel launches) and messages, with its
//! communication cost declared beside it ([`cost`]) and checked by the tests.
//!
//! | protocol | module | rounds | bytes sent per element, by role |
//! |---|---|---|---|
//! | share from an owner | [`input`] | 1 | owner 16 (8 to each peer), others 0 |
//! | reveal to all / to one | [`reveal`] | 1 | 8, 8, 8 / 8, 0, 0 |
//! | add, sub, neg, public add/scale, sum pooling | [`local`], [`pool`] | 0 | 0 |
//! | mul, matmul, conv2d, each with truncation fused | [`mul`], [`matmul`], [`conv`] | 1 | 8, 8, 8 per output |
//! | truncation, division by a public integer, average pooling | [`divide`], [`pool`] | 1 | 8, 0, 0 per output |

pub mod binary;
pub mod compare;
pub mod comparison;
pub mod conv;
pub mod cost;
pub mod divide;
pub mod exact;
pub mod exp;
pub mod input;
pub mod local;
pub mod log;
pub mod matmul;
pub mod max;
pub mod mul;
pub mod normalize;
pub mod pool;
pub mod reciprocal;
pub mod reshare;
pub mod reveal;
pub mod rsqrt;
pub mod softmax;
pub mod zero;

pub use binary::BinShare;
pub use compare::SignBits;
pub use cost::Cost;
pub use divide::MAX_DIVISOR;
pub use exact::TruncationMode;
pub use max::{MaxPoolArgmax, MAX_POOL_PAD};
pub use zero::ZeroKind;
