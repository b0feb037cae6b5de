//! Private training of a [`cryptgpu_dsl::Graph`] over replicated shares: forward, backward, SGD.
//!
//! Roles as in [inference](crate::executor): the **model owner** shares the initial parameters and is the only
//! party that may learn the trained ones ([`Trainer::reveal_params_to`]); the **data owner** shares every batch
//! and its labels (one-hot, fixed point) in one round. Nothing else is opened: no activation, gradient or
//! parameter. The optional loss report is computed privately and revealed to one named party (see below).
//!
//! **State.** Every trainable tensor (`<layer>.weight`, `<layer>.bias` of Conv2d, Linear and BatchNorm2d, PyTorch
//! layouts) is a slice of ONE flat share ([`TrainState`]), in graph order, so sharing the model, the SGD update and
//! the final reveal each cost one round for the whole model. The momentum buffer and the batch-norm running
//! statistics are two more flat shares.
//!
//! **Forward** ([`Trainer::forward`]) and **backward** ([`Trainer::backward`]) are the model layer's lowering
//! ([`crate::model::layers`], shared with inference) in training mode: batch norm uses batch statistics (below),
//! and the forward keeps what the backward needs in a [`Tape`] — the inputs of Conv2d and Linear, the ReLU masks
//! `[x > 0]` ([`Party::relu_with_mask`]), the max-pool one-hot argmax ([`Party::max_pool2d_with_argmax`]) and input
//! shapes. This module drives them: the flat state, sharing, the loss, SGD, the running statistics.
//!
//! **Loss gradient** ([`Trainer::loss_grad`]): `(softmax(logits) − onehot) / B` with [`Party::softmax`] and one
//! [`Party::div_public`]; this is the gradient of the mean softmax cross-entropy, as
//! `cryptgpu_dsl::reference::softmax_cross_entropy`.
//!
//! **Backward** ([`Trainer::backward`]), per layer, `dY` the upstream gradient:
//! - Linear (`y = x·Wᵀ + b`): `dW = dYᵀ·X`, `db = Σ_batch dY` (a reducing gather, local), `dX = dY·W`.
//! - Conv2d: with `dY` as `[Co, N·OH·OW]` and the transposed im2col of the input `[N·OH·OW, C·kh·kw]` (one gather):
//!   `dW = dY · im2colᵀ`; `db` sums `dY` over `N, OH, OW` (local); `dX = col2im(Wᵀ · dY)`, where col2im is the
//!   transposed gather of im2col: with `h + p = s·a + r`, input row `h` collects window rows `i = r + s·u` of
//!   output rows `oh = a − u` (a gather reducing over `u`), then a crop of the padding. `dX` of the first layer
//!   (the data) is not computed.
//! - ReLU: [`Party::relu_backward`]`(dY, mask)` (2 rounds: the forward's bit injection is reused).
//! - AvgPool2d: `dY / (kh·kw)` ([`Party::div_public`]), broadcast over the window axes and scattered back by the
//!   same col2im. GlobalAvgPool: `dY / (H·W)` broadcast over `H × W`.
//! - MaxPool2d: [`Party::max_pool2d_backward`] (one exact ring product with the one-hot, 1 round).
//! - Flatten: a reshape. Dropout: the identity (as the reference). Residual blocks: the post block's gradient
//!   flows into the main and shortcut branches and their input gradients are added.
//! - BatchNorm2d with **batch statistics**, as `torch.nn.BatchNorm2d` in training mode. Forward over `m = N·H·W`:
//!   `μ = Σx/m`, `σ² = Σ(x − μ)²/m` (local sums, one [`Party::div_public`] each, one product), `inv = 1/√(σ² + ε)`
//!   ([`Party::rsqrt`] on `C` values), then `x̂ = (x − μ)·inv` and `y = (x − μ)·(γ·inv) + β` in ONE product call.
//!   Backward: `dγ = Σ dy·x̂`, `dβ = Σ dy` and `γ·inv` in one product call, then
//!   `dx = (γ·inv)·(m·dy − dβ − x̂·dγ) / m` — the bracket in the ring (`m·dy` is exact), so no `1/m`-sized factor
//!   is ever rounded. After the SGD step the running statistics (a second flat share, [`TrainState`]) move as
//!   PyTorch's, `r ← (1 − momentum)·r + momentum·b` with the unbiased batch variance, every layer in one
//!   [`Party::mul_public`]; the revealed parameters include them and `num_batches_tracked` (the initial count
//!   plus the steps; an initial state dict without it counts from 0, as the reference and PyTorch).
//!
//! Independent products are not yet batched into one round (e.g. `dW` and `dX` of a layer take two).
//!
//! **SGD** ([`Trainer::sgd_step`]) as `torch.optim.SGD` and `cryptgpu_dsl::reference::Sgd`: `g += wd·p`,
//! `v = μ·v + g` (`v = g` on the first step), `p −= lr·v`, each product a [`Party::mul_public`] over the flat
//! vector (one round each; the weight-decay and momentum rounds only when enabled).
//!
//! **Loss report** (optional, [`TrainConfig::loss_to`]): computed privately as
//! `−(1/B) Σ_n ln(Σ_k onehot_nk · softmax_nk)` ([`Party::mul`], [`Party::log`]; the probability of the true class
//! is clamped at one ulp by the logarithm) and revealed to the named party only — a single scalar per step.
//!
//! Every phase records its wall time and this party's communication ([`StepStats`]); [`Trainer::train`] runs all
//! three parties and merges them per step into [`LayerStats`].
//!
//! **Limits.** Windows need equal stride and padding on both axes, as in inference. Dropout is the identity in
//! training too (as the reference), so a private and a plaintext run stay comparable step by step.

