//! Tensors in files, for the command line: a model input read from a `.npy` array or from one tensor of a
//! safetensors file, and logits written as `.npy` (float64, C order) or JSON (one array of floats per input).
//! Every error names the file, and the tensor where there is one.

use crate::dsl::Tensor as DslTensor;
use std::path::{Path, PathBuf};

/// Why a tensor file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TensorFileError {
    /// The file itself: unreadable, malformed, of an unsupported element type.
    #[error("{}: {problem}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// One tensor of a safetensors file.
    #[error("{}: tensor `{tensor}`: {problem}", path.display())]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// What is wrong.
        problem: String,
    },
    /// A safetensors file without the named tensor, or with several tensors and none named.
    #[error("{}: {problem}; it holds {}", path.display(), list(names))]
    WhichTensor {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
        /// The tensors the file holds.
        names: Vec<String>,
    },
    /// A file name whose extension says no supported format.
    #[error("{}: unknown format: expected a file ending in {expected}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// The extensions accepted.
        expected: &'static str,
    },
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        return "no tensors".into();
    }
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

impl TensorFileError {
    /// What is wrong, without the file name (for callers that name the file themselves).
    pub fn problem(&self) -> String {
        match self {
            TensorFileError::File { problem, .. } => problem.clone(),
            TensorFileError::Tensor { tensor, problem, .. } => format!("tensor `{tensor}`: {problem}"),
            TensorFileError::WhichTensor { problem, names, .. } => format!("{problem}; it holds {}", list(names)),
            TensorFileError::Format { expected, .. } => format!("unknown format: expected a file ending in {expected}"),
        }
    }
}

fn file_err(path: &Path, problem: impl Into<String>) -> TensorFileError {
    TensorFileError::File { path: path.to_path_buf(), problem: problem.into() }
}

fn has_ext(path: &Path, ext: &str) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

/// Reads a `.npy` array of float32 or float64 in C order (any shape); refuses a header that declares more data
/// than the file holds before allocating it.
pub fn read_npy(path: &Path) -> Result<DslTensor, TensorFileError> {
    let bytes = std::fs::read(path).map_err(|e| file_err(path, format!("cannot be read: {e}")))?;
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| file_err(path, format!("is not a valid .npy file: {e}")))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    if npy.order() != npyz::Order::C {
        return Err(file_err(path, "is stored in Fortran order: save it in C order (numpy's default)"));
    }
    let dtype = npy.dtype();
    let item = dtype.num_bytes().unwrap_or(usize::MAX);
    let needed = shape.iter().try_fold(item, |a, &d| a.checked_mul(d));
    if needed.is_none_or(|n| n > bytes.len()) {
        return Err(file_err(path, format!("declares shape {shape:?} of {}, more than the file holds", dtype.descr())));
    }
    let data: Vec<f64> = match npy.try_data::<f64>() {
        Ok(r) => r.collect::<std::io::Result<_>>(),
        Err(npy) => match npy.try_data::<f32>() {
            Ok(r) => r.map(|v| v.map(f64::from)).collect::<std::io::Result<_>>(),
            Err(_) => return Err(file_err(path, format!("has dtype {}; expected float32 or float64", dtype.descr()))),
        },
    }
    .map_err(|e| file_err(path, format!("cannot be read: {e}")))?;
    DslTensor::from_vec(&shape, data).map_err(|e| file_err(path, e.to_string()))
}

