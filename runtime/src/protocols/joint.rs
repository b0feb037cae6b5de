//! Several independent products' truncations in shared rounds (cross-layer fusion: a layer's weight gradient and
//! input gradient in backward).
//!
//! Each product has already run its local stage (GEMM and reshare epilogue) at its own step, so its roles, masks
//! and messages are exactly those of the product run alone. Here every round of every truncation is sent at once:
//! per round, each party concatenates what it sends to each peer over all products (in product order) and splits
//! what it receives the same way. The exact truncation ([`super::exact`]) keeps its two rounds — the reshare round
//! with R0's wrap-bit piece riding along, then the wrap-bit re-replication — for all products together; the
//! probabilistic reshare ([`super::reshare`]) its one. Every local stage is the one the product alone runs (the same
//! kernels, streams and steps), so the results are bit for bit those of the products one after another; only the
//! round grouping changes: rounds `2·N → 2` (exact) and `N → 1` (probabilistic), bytes unchanged. The parties see
//! the same words as before, grouped differently, so the security argument of each product is unchanged.

use super::base::{buffers, packed_len, role, Reshare};
use super::exact::WrapBits;
use crate::buffer::Buffer;
use crate::party::Party;
use crate::share::Share;
use crate::{Error, PartyId, Result};

/// One product after its local stage: the reshare epilogue's outputs, the output shape, its step and its reshare
/// (all products of one joint call reshare the same way; the truncation bits may differ).
pub(crate) struct Pending {
    pub outs: Vec<Buffer>,
    pub shape: Vec<usize>,
    pub step: u64,
    pub how: Reshare,
}

/// Messages of one shared round: `(peer, words)` to send and `(peer, length)` to receive, one entry per product
/// part, in product order.
#[derive(Default)]
struct RoundPlan {
    sends: Vec<(PartyId, Buffer)>,
    recvs: Vec<(PartyId, usize)>,
}

/// A product between the two rounds of its exact truncation by `2^k`: the reshared base and its wrap bits.
struct Truncating {
    base: Share,
    bits: WrapBits,
    step: u64,
    k: u32,
}

impl Party {
    /// Finishes the reshares of `items` in shared rounds: see the [module documentation](self). Every item must
    /// reshare the same way (exact truncations, divisions or plain reshares; the bits or divisors may differ).
    pub(crate) fn finish_reshares_jointly(&mut self, items: Vec<Pending>) -> Result<Vec<Share>> {
        let kind = |how: &Reshare| std::mem::discriminant(how);
        if let Some(first) = items.first() {
            if items.iter().any(|it| kind(&it.how) != kind(&first.how)) {
                return Err(Error::Internal("joint reshare: products reshare in different ways".into()));
            }
        }
        match items.first().map(|it| it.how) {
            None => Ok(Vec::new()),
            Some(Reshare::ExactTruncate(_)) => self.exact_truncations_jointly(items),
            Some(Reshare::Divide(_)) => {
                let mut plan = RoundPlan::default();
                let (prev, next) = (self.prev(), self.next());
                for it in &items {
                    let n = it.outs.first().map_or(0, |b| b.len());
                    match role(self.id(), it.step) {
                        0 => plan.sends.push((prev, it.outs[0].clone())),
                        1 => {
                            plan.sends.push((next, it.outs[0].clone()));
                            plan.recvs.push((next, n));
                        }
                        _ => {
                            plan.sends.push((prev, it.outs[0].clone()));
                            plan.recvs.extend([(prev, n), (next, n)]);
                        }
                    }
                }
                let mut got = self.joint_round(plan)?.into_iter();
                let mut take = || got.next().ok_or_else(|| Error::Internal("joint reshare: missing message".into()));
                let mut out = Vec::with_capacity(items.len());
                for it in items {
                    let Reshare::Divide(d) = it.how else {
                        return Err(Error::Internal("joint reshare: a product that does not divide".into()));
                    };
                    out.push(match role(self.id(), it.step) {
                        0 => {
                            let [msg, s] = buffers(it.outs)?;
                            Share::from_pieces(&it.shape, msg, s)
                        }
                        1 => {
                            let [c1, s] = buffers(it.outs)?;
                            let a = self.divide_sum(d, &c1, take()?)?;
                            Share::from_pieces(&it.shape, s, a)
                        }
                        _ => {
                            let [c2] = buffers(it.outs)?;
                            let (c1, msg) = (take()?, take()?);
                            let a = self.divide_sum(d, &c1, c2)?;
                            Share::from_pieces(&it.shape, a, msg)
                        }
                    });
                }
                Ok(out)
            }
            Some(Reshare::Plain) => {
                items.into_iter().map(|it| self.finish_reshare(it.outs, &it.shape, it.how, it.step)).collect()
            }
        }
    }

