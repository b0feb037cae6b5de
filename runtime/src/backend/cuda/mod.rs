//! The CUDA backend: runs the CUDA C that `cryptgpu_codegen::cuda::emit` produces from the same IR the CPU backend
//! interprets, through cudarc with dynamically loaded libraries.
//!
//! Everything here compiles on machines without CUDA: cudarc loads `libcuda` and `libnvrtc` at run time, and
//! [`probe`] checks for them (and for every symbol used) before the first cudarc call, so a machine without a GPU
//! gets [`Error::NoCuda`] from [`CudaBackend::new`], never a panic.
//!
//! Buffers stay on the device: a kernel's outputs are device memory ([`CudaMemory`]), its inputs are read where
//! they are, and a host-only input (a received message, an owner's input, a weight the first time it is used) is
//! uploaded once and kept with its [`Buffer`]. Words come back to the host only when read there (a message to send,
//! a reveal): see [`crate::buffer`]. [`CudaBackend::traffic`] counts both directions, under the same rules the
//! counting backend ([`super::counting`]) checks on machines without a GPU.
//!
//! Streams: each party of an in-process session gets its own compute stream and copy stream
//! ([`Backend::for_party`]), or its own device ([`CudaBackend::on_devices`]). Kernels are queued on the compute
//! stream without waiting; uploads and downloads run on the copy stream, ordered after the kernels that wrote
//! their buffers by cudarc's per-buffer events, so a download waits only for what it reads.
//!
//! A launch: validate with the same `check_*` functions as the CPU backend; emit the kernel (GEMMs under
//! `GemmPlan::for_k` of the total inner dimension); compile it with NVRTC for the device's architecture through the
//! [`cache`] (memory, then disk, then NVRTC); load the module once per image and device; pass the device buffers,
//! the parameters and the PRF streams (11 little-endian `u32` words per stream: the key's 32 bytes, then the 12
//! nonce bytes); launch with the grid and block of `CudaKernel::launch`. An input that is one of the launch's own
//! outputs before the launch ([`Source::Prior`]) is copied on the device first (the emitted kernels declare their
//! buffers `__restrict__`).
//!
//! Overlap: a download waits only for the kernels that wrote what it reads, so a kernel queued before a round runs
//! while that round's messages are copied out and sent. Stage plans queue such kernels first where they do not
//! depend on the round ([`Backend::queues_launches`]): the exact truncation's R0 computes the announced ReLU's first
//! message before sending its round-1 message. Downloads go to pageable host memory and each waits for its copy.

pub mod cache;
pub mod nvrtc;
pub mod probe;

use super::counting::Traffic;
use super::recording::stream_words;
use super::{Backend, Checked, Source};
use crate::buffer::{Buffer, DeviceMemory};
use crate::prg::Stream;
use crate::{Error, PartyId, Result};
use cache::{CacheKey, KernelCache};
use cryptgpu_codegen::cuda::{emit, Arg, CudaKernel, GemmPlan};
use cryptgpu_codegen::{BitKernel, GatherKernel, GemmKernel, Kernel, MapKernel};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, CudaView, DriverError, LaunchConfig, PushKernelArg,
};
use nvrtc::{Nvrtc, Target};
use probe::guard;
use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

fn driver_err(call: &'static str) -> impl Fn(DriverError) -> Error {
    move |e| {
        let description = e.error_string().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Error::Cuda { call: call.into(), reason: format!("{:?}: {description}", e.0) }
    }
}

/// One launch's operands.
struct Operands<'a, 'b, 'c> {
    elements: usize,
    m: usize,
    n: usize,
    k_blocks: &'a [usize],
    inputs: &'a [Source<'c>],
    params: &'a [u64],
    streams: &'a [Stream],
    outputs: &'a mut [&'b mut Buffer],
}

/// A buffer in a CUDA device's memory (at least one word is allocated, so an empty buffer still has an address).
pub struct CudaMemory {
    slice: CudaSlice<u64>,
    len: usize,
    /// The stream downloads run on (the copy stream of the party that made it).
    copy: Arc<CudaStream>,
    traffic: Arc<Traffic>,
}

