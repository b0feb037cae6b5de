//! Maximum and argmax over an axis, and 2-D max pooling with its backward pass.
//!
//! **Tournament.** The `k` candidates of every independent instance sit as rows of a `[k, M]` share (a gather moves
//! the axis to the front; max pooling gathers its windows there directly). A level pairs rows `2j` and `2j + 1`
//! (stride-2 gathers; an odd last row passes through) and computes, for all pairs of all instances in ONE batched
//! call, `max(a, b) = b + ReLU(a − b)` ([`Party::relu_with_mask`], 7 rounds). `⌈log2 k⌉` levels; everything but
//! the ReLU is local. The protocol is exact in the ring (no truncation) whenever `|a − b| < 2^63`, e.g. for inputs
//! in `[−2^62, 2^62)`. Ties go to the lower index (DReLU(0) = 1), so the winner is the first maximum, as in
//! PyTorch and NumPy.
//!
//! **Argmax** as a one-hot share in ring integers (`0`/`1`, not fixed-point scaled, so multiplying it by a
//! fixed-point share is [`Party::mul_ring`], exact). Each candidate carries the one-hot of its group of leaves,
//! `[cands, g, M]` with `g = 2^level` (the last group zero-padded). A level computes the selection bit
//! `β = DReLU(a − b)` (6 rounds) and then ONE [`Party::mul_bit`] (3 rounds) over the concatenation of the value
//! differences and the pairs' one-hots: `max = b + β·(a − b)`, the merged one-hot `[β·o_a ‖ ¬β·o_b]` (a plain
//! reshape of the product). The bits are broadcast to the one-hot rows by gathers on element-major words
//! (bit-plane transposes around an affine gather). This is 9 rounds per level, not 7 + 3: DReLU plus one
//! batched bit injection instead of ReLU followed by a second injection for the one-hots.
//!
//! **Max pooling** `[N, C, H, W]` → `[N, C, OH, OW]`: an im2col-like gather to windows
//! `[kh·kw, N·C·OH·OW]`, then the tournament over the window axis. Padding must never win: padded positions read
//! zero in the gather and get the public value [`MAX_POOL_PAD`] `= −2^62` added (on piece `x_0`), which loses to
//! every input in `(−2^62, 2^62)` (reals below `2^42` in magnitude at t = 20); padding is at most half the window
//! (PyTorch's rule), so every window holds an input. **Backward**: the upstream gradient `[N, C, OH, OW]` is
//! broadcast over the window axis, multiplied by the forward's one-hot ([`Party::mul_ring`]: exact, 1 round), and
//! scattered back by a transposed gather: with `h + p = s·a + r`, input row `h` collects window rows
//! `i = r + s·u` of outputs `oh = a − u` (`u < ⌈kh/s⌉`), a gather with a reduce over `u`, then a crop.
//!
//! **Role alignment.** Before each sub-protocol the lock-step counter is advanced to a multiple of 3 (skipped steps
//! are unused PRF nonces), so party `i` plays role `i` in every level and the per-party bytes are declarable.
//!
//! **Cost** (declared in [`cost`](super::cost)): max [`cost::max_rounds`](super::cost::max_rounds) `= 10·⌈log2 k⌉`
//! rounds and [`cost::max_bytes`](super::cost::max_bytes); with argmax
//! [`cost::argmax_rounds`](super::cost::argmax_rounds) `= 11·⌈log2 k⌉` and
//! [`cost::argmax_bytes`](super::cost::argmax_bytes); pooling backward
//! [`cost::MAX_POOL2D_BACKWARD`](super::cost::MAX_POOL2D_BACKWARD) per window element.

use super::base::{buffers, single};
use super::binary::BinShare;
use super::conv::Conv2dParams;
use super::sign::SignBits;
use crate::buffer::Buffer;
use crate::party::Party;
use crate::share::Share;
use crate::{Error, Result};
use cryptgpu_codegen::{conv_out, Affine, BitKernel, BitOp, GatherKernel, MapBuilder};

/// The public value added to padded window positions of max pooling: `−2^62` as a ring element.
pub const MAX_POOL_PAD: u64 = (-(1i64 << 62)) as u64;

