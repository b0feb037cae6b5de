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
//!    twice; any other batch norm shares `scale` and `shift` ([`Executor::with_batch_norm_folding`] turns
//!    folding off).
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
//! model owner in one extra setup round) — nothing else of the batch.
//!
//! Limits: convolution and pooling windows must use the same stride and the same padding on both axes (the
//! protocols take one stride and one padding); a layer that does not is refused with an error naming it.

use crate::party::Party;
use crate::protocols::TruncationMode;
use crate::share::Share;
use crate::stats::PartyStats;
use crate::{Error, PartyId, Result, Session};
use cryptgpu_dsl::range::{self, InputBound, RangeReport};
use cryptgpu_dsl::{Graph, Layer, Node, Params};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::model::{layers, merge, timed};
pub use crate::model::{DslTensor, LayerStats, Roles, StepStats};
use std::borrow::Cow;

/// One party's shares of a model's parameters, ready for [`Executor::forward`].
#[derive(Debug, Clone)]
pub struct SharedModel {
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
        self.tensors.get(key).ok_or_else(|| Error::Invalid(format!("shared model has no tensor `{key}`")))
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

/// How the model owner checks, before sharing anything, that no value of the private run reaches 2^62.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RangeCheck {
    /// Worst-case interval analysis from the declared input bound: a guarantee (the default). On deep networks
    /// the intervals can be far looser than real values and refuse every `t`.
    Interval,
    /// The largest magnitudes over `samples` inputs drawn uniformly within the input bound (seeded), times
    /// `margin`: **not a guarantee** (an input unlike those samples can exceed them).
    Calibrated {
        /// Number of random inputs.
        samples: usize,
        /// Factor on the measured magnitudes (≥ 1).
        margin: f64,
    },
    /// No check: an overflow gives a silently wrong result.
    Off,
}

/// Largest predicted failure probability per run a private inference may have by default (any truncation mode).
pub const DEFAULT_MAX_FAILURE: f64 = 1e-9;

/// Runs a model graph privately: see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct Executor {
    graph: Graph,
    roles: Roles,
    /// Conv2d name → the BatchNorm2d right after it (name, hyper-parameters), folded into its weights and bias.
    folds: cryptgpu_dsl::fold::Folds,
    /// Declared public bound |x| ≤ B on the input; `None`: the batch's max |x|.
    input_bound: Option<f64>,
    range_check: RangeCheck,
    /// Largest allowed predicted failure probability per run under probabilistic truncation.
    max_failure: f64,
}

fn runtime_tensor(t: &DslTensor) -> Result<crate::Tensor> {
    crate::Tensor::new(t.shape(), t.data().to_vec())
}

fn dsl_err(graph: &Graph, e: cryptgpu_dsl::DslError) -> Error {
    Error::Model { model: graph.name().to_string(), source: Box::new(e) }
}

/// One tensor the owner shares: the key the forward pass looks it up by and its shared shape.
struct Slot {
    key: String,
    shape: Vec<usize>,
    /// Transpose `[out, in]` → `[in, out]` after sharing (linear weights).
    transpose: bool,
}

impl Executor {
    /// An executor for `graph` with the given roles; errors when a role is not party 0, 1 or 2.
    pub fn new(graph: Graph, roles: Roles) -> Result<Executor> {
        for (what, id) in
            [("model owner", roles.model_owner), ("data owner", roles.data_owner), ("receiver", roles.receiver)]
        {
            if id > 2 {
                return Err(Error::Invalid(format!("{what} must be party 0, 1 or 2, found {id}")));
            }
        }
        let folds = cryptgpu_dsl::fold::conv_bn_pairs(&graph);
        Ok(Executor {
            graph,
            roles,
            folds,
            input_bound: None,
            range_check: RangeCheck::Interval,
            max_failure: DEFAULT_MAX_FAILURE,
        })
    }

    /// Declares the public bound `|x| ≤ bound` on every input element: the data owner refuses a batch outside it,
    /// the model owner checks the model's range for it; nothing about the batch beyond the declaration is revealed.
    /// Without it the bound is the smallest power of two at least the batch's `max |x|` (`2^⌈log2 max|x|⌉`, at
    /// least [`range::MIN_ANNOUNCED_BOUND`]), which thereby becomes known to the model owner.
    pub fn with_input_bound(mut self, bound: f64) -> Self {
        self.input_bound = Some(bound);
        self
    }

