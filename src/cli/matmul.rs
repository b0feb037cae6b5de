//! `cryptgpu matmul`: a private n×n×n matrix product among three in-process parties on the CPU or CUDA backend.

use cryptgpu::{workloads, Config, Session};

use super::{BackendKind, CmdResult};

/// `cryptgpu matmul`'s options.
#[derive(clap::Args)]
pub struct MatmulArgs {
    /// Matrix size.
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Fractional bits.
    #[arg(long, default_value_t = 20)]
    frac_bits: u32,
    /// Where each party's kernels run.
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
    backend: BackendKind,
    /// With `--backend cuda`: party i on the i-th of these GPUs (modulo their count), e.g. `0,1,2`.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    devices: Vec<usize>,
}

/// `cryptgpu matmul`: the product, checked against the plaintext product.
pub fn run(a: MatmulArgs) -> CmdResult {
    let MatmulArgs { size, frac_bits, backend, devices } = a;
    let config = Config { frac_bits, ..Config::default() };
    let session = match backend {
        BackendKind::Cpu => Session::new(config)?,
        BackendKind::Cuda => {
            let gpu = cryptgpu::runtime::backend::cuda::CudaBackend::on_devices(&devices)?;
            Session::with_backend(config, std::sync::Arc::new(gpu))?
        }
    };
    println!("private matmul {size}×{size}×{size}: A owned by party 0, B by party 1, t = {frac_bits}");
    println!("{}", workloads::matmul(&session, size, size, size, &mut rand::thread_rng())?);
    Ok(())
}
