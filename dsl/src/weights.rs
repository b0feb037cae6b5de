//! Weights I/O in safetensors with PyTorch state_dict names and layouts: f32 in files (int64 for batch norm's
//! `num_batches_tracked`, as PyTorch writes it), f64 in memory. A file written from a PyTorch `state_dict`
//! loads unchanged.
//!
//! Loading follows PyTorch's `load_state_dict`:
//! - **Strict** by default ([`load`], [`from_bytes`]): a missing or unexpected tensor is an error that lists every
//!   one of them (with the shape expected or found), together with every mis-shaped or mistyped tensor.
//! - **Non-strict** on request ([`load_with`] with [`LoadOptions::non_strict`], PyTorch's `strict=False`):
//!   missing and unexpected tensors are reported in a [`LoadReport`] (`missing_keys`, `unexpected_keys`) instead.
//!   Unexpected tensors are dropped; missing ones stay **absent** from the returned [`Params`] — nothing is
//!   invented — so a later inference or training that needs one fails with an error naming it. A tensor the model
//!   has but with the wrong shape or an unreadable dtype is an error in both modes (as PyTorch's size mismatch).
//! - Batch norm's `num_batches_tracked` is **optional everywhere**, strict mode included: inference never reads
//!   it, and Keras-converted or hand-exported state dicts lack it. It is never a missing key; when absent it stays
//!   absent from the [`Params`], and training ([`crate::reference::forward`] in train mode and the private
//!   trainer) counts from 0, as PyTorch does when it fills in a missing counter. [`save`] writes it only when
//!   present.
//!
//! Every error names the file and the tensor, with the expected and the found shape or dtype. A file that is not a
//! readable safetensors container (truncated, corrupt, another format) is explained in words ([`FileDefect`]), not
//! by the parser's error name.

use crate::error::{DslError, FileDefect, Result, TensorIssue};
use crate::graph::Graph;
use crate::layer::ParamKind;
use crate::params::Params;
use crate::tensor::Tensor;
use safetensors::tensor::{Dtype, Metadata, SafeTensorError, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

/// The safetensors parser's limit on the header length (`MAX_HEADER_SIZE` in safetensors 0.4).
const MAX_HEADER: usize = 100_000_000;

/// How strictly a file's tensors must match the model, like PyTorch's `load_state_dict(strict=…)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// `true` (the default): missing or unexpected tensors are an error. `false`: they are reported.
    pub strict: bool,
}

impl Default for LoadOptions {
    /// Strict, as PyTorch.
    fn default() -> Self {
        LoadOptions { strict: true }
    }
}

impl LoadOptions {
    /// Missing or unexpected tensors are an error (the default).
    pub fn strict() -> Self {
        LoadOptions { strict: true }
    }

    /// Missing and unexpected tensors are reported in the [`LoadReport`] (PyTorch's `strict=False`).
    pub fn non_strict() -> Self {
        LoadOptions { strict: false }
    }
}

/// What a load did not match, like the `_IncompatibleKeys` PyTorch's `load_state_dict` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Tensors the model needs that the file lacks (absent from the loaded parameters), in name order.
    /// `num_batches_tracked` is optional and never listed.
    pub missing_keys: Vec<String>,
    /// Tensors in the file that the model does not have (not loaded), in name order.
    pub unexpected_keys: Vec<String>,
}

impl LoadReport {
    /// Whether every tensor matched.
    pub fn is_complete(&self) -> bool {
        self.missing_keys.is_empty() && self.unexpected_keys.is_empty()
    }
}

fn write_err(source_name: &str, e: impl std::fmt::Display) -> DslError {
    DslError::Safetensors { source_name: source_name.to_string(), message: e.to_string() }
}

