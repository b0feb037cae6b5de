//! The sign of a shared value (DReLU); [`super::comparison`] builds the comparisons of two shares on it,
//! [`super::relu`] ReLU (the sign of `−x`, then [`super::injection`]'s multiplication by the shared bit).
//!
//! **Sign (A2B of the most significant bit, by digits).** Roles `R0, R1, R2` rotate with the step. R0 holds two
//! pieces and adds them, `a = x_{R0} + x_{R1}`; R1 and R2 both hold `b = x_{R2}`; `x = a + b`. The sign is bit
//! `high` of `a + b`: `a_high ⊕ b_high ⊕ C`, with `C` the carry into bit `high` from bits `low..high`. Those bits
//! are cut into `D = ⌈(high − low)/4⌉` digits of 4 bits (zero bits below `low` fill the lowest).
//!
//! 1. *One-hot* (round 1): R0 sends R2 the one-hot code of each of its digits `d_j` (16 bits) and `a_high`, masked
//!    by PRF bits `ρ` it shares with R1. A digit's carry-out `G_j = [d_j + e_j ≥ 16]` and propagate
//!    `P_j = [d_j + e_j = 15]` (`e_j` the digit of `b`, which R1 and R2 know) are XORs of one-hot bits chosen by
//!    `e_j`, so R2 (from the message) and R1 (from `ρ`) compute a 2-out-of-2 XOR sharing of every `G_j`, `P_j` and
//!    `a_high ⊕ b_high` without further messages.
//! 2. *Re-replication* (round 2): R1 and R2 each send the other their share masked by PRF bits shared with R0;
//!    every party then holds replicated binary shares.
//! 3. *Carry tree* (`⌈log2 D⌉` rounds): a parallel-prefix tree over the digits' `(G, P)`, a level combining
//!    adjacent groups, `G = G_hi ⊕ P_hi∧G_lo`, `P = P_hi∧P_lo` (the lowest group never needs its `P`).
//!
//! **Cost** ([`cost::sign_rounds`](super::cost::sign_rounds), [`cost::drelu_bytes`](super::cost::drelu_bytes)):
//! `2 + ⌈log2 D⌉` rounds — 6 for the default (exact) 64-bit range, 6 for values bounded by `2^40`; R0 sends
//! `16·D + 1` bits per element, R1 and R2 `2·D` bits plus the tree's ANDs (`≈ 2·D` bits each).
//!
//! **Bit range** ([`SignBits`]): the default `0..63` is exact for every value. A narrower range is cheaper: it is
//! exact for `−2^high ≤ x < 2^high` outside `0 ≤ x < 2^low`, where it may call a non-negative value negative. A
//! value outside `±2^high` gets an arbitrary sign: the executor chooses `high` from the model owner's range
//! analysis, which refuses a run whose values could leave the range (see [`SignBits::for_bound`]).
//!
//! **ReLU** ([`super::relu`]) takes the last AND's shares open (`SignEnd::Open`) and merges that round with its
//! own reveal.

use super::base::{buffers, role, single};
use super::binary::BinShare;
use crate::backend::Source;
use crate::buffer::Buffer;
use crate::party::{KeyWith, Party};
use crate::prg::Purpose;
use crate::share::Share;
use crate::{Error, Result};
use cryptgpu_codegen::{Affine, BitKernel, BitOp, GatherKernel, MapBuilder, Op, Reg};

/// Bits per digit of the sign circuit's one-hot stage.
pub const DIGIT_BITS: u32 = 4;
/// Values of a digit: the width of its one-hot code.
pub const DIGIT_VALUES: usize = 1 << DIGIT_BITS;

/// Which bits of the ring element the sign is computed from (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignBits {
    /// Carries from bits below this are ignored.
    pub low: u32,
    /// The bit read as the sign (63: the true sign bit).
    pub high: u32,
}

impl Default for SignBits {
    fn default() -> Self {
        SignBits { low: 0, high: 63 }
    }
}

impl SignBits {
    /// The exact range for values with `|x| < 2^bits` (`1 ≤ bits ≤ 63`): every carry counted, bit `bits` read as the
    /// sign. A value outside `[−2^bits, 2^bits)` gets an arbitrary sign.
    pub fn for_bound(bits: u32) -> Result<SignBits> {
        let b = SignBits { low: 0, high: bits };
        b.check()?;
        Ok(b)
    }

