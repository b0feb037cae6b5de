//! ReLU: `x·[x > 0]`, the sign of `−x` ([`super::sign`]) followed by the multiplication by that shared bit
//! ([`super::injection`]).
//!
//! The injection's first stages (sharing R0's random bit `r`, R0's part of the product `z = x·r`) ride in the
//! sign's first two rounds; with two or more digits the sign's last AND is not re-replicated but sent straight into
//! the reveal of `c = β ⊕ r` (one round for both). **Rounds**: the sign's + 1 — 7 for the full range and for values
//! bounded by `2^40` ([`cost::relu_rounds_for`](super::cost::relu_rounds_for)); **bytes**
//! ([`cost::relu_bytes`](super::cost::relu_bytes)): ≈ 27.4 per element and party over the full range, ≈ 20.9 at `2^40`.
//!
//! **Fused with the producing layer's truncation** ([`Party::expect_relu`]): after a product with exact truncation
//! (fused plan), R0 knows its pieces of the result before the truncation's second round — it finishes them in the
//! product's kernel — so the sign's first message (R0's one-hot codes, the sign's R0 being aligned to the
//! truncation's) and the injection's `r` ride in that round, and the ReLU costs one round fewer (6).
//!
//! **Backward** ([`Party::relu_backward`]): the saved injection (`r` shared, `c` known to R1 and R2) turns
//! `dy·[x > 0]` into R0's part of the product `dy·r` and a re-replication: 2 rounds, 8 bytes per element and party.

use super::base::{role, single};
use super::binary::BinShare;
use super::injection::{Injection, ReluMask};
use super::sign::{one_hot_words, SignBits, SignEnd, SignState};
use crate::party::Party;
use crate::share::Share;
use crate::{Error, Result};
use cryptgpu_codegen::GatherKernel;

/// A ReLU announced for the output of the next exact-truncated product ([`Party::expect_relu`]).
#[derive(Debug, Clone)]
pub(crate) struct PendingRelu {
    bits: SignBits,
    addend: Option<Share>,
    /// A local reordering the product applies after its truncation (a convolution's `[Co, N, H, W]` → NCHW).
    reorder: Option<GatherKernel>,
}

/// A ReLU whose first round rode in a truncation's second round.
pub(crate) struct EarlyRelu {
    bits: SignBits,
    /// The sign's step (its roles: the truncation's).
    step: u64,
    inj: Injection,
}

