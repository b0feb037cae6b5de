//! Range analysis of a model's private inference, in plaintext f64: how large every value the private run
//! truncates or stores can get, hence which fixed-point precision `t` is safe and how likely the probabilistic
//! truncation is to fail.
//!
//! The private executor (the runtime's `executor` module) keeps reals at scale `2^t` in Z_2^64 and brings them back
//! to that scale at these **truncation sites**:
//! - Conv2d (batch norm folded in when it directly follows), Linear and an unfolded BatchNorm2d's multiply: a
//!   product of two `t`-bit encodings, so the pre-truncation ring value is `z·2^(2t)` (a convolution's bias is
//!   added before the truncation, a linear layer's and a batch norm's shift after it);
//! - AvgPool2d and GlobalAvgPool: a window sum at scale `2^t`, divided by the window size — a power of two is a
//!   truncation (exact in the exact mode), any other divisor a division that is **always probabilistic**.
//!   Under a [fusion plan](crate::fuse) ([`intervals_fused`], [`calibrate_fused`]) a fused pool keeps its window
//!   sums (stored values `area`× the averages, through the ReLU/Flatten after it) and the product after it
//!   truncates a value `area`× the unfused one. A batch norm the plan folds into the product after it
//!   ([`crate::fold::bn_input_folds`]) is the identity (its recorded output is its input, which is what the run
//!   stores) and the product is bounded with the folded weights `W·scale` and bias `b + W*shift`: its values are
//!   those of the unfolded batch norm → product chain.
//!
//! Exact truncation is right for `|z| < 2^62`; probabilistic truncation and division fail with probability
//! `(|z| + 1)/2^64` per element. Every stored value `v` (layer outputs, residual sums, the input) must also satisfy
//! `|v|·2^t < 2^62` for comparisons (ReLU, max pooling) to be right. A [`RangeReport`] records, per layer, the
//! largest magnitude of its pre-truncation value and of its output **in real units**; the ring bounds at a given
//! `t` follow by scaling (`2^(2t)` for products, `2^t` otherwise), so one report answers every `t`.
//!
//! Two ways to get the magnitudes:
//! - [`intervals`]: a guarantee. Per-channel intervals `[lo, hi]` are pushed from a public input bound through
//!   every node (convolution and linear: per output, the positive weights times the matching end of each input
//!   interval plus the negative weights times the other end, plus the bias; zero padding adds 0 to the input
//!   interval; ReLU clamps; pooling keeps the interval, average pooling with padding includes 0; residual blocks add
//!   the branches' intervals). Worst-case intervals grow layer after layer, so on deep networks they can be far
//!   looser than any real input reaches — the report then refuses every `t` although real inputs are fine.
//! - [`calibrate`]: a measurement. The f64 forward runs on sample inputs, the largest magnitude per layer and
//!   channel is recorded and multiplied by a stated margin. This is **not a guarantee**: an input unlike the
//!   samples can exceed it.
//!
//! Magnitudes are of the real-valued computation; the fixed-point rounding of the private run (a few units in the
//! last place, `2^−t` each) is not included, which matters only for a bound within a few ulps of the limit.

use crate::error::{DslError, Result};
use crate::fold::{bn_affine, conv_bn_pairs, conv_weights_folded, linear_weights, Folds};
use crate::fuse::FusionPlan;
use crate::graph::Graph;
use crate::layer::{Conv2d, Layer, Node, Pool2d};
use crate::params::Params;
use crate::reference::{self, out_extent};
use crate::tensor::Tensor;

/// Pre-truncation ring values must stay below `2^62` (exact truncation, comparisons).
pub const RING_LIMIT: f64 = 4_611_686_018_427_387_904.0;

/// Largest fractional precision the runtime accepts.
pub const MAX_FRAC_BITS: u32 = 31;

/// How the private run brings a layer's value back to scale `2^t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rescale {
    /// A fixed-point product truncated by `2^t` (pre-truncation scale `2^(2t)`): exact or probabilistic as the
    /// session's truncation mode says.
    Product,
    /// A sum at scale `2^t` divided by a public power of two (a truncation: exact or probabilistic by mode).
    DividePow2(u64),
    /// A sum at scale `2^t` divided by a public integer that is not a power of two: probabilistic in every mode.
    DivideInt(u64),
}

impl Rescale {
    fn of_divisor(d: u64) -> Rescale {
        if d.is_power_of_two() {
            Rescale::DividePow2(d)
        } else {
            Rescale::DivideInt(d)
        }
    }

    /// Bits of scale of the pre-truncation ring value at precision `t` (`2t` for a product, `t` otherwise).
    pub fn scale_bits(self, t: u32) -> i32 {
        match self {
            Rescale::Product => 2 * t as i32,
            Rescale::DividePow2(_) | Rescale::DivideInt(_) => t as i32,
        }
    }

