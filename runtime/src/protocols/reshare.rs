//! From a 3-out-of-3 sum back to replicated shares, in one round, optionally dividing by a public integer on the
//! way (the truncation of a fixed-point product).
//!
//! After a local product, party `i` holds `c_i` with `z = c_0 + c_1 + c_2`, already masked by a fresh zero share
//! `α_i = F(k_i) − F(k_{i+1})`.
//!
//! * **Plain reshare** (ring products): party `i` sends `c_i` to party `i−1` and holds `(c_i, c_{i+1})`.
//! * **Reshare with division by `d`** (fixed-point products; 2^t is the truncation). Roles `R0, R1, R2` rotate with the
//!   step counter. `R0` holds `B = c_0`; `R1` and `R2` swap `c_1`, `c_2` so both hold `A = c_1 + c_2`: a 2-out-of-2
//!   sharing `z = A + B` for which SecureML's local division is exact but for a carry. `R0` sends
//!   `⌊B/d⌋ + 1 − s` to `R2`, where `s` is a PRF word `R0` shares with `R1`. The result is the replicated sharing
//!   `(⌊B/d⌋ + 1 − s, s, ⌊A/d⌋)`: one round, every party sends one word per element.
//!
//! **Result.** Unless the split wraps (below), the revealed value `q` satisfies `⌊z/d⌋ ≤ q ≤ ⌊z/d⌋ + 1`, so
//! `|q − z/d| < 1` ulp; for uniform `B` the carry happens with probability `(d − 1 − (z mod d))/d`, so
//! `E[q] = z/d + 1/d`: stochastic rounding, unbiased up to `1/d` of an ulp (unlike floor truncation's −½ ulp).
//!
//! **Failure probability.** The split fails when `A + B` (as signed 64-bit integers) differs from `z` by `±2^64`;
//! for `B` uniform this happens with probability exactly `(|z| + 1)/2^64` for `z ≥ 0` (`|z|/2^64` for `z < 0`),
//! and the result is then off by about `2^64/d`. For a fixed-point product with `t` fractional bits, `z ≈ x·y·2^(2t)`:
//! values of magnitude 1 fail with probability 2^−24 per element at `t = 20`, magnitude 2^10 with 2^−4. The
//! exact-truncation mode (non-linear issue) removes this failure.

use super::divide::Divisor;
use crate::party::{KeyWith, Party};
use crate::prg::Purpose;
use crate::share::Share;
use crate::Result;
use cryptgpu_codegen::{MapBuilder, Reg};

/// The role of `party` at `step` in a reshare with division: R0 is party `step mod 3`.
pub(crate) fn role(party: usize, step: u64) -> usize {
    (party + 3 - (step % 3) as usize) % 3
}

/// How a 3-out-of-3 sum becomes replicated shares.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reshare {
    /// Exact ring value.
    Plain,
    /// Divide by a public integer (truncation when a power of two), probabilistic (one round).
    Divide(Divisor),
    /// Divide by `2^k` with no wrap failure for |z| < 2^62 (two rounds; see [`super::exact`]).
    ExactTruncate(u32),
}

impl Party {
    /// PRF streams of the local step's epilogue at `step` (see [`Party::reshare_epilogue`] for their use).
    pub(crate) fn reshare_streams(&self, how: Reshare, step: u64) -> Vec<crate::prg::Stream> {
        let zero = |k| self.stream(k, Purpose::ZeroShare, step);
        let mask = |k| self.stream(k, Purpose::TruncMask, step);
        match (how, role(self.id(), step)) {
            (Reshare::Plain, _) if self.mutated(crate::mutation::Mutation::ZeroShareDropped) => vec![],
            (Reshare::Plain, _) => vec![zero(KeyWith::Prev), zero(KeyWith::Next)],
            (_, 0) => vec![zero(KeyWith::Prev), zero(KeyWith::Next), mask(KeyWith::Next)],
            (_, 1) => vec![zero(KeyWith::Prev), mask(KeyWith::Prev)],
            (_, _) => vec![zero(KeyWith::Next)],
        }
    }

    /// Parameters of the local step's epilogue.
    pub(crate) fn reshare_params(how: Reshare) -> Vec<u64> {
        match how {
            Reshare::Divide(d) => d.params(),
            Reshare::Plain | Reshare::ExactTruncate(_) => vec![],
        }
    }

