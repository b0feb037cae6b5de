//! Launches recorded on the CPU backend for the CUDA checks (`cuda_emulation.rs` replays them under the emulation
//! of the emitted source, `nvrtc.rs` on a real GPU when there is one): every catalogue kernel on fresh random inputs,
//! and the launches of real private runs.
#![allow(dead_code)]

use cryptgpu_codegen::cuda::GemmPlan;
use cryptgpu_codegen::Kernel;
use cryptgpu_runtime::backend::cpu::CpuBackend;
use cryptgpu_runtime::backend::recording::{RecordedLaunch, RecordingBackend};
use cryptgpu_runtime::backend::Backend;
use cryptgpu_runtime::prg::{PrfKey, Stream};
use cryptgpu_runtime::{Buffer, Config, Session};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use std::sync::Arc;

/// A reproducible generator whose seed is printed (a failing run can be replayed with `EMU_SEED=…`).
pub fn rng() -> StdRng {
    let seed = std::env::var("EMU_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random::<u64>);
    eprintln!("EMU_SEED={seed}");
    StdRng::seed_from_u64(seed)
}

pub fn words(rng: &mut StdRng, n: usize) -> Vec<u64> {
    (0..n).map(|_| rng.next_u64()).collect()
}

pub fn random_stream(rng: &mut StdRng) -> Stream {
    let mut s = Stream { key: PrfKey([0; 32]), nonce: [0; 12] };
    rng.fill_bytes(&mut s.key.0);
    rng.fill_bytes(&mut s.nonce);
    s
}

/// A positive divisor of random magnitude (1 to 2^63 − 1).
pub fn divisor(rng: &mut StdRng) -> u64 {
    let bits = rng.gen_range(1..=63);
    rng.gen_range(1..=(u64::MAX >> (64 - bits)))
}

/// Launch `kernel` on `backend` with fresh random inputs, parameters and streams.
pub fn launch_random(backend: &dyn Backend, kernel: &Kernel, rng: &mut StdRng) {
    match kernel {
        Kernel::Map(k) => {
            let n = 1000;
            let inputs: Vec<Buffer> =
                (0..k.inputs).map(|i| words(rng, k.input_len(i, n).unwrap_or(n)).into()).collect();
            let params: Vec<u64> = (0..k.params).map(|_| divisor(rng)).collect();
            let streams: Vec<Stream> = (0..k.prg_streams).map(|_| random_stream(rng)).collect();
            let mut outs: Vec<Buffer> = (0..k.outputs.len()).map(|_| vec![0u64; n].into()).collect();
            let ins: Vec<&Buffer> = inputs.iter().collect();
            let mut o: Vec<&mut Buffer> = outs.iter_mut().collect();
            backend.map(k, &ins, &params, &streams, &mut o).unwrap();
        }
        Kernel::Gemm(k) => {
            let inputs: Vec<Buffer> = k.input_lens().iter().map(|l| words(rng, l.unwrap_or(0)).into()).collect();
            let params: Vec<u64> = (0..k.epilogue.params).map(|_| divisor(rng)).collect();
            let streams: Vec<Stream> = (0..k.epilogue.prg_streams).map(|_| random_stream(rng)).collect();
            let mut outs: Vec<Buffer> = (0..k.epilogue.outputs.len()).map(|_| vec![0u64; k.m * k.n].into()).collect();
            let ins: Vec<&Buffer> = inputs.iter().collect();
            let mut o: Vec<&mut Buffer> = outs.iter_mut().collect();
            backend.gemm(k, &ins, &params, &streams, &mut o).unwrap();
        }
        Kernel::Gather(k) => {
            let input: Buffer = words(rng, k.in_len()).into();
            let mut out: Buffer = vec![0u64; k.out_len()].into();
            backend.gather(k, &input, &mut out).unwrap();
        }
        Kernel::Bits(k) => {
            let input: Buffer = words(rng, k.in_len()).into();
            let mut out: Buffer = vec![0u64; k.out_len()].into();
            backend.bits(k, &input, &mut out).unwrap();
        }
    }
}

/// Every launch of `f` run on a recording CPU backend, each GEMM under the plan the CUDA backend picks for it.
pub fn recorded_run(f: impl FnOnce(&Session)) -> Planned {
    let rec = Arc::new(RecordingBackend::new(Arc::new(CpuBackend)));
    let session = Session::with_backend(Config::default(), rec.clone()).unwrap();
    f(&session);
    rec.take()
        .into_iter()
        .map(|r| {
            let plan = match &r.kernel {
                Kernel::Gemm(g) => GemmPlan::for_k(g.k()),
                _ => GemmPlan::Native64,
            };
            (r, plan)
        })
        .collect()
}

/// Recorded launches, each with the GEMM plan to replay it under.
pub type Planned = Vec<(RecordedLaunch, GemmPlan)>;

/// The launches of a private LeNet inference (batch 1) and of one training step (batch 2), recorded on the CPU
/// backend through the buffer API, each GEMM under the plan the CUDA backend picks for it.
pub fn lenet_runs() -> (Planned, Planned) {
    use cryptgpu_dsl::{models, Params, Tensor as DslTensor};
    use cryptgpu_runtime::executor::{Executor, RangeCheck, Roles};
    use cryptgpu_runtime::training::{TrainConfig, Trainer};
    let graph = models::lenet(models::Pooling::Avg).unwrap();
    let params = Params::kaiming(&graph, &mut StdRng::seed_from_u64(1));
    let x = |n: usize| DslTensor::uniform(&[n, 1, 28, 28], -1.0, 1.0, &mut StdRng::seed_from_u64(2));
    let inference = recorded_run(|s| {
        let roles = Roles { model_owner: 1, data_owner: 0, receiver: 0 };
        let ex = Executor::new(graph.clone(), roles).unwrap().with_range_check(RangeCheck::Off);
        ex.infer(s, &params, &x(1)).unwrap();
    });
    let training = recorded_run(|s| {
        let roles = Roles { model_owner: 1, data_owner: 0, receiver: 1 };
        let trainer = Trainer::new(graph.clone(), roles, TrainConfig::new(0.01)).unwrap();
        trainer.train(s, &params, &[(x(2), vec![3, 7])]).unwrap();
    });
    (inference, training)
}