    /// Whether this site can fail: always for a non-power-of-two divisor, otherwise only with probabilistic
    /// truncation.
    pub fn probabilistic(self, probabilistic_truncation: bool) -> bool {
        matches!(self, Rescale::DivideInt(_)) || probabilistic_truncation
    }
}

/// The value a layer truncates: how, its largest magnitude, and the sum of the per-element magnitudes.
#[derive(Debug, Clone, PartialEq)]
pub struct Truncated {
    /// How it is rescaled.
    pub op: Rescale,
    /// Largest |pre-truncation value| over the layer's elements, in real units (ring value: this `· 2^scale_bits`).
    pub max: f64,
    /// Sum over one sample's elements of their magnitude bounds (real units), for the failure probability.
    pub sum: f64,
    /// Elements truncated per sample.
    pub elements: usize,
}

/// One layer's (or residual add's, or the input's) magnitudes.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerRange {
    /// Full layer name, `<block>.add` for a residual add, `input` for the input.
    pub name: String,
    /// Layer kind (`Conv2d`, …), `ResidualAdd` or `Input`.
    pub kind: &'static str,
    /// What the layer truncates, if anything.
    pub truncation: Option<Truncated>,
    /// Largest |value| the layer stores (real units; its ring value is this `· 2^t`).
    pub output: f64,
    /// Largest |value| entering the layer (real units; for a ReLU, what its sign circuit must cover).
    pub input: f64,
}

impl LayerRange {
    /// The largest ring value this layer reaches at precision `t`: its pre-truncation value or its output.
    pub fn ring_bound(&self, t: u32) -> f64 {
        let out = scaled(self.output, t as i32);
        self.truncation.as_ref().map_or(out, |tr| out.max(scaled(tr.max, tr.op.scale_bits(t))))
    }

    /// Whether every ring value of this layer stays below [`RING_LIMIT`] at precision `t`.
    pub fn safe_at(&self, t: u32) -> bool {
        self.ring_bound(t) < RING_LIMIT
    }
}

fn scaled(v: f64, bits: i32) -> f64 {
    v * (bits as f64).exp2()
}

/// Where the magnitudes of a [`RangeReport`] come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    /// Guaranteed worst-case intervals from an input bound.
    Interval {
        /// Largest |x| of the input (the widest per-channel interval end).
        input_bound: f64,
    },
    /// Largest magnitudes over sample inputs, times a margin: not a guarantee.
    Calibrated {
        /// Number of sample inputs.
        samples: usize,
        /// Factor applied to every measured magnitude.
        margin: f64,
    },
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Method::Interval { input_bound } => write!(f, "interval bound for inputs |x| ≤ {input_bound:e}"),
            Method::Calibrated { samples, margin } => {
                write!(f, "calibrated on {samples} sample input(s) × margin {margin} (not a guarantee)")
            }
        }
    }
}

/// Per-layer magnitudes of a model's private inference: see the [module documentation](self).
#[derive(Debug, Clone, PartialEq)]
pub struct RangeReport {
    /// The model's name.
    pub model: String,
    /// How the magnitudes were obtained.
    pub method: Method,
    /// The input and every layer (and residual add) in execution order.
    pub layers: Vec<LayerRange>,
}

impl RangeReport {
    /// The ReLU layer with the largest input magnitude, if the model has a ReLU: what a sign circuit over a
    /// bounded bit range must cover.
    pub fn largest_relu_input(&self) -> Option<&LayerRange> {
        self.layers.iter().filter(|l| l.kind == "ReLU").max_by(|a, b| a.input.total_cmp(&b.input))
    }

    /// The first layer whose ring values reach [`RING_LIMIT`] at precision `t`, with the bound it reaches.
    pub fn first_unsafe(&self, t: u32) -> Option<(&LayerRange, f64)> {
        self.layers.iter().find(|l| !l.safe_at(t)).map(|l| (l, l.ring_bound(t)))
    }

    /// The largest `t ≤ 31` at which every layer is safe, `None` when even `t = 0` is not.
    pub fn largest_safe_t(&self) -> Option<u32> {
        (0..=MAX_FRAC_BITS).rev().find(|&t| self.first_unsafe(t).is_none())
    }

    /// Upper bound (union bound) on the probability that some truncation of one inference of `batch` samples
    /// fails at precision `t`: `Σ (|z| + 1)/2^64` over the elements of every site that can fail — every site with
    /// `probabilistic_truncation`, else only divisions by a non-power of two. Capped at 1.
    pub fn failure_probability(&self, t: u32, probabilistic_truncation: bool, batch: usize) -> f64 {
        let p: f64 = self.layers.iter().map(|l| self.layer_failure(l, t, probabilistic_truncation)).sum();
        (p * batch as f64).min(1.0)
    }

    /// The per-sample failure bound of one layer (0 when it cannot fail in this mode).
    pub fn layer_failure(&self, layer: &LayerRange, t: u32, probabilistic_truncation: bool) -> f64 {
        match &layer.truncation {
            Some(tr) if tr.op.probabilistic(probabilistic_truncation) => {
                (scaled(tr.sum, tr.op.scale_bits(t)) + tr.elements as f64) / 2f64.powi(64)
            }
            _ => 0.0,
        }
    }

