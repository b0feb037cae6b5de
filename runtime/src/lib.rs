//! The three-party runtime of cryptgpu: 2-out-of-3 replicated secret sharing over Z_2^64 with fixed-point reals.
//!
//! Layers, from the bottom: the ring and [fixed-point encoding](fixed), [replicated shares](share), the
//! [PRF streams](prg) that make zero shares and masks, [transports](transport) between parties, [backends](backend)
//! that execute the IR kernels of `cryptgpu-codegen`, the [`party`] and [`session`] that tie them
//! together, and the [`protocols`] — each a short stage plan of kernel launches and messages with its
//! communication cost declared beside it.
//!
//! ```
//! use cryptgpu_runtime::{Config, Session, Tensor};
//! let session = Session::new(Config::default())?;
//! let x = Tensor::new(&[2], vec![1.5, -2.0])?;
//! let y = Tensor::new(&[2], vec![4.0, 0.25])?;
//! let [out, _, _] = session.run(|p| {
//!     let xs = p.share_fixed(0, (p.id() == 0).then_some(&x), &[2])?; // party 0 owns x
//!     let ys = p.share_fixed(1, (p.id() == 1).then_some(&y), &[2])?; // party 1 owns y
//!     let z = p.mul(&xs, &ys)?;
//!     p.reveal_fixed(&z)
//! })?;
//! assert!((out.data()[0] - 6.0).abs() < 1e-5 && (out.data()[1] + 0.5).abs() < 1e-5);
//! # Ok::<(), cryptgpu_runtime::Error>(())
//! ```

#![warn(missing_docs)]

pub mod backend;
pub mod buffer;
pub mod buffer_pool;
pub mod checkpoint;
mod error;
pub mod executor;
pub mod fixed;
mod key_agreement;
pub mod model;
pub mod mutation;
pub mod party;
pub mod predict;
pub mod prg;
pub mod protocols;
pub mod session;
pub mod share;
pub mod stats;
pub mod tensor;
pub mod training;
pub mod transport;

pub use buffer::Buffer;
pub use error::{Error, FailureRisk, FailureSource, RangeViolation, Result};
pub use fixed::FixedPoint;
pub use model::Fusion;
pub use party::{Party, StepHook};
pub use protocols::conv::Conv2dParams;
pub use session::{Config, Session};
pub use share::Share;
pub use stats::{PartyStats, Stats};
pub use tensor::{RingTensor, Tensor};

/// A party's index: 0, 1 or 2.
pub type PartyId = usize;