    /// Digits of the one-hot stage, `⌈(high − low)/4⌉`.
    pub fn digits(self) -> usize {
        (self.high - self.low).div_ceil(DIGIT_BITS) as usize
    }

    /// Zero bits appended below `low` so that every digit has 4 bits.
    fn pad(self) -> u32 {
        DIGIT_BITS * self.digits() as u32 - (self.high - self.low)
    }

    pub(crate) fn check(self) -> Result<()> {
        if self.low >= self.high || self.high > 63 {
            return Err(Error::Invalid(format!("sign bits {}..{}: need low < high ≤ 63", self.low, self.high)));
        }
        Ok(())
    }
}

/// The replicated planes after the sign's second round.
pub(crate) struct SignPlanes {
    /// Generate bits of the groups (digits at first).
    g: BinShare,
    /// Propagate bits of every group but the lowest (`None` with one group).
    p_rest: Option<BinShare>,
    /// `a_high ⊕ b_high`.
    p_high: BinShare,
}

/// How the sign circuit ends for a caller that takes its last AND's shares directly.
pub(crate) enum SignEnd {
    /// The sign as a replicated plane (no AND was left).
    Closed(BinShare),
    /// The sign is `l ⊕ c_0 ⊕ c_1 ⊕ c_2`, `c` this party's share.
    Open { l: BinShare, c: Buffer },
}

/// The sign circuit after its first round.
pub(crate) struct SignState {
    bits: SignBits,
    role: usize,
    /// Elements.
    n: usize,
    /// R1 and R2: this party's 2-out-of-2 XOR share of the planes `G_0..G_D | P_1..P_D | a_high ⊕ b_high`
    /// (empty for R0).
    xor_share: Buffer,
}

/// R1's and R2's work of the sign's first round that needs no message (see [`Party::sign_local`]).
struct SignLocal {
    bits: SignBits,
    role: usize,
    n: usize,
    /// The digit planes of their piece `b`.
    e: [Buffer; DIGIT_BITS as usize],
    /// The plane of `b`'s top bit.
    b_top: Buffer,
    /// R1's one-hot mask (`None` at R2, which receives the masked codes).
    rho: Option<Buffer>,
}

impl Party {
    /// The bit range of the model layer's ReLUs from now on (the executor sets it from its declared ReLU bound;
    /// the default is the full, exact range).
    pub fn set_relu_bits(&mut self, bits: SignBits) -> Result<()> {
        bits.check()?;
        self.relu_bits = bits;
        Ok(())
    }

    /// The bit range of the model layer's ReLUs.
    pub fn relu_bits(&self) -> SignBits {
        self.relu_bits
    }

    /// `1` where `x ≥ 0`, else `0`: one bit plane (6 rounds for the default bits).
    pub fn drelu(&mut self, x: &Share) -> Result<BinShare> {
        self.drelu_bits(x, SignBits::default())
    }

    /// [`Party::drelu`] over a chosen bit range.
    pub fn drelu_bits(&mut self, x: &Share, bits: SignBits) -> Result<BinShare> {
        bits.check()?;
        self.call(|p| {
            let st = p.sign_first_round(x, bits)?;
            let msb = p.sign_rest(st)?;
            p.not(&msb)
        })
    }

    /// Round 1 of the sign (see the module docs): R0 sends R2 its digits' one-hot codes and `a_high`, masked; R1 and
    /// R2 derive their XOR shares of every digit's generate and propagate bit.
    pub(crate) fn sign_first_round(&mut self, x: &Share, bits: SignBits) -> Result<SignState> {
        let step = self.next_step();
        let (prev, next) = (self.prev(), self.next());
        if role(self.id(), step) == 0 {
            let msg = self.sign_one_hot(x, bits, step)?;
            self.round(vec![(prev, msg)], &[])?;
            return self.sign_shares(x, bits, step, None);
        }
        // R1 and R2: the digits of their piece do not wait for R0's codes (computed while those are on their way).
        let local = self.sign_local(x, bits, step)?;
        let codes = match role(self.id(), step) {
            1 => {
                self.round(vec![], &[])?;
                None
            }
            _ => Some(single(self.round(vec![], &[(next, one_hot_words(x.len(), bits))])?)?),
        };
        self.sign_combine(local, codes)
    }