    /// How the model owner checks the range (default [`RangeCheck::Interval`]).
    pub fn with_range_check(mut self, check: RangeCheck) -> Self {
        self.range_check = check;
        self
    }

    /// Allows runs whose predicted failure probability per run is at most `p` (default [`DEFAULT_MAX_FAILURE`]);
    /// `1.0` accepts any. The probability counts every truncation under probabilistic truncation and, in the exact
    /// mode, the divisions by a non-power of two (3×3 or 7×7 average pooling), which are probabilistic in every
    /// mode.
    pub fn allow_truncation_failures(mut self, p: f64) -> Self {
        self.max_failure = p;
        self
    }

    /// The data owner's check, before sharing: every element of `input` is finite and within `|x| ≤ bound`.
    pub fn check_input(&self, input: &DslTensor, bound: f64) -> Result<()> {
        match input.data().iter().enumerate().find(|(_, v)| !(v.is_finite() && v.abs() <= bound)) {
            Some((index, &value)) => Err(Error::InputRange { index, value, bound }),
            None => Ok(()),
        }
    }

    /// The data owner's bound after [`Executor::check_input`] against it: the declared one, else the smallest
    /// power of two at least the batch's `max |x|` ([`InputBound::of_batch`]), which is all the model owner learns
    /// of the batch.
    fn data_bound(&self, input: &DslTensor) -> Result<f64> {
        let bound = match self.input_bound {
            Some(b) => b,
            None => InputBound::of_batch(input).map_err(|e| dsl_err(&self.graph, e))?.max_abs(),
        };
        self.check_input(input, bound)?;
        Ok(bound)
    }

    /// The model owner's check, before sharing: the range analysis of the model with `params` for inputs
    /// `|x| ≤ input_bound` at `frac_bits`, for a run of `batch` samples under `truncation`. Returns the report
    /// (`None` with [`RangeCheck::Off`]); an error names the first layer that can reach 2^62
    /// ([`Error::Range`]), or the layers whose failures make the predicted failure probability of the run exceed
    /// the allowed one ([`Error::FailureProbability`]): every truncation under probabilistic truncation, in the
    /// exact mode the divisions by a non-power of two (average pooling over 3×3 or 7×7 windows).
    pub fn check_model(
        &self,
        params: &Params,
        input_bound: f64,
        frac_bits: u32,
        truncation: TruncationMode,
        batch: usize,
    ) -> Result<Option<RangeReport>> {
        let bound = InputBound::Uniform(input_bound);
        let fold = !self.folds.is_empty();
        let report = match self.range_check {
            RangeCheck::Off => return Ok(None),
            RangeCheck::Interval => range::intervals(&self.graph, params, &bound, fold),
            RangeCheck::Calibrated { samples, margin } => {
                range::calibrate_uniform(&self.graph, params, &bound, samples, margin, fold, 0x5eed)
            }
        }
        .map_err(|e| dsl_err(&self.graph, e))?;
        let method = report.method.to_string();
        if let Some((layer, bound)) = report.first_unsafe(frac_bits) {
            return Err(Error::Range(Box::new(crate::RangeViolation {
                model: self.graph.name().to_string(),
                layer: layer.name.clone(),
                kind: layer.kind.to_string(),
                bound,
                limit: range::RING_LIMIT,
                frac_bits,
                largest_safe_t: report.largest_safe_t(),
                method,
            })));
        }
        // Under probabilistic truncation every truncation can fail; in the exact mode the divisions by a
        // non-power of two still can (they are probabilistic in every mode).
        let probabilistic = truncation == TruncationMode::Probabilistic;
        let probability = report.failure_probability(frac_bits, probabilistic, batch);
        if probability > self.max_failure || probability.is_nan() {
            let sources: Vec<crate::FailureSource> = report
                .failure_sources(frac_bits, probabilistic)
                .into_iter()
                .map(|(l, p)| crate::FailureSource {
                    layer: l.name.clone(),
                    kind: l.kind.to_string(),
                    divisor: match l.truncation.as_ref().map(|t| t.op) {
                        Some(range::Rescale::DivideInt(d)) => Some(d),
                        _ => None,
                    },
                    probability: (p * batch as f64).min(1.0),
                })
                .collect();
            return Err(Error::FailureProbability(Box::new(crate::FailureRisk {
                model: self.graph.name().to_string(),
                probability,
                threshold: self.max_failure,
                frac_bits,
                batch,
                truncation,
                layer: sources.first().map_or(String::new(), |s| s.layer.clone()),
                sources,
                method,
            })));
        }
        Ok(Some(report))
    }