/// Serialises `params` (checked against `graph`) into safetensors bytes; an absent `num_batches_tracked` is not
/// written.
pub fn to_bytes(graph: &Graph, params: &Params) -> Result<Vec<u8>> {
    params.check(graph, "parameters")?;
    let mut buffers: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for spec in graph.parameters() {
        let Some(t) = params.get(&spec.name) else { continue }; // only an optional counter can be absent here
        let (dtype, bytes) = match spec.kind {
            ParamKind::Counter => {
                (Dtype::I64, t.data().iter().flat_map(|v| (v.round() as i64).to_le_bytes()).collect())
            }
            _ => (Dtype::F32, t.data().iter().flat_map(|v| (*v as f32).to_le_bytes()).collect()),
        };
        buffers.push((spec.name, dtype, spec.shape, bytes));
    }
    let mut views = Vec::with_capacity(buffers.len());
    for (name, dtype, shape, bytes) in &buffers {
        let view = TensorView::new(*dtype, shape.clone(), bytes).map_err(|e| write_err(name, e))?;
        views.push((name.clone(), view));
    }
    safetensors::serialize(views, &None).map_err(|e| write_err("parameters", e))
}

/// Decodes one stored tensor's elements into f64, or says why its dtype cannot be read.
fn decode(name: &str, view: &TensorView<'_>) -> std::result::Result<Vec<f64>, TensorIssue> {
    let bytes = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
        Dtype::I64 => bytes
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64)
            .collect(),
        other => {
            return Err(TensorIssue::Dtype {
                name: name.to_string(),
                shape: view.shape().to_vec(),
                found: format!("{other:?}"),
            })
        }
    })
}

/// Reads safetensors bytes into parameters for `graph`, strictly; `source_name` (usually the file path) goes into
/// errors. See [`from_bytes_with`].
pub fn from_bytes(graph: &Graph, bytes: &[u8], source_name: &str) -> Result<Params> {
    Ok(from_bytes_with(graph, bytes, source_name, LoadOptions::strict())?.0)
}

/// Reads safetensors bytes into parameters for `graph` with `options` (see the [module documentation](self)):
/// the parameters and what was missing or unexpected.
pub fn from_bytes_with(
    graph: &Graph,
    bytes: &[u8],
    source_name: &str,
    options: LoadOptions,
) -> Result<(Params, LoadReport)> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| DslError::CorruptFile { source_name: source_name.to_string(), defect: defect(bytes, &e) })?;
    let specs = graph.parameters();
    let shapes: HashMap<&str, &[usize]> = specs.iter().map(|s| (s.name.as_str(), s.shape.as_slice())).collect();
    let mut params = Params::new();
    let mut issues = Vec::new();
    for spec in specs.iter().filter(|s| s.kind != ParamKind::Counter) {
        if st.tensor(&spec.name).is_err() {
            issues.push(TensorIssue::Missing { name: spec.name.clone(), expected: spec.shape.clone() });
        }
    }
    for (name, view) in st.tensors() {
        let Some(&expected) = shapes.get(name.as_str()) else {
            issues.push(TensorIssue::Unexpected { name, found: view.shape().to_vec() });
            continue;
        };
        if view.shape() != expected {
            issues.push(TensorIssue::Shape { name, expected: expected.to_vec(), found: view.shape().to_vec() });
            continue;
        }
        match decode(&name, &view) {
            Ok(data) => {
                params.insert(&name, Tensor::from_vec(view.shape(), data)?);
            }
            Err(issue) => issues.push(issue),
        }
    }
    issues.sort_by(|a, b| a.name().cmp(b.name()));
    let mut report = LoadReport::default();
    for issue in &issues {
        match issue {
            TensorIssue::Missing { name, .. } => report.missing_keys.push(name.clone()),
            TensorIssue::Unexpected { name, .. } => report.unexpected_keys.push(name.clone()),
            _ => {}
        }
    }
    let fatal: Vec<TensorIssue> = if options.strict {
        issues
    } else {
        issues
            .into_iter()
            .filter(|i| !matches!(i, TensorIssue::Missing { .. } | TensorIssue::Unexpected { .. }))
            .collect()
    };
    if !fatal.is_empty() {
        let keys_only = fatal.iter().all(|i| matches!(i, TensorIssue::Missing { .. } | TensorIssue::Unexpected { .. }));
        return Err(DslError::Mismatch {
            source_name: source_name.to_string(),
            model: graph.name().to_string(),
            issues: fatal,
            hint: if keys_only {
                " (strict loading; non-strict loading, `LoadOptions::non_strict()` or `--non-strict` on the command \
                 line, reports missing and unexpected tensors instead)"
            } else {
                ""
            },
        });
    }
    Ok((params, report))
}

