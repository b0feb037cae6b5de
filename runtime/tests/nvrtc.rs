//! The generated CUDA C against the real NVRTC: every catalogue kernel and every kernel recorded from real protocol
//! runs compiles to CUBIN for sm_80 and sm_90 (NVRTC goes through PTX for compute_80/compute_90 to get there) and to
//! retrievable PTX for compute_90 (the backend's fall-back for devices newer than NVRTC); the compiled-kernel cache;
//! and the CUDA backend's behaviour on a machine without a GPU (a clear error, no panic) or with one (the recorded
//! launches replayed on the GPU match the CPU backend bit for bit).
//!
//! NVRTC is required: `scripts/test.sh` installs the `nvidia-cuda-nvrtc-cu12` wheel under `.tools/nvrtc` and sets
//! `CRYPTGPU_NVRTC_LIB`. Without it these tests fail with instructions; they never skip silently.

mod common;

use cryptgpu_codegen::cuda::{catalogue, emit, CudaKernel, GemmPlan};
use cryptgpu_codegen::Kernel;
use cryptgpu_runtime::backend::cpu::CpuBackend;
use cryptgpu_runtime::backend::cuda::cache::{cache_dir_from, CacheKey, KernelCache, Lookup, CACHE_DIR_ENV};
use cryptgpu_runtime::backend::cuda::nvrtc::{Nvrtc, Target, ELF_MAGIC};
use cryptgpu_runtime::backend::cuda::{probe, CudaBackend};
use cryptgpu_runtime::backend::recording::{RecordedLaunch, RecordingBackend};
use cryptgpu_runtime::Buffer;
use cryptgpu_runtime::{Config, Conv2dParams, Error, Session, Tensor};
use std::collections::HashSet;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// NVRTC, or a failure that says how to get it.
fn nvrtc() -> &'static Nvrtc {
    static NVRTC: OnceLock<Nvrtc> = OnceLock::new();
    NVRTC.get_or_init(|| match Nvrtc::load() {
        Ok(n) => n,
        Err(e) => panic!(
            "these tests need the real NVRTC and could not load it: {e}\n\
             Run scripts/test.sh (it installs nvidia-cuda-nvrtc-cu12 under .tools/nvrtc and exports \
             CRYPTGPU_NVRTC_LIB), or set CRYPTGPU_NVRTC_LIB=/path/to/libnvrtc.so.12"
        ),
    })
}

/// Launches recorded from real protocol runs on the CPU backend: fixed-point products, matrix products, a
/// convolution with bias, average pooling (division by a public integer), truncation and a permutation.
fn recorded_launches() -> &'static [RecordedLaunch] {
    static LAUNCHES: OnceLock<Vec<RecordedLaunch>> = OnceLock::new();
    LAUNCHES.get_or_init(|| {
        let rec = Arc::new(RecordingBackend::new(Arc::new(CpuBackend)));
        let config = Config { insecure_test_seed: Some(7), ..Config::default() };
        let session = Session::with_backend(config, rec.clone()).unwrap();
        let vals = |n: usize, s: f64| (0..n).map(|i| ((i * 37 % 23) as f64 - 11.0) * s).collect::<Vec<f64>>();
        let x = Tensor::new(&[2, 3, 6, 6], vals(216, 0.125)).unwrap();
        let w = Tensor::new(&[4, 3, 3, 3], vals(108, 0.0625)).unwrap();
        let b = Tensor::new(&[4], vals(4, 0.5)).unwrap();
        let a = Tensor::new(&[5, 7], vals(35, 0.25)).unwrap();
        let m = Tensor::new(&[7, 3], vals(21, 0.5)).unwrap();
        let params = Conv2dParams { stride: 1, padding: 1 };
        session
            .run(|p| {
                let id = p.id();
                let own = |i| id == i;
                let xs = p.share_fixed(0, own(0).then_some(&x), &[2, 3, 6, 6])?;
                let ws = p.share_fixed(1, own(1).then_some(&w), &[4, 3, 3, 3])?;
                let bs = p.share_fixed(1, own(1).then_some(&b), &[4])?;
                let as_ = p.share_fixed(0, own(0).then_some(&a), &[5, 7])?;
                let ms = p.share_fixed(2, own(2).then_some(&m), &[7, 3])?;
                let prod = p.mul(&as_, &as_)?;
                let mm = p.matmul(&as_, &ms)?;
                let conv = p.conv2d(&xs, &ws, Some(&bs), params)?;
                let pooled = p.avg_pool2d(&conv, [2, 2], Conv2dParams { stride: 2, padding: 0 })?;
                let div = p.div_public(&prod, 3)?;
                let tr = p.truncate(&mm, 4)?;
                let perm = p.permute(&pooled, &[1, 0, 3, 2])?;
                let sum = p.add(&div, &prod)?;
                p.reveal(&perm)?;
                p.reveal(&tr)?;
                p.reveal(&sum)?;
                Ok(())
            })
            .unwrap();
        rec.take()
    })
}

