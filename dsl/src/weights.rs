//! Weights I/O in safetensors with PyTorch state_dict names and layouts: f32 in files (int64 for batch norm's
//! `num_batches_tracked`, as PyTorch writes it), f64 in memory. A file written from a PyTorch `state_dict`
//! loads unchanged; a missing, extra or mis-shaped tensor is an error naming it and both shapes.

use crate::error::{DslError, Result};
use crate::graph::Graph;
use crate::layer::ParamKind;
use crate::params::Params;
use crate::tensor::Tensor;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::path::Path;

fn st_err(source_name: &str, e: impl std::fmt::Display) -> DslError {
    DslError::Safetensors { source_name: source_name.to_string(), message: e.to_string() }
}

/// Serialises `params` (checked against `graph`) into safetensors bytes.
pub fn to_bytes(graph: &Graph, params: &Params) -> Result<Vec<u8>> {
    params.check(graph, "parameters")?;
    let mut buffers: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for spec in graph.parameters() {
        let t = params.require(&spec.name)?;
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
        let view = TensorView::new(*dtype, shape.clone(), bytes).map_err(|e| st_err(name, e))?;
        views.push((name.clone(), view));
    }
    safetensors::serialize(views, &None).map_err(|e| st_err("parameters", e))
}

/// Decodes one stored tensor into f64.
fn decode(name: &str, view: &TensorView<'_>, source_name: &str) -> Result<Tensor> {
    let bytes = view.data();
    let data: Vec<f64> = match view.dtype() {
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
            return Err(DslError::TensorDtype {
                name: name.to_string(),
                expected: "F32, F64 or I64".into(),
                found: format!("{other:?}"),
                source_name: source_name.to_string(),
            })
        }
    };
    Tensor::from_vec(view.shape(), data)
}

/// Reads safetensors bytes into parameters for `graph`; `source_name` (usually the file path) goes into errors.
pub fn from_bytes(graph: &Graph, bytes: &[u8], source_name: &str) -> Result<Params> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| st_err(source_name, e))?;
    let mut params = Params::new();
    for (name, view) in st.tensors() {
        let t = decode(&name, &view, source_name)?;
        params.insert(&name, t);
    }
    params.check(graph, source_name)?;
    Ok(params)
}

/// Writes `params` of `graph` to a safetensors file.
pub fn save(graph: &Graph, params: &Params, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let bytes = to_bytes(graph, params)?;
    std::fs::write(path, bytes).map_err(|source| DslError::Io { path: path.to_path_buf(), source })
}

/// Loads a safetensors file (e.g. a PyTorch `state_dict` saved with `safetensors.torch.save_file`) for `graph`.
pub fn load(graph: &Graph, path: impl AsRef<Path>) -> Result<Params> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| DslError::Io { path: path.to_path_buf(), source })?;
    from_bytes(graph, &bytes, &path.display().to_string())
}
