//! The `cryptgpu` command line: run a private workload on the embedded default, or print the benchmark tables.

use clap::{Parser, Subcommand};
use cryptgpu::{workloads, Config, Session};

#[derive(Parser)]
#[command(version, about = "Private machine learning for three parties over replicated secret shares")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Private n×n×n matrix product among three in-process parties, checked against the plaintext product.
    Matmul {
        /// Matrix size.
        #[arg(long, default_value_t = 256)]
        size: usize,
        /// Fractional bits.
        #[arg(long, default_value_t = 20)]
        frac_bits: u32,
        /// Where each party's kernels run.
        #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
        backend: BackendKind,
    },
    /// Print every kernel of a model's whole private inference (or one training step, `--train`), with the GPU cost
    /// model's prediction for each; random weights and inputs (the kernels do not depend on them).
    Kernels {
        /// Which model.
        #[arg(long, value_enum, default_value_t = cryptgpu::deployment::ModelName::Lenet)]
        model: cryptgpu::deployment::ModelName,
        /// Batch size.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// One private SGD step (forward, loss gradient, backward, update) instead of the inference.
        #[arg(long)]
        train: bool,
        /// A square private matmul of this size instead of a model.
        #[arg(long, conflicts_with = "train")]
        matmul: Option<usize>,
        /// Also print the emitted CUDA source of every distinct kernel (or of those whose name contains `--name`).
        #[arg(long)]
        source: bool,
        /// Only kernels whose name contains this.
        #[arg(long)]
        name: Option<String>,
    },
    /// Private inference of a shipped model on inputs from a file (`.npy`, safetensors), a dataset directory (LeNet:
    /// MNIST, Fashion-MNIST) or random inputs, compared with the model owner's plaintext reference.
    Infer {
        /// Which model.
        #[arg(long, value_enum, default_value_t = cryptgpu::deployment::ModelName::Lenet)]
        model: cryptgpu::deployment::ModelName,
        /// Weights (safetensors with PyTorch names), owned by party 1; required unless --random-weights.
        #[arg(long)]
        weights: Option<std::path::PathBuf>,
        /// Random Kaiming weights from --seed instead of a weights file (for trying a model; its classes mean nothing).
        #[arg(long, conflicts_with = "weights")]
        random_weights: bool,
        /// Seed of --random-weights and --random-input.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Load `--weights` like PyTorch's `strict=False`: list missing and unexpected tensors instead of refusing
        /// the file (a missing one still stops the run, by name).
        #[arg(long)]
        non_strict: bool,
        /// Inputs, owned by party 0: a `.npy` array (float32/float64, C order) or a `.safetensors` file, of shape
        /// `[N, …model input]` or one input of the model's input shape.
        #[arg(long, conflicts_with_all = ["data", "random_input"])]
        input: Option<std::path::PathBuf>,
        /// The tensor of a safetensors `--input` that holds more than one.
        #[arg(long, requires = "input")]
        input_tensor: Option<String>,
        /// N random inputs uniform in [-1, 1] from --seed instead of an input file.
        #[arg(long, conflicts_with = "data")]
        random_input: Option<usize>,
        /// A dataset directory (its test split; `scripts/fetch-data.sh` fills `data/mnist` and
        /// `data/fashion-mnist`): LeNet's default input. The images are 1×28×28, LeNet's input shape.
        #[arg(long)]
        data: Option<std::path::PathBuf>,
        /// Which dataset `--data` holds (default directory `data/mnist` or `data/fashion-mnist`).
        #[arg(long, value_enum, default_value_t = DatasetArg::Mnist)]
        dataset: DatasetArg,
        /// Classify the first N inputs, in one private batch (default: every input of --input, 8 dataset images).
        #[arg(long)]
        batch: Option<usize>,
        /// Pooling of the LeNet variant (LeNet only; default average).
        #[arg(long, value_enum)]
        pooling: Option<PoolingArg>,
        /// Write the logits the receiver (party 0) learns here: `.npy` (float64 [N, classes]) or `.json` (one array
        /// per input).
        #[arg(long)]
        output: Option<std::path::PathBuf>,
        /// The model owner's overflow check before anything is shared: `interval` (a guarantee; it refuses deep
        /// models with random weights at t = 20), `calibrated` (2 random inputs × 4, not a guarantee) or `off`.
        #[arg(long, value_enum, default_value_t = RangeCheckArg::Interval)]
        range_check: RangeCheckArg,
        /// Fractional bits of the fixed-point encoding.
        #[arg(long, default_value_t = 20)]
        frac_bits: u32,
        /// Largest predicted failure probability per run to accept (default 1e-9; 3×3 average pooling divides by 9,
        /// probabilistic even in the exact mode: AlexNet needs about 1e-8).
        #[arg(long)]
        max_failure: Option<f64>,
        /// Emulate a network with this round-trip time in milliseconds between every two parties (0: none).
        #[arg(long, default_value_t = 0.0)]
        rtt_ms: f64,
        /// With `--rtt-ms`: cap each link direction at this many megabits per second.
        #[arg(long)]
        mbit_s: Option<f64>,
        /// Print one JSON record of the result on stdout instead of the text report.
        #[arg(long)]
        json: bool,
    },
    /// Private training of LeNet on MNIST or Fashion-MNIST beside plaintext training from the same initialisation and batches.
    Train {
        /// SGD steps (0 = one full epoch).
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Batch size.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Learning rate.
        #[arg(long, default_value_t = 0.05)]
        lr: f64,
        /// Momentum.
        #[arg(long, default_value_t = 0.9)]
        momentum: f64,
        /// Test images to evaluate both trained models on.
        #[arg(long, default_value_t = 1000)]
        eval: usize,
        /// Dataset: MNIST or Fashion-MNIST (same shapes, ten classes).
        #[arg(long, value_enum, default_value_t = DatasetArg::Mnist)]
        dataset: DatasetArg,
        /// Dataset directory (default: `data/mnist` or `data/fashion-mnist`, which `scripts/fetch-data.sh` fills).
        #[arg(long)]
        data: Option<std::path::PathBuf>,
        /// Write the two loss curves here (CSV: step, private, plaintext).
        #[arg(long)]
        loss_csv: Option<std::path::PathBuf>,
        /// Save the privately trained weights (revealed to the model owner only) here as safetensors.
        #[arg(long)]
        save: Option<std::path::PathBuf>,
        /// Print JSON records on stdout (one per step, then one for the run) instead of the text report.
        #[arg(long)]
        json: bool,
    },
    /// Private vs plaintext inference error for random weights and inputs (the paper's accuracy experiment).
    Accuracy {
        /// Which model.
        #[arg(long, value_enum, default_value_t = AccModel::Lenet)]
        model: AccModel,
        /// Batch size.
        #[arg(long, default_value_t = 4)]
        batch: usize,
        /// Fractional bits to try (comma separated).
        #[arg(long, value_delimiter = ',', default_value = "20")]
        frac_bits: Vec<u32>,
        /// Print one JSON record per fractional precision on stdout instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Range analysis: per layer the largest ring value of the private inference, the largest safe fractional
    /// precision t, and the predicted failure probability per inference in either truncation mode.
    Precision {
        /// Which model (random Kaiming weights unless --weights).
        #[arg(long, value_enum, default_value_t = cryptgpu::deployment::ModelName::Lenet)]
        model: cryptgpu::deployment::ModelName,
        /// Weights (safetensors with PyTorch names).
        #[arg(long)]
        weights: Option<std::path::PathBuf>,
        /// Public input bound |x| ≤ B (default: [0, 1] for LeNet's MNIST pixels, 1 otherwise).
        #[arg(long)]
        input_bound: Option<f64>,
        /// Also calibrate on N sample inputs (MNIST test images for LeNet, uniform in [-B, B] otherwise; at most
        /// 2^24 input elements in all).
        #[arg(long)]
        calibrate: Option<usize>,
        /// Factor on the measured magnitudes of the calibration (finite, ≥ 1).
        #[arg(long, default_value_t = 4.0)]
        margin: f64,
        /// Fractional bits the bounds are shown at.
        #[arg(long, default_value_t = 20)]
        frac_bits: u32,
        /// MNIST directory (LeNet's calibration images).
        #[arg(long, default_value = "data/mnist")]
        data: std::path::PathBuf,
    },
    /// Run one party of a three-process deployment (mutual TLS) from a config file; see `src/deployment/mod.rs`.
    Party {
        /// This party (0, 1 or 2).
        #[arg(long)]
        id: usize,
        /// The deployment config (TOML): addresses, certificates, roles, job.
        #[arg(long)]
        config: std::path::PathBuf,
        /// Training: continue from the newest checkpoint all three parties hold (they agree on it).
        #[arg(long)]
        resume: bool,
        /// TEST HOOK for the fault-injection tests (tests/deployment.rs): exit abruptly at `keys` (mid key
        /// agreement), `step:N` (mid training step N) or `before-checkpoint:N`; `fail:N` fails with an error at step N
        /// instead. Never in a real deployment.
        #[arg(long, hide = true)]
        fault_exit_at: Option<cryptgpu::deployment::FaultPoint>,
    },
    /// Make party N's TLS key pair and self-signed certificate: writes DIR/party-N.crt (give it to the two peers,
    /// who pin it) and DIR/party-N.key (keep it; mode 0600).
    Keygen {
        /// The party (0, 1 or 2).
        #[arg(long)]
        id: usize,
        /// Output directory (created if missing).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Three processes over mutual TLS vs three parties in this process (LeNet inference at batch 1 and 64, one
    /// LeNet training step), interleaved in one run; with --spu-python, also SecretFlow SPU's three-process mode.
    BenchDeployment {
        /// Timed runs per workload and pass (after one warm-up).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Interleaved passes (in-process, three processes, SPU); the median over passes is reported.
        #[arg(long, default_value_t = 2)]
        passes: usize,
        /// A Python with `spu==0.9.5` installed: also run SPU's brpc mode (`--spu-script`) on the same inferences.
        #[arg(long)]
        spu_python: Option<std::path::PathBuf>,
        /// SPU's benchmark script.
        #[arg(long, default_value = "../shared/peers/bench_spu.py")]
        spu_script: std::path::PathBuf,
        /// Internal: run as this party of the three-process run.
        #[arg(long, hide = true)]
        party: Option<usize>,
        /// Internal: the parties' ports.
        #[arg(long, hide = true, value_delimiter = ',')]
        ports: Vec<u16>,
        /// Internal: the session id.
        #[arg(long, hide = true, default_value_t = 0)]
        session: u64,
        /// Internal: the directory with the parties' keys and certificates.
        #[arg(long, hide = true)]
        dir: Option<std::path::PathBuf>,
    },
    /// Reproduce the CryptGPU paper's experiments on this machine (Table 4 with the anchors' communication, Table VI,
    /// Fig. 3, Fig. 4 / Table VII, Table VIII, per-layer cost): CSV and JSON per table, SVG plots, Markdown.
    Paper {
        /// Output directory (created): tables, plots, summary.md, summary.json.
        #[arg(long, default_value = "results/paper")]
        out: std::path::PathBuf,
        /// Run only these experiments (comma separated).
        #[arg(long, value_enum, value_delimiter = ',')]
        only: Vec<cryptgpu::paper::Experiment>,
        /// Ignore the budgets: run every measurement, however long.
        #[arg(long)]
        all: bool,
        /// Time budget in seconds, `N` for every experiment or `EXPERIMENT=N` (comma separated; defaults: table4=420,
        /// table6=300, fig3=240, fig4=330, table8=300, layers=30). A measurement estimated not to fit is skipped with
        /// a note.
        #[arg(long, value_delimiter = ',')]
        budget_s: Vec<String>,
        /// The reduced configuration of the tests: LeNet only, small batches, two precisions, a few training steps.
        #[arg(long)]
        quick: bool,
        /// Directory holding `mnist/` and `fashion-mnist/` (`scripts/fetch-data.sh`).
        #[arg(long, default_value = "data")]
        data: std::path::PathBuf,
        /// Print one JSON record per result row (with its `table` name) instead of the Markdown tables.
        #[arg(long)]
        json: bool,
        /// The recorded one-epoch loss curve to plot (skipped with a note when absent).
        #[arg(long, default_value = "results/lenet_mnist_loss_epoch.csv")]
        recorded_loss: std::path::PathBuf,
    },
    /// Benchmark tables of the linear layers: ring GEMM vs f32, secure matmul vs local GEMM, secure conv vs plaintext.
    Bench {
        /// Repetitions per measurement (the median is reported).
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Largest square GEMM size.
        #[arg(long, default_value_t = 1024)]
        max_size: usize,
        /// Print one JSON record per measurement on stdout instead of the tables.
        #[arg(long)]
        json: bool,
    },
}

/// Datasets `cryptgpu train` knows.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum DatasetArg {
    /// MNIST handwritten digits.
    Mnist,
    /// Zalando's Fashion-MNIST.
    FashionMnist,
}

