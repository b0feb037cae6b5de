//! Finding the CUDA libraries before cudarc touches them.
//!
//! cudarc loads `libcuda` and `libnvrtc` lazily with `libloading` and panics when a library or one of its symbols
//! is missing. This module checks first, so that every public entry point of the CUDA backend returns
//! [`Error::NoCuda`] instead:
//!
//! 1. NVRTC: if `CRYPTGPU_NVRTC_LIB` names a file, it is opened by that path and the handle kept for the life of
//!    the process. glibc's loader then satisfies cudarc's own by-name lookup (`libnvrtc.so.12`, ...) from the
//!    already-loaded object through its `SONAME`, so cudarc uses exactly that file. Without the variable, the
//!    default loader search applies (`LD_LIBRARY_PATH`, the `ld.so` cache, the system directories).
//! 2. cudarc's `is_culib_present()` then opens its list of candidate names the same way `culib()` will, and every
//!    symbol the backend calls is looked up in the very library object cudarc will use. Only then does any cudarc
//!    function run.
//! 3. The driver (`libcuda`) is probed the same way, by cudarc's candidate names through the default loader search.
//!
//! As a last line of defence, `guard` turns a panic inside cudarc (an assertion, a symbol that a very old driver
//! lacks despite the probe) into [`Error::Cuda`].

use crate::{Error, Result};
use std::path::PathBuf;
use std::sync::OnceLock;

/// Environment variable naming the NVRTC shared library to load, as a path (e.g. the `libnvrtc.so.12` of the
/// `nvidia-cuda-nvrtc-cu12` wheel).
pub const NVRTC_LIB_ENV: &str = "CRYPTGPU_NVRTC_LIB";

/// NVRTC entry points the compiler calls (NVRTC 12.x has them all).
const NVRTC_SYMBOLS: &[&str] = &[
    "nvrtcVersion",
    "nvrtcGetNumSupportedArchs",
    "nvrtcGetSupportedArchs",
    "nvrtcCreateProgram",
    "nvrtcCompileProgram",
    "nvrtcDestroyProgram",
    "nvrtcGetProgramLogSize",
    "nvrtcGetProgramLog",
    "nvrtcGetPTXSize",
    "nvrtcGetPTX",
    "nvrtcGetCUBINSize",
    "nvrtcGetCUBIN",
];

/// Driver entry points the backend's cudarc calls reach (context, stream, memory, module, launch).
const DRIVER_SYMBOLS: &[&str] = &[
    "cuInit",
    "cuDriverGetVersion",
    "cuDeviceGetCount",
    "cuDeviceGet",
    "cuDeviceGetAttribute",
    "cuDevicePrimaryCtxRetain",
    "cuDevicePrimaryCtxRelease_v2",
    "cuCtxSetCurrent",
    "cuCtxGetCurrent",
    "cuStreamCreate",
    "cuStreamSynchronize",
    "cuStreamDestroy_v2",
    "cuStreamWaitEvent",
    "cuEventCreate",
    "cuEventRecord",
    "cuEventDestroy_v2",
    "cuMemAlloc_v2",
    "cuMemFree_v2",
    "cuMemAllocAsync",
    "cuMemFreeAsync",
    "cuMemcpyHtoDAsync_v2",
    "cuMemcpyDtoHAsync_v2",
    "cuModuleLoadData",
    "cuModuleGetFunction",
    "cuModuleUnload",
    "cuLaunchKernel",
    "cuGetErrorString",
];

/// How a library was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Which library.
    pub library: &'static str,
    /// How it was located: the path from the environment, or the default loader search.
    pub via: String,
}

/// The library handle opened from `CRYPTGPU_NVRTC_LIB`, kept open for the life of the process (cudarc keeps its
/// own handle in a static as well). Recorded once: the variable is read at the first probe.
static NVRTC_PRELOAD: OnceLock<Option<(PathBuf, std::result::Result<libloading::Library, String>)>> = OnceLock::new();

const NVRTC_NAME: &str = "NVRTC (libnvrtc)";
const DRIVER_NAME: &str = "CUDA driver (libcuda)";

fn nvrtc_hint() -> String {
    format!(
        "run scripts/test.sh (it installs the nvidia-cuda-nvrtc-cu12 wheel under .tools/nvrtc), or install NVRTC \
         12.x (`python3 -m pip install nvidia-cuda-nvrtc-cu12` or the CUDA toolkit) and set {NVRTC_LIB_ENV} to the \
         path of its libnvrtc.so.12 or put its directory on LD_LIBRARY_PATH"
    )
}

fn driver_hint() -> String {
    "the CUDA driver library libcuda.so.1 ships with the NVIDIA GPU driver, not with the CUDA toolkit or the NVRTC \
     wheel: install the NVIDIA driver on a machine with a GPU (in a container, start it with the NVIDIA container \
     runtime, e.g. `--gpus all`); kernels can still be compiled with NVRTC, and the CPU backend runs everything"
        .to_string()
}