/// What the backward pass of max pooling needs from the forward pass.
#[derive(Debug, Clone)]
pub struct MaxPoolArgmax {
    /// One-hot of the winning window position, in ring integers (0 or 1): `[kh·kw, N·C·OH·OW]`.
    pub onehot: Share,
    /// Shape of the forward input `[N, C, H, W]`.
    pub input: [usize; 4],
    /// Window `[kh, kw]`.
    pub window: [usize; 2],
    /// Stride and padding.
    pub params: Conv2dParams,
}

/// Layout of a pooling: input, window, output.
struct PoolGeometry {
    input: [usize; 4],
    window: [usize; 2],
    params: Conv2dParams,
    out: [usize; 2],
}

impl PoolGeometry {
    fn new(op: &str, shape: &[usize], window: [usize; 2], params: Conv2dParams) -> Result<PoolGeometry> {
        let &[n, c, h, w] = shape else {
            return Err(Error::Shape { op: op.into(), expected: "x [N, C, H, W]".into(), found: format!("{shape:?}") });
        };
        if 2 * params.padding > window[0] || 2 * params.padding > window[1] {
            return Err(Error::Invalid(format!(
                "{op}: padding {} is more than half the {}×{} window",
                params.padding, window[0], window[1]
            )));
        }
        let (oh, ow) = conv_out(op, [h, w], window, params.stride, params.padding)?;
        crate::tensor::checked_product(&format!("{op} windows"), &[window[0], window[1], n, c, oh, ow])?;
        Ok(PoolGeometry { input: [n, c, h, w], window, params, out: [oh, ow] })
    }
    fn kk(&self) -> usize {
        self.window[0] * self.window[1]
    }
    /// Windows: `N·C·OH·OW`.
    fn windows(&self) -> usize {
        self.input[0] * self.input[1] * self.out[0] * self.out[1]
    }
    /// Input `[N, C, H, W]` → `[kh, kw, N, C, OH, OW]` (zero where padded).
    fn to_windows(&self, name: &str) -> GatherKernel {
        let [n, c, _, _] = self.input;
        let ([kh, kw], [oh, ow]) = (self.window, self.out);
        let (s, p) = (self.params.stride, self.params.padding);
        GatherKernel {
            name: name.into(),
            in_shape: self.input.to_vec(),
            out_shape: vec![kh, kw, n, c, oh, ow],
            reduce_shape: vec![],
            coords: vec![Affine::axis(2), Affine::axis(3), Affine::window(4, s, 0, p), Affine::window(5, s, 1, p)],
        }
    }
}

impl Party {
    /// The maximum over `axis` (the axis is removed from the shape): `10·⌈log2 k⌉` rounds for `k` elements.
    pub fn max_axis(&mut self, x: &Share, axis: usize) -> Result<Share> {
        let (pre, k, post, out_shape) = axis_split("max_axis", x.shape(), axis)?;
        self.call(|p| {
            let rows = p.axis_to_front(x, pre, k, post)?;
            let (best, _) = p.tournament(rows, k, pre * post, false)?;
            best.viewed(&out_shape, "pre·post elements")
        })
    }

    /// The maximum over `axis` and the one-hot of its first position, in `x`'s shape with ring values 0/1 (multiply
    /// it with [`Party::mul_ring`]): `11·⌈log2 k⌉` rounds.
    pub fn argmax_axis(&mut self, x: &Share, axis: usize) -> Result<(Share, Share)> {
        let (pre, k, post, out_shape) = axis_split("argmax_axis", x.shape(), axis)?;
        self.call(|p| {
            let rows = p.axis_to_front(x, pre, k, post)?;
            let (best, onehot) = p.tournament(rows, k, pre * post, true)?;
            let onehot = onehot.ok_or_else(|| crate::Error::Internal("max: the one-hot was not tracked".into()))?;
            let onehot = if pre == 1 {
                onehot.viewed(x.shape(), "same size")?
            } else {
                let g = GatherKernel::permute("max_axis_back", &[k, pre, post], &[1, 0, 2])?;
                p.gather_share(&g, &onehot, x.shape())?
            };
            Ok((best.viewed(&out_shape, "pre·post elements")?, onehot))
        })
    }