impl DatasetArg {
    fn source(self) -> cryptgpu::data::Source {
        match self {
            DatasetArg::Mnist => cryptgpu::data::Source::Mnist,
            DatasetArg::FashionMnist => cryptgpu::data::Source::FashionMnist,
        }
    }
}

/// Backends a session can run its kernels on.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum BackendKind {
    /// The CPU backend (everywhere).
    Cpu,
    /// The CUDA backend on GPU 0 (needs an NVIDIA driver and NVRTC; a clear error otherwise).
    Cuda,
}

#[allow(clippy::too_many_arguments)]
fn train(
    steps: usize,
    batch: usize,
    lr: f64,
    momentum: f64,
    eval: usize,
    dataset: DatasetArg,
    data: Option<std::path::PathBuf>,
    loss_csv: Option<std::path::PathBuf>,
    save: Option<std::path::PathBuf>,
    json: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    use cryptgpu::data::{Dataset, Split};
    use cryptgpu::dsl::Params;
    use cryptgpu::lenet_mnist as job;
    use cryptgpu::runtime::training::TrainConfig;
    use rand::SeedableRng;
    let graph = job::lenet()?;
    let init = Params::kaiming(&graph, &mut rand::rngs::StdRng::seed_from_u64(1));
    let source = dataset.source();
    let dir = data.unwrap_or_else(|| source.default_dir().into());
    let train_set = Dataset::load(source, &dir, Split::Train)?.shuffled(1);
    let test_set = Dataset::load(source, &dir, Split::Test)?;
    let test_set = test_set.subset(0..eval.min(test_set.len()));
    let config = TrainConfig::new(lr).with_momentum(momentum);
    let planned = if steps == 0 { train_set.len() / batch.max(1) } else { steps };
    let bar = cryptgpu::progress::steps(planned as u64);
    let on_step = |s: job::StepProgress| {
        bar.set_position(s.step as u64);
        bar.set_message(cryptgpu::progress::step_message(s.loss, s.bytes));
    };
    let session = job::default_session()?;
    let r = job::private_training_observed(&session, &graph, &init, &train_set, steps, batch, config, &on_step);
    bar.finish_and_clear();
    let r = r?;
    let n = r.private_losses.len();
    let (acc_private, acc_plain) = cryptgpu::progress::during("evaluating both models", || {
        Ok::<_, Box<dyn std::error::Error>>((
            job::plaintext_accuracy(&graph, &r.private_params, &test_set)?,
            job::plaintext_accuracy(&graph, &r.plain_params, &test_set)?,
        ))
    })?;
    if let Some(path) = &loss_csv {
        let mut csv = String::from("step,private,plaintext\n");
        for (i, (s, p)) in r.private_losses.iter().zip(&r.plain_losses).enumerate() {
            csv.push_str(&format!("{},{s},{p}\n", i + 1));
        }
        std::fs::write(path, csv)?;
    }
    if let Some(path) = &save {
        cryptgpu::dsl::weights::save(&graph, &r.private_params, path)?;
    }
    if json {
        for (i, (s, p)) in r.private_losses.iter().zip(&r.plain_losses).enumerate() {
            let record =
                serde_json::json!({"record": "train_step", "step": i + 1, "private_loss": s, "plaintext_loss": p});
            println!("{record}");
        }
        let record = serde_json::json!({
            "record": "train",
            "model": graph.name(),
            "dataset": source.to_string(),
            "steps": n,
            "batch": batch,
            "lr": lr,
            "momentum": momentum,
            "eval_images": test_set.len(),
            "private_accuracy": acc_private,
            "plaintext_accuracy": acc_plain,
            "final_private_loss": r.private_losses.last(),
            "final_plaintext_loss": r.plain_losses.last(),
            "rounds": r.rounds,
            "bytes": r.bytes,
            "wall_s": r.wall.as_secs_f64(),
            "loss_csv": loss_csv.as_ref().map(|p| p.display().to_string()),
            "saved": save.as_ref().map(|p| p.display().to_string()),
        });
        println!("{record}");
        return Ok(());
    }
    println!(
        "LeNet (average pooling) on {source}: {n} SGD steps of {batch} images, lr {lr}, momentum {momentum}, same Kaiming init and batches privately and in plaintext"
    );
    println!("\n| step | private loss | plaintext loss |\n|---|---|---|");
    let stride = (n / 10).max(1);
    for (i, (s, p)) in r.private_losses.iter().zip(&r.plain_losses).enumerate() {
        if i % stride == 0 || i + 1 == n {
            println!("| {} | {s:.4} | {p:.4} |", i + 1);
        }
    }
    println!(
        "\ntest accuracy on {} images: private {:.2}%, plaintext {:.2}% ({:+.2} pp)",
        test_set.len(),
        100.0 * acc_private,
        100.0 * acc_plain,
        100.0 * (acc_private - acc_plain)
    );
    println!(
        "private training: {:.1} s wall ({:.2} s per step), {} rounds, {:.3} GB sent in total",
        r.wall.as_secs_f64(),
        r.wall.as_secs_f64() / n.max(1) as f64,
        r.rounds,
        r.bytes as f64 / 1e9
    );
    if let Some(path) = loss_csv {
        println!("loss curves written to {}", path.display());
    }
    if let Some(path) = save {
        println!("privately trained weights (as revealed to the model owner) written to {}", path.display());
    }
    Ok(())
}

