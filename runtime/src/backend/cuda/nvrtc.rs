//! Compiling emitted CUDA C with NVRTC, to CUBIN for a real architecture (`sm_80`, `sm_90`, ...) or to PTX
//! (`compute_XX`) when the device is newer than every architecture this NVRTC knows (the driver then JIT-compiles
//! the PTX).
//!
//! cudarc's safe NVRTC API returns PTX only, so this drives `nvrtcCreateProgram`, `nvrtcCompileProgram`,
//! `nvrtcGetCUBINSize`/`nvrtcGetCUBIN` (or `nvrtcGetPTXSize`/`nvrtcGetPTX`) through `cudarc::nvrtc::{result, sys}`.
//! A [`Nvrtc`] exists only after [`probe::nvrtc`] succeeded, so none of these calls can hit
//! cudarc's missing-library panic. Errors carry NVRTC's program log.

use super::probe::{self, guard, Found};
use crate::{Error, Result};
use cryptgpu_codegen::cuda::CudaKernel;
use cudarc::nvrtc::{result, sys};
use std::ffi::{c_char, c_int, CString};

/// Options every compilation gets besides the architecture: the language standard is pinned so that a newer NVRTC
/// with another default dialect compiles the same language.
pub const DEFAULT_OPTIONS: &[&str] = &["--std=c++17"];

/// What NVRTC produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// Machine code (an ELF CUBIN) for `sm_{arch}`, e.g. `arch = 90` for H100.
    Cubin {
        /// Compute capability as major·10 + minor.
        arch: u32,
    },
    /// PTX for the virtual architecture `compute_{arch}`, NUL-terminated, ready for `cuModuleLoadData`.
    Ptx {
        /// Compute capability as major·10 + minor.
        arch: u32,
    },
}

impl Target {
    /// The architecture number.
    pub fn arch(self) -> u32 {
        match self {
            Target::Cubin { arch } | Target::Ptx { arch } => arch,
        }
    }

    /// The NVRTC option selecting this target.
    pub fn option(self) -> String {
        format!("--gpu-architecture={self}")
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Cubin { arch } => write!(f, "sm_{arch}"),
            Target::Ptx { arch } => write!(f, "compute_{arch}"),
        }
    }
}

/// A compiled kernel image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// What the image is.
    pub target: Target,
    /// The CUBIN (ELF) or the NUL-terminated PTX text.
    pub image: Vec<u8>,
    /// NVRTC's program log (warnings; empty when none, or when the image came from the disk cache).
    pub log: String,
}

/// The ELF magic every CUBIN starts with.
pub const ELF_MAGIC: [u8; 4] = *b"\x7fELF";

impl Compiled {
    /// Whether the image has the form its target promises: ELF magic for a CUBIN, non-empty NUL-terminated text
    /// for PTX.
    pub fn is_well_formed(&self) -> bool {
        match self.target {
            Target::Cubin { .. } => self.image.starts_with(&ELF_MAGIC),
            Target::Ptx { .. } => self.image.len() > 1 && self.image.last() == Some(&0),
        }
    }
}

/// A loaded NVRTC: its version and the real architectures it can emit CUBIN for.
#[derive(Debug, Clone)]
pub struct Nvrtc {
    found: Found,
    version: (u32, u32),
    archs: Vec<u32>,
}

/// Destroys an NVRTC program when dropped.
struct Program(sys::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: the program was created by `nvrtcCreateProgram` and is destroyed only here. A failure to free
        // leaks the program's memory and nothing else.
        let _ = unsafe { result::destroy_program(self.0) };
    }
}

fn c_text(chars: &[c_char]) -> String {
    let bytes: Vec<u8> = chars.iter().map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).trim_end_matches('\0').trim_end().to_string()
}

impl Nvrtc {
    /// Probe for NVRTC ([`probe::nvrtc`]) and query its version and supported architectures.
    pub fn load() -> Result<Nvrtc> {
        let found = probe::nvrtc()?;
        guard("nvrtcVersion", || {
            let (mut major, mut minor): (c_int, c_int) = (0, 0);
            // SAFETY: the probe found the library and this symbol; both pointers are valid for writes.
            unsafe { sys::nvrtcVersion(&mut major, &mut minor) }
                .result()
                .map_err(|e| Error::Cuda { call: "nvrtcVersion".into(), reason: format!("{:?}", e.0) })?;
            let mut count: c_int = 0;
            // SAFETY: as above.
            unsafe { sys::nvrtcGetNumSupportedArchs(&mut count) }
                .result()
                .map_err(|e| Error::Cuda { call: "nvrtcGetNumSupportedArchs".into(), reason: format!("{:?}", e.0) })?;
            let mut archs: Vec<c_int> = vec![0; count.max(0) as usize];
            // SAFETY: `archs` has room for the `count` entries NVRTC writes.
            unsafe { sys::nvrtcGetSupportedArchs(archs.as_mut_ptr()) }
                .result()
                .map_err(|e| Error::Cuda { call: "nvrtcGetSupportedArchs".into(), reason: format!("{:?}", e.0) })?;
            Ok(Nvrtc {
                found,
                version: (major.max(0) as u32, minor.max(0) as u32),
                archs: archs.into_iter().filter(|&a| a > 0).map(|a| a as u32).collect(),
            })
        })
    }

