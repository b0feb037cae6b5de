//! Batch-norm folding for inference: which convolutions absorb the batch norm right after them, which convolutions
//! and linear layers absorb a batch norm on their input, the per-channel affine map `scale = γ / √(var + ε)`,
//! `shift = β − mean · scale` of a batch norm on its running statistics, and the weights a product runs with once
//! they are folded in. The private executor shares exactly these numbers and the [range analysis](crate::range)
//! bounds exactly these, so both read them from here.
//!
//! - **After a convolution** ([`conv_bn_pairs`]): `scale⊙(W*x + b) + shift` is the convolution with weights
//!   `W·scale[o]` and bias `b·scale + shift`.
//! - **Before a product** ([`bn_input_folds`], a cross-layer fusion, e.g. a batch norm after a ReLU): the next
//!   layer `W, b` of `y = scale⊙r + shift` computes `W*y + b = (W·diag(scale))*r + (b + W*shift)`. This is exact
//!   when every input of every window is an element of `y`: a convolution **without zero padding** (a padded
//!   border window would multiply 0 where the unfolded run has `shift`; such a batch norm is not folded), or a
//!   linear layer reached through Flatten (channel `c` is features `c·H·W .. (c+1)·H·W`). In between only layers
//!   that commute with a per-channel affine map may stand: Flatten and Dropout (shape only in inference),
//!   AvgPool2d without padding and GlobalAvgPool (`avg(scale⊙r + shift) = scale⊙avg(r) + shift` when every window
//!   lies inside the input; a padded average pool counts zeros and is a barrier). A max pool (not linear), a ReLU,
//!   another batch norm, or a residual join or fork (the value feeds two consumers) stops the search: that batch
//!   norm runs as an affine map on shares.

use crate::error::{DslError, Result};
use crate::graph::Graph;
use crate::layer::{BatchNorm2d, Conv2d, Layer, Linear, Node};
use crate::params::Params;
use std::collections::HashMap;

/// Conv2d name → the BatchNorm2d directly after it ([`conv_bn_pairs`]), or product name → the BatchNorm2d on its
/// input ([`bn_input_folds`]): (the batch norm's name, hyper-parameters), the pairs whose folding is exact.
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

/// Every batch norm that folds into the input of the product after it (see the [module documentation](self)):
/// Conv2d or Linear name → the BatchNorm2d (name, hyper-parameters). A batch norm already folded into the
/// convolution before it ([`conv_bn_pairs`]) is not folded again.
pub fn bn_input_folds(graph: &Graph) -> Folds {
    let after_conv: Vec<String> = conv_bn_pairs(graph).into_values().map(|(bn, _)| bn).collect();
    let mut out = HashMap::new();
    for stream in crate::fuse::streams(graph) {
        for (i, &(bn_name, layer)) in stream.iter().enumerate() {
            let Layer::BatchNorm2d(bn) = layer else { continue };
            if after_conv.iter().any(|n| n == bn_name) {
                continue;
            }
            let next = stream[i + 1..].iter().find(|(_, l)| !commutes_with_channel_affine(l));
            let folds = match next {
                Some((_, Layer::Conv2d(c))) => c.padding == (0, 0) && c.in_channels == bn.channels,
                Some((_, Layer::Linear(l))) => bn.channels > 0 && l.in_features.is_multiple_of(bn.channels),
                _ => false,
            };
            if let (true, Some((product, _))) = (folds, next) {
                out.insert(product.to_string(), (bn_name.to_string(), *bn));
            }
        }
    }
    out
}

/// Whether a layer maps `scale⊙x + shift` (per channel) to `scale⊙f(x) + shift` on the same channels, so a batch
/// norm before it may be folded into the product after it.
fn commutes_with_channel_affine(layer: &Layer) -> bool {
    match layer {
        Layer::Flatten | Layer::Dropout { .. } | Layer::GlobalAvgPool => true,
        Layer::AvgPool2d(p) => p.padding == (0, 0),
        _ => false,
    }
}

