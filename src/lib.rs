//! cryptgpu: privacy-preserving machine learning for three parties (after CryptGPU, IEEE S&P 2021).
//!
//! Secrets live as 2-out-of-3 replicated shares over Z_2^64 with fixed-point reals; every secure operation is a
//! stage plan of fused kernels and messages. This facade re-exports the workspace crates:
//!
//! * [`runtime`] — ring, shares, PRF, transports, protocols, backends, sessions (start with [`Session`]);
//! * [`codegen`] — the kernel IR every backend executes;
//! * [`dsl`] — layers, model graphs with shape inference, the plaintext reference, weights, shipped models; and the
//!   [`secure_model!`] macro that declares models with compile-time shape checks;
//!
//! and holds the [`workloads`] that the example, the CLI and the benchmarks share, and the [`data`] loaders (MNIST,
//! Fashion-MNIST).

#![warn(missing_docs)]

pub use cryptgpu_codegen as codegen;
pub use cryptgpu_dsl as dsl;
pub use cryptgpu_macros::secure_model;
pub use cryptgpu_runtime as runtime;
pub use cryptgpu_runtime::{
    Config, Conv2dParams, Error, Party, PartyStats, Result, RingTensor, Session, Share, Stats, Tensor,
};

/// The allocator of every binary that links this crate: mimalloc (feature `mimalloc`, on by default). The protocols
/// allocate and free buffers of megabytes at every step; glibc's malloc hands each one back to the kernel, so every
/// reuse pays page faults, zeroing and TLB shootdowns across cores (the runtime's buffer pool,
/// `cryptgpu_runtime::buffer_pool`, avoids most of them within a run). A secure 1024³ matmul (three parties, two
/// cores) measured about 10% faster under mimalloc (BENCHMARKS.md, "Exact truncation within 1.1×"). Turn the
/// feature off (`--no-default-features`) to keep the system allocator; an application that embeds
/// `cryptgpu-runtime` chooses its own.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod bench_tables;
pub mod data;
pub mod deployment;
pub mod deployment_bench;
pub mod inference;
pub mod kernel_tally;
pub mod lenet_mnist;
pub mod paper;
pub mod plots;
pub mod precision;
pub mod progress;
pub mod spu_bench;
pub mod spu_peer;
pub mod tensor_files;
pub mod workloads;
