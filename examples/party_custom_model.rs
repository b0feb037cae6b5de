//! One party of a three-process deployment whose model is declared in Rust with `secure_model!` — a config file
//! cannot name Rust code, so this program passes the model's graph to `cryptgpu::deployment::run_party_with` and
//! takes the rest (addresses, certificates, roles, the job) from the config, which must not set `job.model`:
//!
//! ```sh
//! cargo run --release --example party_custom_model -- --id 1 --config examples/parties-train.toml
//! ```
//!
//! (one such process per party, each with its `--id`; add `--resume` to continue a training run).

use clap::Parser;
use cryptgpu::deployment::{run_party_with, RunOptions};
use std::process::ExitCode;

cryptgpu::secure_model! {
    /// A small MLP for 28×28 grey-scale images (MNIST, Fashion-MNIST).
    pub struct TinyMlp(input = [1, 28, 28]) {
        flatten: Flatten,
        fc1: Linear(784 => 64), relu: Relu,
        fc2: Linear(64 => 10),
    }
}

/// Run one party of a deployment with the `TinyMlp` model.
#[derive(Parser)]
struct Args {
    /// This party (0, 1 or 2).
    #[arg(long)]
    id: usize,
    /// The deployment config (TOML) without `job.model`.
    #[arg(long)]
    config: std::path::PathBuf,
    /// Training: continue from the newest checkpoint all three parties hold.
    #[arg(long)]
    resume: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = RunOptions { resume: args.resume, ..RunOptions::default() };
    match run_party_with(TinyMlp::graph(), args.id, &args.config, &options) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
