//! The CPU backend: interprets IR kernels with rayon over cache-sized chunks; the ring GEMM uses an AVX2
//! micro-kernel chosen at run time.

mod bits;
mod gather;
pub mod gemm;
mod map;
mod ring_gemm;

use super::{Backend, Checked, Source};
use crate::prg::Stream;
use crate::Result;
use cryptgpu_codegen::{BitKernel, GatherKernel, GemmKernel, MapKernel};

/// Executes kernels on the host CPU.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuBackend;

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn run_map(
        &self,
        _: Checked,
        k: &MapKernel,
        inputs: &[&[u64]],
        params: &[u64],
        streams: &[Stream],
        outputs: &mut [&mut [u64]],
    ) -> Result<()> {
        map::run(
            k,
            &map::Operands { inputs, params, streams, acc: None, n_cols: 1, elements: 0, priors: &[] },
            outputs,
        );
        Ok(())
    }

    fn run_map_updating(
        &self,
        _: Checked,
        k: &MapKernel,
        inputs: &[Source<'_>],
        params: &[u64],
        streams: &[Stream],
        outputs: &mut [&mut [u64]],
    ) -> Result<()> {
        // In place: chunk by chunk, each prior input is copied out of its output before the chunk is written.
        let priors: Vec<Option<usize>> =
            inputs.iter().map(|s| if let Source::Prior(j) = *s { Some(j) } else { None }).collect();
        let bufs: Vec<&[u64]> = inputs.iter().map(|s| if let Source::Buf(b) = *s { b } else { &[] }).collect();
        let ops = map::Operands { inputs: &bufs, params, streams, acc: None, n_cols: 1, elements: 0, priors: &priors };
        map::run(k, &ops, outputs);
        Ok(())
    }

    fn run_gemm(
        &self,
        _: Checked,
        k: &GemmKernel,
        inputs: &[&[u64]],
        params: &[u64],
        streams: &[Stream],
        outputs: &mut [&mut [u64]],
    ) -> Result<()> {
        let blocks = k.k_blocks.len();
        let acc = gemm::block_gemm(k.m, k.n, &inputs[..blocks], &inputs[blocks..2 * blocks]);
        let ops = map::Operands {
            inputs: &inputs[2 * blocks..],
            params,
            streams,
            acc: Some(&acc),
            n_cols: k.n.max(1),
            elements: 0,
            priors: &[],
        };
        map::run(&k.epilogue, &ops, outputs);
        gemm::give_back(acc);
        Ok(())
    }

    fn run_gather(&self, _: Checked, k: &GatherKernel, input: &[u64], output: &mut [u64]) -> Result<()> {
        gather::run(k, input, output);
        Ok(())
    }

    fn run_bits(&self, _: Checked, k: &BitKernel, input: &[u64], output: &mut [u64]) -> Result<()> {
        bits::run(k, input, output);
        Ok(())
    }
}
