//! Affine gathers: every output element reads input elements whose coordinates are affine in its own.
//!
//! The output has axes `out_shape`; optional `reduce_shape` axes are summed over (a pooling window). Input axis
//! `d` is read at coordinate `coords[d].offset + Σ coeff · axis`, where axes are numbered over `out_shape`
//! followed by `reduce_shape`. A coordinate outside the input reads zero (zero padding), so im2col with padding,
//! pooling windows, transposes and slices are all one kernel family, linear in the input and so valid on shares.

use crate::{Error, Result};

/// An affine function of the output (and window) coordinates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Affine {
    /// Constant term.
    pub offset: i64,
    /// `(axis, coefficient)` pairs.
    pub terms: Vec<(usize, i64)>,
}

impl Affine {
    /// The coordinate equal to one axis.
    pub fn axis(axis: usize) -> Self {
        Affine { offset: 0, terms: vec![(axis, 1)] }
    }
    /// `stride · a + b − pad`: the usual convolution/pooling input coordinate.
    pub fn window(out_axis: usize, stride: usize, win_axis: usize, pad: usize) -> Self {
        Affine { offset: -(pad as i64), terms: vec![(out_axis, stride as i64), (win_axis, 1)] }
    }
}

/// `out[o] = Σ_{w ∈ window} in[coords(o, w)]` (zero where coords fall outside the input).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GatherKernel {
    /// Name (a C identifier).
    pub name: String,
    /// Shape of the input buffer (row-major).
    pub in_shape: Vec<usize>,
    /// Shape of the output buffer (row-major).
    pub out_shape: Vec<usize>,
    /// Window axes summed over (empty for a plain gather).
    pub reduce_shape: Vec<usize>,
    /// One affine coordinate per input axis.
    pub coords: Vec<Affine>,
}

impl GatherKernel {
    /// im2col for a batch `[n, c, h, w]` and a `kh × kw` window: output `[c, kh, kw, n, oh, ow]`, i.e. the
    /// `(c·kh·kw) × (n·oh·ow)` right-hand matrix of a convolution as a GEMM.
    #[allow(clippy::too_many_arguments)]
    pub fn im2col(
        name: &str,
        [n, c, h, w]: [usize; 4],
        [kh, kw]: [usize; 2],
        stride: usize,
        pad: usize,
    ) -> Result<Self> {
        let (oh, ow) = conv_out(name, [h, w], [kh, kw], stride, pad)?;
        // output axes: 0 c, 1 kh, 2 kw, 3 n, 4 oh, 5 ow
        Ok(GatherKernel {
            name: name.into(),
            in_shape: vec![n, c, h, w],
            out_shape: vec![c, kh, kw, n, oh, ow],
            reduce_shape: vec![],
            coords: vec![
                Affine::axis(3),
                Affine::axis(0),
                Affine::window(4, stride, 1, pad),
                Affine::window(5, stride, 2, pad),
            ],
        })
    }

    /// The transposed im2col of a batch `[n, c, h, w]`: `[n, oh, ow, c, kh, kw]`, i.e. the `[N·OH·OW, C·kh·kw]`
    /// matrix whose product with `dY` `[Co, N·OH·OW]` is a convolution's weight gradient.
    pub fn im2col_transposed(
        name: &str,
        [n, c, h, w]: [usize; 4],
        [kh, kw]: [usize; 2],
        stride: usize,
        pad: usize,
    ) -> Result<Self> {
        let (oh, ow) = conv_out(name, [h, w], [kh, kw], stride, pad)?;
        // output axes: 0 n, 1 oh, 2 ow, 3 c, 4 kh, 5 kw
        Ok(GatherKernel {
            name: name.into(),
            in_shape: vec![n, c, h, w],
            out_shape: vec![n, oh, ow, c, kh, kw],
            reduce_shape: vec![],
            coords: vec![
                Affine::axis(0),
                Affine::axis(3),
                Affine::window(1, stride, 4, pad),
                Affine::window(2, stride, 5, pad),
            ],
        })
    }

    /// Sum over `kh × kw` windows of a batch `[n, c, h, w]` (sum pooling); output `[n, c, oh, ow]`.
    pub fn sum_pool(
        name: &str,
        [n, c, h, w]: [usize; 4],
        [kh, kw]: [usize; 2],
        stride: usize,
        pad: usize,
    ) -> Result<Self> {
        let (oh, ow) = conv_out(name, [h, w], [kh, kw], stride, pad)?;
        // axes: 0 n, 1 c, 2 oh, 3 ow | 4 kh, 5 kw
        Ok(GatherKernel {
            name: name.into(),
            in_shape: vec![n, c, h, w],
            out_shape: vec![n, c, oh, ow],
            reduce_shape: vec![kh, kw],
            coords: vec![
                Affine::axis(0),
                Affine::axis(1),
                Affine::window(2, stride, 4, pad),
                Affine::window(3, stride, 5, pad),
            ],
        })
    }

