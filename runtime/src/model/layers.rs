//! Lowering: every layer kind to its protocol calls, once, its forward and its backward side by side (as
//! CrypTen's autograd functions pair them). Inference ([`crate::executor`]) and training ([`crate::training`]) both
//! run these; a [`Mode`] chooses the few differences:
//!
//! | layer | inference | training (saves for the backward) |
//! |---|---|---|
//! | Conv2d | conv with bias (batch norm folded in when it follows; fused, a batch norm before it folded in too) | the same conv; saves the input; backward [`Party::conv2d_backward`] (`dX = col2im(Wᵀ·dY)` truncated once, at the input's size) |
//! | Linear | matmul by the weights transposed once at sharing time (fused, a batch norm before it folded in) | the weights transposed per step; saves the input |
//! | ReLU | [`Party::relu_with_mask`] over [`Party::relu_bits`] | [`Party::relu_for_backward`]; saves the mask and the injection's shared bit ([`Party::relu_backward`]) |
//! | MaxPool2d | [`Party::max_pool2d`] | [`Party::max_pool2d_with_argmax`]; saves the one-hot argmax |
//! | BatchNorm2d | identity when folded (into the conv before it, or fused into the product after it), else `x·scale + shift` from the running statistics | batch statistics |
//! | AvgPool2d, GlobalAvgPool | the window sum, then the division — or, fused, the sum alone (the next product truncates the extra bits) | the same; fused, the product after it also truncates the extra bits in both its gradients and the pool's backward divides nothing; saves the input shape |
//! | Flatten, Dropout | the same protocol calls in both modes (training saves input shapes) | |
//!
//! With [`Fusion::On`] (see the [model layer](super)) inference folds average pools and batch norms into the next
//! product, training folds average pools into the next product (forward, and both of that product's gradients),
//! and the backward runs a layer's `dW` and `dX` truncations in shared rounds.
//!
//! Where parameters come from is a [`ParamSource`]: the executor's shared model (tensors kept apart, linear
//! weights stored transposed) or the trainer's flat state (sliced per use).

use super::fusion::Fusion;
use super::steps::{timed, StepStats};
use super::tape::{BatchNormSaved, Saved, TapeNode};
use crate::party::Party;
use crate::protocols::conv::ConvGrads;
use crate::protocols::matmul::JointProduct;
use crate::protocols::SignBits;
use crate::share::Share;
use crate::{Conv2dParams, Error, Result};
use cryptgpu_codegen::{Affine, GatherKernel};
use cryptgpu_dsl::fuse::FusionPlan;
use cryptgpu_dsl::{Layer, Node};
use std::borrow::Cow;
use std::collections::HashMap;

/// Which of the two lowerings a forward runs.
#[derive(Clone, Copy)]
pub(crate) enum Mode<'a> {
    /// Inference: batch norm from the running statistics — nothing when `folded_bn(name)` (folded into the
    /// convolution before it or the product after it), else the shared `scale`/`shift`; the average pools of `fusion` keep their window
    /// sums and the products after them truncate the extra bits ([`cryptgpu_dsl::fuse`]); nothing is saved.
    Inference { folded_bn: &'a dyn Fn(&str) -> bool, fusion: &'a FusionPlan },
    /// Training: batch norm from batch statistics; every layer saves what its backward needs; the average pools
    /// of `fusion` keep their window sums as in inference, and the products after them truncate the extra bits
    /// forward and in both their gradients (the backward's [`FusionPlan`] is the same).
    Training { fusion: &'a FusionPlan },
}

/// Where a layer's parameter shares come from.
pub(crate) trait ParamSource {
    /// The share of `key` (`<layer>.weight`, `<layer>.bias`, `<bn>.scale`, …); an error naming it when absent.
    fn param(&self, key: &str) -> Result<Cow<'_, Share>>;
    /// Whether the source holds `key`.
    fn has(&self, key: &str) -> bool;
    /// A linear layer's weight `key` (`[out, in]`) as the right operand `[in, out]` of the matmul.
    fn linear_operand(&self, p: &mut Party, key: &str) -> Result<Cow<'_, Share>>;
}

