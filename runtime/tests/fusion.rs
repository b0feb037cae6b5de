//! Cross-layer fusion against the unfused lowering: an average pool folded into the product after it (logits within
//! the stated bound, the pool's rounds and bytes gone exactly as the cost model declares them), a layer's `dW` and
//! `dX` truncating in shared rounds (gradients bit for bit the unfused ones, the rounds halved), and the range check
//! that accounts for the fused values.

use cryptgpu_dsl::fuse::avg_pool_fusions;
use cryptgpu_dsl::models::{lenet, Pooling};
use cryptgpu_dsl::reference::infer;
use cryptgpu_dsl::{Builder, Graph, Layer, Linear, Params, Pool2d, Tensor};
use cryptgpu_runtime::executor::{Executor, Inference, Roles};
use cryptgpu_runtime::protocols::cost::{DIVIDE, DIVIDE_EXACT, MUL_EXACT};
use cryptgpu_runtime::protocols::TruncationMode;
use cryptgpu_runtime::training::{TrainConfig, Trainer};
use cryptgpu_runtime::{Config, Error, Fusion, Session};
use rand::rngs::StdRng;
use rand::SeedableRng;

mod common;
use common::{batch, every_layer_cnn, random_params, CnnWidths};

/// One unit in the last place at the default `t = 20`.
const ULP: f64 = 1.0 / (1u64 << 20) as f64;

fn seeded_session(seed: u64, truncation: TruncationMode) -> Session {
    Session::new(Config { insecure_test_seed: Some(seed), truncation, ..Config::default() }).expect("session")
}

/// The stated bound on |fused − unfused| per logit, for a model whose layers after the first fused pool run in a
/// straight line. Both runs use the same keys, so they agree bit for bit up to the first fused pool. From there:
/// - a fused product's input lacks the pool's rounding (`< 1` ulp per element), and every product rounds once in
///   each run (`≤ 1` ulp each, so `2` between them): `D ← L·(D + 1 ulp) + 2 ulp`, where `L` is the largest row
///   L1 norm of its weights;
/// - every other product: `D ← L·D + 2 ulp` (the runs' masks differ from the first fusion on: the pool's step is
///   gone); an unfused average pool: `D ← D + 2 ulp`; ReLU, max pooling, flatten and dropout do not increase `D`.
///
/// One rounding instead of two: the bound is a few ulps times the weights' norms, nowhere near the reference error.
fn fused_bound(graph: &Graph, params: &Params) -> f64 {
    let plan = avg_pool_fusions(graph);
    let mut d: Option<f64> = None;
    for info in graph.layers() {
        let name = info.name.as_str();
        if plan.pool_bits(name).is_some() {
            d = Some(d.unwrap_or(0.0));
            continue;
        }
        let Some(dv) = d else { continue };
        let row_l1 = || {
            let w = params.require(&format!("{name}.weight")).expect("weights");
            let cols = w.data().len() / w.shape()[0];
            w.data().chunks(cols).map(|r| r.iter().map(|v| v.abs()).sum::<f64>()).fold(0.0, f64::max)
        };
        d = Some(match &info.layer {
            Layer::Conv2d(_) | Layer::Linear(_) => {
                let fused_in = if plan.extra_bits(name) > 0 { ULP } else { 0.0 };
                row_l1() * (dv + fused_in) + 2.0 * ULP
            }
            Layer::AvgPool2d(_) | Layer::GlobalAvgPool => dv + 2.0 * ULP,
            Layer::Relu | Layer::MaxPool2d(_) | Layer::Flatten | Layer::Dropout { .. } => dv,
            other => panic!("fused_bound: no rule for {other:?} after the first fusion"),
        });
    }
    d.expect("the model has a fused pool")
}

fn run(graph: &Graph, params: &Params, x: &Tensor, fusion: Fusion, seed: u64, mode: TruncationMode) -> Inference {
    let exec = Executor::new(graph.clone(), Roles::default())
        .expect("executor")
        .with_fusion(fusion)
        .allow_truncation_failures(match mode {
            TruncationMode::Exact => 1e-4, // the residual CNN's 3×3 pool divides by 9 (probabilistic)
            _ => 1.0,                      // the cost test's probabilistic runs (a wrap changes no cost)
        });
    exec.infer(&seeded_session(seed, mode), params, x).expect("private inference")
}

fn logits(r: &Inference) -> Vec<f64> {
    r.logits(Roles::default().receiver).expect("logits").data().to_vec()
}