/// Says in words what is wrong with `bytes`, which the safetensors parser refused with `err`.
fn defect(bytes: &[u8], err: &SafeTensorError) -> FileDefect {
    use SafeTensorError as E;
    let declared_header = || bytes.get(..8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
    // The header as the parser read it; only called for errors raised after the header parsed as JSON.
    let header = || -> Option<(usize, Metadata)> {
        let n = usize::try_from(declared_header()).ok()?;
        let text = bytes.get(8..8usize.checked_add(n)?)?;
        Some((n, serde_json::from_slice::<Metadata>(text).ok()?))
    };
    let other = || FileDefect::Other { detail: format!("{err:?}") };
    match err {
        E::HeaderTooSmall => FileDefect::TooSmall { len: bytes.len() },
        E::HeaderTooLarge => FileDefect::HeaderTooLarge { declared: declared_header(), limit: MAX_HEADER },
        E::InvalidHeaderLength => {
            FileDefect::HeaderTruncated { declared: declared_header(), available: bytes.len().saturating_sub(8) }
        }
        E::InvalidHeader => FileDefect::HeaderNotText,
        E::InvalidHeaderStart => FileDefect::HeaderNotJson { detail: "it does not start with `{`".into() },
        E::InvalidHeaderDeserialization => {
            let n = usize::try_from(declared_header()).unwrap_or(usize::MAX);
            let text = bytes.get(8..8usize.saturating_add(n)).unwrap_or_default();
            match serde_json::from_slice::<Metadata>(text) {
                Err(e) => FileDefect::HeaderNotJson { detail: e.to_string() },
                Ok(_) => other(),
            }
        }
        E::MetadataIncompleteBuffer => match header() {
            Some((n, meta)) => {
                let declared = meta.tensors().values().map(|t| t.data_offsets.1).max().unwrap_or(0);
                let available = bytes.len().saturating_sub(8 + n);
                if available < declared {
                    FileDefect::DataTruncated { declared, available }
                } else {
                    FileDefect::TrailingBytes { declared, available }
                }
            }
            None => other(),
        },
        E::TensorInvalidInfo | E::ValidationOverflow => {
            let Some((_, meta)) = header() else { return other() };
            let mut tensors: Vec<_> = meta.tensors().into_iter().collect();
            tensors.sort_by_key(|(_, t)| t.data_offsets);
            for (name, t) in tensors {
                let needed = t
                    .shape
                    .iter()
                    .try_fold(1usize, |a, &d| a.checked_mul(d))
                    .and_then(|n| n.checked_mul(t.dtype.size()));
                let span = t.data_offsets.1.saturating_sub(t.data_offsets.0);
                match needed {
                    None => return FileDefect::ShapeOverflow { name, shape: t.shape.clone() },
                    Some(needed) if needed != span => {
                        return FileDefect::TensorSize {
                            name,
                            dtype: format!("{:?}", t.dtype),
                            shape: t.shape.clone(),
                            needed,
                            span,
                        }
                    }
                    Some(_) => {}
                }
            }
            other()
        }
        E::InvalidOffset(name) => FileDefect::TensorOffsets { name: name.clone() },
        _ => other(),
    }
}

/// Writes `params` of `graph` to a safetensors file.
pub fn save(graph: &Graph, params: &Params, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let bytes = to_bytes(graph, params)?;
    std::fs::write(path, bytes).map_err(|source| DslError::Io { path: path.to_path_buf(), source })
}

/// Loads a safetensors file (e.g. a PyTorch `state_dict` saved with `safetensors.torch.save_file`) for `graph`,
/// strictly. See [`load_with`].
pub fn load(graph: &Graph, path: impl AsRef<Path>) -> Result<Params> {
    Ok(load_with(graph, path, LoadOptions::strict())?.0)
}

/// Loads a safetensors file for `graph` with `options` (see the [module documentation](self)): the parameters
/// and what was missing or unexpected.
pub fn load_with(graph: &Graph, path: impl AsRef<Path>, options: LoadOptions) -> Result<(Params, LoadReport)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| DslError::Io { path: path.to_path_buf(), source })?;
    from_bytes_with(graph, &bytes, &path.display().to_string(), options)
}
