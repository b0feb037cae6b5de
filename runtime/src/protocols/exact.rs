//! Exact truncation: division by `2^k` with no wrap failure for every pre-truncation value `|z| < 2^62`.
//!
//! The probabilistic split `z = B + A` (see [`reshare`](super::reshare)) fails when `B + A` wraps. Here R0 first adds
//! `2^62`, so the true value `x' = z + 2^62` lies in `[0, 2^63)`. Reading `B` and `A` as unsigned, `B + A = x' +
//! w·2^64` and, because bit 63 of `x'` is 0, the wrap bit is simply `w = msb(B) ∨ msb(A)` — `msb(B)` is known to R0,
//! `msb(A)` to R1 and R2. So
//!
//! `⌊z/2^k⌋ + δ = ⌊B/2^k⌋ + ⌊A/2^k⌋ + 1 − 2^(62−k) − w·2^(64−k)`, with `δ ∈ {0, 1}` (within one ulp, unbiased as in
//! the probabilistic mode), where `w = a + b − a·b` costs one arithmetic sharing of `a` (a word from R0 to R2 that
//! rides in the first round) and a second round in which R1 and R2 re-replicate `a·b = b·p + b·(a − p)`, each of
//! them knowing one term.
//!
//! **Cost**: 2 rounds; per output element every party sends one word and one wrap value in a product (the
//! probabilistic mode: 1 round, one word each); a standalone truncation costs R0 a word and a wrap value, R1 and R2 a
//! wrap value. Wrap values matter only mod `2^k` (they are multiplied by `2^(64−k)`), so they travel as `k`-bit values
//! packed three to a word for `k ≤ 21` (two for `k ≤ 32`, one above), value `j·m + i` in slot `j` of word `i` (`m`
//! words), the bits above the last slot and the slots past the last value filled with the sender's private random
//! bits ([`super::base::packed_len`]). Those come from the sender's own key (never shared) under their own purpose
//! and a counter only the sender advances, so the receiver cannot predict them and no shared PRF stream, nor the
//! lock-step counter, is touched. Per element and party, `n` elements, at `t = 20` (three per word):
//!
//! | role | product | standalone truncation |
//! |---|---|---|
//! | R0 | message word + `a − p` (8 + 8/3 bytes) | the same |
//! | R1 | `c_1` + wrap term (8 + 8/3) | wrap term (8/3) |
//! | R2 | `c_2` + wrap term (8 + 8/3) | wrap term (8/3) |
//!
//! (exactly `8·n + 8·⌈n/3⌉` bytes for a product, `8·⌈n/3⌉` for each packed message), not 16 per element as unpacked.
//!
//! **Range**: exact for `−2^62 ≤ z < 2^62`; outside it the result is wrong (as a fixed-point product of such values
//! has no meaning anyway). Division by a public integer that is not a power of two stays probabilistic.
//!
//! **Fused plan** (products, the default): every piece that needs no message is computed in the product's own
//! kernel (the GEMM epilogue of a matmul or convolution, the map of an elementwise product), and each round is
//! followed by ONE pass, so the exact mode adds to the probabilistic one only its second round and two light passes:
//!
//! | role | product kernel outputs | after round 1 | after round 2 |
//! |---|---|---|---|
//! | R0 | message, `a − p`, both corrected pieces | — | — |
//! | R1 | `c_1`, its corrected piece R1, `p`, `y_R1` | `b·p − y_R1` (sent), `t = ⌊A/2^k⌋ − (b − sent)·2^(64−k)` | `t + got·2^(64−k)` |
//! | R2 | `c_2` | `y_R0` drawn, `b·(a − p) − y_R0` (sent), `t`, its corrected piece R0 | `t + got·2^(64−k)` |
//!
//! Values that travel packed (R0's `a − p`, the wrap terms) are read packed by the pass that uses them
//! ([`cryptgpu_codegen::Load::Packed`]), and R1's and R2's passes update their inputs in place
//! ([`crate::backend::Source::Prior`]: `sent` and `t` over `c_1`, `p`, `y` or the message, the final piece over `t`),
//! so the tail of the product allocates nothing but the packed message.
//!
//! Between its rounds the fused plan starts a ReLU announced for its result ([`Party::expect_relu`]): R0 already
//! holds its pieces, so that ReLU's first message rides in round 2. On a backend that queues launches R0 computes it
//! before round 1 (its kernels then run while round 1's messages are copied out), its messages held for round 2.
//!
//! The messages, rounds, bytes and resulting shares are bit for bit those of the staged reference plan (one kernel
//! per stage: [`Party::set_truncation_fusion`] switches it on, for comparison; the standalone truncation uses it).