/// Runs `nodes` forward on `x` in `mode`, recording one step per layer and residual add; returns the output and
/// the tape (in inference mode a tape of [`Saved::Inference`] nodes, which the caller drops).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_nodes(
    p: &mut Party,
    mode: Mode<'_>,
    fusion: Fusion,
    src: &dyn ParamSource,
    nodes: &[Node],
    mut x: Share,
    steps: &mut Vec<StepStats>,
) -> Result<(Share, Vec<TapeNode>)> {
    let mut tape = Vec::with_capacity(nodes.len());
    for (i, node) in nodes.iter().enumerate() {
        let (y, t) = match node {
            Node::Layer { name, layer } => {
                let kind = layer.kind_name();
                // A ReLU right after a product starts in the product's truncation ([`Party::expect_relu`]).
                let relu_next =
                    fusion.is_on() && matches!(nodes.get(i + 1), Some(Node::Layer { layer: Layer::Relu, .. }));
                // The sign bits of this layer if it is a ReLU, or of the ReLU it announces.
                let after_conv =
                    |j: usize| j > 0 && matches!(nodes.get(j - 1), Some(Node::Layer { layer: Layer::Conv2d(_), .. }));
                let relu_at = if matches!(layer, Layer::Relu) { i } else { i + 1 };
                let bits = relu_bits(p, mode, after_conv(relu_at))?;
                let (y, saved) = timed(p, steps, name, kind, |p| {
                    forward(p, mode, src, name, layer, x, relu_next.then_some(bits), bits)
                })?;
                (y, TapeNode::Layer { name: name.clone(), kind, saved: Box::new(saved) })
            }
            Node::Sequential { children, .. } => {
                let (y, t) = forward_nodes(p, mode, fusion, src, children, x, steps)?;
                (y, TapeNode::Seq(t))
            }
            Node::Residual { name, main, shortcut, post } => {
                let (m, main) = forward_nodes(p, mode, fusion, src, main, x.clone(), steps)?;
                let (s, shortcut) = forward_nodes(p, mode, fusion, src, shortcut, x, steps)?;
                let sum = timed(p, steps, &format!("{name}.add"), "ResidualAdd", |p| p.add(&m, &s))?;
                let (y, post) = forward_nodes(p, mode, fusion, src, post, sum, steps)?;
                (y, TapeNode::Residual { name: name.clone(), main, shortcut, post })
            }
        };
        tape.push(t);
        x = y;
    }
    Ok((x, tape))
}

/// What a backward fuses: the switch (a product's `dW` and `dX` in shared rounds) and the forward's average-pool
/// plan (a fused pool's division is in the product after it, for both its gradients).
#[derive(Clone, Copy)]
pub(crate) struct BackwardFusion<'a> {
    /// Whether products share their truncation rounds.
    pub on: Fusion,
    /// The average pools whose divisions the products after them took over.
    pub plan: &'a FusionPlan,
}

