//! A backend that shows every launch to an [`Observer`]: [`Observed`] forwards each launch to an inner backend and,
//! when it succeeded, hands the observer the kernel, the check's element count and the buffers as the inner
//! backend left them. The recording backend ([`super::recording`]) and the CLI's kernel tally are observers; a
//! wrapper that only watches launches implements [`Observer::observe`] and nothing else.

use super::{Backend, Checked, Source};
use crate::buffer::Buffer;
use crate::prg::Stream;
use crate::Result;
use cryptgpu_codegen::{BitKernel, GatherKernel, GemmKernel, Kernel, MapKernel};
use std::sync::Arc;

/// The kernel of a launch, borrowed.
#[derive(Debug, Clone, Copy)]
pub enum KernelRef<'a> {
    /// An elementwise map.
    Map(&'a MapKernel),
    /// A ring GEMM.
    Gemm(&'a GemmKernel),
    /// A gather.
    Gather(&'a GatherKernel),
    /// A bit transpose.
    Bits(&'a BitKernel),
}

impl KernelRef<'_> {
    /// An owned copy of the kernel.
    pub fn to_kernel(self) -> Kernel {
        match self {
            KernelRef::Map(k) => Kernel::Map(k.clone()),
            KernelRef::Gemm(k) => Kernel::Gemm(k.clone()),
            KernelRef::Gather(k) => Kernel::Gather(k.clone()),
            KernelRef::Bits(k) => Kernel::Bits(k.clone()),
        }
    }
}

/// One successful launch as the inner backend left it.
#[derive(Debug, Clone, Copy)]
pub struct Launch<'a> {
    /// The kernel.
    pub kernel: KernelRef<'a>,
    /// The launch's checked element count (a map's `n`, a GEMM's `m·n`, a gather's or transpose's output length).
    pub checked: Checked,
    /// Input buffers (a gather's or transpose's one input; a GEMM's A blocks, B blocks, then epilogue inputs; for a map
    /// updating in place shown to an observer that does not [need buffers](Observer::needs_buffers), only its buffer
    /// inputs).
    pub inputs: &'a [&'a Buffer],
    /// Scalar parameters.
    pub params: &'a [u64],
    /// PRF streams.
    pub streams: &'a [Stream],
    /// Output buffers as the inner backend wrote them.
    pub outputs: &'a [&'a Buffer],
}

/// What watches the launches of an [`Observed`] backend.
pub trait Observer: Send + Sync {
    /// Called once per successful launch, after the inner backend ran it (refused launches are not shown).
    fn observe(&self, launch: &Launch<'_>);

    /// Whether it reads the launch's buffers (`true`, the default). An observer that does not (a tally of kernels)
    /// returns `false`: its launches of maps updating in place then show only their buffer inputs, and nothing is
    /// copied for it.
    fn needs_buffers(&self) -> bool {
        true
    }
}

impl<O: Observer + ?Sized> Observer for Arc<O> {
    fn observe(&self, launch: &Launch<'_>) {
        (**self).observe(launch)
    }
    fn needs_buffers(&self) -> bool {
        (**self).needs_buffers()
    }
}

/// Forwards every launch to `inner` and shows the successful ones to its observer.
pub struct Observed<O> {
    inner: Arc<dyn Backend>,
    observer: O,
}

impl<O> std::fmt::Debug for Observed<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed").field("inner", &self.inner.name()).finish_non_exhaustive()
    }
}

impl<O: Observer> Observed<O> {
    /// Run launches on `inner`, showing each to `observer`.
    pub fn with_observer(inner: Arc<dyn Backend>, observer: O) -> Observed<O> {
        Observed { inner, observer }
    }

    /// The observer.
    pub fn observer(&self) -> &O {
        &self.observer
    }
}

/// Each party's view shows its launches to the same observer (a clone of it: observers are shared, e.g. an `Arc`).
impl<O: Observer + Clone + 'static> Backend for Observed<O> {
    /// The inner backend's name: observing changes nothing the protocols see.
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn output(&self, n: usize) -> Result<Option<Buffer>> {
        self.inner.output(n)
    }

    fn adopt(&self, b: &Buffer) -> Result<()> {
        self.inner.adopt(b)
    }

    fn for_party(&self, id: crate::PartyId) -> Result<Option<Arc<dyn Backend>>> {
        Ok(self
            .inner
            .for_party(id)?
            .map(|inner| Arc::new(Observed { inner, observer: self.observer.clone() }) as Arc<dyn Backend>))
    }

    fn constant(&self, words: &[u64]) -> Result<Buffer> {
        self.inner.constant(words)
    }

    fn queues_launches(&self) -> bool {
        self.inner.queues_launches()
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
        // The observer sees the inputs as they were: the priors are copied before the inner backend overwrites them
        // (if it reads buffers at all).
        let copy = self.observer.needs_buffers();
        let priors: Vec<Option<Buffer>> = inputs
            .iter()
            .map(|s| match s {
                _ if !copy => None,
                Source::Prior(j) => Some(outputs[*j].clone()),
                Source::Range(b, r) => Some(Buffer::from(&b[r.clone()])),
                Source::Buf(_) => None,
            })
            .collect();
        self.inner.run_map_updating(checked, k, inputs, params, streams, outputs)?;
        let ins: Vec<&Buffer> = inputs
            .iter()
            .zip(&priors)
            .filter_map(|(s, p)| match s {
                Source::Buf(b) => Some(*b),
                Source::Prior(_) | Source::Range(..) => p.as_ref(),
            })
            .collect();
        let outputs: Vec<&Buffer> = outputs.iter().map(|o| &**o).collect();
        self.observer.observe(&Launch {
            kernel: KernelRef::Map(k),
            checked,
            inputs: &ins,
            params,
            streams,
            outputs: &outputs,
        });
        Ok(())
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
        self.inner.run_map(checked, k, inputs, params, streams, outputs)?;
        let outputs: Vec<&Buffer> = outputs.iter().map(|o| &**o).collect();
        self.observer.observe(&Launch {
            kernel: KernelRef::Map(k),
            checked,
            inputs,
            params,
            streams,
            outputs: &outputs,
        });
        Ok(())
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
        self.inner.run_gemm(checked, k, inputs, params, streams, outputs)?;
        let outputs: Vec<&Buffer> = outputs.iter().map(|o| &**o).collect();
        self.observer.observe(&Launch {
            kernel: KernelRef::Gemm(k),
            checked,
            inputs,
            params,
            streams,
            outputs: &outputs,
        });
        Ok(())
    }

    fn run_gather(&self, checked: Checked, k: &GatherKernel, input: &Buffer, output: &mut Buffer) -> Result<()> {
        self.inner.run_gather(checked, k, input, output)?;
        let kernel = KernelRef::Gather(k);
        self.observer.observe(&Launch {
            kernel,
            checked,
            inputs: &[input],
            params: &[],
            streams: &[],
            outputs: &[&*output],
        });
        Ok(())
    }

    fn run_bits(&self, checked: Checked, k: &BitKernel, input: &Buffer, output: &mut Buffer) -> Result<()> {
        self.inner.run_bits(checked, k, input, output)?;
        let kernel = KernelRef::Bits(k);
        self.observer.observe(&Launch {
            kernel,
            checked,
            inputs: &[input],
            params: &[],
            streams: &[],
            outputs: &[&*output],
        });
        Ok(())
    }
}
