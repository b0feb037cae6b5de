//! Whole-model reference: backward through a small CNN with every layer kind (conv, batch norm in both modes,
//! ReLU, residual block with a projection shortcut, max/avg/global pooling, flatten, dropout, linear) against
//! finite differences of softmax cross-entropy; SGD semantics; a tiny model's loss falls under training.

mod common;

use common::{check_grad, randn, rng};
use cryptgpu_dsl::reference::{backward, forward, infer, softmax_cross_entropy, Mode, Sgd};
use cryptgpu_dsl::{BatchNorm2d, Builder, Conv2d, Graph, Layer, Linear, Params, Pool2d, Tensor};

fn small_cnn() -> Graph {
    let mut b = Builder::new();
    b.layer("conv1", Conv2d::new(2, 4, 3).padding(1)).layer("bn1", BatchNorm2d::new(4)).relu();
    b.residual(
        "block",
        |m| {
            m.layer("conv1", Conv2d::new(4, 4, 3).padding(1).bias(false)).layer("bn1", BatchNorm2d::new(4)).relu();
            m.layer("conv2", Conv2d::new(4, 6, 1).stride(2));
        },
        |s| {
            s.sequential("downsample", |d| {
                d.push(Conv2d::new(4, 6, 1).stride(2).bias(false)).push(BatchNorm2d::new(6));
            });
        },
        |p| {
            p.layer("relu", Layer::Relu);
        },
    );
    b.layer("avg", Layer::AvgPool2d(Pool2d::new(3).stride(1).padding(1)));
    b.layer("max", Layer::MaxPool2d(Pool2d::new(2).stride(1)));
    b.layer("gap", Layer::GlobalAvgPool).flatten().push(Layer::Dropout { p: 0.5 });
    b.layer("fc", Linear::new(6, 3));
    b.build("small", &[2, 6, 6]).unwrap()
}

fn perturbed_params() -> Params {
    let g = small_cnn();
    let mut r = rng(11);
    let mut p = Params::kaiming(&g, &mut r);
    // Make batch-norm affine maps and running statistics non-trivial.
    for spec in g.parameters() {
        let t = p.get_mut(&spec.name).unwrap();
        if spec.name.ends_with("running_var") {
            *t = Tensor::uniform(&spec.shape, 0.5, 1.5, &mut r);
        } else if spec.name.ends_with("bias") || spec.name.ends_with("running_mean") {
            *t = Tensor::randn(&spec.shape, 0.3, &mut r);
        } else if spec.shape.len() == 1 {
            *t = Tensor::uniform(&spec.shape, 0.5, 1.5, &mut r);
        }
    }
    p
}

fn loss_of(g: &Graph, p: &Params, x: &Tensor, labels: &[usize], mode: Mode) -> f64 {
    let mut p = p.clone();
    let (y, _) = forward(g, &mut p, x, mode).unwrap();
    softmax_cross_entropy(&y, labels).unwrap().0
}

#[test]
fn whole_model_backward_matches_finite_differences() {
    let g = small_cnn();
    assert_eq!(g.output_shape(), &[3]);
    let params = perturbed_params();
    let mut r = rng(12);
    let x = randn(&[3, 2, 6, 6], &mut r);
    let labels = [0, 2, 1];
    for mode in [Mode::Train, Mode::Eval] {
        let mut p = params.clone();
        let (y, tape) = forward(&g, &mut p, &x, mode).unwrap();
        assert_eq!(y.shape(), &[3, 3]);
        let (_, dy) = softmax_cross_entropy(&y, &labels).unwrap();
        let (dx, grads) = backward(&g, &params, &tape, &dy).unwrap();
        check_grad(&format!("{mode:?} dx"), &x, &dx, 1, |x| loss_of(&g, &params, x, &labels, mode));
        let trainable: Vec<_> =
            g.parameters().into_iter().filter(|s| s.kind == cryptgpu_dsl::ParamKind::Trainable).collect();
        assert_eq!(grads.len(), trainable.len(), "one gradient per trainable tensor");
        for spec in trainable {
            let grad = grads.get(&spec.name).unwrap();
            let at = params.get(&spec.name).unwrap();
            check_grad(&format!("{mode:?} {}", spec.name), at, grad, 1, |t| {
                let mut q = params.clone();
                q.insert(&spec.name, t.clone());
                loss_of(&g, &q, &x, &labels, mode)
            });
        }
    }
}