mod optimizer;
mod state;

use state::{concat, slice, split, Slot, TrainParams};
pub use state::{Gradients, TrainConfig, TrainState};

use crate::model::layers::{self, full};
use crate::model::{merge, timed, DslTensor, LayerStats, Roles, StepStats};
use crate::party::Party;
use crate::share::Share;
use crate::stats::PartyStats;
use crate::{Error, PartyId, Result, Session};
use cryptgpu_dsl::fuse::{avg_pool_fusions, FusionPlan};
use cryptgpu_dsl::{BatchNorm2d, Graph, Layer, ParamKind, Params};
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub use crate::model::Tape;

/// One party's record of a training step.
#[derive(Debug, Clone)]
pub struct PartyStep {
    /// The mean loss of the batch before the update: `Some` on [`TrainConfig::loss_to`] only.
    pub loss: Option<f64>,
    /// Phases in execution order: `share batch`, each layer forward, `loss gradient`, `loss`, each layer's
    /// `<name>.backward` (reverse order), `sgd`.
    pub steps: Vec<StepStats>,
}

/// One training step over all three parties.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// The loss learned by [`TrainConfig::loss_to`], if any.
    pub loss: Option<f64>,
    /// Every phase, merged over the parties.
    pub phases: Vec<LayerStats>,
    /// Wall time of the step.
    pub wall: Duration,
    /// Communication of the step.
    pub total: PartyStats,
}

impl StepReport {
    /// Communication rounds of the step (sum over phases of the largest count of any party).
    pub fn rounds(&self) -> u64 {
        self.phases.iter().map(LayerStats::rounds).sum()
    }

    /// Bytes sent by all parties during the step.
    pub fn bytes(&self) -> u64 {
        self.total.total_bytes()
    }
}

/// The result of [`Trainer::train`].
#[derive(Debug, Clone)]
pub struct Training {
    /// The trained parameters, revealed to the model owner only (`Some` at its index).
    pub params: [Option<Params>; 3],
    /// One report per step.
    pub steps: Vec<StepReport>,
    /// Cost of sharing the initial parameters and of revealing the trained ones.
    pub setup: Vec<LayerStats>,
    /// Wall time of the whole run.
    pub wall: Duration,
}

/// Trains a model graph privately: see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct Trainer {
    graph: Graph,
    roles: Roles,
    config: TrainConfig,
    slots: Vec<Slot>,
    total: usize,
    /// Batch-norm running statistics (`<layer>.running_mean`, `<layer>.running_var`), in graph order.
    stat_slots: Vec<Slot>,
    stat_total: usize,
    /// The batch-norm layers (name, hyper-parameters), in the order of `stat_slots`.
    batch_norms: Vec<(String, BatchNorm2d)>,
    /// The average pools whose divisions the products after them take over (empty with [`Fusion::Off`](crate::Fusion::Off)).
    fusion_plan: FusionPlan,
}

