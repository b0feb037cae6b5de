//! The CPU backend: interprets IR kernels with rayon over cache-sized chunks; the ring GEMM uses an AVX2
//! micro-kernel chosen at run time.

mod bits;
mod gather;
pub mod gemm;
mod map;
mod ring_gemm;

use super::{Backend, Checked, Source};
use crate::buffer::Buffer;
use crate::prg::Stream;
use crate::Result;
use cryptgpu_codegen::{BitKernel, GatherKernel, GemmKernel, MapKernel};

/// Executes kernels on the host CPU.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuBackend;

/// The host words of `inputs` (downloaded, should one be in a device's memory).
fn host_inputs<'a>(inputs: &[&'a Buffer]) -> Result<Vec<&'a [u64]>> {
    inputs.iter().map(|b| b.host()).collect()
}

/// The host words of `outputs`, to write.
fn host_outputs<'a>(outputs: &'a mut [&mut Buffer]) -> Vec<&'a mut [u64]> {
    outputs.iter_mut().map(|b| &mut ***b).collect()
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn run_map(
        &self,
        checked: Checked,
        k: &MapKernel,
        inputs: &[&Buffer],
        params: &[u64],
        streams: &[Stream],
        outputs: &mut [&mut Buffer],
    ) -> Result<()> {
        self.map_slices(checked, k, &host_inputs(inputs)?, params, streams, &mut host_outputs(outputs))
    }

    fn run_map_updating(
        &self,
        checked: Checked,
        k: &MapKernel,
        inputs: &[Source<'_>],
        params: &[u64],
        streams: &[Stream],
        outputs: &mut [&mut Buffer],
    ) -> Result<()> {
        let bufs: Vec<&[u64]> = inputs.iter().map(|s| Ok(s.host()?.unwrap_or(&[]))).collect::<Result<_>>()?;
        self.map_updating_slices(checked, k, inputs, &bufs, params, streams, &mut host_outputs(outputs))
    }

    fn run_gemm(
        &self,
        checked: Checked,
        k: &GemmKernel,
        inputs: &[&Buffer],
        params: &[u64],
        streams: &[Stream],
        outputs: &mut [&mut Buffer],
    ) -> Result<()> {
        self.gemm_slices(checked, k, &host_inputs(inputs)?, params, streams, &mut host_outputs(outputs))
    }

    fn run_gather(&self, checked: Checked, k: &GatherKernel, input: &Buffer, output: &mut Buffer) -> Result<()> {
        self.gather_slices(checked, k, input.host()?, output)
    }

    fn run_bits(&self, checked: Checked, k: &BitKernel, input: &Buffer, output: &mut Buffer) -> Result<()> {
        self.bits_slices(checked, k, input.host()?, output)
    }
}

/// The CPU backend's kernels on host slices (what [`Backend`]'s methods run on the buffers' host words; the counting
/// backend runs them on its simulated device memory).
impl CpuBackend {
    /// A checked map.
    pub fn map_slices(
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

    /// A checked map updating its outputs in place: `bufs[i]` the words of `inputs[i]` when it is a buffer.
    #[allow(clippy::too_many_arguments)]
    pub fn map_updating_slices(
        &self,
        _: Checked,
        k: &MapKernel,
        inputs: &[Source<'_>],
        bufs: &[&[u64]],
        params: &[u64],
        streams: &[Stream],
        outputs: &mut [&mut [u64]],
    ) -> Result<()> {
        // In place: chunk by chunk, each prior input is copied out of its output before the chunk is written.
        let priors: Vec<Option<usize>> =
            inputs.iter().map(|s| if let Source::Prior(j) = *s { Some(j) } else { None }).collect();
        let ops = map::Operands { inputs: bufs, params, streams, acc: None, n_cols: 1, elements: 0, priors: &priors };
        map::run(k, &ops, outputs);
        Ok(())
    }

    /// A checked GEMM.
    pub fn gemm_slices(
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

    /// A checked gather.
    pub fn gather_slices(&self, _: Checked, k: &GatherKernel, input: &[u64], output: &mut [u64]) -> Result<()> {
        gather::run(k, input, output);
        Ok(())
    }

    /// A checked bit transpose.
    pub fn bits_slices(&self, _: Checked, k: &BitKernel, input: &[u64], output: &mut [u64]) -> Result<()> {
        bits::run(k, input, output);
        Ok(())
    }
}