/// Runs the backward of `tape` (reverse order) from the upstream gradient `dy`, inserting every parameter
/// gradient into `grads` under its key. Returns the gradient of the tape's input, computed only when
/// `need_input_grad` (the first layer's input is the data).
///
/// With [`Fusion::On`] a convolution's or linear layer's `dW` and `dX` products truncate in shared rounds
/// ([`Party::matmuls_jointly`]): bit for bit the unfused gradients, in half the truncation rounds.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_nodes(
    p: &mut Party,
    src: &dyn ParamSource,
    tape: &[TapeNode],
    mut dy: Share,
    need_input_grad: bool,
    grads: &mut HashMap<String, Share>,
    steps: &mut Vec<StepStats>,
    fusion: BackwardFusion<'_>,
) -> Result<Option<Share>> {
    for (i, node) in tape.iter().enumerate().rev() {
        let need = need_input_grad || i > 0;
        let (dx, name) = match node {
            TapeNode::Layer { name, kind, saved } => {
                let dx = timed(p, steps, &format!("{name}.backward"), kind, |p| {
                    backward(p, src, name, saved, dy, need, grads, fusion)
                })?;
                (dx, name.as_str())
            }
            TapeNode::Seq(children) => (backward_nodes(p, src, children, dy, need, grads, steps, fusion)?, "sequence"),
            TapeNode::Residual { name, main, shortcut, post } => {
                let dsum = backward_nodes(p, src, post, dy, true, grads, steps, fusion)?
                    .ok_or_else(|| Error::Internal(format!("block `{name}`: no gradient")))?;
                let dm = backward_nodes(p, src, main, dsum.clone(), need, grads, steps, fusion)?;
                let ds = backward_nodes(p, src, shortcut, dsum, need, grads, steps, fusion)?;
                let dx = match (dm, ds) {
                    (Some(a), Some(b)) => {
                        Some(timed(p, steps, &format!("{name}.add.backward"), "ResidualAdd", |p| p.add(&a, &b))?)
                    }
                    _ => None,
                };
                (dx, name.as_str())
            }
        };
        match dx {
            Some(dx) => dy = dx,
            None if !need => return Ok(None),
            None => return Err(Error::Internal(format!("node `{name}`: no input gradient"))),
        }
    }
    Ok(Some(dy))
}

/// The sign bits of a ReLU. Inference: the declared or analysed bound ([`Party::relu_bits`]). Training, right
/// after a convolution: the bound that convolution's truncation already needs — its value before truncation is
/// below 2^62 (else the truncation itself is wrong; the bias enters before it), so its output is below 2^(62 − t)
/// in the ring and the sign of bit 62 − t is exact for every value the truncation got right. Elsewhere in training
/// (after a linear layer, which adds its bias after the truncation, a residual add, a batch norm): the full range.
fn relu_bits(p: &Party, mode: Mode<'_>, after_conv: bool) -> Result<SignBits> {
    match mode {
        Mode::Inference { .. } => Ok(p.relu_bits()),
        Mode::Training { .. } if after_conv => SignBits::for_bound(62 - p.fixed().frac_bits()),
        Mode::Training { .. } => Ok(SignBits::default()),
    }
}