impl Trainer {
    /// A trainer for `graph` with the given roles (the receiver is unused) and hyper-parameters. Errors on a role
    /// outside 0..3, a non-finite hyper-parameter or non-square windows.
    pub fn new(graph: Graph, roles: Roles, config: TrainConfig) -> Result<Trainer> {
        for (what, id) in [("model owner", Some(roles.model_owner)), ("data owner", Some(roles.data_owner))]
            .into_iter()
            .chain([("loss receiver", config.loss_to)])
        {
            if id.is_some_and(|id| id > 2) {
                return Err(Error::PartyId { what: what.to_string(), found: id.unwrap_or_default() });
            }
        }
        for (name, value) in [("lr", config.lr), ("momentum", config.momentum), ("weight_decay", config.weight_decay)] {
            if !value.is_finite() {
                return Err(Error::Hyperparameter { name, value });
            }
        }
        // The layout: the graph's own parameter list, trainable tensors in one flat share, running statistics in
        // another (the counters stay with the model owner).
        let mut slots: Vec<Slot> = Vec::new();
        let mut stat_slots: Vec<Slot> = Vec::new();
        let mut batch_norms = Vec::new();
        for info in graph.layers() {
            let n = &info.name;
            match &info.layer {
                Layer::Conv2d(c) => drop(layers::square(n, "Conv2d", c.stride, c.padding)?),
                Layer::AvgPool2d(pool) => drop(layers::square(n, "AvgPool2d", pool.stride, pool.padding)?),
                Layer::MaxPool2d(pool) => drop(layers::square(n, "MaxPool2d", pool.stride, pool.padding)?),
                Layer::BatchNorm2d(b) => batch_norms.push((n.clone(), *b)),
                _ => {}
            }
            for param in info.layer.params() {
                let list = match param.kind {
                    ParamKind::Trainable => &mut slots,
                    ParamKind::RunningStat => &mut stat_slots,
                    ParamKind::Counter => continue,
                };
                let offset = list.last().map_or(0, |s| s.offset + s.len());
                list.push(Slot { key: format!("{n}.{}", param.suffix), shape: param.shape, offset });
            }
        }
        let offset = slots.last().map_or(0, |s| s.offset + s.len());
        let stat_total = stat_slots.last().map_or(0, |s| s.offset + s.len());
        let fusion_plan = if config.fusion.is_on() { avg_pool_fusions(&graph) } else { FusionPlan::none() };
        Ok(Trainer { graph, roles, config, slots, total: offset, stat_slots, stat_total, batch_norms, fusion_plan })
    }

    /// The model graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The roles.
    pub fn roles(&self) -> Roles {
        self.roles
    }

    /// The hyper-parameters.
    pub fn config(&self) -> TrainConfig {
        self.config
    }

    fn dsl_err(&self, e: cryptgpu_dsl::DslError) -> Error {
        Error::Model { model: self.graph.name().to_string(), source: Box::new(e) }
    }

    fn param(&self, state: &TrainState, key: &str) -> Result<Share> {
        let slot =
            self.slots.iter().find(|s| s.key == key).ok_or_else(|| {
                Error::Internal(format!("the lowering read `{key}`, which the trainer's layout lacks"))
            })?;
        slice(&state.params, slot)
    }

    /// Shares the initial parameters from the model owner (one round): the owner passes `Some(params)` (every
    /// trainable tensor and running statistic of the graph with its PyTorch shape; `num_batches_tracked` is
    /// optional, 0 when absent), the others `None`.
    pub fn share_params(&self, p: &mut Party, params: Option<&Params>) -> Result<TrainState> {
        let owner = self.roles.model_owner;
        let mut tracked = None;
        let value = match (p.id() == owner, params) {
            (true, Some(params)) => {
                let mut flat = Vec::with_capacity(self.total + self.stat_total);
                for slot in self.slots.iter().chain(&self.stat_slots) {
                    let t = params.require(&slot.key).map_err(|e| self.dsl_err(e))?;
                    if t.shape() != slot.shape.as_slice() {
                        return Err(Error::Shape {
                            op: format!("parameter `{}`", slot.key),
                            expected: format!("{:?}", slot.shape),
                            found: format!("{:?}", t.shape()),
                        });
                    }
                    flat.extend_from_slice(t.data());
                }
                let counters = self.batch_norms.iter().map(|(layer, _)| {
                    let key = format!("{layer}.num_batches_tracked");
                    (key.clone(), params.get(&key).map_or(0.0, |t| t.data().first().copied().unwrap_or(0.0)))
                });
                tracked = Some(counters.collect());
                Some(crate::Tensor::new(&[self.total + self.stat_total], flat)?)
            }
            (true, None) | (false, Some(_)) => {
                return Err(Error::Ownership { what: "parameters", party: p.id(), owner, supplied: params.is_some() })
            }
            (false, None) => None,
        };
        let flat = p.share_fixed(owner, value.as_ref(), &[self.total + self.stat_total])?;
        let (params, running) = split(&flat, self.total)?;
        Ok(TrainState { params, velocity: None, running, tracked, steps: 0 })
    }

