//! Operations without communication: add, subtract, negate, add a public tensor, multiply by a public integer
//! tensor, public values as shares, broadcasts and sums along an axis, stacking shares for one batched call.
//! (Multiplying a fixed-point share by a public real needs a truncation: [`Party::mul_public`], 1 round.)

use super::base::{buffers, Divisor};
use crate::buffer::Buffer;
use crate::party::Party;
use crate::share::Share;
use crate::tensor::{RingTensor, Tensor};
use crate::{Error, Result};
use cryptgpu_codegen::{Affine, GatherKernel, MapBuilder, Reg};

pub(crate) fn same_shape(op: &str, a: &[usize], b: &[usize]) -> Result<()> {
    if a != b {
        return Err(Error::Shape { op: op.into(), expected: format!("{a:?}"), found: format!("{b:?}") });
    }
    Ok(())
}

/// A public operand of a piecewise map: words, one per element, or one value for all (a kernel parameter: nothing
/// to copy to a device).
#[derive(Clone, Copy)]
enum Public<'a> {
    Words(&'a Buffer),
    Scalar(u64),
}

/// The value of `c` when every element has it (and there is at least one).
fn uniform(c: &[u64]) -> Option<u64> {
    let first = *c.first()?;
    c.iter().all(|&v| v == first).then_some(first)
}

/// Shares of equal size stacked along a new first axis (pieces back to back): the operand of one batched call.
pub(crate) fn stack(parts: &[&Share]) -> Result<Share> {
    let n = parts.first().map_or(0, |s| s.len());
    Share::concat(parts, &[parts.len(), n])
}

/// Row `i` of a share stacked by [`stack`], with `shape`.
pub(crate) fn row(s: &Share, i: usize, shape: &[usize]) -> Result<Share> {
    let n = crate::tensor::numel(shape)?;
    s.slice(i * n..(i + 1) * n, shape)
}

impl Party {
    /// A public ring tensor as a share (piece `x_0` holds it).
    pub(crate) fn public_share(&mut self, c: &RingTensor) -> Result<Share> {
        let zero = Share::from_pieces(c.shape(), self.zeros(c.len())?, self.zeros(c.len())?);
        self.add_public(&zero, c)
    }

    /// The public real `v` in every element of `shape`, as a fixed-point share.
    pub(crate) fn public_fixed(&mut self, v: f64, shape: &[usize]) -> Result<Share> {
        let n = crate::tensor::numel(shape)?;
        let enc = self.fixed().encode(v)?;
        self.public_share(&RingTensor::new(shape, vec![enc; n])?)
    }

    /// `x + v` for a public real scalar `v`.
    pub(crate) fn add_scalar(&mut self, x: &Share, v: f64) -> Result<Share> {
        let enc = self.fixed().encode(v)?;
        self.add_public(x, &RingTensor::new(x.shape(), vec![enc; x.len()])?)
    }

    /// `x · k` for a public ring integer `k` (local, exact).
    pub(crate) fn scale_int(&mut self, x: &Share, k: u64) -> Result<Share> {
        self.mul_public_ring(x, &RingTensor::new(x.shape(), vec![k; x.len()])?)
    }

    /// `x` `[n]` broadcast to `[rows, n]` (a gather on both pieces).
    pub(crate) fn broadcast_rows(&mut self, x: &Share, rows: usize) -> Result<Share> {
        let n = x.len();
        let g = GatherKernel {
            name: "broadcast_rows".into(),
            in_shape: vec![n],
            out_shape: vec![rows, n],
            reduce_shape: vec![],
            coords: vec![Affine::axis(1)],
        };
        self.gather_share(&g, x, &[rows, n])
    }

    /// The sum over the first axis of `x` `[rows, n]`, as `shape` (`n` elements; a reducing gather, local).
    pub(crate) fn sum_rows(&mut self, x: &Share, rows: usize, shape: &[usize]) -> Result<Share> {
        self.sum_except(x, &[rows, x.len() / rows.max(1)], 1, shape)
    }

