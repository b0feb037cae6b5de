//! The deployment config file (`parties.toml`): its structure, its defaults and the checks made when it is read.
//! The format is documented with examples in the [module above](super).

use super::DeployError;
use cryptgpu_dsl::{models, Graph};
use cryptgpu_runtime::transport::tls::{load_cert, PeerConfig};
use cryptgpu_runtime::PartyId;
use serde::Deserialize;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The deployment config file.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// The session id the three parties agree on.
    pub session: u64,
    /// Seconds a party waits for a peer before failing (default 30).
    pub timeout_s: f64,
    /// Derive every PRF key from this seed instead of fresh randomness. INSECURE: anyone who knows the seed knows
    /// every key and so every secret; for reproducible tests only.
    pub insecure_test_seed: Option<u64>,
    /// The three parties.
    pub party: Vec<PartyEntry>,
    /// Who owns the model, who owns the data, who receives the result.
    pub roles: RolesEntry,
    /// What to compute.
    pub job: Job,
    /// The file this was read from (for error messages).
    pub file: PathBuf,
}

/// The file as written; `[job]` is read by its `kind` afterwards, so that an error names the job's key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeployment {
    session: u64,
    #[serde(default = "default_timeout")]
    timeout_s: f64,
    insecure_test_seed: Option<u64>,
    party: Vec<PartyEntry>,
    roles: RolesEntry,
    job: toml::Table,
}

fn default_timeout() -> f64 {
    30.0
}

/// One party's address and certificate (and, for the party itself, its key and checkpoint directory).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartyEntry {
    /// 0, 1 or 2.
    pub id: PartyId,
    /// Where it listens (`host:port`).
    pub address: String,
    /// Its certificate (PEM), pinned by the others.
    pub cert: PathBuf,
    /// Its private key (PEM); read only by that party.
    pub key: Option<PathBuf>,
    /// Where this party keeps its training checkpoints (overrides `job.checkpoint_dir`).
    pub checkpoint_dir: Option<PathBuf>,
}

/// The roles of a job.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesEntry {
    /// The party that knows the weights (and, after training, learns the trained weights).
    pub model_owner: PartyId,
    /// The party that knows the images (and labels).
    pub data_owner: PartyId,
    /// Inference: the only party that learns the logits. Training: the only party that learns each step's loss
    /// (when `job.loss = true`).
    pub receiver: PartyId,
}

/// A model the CLI ships (the variants of `cryptgpu precision --model`: the CryptGPU paper's average pooling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModelName {
    /// LeNet, MNIST shape `[1, 28, 28]`, average pooling.
    #[default]
    Lenet,
    /// AlexNet, CIFAR-10 `[3, 32, 32]`, average pooling.
    Alexnet,
    /// VGG-16, CIFAR-10 `[3, 32, 32]`, average pooling.
    Vgg16,
    /// ResNet-18, ImageNet `[3, 224, 224]`, average-pool stem.
    Resnet18,
    /// ResNet-50.
    Resnet50,
    /// ResNet-101.
    Resnet101,
    /// ResNet-152.
    Resnet152,
}

impl ModelName {
    /// The model's graph.
    pub fn graph(self) -> Result<Graph, DeployError> {
        use models::{Pooling::Avg, Stem::AvgPool};
        Ok(match self {
            ModelName::Lenet => models::lenet(Avg)?,
            ModelName::Alexnet => models::alexnet_cifar10(Avg)?,
            ModelName::Vgg16 => models::vgg16_cifar10(Avg)?,
            ModelName::Resnet18 => models::resnet18(AvgPool)?,
            ModelName::Resnet50 => models::resnet50(AvgPool)?,
            ModelName::Resnet101 => models::resnet101(AvgPool)?,
            ModelName::Resnet152 => models::resnet152(AvgPool)?,
        })
    }
}

/// The two image datasets a directory can hold (idx files, as `scripts/fetch-data.sh` fetches them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetName {
    /// MNIST handwritten digits.
    #[default]
    Mnist,
    /// Zalando's Fashion-MNIST.
    FashionMnist,
}

impl DatasetName {
    /// The loader's source.
    pub fn source(self) -> crate::data::Source {
        match self {
            DatasetName::Mnist => crate::data::Source::Mnist,
            DatasetName::FashionMnist => crate::data::Source::FashionMnist,
        }
    }
}

/// The job (`[job]`, by its `kind`).
#[derive(Debug, Clone)]
pub enum Job {
    /// Private inference.
    Infer(InferJob),
    /// Private training.
    Train(TrainJob),
}