    /// Reveals the parameters and the batch-norm running statistics to `to` only (one round): `Some(params)` there,
    /// `None` elsewhere. Batch-norm layers also get `num_batches_tracked` (the initial count plus the steps taken,
    /// when `to` is the model owner, who knows the initial count).
    pub fn reveal_params_to(&self, p: &mut Party, state: &TrainState, to: PartyId) -> Result<Option<Params>> {
        let all = concat(&[&state.params, &state.running])?;
        let Some(flat) = p.reveal_fixed_to(&all, to)? else { return Ok(None) };
        let mut params = Params::new();
        for (slot, base) in self.slots.iter().map(|s| (s, 0)).chain(self.stat_slots.iter().map(|s| (s, self.total))) {
            let data = flat.data()[base + slot.offset..base + slot.offset + slot.len()].to_vec();
            params.insert(&slot.key, DslTensor::from_vec(&slot.shape, data).map_err(|e| self.dsl_err(e))?);
        }
        for (key, start) in state.tracked.iter().flatten() {
            params.insert(key, DslTensor::full(&[], start + state.steps as f64));
        }
        Ok(Some(params))
    }

    /// Shares a batch and its labels from the data owner in one round: the owner passes `Some((x, labels))`
    /// with `x` of shape `[batch, …input]` and one class per sample, the others `None`. Returns the shared input
    /// and the shared one-hot labels `[batch, classes]`.
    pub fn share_batch(
        &self,
        p: &mut Party,
        data: Option<(&DslTensor, &[usize])>,
        batch: usize,
    ) -> Result<(Share, Share)> {
        let mut shape = vec![batch];
        shape.extend_from_slice(self.graph.input_shape());
        let classes = self.classes()?;
        if batch == 0 {
            return Err(Error::EmptyBatch { what: format!("training batch of model `{}`", self.graph.name()) });
        }
        let nx = crate::tensor::numel(&shape)?;
        let ny = crate::tensor::checked_product("training labels", &[batch, classes])?;
        let total = nx
            .checked_add(ny)
            .ok_or_else(|| Error::Overflow { what: "training batch".into(), shape: shape.clone() })?;
        p.check_size("training batch and labels", total)?;
        let value = match data {
            Some((x, labels)) => {
                self.check_batch(x, labels, batch, p.fixed())?;
                let mut flat = x.data().to_vec();
                let mut onehot = vec![0.0; ny];
                for (i, &l) in labels.iter().enumerate() {
                    onehot[i * classes + l] = 1.0;
                }
                flat.extend_from_slice(&onehot);
                Some(crate::Tensor::new(&[total], flat)?)
            }
            None => None,
        };
        let flat = p.share_fixed(self.roles.data_owner, value.as_ref(), &[total])?;
        let x = flat.slice(0..nx, &shape)?;
        let y = flat.slice(nx..total, &[batch, classes])?;
        Ok((x, y))
    }

    /// The data owner's local check of a batch, before any message: input `[batch, …input]` with `batch ≥ 1`,
    /// one label below the class count per sample, every value encodable (no NaN, ±infinity or out of range).
    fn check_batch(&self, x: &DslTensor, labels: &[usize], batch: usize, fixed: crate::FixedPoint) -> Result<()> {
        let mut shape = vec![batch];
        shape.extend_from_slice(self.graph.input_shape());
        if batch == 0 {
            return Err(Error::EmptyBatch { what: format!("training batch of model `{}`", self.graph.name()) });
        }
        if x.shape() != shape.as_slice() || labels.len() != batch {
            return Err(Error::Shape {
                op: format!("training batch of model `{}`", self.graph.name()),
                expected: format!("input {shape:?} and {batch} labels"),
                found: format!("input {:?} and {} labels", x.shape(), labels.len()),
            });
        }
        let classes = self.classes()?;
        if let Some((i, l)) = labels.iter().enumerate().find(|(_, &l)| l >= classes) {
            let what = format!("training batch of model `{}`", self.graph.name());
            return Err(Error::Label { what, sample: i, label: *l, classes });
        }
        fixed.check_slice(x.data())
    }