/// Models of the accuracy experiment.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum AccModel {
    /// LeNet (MNIST shape, average pooling).
    Lenet,
    /// AlexNet, CIFAR-10 variant (average pooling).
    Alexnet,
    /// VGG-16, CIFAR-10 variant (average pooling).
    Vgg16,
    /// ResNet-50, ImageNet 224×224, the paper's average-pool stem.
    Resnet50,
}

/// Mean relative error of private logits vs plaintext (‖p − q‖₂/‖q‖₂ per sample) and argmax agreement.
fn compare_logits(private: &cryptgpu::dsl::Tensor, plain: &cryptgpu::dsl::Tensor) -> (f64, usize) {
    let (n, classes) = (plain.shape()[0], plain.shape()[1]);
    let (mut rel, mut agree) = (0.0, 0);
    for i in 0..n {
        let (p, q) = (&private.data()[i * classes..][..classes], &plain.data()[i * classes..][..classes]);
        rel += workloads::relative_error(p, q);
        agree += usize::from(workloads::argmax(p) == workloads::argmax(q));
    }
    (rel / n as f64, agree)
}

/// Predicted failure probability per run `cryptgpu accuracy` accepts: the non-power-of-two average-pooling
/// divisions (÷ 9, ÷ 49) are probabilistic even in the exact mode, and the experiment measures the error anyway.
const ACCURACY_MAX_FAILURE: f64 = 1e-3;

