//! Running the exact emitted CUDA source on the CPU: the [`EMULATION_HEADER`] supplies the CUDA keywords,
//! `threadIdx`/`blockIdx`, `__syncthreads` and poisoned shared memory; [`emulate`] writes one C++ translation unit
//! holding the header, every distinct kernel of a batch of launches and a generated `main`, compiles it once with the
//! host C++ compiler (`g++ -std=c++20 -O1 -pthread`, or `$CXX`), runs it and returns every launch's outputs.
//!
//! The tests compare these outputs bit for bit with the CPU backend, which interprets the same IR: a mistake in an
//! emitter (index arithmetic, tiling, limb recombination, a missing `__syncthreads`, a read of shared memory before
//! it is written) shows on a machine without a GPU. Std only: the crate stays free of runtime dependencies.
//!
//! Data travel through two binary files in the host's byte order. Input file: the launch count, then per launch the
//! kernel's index in the translation unit, grid and block (3 words each), then per parameter in [`CudaKernel::args`]
//! order: a scalar word; an input's length and words; an output's length; the stream word count and the `u32`
//! words. Output file: per launch, its outputs in parameter order. Output buffers start filled with
//! [`POISON_WORD`], so an element a kernel forgets to write shows as well.

use super::{prelude::PRELUDE, Arg, CudaKernel};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// The emulation header (see its opening comment): CUDA keywords, thread indices, `__syncthreads`, `CG_SHARED`
/// with poisoning, and `cg_launch`.
pub const EMULATION_HEADER: &str = include_str!("emulation.h");

/// What a `u64` read from shared memory that no thread wrote in the current block holds under the emulation (the
/// header's `CG_POISON_BYTE` repeated); output buffers start filled with it too.
pub const POISON_WORD: u64 = 0x4242_4242_4242_4242;

/// One kernel launch to run under the emulation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulatedLaunch {
    /// The emitted kernel.
    pub kernel: CudaKernel,
    /// Value of every scalar parameter ([`Arg::Len`], [`Arg::M`], [`Arg::N`], [`Arg::K`], [`Arg::Param`]) in the
    /// order they appear in `kernel.args`.
    pub scalars: Vec<u64>,
    /// Input buffer `i` for [`Arg::Input`]`(i)`; each as long as the kernel reads (the caller's launch checks).
    pub inputs: Vec<Vec<u64>>,
    /// The PRF streams, 11 `u32` words each (8 key words, 3 nonce words, little endian).
    pub streams: Vec<u32>,
    /// Length of output buffer `j` for [`Arg::Output`]`(j)`.
    pub output_lens: Vec<usize>,
}

impl EmulatedLaunch {
    /// The value given for the first parameter equal to `arg` (scalars only).
    pub fn scalar(&self, arg: Arg) -> Option<u64> {
        self.kernel.args.iter().filter(|a| is_scalar(a)).zip(&self.scalars).find(|(a, _)| **a == arg).map(|(_, &v)| v)
    }

    /// Grid and block of the launch, from [`super::Launch::dims`] with the `Len`, `M` and `N` scalars.
    pub fn dims(&self) -> ([u32; 3], [u32; 3]) {
        let get = |a| self.scalar(a).unwrap_or(0) as usize;
        self.kernel.launch.dims(get(Arg::Len), get(Arg::M), get(Arg::N))
    }

    /// Check the launch data against the kernel's parameter list.
    fn check(&self, launch: usize) -> Result<(), EmulationError> {
        let bad = |reason: String| EmulationError::BadLaunch { launch, kernel: self.kernel.entry.clone(), reason };
        let args = &self.kernel.args;
        let scalars = args.iter().filter(|a| is_scalar(a)).count();
        if scalars != self.scalars.len() {
            return Err(bad(format!("{scalars} scalar parameters, {} scalars given", self.scalars.len())));
        }
        for a in args {
            match *a {
                Arg::Input(i) if i >= self.inputs.len() => {
                    return Err(bad(format!("input {i} is a parameter, {} inputs given", self.inputs.len())))
                }
                Arg::Output(j) if j >= self.output_lens.len() => {
                    return Err(bad(format!(
                        "output {j} is a parameter, {} output lengths given",
                        self.output_lens.len()
                    )))
                }
                _ => {}
            }
        }
        let outputs = args.iter().filter(|a| matches!(a, Arg::Output(_))).count();
        if outputs != self.output_lens.len() {
            return Err(bad(format!("{outputs} outputs, {} output lengths given", self.output_lens.len())));
        }
        if !self.streams.len().is_multiple_of(11) || (!args.contains(&Arg::Streams) && !self.streams.is_empty()) {
            return Err(bad(format!(
                "{} stream words: a multiple of 11, none without a streams parameter",
                self.streams.len()
            )));
        }
        let (grid, block) = self.dims();
        if block.iter().product::<u32>() == 0 || grid.iter().product::<u32>() == 0 {
            return Err(bad(format!("empty launch: grid {grid:?}, block {block:?}")));
        }
        Ok(())
    }
}

