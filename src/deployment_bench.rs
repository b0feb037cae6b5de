//! The deployment benchmark (`cryptgpu bench-deployment`): the same per-party programs — private LeNet inference
//! at batch 1 and 64 and one private LeNet training step — run by three parties in this process (the embedded
//! session, in-memory channels) and by three `cryptgpu` processes over mutual TLS on loopback, interleaved in one
//! run; optionally SecretFlow SPU's three-process mode (brpc over loopback) on the same inference workloads, in the
//! same run.
//!
//! **Timing.** Every timed run starts at a barrier all three parties pass (one round of one word) and ends at a
//! second barrier, so a run's time is the slowest party's; the sharing of the weights and the input and the
//! revealing of the logits are inside it (SPU's `mpc_s` excludes its sharing and revealing, so the comparison
//! favours SPU slightly). A warm-up run precedes the timed ones in every process. Key agreement and the TLS
//! set-up are outside (they happen once per deployment); the processes' whole wall time is printed beside.
//!
//! The weights are Kaiming-random and the images uniform in [0, 1] (time and communication do not depend on the
//! values); the model is CryptGPU's LeNet with average pooling, SPU's `lenet` workload.

use crate::spu_peer::{Spu, SpuMode, SpuWorkload};
use cryptgpu_dsl::{Params, Tensor as DslTensor};
use cryptgpu_runtime::backend::cpu::CpuBackend;
use cryptgpu_runtime::executor::{Executor, Roles};
use cryptgpu_runtime::training::{TrainConfig, Trainer};
use cryptgpu_runtime::transport::tls::{connect_tls, load_cert, PeerConfig, TlsIdentity};
use cryptgpu_runtime::{Config, Party, PartyId, Session};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error>;

const DATA_OWNER: PartyId = 0;
const MODEL_OWNER: PartyId = 1;
/// The line prefix a party process reports its timings with.
const REPORT: &str = "BENCH-DEPLOYMENT ";

/// One workload of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Workload {
    /// Private LeNet inference of a batch of this many images.
    Infer(usize),
    /// One private LeNet SGD step on a batch of this many images.
    TrainStep(usize),
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Workload::Infer(b) => write!(f, "LeNet inference, batch {b}"),
            Workload::TrainStep(b) => write!(f, "LeNet training step, batch {b}"),
        }
    }
}

/// The workloads of the benchmark, in order.
pub const WORKLOADS: [Workload; 3] = [Workload::Infer(1), Workload::Infer(64), Workload::TrainStep(64)];

/// What one party measured for one workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartyTimes {
    /// The workload.
    pub workload: Workload,
    /// Seconds of every timed run (barrier to barrier).
    pub seconds: Vec<f64>,
    /// Rounds of one run (barriers excluded).
    pub rounds: u64,
    /// Bytes this party sent in one run.
    pub bytes: u64,
}

/// The inputs of the workloads: every party builds them from the same seeds, only the owners pass theirs on.
struct Inputs {
    graph: cryptgpu_dsl::Graph,
    params: Params,
    images: Vec<DslTensor>,
    labels: Vec<usize>,
}

impl Inputs {
    fn new() -> Result<Inputs, Error> {
        let graph = crate::lenet_mnist::lenet()?;
        let params = Params::kaiming(&graph, &mut rand::rngs::StdRng::seed_from_u64(1));
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let batch = |b: usize, rng: &mut rand::rngs::StdRng| DslTensor::uniform(&[b, 1, 28, 28], 0.0, 1.0, rng);
        let images = WORKLOADS
            .iter()
            .map(|w| match *w {
                Workload::Infer(b) | Workload::TrainStep(b) => batch(b, &mut rng),
            })
            .collect();
        let labels = (0..64).map(|_| rng.gen_range(0..10)).collect();
        Ok(Inputs { graph, params, images, labels })
    }
}

