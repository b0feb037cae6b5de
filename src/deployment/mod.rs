//! One party of a three-process deployment, run from a config file (`cryptgpu party --id N --config parties.toml`).
//!
//! The config names the three parties' addresses and certificates, this party's key, the roles and the job. Each
//! process connects to the other two over mutual TLS with pinned certificates ([`cryptgpu_runtime::transport::tls`]),
//! agrees its PRF keys with them over those channels ([`Party::connect`](cryptgpu_runtime::Party::connect)) and runs
//! its part of the job: private inference or private training with checkpoints
//! ([`jobs`]). Only the owner of an input reads that input's file; only the receiver writes the logits, only
//! the model owner the trained weights. A failing party sends an abort frame so the others stop at once, and keeps
//! its connections open a moment (300 ms) so that frame is read before the connections close; a peer that dies or
//! stalls is named within the timeout. A party stopped by another's abort (or by the connection of a party that had
//! aborted) looks for up to 500 ms at the third party's connection and, when that party failed on its own (its
//! connection closed or broke), names it as the party that failed first ([`DeployError::PeerFailed`]).
//!
//! ```toml
//! session = 2026            # any number the three operators agree on; frames of other sessions are refused
//! timeout_s = 30            # a peer silent for this long ends the run
//! # insecure_test_seed = 7  # INSECURE, tests only: every PRF key derived from this public seed
//!
//! [[party]]                 # three entries, ids 0, 1, 2
//! id = 0
//! address = "127.0.0.1:7100"
//! cert = "keys/party-0.crt"
//! key = "keys/party-0.key"  # read by party 0 only
//! # checkpoint_dir = "ckpt-0"  # training: this party's own directory (else job.checkpoint_dir)
//!
//! [roles]
//! model_owner = 1           # reads the weights; learns the trained weights
//! data_owner = 0            # reads the data
//! receiver = 0              # inference: learns the logits; training: learns each step's loss (job.loss = true)
//!
//! [job]                     # private inference
//! kind = "infer"
//! model = "lenet"           # lenet (default), alexnet, vgg16, resnet18, resnet50, resnet101, resnet152
//! weights = "weights/lenet_mnist.safetensors"  # model owner only; absent: Kaiming weights from init_seed (1)
//! data = "data/mnist"       # data owner only: an MNIST-format directory (test split) or an f32/f64 .npy [N, …input]
//! images = 8                # the first N inputs (the batch size: every party knows it)
//! output = "logits.json"    # written by the receiver only: one array of logits per input
//! # range_check = "calibrated"  # the model owner's overflow check: "interval" (default, a guarantee) or
//! #                             # "calibrated" (2 random inputs × 4, as `cryptgpu accuracy`; not a guarantee)
//! # max_failure = 1e-3        # largest predicted failure probability per run accepted (3×3 average pooling)
//! ```
//!
//! A training job (`examples/parties-train.toml`):
//!
//! ```toml
//! [job]
//! kind = "train"
//! model = "lenet"
//! # weights = "init.safetensors"  # model owner only; absent: Kaiming initialisation from init_seed (default 1)
//! dataset = "mnist"         # or "fashion-mnist"; data = "dir" overrides data/mnist or data/fashion-mnist
//! steps = 100               # SGD steps in all (a resumed run counts those already taken)
//! batch = 64
//! lr = 0.05
//! momentum = 0.9            # default 0; weight_decay likewise
//! checkpoint_dir = "ckpt"   # every party writes its own shares there (file names carry the party id)
//! checkpoint_every = 10     # default 10; the last step is always checkpointed
//! output = "trained.safetensors"  # written by the model owner only
//! ```
//!
//! **Training and resuming.** The data owner walks its shuffled training set (`shuffle_seed`, default 1) in full
//! batches, step `s` taking batch `s mod (N / batch)`, so a resumed run sees the batches the uninterrupted one would.
//! After step `s` with `s % checkpoint_every == 0` (and after the last step) every party writes its own shares of the
//! model and optimizer state to its checkpoint directory ([`cryptgpu_runtime::checkpoint`]: atomic, checksummed,
//! the two newest kept). Without `--resume` a party refuses to start when its directory already holds checkpoints
//! of its own (they would be mixed with a new run's). With `--resume` ([`RunOptions::resume`]) the three agree over
//! the channel on the newest step all three hold, continue from it (or start afresh when there is none), and set
//! aside (renamed `*.ckpt.stale`) any newer checkpoint of their own, which belongs to the interrupted run and must
//! never be paired with the new run's shares; with the same keys and data the run ends with exactly the model of an
//! uninterrupted run. Checkpoints do not record the hyper-parameters: resume with the same `[job]`.
//!
//! **Models of your own.** A config file cannot name Rust code, so a model declared with
//! [`secure_model!`](crate::secure_model) runs in a program of your own that passes its graph to
//! [`run_party_with`] (`examples/party_custom_model.rs`); the config then has no `job.model`.