    /// Every layer that can fail at precision `t` in this mode, with its per-sample failure bound, largest first.
    pub fn failure_sources(&self, t: u32, probabilistic_truncation: bool) -> Vec<(&LayerRange, f64)> {
        let mut v: Vec<_> = self
            .layers
            .iter()
            .map(|l| (l, self.layer_failure(l, t, probabilistic_truncation)))
            .filter(|(_, p)| *p > 0.0)
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }

    /// The layer contributing most to [`RangeReport::failure_probability`].
    pub fn worst_failure_layer(&self, t: u32, probabilistic_truncation: bool) -> Option<&LayerRange> {
        self.failure_sources(t, probabilistic_truncation).first().map(|(l, _)| *l)
    }

    /// The same report with every magnitude multiplied by `factor`, a finite factor ≥ 1 (else
    /// [`DslError::Margin`]); a calibration's margin multiplies with it.
    pub fn with_margin(&self, factor: f64) -> Result<RangeReport> {
        check_margin(factor)?;
        let mut r = self.clone();
        for l in &mut r.layers {
            l.output *= factor;
            l.input *= factor;
            if let Some(t) = &mut l.truncation {
                t.max *= factor;
                t.sum *= factor;
            }
        }
        if let Method::Calibrated { margin, .. } = &mut r.method {
            *margin *= factor;
        }
        Ok(r)
    }

    /// Per layer, how many times this report's bound exceeds `other`'s (the ratio of the largest ring-relevant
    /// magnitudes: the pre-truncation value if any, else the output). Used to flag interval bounds that are far
    /// looser than calibrated ones.
    pub fn looseness(&self, other: &RangeReport) -> Vec<(String, f64)> {
        let key = |l: &LayerRange| l.truncation.as_ref().map_or(l.output, |t| t.max);
        self.layers
            .iter()
            .zip(&other.layers)
            .map(|(a, b)| (a.name.clone(), key(a) / key(b).max(f64::MIN_POSITIVE)))
            .collect()
    }
}

/// A public bound on the input: an interval per channel (dimension 0 of the per-sample shape) or one `|x| ≤ B`.
#[derive(Debug, Clone, PartialEq)]
pub enum InputBound {
    /// Every element satisfies `|x| ≤ B`.
    Uniform(f64),
    /// Channel `c`'s elements lie in `[lo_c, hi_c]`.
    PerChannel(Vec<(f64, f64)>),
}

impl InputBound {
    /// The bound a data owner without a declared bound makes public for its batch `x`: `|x| ≤ 2^⌈log2 max|x|⌉`,
    /// the smallest power of two at least `max |x|` ([`power_of_two_above`]), so that only that power of two is
    /// revealed, not `max |x|` itself. An error names the first NaN or infinite element.
    pub fn of_batch(x: &Tensor) -> Result<InputBound> {
        Ok(InputBound::Uniform(power_of_two_above(max_abs_finite(x)?)))
    }

    /// The per-channel interval ends `[lo, hi]` of this bound for `graph`'s input (channel = dimension 0 of the
    /// per-sample shape); an error when the bound is not finite or has the wrong number of channels.
    pub fn ends(&self, graph: &Graph) -> Result<Vec<(f64, f64)>> {
        let shape = graph.input_shape();
        let channels = shape[0];
        match self {
            InputBound::Uniform(b) if b.is_finite() => Ok(vec![(-b.abs(), b.abs()); channels]),
            InputBound::PerChannel(v)
                if v.len() == channels && v.iter().all(|(l, h)| l <= h && l.is_finite() && h.is_finite()) =>
            {
                Ok(v.clone())
            }
            _ => Err(DslError::BatchShape {
                what: format!("{} input bound {self:?}", graph.name()),
                expected: format!("a finite |x| bound or {channels} finite intervals lo ≤ hi"),
                found: shape.to_vec(),
            }),
        }
    }

    /// The largest magnitude the bound admits.
    pub fn max_abs(&self) -> f64 {
        match self {
            InputBound::Uniform(b) => b.abs(),
            InputBound::PerChannel(v) => v.iter().map(|(lo, hi)| lo.abs().max(hi.abs())).fold(0.0, f64::max),
        }
    }
}

/// The largest |x| of a tensor; an error ([`DslError::NonFinite`]) names the first NaN or infinite element.
pub fn max_abs_finite(x: &Tensor) -> Result<f64> {
    let mut m: f64 = 0.0;
    for (index, &value) in x.data().iter().enumerate() {
        if !value.is_finite() {
            return Err(DslError::NonFinite { what: format!("input {:?}", x.shape()), index, value });
        }
        m = m.max(value.abs());
    }
    Ok(m)
}