/// Run every workload `1 + reps` times (a warm-up, then the timed runs) as party `p`.
fn run_workloads(p: &mut Party, inputs: &Inputs, reps: usize) -> cryptgpu_runtime::Result<Vec<PartyTimes>> {
    let id = p.id();
    let infer_roles = Roles { model_owner: MODEL_OWNER, data_owner: DATA_OWNER, receiver: DATA_OWNER };
    let train_roles = Roles { receiver: MODEL_OWNER, ..infer_roles };
    let params = (id == MODEL_OWNER).then_some(&inputs.params);
    let mut out = Vec::new();
    for (w, x) in WORKLOADS.iter().zip(&inputs.images) {
        let mut seconds = Vec::with_capacity(reps);
        let mut cost = cryptgpu_runtime::Stats::default();
        let mut timed = |p: &mut Party,
                         run: &mut dyn FnMut(&mut Party) -> cryptgpu_runtime::Result<()>|
         -> cryptgpu_runtime::Result<()> {
            for rep in 0..=reps {
                p.barrier()?;
                let (t0, s0) = (Instant::now(), p.total_stats());
                run(p)?;
                let s1 = p.total_stats();
                p.barrier()?;
                if rep > 0 {
                    seconds.push(t0.elapsed().as_secs_f64());
                }
                cost = s1 - s0;
            }
            Ok(())
        };
        match *w {
            Workload::Infer(b) => {
                let executor = Executor::new(inputs.graph.clone(), infer_roles)?;
                let input = (id == DATA_OWNER).then_some(x);
                timed(p, &mut |p| executor.infer_party(p, params, input, b).map(|_| ()))?;
            }
            Workload::TrainStep(b) => {
                let trainer =
                    Trainer::new(inputs.graph.clone(), train_roles, TrainConfig::new(0.01).with_momentum(0.9))?;
                let mut state = trainer.share_params(p, params)?;
                let data = (id == DATA_OWNER).then_some((x, &inputs.labels[..b]));
                timed(p, &mut |p| trainer.step_party(p, &mut state, data, b).map(|_| ()))?;
            }
        }
        out.push(PartyTimes { workload: *w, seconds, rounds: cost.rounds, bytes: cost.bytes_sent });
    }
    Ok(out)
}

/// Party `id` of the three-process run (started by [`run`] as `cryptgpu bench-deployment --party id …`): connect
/// over mutual TLS with the identities in `dir`, run the workloads, print the timings as one JSON line.
pub fn party(id: PartyId, dir: &Path, ports: &[u16], reps: usize, session: u64) -> Result<(), Error> {
    if id > 2 || ports.len() != 3 {
        return Err("bench-deployment --party needs an id 0..=2 and three --ports".into());
    }
    let inputs = Inputs::new()?;
    let identity = TlsIdentity::load(&dir.join(format!("party-{id}.crt")), &dir.join(format!("party-{id}.key")))?;
    let addresses: [SocketAddr; 3] = core::array::from_fn(|i| SocketAddr::from(([127, 0, 0, 1], ports[i])));
    let certs = [0, 1, 2].map(|i| load_cert(&dir.join(format!("party-{i}.crt"))));
    let [c0, c1, c2] = certs;
    let mut peers = PeerConfig::new(addresses, [c0?, c1?, c2?], session);
    peers.timeout = Duration::from_secs(120);
    let transport = connect_tls(id, &identity, &peers)?;
    let config = Config { timeout: peers.timeout, ..Config::default() };
    let mut p = Party::connect(id, &config, Box::new(transport), Arc::new(CpuBackend))?;
    let result = run_workloads(&mut p, &inputs, reps);
    let _ = p.finish_program();
    println!("{REPORT}{}", serde_json::to_string(&result?)?);
    Ok(())
}

