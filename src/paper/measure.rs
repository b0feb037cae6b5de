//! The measurements the paper's experiments share, and their cache: one private inference or one training
//! iteration of a shipped model on random Kaiming weights and random inputs, beside the plaintext f64 reference of
//! the same model timed in the same run; and the estimates (from what was already measured) that decide what fits
//! an experiment's budget before it starts.

use super::curves::{train_curve, Curve, CurveSpec};
use super::PaperError;
use crate::deployment::ModelName;
use crate::dsl::models::{self, Pooling};
use crate::dsl::{reference, Graph, Layer, Params, Tensor as DslTensor};
use crate::runtime::executor::{Executor, LayerStats, RangeCheck, Roles};
use crate::runtime::training::{TrainConfig, Trainer};
use crate::workloads::{argmax, random_tensor, relative_error};
use crate::{Config, Session};
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

/// Predicted failure probability per run the harness accepts: the non-power-of-two average pools (÷ 9, ÷ 49) are
/// probabilistic even under exact truncation (as `cryptgpu accuracy`); a failure would show as a large error.
pub const MAX_FAILURE: f64 = 1e-3;

/// Training iteration cost over inference cost per sample when no model has both measured yet.
const TRAIN_OVER_INFER: f64 = 4.0;

/// Roles of every measurement: party 0 holds the data and gets the logits, party 1 holds the model.
const ROLES: Roles = Roles { model_owner: 1, data_owner: 0, receiver: 0 };

/// A shipped model with its pooling (the CryptGPU networks' average or max pooling; ResNets keep the paper's
/// average-pool stem).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    /// Which model.
    pub model: ModelName,
    /// Its pooling layers (LeNet, AlexNet and VGG-16 only).
    pub pooling: Pooling,
}

impl Net {
    /// `model` with average pooling.
    pub fn avg(model: ModelName) -> Net {
        Net { model, pooling: Pooling::Avg }
    }

    /// `model` with max pooling.
    pub fn max(model: ModelName) -> Net {
        Net { model, pooling: Pooling::Max }
    }

    /// The model's name as the tables print it (`LeNet`, `AlexNet`, `VGG-16`, `ResNet-50`, …).
    pub fn name(self) -> &'static str {
        match self.model {
            ModelName::Lenet => "LeNet",
            ModelName::Alexnet => "AlexNet",
            ModelName::Vgg16 => "VGG-16",
            ModelName::Resnet18 => "ResNet-18",
            ModelName::Resnet50 => "ResNet-50",
            ModelName::Resnet101 => "ResNet-101",
            ModelName::Resnet152 => "ResNet-152",
        }
    }

    /// The name with the pooling when it is max pooling (`AlexNet (max pool)`).
    pub fn label(self) -> String {
        match self.pooling {
            Pooling::Avg => self.name().to_string(),
            Pooling::Max => format!("{} (max pool)", self.name()),
        }
    }

    /// The model's graph.
    pub fn graph(self) -> Result<Graph, PaperError> {
        let p = self.pooling;
        Ok(match self.model {
            ModelName::Lenet => models::lenet(p)?,
            ModelName::Alexnet => models::alexnet_cifar10(p)?,
            ModelName::Vgg16 => models::vgg16_cifar10(p)?,
            other => other.graph()?,
        })
    }
}

/// A cost proxy per sample: every layer's output elements (the non-linear layers, truncations and messages scale
/// with them) plus the multiply-accumulates of the linear layers / 1000 (the local GEMMs).
pub fn work_units(graph: &Graph) -> f64 {
    graph
        .layers()
        .iter()
        .map(|l| {
            let out: usize = l.output.iter().product();
            let macs = match &l.layer {
                Layer::Conv2d(c) => out * c.in_channels * c.kernel.0 * c.kernel.1,
                Layer::Linear(f) => f.in_features * f.out_features,
                _ => 0,
            };
            out as f64 + macs as f64 / 1e3
        })
        .sum()
}