/// The smallest bound a batch announces: [`power_of_two_above`] never returns less, so every batch whose values
/// are all below it (an all-zero batch included) announces the same bound. It is below the finest fixed-point
/// step `2^−31`.
pub const MIN_ANNOUNCED_BOUND: f64 = 1.0 / 4_294_967_296.0; // 2^-32

/// The smallest power of two `≥ m` (`2^⌈log2 m⌉`), at least [`MIN_ANNOUNCED_BOUND`]; `f64::MAX` for
/// `m > 2^1023` (no larger power of two is finite). For a finite `m ≥ 0`.
pub fn power_of_two_above(m: f64) -> f64 {
    if m <= MIN_ANNOUNCED_BOUND {
        return MIN_ANNOUNCED_BOUND;
    }
    // A normal positive f64: 2^(exponent) · 1.mantissa; a power of two has a zero mantissa.
    let bits = m.to_bits();
    let (exponent, mantissa) = (bits >> 52, bits & ((1 << 52) - 1));
    if mantissa == 0 {
        m
    } else if exponent + 1 >= 0x7ff {
        f64::MAX
    } else {
        f64::from_bits((exponent + 1) << 52)
    }
}

/// Largest number of input elements (samples × per-sample size) a calibration draws: 2^24 f64 (128 MiB).
pub const MAX_CALIBRATION_ELEMENTS: usize = 1 << 24;

/// The shape `[n, …input]` of `n` calibration samples for `graph`, or [`DslError::TooLarge`] when it has more
/// than [`MAX_CALIBRATION_ELEMENTS`] elements (or its count overflows): checked before anything is allocated.
pub fn calibration_shape(graph: &Graph, n: usize) -> Result<Vec<usize>> {
    let mut shape = vec![n];
    shape.extend_from_slice(graph.input_shape());
    match crate::tensor::checked_numel(&shape) {
        Some(e) if e <= MAX_CALIBRATION_ELEMENTS => Ok(shape),
        _ => Err(DslError::TooLarge {
            what: format!("{} calibration samples", graph.name()),
            shape,
            limit: MAX_CALIBRATION_ELEMENTS,
        }),
    }
}

/// Checks a calibration margin: a finite factor ≥ 1, else [`DslError::Margin`].
pub fn check_margin(margin: f64) -> Result<()> {
    if margin >= 1.0 && margin.is_finite() {
        Ok(())
    } else {
        Err(DslError::Margin { margin })
    }
}

/// Per-channel magnitudes of one value (interval ends or measured maxima) and the number of elements per
/// channel per sample.
struct ChannelMax {
    max: Vec<f64>,
    per_channel: usize,
}

impl ChannelMax {
    fn truncated(&self, op: Rescale, margin: f64) -> Truncated {
        Truncated {
            op,
            max: self.max.iter().fold(0.0, |a: f64, &b| a.max(b)) * margin,
            sum: self.max.iter().sum::<f64>() * self.per_channel as f64 * margin,
            elements: self.max.len() * self.per_channel,
        }
    }
    fn overall(&self) -> f64 {
        self.max.iter().fold(0.0, |a: f64, &b| a.max(b))
    }
}

/// What the walk over the graph needs of a value domain (intervals or sample tensors).
trait Domain: Sized + Clone {
    fn conv(&self, c: &Conv2d, w: &[f64], b: Option<&[f64]>) -> Result<Self>;
    /// `x · Wᵀ` (no bias) for `w [out, in]`.
    fn linear(&self, w: &Tensor) -> Result<Self>;
    /// Adds `v[i]` to channel (or feature) `i`.
    fn shift(&self, v: &[f64]) -> Self;
    /// Multiplies channel `i` by `v[i]`.
    fn scale(&self, v: &[f64]) -> Self;
    fn relu(&self) -> Self;
    /// Window sums of an average pooling (before the division).
    fn sum_pool(&self, p: &Pool2d) -> Result<Self>;
    fn max_pool(&self, p: &Pool2d) -> Result<Self>;
    /// Sum over all spatial positions (before the division).
    fn global_sum(&self) -> Result<Self>;
    fn divide(&self, d: f64) -> Self;
    fn flatten(&self) -> Result<Self>;
    fn add(&self, other: &Self) -> Result<Self>;
    /// Per-sample spatial extent `H·W` (1 for features).
    fn spatial(&self) -> usize;
    fn magnitudes(&self) -> ChannelMax;
}

struct Walk<'a> {
    params: &'a Params,
    folds: Folds,
    fusion: &'a FusionPlan,
    margin: f64,
    out: Vec<LayerRange>,
}

