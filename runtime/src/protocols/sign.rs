//! The sign of a shared value (DReLU), ReLU, and multiplication by a shared bit; [`super::comparison`] builds
//! the comparisons of two shares on the sign.
//!
//! **Sign (A2B of the most significant bit).** Roles `R0, R1, R2` rotate with the step. R0 holds two pieces and
//! adds them, `a = x_{R0} + x_{R1}`; R1 and R2 both hold `b = x_{R2}`; `x = a + b`. R0 binary-shares `a` in bit-plane
//! layout with one message (`a ⊕ ρ` to R2, `ρ` a PRF word it shares with R1); `b` needs no message. The sign is bit
//! `high` of `a + b`: `P_high ⊕ C_high`, where the carry `C_high` comes from a log-depth parallel-prefix tree over the
//! generate/propagate planes of positions `low..high` (`G = a∧b`, `P = a⊕b`; a level combines adjacent groups,
//! `G = G_hi ⊕ P_hi∧G_lo`, `P = P_hi∧P_lo`, and the lowest group never needs its `P`). Only the planes a level needs
//! are ANDed, so every party sends about 23 bytes per element over the 64-bit range, in `1 + 1 + ⌈log2(high−low)⌉`
//! rounds (8 for the default range).
//!
//! **Bit range** ([`SignBits`]): the default `0..63` is exact for every value. A narrower range is faster: it is exact
//! for `−2^high ≤ x < 2^high` outside `0 ≤ x < 2^low`, where it may call a non-negative value negative.
//!
//! **Multiplication by a shared bit** (bit injection fused with the product, `v·β`): a party that will not see the
//! result (R0 of its own roles) draws a private random bit `r`, shares it arithmetically (one word to R2) and the
//! parties compute `z = v·r` (one ring product); `c = β ⊕ r` is revealed to R1 and R2 only (R0 sends
//! `β_{R0} ⊕ β_{R1} ⊕ r`, a bit per element); then `v·β = c·v + (1 − 2c)·z` is a 2-out-of-2 sharing between R1 and
//! R2, re-replicated in one round. The sharing of `r` and the product `z` do not depend on `β`, so ReLU runs them in
//! the first two rounds of the sign circuit: **ReLU is 10 rounds** (8 + reveal + re-replication) and at most ≈ 47
//! bytes per element per party.

use super::base::{buffers, emit_zero, role, single, ZeroKind};
use super::binary::BinShare;
use crate::party::{KeyWith, Party};
use crate::prg::Purpose;
use crate::share::Share;
use crate::{Error, Result};
use cryptgpu_codegen::{BitKernel, BitOp, MapBuilder};

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
    fn check(self) -> Result<()> {
        if self.low >= self.high || self.high > 63 {
            return Err(Error::Invalid(format!("sign bits {}..{}: need low < high ≤ 63", self.low, self.high)));
        }
        Ok(())
    }
}

/// The sign circuit after its first round.
struct SignState {
    bits: SignBits,
    a: BinShare,
    b: BinShare,
}

/// Pieces of the bit injection a party carries between stages.
struct Injection {
    step: u64,
    role: usize,
    /// R0's private bits `r` (one plane).
    r_plane: Vec<u64>,
    /// The arithmetic sharing of `r`.
    r_share: Option<Share>,
    /// `z = v · r`.
    z: Option<Share>,
    /// This party's local part of the product `z` until its round.
    z_local: Vec<u64>,
    /// Elements.
    n: usize,
    /// R1 and R2: the piece `β_{R2}` they both hold.
    beta_r2: Vec<u64>,
    /// R1 and R2: `c = β ⊕ r` per element.
    c: Vec<u64>,
}

impl Party {
    /// `1` where `x ≥ 0`, else `0`: one bit plane (8 rounds for the default bits).
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

    /// `max(x, 0)` (10 rounds; see the module docs).
    pub fn relu(&mut self, x: &Share) -> Result<Share> {
        Ok(self.relu_with_mask(x, SignBits::default())?.0)
    }