/// One layer's forward in `mode`: its output and what its backward needs. `relu_next`: the sign bits of the ReLU
/// that follows this product, which it announces ([`Party::expect_relu`]); `bits`: this layer's own sign bits if it
/// is a ReLU.
#[allow(clippy::too_many_arguments)]
fn forward(
    p: &mut Party,
    mode: Mode<'_>,
    src: &dyn ParamSource,
    name: &str,
    layer: &Layer,
    x: Share,
    relu_next: Option<SignBits>,
    bits: SignBits,
) -> Result<(Share, Saved)> {
    let training = matches!(mode, Mode::Training { .. });
    let keep = |s: Saved| if training { s } else { Saved::Inference };
    // Bits of an average pool's division this product takes over; whether this pool keeps its window sums.
    let (Mode::Inference { fusion, .. } | Mode::Training { fusion }) = mode;
    let (extra_bits, sum_only) = (fusion.extra_bits(name), fusion.pool_bits(name).is_some());
    Ok(match layer {
        Layer::Conv2d(c) => {
            let params = square(name, "Conv2d", c.stride, c.padding)?;
            let w = src.param(&format!("{name}.weight"))?;
            let bias_key = format!("{name}.bias");
            let b = if c.bias || src.has(&bias_key) { Some(src.param(&bias_key)?) } else { None };
            if let Some(bits) = relu_next {
                p.expect_relu(bits, None)?;
            }
            let y = match extra_bits {
                0 => p.conv2d(&x, &w, b.as_deref(), params)?,
                e => p.conv2d_scaled(&x, &w, b.as_deref(), params, e, "avgpool_div_conv2d")?,
            };
            (y, keep(Saved::Conv2d { x, params, bias: c.bias }))
        }
        Layer::Linear(l) => {
            let wt = src.linear_operand(p, &format!("{name}.weight"))?;
            let out_shape = [x.shape().first().copied().unwrap_or(0), wt.shape().get(1).copied().unwrap_or(0)];
            // A batch norm folded into the input gives a bias-less layer one (`b + W·shift`).
            let bias_key = format!("{name}.bias");
            let bias = match l.bias || src.has(&bias_key) {
                true => Some(p.broadcast_axis(&*src.param(&bias_key)?, &out_shape, 1)?),
                false => None,
            };
            if let Some(bits) = relu_next {
                p.expect_relu(bits, bias.clone())?;
            }
            let mut y = match extra_bits {
                0 => p.matmul(&x, &wt)?,
                e => p.matmul_scaled(&x, &wt, e, "avgpool_div_linear")?,
            };
            if let Some(b) = &bias {
                y = p.add(&y, b)?;
            }
            (y, keep(Saved::Linear { x, bias: l.bias }))
        }
        Layer::Relu => {
            // Finishes the ReLU the product before announced, if its truncation started it.
            let (y, mask) = p.relu_expected(&x, bits)?;
            (y, keep(Saved::Relu(mask)))
        }
        Layer::AvgPool2d(pool) => {
            let params = square(name, "AvgPool2d", pool.stride, pool.padding)?;
            let kernel = [pool.kernel.0, pool.kernel.1];
            let y = if sum_only { p.sum_pool2d(&x, kernel, params)? } else { p.avg_pool2d(&x, kernel, params)? };
            (y, keep(Saved::AvgPool2d { in_shape: x.shape().to_vec(), kernel, params }))
        }
        Layer::MaxPool2d(pool) if training => {
            let params = square(name, "MaxPool2d", pool.stride, pool.padding)?;
            let (y, arg) = p.max_pool2d_with_argmax(&x, [pool.kernel.0, pool.kernel.1], params)?;
            (y, Saved::MaxPool2d(arg))
        }
        Layer::MaxPool2d(pool) => {
            let params = square(name, "MaxPool2d", pool.stride, pool.padding)?;
            (p.max_pool2d(&x, [pool.kernel.0, pool.kernel.1], params)?, Saved::Inference)
        }
        Layer::GlobalAvgPool => {
            let &[_, _, h, w] = x.shape() else { return Err(not_nchw(name, "GlobalAvgPool", &x)) };
            let sum = p.sum_pool2d(&x, [h, w], Conv2dParams { stride: 1, padding: 0 })?;
            let y = if sum_only { sum } else { p.div_public(&sum, (h * w) as u64)? };
            (y, keep(Saved::GlobalAvgPool { in_shape: x.shape().to_vec() }))
        }
        Layer::Flatten => {
            let in_shape = x.shape().to_vec();
            let n = in_shape.first().copied().unwrap_or(0);
            let rest = x.len() / n.max(1);
            (reshaped(x, &[n, rest], name)?, keep(Saved::Flatten { in_shape }))
        }
        Layer::Dropout { .. } => (x, keep(Saved::Dropout)),
        Layer::BatchNorm2d(bn) => match mode {
            Mode::Training { .. } => batch_norm_train(p, src, name, bn.eps, x)?,
            // Folded into the conv before it or the product after it.
            Mode::Inference { folded_bn, .. } if folded_bn(name) => (x, Saved::Inference),
            Mode::Inference { .. } => {
                let scale = p.broadcast_axis(&*src.param(&format!("{name}.scale"))?, x.shape(), 1)?;
                let shift = p.broadcast_axis(&*src.param(&format!("{name}.shift"))?, x.shape(), 1)?;
                let y = p.mul(&x, &scale)?;
                (p.add(&y, &shift)?, Saved::Inference)
            }
        },
    })
}

