//! The `cryptgpu` command line: run a private workload on the embedded default, or print the benchmark tables.
//! Each subcommand's arguments and handler live in `cli/`; this file parses and dispatches.

mod cli;

use clap::Parser;
use cli::Command;

#[derive(Parser)]
#[command(version, about = "Private machine learning for three parties over replicated secret shares")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the parsed command.
fn run(cli: Cli) -> cli::CmdResult {
    match cli.command {
        Command::Matmul(a) => cli::matmul::run(a),
        Command::Kernels(a) => cli::kernels::run(a),
        Command::Infer(a) => cli::infer::run(a),
        Command::Train(a) => cli::train::run(a),
        Command::Accuracy(a) => cli::accuracy::accuracy(a),
        Command::Precision(a) => cli::accuracy::precision(a),
        Command::Party(a) => cli::deployment::party(a),
        Command::Keygen(a) => cli::deployment::keygen(a),
        Command::BenchDeployment(a) => cli::bench::bench_deployment(a),
        Command::BenchSpu(a) => cli::bench::bench_spu(a),
        Command::Paper(a) => cli::paper::run(a),
        Command::Bench(a) => cli::bench::bench(a),
        Command::BenchGpu(a) => cli::bench_gpu::run(a),
    }
}
