//! Batch-norm folding for inference: which convolutions absorb the batch norm right after them, the per-channel
//! affine map `scale = γ / √(var + ε)`, `shift = β − mean · scale` of a batch norm on its running statistics, and
//! the folded weights `W·scale`, bias `b·scale + shift` of a convolution. The private executor shares exactly these
//! numbers and the [range analysis](crate::range) bounds exactly these, so both read them from here.

use crate::error::{DslError, Result};
use crate::graph::Graph;
use crate::layer::{BatchNorm2d, Conv2d, Layer, Node};
use crate::params::Params;
use std::collections::HashMap;

/// Conv2d name → the BatchNorm2d directly after it (name, hyper-parameters): the pairs whose folding is exact.
pub type Folds = HashMap<String, (String, BatchNorm2d)>;

/// Every Conv2d directly followed by a BatchNorm2d over its output channels in the same node list (so the
/// convolution's output goes nowhere else), anywhere in the graph.
pub fn conv_bn_pairs(graph: &Graph) -> Folds {
    let mut out = HashMap::new();
    pairs_in(graph.nodes(), &mut out);
    out
}

fn pairs_in(nodes: &[Node], out: &mut Folds) {
    for pair in nodes.windows(2) {
        if let [Node::Layer { name: conv, layer: Layer::Conv2d(c) }, Node::Layer { name: bn, layer: Layer::BatchNorm2d(b) }] =
            pair
        {
            if c.out_channels == b.channels {
                out.insert(conv.clone(), (bn.clone(), *b));
            }
        }
    }
    for node in nodes {
        match node {
            Node::Layer { .. } => {}
            Node::Sequential { children, .. } => pairs_in(children, out),
            Node::Residual { main, shortcut, post, .. } => {
                for list in [main, shortcut, post] {
                    pairs_in(list, out);
                }
            }
        }
    }
}

/// Batch norm `name` on its running statistics as a per-channel affine map `(scale, shift)`, computed in f64;
/// an error names the channel whose `running_var + eps` is not positive.
pub fn bn_affine(params: &Params, name: &str, eps: f64) -> Result<(Vec<f64>, Vec<f64>)> {
    let get = |suffix: &str| params.require(&format!("{name}.{suffix}"));
    let (gamma, beta) = (get("weight")?.data(), get("bias")?.data());
    let (mean, var) = (get("running_mean")?.data(), get("running_var")?.data());
    let mut scale = Vec::with_capacity(gamma.len());
    for (c, (&g, &v)) in gamma.iter().zip(var).enumerate() {
        let denom = v + eps;
        if !(denom > 0.0 && denom.is_finite()) {
            return Err(DslError::InvalidLayer {
                layer: name.to_string(),
                message: format!("`{name}.running_var[{c}]` + eps = {denom} is not positive"),
            });
        }
        scale.push(g / denom.sqrt());
    }
    let shift = beta.iter().zip(mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
    Ok((scale, shift))
}

/// The weights `[out, in, kh, kw]` (flat) and bias `[out]` a convolution runs with: its own, or with the batch norm
/// `fold` folded in (`W·scale`, `b·scale + shift`). The bias is `None` when the layer has none and nothing is folded.
pub fn conv_weights(
    params: &Params,
    name: &str,
    c: &Conv2d,
    fold: Option<&(String, BatchNorm2d)>,
) -> Result<(Vec<f64>, Option<Vec<f64>>)> {
    let w = params.require(&format!("{name}.weight"))?.data();
    let bias = if c.bias { Some(params.require(&format!("{name}.bias"))?.data()) } else { None };
    match fold {
        None => Ok((w.to_vec(), bias.map(<[f64]>::to_vec))),
        Some((bn_name, bn)) => {
            let (scale, shift) = bn_affine(params, bn_name, bn.eps)?;
            let per_out = w.len() / c.out_channels.max(1);
            let w = w.iter().enumerate().map(|(i, v)| v * scale[i / per_out]).collect();
            let b = (0..c.out_channels).map(|o| bias.map_or(0.0, |b| b[o]) * scale[o] + shift[o]).collect();
            Ok((w, Some(b)))
        }
    }
}