/// One layer's backward from `dy`: inserts its parameter gradients into `grads`, returns `dX` when `need_dx`.
#[allow(clippy::too_many_arguments)]
fn backward(
    p: &mut Party,
    src: &dyn ParamSource,
    name: &str,
    saved: &Saved,
    dy: Share,
    need_dx: bool,
    grads: &mut HashMap<String, Share>,
    fusion: BackwardFusion<'_>,
) -> Result<Option<Share>> {
    let joint = fusion.on.is_on() && need_dx;
    // The bits of a fused average pool's division this product takes over (in both gradients, as forward).
    let e = fusion.plan.extra_bits(name);
    let pool_fused = fusion.plan.pool_bits(name).is_some();
    Ok(match saved {
        Saved::Linear { x, bias } => {
            let w = src.param(&format!("{name}.weight"))?;
            let dyt = p.permute(&dy, &[1, 0])?;
            let (dw, dx) = if joint {
                let [dw, dx] = two(p.products_jointly(&[
                    JointProduct { x: &dyt, y: x, then: &[], extra_bits: e },
                    JointProduct { x: &dy, y: &w, then: &[], extra_bits: e },
                ])?)?;
                (dw, Some(dx))
            } else {
                let dw = p.matmul_scaled(&dyt, x, e, "matmul")?;
                (dw, if need_dx { Some(p.matmul_scaled(&dy, &w, e, "matmul")?) } else { None })
            };
            grads.insert(format!("{name}.weight"), dw);
            if *bias {
                grads.insert(format!("{name}.bias"), sum_except(p, &dy, 1)?);
            }
            dx
        }
        Saved::Conv2d { x, params, bias } => {
            let w = src.param(&format!("{name}.weight"))?;
            let how = ConvGrads { input_grad: need_dx, joint, extra_bits: e };
            let (dw, dx) = p.conv2d_grads(x, &w, &dy, *params, how).map_err(|e| match e {
                Error::Shape { op, expected, found } => {
                    Error::Shape { op: format!("layer `{name}` ({op})"), expected, found }
                }
                e => e,
            })?;
            grads.insert(format!("{name}.weight"), dw);
            if *bias {
                grads.insert(format!("{name}.bias"), sum_except(p, &dy, 1)?);
            }
            dx
        }
        Saved::Relu(mask) => Some(p.relu_backward(&dy, mask)?),
        Saved::AvgPool2d { in_shape, kernel: [kh, kw], params } => {
            let (&[n, c, h, w], &[_, _, oh, ow]) = (in_shape.as_slice(), dy.shape()) else {
                return Err(Error::Shape {
                    op: format!("layer `{name}` (AvgPool2d backward)"),
                    expected: "an input and a gradient [N, C, H, W]".into(),
                    found: format!("{in_shape:?} and {:?}", dy.shape()),
                });
            };
            // Fused, the forward kept the window sums: the product after it already divided the gradient.
            let scaled = if pool_fused { dy } else { p.div_public(&dy, (kh * kw) as u64)? };
            let spread = GatherKernel {
                name: "avg_pool_grad_spread".into(),
                in_shape: vec![n, c, oh, ow],
                out_shape: vec![*kh, *kw, n, c, oh, ow],
                reduce_shape: vec![],
                coords: vec![Affine::axis(2), Affine::axis(3), Affine::axis(4), Affine::axis(5)],
            };
            let cols = p.gather_share(&spread, &scaled, &spread.out_shape)?;
            Some(col2im(p, &cols, false, [n, c, h, w], [*kh, *kw], *params)?)
        }
        Saved::MaxPool2d(arg) => Some(p.max_pool2d_backward(&dy, arg)?),
        Saved::GlobalAvgPool { in_shape } => {
            let &[n, c, h, w] = in_shape.as_slice() else {
                return Err(Error::Shape {
                    op: format!("layer `{name}` (GlobalAvgPool backward)"),
                    expected: "an input [N, C, H, W]".into(),
                    found: format!("{in_shape:?}"),
                });
            };
            let scaled = if pool_fused { dy } else { p.div_public(&dy, (h * w) as u64)? };
            let zero = Affine { offset: 0, terms: vec![] };
            let spread = GatherKernel {
                name: "global_avg_pool_grad_spread".into(),
                in_shape: vec![n, c, 1, 1],
                out_shape: vec![n, c, h, w],
                reduce_shape: vec![],
                coords: vec![Affine::axis(0), Affine::axis(1), zero.clone(), zero],
            };
            Some(p.gather_share(&spread, &reshaped(scaled, &[n, c, 1, 1], name)?, &[n, c, h, w])?)
        }
        Saved::Flatten { in_shape } => Some(reshaped(dy, in_shape, name)?),
        Saved::Dropout => Some(dy),
        Saved::BatchNorm2d(bn) => batch_norm_backward(p, src, name, bn, dy, need_dx, grads)?,
        Saved::Inference => {
            return Err(Error::Internal(format!("layer `{name}` ran in inference mode: it has no backward")))
        }
    })
}