impl Walk<'_> {
    fn is_folded_bn(&self, name: &str) -> bool {
        self.folds.values().any(|(bn, _)| bn == name)
    }

    fn record(
        &mut self,
        name: &str,
        kind: &'static str,
        truncation: Option<Truncated>,
        input: &ChannelMax,
        out: &ChannelMax,
    ) {
        let (input, output) = (input.overall() * self.margin, out.overall() * self.margin);
        self.out.push(LayerRange { name: name.to_string(), kind, truncation, output, input });
    }

    fn layer<D: Domain>(&mut self, name: &str, layer: &Layer, x: D) -> Result<D> {
        let m = self.margin;
        let input = x.magnitudes();
        // A product that takes over an average pool's division sees the window sums (`area`× the averages): its
        // pre-truncation value is `area`× the unfused one (see [`crate::fuse`]).
        let area = f64::from(self.fusion.extra_bits(name)).exp2();
        let (y, truncation) = match layer {
            Layer::Conv2d(c) => {
                let input_fold = self.fusion.input_fold(name);
                let (w, b) = conv_weights_folded(self.params, name, c, input_fold, self.folds.get(name))?;
                let x = if area > 1.0 { x.divide(area) } else { x };
                let y = x.conv(c, &w, b.as_deref())?;
                let t = y.magnitudes().truncated(Rescale::Product, m * area);
                (y, Some(t))
            }
            Layer::Linear(l) => {
                let x = if area > 1.0 { x.divide(area) } else { x };
                let (w, b) = linear_weights(self.params, name, l, self.fusion.input_fold(name))?;
                let z = x.linear(&Tensor::from_vec(&[l.out_features, l.in_features], w)?)?;
                let t = z.magnitudes().truncated(Rescale::Product, m * area);
                let y = match b {
                    Some(b) => z.shift(&b),
                    None => z,
                };
                (y, Some(t))
            }
            // A fused average pool keeps its window sums (no division, no truncation of its own).
            Layer::AvgPool2d(p) if self.fusion.pool_bits(name).is_some() => (x.sum_pool(p)?, None),
            Layer::GlobalAvgPool if self.fusion.pool_bits(name).is_some() => (x.global_sum()?, None),
            // Folded into the convolution before it or the product after it: the run stores its input as is.
            Layer::BatchNorm2d(_) if self.is_folded_bn(name) || self.fusion.folds_batch_norm(name) => (x, None),
            Layer::BatchNorm2d(b) => {
                let (scale, shift) = bn_affine(self.params, name, b.eps)?;
                let z = x.scale(&scale);
                let t = z.magnitudes().truncated(Rescale::Product, m);
                (z.shift(&shift), Some(t))
            }
            Layer::AvgPool2d(p) => {
                let d = (p.kernel.0 * p.kernel.1) as u64;
                let sum = x.sum_pool(p)?;
                let t = sum.magnitudes().truncated(Rescale::of_divisor(d), m);
                (sum.divide(d as f64), Some(t))
            }
            Layer::GlobalAvgPool => {
                let d = x.spatial() as u64;
                let sum = x.global_sum()?;
                let t = sum.magnitudes().truncated(Rescale::of_divisor(d), m);
                (sum.divide(d as f64), Some(t))
            }
            Layer::Relu => (x.relu(), None),
            Layer::MaxPool2d(p) => (x.max_pool(p)?, None),
            Layer::Flatten => (x.flatten()?, None),
            Layer::Dropout { .. } => (x, None),
        };
        self.record(name, layer.kind_name(), truncation, &input, &y.magnitudes());
        Ok(y)
    }

    fn seq<D: Domain>(&mut self, nodes: &[Node], mut x: D) -> Result<D> {
        for node in nodes {
            x = match node {
                Node::Layer { name, layer } => self.layer(name, layer, x)?,
                Node::Sequential { children, .. } => self.seq(children, x)?,
                Node::Residual { name, main, shortcut, post } => {
                    let m = self.seq(main, x.clone())?;
                    let s = self.seq(shortcut, x)?;
                    let sum = m.add(&s)?;
                    let inputs = if m.magnitudes().overall() >= s.magnitudes().overall() { &m } else { &s };
                    self.record(&format!("{name}.add"), "ResidualAdd", None, &inputs.magnitudes(), &sum.magnitudes());
                    self.seq(post, sum)?
                }
            };
        }
        Ok(x)
    }
}

fn run<D: Domain>(
    graph: &Graph,
    params: &Params,
    x: D,
    margin: f64,
    (fold, fusion): (bool, &FusionPlan),
    method: Method,
) -> Result<RangeReport> {
    params.check_present(graph, "parameters")?;
    let folds = if fold { conv_bn_pairs(graph) } else { Folds::new() };
    let mut walk = Walk { params, folds, fusion, margin, out: Vec::new() };
    walk.record("input", "Input", None, &x.magnitudes(), &x.magnitudes());
    walk.seq(graph.nodes(), x)?;
    Ok(RangeReport { model: graph.name().to_string(), method, layers: walk.out })
}

/// Guaranteed per-layer bounds for every input within `input`: see the [module documentation](self).
/// `fold_batch_norm` must match the executor's setting (folding is its default).
pub fn intervals(graph: &Graph, params: &Params, input: &InputBound, fold_batch_norm: bool) -> Result<RangeReport> {
    intervals_fused(graph, params, input, fold_batch_norm, &FusionPlan::none())
}

