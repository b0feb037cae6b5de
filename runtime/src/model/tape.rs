//! What a training forward keeps for the backward: a tree with the shape of the graph's node tree, built by the
//! forward itself. Every layer node carries its name and what its own backward needs ([`Saved`], one variant per
//! layer kind), so the backward walks the tape alone: it never pairs a graph node with a tape node, and a layer
//! can never meet the saved values of another kind.

use crate::protocols::{MaxPoolArgmax, ReluMask};
use crate::share::Share;
use crate::Conv2dParams;
use std::collections::HashMap;

/// What one layer's backward needs from its forward.
#[derive(Debug, Clone)]
pub(crate) enum Saved {
    /// The input, the window geometry and whether the layer has a bias.
    Conv2d { x: Share, params: Conv2dParams, bias: bool },
    /// The input and whether the layer has a bias.
    Linear { x: Share, bias: bool },
    /// The ReLU mask `[x > 0]`.
    Relu(ReluMask),
    /// The input shape and the window.
    AvgPool2d { in_shape: Vec<usize>, kernel: [usize; 2], params: Conv2dParams },
    /// The one-hot argmax of every window.
    MaxPool2d(MaxPoolArgmax),
    /// The input shape `[N, C, H, W]`.
    GlobalAvgPool { in_shape: Vec<usize> },
    /// The input shape.
    Flatten { in_shape: Vec<usize> },
    /// Nothing (the identity).
    Dropout,
    /// Batch statistics.
    BatchNorm2d(Box<BatchNormSaved>),
    /// Nothing: the layer ran in inference mode (its forward keeps nothing, and no backward runs over it).
    Inference,
}

/// What batch norm's backward and the running-statistics update need: the normalised input `x̂`, `1/√(var + eps)`,
/// the batch mean and biased variance (`[C]`), and the count `m = N·H·W` they are over.
#[derive(Debug, Clone)]
pub(crate) struct BatchNormSaved {
    pub xhat: Share,
    pub inv_std: Share,
    pub mean: Share,
    pub var: Share,
    pub m: usize,
}

/// One node of the tape, in the graph's node order.
#[derive(Debug, Clone)]
pub(crate) enum TapeNode {
    /// A layer: its full name, its kind (for the step record) and what its backward needs.
    Layer { name: String, kind: &'static str, saved: Box<Saved> },
    /// A named sequence.
    Seq(Vec<TapeNode>),
    /// A residual block `post(main(x) + shortcut(x))`.
    Residual { name: String, main: Vec<TapeNode>, shortcut: Vec<TapeNode>, post: Vec<TapeNode> },
}

/// What [`crate::training::Trainer::forward`] kept for [`crate::training::Trainer::backward`] (shares only).
#[derive(Debug, Clone)]
pub struct Tape {
    pub(crate) nodes: Vec<TapeNode>,
}

impl Tape {
    /// Batch-norm layer name → its batch statistics.
    pub(crate) fn batch_stats(&self) -> HashMap<&str, &BatchNormSaved> {
        fn walk<'a>(nodes: &'a [TapeNode], out: &mut HashMap<&'a str, &'a BatchNormSaved>) {
            for node in nodes {
                match node {
                    TapeNode::Layer { name, saved, .. } => {
                        if let Saved::BatchNorm2d(s) = &**saved {
                            out.insert(name, s);
                        }
                    }
                    TapeNode::Seq(children) => walk(children, out),
                    TapeNode::Residual { main, shortcut, post, .. } => {
                        walk(main, out);
                        walk(shortcut, out);
                        walk(post, out);
                    }
                }
            }
        }
        let mut out = HashMap::new();
        walk(&self.nodes, &mut out);
        out
    }
}
