//! Every kernel a private run launches, with the GPU cost model's prediction: what `cryptgpu kernels` prints.
//!
//! [`KernelTally`] observes a CPU backend ([`Observed`]: every launch really runs, since reveals
//! decide what comes next) and keeps, per distinct kernel, only the count, the elements and the predicted cost of
//! its launches — not the buffers, so a whole ResNet-152 inference fits in memory (the recording backend, which
//! keeps every buffer for the CUDA replay tests, would not). [`inference`] and [`training_step`] run a shipped
//! or any other model's private inference, or one training step, on random weights and inputs under it.

use crate::codegen::cost::{self, Device, KernelCost, Link};
use crate::codegen::cuda::GemmPlan;
use crate::codegen::Kernel;
use crate::dsl::{Graph, Params, Tensor as DslTensor};
use crate::runtime::backend::cpu::CpuBackend;
use crate::runtime::backend::observed::{Launch, Observed, Observer};
use crate::runtime::executor::{Executor, RangeCheck, Roles};
use crate::runtime::training::{TrainConfig, Trainer};
use crate::runtime::Fusion;
use crate::{Config, PartyStats, Result, Session};
use rand::SeedableRng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The launches of one distinct kernel.
#[derive(Debug, Clone)]
pub struct KernelLaunches {
    /// The kernel (its first launch's; GEMMs of other shapes are other kernels).
    pub kernel: Kernel,
    /// Kernel family ("map", "gemm", "gather", "bits").
    pub family: &'static str,
    /// The GEMM plan the cost model picks (GEMMs only).
    pub plan: Option<GemmPlan>,
    /// Launches over the three parties.
    pub launches: u64,
    /// Work and traffic of all its launches.
    pub cost: KernelCost,
    /// Predicted seconds of all its launches.
    pub seconds: f64,
    /// The unit that bounds its first launch.
    pub bound: &'static str,
}

#[derive(Default)]
struct Table {
    index: HashMap<Kernel, usize>,
    kernels: Vec<KernelLaunches>,
}

/// Tallies every launch it is shown (as the observer of an [`Observed`] CPU backend) per distinct kernel with its
/// predicted cost on `device`.
pub struct KernelTally {
    device: Device,
    table: Mutex<Table>,
}

impl std::fmt::Debug for KernelTally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelTally").field("device", &self.device.name).finish()
    }
}

impl KernelTally {
    /// A tally predicting on `device`.
    pub fn new(device: Device) -> KernelTally {
        KernelTally { device, table: Mutex::new(Table::default()) }
    }

    /// The distinct kernels so far, in the order of their first launch.
    pub fn kernels(&self) -> Vec<KernelLaunches> {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).kernels.clone()
    }

    fn tally(&self, kernel: Kernel, elements: usize) {
        let (family, plan) = match &kernel {
            Kernel::Map(_) => ("map", None),
            Kernel::Gather(_) => ("gather", None),
            Kernel::Bits(_) => ("bits", None),
            Kernel::Gemm(g) => ("gemm", Some(cost::best_plan(g, &self.device))),
        };
        let c = cost::kernel_cost(&kernel, plan.unwrap_or(GemmPlan::Native64), elements);
        let seconds = c.time(&self.device);
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let Table { index, kernels } = &mut *table;
        match index.get(&kernel) {
            Some(&i) => {
                let k = &mut kernels[i];
                k.launches += 1;
                k.seconds += seconds;
                k.cost.bytes += c.bytes;
                k.cost.int_ops += c.int_ops;
                k.cost.fp64_fma += c.fp64_fma;
                k.cost.tensor_mac += c.tensor_mac;
            }
            None => {
                index.insert(kernel.clone(), kernels.len());
                let bound = c.bound(&self.device);
                kernels.push(KernelLaunches { kernel, family, plan, launches: 1, cost: c, seconds, bound });
            }
        }
    }
}

impl Observer for KernelTally {
    fn observe(&self, launch: &Launch<'_>) {
        self.tally(launch.kernel.to_kernel(), launch.checked.elements());
    }
    fn needs_buffers(&self) -> bool {
        false
    }
}

/// The kernels of one private run and its predicted time.
#[derive(Debug, Clone)]
pub struct KernelReport {
    /// Distinct kernels in the order of their first launch.
    pub kernels: Vec<KernelLaunches>,
    /// Communication of the whole run.
    pub stats: PartyStats,
    /// Wall time of the run on this machine's CPU backend (tallying included).
    pub wall: Duration,
    /// The device the prediction is for.
    pub device: Device,
    /// The link between parties the prediction assumes.
    pub link: Link,
}

impl KernelReport {
    /// Launches over the three parties.
    pub fn launches(&self) -> u64 {
        self.kernels.iter().map(|k| k.launches).sum()
    }

