//! The plaintext f64 reference: forward and backward of every layer kind, whole-model forward/backward over a
//! [`Graph`] (with a tape of what backward needs), softmax cross-entropy with its gradient, and SGD with optional
//! momentum and weight decay (PyTorch semantics). Private results are checked against these functions.
//!
//! Batched tensors are row-major NCHW (`[N, C, H, W]`) or `[N, F]`. Dropout is the identity in both modes so
//! that the reference is deterministic. Batch norm uses batch statistics in [`Mode::Train`] (and updates the
//! running statistics like PyTorch) and the running statistics in [`Mode::Eval`].
//!
//! NaN propagates as in PyTorch: a NaN input element gives NaN in every output it reaches (ReLU keeps it, max
//! pooling and the softmax's maximum pick it over any number, ReLU's backward passes NaN on), so a check
//! against this reference cannot pass on garbage.

use crate::error::{DslError, Result};
use crate::graph::Graph;
use crate::layer::{BatchNorm2d, Conv2d, Layer, Node, Pool2d};
use crate::params::Params;
use crate::tensor::Tensor;
use std::collections::BTreeMap;

/// Whether batch norm uses batch statistics (training) or running statistics (inference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics; running statistics are updated.
    Train,
    /// Running statistics.
    Eval,
}

fn check_rank(what: &str, t: &Tensor, rank: usize) -> Result<()> {
    if t.shape().len() != rank {
        return Err(DslError::BatchShape {
            what: what.to_string(),
            expected: format!("a rank-{rank} tensor"),
            found: t.shape().to_vec(),
        });
    }
    Ok(())
}

fn check_shape(what: &str, t: &Tensor, expected: &[usize]) -> Result<()> {
    if t.shape() != expected {
        return Err(DslError::BatchShape {
            what: what.to_string(),
            expected: format!("{expected:?}"),
            found: t.shape().to_vec(),
        });
    }
    Ok(())
}

fn dims4(t: &Tensor) -> (usize, usize, usize, usize) {
    let s = t.shape();
    (s[0], s[1], s[2], s[3])
}

/// Output extent of a window sweep; callers have validated that the window fits.
pub(crate) fn out_extent(size: usize, k: usize, s: usize, p: usize) -> usize {
    (size + 2 * p).saturating_sub(k) / s.max(1) + 1
}

fn check_window(what: &str, x: &Tensor, k: (usize, usize), s: (usize, usize), p: (usize, usize)) -> Result<()> {
    let sh = x.shape();
    if k.0 == 0 || k.1 == 0 || s.0 == 0 || s.1 == 0 || sh[2] + 2 * p.0 < k.0 || sh[3] + 2 * p.1 < k.1 {
        return Err(DslError::BatchShape {
            what: what.to_string(),
            expected: format!("spatial extent at least kernel {k:?} after padding {p:?}, positive stride {s:?}"),
            found: sh.to_vec(),
        });
    }
    Ok(())
}