/// [`intervals`] of the run with the average-pool fusions of `fusion` ([`crate::fuse`]): the window sums a fused
/// pool keeps, and the products that take over its division, are bounded as they are computed.
pub fn intervals_fused(
    graph: &Graph,
    params: &Params,
    input: &InputBound,
    fold_batch_norm: bool,
    fusion: &FusionPlan,
) -> Result<RangeReport> {
    let iv = Intervals::new(graph.input_shape().to_vec(), input.ends(graph)?);
    run(graph, params, iv, 1.0, (fold_batch_norm, fusion), Method::Interval { input_bound: input.max_abs() })
}

/// Per-layer magnitudes measured on `samples` `[N, …input]` through the f64 forward, times `margin` (≥ 1):
/// not a guarantee (see the [module documentation](self)).
pub fn calibrate(
    graph: &Graph,
    params: &Params,
    samples: &Tensor,
    margin: f64,
    fold_batch_norm: bool,
) -> Result<RangeReport> {
    calibrate_fused(graph, params, samples, margin, fold_batch_norm, &FusionPlan::none())
}

/// [`calibrate`] of the run with the average-pool fusions of `fusion` ([`crate::fuse`]).
pub fn calibrate_fused(
    graph: &Graph,
    params: &Params,
    samples: &Tensor,
    margin: f64,
    fold_batch_norm: bool,
    fusion: &FusionPlan,
) -> Result<RangeReport> {
    check_margin(margin)?;
    let n = samples.shape().first().copied().unwrap_or(0);
    if samples.shape().get(1..) != Some(graph.input_shape()) || n == 0 {
        return Err(DslError::BatchShape {
            what: format!("{} calibration samples", graph.name()),
            expected: format!("[N ≥ 1, {:?}]", graph.input_shape()),
            found: samples.shape().to_vec(),
        });
    }
    max_abs_finite(samples)?;
    let method = Method::Calibrated { samples: n, margin };
    run(graph, params, Samples(samples.clone()), margin, (fold_batch_norm, fusion), method)
}

/// [`calibrate`] on `n` inputs drawn uniformly within `input` (per channel) from a generator seeded with `seed`: a
/// calibration the model owner can run knowing only the public input bound.
pub fn calibrate_uniform(
    graph: &Graph,
    params: &Params,
    input: &InputBound,
    n: usize,
    margin: f64,
    fold_batch_norm: bool,
    seed: u64,
) -> Result<RangeReport> {
    calibrate_uniform_fused(graph, params, input, n, margin, (fold_batch_norm, &FusionPlan::none()), seed)
}

/// [`calibrate_uniform`] of the run with batch norm folded as `fold.0` says and the average-pool fusions of
/// `fold.1` ([`crate::fuse`]).
pub fn calibrate_uniform_fused(
    graph: &Graph,
    params: &Params,
    input: &InputBound,
    n: usize,
    margin: f64,
    (fold_batch_norm, fusion): (bool, &FusionPlan),
    seed: u64,
) -> Result<RangeReport> {
    use rand::{Rng, SeedableRng};
    let ends = input.ends(graph)?;
    let full = calibration_shape(graph, n)?; // checked before the allocation below
    let per_channel = graph.input_shape()[1..].iter().product::<usize>();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut data = Vec::with_capacity(crate::tensor::numel(&full));
    for _ in 0..n {
        for &(lo, hi) in &ends {
            data.extend((0..per_channel).map(|_| lo + (hi - lo) * rng.gen::<f64>()));
        }
    }
    calibrate_fused(graph, params, &Tensor::from_vec(&full, data)?, margin, fold_batch_norm, fusion)
}

/// Per-channel intervals of one sample: `shape` is the per-sample shape, channel = dimension 0 for `[C, H, W]`,
/// every feature its own channel for `[F]`.
#[derive(Debug, Clone)]
struct Intervals {
    shape: Vec<usize>,
    lo: Vec<f64>,
    hi: Vec<f64>,
}

impl Intervals {
    fn new(shape: Vec<usize>, ends: Vec<(f64, f64)>) -> Intervals {
        let (lo, hi) = ends.into_iter().unzip();
        Intervals { shape, lo, hi }
    }

    fn new_ends(shape: Vec<usize>, lo: Vec<f64>, hi: Vec<f64>) -> Intervals {
        Intervals { shape, lo, hi }
    }

    fn padded(&self, padding: (usize, usize)) -> (Vec<f64>, Vec<f64>) {
        if padding == (0, 0) {
            (self.lo.clone(), self.hi.clone())
        } else {
            (self.lo.iter().map(|v| v.min(0.0)).collect(), self.hi.iter().map(|v| v.max(0.0)).collect())
        }
    }