impl DeviceMemory for CudaMemory {
    fn len(&self) -> usize {
        self.len
    }
    fn download(&self) -> Result<Vec<u64>> {
        guard("cuMemcpyDtoHAsync", || {
            if self.len == 0 {
                return Ok(Vec::new());
            }
            // cudarc makes the copy stream wait for the kernel that wrote the buffer.
            let words =
                self.copy.clone_dtoh(&self.slice.slice(0..self.len)).map_err(driver_err("cuMemcpyDtoHAsync"))?;
            self.copy.synchronize().map_err(driver_err("cuStreamSynchronize"))?;
            self.traffic.download(self.len);
            Ok(words)
        })
    }
    fn duplicate(&self) -> Result<Box<dyn DeviceMemory>> {
        guard("cuMemcpyDtoDAsync", || {
            let slice = self.copy.clone_dtod(&self.slice).map_err(driver_err("cuMemcpyDtoDAsync"))?;
            Ok(Box::new(CudaMemory { slice, len: self.len, copy: self.copy.clone(), traffic: self.traffic.clone() })
                as Box<dyn DeviceMemory>)
        })
    }
    fn assemble(&self, parts: &[(&Buffer, std::ops::Range<usize>)]) -> Result<Box<dyn DeviceMemory>> {
        guard("cuMemcpyDtoDAsync", || {
            let total: usize = parts.iter().map(|(_, r)| r.len()).sum();
            let slice = self.copy.alloc_zeros::<u64>(total.max(1)).map_err(driver_err("cuMemAlloc"))?;
            let mut out = CudaMemory { slice, len: total, copy: self.copy.clone(), traffic: self.traffic.clone() };
            let mut at = 0;
            for (b, r) in parts {
                let d = b.device_or_upload(|host| Ok(Box::new(upload_on(&self.copy, &self.traffic, host)?)))?;
                let src = d.as_any().downcast_ref::<CudaMemory>().ok_or_else(|| foreign(d.len()))?;
                if !r.is_empty() {
                    let mut dst = out.slice.slice_mut(at..at + r.len());
                    self.copy
                        .memcpy_dtod(&src.slice.slice(r.clone()), &mut dst)
                        .map_err(driver_err("cuMemcpyDtoDAsync"))?;
                }
                at += r.len();
            }
            Ok(Box::new(out) as Box<dyn DeviceMemory>)
        })
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// One opened device: its context, compilation target and loaded kernels (shared by the parties using it).
struct Device {
    ordinal: usize,
    name: String,
    ctx: Arc<CudaContext>,
    nvrtc: Nvrtc,
    target: Target,
    cache: KernelCache,
    functions: Mutex<HashMap<CacheKey, CudaFunction>>,
}

impl Device {
    fn open(ordinal: usize, nvrtc: &Nvrtc) -> Result<Arc<Device>> {
        guard("CudaBackend::new", || {
            let count = CudaContext::device_count().map_err(driver_err("cuDeviceGetCount"))?.max(0) as usize;
            if ordinal >= count {
                return Err(Error::NoDevice { ordinal, count });
            }
            let ctx = CudaContext::new(ordinal).map_err(driver_err("cuDevicePrimaryCtxRetain"))?;
            let (major, minor) = ctx.compute_capability().map_err(driver_err("cuDeviceGetAttribute"))?;
            let target = nvrtc.target_for((major.max(0) * 10 + minor.max(0)) as u32)?;
            let name = ctx.name().map_err(driver_err("cuDeviceGetName"))?;
            Ok(Arc::new(Device {
                ordinal,
                name,
                ctx,
                nvrtc: nvrtc.clone(),
                target,
                cache: KernelCache::from_env(),
                functions: Mutex::new(HashMap::new()),
            }))
        })
    }

    /// The loaded entry point of `kernel`, compiling (through the cache) and loading its module on first use.
    fn function(&self, kernel: &CudaKernel) -> Result<CudaFunction> {
        let (image, key, _) =
            self.cache.get_or_compile(&self.nvrtc, &kernel.entry, &kernel.source, self.target, &[])?;
        let mut functions = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = functions.get(&key) {
            return Ok(f.clone());
        }
        let module = self
            .ctx
            .load_module(cudarc::nvrtc::Ptx::from_binary(image.image.clone()))
            .map_err(driver_err("cuModuleLoadData"))?;
        let f = module.load_function(&kernel.entry).map_err(driver_err("cuModuleGetFunction"))?;
        functions.insert(key, f.clone());
        Ok(f)
    }
}

/// Executes kernels on CUDA devices, keeping buffers on the device. See the [module documentation](self).
pub struct CudaBackend {
    device: Arc<Device>,
    /// Kernels are queued here.
    compute: Arc<CudaStream>,
    /// Uploads and downloads.
    copy: Arc<CudaStream>,
    /// The device of each party ([`Backend::for_party`]: party `i` uses `party_devices[i % len]`).
    party_devices: Arc<Vec<Arc<Device>>>,
    /// What this view counts into (party 0's for the shared instance).
    traffic: Arc<Traffic>,
    /// Every party's counts.
    parties: Arc<[Arc<Traffic>; 3]>,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("ordinal", &self.device.ordinal)
            .field("device", &self.device.name)
            .field("target", &self.device.target)
            .field("nvrtc", &self.device.nvrtc.version())
            .field("cache_dir", &self.device.cache.dir())
            .finish()
    }
}

impl CudaBackend {
    /// Open device `device_ordinal` for all three parties (each gets its own streams through
    /// [`Backend::for_party`]): probe the driver and NVRTC ([`probe`]), create the context, and pick the compilation
    /// target for the device (CUBIN for its `sm_XX`, PTX when NVRTC does not know it yet). Compiled kernels are
    /// cached in [`cache::default_cache_dir`].
    ///
    /// Errors: [`Error::NoCuda`] naming the missing library and how to install it; [`Error::NoDevice`] when the
    /// driver reports no device with that ordinal; [`Error::Cuda`] when a driver call fails.
    pub fn new(device_ordinal: usize) -> Result<CudaBackend> {
        CudaBackend::on_devices(&[device_ordinal])
    }

