//! The CUDA backend: runs the CUDA C that `cryptgpu_codegen::cuda::emit` produces from the same IR the CPU backend
//! interprets, through cudarc with dynamically loaded libraries.
//!
//! Everything here compiles on machines without CUDA: cudarc loads `libcuda` and `libnvrtc` at run time, and
//! [`probe`] checks for them (and for every symbol used) before the first cudarc call, so a machine without a GPU
//! gets [`Error::NoCuda`] from [`CudaBackend::new`], never a panic.
//!
//! A launch: validate with the same `check_*` functions as the CPU backend; emit the kernel (GEMMs under
//! `GemmPlan::for_k` of the total inner dimension); compile it with NVRTC for the device's architecture through the
//! [`cache`] (memory, then disk, then NVRTC); load the module once per image; copy the inputs, the parameters and the
//! PRF streams (11 little-endian `u32` words per stream: the key's 32 bytes, then the 12 nonce bytes) to the device;
//! launch with the grid and block of `CudaKernel::launch`; copy the outputs back and wait.
//!
//! Limits of this first version, stated plainly: every launch copies its inputs to the device and its outputs back
//! (the `Backend` trait works on host slices), and launches from the three party threads are serialised on one
//! stream. Device-resident shares and overlapping computation with communication on several streams are the next
//! step; until then this backend proves the generated kernels run on a GPU rather than making the protocols fast.

pub mod cache;
pub mod nvrtc;
pub mod probe;

use super::recording::stream_words;
use super::{Backend, Checked};
use crate::prg::Stream;
use crate::{Error, Result};
use cache::{CacheKey, KernelCache};
use cryptgpu_codegen::cuda::{emit, Arg, CudaKernel, GemmPlan};
use cryptgpu_codegen::{BitKernel, GatherKernel, GemmKernel, Kernel, MapKernel};
use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, DriverError, LaunchConfig, PushKernelArg};
use nvrtc::{Nvrtc, Target};
use probe::guard;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

fn driver_err(call: &'static str) -> impl Fn(DriverError) -> Error {
    move |e| {
        let description = e.error_string().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Error::Cuda { call: call.into(), reason: format!("{:?}: {description}", e.0) }
    }
}

/// One launch's operands, on the host.
struct Operands<'a, 'b> {
    elements: usize,
    m: usize,
    n: usize,
    k_blocks: &'a [usize],
    inputs: &'a [&'a [u64]],
    params: &'a [u64],
    streams: &'a [Stream],
    outputs: &'a mut [&'b mut [u64]],
}

/// Executes kernels on one CUDA device. See the [module documentation](self) for what a launch does and what this
/// version does not do yet.
pub struct CudaBackend {
    ordinal: usize,
    device_name: String,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    nvrtc: Nvrtc,
    target: Target,
    cache: KernelCache,
    functions: Mutex<HashMap<CacheKey, CudaFunction>>,
    /// Serialises launches (upload, launch, download, wait) from the party threads on the one stream.
    launch_lock: Mutex<()>,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("ordinal", &self.ordinal)
            .field("device", &self.device_name)
            .field("target", &self.target)
            .field("nvrtc", &self.nvrtc.version())
            .field("cache_dir", &self.cache.dir())
            .finish()
    }
}

impl CudaBackend {
    /// Open device `device_ordinal`: probe the driver and NVRTC ([`probe`]), create the context and a stream, and
    /// pick the compilation target for the device (CUBIN for its `sm_XX`, PTX when NVRTC does not know it yet).
    /// Compiled kernels are cached in [`cache::default_cache_dir`].
    ///
    /// Errors: [`Error::NoCuda`] naming the missing library and how to install it; [`Error::NoDevice`] when the
    /// driver reports no device with that ordinal; [`Error::Cuda`] when a driver call fails.
    pub fn new(device_ordinal: usize) -> Result<CudaBackend> {
        probe::driver()?;
        let nvrtc = Nvrtc::load()?;
        guard("CudaBackend::new", || {
            cudarc::driver::result::init().map_err(driver_err("cuInit"))?;
            let count = CudaContext::device_count().map_err(driver_err("cuDeviceGetCount"))?.max(0) as usize;
            if device_ordinal >= count {
                return Err(Error::NoDevice { ordinal: device_ordinal, count });
            }
            let ctx = CudaContext::new(device_ordinal).map_err(driver_err("cuDevicePrimaryCtxRetain"))?;
            let (major, minor) = ctx.compute_capability().map_err(driver_err("cuDeviceGetAttribute"))?;
            let target = nvrtc.target_for((major.max(0) * 10 + minor.max(0)) as u32)?;
            let device_name = ctx.name().map_err(driver_err("cuDeviceGetName"))?;
            let stream = ctx.new_stream().map_err(driver_err("cuStreamCreate"))?;
            Ok(CudaBackend {
                ordinal: device_ordinal,
                device_name,
                ctx,
                stream,
                nvrtc,
                target,
                cache: KernelCache::from_env(),
                functions: Mutex::new(HashMap::new()),
                launch_lock: Mutex::new(()),
            })
        })
    }

