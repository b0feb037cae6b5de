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
use std::time::Duration;

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
    let roles = Roles { model_owner: MODEL_OWNER, data_owner: DATA_OWNER, receiver: MODEL_OWNER };
    let config = config.with_loss_to(MODEL_OWNER);
    let trained = Trainer::new(graph.clone(), roles, config)?.train(session, init, &batches)?;
    let private_params = trained.params[MODEL_OWNER].clone().ok_or("the model owner received no parameters")?;
    Ok(TrainingReport {
        batch,
        private_losses: trained.steps.iter().map(|s| s.loss.unwrap_or(f64::NAN)).collect(),
        plain_losses,
        private_params,
        plain_params: plain,
        wall: trained.wall,
        rounds: trained.steps.iter().map(|s| s.rounds()).sum(),
        bytes: trained.steps.iter().map(|s| s.total.total_bytes()).sum(),
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
