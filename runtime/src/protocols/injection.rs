//! Multiplication by a shared bit (bit injection fused with the product, `v·β`).
//!
//! A party that will not see the result (R0 of its own roles) draws a private random bit `r`, shares it
//! arithmetically (one word to R2) and the parties compute `z = v·r` as a 2-out-of-2 sharing between R1 and R2
//! (R0 sends R2 one more word per element, its part of the product, masked; see [`Party::injection_product`]);
//! `c = β ⊕ r` is revealed to R1 and R2 only (R0 sends `β_{R0} ⊕ β_{R1} ⊕ r`, a bit per element); then
//! `v·β = c·v + (1 − 2c)·z` is a 2-out-of-2 sharing between R1 and R2, re-replicated in one round. Bytes per
//! element: R0 two words and two bit planes' worth, R1 and R2 one word each (the re-replication). The sharing of `r` and the product `z` do not
//! depend on `β`, so [`Party::relu`](super::sign) runs them in the first two rounds of the sign circuit; on its own
//! ([`Party::mul_bit`]) it is 3 rounds.
//!
//! The stages are separate methods so that a protocol can interleave them with its own rounds (their messages
//! ride along, [`Party::ride_along`]).

use super::base::{buffers, first_ride, role, single};
use super::binary::BinShare;
use crate::buffer::Buffer;
use crate::party::{KeyWith, Party};
use crate::prg::Purpose;
use crate::share::Share;
use crate::{Error, Result};
use cryptgpu_codegen::{BitKernel, BitOp, MapBuilder};

/// Pieces of the bit injection a party carries between stages.
pub(crate) struct Injection {
    step: u64,
    role: usize,
    /// R0's private bits `r` (one plane).
    r_plane: Buffer,
    /// The arithmetic sharing of `r`.
    r_share: Option<Share>,
    /// R1 and R2: this party's piece of the 2-out-of-2 sharing of `z = v · r`.
    z: Option<Buffer>,
    /// R2: its local part of `z` until R0's part arrives.
    z_local: Buffer,
    /// Elements.
    n: usize,
    /// R1 and R2: the piece `β_{R2}` they both hold.
    beta_r2: Buffer,
    /// R1 and R2: `c = β ⊕ r` per element.
    c: Buffer,
}

/// What ReLU's bit injection leaves for the backward pass: the mask `[x > 0]`, the arithmetic sharing of its R0's
/// random bit `r` and, at R1 and R2, `c = β ⊕ r` (already revealed to them), so that `dy·[x > 0]` needs only the
/// product `dy·r` and the re-replication ([`Party::relu_backward`]: 2 rounds instead of [`Party::mul_bit`]'s 3).
#[derive(Debug, Clone)]
pub struct ReluMask {
    /// The mask `[x > 0]`, a replicated bit plane.
    pub mask: BinShare,
    role: usize,
    r_share: Share,
    c: Buffer,
}

impl Injection {
    /// Elements.
    pub(crate) fn elements(&self) -> usize {
        self.n
    }
}

/// A party's pieces of the ReLU mask after [`Party::injection_reveal_open`]; R2's second piece is still on its way.
pub(crate) struct OpenMask {
    n: usize,
    mine: Buffer,
    next: Option<Buffer>,
}

impl Party {
    /// `dy · [x > 0]` for the mask a ReLU saved: the product `z = dy·r` with the forward's sharing of `r`, as a
    /// 2-out-of-2 sharing between R1 and R2 (R0's part rides to R2: one round), then `c·dy + (1 − 2c)·z`
    /// re-replicated (one round); `c` is not revealed again. Bytes per element: 8 from each party.
    pub fn relu_backward(&mut self, dy: &Share, m: &ReluMask) -> Result<Share> {
        if dy.len() != m.r_share.len() {
            return Err(Error::Shape {
                op: "relu_backward".into(),
                expected: format!("{} elements (the ReLU's)", m.r_share.len()),
                found: format!("{} elements", dy.len()),
            });
        }
        self.call(|p| {
            let mut inj = Injection {
                step: 0,
                role: m.role,
                r_plane: Buffer::default(),
                r_share: Some(m.r_share.clone()),
                z: None,
                z_local: Buffer::default(),
                n: dy.len(),
                beta_r2: Buffer::default(),
                c: m.c.clone(),
            };
            p.injection_product(&mut inj, dy)?;
            p.round(vec![], &[])?; // R0's part of z
            let mut rides = p.take_rides();
            p.injection_z(&mut inj, &mut rides)?;
            p.injection_finish(&mut inj, dy)
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
            p.round(vec![], &[])?; // R0's part of z
            let mut rides = p.take_rides();
            p.injection_z(&mut inj, &mut rides)?;
            p.injection_finish(&mut inj, v)
        })
    }