/// One private inference of a batch, beside the plaintext f64 reference of the same model.
#[derive(Debug, Clone)]
pub struct InferRun {
    /// Samples.
    pub batch: usize,
    /// Fractional bits.
    pub frac_bits: u32,
    /// Wall time of the private run with the model already shared: sharing the input, every layer, revealing the
    /// logits (the anchors' figures also leave the model's sharing out).
    pub secure: Duration,
    /// Wall time of the plaintext f64 reference inference (`cryptgpu_dsl::reference::infer`), same run.
    pub plaintext: Duration,
    /// Rounds of the private run, the model's sharing left out.
    pub rounds: u64,
    /// Bytes sent by all parties in the private run, the model's sharing left out.
    pub bytes: u64,
    /// Bytes sent by all parties to share the model (once per model, not per inference).
    pub model_bytes: u64,
    /// Per-layer cost.
    pub layers: Vec<LayerStats>,
    /// Mean over samples of ‖private − plaintext‖₂ / ‖plaintext‖₂ of the logits.
    pub rel_err: f64,
    /// Samples whose private argmax equals the plaintext one.
    pub top1: usize,
    /// Samples whose private top-5 classes (as a set) equal the plaintext ones.
    pub top5: usize,
}

/// One private training iteration (forward, backward, SGD) beside the same iteration in plaintext f64.
#[derive(Debug, Clone)]
pub struct TrainRun {
    /// Samples.
    pub batch: usize,
    /// Wall time of the private iteration (the step only: sharing the model and revealing it are outside).
    pub secure: Duration,
    /// Wall time of the plaintext f64 iteration (`cryptgpu_dsl::reference` forward, loss, backward, SGD).
    pub plaintext: Duration,
    /// Rounds of the iteration.
    pub rounds: u64,
    /// Bytes sent by all parties in the iteration.
    pub bytes: u64,
    /// Per-phase cost (share batch, every layer forward and `.backward`, loss gradient, SGD).
    pub phases: Vec<LayerStats>,
}

/// The two kinds of measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A private inference.
    Infer,
    /// A private training iteration.
    Train,
}

/// One measurement as the estimates see it: `secs`, the part that grows with the batch (the private run and the
/// plaintext reference), and `fixed`, the rest of what the budget paid (the range check's calibration, making the
/// weights), which does not.
#[derive(Debug, Clone)]
struct Observation {
    kind: Kind,
    net: Net,
    batch: usize,
    units: f64,
    secs: f64,
    fixed: f64,
}

/// The measurements of one `cryptgpu paper` run: cached (an experiment reuses what an earlier one measured with the
/// same model, batch and precision) and remembered for estimates.
#[derive(Debug, Default)]
pub struct Lab {
    infers: Vec<((Net, usize, u32), InferRun)>,
    trains: Vec<((Net, usize), TrainRun)>,
    curves: Vec<Curve>,
    params: Vec<(Net, Params)>,
    seen: Vec<Observation>,
}

/// Random Kaiming weights (seed fixed per model) for `graph` (batch norms: see [`calibrate_batch_norm`]).
fn weights(graph: &Graph) -> Params {
    Params::kaiming(graph, &mut rand::rngs::StdRng::seed_from_u64(2021))
}

/// Sets every batch norm's running statistics to the mean and (unbiased) variance its input has on `x` in a
/// training-mode pass, as trained running statistics would be; Kaiming weights with the default statistics (mean
/// 0, variance 1) let a deep residual network's activations double block after block (ResNet-101 reaches 2^62 in
/// the ring at t = 20). One plaintext training-mode forward; the update `r ← (1 − m)·r + m·b` is inverted per
/// layer to recover the batch statistic `b`. A graph without batch norm is returned unchanged.
pub fn calibrate_batch_norm(graph: &Graph, params: &Params, x: &DslTensor) -> Result<Params, PaperError> {
    let norms: Vec<(String, f64)> = graph
        .layers()
        .iter()
        .filter_map(|l| match &l.layer {
            Layer::BatchNorm2d(bn) => Some((l.name.clone(), bn.momentum)),
            _ => None,
        })
        .collect();
    if norms.is_empty() {
        return Ok(params.clone());
    }
    let mut after = params.clone();
    reference::forward(graph, &mut after, x, reference::Mode::Train)?;
    let mut out = params.clone();
    for (name, m) in norms {
        for stat in ["running_mean", "running_var"] {
            let key = format!("{name}.{stat}");
            let (old, new) = (params.require(&key)?, after.require(&key)?);
            let batch: Vec<f64> = old.data().iter().zip(new.data()).map(|(o, n)| (n - (1.0 - m) * o) / m).collect();
            out.insert(&key, DslTensor::from_vec(old.shape(), batch)?);
        }
    }
    Ok(out)
}

/// Whether `e` is the executor refusing a run before sharing (range analysis or failure probability): a result
/// to report, not a failure of the harness.
pub fn refusal(e: &PaperError) -> Option<String> {
    match e {
        PaperError::Runtime(r) if matches!(r.root(), crate::Error::Range(_) | crate::Error::FailureProbability(_)) => {
            Some(e.to_string())
        }
        _ => None,
    }
}

