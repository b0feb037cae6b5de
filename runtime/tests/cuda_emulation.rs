//! The exact emitted CUDA source, run on the CPU under the emulation header (`cryptgpu_codegen::cuda::emulate`),
//! against the CPU backend, bit for bit: every kernel of the catalogue on fresh random inputs, every kernel that real
//! protocol runs launch (replayed from a [`RecordingBackend`]), and a kernel with a shared-memory bug that only the
//! emulation's poisoning exposes. Each test compiles one translation unit (needs `g++`, or `$CXX`).

mod common;
use common::recorded::{self, launch_random, random_stream, rng};

use cryptgpu_codegen::cuda::emulate::{emulate, EmulatedLaunch, POISON_WORD};
use cryptgpu_codegen::cuda::{catalogue, prelude::PRELUDE, Arg, CudaKernel, GemmPlan, Launch};
use cryptgpu_codegen::Kernel;
use cryptgpu_runtime::backend::cpu::CpuBackend;
use cryptgpu_runtime::backend::recording::{RecordedLaunch, RecordingBackend};
use cryptgpu_runtime::prg::Stream;
use cryptgpu_runtime::protocols::ZeroKind;
use cryptgpu_runtime::{Config, Conv2dParams, RingTensor, Session};
use rand::Rng;
use std::sync::Arc;

/// Replay `recorded` (each under its plans) in one emulated run and assert every output equals the recorded one.
/// Returns how many launches ran.
fn replay_and_compare(recorded: &[(RecordedLaunch, GemmPlan)]) -> usize {
    let launches: Vec<EmulatedLaunch> = recorded.iter().map(|(r, plan)| r.emulated(*plan).unwrap()).collect();
    let got = emulate(&launches).unwrap_or_else(|e| panic!("{e}"));
    let mut failures = Vec::new();
    for ((rec, plan), outs) in recorded.iter().zip(&got) {
        assert_eq!(outs.len(), rec.outputs.len());
        for (j, (want, got)) in rec.outputs.iter().zip(outs).enumerate() {
            assert_eq!(want.len(), got.len());
            let bad: Vec<usize> = (0..want.len()).filter(|&e| want[e] != got[e]).collect();
            if let Some(&e) = bad.first() {
                failures.push(format!(
                    "{} ({plan:?}) output {j}: {} of {} elements differ; first at {e}: cpu {:#018x}, emulated cuda {:#018x}",
                    rec.kernel.name(),
                    bad.len(),
                    want.len(),
                    want[e],
                    got[e],
                ));
            }
        }
    }
    assert!(failures.is_empty(), "emulated CUDA differs from the CPU backend:\n{}", failures.join("\n"));
    recorded.len()
}

#[test]
fn every_catalogue_kernel_matches_the_cpu_backend() {
    let mut rng = rng();
    let rec = RecordingBackend::new(Arc::new(CpuBackend));
    let kernels = catalogue::kernels().unwrap();
    for (k, _) in &kernels {
        launch_random(&rec, k, &mut rng);
    }
    let recorded: Vec<(RecordedLaunch, GemmPlan)> =
        rec.take().into_iter().zip(&kernels).map(|(r, (k, plan))| (assert_same(r, k), *plan)).collect();
    assert!(recorded.iter().any(|(r, p)| matches!(r.kernel, Kernel::Gemm(_)) && *p == GemmPlan::F64Limbs16));
    assert_eq!(replay_and_compare(&recorded), kernels.len());
}

fn assert_same(r: RecordedLaunch, k: &Kernel) -> RecordedLaunch {
    assert_eq!(&r.kernel, k, "launches are recorded in order");
    r
}