/// Reads one float tensor (F32, F64 or BF16) of a safetensors file: the one named `tensor`, or the
/// file's only tensor when `tensor` is `None`. Returns its name and value.
pub fn read_safetensors(path: &Path, tensor: Option<&str>) -> Result<(String, DslTensor), TensorFileError> {
    use safetensors::{Dtype, SafeTensors};
    let bytes = std::fs::read(path).map_err(|e| file_err(path, format!("cannot be read: {e}")))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| file_err(path, format!("is not a valid safetensors file: {e}")))?;
    let mut names: Vec<String> = st.names().into_iter().cloned().collect();
    names.sort();
    let name = match (tensor, names.as_slice()) {
        (Some(n), _) if names.iter().any(|m| m == n) => n.to_string(),
        (Some(n), _) => {
            let problem = format!("has no tensor `{n}`");
            return Err(TensorFileError::WhichTensor { path: path.to_path_buf(), problem, names });
        }
        (None, [only]) => only.clone(),
        (None, _) => {
            let problem = format!("holds {} tensors: name the input with --input-tensor", names.len());
            return Err(TensorFileError::WhichTensor { path: path.to_path_buf(), problem, names });
        }
    };
    let view = st.tensor(&name).map_err(|e| file_err(path, e.to_string()))?;
    let bad = |problem: String| TensorFileError::Tensor { path: path.to_path_buf(), tensor: name.clone(), problem };
    let raw = view.data();
    let data: Vec<f64> = match view.dtype() {
        Dtype::F64 => raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect(),
        Dtype::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")) as f64).collect(),
        Dtype::BF16 => raw
            .chunks_exact(2)
            .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16) as f64)
            .collect(),
        other => return Err(bad(format!("has dtype {other:?}; expected F32, F64 or BF16"))),
    };
    let t = DslTensor::from_vec(view.shape(), data).map_err(|e| bad(e.to_string()))?;
    Ok((name, t))
}

/// Reads a model input by the file's extension: `.npy`, or `.safetensors` (`tensor` names one of its tensors; the
/// file must hold one tensor when it is `None`).
pub fn read_input(path: &Path, tensor: Option<&str>) -> Result<DslTensor, TensorFileError> {
    if has_ext(path, "npy") {
        if let Some(t) = tensor {
            return Err(file_err(
                path,
                format!("is a .npy array: it has no tensor `{t}` (--input-tensor is for safetensors)"),
            ));
        }
        return read_npy(path);
    }
    if has_ext(path, "safetensors") {
        return Ok(read_safetensors(path, tensor)?.1);
    }
    Err(TensorFileError::Format { path: path.to_path_buf(), expected: ".npy or .safetensors" })
}

/// The rows of a `[N, K]` tensor (one per input).
pub fn rows(t: &DslTensor) -> Vec<Vec<f64>> {
    let k = t.shape().get(1..).map_or(1, |s| s.iter().product::<usize>()).max(1);
    t.data().chunks(k).map(<[f64]>::to_vec).collect()
}

/// Writes logits `[N, K]` by the file's extension: `.npy` (float64, C order, shape `[N, K]`) or `.json` (one array
/// of K floats per input).
pub fn write_logits(path: &Path, logits: &DslTensor) -> Result<(), TensorFileError> {
    let bytes = if has_ext(path, "json") {
        serde_json::to_vec(&rows(logits)).map_err(|e| file_err(path, format!("cannot encode the logits: {e}")))?
    } else if has_ext(path, "npy") {
        use npyz::WriterBuilder;
        let mut out = Vec::new();
        let shape: Vec<u64> = logits.shape().iter().map(|&d| d as u64).collect();
        let encoded = (|| -> std::io::Result<()> {
            let mut w = npyz::WriteOptions::new().default_dtype().writer(&mut out).shape(&shape).begin_nd()?;
            w.extend(logits.data().iter().copied())?;
            w.finish()
        })();
        encoded.map_err(|e| file_err(path, format!("cannot encode the logits: {e}")))?;
        out
    } else {
        return Err(TensorFileError::Format { path: path.to_path_buf(), expected: ".npy or .json" });
    };
    std::fs::write(path, bytes).map_err(|e| file_err(path, format!("cannot be written: {e}")))
}

/// Checks, before a run, that `path` can take logits: a known extension and an existing directory.
pub fn check_output(path: &Path) -> Result<(), TensorFileError> {
    if !(has_ext(path, "npy") || has_ext(path, "json")) {
        return Err(TensorFileError::Format { path: path.to_path_buf(), expected: ".npy or .json" });
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(file_err(path, format!("its directory {} does not exist", dir.display())));
    }
    Ok(())
}
