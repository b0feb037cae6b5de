//! Ours vs SecretFlow SPU (`cryptgpu bench-spu`): the workloads of the peers' `bench_spu.py` run by our in-process
//! [`Session`] (three parties as threads, the default exact truncation) and by SPU 0.9.5 (ABY3, FM64, three parties
//! as threads of one process, [`crate::spu_peer`]), interleaved in one run, with the ratios and issue 12's goals.
//!
//! **Workloads** (as `bench_spu.py` builds them; every input and weight secret):
//! - `matmul`: secret 1024×1024 @ 1024×1024, entries uniform in [−1, 1]; ours in exact and probabilistic truncation;
//! - `relu`: ReLU over 2^20 values uniform in [−1, 1];
//! - `lenet1`, `lenet64`: LeNet inference (conv5×5×20-ReLU-avgpool-conv5×5×50-ReLU-avgpool-fc500-ReLU-fc10,
//!   Kaiming weights, images uniform in [0, 1]) of a batch of 1 and 64;
//! - `mlp`: MLP 784-128-128-10 (ReLU) inference of a batch of 128;
//! - `mlp_train`: one SGD step (learning rate 0.05, no momentum) of that MLP on a batch of 128 with the mean
//!   softmax cross-entropy: forward, loss gradient, backward, update; the loss value itself is not computed (SPU's
//!   `jax.grad` does not either).
//!
//! **Timing**, as SPU's `mpc_s`: the secure computation alone. Ours shares the inputs and weights first, then runs
//! one warm-up and `reps` timed runs, each from a barrier all three parties pass to a second barrier (the slowest
//! party's time); nothing is revealed. Rounds and bytes are those of one run, barriers excluded. A pass measures
//! every selected workload on both sides, ours first in even passes and SPU first in odd ones; each side's cell is
//! the median over passes of its median over `reps`.

use crate::dsl::{models, Builder, Graph, Linear, Params, Tensor as DslTensor};
use crate::progress::spinner;
use crate::runtime::executor::{Executor, Roles};
use crate::runtime::protocols::TruncationMode;
use crate::runtime::training::{TrainConfig, Trainer};
use crate::spu_peer::{Spu, SpuMode, SpuWorkload};
use crate::{Config, Party, Session, Stats};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::time::Instant;

type Error = Box<dyn std::error::Error>;

/// The matmul side.
const MATMUL_N: usize = 1024;
/// The ReLU's element count.
const RELU_M: usize = 1 << 20;
/// The MLP's batch (inference and training).
const MLP_BATCH: usize = 128;
/// The ratio to SPU every workload but matmul aims at.
pub const SPU_GOAL: f64 = 5.0;
/// How much slower than the probabilistic matmul the exact one may be.
pub const EXACT_MATMUL_GOAL: f64 = 1.1;

/// One workload of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// Secret 1024×1024 @ 1024×1024.
    Matmul,
    /// ReLU over 2^20 secret values.
    Relu,
    /// LeNet inference, batch 1.
    Lenet1,
    /// LeNet inference, batch 64.
    Lenet64,
    /// MLP 784-128-128-10 inference, batch 128.
    Mlp,
    /// One SGD step of that MLP, batch 128.
    MlpTrain,
}

impl Workload {
    /// Every workload, in the table's order.
    pub const ALL: [Workload; 6] =
        [Workload::Matmul, Workload::Relu, Workload::Lenet1, Workload::Lenet64, Workload::Mlp, Workload::MlpTrain];

