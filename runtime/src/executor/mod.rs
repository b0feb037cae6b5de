//! Private inference of a [`cryptgpu_dsl::Graph`] over replicated shares.
//!
//! Three roles, each a party id (they may coincide): the **model owner** knows the parameters
//! ([`cryptgpu_dsl::Params`], PyTorch state_dict names and layouts), the **data owner** knows a batch
//! `[B, C, H, W]` (or `[B, …input]`), and the **receiver** alone learns the logits.
//!
//! A run has three phases:
//! 1. [`Executor::share_model`]: the model owner flattens every tensor the layers need into one vector and shares
//!    it in a single round; the parties slice it back into per-layer shares. Conv weights keep PyTorch's
//!    `[out, in, kh, kw]`. Linear weights are shared in PyTorch's `[out, in]` layout and every party transposes
//!    its pieces locally with [`Party::permute`] to the `[in, out]` right operand of [`Party::matmul`]. Batch norm
//!    is turned by the owner, in f64, into a per-channel `scale = γ / √(var + ε)` and `shift = β − mean · scale`
//!    from the running statistics (inference semantics). A batch norm right after a convolution (same node list,
//!    so the convolution's output goes nowhere else) is **folded** into it — `W·scale`, `b·scale + shift` are
//!    shared and the batch norm costs nothing — which is exact in real arithmetic and rounds once instead of
//!    twice. With [`Fusion::On`] a batch norm whose output reaches a convolution without padding or a linear layer
//!    through shape-only layers (after a ReLU, typically) is folded into that product's input the same way
//!    (`W·scale[c]`, `b + W*shift`; [`cryptgpu_dsl::fold::bn_input_folds`]). Any other batch norm shares `scale`
//!    and `shift` ([`Executor::with_batch_norm_folding`] turns folding off).
//! 2. [`Executor::forward`]: the data owner's batch is shared (one round) and every node of the graph runs in
//!    order — Conv2d (+ bias fused into the GEMM), Linear (matmul, then the bias broadcast over the batch by a
//!    gather and added locally), ReLU, AvgPool2d, MaxPool2d, global average pooling (sum pooling over `H × W`,
//!    then [`Party::div_public`] by `H·W`), BatchNorm2d when not folded (a [`Party::mul`] by the broadcast scale and
//!    an add of the broadcast shift, wherever the layer stands), Flatten (a free reshape), Dropout (the identity) and residual
//!    blocks (`post(main(x) + shortcut(x))`, the add is local).
//! 3. The logits are revealed to the receiver only ([`Party::reveal_fixed_to`]).
//!
//! Every step records its wall time and this party's communication ([`StepStats`]); [`Executor::infer`] runs
//! all three parties in a [`Session`] and merges them into [`LayerStats`] (rounds: the maximum over parties;
//! bytes: the sum).
//!
//! **Range safety** (before phase 1): a private run is only right while every ring value stays below 2^62 (exact
//! truncation, comparisons) — see [`cryptgpu_dsl::range`]. The data owner checks its batch against the public
//! input bound (NaN and infinities are refused); the model owner runs the range analysis with its weights and that
//! bound at the session's `t` ([`RangeCheck`]: worst-case intervals by default, calibration on random inputs within
//! the bound, or off) and refuses with [`Error::Range`] naming the layer, the bound it reaches and the largest safe
//! `t`. It also refuses, with [`Error::FailureProbability`] naming the layers responsible, when the predicted
//! failure probability of the run exceeds a threshold (10^-9 unless [`Executor::allow_truncation_failures`]):
//! under probabilistic truncation every truncation counts; in the exact mode the divisions by a non-power of two
//! (3×3 or 7×7 average pooling), which are probabilistic in every mode. What the checks reveal: with a declared
//! bound ([`Executor::with_input_bound`]) nothing beyond the declaration; without one, the bound is the smallest
//! power of two at least the batch's `max |x|` (`2^⌈log2 max|x|⌉`), and the model owner learns that power of two
//! ([`Executor::infer`] computes it from the batch; [`Executor::infer_party`] has the data owner send it to the
//! model owner in one extra setup round) — nothing else of the batch. The ReLUs' sign circuits read only the bits a
//! public declared bound needs (`|x| < 2^20` unless [`Executor::with_relu_bound`] says otherwise; see
//! [`crate::protocols::sign`]); the model owner refuses with [`Error::ReluBound`] a run whose analysed ReLU inputs
//! could leave it, as such a value would get a wrong sign.
//!
//! Limits: convolution and pooling windows must use the same stride and the same padding on both axes (the
//! protocols take one stride and one padding); a layer that does not is refused with an error naming it.