    fn dims3(&self, what: &str) -> Result<(usize, usize, usize)> {
        match self.shape[..] {
            [c, h, w] => Ok((c, h, w)),
            _ => {
                Err(DslError::BatchShape { what: what.into(), expected: "[C, H, W]".into(), found: self.shape.clone() })
            }
        }
    }

    /// The per-sample shape `[channels, H', W']` after a window sweep over this `[C, H, W]` value.
    fn swept(
        &self,
        what: &str,
        channels: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Vec<usize>> {
        let (_, h, w) = self.dims3(what)?;
        Ok(vec![channels, out_extent(h, kernel.0, stride.0, padding.0), out_extent(w, kernel.1, stride.1, padding.1)])
    }

    fn window(&self, p: &Pool2d) -> Result<Vec<usize>> {
        let (c, _, _) = self.dims3("pooling input")?;
        self.swept("pooling input", c, p.kernel, p.stride, p.padding)
    }
}

impl Domain for Intervals {
    fn conv(&self, c: &Conv2d, w: &[f64], b: Option<&[f64]>) -> Result<Self> {
        let (ci, _, _) = self.dims3("conv2d input")?;
        let (lo_in, hi_in) = self.padded(c.padding);
        let k = c.kernel.0 * c.kernel.1;
        let (mut lo, mut hi) = (vec![0.0; c.out_channels], vec![0.0; c.out_channels]);
        for o in 0..c.out_channels {
            let (mut l, mut u) = b.map_or((0.0, 0.0), |b| (b[o], b[o]));
            for cc in 0..ci {
                let ws = &w[(o * ci + cc) * k..][..k];
                let pos: f64 = ws.iter().filter(|v| **v > 0.0).sum();
                let neg: f64 = ws.iter().filter(|v| **v < 0.0).sum();
                l += pos * lo_in[cc] + neg * hi_in[cc];
                u += pos * hi_in[cc] + neg * lo_in[cc];
            }
            lo[o] = l;
            hi[o] = u;
        }
        let shape = self.swept("conv2d input", c.out_channels, c.kernel, c.stride, c.padding)?;
        Ok(Intervals::new_ends(shape, lo, hi))
    }

    fn linear(&self, w: &Tensor) -> Result<Self> {
        let (o, k) = (w.shape()[0], w.shape()[1]);
        if self.lo.len() != k || self.shape.len() != 1 {
            return Err(DslError::BatchShape {
                what: "linear input".into(),
                expected: format!("[{k}]"),
                found: self.shape.clone(),
            });
        }
        let (mut lo, mut hi) = (vec![0.0; o], vec![0.0; o]);
        for oi in 0..o {
            let (mut l, mut u) = (0.0, 0.0);
            for (i, &wv) in w.data()[oi * k..][..k].iter().enumerate() {
                let (a, b) = (wv * self.lo[i], wv * self.hi[i]);
                l += a.min(b);
                u += a.max(b);
            }
            lo[oi] = l;
            hi[oi] = u;
        }
        Ok(Intervals::new_ends(vec![o], lo, hi))
    }

    fn shift(&self, v: &[f64]) -> Self {
        let lo = self.lo.iter().zip(v).map(|(a, b)| a + b).collect();
        let hi = self.hi.iter().zip(v).map(|(a, b)| a + b).collect();
        Intervals::new_ends(self.shape.clone(), lo, hi)
    }

    fn scale(&self, v: &[f64]) -> Self {
        let (lo, hi) =
            self.lo.iter().zip(&self.hi).zip(v).map(|((l, h), s)| ((l * s).min(h * s), (l * s).max(h * s))).unzip();
        Intervals::new_ends(self.shape.clone(), lo, hi)
    }

    fn relu(&self) -> Self {
        let lo = self.lo.iter().map(|v| v.max(0.0)).collect();
        let hi = self.hi.iter().map(|v| v.max(0.0)).collect();
        Intervals::new_ends(self.shape.clone(), lo, hi)
    }

    fn sum_pool(&self, p: &Pool2d) -> Result<Self> {
        let shape = self.window(p)?;
        let (lo, hi) = self.padded(p.padding);
        let k = (p.kernel.0 * p.kernel.1) as f64;
        Ok(Intervals::new_ends(shape, lo.iter().map(|v| v * k).collect(), hi.iter().map(|v| v * k).collect()))
    }

    fn max_pool(&self, p: &Pool2d) -> Result<Self> {
        // Padding never wins a window, and every window holds an input.
        Ok(Intervals::new_ends(self.window(p)?, self.lo.clone(), self.hi.clone()))
    }

    fn global_sum(&self) -> Result<Self> {
        let (c, h, w) = self.dims3("global average pooling input")?;
        let k = (h * w) as f64;
        Ok(Intervals::new_ends(
            vec![c, 1, 1],
            self.lo.iter().map(|v| v * k).collect(),
            self.hi.iter().map(|v| v * k).collect(),
        ))
    }

    fn divide(&self, d: f64) -> Self {
        Intervals::new_ends(
            self.shape.clone(),
            self.lo.iter().map(|v| v / d).collect(),
            self.hi.iter().map(|v| v / d).collect(),
        )
    }

