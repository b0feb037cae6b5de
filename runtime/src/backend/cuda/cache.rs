//! The compiled-kernel cache: in memory and on disk, keyed by a BLAKE3 hash of everything that determines the
//! image (source text, NVRTC options, target, NVRTC version, [`EMITTER_VERSION`]).
//!
//! Disk layout: one file per image, `<64 hex digits>.cubin` or `.ptx`, in the directory chosen by
//! [`default_cache_dir`]. Files are written to a temporary name and renamed, so concurrent processes never read a
//! partial image; an image that fails its well-formedness check on reading is recompiled and rewritten. A cache
//! directory that cannot be written only costs recompilation (counted in [`CacheStats::disk_write_errors`]).

use super::nvrtc::{Compiled, Nvrtc, Target};
use crate::Result;
use cryptgpu_codegen::cuda::prelude::EMITTER_VERSION;
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Environment variable overriding the cache directory.
pub const CACHE_DIR_ENV: &str = "CRYPTGPU_CACHE_DIR";

/// Domain-separation context of the key derivation (BLAKE3 `derive_key` mode).
const KEY_CONTEXT: &str = "cryptgpu compiled-kernel cache key v1";

/// A cache key: BLAKE3 of the compilation's inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey(pub [u8; 32]);

impl CacheKey {
    /// The key of compiling `source` for `target` with `options` under NVRTC `nvrtc_version`, as emitted by this
    /// [`EMITTER_VERSION`]. Every field is length-prefixed, so no two different inputs hash the same bytes.
    pub fn new(source: &str, options: &[String], target: Target, nvrtc_version: (u32, u32)) -> CacheKey {
        let mut h = blake3::Hasher::new_derive_key(KEY_CONTEXT);
        let mut field = |bytes: &[u8]| {
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field(&EMITTER_VERSION.to_le_bytes());
        field(&nvrtc_version.0.to_le_bytes());
        field(&nvrtc_version.1.to_le_bytes());
        field(target.to_string().as_bytes());
        field(&(options.len() as u64).to_le_bytes());
        for o in options {
            field(o.as_bytes());
        }
        field(source.as_bytes());
        CacheKey(*h.finalize().as_bytes())
    }

    /// Lower-case hex (64 digits).
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }
}

/// The cache directory given a way to read environment variables: `$CRYPTGPU_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/cryptgpu/kernels` (if absolute), else `$HOME/.cache/cryptgpu/kernels`; `None` when none is set
/// (the cache is then in memory only).
pub fn cache_dir_from(env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let var = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var(CACHE_DIR_ENV) {
        return Some(dir);
    }
    if let Some(xdg) = var("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Some(xdg.join("cryptgpu").join("kernels"));
    }
    var("HOME").map(|home| home.join(".cache").join("cryptgpu").join("kernels"))
}

/// The cache directory from this process's environment ([`cache_dir_from`]).
pub fn default_cache_dir() -> Option<PathBuf> {
    cache_dir_from(|k| std::env::var_os(k))
}

/// Where an image came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// This cache's memory.
    Memory,
    /// The disk cache.
    Disk,
    /// A fresh NVRTC compilation.
    Compiled,
}

/// Counters of a [`KernelCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from memory.
    pub memory_hits: u64,
    /// Lookups answered from disk.
    pub disk_hits: u64,
    /// NVRTC compilations.
    pub compiles: u64,
    /// Images that could not be written to disk.
    pub disk_write_errors: u64,
}

/// Compiled kernels, in memory and (when a directory is set) on disk.
#[derive(Debug)]
pub struct KernelCache {
    dir: Option<PathBuf>,
    memory: Mutex<HashMap<CacheKey, Arc<Compiled>>>,
    memory_hits: AtomicU64,
    disk_hits: AtomicU64,
    compiles: AtomicU64,
    disk_write_errors: AtomicU64,
    temp_counter: AtomicU64,
}

impl KernelCache {
    /// A cache with its disk part in `dir` (`None`: memory only). The directory is created on the first write.
    pub fn new(dir: Option<PathBuf>) -> KernelCache {
        KernelCache {
            dir,
            memory: Mutex::new(HashMap::new()),
            memory_hits: AtomicU64::new(0),
            disk_hits: AtomicU64::new(0),
            compiles: AtomicU64::new(0),
            disk_write_errors: AtomicU64::new(0),
            temp_counter: AtomicU64::new(0),
        }
    }

    /// A cache in [`default_cache_dir`].
    pub fn from_env() -> KernelCache {
        KernelCache::new(default_cache_dir())
    }

    /// The disk directory, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            memory_hits: self.memory_hits.load(Ordering::Relaxed),
            disk_hits: self.disk_hits.load(Ordering::Relaxed),
            compiles: self.compiles.load(Ordering::Relaxed),
            disk_write_errors: self.disk_write_errors.load(Ordering::Relaxed),
        }
    }

    /// The file an image with `key` and `target` lives in.
    pub fn path(&self, key: &CacheKey, target: Target) -> Option<PathBuf> {
        let ext = match target {
            Target::Cubin { .. } => "cubin",
            Target::Ptx { .. } => "ptx",
        };
        self.dir.as_ref().map(|d| d.join(format!("{}.{ext}", key.to_hex())))
    }

    /// The image of `source` (entry `name`) for `target` with the options [`Nvrtc::options`]`(target, extra)`:
    /// from memory, from disk, or compiled (and then stored in both). Returns the key and where it came from.
    pub fn get_or_compile(
        &self,
        nvrtc: &Nvrtc,
        name: &str,
        source: &str,
        target: Target,
        extra: &[String],
    ) -> Result<(Arc<Compiled>, CacheKey, Lookup)> {
        let options = Nvrtc::options(target, extra);
        let key = CacheKey::new(source, &options, target, nvrtc.version());
        if let Some(hit) = self.lock().get(&key) {
            self.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok((hit.clone(), key, Lookup::Memory));
        }
        if let Some(image) = self.path(&key, target).and_then(|p| std::fs::read(p).ok()) {
            let compiled = Compiled { target, image, log: String::new() };
            if compiled.is_well_formed() {
                self.disk_hits.fetch_add(1, Ordering::Relaxed);
                let compiled = Arc::new(compiled);
                self.lock().insert(key, compiled.clone());
                return Ok((compiled, key, Lookup::Disk));
            }
        }
        let compiled = Arc::new(nvrtc.compile(name, source, target, &options)?);
        self.compiles.fetch_add(1, Ordering::Relaxed);
        if let Some(path) = self.path(&key, target) {
            if self.write(&path, &compiled.image).is_err() {
                self.disk_write_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.lock().insert(key, compiled.clone());
        Ok((compiled, key, Lookup::Compiled))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Arc<Compiled>>> {
        // A panic while holding the lock cannot leave the map inconsistent (single inserts), so poisoning is moot.
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Write `bytes` to `path` atomically: a unique temporary file in the same directory, then a rename.
    fn write(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let name = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}