    /// Whether batch norms right after a convolution are folded into it (the default): the owner shares
    /// `W·scale` and `b·scale + shift` instead of `W`, `b`, `scale`, `shift`, which saves the batch norm's product
    /// (its rounds, bytes and rounding) and is exact in real arithmetic. `false` runs every batch norm as an
    /// affine map on shares.
    pub fn with_batch_norm_folding(mut self, fold: bool) -> Self {
        self.folds = if fold { cryptgpu_dsl::fold::conv_bn_pairs(&self.graph) } else { HashMap::new() };
        self
    }

    fn is_folded_bn(&self, name: &str) -> bool {
        self.folds.values().any(|(bn, _)| bn == name)
    }

    /// The model graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The roles.
    pub fn roles(&self) -> Roles {
        self.roles
    }

    /// The tensors the owner shares, in a fixed order every party derives from the graph alone.
    fn slots(&self) -> Vec<Slot> {
        let mut v = Vec::new();
        for info in self.graph.layers() {
            let n = &info.name;
            let slot =
                |suffix: &str, shape: Vec<usize>, transpose| Slot { key: format!("{n}.{suffix}"), shape, transpose };
            match &info.layer {
                Layer::Conv2d(c) => {
                    v.push(slot("weight", vec![c.out_channels, c.in_channels, c.kernel.0, c.kernel.1], false));
                    if c.bias || self.folds.contains_key(n) {
                        v.push(slot("bias", vec![c.out_channels], false));
                    }
                }
                Layer::Linear(l) => {
                    v.push(slot("weight", vec![l.out_features, l.in_features], true));
                    if l.bias {
                        v.push(slot("bias", vec![l.out_features], false));
                    }
                }
                Layer::BatchNorm2d(_) if self.is_folded_bn(n) => {}
                Layer::BatchNorm2d(b) => {
                    v.push(slot("scale", vec![b.channels], false));
                    v.push(slot("shift", vec![b.channels], false));
                }
                _ => {}
            }
        }
        v
    }

    /// The owner's flat plaintext vector of every slot, batch norm folded into scale and shift.
    fn flatten_params(&self, params: &Params) -> Result<Vec<f64>> {
        params.check_present(&self.graph, "parameters").map_err(|e| dsl_err(&self.graph, e))?;
        let get = |name: &str| params.require(name).map_err(|e| dsl_err(&self.graph, e));
        let mut flat = Vec::new();
        for info in self.graph.layers() {
            let n = &info.name;
            match &info.layer {
                Layer::Conv2d(c) => {
                    let (w, b) = cryptgpu_dsl::fold::conv_weights(params, n, c, self.folds.get(n))
                        .map_err(|e| dsl_err(&self.graph, e))?;
                    flat.extend(w);
                    flat.extend(b.unwrap_or_default());
                }
                Layer::Linear(l) => {
                    flat.extend_from_slice(get(&format!("{n}.weight"))?.data());
                    if l.bias {
                        flat.extend_from_slice(get(&format!("{n}.bias"))?.data());
                    }
                }
                Layer::BatchNorm2d(_) if self.is_folded_bn(n) => {}
                Layer::BatchNorm2d(b) => {
                    let (scale, shift) =
                        cryptgpu_dsl::fold::bn_affine(params, n, b.eps).map_err(|e| dsl_err(&self.graph, e))?;
                    flat.extend_from_slice(&scale);
                    flat.extend_from_slice(&shift);
                }
                _ => {}
            }
        }
        Ok(flat)
    }