    /// Injection stage 1 (local): R0 draws `r` and registers its arithmetic piece to ride to R2 in the next round.
    pub(crate) fn injection_start(&mut self, v: &Share) -> Result<Injection> {
        self.injection_start_shape(v.shape())
    }

    /// [`Party::injection_start`] for a value of `shape` not computed yet (its sharing of `r` does not need it).
    pub(crate) fn injection_start_shape(&mut self, shape: &[usize]) -> Result<Injection> {
        let n: usize = shape.iter().product();
        let w = n.div_ceil(64);
        let step = self.next_step();
        let role = role(self.id(), step);
        let mut inj = Injection {
            step,
            role,
            r_plane: Buffer::default(),
            r_share: None,
            z: None,
            z_local: Buffer::default(),
            n,
            beta_r2: Buffer::default(),
            c: Buffer::default(),
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
            // The bits past element n are cleared: by a write on the host, or (a plane on a device) by the bits'
            // round trip through words, which keeps only the first n (the same plane either way).
            let from = BitKernel { name: "inject_bits_to_words".into(), op: BitOp::FromPlanes, n, planes: 1 };
            let r_words = self.bits(&from, &plane)?;
            if !n.is_multiple_of(64) {
                if plane.on_host() {
                    if let Some(last) = plane.last_mut() {
                        *last &= (1u64 << (n % 64)) - 1;
                    }
                } else {
                    let to = BitKernel { name: "inject_words_to_bits".into(), op: BitOp::ToPlanes, n, planes: 1 };
                    plane = self.bits(&to, &r_words)?;
                }
            }
            inj.r_plane = plane;
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
            inj.r_share = Some(Share::from_pieces(shape, s0, s1));
        } else if role == 2 {
            let next = self.next();
            self.expect_ride(next, n);
        }
        Ok(inj)
    }

