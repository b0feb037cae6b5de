//! LeNet on MNIST, privately and in plaintext side by side: the README's main job (`examples/lenet_mnist.rs`) and
//! the `cryptgpu infer` / `cryptgpu train` commands share these two workloads.
//!
//! Roles in both: party 0 owns the images (the data owner), party 1 owns the model; inference reveals the logits
//! to the data owner only, training reveals the trained weights and the per-step loss to the model owner only.

use crate::data::Dataset;
use crate::dsl::{models, reference, Graph, Params, Tensor as DslTensor};
use crate::runtime::executor::{Executor, LayerStats, Roles};
use crate::runtime::training::{TrainConfig, Trainer};
use crate::workloads::{argmax, relative_error};
use crate::{Config, PartyStats, Session};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Any error of these workloads (runtime, model or data).
pub type JobError = Box<dyn std::error::Error>;

/// The data owner: holds the images and labels.
pub const DATA_OWNER: usize = 0;
/// The model owner: holds the weights.
pub const MODEL_OWNER: usize = 1;

/// Fraction of `data`'s images whose plaintext prediction under `params` is their label.
pub fn plaintext_accuracy(graph: &Graph, params: &Params, data: &Dataset) -> Result<f64, JobError> {
    let mut correct = 0;
    for b in data.batches(1000) {
        let logits = reference::infer(graph, params, &DslTensor::from_vec(&b.shape, b.images.to_vec())?)?;
        let k = logits.shape()[1];
        correct += (0..b.len()).filter(|&i| argmax(&logits.data()[i * k..][..k]) == b.labels[i] as usize).count();
    }
    Ok(correct as f64 / data.len().max(1) as f64)
}

/// What [`private_inference`] measured.
#[derive(Debug, Clone)]
pub struct InferenceReport {
    /// Images classified.
    pub images: usize,
    /// Private predictions equal to the label.
    pub private_correct: usize,
    /// Plaintext predictions (same weights) equal to the label.
    pub plain_correct: usize,
    /// Private predictions equal to the plaintext prediction.
    pub agree: usize,
    /// Mean over images of the logits' relative error against plaintext.
    pub mean_relative_error: f64,
    /// Wall time of the private runs (sharing and revealing included).
    pub wall: Duration,
    /// Communication of the private runs, per party.
    pub total: PartyStats,
    /// Rounds of the private runs (all batches, one after the other).
    pub rounds: u64,
    /// Per-layer cost of the first batch.
    pub layers: Vec<LayerStats>,
}

/// Classifies `data`'s images privately with `params` in batches of `batch` and compares with the model owner's
/// plaintext reference of the same computation ([`Executor::plaintext_reference`]).
pub fn private_inference(
    session: &Session,
    graph: &Graph,
    params: &Params,
    data: &Dataset,
    batch: usize,
) -> Result<InferenceReport, JobError> {
    let roles = Roles { model_owner: MODEL_OWNER, data_owner: DATA_OWNER, receiver: DATA_OWNER };
    let executor = Executor::new(graph.clone(), roles)?;
    let mut report = InferenceReport {
        images: 0,
        private_correct: 0,
        plain_correct: 0,
        agree: 0,
        mean_relative_error: 0.0,
        wall: Duration::ZERO,
        total: PartyStats::default(),
        rounds: 0,
        layers: Vec::new(),
    };
    for b in data.batches(batch.max(1)) {
        let input = DslTensor::from_vec(&b.shape, b.images.to_vec())?;
        let result = executor.infer(session, params, &input)?;
        let private = result.logits(roles.receiver).ok_or("the data owner received no logits")?;
        let plain = executor.plaintext_reference(params, &input)?;
        let k = plain.shape()[1];
        for (i, &label) in b.labels.iter().enumerate() {
            let (p, q) = (&private.data()[i * k..][..k], &plain.data()[i * k..][..k]);
            report.mean_relative_error += relative_error(p, q);
            report.agree += usize::from(argmax(p) == argmax(q));
            report.private_correct += usize::from(argmax(p) == label as usize);
            report.plain_correct += usize::from(argmax(q) == label as usize);
        }
        report.images += b.len();
        report.wall += result.wall;
        report.rounds += result.total.rounds();
        report.total = report.total + result.total;
        if report.layers.is_empty() {
            report.layers = result.layers;
        }
    }
    report.mean_relative_error /= report.images.max(1) as f64;
    Ok(report)
}

/// What [`private_training`] measured.
#[derive(Debug, Clone)]
pub struct TrainingReport {
    /// Images per step.
    pub batch: usize,
    /// The loss of every private step (computed privately, revealed to the model owner).
    pub private_losses: Vec<f64>,
    /// The loss of every plaintext step.
    pub plain_losses: Vec<f64>,
    /// The privately trained weights, as revealed to the model owner.
    pub private_params: Params,
    /// The plaintext-trained weights.
    pub plain_params: Params,
    /// Wall time of the private training (sharing the model and revealing it included).
    pub wall: Duration,
    /// Rounds of the private training.
    pub rounds: u64,
    /// Bytes sent by all parties during the private training.
    pub bytes: u64,
}