    /// `max(x, 0)` and the mask `[x > 0]`, the derivative PyTorch uses (`ReLU'(0) = 0`; for the backward pass: the
    /// gradient is [`Party::mul_bit`]`(g, mask)`).
    ///
    /// The mask is the sign bit of `−x` (the same circuit and cost as [`Party::drelu`], without the NOT), so with
    /// the narrower [`SignBits`] range the caveat of the module docs applies to `−x`. It is exact for every `x`
    /// except `−2^63`, whose negation wraps to itself (far outside every fixed-point range). Matching PyTorch at 0
    /// matters: a convolution over a zero background with a zero bias yields exact zeros, and `[x ≥ 0]` would pass
    /// their gradients on to the bias, which PyTorch does not.
    pub fn relu_with_mask(&mut self, x: &Share, bits: SignBits) -> Result<(Share, BinShare)> {
        bits.check()?;
        self.call(|p| {
            let mut inj = p.injection_start(x)?; // r's piece rides in the sign's first round
            let neg = p.neg(x)?;
            let st = p.sign_first_round(&neg, bits)?;
            let mut rides = p.take_rides();
            p.injection_shared(&mut inj, x, &mut rides)?; // z = x·r rides in the sign's second round
            let mask = p.sign_rest_with(st, |p| {
                let mut rides = p.take_rides();
                p.injection_z(&mut inj, &mut rides)
            })?;
            p.injection_reveal(&mut inj, &mask)?;
            p.round(vec![], &[])?;
            let mut rides = p.take_rides();
            p.injection_c(&mut inj, &mut rides)?;
            let y = p.injection_finish(&mut inj, x)?;
            Ok((y, mask))
        })
    }

    /// `v · β` for a shared bit plane `β` (1 keeps the element): 3 rounds.
    pub fn mul_bit(&mut self, v: &Share, beta: &BinShare) -> Result<Share> {
        if beta.n() != v.len() || beta.planes() != 1 {
            return Err(Error::Shape {
                op: "mul_bit".into(),
                expected: format!("one bit plane of {} elements", v.len()),
                found: format!("{} planes of {} elements", beta.planes(), beta.n()),
            });
        }
        self.call(|p| {
            let mut inj = p.injection_start(v)?;
            p.injection_reveal(&mut inj, beta)?;
            p.round(vec![], &[])?; // r's piece and c
            let mut rides = p.take_rides();
            p.injection_shared(&mut inj, v, &mut rides)?;
            p.injection_c(&mut inj, &mut rides)?;
            p.round(vec![], &[])?; // z's reshare
            let mut rides = p.take_rides();
            p.injection_z(&mut inj, &mut rides)?;
            p.injection_finish(&mut inj, v)
        })
    }

    /// Stage 1 of the sign: R0 binary-shares `a = x_{R0} + x_{R1}` (one round); `b = x_{R2}` is shared trivially.
    fn sign_first_round(&mut self, x: &Share, bits: SignBits) -> Result<SignState> {
        let n = x.len();
        let step = self.next_step();
        let planes = bits.high as usize + 1;
        let w = n.div_ceil(64);
        let to_planes = BitKernel { name: "sign_to_planes".into(), op: BitOp::ToPlanes, n, planes };
        let zeros = vec![0u64; planes * w];
        let rho = |p: &Party, key| -> Result<Vec<u64>> {
            let mut k = MapBuilder::new("sign_mask");
            let r = k.prg(0);
            k.output(r);
            single(p.map(&k.build(), &[], &[], &[p.stream(key, Purpose::Reshare, step)], planes * w)?)
        };
        let (prev, next) = (self.prev(), self.next());
        let (a, b) = match role(self.id(), step) {
            0 => {
                let mut k = MapBuilder::new("sign_two_summands");
                let (m, nx) = (k.input(0), k.input(1));
                let s = k.add(m, nx);
                k.output(s);
                let sum = single(self.map(&k.build(), &[x.mine(), x.next()], &[], &[], n)?)?;
                let a_planes = self.bits(&to_planes, &sum)?;
                let rho = rho(self, KeyWith::Next)?;
                let mut k = MapBuilder::new("sign_mask_a");
                let (av, rv) = (k.input(0), k.input(1));
                let msg = k.xor(av, rv);
                k.output(msg);
                let msg = single(self.map(&k.build(), &[&a_planes, &rho], &[], &[], planes * w)?)?;
                self.round(vec![(prev, msg.clone())], &[])?;
                (BinShare::from_pieces(n, planes, msg, rho), BinShare::from_pieces(n, planes, zeros.clone(), zeros))
            }
            1 => {
                let rho = rho(self, KeyWith::Prev)?;
                let b_planes = self.bits(&to_planes, x.next())?;
                self.round(vec![], &[])?;
                (
                    BinShare::from_pieces(n, planes, rho, zeros.clone()),
                    BinShare::from_pieces(n, planes, zeros, b_planes),
                )
            }
            _ => {
                let b_planes = self.bits(&to_planes, x.mine())?;
                let msg = single(self.round(vec![], &[(next, planes * w)])?)?;
                (
                    BinShare::from_pieces(n, planes, zeros.clone(), msg),
                    BinShare::from_pieces(n, planes, b_planes, zeros),
                )
            }
        };
        Ok(SignState { bits, a, b })
    }

