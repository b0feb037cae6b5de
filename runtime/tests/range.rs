//! Range safety of private inference: the owners' checks refuse, before any message, a model or batch whose
//! values could reach 2^62 at the session's t (or whose probabilistic truncation is likely to fail), with an
//! error naming the layer, the bound and the largest safe t — and the session stays usable afterwards.

use cryptgpu_dsl::models::{lenet, Pooling};
use cryptgpu_dsl::range::Method;
use cryptgpu_dsl::reference::infer;
use cryptgpu_dsl::{Builder, Conv2d, Graph, Layer, Linear, Params, Pool2d, Tensor};
use cryptgpu_runtime::executor::{Executor, RangeCheck, Roles};
use cryptgpu_runtime::protocols::TruncationMode;
use cryptgpu_runtime::{Config, Error, PartyStats, Session};
use rand::rngs::StdRng;
use rand::SeedableRng;

fn session(frac_bits: u32, truncation: TruncationMode) -> Session {
    Session::new(Config { frac_bits, truncation, ..Config::default() }).expect("session")
}

fn images(n: usize, rng: &mut StdRng) -> Tensor {
    Tensor::uniform(&[n, 1, 28, 28], 0.0, 1.0, rng)
}

/// Max relative error of the receiver's logits against the reference.
fn rel_error(exec: &Executor, session: &Session, params: &Params, x: &Tensor) -> f64 {
    let plain = infer(exec.graph(), params, x).expect("reference");
    let r = exec.infer(session, params, x).expect("private inference");
    let private = r.logits(exec.roles().receiver).expect("logits");
    private.max_abs_diff(&plain) / plain.data().iter().fold(0.0f64, |a, v| a.max(v.abs()))
}

fn nothing_sent(before: PartyStats, after: PartyStats) -> bool {
    before == after
}

/// Weights of magnitude 3e6 in LeNet's first convolution overflow at t = 20: the model owner refuses, naming the
/// layer, the bound and the largest safe t, before any message; the same session then runs a good model.
#[test]
fn huge_weights_are_refused_before_any_message_and_the_session_stays_usable() {
    let graph = lenet(Pooling::Avg).expect("LeNet");
    let mut rng = StdRng::seed_from_u64(1);
    let good = Params::kaiming(&graph, &mut rng);
    let mut huge = good.clone();
    huge.insert("features.0.weight", Tensor::uniform(&[20, 1, 5, 5], -3e6, 3e6, &mut rng));
    let x = images(2, &mut rng);
    let session = session(20, TruncationMode::Exact);
    let exec = Executor::new(graph, Roles::default()).expect("executor");
    let before = session.stats();
    let err = exec.infer(&session, &huge, &x).expect_err("3e6 weights overflow at t = 20");
    assert!(nothing_sent(before, session.stats()), "refused before any message");
    let Error::Range(v) = &err else { panic!("expected a range error, got {err}") };
    assert_eq!((v.layer.as_str(), v.kind.as_str(), v.frac_bits), ("features.0", "Conv2d", 20));
    assert!(v.bound >= 2f64.powi(62), "{err}");
    let safe = v.largest_safe_t.expect("some smaller t is safe");
    assert!(safe < 20, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("features.0") && msg.contains(&format!("largest safe t is {safe}")), "{msg}");
    // The same session, a model within range: the right logits.
    let rel = rel_error(&exec, &session, &good, &x);
    assert!(rel < 1e-4, "relative error {rel:e}");
    // The safe t it named does run (on a fresh session at that t), once the ReLU bound is lifted: its ReLU inputs
    // reach millions, beyond the default declared bound 2^20, which the model owner refuses before any message.
    let at_safe = self::session(safe, TruncationMode::Exact);
    let before = at_safe.stats();
    let err = exec.infer(&at_safe, &huge, &x).expect_err("ReLU inputs beyond 2^20");
    assert!(nothing_sent(before, at_safe.stats()), "refused before any message");
    let Error::ReluBound { layer, bound, declared_bits, .. } = &err else {
        panic!("expected a ReLU bound error: {err}")
    };
    assert!(layer.starts_with("features.") || layer.starts_with("classifier."), "{err}");
    assert_eq!(*declared_bits, 20, "{err}");
    assert!(*bound >= 2f64.powi(20), "{err}");
    assert!(err.to_string().contains("--relu-bound"), "{err}");
    assert!(exec.clone().with_relu_bound(Some(40)).infer(&at_safe, &huge, &x).is_ok());
    assert!(exec.clone().with_relu_bound(None).infer(&at_safe, &huge, &x).is_ok());
}