fn accuracy(model: AccModel, batch: usize, frac_bits: Vec<u32>, json: bool) -> Result<(), Box<dyn std::error::Error>> {
    use cryptgpu::dsl::{models, reference, Params, Tensor as DslTensor};
    use cryptgpu::runtime::executor::{Executor, RangeCheck, Roles};
    use rand::SeedableRng;
    let graph = match model {
        AccModel::Lenet => models::lenet(models::Pooling::Avg)?,
        AccModel::Alexnet => models::alexnet_cifar10(models::Pooling::Avg)?,
        AccModel::Vgg16 => models::vgg16_cifar10(models::Pooling::Avg)?,
        AccModel::Resnet50 => models::resnet50(models::Stem::AvgPool)?,
    };
    // Every tensor of the run, plaintext or private, has `batch ×` a layer's per-sample size: refuse a batch the
    // sessions' max_elements cannot take before anything is allocated.
    workloads::check_model_batch(&graph, batch, Config::default().max_elements)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(2021);
    let params = Params::kaiming(&graph, &mut rng);
    let mut shape = vec![batch];
    shape.extend_from_slice(graph.input_shape());
    let x = workloads::random_tensor(&shape, 1.0, &mut rng)?;
    let input = DslTensor::from_vec(&shape, x.data().to_vec())?;
    let plain = reference::infer(&graph, &params, &input)?;
    if !json {
        println!("{model:?}, batch {batch}, random Kaiming weights, inputs uniform in [-1, 1]\n");
        println!(
            "note: AlexNet's 3×3 and ResNet-50's 7×7 average pools divide by 9 and 49, probabilistic even in the exact \
             truncation mode (predicted failure per sample at t = 20: ~2e-9 AlexNet, ~3e-6 ResNet-50, BENCHMARKS.md); \
             this experiment accepts up to {ACCURACY_MAX_FAILURE:.0e} per run: a failure would show as a large error \
             in the table\n"
        );
        println!("| fractional bits | mean relative error of the logits | same argmax | rounds | GB sent (all parties) | wall s |");
        println!("|---|---|---|---|---|---|");
    }
    for t in frac_bits {
        let session = Session::new(Config { frac_bits: t, ..Config::default() })?;
        let roles = Roles { model_owner: 1, data_owner: 0, receiver: 0 };
        // Worst-case intervals refuse the deeper models at t = 20 (see `cryptgpu precision`): calibrated check.
        let check = RangeCheck::Calibrated { samples: 2, margin: 4.0 };
        let exec = Executor::new(graph.clone(), roles)?
            .with_range_check(check)
            .allow_truncation_failures(ACCURACY_MAX_FAILURE);
        let what = format!("{model:?}, t = {t}: private inference of {batch} input(s)");
        let result = match cryptgpu::progress::during(what, || exec.infer(&session, &params, &input)) {
            Err(e) if matches!(e.root(), cryptgpu::Error::Range(_) | cryptgpu::Error::FailureProbability(_)) => {
                if json {
                    let record = serde_json::json!({
                        "record": "accuracy", "model": graph.name(), "batch": batch, "frac_bits": t,
                        "refused": e.to_string(),
                    });
                    println!("{record}");
                } else {
                    println!("| {t} | refused before sharing: {e} | | | | |");
                }
                continue;
            }
            r => r?,
        };
        let private = result.logits(0).ok_or("the receiver got no logits")?;
        let (rel, agree) = compare_logits(private, &plain);
        if json {
            let record = serde_json::json!({
                "record": "accuracy",
                "model": graph.name(),
                "batch": batch,
                "frac_bits": t,
                "refused": null,
                "mean_relative_error": rel,
                "argmax_agreement": agree,
                "rounds": result.total.rounds(),
                "bytes": result.total.total_bytes(),
                "wall_s": result.wall.as_secs_f64(),
            });
            println!("{record}");
            continue;
        }
        println!(
            "| {t} | {:.3e} ({:.4}%) | {agree}/{batch} | {} | {:.3} | {:.1} |",
            rel,
            rel * 100.0,
            result.total.rounds(),
            result.total.total_bytes() as f64 / 1e9,
            result.wall.as_secs_f64()
        );
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn precision(
    model: cryptgpu::deployment::ModelName,
    weights: Option<std::path::PathBuf>,
    input_bound: Option<f64>,
    calibrate: Option<usize>,
    margin: f64,
    frac_bits: u32,
    data: std::path::PathBuf,
) -> Result<(), Box<dyn std::error::Error>> {
    use cryptgpu::dsl::range::InputBound;
    use cryptgpu::dsl::{weights as wio, Params, Tensor as DslTensor};
    use rand::SeedableRng;
    cryptgpu::dsl::range::check_margin(margin)?; // before any work or output
    let graph = model.graph()?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(2021);
    let params = match &weights {
        Some(path) => wio::load(&graph, path)?,
        None => Params::kaiming(&graph, &mut rng),
    };
    let lenet = matches!(model, cryptgpu::deployment::ModelName::Lenet);
    let bound = match input_bound {
        Some(b) => InputBound::Uniform(b),
        None if lenet => InputBound::PerChannel(vec![(0.0, 1.0)]),
        None => InputBound::Uniform(1.0),
    };
    let samples = match calibrate {
        None => None,
        Some(n) if lenet && input_bound.is_none() => {
            let test = cryptgpu::data::Dataset::mnist(&data, cryptgpu::data::Split::Test)?;
            let images = test.subset(0..n.min(test.len())).images;
            Some(DslTensor::from_vec(&images.shape, images.data)?)
        }
        Some(n) => {
            let shape = cryptgpu::dsl::range::calibration_shape(&graph, n)?; // checked before the allocation
            let b = bound.max_abs();
            Some(DslTensor::uniform(&shape, -b, b, &mut rng))
        }
    };
    println!(
        "{} with {}; input bound {}; {}",
        graph.name(),
        match &weights {
            Some(p) => format!("weights {}", p.display()),
            None => "random Kaiming weights (seed 2021)".into(),
        },
        match &bound {
            InputBound::Uniform(b) => format!("|x| ≤ {b}"),
            InputBound::PerChannel(v) => format!("per channel {v:?}"),
        },
        match (&samples, lenet && input_bound.is_none()) {
            (None, _) => "no calibration".to_string(),
            (Some(s), true) => format!("calibration on the first {} MNIST test images", s.shape()[0]),
            (Some(s), false) => format!("calibration on {} inputs uniform in [-B, B]", s.shape()[0]),
        }
    );
    let report = cryptgpu::precision::analyse(&graph, &params, &bound, samples.as_ref(), margin)?;
    print!("{}", report.render(frac_bits));
    Ok(())
}

/// LeNet's pooling.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum PoolingArg {
    /// Average pooling (CryptGPU's LeNet).
    Avg,
    /// Max pooling.
    Max,
}

/// The overflow checks `cryptgpu infer` offers.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum RangeCheckArg {
    /// Worst-case interval analysis from the input bound: a guarantee.
    Interval,
    /// The largest magnitudes over 2 random inputs within the bound, times 4: not a guarantee.
    Calibrated,
    /// No check.
    Off,
}

