//! Counting host↔device traffic without a GPU: [`CountingBackend`] runs every kernel on the CPU, but keeps the
//! buffers it computes in a simulated device memory and moves words between that memory and the host under the
//! CUDA backend's rules ([`super::cuda`]):
//!
//! - a kernel reads its inputs from device memory; an input that is only on the host is uploaded first, and its
//!   device copy stays with the buffer (a weight is uploaded once, however often it is used);
//! - a kernel writes its outputs to device memory only ([`Backend::output`]);
//! - words reach the host only when something reads them there ([`crate::buffer::Buffer::host`]): a message being
//!   sent, a reveal, a protocol step computing on the host.
//!
//! Each upload and download is counted per party ([`Traffic`]), so a test can assert on any machine that a private
//! run moves nothing between host and device but its messages, its inputs and its results.

use super::cpu::CpuBackend;
use super::{Backend, Checked, Source};
use crate::buffer::{Buffer, DeviceMemory};
use crate::prg::Stream;
use crate::{Error, PartyId, Result};
use cryptgpu_codegen::{BitKernel, GatherKernel, GemmKernel, MapKernel};
use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Words moved between one party's host and its (simulated) device.
#[derive(Debug, Default)]
pub struct Traffic {
    uploaded: AtomicU64,
    downloaded: AtomicU64,
    uploads: AtomicU64,
    downloads: AtomicU64,
    constants: AtomicU64,
}

/// A snapshot of [`Traffic`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficCounts {
    /// Bytes copied host → device.
    pub uploaded_bytes: u64,
    /// Bytes copied device → host.
    pub downloaded_bytes: u64,
    /// Host → device copies.
    pub uploads: u64,
    /// Device → host copies.
    pub downloads: u64,
    /// Bytes of public protocol constants copied host → device ([`Backend::constant`]), not in `uploaded_bytes`.
    pub constant_bytes: u64,
}

impl Traffic {
    pub(crate) fn upload(&self, words: usize) {
        self.uploaded.fetch_add(8 * words as u64, Relaxed);
        self.uploads.fetch_add(1, Relaxed);
    }

    pub(crate) fn download(&self, words: usize) {
        self.downloaded.fetch_add(8 * words as u64, Relaxed);
        self.downloads.fetch_add(1, Relaxed);
    }

    pub(crate) fn constant(&self, words: usize) {
        self.constants.fetch_add(8 * words as u64, Relaxed);
    }

    /// The counts so far.
    pub fn counts(&self) -> TrafficCounts {
        TrafficCounts {
            uploaded_bytes: self.uploaded.load(Relaxed),
            downloaded_bytes: self.downloaded.load(Relaxed),
            uploads: self.uploads.load(Relaxed),
            downloads: self.downloads.load(Relaxed),
            constant_bytes: self.constants.load(Relaxed),
        }
    }
}

/// The simulated device memory: host words that only the counting backend reads and writes directly.
struct SimMemory {
    words: Vec<u64>,
    traffic: Arc<Traffic>,
}