    /// R0's message of the sign's first round at `step`: the one-hot codes of the digits of `a = x_{R0} + x_{R1}`
    /// and `a_high`, masked by PRF bits shared with R1.
    pub(crate) fn sign_one_hot(&self, x: &Share, bits: SignBits, step: u64) -> Result<Buffer> {
        let n = x.len();
        let (d, w) = (bits.digits(), n.div_ceil(64));
        let mut k = MapBuilder::new("sign_digits_r0");
        let (m, nx) = (k.input(0), k.input(1));
        let a = k.add(m, nx);
        emit_digits(&mut k, a, bits);
        let [digits, top] = buffers(self.map(&k.build(), &[x.mine(), x.next()], &[], &[], n)?)?;
        let (q, top) = self.digit_planes(&digits, &top, n, bits)?;
        let mut k = MapBuilder::new("sign_one_hot");
        let regs: Vec<Reg> = (0..DIGIT_BITS as u16).map(|i| k.input(i)).collect();
        for m in emit_minterms(&mut k, &regs) {
            k.output(m);
        }
        let codes = self.map(&k.build(), &[&q[0], &q[1], &q[2], &q[3]], &[], &[], d * w)?;
        let mut parts: Vec<(&Buffer, std::ops::Range<usize>)> = codes.iter().map(|c| (c, 0..c.len())).collect();
        parts.push((&top, 0..top.len()));
        let plain = self.assemble(&parts)?;
        if self.mutated(crate::mutation::Mutation::SignOneHotUnmasked) {
            return Ok(plain);
        }
        let mut k = MapBuilder::new("sign_mask_one_hot");
        let (v, r) = (k.input(0), k.prg(0));
        let masked = k.xor(v, r);
        k.output(masked);
        let rho = self.stream(KeyWith::Next, Purpose::Reshare, step);
        single(self.map(&k.build(), &[&plain], &[], &[rho], one_hot_words(n, bits))?)
    }

    /// After the sign's first round at `step`: R1 and R2's XOR shares of the digits' generate and propagate bits
    /// (R1 from `ρ`, R2 from the `codes` it received); R0 holds none.
    pub(crate) fn sign_shares(&self, x: &Share, bits: SignBits, step: u64, codes: Option<Buffer>) -> Result<SignState> {
        if role(self.id(), step) == 0 {
            return Ok(SignState { bits, role: 0, n: x.len(), xor_share: Buffer::default() });
        }
        let local = self.sign_local(x, bits, step)?;
        self.sign_combine(local, codes)
    }

    /// R1 and R2's part of the sign's first round that needs no message: the digit planes of their piece
    /// `b = x_{R2}` and R1's codes (its PRF mask: R1's share of R0's masked codes).
    fn sign_local(&self, x: &Share, bits: SignBits, step: u64) -> Result<SignLocal> {
        let n = x.len();
        let role = role(self.id(), step);
        // b = x_{R2}: R1 holds it as `next`, R2 as `mine`.
        let b = if role == 1 { x.next() } else { x.mine() };
        let mut k = MapBuilder::new("sign_digits_peer");
        let v = k.input(0);
        emit_digits(&mut k, v, bits);
        let [digits, top] = buffers(self.map(&k.build(), &[b], &[], &[], n)?)?;
        let (e, b_top) = self.digit_planes(&digits, &top, n, bits)?;
        let rho = if role == 1 {
            let mut k = MapBuilder::new("sign_mask");
            let r = k.prg(0);
            k.output(r);
            let rho = self.stream(KeyWith::Prev, Purpose::Reshare, step);
            let mut rho = single(self.map(&k.build(), &[], &[], &[rho], one_hot_words(n, bits))?)?;
            if self.mutated(crate::mutation::Mutation::SignOneHotUnmasked) {
                rho.iter_mut().for_each(|w| *w = 0);
            }
            Some(rho)
        } else {
            None
        };
        Ok(SignLocal { bits, role, n, e, b_top, rho })
    }

