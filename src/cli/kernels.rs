//! `cryptgpu kernels`: every kernel of a private run (a model's inference or training step, or a matmul) with the
//! GPU cost model's prediction, by distinct kernel, and optionally the emitted CUDA source.

use cryptgpu::{workloads, Config};

use super::CmdResult;

/// `cryptgpu kernels`'s options.
#[derive(clap::Args)]
pub struct KernelsArgs {
    /// Which model.
    #[arg(long, value_enum, default_value_t = cryptgpu::deployment::ModelName::Lenet)]
    model: cryptgpu::deployment::ModelName,
    /// Batch size.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// One private SGD step (forward, loss gradient, backward, update) instead of the inference.
    #[arg(long)]
    train: bool,
    /// A square private matmul of this size instead of a model.
    #[arg(long, conflicts_with = "train")]
    matmul: Option<usize>,
    /// Also print the emitted CUDA source of every distinct kernel (or of those whose name contains `--name`).
    #[arg(long)]
    source: bool,
    /// Only kernels whose name contains this.
    #[arg(long)]
    name: Option<String>,
    /// Run every layer on its own: no cross-layer fusion (to compare rounds, bytes and results with the default).
    #[arg(long)]
    no_fusion: bool,
}

/// `cryptgpu kernels`: the kernels of a run with their predicted cost, by distinct kernel.
pub fn run(a: KernelsArgs) -> CmdResult {
    use cryptgpu::codegen::cost::{Link, H100_SXM};
    use cryptgpu::codegen::cuda::{emit, GemmPlan};
    use cryptgpu::{kernel_tally, progress};
    let KernelsArgs { model, batch, train, matmul, source, name, no_fusion } = a;
    let fusion = cryptgpu::runtime::Fusion::from_bool(!no_fusion);
    let (device, link) = (H100_SXM, Link::LAN_10G);
    let (what, report) = match matmul {
        Some(n) => {
            let what = format!("private {n}×{n}×{n} matmul (sharing the inputs included)");
            let run = || {
                kernel_tally::tallied(Config::default(), device, link, |s| {
                    workloads::matmul(s, n, n, n, &mut rand::thread_rng()).map(drop)
                })
            };
            (what.clone(), progress::during(what, run)?)
        }
        None => {
            let graph = model.graph()?;
            let (what, run): (String, Box<dyn FnOnce() -> cryptgpu::Result<_>>) = if train {
                let what = format!("one private training step of {} at batch {batch}", graph.name());
                (what, Box::new(|| kernel_tally::training_step(&graph, batch, fusion, device, link)))
            } else {
                let what = format!("private inference of {} at batch {batch}", graph.name());
                (what, Box::new(|| kernel_tally::inference(&graph, batch, fusion, device, link)))
            };
            (what.clone(), progress::during(what, run)?)
        }
    };
    println!(
        "{what}: {} launches of {} distinct kernels over the three parties, run on the CPU backend in {:.1} s",
        report.launches(),
        report.kernels.len(),
        report.wall.as_secs_f64()
    );
    println!("communication: {}", report.stats);
    println!(
        "cost model: {} peak rates, {:.2} GB/s link with {:.1} ms latency\n",
        device.name,
        link.bandwidth / 1e9,
        link.latency * 1e3
    );
    println!("| kernel | family | plan | launches | MB moved | int32 Gop | fp64 GFMA | tensor GMAC | predicted µs (all launches) | bound |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let wanted = |n: &str| name.as_ref().is_none_or(|w| n.contains(w.as_str()));
    for k in report.kernels.iter().filter(|k| wanted(k.kernel.name())) {
        println!(
            "| {} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} | {} |",
            k.kernel.name(),
            k.family,
            k.plan.map_or("-".to_string(), |pl| format!("{pl:?}")),
            k.launches,
            k.cost.bytes / 1e6,
            k.cost.int_ops / 1e9,
            k.cost.fp64_fma / 1e9,
            k.cost.tensor_mac / 1e9,
            k.seconds * 1e6,
            k.bound
        );
    }
    println!(
        "\npredicted per party: kernels {:.3} ms + communication {:.3} ms ({} rounds) = {:.3} ms",
        report.compute_seconds() * 1e3,
        report.comm_seconds() * 1e3,
        report.stats.rounds(),
        (report.compute_seconds() + report.comm_seconds()) * 1e3
    );
    if source {
        for k in report.kernels.iter().filter(|k| wanted(k.kernel.name())) {
            let plan = k.plan.unwrap_or(GemmPlan::Native64);
            println!("\n// ===== {} ({plan:?}) =====\n{}", k.kernel.name(), emit(&k.kernel, plan)?.source);
        }
    }
    Ok(())
}