    /// Max pooling over `kh × kw` windows of `x` `[N, C, H, W]` (padding filled with [`MAX_POOL_PAD`]):
    /// `10·⌈log2 (kh·kw)⌉` rounds.
    pub fn max_pool2d(&mut self, x: &Share, window: [usize; 2], params: Conv2dParams) -> Result<Share> {
        let geo = PoolGeometry::new("max_pool2d", x.shape(), window, params)?;
        self.call(|p| {
            let rows = p.pool_windows(x, &geo)?;
            let (best, _) = p.tournament(rows, geo.kk(), geo.windows(), false)?;
            let [n, c, _, _] = geo.input;
            best.viewed(&[n, c, geo.out[0], geo.out[1]], "N·C·OH·OW")
        })
    }

    /// [`Party::max_pool2d`] and the argmax record its backward pass needs: `11·⌈log2 (kh·kw)⌉` rounds.
    pub fn max_pool2d_with_argmax(
        &mut self,
        x: &Share,
        window: [usize; 2],
        params: Conv2dParams,
    ) -> Result<(Share, MaxPoolArgmax)> {
        let geo = PoolGeometry::new("max_pool2d", x.shape(), window, params)?;
        self.call(|p| {
            let rows = p.pool_windows(x, &geo)?;
            let (best, onehot) = p.tournament(rows, geo.kk(), geo.windows(), true)?;
            let [n, c, _, _] = geo.input;
            let y = best.viewed(&[n, c, geo.out[0], geo.out[1]], "N·C·OH·OW")?;
            let arg = MaxPoolArgmax {
                onehot: onehot.ok_or_else(|| crate::Error::Internal("max: the one-hot was not tracked".into()))?,
                input: geo.input,
                window,
                params,
            };
            Ok((y, arg))
        })
    }

    /// The gradient with respect to the pooling input, `[N, C, H, W]`, from the upstream gradient `grad`
    /// `[N, C, OH, OW]`: routed to each window's winner (one ring product, 1 round, exact), summed where windows
    /// overlap.
    pub fn max_pool2d_backward(&mut self, grad: &Share, arg: &MaxPoolArgmax) -> Result<Share> {
        let geo = PoolGeometry::new("max_pool2d_backward", &arg.input, arg.window, arg.params)?;
        let [n, c, h, w] = geo.input;
        let ([kh, kw], [oh, ow]) = (geo.window, geo.out);
        let (s, pad) = (geo.params.stride, geo.params.padding);
        if grad.shape() != [n, c, oh, ow] || arg.onehot.shape() != [geo.kk(), geo.windows()] {
            return Err(Error::Shape {
                op: "max_pool2d_backward".into(),
                expected: format!("grad [{n}, {c}, {oh}, {ow}], one-hot [{}, {}]", geo.kk(), geo.windows()),
                found: format!("grad {:?}, one-hot {:?}", grad.shape(), arg.onehot.shape()),
            });
        }
        let m = geo.windows();
        let broadcast = GatherKernel {
            name: "max_pool_grad_broadcast".into(),
            in_shape: vec![m],
            out_shape: vec![geo.kk(), m],
            reduce_shape: vec![],
            coords: vec![Affine::axis(1)],
        };
        let [col2im, crop] = GatherKernel::col2im("max_pool_grad", [n, c, h, w], [kh, kw], s, pad, false)?;
        self.call(|p| {
            let gb = p.gather_share(&broadcast, grad, &[geo.kk(), m])?;
            let routed = p.mul_ring(&arg.onehot, &gb)?;
            let scatter = |p: &Party, piece: &Buffer| -> Result<Buffer> { p.gather(&crop, &p.gather(&col2im, piece)?) };
            Ok(Share::from_pieces(&[n, c, h, w], scatter(p, routed.mine())?, scatter(p, routed.next())?))
        })
    }