pub mod config;
pub mod inputs;
pub mod jobs;
pub mod link;

pub use config::{DatasetName, Deployment, InferJob, Job, ModelName, PartyEntry, RangeCheckName, RolesEntry, TrainJob};
pub use link::FaultPoint;

use cryptgpu_dsl::{DslError, Graph};
use cryptgpu_runtime::PartyId;
use std::path::{Path, PathBuf};

/// What can stop a party of a deployment.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The config file is missing, malformed or inconsistent (the problem names the key).
    #[error("{}: {problem}", file.display())]
    Config {
        /// The config file.
        file: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// `--id` is not 0, 1 or 2.
    #[error("--id must be 0, 1 or 2, found {0}")]
    Id(PartyId),
    /// An owner's input file cannot be used.
    #[error("party {party}: {}: {problem}", path.display())]
    Input {
        /// The owner reading it.
        party: PartyId,
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A checkpoint directory cannot be used as asked.
    #[error("party {party}: checkpoint directory {}: {problem}", dir.display())]
    Checkpoints {
        /// This party.
        party: PartyId,
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The result could not be written.
    #[error("party {party}: {}: cannot write the {what}: {problem}", path.display())]
    Output {
        /// This party.
        party: PartyId,
        /// The output file.
        path: PathBuf,
        /// Logits or trained weights.
        what: &'static str,
        /// Why.
        problem: String,
    },
    /// This party stopped because another stopped it, after a third party had failed first.
    #[error("{error}; the party that failed first is party {culprit}: {cause}")]
    PeerFailed {
        /// This party's error (a peer aborted or finished).
        error: Box<cryptgpu_runtime::Error>,
        /// The party that failed first.
        culprit: PartyId,
        /// What this party saw of it.
        cause: Box<cryptgpu_runtime::Error>,
    },
    /// The protocol, the transport or a checkpoint failed.
    #[error(transparent)]
    Runtime(#[from] cryptgpu_runtime::Error),
    /// The model or its weights.
    #[error(transparent)]
    Model(#[from] DslError),
    /// The dataset.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
}

/// How to run a party besides its config.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Training: continue from the newest checkpoint all three parties hold (`cryptgpu party --resume`).
    pub resume: bool,
    /// TEST HOOK: exit abruptly at this point (the hidden `--fault-exit-at`); `None` in every real run.
    #[doc(hidden)]
    pub fault_exit_at: Option<FaultPoint>,
}

/// Run party `id` of the deployment in `config` with the model the config names (`job.model`, default LeNet):
/// connect, agree keys, run the job, write this party's result if it has one. Returns a one-line summary.
pub fn run_party(id: PartyId, config: &Path, options: &RunOptions) -> Result<String, DeployError> {
    let d = Deployment::load(config)?;
    let graph = d.model().unwrap_or_default().graph()?;
    jobs::run(graph, id, &d, options)
}

/// Run party `id` of the deployment in `config` with the model `graph` (e.g. `MyModel::graph()` of a
/// [`secure_model!`](crate::secure_model) declaration): like [`run_party`], for a model the config cannot name. The
/// config must not name a model (`job.model`); the three parties must run the same graph.
pub fn run_party_with(graph: Graph, id: PartyId, config: &Path, options: &RunOptions) -> Result<String, DeployError> {
    let d = Deployment::load(config)?;
    if let Some(m) = d.model() {
        return Err(d.error(format!(
            "job.model = {m:?} names a shipped model, but this program runs its own model `{}`: remove job.model",
            graph.name()
        )));
    }
    jobs::run(graph, id, &d, options)
}