    /// Party `i` of an in-process session on device `ordinals[i % len]` (`--devices 0,1,2`: one GPU per party).
    /// Errors as [`CudaBackend::new`]; an empty list is refused.
    pub fn on_devices(ordinals: &[usize]) -> Result<CudaBackend> {
        if ordinals.is_empty() {
            return Err(Error::Invalid("a CUDA backend on no device: name at least one ordinal".into()));
        }
        probe::driver()?;
        let nvrtc = Nvrtc::load()?;
        guard("cuInit", || cudarc::driver::result::init().map_err(driver_err("cuInit")))?;
        let mut opened: Vec<Arc<Device>> = Vec::new();
        let mut devices = Vec::with_capacity(ordinals.len());
        for &o in ordinals {
            let d = match opened.iter().find(|d| d.ordinal == o) {
                Some(d) => d.clone(),
                None => Device::open(o, &nvrtc)?,
            };
            if !opened.iter().any(|x| x.ordinal == o) {
                opened.push(d.clone());
            }
            devices.push(d);
        }
        CudaBackend::with_streams(devices[0].clone(), Arc::new(devices), Arc::default(), 0)
    }

    fn with_streams(
        device: Arc<Device>,
        party_devices: Arc<Vec<Arc<Device>>>,
        parties: Arc<[Arc<Traffic>; 3]>,
        id: PartyId,
    ) -> Result<CudaBackend> {
        let (compute, copy) = guard("cuStreamCreate", || {
            let compute = device.ctx.new_stream().map_err(driver_err("cuStreamCreate"))?;
            let copy = device.ctx.new_stream().map_err(driver_err("cuStreamCreate"))?;
            Ok((compute, copy))
        })?;
        let traffic = parties[id % 3].clone();
        Ok(CudaBackend { device, compute, copy, party_devices, traffic, parties })
    }

