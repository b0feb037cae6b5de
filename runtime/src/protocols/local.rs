//! Operations without communication: add, subtract, negate, add a public tensor, multiply by a public integer
//! tensor. (Multiplying a fixed-point share by a public real needs a truncation: [`Party::mul_public`], 1 round.)

use super::base::{buffers, Divisor};
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

impl Party {
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
        public: &[&[u64]],
        f: impl Fn(&mut MapBuilder, &[Reg], &[Reg], bool) -> Reg,
    ) -> Result<Share> {
        let shape = shares[0].shape().to_vec();
        let n = shares[0].len();
        let mut b = MapBuilder::new(name);
        let mut inputs: Vec<&[u64]> = Vec::new();
        for s in shares {
            inputs.push(s.mine());
        }
        for s in shares {
            inputs.push(s.next());
        }
        inputs.extend_from_slice(public);
        let k = shares.len() as u16;
        let mine: Vec<Reg> = (0..k).map(|i| b.input(i)).collect();
        let next: Vec<Reg> = (0..k).map(|i| b.input(k + i)).collect();
        let publ: Vec<Reg> = (0..public.len() as u16).map(|i| b.input(2 * k + i)).collect();
        // Public constants are added to piece x_0 only: party 0 holds it as `mine`, party 2 as `next`.
        let (m0, n0) = (self.id() == 0, self.id() == 2);
        let om = f(&mut b, &mine, &publ, m0);
        let on = f(&mut b, &next, &publ, n0);
        b.output(om).output(on);
        let [mine, next] = buffers(self.map(&b.build(), &inputs, &[], &[], n)?)?;
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
        self.call(|p| {
            p.piecewise("add_public", &[x], &[c.data()], |b, v, c, is_x0| if is_x0 { b.add(v[0], c[0]) } else { v[0] })
        })
    }

    /// `x + c` for a public real tensor (encoded with the session's fixed point).
    pub fn add_public_fixed(&mut self, x: &Share, c: &Tensor) -> Result<Share> {
        let c = c.encode(&self.fixed())?;
        self.add_public(x, &c)
    }

    /// `x · c` elementwise for a public ring tensor `c` (no truncation: exact in the ring).
    pub fn mul_public_ring(&mut self, x: &Share, c: &RingTensor) -> Result<Share> {
        same_shape("mul_public_ring", x.shape(), c.shape())?;
        self.call(|p| p.piecewise("mul_public", &[x], &[c.data()], |b, v, c, _| b.mul(v[0], c[0])))
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