/// Slowest party per run, then the median over runs.
fn slowest_median(parties: &[Vec<PartyTimes>], w: usize) -> f64 {
    let runs = parties[0][w].seconds.len();
    let mut slowest: Vec<f64> =
        (0..runs).map(|r| parties.iter().map(|p| p[w].seconds[r]).fold(0.0, f64::max)).collect();
    median(&mut slowest)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Three free loopback ports (bound to port 0, then released).
fn free_ports() -> Result<[u16; 3], Error> {
    let l: Vec<std::net::TcpListener> =
        (0..3).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    let mut ports = [0u16; 3];
    for (p, l) in ports.iter_mut().zip(&l) {
        *p = l.local_addr()?.port();
    }
    Ok(ports)
}

/// One three-process run: spawn this executable three times as the parties; returns each party's timings and the
/// processes' wall time (TLS set-up and key agreement included).
fn three_processes(dir: &Path, reps: usize) -> Result<(Vec<Vec<PartyTimes>>, Duration), Error> {
    let exe = std::env::current_exe()?;
    let ports = free_ports()?;
    let ports_arg = ports.map(|p| p.to_string()).join(",");
    let session: u64 = rand::random();
    let start = Instant::now();
    let children: Vec<_> = (0..3)
        .map(|id| {
            Command::new(&exe)
                .args(["bench-deployment", "--party", &id.to_string(), "--ports", &ports_arg, "--reps"])
                .arg(reps.to_string())
                .arg("--session")
                .arg(session.to_string())
                .arg("--dir")
                .arg(dir)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let mut parties = Vec::new();
    let mut failures = Vec::new();
    for (id, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        match stdout.lines().find_map(|l| l.strip_prefix(REPORT)) {
            Some(json) if out.status.success() => parties.push(serde_json::from_str::<Vec<PartyTimes>>(json)?),
            _ => failures.push(format!("party {id}: {}", String::from_utf8_lossy(&out.stderr).trim())),
        }
    }
    if !failures.is_empty() {
        return Err(format!("the three-process run failed:\n{}", failures.join("\n")).into());
    }
    Ok((parties, start.elapsed()))
}

/// The benchmark: `passes` interleaved passes of (in-process, three processes, SPU brpc if given), `reps` timed
/// runs per workload in each. Prints a Markdown table.
pub fn run(reps: usize, passes: usize, spu_peer: Option<Spu>) -> Result<(), Error> {
    if reps == 0 || passes == 0 {
        return Err("--reps and --passes must be at least 1".into());
    }
    let dir = std::env::temp_dir().join(format!("cryptgpu-bench-deployment-{}", std::process::id()));
    for id in 0..3 {
        TlsIdentity::generate(id)?.save(&dir, id)?;
    }
    let inputs = Inputs::new()?;
    let n = WORKLOADS.len();
    let mut embedded: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut processes: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut spu_brpc: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut walls = Vec::new();
    let mut cost = Vec::new();
    let mut cost_processes = Vec::new();
    for pass in 0..passes {
        eprintln!("pass {}/{passes}: in-process", pass + 1);
        let session = Session::new(Config::default())?;
        let runs = session.run(|p| run_workloads(p, &inputs, reps))?;
        for (w, times) in embedded.iter_mut().enumerate() {
            times.push(slowest_median(&runs, w));
        }
        cost = runs.iter().map(|r| r.iter().map(|t| (t.rounds, t.bytes)).collect::<Vec<_>>()).collect();
        eprintln!("pass {}/{passes}: three processes over mutual TLS", pass + 1);
        let (parties, wall) = three_processes(&dir, reps)?;
        for (w, times) in processes.iter_mut().enumerate() {
            times.push(slowest_median(&parties, w));
        }
        cost_processes = parties.iter().map(|r| r.iter().map(|t| (t.rounds, t.bytes)).collect::<Vec<_>>()).collect();
        walls.push(wall.as_secs_f64());
        if let Some(s) = &spu_peer {
            for (w, times) in spu_brpc.iter_mut().enumerate() {
                if let Workload::Infer(b) = WORKLOADS[w] {
                    eprintln!("pass {}/{passes}: SPU brpc, LeNet batch {b}", pass + 1);
                    let mode = SpuMode::Brpc { base_port: free_ports()?[0] };
                    times.push(s.mpc_seconds(SpuWorkload::Lenet { batch: b }, mode, reps)?);
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if cost != cost_processes {
        return Err(format!("rounds/bytes differ between the runs: {cost:?} vs {cost_processes:?}").into());
    }
    println!(
        "| workload | in-process | three processes (TLS) | ratio | SPU brpc | SPU / three processes | rounds | MB sent (all parties) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (w, workload) in WORKLOADS.iter().enumerate() {
        let (a, b) = (median(&mut embedded[w]), median(&mut processes[w]));
        let s = median(&mut spu_brpc[w]);
        let (spu_cell, spu_ratio) =
            if s.is_nan() { ("—".to_string(), "—".to_string()) } else { (secs(s), format!("{:.2}×", s / b)) };
        let mb: u64 = cost.iter().map(|c| c[w].1).sum();
        println!(
            "| {workload} | {} | {} | **{:.2}×** | {spu_cell} | {spu_ratio} | {} | {:.2} |",
            secs(a),
            secs(b),
            b / a,
            cost[0][w].0,
            mb as f64 / 1e6
        );
    }
    println!(
        "\nmedian over {passes} pass(es) of the median over {reps} timed run(s) (slowest party per run); the \
         three processes' whole wall time (TLS set-up, key agreement, warm-ups, all runs): {}",
        walls.iter().map(|w| format!("{w:.1} s")).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

fn secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}