    /// The device's name as the driver reports it.
    pub fn device_name(&self) -> &str {
        &self.device.name
    }

    /// What kernels are compiled to for this device.
    pub fn target(&self) -> Target {
        self.device.target
    }

    /// The NVRTC in use.
    pub fn nvrtc(&self) -> &Nvrtc {
        &self.device.nvrtc
    }

    /// The compiled-kernel cache.
    pub fn cache(&self) -> &KernelCache {
        &self.device.cache
    }

    /// Bytes party `id`'s view of this backend ([`Backend::for_party`]) has moved between host and device.
    pub fn traffic(&self, id: PartyId) -> super::counting::TrafficCounts {
        self.parties[id % 3].counts()
    }

    /// Wait until every kernel queued so far has finished (a benchmark's clock stops after this).
    pub fn synchronize(&self) -> Result<()> {
        guard("cuStreamSynchronize", || self.compute.synchronize().map_err(driver_err("cuStreamSynchronize")))
    }

    /// New device memory of `n` words (zeroed).
    fn alloc(&self, n: usize) -> Result<CudaMemory> {
        let slice = self.compute.alloc_zeros::<u64>(n.max(1)).map_err(driver_err("cuMemAlloc"))?;
        Ok(CudaMemory { slice, len: n, copy: self.copy.clone(), traffic: self.traffic.clone() })
    }

    /// Copy `words` to new device memory.
    fn upload(&self, words: &[u64]) -> Result<CudaMemory> {
        upload_on(&self.copy, &self.traffic, words)
    }