/// What the default loader search covers, for error messages.
fn loader_search(lib: &str) -> String {
    let mut candidates = cudarc::get_lib_name_candidates(lib);
    let mut seen = std::collections::HashSet::new();
    candidates.retain(|c| seen.insert(c.clone()));
    let ld_path = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
    format!(
        "the names {} through the dynamic loader (LD_LIBRARY_PATH={ld_path:?}, the ld.so cache, the system \
         library directories)",
        candidates.join(", ")
    )
}

/// Check that every symbol in `symbols` resolves in `lib`.
fn check_symbols(library: &'static str, lib: &libloading::Library, symbols: &[&str], hint: String) -> Result<()> {
    let missing: Vec<&str> = symbols
        .iter()
        .copied()
        // SAFETY: only the symbol's address is looked up, never called through this type.
        .filter(|s| unsafe { lib.get::<unsafe extern "C" fn()>(s.as_bytes()) }.is_err())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::NoCuda {
            library: library.into(),
            searched: format!("the loaded library lacks the symbols {}", missing.join(", ")),
            hint: format!("it is too old for this build (CUDA 12.9 bindings); {hint}"),
        })
    }
}

/// Find NVRTC: `CRYPTGPU_NVRTC_LIB` if set (an explicit path that fails to load is an error, not a fall-back),
/// otherwise the default loader search. On success cudarc's NVRTC functions are safe to call.
pub fn nvrtc() -> Result<Found> {
    let preload = NVRTC_PRELOAD.get_or_init(|| {
        let path = std::env::var_os(NVRTC_LIB_ENV).filter(|p| !p.is_empty()).map(PathBuf::from)?;
        // SAFETY: loading NVRTC runs its initialisers, which have no preconditions.
        let lib = unsafe { libloading::Library::new(&path) }.map_err(|e| match std::error::Error::source(&e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        });
        Some((path, lib))
    });
    let via = match preload {
        Some((path, Err(reason))) => {
            return Err(Error::NoCuda {
                library: NVRTC_NAME.into(),
                searched: format!("{NVRTC_LIB_ENV}={} ({reason})", path.display()),
                hint: nvrtc_hint(),
            })
        }
        Some((path, Ok(_))) => format!("{NVRTC_LIB_ENV}={}", path.display()),
        None => "the default loader search".to_string(),
    };
    // SAFETY: opening candidate names has no preconditions; cudarc drops each handle again.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        let searched = match preload {
            Some((path, Ok(_))) => format!(
                "{NVRTC_LIB_ENV}={} loaded, but its SONAME is none of cudarc's names, so cudarc would not use it; \
                 also {}",
                path.display(),
                loader_search("nvrtc")
            ),
            _ => format!("{NVRTC_LIB_ENV} (unset), then {}", loader_search("nvrtc")),
        };
        return Err(Error::NoCuda { library: NVRTC_NAME.into(), searched, hint: nvrtc_hint() });
    }
    // SAFETY: present, so cudarc's `culib()` finds the same candidate and does not panic.
    let lib = unsafe { cudarc::nvrtc::sys::culib() };
    check_symbols(NVRTC_NAME, lib, NVRTC_SYMBOLS, nvrtc_hint())?;
    if let Some((path, Ok(preloaded))) = preload {
        // cudarc tries `libnvrtc.so` before `libnvrtc.so.12`: a different NVRTC on the loader path would win over
        // the requested file. Same library object ⇔ same address of one of its functions.
        let address = |l: &libloading::Library| {
            // SAFETY: only the address is read; the symbol is never called through this type.
            unsafe { l.get::<unsafe extern "C" fn()>(b"nvrtcVersion") }.ok().map(|f| *f as usize)
        };
        if address(preloaded) != address(lib) {
            return Err(Error::NoCuda {
                library: NVRTC_NAME.into(),
                searched: format!(
                    "{NVRTC_LIB_ENV}={} loaded, but cudarc resolved another libnvrtc first among {}",
                    path.display(),
                    loader_search("nvrtc")
                ),
                hint: format!(
                    "remove the other libnvrtc from the loader path, or unset {NVRTC_LIB_ENV} to use it; {}",
                    nvrtc_hint()
                ),
            });
        }
    }
    Ok(Found { library: NVRTC_NAME, via })
}

/// Find the CUDA driver through the default loader search. On success cudarc's driver functions are safe to call.
pub fn driver() -> Result<Found> {
    // SAFETY: as in `nvrtc`.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(Error::NoCuda {
            library: DRIVER_NAME.into(),
            searched: loader_search("cuda"),
            hint: driver_hint(),
        });
    }
    // SAFETY: present, so `culib()` does not panic.
    let lib = unsafe { cudarc::driver::sys::culib() };
    check_symbols(DRIVER_NAME, lib, DRIVER_SYMBOLS, driver_hint())?;
    Ok(Found { library: DRIVER_NAME, via: "the default loader search".into() })
}

/// Run `f`, turning a panic inside it (from cudarc) into [`Error::Cuda`] naming `call`.
pub(crate) fn guard<T>(call: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(Error::Cuda { call: call.into(), reason: format!("cudarc panicked: {message}") })
    })
}