    /// The exact truncations of `items` (each by its own `2^k`), their two rounds shared (the stages of
    /// [`Party::finish_exact_truncate`] and its wrap correction, per product, around two joint rounds).
    fn exact_truncations_jointly(&mut self, items: Vec<Pending>) -> Result<Vec<Share>> {
        let (prev, next) = (self.prev(), self.next());
        // Round 1: the reshare (R0's message and its wrap-bit piece to R2; R1 and R2 swap their sums).
        let mut plan = RoundPlan::default();
        let mut local = Vec::with_capacity(items.len());
        for mut it in items {
            let n = it.outs.first().map_or(0, |b| b.len());
            let Reshare::ExactTruncate(k) = it.how else {
                return Err(Error::Internal("joint exact truncation: a product that does not truncate exactly".into()));
            };
            match role(self.id(), it.step) {
                0 => {
                    let [msg, s, a] = buffers(std::mem::take(&mut it.outs))?;
                    let (a0, a1) = self.share_r0_bit(&a, it.step)?;
                    plan.sends.extend([(prev, msg.clone()), (prev, self.pack_low_bits(&a0, k)?)]);
                    let base = Share::from_pieces(&it.shape, msg, s);
                    let bits = WrapBits::R0 { a0, a1 };
                    local.push((Some(Truncating { base, bits, step: it.step, k }), it, n, k));
                }
                1 => {
                    plan.sends.push((next, it.outs[0].clone()));
                    plan.recvs.push((next, n));
                    local.push((None, it, n, k));
                }
                _ => {
                    plan.sends.push((prev, it.outs[0].clone()));
                    plan.recvs.extend([(prev, n), (next, n), (next, packed_len(n, k))]);
                    local.push((None, it, n, k));
                }
            }
        }
        // R1's piece of R0's bit is drawn before the round, as alone.
        let mut pieces = Vec::new();
        for (_, it, n, _) in &local {
            if role(self.id(), it.step) == 1 {
                pieces.push(self.peer_bit_piece(*n, it.step)?);
            }
        }
        let mut got = self.joint_round(plan)?.into_iter();
        let mut pieces = pieces.into_iter();
        let missing = || Error::Internal("joint exact truncation: missing message".into());
        let mut truncating = Vec::with_capacity(local.len());
        for (done, it, _, k) in local {
            let t = match (done, role(self.id(), it.step)) {
                (Some(t), _) => t,
                (None, 1) => {
                    let [c1, s] = buffers(it.outs)?;
                    let c2 = got.next().ok_or_else(missing)?;
                    let (q, b) = self.unsigned_split(&c1, &c2, k)?;
                    let a_piece = pieces.next().ok_or_else(missing)?;
                    let base = Share::from_pieces(&it.shape, s, q);
                    Truncating { base, bits: WrapBits::Peer { a_piece, b_bit: b }, step: it.step, k }
                }
                (None, _) => {
                    let [c2] = buffers(it.outs)?;
                    let (c1, msg, a0) = (
                        got.next().ok_or_else(missing)?,
                        got.next().ok_or_else(missing)?,
                        got.next().ok_or_else(missing)?,
                    );
                    let (q, b) = self.unsigned_split(&c1, &c2, k)?;
                    let a0 = self.unpack_low_bits(&a0, c2.len(), k, next)?;
                    let base = Share::from_pieces(&it.shape, q, msg);
                    Truncating { base, bits: WrapBits::Peer { a_piece: a0, b_bit: b }, step: it.step, k }
                }
            };
            truncating.push(t);
        }
        // Round 2: R1 and R2 re-replicate a·b for every product.
        let mut plan = RoundPlan::default();
        let mut terms = Vec::with_capacity(truncating.len());
        for t in &truncating {
            if let WrapBits::Peer { a_piece, b_bit } = &t.bits {
                let (sent, y_known, peer) = self.wrap_term_out(a_piece, b_bit, t.step)?;
                plan.sends.push((peer, self.pack_low_bits(&sent, t.k)?));
                plan.recvs.push((peer, packed_len(a_piece.len(), t.k)));
                terms.push(Some((sent, y_known, peer)));
            } else {
                terms.push(None);
            }
        }
        let mut got = self.joint_round(plan)?.into_iter();
        let mut out = Vec::with_capacity(truncating.len());
        for (t, term) in truncating.into_iter().zip(terms) {
            let received = match term {
                Some((sent, y_known, peer)) => {
                    let n = sent.len();
                    Some((sent, self.unpack_low_bits(&got.next().ok_or_else(missing)?, n, t.k, peer)?, y_known))
                }
                None => None,
            };
            let Truncating { base, bits, step, k } = t;
            out.push(self.wrap_correction(base, bits, received, k, step)?);
        }
        Ok(out)
    }