    /// The device memory of `b`, uploading it first when it is only on the host.
    fn device_of<'a>(&self, b: &'a Buffer) -> Result<&'a CudaMemory> {
        let d = b.device_or_upload(|host| Ok(Box::new(self.upload(host)?) as Box<dyn DeviceMemory>))?;
        d.as_any().downcast_ref::<CudaMemory>().ok_or_else(|| foreign(d.len()))
    }

    /// The device memory an output is written to: its own when `keep` (its prior contents are read) or when it is
    /// already this backend's memory of the right size, else new memory.
    fn output_of<'a>(&self, b: &'a mut Buffer, keep: bool) -> Result<&'a mut CudaMemory> {
        let n = b.len();
        if keep {
            self.device_of(b)?;
        } else if !b.device().is_some_and(|d| d.as_any().is::<CudaMemory>()) {
            b.set_device(Box::new(self.alloc(n)?));
        }
        let d = b.device_mut().ok_or_else(|| Error::Internal("an output without device memory".into()))?;
        d.as_any_mut().downcast_mut::<CudaMemory>().ok_or_else(|| foreign(n))
    }

    /// Emit `ir`, then queue it on the compute stream (no wait).
    fn launch(&self, ir: &Kernel, plan: GemmPlan, ops: Operands<'_, '_, '_>) -> Result<()> {
        let kernel = emit(ir, plan)?;
        guard(&kernel.entry, || {
            let f = self.device.function(&kernel)?;
            // Inputs: device memory, ranges of it, or copies of outputs' prior contents.
            enum In<'a> {
                Whole(&'a CudaSlice<u64>),
                Part(CudaView<'a, u64>),
                Copy(CudaSlice<u64>),
            }
            let mut prior: Vec<Option<CudaSlice<u64>>> = Vec::new();
            for s in ops.inputs {
                prior.push(match s {
                    Source::Prior(j) => {
                        let out = ops.outputs.get_mut(*j).ok_or_else(|| foreign(0))?;
                        let mem = self.output_of(out, true)?;
                        Some(self.compute.clone_dtod(&mem.slice).map_err(driver_err("cuMemcpyDtoDAsync"))?)
                    }
                    _ => None,
                });
            }
            let mut inputs: Vec<In<'_>> = Vec::with_capacity(ops.inputs.len());
            for (s, p) in ops.inputs.iter().zip(prior) {
                inputs.push(match (s, p) {
                    (Source::Buf(b), _) => In::Whole(&self.device_of(b)?.slice),
                    (Source::Range(b, r), _) => In::Part(self.device_of(b)?.slice.slice(r.clone())),
                    (Source::Prior(_), Some(c)) => In::Copy(c),
                    (Source::Prior(_), None) => return Err(foreign(0)),
                });
            }
            let mut outputs: Vec<&mut CudaMemory> =
                ops.outputs.iter_mut().map(|o| self.output_of(o, false)).collect::<Result<_>>()?;
            let streams =
                self.compute.clone_htod(&padded(stream_words(ops.streams))).map_err(driver_err("cuMemcpyHtoDAsync"))?;
            // Scalars first, so the builder can borrow them.
            let scalars: Vec<u64> = kernel
                .args
                .iter()
                .map(|a| match *a {
                    Arg::Len => ops.elements as u64,
                    Arg::M => ops.m as u64,
                    Arg::N => ops.n as u64,
                    Arg::K(j) => ops.k_blocks.get(j).copied().unwrap_or(0) as u64,
                    Arg::Param(i) => ops.params.get(i).copied().unwrap_or(0),
                    Arg::Input(_) | Arg::Output(_) | Arg::Streams => 0,
                })
                .collect();
            let bad_arg = |a: &Arg| Error::Cuda {
                call: "cuLaunchKernel".into(),
                reason: format!("kernel {} declares {a:?}, which the launch does not provide", kernel.entry),
            };
            let mut outs: Vec<Option<&mut CudaSlice<u64>>> = outputs.iter_mut().map(|o| Some(&mut o.slice)).collect();
            let mut builder = self.compute.launch_builder(&f);
            for (a, scalar) in kernel.args.iter().zip(&scalars) {
                match *a {
                    Arg::Len | Arg::M | Arg::N => builder.arg(scalar),
                    Arg::K(j) if j < ops.k_blocks.len() => builder.arg(scalar),
                    Arg::Param(i) if i < ops.params.len() => builder.arg(scalar),
                    Arg::Input(i) => match inputs.get(i).ok_or_else(|| bad_arg(a))? {
                        In::Whole(s) => builder.arg(*s),
                        In::Part(v) => builder.arg(v),
                        In::Copy(c) => builder.arg(c),
                    },
                    Arg::Output(j) => builder.arg(outs.get_mut(j).and_then(Option::take).ok_or_else(|| bad_arg(a))?),
                    Arg::Streams => builder.arg(&streams),
                    Arg::K(_) | Arg::Param(_) => return Err(bad_arg(a)),
                };
            }
            let (grid, block) = kernel.launch.dims(ops.elements, ops.m, ops.n);
            let cfg = LaunchConfig {
                grid_dim: (grid[0], grid[1], grid[2]),
                block_dim: (block[0], block[1], block[2]),
                shared_mem_bytes: 0,
            };
            // SAFETY: the arguments follow the entry point's parameter list (`CudaKernel::args`, checked above);
            // every buffer has the length the kernel's bounds checks assume (validated by `check_*`); the inputs and
            // outputs are distinct allocations (a prior output is read from a copy), as `__restrict__` requires.
            unsafe { builder.launch(cfg) }.map_err(driver_err("cuLaunchKernel"))?;
            Ok(())
        })
    }
}

/// Copy `words` to new device memory on `copy`, waiting for it (the host words may go right after), counted as an
/// upload.
fn upload_on(copy: &Arc<CudaStream>, traffic: &Arc<Traffic>, words: &[u64]) -> Result<CudaMemory> {
    let mem = copy_up(copy, traffic, words)?;
    traffic.upload(words.len());
    Ok(mem)
}

/// Copy `words` to new device memory on `copy` and wait for it (not counted: the caller says as what).
fn copy_up(copy: &Arc<CudaStream>, traffic: &Arc<Traffic>, words: &[u64]) -> Result<CudaMemory> {
    let padded = [0u64];
    let src = if words.is_empty() { &padded[..] } else { words };
    let slice = copy.clone_htod(src).map_err(driver_err("cuMemcpyHtoDAsync"))?;
    copy.synchronize().map_err(driver_err("cuStreamSynchronize"))?;
    Ok(CudaMemory { slice, len: words.len(), copy: copy.clone(), traffic: traffic.clone() })
}