/// The weights `[out, in, kh, kw]` (flat) and bias `[out]` a convolution runs with: its own, or with the batch norm
/// `fold` folded in (`W·scale`, `b·scale + shift`). The bias is `None` when the layer has none and nothing is folded.
pub fn conv_weights(
    params: &Params,
    name: &str,
    c: &Conv2d,
    fold: Option<&(String, BatchNorm2d)>,
) -> Result<(Vec<f64>, Option<Vec<f64>>)> {
    conv_weights_folded(params, name, c, None, fold)
}

/// The weights `[out, in, kh, kw]` (flat) and bias `[out]` a convolution runs with: its own, with the batch norm
/// `input` on its input folded in ([`bn_input_folds`]: `W·scale[c]`, `b + W*shift`), then the batch norm `output`
/// after it ([`conv_bn_pairs`]: `W·scale[o]`, `b·scale + shift`). The bias is `None` when the layer has none and
/// nothing is folded; an error names a batch norm whose channels do not fit.
pub fn conv_weights_folded(
    params: &Params,
    name: &str,
    c: &Conv2d,
    input: Option<&(String, BatchNorm2d)>,
    output: Option<&(String, BatchNorm2d)>,
) -> Result<(Vec<f64>, Option<Vec<f64>>)> {
    let w = params.require(&format!("{name}.weight"))?.data();
    let bias = if c.bias { Some(params.require(&format!("{name}.bias"))?.data().to_vec()) } else { None };
    let (w, bias) = match input {
        None => (w.to_vec(), bias),
        Some((bn_name, bn)) if bn.channels != c.in_channels => {
            return Err(DslError::FoldShape {
                batch_norm: bn_name.clone(),
                channels: bn.channels,
                layer: name.to_string(),
                expected: format!("a convolution over {} input channels", bn.channels),
                found: vec![c.out_channels, c.in_channels, c.kernel.0, c.kernel.1],
            })
        }
        Some((bn_name, bn)) => {
            let (w, b) = fold_input(params, (bn_name, bn), name, w, c.out_channels, bias.as_deref())?;
            (w, Some(b))
        }
    };
    match output {
        None => Ok((w, bias)),
        Some((bn_name, bn)) => {
            let (scale, shift) = bn_affine(params, bn_name, bn.eps)?;
            check_channels(bn_name, bn, name, &scale, &shift, c.out_channels)?;
            let per_out = w.len() / c.out_channels.max(1);
            let w = w.iter().enumerate().map(|(i, v)| v * scale[i / per_out]).collect();
            let b = (0..c.out_channels).map(|o| bias.as_ref().map_or(0.0, |b| b[o]) * scale[o] + shift[o]).collect();
            Ok((w, Some(b)))
        }
    }
}

/// The weights `[out, in]` (flat, PyTorch's layout) and bias `[out]` a linear layer runs with: its own, or with the
/// batch norm `input` on its (flattened) input folded in ([`bn_input_folds`]: `W·scale[c]`, `b + W·shift`, feature
/// `f` of `[C, H, W]` in channel `f / (H·W)`). The bias is `None` when the layer has none and nothing is folded; an
/// error names a batch norm whose channels do not fit.
pub fn linear_weights(
    params: &Params,
    name: &str,
    l: &Linear,
    input: Option<&(String, BatchNorm2d)>,
) -> Result<(Vec<f64>, Option<Vec<f64>>)> {
    let w = params.require(&format!("{name}.weight"))?.data();
    let bias = if l.bias { Some(params.require(&format!("{name}.bias"))?.data().to_vec()) } else { None };
    match input {
        None => Ok((w.to_vec(), bias)),
        Some((bn_name, bn)) => {
            let (w, b) = fold_input(params, (bn_name, bn), name, w, l.out_features, bias.as_deref())?;
            Ok((w, Some(b)))
        }
    }
}