impl DeviceMemory for SimMemory {
    fn len(&self) -> usize {
        self.words.len()
    }
    fn download(&self) -> Result<Vec<u64>> {
        self.traffic.download(self.words.len());
        Ok(self.words.clone())
    }
    fn duplicate(&self) -> Result<Box<dyn DeviceMemory>> {
        Ok(Box::new(SimMemory { words: self.words.clone(), traffic: self.traffic.clone() }))
    }
    fn assemble(&self, parts: &[(&Buffer, std::ops::Range<usize>)]) -> Result<Box<dyn DeviceMemory>> {
        let mut words = Vec::with_capacity(parts.iter().map(|(_, r)| r.len()).sum());
        for (b, r) in parts {
            let d = b.device_or_upload(|host| {
                self.traffic.upload(host.len());
                Ok(Box::new(SimMemory { words: host.to_vec(), traffic: self.traffic.clone() }))
            })?;
            words.extend_from_slice(&sim(d)?.words[r.clone()]);
        }
        Ok(Box::new(SimMemory { words, traffic: self.traffic.clone() }))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Runs kernels on the CPU over a simulated device memory, counting host↔device traffic per party (see the
/// [module documentation](self)). One instance is shared by a session's parties; each party gets its own view
/// through [`Backend::for_party`], counting into its own [`Traffic`].
#[derive(Debug, Clone, Default)]
pub struct CountingBackend {
    parties: Arc<[Arc<Traffic>; 3]>,
    /// The party this view counts for (`None`: the shared instance, which counts as party 0).
    party: Option<PartyId>,
}

impl CountingBackend {
    /// A counting backend with every count at zero.
    pub fn new() -> CountingBackend {
        CountingBackend::default()
    }

    /// Party `id`'s traffic so far.
    pub fn traffic(&self, id: PartyId) -> TrafficCounts {
        self.parties[id % 3].counts()
    }

    fn mine(&self) -> &Arc<Traffic> {
        &self.parties[self.party.unwrap_or(0)]
    }

    /// The simulated device words of `b`, uploading it first when it is only on the host.
    fn device<'a>(&self, b: &'a Buffer) -> Result<&'a [u64]> {
        let traffic = self.mine().clone();
        let d = b.device_or_upload(|host| {
            traffic.upload(host.len());
            Ok(Box::new(SimMemory { words: host.to_vec(), traffic }))
        })?;
        sim(d).map(|m| m.words.as_slice())
    }

    /// The simulated device words of an output to write: its present device words when `keep` (a prior input,
    /// uploaded first if only on the host), else fresh ones.
    fn device_out<'a>(&self, b: &'a mut Buffer, keep: bool) -> Result<&'a mut [u64]> {
        if keep {
            self.device(b)?;
        } else if !b.device().is_some_and(|d| d.as_any().is::<SimMemory>()) {
            b.set_device(Box::new(SimMemory { words: vec![0; b.len()], traffic: self.mine().clone() }));
        }
        let d = b.device_mut().ok_or_else(|| Error::Internal("an output without device memory".into()))?;
        let len = d.len();
        d.as_any_mut().downcast_mut::<SimMemory>().map(|m| m.words.as_mut_slice()).ok_or_else(|| foreign(len))
    }

    /// The simulated device words of a launch's inputs (uploaded if need be) and fresh ones for its outputs.
    #[allow(clippy::type_complexity)]
    fn operands<'a>(
        &self,
        inputs: &[&'a Buffer],
        outputs: &'a mut [&mut Buffer],
    ) -> Result<(Vec<&'a [u64]>, Vec<&'a mut [u64]>)> {
        let ins = inputs.iter().map(|b| self.device(b)).collect::<Result<_>>()?;
        let outs = outputs.iter_mut().map(|b| self.device_out(b, false)).collect::<Result<_>>()?;
        Ok((ins, outs))
    }
}

fn sim(d: &dyn DeviceMemory) -> Result<&SimMemory> {
    d.as_any().downcast_ref::<SimMemory>().ok_or_else(|| foreign(d.len()))
}

fn foreign(len: usize) -> Error {
    crate::buffer::foreign(len, "counting")
}

impl Backend for CountingBackend {
    fn name(&self) -> &'static str {
        "counting"
    }

    fn output(&self, n: usize) -> Result<Option<Buffer>> {
        Ok(Some(Buffer::from_device(Box::new(SimMemory { words: vec![0; n], traffic: self.mine().clone() }))))
    }

    fn adopt(&self, b: &Buffer) -> Result<()> {
        self.device(b).map(drop)
    }

    /// As the CUDA backend: the stage plans take their device order here too, so it is tested on every machine.
    fn queues_launches(&self) -> bool {
        true
    }

    fn constant(&self, words: &[u64]) -> Result<Buffer> {
        self.mine().constant(words.len());
        Ok(Buffer::from_device(Box::new(SimMemory { words: words.to_vec(), traffic: self.mine().clone() })))
    }

    fn for_party(&self, id: PartyId) -> Result<Option<Arc<dyn Backend>>> {
        Ok(Some(Arc::new(CountingBackend { parties: self.parties.clone(), party: Some(id % 3) })))
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
        let (ins, mut outs) = self.operands(inputs, outputs)?;
        CpuBackend.map_slices(checked, k, &ins, params, streams, &mut outs)
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
        let bufs: Vec<&[u64]> = inputs
            .iter()
            .map(|s| match s {
                Source::Buf(b) => self.device(b),
                Source::Range(b, r) => Ok(&self.device(b)?[r.clone()]),
                Source::Prior(_) => Ok(&[][..]),
            })
            .collect::<Result<_>>()?;
        let kept: Vec<bool> =
            (0..outputs.len()).map(|j| inputs.iter().any(|s| matches!(*s, Source::Prior(i) if i == j))).collect();
        let mut outs: Vec<&mut [u64]> =
            outputs.iter_mut().zip(kept).map(|(b, keep)| self.device_out(b, keep)).collect::<Result<_>>()?;
        CpuBackend.map_updating_slices(checked, k, inputs, &bufs, params, streams, &mut outs)
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
        let (ins, mut outs) = self.operands(inputs, outputs)?;
        CpuBackend.gemm_slices(checked, k, &ins, params, streams, &mut outs)
    }

    fn run_gather(&self, checked: Checked, k: &GatherKernel, input: &Buffer, output: &mut Buffer) -> Result<()> {
        let input = self.device(input)?;
        CpuBackend.gather_slices(checked, k, input, self.device_out(output, false)?)
    }

    fn run_bits(&self, checked: Checked, k: &BitKernel, input: &Buffer, output: &mut Buffer) -> Result<()> {
        let input = self.device(input)?;
        CpuBackend.bits_slices(checked, k, input, self.device_out(output, false)?)
    }
}