impl RangeCheckArg {
    fn check(self) -> cryptgpu::runtime::executor::RangeCheck {
        use cryptgpu::runtime::executor::RangeCheck;
        match self {
            RangeCheckArg::Interval => RangeCheck::Interval,
            RangeCheckArg::Calibrated => RangeCheck::Calibrated { samples: 2, margin: 4.0 },
            RangeCheckArg::Off => RangeCheck::Off,
        }
    }
}

/// `cryptgpu infer`'s options.
struct InferArgs {
    model: cryptgpu::deployment::ModelName,
    weights: Option<std::path::PathBuf>,
    random_weights: bool,
    seed: u64,
    strict: bool,
    input: Option<std::path::PathBuf>,
    input_tensor: Option<String>,
    random_input: Option<usize>,
    data: Option<std::path::PathBuf>,
    dataset: DatasetArg,
    batch: Option<usize>,
    pooling: Option<PoolingArg>,
    output: Option<std::path::PathBuf>,
    range_check: RangeCheckArg,
    frac_bits: u32,
    max_failure: Option<f64>,
    rtt_ms: f64,
    mbit_s: Option<f64>,
    json: bool,
}

/// The session of `infer`: the embedded default, or one whose links are delayed (`--rtt-ms`, `--mbit-s`).
fn infer_session(
    config: Config,
    rtt_ms: f64,
    mbit_s: Option<f64>,
) -> Result<(Session, Option<String>), Box<dyn std::error::Error>> {
    if !(rtt_ms.is_finite() && rtt_ms >= 0.0) {
        return Err(format!("--rtt-ms must be a finite number of milliseconds ≥ 0, found {rtt_ms}").into());
    }
    if rtt_ms == 0.0 && mbit_s.is_none() {
        return Ok((Session::new(config)?, None));
    }
    let latency = std::time::Duration::from_secs_f64(rtt_ms / 2e3);
    let bandwidth = mbit_s.map(|m| m * 1e6 / 8.0);
    let note = format!(
        "emulated network: round-trip {rtt_ms} ms, {}",
        mbit_s.map_or("unlimited bandwidth".into(), |m| format!("{m} Mbit/s per link direction"))
    );
    let link = cryptgpu::runtime::transport::delay::Link { latency, bandwidth };
    Ok((Session::emulated(config, link)?, Some(note)))
}