/// Why an emulated run failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmulationError {
    /// The launch data do not match the kernel's parameters.
    #[error("emulated launch {launch} of `{kernel}`: {reason}")]
    BadLaunch {
        /// Index of the launch in the batch.
        launch: usize,
        /// Entry point.
        kernel: String,
        /// What does not match.
        reason: String,
    },
    /// The C++ compiler could not be started.
    #[error("cannot run the C++ compiler `{compiler}` for the CUDA emulation (install g++ or set CXX): {message}")]
    CompilerMissing {
        /// The command tried.
        compiler: String,
        /// The operating system's message.
        message: String,
    },
    /// The translation unit did not compile; the directory with its source is kept for inspection.
    #[error("the CUDA emulation translation unit {source_path} does not compile with `{compiler}`:\n{message}")]
    Compile {
        /// The command used.
        compiler: String,
        /// Where the source is.
        source_path: PathBuf,
        /// The compiler's diagnostics.
        message: String,
    },
    /// The emulated program crashed or reported an error.
    #[error("the emulated kernels failed ({status}): {stderr}")]
    Run {
        /// Exit status (or signal) of the program.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Reading or writing the temporary files failed, or the program wrote a malformed output file.
    #[error("CUDA emulation I/O at {path}: {message}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

fn is_scalar(a: &Arg) -> bool {
    matches!(a, Arg::Len | Arg::M | Arg::N | Arg::K(_) | Arg::Param(_))
}

/// The C++ translation unit for `launches`: the header, the prelude, each distinct kernel once (an entry name used
/// by two different sources is renamed by a macro around the second), one `cg_run_{i}` per kernel and `main`.
/// Also returns, per launch, the index of its kernel.
pub fn translation_unit(launches: &[EmulatedLaunch]) -> (String, Vec<usize>) {
    let mut kernels: Vec<&CudaKernel> = Vec::new();
    let mut index: HashMap<&CudaKernel, usize> = HashMap::new();
    let which: Vec<usize> = launches
        .iter()
        .map(|l| {
            *index.entry(&l.kernel).or_insert_with(|| {
                kernels.push(&l.kernel);
                kernels.len() - 1
            })
        })
        .collect();
    let mut s = String::from(EMULATION_HEADER);
    s.push_str("\n#include <cstdio>\n#include <cstdlib>\n\n");
    s.push_str(PRELUDE);
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut names = Vec::with_capacity(kernels.len());
    for (i, k) in kernels.iter().enumerate() {
        let uses = seen.entry(&k.entry).or_insert(0);
        *uses += 1;
        let renamed = *uses > 1;
        let name = if renamed { format!("{}__cg{i}", k.entry) } else { k.entry.clone() };
        let _ = writeln!(s, "\n/* ---- kernel {i}: {} ---- */", k.entry);
        if renamed {
            let _ = writeln!(s, "#define {} {name}", k.entry);
        }
        s.push_str(&k.source);
        if renamed {
            let _ = writeln!(s, "\n#undef {}", k.entry);
        }
        names.push(name);
    }
    s.push_str(MAIN_HELPERS);
    for (i, (k, name)) in kernels.iter().zip(&names).enumerate() {
        let _ = writeln!(s, "\nstatic void cg_run_{i}() {{");
        s.push_str("    const cg_dim3 grid{cg_u32(), cg_u32(), cg_u32()};\n");
        s.push_str("    const cg_dim3 block{cg_u32(), cg_u32(), cg_u32()};\n");
        let mut call = Vec::with_capacity(k.args.len());
        for (p, a) in k.args.iter().enumerate() {
            match a {
                Arg::Input(_) => {
                    let _ = writeln!(s, "    const std::vector<u64> a{p} = cg_vec();");
                    call.push(format!("a{p}.data()"));
                }
                Arg::Output(_) => {
                    let _ = writeln!(s, "    std::vector<u64> a{p}(cg_word(), 0x{POISON_WORD:x}ull);");
                    call.push(format!("a{p}.data()"));
                }
                Arg::Streams => {
                    let _ = writeln!(s, "    const std::vector<u32> a{p} = cg_vec32();");
                    call.push(format!("a{p}.data()"));
                }
                _ => {
                    let _ = writeln!(s, "    const u64 a{p} = cg_word();");
                    call.push(format!("a{p}"));
                }
            }
        }
        let _ = writeln!(s, "    cg_launch(grid, block, [&] {{ {name}({}); }});", call.join(", "));
        for (p, a) in k.args.iter().enumerate() {
            if let Arg::Output(_) = a {
                let _ = writeln!(s, "    cg_put(a{p});");
            }
        }
        s.push_str("}\n");
    }
    s.push_str(
        "\nint main(int argc, char** argv) {\n    if (argc != 3) cg_fail(\"usage: emu INPUT OUTPUT\");\n\
         \x20   cg_in = std::fopen(argv[1], \"rb\");\n    cg_out = std::fopen(argv[2], \"wb\");\n\
         \x20   if (!cg_in || !cg_out) cg_fail(\"cannot open the data files\");\n\
         \x20   const u64 launches = cg_word();\n    for (u64 l = 0; l < launches; l++) {\n\
         \x20       switch (cg_word()) {\n",
    );
    for i in 0..kernels.len() {
        let _ = writeln!(s, "        case {i}: cg_run_{i}(); break;");
    }
    s.push_str(
        "        default: cg_fail(\"unknown kernel index\");\n        }\n    }\n\
         \x20   if (std::fclose(cg_out) != 0) cg_fail(\"cannot write the output file\");\n    return 0;\n}\n",
    );
    (s, which)
}

/// Reading and writing the data files (see the module docs).
const MAIN_HELPERS: &str = r#"
/* ---- data files ---- */
static std::FILE* cg_in;
static std::FILE* cg_out;
[[noreturn]] static void cg_fail(const char* what) {
    std::fprintf(stderr, "cryptgpu emulation: %s\n", what);
    std::exit(3);
}
static u64 cg_word() {
    u64 w;
    if (std::fread(&w, sizeof w, 1, cg_in) != 1) cg_fail("input file too short");
    return w;
}
static unsigned cg_u32() { return (unsigned)cg_word(); }
static std::vector<u64> cg_vec() {
    std::vector<u64> v(cg_word());
    if (!v.empty() && std::fread(v.data(), sizeof(u64), v.size(), cg_in) != v.size()) cg_fail("input file too short");
    return v;
}
static std::vector<u32> cg_vec32() {
    std::vector<u32> v(cg_word());
    if (!v.empty() && std::fread(v.data(), sizeof(u32), v.size(), cg_in) != v.size()) cg_fail("input file too short");
    return v;
}
static void cg_put(const std::vector<u64>& v) {
    if (!v.empty() && std::fwrite(v.data(), sizeof(u64), v.size(), cg_out) != v.size()) cg_fail("cannot write outputs");
}
"#;

/// The input data file for `launches` (kernel indices from [`translation_unit`]).
fn input_file(launches: &[EmulatedLaunch], which: &[usize]) -> Vec<u8> {
    let mut b = Vec::new();
    let word = |b: &mut Vec<u8>, w: u64| b.extend_from_slice(&w.to_ne_bytes());
    word(&mut b, launches.len() as u64);
    for (l, &k) in launches.iter().zip(which) {
        word(&mut b, k as u64);
        let (grid, block) = l.dims();
        for d in grid.iter().chain(&block) {
            word(&mut b, u64::from(*d));
        }
        let mut scalars = l.scalars.iter();
        for a in &l.kernel.args {
            match *a {
                Arg::Input(i) => {
                    word(&mut b, l.inputs[i].len() as u64);
                    l.inputs[i].iter().for_each(|&w| word(&mut b, w));
                }
                Arg::Output(j) => word(&mut b, l.output_lens[j] as u64),
                Arg::Streams => {
                    word(&mut b, l.streams.len() as u64);
                    l.streams.iter().for_each(|w| b.extend_from_slice(&w.to_ne_bytes()));
                }
                _ => word(&mut b, *scalars.next().expect("checked: one scalar per scalar parameter")),
            }
        }
    }
    b
}

/// A temporary directory, removed on drop unless kept.
struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    fn new() -> Result<TempDir, EmulationError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("cryptgpu-emu-{}-{nanos}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir { path, keep: false }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error(&path, e)),
            }
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn io_error(path: &Path, e: std::io::Error) -> EmulationError {
    EmulationError::Io { path: path.to_path_buf(), message: e.to_string() }
}

/// Run `launches` in order under the emulation: one translation unit, one compile, one run. Returns, per launch,
/// its output buffers (index `j` for [`Arg::Output`]`(j)`).
pub fn emulate(launches: &[EmulatedLaunch]) -> Result<Vec<Vec<Vec<u64>>>, EmulationError> {
    for (i, l) in launches.iter().enumerate() {
        l.check(i)?;
    }
    let (source, which) = translation_unit(launches);
    let mut dir = TempDir::new()?;
    let (src, exe) = (dir.path.join("emulation.cpp"), dir.path.join("emulation"));
    std::fs::write(&src, &source).map_err(|e| io_error(&src, e))?;
    let compiler = std::env::var("CXX").ok().filter(|c| !c.trim().is_empty()).unwrap_or_else(|| "g++".into());
    let out = Command::new(&compiler)
        .args(["-std=c++20", "-O1", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .map_err(|e| EmulationError::CompilerMissing { compiler: compiler.clone(), message: e.to_string() })?;
    if !out.status.success() {
        dir.keep = true;
        let mut message = String::from_utf8_lossy(&out.stderr).into_owned();
        if message.len() > 20_000 {
            let mut cut = 20_000;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("\n[… truncated]");
        }
        return Err(EmulationError::Compile { compiler, source_path: src, message });
    }
    let (input, output) = (dir.path.join("input.bin"), dir.path.join("output.bin"));
    std::fs::write(&input, input_file(launches, &which)).map_err(|e| io_error(&input, e))?;
    let run = Command::new(&exe).arg(&input).arg(&output).output().map_err(|e| io_error(&exe, e))?;
    if !run.status.success() {
        return Err(EmulationError::Run {
            status: run.status.to_string(),
            stderr: String::from_utf8_lossy(&run.stderr).into_owned(),
        });
    }
    let bytes = std::fs::read(&output).map_err(|e| io_error(&output, e))?;
    let want: usize = launches.iter().map(|l| l.output_lens.iter().sum::<usize>()).sum();
    if bytes.len() != 8 * want {
        return Err(EmulationError::Io {
            path: output,
            message: format!("expected {} bytes of outputs, found {}", 8 * want, bytes.len()),
        });
    }
    let mut words = bytes.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes")));
    Ok(launches
        .iter()
        .map(|l| {
            let mut outs = vec![Vec::new(); l.output_lens.len()];
            for a in &l.kernel.args {
                if let Arg::Output(j) = *a {
                    outs[j] = words.by_ref().take(l.output_lens[j]).collect();
                }
            }
            outs
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::Launch;

    fn kernel(entry: &str, body: &str, args: Vec<Arg>, threads: u32) -> CudaKernel {
        let params = crate::cuda::param_list(&args);
        let source = format!("{PRELUDE}\nextern \"C\" __global__ void {entry}({params}) {{\n{body}\n}}\n");
        CudaKernel { entry: entry.into(), source, args, launch: Launch::Elements { elements: None, threads } }
    }

    /// The emitted PRF word function at the given word indices of one stream (11 words: key, nonce).
    fn prg_words(stream: Vec<u32>, indices: Vec<u64>) -> Vec<u64> {
        let args = vec![Arg::Len, Arg::Input(0), Arg::Output(0), Arg::Streams];
        let body = "for (u64 e = (u64)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (u64)gridDim.x * blockDim.x) \
                    out0[e] = cg_prg_word(streams, in0[e]);";
        let n = indices.len();
        let l = EmulatedLaunch {
            kernel: kernel("prg_at", body, args, 4),
            scalars: vec![n as u64],
            inputs: vec![indices],
            streams: stream,
            output_lens: vec![n],
        };
        emulate(&[l]).unwrap().remove(0).remove(0)
    }

    /// 11 stream words: the 16 AES key bytes (then 16 unused key bytes), the 12 nonce bytes, little endian.
    fn stream(key: &str, nonce: &str) -> Vec<u32> {
        let bytes: Vec<u8> = (0..key.len() + nonce.len())
            .step_by(2)
            .map(|i| {
                let hex = if i < key.len() { &key[i..i + 2] } else { &nonce[i - key.len()..i - key.len() + 2] };
                u8::from_str_radix(hex, 16).unwrap()
            })
            .collect();
        let (k, n) = bytes.split_at(16);
        let word = |c: &[u8]| u32::from_le_bytes(c.try_into().unwrap());
        k.chunks(4).map(word).chain([0xdead_beef; 4]).chain(n.chunks(4).map(word)).collect()
    }

    #[test]
    fn the_emitted_prf_is_aes128_ctr_fips197_and_sp800_38a() {
        // FIPS-197 appendix C.1: AES-128 of 00112233…eeff under 000102…0f is 69c4e0d8…c55a; as a counter block,
        // that is nonce 00112233…bb and block counter 0xccddeeff, i.e. words 2·0xccddeeff and the next.
        let fips = stream("000102030405060708090a0b0c0d0e0f", "00112233445566778899aabb");
        let e = 2 * 0xccdd_eeff_u64;
        assert_eq!(prg_words(fips, vec![e, e + 1]), [0x3004_7b6a_d8e0_c469, 0x5ac5_b470_80b7_cdd8]);
        // SP 800-38A F.5.1 (CTR-AES128): keystream blocks 1 and 2 (plaintext XOR ciphertext) from counter
        // f0f1…fcfdfeff; out of order, to show any word is computed on its own.
        let sp = stream("2b7e151628aed2a6abf7158809cf4f3c", "f0f1f2f3f4f5f6f7f8f9fafb");
        let e = 2 * 0xfcfd_feff_u64;
        assert_eq!(
            prg_words(sp, vec![e + 3, e, e + 2, e + 1]),
            [0xae73_50fc_d777_a018, 0xb07c_6098_73df_8cec, 0x6351_7367_3c7c_2b36, 0xe4a1_9eea_7516_d2f2]
        );
    }

    #[test]
    fn a_bad_launch_is_refused_before_compiling() {
        let k = kernel("copy", "out0[0] = in0[0];", vec![Arg::Len, Arg::Input(0), Arg::Output(0)], 1);
        let l =
            EmulatedLaunch { kernel: k, scalars: vec![], inputs: vec![vec![1]], streams: vec![], output_lens: vec![1] };
        let err = emulate(&[l]).unwrap_err();
        assert!(matches!(err, EmulationError::BadLaunch { launch: 0, .. }), "{err}");
    }

    #[test]
    fn duplicate_entry_names_are_renamed_and_a_compile_error_is_reported() {
        let args = vec![Arg::Len, Arg::Input(0), Arg::Output(0)];
        let loop_ = |op: &str| {
            format!("for (u64 e = (u64)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += (u64)gridDim.x * blockDim.x) out0[e] = in0[e] {op};")
        };
        let launch = |body: &str| EmulatedLaunch {
            kernel: kernel("same_name", body, args.clone(), 4),
            scalars: vec![10],
            inputs: vec![(0..10).collect()],
            streams: vec![],
            output_lens: vec![10],
        };
        let (plus, times) = (launch(&loop_("+ 1")), launch(&loop_("* 3")));
        let (tu, which) = translation_unit(&[plus.clone(), times.clone(), plus.clone()]);
        assert_eq!(which, vec![0, 1, 0]);
        assert!(tu.contains("#define same_name same_name__cg1"));
        let out = emulate(&[plus.clone(), times, plus]).unwrap();
        assert_eq!(out[0][0], (1..11).collect::<Vec<u64>>());
        assert_eq!(out[1][0], (0..10).map(|x| 3 * x).collect::<Vec<u64>>());
        assert_eq!(out[2], out[0]);
        let broken = launch("this is not C;");
        match emulate(&[broken]).unwrap_err() {
            EmulationError::Compile { message, source_path, .. } => {
                assert!(message.contains("error"), "{message}");
                assert!(source_path.exists());
                let _ = std::fs::remove_dir_all(source_path.parent().expect("temp dir"));
            }
            e => panic!("expected a compile error, got {e}"),
        }
    }
}