    /// R1 and R2, after the first round: their XOR shares of the digits' generate and propagate bits from the codes
    /// (R1's mask, R2's received `codes`).
    fn sign_combine(&self, local: SignLocal, codes: Option<Buffer>) -> Result<SignState> {
        let SignLocal { bits, role, n, e, b_top, rho } = local;
        let (d, w) = (bits.digits(), n.div_ceil(64));
        let codes = match (rho, codes) {
            (Some(rho), _) => rho,
            (None, Some(codes)) if codes.len() == one_hot_words(n, bits) => codes,
            _ => return Err(Error::Internal("R2 of the sign has no one-hot codes of the right size".into())),
        };
        let xor_share = self.digit_carries(&codes, &e, (role == 2).then_some(&b_top), d, w)?;
        Ok(SignState { bits, role, n, xor_share })
    }

    /// A digit word and a top-bit word per element → the digits' bit planes (`[i]`: bit `i` of every digit, `D`
    /// planes) and the top bit's plane.
    fn digit_planes(
        &self,
        digits: &Buffer,
        top: &Buffer,
        n: usize,
        bits: SignBits,
    ) -> Result<([Buffer; DIGIT_BITS as usize], Buffer)> {
        let d = bits.digits();
        let w = n.div_ceil(64);
        let to_planes = BitKernel { name: "sign_digit_planes".into(), op: BitOp::ToPlanes, n, planes: 4 * d };
        let planes = self.bits(&to_planes, digits)?;
        let mut q: [Buffer; DIGIT_BITS as usize] = Default::default();
        for (i, qi) in q.iter_mut().enumerate() {
            let k = GatherKernel {
                name: "sign_digit_bit".into(),
                in_shape: vec![DIGIT_BITS as usize * d, w],
                out_shape: vec![d, w],
                reduce_shape: vec![],
                coords: vec![Affine { offset: i as i64, terms: vec![(0, DIGIT_BITS as i64)] }, Affine::axis(1)],
            };
            *qi = self.gather(&k, &planes)?;
        }
        let top_plane = BitKernel { name: "sign_top_plane".into(), op: BitOp::ToPlanes, n, planes: 1 };
        Ok((q, self.bits(&top_plane, top)?))
    }

    /// R1 and R2: from the (masked) one-hot codes and `b`'s digit planes, this party's XOR share of
    /// `G_0..G_D | P_1..P_D | a_high ⊕ b_high` (R2, the one that adds `b_high`, passes it).
    fn digit_carries(
        &self,
        codes: &Buffer,
        e: &[Buffer; DIGIT_BITS as usize],
        b_top: Option<&Buffer>,
        d: usize,
        w: usize,
    ) -> Result<Buffer> {
        let dw = d * w;
        let mut k = MapBuilder::new("sign_digit_carries");
        let x: Vec<Reg> = (0..DIGIT_VALUES as u16).map(|i| k.input(i)).collect();
        let q: Vec<Reg> = (0..DIGIT_BITS as u16).map(|i| k.input(DIGIT_VALUES as u16 + i)).collect();
        let m = emit_minterms(&mut k, &q);
        // suffix[c] = x_c ⊕ … ⊕ x_15: the one-hot bits of the digit values ≥ c.
        let mut suffix = [x[DIGIT_VALUES - 1]; DIGIT_VALUES];
        for c in (1..DIGIT_VALUES - 1).rev() {
            suffix[c] = k.xor(x[c], suffix[c + 1]);
        }
        // G = ⊕_{e ≥ 1} [digit of b = e] ∧ [digit of a ≥ 16 − e]; P = ⊕_e [digit of b = e] ∧ [digit of a = 15 − e].
        let mut g = k.and(m[1], suffix[DIGIT_VALUES - 1]);
        for v in 2..DIGIT_VALUES {
            let t = k.and(m[v], suffix[DIGIT_VALUES - v]);
            g = k.xor(g, t);
        }
        let mut p = k.and(m[0], x[DIGIT_VALUES - 1]);
        for v in 1..DIGIT_VALUES {
            let t = k.and(m[v], x[DIGIT_VALUES - 1 - v]);
            p = k.xor(p, t);
        }
        k.output(g).output(p);
        let mut inputs: Vec<Source<'_>> =
            (0..DIGIT_VALUES).map(|c| Source::Range(codes, c * dw..(c + 1) * dw)).collect();
        inputs.extend(e.iter().map(Source::Buf));
        let [g, p] = buffers(self.map_sources(&k.build(), &inputs, &[], &[], dw)?)?;
        let top_range = DIGIT_VALUES * dw..codes.len();
        let top_xor;
        let top = match b_top {
            Some(b) => {
                let mut k = MapBuilder::new("sign_top_xor");
                let (t, bt) = (k.input(0), k.input(1));
                let v = k.xor(t, bt);
                k.output(v);
                let ins = [Source::Range(codes, top_range.clone()), Source::Buf(b)];
                top_xor = single(self.map_sources(&k.build(), &ins, &[], &[], top_range.len())?)?;
                (&top_xor, 0..top_xor.len())
            }
            None => (codes, top_range),
        };
        self.assemble(&[(&g, 0..g.len()), (&p, w..p.len()), top])
    }