/// `[job] kind = "infer"`: private inference of a model on the data owner's inputs; the logits go to the receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferJob {
    /// The model (default LeNet); absent when the program supplies its own ([`super::run_party_with`]).
    pub model: Option<ModelName>,
    /// The model owner's weights (safetensors, PyTorch names); Kaiming weights from `init_seed` when absent.
    pub weights: Option<PathBuf>,
    /// Seed of the Kaiming weights when there is no `weights` file (default 1).
    pub init_seed: Option<u64>,
    /// The data owner's inputs: an MNIST-format directory (its test split) or a `.npy` file `[N, …input]`.
    pub data: PathBuf,
    /// With a directory: which dataset it holds (default MNIST).
    pub dataset: Option<DatasetName>,
    /// How many inputs (the first ones): the batch size, which every party must know.
    pub images: usize,
    /// Where the receiver writes the logits (JSON: one array of floats per input).
    pub output: PathBuf,
    /// How the model owner checks, before anything is shared, that no value of the run reaches 2^62 (default
    /// `interval`: worst-case intervals, a guarantee that deep networks may fail at t = 20).
    pub range_check: Option<RangeCheckName>,
    /// The largest predicted failure probability per run the model owner accepts (divisions by a public
    /// non-power of two, e.g. 3×3 average pooling, are probabilistic); default the executor's.
    pub max_failure: Option<f64>,
}

/// `job.range_check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RangeCheckName {
    /// Worst-case interval analysis from the declared input bound: a guarantee.
    Interval,
    /// The largest magnitudes over 2 random inputs within the bound, times 4 (as `cryptgpu accuracy`): NOT a
    /// guarantee.
    Calibrated,
}

impl RangeCheckName {
    /// The executor's setting.
    pub fn check(self) -> cryptgpu_runtime::executor::RangeCheck {
        use cryptgpu_runtime::executor::RangeCheck;
        match self {
            RangeCheckName::Interval => RangeCheck::Interval,
            RangeCheckName::Calibrated => RangeCheck::Calibrated { samples: 2, margin: 4.0 },
        }
    }
}

/// `[job] kind = "train"`: private SGD training on the data owner's dataset, checkpointed; the trained weights go
/// to the model owner.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainJob {
    /// The model (default LeNet); absent when the program supplies its own ([`super::run_party_with`]).
    pub model: Option<ModelName>,
    /// The model owner's initial weights (safetensors); Kaiming weights from `init_seed` when absent.
    pub weights: Option<PathBuf>,
    /// Seed of the Kaiming initialisation when there is no `weights` file (default 1, as `cryptgpu train`).
    pub init_seed: Option<u64>,
    /// Which dataset the data owner trains on (default MNIST).
    pub dataset: Option<DatasetName>,
    /// The data owner's dataset directory (default `data/mnist` or `data/fashion-mnist`).
    pub data: Option<PathBuf>,
    /// Seed of the data owner's shuffle of the training set (default 1, as `cryptgpu train`).
    pub shuffle_seed: Option<u64>,
    /// SGD steps in all (a resumed run counts the steps already taken).
    pub steps: usize,
    /// Images per step.
    pub batch: usize,
    /// Learning rate.
    pub lr: f64,
    /// Momentum (default 0).
    #[serde(default)]
    pub momentum: f64,
    /// L2 weight decay (default 0).
    #[serde(default)]
    pub weight_decay: f64,
    /// The directory every party writes its own checkpoints to (a party's `checkpoint_dir` overrides it).
    pub checkpoint_dir: Option<PathBuf>,
    /// Write a checkpoint every this many steps (default 10); the last step is always checkpointed.
    pub checkpoint_every: Option<usize>,
    /// Where the model owner writes the trained weights (safetensors).
    pub output: PathBuf,
    /// Compute each step's mean loss privately and reveal it to the receiver (default false: it costs a private
    /// logarithm per step).
    #[serde(default)]
    pub loss: bool,
}

/// Default `checkpoint_every`.
pub const DEFAULT_CHECKPOINT_EVERY: usize = 10;

