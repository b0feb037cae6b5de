//! The check of a batch norm folded into the product after it, shared by `runtime/tests/bn_fold.rs` (models built
//! with the DSL builder) and `tests/bn_fold_macro.rs` (the same models declared with `secure_model!`): the fold
//! finder's pairs, the folded batch norm's cost (none), the logits against the plaintext reference and against the
//! unfolded runs within [`fold_bound`], and the model owner's range report.
#![allow(dead_code)]

use cryptgpu_dsl::fold::{bn_affine, conv_weights_folded, linear_weights};
use cryptgpu_dsl::fuse::{inference_fusions, FusionPlan};
use cryptgpu_dsl::range::{self, RangeReport};
use cryptgpu_dsl::reference::infer;
use cryptgpu_dsl::{Graph, Layer, LayerInfo, Params, Tensor};
use cryptgpu_runtime::executor::{Executor, Inference, Roles};
use cryptgpu_runtime::protocols::TruncationMode;
use cryptgpu_runtime::{Config, Fusion, Session};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// One unit in the last place at the default `t = 20`.
pub const ULP: f64 = 1.0 / (1u64 << 20) as f64;

/// Kaiming weights, biases and batch-norm statistics drawn at random, `γ` of both signs (so the shifts and the
/// signs of the folded weights matter).
pub fn random_params(graph: &Graph, rng: &mut StdRng) -> Params {
    Params::random(graph, rng, 0.5, true)
}

fn executor(graph: &Graph, fusion: Fusion, fold_batch_norm: bool) -> Executor {
    Executor::new(graph.clone(), Roles::default())
        .expect("executor")
        .with_fusion(fusion)
        .with_batch_norm_folding(fold_batch_norm)
}

/// A private inference in the exact truncation mode with fixed keys.
pub fn run(graph: &Graph, params: &Params, x: &Tensor, fusion: Fusion, fold_batch_norm: bool, seed: u64) -> Inference {
    let config = Config { insecure_test_seed: Some(seed), truncation: TruncationMode::Exact, ..Config::default() };
    let session = Session::new(config).expect("session");
    executor(graph, fusion, fold_batch_norm).infer(&session, params, x).expect("private inference")
}