/// Every distinct emitted kernel: the catalogue's (under their plan) and the recorded ones (under every plan that
/// is exact for them), deduplicated by source text.
fn all_kernels() -> Vec<(String, CudaKernel)> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut push = |origin: &str, k: CudaKernel| {
        if seen.insert(k.source.clone()) {
            out.push((format!("{origin} {}", k.entry), k));
        }
    };
    for (k, plan) in catalogue::kernels().unwrap() {
        push("catalogue", emit(&k, plan).unwrap());
    }
    for launch in recorded_launches() {
        match &launch.kernel {
            Kernel::Gemm(g) => {
                for plan in GemmPlan::ALL.into_iter().filter(|p| p.check(&g.name, g.k()).is_ok()) {
                    push("recorded", emit(&launch.kernel, plan).unwrap());
                }
            }
            k => push("recorded", emit(k, GemmPlan::Native64).unwrap()),
        }
    }
    out
}

/// Compile every job on a few threads; returns the failures, each with NVRTC's log.
fn compile_all(jobs: &[(String, CudaKernel, Target)]) -> Vec<String> {
    let nv = nvrtc();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((origin, k, target)) = jobs.get(i) else { break };
                let problem = match nv.compile_kernel(k, *target, &[]) {
                    Err(e) => Some(e.to_string()),
                    Ok(c) if c.target != *target => Some(format!("compiled for {} instead", c.target)),
                    Ok(c) => match target {
                        Target::Cubin { .. } if c.image.len() < 64 || !c.image.starts_with(&ELF_MAGIC) => {
                            Some(format!("CUBIN of {} bytes without the ELF magic", c.image.len()))
                        }
                        Target::Ptx { arch } => {
                            let text = String::from_utf8_lossy(&c.image);
                            let entry = format!(".entry {}(", k.entry);
                            (!text.contains(&format!(".target sm_{arch}")) || !text.contains(&entry))
                                .then(|| format!("PTX lacks `.target sm_{arch}` or `{entry}`"))
                        }
                        // An ELF for the CUDA machine (e_machine = EM_CUDA, 190) whose symbols name the entry point.
                        Target::Cubin { .. } if u16::from_le_bytes([c.image[18], c.image[19]]) != 190 => {
                            Some("the CUBIN's ELF machine is not EM_CUDA".to_string())
                        }
                        Target::Cubin { .. } => (!c.image.windows(k.entry.len()).any(|w| w == k.entry.as_bytes()))
                            .then(|| format!("the CUBIN does not name the entry point {}", k.entry)),
                    },
                };
                if let Some(p) = problem {
                    failures.lock().unwrap().push(format!("{origin} for {target}: {p}"));
                }
            });
        }
    });
    failures.into_inner().unwrap()
}