/// The declared ReLU bound decides the sign circuit's width (rounds and bytes as declared) and the private logits
/// match the full circuit's on a model within the bound; the bound is checked at its edge by the model owner.
#[test]
fn a_declared_relu_bound_narrows_the_sign_circuit() {
    use cryptgpu_runtime::protocols::{cost, SignBits};
    let graph = lenet(Pooling::Avg).expect("LeNet");
    let mut rng = StdRng::seed_from_u64(3);
    let params = Params::kaiming(&graph, &mut rng);
    let x = images(2, &mut rng);
    let session = session(20, TruncationMode::Exact);
    let exec = Executor::new(graph, Roles::default()).expect("executor");
    assert_eq!(exec.relu_sign_bits(20), SignBits::for_bound(40).unwrap());
    assert_eq!(exec.clone().with_relu_bound(None).relu_sign_bits(20), SignBits::default());
    let narrow = exec.infer(&session, &params, &x).expect("within 2^20");
    let full = exec.clone().with_relu_bound(None).infer(&session, &params, &x).expect("full range");
    let relu_layers = |r: &cryptgpu_runtime::executor::Inference| {
        r.layers.iter().filter(|l| l.kind == "ReLU").map(|l| (l.rounds(), l.bytes())).collect::<Vec<_>>()
    };
    let (n, f) = (relu_layers(&narrow), relu_layers(&full));
    assert_eq!(n.len(), 3);
    // Every LeNet ReLU follows a product, so (fusion on) it starts in that product's truncation: one round fewer.
    for ((nr, nb), (fr, fb)) in n.iter().zip(&f) {
        assert_eq!(*nr, cost::relu_rounds_for(SignBits::for_bound(40).unwrap()) - 1);
        assert_eq!(*fr, cost::relu_rounds_for(SignBits::default()) - 1);
        assert!(nb < fb, "bounded {nb} bytes vs full {fb}");
    }
    // The same ReLU decisions: the logits agree to the truncations' rounding.
    let (a, b) = (narrow.logits(1).expect("logits"), full.logits(1).expect("logits"));
    for (a, b) in a.data().iter().zip(b.data()) {
        assert!((a - b).abs() < 1e-3, "{a} vs {b}");
    }
    // A bound the analysis cannot prove (2 bits: LeNet's first ReLU sees more than 4) is refused.
    let err = exec.clone().with_relu_bound(Some(2)).infer(&session, &params, &x).expect_err("bound 2^2");
    assert!(matches!(err, Error::ReluBound { declared_bits: 2, .. }), "{err}");
}

/// A pixel of 1e9: with a declared bound of 1 the data owner refuses the batch (naming the element); without one
/// the bound is max |x| = 1e9 and the model owner refuses at t = 20. NaN is refused too. Nothing is sent.
#[test]
fn out_of_range_and_non_finite_inputs_are_refused_by_their_owner() {
    let graph = lenet(Pooling::Max).expect("LeNet");
    let mut rng = StdRng::seed_from_u64(2);
    let params = Params::kaiming(&graph, &mut rng);
    let mut x = images(1, &mut rng);
    x.data_mut()[100] = 1e9;
    let session = session(20, TruncationMode::Exact);
    let declared = Executor::new(graph.clone(), Roles::default()).expect("executor").with_input_bound(1.0);
    let before = session.stats();
    let err = declared.infer(&session, &params, &x).expect_err("outside the declared bound");
    assert!(matches!(err, Error::InputRange { index: 100, value, bound } if value == 1e9 && bound == 1.0), "{err}");
    let exec = Executor::new(graph, Roles::default()).expect("executor");
    let err = exec.infer(&session, &params, &x).expect_err("1e9 overflows at t = 20");
    assert!(matches!(&err, Error::Range(v) if v.layer == "features.0"), "{err}");
    x.data_mut()[100] = f64::NAN;
    let err = exec.infer(&session, &params, &x).expect_err("NaN");
    let msg = err.to_string();
    assert!(msg.contains("element 100") && msg.contains("NaN"), "{err}");
    assert!(nothing_sent(before, session.stats()));
    x.data_mut()[100] = 0.5;
    assert!(rel_error(&declared, &session, &params, &x) < 1e-4, "the session still runs");
}

