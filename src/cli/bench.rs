//! `cryptgpu bench` (the linear layers' benchmark tables), `cryptgpu bench-deployment` (three processes over
//! mutual TLS vs three in-process parties, optionally vs SecretFlow SPU) and `cryptgpu bench-spu` (ours vs
//! SecretFlow SPU on the peers' workloads).

use super::CmdResult;

/// `cryptgpu bench`'s options.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Largest square GEMM size.
    #[arg(long, default_value_t = 1024)]
    max_size: usize,
    /// Print one JSON record per measurement on stdout instead of the tables.
    #[arg(long)]
    json: bool,
    /// Only the secure matmul of size `--max-size` under exact vs probabilistic truncation: this many interleaved
    /// pairs (alternating which mode runs first), with the ratio.
    #[arg(long)]
    truncation_pairs: Option<usize>,
}

/// `cryptgpu bench`: the tables (or JSON records) of `cryptgpu::bench_tables`.
pub fn bench(a: BenchArgs) -> CmdResult {
    match a.truncation_pairs {
        Some(pairs) => cryptgpu::bench_tables::truncation_pairs(a.max_size, pairs, a.json),
        None => cryptgpu::bench_tables::run(a.reps, a.max_size, a.json),
    }
}

/// `cryptgpu bench-deployment`'s options.
#[derive(clap::Args)]
pub struct BenchDeploymentArgs {
    /// Timed runs per workload and pass (after one warm-up).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Interleaved passes (in-process, three processes, SPU); the median over passes is reported.
    #[arg(long, default_value_t = 2)]
    passes: usize,
    /// A Python with `spu==0.9.5` installed: also run SPU's brpc mode (`--spu-script`) on the same inferences.
    #[arg(long)]
    spu_python: Option<std::path::PathBuf>,
    /// SPU's benchmark script.
    #[arg(long, default_value = "../shared/peers/bench_spu.py")]
    spu_script: std::path::PathBuf,
    /// Internal: run as this party of the three-process run.
    #[arg(long, hide = true)]
    party: Option<usize>,
    /// Internal: the parties' ports.
    #[arg(long, hide = true, value_delimiter = ',')]
    ports: Vec<u16>,
    /// Internal: the session id.
    #[arg(long, hide = true, default_value_t = 0)]
    session: u64,
    /// Internal: the directory with the parties' keys and certificates.
    #[arg(long, hide = true)]
    dir: Option<std::path::PathBuf>,
}

/// `cryptgpu bench-deployment`: the whole comparison, or (internal, `--party`) one party of its three-process run.
pub fn bench_deployment(a: BenchDeploymentArgs) -> CmdResult {
    let BenchDeploymentArgs { reps, passes, spu_python, spu_script, party, ports, session, dir } = a;
    match (party, dir) {
        (Some(id), Some(dir)) => cryptgpu::deployment_bench::party(id, &dir, &ports, reps, session)?,
        (None, _) => cryptgpu::deployment_bench::run(
            reps,
            passes,
            spu_python.map(|python| cryptgpu::spu_peer::Spu::find(Some(python), spu_script)).transpose()?.map(|s| s.0),
        )?,
        (Some(_), None) => return Err("--party needs --dir".into()),
    }
    Ok(())
}

/// `cryptgpu bench-spu`'s options.
#[derive(clap::Args)]
pub struct BenchSpuArgs {
    /// A Python with `spu==0.9.5` installed (default: $SPU_PYTHON).
    #[arg(long)]
    python: Option<std::path::PathBuf>,
    /// SPU's benchmark script (bench_spu.py of ../shared/peers).
    #[arg(long, default_value = "../shared/peers/bench_spu.py")]
    script: std::path::PathBuf,
    /// Interleaved passes (ours then SPU, SPU then ours, …); the median over passes is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    passes: u32,
    /// Timed runs per workload, side and pass (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    reps: u32,
    /// Only these workloads (comma-separated: matmul, relu, lenet1, lenet64, mlp, mlp_train).
    #[arg(long, value_delimiter = ',')]
    only: Vec<cryptgpu::spu_bench::Workload>,
    /// Print one JSON record per workload on stdout instead of the table.
    #[arg(long)]
    json: bool,
}

/// `cryptgpu bench-spu`: find SPU, run the comparison, print the table (or the JSON records).
pub fn bench_spu(a: BenchSpuArgs) -> CmdResult {
    use cryptgpu::spu_bench::{self, Options, Workload};
    let (spu, version) = cryptgpu::spu_peer::Spu::find(a.python, a.script)?;
    let workloads = if a.only.is_empty() { Workload::ALL.to_vec() } else { a.only };
    let options = Options { reps: a.reps as usize, passes: a.passes as usize, workloads };
    let records = spu_bench::run(&spu, &options)?;
    if a.json {
        for r in &records {
            let mut v = serde_json::to_value(r)?;
            v["record"] = serde_json::json!("bench-spu");
            v["spu_version"] = serde_json::json!(version);
            println!("{v}");
        }
    } else {
        print!("{}", spu_bench::table(&records, &version, options.reps, options.passes));
    }
    Ok(())
}