    fn flatten(&self) -> Result<Self> {
        let per = self.spatial();
        let lo = self.lo.iter().flat_map(|&v| std::iter::repeat_n(v, per)).collect();
        let hi = self.hi.iter().flat_map(|&v| std::iter::repeat_n(v, per)).collect();
        Ok(Intervals::new_ends(vec![self.shape.iter().product()], lo, hi))
    }

    fn add(&self, other: &Self) -> Result<Self> {
        if self.shape != other.shape {
            return Err(DslError::BatchShape {
                what: "residual add".into(),
                expected: format!("{:?}", self.shape),
                found: other.shape.clone(),
            });
        }
        let lo = self.lo.iter().zip(&other.lo).map(|(a, b)| a + b).collect();
        let hi = self.hi.iter().zip(&other.hi).map(|(a, b)| a + b).collect();
        Ok(Intervals::new_ends(self.shape.clone(), lo, hi))
    }

    fn spatial(&self) -> usize {
        if self.shape.len() == 1 {
            1
        } else {
            self.shape[1..].iter().product()
        }
    }

    fn magnitudes(&self) -> ChannelMax {
        let max = self.lo.iter().zip(&self.hi).map(|(l, h)| l.abs().max(h.abs())).collect();
        ChannelMax { max, per_channel: self.spatial() }
    }
}

/// A batch of sample inputs through the f64 forward.
#[derive(Debug, Clone)]
struct Samples(Tensor);

impl Samples {
    /// Channels (dimension 1) and elements per channel per sample.
    fn layout(&self) -> (usize, usize, usize) {
        let s = self.0.shape();
        let n = s[0];
        let c = s.get(1).copied().unwrap_or(1);
        (n, c, s.get(2..).map_or(1, |r| r.iter().product()))
    }

    fn per_channel(&self, v: &[f64], f: impl Fn(f64, f64) -> f64) -> Self {
        let (_, c, hw) = self.layout();
        let mut t = self.0.clone();
        for (i, x) in t.data_mut().iter_mut().enumerate() {
            *x = f(*x, v[(i / hw) % c]);
        }
        Samples(t)
    }
}

impl Domain for Samples {
    fn conv(&self, c: &Conv2d, w: &[f64], b: Option<&[f64]>) -> Result<Self> {
        let wt = Tensor::from_vec(&[c.out_channels, c.in_channels, c.kernel.0, c.kernel.1], w.to_vec())?;
        let bt = b.map(|b| Tensor::from_vec(&[c.out_channels], b.to_vec())).transpose()?;
        Ok(Samples(reference::conv2d_forward(&self.0, &wt, bt.as_ref(), c)?))
    }

    fn linear(&self, w: &Tensor) -> Result<Self> {
        Ok(Samples(reference::linear_forward(&self.0, w, None)?))
    }

    fn shift(&self, v: &[f64]) -> Self {
        self.per_channel(v, |x, s| x + s)
    }

    fn scale(&self, v: &[f64]) -> Self {
        self.per_channel(v, |x, s| x * s)
    }

    fn relu(&self) -> Self {
        Samples(reference::relu_forward(&self.0))
    }

    fn sum_pool(&self, p: &Pool2d) -> Result<Self> {
        let k = (p.kernel.0 * p.kernel.1) as f64;
        let mut y = reference::avg_pool2d_forward(&self.0, p)?;
        y.data_mut().iter_mut().for_each(|v| *v *= k);
        Ok(Samples(y))
    }

    fn max_pool(&self, p: &Pool2d) -> Result<Self> {
        Ok(Samples(reference::max_pool2d_forward(&self.0, p)?.0))
    }

    fn global_sum(&self) -> Result<Self> {
        let k = self.spatial() as f64;
        let mut y = reference::global_avg_pool_forward(&self.0)?;
        y.data_mut().iter_mut().for_each(|v| *v *= k);
        Ok(Samples(y))
    }

    fn divide(&self, d: f64) -> Self {
        let mut t = self.0.clone();
        t.data_mut().iter_mut().for_each(|v| *v /= d);
        Samples(t)
    }

    fn flatten(&self) -> Result<Self> {
        let n = self.0.shape()[0];
        let rest = self.0.len() / n.max(1);
        Ok(Samples(self.0.clone().reshape(&[n, rest])?))
    }

    fn add(&self, other: &Self) -> Result<Self> {
        Ok(Samples(self.0.add(&other.0)?))
    }

    fn spatial(&self) -> usize {
        self.layout().2
    }

    fn magnitudes(&self) -> ChannelMax {
        let (_, c, hw) = self.layout();
        let mut max = vec![0.0f64; c];
        for (i, v) in self.0.data().iter().enumerate() {
            let ch = (i / hw) % c;
            max[ch] = max[ch].max(v.abs());
        }
        ChannelMax { max, per_channel: hw }
    }
}
