//! Layer kinds with their hyper-parameters, their per-sample shape rule and their parameter tensors, plus the
//! small tree ([`Node`]) that composes layers into sequences and residual blocks.
//!
//! A residual block is `post(main(x) + shortcut(x))`: the main branch and the shortcut branch (empty = identity,
//! or a projection such as ResNet's `downsample` conv + batch norm) both read the block's input, their outputs are
//! added, and the optional `post` layers (ResNet's final ReLU) follow. That is enough for ResNet basic and
//! bottleneck blocks with or without a downsample branch. Names of nodes are local segments; the graph joins them
//! with `.` into PyTorch-style names such as `layer1.0.conv1`.

use crate::error::{DslError, Result};

/// A 2-D convolution over NCHW input, weight `[out, in, kh, kw]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2d {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel size (height, width).
    pub kernel: (usize, usize),
    /// Stride (height, width).
    pub stride: (usize, usize),
    /// Zero padding (height, width).
    pub padding: (usize, usize),
    /// Whether the layer has a bias `[out]`.
    pub bias: bool,
}

impl Conv2d {
    /// A square-kernel convolution with stride 1, no padding and a bias.
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize) -> Self {
        Conv2d { in_channels, out_channels, kernel: (kernel, kernel), stride: (1, 1), padding: (0, 0), bias: true }
    }
    /// Sets a square stride.
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = (stride, stride);
        self
    }
    /// Sets a square padding.
    pub fn padding(mut self, padding: usize) -> Self {
        self.padding = (padding, padding);
        self
    }
    /// Sets whether the layer has a bias.
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
}

/// A fully connected layer `y = x Wᵀ + b`, weight `[out, in]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linear {
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// Whether the layer has a bias `[out]`.
    pub bias: bool,
}

impl Linear {
    /// A linear layer with a bias.
    pub fn new(in_features: usize, out_features: usize) -> Self {
        Linear { in_features, out_features, bias: true }
    }
    /// Sets whether the layer has a bias.
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
}

/// Window of a 2-D pooling layer (PyTorch semantics, floor mode; average pooling counts padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2d {
    /// Window (height, width).
    pub kernel: (usize, usize),
    /// Stride (height, width).
    pub stride: (usize, usize),
    /// Padding (height, width); at most half the window, as in PyTorch.
    pub padding: (usize, usize),
}

impl Pool2d {
    /// A square window whose stride equals its size and with no padding (PyTorch's default).
    pub fn new(kernel: usize) -> Self {
        Pool2d { kernel: (kernel, kernel), stride: (kernel, kernel), padding: (0, 0) }
    }
    /// Sets a square stride.
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = (stride, stride);
        self
    }
    /// Sets a square padding.
    pub fn padding(mut self, padding: usize) -> Self {
        self.padding = (padding, padding);
        self
    }
}

/// Batch normalisation over the channels of NCHW input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNorm2d {
    /// Number of channels.
    pub channels: usize,
    /// Added to the variance before the square root.
    pub eps: f64,
    /// Weight of the batch statistic in the running-statistic update (PyTorch convention).
    pub momentum: f64,
}

impl BatchNorm2d {
    /// PyTorch's defaults: eps 1e-5, momentum 0.1.
    pub fn new(channels: usize) -> Self {
        BatchNorm2d { channels, eps: 1e-5, momentum: 0.1 }
    }
}

/// One layer kind with its hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    /// 2-D convolution.
    Conv2d(Conv2d),
    /// Fully connected layer over `[F]` input.
    Linear(Linear),
    /// Rectified linear unit.
    Relu,
    /// Average pooling.
    AvgPool2d(Pool2d),
    /// Max pooling.
    MaxPool2d(Pool2d),
    /// Average over all spatial positions: `[C, H, W]` → `[C, 1, 1]` (PyTorch's `AdaptiveAvgPool2d((1, 1))`).
    GlobalAvgPool,
    /// Batch normalisation.
    BatchNorm2d(BatchNorm2d),
    /// Flattens `[C, H, W]` (or any per-sample shape) into `[C·H·W]`.
    Flatten,
    /// Dropout with drop probability `p`; the identity in the reference (inference and training).
    Dropout {
        /// Drop probability, in `[0, 1)`.
        p: f64,
    },
}