#[test]
fn every_kernel_of_real_protocol_runs_matches_the_cpu_backend() {
    let mut rng = rng();
    let rec = Arc::new(RecordingBackend::new(Arc::new(CpuBackend)));
    let session = Session::with_backend(Config::default(), rec.clone()).unwrap();
    let t = session.fixed().frac_bits();
    // Fixed-point values of magnitude below 2^8 (the protocols' results stay meaningful; the replay compares the
    // kernels' raw outputs anyway).
    let mut fixed = |shape: &[usize]| {
        let n: usize = shape.iter().product();
        RingTensor::new(shape, (0..n).map(|_| rng.gen_range(-(1i64 << (t + 8))..(1i64 << (t + 8))) as u64).collect())
            .unwrap()
    };
    let (a, b) = (fixed(&[4, 5]), fixed(&[4, 5]));
    let (x, y) = (fixed(&[3, 7]), fixed(&[7, 5]));
    let (img, w, bias) = (fixed(&[2, 2, 6, 6]), fixed(&[3, 2, 3, 3]), fixed(&[3]));
    let mine = |p: &cryptgpu_runtime::Party, owner: usize, v: &RingTensor| (p.id() == owner).then_some(v).cloned();
    let out = session
        .run(|p| {
            let av = mine(p, 0, &a);
            let asr = p.share(0, av.as_ref(), a.shape())?;
            let bs = p.share(1, mine(p, 1, &b).as_ref(), b.shape())?;
            let sum = p.add(&asr, &bs)?;
            let prod = p.mul(&asr, &bs)?;
            let ring = p.mul_ring(&asr, &bs)?;
            let xs = p.share(2, mine(p, 2, &x).as_ref(), x.shape())?;
            let ys = p.share(0, mine(p, 0, &y).as_ref(), y.shape())?;
            let mm = p.matmul(&xs, &ys)?;
            let is = p.share(0, mine(p, 0, &img).as_ref(), img.shape())?;
            let ws = p.share(1, mine(p, 1, &w).as_ref(), w.shape())?;
            let bis = p.share(1, mine(p, 1, &bias).as_ref(), bias.shape())?;
            let conv = p.conv2d(&is, &ws, Some(&bis), Conv2dParams { stride: 2, padding: 1 })?;
            let pool_prm = Conv2dParams { stride: 1, padding: 1 };
            let sp = p.sum_pool2d(&is, [3, 3], pool_prm)?;
            let ap = p.avg_pool2d(&is, [3, 3], pool_prm)?;
            let dv = p.div_public(&asr, 7)?;
            let tr = p.truncate(&asr, 5)?;
            let za = p.zero_share(ZeroKind::Arithmetic, 100)?;
            let zb = p.zero_share(ZeroKind::Binary, 100)?;
            let opened = [&sum, &prod, &ring, &mm, &conv, &sp, &ap, &dv, &tr].map(|s| p.reveal(s));
            let opened = opened.into_iter().collect::<cryptgpu_runtime::Result<Vec<_>>>()?;
            Ok((opened, za, zb))
        })
        .unwrap();
    // The protocols worked (sanity: the recorded run is a real one).
    let sum: Vec<u64> = a.data().iter().zip(b.data()).map(|(p, q)| p.wrapping_add(*q)).collect();
    assert_eq!(out[0].0[0].data(), &sum[..]);
    assert!((0..100).all(|e| out[0].1[e].wrapping_add(out[1].1[e]).wrapping_add(out[2].1[e]) == 0));
    assert!((0..100).all(|e| out[0].2[e] ^ out[1].2[e] ^ out[2].2[e] == 0));

    let recorded = rec.take();
    let families = |f: fn(&Kernel) -> bool| recorded.iter().filter(|r| f(&r.kernel)).count();
    assert!(families(|k| matches!(k, Kernel::Map(_))) > 0, "maps recorded");
    assert!(families(|k| matches!(k, Kernel::Gemm(_))) > 0, "GEMMs recorded");
    assert!(families(|k| matches!(k, Kernel::Gather(_))) > 0, "gathers recorded");
    // Every launch; GEMMs under every plan exact for their inner dimension.
    let mut plans = Vec::new();
    for r in recorded {
        match &r.kernel {
            Kernel::Gemm(g) => {
                for plan in GemmPlan::ALL.into_iter().filter(|p| p.check(&g.name, g.k()).is_ok()) {
                    plans.push((r.clone(), plan));
                }
            }
            _ => plans.push((r, GemmPlan::Native64)),
        }
    }
    let mut names: Vec<String> = plans.iter().map(|(r, p)| format!("{} ({p:?})", r.kernel.name())).collect();
    names.sort();
    names.dedup();
    eprintln!("replaying {} launches of: {}", plans.len(), names.join(", "));
    let ran = replay_and_compare(&plans);
    assert!(ran >= 3 * 12, "{ran} launches replayed");
}

/// Reverse every 64-element tile of `in0` through shared memory. `load` is the statement that fills the tile.
fn reverse_tiles(entry: &str, load: &str) -> CudaKernel {
    let args = vec![Arg::Len, Arg::Input(0), Arg::Output(0)];
    let source = format!(
        "{PRELUDE}\nextern \"C\" __global__ void {entry}(u64 n, const u64* __restrict__ in0, u64* __restrict__ out0) {{\n\
         \x20   CG_SHARED(u64, tile, 64);\n\
         \x20   const unsigned t = threadIdx.x;\n\
         \x20   const u64 e = (u64)blockIdx.x * 64ull + t;\n\
         \x20   {load}\n\
         \x20   __syncthreads();\n\
         \x20   if (e < n) out0[e] = tile[63u - t];\n\
         }}\n"
    );
    CudaKernel { entry: entry.into(), source, args, launch: Launch::Elements { elements: None, threads: 64 } }
}