    /// The device's name as the driver reports it.
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// What kernels are compiled to for this device.
    pub fn target(&self) -> Target {
        self.target
    }

    /// The NVRTC in use.
    pub fn nvrtc(&self) -> &Nvrtc {
        &self.nvrtc
    }

    /// The compiled-kernel cache.
    pub fn cache(&self) -> &KernelCache {
        &self.cache
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

    /// Copy `data` to a new device buffer (at least one element, so empty buffers still have an address).
    fn upload<T: cudarc::driver::DeviceRepr + Default + Copy>(&self, data: &[T]) -> Result<CudaSlice<T>> {
        let padded = [T::default()];
        let src = if data.is_empty() { &padded[..] } else { data };
        self.stream.clone_htod(src).map_err(driver_err("cuMemcpyHtoDAsync"))
    }

    /// Emit `ir`, then upload, launch, download and wait.
    fn launch(&self, ir: &Kernel, plan: GemmPlan, ops: Operands<'_, '_>) -> Result<()> {
        let kernel = emit(ir, plan)?;
        let _serial = self.launch_lock.lock().unwrap_or_else(|e| e.into_inner());
        let result = guard(&kernel.entry, || {
            let f = self.function(&kernel)?;
            let inputs = ops.inputs.iter().map(|b| self.upload(b)).collect::<Result<Vec<_>>>()?;
            let mut outputs = ops
                .outputs
                .iter()
                .map(|o| self.stream.alloc_zeros::<u64>(o.len().max(1)).map_err(driver_err("cuMemAlloc")))
                .collect::<Result<Vec<_>>>()?;
            let streams = self.upload(&stream_words(ops.streams))?;
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
            let mut outs: Vec<Option<&mut CudaSlice<u64>>> = outputs.iter_mut().map(Some).collect();
            let mut builder = self.stream.launch_builder(&f);
            for (a, scalar) in kernel.args.iter().zip(&scalars) {
                match *a {
                    Arg::Len | Arg::M | Arg::N => builder.arg(scalar),
                    Arg::K(j) if j < ops.k_blocks.len() => builder.arg(scalar),
                    Arg::Param(i) if i < ops.params.len() => builder.arg(scalar),
                    Arg::Input(i) => builder.arg(inputs.get(i).ok_or_else(|| bad_arg(a))?),
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
            // every buffer has the length the kernel's bounds checks assume (validated by `check_*`).
            unsafe { builder.launch(cfg) }.map_err(driver_err("cuLaunchKernel"))?;
            for (host, dev) in ops.outputs.iter_mut().zip(&outputs) {
                if !host.is_empty() {
                    let len = host.len();
                    self.stream
                        .memcpy_dtoh(&dev.slice(0..len), &mut host[..])
                        .map_err(driver_err("cuMemcpyDtoHAsync"))?;
                }
            }
            self.stream.synchronize().map_err(driver_err("cuStreamSynchronize"))
        });
        if result.is_err() {
            // Copies queued before the failure may still target the caller's slices: finish them before returning.
            let _ =
                guard("cuStreamSynchronize", || self.stream.synchronize().map_err(driver_err("cuStreamSynchronize")));
        }
        result
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> &'static str {
        "cuda"
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
        inputs: &[&[u64]],
        params: &[u64],
        streams: &[Stream],
        outputs: &mut [&mut [u64]],
    ) -> Result<()> {
        if k.m * k.n == 0 {
            return Ok(());
        }
        let ops =
            Operands { elements: k.m * k.n, m: k.m, n: k.n, k_blocks: &k.k_blocks, inputs, params, streams, outputs };
        self.launch(&Kernel::Gemm(k.clone()), GemmPlan::for_k(k.k()), ops)
    }

    fn run_gather(&self, _: Checked, k: &GatherKernel, input: &[u64], output: &mut [u64]) -> Result<()> {
        self.launch_unary(Kernel::Gather(k.clone()), input, output)
    }

    fn run_bits(&self, _: Checked, k: &BitKernel, input: &[u64], output: &mut [u64]) -> Result<()> {
        self.launch_unary(Kernel::Bits(k.clone()), input, output)
    }
}

impl CudaBackend {
    /// Launch a one-input, one-output kernel (gathers, bit transposes) over its output.
    fn launch_unary(&self, kernel: Kernel, input: &[u64], output: &mut [u64]) -> Result<()> {
        if output.is_empty() {
            return Ok(());
        }
        let inputs = [input];
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