/// Convolution forward: `x [N, C, H, W]`, `w [O, C, kh, kw]`, optional `b [O]`.
pub fn conv2d_forward(x: &Tensor, w: &Tensor, b: Option<&Tensor>, c: &Conv2d) -> Result<Tensor> {
    check_rank("conv2d input", x, 4)?;
    let (n, ci, h, wd) = dims4(x);
    check_shape("conv2d weight", w, &[c.out_channels, ci, c.kernel.0, c.kernel.1])?;
    if let Some(b) = b {
        check_shape("conv2d bias", b, &[c.out_channels])?;
    }
    check_window("conv2d input", x, c.kernel, c.stride, c.padding)?;
    let (kh, kw, o) = (c.kernel.0, c.kernel.1, c.out_channels);
    let oh = out_extent(h, kh, c.stride.0, c.padding.0);
    let ow = out_extent(wd, kw, c.stride.1, c.padding.1);
    let mut y = Tensor::zeros(&[n, o, oh, ow]);
    let (xd, wdat) = (x.data(), w.data());
    let yd = y.data_mut();
    for ni in 0..n {
        for oi in 0..o {
            let ybase = (ni * o + oi) * oh * ow;
            if let Some(b) = b {
                yd[ybase..ybase + oh * ow].iter_mut().for_each(|v| *v = b.data()[oi]);
            }
            for cc in 0..ci {
                let xbase = (ni * ci + cc) * h * wd;
                for ki in 0..kh {
                    for kj in 0..kw {
                        let wv = wdat[((oi * ci + cc) * kh + ki) * kw + kj];
                        for yi in 0..oh {
                            let ih = (yi * c.stride.0 + ki) as isize - c.padding.0 as isize;
                            if ih < 0 || ih >= h as isize {
                                continue;
                            }
                            for xj in 0..ow {
                                let iw = (xj * c.stride.1 + kj) as isize - c.padding.1 as isize;
                                if iw < 0 || iw >= wd as isize {
                                    continue;
                                }
                                yd[ybase + yi * ow + xj] += wv * xd[xbase + ih as usize * wd + iw as usize];
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(y)
}

/// Convolution backward: returns `(dx, dw, db)`; `db` is `None` when the layer has no bias.
pub fn conv2d_backward(x: &Tensor, w: &Tensor, dy: &Tensor, c: &Conv2d) -> Result<(Tensor, Tensor, Option<Tensor>)> {
    check_rank("conv2d input", x, 4)?;
    let (n, ci, h, wd) = dims4(x);
    check_shape("conv2d weight", w, &[c.out_channels, ci, c.kernel.0, c.kernel.1])?;
    check_window("conv2d input", x, c.kernel, c.stride, c.padding)?;
    let (kh, kw, o) = (c.kernel.0, c.kernel.1, c.out_channels);
    let oh = out_extent(h, kh, c.stride.0, c.padding.0);
    let ow = out_extent(wd, kw, c.stride.1, c.padding.1);
    check_shape("conv2d output gradient", dy, &[n, o, oh, ow])?;
    let mut dx = Tensor::zeros(x.shape());
    let mut dw = Tensor::zeros(w.shape());
    let (xd, wdat, dyd) = (x.data(), w.data(), dy.data());
    {
        let (dxd, dwd) = (dx.data_mut(), dw.data_mut());
        for ni in 0..n {
            for oi in 0..o {
                let ybase = (ni * o + oi) * oh * ow;
                for cc in 0..ci {
                    let xbase = (ni * ci + cc) * h * wd;
                    for ki in 0..kh {
                        for kj in 0..kw {
                            let widx = ((oi * ci + cc) * kh + ki) * kw + kj;
                            let wv = wdat[widx];
                            let mut gw = 0.0;
                            for yi in 0..oh {
                                let ih = (yi * c.stride.0 + ki) as isize - c.padding.0 as isize;
                                if ih < 0 || ih >= h as isize {
                                    continue;
                                }
                                for xj in 0..ow {
                                    let iw = (xj * c.stride.1 + kj) as isize - c.padding.1 as isize;
                                    if iw < 0 || iw >= wd as isize {
                                        continue;
                                    }
                                    let g = dyd[ybase + yi * ow + xj];
                                    let xi = xbase + ih as usize * wd + iw as usize;
                                    gw += g * xd[xi];
                                    dxd[xi] += g * wv;
                                }
                            }
                            dwd[widx] += gw;
                        }
                    }
                }
            }
        }
    }
    let db = if c.bias {
        let mut db = Tensor::zeros(&[o]);
        for ni in 0..n {
            for oi in 0..o {
                let base = (ni * o + oi) * oh * ow;
                db.data_mut()[oi] += dyd[base..base + oh * ow].iter().sum::<f64>();
            }
        }
        Some(db)
    } else {
        None
    };
    Ok((dx, dw, db))
}

/// Linear forward: `x [N, in]`, `w [out, in]`, optional `b [out]` → `[N, out]`.
pub fn linear_forward(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    check_rank("linear input", x, 2)?;
    check_rank("linear weight", w, 2)?;
    let (n, k) = (x.shape()[0], x.shape()[1]);
    let o = w.shape()[0];
    check_shape("linear weight", w, &[o, k])?;
    if let Some(b) = b {
        check_shape("linear bias", b, &[o])?;
    }
    let mut y = Tensor::zeros(&[n, o]);
    for ni in 0..n {
        let xr = &x.data()[ni * k..(ni + 1) * k];
        for oi in 0..o {
            let wr = &w.data()[oi * k..(oi + 1) * k];
            let dot: f64 = xr.iter().zip(wr).map(|(a, b)| a * b).sum();
            y.data_mut()[ni * o + oi] = dot + b.map_or(0.0, |b| b.data()[oi]);
        }
    }
    Ok(y)
}

/// Linear backward: returns `(dx, dw, db)` for `dy [N, out]`.
pub fn linear_backward(x: &Tensor, w: &Tensor, dy: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    check_rank("linear input", x, 2)?;
    check_rank("linear weight", w, 2)?;
    let (n, k) = (x.shape()[0], x.shape()[1]);
    let o = w.shape()[0];
    check_shape("linear weight", w, &[o, k])?;
    check_shape("linear output gradient", dy, &[n, o])?;
    let mut dx = Tensor::zeros(&[n, k]);
    let mut dw = Tensor::zeros(&[o, k]);
    let mut db = Tensor::zeros(&[o]);
    for ni in 0..n {
        for oi in 0..o {
            let g = dy.data()[ni * o + oi];
            db.data_mut()[oi] += g;
            for ki in 0..k {
                dx.data_mut()[ni * k + ki] += g * w.data()[oi * k + ki];
                dw.data_mut()[oi * k + ki] += g * x.data()[ni * k + ki];
            }
        }
    }
    Ok((dx, dw, db))
}

/// The larger of `a` and `b`, NaN when either is NaN (`f64::max` would drop the NaN).
fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// ReLU forward (NaN stays NaN).
pub fn relu_forward(x: &Tensor) -> Tensor {
    let mut y = x.clone();
    y.data_mut().iter_mut().filter(|v| **v < 0.0).for_each(|v| *v = 0.0);
    y
}

/// ReLU backward: `dy` where `x > 0`, NaN where `x` is NaN, else 0.
pub fn relu_backward(x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    check_shape("relu output gradient", dy, x.shape())?;
    let data = x
        .data()
        .iter()
        .zip(dy.data())
        .map(|(&a, &g)| {
            if a > 0.0 {
                g
            } else if a.is_nan() {
                f64::NAN
            } else {
                0.0
            }
        })
        .collect();
    Tensor::from_vec(x.shape(), data)
}

/// Calls `f(out_index, in_index_or_none)` for every window position of a pooling sweep.
fn pool_sweep(in_shape: &[usize], p: &Pool2d, mut f: impl FnMut(usize, Option<usize>)) {
    let (n, c, h, w) = (in_shape[0], in_shape[1], in_shape[2], in_shape[3]);
    let oh = out_extent(h, p.kernel.0, p.stride.0, p.padding.0);
    let ow = out_extent(w, p.kernel.1, p.stride.1, p.padding.1);
    for plane in 0..n * c {
        for yi in 0..oh {
            for xj in 0..ow {
                let o = (plane * oh + yi) * ow + xj;
                for ki in 0..p.kernel.0 {
                    for kj in 0..p.kernel.1 {
                        let ih = (yi * p.stride.0 + ki) as isize - p.padding.0 as isize;
                        let iw = (xj * p.stride.1 + kj) as isize - p.padding.1 as isize;
                        if ih < 0 || iw < 0 || ih >= h as isize || iw >= w as isize {
                            f(o, None);
                        } else {
                            f(o, Some((plane * h + ih as usize) * w + iw as usize));
                        }
                    }
                }
            }
        }
    }
}

fn pool_out_shape(x: &[usize], p: &Pool2d) -> Vec<usize> {
    vec![
        x[0],
        x[1],
        out_extent(x[2], p.kernel.0, p.stride.0, p.padding.0),
        out_extent(x[3], p.kernel.1, p.stride.1, p.padding.1),
    ]
}

/// Average pooling forward (padding counted in the divisor, PyTorch's default).
pub fn avg_pool2d_forward(x: &Tensor, p: &Pool2d) -> Result<Tensor> {
    check_rank("avg_pool2d input", x, 4)?;
    check_window("avg_pool2d input", x, p.kernel, p.stride, p.padding)?;
    let mut y = Tensor::zeros(&pool_out_shape(x.shape(), p));
    let inv = 1.0 / (p.kernel.0 * p.kernel.1) as f64;
    let xd = x.data();
    let yd = y.data_mut();
    pool_sweep(x.shape(), p, |o, i| {
        if let Some(i) = i {
            yd[o] += xd[i] * inv;
        }
    });
    Ok(y)
}

/// Average pooling backward for an input of shape `in_shape`.
pub fn avg_pool2d_backward(in_shape: &[usize], dy: &Tensor, p: &Pool2d) -> Result<Tensor> {
    let mut dx = Tensor::zeros(in_shape);
    check_rank("avg_pool2d input", &dx, 4)?;
    check_window("avg_pool2d input", &dx, p.kernel, p.stride, p.padding)?;
    check_shape("avg_pool2d output gradient", dy, &pool_out_shape(in_shape, p))?;
    let inv = 1.0 / (p.kernel.0 * p.kernel.1) as f64;
    let dyd = dy.data();
    let dxd = dx.data_mut();
    pool_sweep(in_shape, p, |o, i| {
        if let Some(i) = i {
            dxd[i] += dyd[o] * inv;
        }
    });
    Ok(dx)
}

/// Max pooling forward: the output and, per output element, the flat input index of its maximum (first
/// maximum in window order; padding never wins; a NaN wins over any number, as in PyTorch).
pub fn max_pool2d_forward(x: &Tensor, p: &Pool2d) -> Result<(Tensor, Vec<usize>)> {
    check_rank("max_pool2d input", x, 4)?;
    check_window("max_pool2d input", x, p.kernel, p.stride, p.padding)?;
    let out_shape = pool_out_shape(x.shape(), p);
    let mut y = Tensor::full(&out_shape, f64::NEG_INFINITY);
    let mut arg = vec![usize::MAX; y.len()];
    let xd = x.data();
    let yd = y.data_mut();
    pool_sweep(x.shape(), p, |o, i| {
        if let Some(i) = i {
            if arg[o] == usize::MAX || xd[i] > yd[o] || (xd[i].is_nan() && !yd[o].is_nan()) {
                yd[o] = xd[i];
                arg[o] = i;
            }
        }
    });
    Ok((y, arg))
}

/// Max pooling backward: routes each output gradient to its argmax.
pub fn max_pool2d_backward(in_shape: &[usize], argmax: &[usize], dy: &Tensor) -> Result<Tensor> {
    let mut dx = Tensor::zeros(in_shape);
    if argmax.len() != dy.len() {
        return Err(DslError::BatchShape {
            what: "max_pool2d output gradient".into(),
            expected: format!("{} elements (one per argmax)", argmax.len()),
            found: dy.shape().to_vec(),
        });
    }
    let n = dx.len();
    for (&i, &g) in argmax.iter().zip(dy.data()) {
        if i < n {
            dx.data_mut()[i] += g;
        }
    }
    Ok(dx)
}

/// Global average pooling forward: `[N, C, H, W]` → `[N, C, 1, 1]`.
pub fn global_avg_pool_forward(x: &Tensor) -> Result<Tensor> {
    check_rank("global_avg_pool input", x, 4)?;
    let (n, c, h, w) = dims4(x);
    let hw = (h * w).max(1);
    let data = x.data().chunks(hw).map(|ch| ch.iter().sum::<f64>() / hw as f64).collect();
    Tensor::from_vec(&[n, c, 1, 1], data)
}

/// Global average pooling backward for an input of shape `in_shape`.
pub fn global_avg_pool_backward(in_shape: &[usize], dy: &Tensor) -> Result<Tensor> {
    let mut dx = Tensor::zeros(in_shape);
    check_rank("global_avg_pool input", &dx, 4)?;
    let (n, c, h, w) = dims4(&dx);
    check_shape("global_avg_pool output gradient", dy, &[n, c, 1, 1])?;
    let hw = h * w;
    for (plane, &g) in dy.data().iter().enumerate() {
        dx.data_mut()[plane * hw..(plane + 1) * hw].iter_mut().for_each(|v| *v = g / hw as f64);
    }
    Ok(dx)
}

/// What batch-norm training backward needs.
#[derive(Debug, Clone, PartialEq)]
pub struct BnCache {
    /// Normalised input `(x − mean) / √(var + eps)`.
    pub xhat: Tensor,
    /// `1 / √(var + eps)` per channel.
    pub inv_std: Vec<f64>,
    /// Batch mean per channel.
    pub mean: Vec<f64>,
    /// Biased batch variance per channel.
    pub var: Vec<f64>,
}

fn bn_check(x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Result<(usize, usize, usize)> {
    check_rank("batch_norm2d input", x, 4)?;
    let (n, c, h, w) = dims4(x);
    check_shape("batch_norm2d weight", gamma, &[c])?;
    check_shape("batch_norm2d bias", beta, &[c])?;
    Ok((n, c, h * w))
}

/// Batch norm with batch statistics (training): returns the output and the cache for backward.
pub fn batch_norm2d_forward_train(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<(Tensor, BnCache)> {
    let (n, c, hw) = bn_check(x, gamma, beta)?;
    let m = (n * hw).max(1) as f64;
    let (mut mean, mut var) = (vec![0.0; c], vec![0.0; c]);
    for (plane, s) in x.data().chunks(hw.max(1)).enumerate() {
        mean[plane % c] += s.iter().sum::<f64>() / m;
    }
    for (plane, s) in x.data().chunks(hw.max(1)).enumerate() {
        let mu = mean[plane % c];
        var[plane % c] += s.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / m;
    }
    let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let mut xhat = Tensor::zeros(x.shape());
    let mut y = Tensor::zeros(x.shape());
    for (i, (&xv, (xh, yv))) in x.data().iter().zip(xhat.data_mut().iter_mut().zip(y.data_mut())).enumerate() {
        let ci = (i / hw) % c;
        *xh = (xv - mean[ci]) * inv_std[ci];
        *yv = gamma.data()[ci] * *xh + beta.data()[ci];
    }
    Ok((y, BnCache { xhat, inv_std, mean, var }))
}

/// Batch norm with given (running) statistics (inference).
pub fn batch_norm2d_forward_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let (_, c, hw) = bn_check(x, gamma, beta)?;
    check_shape("batch_norm2d running_mean", mean, &[c])?;
    check_shape("batch_norm2d running_var", var, &[c])?;
    let mut y = x.clone();
    for (i, v) in y.data_mut().iter_mut().enumerate() {
        let ci = (i / hw) % c;
        *v = gamma.data()[ci] * (*v - mean.data()[ci]) / (var.data()[ci] + eps).sqrt() + beta.data()[ci];
    }
    Ok(y)
}

/// Batch norm training backward: returns `(dx, dgamma, dbeta)`.
pub fn batch_norm2d_backward_train(cache: &BnCache, gamma: &Tensor, dy: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    check_shape("batch_norm2d output gradient", dy, cache.xhat.shape())?;
    let (n, c, h, w) = dims4(&cache.xhat);
    check_shape("batch_norm2d weight", gamma, &[c])?;
    let hw = h * w;
    let m = (n * hw).max(1) as f64;
    let (mut dgamma, mut dbeta) = (vec![0.0; c], vec![0.0; c]);
    for (i, (&g, &xh)) in dy.data().iter().zip(cache.xhat.data()).enumerate() {
        let ci = (i / hw) % c;
        dbeta[ci] += g;
        dgamma[ci] += g * xh;
    }
    let mut dx = Tensor::zeros(dy.shape());
    for (i, (v, (&g, &xh))) in dx.data_mut().iter_mut().zip(dy.data().iter().zip(cache.xhat.data())).enumerate() {
        let ci = (i / hw) % c;
        let gm = gamma.data()[ci];
        *v = gm * cache.inv_std[ci] / m * (m * g - dbeta[ci] - xh * dgamma[ci]);
    }
    Ok((dx, Tensor::from_vec(&[c], dgamma)?, Tensor::from_vec(&[c], dbeta)?))
}

/// Batch norm inference backward (statistics are constants): returns `(dx, dgamma, dbeta)`.
pub fn batch_norm2d_backward_eval(
    x: &Tensor,
    gamma: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f64,
    dy: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    check_rank("batch_norm2d input", x, 4)?;
    check_shape("batch_norm2d output gradient", dy, x.shape())?;
    let (_, c, h, w) = dims4(x);
    for (what, t) in [("weight", gamma), ("running_mean", mean), ("running_var", var)] {
        check_shape(&format!("batch_norm2d {what}"), t, &[c])?;
    }
    let hw = h * w;
    let (mut dgamma, mut dbeta) = (vec![0.0; c], vec![0.0; c]);
    let mut dx = Tensor::zeros(x.shape());
    for (i, ((v, &g), &xv)) in dx.data_mut().iter_mut().zip(dy.data()).zip(x.data()).enumerate() {
        let ci = (i / hw) % c;
        let inv = 1.0 / (var.data()[ci] + eps).sqrt();
        *v = g * gamma.data()[ci] * inv;
        dgamma[ci] += g * (xv - mean.data()[ci]) * inv;
        dbeta[ci] += g;
    }
    Ok((dx, Tensor::from_vec(&[c], dgamma)?, Tensor::from_vec(&[c], dbeta)?))
}

/// Mean softmax cross-entropy of `logits [N, K]` against class `labels`, and its gradient w.r.t. the logits.
pub fn softmax_cross_entropy(logits: &Tensor, labels: &[usize]) -> Result<(f64, Tensor)> {
    check_rank("softmax_cross_entropy logits", logits, 2)?;
    let (n, k) = (logits.shape()[0], logits.shape()[1]);
    if labels.len() != n {
        return Err(DslError::BatchShape {
            what: "softmax_cross_entropy labels".into(),
            expected: format!("{n} labels (one per logits row)"),
            found: vec![labels.len()],
        });
    }
    let mut grad = Tensor::zeros(&[n, k]);
    let mut loss = 0.0;
    for (ni, &label) in labels.iter().enumerate() {
        if label >= k {
            return Err(DslError::LabelOutOfRange { sample: ni, label, classes: k });
        }
        let row = &logits.data()[ni * k..(ni + 1) * k];
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, nan_max);
        let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
        loss += -(row[label] - max - sum.ln());
        for (j, g) in grad.data_mut()[ni * k..(ni + 1) * k].iter_mut().enumerate() {
            let p = (row[j] - max).exp() / sum;
            *g = (p - if j == label { 1.0 } else { 0.0 }) / n as f64;
        }
    }
    Ok((loss / n.max(1) as f64, grad))
}

/// Per-layer values backward needs.
#[derive(Debug, Clone, PartialEq)]
enum LayerCache {
    Input(Tensor),
    Shape(Vec<usize>),
    MaxPool { in_shape: Vec<usize>, argmax: Vec<usize> },
    BnTrain(BnCache),
    None,
}

#[derive(Debug, Clone, PartialEq)]
enum Cache {
    Layer(LayerCache),
    Seq(Vec<Cache>),
    Residual { main: Vec<Cache>, shortcut: Vec<Cache>, post: Vec<Cache> },
}

/// What a whole-model forward recorded for [`backward`].
#[derive(Debug, Clone, PartialEq)]
pub struct Tape {
    mode: Mode,
    caches: Vec<Cache>,
}

impl Tape {
    /// The mode the forward ran in.
    pub fn mode(&self) -> Mode {
        self.mode
    }
}

fn param<'a>(params: &'a Params, layer: &str, suffix: &str) -> Result<&'a Tensor> {
    params.require(&format!("{layer}.{suffix}"))
}

struct Runner<'a> {
    params: &'a Params,
    mode: Mode,
    record: bool,
    /// Running-statistic updates (name → new value) produced by training-mode batch norm.
    updates: Vec<(String, Tensor)>,
}

impl Runner<'_> {
    fn layer(&mut self, name: &str, layer: &Layer, x: Tensor) -> Result<(Tensor, LayerCache)> {
        let keep = |x: Tensor| if self.record { LayerCache::Input(x) } else { LayerCache::None };
        Ok(match layer {
            Layer::Conv2d(c) => {
                let w = param(self.params, name, "weight")?;
                let b = if c.bias { Some(param(self.params, name, "bias")?) } else { None };
                (conv2d_forward(&x, w, b, c)?, keep(x))
            }
            Layer::Linear(l) => {
                let w = param(self.params, name, "weight")?;
                let b = if l.bias { Some(param(self.params, name, "bias")?) } else { None };
                (linear_forward(&x, w, b)?, keep(x))
            }
            Layer::Relu => (relu_forward(&x), keep(x)),
            Layer::AvgPool2d(p) => (avg_pool2d_forward(&x, p)?, LayerCache::Shape(x.shape().to_vec())),
            Layer::MaxPool2d(p) => {
                let (y, argmax) = max_pool2d_forward(&x, p)?;
                (y, LayerCache::MaxPool { in_shape: x.shape().to_vec(), argmax })
            }
            Layer::GlobalAvgPool => (global_avg_pool_forward(&x)?, LayerCache::Shape(x.shape().to_vec())),
            Layer::Flatten => {
                let shape = x.shape().to_vec();
                let f: usize = shape[1..].iter().product();
                (x.reshape(&[shape[0], f])?, LayerCache::Shape(shape))
            }
            Layer::Dropout { .. } => (x, LayerCache::None),
            Layer::BatchNorm2d(bn) => self.batch_norm(name, bn, x)?,
        })
    }

    fn batch_norm(&mut self, name: &str, bn: &BatchNorm2d, x: Tensor) -> Result<(Tensor, LayerCache)> {
        let gamma = param(self.params, name, "weight")?;
        let beta = param(self.params, name, "bias")?;
        let rm = param(self.params, name, "running_mean")?;
        let rv = param(self.params, name, "running_var")?;
        match self.mode {
            Mode::Eval => {
                let y = batch_norm2d_forward_eval(&x, gamma, beta, rm, rv, bn.eps)?;
                Ok((y, if self.record { LayerCache::Input(x) } else { LayerCache::None }))
            }
            Mode::Train => {
                let (y, cache) = batch_norm2d_forward_train(&x, gamma, beta, bn.eps)?;
                let m = (x.len() / bn.channels.max(1)) as f64;
                let unbias = if m > 1.0 { m / (m - 1.0) } else { 1.0 };
                let mo = bn.momentum;
                let new_mean: Vec<f64> =
                    rm.data().iter().zip(&cache.mean).map(|(r, b)| (1.0 - mo) * r + mo * b).collect();
                let new_var: Vec<f64> =
                    rv.data().iter().zip(&cache.var).map(|(r, b)| (1.0 - mo) * r + mo * b * unbias).collect();
                let count = self.params.get(&format!("{name}.num_batches_tracked")).map_or(0.0, |t| t.data()[0]);
                self.updates.push((format!("{name}.running_mean"), Tensor::from_vec(rm.shape(), new_mean)?));
                self.updates.push((format!("{name}.running_var"), Tensor::from_vec(rv.shape(), new_var)?));
                self.updates.push((format!("{name}.num_batches_tracked"), Tensor::full(&[], count + 1.0)));
                Ok((y, if self.record { LayerCache::BnTrain(cache) } else { LayerCache::None }))
            }
        }
    }

    fn seq(&mut self, nodes: &[Node], mut x: Tensor) -> Result<(Tensor, Vec<Cache>)> {
        let mut caches = Vec::with_capacity(nodes.len());
        for node in nodes {
            let (y, cache) = match node {
                Node::Layer { name, layer } => {
                    let (y, c) = self.layer(name, layer, x).map_err(|e| in_layer(name, e))?;
                    (y, Cache::Layer(c))
                }
                Node::Sequential { children, .. } => {
                    let (y, c) = self.seq(children, x)?;
                    (y, Cache::Seq(c))
                }
                Node::Residual { main, shortcut, post, .. } => {
                    let (m, main_c) = self.seq(main, x.clone())?;
                    let (s, short_c) = self.seq(shortcut, x)?;
                    let (y, post_c) = self.seq(post, m.add(&s)?)?;
                    (y, Cache::Residual { main: main_c, shortcut: short_c, post: post_c })
                }
            };
            caches.push(cache);
            x = y;
        }
        Ok((x, caches))
    }
}

/// Prefixes a low-level shape error with the layer it happened in.
fn in_layer(name: &str, e: DslError) -> DslError {
    match e {
        DslError::BatchShape { what, expected, found } => {
            DslError::BatchShape { what: format!("layer `{name}`: {what}"), expected, found }
        }
        other => other,
    }
}

fn check_input(graph: &Graph, params: &Params, x: &Tensor) -> Result<()> {
    params.check_present(graph, "parameters")?;
    if x.shape().len() != graph.input_shape().len() + 1 || &x.shape()[1..] != graph.input_shape() {
        return Err(DslError::BatchShape {
            what: format!("{} input", graph.name()),
            expected: format!(
                "[N, {}]",
                graph.input_shape().iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
            ),
            found: x.shape().to_vec(),
        });
    }
    Ok(())
}

/// Inference: the model's output for a batch `x [N, …input]` with batch norm on running statistics.
pub fn infer(graph: &Graph, params: &Params, x: &Tensor) -> Result<Tensor> {
    check_input(graph, params, x)?;
    let mut r = Runner { params, mode: Mode::Eval, record: false, updates: Vec::new() };
    Ok(r.seq(graph.nodes(), x.clone())?.0)
}

/// Forward with a tape for [`backward`]; in [`Mode::Train`] batch norm uses batch statistics and its running
/// statistics in `params` are updated (momentum update, unbiased variance, counter + 1) like PyTorch.
pub fn forward(graph: &Graph, params: &mut Params, x: &Tensor, mode: Mode) -> Result<(Tensor, Tape)> {
    check_input(graph, params, x)?;
    let mut r = Runner { params, mode, record: true, updates: Vec::new() };
    let (y, caches) = r.seq(graph.nodes(), x.clone())?;
    let updates = std::mem::take(&mut r.updates);
    for (name, t) in updates {
        params.insert(&name, t);
    }
    Ok((y, Tape { mode, caches }))
}

struct Back<'a> {
    params: &'a Params,
    grads: Params,
}

impl Back<'_> {
    fn add_grad(&mut self, name: String, g: Tensor) -> Result<()> {
        match self.grads.get_mut(&name) {
            Some(acc) => *acc = acc.add(&g)?,
            None => {
                self.grads.insert(&name, g);
            }
        }
        Ok(())
    }

    fn missing_cache(name: &str) -> DslError {
        DslError::InvalidLayer { layer: name.to_string(), message: "the tape does not match the graph".into() }
    }

    fn layer(&mut self, name: &str, layer: &Layer, cache: &LayerCache, dy: Tensor) -> Result<Tensor> {
        match (layer, cache) {
            (Layer::Conv2d(c), LayerCache::Input(x)) => {
                let w = param(self.params, name, "weight")?;
                let (dx, dw, db) = conv2d_backward(x, w, &dy, c)?;
                self.add_grad(format!("{name}.weight"), dw)?;
                if let Some(db) = db {
                    self.add_grad(format!("{name}.bias"), db)?;
                }
                Ok(dx)
            }
            (Layer::Linear(l), LayerCache::Input(x)) => {
                let w = param(self.params, name, "weight")?;
                let (dx, dw, db) = linear_backward(x, w, &dy)?;
                self.add_grad(format!("{name}.weight"), dw)?;
                if l.bias {
                    self.add_grad(format!("{name}.bias"), db)?;
                }
                Ok(dx)
            }
            (Layer::Relu, LayerCache::Input(x)) => relu_backward(x, &dy),
            (Layer::AvgPool2d(p), LayerCache::Shape(s)) => avg_pool2d_backward(s, &dy, p),
            (Layer::MaxPool2d(_), LayerCache::MaxPool { in_shape, argmax }) => {
                max_pool2d_backward(in_shape, argmax, &dy)
            }
            (Layer::GlobalAvgPool, LayerCache::Shape(s)) => global_avg_pool_backward(s, &dy),
            (Layer::Flatten, LayerCache::Shape(s)) => dy.reshape(s),
            (Layer::Dropout { .. }, LayerCache::None) => Ok(dy),
            (Layer::BatchNorm2d(_), LayerCache::BnTrain(cache)) => {
                let gamma = param(self.params, name, "weight")?;
                let (dx, dg, db) = batch_norm2d_backward_train(cache, gamma, &dy)?;
                self.add_grad(format!("{name}.weight"), dg)?;
                self.add_grad(format!("{name}.bias"), db)?;
                Ok(dx)
            }
            (Layer::BatchNorm2d(bn), LayerCache::Input(x)) => {
                let gamma = param(self.params, name, "weight")?;
                let rm = param(self.params, name, "running_mean")?;
                let rv = param(self.params, name, "running_var")?;
                let (dx, dg, db) = batch_norm2d_backward_eval(x, gamma, rm, rv, bn.eps, &dy)?;
                self.add_grad(format!("{name}.weight"), dg)?;
                self.add_grad(format!("{name}.bias"), db)?;
                Ok(dx)
            }
            _ => Err(Self::missing_cache(name)),
        }
    }

    fn seq(&mut self, nodes: &[Node], caches: &[Cache], mut dy: Tensor) -> Result<Tensor> {
        if nodes.len() != caches.len() {
            return Err(Self::missing_cache(nodes.first().map_or("", |n| n.name())));
        }
        for (node, cache) in nodes.iter().zip(caches).rev() {
            dy = match (node, cache) {
                (Node::Layer { name, layer }, Cache::Layer(c)) => {
                    self.layer(name, layer, c, dy).map_err(|e| in_layer(name, e))?
                }
                (Node::Sequential { children, .. }, Cache::Seq(c)) => self.seq(children, c, dy)?,
                (Node::Residual { main, shortcut, post, .. }, Cache::Residual { main: mc, shortcut: sc, post: pc }) => {
                    let dsum = self.seq(post, pc, dy)?;
                    let dm = self.seq(main, mc, dsum.clone())?;
                    let ds = self.seq(shortcut, sc, dsum)?;
                    dm.add(&ds)?
                }
                _ => return Err(Self::missing_cache(node.name())),
            };
        }
        Ok(dy)
    }
}

/// Backward through a recorded forward: the gradient w.r.t. the input and the gradients of every trainable
/// parameter under its state_dict name.
pub fn backward(graph: &Graph, params: &Params, tape: &Tape, dy: &Tensor) -> Result<(Tensor, Params)> {
    let mut b = Back { params, grads: Params::new() };
    let dx = b.seq(graph.nodes(), &tape.caches, dy.clone())?;
    Ok((dx, b.grads))
}

/// Stochastic gradient descent with optional momentum and weight decay, as `torch.optim.SGD`
/// (`g += wd·p; v = μ·v + g; p −= lr·v`, with `v = g` on the first step).
#[derive(Debug, Clone, PartialEq)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f64,
    /// Momentum μ (0 disables it).
    pub momentum: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    velocity: BTreeMap<String, Vec<f64>>,
}