    /// The name `--only` takes.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Matmul => "matmul",
            Workload::Relu => "relu",
            Workload::Lenet1 => "lenet1",
            Workload::Lenet64 => "lenet64",
            Workload::Mlp => "mlp",
            Workload::MlpTrain => "mlp_train",
        }
    }

    /// The table's label.
    pub fn label(self) -> &'static str {
        match self {
            Workload::Matmul => "matmul 1024³ (exact / probabilistic)",
            Workload::Relu => "ReLU over 2^20 elements",
            Workload::Lenet1 => "LeNet inference, batch 1",
            Workload::Lenet64 => "LeNet inference, batch 64",
            Workload::Mlp => "MLP 784-128-128-10 inference, batch 128",
            Workload::MlpTrain => "MLP training step, batch 128",
        }
    }

    /// The same workload in `bench_spu.py`.
    pub fn spu(self) -> SpuWorkload {
        match self {
            Workload::Matmul => SpuWorkload::Matmul { n: MATMUL_N },
            Workload::Relu => SpuWorkload::Relu { m: RELU_M },
            Workload::Lenet1 => SpuWorkload::Lenet { batch: 1 },
            Workload::Lenet64 => SpuWorkload::Lenet { batch: 64 },
            Workload::Mlp => SpuWorkload::Mlp { batch: MLP_BATCH },
            Workload::MlpTrain => SpuWorkload::MlpTrain { batch: MLP_BATCH },
        }
    }

    /// The goal this workload's row states.
    pub fn goal(self) -> String {
        match self {
            Workload::Matmul => format!("exact ≤ {EXACT_MATMUL_GOAL}× probabilistic"),
            _ => format!("≥ {SPU_GOAL}× SPU"),
        }
    }
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Workload, String> {
        Workload::ALL.into_iter().find(|w| w.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
            format!("unknown workload `{s}` (expected one of {})", names.join(", "))
        })
    }
}

/// Our side of one workload in one pass.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Measured {
    /// Median over the timed runs of the slowest party's seconds.
    pub seconds: f64,
    /// Rounds of one run.
    pub rounds: u64,
    /// Bytes all three parties sent in one run.
    pub bytes: u64,
}

/// Which side a pass ran first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum First {
    /// Ours, then SPU.
    Ours,
    /// SPU, then ours.
    Spu,
}

/// One pass of one workload.
#[derive(Debug, Clone, Serialize)]
pub struct Pass {
    /// Which side ran first.
    pub first: First,
    /// Our seconds (exact truncation).
    pub ours_s: f64,
    /// Our seconds in probabilistic truncation (matmul only).
    pub ours_probabilistic_s: Option<f64>,
    /// SPU's `mpc_s`.
    pub spu_s: f64,
}

/// The result of one workload: one row of the table, one JSON record.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// The workload.
    pub workload: Workload,
    /// Our seconds (exact truncation), median over passes.
    pub ours_s: f64,
    /// Our seconds in probabilistic truncation (matmul only), median over passes.
    pub ours_probabilistic_s: Option<f64>,
    /// SPU's `mpc_s`, median over passes.
    pub spu_s: f64,
    /// `spu_s / ours_s`.
    pub ratio: f64,
    /// `spu_s / ours_probabilistic_s` (matmul only).
    pub ratio_probabilistic: Option<f64>,
    /// The goal.
    pub goal: String,
    /// Whether the goal is met: `ratio ≥ 5`, or for matmul `ours_s ≤ 1.1 × ours_probabilistic_s`.
    pub met: bool,
    /// Our rounds of one run (exact truncation).
    pub rounds: u64,
    /// Bytes all three parties sent in one run (exact truncation).
    pub bytes: u64,
    /// Every pass.
    pub passes: Vec<Pass>,
}

impl Record {
    fn new(workload: Workload, passes: Vec<Pass>, cost: Measured) -> Record {
        let ours_s = median(passes.iter().map(|p| p.ours_s).collect());
        let spu_s = median(passes.iter().map(|p| p.spu_s).collect());
        let ours_probabilistic_s =
            passes.iter().map(|p| p.ours_probabilistic_s).collect::<Option<Vec<_>>>().map(median);
        let ratio = spu_s / ours_s;
        let met = match (workload, ours_probabilistic_s) {
            (Workload::Matmul, Some(prob)) => ours_s <= EXACT_MATMUL_GOAL * prob,
            _ => ratio >= SPU_GOAL,
        };
        Record {
            workload,
            ours_s,
            ours_probabilistic_s,
            spu_s,
            ratio,
            ratio_probabilistic: ours_probabilistic_s.map(|p| spu_s / p),
            goal: workload.goal(),
            met,
            rounds: cost.rounds,
            bytes: cost.bytes,
            passes,
        }
    }
}