/// `infer`'s model owner's weights (a file, or Kaiming weights when asked for) and a line saying which.
fn infer_weights(
    a: &InferArgs,
    graph: &cryptgpu::dsl::Graph,
) -> Result<(cryptgpu::dsl::Params, String), Box<dyn std::error::Error>> {
    use cryptgpu::dsl::{weights as wio, Params};
    use rand::SeedableRng;
    Ok(match (&a.weights, a.random_weights) {
        (Some(path), _) => {
            let (params, report) = wio::load_with(graph, path, wio::LoadOptions { strict: a.strict })?;
            for (what, keys) in [("missing", &report.missing_keys), ("unexpected", &report.unexpected_keys)] {
                if !keys.is_empty() {
                    eprintln!("{}: {what} tensors (non-strict loading): {}", path.display(), keys.join(", "));
                }
            }
            (params, format!("weights {}", path.display()))
        }
        (None, true) => (
            Params::kaiming(graph, &mut rand::rngs::StdRng::seed_from_u64(a.seed)),
            format!("random Kaiming weights (--random-weights, seed {})", a.seed),
        ),
        (None, false) => return Err("no weights: pass --weights FILE (safetensors) or --random-weights".into()),
    })
}

/// `infer`'s data owner's inputs, their labels (a dataset's) and a line saying what they are.
type Inputs = (cryptgpu::dsl::Tensor, Option<Vec<u8>>, String);

/// `infer`'s data owner's inputs: a file, random inputs when asked for, or a dataset's test images.
fn infer_inputs(a: &InferArgs, graph: &cryptgpu::dsl::Graph) -> Result<Inputs, Box<dyn std::error::Error>> {
    use cryptgpu::deployment::ModelName;
    use cryptgpu::dsl::Tensor as DslTensor;
    use cryptgpu::inference::{as_batch, first_rows, InputError};
    use cryptgpu::tensor_files;
    use rand::SeedableRng;
    Ok(match (&a.input, a.random_input) {
        (Some(path), _) => {
            let t = tensor_files::read_input(path, a.input_tensor.as_deref())?;
            let x = as_batch(graph, t, path, a.input_tensor.as_deref(), a.batch)?;
            let what = match &a.input_tensor {
                Some(t) => format!("{} (tensor `{t}`)", path.display()),
                None => path.display().to_string(),
            };
            (x, None, what)
        }
        (None, Some(n)) => {
            if n == 0 {
                return Err(InputError::EmptyBatch.into());
            }
            if a.batch.is_some_and(|b| b != n) {
                return Err("--random-input N sets the batch: leave out --batch or give the same N".into());
            }
            cryptgpu::workloads::check_model_batch(graph, n, Config::default().max_elements)?;
            let mut shape = vec![n];
            shape.extend_from_slice(graph.input_shape());
            let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed.wrapping_add(1));
            let x = DslTensor::uniform(&shape, -1.0, 1.0, &mut rng);
            (x, None, format!("{n} random inputs uniform in [-1, 1] (--random-input, seed {})", a.seed))
        }
        (None, None) => {
            let source = a.dataset.source();
            if a.data.is_none() && !matches!(a.model, ModelName::Lenet) {
                return Err(format!(
                    "no inputs for model {:?}: pass --input FILE (.npy or .safetensors) or --random-input N",
                    a.model
                )
                .into());
            }
            let dir = a.data.clone().unwrap_or_else(|| source.default_dir().into());
            let set = cryptgpu::data::Dataset::load(source, &dir, cryptgpu::data::Split::Test)?;
            let n = a.batch.unwrap_or(8);
            let what = || dir.display().to_string();
            let b = first_rows(DslTensor::from_vec(&set.images.shape, set.images.data)?, Some(n), what)?;
            let x = as_batch(graph, b, &dir, None, None)?;
            let note = format!("{source} test images 0..{n} from {}", dir.display());
            (x, Some(set.labels[..n].to_vec()), note)
        }
    })
}

