//! Private training of LeNet on MNIST or Fashion-MNIST beside plaintext training from the same initialisation and
//! batches, with the test accuracy of both models every few steps: the curves of Fig. 4 / Table VII and the
//! pooling accuracy of Table VIII. The private parameters are revealed to the model owner at each evaluation (one
//! round each), who evaluates them in plaintext; the private loss is computed privately and revealed to it too.

use super::PaperError;
use crate::data::{Dataset, Source, Split};
use crate::dsl::models::{self, Pooling};
use crate::dsl::{reference, Params, Tensor as DslTensor};
use crate::lenet_mnist::{plaintext_accuracy, DATA_OWNER, MODEL_OWNER};
use crate::runtime::executor::Roles;
use crate::runtime::training::{TrainConfig, Trainer};
use crate::{Config, Session};
use rand::SeedableRng;
use std::path::Path;
use std::time::{Duration, Instant};

/// What to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurveSpec {
    /// Dataset.
    pub source: Source,
    /// LeNet's pooling.
    pub pooling: Pooling,
    /// SGD steps.
    pub steps: usize,
    /// Images per step.
    pub batch: usize,
    /// Evaluate both models every this many steps (and after the last).
    pub eval_every: usize,
    /// Test images each evaluation uses (the first ones of the test split).
    pub eval_images: usize,
}

/// Learning rate and momentum of every curve (as `cryptgpu train`).
pub const LR: f64 = 0.05;
/// Momentum of every curve.
pub const MOMENTUM: f64 = 0.9;

/// The curves of one run.
#[derive(Debug, Clone)]
pub struct Curve {
    /// What was trained.
    pub spec: CurveSpec,
    /// Private loss per step (revealed to the model owner).
    pub private_losses: Vec<f64>,
    /// Plaintext loss per step.
    pub plain_losses: Vec<f64>,
    /// (step, private accuracy, plaintext accuracy) at each evaluation, accuracies in [0, 1].
    pub accuracy: Vec<(usize, f64, f64)>,
    /// Wall time of the private run (sharing the model and the evaluation reveals included).
    pub wall: Duration,
    /// Rounds of the private run.
    pub rounds: u64,
    /// Bytes sent by all parties in the private run.
    pub bytes: u64,
}

/// Trains LeNet per `spec` on the dataset under `data` (`<data>/mnist`, `<data>/fashion-mnist`).
pub fn train_curve(spec: CurveSpec, data: &Path) -> Result<Curve, PaperError> {
    let graph = models::lenet(spec.pooling)?;
    let init = Params::kaiming(&graph, &mut rand::rngs::StdRng::seed_from_u64(1));
    let dir = data.join(Path::new(spec.source.default_dir()).file_name().unwrap_or_default());
    let train = Dataset::load(spec.source, &dir, Split::Train)?.shuffled(1);
    let test = Dataset::load(spec.source, &dir, Split::Test)?;
    let test = test.subset(0..spec.eval_images.min(test.len()));
    let mut batches: Vec<(DslTensor, Vec<usize>)> = Vec::new();
    for b in train.batches(spec.batch.max(1)) {
        if b.len() < spec.batch || batches.len() == spec.steps {
            break;
        }
        batches.push((DslTensor::from_vec(&b.shape, b.images.to_vec())?, b.labels_usize()));
    }
    let n = batches.len();
    let every = spec.eval_every.max(1);
    let evaluated = |i: usize| (i + 1).is_multiple_of(every) || i + 1 == n;

    let mut plain = init.clone();
    let mut sgd = reference::Sgd::new(LR).with_momentum(MOMENTUM);
    let (mut plain_losses, mut plain_acc) = (Vec::with_capacity(n), Vec::new());
    for (i, (x, y)) in batches.iter().enumerate() {
        let (logits, tape) = reference::forward(&graph, &mut plain, x, reference::Mode::Train)?;
        let (loss, dlogits) = reference::softmax_cross_entropy(&logits, y)?;
        let (_, grads) = reference::backward(&graph, &plain, &tape, &dlogits)?;
        sgd.step(&mut plain, &grads)?;
        plain_losses.push(loss);
        if evaluated(i) {
            plain_acc.push(plaintext_accuracy(&graph, &plain, &test).map_err(|e| PaperError::Format {
                path: dir.clone(),
                what: format!("plaintext evaluation failed: {e}"),
            })?);
        }
    }

    let roles = Roles { model_owner: MODEL_OWNER, data_owner: DATA_OWNER, receiver: MODEL_OWNER };
    let trainer =
        Trainer::new(graph.clone(), roles, TrainConfig::new(LR).with_momentum(MOMENTUM).with_loss_to(MODEL_OWNER))?;
    let session = Session::new(Config::default())?;
    let start = Instant::now();
    type PartyCurve = (Vec<Option<f64>>, Vec<(usize, Params)>, crate::Stats);
    let runs: [PartyCurve; 3] = session.run(|p| {
        let before = p.total_stats();
        let mut state = trainer.share_params(p, (p.id() == MODEL_OWNER).then_some(&init))?;
        let (mut losses, mut snapshots) = (Vec::with_capacity(n), Vec::new());
        for (i, (x, y)) in batches.iter().enumerate() {
            let data = (p.id() == DATA_OWNER).then_some((x, y.as_slice()));
            losses.push(trainer.step_party(p, &mut state, data, spec.batch)?.loss);
            if evaluated(i) {
                if let Some(params) = trainer.reveal_params_to(p, &state, MODEL_OWNER)? {
                    snapshots.push((i + 1, params));
                }
            }
        }
        Ok((losses, snapshots, p.total_stats() - before))
    })?;
    let wall = start.elapsed();
    let rounds = runs.iter().map(|r| r.2.rounds).max().unwrap_or(0);
    let bytes = runs.iter().map(|r| r.2.bytes_sent).sum();
    let owner = &runs[MODEL_OWNER];
    let mut accuracy = Vec::new();
    for ((step, params), plain) in owner.1.iter().zip(plain_acc) {
        let private = plaintext_accuracy(&graph, params, &test)
            .map_err(|e| PaperError::Format { path: dir.clone(), what: format!("evaluation failed: {e}") })?;
        accuracy.push((*step, private, plain));
    }
    Ok(Curve {
        spec,
        private_losses: owner.0.iter().map(|l| l.unwrap_or(f64::NAN)).collect(),
        plain_losses,
        accuracy,
        wall,
        rounds,
        bytes,
    })
}
