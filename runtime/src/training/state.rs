//! The state of private training: hyper-parameters, one party's flat shares of the parameters, momentum and
//! running statistics, the gradients, and the slots that lay the model's tensors out in them.

use super::Trainer;
use crate::model::layers::ParamSource;
use crate::model::Fusion;
use crate::party::Party;
use crate::share::Share;
use crate::{PartyId, Result};
use std::borrow::Cow;

/// Hyper-parameters of private SGD training.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainConfig {
    /// Learning rate.
    pub lr: f64,
    /// Momentum μ (0 disables it).
    pub momentum: f64,
    /// L2 weight decay (0 disables it).
    pub weight_decay: f64,
    /// The party that learns the privately computed mean loss of every step (`None`: no loss is computed).
    pub loss_to: Option<PartyId>,
    /// Whether the backward fuses across products (default [`Fusion::On`]): see [`TrainConfig::with_fusion`].
    pub fusion: Fusion,
}

impl TrainConfig {
    /// Plain SGD with learning rate `lr`, no loss report.
    pub fn new(lr: f64) -> Self {
        TrainConfig { lr, momentum: 0.0, weight_decay: 0.0, loss_to: None, fusion: Fusion::On }
    }

    /// Sets the momentum.
    pub fn with_momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }

    /// Sets the weight decay.
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// Reveals each step's privately computed loss to `party`.
    pub fn with_loss_to(mut self, party: PartyId) -> Self {
        self.loss_to = Some(party);
        self
    }

    /// Whether the backward fuses across products ([`Fusion::On`], the default): a convolution's or linear
    /// layer's weight gradient and input gradient truncate in shared rounds — bit for bit the same gradients, in
    /// half their truncation rounds (see the [model layer](crate::model)). [`Fusion::Off`] runs them one after
    /// another.
    pub fn with_fusion(mut self, fusion: Fusion) -> Self {
        self.fusion = fusion;
        self
    }
}

/// One trainable tensor: its state_dict name, PyTorch shape and place in the flat vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) key: String,
    pub(crate) shape: Vec<usize>,
    pub(crate) offset: usize,
}

impl Slot {
    pub(crate) fn len(&self) -> usize {
        crate::tensor::held_numel(&self.shape)
    }
}

/// One party's shares of the trainable parameters (one flat share), the SGD momentum buffer and the batch-norm
/// running statistics (a second flat share).
#[derive(Debug, Clone)]
pub struct TrainState {
    pub(crate) params: Share,
    pub(crate) velocity: Option<Share>,
    pub(crate) running: Share,
    /// `num_batches_tracked` of every batch-norm layer at the start, known to the model owner only.
    pub(crate) tracked: Option<Vec<(String, f64)>>,
    pub(crate) steps: usize,
}

impl PartialEq for TrainState {
    fn eq(&self, o: &Self) -> bool {
        let tracked = |t: &Option<Vec<(String, f64)>>| {
            t.as_ref().map(|v| v.iter().map(|(k, x)| (k.clone(), x.to_bits())).collect::<Vec<_>>())
        };
        self.params == o.params
            && self.velocity == o.velocity
            && self.running == o.running
            && tracked(&self.tracked) == tracked(&o.tracked)
            && self.steps == o.steps
    }
}

impl TrainState {
    /// SGD steps applied so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The flat share of every parameter (graph order, PyTorch layouts).
    pub fn flat(&self) -> &Share {
        &self.params
    }
}

/// One party's shared gradients of every trainable tensor, as one flat share in the order of [`TrainState`].
#[derive(Debug, Clone)]
pub struct Gradients {
    pub(crate) flat: Share,
    pub(crate) slots: Vec<Slot>,
}

impl Gradients {
    /// The flat share of all gradients.
    pub fn flat(&self) -> &Share {
        &self.flat
    }

    /// The gradient of one tensor (`<layer>.weight`, `<layer>.bias`), shaped like the parameter.
    pub fn get(&self, key: &str) -> Option<Share> {
        self.slots.iter().find(|s| s.key == key).and_then(|s| slice(&self.flat, s).ok())
    }

    /// The state_dict names of the tensors, in flat order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(|s| s.key.as_str())
    }
}

/// The trainer's parameters during a step: slices of the flat state.
pub(super) struct TrainParams<'a> {
    pub(crate) trainer: &'a Trainer,
    pub(crate) state: &'a TrainState,
}

impl ParamSource for TrainParams<'_> {
    fn param(&self, key: &str) -> Result<Cow<'_, Share>> {
        self.trainer.param(self.state, key).map(Cow::Owned)
    }
    fn has(&self, key: &str) -> bool {
        self.trainer.slots.iter().any(|s| s.key == key)
    }
    /// Training transposes the `[out, in]` weights at every step (they change).
    fn linear_operand(&self, p: &mut Party, key: &str) -> Result<Cow<'_, Share>> {
        Ok(Cow::Owned(p.permute(&*self.param(key)?, &[1, 0])?))
    }
}

pub(super) fn slice(flat: &Share, slot: &Slot) -> Result<Share> {
    flat.slice(slot.offset..slot.offset + slot.len(), &slot.shape)
}

/// Splits a flat share at `at` into two flat shares (local).
pub(super) fn split(flat: &Share, at: usize) -> Result<(Share, Share)> {
    let rest = flat.len().saturating_sub(at);
    Ok((flat.slice(0..at, &[at])?, flat.slice(at..flat.len(), &[rest])?))
}

/// The elements of `parts`, one after the other, as a flat share.
pub(super) fn concat(parts: &[&Share]) -> Result<Share> {
    let total: usize = parts.iter().map(|s| s.len()).sum();
    Share::concat(parts, &[total])
}
