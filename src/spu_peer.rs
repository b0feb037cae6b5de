//! SecretFlow SPU as a peer to measure against: finding a Python that has SPU, and running one workload of the
//! peers' `bench_spu.py` (`../shared/peers`) in a subprocess to read back its `mpc_s`, the secure computation alone
//! (median of the script's timed runs after its warm-up). `cryptgpu bench-spu` and `cryptgpu bench-deployment`
//! share it.
//!
//! The script prints one `RESULT {json}` line per run; everything else it prints (JAX's and SPU's logging) is
//! ignored, and shown only when no `RESULT` line came.

use std::path::PathBuf;
use std::process::Command;

/// The environment variable naming the Python with SPU when `--python` is not given.
pub const PYTHON_ENV: &str = "SPU_PYTHON";

/// How to install SPU, for the error messages.
const INSTALL: &str =
    "install it with `python3 -m venv \"$VENV\" && \"$VENV/bin/pip\" install spu==0.9.5` (Python 3.11; \
                       see ../shared/peers/README.md)";

/// What went wrong running SPU.
#[derive(Debug, thiserror::Error)]
pub enum SpuError {
    /// Neither `--python` nor `$SPU_PYTHON` names a Python.
    #[error("no Python with SPU given: pass --python PATH or set ${PYTHON_ENV}; {INSTALL}")]
    NoPython,
    /// The Python could not be started or cannot import SPU.
    #[error("the Python {python} (from {source_of}) cannot import spu: {detail}; {INSTALL}")]
    CannotImport {
        /// The Python.
        python: PathBuf,
        /// Where its path came from (`--python` or `$SPU_PYTHON`).
        source_of: &'static str,
        /// What it said (or why it did not start).
        detail: String,
    },
    /// The benchmark script is missing.
    #[error("SPU's benchmark script {0} does not exist (pass --script PATH: bench_spu.py of ../shared/peers)")]
    NoScript(PathBuf),
    /// A run of the script failed or printed no usable `RESULT` line.
    #[error("SPU's {workload} run ({python} {script}) failed: {detail}")]
    Run {
        /// The workload and its size, as passed to the script.
        workload: String,
        /// The Python.
        python: PathBuf,
        /// The script.
        script: PathBuf,
        /// Its exit status and what it printed, or what was wrong with its `RESULT` line.
        detail: String,
    },
}

/// One workload of `bench_spu.py`, with its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpuWorkload {
    /// Secret `n×n @ n×n`.
    Matmul {
        /// The side.
        n: usize,
    },
    /// ReLU over `m` secret values.
    Relu {
        /// The element count.
        m: usize,
    },
    /// LeNet inference (avg pooling) of a batch.
    Lenet {
        /// The batch.
        batch: usize,
    },
    /// MLP 784-128-128-10 inference of a batch.
    Mlp {
        /// The batch.
        batch: usize,
    },
    /// One SGD step of that MLP (softmax cross-entropy) on a batch.
    MlpTrain {
        /// The batch.
        batch: usize,
    },
}

impl SpuWorkload {
    /// The script's arguments selecting this workload.
    pub fn args(self) -> Vec<String> {
        let (name, size, value) = match self {
            SpuWorkload::Matmul { n } => ("matmul", "--n", n),
            SpuWorkload::Relu { m } => ("relu", "--m", m),
            SpuWorkload::Lenet { batch } => ("lenet", "--batch", batch),
            SpuWorkload::Mlp { batch } => ("mlp", "--batch", batch),
            SpuWorkload::MlpTrain { batch } => ("mlp_train", "--batch", batch),
        };
        vec!["--workload".into(), name.into(), size.into(), value.to_string()]
    }
}

/// How SPU runs its three parties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpuMode {
    /// Three threads of one process, in-memory links.
    Sim,
    /// Three processes linked by brpc over loopback, on ports `base_port..base_port + 3`.
    Brpc {
        /// The first party's port.
        base_port: u16,
    },
}

/// Where to find SPU for a comparison.
#[derive(Debug, Clone)]
pub struct Spu {
    /// A Python with `spu==0.9.5` installed.
    pub python: PathBuf,
    /// `bench_spu.py`.
    pub script: PathBuf,
}

impl Spu {
    /// The Python `python` (else `$SPU_PYTHON`) with `script`, checked: the script exists and the Python imports
    /// SPU. Returns it with SPU's version.
    pub fn find(python: Option<PathBuf>, script: PathBuf) -> Result<(Spu, String), SpuError> {
        let (python, source_of) = match python {
            Some(p) => (p, "--python"),
            None => match std::env::var_os(PYTHON_ENV) {
                Some(p) if !p.is_empty() => (PathBuf::from(p), "$SPU_PYTHON"),
                _ => return Err(SpuError::NoPython),
            },
        };
        let cannot = |detail: String| SpuError::CannotImport { python: python.clone(), source_of, detail };
        let out = Command::new(&python)
            .args(["-c", "from spu import version; print(version.__version__)"])
            .output()
            .map_err(|e| cannot(format!("it does not start ({e})")))?;
        if !out.status.success() {
            let said = String::from_utf8_lossy(&out.stderr);
            let last = said.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("no message");
            return Err(cannot(format!("{} ({})", last.trim(), out.status)));
        }
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !script.is_file() {
            return Err(SpuError::NoScript(script));
        }
        Ok((Spu { python, script }, version))
    }

    /// One run of `workload` in `mode` with `reps` timed runs after the script's warm-up: SPU's `mpc_s` in
    /// seconds (the median of the timed runs, sharing and revealing excluded).
    pub fn mpc_seconds(&self, workload: SpuWorkload, mode: SpuMode, reps: usize) -> Result<f64, SpuError> {
        let mut cmd = Command::new(&self.python);
        cmd.arg(&self.script).args(workload.args()).args(["--reps", &reps.to_string(), "--pt-reps", "3"]);
        match mode {
            SpuMode::Sim => cmd.args(["--mode", "sim"]),
            SpuMode::Brpc { base_port } => cmd.args(["--mode", "brpc", "--base-port", &base_port.to_string()]),
        };
        let err = |detail: String| SpuError::Run {
            workload: workload.args()[1..].join(" "),
            python: self.python.clone(),
            script: self.script.clone(),
            detail,
        };
        let out = cmd
            .env("PEERS_OUT", std::env::temp_dir().join("cryptgpu-bench-spu.jsonl"))
            .output()
            .map_err(|e| err(format!("cannot start it: {e}")))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = match stdout.lines().find_map(|l| l.strip_prefix("RESULT ")) {
            Some(line) if out.status.success() => line,
            _ => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(err(format!("{}, no RESULT line; its stderr ends:\n{}", out.status, tail.join("\n"))));
            }
        };
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| err(format!("bad RESULT line: {e}")))?;
        match v["mpc_s"].as_f64() {
            Some(s) if s.is_finite() && s > 0.0 => Ok(s),
            _ => Err(err(format!("its RESULT has no positive mpc_s: {line}"))),
        }
    }
}