impl From<Conv2d> for Layer {
    fn from(c: Conv2d) -> Self {
        Layer::Conv2d(c)
    }
}
impl From<Linear> for Layer {
    fn from(l: Linear) -> Self {
        Layer::Linear(l)
    }
}
impl From<BatchNorm2d> for Layer {
    fn from(b: BatchNorm2d) -> Self {
        Layer::BatchNorm2d(b)
    }
}

/// What a stored tensor of a layer is, which decides whether training updates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A trainable weight or bias (PyTorch `parameters()`).
    Trainable,
    /// A running statistic (PyTorch buffer `running_mean` / `running_var`).
    RunningStat,
    /// The batch counter `num_batches_tracked` (stored as int64 by PyTorch).
    Counter,
}

/// A tensor a layer owns: its state_dict suffix, shape and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerParam {
    /// Suffix after the layer name (`weight`, `bias`, `running_mean`, …).
    pub suffix: &'static str,
    /// PyTorch shape.
    pub shape: Vec<usize>,
    /// What the tensor is.
    pub kind: ParamKind,
}

fn shape_err(layer: &str, expected: String, found: &[usize]) -> DslError {
    DslError::ShapeMismatch { layer: layer.to_string(), expected, found: found.to_vec() }
}

fn invalid(layer: &str, message: String) -> DslError {
    DslError::InvalidLayer { layer: layer.to_string(), message }
}

/// Output extent of a window sweep, or an error naming the layer.
fn window_out(layer: &str, what: &str, size: usize, k: usize, s: usize, p: usize) -> Result<usize> {
    if k == 0 || s == 0 {
        return Err(invalid(
            layer,
            format!("{what}: kernel and stride must be positive, found kernel {k}, stride {s}"),
        ));
    }
    let Some(padded) = p.checked_mul(2).and_then(|p2| size.checked_add(p2)) else {
        return Err(invalid(layer, format!("{what}: padding {p} of an input of {size} overflows usize")));
    };
    if padded < k {
        return Err(invalid(
            layer,
            format!("{what}: kernel {k} is larger than the padded input {padded} (input {size}, padding {p})"),
        ));
    }
    Ok((padded - k) / s + 1)
}

