//! Private training against the f64 reference: per-parameter gradients of small CNNs, SGD with momentum and weight
//! decay, and a tiny model whose loss falls.

use cryptgpu_dsl::reference::{backward, forward, infer, softmax_cross_entropy, Mode, Sgd};
use cryptgpu_dsl::{BatchNorm2d, Builder, Conv2d, Graph, Layer, Linear, Params, Pool2d, Tensor};
use cryptgpu_runtime::executor::Roles;
use cryptgpu_runtime::protocols::softmax::softmax_error_bound;
use cryptgpu_runtime::training::{TrainConfig, Trainer};
use cryptgpu_runtime::{Config, Session};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

mod common;
use common::{every_layer_cnn, CnnWidths};

/// Tolerance of a private gradient tensor whose largest reference entry is `scale`. The private softmax errs by at
/// most `ε = softmax_error_bound(classes, 8, 20)` per probability (2.6·10⁻³ for 3 classes); a parameter's gradient
/// is `Σ_n Σ_k (∂logit_nk/∂θ)·(p_nk − y_nk)/B`, so its error is at most `ε·max_n Σ_k |∂logit_nk/∂θ|`, which is below
/// `2·max(1, scale)` for the small models here (measured worst over 15 runs of every test: 0.55·ε·max(1, scale)).
/// Truncation ulps are three orders of magnitude smaller.
fn grad_tol(classes: usize, scale: f64) -> f64 {
    2.0 * softmax_error_bound(classes, 8, 20) * scale.max(1.0)
}

fn session() -> Session {
    Session::new(Config::default()).expect("session")
}

fn batch(graph: &Graph, n: usize, rng: &mut StdRng) -> (Tensor, Vec<usize>) {
    batch_with_std(graph, n, 1.0, rng)
}

fn batch_with_std(graph: &Graph, n: usize, std: f64, rng: &mut StdRng) -> (Tensor, Vec<usize>) {
    let mut shape = vec![n];
    shape.extend_from_slice(graph.input_shape());
    let classes = graph.output_shape()[0];
    (Tensor::randn(&shape, std, rng), (0..n).map(|_| rng.gen_range(0..classes)).collect())
}

/// Kaiming weights and small random biases.
fn init(graph: &Graph, rng: &mut StdRng) -> Params {
    let mut params = Params::kaiming(graph, rng);
    for spec in graph.parameters() {
        if spec.name.ends_with(".bias") {
            params.insert(&spec.name, Tensor::uniform(&spec.shape, -0.2, 0.2, rng));
        }
    }
    params
}

/// Reference gradients of the mean softmax cross-entropy.
fn reference_grads(graph: &Graph, params: &Params, x: &Tensor, labels: &[usize]) -> (f64, Params) {
    let mut p = params.clone();
    let (logits, tape) = forward(graph, &mut p, x, Mode::Train).expect("reference forward");
    let (loss, dy) = softmax_cross_entropy(&logits, labels).expect("loss");
    (loss, backward(graph, &p, &tape, &dy).expect("reference backward").1)
}

/// Tolerance of the privately computed mean loss `−(1/B) Σ_n ln p_n`: a probability off by at most `ε` (the softmax
/// bound) moves `ln p_n` by about `ε/p_n`; twice that, averaged, plus the logarithm's own error (10⁻³).
fn loss_tol(graph: &Graph, params: &Params, x: &Tensor, labels: &[usize]) -> f64 {
    let logits = infer(graph, params, x).expect("infer");
    let k = logits.shape()[1];
    let eps = softmax_error_bound(k, 8, 20);
    let mut sum = 0.0;
    for (row, &label) in logits.data().chunks(k).zip(labels) {
        let max = row.iter().copied().fold(f64::MIN, f64::max);
        let z: f64 = row.iter().map(|v| (v - max).exp()).sum();
        sum += 2.0 * eps * z / (row[label] - max).exp();
    }
    sum / labels.len() as f64 + 1e-3
}

fn plain_loss(graph: &Graph, params: &Params, x: &Tensor, labels: &[usize]) -> f64 {
    softmax_cross_entropy(&infer(graph, params, x).expect("infer"), labels).expect("loss").0
}

/// Private gradients of one batch, revealed (for the test only) and compared with the reference.
fn check_gradients(graph: Graph, n: usize, seed: u64) {
    check_gradients_with_std(graph, n, 1.0, seed)
}