#[test]
fn every_generated_kernel_compiles_to_cubin_for_sm80_and_sm90_and_to_ptx() {
    let nv = nvrtc();
    let kernels = all_kernels();
    let recorded = kernels.iter().filter(|(o, _)| o.starts_with("recorded")).count();
    let catalogue = kernels.len() - recorded;
    assert!(catalogue >= 16, "the catalogue shrank to {catalogue} kernels");
    assert!(recorded >= 5, "only {recorded} distinct kernels recorded from the protocol runs");
    let kinds: HashSet<&str> = recorded_launches()
        .iter()
        .map(|l| match l.kernel {
            Kernel::Map(_) => "map",
            Kernel::Gemm(_) => "gemm",
            Kernel::Gather(_) => "gather",
            Kernel::Bits(_) => "bits",
        })
        .collect();
    assert!(kinds.len() >= 3, "the protocol runs should launch maps, GEMMs and gathers, found {kinds:?}");
    let targets = [Target::Cubin { arch: 80 }, Target::Cubin { arch: 90 }, Target::Ptx { arch: 90 }];
    let jobs: Vec<(String, CudaKernel, Target)> =
        kernels.iter().flat_map(|(o, k)| targets.iter().map(move |t| (o.clone(), k.clone(), *t))).collect();
    let start = Instant::now();
    let failures = compile_all(&jobs);
    eprintln!("kernels: {:?}", kernels.iter().map(|(o, _)| o.as_str()).collect::<Vec<_>>());
    eprintln!(
        "NVRTC {:?}: {} compilations ({catalogue} catalogue + {recorded} recorded kernels × {targets:?}) in {:.1?}",
        nv.version(),
        jobs.len(),
        start.elapsed()
    );
    assert!(failures.is_empty(), "{} of {} compilations failed:\n{}", failures.len(), jobs.len(), failures.join("\n"));
}

#[test]
fn nvrtc_reports_its_version_and_picks_targets() {
    let nv = nvrtc();
    let (major, minor) = nv.version();
    assert!(major >= 12, "NVRTC {major}.{minor}: the bindings are for CUDA 12.9");
    for arch in [80, 90] {
        assert!(nv.supported_archs().contains(&arch), "NVRTC lacks sm_{arch}: {:?}", nv.supported_archs());
        assert_eq!(nv.target_for(arch).unwrap(), Target::Cubin { arch });
    }
    // A device newer than this NVRTC knows gets PTX for the newest architecture NVRTC has; one older than all
    // is refused with a clear error.
    let newest = *nv.supported_archs().iter().max().unwrap();
    assert_eq!(nv.target_for(newest + 1).unwrap(), Target::Ptx { arch: newest });
    let err = nv.target_for(10).unwrap_err().to_string();
    assert!(err.contains("sm_10") && err.contains("supports only"), "{err}");
    assert_eq!(Target::Cubin { arch: 90 }.option(), "--gpu-architecture=sm_90");
    assert_eq!(Target::Ptx { arch: 80 }.option(), "--gpu-architecture=compute_80");
}

#[test]
fn compile_errors_carry_nvrtc_log() {
    let source = "extern \"C\" __global__ void broken(unsigned long long* out) { out[0] = undeclared_name; }";
    let target = Target::Cubin { arch: 90 };
    let err = nvrtc().compile("broken", source, target, &Nvrtc::options(target, &[])).unwrap_err();
    match &err {
        Error::Nvrtc { kernel, target, reason, log } => {
            assert_eq!((kernel.as_str(), target.as_str()), ("broken", "sm_90"));
            assert!(reason.contains("NVRTC_ERROR_COMPILATION"), "{reason}");
            assert!(log.contains("undeclared_name") && log.contains("error"), "log: {log}");
        }
        other => panic!("expected an NVRTC error, got {other:?}"),
    }
    assert!(err.to_string().contains("undeclared_name"));
    // Options with a NUL byte are refused before NVRTC sees them.
    let err = nvrtc().compile("broken", source, target, &["-arch=sm_90\0".to_string()]).unwrap_err();
    assert!(err.to_string().contains("NUL"), "{err}");
}

