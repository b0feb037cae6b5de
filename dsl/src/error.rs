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
    /// A parameter set or weights file does not match the model: every missing, unexpected, mis-shaped and
    /// mistyped tensor, all listed.
    #[error("{source_name}: tensors do not match model `{model}`: {}{hint}", list_issues(issues))]
    Mismatch {
        /// Where the tensors came from (a file path or `parameters`).
        source_name: String,
        /// The model's name.
        model: String,
        /// Every tensor that does not match, in name order.
        issues: Vec<TensorIssue>,
        /// What the user can do about it (empty, or starting with a separator).
        hint: &'static str,
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
    /// A value that must be a finite number is NaN or infinite.
    #[error("{what}: element {index} is {value}, expected a finite value")]
    NonFinite {
        /// The tensor.
        what: String,
        /// Flat index of the first such element.
        index: usize,
        /// Its value.
        value: f64,
    },
    /// A requested tensor is larger than the operation allows, or its element count overflows `usize`.
    #[error("{what}: shape {shape:?} has {}, more than the limit of {limit}", count_elements(shape))]
    TooLarge {
        /// What was to be built.
        what: String,
        /// The requested shape.
        shape: Vec<usize>,
        /// The largest element count allowed.
        limit: usize,
    },
    /// A calibration margin is not a finite factor ≥ 1.
    #[error(
        "calibration margin {margin}: expected a finite factor ≥ 1 (the measured magnitudes are multiplied by it)"
    )]
    Margin {
        /// The margin given.
        margin: f64,
    },
    /// A batch norm's per-channel map does not fit the product it is to be folded into (its `scale`/`shift`, or
    /// the product's weights or bias, do not have the batch norm's channels).
    #[error("batch norm `{batch_norm}` ({channels} channels) cannot be folded into layer `{layer}`: expected {expected}, found {found:?}")]
    FoldShape {
        /// Full name of the batch norm.
        batch_norm: String,
        /// Its declared channel count.
        channels: usize,
        /// Full name of the convolution or linear layer.
        layer: String,
        /// What the fold needs, in words.
        expected: String,
        /// The shape (or length) that was found.
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
    /// A weights file is not a readable safetensors container (truncated, corrupt, or another format).
    #[error("weights file {source_name} {defect}")]
    CorruptFile {
        /// The file or buffer.
        source_name: String,
        /// What is wrong with it, in words.
        defect: FileDefect,
    },
    /// Writing safetensors data failed.
    #[error("{source_name}: cannot write safetensors data: {message}")]
    Safetensors {
        /// The tensor or buffer being written.
        source_name: String,
        /// The writer's message.
        message: String,
    },
}

/// One tensor that a parameter set or file gets wrong for a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TensorIssue {
    /// The model needs the tensor; it is absent.
    Missing {
        /// State-dict name.
        name: String,
        /// Shape the model needs.
        expected: Vec<usize>,
    },
    /// The tensor is present but the model has no such parameter.
    Unexpected {
        /// State-dict name.
        name: String,
        /// Its shape.
        found: Vec<usize>,
    },
    /// The tensor has the wrong shape.
    Shape {
        /// State-dict name.
        name: String,
        /// Shape the model needs.
        expected: Vec<usize>,
        /// Shape that was found.
        found: Vec<usize>,
    },
    /// The tensor is stored with an element type this crate does not read.
    Dtype {
        /// State-dict name.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
        /// The dtype in the file.
        found: String,
    },
}

impl TensorIssue {
    /// The state-dict name of the tensor.
    pub fn name(&self) -> &str {
        match self {
            TensorIssue::Missing { name, .. }
            | TensorIssue::Unexpected { name, .. }
            | TensorIssue::Shape { name, .. }
            | TensorIssue::Dtype { name, .. } => name,
        }
    }
}