/// What `cryptgpu bench-spu` runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Timed runs per workload, side and pass (after one warm-up).
    pub reps: usize,
    /// Interleaved passes.
    pub passes: usize,
    /// The workloads, in order.
    pub workloads: Vec<Workload>,
}

/// Runs the comparison: `passes` passes over `workloads`, ours and SPU alternating which goes first.
pub fn run(spu: &Spu, options: &Options) -> Result<Vec<Record>, Error> {
    let Options { reps, passes, ref workloads } = *options;
    if reps == 0 || passes == 0 || workloads.is_empty() {
        return Err("bench-spu needs --reps ≥ 1, --passes ≥ 1 and at least one workload".into());
    }
    let mut runs: Vec<Vec<Pass>> = vec![Vec::new(); workloads.len()];
    let mut costs: Vec<Option<Measured>> = vec![None; workloads.len()];
    for pass in 0..passes {
        let first = if pass % 2 == 0 { First::Ours } else { First::Spu };
        for (i, &w) in workloads.iter().enumerate() {
            let what = |side: &str| format!("pass {}/{passes}: {w}: {side}", pass + 1);
            let ours = |cost: &mut Option<Measured>| -> Result<(f64, Option<f64>), Error> {
                let exact = || announced(what("cryptgpu"), || measure(w, TruncationMode::Exact, reps));
                let prob = || {
                    announced(what("cryptgpu, probabilistic truncation"), || {
                        measure(w, TruncationMode::Probabilistic, reps)
                    })
                };
                // The matmul's two modes alternate which runs first, pass by pass, as ours and SPU do.
                let (e, p) = match (w, pass % 2) {
                    (Workload::Matmul, 0) => {
                        let e = exact()?;
                        (e, Some(prob()?.seconds))
                    }
                    (Workload::Matmul, _) => {
                        let p = prob()?.seconds;
                        (exact()?, Some(p))
                    }
                    _ => (exact()?, None),
                };
                *cost = Some(e);
                Ok((e.seconds, p))
            };
            let theirs = || announced(what("SPU"), || spu.mpc_seconds(w.spu(), SpuMode::Sim, reps));
            let ((ours_s, ours_probabilistic_s), spu_s) = match first {
                First::Ours => {
                    let o = ours(&mut costs[i])?;
                    (o, theirs()?)
                }
                First::Spu => {
                    let s = theirs()?;
                    (ours(&mut costs[i])?, s)
                }
            };
            runs[i].push(Pass { first, ours_s, ours_probabilistic_s, spu_s });
        }
    }
    Ok(workloads
        .iter()
        .zip(runs)
        .zip(costs)
        .map(|((&w, passes), cost)| Record::new(w, passes, cost.expect("every pass measures ours")))
        .collect())
}

/// Runs `f` under a spinner saying `what`; when stderr is not a terminal (the spinner hidden), `what` is printed
/// on stderr instead, so a log shows the schedule.
fn announced<R>(what: String, f: impl FnOnce() -> R) -> R {
    let bar = spinner(what.clone());
    if bar.is_hidden() {
        eprintln!("{what}");
    }
    let r = f();
    bar.finish_and_clear();
    r
}