/// A fresh directory under the system temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("cryptgpu-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn disk_cache_hits_on_the_second_compile() {
    let nv = nvrtc();
    let tmp = TempDir::new("kernel-cache");
    // The directory comes from CRYPTGPU_CACHE_DIR (resolved here without touching the process environment, which
    // the parallel tests share).
    let dir = cache_dir_from(|k| (k == CACHE_DIR_ENV).then(|| OsString::from(&tmp.0)));
    assert_eq!(dir.as_deref(), Some(tmp.0.as_path()));
    let kernel = emit(&Kernel::Map(catalogue::every_op_map()), GemmPlan::Native64).unwrap();
    let target = Target::Cubin { arch: 80 };

    let first = KernelCache::new(dir.clone());
    let (c1, key, how) = first.get_or_compile(nv, &kernel.entry, &kernel.source, target, &[]).unwrap();
    assert_eq!(how, Lookup::Compiled);
    let file = first.path(&key, target).unwrap();
    assert_eq!(file, tmp.0.join(format!("{}.cubin", key.to_hex())));
    assert_eq!(std::fs::read(&file).unwrap(), c1.image);
    let (_, _, how) = first.get_or_compile(nv, &kernel.entry, &kernel.source, target, &[]).unwrap();
    assert_eq!(how, Lookup::Memory);

    // A second cache on the same directory (a later process) reads the image from disk instead of compiling.
    let second = KernelCache::new(dir.clone());
    let (c2, key2, how) = second.get_or_compile(nv, &kernel.entry, &kernel.source, target, &[]).unwrap();
    assert_eq!((how, key2), (Lookup::Disk, key));
    assert_eq!(c2.image, c1.image);
    assert_eq!(second.stats().compiles, 0);
    assert_eq!(second.stats().disk_hits, 1);

    // Another architecture or other options are other entries.
    let (_, key90, how) =
        second.get_or_compile(nv, &kernel.entry, &kernel.source, Target::Cubin { arch: 90 }, &[]).unwrap();
    assert_eq!(how, Lookup::Compiled);
    assert_ne!(key90, key);
    let extra = ["-lineinfo".to_string()];
    let (_, key_li, how) = second.get_or_compile(nv, &kernel.entry, &kernel.source, target, &extra).unwrap();
    assert_eq!(how, Lookup::Compiled);
    assert_ne!(key_li, key);

    // A damaged file is not trusted: it is recompiled and rewritten.
    std::fs::write(&file, b"not an ELF file").unwrap();
    let third = KernelCache::new(dir);
    let (c3, _, how) = third.get_or_compile(nv, &kernel.entry, &kernel.source, target, &[]).unwrap();
    assert_eq!(how, Lookup::Compiled);
    assert!(c3.image.starts_with(&ELF_MAGIC));
    assert!(std::fs::read(&file).unwrap().starts_with(&ELF_MAGIC));
    let files = std::fs::read_dir(&tmp.0).unwrap().count();
    assert_eq!(files, 3, "three images (sm_80, sm_90, sm_80 -lineinfo) and no temporary files");
}

#[test]
fn cache_keys_cover_every_input_and_directories_follow_the_environment() {
    let opts = |t: Target, extra: &[&str]| Nvrtc::options(t, &extra.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let (sm80, sm90, ptx90) = (Target::Cubin { arch: 80 }, Target::Cubin { arch: 90 }, Target::Ptx { arch: 90 });
    let base = CacheKey::new("src", &opts(sm80, &[]), sm80, (12, 9));
    assert_eq!(base, CacheKey::new("src", &opts(sm80, &[]), sm80, (12, 9)), "keys are deterministic");
    let others = [
        CacheKey::new("src", &opts(sm90, &[]), sm90, (12, 9)),
        CacheKey::new("src", &opts(ptx90, &[]), ptx90, (12, 9)),
        CacheKey::new("src", &opts(sm80, &["-lineinfo"]), sm80, (12, 9)),
        CacheKey::new("src", &opts(sm80, &[]), sm80, (12, 8)),
        CacheKey::new("src ", &opts(sm80, &[]), sm80, (12, 9)),
        // Field boundaries matter: moving text between options does not collide.
        CacheKey::new("src", &["ab".to_string(), "c".to_string()], sm80, (12, 9)),
        CacheKey::new("src", &["a".to_string(), "bc".to_string()], sm80, (12, 9)),
    ];
    let distinct: HashSet<CacheKey> = others.iter().copied().chain([base]).collect();
    assert_eq!(distinct.len(), others.len() + 1);
    assert_eq!(base.to_hex().len(), 64);

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(v))
    }
    let all = [(CACHE_DIR_ENV, "/tmp/c"), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")];
    assert_eq!(cache_dir_from(env(&all)), Some(PathBuf::from("/tmp/c")));
    assert_eq!(cache_dir_from(env(&all[1..])), Some(PathBuf::from("/x/cryptgpu/kernels")));
    assert_eq!(
        cache_dir_from(env(&[("XDG_CACHE_HOME", "relative"), ("HOME", "/h")])),
        Some(PathBuf::from("/h/.cache/cryptgpu/kernels"))
    );
    assert_eq!(
        cache_dir_from(env(&[(CACHE_DIR_ENV, ""), ("HOME", "/h")])),
        Some(PathBuf::from("/h/.cache/cryptgpu/kernels"))
    );
    assert_eq!(cache_dir_from(env(&[])), None);
}