/// Folds batch norm `bn`'s map `x ↦ scale⊙x + shift` on a product's input into the product `layer`: `w` holds
/// `out` rows whose inputs are channel-major (`[C, per]`: a convolution's `[in, kh, kw]`, a linear layer's
/// flattened `[C, H, W]`), so input `j` of a row is in channel `j / per`. Returns `w·scale[c(j)]` and
/// `b + Σ_j w_j·shift[c(j)]` (in f64).
fn fold_input(
    params: &Params,
    (bn_name, bn): (&str, &BatchNorm2d),
    layer: &str,
    w: &[f64],
    out: usize,
    bias: Option<&[f64]>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let (scale, shift) = bn_affine(params, bn_name, bn.eps)?;
    let err = |expected: String, found: Vec<usize>| DslError::FoldShape {
        batch_norm: bn_name.to_string(),
        channels: bn.channels,
        layer: layer.to_string(),
        expected,
        found,
    };
    let channels = scale.len();
    check_channels(bn_name, bn, layer, &scale, &shift, channels)?;
    let row = w.len().checked_div(out).unwrap_or(0);
    if out == 0 || row == 0 || row * out != w.len() || !row.is_multiple_of(channels) {
        return Err(err(format!("{out} weight rows of a multiple of {channels} inputs"), vec![w.len()]));
    }
    if let Some(b) = bias.filter(|b| b.len() != out) {
        return Err(err(format!("a bias of {out} values"), vec![b.len()]));
    }
    let per = row / channels;
    let mut folded = Vec::with_capacity(w.len());
    let mut b = Vec::with_capacity(out);
    for (o, ws) in w.chunks(row).enumerate() {
        let mut acc = bias.map_or(0.0, |b| b[o]);
        for (j, v) in ws.iter().enumerate() {
            folded.push(v * scale[j / per]);
            acc += v * shift[j / per];
        }
        b.push(acc);
    }
    Ok((folded, b))
}