use super::base::{buffers, emit_r0_message, first_ride, packed_len, r0_message, role, single, Divisor};
use crate::backend::Source::{Buf, Prior};
use crate::buffer::Buffer;
use crate::party::{KeyWith, Party};
use crate::prg::Purpose;
use crate::share::Share;
use crate::{Error, Result};
use cryptgpu_codegen::{MapBuilder, Op, Reg};

/// This party's pieces of the two wrap bits: R0 holds its bit `a` as `(a − p, p)`; R1 and R2 hold one piece of `a`
/// (`p` and `a − p`) and the bit `b` of `A` in the clear.
pub(crate) enum WrapBits {
    R0 { a0: Buffer, a1: Buffer },
    Peer { a_piece: Buffer, b_bit: Buffer },
}

/// How fixed-point products and truncations are truncated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TruncationMode {
    /// Never fails for `|z| < 2^62`: 2 rounds (the default).
    #[default]
    Exact,
    /// One round, fails with probability `(|z| + 1)/2^64` per element (CryptGPU, Piranha, Falcon).
    Probabilistic,
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
    pub(crate) fn fixed_reshare(&self) -> super::base::Reshare {
        let t = self.fixed().frac_bits();
        match self.truncation {
            TruncationMode::Exact => super::base::Reshare::ExactTruncate(t),
            TruncationMode::Probabilistic => super::base::Reshare::Divide(Divisor::Pow2(t)),
        }
    }

    /// Whether the exact truncation of products runs fused into the product's kernel (`true`, the default) or as the
    /// staged reference plan, one kernel per stage (`false`). Both send the same messages and give the same shares
    /// bit for bit; the switch exists to compare them.
    pub fn set_truncation_fusion(&mut self, fused: bool) {
        self.fused_truncation = fused;
    }

    /// After the exact-truncation epilogue of a product: the fused plan or the staged one, as the epilogue was built
    /// (see [`Party::set_truncation_fusion`]).
    pub(crate) fn finish_exact_truncate(
        &mut self,
        outs: Vec<Buffer>,
        shape: &[usize],
        k: u32,
        step: u64,
    ) -> Result<Share> {
        if self.fused_truncation {
            self.finish_fused_exact(outs, shape, k, step)
        } else {
            self.finish_staged_exact(outs, shape, k, step)
        }
    }

    /// The PRF streams the fused epilogue adds after the reshare's (slots 3–5 for R0, 2–3 for R1, none for R2): R0
    /// and R1 the piece `p` of R0's wrap bit, and their words `y` of the wrap product's re-replication.
    pub(crate) fn fused_exact_streams(&self, role: usize, step: u64) -> Vec<crate::prg::Stream> {
        let y = |key| self.stream(key, Purpose::Wrap, step);
        match role {
            0 => vec![self.stream(KeyWith::Next, self.wrap_piece_purpose(), step), y(KeyWith::Prev), y(KeyWith::Next)],
            1 => vec![self.stream(KeyWith::Prev, self.wrap_piece_purpose(), step), y(KeyWith::Prev)],
            // R2 draws its y_R0 where it uses it, in the pass after round 1 (see `wrap_y_r0`).
            _ => vec![],
        }
    }

    /// R2's word `y_R0` of the wrap product (the PRF key it shares with R0, R0 being its next party).
    fn wrap_y_r0(&self, step: u64) -> crate::prg::Stream {
        self.stream(KeyWith::Next, Purpose::Wrap, step)
    }

    /// The fused epilogue on the masked local value `c` (the module docs' table): R0 outputs its message, `a − p`
    /// and both pieces of its result; R1 `c_1`, its result piece R1, `p` and `y_R1`; R2 `c_2` alone (it draws `y_R0`
    /// after round 1, where it first needs it).
    pub(crate) fn fused_exact_epilogue(b: &mut MapBuilder, c: Reg, k: u32, role: usize) {
        match role {
            0 => {
                // slots 0, 1: zero share, 2: mask s, 3: p, 4: y_R0 (with prev), 5: y_R1 (with next)
                let [msg, s, a] = r0_message(b, c, k);
                let p = b.prg(3);
                let a0 = b.sub(a, p);
                let (y0, y1) = (b.prg(4), b.prg(5));
                let (w0, w1) = (b.sub(a0, y0), b.sub(p, y1));
                let (fm, f_n) = (wrap_corrected(b, msg, w0, k), wrap_corrected(b, s, w1, k));
                b.output(msg).output(a0).output(fm).output(f_n);
            }
            1 => {
                // slot 0: zero share, 1: mask s, 2: p, 3: y_R1
                let (s, p, yk) = (b.prg(1), b.prg(2), b.prg(3));
                let wk = b.sub(p, yk);
                let fm = wrap_corrected(b, s, wk, k);
                b.output(c).output(fm).output(p).output(yk);
            }
            _ => {
                // slot 0: zero share
                b.output(c);
            }
        }
    }

    /// The fused plan after its epilogue: round 1 (R0's message and `a − p` to R2, R1 and R2 swap `c_1`, `c_2`), one
    /// pass at R1 and R2 (the wrap term they send, and what of their result does not wait for round 2), round 2 (R1
    /// and R2 swap their terms), one pass adding the term received.
    fn finish_fused_exact(&mut self, outs: Vec<Buffer>, shape: &[usize], k: u32, step: u64) -> Result<Share> {
        let n = outs.first().map_or(0, |b| b.len());
        let (prev, next) = (self.prev(), self.next());
        match role(self.id(), step) {
            0 => {
                let [msg, a0, fm, f_n] = buffers(outs)?;
                let packed = self.pack_low_bits(&a0, k)?; // only its low k bits matter
                self.recycle([a0]);
                let a0 = packed;
                self.ride_along(prev, a0);
                // R0 knows its result: an announced ReLU's first message rides in round 2. A device backend computes
                // it before round 1, while round 1's messages are copied out and sent; the host after (sooner sent).
                let y = Share::from_pieces(shape, fm, f_n);
                let held = match self.queues_launches() {
                    true => Some(self.with_rides_held(|p| p.start_expected_relu(Some(&y), shape, step))?.1),
                    false => None,
                };
                self.round(vec![(prev, msg)], &[])?;
                match held {
                    Some(h) => self.ride_later(h),
                    None => self.start_expected_relu(Some(&y), shape, step)?,
                }
                self.round(vec![], &[])?;
                Ok(y)
            }
            1 => {
                let [c1, fm, p, yk] = buffers(outs)?;
                let c2 = single(self.round(vec![(next, self.copy_of(&c1))], &[(next, n)])?)?;
                // A = c1 + c2; b = msb(A); sent = b·p − y_R1; t = ⌊A/2^k⌋ − (b − sent)·2^(64−k)
                let mut kb = MapBuilder::new("exact_wrap_term_r1");
                let (x, y, pr, yr) = (kb.input(0), kb.input(1), kb.input(2), kb.input(3));
                let (sent, t) = wrap_term(&mut kb, x, y, pr, yr, k);
                kb.output(sent).output(t);
                // sent over p, t over y_R1 (element by element, read before written)
                let ins = [Buf(&c1), Buf(&c2), Prior(0), Prior(1)];
                let [sent, t] = buffers(self.map_updating(&kb.build(), &ins, &[], &[], vec![p, yk])?)?;
                self.recycle([c1]);
                self.start_expected_relu(None, shape, step)?;
                self.recycle([c2]);
                let f_n = self.add_wrap_term(sent, t, next, k)?;
                Ok(Share::from_pieces(shape, fm, f_n))
            }
            _ => {
                let [c2] = buffers(outs)?;
                self.expect_ride(next, packed_len(n, k));
                let [c1, msg] = buffers(self.round(vec![(prev, self.copy_of(&c2))], &[(prev, n), (next, n)])?)?;
                let ride = first_ride(&mut self.take_rides(), "R0's piece of its wrap bit")?;
                self.note_packed_read(&ride, n, k, next)?;
                // as R1 with a's piece a − p (read from R0's packed ride); and R2's piece R0 = msg − (a − p −
                // y_R0)·2^(64−k)
                let mut kb = MapBuilder::new("exact_wrap_term_r2");
                let (x, y, ar, yr, mr) = (kb.input(0), kb.input(1), kb.packed_input(2, k), kb.prg(0), kb.input(3));
                let (sent, t) = wrap_term(&mut kb, x, y, ar, yr, k);
                let wk = kb.sub(ar, yr);
                let f_n = wrap_corrected(&mut kb, mr, wk, k);
                kb.output(sent).output(t).output(f_n);
                // sent over c_1, t over the message, the piece R0 over c_2 (element by element, read before written)
                let ins = [Prior(0), Prior(2), Buf(&ride), Prior(1)];
                let streams = [self.wrap_y_r0(step)];
                let [sent, t, f_n] =
                    buffers(self.map_updating(&kb.build(), &ins, &[], &streams, vec![c1, msg, c2])?)?;
                self.recycle([ride]);
                self.start_expected_relu(None, shape, step)?;
                let fm = self.add_wrap_term(sent, t, prev, k)?;
                Ok(Share::from_pieces(shape, fm, f_n))
            }
        }
    }

    /// R1 and R2, round 2: send `sent` to `peer`, receive its term and return `t + got·2^(64−k)` (written over `t`;
    /// the term is read packed, as it travelled).
    fn add_wrap_term(&mut self, sent: Buffer, t: Buffer, peer: usize, k: u32) -> Result<Buffer> {
        let n = t.len();
        let packed = self.pack_low_bits(&sent, k)?;
        self.recycle([sent]);
        let got = single(self.round(vec![(peer, packed)], &[(peer, packed_len(n, k))])?)?;
        self.note_packed_read(&got, n, k, peer)?;
        if k == 0 {
            return Ok(t);
        }
        let mut kb = MapBuilder::new("exact_wrap_add");
        let (tr, g) = (kb.input(0), kb.packed_input(1, k));
        let shifted = kb.shl(g, 64 - k);
        let f = kb.add(tr, shifted);
        kb.output(f);
        let f = single(self.map_updating(&kb.build(), &[Prior(0), Buf(&got)], &[], &[], vec![t])?)?;
        self.recycle([got]);
        Ok(f)
    }

    /// After the exact-truncation epilogue, staged: the reshare round (R0's message and `a`'s piece ride to R2; R1 and
    /// R2 swap their sums), then the wrap correction.
    fn finish_staged_exact(&mut self, outs: Vec<Buffer>, shape: &[usize], k: u32, step: u64) -> Result<Share> {
        let n = outs.first().map_or(0, |b| b.len());
        let (prev, next) = (self.prev(), self.next());
        match role(self.id(), step) {
            0 => {
                let [msg, s, a] = buffers(outs)?;
                let (a0, a1) = self.share_r0_bit(&a, step)?;
                let packed = self.pack_low_bits(&a0, k)?;
                self.ride_along(prev, packed);
                self.round(vec![(prev, msg.clone())], &[])?;
                self.wrap_correct(step, Share::from_pieces(shape, msg, s), WrapBits::R0 { a0, a1 }, k)
            }
            1 => {
                let [c1, s] = buffers(outs)?;
                let a1 = self.peer_bit_piece(n, step)?;
                let c2 = single(self.round(vec![(next, c1.clone())], &[(next, n)])?)?;
                let (q, b) = self.unsigned_split(&c1, &c2, k)?;
                self.wrap_correct(step, Share::from_pieces(shape, s, q), WrapBits::Peer { a_piece: a1, b_bit: b }, k)
            }
            _ => {
                let [c2] = buffers(outs)?;
                self.expect_ride(next, packed_len(n, k));
                let [c1, msg] = buffers(self.round(vec![(prev, c2.clone())], &[(prev, n), (next, n)])?)?;
                let ride = first_ride(&mut self.take_rides(), "R0's piece of its wrap bit")?;
                let a0 = self.unpack_low_bits(&ride, n, k, next)?;
                let (q, b) = self.unsigned_split(&c1, &c2, k)?;
                self.wrap_correct(step, Share::from_pieces(shape, q, msg), WrapBits::Peer { a_piece: a0, b_bit: b }, k)
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
                let [msg, s, a] = buffers(self.map(&b.build(), &[x.mine(), x.next()], &[], &[rho, rho, mask], n)?)?;
                let (a0, a1) = self.share_r0_bit(&a, step)?;
                let packed = self.pack_low_bits(&a0, k)?;
                self.ride_along(prev, packed);
                self.round(vec![(prev, msg.clone())], &[])?;
                self.wrap_correct(step, Share::from_pieces(&shape, msg, s), WrapBits::R0 { a0, a1 }, k)
            }
            role => {
                // A = x_R2 − ρ: R1 holds x_R2 as `next`, R2 as `mine`.
                let a_piece = if role == 1 { x.next() } else { x.mine() };
                // A = x_R2 − ρ, its unsigned quotient ⌊A/2^k⌋ and msb(A), in one pass.
                let mut b = MapBuilder::new("exact_split_peer");
                let (v, r) = (b.input(0), b.prg(0));
                let big_a = b.sub(v, r);
                let q = b.op(cryptgpu_codegen::Op::Shr(big_a, k));
                let m = b.op(cryptgpu_codegen::Op::Shr(big_a, 63));
                b.output(q).output(m);
                let [q, bit] = buffers(self.map(&b.build(), &[a_piece], &[], &[rho], n)?)?;
                if role == 1 {
                    let s = {
                        let mut b = MapBuilder::new("exact_mask_r1");
                        let s = b.prg(0);
                        b.output(s);
                        single(self.map(
                            &b.build(),
                            &[],
                            &[],
                            &[self.stream(KeyWith::Prev, Purpose::TruncMask, step)],
                            n,
                        )?)?
                    };
                    let a1 = self.peer_bit_piece(n, step)?;
                    self.round(vec![], &[])?;
                    let bits = WrapBits::Peer { a_piece: a1, b_bit: bit };
                    self.wrap_correct(step, Share::from_pieces(&shape, s, q), bits, k)
                } else {
                    self.expect_ride(next, packed_len(n, k));
                    let msg = single(self.round(vec![], &[(next, n)])?)?;
                    let ride = first_ride(&mut self.take_rides(), "R0's piece of its wrap bit")?;
                    let a0 = self.unpack_low_bits(&ride, n, k, next)?;
                    let bits = WrapBits::Peer { a_piece: a0, b_bit: bit };
                    self.wrap_correct(step, Share::from_pieces(&shape, q, msg), bits, k)
                }
            }
        }
    }

    /// R0: arithmetic pieces `(a − p, p)` of its bit `a`, `p` a PRF word shared with R1.
    pub(super) fn share_r0_bit(&self, a: &Buffer, step: u64) -> Result<(Buffer, Buffer)> {
        let mut b = MapBuilder::new("exact_share_a");
        let (av, p) = (b.input(0), b.prg(0));
        let a0 = b.sub(av, p);
        b.output(a0).output(p);
        let [a0, a1] = buffers(self.map(
            &b.build(),
            &[a],
            &[],
            &[self.stream(KeyWith::Next, self.wrap_piece_purpose(), step)],
            a.len(),
        )?)?;
        Ok((a0, a1))
    }

    /// R1: its piece `p` of R0's bit.
    pub(super) fn peer_bit_piece(&self, n: usize, step: u64) -> Result<Buffer> {
        let mut b = MapBuilder::new("exact_share_a_peer");
        let p = b.prg(0);
        b.output(p);
        single(self.map(&b.build(), &[], &[], &[self.stream(KeyWith::Prev, self.wrap_piece_purpose(), step)], n)?)
    }

    /// The purpose of the PRF words `p` that mask R0's wrap bit (a test mutation reuses the message mask's).
    fn wrap_piece_purpose(&self) -> Purpose {
        if self.mutated(crate::mutation::Mutation::TruncationMaskReuse) {
            Purpose::TruncMask
        } else {
            Purpose::Reshare
        }
    }

    /// R1 and R2: `A = c1 + c2`, its unsigned quotient `⌊A/2^k⌋` and `msb(A)`.
    pub(super) fn unsigned_split(&self, c1: &Buffer, c2: &Buffer, k: u32) -> Result<(Buffer, Buffer)> {
        let mut b = MapBuilder::new("exact_split_a");
        let (x, y) = (b.input(0), b.input(1));
        let a = b.add(x, y);
        let q = b.op(cryptgpu_codegen::Op::Shr(a, k));
        let m = b.op(cryptgpu_codegen::Op::Shr(a, 63));
        b.output(q).output(m);
        let [a, b] = buffers(self.map(&b.build(), &[c1, c2], &[], &[], c1.len())?)?;
        Ok((a, b))
    }

    /// `base − (a ∨ b)·2^(64−k)` with `a ∨ b = a + b − a·b` (second round). `a` is R0's bit, shared as
    /// `(a − p, p, 0)`; `b` is the bit R1 and R2 both know, shared as `(0, 0, b)`. The product needs no
    /// multiplication protocol: `a·b = b·p + b·(a − p)`, R1 knowing the first term and R2 the second, a 2-out-of-2
    /// sharing they re-replicate in one round (pieces `y_{R0}`, `y_{R1}` from the PRF keys R0 shares with each, R1 and
    /// R2 swapping their terms minus those). Only R1 and R2 send: one `k`-bit term per element each, packed
    /// ([`Party::pack_low_bits`]). Each party computes its pieces of `w` and the corrected result in ONE pass after
    /// the round.
    fn wrap_correct(&mut self, step: u64, base: Share, bits: WrapBits, k: u32) -> Result<Share> {
        let received = match &bits {
            WrapBits::R0 { .. } => {
                self.round(vec![], &[])?;
                None
            }
            WrapBits::Peer { a_piece, b_bit } => {
                let (sent, y_known, peer) = self.wrap_term_out(a_piece, b_bit, step)?;
                let n = a_piece.len();
                let packed = self.pack_low_bits(&sent, k)?;
                let got = single(self.round(vec![(peer, packed)], &[(peer, packed_len(n, k))])?)?;
                Some((sent, self.unpack_low_bits(&got, n, k, peer)?, y_known))
            }
        };
        self.wrap_correction(base, bits, received, k, step)
    }

    /// R1 and R2 before the wrap product's round: the term they send (R1 `b·p − y_R1` to R2, R2 `b·(a − p) − y_R0`
    /// to R1), their known PRF word `y`, and the peer it goes to.
    pub(super) fn wrap_term_out(
        &self,
        a_piece: &Buffer,
        b_bit: &Buffer,
        step: u64,
    ) -> Result<(Buffer, Buffer, crate::PartyId)> {
        // R1: p = a's piece R1, y_R1 with R0 (Prev); R2: a − p = a's piece R0, y_R0 with R0 (Next).
        let (key, peer) =
            if role(self.id(), step) == 1 { (KeyWith::Prev, self.next()) } else { (KeyWith::Next, self.prev()) };
        let mut tb = MapBuilder::new("exact_wrap_term");
        let (ap, bb, yk) = (tb.input(0), tb.input(1), tb.prg(0));
        let term = tb.mul(bb, ap);
        let sent = tb.sub(term, yk);
        tb.output(sent).output(yk);
        let stream = self.stream(key, Purpose::Wrap, step);
        let [sent, y_known] = buffers(self.map(&tb.build(), &[a_piece, b_bit], &[], &[stream], a_piece.len())?)?;
        Ok((sent, y_known, peer))
    }

    /// After the wrap product's round: `base − w·2^(64−k)` in one pass. `received`: a peer's sent and received
    /// terms and its known PRF word (`None` for R0, whose pieces of `w` need no message).
    pub(super) fn wrap_correction(
        &self,
        base: Share,
        bits: WrapBits,
        received: Option<(Buffer, Buffer, Buffer)>,
        k: u32,
        step: u64,
    ) -> Result<Share> {
        let n = base.len();
        let shape = base.shape().to_vec();
        let mut kb = MapBuilder::new("exact_wrap_correction");
        let (bm, bn) = (kb.input(0), kb.input(1));
        let outs = match (bits, received) {
            (WrapBits::R0 { a0, a1 }, None) => {
                // w_R0 = (a − p) − y_R0, w_R1 = p − y_R1.
                let (a0r, a1r, y0, y1) = (kb.input(2), kb.input(3), kb.prg(0), kb.prg(1));
                let (w0, w1) = (kb.sub(a0r, y0), kb.sub(a1r, y1));
                let (fm, f_n) = (wrap_corrected(&mut kb, bm, w0, k), wrap_corrected(&mut kb, bn, w1, k));
                kb.output(fm).output(f_n);
                let streams =
                    [self.stream(KeyWith::Prev, Purpose::Wrap, step), self.stream(KeyWith::Next, Purpose::Wrap, step)];
                self.map(&kb.build(), &[base.mine(), base.next(), &a0, &a1], &[], &streams, n)?
            }
            (WrapBits::Peer { a_piece, b_bit }, Some((sent, got, y_known))) => {
                // y_R2 = both sent terms; w_R2 = b − y_R2; the other piece is a's known piece minus the known y.
                let (s0, s1, br, ar, yr) = (kb.input(2), kb.input(3), kb.input(4), kb.input(5), kb.input(6));
                let y2 = kb.add(s0, s1);
                let w2 = kb.sub(br, y2);
                let wk = kb.sub(ar, yr);
                // R1 holds (piece R1, piece R2) = (wk, w2); R2 holds (piece R2, piece R0) = (w2, wk).
                let (wm, wn) = if role(self.id(), step) == 1 { (wk, w2) } else { (w2, wk) };
                let (fm, f_n) = (wrap_corrected(&mut kb, bm, wm, k), wrap_corrected(&mut kb, bn, wn, k));
                kb.output(fm).output(f_n);
                let inputs: [&Buffer; 7] = [base.mine(), base.next(), &sent, &got, &b_bit, &a_piece, &y_known];
                self.map(&kb.build(), &inputs, &[], &[], n)?
            }
            _ => return Err(Error::Internal("exact truncation: the wrap bits and the received terms disagree".into())),
        };
        let [mine, next] = buffers(outs)?;
        Ok(Share::from_pieces(&shape, mine, next))
    }
}

/// `base − w·2^(64−k)`; for `k = 0` (division by 1) the correction is a multiple of 2^64, i.e. zero.
fn wrap_corrected(b: &mut MapBuilder, base: Reg, w: Reg, k: u32) -> Reg {
    if k == 0 {
        base
    } else {
        let c = b.shl(w, 64 - k);
        b.sub(base, c)
    }
}

/// R1's and R2's pass after round 1, from `c_1`, `c_2`, their piece of `a` and their word `y`: `A = c_1 + c_2`,
/// `b = msb(A)`, the term `sent = b·piece − y` and `t = ⌊A/2^k⌋ − (b − sent)·2^(64−k)` (their result piece, less
/// the peer's term, which round 2 brings).
fn wrap_term(b: &mut MapBuilder, c1: Reg, c2: Reg, piece: Reg, y: Reg, k: u32) -> (Reg, Reg) {
    let a = b.add(c1, c2);
    let q = b.op(Op::Shr(a, k));
    let bit = b.op(Op::Shr(a, 63));
    let term = b.mul(bit, piece);
    let sent = b.sub(term, y);
    let w = b.sub(bit, sent);
    (sent, wrap_corrected(b, q, w, k))
}