    /// The sum of `x`, viewed with `view`, over every axis but `keep` (a reducing gather, local), as `out`
    /// (`view[keep]` elements): bias gradients, batch-norm sums, softmax and loss row sums.
    pub(crate) fn sum_except(&mut self, x: &Share, view: &[usize], keep: usize, out: &[usize]) -> Result<Share> {
        if keep >= view.len() {
            return Err(Error::Shape {
                op: "sum over all axes but one".into(),
                expected: format!("an axis below {}", view.len()),
                found: format!("axis {keep}"),
            });
        }
        let others: Vec<usize> = (0..view.len()).filter(|&a| a != keep).collect();
        let mut coords = vec![Affine::axis(0); view.len()];
        for (r, &a) in others.iter().enumerate() {
            coords[a] = Affine::axis(1 + r);
        }
        let g = GatherKernel {
            name: "sum_except".into(),
            in_shape: view.to_vec(),
            out_shape: vec![view[keep]],
            reduce_shape: others.iter().map(|&a| view[a]).collect(),
            coords,
        };
        self.gather_share(&g, x, out)
    }

    /// `v` `[n]` broadcast along `axis` of `shape` (`shape[axis] = n`): a gather on both pieces, local.
    pub(crate) fn broadcast_axis(&mut self, v: &Share, shape: &[usize], axis: usize) -> Result<Share> {
        if shape.get(axis) != Some(&v.len()) || v.shape().len() != 1 {
            return Err(Error::Shape {
                op: "broadcast".into(),
                expected: format!("a vector of {} elements", shape.get(axis).copied().unwrap_or(0)),
                found: format!("{:?} for output {shape:?}", v.shape()),
            });
        }
        let g = GatherKernel {
            name: "broadcast_axis".into(),
            in_shape: vec![v.len()],
            out_shape: shape.to_vec(),
            reduce_shape: vec![],
            coords: vec![Affine::axis(axis)],
        };
        self.gather_share(&g, v, shape)
    }

