//! Exact truncation: division by `2^k` with no wrap failure for every pre-truncation value `|z| < 2^62`.
//!
//! The probabilistic split `z = B + A` (see [`reshare`](super::reshare)) fails when `B + A` wraps. Here R0 first adds
//! `2^62`, so the true value `x' = z + 2^62` lies in `[0, 2^63)`. Reading `B` and `A` as unsigned, `B + A = x' +
//! w·2^64` and, because bit 63 of `x'` is 0, the wrap bit is simply `w = msb(B) ∨ msb(A)` — `msb(B)` is known to R0,
//! `msb(A)` to R1 and R2. So
//!
//! `⌊z/2^k⌋ + δ = ⌊B/2^k⌋ + ⌊A/2^k⌋ + 1 − 2^(62−k) − w·2^(64−k)`, with `δ ∈ {0, 1}` (within one ulp, unbiased as in
//! the probabilistic mode), where `w = a + b − a·b` costs one arithmetic sharing of `a` (a word from R0 to R2 that
//! rides in the first round) and one ring product (the second round).
//!
//! **Cost**: 2 rounds; per output element R0 sends 24 bytes, R1 and R2 16 (the probabilistic mode: 1 round, 8 each).
//! **Range**: exact for `−2^62 ≤ z < 2^62`; outside it the result is wrong (as a fixed-point product of such values
//! has no meaning anyway). Division by a public integer that is not a power of two stays probabilistic.

use super::divide::Divisor;
use super::reshare::role;
use crate::party::{KeyWith, Party};
use crate::prg::Purpose;
use crate::share::Share;
use crate::{Error, Result};
use cryptgpu_codegen::{MapBuilder, Reg};

/// How fixed-point products and truncations are truncated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TruncationMode {
    /// Never fails for `|z| < 2^62`: 2 rounds (the default).
    #[default]
    Exact,
    /// One round, fails with probability `(|z| + 1)/2^64` per element (CryptGPU, Piranha, Falcon).
    Probabilistic,
}

/// R0's local step in a kernel: `B = c + 2^62`; outputs the message `⌊B/2^k⌋ + 1 − 2^(62−k) − s`, the mask `s`
/// (PRF slot 2) and `a = msb(B)`.
pub(crate) fn emit_r0_message(b: &mut MapBuilder, c: Reg, k: u32) {
    let offset = b.constant(1 << 62);
    let big_b = b.add(c, offset);
    let q = b.op(cryptgpu_codegen::Op::Shr(big_b, k));
    let adj = b.constant(1u64.wrapping_sub(1 << (62 - k)));
    let q1 = b.add(q, adj);
    let s = b.prg(2);
    let msg = b.sub(q1, s);
    let a = b.op(cryptgpu_codegen::Op::Shr(big_b, 63));
    b.output(msg).output(s).output(a);
}

impl Party {
    /// The truncation mode of fixed-point products from now on (set it around a layer to choose per layer).
    pub fn set_truncation(&mut self, mode: TruncationMode) {
        self.truncation = mode;
    }

    /// The current truncation mode.
    pub fn truncation(&self) -> TruncationMode {
        self.truncation
    }

    /// How a fixed-point product is brought back to scale `t` under the current mode.
    pub(crate) fn fixed_reshare(&self) -> super::reshare::Reshare {
        let t = self.fixed().frac_bits();
        match self.truncation {
            TruncationMode::Exact => super::reshare::Reshare::ExactTruncate(t),
            TruncationMode::Probabilistic => super::reshare::Reshare::Divide(Divisor::Pow2(t)),
        }
    }