use crate::model::Fusion;
use crate::party::{Party, StepHook};
use crate::protocols::{SignBits, TruncationMode};
use crate::share::Share;
use crate::stats::PartyStats;
use crate::{Error, PartyId, Result, Session};
use cryptgpu_dsl::fuse::{inference_fusions, FusionPlan};
use cryptgpu_dsl::range::{self, InputBound, RangeReport};
use cryptgpu_dsl::{Graph, Node, Params};
use std::collections::HashMap;
use std::time::{Duration, Instant};

mod checks;
mod reference;

use crate::model::{layers, merge, timed};
pub use crate::model::{DslTensor, LayerStats, Roles, StepStats};
pub use checks::{RangeCheck, DEFAULT_MAX_FAILURE};
use std::borrow::Cow;

/// One party's shares of a model's parameters, ready for [`Executor::forward`].
#[derive(Debug, Clone)]
pub struct SharedModel {
    /// The graph's name.
    model: String,
    tensors: HashMap<String, Share>,
}

impl layers::ParamSource for SharedModel {
    fn param(&self, key: &str) -> Result<Cow<'_, Share>> {
        self.require(key).map(Cow::Borrowed)
    }
    fn has(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }
    /// Linear weights are stored transposed (`[in, out]`) at sharing time.
    fn linear_operand(&self, _: &mut Party, key: &str) -> Result<Cow<'_, Share>> {
        self.param(key)
    }
}

impl SharedModel {
    /// The share stored under `key` (`<layer>.weight`, `<layer>.bias`, `<bn>.scale`, `<bn>.shift`).
    pub fn get(&self, key: &str) -> Option<&Share> {
        self.tensors.get(key)
    }

    fn require(&self, key: &str) -> Result<&Share> {
        self.tensors.get(key).ok_or_else(|| Error::ForeignState {
            model: self.model.clone(),
            problem: format!("the shared model has no tensor `{key}`"),
        })
    }

    /// Number of shared tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether no tensor is shared (a model without parameters).
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}

/// What one party gets from [`Executor::infer_party`].
#[derive(Debug, Clone)]
pub struct PartyInference {
    /// The logits `[B, classes]`: `Some` on the receiver only.
    pub logits: Option<DslTensor>,
    /// Setup phases of this party: sharing the weights, sharing the input, revealing the logits.
    pub setup: Vec<StepStats>,
    /// Per-layer steps of this party, in execution order.
    pub layers: Vec<StepStats>,
}

/// The result of [`Executor::infer`].
#[derive(Debug, Clone)]
pub struct Inference {
    /// What each party learned: `Some(logits)` at the receiver's index, `None` elsewhere.
    pub outputs: [Option<DslTensor>; 3],
    /// Setup phases: sharing the weights, sharing the input, revealing the logits.
    pub setup: Vec<LayerStats>,
    /// Every layer (and residual add) in execution order.
    pub layers: Vec<LayerStats>,
    /// Wall time of the whole run.
    pub wall: Duration,
    /// Communication of the whole run.
    pub total: PartyStats,
}

impl Inference {
    /// The logits the receiver learned (`None` only if the receiver index is out of range).
    pub fn logits(&self, receiver: PartyId) -> Option<&DslTensor> {
        self.outputs.get(receiver).and_then(Option::as_ref)
    }
}