#[test]
fn cuda_backend_errors_cleanly_without_a_gpu_or_matches_the_cpu_with_one() {
    nvrtc(); // NVRTC present, so a failure below is about the driver or the device.
    let result = std::panic::catch_unwind(|| CudaBackend::new(0));
    let Ok(result) = result else { panic!("CudaBackend::new panicked instead of returning an error") };
    match result {
        Err(e) => {
            let msg = e.to_string();
            eprintln!("CudaBackend::new(0): {msg}");
            if probe::driver().is_err() {
                assert!(matches!(e, Error::NoCuda { .. }), "{e:?}");
                assert!(msg.contains("CUDA driver (libcuda)") && msg.contains("libcuda.so.1"), "{msg}");
                assert!(msg.contains("NVIDIA driver"), "the error should say how to fix it: {msg}");
            } else {
                // A driver without a usable device.
                assert!(matches!(e, Error::NoDevice { .. } | Error::Cuda { .. }), "{e:?}");
            }
            // Asking again gives the same clear error (the probe holds no poisoned state).
            assert_eq!(CudaBackend::new(0).unwrap_err().to_string(), msg);
        }
        Ok(gpu) => {
            // A GPU: every launch recorded on the CPU backend — a protocol mix, every catalogue kernel on random
            // inputs, a LeNet inference and a training step — replayed on it through the buffer API reproduces the
            // CPU backend's outputs bit for bit.
            let mut rng = common::recorded::rng();
            let rec = RecordingBackend::new(Arc::new(CpuBackend));
            for (k, _) in catalogue::kernels().unwrap() {
                common::recorded::launch_random(&rec, &k, &mut rng);
            }
            let catalogue_launches = rec.take();
            let (lenet_inference, lenet_training) = common::recorded::lenet_runs();
            let lenet = lenet_inference.into_iter().chain(lenet_training).map(|(l, _)| l);
            let all: Vec<RecordedLaunch> =
                recorded_launches().iter().cloned().chain(catalogue_launches).chain(lenet).collect();
            for launch in &all {
                // Host inputs are uploaded, outputs stay on the device until read below.
                let inputs: Vec<Buffer> = launch.inputs.iter().map(|v| Buffer::from(v.clone())).collect();
                let inputs: Vec<&Buffer> = inputs.iter().collect();
                let mut outs: Vec<Buffer> = launch.outputs.iter().map(|o| vec![0xdead; o.len()].into()).collect();
                let mut out_refs: Vec<&mut Buffer> = outs.iter_mut().collect();
                cryptgpu_runtime::backend::launch(
                    &gpu,
                    &launch.kernel,
                    &inputs,
                    &launch.params,
                    &launch.streams,
                    &mut out_refs,
                )
                .unwrap();
                let outs: Vec<Vec<u64>> = outs.into_iter().map(|o| o.into_host().unwrap()).collect();
                assert_eq!(outs, launch.outputs, "kernel {} on {}", launch.kernel.name(), gpu.device_name());
            }
            eprintln!("{} launches replayed bit-exactly on {}", all.len(), gpu.device_name());
        }
    }
}