/// Where a private training run stands after a step (for progress reports).
#[derive(Debug, Clone, Copy)]
pub struct StepProgress {
    /// Steps done.
    pub step: usize,
    /// Steps in all.
    pub steps: usize,
    /// The step's loss as revealed to the model owner.
    pub loss: Option<f64>,
    /// Bytes sent by all parties so far (the other parties' sends of this step may not be counted yet).
    pub bytes: u64,
}

/// Trains `graph` from `init` on consecutive batches of `train` (`steps` of them, 0 = one epoch, short final batch
/// dropped) privately and in plaintext with the same hyper-parameters.
pub fn private_training(
    session: &Session,
    graph: &Graph,
    init: &Params,
    train: &Dataset,
    steps: usize,
    batch: usize,
    config: TrainConfig,
) -> Result<TrainingReport, JobError> {
    private_training_observed(session, graph, init, train, steps, batch, config, &|_| {})
}

/// [`private_training`], calling `on_step` on the model owner's thread after every private step.
#[allow(clippy::too_many_arguments)]
pub fn private_training_observed(
    session: &Session,
    graph: &Graph,
    init: &Params,
    train: &Dataset,
    steps: usize,
    batch: usize,
    config: TrainConfig,
    on_step: &(dyn Fn(StepProgress) + Sync),
) -> Result<TrainingReport, JobError> {
    let mut batches: Vec<(DslTensor, Vec<usize>)> = Vec::new();
    for b in train.batches(batch.max(1)) {
        if b.len() < batch || (steps > 0 && batches.len() == steps) {
            break;
        }
        batches.push((DslTensor::from_vec(&b.shape, b.images.to_vec())?, b.labels_usize()));
    }
    let mut plain = init.clone();
    let mut sgd = reference::Sgd::new(config.lr).with_momentum(config.momentum).with_weight_decay(config.weight_decay);
    let mut plain_losses = Vec::with_capacity(batches.len());
    for (x, y) in &batches {
        let (logits, tape) = reference::forward(graph, &mut plain, x, reference::Mode::Train)?;
        let (loss, dlogits) = reference::softmax_cross_entropy(&logits, y)?;
        let (_, grads) = reference::backward(graph, &plain, &tape, &dlogits)?;
        sgd.step(&mut plain, &grads)?;
        plain_losses.push(loss);
    }
    init.check_present(graph, "initial parameters")?;
    let roles = Roles { model_owner: MODEL_OWNER, data_owner: DATA_OWNER, receiver: MODEL_OWNER };
    let trainer = Trainer::new(graph.clone(), roles, config.with_loss_to(MODEL_OWNER))?;
    let sent = AtomicU64::new(0);
    let n = batches.len();
    let start = Instant::now();
    // The loop of `Trainer::train`, with a report after each step.
    let runs = session.run(|p| {
        let owner = (p.id() == MODEL_OWNER).then_some(init);
        let mut state = trainer.share_params(p, owner)?;
        let mut done = Vec::with_capacity(n);
        for (i, (x, labels)) in batches.iter().enumerate() {
            let data = (p.id() == DATA_OWNER).then_some((x, labels.as_slice()));
            let before = p.total_stats();
            let step = trainer.step_party(p, &mut state, data, x.shape()[0])?;
            let spent = p.total_stats() - before;
            let bytes = sent.fetch_add(spent.bytes_sent, Ordering::Relaxed) + spent.bytes_sent;
            if p.id() == MODEL_OWNER {
                on_step(StepProgress { step: i + 1, steps: n, loss: step.loss, bytes });
            }
            done.push((step, spent));
        }
        let trained = trainer.reveal_params_to(p, &state, MODEL_OWNER)?;
        Ok((done, trained))
    })?;
    let wall = start.elapsed();
    let private_params = runs[MODEL_OWNER].1.clone().ok_or("the model owner received no parameters")?;
    let (mut rounds, mut bytes) = (0, 0);
    for i in 0..n {
        let phases = runs.iter().map(|r| &r.0[i].0.steps).collect::<Vec<_>>();
        // Rounds as `StepReport::rounds`: per phase the largest count of any party.
        rounds += (0..phases[0].len())
            .map(|j| phases.iter().filter_map(|s| s.get(j)).map(|s| s.stats.rounds).max().unwrap_or(0))
            .sum::<u64>();
        bytes += runs.iter().map(|r| r.0[i].1.bytes_sent).sum::<u64>();
    }
    Ok(TrainingReport {
        batch,
        private_losses: runs[MODEL_OWNER].0.iter().map(|(s, _)| s.loss.unwrap_or(f64::NAN)).collect(),
        plain_losses,
        private_params,
        plain_params: plain,
        wall,
        rounds,
        bytes,
    })
}

/// LeNet with average pooling (CryptGPU's LeNet), the model of these workloads.
pub fn lenet() -> Result<Graph, JobError> {
    Ok(models::lenet(models::Pooling::Avg)?)
}

/// A session on the embedded default: three parties in this process, CPU backend, t = 20, exact truncation.
pub fn default_session() -> Result<Session, JobError> {
    Ok(Session::new(Config::default())?)
}
