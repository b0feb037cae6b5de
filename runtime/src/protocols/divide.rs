//! Division of a share by a public integer, and truncation (division by `2^k`): one round, one party sends. Under
//! the default exact truncation mode a power-of-two divisor goes to [`exact`](super::exact) instead (two rounds,
//! no wrap failure); every other divisor (e.g. 3×3 average pooling's 9) uses this probabilistic protocol in every
//! mode.
//!
//! Roles rotate with the step counter. The replicated pieces are regrouped into a 2-out-of-2 sharing
//! `x = B + A` with `B = x_{R0} + x_{R1} + ρ` (held by R0) and `A = x_{R2} − ρ` (held by R1 and R2), where `ρ` is a
//! PRF word all three parties share, so `B` is uniform whatever the pieces were. Then, as in
//! [`reshare`](super::reshare), R0 sends `⌊B/d⌋ + 1 − s` to R2 and the result is `(⌊B/d⌋ + 1 − s, s, ⌊A/d⌋)`.
//!
//! **Error bound**, for every divisor `1 ≤ d ≤ 2^63 − 1`: the result `q` satisfies `⌊x/d⌋ ≤ q ≤ ⌊x/d⌋ + 1`, so
//! `|q − x/d| < 1` in units of the last place, with `E[q] = x/d + 1/d`; except with probability
//! `(|x| + 1)/2^64` (the 2-out-of-2 split wraps), where the result is off by about `2^64/d`. A divisor of 0 or
//! above `2^63 − 1` is an error. Dividing a fixed-point value by an integer keeps its scale: `x/d` is encoded as
//! `q`, and a quotient below one ulp is correctly 0 (e.g. 1.0 / 2^30 at t = 20).

use super::base::{buffers, role, single, Divisor};
#[allow(unused_imports)] // the docs link the cost constants
use super::cost;
use crate::party::{KeyWith, Party};
use crate::prg::Purpose;
use crate::share::Share;
use crate::{Error, Result};
use cryptgpu_codegen::MapBuilder;

impl Party {
    /// `x / d` for a public integer `d` (fixed-point values keep their scale). One round; see the module docs for
    /// the error bound and the failure probability. Cost: [`cost::DIVIDE`].
    pub fn div_public(&mut self, x: &Share, d: u64) -> Result<Share> {
        let d = Divisor::new(d)?;
        self.call(|p| p.divide(x, d))
    }

    /// `x / 2^bits` (truncation of a fixed-point value by `bits` fractional bits), `bits < 63`.
    /// Cost: [`cost::DIVIDE`].
    pub fn truncate(&mut self, x: &Share, bits: u32) -> Result<Share> {
        if bits >= 63 {
            return Err(Error::Invalid(format!("truncation by {bits} bits; at most 62 are supported")));
        }
        self.call(|p| p.divide(x, Divisor::Pow2(bits)))
    }

    pub(crate) fn divide(&mut self, x: &Share, d: Divisor) -> Result<Share> {
        if let (Divisor::Pow2(k), super::TruncationMode::Exact) = (d, self.truncation) {
            return self.exact_truncate(x, k);
        }
        let step = self.next_step();
        let rho = self.stream(KeyWith::All, Purpose::Split, step);
        let n = x.len();
        let (prev, next) = (self.prev(), self.next());
        let mut b = MapBuilder::new("divide_split");
        match role(self.id(), step) {
            0 => {
                // B = x_R0 + x_R1 + ρ; message ⌊B/d⌋ + 1 − s to R2; keep (message, s).
                let (mine, nxt, r) = (b.input(0), b.input(1), b.prg(0));
                let s0 = b.add(mine, nxt);
                let big_b = b.add(s0, r);
                let q = d.emit(&mut b, big_b);
                let one = b.constant(1);
                let q1 = b.add(q, one);
                let s = b.prg(1);
                let msg = b.sub(q1, s);
                b.output(msg).output(s);
                let mask = self.stream(KeyWith::Next, Purpose::TruncMask, step);
                let [msg, s] = buffers(self.map(&b.build(), &[x.mine(), x.next()], &d.params(), &[rho, mask], n)?)?;
                self.round(vec![(prev, msg.clone())], &[])?;
                Ok(Share::from_pieces(x.shape(), msg, s))
            }
            1 => {
                // A = x_R2 − ρ (my next piece); keep (s, ⌊A/d⌋).
                let (a, r) = (b.input(0), b.prg(0));
                let big_a = b.sub(a, r);
                let q = d.emit(&mut b, big_a);
                let s = b.prg(1);
                b.output(s).output(q);
                let mask = self.stream(KeyWith::Prev, Purpose::TruncMask, step);
                let [s, q] = buffers(self.map(&b.build(), &[x.next()], &d.params(), &[rho, mask], n)?)?;
                self.round(vec![], &[])?;
                Ok(Share::from_pieces(x.shape(), s, q))
            }
            _ => {
                // A = x_R2 − ρ (my own piece); keep (⌊A/d⌋, message from R0).
                let (a, r) = (b.input(0), b.prg(0));
                let big_a = b.sub(a, r);
                let q = d.emit(&mut b, big_a);
                b.output(q);
                let q = single(self.map(&b.build(), &[x.mine()], &d.params(), &[rho], n)?)?;
                let msg = single(self.round(vec![], &[(next, n)])?)?;
                Ok(Share::from_pieces(x.shape(), q, msg))
            }
        }
    }
}
