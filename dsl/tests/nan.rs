//! NaN propagates through the plaintext reference like PyTorch: a NaN input element gives NaN in exactly the
//! outputs it reaches, in every layer kind and through a whole model, so a comparison against the reference
//! cannot pass on garbage. Which outputs a position reaches is computed independently: the same layer on an
//! indicator input (1 at the position, 0 elsewhere) with positive weights is non-zero exactly there.

mod common;

use common::rng;
use cryptgpu_dsl::reference::{self as r, Mode};
use cryptgpu_dsl::{BatchNorm2d, Builder, Conv2d, Graph, Layer, Linear, Params, Pool2d, Tensor};
use proptest::prelude::*;

/// A random finite tensor with NaN at flat index `at`.
fn with_nan(shape: &[usize], at: usize, seed: u64) -> Tensor {
    let mut x = Tensor::randn(shape, 1.0, &mut rng(seed));
    x.data_mut()[at] = f64::NAN;
    x
}

/// 1 at flat index `at`, 0 elsewhere.
fn indicator(shape: &[usize], at: usize) -> Tensor {
    let mut x = Tensor::zeros(shape);
    x.data_mut()[at] = 1.0;
    x
}

/// Asserts that `y` is NaN exactly where `reach` is non-zero and finite elsewhere (a strided window may skip the
/// position; then every output is finite).
fn assert_nan_exactly_where(what: &str, y: &Tensor, reach: &Tensor) {
    assert_eq!(y.shape(), reach.shape(), "{what}");
    for (i, (&v, &m)) in y.data().iter().zip(reach.data()).enumerate() {
        assert_eq!(v.is_nan(), m != 0.0, "{what}: output {i} is {v}, reached: {}", m != 0.0);
        assert!(v.is_nan() || v.is_finite(), "{what}: output {i} is {v}");
    }
}

/// Random `(n, c, h, w, kernel, stride, padding)`; the window always fits.
fn window() -> impl Strategy<Value = (usize, usize, usize, usize, usize, usize, usize)> {
    (1usize..3, 1usize..4, 3usize..7, 3usize..7, 1usize..4, 1usize..3, 0usize..2)
        .prop_filter("padding below kernel", |&(_, _, _, _, k, _, p)| p < k)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn conv_and_pooling_give_nan_exactly_in_the_windows_that_read_it(
        (n, c, h, w, k, s, p) in window(), o in 1usize..4, pick in any::<prop::sample::Index>(), seed in 0u64..1000,
    ) {
        let shape = [n, c, h, w];
        let at = pick.index(n * c * h * w);
        let x = with_nan(&shape, at, seed);
        let conv = Conv2d::new(c, o, k).stride(s).padding(p);
        let wt = Tensor::randn(&[o, c, k, k], 1.0, &mut rng(seed + 1));
        let b = Tensor::randn(&[o], 1.0, &mut rng(seed + 2));
        let reach = r::conv2d_forward(&indicator(&shape, at), &Tensor::full(&[o, c, k, k], 1.0), None, &conv).unwrap();
        assert_nan_exactly_where("conv2d", &r::conv2d_forward(&x, &wt, Some(&b), &conv).unwrap(), &reach);

        let pool = Pool2d::new(k).stride(s).padding(p);
        let reach = r::avg_pool2d_forward(&indicator(&shape, at), &pool).unwrap();
        assert_nan_exactly_where("avg_pool2d", &r::avg_pool2d_forward(&x, &pool).unwrap(), &reach);
        let (y, argmax) = r::max_pool2d_forward(&x, &pool).unwrap();
        assert_nan_exactly_where("max_pool2d", &y, &reach);
        for (o, &i) in argmax.iter().enumerate() {
            prop_assert_eq!(i == at, reach.data()[o] != 0.0, "max_pool2d argmax {} of output {}", i, o);
        }

        let reach = r::global_avg_pool_forward(&indicator(&shape, at)).unwrap();
        assert_nan_exactly_where("global_avg_pool", &r::global_avg_pool_forward(&x).unwrap(), &reach);
    }

    #[test]
    fn elementwise_layers_and_batch_norm_keep_nan_in_place(
        n in 1usize..3, c in 1usize..4, h in 1usize..4, w in 1usize..4, pick in any::<prop::sample::Index>(),
        seed in 0u64..1000,
    ) {
        let shape = [n, c, h, w];
        let at = pick.index(n * c * h * w);
        let x = with_nan(&shape, at, seed);
        let only = indicator(&shape, at);
        assert_nan_exactly_where("relu", &r::relu_forward(&x), &only);
        let dy = Tensor::randn(&shape, 1.0, &mut rng(seed + 1));
        assert_nan_exactly_where("relu backward", &r::relu_backward(&x, &dy).unwrap(), &only);

        let mut rr = rng(seed + 2);
        let (gamma, beta) = (Tensor::uniform(&[c], 0.5, 1.5, &mut rr), Tensor::uniform(&[c], -0.5, 0.5, &mut rr));
        let (mean, var) = (Tensor::uniform(&[c], -0.5, 0.5, &mut rr), Tensor::uniform(&[c], 0.5, 2.0, &mut rr));
        let y = r::batch_norm2d_forward_eval(&x, &gamma, &beta, &mean, &var, 1e-5).unwrap();
        assert_nan_exactly_where("batch_norm2d (running statistics)", &y, &only);
        // With batch statistics the NaN enters its channel's mean: the whole channel, every sample.
        let channel = (at / (h * w)) % c;
        let mut whole_channel = Tensor::zeros(&shape);
        for (i, v) in whole_channel.data_mut().iter_mut().enumerate() {
            *v = f64::from((i / (h * w)) % c == channel);
        }
        let (y, _) = r::batch_norm2d_forward_train(&x, &gamma, &beta, 1e-5).unwrap();
        assert_nan_exactly_where("batch_norm2d (batch statistics)", &y, &whole_channel);
    }

    #[test]
    fn linear_and_softmax_cross_entropy_give_nan_in_the_sample_that_has_it(
        n in 1usize..4, k in 1usize..6, o in 2usize..5, pick in any::<prop::sample::Index>(), seed in 0u64..1000,
    ) {
        let at = pick.index(n * k);
        let x = with_nan(&[n, k], at, seed);
        let wt = Tensor::randn(&[o, k], 1.0, &mut rng(seed + 1));
        let reach = r::linear_forward(&indicator(&[n, k], at), &Tensor::full(&[o, k], 1.0), None).unwrap();
        assert_nan_exactly_where("linear", &r::linear_forward(&x, &wt, None).unwrap(), &reach);

        let logits = with_nan(&[n, o], pick.index(n * o), seed + 2);
        let row = pick.index(n * o) / o;
        let labels: Vec<usize> = (0..n).map(|i| i % o).collect();
        let (loss, grad) = r::softmax_cross_entropy(&logits, &labels).unwrap();
        prop_assert!(loss.is_nan(), "loss {}", loss);
        let mut rows = Tensor::zeros(&[n, o]);
        rows.data_mut()[row * o..(row + 1) * o].iter_mut().for_each(|v| *v = 1.0);
        assert_nan_exactly_where("softmax_cross_entropy gradient", &grad, &rows);
    }

    #[test]
    fn a_nan_pixel_makes_its_own_sample_logits_nan_through_a_whole_model(
        n in 1usize..4, pick in any::<prop::sample::Index>(), seed in 0u64..1000,
    ) {
        let g = nan_model();
        let p = model_params(&g, seed);
        let shape = [n, 2, 6, 6];
        let at = pick.index(n * 72);
        let x = with_nan(&shape, at, seed + 3);
        let sample = at / 72;
        let mut rows = Tensor::zeros(&[n, 3]);
        rows.data_mut()[sample * 3..(sample + 1) * 3].iter_mut().for_each(|v| *v = 1.0);
        assert_nan_exactly_where("model (inference)", &r::infer(&g, &p, &x).unwrap(), &rows);
        let mut q = p.clone();
        let (y, _) = r::forward(&g, &mut q, &x, Mode::Train).unwrap();
        prop_assert!(y.data()[sample * 3..(sample + 1) * 3].iter().all(|v| v.is_nan()));
    }
}