impl Deployment {
    /// Read and check a config file.
    pub fn load(path: &Path) -> Result<Deployment, DeployError> {
        let bad = |problem: String| DeployError::Config { file: path.to_path_buf(), problem };
        let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
        let raw: RawDeployment = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let mut job = raw.job;
        let kind = job.remove("kind");
        let job_err = |kind: &str, e: toml::de::Error| {
            bad(format!("[job] kind = \"{kind}\": {}", e.to_string().trim().replace('\n', " ")))
        };
        let job = match kind.as_ref().and_then(|k| k.as_str()) {
            Some("infer") => Job::Infer(toml::Value::Table(job).try_into().map_err(|e| job_err("infer", e))?),
            Some("train") => Job::Train(toml::Value::Table(job).try_into().map_err(|e| job_err("train", e))?),
            _ => {
                let found = kind.map_or("no kind".to_string(), |k| k.to_string());
                return Err(bad(format!("job.kind must be \"infer\" or \"train\", found {found}")));
            }
        };
        let d = Deployment {
            session: raw.session,
            timeout_s: raw.timeout_s,
            insecure_test_seed: raw.insecure_test_seed,
            party: raw.party,
            roles: raw.roles,
            job,
            file: path.to_path_buf(),
        };
        let mut ids: Vec<PartyId> = d.party.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        if ids != [0, 1, 2] {
            return Err(bad(format!("needs exactly one [[party]] entry for each id 0, 1, 2, found ids {ids:?}")));
        }
        let r = &d.roles;
        for (key, id) in [("model_owner", r.model_owner), ("data_owner", r.data_owner), ("receiver", r.receiver)] {
            if id > 2 {
                return Err(bad(format!("roles.{key} must be party 0, 1 or 2, found {id}")));
            }
        }
        if !(d.timeout_s.is_finite() && d.timeout_s > 0.0) {
            return Err(bad(format!("timeout_s must be a positive number of seconds, found {}", d.timeout_s)));
        }
        match &d.job {
            Job::Infer(j) => {
                if j.images == 0 {
                    return Err(bad("job.images must be at least 1".into()));
                }
                if let Some(p) = j.max_failure {
                    if !(p > 0.0 && p <= 1.0) {
                        return Err(bad(format!("job.max_failure must be a probability in (0, 1], found {p}")));
                    }
                }
            }
            Job::Train(j) => {
                if j.batch == 0 {
                    return Err(bad("job.batch must be at least 1".into()));
                }
                for (key, v) in [("lr", j.lr), ("momentum", j.momentum), ("weight_decay", j.weight_decay)] {
                    if !v.is_finite() {
                        return Err(bad(format!("job.{key} must be a finite number, found {v}")));
                    }
                }
                if j.checkpoint_every == Some(0) {
                    return Err(bad("job.checkpoint_every must be at least 1 (steps)".into()));
                }
                for p in &d.party {
                    if p.checkpoint_dir.is_none() && j.checkpoint_dir.is_none() {
                        return Err(bad(format!(
                            "party {} has no checkpoint directory: set job.checkpoint_dir (all parties) or \
                             checkpoint_dir in its [[party]] entry",
                            p.id
                        )));
                    }
                }
            }
        }
        Ok(d)
    }

    /// The `[[party]]` entry of `id` (0, 1 or 2).
    pub fn entry(&self, id: PartyId) -> &PartyEntry {
        self.party.iter().find(|p| p.id == id).expect("ids checked in load")
    }

    /// A config error naming this file.
    pub fn error(&self, problem: impl Into<String>) -> DeployError {
        DeployError::Config { file: self.file.clone(), problem: problem.into() }
    }

    /// The job's model name, if the config names one.
    pub fn model(&self) -> Option<ModelName> {
        match &self.job {
            Job::Infer(j) => j.model,
            Job::Train(j) => j.model,
        }
    }

    /// Party `id`'s checkpoint directory (its own entry's, else the job's); `None` for an inference job.
    pub fn checkpoint_dir(&self, id: PartyId) -> Option<&Path> {
        match &self.job {
            Job::Train(j) => self.entry(id).checkpoint_dir.as_deref().or(j.checkpoint_dir.as_deref()),
            Job::Infer(_) => None,
        }
    }

    /// The timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_s)
    }

    /// The three addresses and pinned certificates.
    pub fn peers(&self) -> Result<PeerConfig, DeployError> {
        let addr = |id: PartyId| -> Result<SocketAddr, DeployError> {
            let a = &self.entry(id).address;
            let mut it = a.to_socket_addrs().map_err(|e| self.error(format!("party {id}'s address `{a}`: {e}")))?;
            it.next().ok_or_else(|| self.error(format!("party {id}'s address `{a}` resolves to nothing")))
        };
        let cert = |id: PartyId| load_cert(&self.entry(id).cert);
        let mut peers = PeerConfig::new([addr(0)?, addr(1)?, addr(2)?], [cert(0)?, cert(1)?, cert(2)?], self.session);
        peers.timeout = self.timeout();
        Ok(peers)
    }
}