/// Runs a model graph privately: see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct Executor {
    graph: Graph,
    roles: Roles,
    /// Conv2d name → the BatchNorm2d right after it (name, hyper-parameters), folded into its weights and bias.
    folds: cryptgpu_dsl::fold::Folds,
    /// Whether batch norms are folded ([`Executor::with_batch_norm_folding`]).
    fold_batch_norm: bool,
    /// Declared public bound |x| ≤ B on the input; `None`: the batch's max |x|.
    input_bound: Option<f64>,
    range_check: RangeCheck,
    /// Largest allowed predicted failure probability per run under probabilistic truncation.
    max_failure: f64,
    /// Told every step of [`Executor::infer`] as it starts.
    progress: Option<Progress>,
    /// Declared bound on every ReLU input, `|x| < 2^bits` (real units); `None`: the full 64-bit sign circuit.
    relu_bound: Option<u32>,
    /// The cross-layer fusions the lowering runs (empty with [`Fusion::Off`]): average pools into the next
    /// product, batch norms into the product after them.
    fusion: FusionPlan,
    /// Whether the lowering fuses (the pool plan above, and each ReLU into the product before it).
    fusion_switch: Fusion,
}

/// The default declared bound on ReLU inputs: `|x| < 2^20` (real units; `2^40` in the ring at `t = 20`), which
/// the model owner's range check verifies.
pub const DEFAULT_RELU_BOUND_BITS: u32 = 20;

/// A [`StepHook`] in an executor.
#[derive(Clone)]
struct Progress(StepHook);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress(..)")
    }
}

fn runtime_tensor(t: &DslTensor) -> Result<crate::Tensor> {
    crate::Tensor::new(t.shape(), t.data().to_vec())
}

fn dsl_err(graph: &Graph, e: cryptgpu_dsl::DslError) -> Error {
    Error::Model { model: graph.name().to_string(), source: Box::new(e) }
}

impl Executor {
    /// An executor for `graph` with the given roles; errors when a role is not party 0, 1 or 2.
    pub fn new(graph: Graph, roles: Roles) -> Result<Executor> {
        for (what, id) in
            [("model owner", roles.model_owner), ("data owner", roles.data_owner), ("receiver", roles.receiver)]
        {
            if id > 2 {
                return Err(Error::PartyId { what: what.to_string(), found: id });
            }
        }
        let folds = cryptgpu_dsl::fold::conv_bn_pairs(&graph);
        let fusion = inference_fusions(&graph, true);
        Ok(Executor {
            graph,
            roles,
            folds,
            fold_batch_norm: true,
            input_bound: None,
            range_check: RangeCheck::Interval,
            max_failure: DEFAULT_MAX_FAILURE,
            progress: None,
            relu_bound: Some(DEFAULT_RELU_BOUND_BITS),
            fusion,
            fusion_switch: Fusion::On,
        })
    }

    /// Whether the lowering fuses across layers ([`Fusion::On`], the default): an average pool with a power-of-two
    /// window keeps its window sums and the next convolution or linear layer truncates `log2(area)` more bits, so
    /// the pool costs no round; a batch norm whose output reaches a convolution without padding or a linear layer
    /// through shape-only layers (a batch norm after a ReLU) is folded into that product's weights and bias, so it
    /// costs nothing (see the [model layer](crate::model)). [`Fusion::Off`] runs every layer on its own.
    pub fn with_fusion(mut self, fusion: Fusion) -> Self {
        self.fusion_switch = fusion;
        self.fusion = self.fusion_plan_for(fusion, self.fold_batch_norm);
        self
    }

    fn fusion_plan_for(&self, fusion: Fusion, fold_batch_norm: bool) -> FusionPlan {
        if fusion.is_on() {
            inference_fusions(&self.graph, fold_batch_norm)
        } else {
            FusionPlan::none()
        }
    }

    /// The fusions the lowering runs ([`Executor::with_fusion`]).
    pub fn fusion_plan(&self) -> &FusionPlan {
        &self.fusion
    }