    /// One round carrying every entry of `plan`: the words for each peer concatenated in entry order, the words
    /// received from each peer split back into the planned lengths; returns the received buffers in `plan.recvs`
    /// order.
    fn joint_round(&mut self, plan: RoundPlan) -> Result<Vec<Buffer>> {
        let mut per_peer: Vec<(PartyId, Vec<Buffer>)> = Vec::new();
        for (to, words) in plan.sends {
            match per_peer.iter_mut().find(|(t, _)| *t == to) {
                Some((_, all)) => all.push(words),
                None => per_peer.push((to, vec![words])),
            }
        }
        let mut sends: Vec<(PartyId, Buffer)> = Vec::with_capacity(per_peer.len());
        for (to, mut parts) in per_peer {
            let words = if parts.len() == 1 {
                parts.remove(0)
            } else {
                let ranges: Vec<(&Buffer, std::ops::Range<usize>)> = parts.iter().map(|b| (b, 0..b.len())).collect();
                self.assemble(&ranges)?
            };
            sends.push((to, words));
        }
        let mut totals: Vec<(PartyId, usize)> = Vec::new();
        for &(from, len) in &plan.recvs {
            match totals.iter_mut().find(|(f, _)| *f == from) {
                Some((_, total)) => *total += len,
                None => totals.push((from, len)),
            }
        }
        let got = self.round(sends, &totals)?;
        // Each peer's message split into the planned parts (where it is: on the device of a device backend).
        let mut cursors: Vec<(PartyId, Buffer, usize)> =
            totals.iter().map(|(f, _)| *f).zip(got).map(|(f, b)| (f, b, 0)).collect();
        let mut out = Vec::with_capacity(plan.recvs.len());
        for (from, len) in plan.recvs {
            let (_, words, at) = cursors
                .iter_mut()
                .find(|(f, _, _)| *f == from)
                .ok_or_else(|| Error::Internal("joint round: unplanned peer".into()))?;
            if *at + len > words.len() {
                return Err(Error::Internal("joint round: short message".into()));
            }
            let part = if *at == 0 && len == words.len() {
                std::mem::take(words)
            } else {
                self.assemble(&[(&*words, *at..*at + len)])?
            };
            *at += len;
            out.push(part);
        }
        Ok(out)
    }
}