    /// After the exact-truncation epilogue: the reshare round (R0's message and `a`'s piece ride to R2; R1 and R2 swap
    /// their sums), then the wrap correction.
    pub(crate) fn finish_exact_truncate(
        &mut self,
        outs: Vec<Vec<u64>>,
        shape: &[usize],
        k: u32,
        step: u64,
    ) -> Result<Share> {
        let n = outs[0].len();
        let (prev, next) = (self.prev(), self.next());
        let mut outs = outs.into_iter();
        let mut take = || outs.next().expect("epilogue outputs");
        match role(self.id(), step) {
            0 => {
                let (msg, s, a) = (take(), take(), take());
                let (a0, a1) = self.share_r0_bit(&a, step)?;
                self.ride_along(prev, a0.clone());
                self.round(vec![(prev, msg.clone())], &[])?;
                self.wrap_correct(Share::from_pieces(shape, msg, s), Share::from_pieces(shape, a0, a1), None, k)
            }
            1 => {
                let (c1, s) = (take(), take());
                let a1 = self.peer_bit_piece(n, step)?;
                let c2 = super::reshare::one(self.round(vec![(next, c1.clone())], &[(next, n)])?);
                let (q, b) = self.unsigned_split(&c1, &c2, k)?;
                let zeros = vec![0; n];
                self.wrap_correct(
                    Share::from_pieces(shape, s, q),
                    Share::from_pieces(shape, a1, zeros.clone()),
                    Some(Share::from_pieces(shape, zeros, b)),
                    k,
                )
            }
            _ => {
                let c2 = take();
                self.expect_ride(next, n);
                let mut got = self.round(vec![(prev, c2.clone())], &[(prev, n), (next, n)])?.into_iter();
                let (c1, msg) = (got.next().expect("two messages"), got.next().expect("two messages"));
                let a0 = self.take_rides().remove(0);
                let (q, b) = self.unsigned_split(&c1, &c2, k)?;
                let zeros = vec![0; n];
                self.wrap_correct(
                    Share::from_pieces(shape, q, msg),
                    Share::from_pieces(shape, zeros.clone(), a0),
                    Some(Share::from_pieces(shape, b, zeros)),
                    k,
                )
            }
        }
    }

    /// Exact `x / 2^k` of a replicated share (2 rounds): the 2-out-of-2 split of [`Party::divide`] with the offset and
    /// the wrap correction.
    pub(crate) fn exact_truncate(&mut self, x: &Share, k: u32) -> Result<Share> {
        if k > 62 {
            return Err(Error::Invalid(format!("exact truncation by {k} bits; at most 62 are supported")));
        }
        let step = self.next_step();
        let n = x.len();
        let shape = x.shape().to_vec();
        let rho = self.stream(KeyWith::All, Purpose::Split, step);
        let prev = self.prev();
        let next = self.next();
        match role(self.id(), step) {
            0 => {
                let mut b = MapBuilder::new("exact_split_r0");
                let (m, nx, r) = (b.input(0), b.input(1), b.prg(0));
                let s0 = b.add(m, nx);
                let c = b.add(s0, r);
                // slots: 0 = ρ, 1 = unused, 2 = the mask s (as in the product epilogue)
                emit_r0_message(&mut b, c, k);
                let mask = self.stream(KeyWith::Next, Purpose::TruncMask, step);
                let mut o = self.map(&b.build(), &[x.mine(), x.next()], &[], &[rho, rho, mask], n)?.into_iter();
                let (msg, s, a) = (o.next().expect("3"), o.next().expect("3"), o.next().expect("3"));
                let (a0, a1) = self.share_r0_bit(&a, step)?;
                self.ride_along(prev, a0.clone());
                self.round(vec![(prev, msg.clone())], &[])?;
                self.wrap_correct(Share::from_pieces(&shape, msg, s), Share::from_pieces(&shape, a0, a1), None, k)
            }
            role => {
                // A = x_R2 − ρ: R1 holds x_R2 as `next`, R2 as `mine`.
                let a_piece = if role == 1 { x.next() } else { x.mine() };
                let mut b = MapBuilder::new("exact_split_peer");
                let (v, r) = (b.input(0), b.prg(0));
                let big_a = b.sub(v, r);
                b.output(big_a);
                let big_a = super::reshare::one(self.map(&b.build(), &[a_piece], &[], &[rho], n)?);
                let zeros = vec![0u64; n];
                let (q, bit) = self.unsigned_split(&big_a, &zeros, k)?;
                let zeros = vec![0u64; n];
                if role == 1 {
                    let s = {
                        let mut b = MapBuilder::new("exact_mask_r1");
                        let s = b.prg(0);
                        b.output(s);
                        super::reshare::one(self.map(
                            &b.build(),
                            &[],
                            &[],
                            &[self.stream(KeyWith::Prev, Purpose::TruncMask, step)],
                            n,
                        )?)
                    };
                    let a1 = self.peer_bit_piece(n, step)?;
                    self.round(vec![], &[])?;
                    self.wrap_correct(
                        Share::from_pieces(&shape, s, q),
                        Share::from_pieces(&shape, a1, zeros.clone()),
                        Some(Share::from_pieces(&shape, zeros, bit)),
                        k,
                    )
                } else {
                    self.expect_ride(next, n);
                    let msg = super::reshare::one(self.round(vec![], &[(next, n)])?);
                    let a0 = self.take_rides().remove(0);
                    self.wrap_correct(
                        Share::from_pieces(&shape, q, msg),
                        Share::from_pieces(&shape, zeros.clone(), a0),
                        Some(Share::from_pieces(&shape, bit, zeros)),
                        k,
                    )
                }
            }
        }
    }