    /// Whether batch norms are folded (the default): one right after a convolution into it — the owner shares
    /// `W·scale` and `b·scale + shift` instead of `W`, `b`, `scale`, `shift` — and, with [`Fusion::On`], one
    /// before a product into that product (`W·scale[c]`, `b + W*shift`; see the [model layer](crate::model)).
    /// Either saves the batch norm's product (its rounds, bytes and rounding) and is exact in real arithmetic.
    /// `false` runs every batch norm as an affine map on shares.
    pub fn with_batch_norm_folding(mut self, fold: bool) -> Self {
        self.folds = if fold { cryptgpu_dsl::fold::conv_bn_pairs(&self.graph) } else { HashMap::new() };
        self.fold_batch_norm = fold;
        self.fusion = self.fusion_plan_for(self.fusion_switch, fold);
        self
    }

    /// Declare that every ReLU input satisfies `|x| < 2^bits` (real units; default
    /// [`DEFAULT_RELU_BOUND_BITS`]), so that the ReLUs' sign circuits read only the bits that bound needs (at
    /// `t = 20` and the default: 40 bits, 10 digits, 8 rounds and ≈ 21 bytes per element and party instead of
    /// 63 bits, 8 rounds and ≈ 27 bytes). The bound is public. With a range check on, the model owner refuses a run
    /// whose analysed ReLU inputs could reach it ([`Error::ReluBound`]): a value outside the range would get a wrong
    /// sign. With [`RangeCheck::Off`] the declaration is trusted. `None` runs the full, exact 64-bit circuit.
    pub fn with_relu_bound(mut self, bits: Option<u32>) -> Self {
        self.relu_bound = bits;
        self
    }

    /// The declared bound on ReLU inputs, `|x| < 2^bits` (`None`: the full circuit).
    pub fn relu_bound(&self) -> Option<u32> {
        self.relu_bound
    }

    /// The sign range the ReLUs read at `frac_bits` fractional bits: the declared bound's, else the full range.
    pub fn relu_sign_bits(&self, frac_bits: u32) -> SignBits {
        match self.relu_bound.map(|k| k + frac_bits) {
            Some(bits @ 1..=63) => SignBits::for_bound(bits).unwrap_or_default(),
            _ => SignBits::default(),
        }
    }

    /// Tell `hook` the `(name, kind)` of every step of [`Executor::infer`] as it starts (sharing, each layer, each
    /// residual add, the reveal), from the receiver's thread: what a progress display shows. It must return
    /// quickly (it runs between protocol steps).
    pub fn with_progress(mut self, hook: StepHook) -> Self {
        self.progress = Some(Progress(hook));
        self
    }

    /// Whether batch norm `name` is folded, into the convolution before it or the product after it.
    fn is_folded_bn(&self, name: &str) -> bool {
        crate::model::is_folded_bn(&self.folds, name) || self.fusion.folds_batch_norm(name)
    }

    /// The model graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The roles.
    pub fn roles(&self) -> Roles {
        self.roles
    }

    /// Shares the model's parameters from the model owner (one round for all of them). The owner passes
    /// `Some(params)` (every tensor the graph needs must be present with its PyTorch shape; extra tensors and
    /// batch norm's `num_batches_tracked`, which inference never reads, may be present or not), every other party
    /// `None`.
    pub fn share_model(&self, p: &mut Party, params: Option<&Params>) -> Result<SharedModel> {
        let owner = self.roles.model_owner;
        match (p.id() == owner, params) {
            (true, None) | (false, Some(_)) => {
                return Err(Error::Ownership { what: "parameters", party: p.id(), owner, supplied: params.is_some() })
            }
            _ => {}
        }
        if let Some(params) = params {
            params.check_present(&self.graph, "parameters").map_err(|e| dsl_err(&self.graph, e))?;
        }
        let slots = crate::model::inference_tensors(&self.graph, &self.folds, &self.fusion, params)
            .map_err(|e| dsl_err(&self.graph, e))?;
        let mut total = 0usize;
        for s in &slots {
            total = total.checked_add(crate::tensor::numel(&s.shape)?).ok_or_else(|| Error::Overflow {
                what: format!("parameters of `{}`", s.key),
                shape: s.shape.clone(),
            })?;
        }
        let value = match params {
            Some(_) => {
                let flat: Vec<f64> = slots.iter().flat_map(|s| s.values.iter().flatten().copied()).collect();
                Some(crate::Tensor::new(&[total], flat)?)
            }
            None => None,
        };
        let flat = p.share_fixed(owner, value.as_ref(), &[total])?;
        let mut tensors = HashMap::with_capacity(slots.len());
        let mut at = 0;
        for slot in slots {
            let len = crate::tensor::held_numel(&slot.shape);
            let r = at..at + len;
            at += len;
            let share = flat.slice(r, &slot.shape)?;
            let share = if slot.transpose { p.permute(&share, &[1, 0])? } else { share };
            tensors.insert(slot.key, share);
        }
        Ok(SharedModel { model: self.graph.name().to_string(), tensors })
    }