impl Layer {
    /// Short kind name, as used in messages (`Conv2d`, `ReLU`, …).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Layer::Conv2d(_) => "Conv2d",
            Layer::Linear(_) => "Linear",
            Layer::Relu => "ReLU",
            Layer::AvgPool2d(_) => "AvgPool2d",
            Layer::MaxPool2d(_) => "MaxPool2d",
            Layer::GlobalAvgPool => "GlobalAvgPool",
            Layer::BatchNorm2d(_) => "BatchNorm2d",
            Layer::Flatten => "Flatten",
            Layer::Dropout { .. } => "Dropout",
        }
    }

    /// The per-sample output shape for a per-sample input shape; `name` is used in errors.
    pub fn output_shape(&self, name: &str, input: &[usize]) -> Result<Vec<usize>> {
        match self {
            Layer::Conv2d(c) => {
                if input.len() != 3 || input[0] != c.in_channels {
                    return Err(shape_err(name, format!("[{}, H, W]", c.in_channels), input));
                }
                if c.in_channels == 0 || c.out_channels == 0 {
                    return Err(invalid(name, "channel counts must be positive".into()));
                }
                let h = window_out(name, "height", input[1], c.kernel.0, c.stride.0, c.padding.0)?;
                let w = window_out(name, "width", input[2], c.kernel.1, c.stride.1, c.padding.1)?;
                Ok(vec![c.out_channels, h, w])
            }
            Layer::Linear(l) => {
                if input.len() != 1 || input[0] != l.in_features {
                    return Err(shape_err(name, format!("[{}] (flatten before a Linear layer)", l.in_features), input));
                }
                if l.out_features == 0 {
                    return Err(invalid(name, "out_features must be positive".into()));
                }
                Ok(vec![l.out_features])
            }
            Layer::Relu | Layer::Dropout { .. } => {
                if let Layer::Dropout { p } = self {
                    if !(0.0..1.0).contains(p) {
                        return Err(invalid(name, format!("dropout probability must be in [0, 1), found {p}")));
                    }
                }
                Ok(input.to_vec())
            }
            Layer::AvgPool2d(p) | Layer::MaxPool2d(p) => {
                if input.len() != 3 {
                    return Err(shape_err(name, "[C, H, W]".into(), input));
                }
                if 2 * p.padding.0 > p.kernel.0 || 2 * p.padding.1 > p.kernel.1 {
                    return Err(invalid(
                        name,
                        format!("padding {:?} must be at most half the kernel {:?}", p.padding, p.kernel),
                    ));
                }
                let h = window_out(name, "height", input[1], p.kernel.0, p.stride.0, p.padding.0)?;
                let w = window_out(name, "width", input[2], p.kernel.1, p.stride.1, p.padding.1)?;
                Ok(vec![input[0], h, w])
            }
            Layer::GlobalAvgPool => {
                if input.len() != 3 || input[1] == 0 || input[2] == 0 {
                    return Err(shape_err(name, "[C, H, W]".into(), input));
                }
                Ok(vec![input[0], 1, 1])
            }
            Layer::BatchNorm2d(b) => {
                if input.len() != 3 || input[0] != b.channels {
                    return Err(shape_err(name, format!("[{}, H, W]", b.channels), input));
                }
                Ok(input.to_vec())
            }
            Layer::Flatten => match crate::tensor::checked_numel(input) {
                Some(n) => Ok(vec![n]),
                None => Err(invalid(name, format!("flatten: the element count of {input:?} overflows usize"))),
            },
        }
    }

    /// The tensors this layer owns, in PyTorch state_dict order.
    pub fn params(&self) -> Vec<LayerParam> {
        let t = |suffix, shape| LayerParam { suffix, shape, kind: ParamKind::Trainable };
        match self {
            Layer::Conv2d(c) => {
                let mut v = vec![t("weight", vec![c.out_channels, c.in_channels, c.kernel.0, c.kernel.1])];
                if c.bias {
                    v.push(t("bias", vec![c.out_channels]));
                }
                v
            }
            Layer::Linear(l) => {
                let mut v = vec![t("weight", vec![l.out_features, l.in_features])];
                if l.bias {
                    v.push(t("bias", vec![l.out_features]));
                }
                v
            }
            Layer::BatchNorm2d(b) => vec![
                t("weight", vec![b.channels]),
                t("bias", vec![b.channels]),
                LayerParam { suffix: "running_mean", shape: vec![b.channels], kind: ParamKind::RunningStat },
                LayerParam { suffix: "running_var", shape: vec![b.channels], kind: ParamKind::RunningStat },
                LayerParam { suffix: "num_batches_tracked", shape: vec![], kind: ParamKind::Counter },
            ],
            _ => Vec::new(),
        }
    }
}

/// A node of the model tree: a layer, a named sequence, or a residual block.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A single layer. An empty name means "use my index in the parent", like PyTorch's `nn.Sequential`.
    Layer {
        /// Local name (one segment) or empty.
        name: String,
        /// The layer.
        layer: Layer,
    },
    /// A sequence of nodes under a common name prefix (PyTorch `nn.Sequential` or a sub-module).
    Sequential {
        /// Local name (one segment) or empty for the index in the parent.
        name: String,
        /// The children, applied in order.
        children: Vec<Node>,
    },
    /// `post(main(x) + shortcut(x))`; an empty shortcut is the identity.
    Residual {
        /// Local name (one segment) or empty for the index in the parent.
        name: String,
        /// Main branch; its children are named directly under the block (`layer1.0.conv1`).
        main: Vec<Node>,
        /// Shortcut branch (e.g. a `downsample` sequence); anonymous children are named `shortcut.<i>`.
        shortcut: Vec<Node>,
        /// Layers after the addition (e.g. ResNet's `relu`); anonymous children are named `post.<i>`.
        post: Vec<Node>,
    },
}

impl Node {
    /// The local name of the node (possibly empty).
    pub fn name(&self) -> &str {
        match self {
            Node::Layer { name, .. } | Node::Sequential { name, .. } | Node::Residual { name, .. } => name,
        }
    }
}