    /// R0: arithmetic pieces `(a − p, p)` of its bit `a`, `p` a PRF word shared with R1.
    fn share_r0_bit(&self, a: &[u64], step: u64) -> Result<(Vec<u64>, Vec<u64>)> {
        let mut b = MapBuilder::new("exact_share_a");
        let (av, p) = (b.input(0), b.prg(0));
        let a0 = b.sub(av, p);
        b.output(a0).output(p);
        let mut o = self
            .map(&b.build(), &[a], &[], &[self.stream(KeyWith::Next, Purpose::Reshare, step)], a.len())?
            .into_iter();
        Ok((o.next().expect("2"), o.next().expect("2")))
    }

    /// R1: its piece `p` of R0's bit.
    fn peer_bit_piece(&self, n: usize, step: u64) -> Result<Vec<u64>> {
        let mut b = MapBuilder::new("exact_share_a_peer");
        let p = b.prg(0);
        b.output(p);
        Ok(super::reshare::one(self.map(
            &b.build(),
            &[],
            &[],
            &[self.stream(KeyWith::Prev, Purpose::Reshare, step)],
            n,
        )?))
    }

    /// R1 and R2: `A = c1 + c2`, its unsigned quotient `⌊A/2^k⌋` and `msb(A)`.
    fn unsigned_split(&self, c1: &[u64], c2: &[u64], k: u32) -> Result<(Vec<u64>, Vec<u64>)> {
        let mut b = MapBuilder::new("exact_split_a");
        let (x, y) = (b.input(0), b.input(1));
        let a = b.add(x, y);
        let q = b.op(cryptgpu_codegen::Op::Shr(a, k));
        let m = b.op(cryptgpu_codegen::Op::Shr(a, 63));
        b.output(q).output(m);
        let mut o = self.map(&b.build(), &[c1, c2], &[], &[], c1.len())?.into_iter();
        Ok((o.next().expect("2"), o.next().expect("2")))
    }

    /// `base − (a ∨ b)·2^(64−k)`, with `a ∨ b = a + b − a·b` (one ring product). `b` is the trivial sharing of the bit
    /// R1 and R2 know (`None` at R0, whose pieces of it are zero).
    fn wrap_correct(&mut self, base: Share, a: Share, b: Option<Share>, k: u32) -> Result<Share> {
        let shape = base.shape().to_vec();
        let b = b.unwrap_or_else(|| Share::from_pieces(&shape, vec![0; base.len()], vec![0; base.len()]));
        let ab = self.mul_ring(&a, &b)?;
        let mut kb = MapBuilder::new("exact_wrap_correction");
        let regs: Vec<Reg> = (0..8).map(|i| kb.input(i)).collect();
        let mut outs = Vec::new();
        for piece in 0..2 {
            let (base_p, a_p, b_p, ab_p) = (regs[piece], regs[2 + piece], regs[4 + piece], regs[6 + piece]);
            let s = kb.add(a_p, b_p);
            let w = kb.sub(s, ab_p);
            let corr = if k == 0 { kb.constant(0) } else { kb.shl(w, 64 - k) };
            outs.push(kb.sub(base_p, corr));
        }
        kb.output(outs[0]).output(outs[1]);
        let inputs: [&[u64]; 8] =
            [base.mine(), base.next(), a.mine(), a.next(), b.mine(), b.next(), ab.mine(), ab.next()];
        let mut o = self.map(&kb.build(), &inputs, &[], &[], base.len())?.into_iter();
        Ok(Share::from_pieces(&shape, o.next().expect("2"), o.next().expect("2")))
    }
}