    fn classes(&self) -> Result<usize> {
        match self.graph.output_shape() {
            &[k] if k > 0 => Ok(k),
            s => Err(Error::Shape {
                op: format!("training of model `{}`", self.graph.name()),
                expected: "logits of shape [B, classes]".into(),
                found: format!("[B, {s:?}]"),
            }),
        }
    }

    /// The forward pass on the shared batch `x`, recording one step per layer; returns the logits and the tape.
    pub fn forward(
        &self,
        p: &mut Party,
        state: &TrainState,
        x: Share,
        steps: &mut Vec<StepStats>,
    ) -> Result<(Share, Tape)> {
        let src = TrainParams { trainer: self, state };
        let mode = layers::Mode::Training { fusion: &self.fusion_plan };
        let (y, nodes) = layers::forward_nodes(p, mode, self.config.fusion, &src, self.graph.nodes(), x, steps)?;
        Ok((y, Tape { nodes }))
    }

    /// Backward from the gradient `dy` of the logits through the tape; returns the shared parameter gradients.
    pub fn backward(
        &self,
        p: &mut Party,
        state: &TrainState,
        tape: &Tape,
        dy: Share,
        steps: &mut Vec<StepStats>,
    ) -> Result<Gradients> {
        let mut grads = HashMap::new();
        let src = TrainParams { trainer: self, state };
        let fusion = layers::BackwardFusion { on: self.config.fusion, plan: &self.fusion_plan };
        layers::backward_nodes(p, &src, &tape.nodes, dy, false, &mut grads, steps, fusion)?;
        let mut parts = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            parts.push(grads.remove(&slot.key).ok_or_else(|| Error::ForeignState {
                model: self.graph.name().to_string(),
                problem: format!("no gradient reached `{}`", slot.key),
            })?);
        }
        let flat = concat(&parts.iter().collect::<Vec<_>>())?;
        Ok(Gradients { flat, slots: self.slots.clone() })
    }

    /// The parameter gradients of one batch (no update): share the batch, forward, loss gradient, backward.
    /// The data owner passes `Some((x, labels))`.
    pub fn gradients_party(
        &self,
        p: &mut Party,
        state: &TrainState,
        data: Option<(&DslTensor, &[usize])>,
        batch: usize,
        steps: &mut Vec<StepStats>,
    ) -> Result<(Gradients, Option<f64>)> {
        let (grads, loss, _) = self.gradients_and_tape(p, state, data, batch, steps)?;
        Ok((grads, loss))
    }

    fn gradients_and_tape(
        &self,
        p: &mut Party,
        state: &TrainState,
        data: Option<(&DslTensor, &[usize])>,
        batch: usize,
        steps: &mut Vec<StepStats>,
    ) -> Result<(Gradients, Option<f64>, Tape)> {
        let (x, onehot) = timed(p, steps, "share batch", "Setup", |p| self.share_batch(p, data, batch))?;
        let (logits, tape) = self.forward(p, state, x, steps)?;
        let (dy, probs) = timed(p, steps, "loss gradient", "Loss", |p| self.loss_grad(p, &logits, &onehot))?;
        let loss = match self.config.loss_to {
            Some(to) => timed(p, steps, "loss", "Loss", |p| self.private_loss(p, &probs, &onehot, to))?,
            None => None,
        };
        let grads = self.backward(p, state, &tape, dy, steps)?;
        Ok((grads, loss, tape))
    }

    /// Whether `state` fits this trainer's model (flat parameter, momentum and running-statistics sizes).
    pub(crate) fn check_state(&self, state: &TrainState) -> Result<()> {
        let fits = state.params.len() == self.total
            && state.running.len() == self.stat_total
            && state.velocity.as_ref().is_none_or(|v| v.len() == self.total);
        if fits {
            return Ok(());
        }
        Err(Error::Shape {
            op: format!("training state of model `{}`", self.graph.name()),
            expected: format!("{} parameters and {} running statistics", self.total, self.stat_total),
            found: format!("{} and {}", state.params.len(), state.running.len()),
        })
    }

    /// One party's training step on one batch: [`Trainer::gradients_party`], then [`Trainer::sgd_step`].
    pub fn step_party(
        &self,
        p: &mut Party,
        state: &mut TrainState,
        data: Option<(&DslTensor, &[usize])>,
        batch: usize,
    ) -> Result<PartyStep> {
        let mut steps = Vec::new();
        let (grads, loss, tape) = self.gradients_and_tape(p, state, data, batch, &mut steps)?;
        timed(p, &mut steps, "sgd", "Sgd", |p| self.sgd_step(p, state, &grads))?;
        if self.stat_total > 0 {
            timed(p, &mut steps, "running statistics", "BatchNorm2d", |p| self.update_running(p, state, &tape))?;
        }
        Ok(PartyStep { loss, steps })
    }

    /// Trains from `params` on `batches` (input `[B, …input]`, one label per sample) with the three parties of
    /// `session`: shares the parameters, runs one step per batch, reveals the trained parameters to the model
    /// owner.
    pub fn train(&self, session: &Session, params: &Params, batches: &[(DslTensor, Vec<usize>)]) -> Result<Training> {
        params.check_present(&self.graph, "parameters").map_err(|e| self.dsl_err(e))?;
        let sizes: Vec<usize> = batches.iter().map(|(x, _)| x.shape().first().copied().unwrap_or(0)).collect();
        // The data owner's batches are checked before the run starts (a bad batch is refused before any message).
        for (i, ((x, labels), &b)) in batches.iter().zip(&sizes).enumerate() {
            self.check_batch(x, labels, b, session.fixed()).map_err(|e| match e {
                Error::Encode { value, frac_bits, reason } => {
                    Error::Encode { value, frac_bits, reason: format!("training batch {i}, {reason}") }
                }
                Error::Shape { op, expected, found } => {
                    Error::Shape { op: format!("{op} (batch {i})"), expected, found }
                }
                Error::EmptyBatch { what } => Error::EmptyBatch { what: format!("{what} (batch {i})") },
                Error::Label { what, sample, label, classes } => {
                    Error::Label { what: format!("{what} (batch {i})"), sample, label, classes }
                }
                e => e,
            })?;
        }
        let start = Instant::now();
        let roles = self.roles;
        type PartyRun = (Vec<StepStats>, Vec<(PartyStep, Duration, crate::Stats)>, Option<Params>);
        let runs: [PartyRun; 3] = session.run(|p| {
            let mut setup = Vec::new();
            let owner = (p.id() == roles.model_owner).then_some(params);
            let mut state = timed(p, &mut setup, "share parameters", "Setup", |p| self.share_params(p, owner))?;
            let mut steps = Vec::with_capacity(batches.len());
            for ((x, labels), &b) in batches.iter().zip(&sizes) {
                let data = (p.id() == roles.data_owner).then_some((x, labels.as_slice()));
                let (t0, s0) = (Instant::now(), p.total_stats());
                let step = self.step_party(p, &mut state, data, b)?;
                steps.push((step, t0.elapsed(), p.total_stats() - s0));
            }
            let trained = timed(p, &mut setup, "reveal parameters", "Setup", |p| {
                self.reveal_params_to(p, &state, roles.model_owner)
            })?;
            Ok((setup, steps, trained))
        })?;
        let wall = start.elapsed();
        let setup = merge(runs.iter().map(|r| r.0.as_slice()))?;
        let mut reports = Vec::with_capacity(batches.len());
        for i in 0..batches.len() {
            let phases = merge(runs.iter().map(|r| r.1[i].0.steps.as_slice()))?;
            let loss = runs.iter().find_map(|r| r.1[i].0.loss);
            let time = runs.iter().map(|r| r.1[i].1).max().unwrap_or_default();
            let total = PartyStats(core::array::from_fn(|k| runs[k].1[i].2));
            reports.push(StepReport { loss, phases, wall: time, total });
        }
        let [a, b, c] = runs;
        Ok(Training { params: [a.2, b.2, c.2], steps: reports, setup, wall })
    }
}