/// Per party: the model owner refuses before its first message (it has sent nothing), the data owner's declared
/// `max |x|` is the only message before the refusal.
#[test]
fn per_party_the_model_owner_refuses_before_sending() {
    let graph = lenet(Pooling::Avg).expect("LeNet");
    let mut rng = StdRng::seed_from_u64(3);
    let mut params = Params::kaiming(&graph, &mut rng);
    params.insert("classifier.1.weight", Tensor::uniform(&[500, 800], -3e6, 3e6, &mut rng));
    let x = images(1, &mut rng);
    let session = session(20, TruncationMode::Exact);
    let exec = Executor::new(graph, Roles::default()).expect("executor");
    let owner = exec.roles().model_owner;
    let err = session
        .run(|p| {
            let params = (p.id() == owner).then_some(&params);
            let input = (p.id() == exec.roles().data_owner).then_some(&x);
            exec.infer_party(p, params, input, 1)
        })
        .expect_err("refused");
    assert!(matches!(err.root(), Error::Range(v) if v.layer == "classifier.1"), "{err}");
    let stats = session.stats();
    assert_eq!(stats.0[owner].bytes_sent, 0, "the model owner sent nothing: {stats}");
    assert_eq!(stats.0[exec.roles().data_owner].bytes_sent, 8, "only the declared bound: {stats}");
}

/// Probabilistic truncation: a tiny linear model has a predicted failure probability around 1e-7 per run at
/// t = 20, above the default 1e-9: refused with the probability, then run when the caller accepts it.
#[test]
fn probabilistic_truncation_is_refused_above_the_threshold_unless_allowed() {
    let mut b = Builder::new();
    b.layer("fc", Linear::new(8, 4));
    let graph = b.build("Tiny", &[8]).expect("graph");
    let mut rng = StdRng::seed_from_u64(4);
    let params = Params::kaiming(&graph, &mut rng);
    let x = Tensor::uniform(&[2, 8], -1.0, 1.0, &mut rng);
    let session = session(20, TruncationMode::Probabilistic);
    let exec = Executor::new(graph, Roles::default()).expect("executor").with_input_bound(1.0);
    let err = exec.infer(&session, &params, &x).expect_err("too likely to fail");
    let Error::FailureProbability(risk) = &err else { panic!("expected a failure-probability error, got {err}") };
    assert!(risk.probability > 1e-9 && risk.probability < 1e-5, "{err}");
    assert_eq!((risk.threshold, risk.batch, risk.layer.as_str()), (1e-9, 2, "fc"));
    assert_eq!(risk.truncation, TruncationMode::Probabilistic);
    assert!(err.to_string().contains("allow_truncation_failures"), "{err}");
    let allowed = exec.clone().allow_truncation_failures(1e-5);
    assert!(rel_error(&allowed, &session, &params, &x) < 1e-4, "the session still runs, and the forced run is right");
    // The exact mode has no product failures: the same executor runs without forcing.
    assert!(exec.infer(&self::session(20, TruncationMode::Exact), &params, &x).is_ok());
}

/// A deep narrow CNN (14 Kaiming convolutions): worst-case intervals refuse t = 20 and say calibration is the
/// alternative; the calibrated check passes and the run is right. `RangeCheck::Off` skips the check.
#[test]
fn loose_intervals_refuse_deep_models_and_calibration_is_the_opt_in() {
    let mut b = Builder::new();
    b.layer("conv0", Conv2d::new(3, 16, 3).padding(1)).layer("relu0", Layer::Relu);
    for i in 1..14 {
        b.layer(&format!("conv{i}"), Conv2d::new(16, 16, 3).padding(1)).layer(&format!("relu{i}"), Layer::Relu);
    }
    b.layer("gap", Layer::GlobalAvgPool).layer("flatten", Layer::Flatten).layer("fc", Linear::new(16, 10));
    let graph: Graph = b.build("Deep", &[3, 8, 8]).expect("graph");
    let mut rng = StdRng::seed_from_u64(5);
    let params = Params::kaiming(&graph, &mut rng);
    let x = Tensor::uniform(&[2, 3, 8, 8], -1.0, 1.0, &mut rng);
    let session = session(20, TruncationMode::Exact);
    let exec = Executor::new(graph, Roles::default()).expect("executor");
    let err = exec.infer(&session, &params, &x).expect_err("loose intervals");
    assert!(matches!(&err, Error::Range(v) if v.method.starts_with("interval")), "{err}");
    assert!(err.to_string().contains("RangeCheck::Calibrated"), "{err}");
    let calibrated = exec.clone().with_range_check(RangeCheck::Calibrated { samples: 4, margin: 4.0 });
    assert!(rel_error(&calibrated, &session, &params, &x) < 1e-4);
    let off = exec.with_range_check(RangeCheck::Off);
    assert!(rel_error(&off, &session, &params, &x) < 1e-4);
}