    /// Shares the model's parameters from the model owner (one round for all of them). The owner passes
    /// `Some(params)` (every tensor the graph needs must be present with its PyTorch shape; extra tensors and
    /// batch norm's `num_batches_tracked`, which inference never reads, may be present or not), every other party
    /// `None`.
    pub fn share_model(&self, p: &mut Party, params: Option<&Params>) -> Result<SharedModel> {
        let owner = self.roles.model_owner;
        let slots = self.slots();
        let mut total = 0usize;
        for s in &slots {
            total = total.checked_add(crate::tensor::numel(&s.shape)?).ok_or_else(|| Error::Overflow {
                what: format!("parameters of `{}`", s.key),
                shape: s.shape.clone(),
            })?;
        }
        let value = match (p.id() == owner, params) {
            (true, Some(params)) => Some(crate::Tensor::new(&[total], self.flatten_params(params)?)?),
            (true, None) => {
                return Err(Error::Invalid(format!("party {owner} owns the model but supplied no parameters")))
            }
            (false, Some(_)) => {
                return Err(Error::Invalid(format!(
                    "party {} supplied parameters for a model owned by party {owner}",
                    p.id()
                )))
            }
            (false, None) => None,
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
        Ok(SharedModel { tensors })
    }

    /// The batched input shape `[batch, …input]`.
    fn batch_shape(&self, batch: usize) -> Vec<usize> {
        let mut s = vec![batch];
        s.extend_from_slice(self.graph.input_shape());
        s
    }

    /// The data owner's local check of its batch, before any message: shape `[batch, …input]` with `batch ≥ 1`,
    /// and every value encodable at `fixed` (no NaN, ±infinity or out-of-range value).
    fn check_batch(&self, x: &DslTensor, batch: usize, fixed: crate::FixedPoint) -> Result<()> {
        let shape = self.batch_shape(batch);
        if batch == 0 {
            return Err(Error::Invalid("the batch must hold at least one sample".into()));
        }
        if x.shape() != shape.as_slice() {
            return Err(Error::Shape {
                op: format!("input of model `{}`", self.graph.name()),
                expected: format!("{shape:?}"),
                found: format!("{:?}", x.shape()),
            });
        }
        fixed.check_slice(x.data())
    }

    /// Shares the data owner's batch: the owner passes `Some(x)` of shape `[batch, …input]`, the others `None`.
    pub fn share_input(&self, p: &mut Party, input: Option<&DslTensor>, batch: usize) -> Result<Share> {
        let shape = self.batch_shape(batch);
        if batch == 0 {
            return Err(Error::Invalid("the batch must hold at least one sample".into()));
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
        let mode = layers::Mode::Inference { folded_bn: &folded };
        layers::forward_nodes(p, mode, model, nodes, x, steps).map(|(y, _)| y)
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

    /// The data owner sends its bound (the power of two above `max |x|`, a public declaration from now on) to the
    /// model owner: one round.
    fn announce_bound(&self, p: &mut Party, bound: Option<f64>) -> Result<Option<f64>> {
        let (owner, data) = (self.roles.model_owner, self.roles.data_owner);
        if p.id() == data {
            let b = bound.ok_or_else(|| Error::Invalid(format!("party {data} owns the data but supplied none")))?;
            p.round(vec![(owner, vec![b.to_bits()])], &[])?;
            Ok(Some(b))
        } else if p.id() == owner {
            let got = p.round(vec![], &[(data, 1)])?;
            Ok(got.first().and_then(|w| w.first()).map(|&w| f64::from_bits(w)))
        } else {
            p.round(vec![], &[])?;
            Ok(bound)
        }
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
            .map_err(|e| Error::Invalid(format!("logits of model `{}`: {e}", self.graph.name())))?;
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
            self.run_party(p, params, input, batch, Vec::new())
        })?;
        let wall = start.elapsed();
        let after = session.stats();
        let total = PartyStats(core::array::from_fn(|i| after.0[i] - before.0[i]));
        let setup = merge(runs.iter().map(|r| r.setup.as_slice()))?;
        let layers = merge(runs.iter().map(|r| r.layers.as_slice()))?;
        let [a, b, c] = runs;
        Ok(Inference { outputs: [a.logits, b.logits, c.logits], setup, layers, wall, total })
    }

    /// The plaintext f64 result of exactly what [`Executor::infer`] computes privately on `input` `[B, …input]`:
    /// the same graph, the same tensors the model owner shares (batch norm from its running statistics, folded
    /// into the convolution before it or applied as `scale`/`shift`), every layer in f64 instead of fixed point
    /// on shares. A model owner who also holds the inputs (e.g. to test a deployment) compares the private logits
    /// with it: they differ by the fixed-point error only (README, "Accuracy"). It runs in this process and sends
    /// nothing. NaN in `input` or `params` propagates to every logit it reaches (the reference's semantics).
    pub fn plaintext_reference(&self, params: &Params, input: &DslTensor) -> Result<DslTensor> {
        let batch = input.shape().first().copied().unwrap_or(0);
        if input.shape() != self.batch_shape(batch).as_slice() || batch == 0 {
            return Err(Error::Shape {
                op: format!("input of model `{}`", self.graph.name()),
                expected: format!("[B, {}] with B ≥ 1", join(self.graph.input_shape())),
                found: format!("{:?}", input.shape()),
            });
        }
        let flat = self.flatten_params(params)?;
        let mut tensors = HashMap::new();
        let mut at = 0;
        for slot in self.slots() {
            let len = crate::tensor::held_numel(&slot.shape);
            let t =
                DslTensor::from_vec(&slot.shape, flat[at..at + len].to_vec()).map_err(|e| dsl_err(&self.graph, e))?;
            tensors.insert(slot.key, t);
            at += len;
        }
        self.plain_nodes(&tensors, self.graph.nodes(), input.clone()).map_err(|e| dsl_err(&self.graph, e))
    }

    /// [`Executor::run_nodes`] in plaintext f64 over the owner's shared tensors (see
    /// [`Executor::plaintext_reference`]).
    fn plain_nodes(
        &self,
        tensors: &HashMap<String, DslTensor>,
        nodes: &[Node],
        mut x: DslTensor,
    ) -> cryptgpu_dsl::Result<DslTensor> {
        use cryptgpu_dsl::reference as r;
        let get = |key: String| {
            tensors.get(&key).ok_or_else(|| cryptgpu_dsl::DslError::InvalidLayer {
                layer: key.rsplit_once('.').map_or(key.as_str(), |(layer, _)| layer).to_string(),
                message: format!("the model owner's shared tensors have no `{key}`"),
            })
        };
        for node in nodes {
            x = match node {
                Node::Layer { name, layer } => match layer {
                    Layer::Conv2d(c) => {
                        let has_bias = c.bias || self.folds.contains_key(name);
                        let b = if has_bias { Some(get(format!("{name}.bias"))?) } else { None };
                        r::conv2d_forward(&x, get(format!("{name}.weight"))?, b, c)?
                    }
                    Layer::Linear(l) => {
                        let b = if l.bias { Some(get(format!("{name}.bias"))?) } else { None };
                        r::linear_forward(&x, get(format!("{name}.weight"))?, b)?
                    }
                    Layer::Relu => r::relu_forward(&x),
                    Layer::AvgPool2d(pool) => r::avg_pool2d_forward(&x, pool)?,
                    Layer::MaxPool2d(pool) => r::max_pool2d_forward(&x, pool)?.0,
                    Layer::GlobalAvgPool => r::global_avg_pool_forward(&x)?,
                    Layer::BatchNorm2d(_) if self.is_folded_bn(name) => x,
                    Layer::BatchNorm2d(b) => {
                        let (scale, shift) = (get(format!("{name}.scale"))?, get(format!("{name}.shift"))?);
                        let hw: usize = x.shape().get(2..).map_or(1, |s| s.iter().product());
                        for (i, v) in x.data_mut().iter_mut().enumerate() {
                            let c = (i / hw.max(1)) % b.channels.max(1);
                            *v = *v * scale.data()[c] + shift.data()[c];
                        }
                        x
                    }
                    Layer::Flatten => {
                        let (n, len) = (x.shape().first().copied().unwrap_or(0), x.len());
                        x.reshape(&[n, len / n.max(1)])?
                    }
                    Layer::Dropout { .. } => x,
                },
                Node::Sequential { children, .. } => self.plain_nodes(tensors, children, x)?,
                Node::Residual { main, shortcut, post, .. } => {
                    let m = self.plain_nodes(tensors, main, x.clone())?;
                    let s = self.plain_nodes(tensors, shortcut, x)?;
                    self.plain_nodes(tensors, post, m.add(&s)?)?
                }
            };
        }
        Ok(x)
    }
}

fn join(dims: &[usize]) -> String {
    dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
}