/// [`check_gradients`] with inputs of standard deviation `std`; tolerance [`grad_tol`].
fn check_gradients_with_std(graph: Graph, n: usize, std: f64, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let graph_classes = graph.output_shape()[0];
    let params = init(&graph, &mut rng);
    let (x, labels) = batch_with_std(&graph, n, std, &mut rng);
    let (ref_loss, expected) = reference_grads(&graph, &params, &x, &labels);
    let loss_tol = loss_tol(&graph, &params, &x, &labels);
    let roles = Roles::default();
    let trainer = Trainer::new(graph, roles, TrainConfig::new(0.1).with_loss_to(0)).expect("trainer");
    let runs = session()
        .run(|p| {
            let state = trainer.share_params(p, (p.id() == roles.model_owner).then_some(&params))?;
            let data = (p.id() == roles.data_owner).then_some((&x, labels.as_slice()));
            let mut steps = Vec::new();
            let (grads, loss) = trainer.gradients_party(p, &state, data, n, &mut steps)?;
            let mut revealed = Vec::new();
            for key in grads.keys().map(str::to_string).collect::<Vec<_>>() {
                let t = p.reveal_fixed(&grads.get(&key).expect("key"))?;
                revealed.push((key, t.shape().to_vec(), t.data().to_vec()));
            }
            Ok((revealed, loss))
        })
        .expect("private gradients");
    let (revealed, loss) = &runs[0];
    let loss = loss.expect("party 0 receives the loss");
    eprintln!("loss: private {loss:.4}, reference {ref_loss:.4}");
    assert!(
        (loss - ref_loss).abs() < loss_tol,
        "private loss {loss} vs reference {ref_loss} (tolerance {loss_tol:.3e})"
    );
    assert_eq!(revealed.len(), expected.len());
    for (key, shape, data) in revealed {
        let want = expected.require(key).expect("reference gradient");
        assert_eq!(shape.as_slice(), want.shape(), "{key}");
        let diff = data.iter().zip(want.data()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        let scale = want.data().iter().fold(0.0f64, |m, v| m.max(v.abs()));
        eprintln!("{key}: max |private − reference| = {diff:.2e} (max |grad| {scale:.2e})");
        let tol = grad_tol(graph_classes, scale);
        assert!(diff < tol, "{key} (seed {seed}): max abs difference {diff} ≥ {tol}");
    }
}

/// (a) conv → relu → conv (stride 2, padding 1) → relu → avgpool → flatten → linear: every conv backward path
/// (dW, db, and dX through col2im with stride 2 and padding).
#[test]
fn cnn_gradients_match_reference() {
    let mut b = Builder::new();
    b.layer("conv1", Conv2d::new(1, 2, 3).padding(1)).layer("relu1", Layer::Relu);
    b.layer("conv2", Conv2d::new(2, 3, 3).stride(2).padding(1)).layer("relu2", Layer::Relu);
    b.layer("pool", Layer::AvgPool2d(Pool2d::new(2))).layer("flatten", Layer::Flatten);
    b.layer("fc", Linear::new(12, 3));
    check_gradients(b.build("TinyCNN", &[1, 8, 8]).expect("graph"), 2, 7);
}

/// (a') max pooling, global average pooling and a bias-free linear layer.
#[test]
fn maxpool_cnn_gradients_match_reference() {
    let mut b = Builder::new();
    b.layer("conv1", Conv2d::new(2, 3, 3)).layer("relu1", Layer::Relu);
    b.layer("pool", Layer::MaxPool2d(Pool2d::new(2))).layer("gap", Layer::GlobalAvgPool);
    b.layer("flatten", Layer::Flatten).layer("fc", Linear::new(3, 3).bias(false));
    check_gradients(b.build("MaxPoolCNN", &[2, 6, 6]).expect("graph"), 3, 11);
}

/// (a'') batch norm with batch statistics (private mean, variance and 1/√(var + eps)) and its backward, inside
/// residual blocks, with every other layer kind: the whole small model's gradients match the reference.
#[test]
fn batchnorm_residual_cnn_gradients_match_reference() {
    check_gradients(
        every_layer_cnn(CnnWidths { input: 2, first: 4, second: 6, hidden: 8, classes: 3 }),
        4,
        rand::random(),
    );
}

/// (a''') one private step updates the batch-norm running statistics as PyTorch does (momentum 0.1, unbiased
/// variance) and counts the batch; only the model owner learns them.
#[test]
fn batchnorm_running_statistics_match_reference() {
    let graph = every_layer_cnn(CnnWidths { input: 2, first: 4, second: 6, hidden: 8, classes: 3 });
    let mut rng = StdRng::seed_from_u64(rand::random());
    let params = init(&graph, &mut rng);
    let (x, labels) = batch(&graph, 3, &mut rng);
    let mut expected = params.clone();
    forward(&graph, &mut expected, &x, Mode::Train).expect("reference forward");
    let trainer = Trainer::new(graph, Roles::default(), TrainConfig::new(0.0)).expect("trainer");
    let run = trainer.train(&session(), &params, &[(x, labels)]).expect("training");
    let trained = run.params[Roles::default().model_owner].as_ref().expect("model owner");
    let mut checked = 0;
    for (name, want) in expected.iter().filter(|(n, _)| n.contains("running_") || n.contains("num_batches")) {
        let got = trained.require(name).expect("revealed running statistic");
        let diff = got.max_abs_diff(want);
        eprintln!("{name}: max |private − reference| = {diff:.2e}");
        assert!(diff < 1e-3, "{name}: {diff}");
        checked += 1;
    }
    assert_eq!(checked, 4 * 3, "four batch-norm layers, three statistics each");
}

fn mlp() -> Graph {
    let mut b = Builder::new();
    b.layer("fc1", Linear::new(4, 8)).layer("relu", Layer::Relu).layer("fc2", Linear::new(8, 3));
    b.build("MLP", &[4]).expect("graph")
}

/// (b) a few private steps on a tiny batch lower the plaintext loss; the privately computed loss follows it (within
/// 2·10⁻², the softmax approximation error seen through the logarithm).
#[test]
fn private_training_lowers_the_loss() {
    let graph = mlp();
    let mut rng = StdRng::seed_from_u64(3);
    let params = init(&graph, &mut rng);
    let (x, labels) = batch(&graph, 8, &mut rng);
    let before = plain_loss(&graph, &params, &x, &labels);
    let roles = Roles::default();
    let trainer = Trainer::new(graph.clone(), roles, TrainConfig::new(0.5).with_loss_to(0)).expect("trainer");
    let batches = vec![(x.clone(), labels.clone()); 5];
    let run = trainer.train(&session(), &params, &batches).expect("training");
    assert!(run.params[1].is_none() && run.params[2].is_none(), "only the model owner learns the weights");
    let trained = run.params[roles.model_owner].as_ref().expect("model owner");
    let after = plain_loss(&graph, trained, &x, &labels);
    let losses: Vec<f64> = run.steps.iter().map(|s| s.loss.expect("loss reported")).collect();
    for s in &run.steps {
        eprintln!("loss {:.4}: {} rounds, {} bytes, {:?}", s.loss.unwrap_or(f64::NAN), s.rounds(), s.bytes(), s.wall);
    }
    eprintln!("plaintext loss {before:.4} → {after:.4}");
    assert!(after < before - 0.05, "loss did not fall: {before} → {after}");
    assert!((losses[0] - before).abs() < 2e-2, "first private loss {} vs plaintext {before}", losses[0]);
    assert!(losses.last().expect("steps") < &losses[0]);
    assert!(run.steps.iter().all(|s| s.rounds() > 0 && s.bytes() > 0));
}

/// (c) SGD with momentum and weight decay: three private steps on different batches match the reference
/// optimiser from the same initialisation.
#[test]
fn sgd_momentum_matches_reference() {
    let graph = mlp();
    let mut rng = StdRng::seed_from_u64(5);
    let params = init(&graph, &mut rng);
    let batches: Vec<_> = (0..3).map(|_| batch(&graph, 4, &mut rng)).collect();
    let (lr, mu, wd) = (0.2, 0.9, 0.01);
    let mut expected = params.clone();
    let mut sgd = Sgd::new(lr).with_momentum(mu).with_weight_decay(wd);
    for (x, labels) in &batches {
        let (_, grads) = reference_grads(&graph, &expected, x, labels);
        sgd.step(&mut expected, &grads).expect("reference step");
    }
    let config = TrainConfig::new(lr).with_momentum(mu).with_weight_decay(wd);
    let trainer = Trainer::new(graph, Roles::default(), config).expect("trainer");
    let run = trainer.train(&session(), &params, &batches).expect("training");
    let trained = run.params[0].as_ref().expect("model owner");
    for (name, want) in expected.iter() {
        let got = trained.require(name).expect("trained tensor");
        let diff = got.max_abs_diff(want);
        eprintln!("{name}: max |private − reference| = {diff:.2e}");
        assert!(diff < 5e-3, "{name}: {diff}");
    }
}

/// Every layer kind on its own, between a 1×1 convolution (whose gradients depend on the layer's input gradient,
/// i.e. its private backward) and a linear layer (whose gradients depend on its forward): each private gradient
/// matches the reference.
#[test]
fn each_layer_alone_forward_and_backward_match_reference() {
    type Layers = fn(&mut Builder);
    let cases: [(&str, Layers, usize); 9] = [
        (
            "Conv2d",
            |b| {
                b.layer("l", Conv2d::new(3, 3, 3).stride(2).padding(1));
            },
            3 * 3 * 3,
        ),
        // Batch norm restores unit-scale activations whatever the input scale; a 3×3 average keeps the logits O(1)
        // (the private softmax's error, not under test here, grows with them).
        (
            "BatchNorm2d",
            |b| {
                b.layer("l", BatchNorm2d::new(3)).layer("shrink", Layer::AvgPool2d(Pool2d::new(3)));
            },
            3 * 2 * 2,
        ),
        (
            "ReLU",
            |b| {
                b.layer("l", Layer::Relu);
            },
            3 * 6 * 6,
        ),
        (
            "AvgPool2d",
            |b| {
                b.layer("l", Layer::AvgPool2d(Pool2d::new(2)));
            },
            3 * 3 * 3,
        ),
        (
            "MaxPool2d",
            |b| {
                b.layer("l", Layer::MaxPool2d(Pool2d::new(3).stride(2).padding(1)));
            },
            3 * 3 * 3,
        ),
        (
            "GlobalAvgPool",
            |b| {
                b.layer("l", Layer::GlobalAvgPool);
            },
            3,
        ),
        (
            "Dropout",
            |b| {
                b.layer("l", Layer::Dropout { p: 0.5 });
            },
            3 * 6 * 6,
        ),
        (
            "Residual",
            |b| {
                b.residual(
                    "l",
                    |m| {
                        m.layer("conv", Conv2d::new(3, 3, 3).padding(1));
                    },
                    |_| {},
                    |_| {},
                );
            },
            3 * 6 * 6,
        ),
        (
            "Linear",
            |b| {
                b.layer("l0", Layer::Flatten).layer("l", Linear::new(3 * 6 * 6, 5));
            },
            5,
        ),
    ];
    for (kind, layer, features) in cases {
        let mut b = Builder::new();
        b.layer("pre", Conv2d::new(2, 3, 1));
        layer(&mut b);
        b.layer("flatten", Layer::Flatten).layer("fc", Linear::new(features, 3));
        eprintln!("== {kind}");
        check_gradients_with_std(b.build(kind, &[2, 6, 6]).expect("graph"), 3, 0.2, rand::random());
    }
}

/// A training ReLU right after a convolution reads the sign over the `62 − t` bits that the convolution's exact
/// truncation already bounds (`|z| < 2^62` before it; 11 digits at t = 20), and after a linear layer (whose bias is
/// added after the truncation) over the full range: each ReLU step sends exactly the declared bytes for its bits
/// (unfused, so that the ReLU's first message stays in its own step), and the gradients still match the reference.
#[test]
fn training_relu_after_a_conv_reads_the_truncations_bound() {
    use cryptgpu_runtime::protocols::{cost, SignBits};
    use cryptgpu_runtime::Fusion;
    let mut b = Builder::new();
    b.layer("conv", Conv2d::new(1, 2, 3)).layer("relu1", Layer::Relu).layer("flatten", Layer::Flatten);
    b.layer("fc1", Linear::new(2 * 4 * 4, 5)).layer("relu2", Layer::Relu).layer("fc2", Linear::new(5, 3));
    let graph = b.build("ConvLinear", &[1, 6, 6]).expect("graph");
    let mut rng = StdRng::seed_from_u64(rand::random());
    let params = init(&graph, &mut rng);
    let (x, labels) = batch(&graph, 3, &mut rng);
    let roles = Roles::default();
    let trainer = Trainer::new(graph, roles, TrainConfig::new(0.1).with_fusion(Fusion::Off)).expect("trainer");
    let runs = session()
        .run(|p| {
            let state = trainer.share_params(p, (p.id() == roles.model_owner).then_some(&params))?;
            let data = (p.id() == roles.data_owner).then_some((&x, labels.as_slice()));
            let mut steps = Vec::new();
            trainer.gradients_party(p, &state, data, 3, &mut steps)?;
            Ok(steps)
        })
        .expect("private step");
    let sent = |layer: &str| -> u64 {
        runs.iter().flat_map(|s| s.iter().filter(|s| s.name == layer)).map(|s| s.stats.bytes_sent).sum()
    };
    let t = Config::default().frac_bits;
    let bounded = SignBits::for_bound(62 - t).expect("bits");
    assert_eq!(bounded.digits(), 11);
    assert_eq!(sent("relu1"), cost::relu_bytes(3 * 2 * 4 * 4, bounded).iter().sum::<u64>());
    assert_eq!(sent("relu2"), cost::relu_bytes(3 * 5, SignBits::default()).iter().sum::<u64>());
    assert!(sent("relu1") < cost::relu_bytes(3 * 2 * 4 * 4, SignBits::default()).iter().sum::<u64>());
}
