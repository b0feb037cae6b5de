//! Predicted GPU time of a recorded run: the codegen cost model applied to every kernel launch a run made (as a
//! [`RecordingBackend`](crate::backend::recording::RecordingBackend) saw them), plus the communication the run's
//! stats record over a given link. See `cryptgpu_codegen::cost` for the formulas.

use crate::backend::recording::RecordedLaunch;
use crate::stats::PartyStats;
use cryptgpu_codegen::cost::{self, Device, KernelCost, Link};
use cryptgpu_codegen::cuda::GemmPlan;
use cryptgpu_codegen::Kernel;

/// One launch's predicted cost.
#[derive(Debug, Clone)]
pub struct LaunchPrediction {
    /// Kernel name.
    pub name: String,
    /// Kernel family ("map", "gemm", "gather").
    pub family: &'static str,
    /// The GEMM plan the model picks (GEMMs only).
    pub plan: Option<GemmPlan>,
    /// Work and traffic.
    pub cost: KernelCost,
    /// Predicted seconds.
    pub seconds: f64,
    /// The unit that bounds it.
    pub bound: &'static str,
}

/// Predicted time of a run.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// Every launch of every party.
    pub launches: Vec<LaunchPrediction>,
    /// Kernel time of one party (the three parties' GPUs run in parallel; roles rotate, so their work is even):
    /// all launches' time divided by three.
    pub compute_seconds: f64,
    /// Communication time: rounds × latency + the busiest party's bytes ÷ bandwidth.
    pub comm_seconds: f64,
}

impl Prediction {
    /// Compute plus communication (no overlap assumed).
    pub fn total_seconds(&self) -> f64 {
        self.compute_seconds + self.comm_seconds
    }
}

/// Predict the time of a run on `device` with `link` between parties, from its launches and its stats.
pub fn predict(launches: &[RecordedLaunch], stats: &PartyStats, device: &Device, link: &Link) -> Prediction {
    let launches: Vec<LaunchPrediction> = launches
        .iter()
        .map(|l| {
            let elements = l.outputs.first().map_or(0, Vec::len);
            let (family, plan) = match &l.kernel {
                Kernel::Map(_) => ("map", None),
                Kernel::Gather(_) => ("gather", None),
                Kernel::Bits(_) => ("bits", None),
                Kernel::Gemm(g) => ("gemm", Some(cost::best_plan(g, device))),
            };
            let c = cost::kernel_cost(&l.kernel, plan.unwrap_or(GemmPlan::Native64), elements);
            LaunchPrediction {
                name: l.kernel.name().to_string(),
                family,
                plan,
                cost: c,
                seconds: c.time(device),
                bound: c.bound(device),
            }
        })
        .collect();
    let compute_seconds = launches.iter().map(|l| l.seconds).sum::<f64>() / 3.0;
    let busiest = stats.bytes().into_iter().max().unwrap_or(0);
    Prediction { launches, compute_seconds, comm_seconds: link.time(stats.rounds(), busiest) }
}