/// Batch norm with batch statistics over `m = N·H·W`: mean, centred input, biased variance, `1/√(var + eps)`,
/// then `x̂ = (x − μ)·inv` and `y = (x − μ)·(γ·inv) + β` (the two big products in one call).
fn batch_norm_train(p: &mut Party, src: &dyn ParamSource, name: &str, eps: f64, x: Share) -> Result<(Share, Saved)> {
    let &[n, c, h, w] = x.shape() else { return Err(not_nchw(name, "BatchNorm2d", &x)) };
    let m = n * h * w;
    let shape = x.shape().to_vec();
    let gamma = src.param(&format!("{name}.weight"))?;
    let beta = src.param(&format!("{name}.bias"))?;
    let sum = sum_except(p, &x, 1)?;
    let mean = p.div_public(&sum, m as u64)?;
    let mean_b = p.broadcast_axis(&mean, &shape, 1)?;
    let centred = p.sub(&x, &mean_b)?;
    let squares = p.mul(&centred, &centred)?;
    let sum_sq = sum_except(p, &squares, 1)?;
    let var = p.div_public(&sum_sq, m as u64)?;
    let var_eps = p.add_public_fixed(&var, &full(&[c], eps)?)?;
    let inv_std = p.rsqrt(&var_eps)?;
    let scale = p.mul(&gamma, &inv_std)?;
    let (inv_b, scale_b) = (p.broadcast_axis(&inv_std, &shape, 1)?, p.broadcast_axis(&scale, &shape, 1)?);
    let [xhat, scaled] = products(p, [(&centred, &inv_b), (&centred, &scale_b)])?;
    let beta_b = p.broadcast_axis(&beta, &shape, 1)?;
    let y = p.add(&scaled, &beta_b)?;
    Ok((y, Saved::BatchNorm2d(Box::new(BatchNormSaved { xhat, inv_std, mean, var, m }))))
}

/// Batch norm's backward: `dγ = Σ dy·x̂`, `dβ = Σ dy` and `γ·inv` in one product call, then
/// `dx = γ·inv/m · (m·dy − dβ − x̂·dγ)`: the bracket exactly in the ring (`m·dy` is local), one product by `γ·inv`,
/// then one division by `m`, so no `1/m`-sized factor loses precision.
fn batch_norm_backward(
    p: &mut Party,
    src: &dyn ParamSource,
    name: &str,
    bn: &BatchNormSaved,
    dy: Share,
    need_dx: bool,
    grads: &mut HashMap<String, Share>,
) -> Result<Option<Share>> {
    let BatchNormSaved { xhat, inv_std, m, .. } = bn;
    let gamma = src.param(&format!("{name}.weight"))?;
    let shape = dy.shape().to_vec();
    let [dy_xhat, scale] = products(p, [(&dy, xhat), (&gamma, inv_std)])?;
    let (dgamma, dbeta) = (sum_except(p, &dy_xhat, 1)?, sum_except(p, &dy, 1)?);
    let dx = if need_dx {
        let dg = p.broadcast_axis(&dgamma, &shape, 1)?;
        let xhat_dg = p.mul(xhat, &dg)?;
        let (m_dy, dbeta_b) = (times(p, &dy, *m)?, p.broadcast_axis(&dbeta, &shape, 1)?);
        let bracket = p.sub(&m_dy, &dbeta_b)?;
        let bracket = p.sub(&bracket, &xhat_dg)?;
        let scale_b = p.broadcast_axis(&scale, &shape, 1)?;
        let scaled = p.mul(&bracket, &scale_b)?;
        Some(p.div_public(&scaled, *m as u64)?)
    } else {
        None
    };
    grads.insert(format!("{name}.weight"), dgamma);
    grads.insert(format!("{name}.bias"), dbeta);
    Ok(dx)
}