/// The Markdown table of `records`, with a line saying how it was measured.
pub fn table(records: &[Record], spu_version: &str, reps: usize, passes: usize) -> String {
    let mut s = String::from(
        "| workload | SPU | cryptgpu | ratio | goal | rounds | MB sent (all parties) |\n|---|---|---|---|---|---|---|\n",
    );
    let spread = |v: Vec<f64>| {
        let (lo, hi) = v.iter().fold((f64::INFINITY, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        if v.len() > 1 {
            format!(" ({}–{})", secs(lo), secs(hi))
        } else {
            String::new()
        }
    };
    for r in records {
        let spu = format!("{}{}", secs(r.spu_s), spread(r.passes.iter().map(|p| p.spu_s).collect()));
        let ours_range = spread(r.passes.iter().map(|p| p.ours_s).collect());
        let (ours, ratio, goal) = match (r.ours_probabilistic_s, r.ratio_probabilistic) {
            (Some(prob), Some(ratio_prob)) => (
                format!("{} / {}{ours_range}", secs(r.ours_s), secs(prob)),
                format!("{:.2}× / {:.2}×", r.ratio, ratio_prob),
                format!("{}: {:.2}×", r.goal, r.ours_s / prob),
            ),
            _ => (format!("{}{ours_range}", secs(r.ours_s)), format!("{:.2}×", r.ratio), r.goal.clone()),
        };
        let mark = if r.met { "✓" } else { "✗" };
        s += &format!(
            "| {} | {spu} | {ours} | {ratio} | {goal} {mark} | {} | {:.2} |\n",
            r.workload.label(),
            r.rounds,
            r.bytes as f64 / 1e6
        );
    }
    s += &format!(
        "\nSPU {spu_version} (ABY3, FM64, three parties as threads) vs cryptgpu (in-process session, exact \
         truncation); the secure computation alone; each cell the median over {passes} interleaved pass(es) of the \
         median of {reps} timed run(s) after a warm-up (range over the passes in parentheses); ratio = SPU / cryptgpu; \
         rounds and bytes: ours, one run.\n"
    );
    s
}

fn secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// One timed measurement of our side of `workload` in `truncation` mode: a fresh session, the inputs and weights
/// shared, one warm-up and `reps` timed runs.
pub fn measure(workload: Workload, truncation: TruncationMode, reps: usize) -> Result<Measured, Error> {
    let session = Session::new(Config { truncation, ..Config::default() })?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(workload as u64);
    let runs = match workload {
        Workload::Matmul => {
            let a = crate::workloads::random_tensor(&[MATMUL_N, MATMUL_N], 1.0, &mut rng)?;
            let b = crate::workloads::random_tensor(&[MATMUL_N, MATMUL_N], 1.0, &mut rng)?;
            session.run(|p| {
                let xa = p.share_fixed(0, (p.id() == 0).then_some(&a), a.shape())?;
                let xb = p.share_fixed(1, (p.id() == 1).then_some(&b), b.shape())?;
                repeat(p, reps, |p| p.matmul(&xa, &xb).map(drop))
            })?
        }
        Workload::Relu => {
            let x = crate::workloads::random_tensor(&[RELU_M], 1.0, &mut rng)?;
            session.run(|p| {
                let xs = p.share_fixed(0, (p.id() == 0).then_some(&x), x.shape())?;
                repeat(p, reps, |p| p.relu(&xs).map(drop))
            })?
        }
        Workload::Lenet1 | Workload::Lenet64 => {
            let batch = if workload == Workload::Lenet1 { 1 } else { 64 };
            let graph = models::lenet(models::Pooling::Avg)?;
            let x = DslTensor::uniform(&[batch, 1, 28, 28], 0.0, 1.0, &mut rng);
            infer(&session, graph, x, reps, &mut rng)?
        }
        Workload::Mlp => {
            let x = DslTensor::uniform(&[MLP_BATCH, 784], 0.0, 1.0, &mut rng);
            infer(&session, mlp()?, x, reps, &mut rng)?
        }
        Workload::MlpTrain => train_step(&session, reps, &mut rng)?,
    };
    Ok(slowest(&runs))
}

/// The MLP 784-128-128-10 with ReLUs (`fc1`, `fc2`, `fc3`), input `[784]`.
pub fn mlp() -> Result<Graph, Error> {
    let mut b = Builder::new();
    b.layer("fc1", Linear::new(784, 128)).relu();
    b.layer("fc2", Linear::new(128, 128)).relu();
    b.layer("fc3", Linear::new(128, 10));
    Ok(b.build("MLP", &[784])?)
}

const DATA_OWNER: usize = 0;
const MODEL_OWNER: usize = 1;

/// Inference of `graph` on `x` with Kaiming weights: the model and the batch shared, then the forward pass timed.
fn infer(
    session: &Session,
    graph: Graph,
    x: DslTensor,
    reps: usize,
    rng: &mut impl Rng,
) -> Result<[(Vec<f64>, Stats); 3], Error> {
    let params = Params::kaiming(&graph, rng);
    let batch = x.shape()[0];
    let roles = Roles { model_owner: MODEL_OWNER, data_owner: DATA_OWNER, receiver: DATA_OWNER };
    let executor = Executor::new(graph, roles)?;
    Ok(session.run(|p| {
        let model = executor.share_model(p, (p.id() == MODEL_OWNER).then_some(&params))?;
        let xs = executor.share_input(p, (p.id() == DATA_OWNER).then_some(&x), batch)?;
        repeat(p, reps, |p| executor.forward(p, &model, xs.clone(), &mut Vec::new()).map(drop))
    })?)
}

/// One SGD step of the MLP: the weights, the batch and its one-hot labels shared, then forward, loss gradient,
/// backward and update timed (each timed run updates the weights again).
fn train_step(session: &Session, reps: usize, rng: &mut impl Rng) -> Result<[(Vec<f64>, Stats); 3], Error> {
    let graph = mlp()?;
    let params = Params::kaiming(&graph, rng);
    let x = DslTensor::uniform(&[MLP_BATCH, 784], 0.0, 1.0, rng);
    let labels: Vec<usize> = (0..MLP_BATCH).map(|_| rng.gen_range(0..10)).collect();
    let roles = Roles { model_owner: MODEL_OWNER, data_owner: DATA_OWNER, receiver: MODEL_OWNER };
    let trainer = Trainer::new(graph, roles, TrainConfig::new(0.05))?;
    Ok(session.run(|p| {
        let mut state = trainer.share_params(p, (p.id() == MODEL_OWNER).then_some(&params))?;
        let data = (p.id() == DATA_OWNER).then_some((&x, &labels[..]));
        let (xs, onehot) = trainer.share_batch(p, data, MLP_BATCH)?;
        repeat(p, reps, |p| {
            let mut steps = Vec::new();
            let (logits, tape) = trainer.forward(p, &state, xs.clone(), &mut steps)?;
            let (dy, _) = trainer.loss_grad(p, &logits, &onehot)?;
            let grads = trainer.backward(p, &state, &tape, dy, &mut steps)?;
            trainer.sgd_step(p, &mut state, &grads)
        })
    })?)
}

/// One warm-up and `reps` timed runs of `op`, each between two barriers; returns the timed runs' seconds and the
/// communication of one run (barriers excluded).
fn repeat(
    p: &mut Party,
    reps: usize,
    mut op: impl FnMut(&mut Party) -> crate::Result<()>,
) -> crate::Result<(Vec<f64>, Stats)> {
    let mut seconds = Vec::with_capacity(reps);
    let mut cost = Stats::default();
    for rep in 0..=reps {
        p.barrier()?;
        let (t0, s0) = (Instant::now(), p.total_stats());
        op(p)?;
        let s1 = p.total_stats();
        p.barrier()?;
        if rep > 0 {
            seconds.push(t0.elapsed().as_secs_f64());
        }
        cost = s1 - s0;
    }
    Ok((seconds, cost))
}

/// The slowest party per run, then the median over runs; one run's rounds and all parties' bytes.
fn slowest(runs: &[(Vec<f64>, Stats); 3]) -> Measured {
    let per_run = (0..runs[0].0.len()).map(|r| runs.iter().map(|p| p.0[r]).fold(0.0, f64::max)).collect();
    Measured { seconds: median(per_run), rounds: runs[0].1.rounds, bytes: runs.iter().map(|p| p.1.bytes_sent).sum() }
}
