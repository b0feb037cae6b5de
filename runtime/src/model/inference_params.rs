//! The tensors a private inference shares from the model owner, in one place: the graph's own parameter list
//! ([`cryptgpu_dsl::Graph::layers`], each layer's [`Layer::params`]), trainable tensors only, as inference reads
//! them — a batch norm folded into the convolution before it (`W·scale`, `b·scale + shift`) or into the product
//! after it (`W·scale[c]`, `b + W*shift`, the [fusion plan](cryptgpu_dsl::fuse)'s `batch_norms`), or else turned
//! into its per-channel `scale` and `shift` from the running statistics; linear weights marked to be transposed
//! once after sharing. Every party derives the same list from the graph alone; the owner also fills in the values.

use cryptgpu_dsl::fold::{bn_affine, conv_weights_folded, linear_weights, Folds};
use cryptgpu_dsl::fuse::FusionPlan;
use cryptgpu_dsl::{Graph, Layer, ParamKind, Params};

/// One tensor the owner shares for inference.
pub(crate) struct InferenceTensor {
    /// The key the lowering reads it by (`<layer>.weight`, `<layer>.bias`, `<bn>.scale`, `<bn>.shift`).
    pub key: String,
    /// Its shape as shared (PyTorch's).
    pub shape: Vec<usize>,
    /// Transpose `[out, in]` → `[in, out]` after sharing (a linear layer's weight: the matmul's right operand).
    pub transpose: bool,
    /// The owner's plaintext values (flat, row-major); `None` for the other parties.
    pub values: Option<Vec<f64>>,
}

/// Whether batch norm `name` is folded into the convolution before it.
pub(crate) fn is_folded_bn(folds: &Folds, name: &str) -> bool {
    folds.values().any(|(bn, _)| bn == name)
}

/// The tensors of `graph`'s inference with the batch norms of `folds` (into the convolution before them) and of
/// `plan.batch_norms` (into the product after them) folded, in a fixed order every party derives from the graph
/// alone; with `params` (the model owner's) each carries its values, and a missing or unusable tensor is an error
/// naming it.
pub(crate) fn inference_tensors(
    graph: &Graph,
    folds: &Folds,
    plan: &FusionPlan,
    params: Option<&Params>,
) -> cryptgpu_dsl::Result<Vec<InferenceTensor>> {
    let mut out = Vec::new();
    for info in graph.layers() {
        let n = &info.name;
        let mut push = |suffix: &str, shape: Vec<usize>, transpose, values: Option<Vec<f64>>| {
            out.push(InferenceTensor { key: format!("{n}.{suffix}"), shape, transpose, values })
        };
        match &info.layer {
            Layer::BatchNorm2d(_) if is_folded_bn(folds, n) || plan.folds_batch_norm(n) => {}
            Layer::BatchNorm2d(b) => {
                let (scale, shift) = match params {
                    Some(p) => bn_affine(p, n, b.eps).map(|(s, t)| (Some(s), Some(t)))?,
                    None => (None, None),
                };
                push("scale", vec![b.channels], false, scale);
                push("shift", vec![b.channels], false, shift);
            }
            Layer::Conv2d(c) if folds.contains_key(n) || plan.input_fold(n).is_some() => {
                let (w, b) = match params {
                    Some(p) => {
                        conv_weights_folded(p, n, c, plan.input_fold(n), folds.get(n)).map(|(w, b)| (Some(w), b))?
                    }
                    None => (None, None),
                };
                push("weight", vec![c.out_channels, c.in_channels, c.kernel.0, c.kernel.1], false, w);
                push("bias", vec![c.out_channels], false, b);
            }
            Layer::Linear(l) if plan.input_fold(n).is_some() => {
                let (w, b) = match params {
                    Some(p) => linear_weights(p, n, l, plan.input_fold(n)).map(|(w, b)| (Some(w), b))?,
                    None => (None, None),
                };
                push("weight", vec![l.out_features, l.in_features], true, w);
                push("bias", vec![l.out_features], false, b);
            }
            layer => {
                for p in layer.params().into_iter().filter(|p| p.kind == ParamKind::Trainable) {
                    let values = match params {
                        Some(params) => Some(params.require(&format!("{n}.{}", p.suffix))?.data().to_vec()),
                        None => None,
                    };
                    let transpose = matches!(layer, Layer::Linear(_)) && p.suffix == "weight";
                    push(p.suffix, p.shape, transpose, values);
                }
            }
        }
    }
    Ok(out)
}