#[test]
fn train_mode_updates_running_stats_like_pytorch() {
    let g = small_cnn();
    let mut p = Params::kaiming(&g, &mut rng(13));
    let x = randn(&[4, 2, 6, 6], &mut rng(14));
    // With identity conv weights the bn1 input is the conv output; check the update rule on bn1 directly.
    let before = p.clone();
    forward(&g, &mut p, &x, Mode::Train).unwrap();
    let conv = cryptgpu_dsl::reference::conv2d_forward(
        &x,
        before.get("conv1.weight").unwrap(),
        before.get("conv1.bias").unwrap().into(),
        &Conv2d::new(2, 4, 3).padding(1),
    )
    .unwrap();
    let m = 4.0 * 36.0;
    for c in 0..4 {
        let vals: Vec<f64> =
            (0..4).flat_map(|n| conv.data()[(n * 4 + c) * 36..(n * 4 + c + 1) * 36].to_vec()).collect();
        let mean = vals.iter().sum::<f64>() / m;
        let var_unbiased = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (m - 1.0);
        assert!((p.get("bn1.running_mean").unwrap().data()[c] - 0.1 * mean).abs() < 1e-12);
        assert!((p.get("bn1.running_var").unwrap().data()[c] - (0.9 + 0.1 * var_unbiased)).abs() < 1e-12);
    }
    assert_eq!(p.get("bn1.num_batches_tracked").unwrap().data(), &[1.0]);
    // Eval mode leaves the statistics alone and matches `infer`.
    let mut q = p.clone();
    let (y, _) = forward(&g, &mut q, &x, Mode::Eval).unwrap();
    assert_eq!(q, p);
    assert_eq!(y, infer(&g, &p, &x).unwrap());
}

#[test]
fn sgd_momentum_and_weight_decay_follow_torch() {
    let mut p = Params::new();
    p.insert("w", Tensor::full(&[1], 1.0));
    let mut g = Params::new();
    g.insert("w", Tensor::full(&[1], 0.5));
    let mut sgd = Sgd::new(0.1).with_momentum(0.9).with_weight_decay(0.01);
    sgd.step(&mut p, &g).unwrap();
    assert!((p.get("w").unwrap().data()[0] - 0.949).abs() < 1e-12);
    sgd.step(&mut p, &g).unwrap();
    assert!((p.get("w").unwrap().data()[0] - 0.852151).abs() < 1e-12);
    let mut bad = Params::new();
    bad.insert("v", Tensor::full(&[1], 0.5));
    assert!(sgd.step(&mut p, &bad).unwrap_err().to_string().contains("`v`"));
}

#[test]
fn tiny_model_training_lowers_the_loss() {
    let g = small_cnn();
    let mut p = Params::kaiming(&g, &mut rng(15));
    let mut r = rng(16);
    let x = randn(&[8, 2, 6, 6], &mut r);
    let labels = [0, 1, 2, 0, 1, 2, 0, 1];
    let mut sgd = Sgd::new(0.1).with_momentum(0.9);
    let mut losses = Vec::new();
    for _ in 0..15 {
        let (y, tape) = forward(&g, &mut p, &x, Mode::Train).unwrap();
        let (loss, dy) = softmax_cross_entropy(&y, &labels).unwrap();
        losses.push(loss);
        let (_, grads) = backward(&g, &p, &tape, &dy).unwrap();
        sgd.step(&mut p, &grads).unwrap();
    }
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    assert!(last < 0.5 * first, "loss did not fall enough: {losses:?}");
}

#[test]
fn batch_shape_errors_name_the_model() {
    let g = small_cnn();
    let p = Params::kaiming(&g, &mut rng(17));
    let err = infer(&g, &p, &Tensor::zeros(&[1, 3, 6, 6])).unwrap_err().to_string();
    assert!(err.contains("small input") && err.contains("[N, 2, 6, 6]") && err.contains("[1, 3, 6, 6]"), "{err}");
    let mut q = p.clone();
    q.remove("fc.weight");
    assert!(infer(&g, &q, &Tensor::zeros(&[1, 2, 6, 6])).unwrap_err().to_string().contains("fc.weight"));
    q.insert("fc.weight", Tensor::zeros(&[6, 3]));
    let err = infer(&g, &q, &Tensor::zeros(&[1, 2, 6, 6])).unwrap_err().to_string();
    assert!(err.contains("`fc.weight`") && err.contains("[6, 3]") && err.contains("[3, 6]"), "{err}");
}