    /// The rest of the sign circuit: re-replication, the carry tree, the sign plane (`1` = negative).
    fn sign_rest(&mut self, st: SignState) -> Result<BinShare> {
        let planes = self.sign_rereplicate(st, |_| Ok(()))?;
        let SignPlanes { g, p_high, .. } = self.carry_tree(planes, 1)?;
        self.xor(&p_high, &g)
    }

    /// Round 2 of the sign: R1 and R2 re-replicate their XOR shares (masked by PRF bits each shares with R0); then
    /// `after_second_round` runs (the injection's stage that waited for this round's riders).
    pub(crate) fn sign_rereplicate(
        &mut self,
        st: SignState,
        after_second_round: impl FnOnce(&mut Party) -> Result<()>,
    ) -> Result<SignPlanes> {
        let SignState { bits, role, n, xor_share } = st;
        let d = bits.digits();
        let w = n.div_ceil(64);
        let words = 2 * d * w;
        let step = self.next_step();
        let (prev, next) = (self.prev(), self.next());
        let sigma = |p: &Party, key| p.stream(key, Purpose::Reshare, step);
        // Pieces: v_{R0} = σ0 (R0 with R2), v_{R1} = σ1 (R0 with R1), v_{R2} = u1 ⊕ σ1 ⊕ u2 ⊕ σ0.
        let (mine, nxt) = match role {
            0 => {
                let mut k = MapBuilder::new("sign_rereplicate_r0");
                let (s0, s1) = (k.prg(0), k.prg(1));
                k.output(s0).output(s1);
                let [s0, s1] = buffers(self.map(
                    &k.build(),
                    &[],
                    &[],
                    &[sigma(self, KeyWith::Prev), sigma(self, KeyWith::Next)],
                    words,
                )?)?;
                self.round(vec![], &[])?;
                (s0, s1)
            }
            role => {
                // R1 masks with σ1 (key with R0 = Prev) and sends to R2 (next); R2 with σ0 (key with R0 = Next), to R1.
                let (key, peer) = if role == 1 { (KeyWith::Prev, next) } else { (KeyWith::Next, prev) };
                let mut k = MapBuilder::new("sign_rereplicate_mask");
                let (u, s) = (k.input(0), k.prg(0));
                let t = k.xor(u, s);
                k.output(t).output(s);
                let [t, s] = buffers(self.map(&k.build(), &[&xor_share], &[], &[sigma(self, key)], words)?)?;
                let got = single(self.round(vec![(peer, t.clone())], &[(peer, words)])?)?;
                let mut k = MapBuilder::new("sign_rereplicate_combine");
                let (a, b) = (k.input(0), k.input(1));
                let v = k.xor(a, b);
                k.output(v);
                let v_r2 = single(self.map(&k.build(), &[&t, &got], &[], &[], words)?)?;
                if role == 1 {
                    (s, v_r2)
                } else {
                    (v_r2, s)
                }
            }
        };
        let planes = |from: usize, count: usize| {
            let range = from * w..(from + count) * w;
            Ok::<_, Error>(BinShare::from_pieces(
                n,
                count,
                self.assemble(&[(&mine, range.clone())])?,
                self.assemble(&[(&nxt, range)])?,
            ))
        };
        let out = SignPlanes {
            g: planes(0, d)?,
            p_rest: (d > 1).then(|| planes(d, d - 1)).transpose()?,
            p_high: planes(2 * d - 1, 1)?,
        };
        after_second_round(self)?;
        Ok(out)
    }