#[test]
fn the_emulation_exposes_reads_of_shared_memory_before_any_write() {
    let n = 100usize; // two blocks of 64 threads; the second block's tile is only partly loaded
    let input: Vec<u64> = (0..n as u64).map(|i| 1000 + i).collect();
    let launch = |kernel| EmulatedLaunch {
        kernel,
        scalars: vec![n as u64],
        inputs: vec![input.clone()],
        streams: vec![],
        output_lens: vec![n],
    };
    // Correct: the tail tile is padded with zeros. Buggy: the tail tile's unloaded slots are never written, so the
    // tail reads whatever shared memory holds: on a GPU, garbage; with a plain static array, block 0's values.
    let correct = reverse_tiles("reverse_padded", "tile[t] = (e < n) ? in0[e] : 0ull;");
    let buggy = reverse_tiles("reverse_unpadded", "if (e < n) tile[t] = in0[e];");
    let out = emulate(&[launch(correct), launch(buggy)]).unwrap_or_else(|e| panic!("{e}"));
    let (good, bad) = (&out[0][0], &out[1][0]);
    let tile_value = |e: usize| {
        let src = e / 64 * 64 + (63 - e % 64);
        if src < n {
            input[src]
        } else {
            0
        }
    };
    for e in 0..n {
        assert_eq!(good[e], tile_value(e), "correct kernel, element {e}");
        if e / 64 * 64 + (63 - e % 64) < n {
            assert_eq!(bad[e], tile_value(e), "buggy kernel, loaded slot, element {e}");
        } else {
            // The slot was written by block 0 (stale value 1000 + 63 - t): the block-start poisoning replaced it.
            assert_eq!(bad[e], POISON_WORD, "buggy kernel, unloaded slot, element {e}");
        }
    }
    assert_ne!(good, bad, "the bug is visible in the output");
}

/// `out0[e] = cg_prg_word(streams + 11·(e mod p0), in0[e])` (`p0` streams): the emitted PRF word at arbitrary word indices.
fn prg_at() -> CudaKernel {
    let args = vec![Arg::Len, Arg::Param(0), Arg::Input(0), Arg::Output(0), Arg::Streams];
    let source = format!(
        "{PRELUDE}\nextern \"C\" __global__ void prg_at(u64 n, u64 p0, const u64* __restrict__ in0, \
         u64* __restrict__ out0, const u32* __restrict__ streams) {{\n\
         \x20   for (u64 e = (u64)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (u64)gridDim.x * blockDim.x)\n\
         \x20       out0[e] = cg_prg_word(streams + 11 * (e % p0), in0[e]);\n\
         }}\n"
    );
    CudaKernel { entry: "prg_at".into(), source, args, launch: Launch::Elements { elements: None, threads: 64 } }
}

#[test]
fn the_emitted_prf_matches_the_runtime_streams_at_random_word_indices() {
    let mut rng = rng();
    let streams: Vec<Stream> = (0..7).map(|_| random_stream(&mut rng)).collect();
    let last = cryptgpu_runtime::prg::MAX_STREAM_WORDS - 1;
    // Random indices over the whole stream, both halves of a block, and the first and last words.
    let mut indices: Vec<u64> = (0..1000).map(|_| rng.gen_range(0..=last)).collect();
    indices.extend([0, 1, 2, 3, last - 1, last, 2 * 0xccdd_eeff, 2 * 0xccdd_eeff + 1]);
    let expect: Vec<u64> = indices
        .iter()
        .enumerate()
        .map(|(e, &i)| {
            let mut w = [0u64];
            streams[e % streams.len()].fill(i, &mut w);
            w[0]
        })
        .collect();
    let launch = EmulatedLaunch {
        kernel: prg_at(),
        scalars: vec![indices.len() as u64, streams.len() as u64],
        inputs: vec![indices.clone()],
        streams: cryptgpu_runtime::backend::recording::stream_words(&streams),
        output_lens: vec![indices.len()],
    };
    let got = emulate(&[launch]).unwrap_or_else(|e| panic!("{e}")).remove(0).remove(0);
    for (e, (g, x)) in got.iter().zip(&expect).enumerate() {
        assert_eq!(g, x, "word {} of stream {}", indices[e], e % streams.len());
    }
}

#[test]
fn every_kernel_of_a_lenet_inference_and_training_step_matches_the_cpu_backend() {
    let (inference, training) = recorded::lenet_runs();
    let (all_inference, all_training) = (inference.len(), training.len());
    // Every distinct kernel (a GEMM of another shape is another kernel) once, at its first launch's real data.
    let mut seen = std::collections::HashSet::new();
    let mut distinct = |runs: Vec<(RecordedLaunch, GemmPlan)>| -> Vec<(RecordedLaunch, GemmPlan)> {
        runs.into_iter().filter(|(l, _)| seen.insert(l.kernel.clone())).collect()
    };
    let (inference, training) = (distinct(inference), distinct(training));
    eprintln!(
        "LeNet inference: {all_inference} launches of {} distinct kernels; training step: {all_training} launches, \
         {} more distinct kernels",
        inference.len(),
        training.len()
    );
    assert!(all_inference > 300 && all_training > all_inference && inference.len() > 20 && !training.is_empty());
    assert_eq!(replay_and_compare(&inference), inference.len());
    assert_eq!(replay_and_compare(&training), training.len());
}