/// At least one word (an empty stream list still has an address).
fn padded(mut words: Vec<u32>) -> Vec<u32> {
    if words.is_empty() {
        words.push(0);
    }
    words
}

fn foreign(len: usize) -> Error {
    crate::buffer::foreign(len, "CUDA")
}

impl Backend for CudaBackend {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn output(&self, n: usize) -> Result<Option<Buffer>> {
        guard("cuMemAllocAsync", || Ok(Some(Buffer::from_device(Box::new(self.alloc(n)?)))))
    }

    fn queues_launches(&self) -> bool {
        true
    }

    fn constant(&self, words: &[u64]) -> Result<Buffer> {
        guard("cuMemcpyHtoDAsync", || {
            let mem = copy_up(&self.copy, &self.traffic, words)?;
            self.traffic.constant(words.len());
            Ok(Buffer::from_device(Box::new(mem)))
        })
    }

    fn adopt(&self, b: &Buffer) -> Result<()> {
        guard("cuMemcpyHtoDAsync", || self.device_of(b).map(drop))
    }

    fn for_party(&self, id: PartyId) -> Result<Option<Arc<dyn Backend>>> {
        let device = self.party_devices[id % self.party_devices.len()].clone();
        let view = CudaBackend::with_streams(device, self.party_devices.clone(), self.parties.clone(), id)?;
        Ok(Some(Arc::new(view)))
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
        let sources: Vec<Source<'_>> = inputs.iter().map(|b| Source::Buf(b)).collect();
        self.run_map_updating(checked, k, &sources, params, streams, outputs)
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
        let n = checked.elements();
        if n == 0 {
            return Ok(());
        }
        let ops = Operands { elements: n, m: 0, n: 0, k_blocks: &[], inputs, params, streams, outputs };
        self.launch(&Kernel::Map(k.clone()), GemmPlan::Native64, ops)
    }

    fn run_gemm(
        &self,
        _: Checked,
        k: &GemmKernel,
        inputs: &[&Buffer],
        params: &[u64],
        streams: &[Stream],
        outputs: &mut [&mut Buffer],
    ) -> Result<()> {
        if k.m * k.n == 0 {
            return Ok(());
        }
        let sources: Vec<Source<'_>> = inputs.iter().map(|b| Source::Buf(b)).collect();
        let ops = Operands {
            elements: k.m * k.n,
            m: k.m,
            n: k.n,
            k_blocks: &k.k_blocks,
            inputs: &sources,
            params,
            streams,
            outputs,
        };
        self.launch(&Kernel::Gemm(k.clone()), GemmPlan::for_k(k.k()), ops)
    }

    fn run_gather(&self, _: Checked, k: &GatherKernel, input: &Buffer, output: &mut Buffer) -> Result<()> {
        self.launch_unary(Kernel::Gather(k.clone()), input, output)
    }

    fn run_bits(&self, _: Checked, k: &BitKernel, input: &Buffer, output: &mut Buffer) -> Result<()> {
        self.launch_unary(Kernel::Bits(k.clone()), input, output)
    }
}

impl CudaBackend {
    /// Launch a one-input, one-output kernel (gathers, bit transposes) over its output.
    fn launch_unary(&self, kernel: Kernel, input: &Buffer, output: &mut Buffer) -> Result<()> {
        if output.is_empty() {
            return Ok(());
        }
        let inputs = [Source::Buf(input)];
        let elements = output.len();
        let mut outputs = [output];
        let ops = Operands {
            elements,
            m: 0,
            n: 0,
            k_blocks: &[],
            inputs: &inputs,
            params: &[],
            streams: &[],
            outputs: &mut outputs,
        };
        self.launch(&kernel, GemmPlan::Native64, ops)
    }
}