fn infer(a: InferArgs) -> Result<(), Box<dyn std::error::Error>> {
    use cryptgpu::deployment::ModelName;
    use cryptgpu::dsl::{models, Tensor as DslTensor};
    use cryptgpu::runtime::executor::{Executor, Roles};
    use cryptgpu::{progress, tensor_files};
    let graph = match (a.model, a.pooling) {
        (ModelName::Lenet, Some(PoolingArg::Max)) => models::lenet(models::Pooling::Max)?,
        (_, None) | (ModelName::Lenet, _) => a.model.graph()?,
        (m, Some(_)) => return Err(format!("--pooling chooses LeNet's variant; model {m:?} has its own").into()),
    };
    if let Some(path) = &a.output {
        tensor_files::check_output(path)?; // before the run
    }
    let (params, weights_note) = infer_weights(&a, &graph)?;
    let (input, labels, input_note) = infer_inputs(&a, &graph)?;
    let batch = input.shape()[0];
    let config = Config { frac_bits: a.frac_bits, ..Config::default() };
    let (session, net_note) = infer_session(config, a.rtt_ms, a.mbit_s)?;
    let roles = Roles { model_owner: 1, data_owner: 0, receiver: 0 };
    let mut executor = Executor::new(graph.clone(), roles)?.with_range_check(a.range_check.check());
    if let Some(p) = a.max_failure {
        executor = executor.allow_truncation_failures(p);
    }
    if !a.json {
        println!(
            "private {} on {input_note}: {weights_note} owned by party {}, inputs by party {}, logits to party {}",
            graph.name(),
            roles.model_owner,
            roles.data_owner,
            roles.receiver
        );
        if let Some(note) = &net_note {
            println!("{note}");
        }
    }
    let what = format!("private inference of {} on {batch} input(s)", graph.name());
    let r = progress::during(what, || cryptgpu::inference::run(&session, &executor, &params, &input))?;
    if let Some(path) = &a.output {
        tensor_files::write_logits(path, &r.logits)?;
    }
    let k = r.logits.shape()[1];
    let correct = |t: &DslTensor| {
        labels.as_ref().map(|l| {
            l.iter().enumerate().filter(|&(i, &y)| workloads::argmax(&t.data()[i * k..][..k]) == y as usize).count()
        })
    };
    let (private_correct, plain_correct) = (correct(&r.logits), correct(&r.reference));
    let total = &r.inference.total;
    if a.json {
        let layers: Vec<_> = r
            .inference
            .layers
            .iter()
            .map(|l| {
                serde_json::json!({
                    "name": l.name, "kind": l.kind, "ms": l.time.as_secs_f64() * 1e3,
                    "rounds": l.rounds(), "bytes": l.bytes(),
                })
            })
            .collect();
        let record = serde_json::json!({
            "record": "infer",
            "model": graph.name(),
            "weights": a.weights.as_ref().map(|p| p.display().to_string()),
            "random_weights_seed": a.random_weights.then_some(a.seed),
            "input": input_note,
            "batch": batch,
            "classes": k,
            "frac_bits": session.fixed().frac_bits(),
            "mean_relative_error": r.mean_relative_error,
            "max_abs_error": r.max_abs_error,
            "argmax_agreement": r.agree,
            "private_correct": private_correct,
            "plaintext_correct": plain_correct,
            "rounds": total.rounds(),
            "bytes": total.total_bytes(),
            "bytes_per_party": total.bytes(),
            "wall_s": r.inference.wall.as_secs_f64(),
            "output": a.output.as_ref().map(|p| p.display().to_string()),
            "logits": cryptgpu::tensor_files::rows(&r.logits),
            "layers": layers,
        });
        println!("{record}");
        return Ok(());
    }
    println!("\n| layer | kind | ms | rounds | MB sent (all parties) |\n|---|---|---|---|---|");
    for l in &r.inference.layers {
        println!(
            "| {} | {} | {:.1} | {} | {:.3} |",
            l.name,
            l.kind,
            l.time.as_secs_f64() * 1e3,
            l.rounds(),
            l.bytes() as f64 / 1e6
        );
    }
    println!(
        "\nmean relative error of the logits vs the plaintext reference (Executor::plaintext_reference): {:.2e} \
         (largest logit difference {:.2e}); same argmax on {}/{batch}",
        r.mean_relative_error, r.max_abs_error, r.agree
    );
    if let (Some(p), Some(q)) = (private_correct, plain_correct) {
        println!("accuracy on these images: private {p}/{batch}, plaintext {q}/{batch}");
    }
    println!("total: {:.3} s wall, {total}", r.inference.wall.as_secs_f64());
    if let Some(path) = &a.output {
        println!("logits of party {} written to {}", roles.receiver, path.display());
    }
    Ok(())
}