/// Every layer kind on a 2×6×6 input, with windows that read every position (so a NaN reaches the logits).
fn nan_model() -> Graph {
    let mut b = Builder::new();
    b.layer("conv1", Conv2d::new(2, 4, 3).padding(1))
        .layer("bn1", BatchNorm2d::new(4))
        .relu()
        .layer("pool1", Layer::MaxPool2d(Pool2d::new(2).stride(2)))
        .residual(
            "block",
            |m| {
                m.layer("conv", Conv2d::new(4, 4, 3).padding(1).bias(false)).relu();
            },
            |_| {},
            |p| {
                p.relu();
            },
        )
        .layer("pool2", Layer::AvgPool2d(Pool2d::new(3)))
        .layer("gap", Layer::GlobalAvgPool)
        .flatten()
        .layer("drop", Layer::Dropout { p: 0.5 })
        .layer("fc", Linear::new(4, 3));
    b.build("nan", &[2, 6, 6]).unwrap()
}

fn model_params(g: &Graph, seed: u64) -> Params {
    let mut p = Params::kaiming(g, &mut rng(seed));
    let mut rr = rng(seed + 1);
    p.insert("bn1.running_mean", Tensor::uniform(&[4], -0.3, 0.3, &mut rr));
    p.insert("bn1.running_var", Tensor::uniform(&[4], 0.5, 2.0, &mut rr));
    p
}

#[test]
fn comparisons_against_the_reference_fail_on_nan() {
    let a = Tensor::from_vec(&[3], vec![1.0, f64::NAN, 2.0]).unwrap();
    let b = Tensor::from_vec(&[3], vec![1.0, 5.0, 2.0]).unwrap();
    assert!(a.max_abs_diff(&b).is_nan() && b.max_abs_diff(&a).is_nan() && a.max_abs_diff(&a).is_nan());
    assert_eq!(b.max_abs_diff(&b), 0.0);
    let within = |d: f64| d < 1e-3;
    assert!(!within(a.max_abs_diff(&b)), "a tolerance check must fail on NaN");
}