    /// NVRTC's version, (major, minor).
    pub fn version(&self) -> (u32, u32) {
        self.version
    }

    /// The real architectures this NVRTC emits CUBIN for (e.g. 50, 52, ..., 90, 100, 120).
    pub fn supported_archs(&self) -> &[u32] {
        &self.archs
    }

    /// How the library was found.
    pub fn found(&self) -> &Found {
        &self.found
    }

    /// The best target for a device of compute capability `arch`: CUBIN when this NVRTC knows `sm_{arch}`,
    /// otherwise PTX for the newest virtual architecture not above it (the driver JIT-compiles it).
    pub fn target_for(&self, arch: u32) -> Result<Target> {
        if self.archs.contains(&arch) {
            return Ok(Target::Cubin { arch });
        }
        match self.archs.iter().copied().filter(|&a| a <= arch).max() {
            Some(best) => Ok(Target::Ptx { arch: best }),
            None => Err(Error::Nvrtc {
                kernel: String::new(),
                target: format!("sm_{arch}"),
                reason: format!(
                    "NVRTC {}.{} supports only the architectures {:?}, none at or below the device's",
                    self.version.0, self.version.1, self.archs
                ),
                log: String::new(),
            }),
        }
    }

    /// The full option list for `target`: the architecture, [`DEFAULT_OPTIONS`], then `extra`.
    pub fn options(target: Target, extra: &[String]) -> Vec<String> {
        let mut o = vec![target.option()];
        o.extend(DEFAULT_OPTIONS.iter().map(|s| s.to_string()));
        o.extend(extra.iter().cloned());
        o
    }

    /// Compile an emitted kernel for `target` (options: [`Nvrtc::options`]).
    pub fn compile_kernel(&self, kernel: &CudaKernel, target: Target, extra: &[String]) -> Result<Compiled> {
        self.compile(&kernel.entry, &kernel.source, target, &Nvrtc::options(target, extra))
    }

    /// Compile `source` (program name `name`) for `target` with exactly `options` (which should select `target`'s
    /// architecture; [`Nvrtc::options`] builds them).
    pub fn compile(&self, name: &str, source: &str, target: Target, options: &[String]) -> Result<Compiled> {
        let fail = |reason: String, log: String| Error::Nvrtc {
            kernel: name.to_string(),
            target: target.to_string(),
            reason,
            log,
        };
        let src = CString::new(source).map_err(|_| fail("the source contains a NUL byte".into(), String::new()))?;
        let file = CString::new(format!("{name}.cu"))
            .map_err(|_| fail("the kernel name contains a NUL byte".into(), String::new()))?;
        if options.iter().any(|o| o.contains('\0')) {
            return Err(fail(format!("an option contains a NUL byte: {options:?}"), String::new()));
        }
        guard("nvrtcCompileProgram", || {
            let program = Program(
                result::create_program(&src, Some(&file))
                    .map_err(|e| fail(format!("nvrtcCreateProgram returned {:?}", e.0), String::new()))?,
            );
            // SAFETY: `program` is live until dropped at the end of this closure; options hold no NUL bytes.
            let compiled = unsafe { result::compile_program(program.0, options) };
            // SAFETY: as above.
            let log = unsafe { result::get_program_log(program.0) }.map(|l| c_text(&l)).unwrap_or_default();
            if let Err(e) = compiled {
                return Err(fail(format!("nvrtcCompileProgram returned {:?} (options {options:?})", e.0), log));
            }
            let image = match target {
                // SAFETY: compiled successfully for a real architecture.
                Target::Cubin { .. } => unsafe { cubin(program.0) },
                // SAFETY: compiled successfully.
                Target::Ptx { .. } => unsafe { result::get_ptx(program.0) }.map(|p| {
                    let mut bytes: Vec<u8> = p.into_iter().map(|c| c as u8).collect();
                    if bytes.last() != Some(&0) {
                        bytes.push(0);
                    }
                    bytes
                }),
            }
            .map_err(|e| fail(format!("retrieving the {target} image returned {:?}", e.0), log.clone()))?;
            let out = Compiled { target, image, log };
            if !out.is_well_formed() {
                return Err(fail(
                    format!("NVRTC returned a malformed {target} image of {} bytes", out.image.len()),
                    out.log,
                ));
            }
            Ok(out)
        })
    }
}

/// The CUBIN of a compiled program.
///
/// # Safety
/// `program` must be live and compiled for a real (`sm_XX`) architecture.
unsafe fn cubin(program: sys::nvrtcProgram) -> std::result::Result<Vec<u8>, result::NvrtcError> {
    let mut size = 0usize;
    // SAFETY: `program` is live; `size` is valid for writes.
    unsafe { sys::nvrtcGetCUBINSize(program, &mut size) }.result()?;
    let mut image = vec![0u8; size];
    // SAFETY: `image` has the `size` bytes NVRTC writes.
    unsafe { sys::nvrtcGetCUBIN(program, image.as_mut_ptr() as *mut c_char) }.result()?;
    Ok(image)
}