    /// The carry tree's levels (one round each) until at most `until` groups are left.
    fn carry_tree(&mut self, planes: SignPlanes, until: usize) -> Result<SignPlanes> {
        let SignPlanes { mut g, mut p_rest, p_high } = planes;
        while g.planes() > until {
            let groups = g.planes();
            let pairs = groups / 2;
            let pr =
                p_rest.as_ref().ok_or_else(|| Error::Internal("a carry-tree level without propagate bits".into()))?;
            let hi_p = self.select_planes(pr, 0, 2, pairs)?;
            let lo_g = self.select_planes(&g, 0, 2, pairs)?;
            let hi_g = self.select_planes(&g, 1, 2, pairs)?;
            let mut ands = vec![(hi_p, lo_g)];
            if pairs > 1 {
                ands.push((self.select_planes(pr, 2, 2, pairs - 1)?, self.select_planes(pr, 1, 2, pairs - 1)?));
            }
            let refs: Vec<(&BinShare, &BinShare)> = ands.iter().map(|(x, y)| (x, y)).collect();
            let mut out = self.and_many(&refs)?.into_iter();
            let carry = out.next().ok_or_else(|| Error::Internal("the carry AND returned nothing".into()))?;
            let mut new_g = self.xor(&hi_g, &carry)?;
            let mut new_p = out.next();
            if groups % 2 == 1 {
                let last_g = self.select_planes(&g, groups - 1, 1, 1)?;
                let last_p = self.select_planes(pr, groups - 2, 1, 1)?;
                new_g = self.stack_planes(&[&new_g, &last_g])?;
                new_p = Some(match new_p {
                    Some(p) => self.stack_planes(&[&p, &last_p])?,
                    None => last_p,
                });
            }
            g = new_g;
            p_rest = new_p;
        }
        Ok(SignPlanes { g, p_rest, p_high })
    }

    /// The carry tree without its last round: with two groups left, the sign is `L ⊕ (P_hi ∧ G_lo)` with
    /// `L = P_high ⊕ G_hi`; the AND's local step gives this party's 3-out-of-3 share `c` of it, which a caller
    /// sends on directly (ReLU's reveal). With a single digit there is no AND: the sign itself.
    pub(crate) fn sign_tree_open(&mut self, planes: SignPlanes) -> Result<SignEnd> {
        let SignPlanes { g, p_rest, p_high } = self.carry_tree(planes, 2)?;
        if g.planes() == 1 {
            return Ok(SignEnd::Closed(self.xor(&p_high, &g)?));
        }
        let hi_p = p_rest.ok_or_else(|| Error::Internal("the last carry level without its propagate bit".into()))?;
        let lo_g = self.select_planes(&g, 0, 1, 1)?;
        let hi_g = self.select_planes(&g, 1, 1, 1)?;
        let step = self.next_step();
        let c = self.and_local(&hi_p, &lo_g, step)?;
        Ok(SignEnd::Open { l: self.xor(&p_high, &hi_g)?, c })
    }
}

/// Words of R0's one-hot message for `n` elements: 16 planes per digit and the top bit's plane.
pub(crate) fn one_hot_words(n: usize, bits: SignBits) -> usize {
    (DIGIT_VALUES * bits.digits() + 1) * n.div_ceil(64)
}

/// Emit `digits = ((v >> low) mod 2^(high − low)) << pad` and `top = bit high of v`, the two outputs.
fn emit_digits(k: &mut MapBuilder, v: Reg, bits: SignBits) {
    let shifted = if bits.low > 0 { k.op(Op::Shr(v, bits.low)) } else { v };
    let mask = k.constant((1u64 << (bits.high - bits.low)) - 1);
    let kept = k.and(shifted, mask);
    let digits = if bits.pad() > 0 { k.shl(kept, bits.pad()) } else { kept };
    let high = k.op(Op::Shr(v, bits.high));
    let one = k.constant(1);
    let top = k.and(high, one);
    k.output(digits).output(top);
}

/// The 16 minterms of a digit's four bit planes `q`: minterm `v` is `1` where the digit equals `v`.
fn emit_minterms(k: &mut MapBuilder, q: &[Reg]) -> Vec<Reg> {
    let nq: Vec<Reg> = q.iter().map(|&r| k.op(Op::Not(r))).collect();
    let mut pair = |a: usize, b: usize| -> [Reg; 4] {
        [k.and(nq[a], nq[b]), k.and(q[a], nq[b]), k.and(nq[a], q[b]), k.and(q[a], q[b])]
    };
    let lo = pair(0, 1);
    let hi = pair(2, 3);
    (0..DIGIT_VALUES).map(|v| k.and(lo[v & 3], hi[v >> 2])).collect()
}
