//! `cryptgpu infer`: private inference of a shipped model (weights from a file or random) on inputs from a file, a
//! dataset or random, compared with the model owner's plaintext reference, as a text report or one JSON record.

use cryptgpu::{workloads, Config, Session};

use super::{CmdResult, DatasetArg, PoolingArg, RangeCheckArg};

/// `cryptgpu infer`'s options.
#[derive(clap::Args)]
pub struct InferArgs {
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
    /// The declared public bound on every ReLU input, |x| < 2^BITS (real units; default 20): the ReLUs' sign
    /// circuits read only the bits it needs, and the model owner's range check refuses a run whose ReLU inputs could
    /// exceed it. `none`: the full 64-bit sign circuit.
    #[arg(long, default_value = "20", value_parser = parse_relu_bound)]
    relu_bound: ReluBound,
    /// Emulate a network with this round-trip time in milliseconds between every two parties (0: none).
    #[arg(long, default_value_t = 0.0)]
    rtt_ms: f64,
    /// With `--rtt-ms`: cap each link direction at this many megabits per second.
    #[arg(long)]
    mbit_s: Option<f64>,
    /// Print one JSON record of the result on stdout instead of the text report.
    #[arg(long)]
    json: bool,
    /// Run every layer on its own: no cross-layer fusion (to compare rounds, bytes and results with the default).
    #[arg(long)]
    no_fusion: bool,
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
            let (params, report) = wio::load_with(graph, path, wio::LoadOptions { strict: !a.non_strict })?;
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

/// `cryptgpu infer`: run the private inference and report it (text, or one JSON record with `--json`).
pub fn run(a: InferArgs) -> CmdResult {
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
    let fusion = cryptgpu::runtime::Fusion::from_bool(!a.no_fusion);
    let mut executor = Executor::new(graph.clone(), roles)?
        .with_range_check(a.range_check.check())
        .with_fusion(fusion)
        .with_relu_bound(a.relu_bound.0);
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
        match a.relu_bound.0 {
            Some(b) => println!("ReLU inputs declared |x| < 2^{b}: sign circuits over {} bits", b + a.frac_bits),
            None => println!("ReLU sign circuits over the full 64-bit ring (--relu-bound none)"),
        }
    }
    let what = format!("private inference of {} on {batch} input(s)", graph.name());
    let bar = progress::spinner(what.clone());
    let shown = bar.clone();
    let executor = executor.with_progress(std::sync::Arc::new(move |name: &str, kind: &str| {
        shown.set_message(format!("{what}: {name} ({kind})"))
    }));
    let r = cryptgpu::inference::run(&session, &executor, &params, &input);
    bar.finish_and_clear();
    let r = r?;
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
            "relu_bound_bits": a.relu_bound.0,
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

/// `--relu-bound`: bits, or `none`.
#[derive(Debug, Clone, Copy)]
struct ReluBound(Option<u32>);

fn parse_relu_bound(s: &str) -> Result<ReluBound, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(ReluBound(None));
    }
    match s.parse::<u32>() {
        Ok(b @ 1..=62) => Ok(ReluBound(Some(b))),
        _ => Err(format!("`{s}`: expected a number of bits from 1 to 62 (|x| < 2^BITS), or `none`")),
    }
}