/// A random batch `[batch, …input]` uniform in [-1, 1] (seed fixed per batch size).
fn inputs(graph: &Graph, batch: usize, seed: u64) -> Result<DslTensor, PaperError> {
    let mut shape = vec![batch];
    shape.extend_from_slice(graph.input_shape());
    crate::workloads::check_model_batch(graph, batch, Config::default().max_elements)?;
    let x = random_tensor(&shape, 1.0, &mut rand::rngs::StdRng::seed_from_u64(seed))?;
    Ok(DslTensor::from_vec(&shape, x.data().to_vec())?)
}

fn top5(scores: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    idx.truncate(5);
    idx.sort_unstable();
    idx
}

impl Lab {
    /// An empty lab.
    pub fn new() -> Lab {
        Lab::default()
    }

    /// The random weights of `net` (Kaiming, seed 2021, batch norms calibrated: [`calibrate_batch_norm`]), made
    /// once per model.
    fn params(&mut self, net: Net, graph: &Graph) -> Result<Params, PaperError> {
        if let Some((_, p)) = self.params.iter().find(|(n, _)| *n == net) {
            return Ok(p.clone());
        }
        let p = calibrate_batch_norm(graph, &weights(graph), &inputs(graph, 2, 5)?)?;
        self.params.push((net, p.clone()));
        Ok(p)
    }

    /// Private inference of `net` on a random batch of `batch` at `frac_bits` (cached).
    pub fn infer(&mut self, net: Net, batch: usize, frac_bits: u32) -> Result<InferRun, PaperError> {
        if let Some((_, r)) = self.infers.iter().find(|(k, _)| *k == (net, batch, frac_bits)) {
            return Ok(r.clone());
        }
        let begun = Instant::now();
        let graph = net.graph()?;
        let params = self.params(net, &graph)?;
        let input = inputs(&graph, batch, 7 + batch as u64)?;
        let start = Instant::now();
        let plain = reference::infer(&graph, &params, &input)?;
        let plaintext = start.elapsed();
        let session = Session::new(Config { frac_bits, ..Config::default() })?;
        let exec = Executor::new(graph.clone(), ROLES)?
            .with_range_check(RangeCheck::Calibrated { samples: 2, margin: 4.0 })
            .allow_truncation_failures(MAX_FAILURE);
        let (result, _relu_bound) = crate::inference::infer_with_relu_fallback(&exec, &session, &params, &input)?;
        let private = result.logits(ROLES.receiver).ok_or(PaperError::NoLogits { model: net.label() })?;
        let k = plain.shape()[1];
        let (mut rel, mut top1, mut top5s) = (0.0, 0, 0);
        for i in 0..batch {
            let (p, q) = (&private.data()[i * k..][..k], &plain.data()[i * k..][..k]);
            rel += relative_error(p, q);
            top1 += usize::from(argmax(p) == argmax(q));
            top5s += usize::from(top5(p) == top5(q));
        }
        let model = result.setup.iter().find(|s| s.name == "share weights");
        let (m_time, m_rounds, m_bytes) = model.map_or((Duration::ZERO, 0, 0), |s| (s.time, s.rounds(), s.bytes()));
        let run = InferRun {
            batch,
            frac_bits,
            secure: result.wall.saturating_sub(m_time),
            plaintext,
            rounds: result.total.rounds().saturating_sub(m_rounds),
            bytes: result.total.total_bytes().saturating_sub(m_bytes),
            model_bytes: m_bytes,
            layers: result.layers,
            rel_err: rel / batch as f64,
            top1,
            top5: top5s,
        };
        self.seen.push(Observation {
            kind: Kind::Infer,
            net,
            batch,
            units: work_units(&graph),
            secs: (run.secure + run.plaintext).as_secs_f64(),
            fixed: begun.elapsed().saturating_sub(run.secure + run.plaintext).as_secs_f64(),
        });
        self.infers.push(((net, batch, frac_bits), run.clone()));
        Ok(run)
    }