impl Sgd {
    /// Plain SGD with learning rate `lr`.
    pub fn new(lr: f64) -> Self {
        Sgd { lr, momentum: 0.0, weight_decay: 0.0, velocity: BTreeMap::new() }
    }

    /// Sets the momentum.
    pub fn with_momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }

    /// Sets the weight decay.
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// Applies one step to every parameter that has a gradient in `grads`.
    pub fn step(&mut self, params: &mut Params, grads: &Params) -> Result<()> {
        for (name, g) in grads.iter() {
            let p = params.get_mut(name).ok_or_else(|| DslError::MissingTensor {
                name: name.clone(),
                expected: g.shape().to_vec(),
                source_name: "SGD parameters".into(),
            })?;
            if p.shape() != g.shape() {
                return Err(DslError::TensorShape {
                    name: name.clone(),
                    expected: p.shape().to_vec(),
                    found: g.shape().to_vec(),
                    source_name: "SGD gradients".into(),
                });
            }
            let mut d: Vec<f64> = g.data().iter().zip(p.data()).map(|(g, p)| g + self.weight_decay * p).collect();
            if self.momentum != 0.0 {
                match self.velocity.get_mut(name) {
                    Some(v) => {
                        v.iter_mut().zip(&d).for_each(|(v, g)| *v = self.momentum * *v + g);
                        d.clone_from(v);
                    }
                    None => {
                        self.velocity.insert(name.clone(), d.clone());
                    }
                }
            }
            p.data_mut().iter_mut().zip(&d).for_each(|(p, d)| *p -= self.lr * d);
        }
        Ok(())
    }
}