/// LeNet (average pooling) and the residual test CNN (its global average pool over 2×2 into the classifier), on
/// fresh random inputs: fused and unfused logits differ by at most [`fused_bound`], both match the reference.
#[test]
fn fused_logits_are_within_the_bound_of_unfused() {
    let seed: u64 = rand::random();
    eprintln!("seed {seed}");
    let residual = every_layer_cnn(CnnWidths { input: 3, first: 8, second: 16, hidden: 32, classes: 10 });
    for graph in [lenet(Pooling::Avg).expect("LeNet"), residual] {
        let mut rng = StdRng::seed_from_u64(seed);
        let params = random_params(&graph, &mut rng);
        let x = batch(&graph, 2, &mut rng);
        assert!(!avg_pool_fusions(&graph).is_empty(), "{} has a fusable pool", graph.name());
        let plain = infer(&graph, &params, &x).expect("reference");
        let bound = fused_bound(&graph, &params);
        let fused = run(&graph, &params, &x, Fusion::On, seed, TruncationMode::Exact);
        let unfused = run(&graph, &params, &x, Fusion::Off, seed, TruncationMode::Exact);
        let diff = logits(&fused).iter().zip(logits(&unfused)).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        let err = logits(&fused).iter().zip(plain.data()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        eprintln!(
            "{}: |fused − unfused| ≤ {diff:.3e} (bound {bound:.3e} = {:.0} ulp), |fused − f64| {err:.3e}",
            graph.name(),
            bound / ULP
        );
        assert!(diff <= bound, "{}: fused and unfused logits differ by {diff:e} > {bound:e}", graph.name());
        assert!(err < 1e-2, "{}: fused logits {err:e} from the reference", graph.name());
    }
}

/// LeNet inference at batch 1 and 3, in both truncation modes: the fused run's rounds and bytes are the unfused
/// ones less exactly the two pools' divisions as the cost model declares them ([`DIVIDE_EXACT`] per pooled element
/// in the exact mode, [`DIVIDE`] under probabilistic truncation); the pools' steps cost nothing, every other step
/// costs what it did.
#[test]
fn lenet_fused_saves_exactly_the_pools_division() {
    let graph = lenet(Pooling::Avg).expect("LeNet");
    let mut rng = StdRng::seed_from_u64(5);
    let params = random_params(&graph, &mut rng);
    for (mode, cost) in [(TruncationMode::Exact, DIVIDE_EXACT), (TruncationMode::Probabilistic, DIVIDE)] {
        for n in [1, 3] {
            let x = batch(&graph, n, &mut rng);
            let fused = run(&graph, &params, &x, Fusion::On, 9, mode);
            let unfused = run(&graph, &params, &x, Fusion::Off, 9, mode);
            let pooled = [n * 20 * 12 * 12, n * 50 * 4 * 4];
            // The products after the pools (conv2, fc1) truncate 22 bits in the exact mode, whose packed wrap terms
            // take two per word instead of three.
            let packing = |layer: &str| {
                let outputs = match layer {
                    "features.3" => n * 50 * 8 * 8,
                    "classifier.1" => n * 500,
                    _ => return 0,
                };
                let bytes = |k| MUL_EXACT.bytes_for(outputs, k).iter().sum::<u64>();
                if mode == TruncationMode::Exact {
                    bytes(22) - bytes(20)
                } else {
                    0
                }
            };
            let saved_bytes: u64 = pooled.iter().map(|&e| cost.bytes_for(e, 2).iter().sum::<u64>()).sum::<u64>()
                - packing("features.3")
                - packing("classifier.1");
            // The pools' divisions; and under exact truncation, each ReLU's first round rides in the truncation of
            // the product before it (conv1, conv2, fc1: one round each, the bytes moving into the product's step).
            let relus_fused = if mode == TruncationMode::Exact { 3 } else { 0 };
            let saved_rounds = 2 * cost.rounds + relus_fused;
            eprintln!(
                "LeNet {mode:?} batch {n}: fused {} rounds {} bytes, unfused {} rounds {} bytes",
                fused.total.rounds(),
                fused.total.total_bytes(),
                unfused.total.rounds(),
                unfused.total.total_bytes()
            );
            assert_eq!(fused.total.rounds() + saved_rounds, unfused.total.rounds(), "{mode:?} batch {n}");
            assert_eq!(fused.total.total_bytes() + saved_bytes, unfused.total.total_bytes(), "{mode:?} batch {n}");
            let layers: Vec<_> = fused.layers.iter().zip(&unfused.layers).collect();
            for (i, (f, u)) in layers.iter().enumerate() {
                assert_eq!(f.name, u.name);
                let relu_next = layers.get(i + 1).is_some_and(|(g, _)| g.kind == "ReLU");
                if f.kind == "AvgPool2d" {
                    assert_eq!((f.rounds(), f.bytes()), (0, 0), "{}: a fused pool is local", f.name);
                    assert_eq!(u.rounds(), cost.rounds, "{}", u.name);
                } else if relus_fused > 0 && f.kind == "ReLU" {
                    // One round fewer; its first message went with the product before it.
                    let (pf, pu) = layers[i - 1];
                    assert_eq!(f.rounds() + 1, u.rounds(), "{}", f.name);
                    let (fused_pair, unfused_pair) = (f.bytes() + pf.bytes(), u.bytes() + pu.bytes());
                    assert_eq!(fused_pair, unfused_pair + packing(&pf.name), "{} and {}", pf.name, f.name);
                } else if relus_fused > 0 && relu_next {
                    assert_eq!(f.rounds(), u.rounds(), "{}", f.name);
                } else {
                    assert_eq!((f.rounds(), f.bytes()), (u.rounds(), u.bytes()), "{}", f.name);
                }
            }
        }
    }
}

/// One training step's gradients of `graph`, revealed, with the rounds and bytes of its backward.
fn step_gradients(graph: &Graph, fusion: Fusion, mode: TruncationMode) -> (Vec<(String, Vec<f64>)>, u64, u64) {
    let graph = graph.clone();
    let mut rng = StdRng::seed_from_u64(21);
    let params = Params::kaiming(&graph, &mut rng);
    let x = batch(&graph, 2, &mut rng);
    let labels = [3usize, 7];
    let roles = Roles::default();
    let trainer = Trainer::new(graph, roles, TrainConfig::new(0.1).with_fusion(fusion)).expect("trainer");
    let session = seeded_session(77, mode);
    let runs = session
        .run(|p| {
            let state = trainer.share_params(p, (p.id() == roles.model_owner).then_some(&params))?;
            let data = (p.id() == roles.data_owner).then_some((&x, labels.as_slice()));
            let mut steps = Vec::new();
            let (grads, _) = trainer.gradients_party(p, &state, data, 2, &mut steps)?;
            let backward: Vec<_> = steps.iter().filter(|s| s.name.ends_with(".backward")).map(|s| s.stats).collect();
            let mut revealed = Vec::new();
            for key in grads.keys().map(str::to_string).collect::<Vec<_>>() {
                revealed.push((key.clone(), p.reveal_fixed(&grads.get(&key).expect("key"))?.data().to_vec()));
            }
            Ok((revealed, backward))
        })
        .expect("private gradients");
    let rounds = runs.iter().map(|(_, b)| b.iter().map(|s| s.rounds).sum::<u64>()).max().expect("parties");
    let bytes = runs.iter().map(|(_, b)| b.iter().map(|s| s.bytes_sent).sum::<u64>()).sum();
    let [(revealed, _), ..] = runs;
    (revealed, rounds, bytes)
}

/// A training step of LeNet and of the residual test CNN: with fusion, every convolution's and linear layer's `dW`
/// and `dX` truncate in shared rounds (the first convolution computes no `dX`), and a fused average pool's gradient
/// needs no division (the product after it truncated its extra bits): the gradients agree with the unfused ones to
/// the truncations' rounding; the backward has 2 fewer rounds per such layer in the exact mode (1 under
/// probabilistic truncation) — LeNet 3 layers, the residual CNN 6 — plus each fused pool's division rounds, and
/// sends exactly the fused pools' divisions fewer bytes.
#[test]
fn backward_products_share_their_rounds() {
    let residual = every_layer_cnn(CnnWidths { input: 3, first: 4, second: 8, hidden: 8, classes: 10 });
    for (graph, layers) in [(lenet(Pooling::Avg).expect("LeNet"), 3), (residual, 6)] {
        for (mode, per_layer) in [(TruncationMode::Exact, 2), (TruncationMode::Probabilistic, 1)] {
            backward_case(&graph, mode, layers * per_layer);
        }
    }
}

fn backward_case(graph: &Graph, mode: TruncationMode, saved_rounds: u64) {
    {
        let (fused, fused_rounds, fused_bytes) = step_gradients(graph, Fusion::On, mode);
        let (unfused, unfused_rounds, unfused_bytes) = step_gradients(graph, Fusion::Off, mode);
        eprintln!("{} {mode:?} backward: fused {fused_rounds} rounds {fused_bytes} bytes, unfused {unfused_rounds} rounds {unfused_bytes} bytes", graph.name());
        assert_eq!(fused.len(), unfused.len());
        // With the ReLUs fused into their products' truncations the PRF draws shift, and a fused pool skips a
        // rounding, so each truncation rounds independently and the activations differ by a few ulp of t = 20,
        // which the later layers carry into the gradients: an entry differs by at most 4 ulp per term its layer
        // sums over the batch and the output positions (a bias gradient sums N·OH·OW entries) plus 0.1% of the
        // gradient's largest entry (a pool's division missing or taken twice would be off by 75% or more). The
        // joint rounds alone are bit for bit the separate products: `joint_products_are_bit_for_bit_the_separate_ones`.
        let terms: std::collections::HashMap<String, usize> = graph
            .layers()
            .iter()
            .map(|info| (info.name.clone(), 2 * info.output.get(1..).map_or(1, |hw| hw.iter().product::<usize>())))
            .collect();
        for ((k, a), (k2, b)) in fused.iter().zip(&unfused) {
            assert_eq!(k, k2);
            let layer = k.rsplit_once('.').map_or(k.as_str(), |(layer, _)| layer);
            let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            let bound = 4.0 * ULP * terms.get(layer).copied().unwrap_or(1) as f64 + 1e-3 * scale;
            let diff = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
            assert!(
                diff <= bound,
                "{} {mode:?}: gradient {k} differs by {diff:e} (bound {bound:e}) between fused and unfused",
                graph.name()
            );
        }
        let (pool_rounds, pool_bytes) = fused_pool_divisions(graph, mode, 2);
        assert_eq!(fused_rounds + saved_rounds + pool_rounds, unfused_rounds, "{} {mode:?}", graph.name());
        let wider = wider_wrap_terms(graph, mode, 2);
        assert_eq!(fused_bytes + pool_bytes, unfused_bytes + wider, "{} {mode:?}", graph.name());
    }
}

/// Rounds and bytes of the divisions of the fused average pools' gradients (one division of each pool's output at
/// `batch`), which the fused backward does not run.
fn fused_pool_divisions(graph: &Graph, mode: TruncationMode, batch: usize) -> (u64, u64) {
    let plan = avg_pool_fusions(graph);
    let cost = match mode {
        TruncationMode::Exact => DIVIDE_EXACT,
        TruncationMode::Probabilistic => DIVIDE,
    };
    let fused = graph.layers().iter().filter(|info| plan.pool_bits(&info.name).is_some());
    fused.fold((0, 0), |(rounds, bytes), info| {
        let elements = batch * info.output.iter().product::<usize>();
        let e = plan.pool_bits(&info.name).unwrap_or(0);
        (rounds + cost.rounds, bytes + cost.bytes_for(elements, e).iter().sum::<u64>())
    })
}

/// Bytes the fused backward sends more in its products after fused pools under exact truncation: their `dW` and
/// `dX` truncate `t + e` bits instead of `t` (t = 20), and wrap terms of more than 21 bits pack two per word, not
/// three.
fn wider_wrap_terms(graph: &Graph, mode: TruncationMode, batch: usize) -> u64 {
    if mode != TruncationMode::Exact {
        return 0;
    }
    let plan = avg_pool_fusions(graph);
    let params = graph.parameters();
    let bytes = |n: usize, k: u32| MUL_EXACT.bytes_for(n, k).iter().sum::<u64>();
    graph
        .layers()
        .iter()
        .filter(|info| plan.extra_bits(&info.name) > 0)
        .map(|info| {
            let e = plan.extra_bits(&info.name);
            let weight = format!("{}.weight", info.name);
            let dw = params.iter().find(|p| p.name == weight).map_or(0, |p| p.shape.iter().product::<usize>());
            let dx = batch * info.input.iter().product::<usize>();
            [dw, dx].into_iter().map(|n| bytes(n, 20 + e) - bytes(n, 20)).sum::<u64>()
        })
        .sum()
}

/// `AvgPool2d(2) → Flatten → Linear(1 → 1)` on `[1, 2, 2]` inputs with `|x| ≤ 1`: fused, the linear layer's
/// pre-truncation value is `4·w` (the window sum times `w`) in real units, `4·w·2^40` in the ring at `t = 20`;
/// unfused it is `w`. The range check refuses the fused run at `w = 2^20` (`4·w·2^40 = 2^62`) — which the
/// unfused run passes — and accepts it just below, where the run is right.
#[test]
fn range_check_counts_the_fused_products_window_sums() {
    let mut b = Builder::new();
    b.layer("pool", Layer::AvgPool2d(Pool2d::new(2))).layer("flatten", Layer::Flatten);
    b.layer("fc", Linear::new(1, 1));
    let graph = b.build("PoolLinear", &[1, 2, 2]).expect("graph");
    assert_eq!(avg_pool_fusions(&graph).extra_bits("fc"), 2);
    let model = |w: f64| {
        let mut p = Params::new();
        p.insert("fc.weight", Tensor::from_vec(&[1, 1], vec![w]).expect("w"));
        p.insert("fc.bias", Tensor::from_vec(&[1], vec![0.0]).expect("b"));
        p
    };
    let x = Tensor::from_vec(&[1, 1, 2, 2], vec![1.0, 1.0, 1.0, 1.0]).expect("x");
    let exec = |fusion| {
        Executor::new(graph.clone(), Roles::default()).expect("executor").with_fusion(fusion).with_input_bound(1.0)
    };
    let session = seeded_session(3, TruncationMode::Exact);
    let at_limit = model((1u64 << 20) as f64);
    match exec(Fusion::On).infer(&session, &at_limit, &x) {
        Err(Error::Range(v)) => assert_eq!(v.layer, "fc", "{v:?}"),
        other => panic!("the fused run at 4·w·2^40 = 2^62 must be refused, got {:?}", other.map(|r| r.total)),
    }
    exec(Fusion::Off).infer(&session, &at_limit, &x).expect("unfused, the same weights stay below 2^62");
    let w = ((1u64 << 20) - (1 << 10)) as f64;
    let ok = exec(Fusion::On).infer(&session, &model(w), &x).expect("just below the limit");
    let got = ok.logits(Roles::default().receiver).expect("logits").data()[0];
    assert!((got - w).abs() <= 4.0 * w * ULP + ULP, "fused logit {got} vs {w}");
}

/// `Party::matmuls_jointly`: independent products whose truncations share their rounds are bit for bit the same
/// products run one after another (each local GEMM at the same step), in 2 rounds instead of 2 each, with the same
/// bytes.
#[test]
fn joint_products_are_bit_for_bit_the_separate_ones() {
    use cryptgpu_runtime::RingTensor;
    use rand::Rng;
    let mut rng = StdRng::seed_from_u64(12);
    let mut tensor = |s: &[usize]| {
        let n: usize = s.iter().product();
        RingTensor::new(s, (0..n).map(|_| ((rng.gen::<f64>() - 0.5) * (1u64 << 21) as f64) as i64 as u64).collect())
            .expect("tensor")
    };
    let (a, b, c, d) = (tensor(&[6, 5]), tensor(&[5, 7]), tensor(&[4, 6]), tensor(&[6, 3]));
    let run = |joint: bool| {
        seeded_session(31, TruncationMode::Exact)
            .run(|p| {
                let [xa, xb, xc, xd] = [(&a, 0), (&b, 1), (&c, 2), (&d, 0)]
                    .map(|(t, o)| p.share(o, (p.id() == o).then_some(t), t.shape()).expect("share"));
                let before = p.total_stats();
                let out = if joint {
                    p.matmuls_jointly(&[(&xa, &xb), (&xc, &xd)])?
                } else {
                    vec![p.matmul(&xa, &xb)?, p.matmul(&xc, &xd)?]
                };
                let used = p.total_stats() - before;
                let pieces: Vec<Vec<u64>> = out.iter().flat_map(|s| [s.mine().to_vec(), s.next().to_vec()]).collect();
                Ok((pieces, used))
            })
            .expect("run")
    };
    let (joint, separate) = (run(true), run(false));
    for (j, s) in joint.iter().zip(&separate) {
        assert_eq!(j.0, s.0, "the shares differ");
        assert_eq!((j.1.rounds, j.1.bytes_sent), (s.1.rounds - 2, s.1.bytes_sent));
    }
}