    /// One private training iteration of `net` on a random batch of `batch` with random labels, lr 0.01 (cached).
    pub fn train_step(&mut self, net: Net, batch: usize) -> Result<TrainRun, PaperError> {
        if let Some((_, r)) = self.trains.iter().find(|(k, _)| *k == (net, batch)) {
            return Ok(r.clone());
        }
        let begun = Instant::now();
        let graph = net.graph()?;
        let params = self.params(net, &graph)?;
        let x = inputs(&graph, batch, 11 + batch as u64)?;
        let classes = graph.output_shape().iter().product::<usize>();
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        let labels: Vec<usize> = (0..batch).map(|_| rng.gen_range(0..classes)).collect();
        let config = TrainConfig::new(0.01);
        let mut plain = params.clone();
        let start = Instant::now();
        let (logits, tape) = reference::forward(&graph, &mut plain, &x, reference::Mode::Train)?;
        let (_, dlogits) = reference::softmax_cross_entropy(&logits, &labels)?;
        let (_, grads) = reference::backward(&graph, &plain, &tape, &dlogits)?;
        reference::Sgd::new(config.lr).step(&mut plain, &grads)?;
        let plaintext = start.elapsed();
        let session = Session::new(Config::default())?;
        let trained = Trainer::new(graph.clone(), ROLES, config)?.train(&session, &params, &[(x, labels)])?;
        let step = trained.steps.into_iter().next().ok_or(PaperError::NoLogits { model: net.label() })?;
        let run = TrainRun {
            batch,
            secure: step.wall,
            plaintext,
            rounds: step.total.rounds(),
            bytes: step.total.total_bytes(),
            phases: step.phases,
        };
        self.seen.push(Observation {
            kind: Kind::Train,
            net,
            batch,
            units: work_units(&graph),
            secs: (run.secure + run.plaintext).as_secs_f64(),
            fixed: begun.elapsed().saturating_sub(run.secure + run.plaintext).as_secs_f64(),
        });
        self.trains.push(((net, batch), run.clone()));
        Ok(run)
    }

    /// LeNet training curves per `spec` on the datasets under `data` (cached).
    pub fn curve(&mut self, spec: CurveSpec, data: &std::path::Path) -> Result<Curve, PaperError> {
        if let Some(c) = self.curves.iter().find(|c| c.spec == spec) {
            return Ok(c.clone());
        }
        let c = train_curve(spec, data)?;
        self.curves.push(c.clone());
        Ok(c)
    }

    /// A cached curve matching `f`, if any.
    pub fn cached_curve(&self, f: impl Fn(&CurveSpec) -> bool) -> Option<&Curve> {
        self.curves.iter().find(|c| f(&c.spec))
    }

    /// Whether this measurement is already cached (it then costs nothing).
    pub fn cached(&self, kind: Kind, net: Net, batch: usize, frac_bits: u32) -> bool {
        match kind {
            Kind::Infer => self.infers.iter().any(|(k, _)| *k == (net, batch, frac_bits)),
            Kind::Train => self.trains.iter().any(|(k, _)| *k == (net, batch)),
        }
    }

    /// Estimated wall time of a measurement, from what was measured: the same model and kind scaled by the batch;
    /// else the other kind of the same model (scaled by the training/inference ratio seen on some model); else the
    /// same kind of another model scaled by [`work_units`] × batch. `None` when nothing was measured yet (see
    /// [`Lab::estimate`]). A cached measurement costs zero.
    pub fn estimate_from_seen(&self, kind: Kind, net: Net, batch: usize, units: f64) -> Option<Duration> {
        let b = batch as f64;
        let largest = |k: Kind, same: bool| {
            self.seen
                .iter()
                .filter(|o| o.kind == k && (o.net == net) == same)
                .max_by(|x, y| (x.units * x.batch as f64).total_cmp(&(y.units * y.batch as f64)))
        };
        // The batch-dependent part scales; the fixed part of the observation used is added once.
        let fixed = largest(kind, true).or(largest(other(kind), true)).map_or(0.0, |o| o.fixed);
        let secs = fixed
            + if let Some(o) = largest(kind, true) {
                o.secs * b / o.batch as f64
            } else if let Some(o) = largest(other(kind), true) {
                let factor = self.train_over_infer();
                let per = o.secs / o.batch as f64 * b;
                if kind == Kind::Train {
                    per * factor
                } else {
                    per / factor
                }
            } else if let Some(o) = largest(kind, false) {
                o.secs * (units * b) / (o.units * o.batch as f64)
            } else {
                let o = largest(other(kind), false)?;
                let per = o.secs * (units * b) / (o.units * o.batch as f64);
                if kind == Kind::Train {
                    per * self.train_over_infer()
                } else {
                    per / self.train_over_infer()
                }
            };
        Some(Duration::from_secs_f64(secs))
    }

    /// Training over inference time per sample, from a model measured both ways (else [`TRAIN_OVER_INFER`]).
    fn train_over_infer(&self) -> f64 {
        for t in self.seen.iter().filter(|o| o.kind == Kind::Train) {
            if let Some(i) =
                self.seen.iter().filter(|o| o.kind == Kind::Infer && o.net == t.net).max_by_key(|o| o.batch)
            {
                return (t.secs / t.batch as f64) / (i.secs / i.batch as f64);
            }
        }
        TRAIN_OVER_INFER
    }