    /// col2im, the transposed gather of im2col: scatter window columns back onto the input grid of a batch
    /// `[n, c, h, w]` (every input element the sum of the window entries that read it). Columns are laid out
    /// `[c, kh, kw, n, oh, ow]` (`conv_layout`, as [`GatherKernel::im2col`] makes them) or `[kh, kw, n, c, oh, ow]`
    /// (pooling windows). Two kernels: the scatter onto the padded grid `[n, c, ⌈(h+p)/s⌉·s, ⌈(w+p)/s⌉·s]` (each
    /// padded row `h + p = s·a + r` sums window row `i = r + s·u` of output row `a − u`), then the crop to
    /// `[n, c, h, w]`.
    pub fn col2im(
        name: &str,
        [n, c, h, w]: [usize; 4],
        [kh, kw]: [usize; 2],
        stride: usize,
        pad: usize,
        conv_layout: bool,
    ) -> Result<[Self; 2]> {
        let (oh, ow) = conv_out(name, [h, w], [kh, kw], stride, pad)?;
        let s = stride;
        let (ah, aw) = ((h + pad).div_ceil(s), (w + pad).div_ceil(s));
        // Output axes: 0 n, 1 c, 2 a_h, 3 r_h, 4 a_w, 5 r_w | reduce 6 u_h, 7 u_w.
        let si = s as i64;
        let ci = Affine { offset: 0, terms: vec![(3, 1), (6, si)] };
        let cj = Affine { offset: 0, terms: vec![(5, 1), (7, si)] };
        let coh = Affine { offset: 0, terms: vec![(2, 1), (6, -1)] };
        let cow = Affine { offset: 0, terms: vec![(4, 1), (7, -1)] };
        let (in_shape, coords) = if conv_layout {
            (vec![c, kh, kw, n, oh, ow], vec![Affine::axis(1), ci, cj, Affine::axis(0), coh, cow])
        } else {
            (vec![kh, kw, n, c, oh, ow], vec![ci, cj, Affine::axis(0), Affine::axis(1), coh, cow])
        };
        let scatter = GatherKernel {
            name: format!("{name}_scatter"),
            in_shape,
            out_shape: vec![n, c, ah, s, aw, s],
            reduce_shape: vec![kh.div_ceil(s), kw.div_ceil(s)],
            coords,
        };
        let crop = GatherKernel {
            name: format!("{name}_crop"),
            in_shape: vec![n, c, ah * s, aw * s],
            out_shape: vec![n, c, h, w],
            reduce_shape: vec![],
            coords: vec![
                Affine::axis(0),
                Affine::axis(1),
                Affine { offset: pad as i64, terms: vec![(2, 1)] },
                Affine { offset: pad as i64, terms: vec![(3, 1)] },
            ],
        };
        Ok([scatter, crop])
    }

    /// Permute the axes of a tensor: output axis `a` is input axis `perm[a]`.
    pub fn permute(name: &str, in_shape: &[usize], perm: &[usize]) -> Result<Self> {
        let mut seen = vec![false; in_shape.len()];
        if perm.len() != in_shape.len()
            || perm.iter().any(|&p| p >= in_shape.len() || std::mem::replace(&mut seen[p], true))
        {
            return Err(Error::Invalid {
                kernel: name.into(),
                reason: format!("{perm:?} is not a permutation of {} axes", in_shape.len()),
            });
        }
        let mut coords = vec![Affine::axis(0); in_shape.len()];
        for (out_axis, &in_axis) in perm.iter().enumerate() {
            coords[in_axis] = Affine::axis(out_axis);
        }
        Ok(GatherKernel {
            name: name.into(),
            in_shape: in_shape.to_vec(),
            out_shape: perm.iter().map(|&p| in_shape[p]).collect(),
            reduce_shape: vec![],
            coords,
        })
    }

    /// Elements of the input (`usize::MAX` when that overflows; [`GatherKernel::validate`] refuses such shapes).
    pub fn in_len(&self) -> usize {
        crate::checked_numel(&self.in_shape).unwrap_or(usize::MAX)
    }
    /// Elements of the output (`usize::MAX` when that overflows; [`GatherKernel::validate`] refuses such shapes).
    pub fn out_len(&self) -> usize {
        crate::checked_numel(&self.out_shape).unwrap_or(usize::MAX)
    }

    /// Check axis numbers, ranks and that every element count (input, output, output × window) fits `usize`.
    pub fn validate(&self) -> Result<()> {
        let axes = self.out_shape.len() + self.reduce_shape.len();
        let bad = |reason: String| Err(Error::Invalid { kernel: self.name.clone(), reason });
        let all = [&self.out_shape[..], &self.reduce_shape[..]].concat();
        for (what, shape) in [("input", &self.in_shape), ("output", &self.out_shape), ("output × window", &all)] {
            if crate::checked_numel(shape).is_none() {
                return bad(format!("the {what} element count of shape {shape:?} overflows usize"));
            }
        }
        if self.coords.len() != self.in_shape.len() {
            return bad(format!("{} coordinates for a rank-{} input", self.coords.len(), self.in_shape.len()));
        }
        if self.out_shape.is_empty() {
            return bad("the output needs at least one axis".into());
        }
        for c in &self.coords {
            if let Some(&(a, _)) = c.terms.iter().find(|(a, _)| *a >= axes) {
                return bad(format!("coordinate uses axis {a} of {axes}"));
            }
        }
        Ok(())
    }
}

/// Output spatial size of a convolution or pooling window, or an error naming the kernel.
pub fn conv_out(
    name: &str,
    [h, w]: [usize; 2],
    [kh, kw]: [usize; 2],
    stride: usize,
    pad: usize,
) -> Result<(usize, usize)> {
    let padded = |x: usize| pad.checked_mul(2).and_then(|p2| x.checked_add(p2));
    let (Some(ph), Some(pw)) = (padded(h), padded(w)) else {
        return Err(Error::Invalid {
            kernel: name.into(),
            reason: format!("padding {pad} of a {h}×{w} input overflows usize"),
        });
    };
    if stride == 0 || kh == 0 || kw == 0 || ph < kh || pw < kw {
        return Err(Error::Invalid {
            kernel: name.into(),
            reason: format!("window {kh}×{kw} with stride {stride} and padding {pad} does not fit a {h}×{w} input"),
        });
    }
    Ok(((ph - kh) / stride + 1, (pw - kw) / stride + 1))
}
