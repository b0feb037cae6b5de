//! The loss, its gradient, the SGD step and the batch-norm running statistics of private training (see the
//! [training module](super) for the formulas).

use super::state::{concat, split};
use super::{full, Gradients, Tape, TrainConfig, TrainState, Trainer};
use crate::party::Party;
use crate::share::Share;
use crate::{Error, PartyId, Result};
use cryptgpu_codegen::{Affine, GatherKernel};

impl Trainer {
    /// The gradient of the mean softmax cross-entropy w.r.t. the logits: `(softmax(logits) − onehot) / B`.
    pub fn loss_grad(&self, p: &mut Party, logits: &Share, onehot: &Share) -> Result<(Share, Share)> {
        let batch = logits.shape().first().copied().unwrap_or(0).max(1);
        let probs = p.softmax(logits)?;
        let diff = p.sub(&probs, onehot)?;
        Ok((p.div_public(&diff, batch as u64)?, probs))
    }

    /// The mean cross-entropy `−(1/B) Σ_n ln p_n[label_n]` from the shared probabilities, computed privately and
    /// revealed to `to` only.
    pub fn private_loss(&self, p: &mut Party, probs: &Share, onehot: &Share, to: PartyId) -> Result<Option<f64>> {
        let &[b, k] = probs.shape() else {
            return Err(Error::Shape {
                op: "private_loss".into(),
                expected: "[B, classes]".into(),
                found: format!("{:?}", probs.shape()),
            });
        };
        let picked = p.mul(probs, onehot)?;
        let pt = p.sum_except(&picked, &[b, k], 0, &[b])?;
        let logs = p.log(&pt)?;
        let all = GatherKernel {
            name: "loss_sum".into(),
            in_shape: vec![b],
            out_shape: vec![1],
            reduce_shape: vec![b],
            coords: vec![Affine::axis(1)],
        };
        let total = p.gather_share(&all, &logs, &all.out_shape)?;
        let mean = p.div_public(&total, b as u64)?;
        Ok(p.reveal_fixed_to(&mean, to)?.map(|t| -t.data()[0]))
    }

    /// One SGD step on the shared parameters with the shared gradients (see the module docs).
    pub fn sgd_step(&self, p: &mut Party, state: &mut TrainState, grads: &Gradients) -> Result<()> {
        let shape = [self.total];
        let TrainConfig { lr, momentum, weight_decay, .. } = self.config;
        let mut d = grads.flat.clone();
        if weight_decay != 0.0 {
            let decay = p.mul_public(&state.params, &full(&shape, weight_decay)?)?;
            d = p.add(&d, &decay)?;
        }
        if momentum != 0.0 {
            d = match &state.velocity {
                Some(v) => {
                    let kept = p.mul_public(v, &full(&shape, momentum)?)?;
                    p.add(&kept, &d)?
                }
                None => d,
            };
            state.velocity = Some(d.clone());
        }
        let delta = p.mul_public(&d, &full(&shape, lr)?)?;
        state.params = p.sub(&state.params, &delta)?;
        state.steps += 1;
        Ok(())
    }

    /// The batch-norm running statistics after a step, as `torch.nn.BatchNorm2d` (and the reference) update them:
    /// `r ← (1 − μ)·r + μ·b`, with `b` the batch mean, or the batch variance made unbiased (`·m/(m − 1)`). All
    /// layers in one [`Party::mul_public`].
    pub(super) fn update_running(&self, p: &mut Party, state: &mut TrainState, tape: &Tape) -> Result<()> {
        let batch_stats = tape.batch_stats();
        // [batch means and variances of every layer, running statistics] times [μ, μ·m/(m − 1), 1 − μ, 1 − μ].
        let (mut stats, mut coef, mut keep) = (Vec::new(), Vec::new(), Vec::new());
        for (layer, bn) in &self.batch_norms {
            let t = batch_stats.get(layer.as_str()).ok_or_else(|| Error::ForeignState {
                model: self.graph.name().to_string(),
                problem: format!("layer `{layer}` has no batch statistics on the tape"),
            })?;
            let unbias = if t.m > 1 { t.m as f64 / (t.m as f64 - 1.0) } else { 1.0 };
            let mu = bn.momentum;
            stats.extend([&t.mean, &t.var]);
            coef.extend(std::iter::repeat_n(mu, bn.channels).chain(std::iter::repeat_n(mu * unbias, bn.channels)));
            keep.extend(std::iter::repeat_n(1.0 - mu, 2 * bn.channels));
        }
        stats.push(&state.running);
        coef.extend(keep);
        let weighted = p.mul_public(&concat(&stats)?, &crate::Tensor::new(&[coef.len()], coef)?)?;
        let (from_batch, kept) = split(&weighted, self.stat_total)?;
        state.running = p.add(&from_batch, &kept)?;
        Ok(())
    }
}