    /// The rest of the sign circuit: generate/propagate, the prefix tree, the sign plane (`1` = negative).
    fn sign_rest(&mut self, st: SignState) -> Result<BinShare> {
        self.sign_rest_with(st, |_| Ok(()))
    }

    /// [`Party::sign_rest`], calling `after_second_round` once the generate round (the circuit's second) is done.
    fn sign_rest_with(
        &mut self,
        st: SignState,
        after_second_round: impl FnOnce(&mut Party) -> Result<()>,
    ) -> Result<BinShare> {
        let SignBits { low, high } = st.bits;
        let (low, high) = (low as usize, high as usize);
        let leaves = high - low;
        let p_all = self.xor(&st.a, &st.b)?;
        let (a_leaves, b_leaves) =
            (self.select_planes(&st.a, low, 1, leaves)?, self.select_planes(&st.b, low, 1, leaves)?);
        let mut g = self.and(&a_leaves, &b_leaves)?;
        after_second_round(self)?;
        // P of groups 1.. (group 0, containing bit `low`, never needs its P).
        let mut p_rest = if leaves > 1 { Some(self.select_planes(&p_all, low + 1, 1, leaves - 1)?) } else { None };
        while g.planes() > 1 {
            let groups = g.planes();
            let pairs = groups / 2;
            let pr = p_rest.as_ref().expect("more than one group has a P");
            let hi_p = self.select_planes(pr, 0, 2, pairs)?;
            let lo_g = self.select_planes(&g, 0, 2, pairs)?;
            let hi_g = self.select_planes(&g, 1, 2, pairs)?;
            let mut ands = vec![(hi_p.clone(), lo_g)];
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
        let p_high = self.select_planes(&p_all, high, 1, 1)?;
        self.xor(&p_high, &g)
    }

    /// Injection stage 1 (local): R0 draws `r` and registers its arithmetic piece to ride to R2 in the next round.
    fn injection_start(&mut self, v: &Share) -> Result<Injection> {
        let n = v.len();
        let w = n.div_ceil(64);
        let step = self.next_step();
        let role = role(self.id(), step);
        let mut inj = Injection {
            step,
            role,
            r_plane: Vec::new(),
            r_share: None,
            z: None,
            z_local: Vec::new(),
            n,
            beta_r2: Vec::new(),
            c: Vec::new(),
        };
        if role == 0 {
            let mut k = MapBuilder::new("inject_private_bits");
            let r = k.prg(0);
            k.output(r);
            let mut plane =
                single(self.map(&k.build(), &[], &[], &[self.stream(KeyWith::Own, Purpose::Private, step)], w)?)?;
            if self.mutated(crate::mutation::Mutation::InjectionBitZero) {
                plane.iter_mut().for_each(|w| *w = 0);
            }
            if !n.is_multiple_of(64) {
                if let Some(last) = plane.last_mut() {
                    *last &= (1u64 << (n % 64)) - 1;
                }
            }
            inj.r_plane = plane;
            let from = BitKernel { name: "inject_bits_to_words".into(), op: BitOp::FromPlanes, n, planes: 1 };
            let r_words = self.bits(&from, &inj.r_plane)?;
            let mut k = MapBuilder::new("inject_share_r");
            let (r, s1) = (k.input(0), k.prg(0));
            let s0 = k.sub(r, s1);
            k.output(s0).output(s1);
            let [s0, s1] = buffers(self.map(
                &k.build(),
                &[&r_words],
                &[],
                &[self.stream(KeyWith::Next, Purpose::Reshare, step)],
                n,
            )?)?;
            let prev = self.prev();
            self.ride_along(prev, s0.clone());
            inj.r_share = Some(Share::from_pieces(v.shape(), s0, s1));
        } else if role == 2 {
            let next = self.next();
            self.expect_ride(next, n);
        }
        Ok(inj)
    }

    /// Injection stage 2: after the round that carried `r`'s piece, build the sharing of `r` and register the local
    /// product `z = v·r` to ride in the next round.
    fn injection_shared(&mut self, inj: &mut Injection, v: &Share, rides: &mut Vec<Vec<u64>>) -> Result<()> {
        let n = v.len();
        let zeros = vec![0u64; n];
        match inj.role {
            0 => {}
            1 => {
                let mut k = MapBuilder::new("inject_share_r_peer");
                let s1 = k.prg(0);
                k.output(s1);
                let s1 = single(self.map(
                    &k.build(),
                    &[],
                    &[],
                    &[self.stream(KeyWith::Prev, Purpose::Reshare, inj.step)],
                    n,
                )?)?;
                inj.r_share = Some(Share::from_pieces(v.shape(), s1, zeros));
            }
            _ => {
                let s0 = rides.remove(0);
                inj.r_share = Some(Share::from_pieces(v.shape(), zeros, s0));
            }
        }
        let r = inj.r_share.as_ref().expect("set above");
        let zstep = self.next_step();
        let mut k = MapBuilder::new("inject_product");
        let (vm, vn, rm, rn) = (k.input(0), k.input(1), k.input(2), k.input(3));
        let s = k.add(rm, rn);
        let t0 = k.mul(vm, s);
        let t1 = k.mul(vn, rm);
        let t = k.add(t0, t1);
        let z = emit_zero(&mut k, ZeroKind::Arithmetic, 0, 1);
        let c = k.add(t, z);
        k.output(c);
        let streams = [
            self.stream(KeyWith::Prev, Purpose::ZeroShare, zstep),
            self.stream(KeyWith::Next, Purpose::ZeroShare, zstep),
        ];
        inj.z_local = single(self.map(&k.build(), &[v.mine(), v.next(), r.mine(), r.next()], &[], &streams, n)?)?;
        let (prev, next) = (self.prev(), self.next());
        self.ride_along(prev, inj.z_local.clone());
        self.expect_ride(next, n);
        Ok(())
    }

    /// Injection stage 3: after the round that carried the product's reshare, `z` is a replicated sharing.
    fn injection_z(&mut self, inj: &mut Injection, rides: &mut Vec<Vec<u64>>) -> Result<()> {
        let got = rides.remove(0);
        let shape = inj.r_share.as_ref().expect("set").shape().to_vec();
        inj.z = Some(Share::from_pieces(&shape, std::mem::take(&mut inj.z_local), got));
        Ok(())
    }

    /// Injection: register `c = β ⊕ r` to ride to R1 and R2 in the next round (R0 sends `β_{R0} ⊕ β_{R1} ⊕ r`).
    fn injection_reveal(&mut self, inj: &mut Injection, beta: &BinShare) -> Result<()> {
        let w = beta.words_per_plane();
        let (prev, next) = (self.prev(), self.next());
        match inj.role {
            0 => {
                let mut k = MapBuilder::new("inject_reveal_c");
                let (bm, bn, r) = (k.input(0), k.input(1), k.input(2));
                let t = k.xor(bm, bn);
                let m = k.xor(t, r);
                k.output(m);
                let msg = single(self.map(&k.build(), &[beta.mine(), beta.next(), &inj.r_plane], &[], &[], w)?)?;
                self.ride_along(next, msg.clone());
                self.ride_along(prev, msg);
            }
            1 => {
                self.expect_ride(prev, w);
                inj.beta_r2 = beta.next().to_vec();
            }
            _ => {
                self.expect_ride(next, w);
                inj.beta_r2 = beta.mine().to_vec();
            }
        }
        Ok(())
    }

    /// Injection: R1 and R2 read `c` (per element, 0 or 1) from the round that carried it.
    fn injection_c(&mut self, inj: &mut Injection, rides: &mut Vec<Vec<u64>>) -> Result<()> {
        if inj.role == 0 {
            return Ok(());
        }
        let msg = rides.remove(0);
        let mut k = MapBuilder::new("inject_c");
        let (mv, bv) = (k.input(0), k.input(1));
        let c = k.xor(mv, bv);
        k.output(c);
        let c_plane = single(self.map(&k.build(), &[&msg, &inj.beta_r2], &[], &[], msg.len())?)?;
        let from = BitKernel { name: "inject_c_to_words".into(), op: BitOp::FromPlanes, n: inj.n, planes: 1 };
        inj.c = self.bits(&from, &c_plane)?;
        Ok(())
    }

    /// Injection, last stage: `c·v + (1 − 2c)·z` as a 2-out-of-2 sharing between R1 and R2, re-replicated in one
    /// round (pieces `y_{R0}`, `y_{R1}` from PRF keys R0 shares; R1 and R2 swap their parts minus those).
    fn injection_finish(&mut self, inj: &mut Injection, v: &Share) -> Result<Share> {
        let n = v.len();
        let (prev, next) = (self.prev(), self.next());
        let z = inj.z.take().expect("z computed");
        let ystep = self.next_step();
        let y_stream = |p: &Party, key| p.stream(key, Purpose::Reshare, ystep);
        let mut k = MapBuilder::new("inject_piece");
        if inj.role == 0 {
            // R0 holds y_{R0} (key with R2 = Prev) and y_{R1} (key with R1 = Next).
            let (a, b) = (k.prg(0), k.prg(1));
            k.output(a).output(b);
            let streams = [y_stream(self, KeyWith::Prev), y_stream(self, KeyWith::Next)];
            let [mine, next] = buffers(self.map(&k.build(), &[], &[], &streams, n)?)?;
            self.round(vec![], &[])?;
            return Ok(Share::from_pieces(v.shape(), mine, next));
        }
        // R1 adds pieces R1 and R2 (mine, next) and subtracts y_{R1} (key with R0 = Prev);
        // R2 adds piece R0 (next) and subtracts y_{R0} (key with R0 = Next).
        let r1 = inj.role == 1;
        let (cv, vm, vn, zm, zn) = (k.input(0), k.input(1), k.input(2), k.input(3), k.input(4));
        let (vs, zs) = if r1 { (k.add(vm, vn), k.add(zm, zn)) } else { (vn, zn) };
        let one = k.constant(1);
        let two_c = k.shl(cv, 1);
        let f = k.sub(one, two_c);
        let t0 = k.mul(cv, vs);
        let t1 = k.mul(f, zs);
        let part = k.add(t0, t1);
        let known = k.prg(0);
        let masked = k.sub(part, known);
        k.output(masked).output(known);
        let key = if r1 { KeyWith::Prev } else { KeyWith::Next };
        let inputs: [&[u64]; 5] = [&inj.c, v.mine(), v.next(), z.mine(), z.next()];
        let [masked, known] = buffers(self.map(&k.build(), &inputs, &[], &[y_stream(self, key)], n)?)?;
        let peer = if r1 { next } else { prev };
        let other = single(self.round(vec![(peer, masked.clone())], &[(peer, n)])?)?;
        let mut ks = MapBuilder::new("inject_combine");
        let (a, b) = (ks.input(0), ks.input(1));
        let sum = ks.add(a, b);
        ks.output(sum);
        let y_r2 = single(self.map(&ks.build(), &[&masked, &other], &[], &[], n)?)?;
        Ok(if r1 { Share::from_pieces(v.shape(), known, y_r2) } else { Share::from_pieces(v.shape(), y_r2, known) })
    }
}
