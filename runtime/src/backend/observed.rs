//! A backend that shows every launch to an [`Observer`]: [`Observed`] forwards each launch to an inner backend and,
//! when it succeeded, hands the observer the kernel, the check's element count and the buffers as the inner
//! backend left them. The recording backend ([`super::recording`]) and the CLI's kernel tally are observers; a
//! wrapper that only watches launches implements [`Observer::observe`] and nothing else.

use super::{Backend, Checked};
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
    /// Input buffers (a gather's or transpose's one input; a GEMM's A blocks, B blocks, then epilogue inputs).
    pub inputs: &'a [&'a [u64]],
    /// Scalar parameters.
    pub params: &'a [u64],
    /// PRF streams.
    pub streams: &'a [Stream],
    /// Output buffers as the inner backend wrote them.
    pub outputs: &'a [&'a [u64]],
}

/// What watches the launches of an [`Observed`] backend.
pub trait Observer: Send + Sync {
    /// Called once per successful launch, after the inner backend ran it (refused launches are not shown).
    fn observe(&self, launch: &Launch<'_>);
}

impl<O: Observer + ?Sized> Observer for Arc<O> {
    fn observe(&self, launch: &Launch<'_>) {
        (**self).observe(launch)
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

impl<O: Observer> Backend for Observed<O> {
    /// The inner backend's name: observing changes nothing the protocols see.
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn run_map(
        &self,
        checked: Checked,
        k: &MapKernel,
        inputs: &[&[u64]],
        params: &[u64],
        streams: &[Stream],
        outputs: &mut [&mut [u64]],
    ) -> Result<()> {
        self.inner.run_map(checked, k, inputs, params, streams, outputs)?;
        let outputs: Vec<&[u64]> = outputs.iter().map(|o| &**o).collect();
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
        inputs: &[&[u64]],
        params: &[u64],
        streams: &[Stream],
        outputs: &mut [&mut [u64]],
    ) -> Result<()> {
        self.inner.run_gemm(checked, k, inputs, params, streams, outputs)?;
        let outputs: Vec<&[u64]> = outputs.iter().map(|o| &**o).collect();
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

    fn run_gather(&self, checked: Checked, k: &GatherKernel, input: &[u64], output: &mut [u64]) -> Result<()> {
        self.inner.run_gather(checked, k, input, output)?;
        let kernel = KernelRef::Gather(k);
        self.observer.observe(&Launch {
            kernel,
            checked,
            inputs: &[input],
            params: &[],
            streams: &[],
            outputs: &[output],
        });
        Ok(())
    }

    fn run_bits(&self, checked: Checked, k: &BitKernel, input: &[u64], output: &mut [u64]) -> Result<()> {
        self.inner.run_bits(checked, k, input, output)?;
        let kernel = KernelRef::Bits(k);
        self.observer.observe(&Launch {
            kernel,
            checked,
            inputs: &[input],
            params: &[],
            streams: &[],
            outputs: &[output],
        });
        Ok(())
    }
}