    /// Apply `f` to the pieces of shares (and public operands) piecewise: a map kernel over `[x_i, x_{i+1}, ...]`.
    fn piecewise(
        &mut self,
        name: &str,
        shares: &[&Share],
        public: &[Public<'_>],
        f: impl Fn(&mut MapBuilder, &[Reg], &[Reg], bool) -> Reg,
    ) -> Result<Share> {
        let shape = shares[0].shape().to_vec();
        let n = shares[0].len();
        let mut b = MapBuilder::new(name);
        let mut inputs: Vec<&Buffer> = Vec::new();
        for s in shares {
            inputs.push(s.mine());
        }
        for s in shares {
            inputs.push(s.next());
        }
        let k = shares.len() as u16;
        let mine: Vec<Reg> = (0..k).map(|i| b.input(i)).collect();
        let next: Vec<Reg> = (0..k).map(|i| b.input(k + i)).collect();
        let mut params = Vec::new();
        let publ: Vec<Reg> = public
            .iter()
            .map(|c| match c {
                Public::Words(w) => {
                    inputs.push(w);
                    b.input(inputs.len() as u16 - 1)
                }
                Public::Scalar(v) => {
                    params.push(*v);
                    b.param(params.len() as u16 - 1)
                }
            })
            .collect();
        // Public constants are added to piece x_0 only: party 0 holds it as `mine`, party 2 as `next`.
        let (m0, n0) = (self.id() == 0, self.id() == 2);
        let om = f(&mut b, &mine, &publ, m0);
        let on = f(&mut b, &next, &publ, n0);
        b.output(om).output(on);
        let [mine, next] = buffers(self.map(&b.build(), &inputs, &params, &[], n)?)?;
        Ok(Share::from_pieces(&shape, mine, next))
    }

    /// `x + y`.
    pub fn add(&mut self, x: &Share, y: &Share) -> Result<Share> {
        same_shape("add", x.shape(), y.shape())?;
        self.call(|p| p.piecewise("add", &[x, y], &[], |b, v, _, _| b.add(v[0], v[1])))
    }

    /// `x − y`.
    pub fn sub(&mut self, x: &Share, y: &Share) -> Result<Share> {
        same_shape("sub", x.shape(), y.shape())?;
        self.call(|p| p.piecewise("sub", &[x, y], &[], |b, v, _, _| b.sub(v[0], v[1])))
    }

    /// `−x`.
    pub fn neg(&mut self, x: &Share) -> Result<Share> {
        self.call(|p| p.piecewise("neg", &[x], &[], |b, v, _, _| b.neg(v[0])))
    }

    /// `x + c` for a public ring tensor `c` of the same shape (all parties pass the same `c`).
    pub fn add_public(&mut self, x: &Share, c: &RingTensor) -> Result<Share> {
        same_shape("add_public", x.shape(), c.shape())?;
        let mut words = None;
        let c = self.public_operand(c, &mut words)?;
        self.add_public_operand(x, c)
    }

    /// `x + c` for public words `c`, one per element of `x` (computed where they are, e.g. on the device).
    pub(crate) fn add_public_words(&mut self, x: &Share, c: &Buffer) -> Result<Share> {
        if c.len() != x.len() {
            return Err(Error::Internal(format!("{} public words added to {} elements", c.len(), x.len())));
        }
        self.add_public_operand(x, Public::Words(c))
    }

    /// `c` as a piecewise operand: one kernel parameter when every element is the same, else its words as backend
    /// constants (kept in `store`).
    fn public_operand<'a>(&self, c: &RingTensor, store: &'a mut Option<Buffer>) -> Result<Public<'a>> {
        Ok(match uniform(c.data()) {
            Some(v) => Public::Scalar(v),
            None => Public::Words(store.insert(self.constant(c.data())?)),
        })
    }

    fn add_public_operand(&mut self, x: &Share, c: Public<'_>) -> Result<Share> {
        self.call(|p| {
            p.piecewise("add_public", &[x], &[c], |b, v, c, is_x0| if is_x0 { b.add(v[0], c[0]) } else { v[0] })
        })
    }

    /// `x + c` for a public real tensor (encoded with the session's fixed point).
    pub fn add_public_fixed(&mut self, x: &Share, c: &Tensor) -> Result<Share> {
        let c = c.encode(&self.fixed())?;
        self.add_public(x, &c)
    }

    /// `x · c` for public words `c`, one per element of `x` (made where they are, e.g. [`Party::row_constants`]).
    pub(crate) fn mul_public_words(&mut self, x: &Share, c: &Buffer) -> Result<Share> {
        if c.len() != x.len() {
            return Err(Error::Internal(format!("{} public words multiplying {} elements", c.len(), x.len())));
        }
        self.call(|p| p.piecewise("mul_public", &[x], &[Public::Words(c)], |b, v, c, _| b.mul(v[0], c[0])))
    }

    /// The public `[rows.len(), n]` table whose row `i` is `rows[i]` in every column: the `rows.len()` values go to
    /// the backend's memory as constants ([`crate::backend::Backend::constant`]), a gather repeats them there.
    pub(crate) fn row_constants(&self, rows: &[u64], n: usize) -> Result<Buffer> {
        let g = GatherKernel {
            name: "row_constants".into(),
            in_shape: vec![rows.len()],
            out_shape: vec![rows.len(), n],
            reduce_shape: vec![],
            coords: vec![Affine::axis(0)],
        };
        self.gather(&g, &self.constant(rows)?)
    }

    /// `x · c` elementwise for a public ring tensor `c` (no truncation: exact in the ring).
    pub fn mul_public_ring(&mut self, x: &Share, c: &RingTensor) -> Result<Share> {
        same_shape("mul_public_ring", x.shape(), c.shape())?;
        let mut words = None;
        let c = self.public_operand(c, &mut words)?;
        self.call(|p| p.piecewise("mul_public", &[x], &[c], |b, v, c, _| b.mul(v[0], c[0])))
    }

    /// `x · c` elementwise for a public real tensor `c`: a local product at scale 2t, then a truncation by t
    /// (one round, [`cost::DIVIDE`](super::cost::DIVIDE)).
    pub fn mul_public(&mut self, x: &Share, c: &Tensor) -> Result<Share> {
        let c = c.encode(&self.fixed())?;
        let t = self.fixed().frac_bits();
        self.call(|p| {
            let prod = p.mul_public_ring(x, &c)?;
            p.divide(&prod, Divisor::Pow2(t))
        })
    }
}
