//! Private inference of any model on a batch of inputs, in one process, checked against the model owner's
//! plaintext reference: what `cryptgpu infer` runs for every shipped model. It holds the input checks (a batch
//! `[N, …input]` or a single input of the model's input shape, with errors naming the file, the tensor and the
//! shapes) and the run with its agreement figures.

use crate::dsl::{Graph, Params, Tensor as DslTensor};
use crate::runtime::executor::{Executor, Inference};
use crate::tensor_files::TensorFileError;
use crate::workloads::{argmax, relative_error};
use crate::Session;
use std::path::{Path, PathBuf};

/// Why an input cannot be used with a model.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file could not be read.
    #[error(transparent)]
    File(#[from] TensorFileError),
    /// The tensor's shape is not `[N, …input]` nor the model's input shape.
    #[error("{}{}: has shape {found:?}; model `{model}` takes [N, {}] (a batch of N ≥ 1) or one input {expected:?}",
        path.display(), tensor.as_ref().map_or(String::new(), |t| format!(": tensor `{t}`")),
        expected.iter().map(usize::to_string).collect::<Vec<_>>().join(", "))]
    Shape {
        /// The file.
        path: PathBuf,
        /// The tensor of a safetensors file.
        tensor: Option<String>,
        /// Its shape.
        found: Vec<usize>,
        /// The model.
        model: String,
        /// The model's input shape (one sample).
        expected: Vec<usize>,
    },
    /// More inputs asked for than the source holds.
    #[error("{what}: --batch {batch} asks for more inputs than the {rows} it holds")]
    Rows {
        /// The file or directory.
        what: String,
        /// Inputs asked for.
        batch: usize,
        /// Inputs there.
        rows: usize,
    },
    /// An empty batch.
    #[error("--batch must be at least 1")]
    EmptyBatch,
}

/// [`Executor::infer`] under the executor's declared ReLU bound, or — when the model owner's range analysis cannot
/// prove it (`Error::ReluBound`: deep models with random weights) — with the full 64-bit sign circuit instead. Returns
/// the inference and the bound used (`None`: the full circuit). For experiment harnesses that must run every model;
/// a user's run keeps the refusal.
pub fn infer_with_relu_fallback(
    exec: &Executor,
    session: &Session,
    params: &Params,
    input: &DslTensor,
) -> crate::runtime::Result<(Inference, Option<u32>)> {
    match exec.infer(session, params, input) {
        Err(crate::runtime::Error::ReluBound { .. }) => {
            Ok((exec.clone().with_relu_bound(None).infer(session, params, input)?, None))
        }
        r => Ok((r?, exec.relu_bound())),
    }
}

/// The input `t` read from `path` (tensor `tensor` of a safetensors file) as a batch for `graph`: `[N, …input]`
/// as it is, a single input of the model's input shape as a batch of one; the first `batch` rows when given.
pub fn as_batch(
    graph: &Graph,
    t: DslTensor,
    path: &Path,
    tensor: Option<&str>,
    batch: Option<usize>,
) -> Result<DslTensor, InputError> {
    let want = graph.input_shape();
    let found = t.shape().to_vec();
    let t = if found == want {
        let mut one = vec![1];
        one.extend_from_slice(want);
        t.reshape(&one).expect("same element count")
    } else if found.len() == want.len() + 1 && found[1..] == *want && found[0] > 0 {
        t
    } else {
        return Err(InputError::Shape {
            path: path.to_path_buf(),
            tensor: tensor.map(str::to_string),
            found,
            model: graph.name().to_string(),
            expected: want.to_vec(),
        });
    };
    first_rows(t, batch, || path.display().to_string())
}

/// The first `batch` rows of a batch (all of them when `None`).
pub fn first_rows(t: DslTensor, batch: Option<usize>, what: impl Fn() -> String) -> Result<DslTensor, InputError> {
    let rows = t.shape()[0];
    let Some(n) = batch else { return Ok(t) };
    if n == 0 {
        return Err(InputError::EmptyBatch);
    }
    if n > rows {
        return Err(InputError::Rows { what: what(), batch: n, rows });
    }
    let mut shape = t.shape().to_vec();
    shape[0] = n;
    let per_row = t.len() / rows;
    Ok(DslTensor::from_vec(&shape, t.data()[..n * per_row].to_vec()).expect("n rows"))
}

/// A private inference beside its plaintext reference.
#[derive(Debug, Clone)]
pub struct InferenceRun {
    /// The logits the receiver learned, `[N, classes]`.
    pub logits: DslTensor,
    /// The model owner's plaintext reference of the same computation ([`Executor::plaintext_reference`]).
    pub reference: DslTensor,
    /// Mean over inputs of `‖private − plaintext‖₂ / ‖plaintext‖₂`.
    pub mean_relative_error: f64,
    /// Largest absolute difference of any logit.
    pub max_abs_error: f64,
    /// Inputs whose private argmax equals the plaintext argmax.
    pub agree: usize,
    /// The run: per-layer cost, wall time, communication.
    pub inference: Inference,
}

/// Runs `executor` on `input` with `params` among the three parties of `session` and compares the receiver's
/// logits with the plaintext reference.
pub fn run(
    session: &Session,
    executor: &Executor,
    params: &Params,
    input: &DslTensor,
) -> Result<InferenceRun, crate::Error> {
    let inference = executor.infer(session, params, input)?;
    let receiver = executor.roles().receiver;
    let logits = inference
        .logits(receiver)
        .cloned()
        .ok_or_else(|| crate::Error::Internal(format!("the receiver (party {receiver}) got no logits")))?;
    let reference = executor.plaintext_reference(params, input)?;
    let n = reference.shape()[0];
    let k = reference.len() / n.max(1);
    let (mut rel, mut agree) = (0.0, 0);
    for i in 0..n {
        let (p, q) = (&logits.data()[i * k..][..k], &reference.data()[i * k..][..k]);
        rel += relative_error(p, q);
        agree += usize::from(argmax(p) == argmax(q));
    }
    Ok(InferenceRun {
        mean_relative_error: rel / n.max(1) as f64,
        max_abs_error: logits.max_abs_diff(&reference),
        agree,
        logits,
        reference,
        inference,
    })
}