impl Party {
    /// `max(x, 0)` over the full range (7 rounds; see the module docs).
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
        let (y, saved) = self.relu_for_backward(x, bits)?;
        Ok((y, saved.mask))
    }

    /// [`Party::relu_with_mask`], keeping what [`Party::relu_backward`] reuses (the injection's shared random bit and,
    /// at two parties, its opened `c`), which makes the backward pass 2 rounds instead of 3.
    pub fn relu_for_backward(&mut self, x: &Share, bits: SignBits) -> Result<(Share, ReluMask)> {
        bits.check()?;
        self.call(|p| {
            let mut inj = p.injection_start(x)?; // r's piece rides in the sign's first round
            let neg = p.neg(x)?;
            let st = p.sign_first_round(&neg, bits)?;
            let mut rides = p.take_rides();
            p.injection_shared(&mut inj, x, &mut rides)?; // z = x·r rides in the sign's second round
            p.relu_finish(x, inj, st)
        })
    }

    /// Announce that the output of the next product with exact truncation, plus `addend` (a linear layer's bias, if
    /// any), goes into a ReLU over `bits`: that ReLU's first round then rides in the truncation's second round and
    /// [`Party::relu_expected`] finishes it, one round sooner. If no exact truncation (fused plan) runs before
    /// [`Party::relu_expected`] (probabilistic mode, a layer without a product), nothing changes.
    pub fn expect_relu(&mut self, bits: SignBits, addend: Option<Share>) -> Result<()> {
        bits.check()?;
        self.early_relu = None;
        self.pending_relu = Some(PendingRelu { bits, addend, reorder: None });
        Ok(())
    }

    /// The product about to run reorders its output with `k` after its truncation (a local gather): an announced
    /// ReLU's message is computed in that order.
    pub(crate) fn reorder_expected_relu(&mut self, k: &GatherKernel) {
        if let Some(p) = &mut self.pending_relu {
            p.reorder = Some(k.clone());
        }
    }

    /// The exact truncation's hook between its two rounds (fused plan), with R0's pieces of the product (`None` at
    /// R1 and R2): starts an announced ReLU, its messages riding in the truncation's second round.
    pub(crate) fn start_expected_relu(&mut self, r0_result: Option<&Share>, shape: &[usize], trunc: u64) -> Result<()> {
        let Some(PendingRelu { bits, addend, reorder }) = self.pending_relu.take() else { return Ok(()) };
        let shape = reorder.as_ref().map_or(shape, |k| &k.out_shape[..]);
        let inj = self.injection_start_shape(shape)?;
        // Only the truncation's R0 knows its pieces now: the sign's R0 must be that party.
        while role(self.id(), self.step() + 1) != role(self.id(), trunc) {
            self.next_step();
        }
        let step = self.next_step();
        match role(self.id(), step) {
            0 => {
                let y = r0_result.ok_or_else(|| Error::Internal("the truncation's R0 has no result pieces".into()))?;
                let y = match &reorder {
                    Some(k) => self.gather_share(k, y, &k.out_shape)?,
                    None => y.clone(),
                };
                let x = match &addend {
                    Some(b) => self.add(&y, b)?,
                    None => y,
                };
                let neg = self.neg(&x)?;
                let msg = self.sign_one_hot(&neg, bits, step)?;
                let prev = self.prev();
                self.ride_along(prev, msg);
            }
            2 => {
                let next = self.next();
                self.expect_ride(next, one_hot_words(shape.iter().product(), bits));
            }
            _ => {}
        }
        self.early_relu = Some(EarlyRelu { bits, step, inj });
        Ok(())
    }

    /// ReLU of `x` keeping what the backward pass reuses: the ReLU [`Party::expect_relu`] announced, finished, when
    /// its truncation started it (then `x` must be that product plus the announced addend); else
    /// [`Party::relu_for_backward`] over `bits`.
    pub fn relu_expected(&mut self, x: &Share, bits: SignBits) -> Result<(Share, ReluMask)> {
        self.pending_relu = None;
        let Some(EarlyRelu { bits, step, mut inj }) = self.early_relu.take() else {
            return self.relu_for_backward(x, bits);
        };
        if inj.elements() != x.len() {
            return Err(Error::Shape {
                op: "relu_expected".into(),
                expected: format!("{} elements (the announced product's)", inj.elements()),
                found: format!("{} elements", x.len()),
            });
        }
        self.call(|p| {
            let mut rides = p.take_rides();
            p.injection_shared(&mut inj, x, &mut rides)?; // takes r's piece first (R2 of the injection)
            let codes = if role(p.id(), step) == 2 { Some(single(std::mem::take(&mut rides))?) } else { None };
            let neg = p.neg(x)?;
            let st = p.sign_shares(&neg, bits, step, codes)?;
            p.relu_finish(x, inj, st)
        })
    }

    /// ReLU after the sign's first round: the re-replication (the injection's `z` riding), the carry tree, the
    /// reveal of `c` merged with the last AND, the injection's last round.
    fn relu_finish(&mut self, x: &Share, mut inj: Injection, st: SignState) -> Result<(Share, ReluMask)> {
        let planes = self.sign_rereplicate(st, |p| {
            let mut rides = p.take_rides();
            p.injection_z(&mut inj, &mut rides)
        })?;
        let (y, mask) = match self.sign_tree_open(planes)? {
            SignEnd::Open { l, c } => {
                // The last AND's shares go straight into the reveal of c = β ⊕ r.
                let open = self.injection_reveal_open(&mut inj, &l, &c)?;
                let y = self.injection_finish(&mut inj, x)?;
                (y, self.injection_mask(open)?)
            }
            SignEnd::Closed(mask) => {
                self.injection_reveal(&mut inj, &mask)?;
                self.round(vec![], &[])?;
                let mut rides = self.take_rides();
                self.injection_c(&mut inj, &mut rides)?;
                (self.injection_finish(&mut inj, x)?, mask)
            }
        };
        Ok((y, self.injection_saved(inj, mask)?))
    }
}