impl std::fmt::Display for TensorIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TensorIssue::Missing { name, expected } => {
                write!(f, "missing tensor `{name}` (expected shape {expected:?})")
            }
            TensorIssue::Unexpected { name, found } => {
                write!(f, "unexpected tensor `{name}` of shape {found:?} (the model has no such parameter)")
            }
            TensorIssue::Shape { name, expected, found } => {
                write!(f, "tensor `{name}` has shape {found:?}, expected {expected:?}")
            }
            TensorIssue::Dtype { name, shape, found } => write!(
                f,
                "tensor `{name}` (shape {shape:?}) has dtype {found}, expected F32, F64 or I64 (convert it, e.g. \
                 `tensor.float()`, before saving)"
            ),
        }
    }
}

fn count_elements(shape: &[usize]) -> String {
    match crate::tensor::checked_numel(shape) {
        Some(n) => format!("{n} elements"),
        None => "an element count that overflows usize".into(),
    }
}

fn list_issues(issues: &[TensorIssue]) -> String {
    issues.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// What makes a file unreadable as safetensors, in words (the parser's errors, explained).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileDefect {
    /// Fewer than the 8 bytes that hold the header length.
    #[error(
        "is not a safetensors file: it holds {len} bytes, too few for the 8-byte header length it must start with"
    )]
    TooSmall {
        /// The file's length.
        len: usize,
    },
    /// The header length in the first 8 bytes is beyond the format's limit.
    #[error(
        "is not a safetensors file (or its start is corrupt): its first 8 bytes declare a header of {declared} \
         bytes, more than the format's limit of {limit}"
    )]
    HeaderTooLarge {
        /// The declared header length.
        declared: u64,
        /// The parser's limit.
        limit: usize,
    },
    /// The file ends inside the header.
    #[error(
        "is truncated (or not a safetensors file): its first 8 bytes declare a header of {declared} bytes but \
         only {available} follow"
    )]
    HeaderTruncated {
        /// The declared header length.
        declared: u64,
        /// Bytes after the first 8.
        available: usize,
    },
    /// The header is not UTF-8 text.
    #[error("is corrupt (or not a safetensors file): its header is not UTF-8 text")]
    HeaderNotText,
    /// The header is text but not the JSON table of tensors safetensors needs.
    #[error("is corrupt (or not a safetensors file): its header is not a valid safetensors JSON table ({detail})")]
    HeaderNotJson {
        /// The JSON parser's explanation.
        detail: String,
    },
    /// Fewer bytes of tensor data follow the header than it declares.
    #[error("is truncated: its header declares {declared} bytes of tensor data but only {available} follow")]
    DataTruncated {
        /// Bytes of tensor data the header declares.
        declared: usize,
        /// Bytes that follow the header.
        available: usize,
    },
    /// More bytes follow the header than it declares.
    #[error(
        "is corrupt: its header declares {declared} bytes of tensor data but {available} follow (the file was \
         appended to or its header was altered)"
    )]
    TrailingBytes {
        /// Bytes of tensor data the header declares.
        declared: usize,
        /// Bytes that follow the header.
        available: usize,
    },
    /// A tensor's data offsets do not span the bytes its dtype and shape need.
    #[error(
        "is corrupt: tensor `{name}` ({dtype}, shape {shape:?}) needs {needed} bytes but its data offsets in the \
         header span {span}"
    )]
    TensorSize {
        /// State-dict name.
        name: String,
        /// Its dtype.
        dtype: String,
        /// Its shape.
        shape: Vec<usize>,
        /// Bytes that dtype and shape need.
        needed: usize,
        /// Bytes its offsets span.
        span: usize,
    },
    /// A tensor's data does not start where the previous tensor's ends.
    #[error("is corrupt: the data offsets of tensor `{name}` in the header overlap or leave a gap")]
    TensorOffsets {
        /// State-dict name.
        name: String,
    },
    /// A tensor's element or byte count overflows.
    #[error("is corrupt: the shape {shape:?} of tensor `{name}` is too large to address")]
    ShapeOverflow {
        /// State-dict name.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// Anything else the parser reports.
    #[error("cannot be read as safetensors: {detail}")]
    Other {
        /// The parser's error.
        detail: String,
    },
}

/// Result alias of the dsl crate.
pub type Result<T> = std::result::Result<T, DslError>;