    /// Injection stage 2: after the round that carried `r`'s piece, build the sharing of `r` and register the local
    /// product `z = v·r` to ride in the next round.
    pub(crate) fn injection_shared(&mut self, inj: &mut Injection, v: &Share, rides: &mut Vec<Buffer>) -> Result<()> {
        let n = v.len();
        let zeros = self.zeros(n)?;
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
                let s0 = first_ride(rides, "R0's piece of the injection's r")?;
                inj.r_share = Some(Share::from_pieces(v.shape(), zeros, s0));
            }
        }
        self.injection_product(inj, v)
    }

    /// The product `z = v·r` as a 2-out-of-2 sharing between R1 and R2 (all that the last stage needs). With `r`'s
    /// pieces `s_0` (R0, R2) and `s_1` (R0, R1) and `v`'s pieces `p_0` (R0, R2), `p_1` (R0, R1), `p_2` (R1, R2):
    /// R1 holds `s_1·(p_1 + p_2) + ρ`, R2 `s_0·(p_2 + p_0)` plus R0's `s_1·p_0 + s_0·p_1 − ρ`, which rides to R2 in
    /// the next round (`ρ` from the key R0 and R1 share, fresh at this step): one word per element from R0.
    fn injection_product(&mut self, inj: &mut Injection, v: &Share) -> Result<()> {
        let n = v.len();
        let r = inj.r_share.as_ref().ok_or_else(|| Error::Internal("the injection's r is not shared yet".into()))?;
        let zstep = self.next_step();
        let rho = |p: &Party, key| p.stream(key, Purpose::Reshare, zstep);
        let mut k = MapBuilder::new("inject_product");
        let (vm, vn, rm, rn) = (k.input(0), k.input(1), k.input(2), k.input(3));
        let (part, stream) = match inj.role {
            0 => {
                let (t0, t1) = (k.mul(rn, vm), k.mul(rm, vn));
                let u = k.add(t0, t1);
                let mask = k.prg(0);
                (k.sub(u, mask), Some(rho(self, KeyWith::Next)))
            }
            1 => {
                let vs = k.add(vm, vn);
                let t = k.mul(rm, vs);
                let mask = k.prg(0);
                (k.add(t, mask), Some(rho(self, KeyWith::Prev)))
            }
            _ => {
                let vs = k.add(vm, vn);
                (k.mul(rn, vs), None)
            }
        };
        k.output(part);
        let streams: Vec<_> = stream.into_iter().collect();
        let part = single(self.map(&k.build(), &[v.mine(), v.next(), r.mine(), r.next()], &[], &streams, n)?)?;
        match inj.role {
            0 => self.ride_along(self.prev(), part),
            1 => inj.z = Some(part),
            _ => {
                self.expect_ride(self.next(), n);
                inj.z_local = part;
            }
        }
        Ok(())
    }

    /// Injection stage 3: after the round that carried R0's part of the product, R2 completes its piece of `z`.
    pub(crate) fn injection_z(&mut self, inj: &mut Injection, rides: &mut Vec<Buffer>) -> Result<()> {
        if inj.role != 2 {
            return Ok(());
        }
        let got = first_ride(rides, "R0's part of the injection's product")?;
        let mut k = MapBuilder::new("inject_product_piece");
        let (a, b) = (k.input(0), k.input(1));
        let sum = k.add(a, b);
        k.output(sum);
        inj.z = Some(single(self.map(&k.build(), &[&inj.z_local, &got], &[], &[], got.len())?)?);
        inj.z_local = Buffer::default();
        Ok(())
    }

    /// Injection: register `c = β ⊕ r` to ride to R1 and R2 in the next round (R0 sends `β_{R0} ⊕ β_{R1} ⊕ r`).
    pub(crate) fn injection_reveal(&mut self, inj: &mut Injection, beta: &BinShare) -> Result<()> {
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
                inj.beta_r2 = beta.next().clone();
            }
            _ => {
                self.expect_ride(next, w);
                inj.beta_r2 = beta.mine().clone();
            }
        }
        Ok(())
    }

    /// Injection: R1 and R2 read `c` (per element, 0 or 1) from the round that carried it.
    pub(crate) fn injection_c(&mut self, inj: &mut Injection, rides: &mut Vec<Buffer>) -> Result<()> {
        if inj.role == 0 {
            return Ok(());
        }
        let msg = first_ride(rides, "the injection's c")?;
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
    pub(crate) fn injection_finish(&mut self, inj: &mut Injection, v: &Share) -> Result<Share> {
        let n = v.len();
        let (prev, next) = (self.prev(), self.next());
        let z = inj.z.take();
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
        let z = z.ok_or_else(|| Error::Internal("the injection's product is not computed".into()))?;
        let (cv, vm, vn, zs) = (k.input(0), k.input(1), k.input(2), k.input(3));
        let vs = if r1 { k.add(vm, vn) } else { vn };
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
        let inputs: [&Buffer; 4] = [&inj.c, v.mine(), v.next(), &z];
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

    /// The reveal of `c = β ⊕ r` merged with the sign circuit's last AND (ReLU; see the module docs): the sign is
    /// `β = L ⊕ c_0 ⊕ c_1 ⊕ c_2`, `L` replicated and `c_i` party `i`'s 3-out-of-3 share of the last carry. One
    /// round: R0 sends R1 `c_{R0} ⊕ L_{R0} ⊕ r` and R2 `c_{R0} ⊕ L_{R1} ⊕ r`; R1 and R2 swap their `c_i` (each
    /// masked by a zero-share piece the receiver cannot compute). Returns this party's pieces of `β` as a
    /// replicated binary share, except R2's piece `β_{R0} = r ⊕ q`, which R0 sends along in the next round
    /// ([`Party::injection_mask`] completes it).
    pub(crate) fn injection_reveal_open(
        &mut self,
        inj: &mut Injection,
        l: &BinShare,
        c_local: &Buffer,
    ) -> Result<OpenMask> {
        let w = l.words_per_plane();
        let qstep = self.next_step();
        let (prev, next) = (self.prev(), self.next());
        let q_stream = |p: &Party, key| p.stream(key, Purpose::Reshare, qstep);
        let (c_plane, mask) = match inj.role {
            0 => {
                let mut k = MapBuilder::new("inject_reveal_open");
                let (c, lm, ln, r, q) = (k.input(0), k.input(1), k.input(2), k.input(3), k.prg(0));
                let cr = k.xor(c, r);
                let (m1, m2) = (k.xor(cr, lm), k.xor(cr, ln));
                let piece = k.xor(r, q);
                k.output(m1).output(m2).output(piece).output(q);
                let inputs: [&Buffer; 4] = [c_local, l.mine(), l.next(), &inj.r_plane];
                let [m1, m2, piece, q] =
                    buffers(self.map(&k.build(), &inputs, &[], &[q_stream(self, KeyWith::Next)], w)?)?;
                self.round(vec![(next, m1), (prev, m2)], &[])?;
                self.ride_along(prev, piece.clone());
                return Ok(OpenMask { n: inj.n, mine: piece, next: Some(q) });
            }
            role => {
                // R1: m1 from R0 (prev), c_{R2} from R2 (next); R2: m2 from R0 (next), c_{R1} from R1 (prev).
                let (peer, from_r0) = if role == 1 { (next, prev) } else { (prev, next) };
                let [m, c_peer] = buffers(self.round(vec![(peer, c_local.clone())], &[(from_r0, w), (peer, w)])?)?;
                let mut k = MapBuilder::new("inject_open_c");
                let (a, b, lm, ln, cl) = (k.input(0), k.input(1), k.input(2), k.input(3), k.input(4));
                let t = k.xor(a, b);
                let t = k.xor(t, lm);
                let t = k.xor(t, ln);
                let c = k.xor(t, cl);
                k.output(c);
                let inputs: [&Buffer; 5] = [&m, &c_peer, l.mine(), l.next(), c_local];
                let c = single(self.map(&k.build(), &inputs, &[], &[], w)?)?;
                if role == 1 {
                    let mut k = MapBuilder::new("inject_open_q");
                    let q = k.prg(0);
                    k.output(q);
                    let q = single(self.map(&k.build(), &[], &[], &[q_stream(self, KeyWith::Prev)], w)?)?;
                    (c.clone(), OpenMask { n: inj.n, mine: q, next: Some(c) })
                } else {
                    self.expect_ride(next, w);
                    (c.clone(), OpenMask { n: inj.n, mine: c, next: None })
                }
            }
        };
        let from = BitKernel { name: "inject_c_to_words".into(), op: BitOp::FromPlanes, n: inj.n, planes: 1 };
        inj.c = self.bits(&from, &c_plane)?;
        Ok(mask)
    }

    /// What the backward pass keeps of a finished injection (see [`ReluMask`]).
    pub(crate) fn injection_saved(&self, inj: Injection, mask: BinShare) -> Result<ReluMask> {
        let r_share = inj.r_share.ok_or_else(|| Error::Internal("a finished injection without r".into()))?;
        Ok(ReluMask { mask, role: inj.role, r_share, c: inj.c })
    }

    /// After the round that followed [`Party::injection_reveal_open`]: the mask `β` as a replicated binary share
    /// (R2 takes its piece `β_{R0}` from the round's riders).
    pub(crate) fn injection_mask(&mut self, open: OpenMask) -> Result<BinShare> {
        let next =
            match open.next {
                Some(next) => next,
                None => self.take_rides().into_iter().next().ok_or_else(|| {
                    Error::Internal("the mask piece did not ride along with the re-replication".into())
                })?,
            };
        Ok(BinShare::from_pieces(open.n, 1, open.mine, next))
    }
}
