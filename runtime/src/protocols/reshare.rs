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

use super::base::{buffers, role, single, Divisor, Reshare};
use crate::buffer::Buffer;
use crate::party::Party;
use crate::share::Share;
use crate::Result;
use cryptgpu_codegen::MapBuilder;

impl Party {
    /// The communication and combine stages after [`Party::reshare_epilogue`]'s kernel produced `outs`.
    pub(crate) fn finish_reshare(
        &mut self,
        outs: Vec<Buffer>,
        shape: &[usize],
        how: Reshare,
        step: u64,
    ) -> Result<Share> {
        let n = outs.first().map_or(0, |b| b.len());
        let (prev, next) = (self.prev(), self.next());
        // The buffers of the stages to come, allocated now: a party that is not the last to finish its product does
        // this while the others still compute theirs (see `crate::buffer_pool`).
        let needed = match (how, role(self.id(), step)) {
            (Reshare::Plain, _) => 1,
            (Reshare::ExactTruncate(_), 0) => 0,
            (Reshare::Divide(_), _) => 1,
            (Reshare::ExactTruncate(_), _) => 1,
        };
        self.reserve_buffers(needed, n);
        match how {
            Reshare::Plain => {
                let [c] = buffers(outs)?;
                let got = self.round(vec![(prev, self.copy_of(&c))], &[(next, n)])?;
                Ok(Share::from_pieces(shape, c, single(got)?))
            }
            Reshare::Divide(d) => match role(self.id(), step) {
                0 => {
                    let [msg, s] = buffers(outs)?;
                    self.round(vec![(prev, self.copy_of(&msg))], &[])?;
                    Ok(Share::from_pieces(shape, msg, s))
                }
                1 => {
                    let [c1, s] = buffers(outs)?;
                    let c2 = single(self.round(vec![(next, self.copy_of(&c1))], &[(next, n)])?)?;
                    let a = self.divide_sum(d, &c1, c2)?;
                    self.recycle([c1]);
                    Ok(Share::from_pieces(shape, s, a))
                }
                _ => {
                    let [c2] = buffers(outs)?;
                    let [c1, msg] = buffers(self.round(vec![(prev, self.copy_of(&c2))], &[(prev, n), (next, n)])?)?;
                    let a = self.divide_sum(d, &c2, c1)?;
                    self.recycle([c2]);
                    Ok(Share::from_pieces(shape, a, msg))
                }
            },
            Reshare::ExactTruncate(k) => self.finish_exact_truncate(outs, shape, k, step),
        }
    }

    /// `⌊(x + y) / d⌋` elementwise (R1's and R2's combine stage), written over `y`.
    pub(super) fn divide_sum(&self, d: Divisor, x: &Buffer, y: Buffer) -> Result<Buffer> {
        let mut b = MapBuilder::new("reshare_divide_sum");
        let (a0, a1) = (b.input(0), b.input(1));
        let s = b.add(a0, a1);
        let q = d.emit(&mut b, s);
        b.output(q);
        let ins = [crate::backend::Source::Buf(x), crate::backend::Source::Prior(0)];
        single(self.map_updating(&b.build(), &ins, &d.params(), &[], vec![y])?)
    }
}