/// `cryptgpu kernels`: the kernels of a run with their predicted cost, by distinct kernel.
fn kernels(
    model: cryptgpu::deployment::ModelName,
    batch: usize,
    train: bool,
    matmul: Option<usize>,
    source: bool,
    name: Option<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    use cryptgpu::codegen::cost::{Link, H100_SXM};
    use cryptgpu::codegen::cuda::{emit, GemmPlan};
    use cryptgpu::{kernel_tally, progress};
    let (device, link) = (H100_SXM, Link::LAN_10G);
    let (what, report) = match matmul {
        Some(n) => {
            let what = format!("private {n}×{n}×{n} matmul (sharing the inputs included)");
            let run = || {
                kernel_tally::tallied(Config::default(), device, link, |s| {
                    workloads::matmul(s, n, n, n, &mut rand::thread_rng()).map(drop)
                })
            };
            (what.clone(), progress::during(what, run)?)
        }
        None => {
            let graph = model.graph()?;
            let (what, run): (String, Box<dyn FnOnce() -> cryptgpu::Result<_>>) = if train {
                let what = format!("one private training step of {} at batch {batch}", graph.name());
                (what, Box::new(|| kernel_tally::training_step(&graph, batch, device, link)))
            } else {
                let what = format!("private inference of {} at batch {batch}", graph.name());
                (what, Box::new(|| kernel_tally::inference(&graph, batch, device, link)))
            };
            (what.clone(), progress::during(what, run)?)
        }
    };
    println!(
        "{what}: {} launches of {} distinct kernels over the three parties, run on the CPU backend in {:.1} s",
        report.launches(),
        report.kernels.len(),
        report.wall.as_secs_f64()
    );
    println!("communication: {}", report.stats);
    println!(
        "cost model: {} peak rates, {:.2} GB/s link with {:.1} ms latency\n",
        device.name,
        link.bandwidth / 1e9,
        link.latency * 1e3
    );
    println!("| kernel | family | plan | launches | MB moved | int32 Gop | fp64 GFMA | tensor GMAC | predicted µs (all launches) | bound |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let wanted = |n: &str| name.as_ref().is_none_or(|w| n.contains(w.as_str()));
    for k in report.kernels.iter().filter(|k| wanted(k.kernel.name())) {
        println!(
            "| {} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} | {} |",
            k.kernel.name(),
            k.family,
            k.plan.map_or("-".to_string(), |pl| format!("{pl:?}")),
            k.launches,
            k.cost.bytes / 1e6,
            k.cost.int_ops / 1e9,
            k.cost.fp64_fma / 1e9,
            k.cost.tensor_mac / 1e9,
            k.seconds * 1e6,
            k.bound
        );
    }
    println!(
        "\npredicted per party: kernels {:.3} ms + communication {:.3} ms ({} rounds) = {:.3} ms",
        report.compute_seconds() * 1e3,
        report.comm_seconds() * 1e3,
        report.stats.rounds(),
        (report.compute_seconds() + report.comm_seconds()) * 1e3
    );
    if source {
        for k in report.kernels.iter().filter(|k| wanted(k.kernel.name())) {
            let plan = k.plan.unwrap_or(GemmPlan::Native64);
            println!("\n// ===== {} ({plan:?}) =====\n{}", k.kernel.name(), emit(&k.kernel, plan)?.source);
        }
    }
    Ok(())
}

/// `cryptgpu keygen`: party `id`'s TLS identity into `out`, refusing to overwrite an existing key.
fn keygen(id: usize, out: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    use cryptgpu::runtime::transport::tls::TlsIdentity;
    if id > 2 {
        return Err(format!("--id must be 0, 1 or 2, found {id}").into());
    }
    let key = out.join(format!("party-{id}.key"));
    if key.exists() {
        return Err(format!("{} exists: refusing to overwrite a party's private key", key.display()).into());
    }
    TlsIdentity::generate(id)?.save(out, id)?;
    println!(
        "party {id}: certificate {} (give it to the other two parties), private key {} (keep it)",
        out.join(format!("party-{id}.crt")).display(),
        key.display()
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Matmul { size, frac_bits, backend } => {
            let config = Config { frac_bits, ..Config::default() };
            let session = match backend {
                BackendKind::Cpu => Session::new(config)?,
                BackendKind::Cuda => {
                    let gpu = cryptgpu::runtime::backend::cuda::CudaBackend::new(0)?;
                    Session::with_backend(config, std::sync::Arc::new(gpu))?
                }
            };
            println!("private matmul {size}×{size}×{size}: A owned by party 0, B by party 1, t = {frac_bits}");
            println!("{}", workloads::matmul(&session, size, size, size, &mut rand::thread_rng())?);
        }
        Command::Paper { out, only, all, budget_s, quick, data, json, recorded_loss } => {
            let budgets = cryptgpu::paper::parse_budgets(&budget_s)?;
            let opts = cryptgpu::paper::Options { out, only, all, budgets, quick, data, json, recorded_loss };
            cryptgpu::paper::run(&opts)?;
        }
        Command::Bench { reps, max_size, json } => cryptgpu::bench_tables::run(reps, max_size, json)?,
        Command::BenchDeployment { reps, passes, spu_python, spu_script, party, ports, session, dir } => {
            match (party, dir) {
                (Some(id), Some(dir)) => cryptgpu::deployment_bench::party(id, &dir, &ports, reps, session)?,
                (None, _) => cryptgpu::deployment_bench::run(
                    reps,
                    passes,
                    spu_python.map(|python| cryptgpu::deployment_bench::Spu { python, script: spu_script }),
                )?,
                (Some(_), None) => return Err("--party needs --dir".into()),
            }
        }
        Command::Keygen { id, out } => keygen(id, &out)?,
        Command::Party { id, config, resume, fault_exit_at } => {
            let options = cryptgpu::deployment::RunOptions { resume, fault_exit_at };
            println!("{}", cryptgpu::deployment::run_party(id, &config, &options)?)
        }
        Command::Kernels { model, batch, train, matmul, source, name } => {
            kernels(model, batch, train, matmul, source, name)?
        }
        Command::Infer {
            model,
            weights,
            random_weights,
            seed,
            non_strict,
            input,
            input_tensor,
            random_input,
            data,
            dataset,
            batch,
            pooling,
            output,
            range_check,
            frac_bits,
            max_failure,
            rtt_ms,
            mbit_s,
            json,
        } => infer(InferArgs {
            model,
            weights,
            random_weights,
            seed,
            strict: !non_strict,
            input,
            input_tensor,
            random_input,
            data,
            dataset,
            batch,
            pooling,
            output,
            range_check,
            frac_bits,
            max_failure,
            rtt_ms,
            mbit_s,
            json,
        })?,
        Command::Accuracy { model, batch, frac_bits, json } => accuracy(model, batch, frac_bits, json)?,
        Command::Precision { model, weights, input_bound, calibrate, margin, frac_bits, data } => {
            precision(model, weights, input_bound, calibrate, margin, frac_bits, data)?
        }
        Command::Train { steps, batch, lr, momentum, eval, dataset, data, loss_csv, save, json } => {
            train(steps, batch, lr, momentum, eval, dataset, data, loss_csv, save, json)?
        }
    }
    Ok(())
}