    /// The batched input shape `[batch, …input]`.
    fn batch_shape(&self, batch: usize) -> Vec<usize> {
        let mut s = vec![batch];
        s.extend_from_slice(self.graph.input_shape());
        s
    }

    /// Shares the data owner's batch: the owner passes `Some(x)` of shape `[batch, …input]`, the others `None`.
    pub fn share_input(&self, p: &mut Party, input: Option<&DslTensor>, batch: usize) -> Result<Share> {
        let shape = self.batch_shape(batch);
        if batch == 0 {
            return Err(Error::EmptyBatch { what: format!("input of model `{}`", self.graph.name()) });
        }
        let value = match input {
            Some(x) => {
                self.check_batch(x, batch, p.fixed())?;
                Some(runtime_tensor(x)?)
            }
            None => None,
        };
        p.share_fixed(self.roles.data_owner, value.as_ref(), &shape)
    }

    /// Runs every node of the graph on the shared batch `x`, recording one [`StepStats`] per layer (and residual
    /// add) into `steps`; returns the shared output `[B, …output]`.
    pub fn forward(&self, p: &mut Party, model: &SharedModel, x: Share, steps: &mut Vec<StepStats>) -> Result<Share> {
        let expected = self.batch_shape(x.shape().first().copied().unwrap_or(0));
        if x.shape() != expected.as_slice() {
            return Err(Error::Shape {
                op: format!("forward of model `{}`", self.graph.name()),
                expected: format!("[B, {}]", join(self.graph.input_shape())),
                found: format!("{:?}", x.shape()),
            });
        }
        self.run_nodes(p, model, self.graph.nodes(), x, steps)
    }

    fn run_nodes(
        &self,
        p: &mut Party,
        model: &SharedModel,
        nodes: &[Node],
        x: Share,
        steps: &mut Vec<StepStats>,
    ) -> Result<Share> {
        let folded = |name: &str| self.is_folded_bn(name);
        let mode = layers::Mode::Inference { folded_bn: &folded, fusion: &self.fusion };
        let before = p.relu_bits();
        p.set_relu_bits(self.relu_sign_bits(p.fixed().frac_bits()))?;
        let out = layers::forward_nodes(p, mode, self.fusion_switch, model, nodes, x, steps).map(|(y, _)| y);
        p.set_relu_bits(before)?;
        out
    }

    /// One party's whole private inference: share the weights (model owner passes `Some(params)`), share the
    /// batch (data owner passes `Some(input)` of shape `[batch, …input]`), run every layer, reveal the logits to
    /// the receiver. All three parties call this with the same `batch`. Before its first message the data owner
    /// checks its batch and the model owner the model's range (see the [module documentation](self)); without a
    /// declared input bound (and with a range check on), the data owner first sends the power of two above its
    /// `max |x|` to the model owner.
    pub fn infer_party(
        &self,
        p: &mut Party,
        params: Option<&Params>,
        input: Option<&DslTensor>,
        batch: usize,
    ) -> Result<PartyInference> {
        if let Some(x) = input {
            self.check_batch(x, batch, p.fixed())?; // before the weights' round: the owner's error comes first
        }
        let mut setup = Vec::new();
        let bound = match (p.id() == self.roles.data_owner, input) {
            (true, Some(x)) => Some(self.data_bound(x)?),
            _ => self.input_bound,
        };
        let bound = match (self.input_bound, self.range_check) {
            (None, RangeCheck::Interval | RangeCheck::Calibrated { .. })
                if self.roles.data_owner != self.roles.model_owner =>
            {
                timed(p, &mut setup, "declare input bound", "Setup", |p| self.announce_bound(p, bound))?
            }
            _ => bound,
        };
        if p.id() == self.roles.model_owner {
            if let (Some(params), Some(bound)) = (params, bound) {
                params.check_present(&self.graph, "parameters").map_err(|e| dsl_err(&self.graph, e))?;
                self.check_model(params, bound, p.fixed().frac_bits(), p.truncation(), batch)?;
            }
        }
        self.run_party(p, params, input, batch, setup)
    }