    /// Append this party's local reshare step to a kernel whose local product is `value`: mask it, then (with
    /// division) form R0's message. Marks the outputs that [`Party::finish_reshare`] expects.
    ///
    /// Masks: the plain reshare adds the zero share `α_i = F(k_i) − F(k_{i+1})`. With division only `c_1` (sent to
    /// R2) and `c_2` (sent to R1) leave their party, so only they need masks R1 and R2 cannot remove:
    /// R1 adds `F(k_{R1})` (shared with R0), R2 subtracts `F(k_{R0})` (shared with R0), and R0 adds
    /// `F(k_{R0}) − F(k_{R1})`, which also makes `B` uniform. (The full zero share's `F(k_{R2})` terms, known to both
    /// R1 and R2, would cancel inside `A = c_1 + c_2` and mask nothing.)
    pub(crate) fn reshare_epilogue(&self, b: &mut MapBuilder, value: Reg, how: Reshare, step: u64) {
        let role = role(self.id(), step);
        let c = match (how, role) {
            (Reshare::Plain, _) if self.mutated(crate::mutation::Mutation::ZeroShareDropped) => value,
            (Reshare::Plain, _) | (_, 0) => {
                let alpha = super::zero::emit(b, super::zero::ZeroKind::Arithmetic, 0, 1);
                b.add(value, alpha)
            }
            (_, 1) => {
                let z = b.prg(0);
                b.add(value, z)
            }
            (_, _) => {
                let z = b.prg(0);
                b.sub(value, z)
            }
        };
        match (how, role) {
            (Reshare::Plain, _) | (_, 2) => {
                b.output(c);
            }
            (Reshare::ExactTruncate(k), 0) => {
                // B = c + 2^62 (so 0 ≤ B + A < 2^63 as the true sum); message ⌊B/2^k⌋ + 1 − 2^(62−k) − s; a = msb(B).
                super::exact::emit_r0_message(b, c, k);
            }
            (Reshare::Divide(d), 0) => {
                let q = d.emit(b, c);
                let one = b.constant(1);
                let q1 = b.add(q, one);
                let s = b.prg(2);
                let msg = b.sub(q1, s);
                b.output(msg).output(s);
            }
            (_, _) => {
                let s = b.prg(1);
                b.output(c).output(s);
            }
        }
    }

    /// The communication and combine stages after [`Party::reshare_epilogue`]'s kernel produced `outs`.
    pub(crate) fn finish_reshare(
        &mut self,
        outs: Vec<Vec<u64>>,
        shape: &[usize],
        how: Reshare,
        step: u64,
    ) -> Result<Share> {
        let n = outs[0].len();
        let mut outs = outs.into_iter();
        let mut take = || outs.next().expect("epilogue outputs");
        let (prev, next) = (self.prev(), self.next());
        match how {
            Reshare::Plain => {
                let c = take();
                let got = self.round(vec![(prev, c.clone())], &[(next, n)])?;
                Ok(Share::from_pieces(shape, c, one(got)))
            }
            Reshare::Divide(d) => match role(self.id(), step) {
                0 => {
                    let (msg, s) = (take(), take());
                    self.round(vec![(prev, msg.clone())], &[])?;
                    Ok(Share::from_pieces(shape, msg, s))
                }
                1 => {
                    let (c1, s) = (take(), take());
                    let c2 = one(self.round(vec![(next, c1.clone())], &[(next, n)])?);
                    let a = self.divide_sum(d, &c1, &c2)?;
                    Ok(Share::from_pieces(shape, s, a))
                }
                _ => {
                    let c2 = take();
                    let mut got = self.round(vec![(prev, c2.clone())], &[(prev, n), (next, n)])?.into_iter();
                    let (c1, msg) = (got.next().expect("two messages"), got.next().expect("two messages"));
                    let a = self.divide_sum(d, &c1, &c2)?;
                    Ok(Share::from_pieces(shape, a, msg))
                }
            },
            Reshare::ExactTruncate(k) => {
                let outs: Vec<Vec<u64>> = std::iter::from_fn(|| Some(take()))
                    .take(match role(self.id(), step) {
                        0 => 3,
                        1 => 2,
                        _ => 1,
                    })
                    .collect();
                self.finish_exact_truncate(outs, shape, k, step)
            }
        }
    }

    /// `⌊(x + y) / d⌋` elementwise (R1's and R2's combine stage).
    fn divide_sum(&self, d: Divisor, x: &[u64], y: &[u64]) -> Result<Vec<u64>> {
        let mut b = MapBuilder::new("reshare_divide_sum");
        let (a0, a1) = (b.input(0), b.input(1));
        let s = b.add(a0, a1);
        let q = d.emit(&mut b, s);
        b.output(q);
        Ok(one(self.map(&b.build(), &[x, y], &d.params(), &[], x.len())?))
    }
}

/// The single element of a one-element vector of buffers.
pub(crate) fn one(mut v: Vec<Vec<u64>>) -> Vec<u64> {
    v.pop().expect("one buffer")
}