    /// Predicted kernel time of one party (the parties' GPUs run in parallel and their roles rotate): all
    /// launches' time divided by three.
    pub fn compute_seconds(&self) -> f64 {
        self.kernels.iter().map(|k| k.seconds).sum::<f64>() / 3.0
    }

    /// Predicted communication time: rounds × latency + the busiest party's bytes ÷ bandwidth.
    pub fn comm_seconds(&self) -> f64 {
        self.link.time(self.stats.rounds(), self.stats.bytes().into_iter().max().unwrap_or(0))
    }
}

/// Run `f` on a fresh session whose backend tallies every launch; return the report.
pub fn tallied(
    config: Config,
    device: Device,
    link: Link,
    f: impl FnOnce(&Session) -> Result<()>,
) -> Result<KernelReport> {
    tallied_on(Arc::new(CpuBackend), config, device, link, f)
}

/// [`tallied`] with the kernels run on `backend` (the CUDA backend, for `cryptgpu bench-gpu`); the wall time is
/// the run's, set-up of the session excluded.
pub fn tallied_on(
    backend: Arc<dyn crate::runtime::backend::Backend>,
    config: Config,
    device: Device,
    link: Link,
    f: impl FnOnce(&Session) -> Result<()>,
) -> Result<KernelReport> {
    let tally = Arc::new(KernelTally::new(device));
    let session = Session::with_backend(config, Arc::new(Observed::with_observer(backend, tally.clone())))?;
    let start = Instant::now();
    f(&session)?;
    Ok(KernelReport { kernels: tally.kernels(), stats: session.stats(), wall: start.elapsed(), device, link })
}

/// Random Kaiming weights (seed 1) and a batch of `batch` inputs uniform in [-1, 1] (seed 2) for `graph`.
fn random_model_and_input(graph: &Graph, batch: usize) -> Result<(Params, DslTensor)> {
    crate::workloads::check_model_batch(graph, batch, Config::default().max_elements)?;
    let params = Params::kaiming(graph, &mut rand::rngs::StdRng::seed_from_u64(1));
    let mut shape = vec![batch];
    shape.extend_from_slice(graph.input_shape());
    Ok((params, DslTensor::uniform(&shape, -1.0, 1.0, &mut rand::rngs::StdRng::seed_from_u64(2))))
}

/// Every kernel of `graph`'s whole private inference at `batch` (sharing the weights and the input, every layer,
/// revealing the logits) on random weights and inputs, with the cross-layer fusions of `fusion`. The range check is
/// off: only the kernels and their costs are wanted here, not the logits.
pub fn inference(graph: &Graph, batch: usize, fusion: Fusion, device: Device, link: Link) -> Result<KernelReport> {
    inference_on(Arc::new(CpuBackend), graph, batch, fusion, device, link)
}

/// [`inference`] with the kernels run on `backend`.
pub fn inference_on(
    backend: Arc<dyn crate::runtime::backend::Backend>,
    graph: &Graph,
    batch: usize,
    fusion: Fusion,
    device: Device,
    link: Link,
) -> Result<KernelReport> {
    let (params, input) = random_model_and_input(graph, batch)?;
    let roles = Roles { model_owner: 1, data_owner: 0, receiver: 0 };
    let executor = Executor::new(graph.clone(), roles)?.with_range_check(RangeCheck::Off).with_fusion(fusion);
    tallied_on(backend, Config::default(), device, link, |s| executor.infer(s, &params, &input).map(drop))
}

/// Every kernel of one private SGD step of `graph` at `batch` (sharing the model and the batch, forward, loss
/// gradient, backward, update, revealing the trained model) on random weights, inputs and labels, with the
/// cross-layer fusions of `fusion`.
pub fn training_step(graph: &Graph, batch: usize, fusion: Fusion, device: Device, link: Link) -> Result<KernelReport> {
    training_step_on(Arc::new(CpuBackend), graph, batch, fusion, device, link)
}

/// [`training_step`] with the kernels run on `backend`.
pub fn training_step_on(
    backend: Arc<dyn crate::runtime::backend::Backend>,
    graph: &Graph,
    batch: usize,
    fusion: Fusion,
    device: Device,
    link: Link,
) -> Result<KernelReport> {
    let (params, input) = random_model_and_input(graph, batch)?;
    let classes = graph.output_shape().iter().product::<usize>().max(1);
    let labels: Vec<usize> = (0..batch).map(|i| i % classes).collect();
    let roles = Roles { model_owner: 1, data_owner: 0, receiver: 1 };
    let trainer = Trainer::new(graph.clone(), roles, TrainConfig::new(0.01).with_fusion(fusion))?;
    tallied_on(backend, Config::default(), device, link, |s| trainer.train(s, &params, &[(input, labels)]).map(drop))
}
