//! `cryptgpu accuracy` (private vs plaintext logits for random weights and inputs, the paper's accuracy experiment)
//! and `cryptgpu precision` (the range analysis that says which fractional precisions are safe).

use cryptgpu::{workloads, Config, Session};

use super::{AccModel, CmdResult};

/// `cryptgpu accuracy`'s options.
#[derive(clap::Args)]
pub struct AccuracyArgs {
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

/// `cryptgpu accuracy`: the error of the private logits at each fractional precision, as a table or JSON records.
pub fn accuracy(a: AccuracyArgs) -> CmdResult {
    use cryptgpu::dsl::{models, reference, Params, Tensor as DslTensor};
    use cryptgpu::runtime::executor::{Executor, RangeCheck, Roles};
    use rand::SeedableRng;
    let AccuracyArgs { model, batch, frac_bits, json } = a;
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
        let run = || cryptgpu::inference::infer_with_relu_fallback(&exec, &session, &params, &input).map(|(r, _)| r);
        let result = match cryptgpu::progress::during(what, run) {
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

/// `cryptgpu precision`'s options.
#[derive(clap::Args)]
pub struct PrecisionArgs {
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
}

/// `cryptgpu precision`: the per-layer range report of a model (random or given weights), optionally calibrated.
pub fn precision(a: PrecisionArgs) -> CmdResult {
    use cryptgpu::dsl::range::InputBound;
    use cryptgpu::dsl::{weights as wio, Params, Tensor as DslTensor};
    use rand::SeedableRng;
    let PrecisionArgs { model, weights, input_bound, calibrate, margin, frac_bits, data } = a;
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