    /// The phases after the owners' checks.
    fn run_party(
        &self,
        p: &mut Party,
        params: Option<&Params>,
        input: Option<&DslTensor>,
        batch: usize,
        mut setup: Vec<StepStats>,
    ) -> Result<PartyInference> {
        let mut layers = Vec::new();
        let model = timed(p, &mut setup, "share weights", "Setup", |p| self.share_model(p, params))?;
        let x = timed(p, &mut setup, "share input", "Setup", |p| self.share_input(p, input, batch))?;
        let y = self.forward(p, &model, x, &mut layers)?;
        let revealed = timed(p, &mut setup, "reveal logits", "Setup", |p| p.reveal_fixed_to(&y, self.roles.receiver))?;
        let logits = revealed
            .map(|t| DslTensor::from_vec(t.shape(), t.data().to_vec()))
            .transpose()
            .map_err(|e| Error::Internal(format!("logits of model `{}`: {e}", self.graph.name())))?;
        Ok(PartyInference { logits, setup, layers })
    }

    /// Private inference of `input` `[B, …input]` with `params` on the three parties of `session`: checks the
    /// parameters and the input shape up front (a missing or mis-shaped tensor is an error naming it), then the
    /// data owner's input check and the model owner's range check (see the [module documentation](self)) — all
    /// before [`Session::run`], so a refusal leaves the session usable — then runs every party and merges their
    /// statistics.
    pub fn infer(&self, session: &Session, params: &Params, input: &DslTensor) -> Result<Inference> {
        params.check_present(&self.graph, "parameters").map_err(|e| dsl_err(&self.graph, e))?;
        let batch = input.shape().first().copied().unwrap_or(0);
        let expected = self.batch_shape(batch);
        if input.shape() != expected.as_slice() || batch == 0 {
            return Err(Error::Shape {
                op: format!("input of model `{}`", self.graph.name()),
                expected: format!("[B, {}] with B ≥ 1", join(self.graph.input_shape())),
                found: format!("{:?}", input.shape()),
            });
        }
        // The data owner's values (NaN, ±infinity, out of range) are refused before the run starts.
        self.check_batch(input, batch, session.fixed())?;
        let bound = self.data_bound(input)?;
        self.check_model(params, bound, session.fixed().frac_bits(), session.truncation(), batch)?;
        let start = Instant::now();
        let before = session.stats();
        let roles = self.roles;
        let runs = session.run(|p| {
            let params = (p.id() == roles.model_owner).then_some(params);
            let input = (p.id() == roles.data_owner).then_some(input);
            // One party tells the progress display (the parties run the same steps).
            let hook = self.progress.as_ref().filter(|_| p.id() == roles.receiver).map(|h| h.0.clone());
            p.set_step_hook(hook);
            let result = self.run_party(p, params, input, batch, Vec::new());
            p.set_step_hook(None);
            result
        })?;
        let wall = start.elapsed();
        let after = session.stats();
        let total = PartyStats(core::array::from_fn(|i| after.0[i] - before.0[i]));
        let setup = merge(runs.iter().map(|r| r.setup.as_slice()))?;
        let layers = merge(runs.iter().map(|r| r.layers.as_slice()))?;
        let [a, b, c] = runs;
        Ok(Inference { outputs: [a.logits, b.logits, c.logits], setup, layers, wall, total })
    }
}

fn join(dims: &[usize]) -> String {
    dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
}
