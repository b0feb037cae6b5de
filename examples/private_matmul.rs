//! The main job on the embedded default: three parties in this process secret-share two matrices (party 0 owns A,
//! party 1 owns B), multiply them privately, reveal the product, and print the error against the plaintext
//! product with the rounds, bytes and time it took.
//!
//! `cargo run --release --example private_matmul -- --size 512`

use clap::Parser;
use cryptgpu::{workloads, Config, Session};

/// Private matrix multiplication among three in-process parties.
#[derive(Parser)]
struct Args {
    /// Rows and columns of the square matrices.
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Fractional bits of the fixed-point encoding.
    #[arg(long, default_value_t = 20)]
    frac_bits: u32,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let session = Session::new(Config { frac_bits: args.frac_bits, ..Config::default() })?;
    let n = args.size;
    println!(
        "private matmul {n}×{n}×{n}: A owned by party 0, B by party 1, entries uniform in [-1, 1], t = {}",
        args.frac_bits
    );
    let report = workloads::matmul(&session, n, n, n, &mut rand::thread_rng())?;
    println!("{report}");
    Ok(())
}