/// A pooling model on `[1, 32, 32]` inputs: average pooling over `k × k` windows (stride 1), then a linear layer.
fn pooling_model(k: usize) -> Graph {
    let mut b = Builder::new();
    b.layer("pool", Layer::AvgPool2d(Pool2d::new(k).stride(1))).layer("flatten", Layer::Flatten);
    let side = 32 - k + 1;
    b.layer("fc", Linear::new(side * side, 4));
    b.build(&format!("Pool{k}"), &[1, 32, 32]).expect("graph")
}

/// The exact mode still fails on divisions by a non-power of two: a 3×3 average pool (÷ 9) over 900 windows of
/// inputs up to 100 is predicted to fail with probability ~5e-8 per run at t = 20, above the default 1e-9, so the
/// model owner refuses even in the exact mode, naming the pooling layer, its divisor and why, before any message;
/// allowed explicitly, it runs right. The same model with a 2×2 pool (÷ 4: an exact truncation) runs unforced.
#[test]
fn exact_mode_refuses_likely_failures_of_non_power_of_two_divisions_unless_allowed() {
    let mut rng = StdRng::seed_from_u64(6);
    let session = session(20, TruncationMode::Exact);
    let graph = pooling_model(3);
    let params = Params::kaiming(&graph, &mut rng);
    let x = Tensor::uniform(&[2, 1, 32, 32], -100.0, 100.0, &mut rng);
    let exec = Executor::new(graph, Roles::default()).expect("executor").with_input_bound(100.0);
    let before = session.stats();
    let err = exec.infer(&session, &params, &x).expect_err("÷ 9 too likely to fail");
    assert!(nothing_sent(before, session.stats()), "refused before any message");
    let Error::FailureProbability(risk) = &err else { panic!("expected a failure-probability error, got {err}") };
    assert_eq!(risk.truncation, TruncationMode::Exact);
    assert!(risk.probability > 1e-9 && risk.probability < 1e-6, "{err}");
    assert_eq!(risk.layer, "pool");
    assert_eq!(risk.sources.len(), 1, "only the division can fail in the exact mode: {err}");
    assert_eq!((risk.sources[0].divisor, risk.sources[0].kind.as_str()), (Some(9), "AvgPool2d"));
    let msg = err.to_string();
    for part in ["average pooling `pool` divides by 9", "probabilistic even in exact mode", "allow_truncation_failures"]
    {
        assert!(msg.contains(part), "`{part}` missing from: {msg}");
    }
    let allowed = exec.clone().allow_truncation_failures(1e-6);
    assert!(rel_error(&allowed, &session, &params, &x) < 1e-4, "the session still runs, and the allowed run is right");
    // A power-of-two window: the exact truncation cannot fail, nothing to allow.
    let graph = pooling_model(2);
    let params = Params::kaiming(&graph, &mut rng);
    let exec = Executor::new(graph, Roles::default()).expect("executor").with_input_bound(100.0);
    assert!(rel_error(&exec, &session, &params, &x) < 1e-4);
}

/// Without a declared bound the model owner learns only the power of two above the batch's max |x| (3 → 4,
/// 0.7 → 1), on both paths: in process (`infer`) and per party (`infer_party`, where the data owner sends it). The
/// refusal of a model with huge weights names the bound the model owner used.
#[test]
fn the_model_owner_learns_only_the_power_of_two_above_max_abs() {
    let graph = lenet(Pooling::Avg).expect("LeNet");
    let mut rng = StdRng::seed_from_u64(7);
    let mut params = Params::kaiming(&graph, &mut rng);
    params.insert("classifier.1.weight", Tensor::uniform(&[500, 800], -3e6, 3e6, &mut rng));
    let session = session(20, TruncationMode::Exact);
    let exec = Executor::new(graph, Roles::default()).expect("executor");
    for (max, announced) in [(3.0, 4.0), (-3.0, 4.0), (0.7, 1.0), (4.0, 4.0)] {
        let mut x = Tensor::uniform(&[1, 1, 28, 28], -0.5, 0.5, &mut rng);
        x.data_mut()[5] = max;
        let expected = Method::Interval { input_bound: announced }.to_string();
        let in_process = exec.infer(&session, &params, &x).expect_err("refused");
        assert!(matches!(&in_process, Error::Range(v) if v.method == expected), "max {max}: {in_process}");
        let owner = exec.roles().model_owner;
        let per_party = session
            .run(|p| {
                let params = (p.id() == owner).then_some(&params);
                let input = (p.id() == exec.roles().data_owner).then_some(&x);
                exec.infer_party(p, params, input, 1)
            })
            .expect_err("refused");
        assert!(matches!(per_party.root(), Error::Range(v) if v.method == expected), "max {max}: {per_party}");
    }
}