    /// The windows of a pooling as `[kh·kw, N·C·OH·OW]`, padded positions set to [`MAX_POOL_PAD`].
    fn pool_windows(&mut self, x: &Share, geo: &PoolGeometry) -> Result<Share> {
        let g = geo.to_windows("max_pool_windows");
        let shape = [geo.kk(), geo.windows()];
        let rows = self.gather_share(&g, x, &shape)?;
        if geo.params.padding == 0 {
            return Ok(rows);
        }
        // Public: 1 inside the input, 0 on padding (gathered like the windows), then (inside − 1)·2^62.
        let mut k = MapBuilder::new("max_pool_ones");
        let one = k.constant(1);
        k.output(one);
        let ones = single(self.map(&k.build(), &[], &[], &[], x.len())?)?;
        let inside = self.gather(&g, &ones)?;
        let mut k = MapBuilder::new("max_pool_pad");
        let (i, one) = (k.input(0), k.constant(1));
        let outside = k.sub(i, one);
        let pad = k.shl(outside, 62);
        k.output(pad);
        let pad = single(self.map(&k.build(), &[&inside], &[], &[], inside.len())?)?;
        self.add_public_words(&rows, &pad)
    }

    /// `x` viewed as `[pre, k, post]`, moved to `[k, pre·post]` (a gather unless `pre = 1`).
    fn axis_to_front(&mut self, x: &Share, pre: usize, k: usize, post: usize) -> Result<Share> {
        if pre == 1 {
            return x.clone().viewed(&[k, post], "same size");
        }
        let g = GatherKernel::permute("max_axis_to_front", &[pre, k, post], &[1, 0, 2])?;
        self.gather_share(&g, x, &[k, pre * post])
    }

    /// The tournament over the rows of `v` `[k, m]`: the maxima `[m]` and, when `track`, the one-hot `[k, m]`.
    fn tournament(&mut self, v: Share, k: usize, m: usize, track: bool) -> Result<(Share, Option<Share>)> {
        let mut cur = v;
        let (mut cands, mut g) = (k, 1usize);
        // One-hot of each candidate over its group of leaves: [cands, g, m].
        let mut onehot = if track { Some(self.ring_ones(&[k, m])?) } else { None };
        while cands > 1 {
            let pairs = cands / 2;
            let a = self.take_rows(&cur, [cands, m], 0, 2, pairs)?;
            let b = self.take_rows(&cur, [cands, m], 1, 2, pairs)?;
            let d = self.sub(&a, &b)?;
            let best = match onehot.take() {
                None => {
                    align_roles(self);
                    let (r, _) = self.relu_with_mask(&d, SignBits::default())?;
                    self.add(&b, &r)?
                }
                Some(oh) => {
                    align_roles(self);
                    let beta = self.drelu(&d)?;
                    let bits = self.selection_bits(&beta, pairs, g, m)?;
                    // The paired candidates' one-hots are the first 2·pairs·g·m elements of [cands, g, m].
                    let paired = self.take_rows(&oh, [cands * g, m], 0, 1, 2 * pairs * g)?;
                    let operands = Share::concat(&[&d, &paired], &[pairs * m + 2 * pairs * g * m])?;
                    align_roles(self);
                    let prod = self.mul_bit(&operands, &bits)?;
                    let r = self.take_rows(&prod, [pairs + 2 * pairs * g, m], 0, 1, pairs)?;
                    let merged = self.take_rows(&prod, [pairs + 2 * pairs * g, m], pairs, 1, 2 * pairs * g)?;
                    let next_oh = if cands % 2 == 1 {
                        // The odd candidate's group, zero-padded to 2g rows.
                        let last = self.take_rows(&oh, [cands * g, m], (cands - 1) * g, 1, 2 * g)?;
                        Share::concat(&[&merged, &last], &[(pairs + 1) * 2 * g, m])?
                    } else {
                        merged
                    };
                    onehot = Some(next_oh);
                    self.add(&b, &r)?
                }
            };
            cur = if cands % 2 == 1 {
                let last = self.take_rows(&cur, [cands, m], cands - 1, 1, 1)?;
                Share::concat(&[&best, &last], &[pairs + 1, m])?
            } else {
                best
            };
            cands = pairs + cands % 2;
            g *= 2;
        }
        let best = cur.viewed(&[m], "one row")?;
        let onehot = match onehot {
            Some(oh) => Some(self.take_rows(&oh, [g, m], 0, 1, k)?),
            None => None,
        };
        Ok((best, onehot))
    }

