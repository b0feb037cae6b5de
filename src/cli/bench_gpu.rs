//! `cryptgpu bench-gpu`: private inference and one training step of LeNet, AlexNet and VGG-16 with every kernel on
//! the CUDA backend (shares resident on the device), each measurement beside the GPU cost model's prediction for
//! the same launches, and the bytes that crossed between host and device. What `scripts/gpu-check.sh` runs.

use cryptgpu::codegen::cost::{device_like, Link};
use cryptgpu::deployment::ModelName;
use cryptgpu::runtime::backend::cuda::CudaBackend;
use cryptgpu::runtime::backend::Backend;
use cryptgpu::runtime::Fusion;
use cryptgpu::{kernel_tally, progress};
use std::sync::Arc;

use super::CmdResult;

/// `cryptgpu bench-gpu`'s options.
#[derive(clap::Args)]
pub struct BenchGpuArgs {
    /// GPUs: party i runs on the i-th of them (modulo their count); `0` puts the three parties on GPU 0, each with
    /// its own streams.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    devices: Vec<usize>,
    /// Models.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "lenet,alexnet,vgg16")]
    models: Vec<ModelName>,
    /// Batch size of the inference and of the training step.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Timed repetitions after one warm-up run (which compiles the kernels); the median is reported.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// One JSON record per measurement instead of the table.
    #[arg(long)]
    json: bool,
}

/// `cryptgpu bench-gpu`: the table (or JSON records).
pub fn run(a: BenchGpuArgs) -> CmdResult {
    let BenchGpuArgs { devices, models, batch, reps, json } = a;
    if reps == 0 {
        return Err("--reps must be at least 1".into());
    }
    let cuda = Arc::new(CudaBackend::on_devices(&devices)?);
    let device = device_like(cuda.device_name());
    let name = cuda.device_name().to_string();
    let gpu: Arc<dyn Backend> = cuda.clone();
    // Bytes every party's backend has moved between host and device so far.
    let moved = || -> u64 {
        (0..3).map(|id| cuda.traffic(id)).map(|t| t.uploaded_bytes + t.downloaded_bytes + t.constant_bytes).sum()
    };
    if !json {
        println!("CUDA backend on {name} (devices {devices:?}); predictions: the cost model's {}", device.name);
        println!(
            "| workload | measured (median of {reps}) | predicted kernels (all launches) | launches | host↔device MB | messages MB |"
        );
        println!("|---|---|---|---|---|---|");
    }
    for model in models {
        let graph = model.graph()?;
        for train in [false, true] {
            let what =
                format!("{} {} at batch {batch}", graph.name(), if train { "training step" } else { "inference" });
            let run = || {
                let backend = gpu.clone();
                if train {
                    kernel_tally::training_step_on(backend, &graph, batch, Fusion::On, device, Link::LAN_10G)
                } else {
                    kernel_tally::inference_on(backend, &graph, batch, Fusion::On, device, Link::LAN_10G)
                }
            };
            progress::during(format!("{what}: warm-up (compiles the kernels)"), run)?;
            let mut walls = Vec::with_capacity(reps);
            let mut last = None;
            let mut traffic = 0.0;
            for i in 0..reps {
                let before = moved();
                let r = progress::during(format!("{what}: run {} of {reps}", i + 1), run)?;
                traffic = (moved() - before) as f64 / 1e6;
                walls.push(r.wall.as_secs_f64());
                last = Some(r);
            }
            let r = last.ok_or("no run")?;
            walls.sort_by(f64::total_cmp);
            let measured = walls[walls.len() / 2];
            let predicted: f64 = r.kernels.iter().map(|k| k.seconds).sum();
            let messages = r.stats.total_bytes() as f64 / 1e6;
            if json {
                println!(
                    "{{\"workload\":\"{what}\",\"device\":\"{name}\",\"measured_s\":{measured},\"predicted_kernel_s\":{predicted},\"launches\":{},\"messages_mb\":{messages},\"host_device_mb\":{traffic}}}",
                    r.launches()
                );
            } else {
                println!(
                    "| {what} | {:.1} ms | {:.2} ms | {} | {traffic:.2} | {messages:.2} |",
                    1e3 * measured,
                    1e3 * predicted,
                    r.launches()
                );
            }
        }
    }
    Ok(())
}