/// The window parameters of a layer, which must use the same stride and padding on both axes.
pub(crate) fn square(name: &str, what: &str, stride: (usize, usize), padding: (usize, usize)) -> Result<Conv2dParams> {
    if stride.0 != stride.1 || padding.0 != padding.1 {
        return Err(Error::Unsupported {
            layer: name.to_string(),
            kind: what.to_string(),
            reason: format!("stride {stride:?} and padding {padding:?} must be equal on both axes"),
        });
    }
    Ok(Conv2dParams { stride: stride.0, padding: padding.0 })
}

fn not_nchw(name: &str, what: &str, x: &Share) -> Error {
    Error::Shape {
        op: format!("layer `{name}` ({what})"),
        expected: "[N, C, H, W]".into(),
        found: format!("{:?}", x.shape()),
    }
}

fn reshaped(x: Share, shape: &[usize], name: &str) -> Result<Share> {
    let found = format!("{:?}", x.shape());
    x.reshaped(shape).ok_or_else(|| Error::Shape {
        op: format!("layer `{name}`: reshape"),
        expected: format!("{shape:?}"),
        found,
    })
}

/// Scatters window columns back onto the input grid: the transposed gather of im2col ([`GatherKernel::col2im`]).
fn col2im(
    p: &mut Party,
    cols: &Share,
    conv_layout: bool,
    [n, c, h, w]: [usize; 4],
    [kh, kw]: [usize; 2],
    params: Conv2dParams,
) -> Result<Share> {
    let [scatter, crop] =
        GatherKernel::col2im("col2im", [n, c, h, w], [kh, kw], params.stride, params.padding, conv_layout)?;
    let padded = p.gather_share(&scatter, cols, &crop.in_shape)?;
    p.gather_share(&crop, &padded, &crop.out_shape)
}

/// Sums a share over every axis but `keep` (local): the bias gradient, batch norm's sums.
fn sum_except(p: &mut Party, x: &Share, keep: usize) -> Result<Share> {
    let shape = x.shape().to_vec();
    let out = [shape.get(keep).copied().unwrap_or(0)];
    p.sum_except(x, &shape, keep, &out)
}

/// A public tensor of `shape` filled with `v`.
pub(crate) fn full(shape: &[usize], v: f64) -> Result<crate::Tensor> {
    crate::Tensor::new(shape, vec![v; crate::tensor::numel(shape)?])
}

/// Elementwise products of independent pairs in ONE [`Party::mul`] (one product's rounds for all of them): each
/// result has the shape of its pair's first operand.
pub(crate) fn products<const N: usize>(p: &mut Party, pairs: [(&Share, &Share); N]) -> Result<[Share; N]> {
    let lhs: Vec<&Share> = pairs.iter().map(|(a, _)| *a).collect();
    let rhs: Vec<&Share> = pairs.iter().map(|(_, b)| *b).collect();
    let total: usize = lhs.iter().map(|s| s.len()).sum();
    let all = p.mul(&Share::concat(&lhs, &[total])?, &Share::concat(&rhs, &[total])?)?;
    let mut offset = 0;
    let mut out = Vec::with_capacity(N);
    for a in &lhs {
        out.push(all.slice(offset..offset + a.len(), a.shape())?);
        offset += a.len();
    }
    out.try_into().map_err(|_| Error::Internal("products: count".into()))
}

/// The two results of a two-product call.
fn two(v: Vec<Share>) -> Result<[Share; 2]> {
    v.try_into().map_err(|_| Error::Internal("two products expected".into()))
}

/// A share times a public integer (local, exact).
fn times(p: &mut Party, x: &Share, k: usize) -> Result<Share> {
    p.mul_public_ring(x, &crate::RingTensor::new(x.shape(), vec![k as u64; x.len()])?)
}