    /// Rows `offset + stride·j` (`j < out_rows`) of `v` viewed as `[rows, m]`, as `[out_rows, m]`; rows past the
    /// input read zero (the padding of the last one-hot group). A gather on both pieces.
    fn take_rows(
        &mut self,
        v: &Share,
        [rows, m]: [usize; 2],
        offset: usize,
        stride: usize,
        out_rows: usize,
    ) -> Result<Share> {
        let k = GatherKernel {
            name: "max_take_rows".into(),
            in_shape: vec![rows, m],
            out_shape: vec![out_rows, m],
            reduce_shape: vec![],
            coords: vec![Affine { offset: offset as i64, terms: vec![(0, stride as i64)] }, Affine::axis(1)],
        };
        self.gather_share(&k, v, &[out_rows, m])
    }

    /// The selection bits of one level as one plane over `[values (pairs·m) ‖ one-hot rows (pairs, 2, g, m)]`: `β`
    /// for the values, `β` for side `a`'s rows and `¬β` for side `b`'s, broadcast over the group.
    fn selection_bits(&mut self, beta: &BinShare, pairs: usize, g: usize, m: usize) -> Result<BinShare> {
        let n = pairs * m;
        let total = n + 2 * pairs * g * m;
        let not_beta = self.not(beta)?;
        let from = BitKernel { name: "max_bits_to_words".into(), op: BitOp::FromPlanes, n, planes: 1 };
        let to = BitKernel { name: "max_bits_to_planes".into(), op: BitOp::ToPlanes, n: total, planes: 1 };
        // [2, pairs, m] (β; ¬β) → [pairs, 2, g, m].
        let spread = GatherKernel {
            name: "max_bits_spread".into(),
            in_shape: vec![2, pairs, m],
            out_shape: vec![pairs, 2, g, m],
            reduce_shape: vec![],
            coords: vec![Affine::axis(1), Affine::axis(0), Affine::axis(3)],
        };
        let piece = |p: &Party, b: &Buffer, nb: &Buffer| -> Result<Buffer> {
            let (bw, nbw) = (p.bits(&from, b)?, p.bits(&from, nb)?);
            let both = p.assemble(&[(&bw, 0..bw.len()), (&nbw, 0..nbw.len())])?;
            let spread = p.gather(&spread, &both)?;
            let words = p.assemble(&[(&bw, 0..bw.len()), (&spread, 0..spread.len())])?;
            p.bits(&to, &words)
        };
        let mine = piece(self, beta.mine(), not_beta.mine())?;
        let next = piece(self, beta.next(), not_beta.next())?;
        Ok(BinShare::from_pieces(total, 1, mine, next))
    }

    /// The public constant 1 (ring integer) as a share: piece `x_0 = 1`, the others 0.
    fn ring_ones(&mut self, shape: &[usize]) -> Result<Share> {
        let n = crate::tensor::numel(shape)?;
        let mut k = MapBuilder::new("max_onehot_init");
        let (one, zero) = (k.constant(1), k.constant(0));
        match self.id() {
            0 => k.output(one).output(zero),
            2 => k.output(zero).output(one),
            _ => k.output(zero).output(zero),
        };
        let [mine, next] = buffers(self.map(&k.build(), &[], &[], &[], n)?)?;
        Ok(Share::from_pieces(shape, mine, next))
    }
}

/// Advance the lock-step counter so that the next step is a multiple of 3: party `i` then plays role `i` of the next
/// sub-protocol (the skipped steps are PRF nonces nobody uses).
fn align_roles(p: &mut Party) {
    while p.next_step() % 3 != 2 {}
}

/// `(pre, k, post, shape without the axis)` of `shape` split at `axis`.
fn axis_split(op: &str, shape: &[usize], axis: usize) -> Result<(usize, usize, usize, Vec<usize>)> {
    if axis >= shape.len() || shape.iter().product::<usize>() == 0 {
        return Err(Error::Invalid(format!("{op}: axis {axis} of a non-empty tensor of shape {shape:?}")));
    }
    let pre = shape[..axis].iter().product();
    let post = shape[axis + 1..].iter().product();
    let mut out: Vec<usize> = shape[..axis].iter().chain(&shape[axis + 1..]).copied().collect();
    if out.is_empty() {
        out.push(1);
    }
    Ok((pre, shape[axis], post, out))
}
