//! One party of a three-process deployment, run from a config file (`cryptgpu party --id N --config parties.toml`).
//!
//! The config names the three parties' addresses and certificates, this party's key, the roles and the job. Each
//! process connects to the other two over mutual TLS with pinned certificates ([`cryptgpu_runtime::transport::tls`]),
//! agrees its PRF keys with them over those channels ([`Party::connect`]) and runs its part of the job. Only the owner
//! of an input reads that input's file; only the receiver writes the result. A failing party sends an abort frame so
//! the others stop at once; a peer that dies or stalls is named within the timeout.
//!
//! ```toml
//! session = 2026            # any number the three operators agree on; frames of other sessions are refused
//! timeout_s = 30            # a peer silent for this long ends the run
//!
//! [[party]]                 # three entries, ids 0, 1, 2
//! id = 0
//! address = "127.0.0.1:7100"
//! cert = "keys/party-0.crt"
//! key = "keys/party-0.key"  # read by party 0 only
//!
//! [roles]
//! model_owner = 1
//! data_owner = 0
//! receiver = 0
//!
//! [job]                     # private LeNet inference on MNIST test images
//! kind = "infer"
//! weights = "weights/lenet_mnist.safetensors"  # read by the model owner only
//! data = "data/mnist"                           # read by the data owner only
//! images = 8
//! output = "logits.json"                        # written by the receiver only
//! ```

use cryptgpu_dsl::{weights, Tensor as DslTensor};
use cryptgpu_runtime::backend::cpu::CpuBackend;
use cryptgpu_runtime::executor::{Executor, Roles};
use cryptgpu_runtime::transport::tls::{connect_tls, load_cert, PeerConfig, TlsIdentity};
use cryptgpu_runtime::{Config, Party, PartyId};
use serde::Deserialize;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

type Error = Box<dyn std::error::Error>;

/// The deployment config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// The session id the three parties agree on.
    pub session: u64,
    /// Seconds a party waits for a peer before failing (default 30).
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// The three parties.
    pub party: Vec<PartyEntry>,
    /// Who owns the model, who owns the data, who receives the result.
    pub roles: RolesEntry,
    /// What to compute.
    pub job: Job,
}

fn default_timeout() -> f64 {
    30.0
}

/// One party's address and certificate (and, for the party itself, its key).
#[derive(Debug, Deserialize)]
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
}

/// The roles of a private inference.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesEntry {
    /// The party that knows the weights.
    pub model_owner: PartyId,
    /// The party that knows the images.
    pub data_owner: PartyId,
    /// The only party that learns the logits.
    pub receiver: PartyId,
}

/// The job.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Job {
    /// Private LeNet inference on the first `images` MNIST test images.
    Infer {
        /// The model owner's weights (safetensors, PyTorch names).
        weights: PathBuf,
        /// The data owner's MNIST directory.
        data: PathBuf,
        /// How many test images.
        images: usize,
        /// Where the receiver writes the logits (JSON).
        output: PathBuf,
    },
}

impl Deployment {
    /// Read and check a config file.
    pub fn load(path: &Path) -> Result<Deployment, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot be read: {e}", path.display()))?;
        let d: Deployment = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut ids: Vec<PartyId> = d.party.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        if ids != [0, 1, 2] {
            return Err(format!(
                "{}: needs exactly one [[party]] entry for each id 0, 1, 2, found {ids:?}",
                path.display()
            )
            .into());
        }
        let r = &d.roles;
        if [r.model_owner, r.data_owner, r.receiver].iter().any(|&i| i > 2) {
            return Err(format!("{}: roles must name parties 0, 1 or 2: {r:?}", path.display()).into());
        }
        if !(d.timeout_s.is_finite() && d.timeout_s > 0.0) {
            return Err(format!("{}: timeout_s must be a positive number of seconds", path.display()).into());
        }
        Ok(d)
    }

    fn entry(&self, id: PartyId) -> &PartyEntry {
        self.party.iter().find(|p| p.id == id).expect("checked in load")
    }

    fn peers(&self) -> Result<PeerConfig, Error> {
        let addr = |id: PartyId| -> Result<SocketAddr, Error> {
            let a = &self.entry(id).address;
            let mut it = a.to_socket_addrs().map_err(|e| format!("party {id}'s address `{a}`: {e}"))?;
            it.next().ok_or_else(|| format!("party {id}'s address `{a}` resolves to nothing").into())
        };
        let cert = |id: PartyId| load_cert(&self.entry(id).cert);
        let mut peers = PeerConfig::new([addr(0)?, addr(1)?, addr(2)?], [cert(0)?, cert(1)?, cert(2)?], self.session);
        peers.timeout = Duration::from_secs_f64(self.timeout_s);
        Ok(peers)
    }
}

/// Run party `id` of the deployment in `config`: connect, agree keys, run the job, write the result if this party
/// receives it. Returns a one-line summary of what this party did.
pub fn run_party(id: PartyId, config: &Path) -> Result<String, Error> {
    if id > 2 {
        return Err(format!("--id must be 0, 1 or 2, found {id}").into());
    }
    let d = Deployment::load(config)?;
    let me = d.entry(id);
    let key = me.key.as_ref().ok_or_else(|| format!("{}: party {id} has no `key` entry", config.display()))?;
    let identity = TlsIdentity::load(&me.cert, key)?;
    let roles = Roles { model_owner: d.roles.model_owner, data_owner: d.roles.data_owner, receiver: d.roles.receiver };
    let Job::Infer { weights: weights_path, data, images, output } = &d.job;
    // Local work first: the owners read (only) their own files, so a missing file fails before anyone connects.
    let graph = crate::lenet_mnist::lenet()?;
    let params = if id == roles.model_owner { Some(weights::load(&graph, weights_path)?) } else { None };
    let input = if id == roles.data_owner {
        let set = crate::data::Dataset::mnist(data, crate::data::Split::Test)?;
        if *images == 0 || *images > set.len() {
            return Err(format!("job.images must be 1..={} (the MNIST test set), found {images}", set.len()).into());
        }
        let b = set.subset(0..*images);
        let batch = b.batches(b.len().max(1)).next().ok_or("no MNIST test images")?;
        Some(DslTensor::from_vec(&batch.shape, batch.images.to_vec())?)
    } else {
        None
    };
    let abort = Arc::new(AtomicBool::new(false));
    let transport = connect_tls(id, &identity, &d.peers()?)?.with_abort_flag(abort.clone());
    let session_config = Config { timeout: Duration::from_secs_f64(d.timeout_s), ..Config::default() };
    let mut party = Party::connect(id, &session_config, Box::new(transport), Arc::new(CpuBackend))?;
    let executor = Executor::new(graph, roles)?;
    let result = executor.infer_party(&mut party, params.as_ref(), input.as_ref(), *images);
    if result.is_err() {
        abort.store(true, Ordering::SeqCst); // the end-of-program frame becomes an abort frame: the peers stop now
    }
    let _ = party.finish_program();
    let inference = result?;
    let stats = party.total_stats();
    match inference.logits {
        Some(logits) => {
            let rows: Vec<Vec<f64>> = logits.data().chunks(logits.shape()[1]).map(|r| r.to_vec()).collect();
            let json = serde_json::to_string(&rows)?;
            std::fs::write(output, json).map_err(|e| format!("{}: cannot write the logits: {e}", output.display()))?;
            Ok(format!("party {id}: logits of {} images written to {}", rows.len(), output.display()))
        }
        None => Ok(format!("party {id}: done ({} rounds, {} bytes sent)", stats.rounds, stats.bytes_sent)),
    }
}