    /// Estimated wall time of a measurement ([`Lab::estimate_from_seen`]); with nothing measured yet, first
    /// measures LeNet's private inference at batch 1 (a fraction of a second) to have a rate.
    pub fn estimate(&mut self, kind: Kind, net: Net, batch: usize, frac_bits: u32) -> Result<Duration, PaperError> {
        if self.cached(kind, net, batch, frac_bits) {
            return Ok(Duration::ZERO);
        }
        self.cost(kind, net, batch)
    }

    /// What a fresh measurement of this kind, model and batch costs (as [`Lab::estimate`], but a cached one counts
    /// too): the per-step cost of a training curve.
    pub fn cost(&mut self, kind: Kind, net: Net, batch: usize) -> Result<Duration, PaperError> {
        let units = work_units(&net.graph()?);
        if let Some(d) = self.estimate_from_seen(kind, net, batch, units) {
            return Ok(d);
        }
        self.infer(Net::avg(ModelName::Lenet), 1, 20)?;
        Ok(self.estimate_from_seen(kind, net, batch, units).unwrap_or_default())
    }
}

fn other(kind: Kind) -> Kind {
    match kind {
        Kind::Infer => Kind::Train,
        Kind::Train => Kind::Infer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibrated_batch_norm_normalises_its_input() {
        use crate::dsl::{BatchNorm2d, Builder, Conv2d};
        let mut b = Builder::new();
        b.push(Conv2d::new(3, 4, 3)).push(BatchNorm2d::new(4));
        let graph = b.build("conv-bn", &[3, 6, 6]).unwrap();
        let params = weights(&graph);
        let x = inputs(&graph, 8, 1).unwrap();
        let cal = calibrate_batch_norm(&graph, &params, &x).unwrap();
        // In eval mode on the same batch the output is normalised per channel: mean 0, variance (n−1)/n.
        let y = reference::infer(&graph, &cal, &x).unwrap();
        let (c, hw) = (4, 16);
        for ch in 0..c {
            let v: Vec<f64> = (0..8).flat_map(|n| y.data()[(n * c + ch) * hw..][..hw].to_vec()).collect();
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / v.len() as f64;
            assert!(mean.abs() < 1e-6, "channel {ch}: mean {mean}");
            assert!((var - (v.len() - 1) as f64 / v.len() as f64).abs() < 1e-3, "channel {ch}: variance {var}");
        }
        let lenet = Net::avg(ModelName::Lenet).graph().unwrap();
        let p = weights(&lenet);
        assert_eq!(calibrate_batch_norm(&lenet, &p, &inputs(&lenet, 2, 1).unwrap()).unwrap(), p);
    }

    #[test]
    fn estimates_scale_with_batch_and_work() {
        let mut lab = Lab::new();
        let lenet = Net::avg(ModelName::Lenet);
        let alex = Net::avg(ModelName::Alexnet);
        let (ul, ua) = (work_units(&lenet.graph().unwrap()), work_units(&alex.graph().unwrap()));
        assert!(lab.estimate_from_seen(Kind::Infer, lenet, 1, ul).is_none());
        lab.seen.push(Observation { kind: Kind::Infer, net: lenet, batch: 2, units: ul, secs: 1.0, fixed: 0.5 });
        let e = |lab: &Lab, k, n, b, u| lab.estimate_from_seen(k, n, b, u).unwrap().as_secs_f64();
        assert!((e(&lab, Kind::Infer, lenet, 8, ul) - 4.5).abs() < 1e-9, "the fixed part is added once");
        assert!((e(&lab, Kind::Infer, alex, 2, ua) - ua / ul).abs() < 1e-9);
        assert!((e(&lab, Kind::Train, lenet, 2, ul) - 0.5 - TRAIN_OVER_INFER).abs() < 1e-9);
        lab.seen.push(Observation { kind: Kind::Train, net: lenet, batch: 4, units: ul, secs: 6.0, fixed: 0.0 });
        // LeNet: 1.5 s per training sample vs 0.5 s per inference sample: factor 3 for AlexNet too.
        lab.seen.push(Observation { kind: Kind::Infer, net: alex, batch: 1, units: ua, secs: 2.0, fixed: 0.0 });
        assert!((e(&lab, Kind::Train, alex, 10, ua) - 60.0).abs() < 1e-9);
    }
}
