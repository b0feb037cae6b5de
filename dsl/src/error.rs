//! The one error type of the dsl crate: every variant names the layer, tensor or file involved and, where a
//! shape or size is at fault, both the expected and the found value.

use std::path::PathBuf;

/// Errors from building models, inferring shapes, running the reference and reading or writing weights.
#[derive(Debug, thiserror::Error)]
pub enum DslError {
    /// A layer received an input whose shape it cannot take.
    #[error("layer `{layer}`: expected input shape {expected}, found {found:?}")]
    ShapeMismatch {
        /// Full hierarchical name of the layer.
        layer: String,
        /// What the layer needs, in words (e.g. `[3, H, W]`).
        expected: String,
        /// The per-sample shape that arrived.
        found: Vec<usize>,
    },
    /// A layer's own parameters are invalid (zero kernel, kernel larger than the padded input, …).
    #[error("layer `{layer}`: {message}")]
    InvalidLayer {
        /// Full hierarchical name of the layer.
        layer: String,
        /// What is wrong.
        message: String,
    },
    /// The two branches of a residual block produce different shapes.
    #[error("residual block `{block}`: main branch gives {main:?} but shortcut gives {shortcut:?}")]
    ResidualMismatch {
        /// Full name of the residual block.
        block: String,
        /// Per-sample output shape of the main branch.
        main: Vec<usize>,
        /// Per-sample output shape of the shortcut branch.
        shortcut: Vec<usize>,
    },
    /// Two nodes resolve to the same hierarchical name.
    #[error("duplicate layer name `{name}`")]
    DuplicateName {
        /// The repeated full name.
        name: String,
    },
    /// A layer name contains characters that cannot appear in a PyTorch state_dict key.
    #[error("invalid layer name `{name}`: names must be non-empty and must not contain '.' or whitespace")]
    InvalidName {
        /// The rejected local name.
        name: String,
    },
    /// A tensor the model needs is absent from a parameter set or file.
    #[error("{source_name}: missing tensor `{name}` (expected shape {expected:?})")]
    MissingTensor {
        /// State-dict name of the tensor.
        name: String,
        /// Shape the model needs.
        expected: Vec<usize>,
        /// Where it was looked for (a file path or `parameters`).
        source_name: String,
    },
    /// A tensor is present that the model does not have.
    #[error("{source_name}: unexpected tensor `{name}` of shape {found:?} (the model has no such parameter)")]
    UnexpectedTensor {
        /// State-dict name of the tensor.
        name: String,
        /// Its shape.
        found: Vec<usize>,
        /// Where it was found.
        source_name: String,
    },
    /// A tensor has the wrong shape.
    #[error("{source_name}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    TensorShape {
        /// State-dict name of the tensor.
        name: String,
        /// Shape the model needs.
        expected: Vec<usize>,
        /// Shape that was found.
        found: Vec<usize>,
        /// Where it was found.
        source_name: String,
    },
    /// A tensor is stored with an element type this crate does not read.
    #[error("{source_name}: tensor `{name}` has dtype {found}, expected {expected}")]
    TensorDtype {
        /// State-dict name of the tensor.
        name: String,
        /// Accepted dtypes, in words.
        expected: String,
        /// The dtype in the file.
        found: String,
        /// Where it was found.
        source_name: String,
    },
    /// A tensor's data length does not match its shape.
    #[error("{what}: shape {shape:?} needs {expected} elements, found {found}")]
    DataLength {
        /// What was being built.
        what: String,
        /// The requested shape.
        shape: Vec<usize>,
        /// Elements the shape needs.
        expected: usize,
        /// Elements supplied.
        found: usize,
    },
    /// A class label is out of range for the logits.
    #[error("loss: label {label} of sample {sample} is out of range for {classes} classes")]
    LabelOutOfRange {
        /// Index of the sample in the batch.
        sample: usize,
        /// The offending label.
        label: usize,
        /// Number of classes in the logits.
        classes: usize,
    },
    /// A batch input does not match what an operation needs.
    #[error("{what}: expected {expected}, found {found:?}")]
    BatchShape {
        /// The operation.
        what: String,
        /// What it needs, in words.
        expected: String,
        /// The shape that arrived.
        found: Vec<usize>,
    },
    /// Reading or writing a weights file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The safetensors container is malformed.
    #[error("{source_name}: invalid safetensors data: {message}")]
    Safetensors {
        /// The file or buffer.
        source_name: String,
        /// The parser's message.
        message: String,
    },
}

/// Result alias of the dsl crate.
pub type Result<T> = std::result::Result<T, DslError>;
