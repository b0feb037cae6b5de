//! A backend that records: [`RecordingBackend`] forwards every launch to another backend and keeps a copy of it
//! (kernel, inputs, parameters, streams and the outputs the inner backend produced). The CUDA verification replays
//! these launches, recorded from real protocol runs, under the CPU emulation of the emitted kernels
//! ([`RecordedLaunch::emulated`]) and compares the outputs bit for bit.

use super::observed::{Launch, Observed, Observer};
use super::Backend;
use crate::prg::Stream;
use crate::Result;
use cryptgpu_codegen::cuda::emulate::EmulatedLaunch;
use cryptgpu_codegen::cuda::{self, Arg, GemmPlan};
use cryptgpu_codegen::Kernel;
use std::sync::{Arc, Mutex, MutexGuard};

/// One successful launch, as the backend saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedLaunch {
    /// The kernel.
    pub kernel: Kernel,
    /// Input buffers (a gather's one input; a GEMM's A blocks, B blocks, then epilogue inputs).
    pub inputs: Vec<Vec<u64>>,
    /// Scalar parameters.
    pub params: Vec<u64>,
    /// PRF streams.
    pub streams: Vec<Stream>,
    /// Output buffers as the inner backend wrote them.
    pub outputs: Vec<Vec<u64>>,
}

impl RecordedLaunch {
    /// The same launch for the emitted CUDA kernel (GEMMs emitted under `plan`), ready for
    /// [`cryptgpu_codegen::cuda::emulate::emulate`]. Fails if `plan` cannot run the GEMM's inner dimension.
    pub fn emulated(&self, plan: GemmPlan) -> Result<EmulatedLaunch> {
        let kernel = cuda::emit(&self.kernel, plan)?;
        let elements = self.outputs.first().map_or(0, |o| o.len()) as u64;
        let scalars = kernel
            .args
            .iter()
            .filter_map(|a| match (*a, &self.kernel) {
                (Arg::Len, _) => Some(elements),
                (Arg::M, Kernel::Gemm(g)) => Some(g.m as u64),
                (Arg::N, Kernel::Gemm(g)) => Some(g.n as u64),
                (Arg::K(j), Kernel::Gemm(g)) => Some(g.k_blocks[j] as u64),
                (Arg::Param(i), _) => Some(self.params[i]),
                _ => None,
            })
            .collect();
        Ok(EmulatedLaunch {
            kernel,
            scalars,
            inputs: self.inputs.clone(),
            streams: stream_words(&self.streams),
            output_lens: self.outputs.iter().map(Vec::len).collect(),
        })
    }
}

/// The CUDA argument of `streams`: 11 `u32` words per stream, the key's 8 little-endian words then the nonce's 3.
pub fn stream_words(streams: &[Stream]) -> Vec<u32> {
    let word = |c: &[u8]| u32::from_le_bytes(c.try_into().expect("4 bytes"));
    streams.iter().flat_map(|s| s.key.0.chunks_exact(4).chain(s.nonce.chunks_exact(4)).map(word)).collect()
}

/// Keeps a copy of every launch it is shown: the observer of a [`RecordingBackend`].
#[derive(Debug, Default)]
pub struct Recorder {
    log: Mutex<Vec<RecordedLaunch>>,
}

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, Vec<RecordedLaunch>> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Observer for Recorder {
    fn observe(&self, l: &Launch<'_>) {
        self.lock().push(RecordedLaunch {
            kernel: l.kernel.to_kernel(),
            inputs: l.inputs.iter().map(|b| b.to_vec()).collect(),
            params: l.params.to_vec(),
            streams: l.streams.to_vec(),
            outputs: l.outputs.iter().map(|b| b.to_vec()).collect(),
        });
    }
}

/// Forwards every launch to an inner backend and records the successful ones.
pub type RecordingBackend = Observed<Arc<Recorder>>;

impl Observed<Arc<Recorder>> {
    /// Record the launches executed by `inner`.
    pub fn new(inner: Arc<dyn Backend>) -> RecordingBackend {
        Observed::with_observer(inner, Arc::new(Recorder::default()))
    }

    /// A copy of every launch recorded so far, in the order they finished.
    pub fn launches(&self) -> Vec<RecordedLaunch> {
        self.observer().lock().clone()
    }

    /// Every launch recorded so far, leaving the record empty.
    pub fn take(&self) -> Vec<RecordedLaunch> {
        std::mem::take(&mut *self.observer().lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::prg::{PrfKey, Purpose};
    use cryptgpu_codegen::MapBuilder;

    #[test]
    fn stream_words_are_the_little_endian_key_then_nonce() {
        let key: [u8; 32] = core::array::from_fn(|i| i as u8);
        let s = Stream::new(PrfKey(key), Purpose::TruncMask, 0x0102_0304_0506_0708);
        let w = stream_words(&[s, s]);
        assert_eq!(w.len(), 22);
        assert_eq!(w[0], 0x0302_0100);
        assert_eq!(w[7], 0x1f1e_1d1c);
        assert_eq!(&w[8..11], &[Purpose::TruncMask as u32, 0x0506_0708, 0x0102_0304]);
        assert_eq!(w[..11], w[11..]);
    }

    #[test]
    fn launches_are_forwarded_and_recorded() {
        let rec = RecordingBackend::new(Arc::new(CpuBackend));
        let mut b = MapBuilder::new("add_param");
        let (x, p) = (b.input(0), b.param(0));
        let y = b.add(x, p);
        b.output(y);
        let k = b.build();
        let mut out = crate::Buffer::from(vec![0u64; 3]);
        rec.map(&k, &[&vec![1, 2, 3].into()], &[10], &[], &mut [&mut out]).unwrap();
        assert_eq!(out[..], [11, 12, 13]);
        // A refused launch is not recorded.
        assert!(rec.map(&k, &[&vec![1, 2].into()], &[10], &[], &mut [&mut out]).is_err());
        let log = rec.take();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].outputs, vec![vec![11, 12, 13]]);
        assert_eq!(log[0].params, vec![10]);
        let e = log[0].emulated(GemmPlan::Native64).unwrap();
        assert_eq!((e.scalars.clone(), e.output_lens.clone()), (vec![3, 10], vec![3]));
        assert!(rec.launches().is_empty());
    }
}