/// Checks that batch norm `bn_name`'s `scale` and `shift` have its declared channels, which are `expected` (the
/// product's channels on that side).
fn check_channels(
    bn_name: &str,
    bn: &BatchNorm2d,
    layer: &str,
    scale: &[f64],
    shift: &[f64],
    expected: usize,
) -> Result<()> {
    if scale.len() == bn.channels && shift.len() == bn.channels && bn.channels == expected && expected > 0 {
        return Ok(());
    }
    Err(DslError::FoldShape {
        batch_norm: bn_name.to_string(),
        channels: bn.channels,
        layer: layer.to_string(),
        expected: format!("scale and shift of {expected} channels"),
        found: vec![scale.len(), shift.len()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Builder;
    use crate::layer::Pool2d;
    use crate::reference::infer;
    use crate::tensor::Tensor;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// `conv → ReLU → bn → between… → last…` on `[3, 6, 6]`, the batch norm named `bn`.
    fn after_relu(between: &[Layer], last: &[(&str, Layer)]) -> Graph {
        let mut b = Builder::new();
        b.layer("conv", Conv2d::new(3, 4, 3).padding(1)).layer("relu", Layer::Relu);
        b.layer("bn", BatchNorm2d::new(4));
        for (i, l) in between.iter().enumerate() {
            b.layer(&format!("mid{i}"), l.clone());
        }
        for (name, l) in last {
            b.layer(name, l.clone());
        }
        b.build("AfterRelu", &[3, 6, 6]).expect("graph")
    }

    fn folded_into(graph: &Graph) -> Vec<(String, String)> {
        let mut v: Vec<_> = bn_input_folds(graph).into_iter().map(|(p, (bn, _))| (p, bn)).collect();
        v.sort();
        v
    }

    fn pair(product: &str) -> Vec<(String, String)> {
        vec![(product.to_string(), "bn".to_string())]
    }

    #[test]
    fn finder_folds_through_shape_only_layers_into_an_unpadded_product() {
        let conv0 = Layer::Conv2d(Conv2d::new(4, 5, 3));
        assert_eq!(folded_into(&after_relu(&[], &[("next", conv0.clone())])), pair("next"));
        let fc = |n| Layer::Linear(Linear::new(n, 3));
        let flat = after_relu(&[Layer::Flatten, Layer::Dropout { p: 0.5 }], &[("fc", fc(144))]);
        assert_eq!(folded_into(&flat), pair("fc"));
        // Unpadded average pools and a global pool are linear per channel; the 3×3 pool divides by 9 unfused.
        let pools = [Layer::AvgPool2d(Pool2d::new(3)), Layer::Dropout { p: 0.1 }];
        assert_eq!(folded_into(&after_relu(&pools, &[("next", Layer::Conv2d(Conv2d::new(4, 2, 2)))])), pair("next"));
        let gap = after_relu(&[Layer::GlobalAvgPool, Layer::Flatten], &[("fc", fc(4))]);
        assert_eq!(folded_into(&gap), pair("fc"));
        // The convolution before the batch norm is not the one it folds into, and only one product absorbs it.
        let last = Layer::Conv2d(Conv2d::new(5, 2, 1));
        let two = after_relu(&[], &[("next", conv0.clone()), ("relu2", Layer::Relu), ("last", last)]);
        assert!(folded_into(&two).iter().all(|(p, _)| p == "next"), "{:?}", folded_into(&two));
    }

    #[test]
    fn finder_refuses_what_is_not_exact() {
        let padded = Layer::Conv2d(Conv2d::new(4, 5, 3).padding(1));
        assert!(folded_into(&after_relu(&[], &[("next", padded)])).is_empty(), "zero padding at the border");
        let conv = Layer::Conv2d(Conv2d::new(4, 5, 1));
        for (between, why) in [
            (Layer::MaxPool2d(Pool2d::new(2)), "a max pool"),
            (Layer::AvgPool2d(Pool2d::new(3).stride(1).padding(1)), "a padded average pool"),
            (Layer::Relu, "a ReLU"),
            (Layer::BatchNorm2d(BatchNorm2d::new(4)), "another batch norm"),
        ] {
            let g = after_relu(&[between], &[("next", conv.clone())]);
            assert!(folded_into(&g).iter().all(|(_, bn)| bn != "bn"), "{why}: {:?}", folded_into(&g));
        }
        // Nothing after it, or a residual block (its input feeds two branches; its main branch ends in the add).
        assert!(folded_into(&after_relu(&[], &[])).is_empty());
        let mut b = Builder::new();
        b.layer("relu", Layer::Relu).layer("bn", BatchNorm2d::new(3));
        b.residual(
            "res",
            |m| {
                m.layer("conv", Conv2d::new(3, 3, 1)).layer("relu", Layer::Relu).layer("bn", BatchNorm2d::new(3));
            },
            |_| {},
            |_| {},
        );
        b.layer("conv", Conv2d::new(3, 2, 1));
        assert!(folded_into(&b.build("Residual", &[3, 4, 4]).expect("graph")).is_empty());
    }

    #[test]
    fn a_batch_norm_after_a_convolution_folds_backward_not_forward() {
        let mut b = Builder::new();
        b.layer("conv", Conv2d::new(3, 4, 3)).layer("bn", BatchNorm2d::new(4)).layer("next", Conv2d::new(4, 2, 1));
        let g = b.build("ConvBnConv", &[3, 6, 6]).expect("graph");
        assert!(bn_input_folds(&g).is_empty());
        assert_eq!(conv_bn_pairs(&g).get("conv").map(|(bn, _)| bn.as_str()), Some("bn"));
    }

    /// The f64 reference of `bn → between → product` equals that of `between → product` with the folded weights,
    /// for a convolution (with and without its own bias) and a linear layer after a flatten, on fresh inputs.
    #[test]
    fn folded_weights_compute_the_unfolded_chain() {
        let mut rng = StdRng::seed_from_u64(rand::random());
        for (between, product) in [
            (vec![], Layer::Conv2d(Conv2d::new(4, 5, 3).stride(2))),
            (vec![Layer::AvgPool2d(Pool2d::new(2))], Layer::Conv2d(Conv2d::new(4, 5, 2).bias(false))),
            (vec![Layer::Flatten, Layer::Dropout { p: 0.2 }], Layer::Linear(Linear::new(4 * 36, 3))),
            (vec![Layer::GlobalAvgPool, Layer::Flatten], Layer::Linear(Linear::new(4, 3).bias(false))),
        ] {
            let chain = |bn: bool, product: Layer| {
                let mut b = Builder::new();
                if bn {
                    b.layer("bn", BatchNorm2d::new(4));
                }
                for (i, l) in between.iter().enumerate() {
                    b.layer(&format!("mid{i}"), l.clone());
                }
                b.layer("product", product);
                b.build("Chain", &[4, 6, 6]).expect("graph")
            };
            let graph = chain(true, product.clone());
            // The same chain without the batch norm, its product with a bias to hold `b + W*shift`.
            let bare = chain(
                false,
                match product {
                    Layer::Conv2d(c) => Layer::Conv2d(c.bias(true)),
                    Layer::Linear(l) => Layer::Linear(l.bias(true)),
                    _ => unreachable!(),
                },
            );
            let fold = bn_input_folds(&graph);
            assert_eq!(fold.get("product").map(|(bn, _)| bn.as_str()), Some("bn"), "{between:?} {product:?}");
            let params = Params::random(&graph, &mut rng, 0.5, true);
            let (w, b) = match &product {
                Layer::Conv2d(c) => conv_weights_folded(&params, "product", c, fold.get("product"), None),
                Layer::Linear(l) => linear_weights(&params, "product", l, fold.get("product")),
                _ => unreachable!(),
            }
            .expect("fold");
            let weight_shape = params.require("product.weight").expect("weight").shape().to_vec();
            let mut folded = Params::new();
            folded.insert("product.weight", Tensor::from_vec(&weight_shape, w).expect("w"));
            let bias = b.expect("a folded product has a bias");
            let out = bias.len();
            folded.insert("product.bias", Tensor::from_vec(&[out], bias).expect("b"));
            let x = Tensor::randn(&[3, 4, 6, 6], 1.0, &mut rng);
            let want = infer(&graph, &params, &x).expect("unfolded");
            let got = infer(&bare, &folded, &x).expect("folded");
            let diff = want.data().iter().zip(got.data()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(diff < 1e-12, "{between:?} {product:?}: folded differs by {diff:e}");
        }
    }

    /// Mis-shaped batch-norm statistics or a product that does not take its channels: an error naming both, never
    /// a panic.
    #[test]
    fn a_fold_that_does_not_fit_is_an_error_naming_it() {
        let bn = ("norm".to_string(), BatchNorm2d::new(4));
        let mut params = Params::new();
        for (suffix, len) in [("weight", 4), ("bias", 4), ("running_mean", 3), ("running_var", 4)] {
            params.insert(&format!("norm.{suffix}"), Tensor::full(&[len], 1.0));
        }
        params.insert("fc.weight", Tensor::full(&[2, 12], 0.5));
        params.insert("fc.bias", Tensor::full(&[2], 0.0));
        let err = linear_weights(&params, "fc", &Linear::new(12, 2), Some(&bn)).expect_err("short running_mean");
        assert!(matches!(&err, DslError::FoldShape { batch_norm, layer, .. } if batch_norm == "norm" && layer == "fc"));
        params.insert("norm.running_mean", Tensor::full(&[4], 0.0));
        params.insert("fc.weight", Tensor::full(&[2, 10], 0.5));
        let err = linear_weights(&params, "fc", &Linear::new(10, 2), Some(&bn)).expect_err("10 features, 4 channels");
        assert!(err.to_string().contains("`norm` (4 channels)"), "{err}");
        params.insert("conv.weight", Tensor::full(&[2, 3, 1, 1], 0.5));
        let conv = Conv2d::new(3, 2, 1).bias(false);
        let err = conv_weights_folded(&params, "conv", &conv, Some(&bn), None).expect_err("3 input channels");
        assert!(err.to_string().contains("layer `conv`"), "{err}");
        assert!(conv_weights_folded(&params, "conv", &conv, None, Some(&bn)).is_err(), "2 output channels");
    }
}