fn logits(r: &Inference) -> Vec<f64> {
    r.logits(Roles::default().receiver).expect("logits").data().to_vec()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// The largest row L1 norm and the row length of the weights product `info` runs with, the batch norm `fold` on
/// its input folded in or not.
fn rows(params: &Params, info: &LayerInfo, plan: &FusionPlan) -> (f64, usize) {
    let fold = plan.input_fold(&info.name);
    let (w, out) = match &info.layer {
        Layer::Conv2d(c) => (conv_weights_folded(params, &info.name, c, fold, None).expect("conv").0, c.out_channels),
        Layer::Linear(l) => (linear_weights(params, &info.name, l, fold).expect("linear").0, l.out_features),
        other => panic!("not a product: {other:?}"),
    };
    let k = w.len() / out;
    (w.chunks(k).map(|r| r.iter().map(|v| v.abs()).sum::<f64>()).fold(0.0, f64::max), k)
}

/// The stated bound on |logits of `fused` − logits of `other`| for a straight-line model (no residual block), both
/// in the exact mode. An exact truncation gives `⌊z⌋` or `⌊z⌋ + 1` ulp as the masks fall, and the runs' masks part
/// as soon as their steps differ, so every truncation may differ by up to 2 ulp between the runs (1 when they agree
/// on `z`). With `D` the difference so far (0 at the input), `L` the largest row L1 norm of a product's weights
/// (folded or not, the larger), `K` its row length:
/// - a product: `D ← L·D + 2 ulp`;
/// - a batch norm folded in `fused` only, over inputs `|r| ≤ R` and outputs `|y| ≤ Y` (measured on the batch):
///   unfolded, `y` carries the encoding of `scale` (`R/2` ulp), of `shift` (`1/2`) and the truncation (`1`), which
///   the product after it multiplies by `L`; the runs encode different weights (`W` against `W·scale`: `K/2` ulp
///   times `Y` and `R`) and biases (`1` ulp): that product adds `(L·(R/2 + 3/2) + K·(Y + R)/2 + 1)` ulp;
/// - an average pool fused in one plan only: its division's rounding (`≤ 1` ulp) enters the next product:
///   `D ← L·(D + 1 ulp) + 2 ulp` there;
/// - a batch norm on shares in both: `D ← max|scale|·D + 2 ulp`; an unfused pool: `D ← D + 2 ulp`; ReLU, max
///   pooling, flatten and dropout do not increase `D`.
pub fn fold_bound(graph: &Graph, params: &Params, x: &Tensor, fused: &FusionPlan, other: &FusionPlan) -> f64 {
    let mags = range::calibrate(graph, params, x, 1.0, true).expect("magnitudes");
    let (mut d, mut pool_in, mut pending): (f64, f64, Option<(f64, f64)>) = (0.0, 0.0, None);
    for info in graph.layers() {
        let name = info.name.as_str();
        match &info.layer {
            Layer::AvgPool2d(_) | Layer::GlobalAvgPool => {
                let (a, b) = (fused.pool_bits(name).is_some(), other.pool_bits(name).is_some());
                if a != b {
                    pool_in = ULP;
                } else if !a {
                    d += 2.0 * ULP;
                }
            }
            Layer::BatchNorm2d(_) if fused.folds_batch_norm(name) && !other.folds_batch_norm(name) => {
                let m = mags.layers.iter().find(|l| l.name == name).expect("the batch norm's magnitudes");
                pending = Some((m.input, m.output));
            }
            Layer::BatchNorm2d(b) => {
                let (scale, _) = bn_affine(params, name, b.eps).expect("batch norm");
                d = scale.iter().fold(0.0f64, |a, v| a.max(v.abs())) * d + 2.0 * ULP;
            }
            Layer::Conv2d(_) | Layer::Linear(_) => {
                let ((l_plain, k), (l_folded, _)) = (rows(params, info, other), rows(params, info, fused));
                d = l_plain.max(l_folded) * (d + pool_in) + 2.0 * ULP;
                if let Some((r, y)) = pending.take() {
                    d += ULP * (l_plain * (r / 2.0 + 1.5) + k as f64 * (y + r) / 2.0 + 1.0);
                }
                pool_in = 0.0;
            }
            Layer::Relu | Layer::MaxPool2d(_) | Layer::Flatten | Layer::Dropout { .. } => {}
        }
    }
    d
}

fn step_cost(r: &Inference, name: &str) -> (u64, u64) {
    let s = r.layers.iter().find(|l| l.name == name).unwrap_or_else(|| panic!("no step `{name}`"));
    (s.rounds(), s.bytes())
}

/// Runs `graph` on 2 fresh random inputs with fresh random weights — fused (the default), with fusion off, and
/// fused but with batch-norm folding off — and checks: the batch norms the plan folds are exactly `folded`
/// (`(batch norm, product)` pairs) and those in `affine` are not; a folded batch norm costs 0 rounds and 0 bytes,
/// and the fused run saves exactly its cost (and shares `2·C` numbers fewer, plus a bias for a product that had
/// none); all three runs' logits are within `1e-2` of the f64 reference, and the fused ones within
/// [`fold_bound`] of each unfused run's; the model owner's range report records no truncation for a folded batch
/// norm (it stores its input) and the same ReLU inputs as unfolded.
pub fn check_folding(graph: &Graph, folded: &[(&str, &str)], affine: &[&str]) {
    let seed: u64 = rand::random();
    eprintln!("{}: seed {seed}", graph.name());
    let plan = inference_fusions(graph, true);
    let mut found: Vec<(&str, &str)> = plan.batch_norms.iter().map(|(p, (bn, _))| (bn.as_str(), p.as_str())).collect();
    found.sort();
    let mut want = folded.to_vec();
    want.sort();
    assert_eq!(found, want, "{}: the folded (batch norm, product) pairs", graph.name());
    for bn in affine {
        assert!(!plan.folds_batch_norm(bn), "{}: `{bn}` must not be folded", graph.name());
    }

    let mut rng = StdRng::seed_from_u64(seed);
    let params = random_params(graph, &mut rng);
    let mut shape = vec![2];
    shape.extend_from_slice(graph.input_shape());
    let x = Tensor::randn(&shape, 1.0, &mut rng);
    let plain = infer(graph, &params, &x).expect("reference");
    let fused = run(graph, &params, &x, Fusion::On, true, seed);
    let off = run(graph, &params, &x, Fusion::Off, true, seed);
    let nofold = run(graph, &params, &x, Fusion::On, false, seed);

    // Costs: a folded batch norm is free; the fused run saves exactly its steps.
    let (mut rounds, mut bytes, mut values) = (0, 0, 0);
    for (bn, product) in folded {
        assert_eq!(step_cost(&fused, bn), (0, 0), "{}: folded `{bn}` costs nothing", graph.name());
        let (r, b) = step_cost(&nofold, bn);
        assert!(r > 0 && step_cost(&off, bn).0 > 0, "{}: unfolded, `{bn}` is a product on shares", graph.name());
        rounds += r;
        bytes += b;
        let info = graph.layers().iter().find(|l| l.name == *bn).expect("batch norm");
        let Layer::BatchNorm2d(norm) = info.layer else { panic!("`{bn}` is not a batch norm") };
        let new_bias = match &graph.layers().iter().find(|l| l.name == *product).expect("product").layer {
            Layer::Conv2d(c) if !c.bias => c.out_channels,
            Layer::Linear(l) if !l.bias => l.out_features,
            _ => 0,
        };
        values += 2 * norm.channels - new_bias;
    }
    for bn in affine {
        assert!(step_cost(&fused, bn).0 > 0, "{}: `{bn}` runs on shares", graph.name());
        assert_eq!(step_cost(&fused, bn), step_cost(&nofold, bn), "{}: `{bn}`", graph.name());
    }
    for (what, r) in [("fused", &fused), ("fusion off", &off), ("no batch-norm folding", &nofold)] {
        eprintln!("{} {what}: {} rounds, {} bytes", graph.name(), r.total.rounds(), r.total.total_bytes());
    }
    assert_eq!(fused.total.rounds() + rounds, nofold.total.rounds(), "{}: rounds", graph.name());
    let layer_bytes = |r: &Inference| r.layers.iter().map(|l| l.bytes()).sum::<u64>();
    assert_eq!(layer_bytes(&fused) + bytes, layer_bytes(&nofold), "{}: bytes", graph.name());
    let shared = |r: &Inference| r.setup.iter().find(|l| l.name == "share weights").expect("setup").bytes();
    // Each shared number: 8 bytes to each of two peers.
    assert_eq!(shared(&fused) + 16 * values as u64, shared(&nofold), "{}: shared weights", graph.name());

    // Logits: the unfused runs within the stated bound, and the reference.
    for (what, r, other) in
        [("fusion off", &off, FusionPlan::none()), ("no batch-norm folding", &nofold, inference_fusions(graph, false))]
    {
        let bound = fold_bound(graph, &params, &x, &plan, &other);
        let diff = max_diff(&logits(&fused), &logits(r));
        eprintln!("{}: |fused − {what}| = {diff:.3e} ≤ {bound:.3e} ({:.0} ulp)", graph.name(), bound / ULP);
        assert!(diff <= bound, "{}: fused and {what} logits differ by {diff:e} > {bound:e}", graph.name());
    }

    let want = plain.data();
    for (what, r) in [("fused", &fused), ("fusion off", &off), ("no batch-norm folding", &nofold)] {
        let err = max_diff(&logits(r), want);
        assert!(err < 1e-2, "{} {what}: logits {err:e} from the f64 reference", graph.name());
    }

    // The model owner's range report: the folded batch norm truncates nothing and stores its input.
    let bound = range::power_of_two_above(range::max_abs_finite(&x).expect("finite"));
    let report = |e: Executor| -> RangeReport {
        e.check_model(&params, bound, 20, TruncationMode::Exact, 2).expect("range check").expect("a report")
    };
    let (folded_report, unfolded_report) =
        (report(executor(graph, Fusion::On, true)), report(executor(graph, Fusion::On, false)));
    for (bn, _) in folded {
        let l = folded_report.layers.iter().find(|l| l.name == *bn).expect("the batch norm's entry");
        assert!(l.truncation.is_none() && l.output == l.input, "{}: {l:?}", graph.name());
    }
    // The ReLUs see what they saw unfolded (up to the f64 rounding of the folded weights): the same sign circuit.
    for (f, u) in folded_report.layers.iter().zip(&unfolded_report.layers).filter(|(f, _)| f.kind == "ReLU") {
        let close = (f.input - u.input).abs() <= 1e-9 * u.input.abs();
        assert!(f.name == u.name && close, "{}: ReLU input {f:?} vs {u:?}", graph.name());
    }
}
