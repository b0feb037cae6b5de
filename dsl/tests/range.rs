//! The range analysis against the f64 reference: interval bounds hold on fresh random inputs within the input
//! bound (property test), the largest safe t is exact on hand-computable models, and calibration measures what the
//! reference computes.

use cryptgpu_dsl::range::{self, InputBound, Method, Rescale, RING_LIMIT};
use cryptgpu_dsl::reference::infer;
use cryptgpu_dsl::{BatchNorm2d, Builder, Conv2d, DslError, Graph, Layer, Linear, Params, Pool2d, Tensor};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Every node kind: padded and strided convs with and without bias, a folded and an unfolded batch norm, ReLU,
/// residual blocks (identity and projection shortcut), padded average (3×3: a non-power-of-two divisor) and max
/// pooling, global average pooling, flatten, dropout, linear.
fn every_kind() -> Graph {
    let mut b = Builder::new();
    b.layer("conv", Conv2d::new(2, 4, 3).padding(1)).layer("bn", BatchNorm2d::new(4)).layer("relu", Layer::Relu);
    b.residual(
        "res",
        |m| {
            m.layer("conv1", Conv2d::new(4, 4, 3).padding(1).bias(false)).layer("bn1", BatchNorm2d::new(4));
        },
        |_| {},
        |p| {
            p.layer("relu", Layer::Relu);
        },
    );
    b.layer("bn_affine", BatchNorm2d::new(4));
    b.residual(
        "down",
        |m| {
            m.layer("conv1", Conv2d::new(4, 6, 3).stride(2).padding(1));
        },
        |s| {
            s.layer("proj", Conv2d::new(4, 6, 1).stride(2).bias(false));
        },
        |_| {},
    );
    b.layer("avg", Layer::AvgPool2d(Pool2d::new(3).stride(1).padding(1)));
    b.layer("max", Layer::MaxPool2d(Pool2d::new(3).stride(1).padding(1)));
    b.layer("pool2", Layer::AvgPool2d(Pool2d::new(2)));
    b.layer("gap", Layer::GlobalAvgPool).layer("flatten", Layer::Flatten).layer("drop", Layer::Dropout { p: 0.5 });
    b.layer("fc", Linear::new(6, 3));
    b.build("EveryKind", &[2, 8, 8]).expect("graph")
}

/// Kaiming weights with random biases and batch-norm statistics (Kaiming leaves those trivial).
fn params(graph: &Graph, rng: &mut StdRng, scale: f64) -> Params {
    let mut p = Params::kaiming(graph, rng);
    for spec in graph.parameters() {
        let (lo, hi) = if spec.name.ends_with(".running_var") {
            (0.3, 2.0)
        } else if spec.shape.len() == 1 && spec.name.ends_with(".weight") {
            (-1.5, 1.5)
        } else if spec.name.ends_with(".bias") || spec.name.ends_with(".running_mean") {
            (-0.5, 0.5)
        } else if spec.name.ends_with(".weight") {
            let t = p.get(&spec.name).expect("weight").clone();
            let data = t.data().iter().map(|v| v * scale).collect();
            p.insert(&spec.name, Tensor::from_vec(t.shape(), data).expect("weight"));
            continue;
        } else {
            continue;
        };
        p.insert(&spec.name, Tensor::uniform(&spec.shape, lo, hi, rng));
    }
    p
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// On fresh inputs within the bound (uniform, and the interval corners ±B that worst cases favour), no
    /// measured magnitude — pre-truncation value, sum of the per-element values, stored output — exceeds the
    /// interval bound, for batch norm folded and not.
    #[test]
    fn interval_bounds_hold_on_random_inputs_within_the_bound(seed in any::<u64>(), bound in 0.01f64..100.0, fold in any::<bool>()) {
        let graph = every_kind();
        let mut rng = StdRng::seed_from_u64(seed);
        let scale = rng.gen_range(0.5..2.0);
        let p = params(&graph, &mut rng, scale);
        let iv = range::intervals(&graph, &p, &InputBound::Uniform(bound), fold).expect("intervals");
        let mut x = Tensor::uniform(&[6, 2, 8, 8], -bound, bound, &mut rng);
        for v in &mut x.data_mut()[2 * 128..] {
            *v = if rng.gen::<bool>() { bound } else { -bound };
        }
        let measured = range::calibrate(&graph, &p, &x, 1.0, fold).expect("calibrate");
        prop_assert_eq!(iv.layers.len(), measured.layers.len());
        let tol = 1.0 + 1e-12;
        for (b, m) in iv.layers.iter().zip(&measured.layers) {
            prop_assert_eq!(&b.name, &m.name);
            prop_assert!(m.output <= b.output * tol, "{}: output {} > bound {}", b.name, m.output, b.output);
            match (&b.truncation, &m.truncation) {
                (Some(bt), Some(mt)) => {
                    prop_assert_eq!(bt.op, mt.op);
                    prop_assert_eq!(bt.elements, mt.elements);
                    prop_assert!(mt.max <= bt.max * tol, "{}: |z| {} > bound {}", b.name, mt.max, bt.max);
                    prop_assert!(mt.sum <= bt.sum * tol, "{}: Σ|z| {} > bound {}", b.name, mt.sum, bt.sum);
                }
                (None, None) => {}
                _ => prop_assert!(false, "{}: truncation recorded in one report only", b.name),
            }
        }
        // The calibration runs the reference's computation: its logits' magnitude is the reference's.
        let logits = infer(&graph, &p, &x).expect("reference");
        let top = logits.data().iter().fold(0.0f64, |a, v| a.max(v.abs()));
        let last = measured.layers.last().expect("layers").output;
        prop_assert!((top - last).abs() <= 1e-9 * top.max(1.0), "reference max |logit| {top} vs measured {last}");
    }
}

#[test]
fn every_node_kind_gets_its_rescale() {
    let graph = every_kind();
    let p = params(&graph, &mut StdRng::seed_from_u64(1), 1.0);
    let r = range::intervals(&graph, &p, &InputBound::Uniform(1.0), true).expect("intervals");
    let op = |name: &str| r.layers.iter().find(|l| l.name == name).expect(name).truncation.as_ref().map(|t| t.op);
    assert_eq!(op("input"), None);
    assert_eq!(op("conv"), Some(Rescale::Product));
    assert_eq!(op("bn"), None, "folded into `conv`");
    assert_eq!(op("bn_affine"), Some(Rescale::Product), "after a residual block: an affine map on shares");
    assert_eq!(op("avg"), Some(Rescale::DivideInt(9)));
    assert_eq!(op("pool2"), Some(Rescale::DividePow2(4)));
    assert_eq!(op("gap"), Some(Rescale::DividePow2(4)), "2×2 spatial positions left");
    assert_eq!(op("fc"), Some(Rescale::Product));
    assert!(r.layers.iter().any(|l| l.name == "res.add" && l.kind == "ResidualAdd"));
    let unfolded = range::intervals(&graph, &p, &InputBound::Uniform(1.0), false).expect("intervals");
    assert_eq!(
        unfolded.layers.iter().find(|l| l.name == "bn").and_then(|l| l.truncation.as_ref()).map(|t| t.op),
        Some(Rescale::Product)
    );
}

fn linear_model(w: [f64; 2]) -> (Graph, Params) {
    let mut b = Builder::new();
    b.layer("fc", Linear::new(2, 1).bias(false));
    let graph = b.build("Tiny", &[2]).expect("graph");
    let mut p = Params::new();
    p.insert("fc.weight", Tensor::from_vec(&[1, 2], w.to_vec()).expect("w"));
    (graph, p)
}

/// `y = 3·x0 − 2·x1`: for |x| ≤ 1000, |z| ≤ 5000 and `5000·2^(2t) < 2^62` exactly up to t = 24; for inputs in
/// `[0, 1000]`, z ∈ [−2000, 3000] and t = 25.
#[test]
fn largest_safe_t_is_exact_on_a_hand_computable_model() {
    let (graph, p) = linear_model([3.0, -2.0]);
    let r = range::intervals(&graph, &p, &InputBound::Uniform(1000.0), true).expect("intervals");
    let fc = &r.layers[1];
    assert_eq!(fc.truncation.as_ref().map(|t| t.max), Some(5000.0));
    assert_eq!(r.largest_safe_t(), Some(24));
    assert!(5000.0 * 2f64.powi(48) < RING_LIMIT && 5000.0 * 2f64.powi(50) >= RING_LIMIT);
    assert!(r.first_unsafe(24).is_none());
    let (layer, bound) = r.first_unsafe(25).expect("unsafe at 25");
    assert_eq!((layer.name.as_str(), bound), ("fc", 5000.0 * 2f64.powi(50)));
    // One element, |z| ≤ 5000·2^40 at t = 20: (5000·2^40 + 1)/2^64 in the probabilistic mode, nothing in exact.
    let p20 = r.failure_probability(20, true, 1);
    assert_eq!(p20, (5000.0 * 2f64.powi(40) + 1.0) / 2f64.powi(64));
    assert_eq!(r.failure_probability(20, true, 3), 3.0 * p20);
    assert_eq!(r.failure_probability(20, false, 1), 0.0);

    let pos = range::intervals(&graph, &p, &InputBound::PerChannel(vec![(0.0, 1000.0); 2]), true).expect("intervals");
    assert_eq!(pos.layers[1].truncation.as_ref().map(|t| t.max), Some(3000.0));
    assert_eq!(pos.largest_safe_t(), Some(25));

    // A bound that reaches 2^62 at every t is refused everywhere.
    let huge = range::intervals(&graph, &p, &InputBound::Uniform(1e18), true).expect("intervals");
    assert_eq!(huge.largest_safe_t(), None);
    assert!(matches!(huge.method, Method::Interval { input_bound } if input_bound == 1e18));
}

/// A convolution with all-one 3×3 weights, bias 0.5 and zero padding on inputs in [0, 1]: z ∈ [0.5, 9.5] —
/// padding adds 0 to the input interval, which [0, 1] already holds; for inputs in [1, 2] it widens the low end
/// to 0, so z ∈ [0.5, 18.5]. A 2×2 average pool then sums four of them.
#[test]
fn convolution_padding_and_pooling_bounds_are_hand_computable() {
    let mut b = Builder::new();
    b.layer("conv", Conv2d::new(1, 1, 3).padding(1)).layer("pool", Layer::AvgPool2d(Pool2d::new(2)));
    let graph = b.build("Conv", &[1, 4, 4]).expect("graph");
    let mut p = Params::new();
    p.insert("conv.weight", Tensor::full(&[1, 1, 3, 3], 1.0));
    p.insert("conv.bias", Tensor::full(&[1], 0.5));
    let r = range::intervals(&graph, &p, &InputBound::PerChannel(vec![(1.0, 2.0)]), true).expect("intervals");
    let conv = r.layers[1].truncation.clone().expect("conv truncates");
    assert_eq!((conv.max, conv.elements, conv.sum), (18.5, 16, 18.5 * 16.0));
    let pool = r.layers[2].truncation.clone().expect("pool divides");
    assert_eq!((pool.op, pool.max, pool.elements), (Rescale::DividePow2(4), 4.0 * 18.5, 4));
    assert_eq!(r.layers[2].output, 18.5);
    // The corner input reaches the bound at the centre: measured = bound.
    let x = Tensor::full(&[1, 1, 4, 4], 2.0);
    let m = range::calibrate(&graph, &p, &x, 1.0, true).expect("calibrate");
    assert_eq!(m.layers[1].truncation.as_ref().map(|t| t.max), Some(18.5));
    let c = range::calibrate(&graph, &p, &x, 4.0, true).expect("calibrate");
    assert_eq!(c.layers[1].truncation.as_ref().map(|t| t.max), Some(74.0));
    assert!(matches!(c.method, Method::Calibrated { samples: 1, margin } if margin == 4.0));
}

#[test]
fn bad_bounds_and_samples_are_clear_errors() {
    let (graph, p) = linear_model([1.0, 1.0]);
    let err = range::intervals(&graph, &p, &InputBound::Uniform(f64::NAN), true).unwrap_err().to_string();
    assert!(err.contains("Tiny input bound"), "{err}");
    let err = range::intervals(&graph, &p, &InputBound::PerChannel(vec![(1.0, 0.0); 2]), true).unwrap_err().to_string();
    assert!(err.contains("lo ≤ hi"), "{err}");
    let x = Tensor::from_vec(&[1, 2], vec![1.0, f64::NAN]).expect("x");
    let err = range::calibrate(&graph, &p, &x, 4.0, true).unwrap_err();
    assert!(matches!(err, DslError::NonFinite { index: 1, value, .. } if value.is_nan()), "{err}");
    assert!(err.to_string().contains("element 1 is NaN"), "{err}");
    for margin in [0.5, f64::NAN, f64::INFINITY] {
        let err = range::calibrate(&graph, &p, &Tensor::zeros(&[1, 2]), margin, true).unwrap_err();
        assert!(matches!(err, DslError::Margin { .. }), "{err}");
    }
    let mut missing = p.clone();
    missing.remove("fc.weight");
    assert!(range::intervals(&graph, &missing, &InputBound::Uniform(1.0), true)
        .unwrap_err()
        .to_string()
        .contains("fc.weight"));
}

/// `with_margin` validates its factor as `calibrate` does: a finite factor ≥ 1, else a `Margin` error.
#[test]
fn with_margin_refuses_what_calibrate_refuses() {
    let (graph, p) = linear_model([1.0, -2.0]);
    let x = Tensor::from_vec(&[1, 2], vec![0.5, 1.0]).expect("x");
    let measured = range::calibrate(&graph, &p, &x, 1.0, true).expect("calibrate");
    for margin in [0.5, 0.0, -4.0, f64::NAN, f64::INFINITY] {
        let err = measured.with_margin(margin).unwrap_err();
        assert!(matches!(err, DslError::Margin { .. }), "margin {margin}: {err}");
        assert!(matches!(range::calibrate(&graph, &p, &x, margin, true), Err(DslError::Margin { .. })));
    }
    let four = measured.with_margin(4.0).expect("margin 4");
    assert_eq!(four, range::calibrate(&graph, &p, &x, 4.0, true).expect("calibrate"));
}

/// A calibration of a huge number of samples is refused before any allocation (overflowing counts included),
/// both through `calibrate_uniform` and `calibration_shape`.
#[test]
fn huge_calibrations_are_errors_not_aborts() {
    let (graph, p) = linear_model([1.0, 1.0]);
    let bound = InputBound::Uniform(1.0);
    for n in [usize::MAX, usize::MAX / 2 + 1, range::MAX_CALIBRATION_ELEMENTS / 2 + 1] {
        let err = range::calibrate_uniform(&graph, &p, &bound, n, 4.0, true, 1).unwrap_err();
        assert!(matches!(&err, DslError::TooLarge { limit, .. } if *limit == range::MAX_CALIBRATION_ELEMENTS), "{err}");
        assert!(err.to_string().contains("calibration samples"), "{err}");
    }
    assert_eq!(range::calibration_shape(&graph, 3).expect("shape"), vec![3, 2]);
    assert!(range::calibrate_uniform(&graph, &p, &bound, 16, 4.0, true, 1).is_ok());
}

proptest! {
    /// The bound a data owner announces is the smallest power of two ≥ max |x| (at least the floor): a power of
    /// two, at least max |x|, less than twice it, and max |x| itself when that is a power of two.
    #[test]
    fn announced_bound_is_the_power_of_two_above_max_abs(mantissa in 1.0f64..2.0, exp in -40i32..60, seed in any::<u64>()) {
        let m = mantissa * 2f64.powi(exp);
        let b = range::power_of_two_above(m);
        prop_assert!(b >= m && b.to_bits() & ((1u64 << 52) - 1) == 0, "{m} → {b}");
        if m > range::MIN_ANNOUNCED_BOUND {
            prop_assert!(b < 2.0 * m, "{m} → {b}");
        } else {
            prop_assert_eq!(b, range::MIN_ANNOUNCED_BOUND);
        }
        prop_assert_eq!(range::power_of_two_above(2f64.powi(exp)), 2f64.powi(exp).max(range::MIN_ANNOUNCED_BOUND));
        // Through a batch: the sign does not matter, the largest magnitude does.
        let mut rng = StdRng::seed_from_u64(seed);
        let mut x = Tensor::uniform(&[2, 3], -m, m, &mut rng);
        x.data_mut()[4] = -m;
        prop_assert_eq!(InputBound::of_batch(&x).expect("finite"), InputBound::Uniform(b));
    }
}

#[test]
fn announced_bound_edge_cases() {
    assert_eq!(range::power_of_two_above(0.0), range::MIN_ANNOUNCED_BOUND);
    assert_eq!(range::power_of_two_above(1.0 + f64::EPSILON), 2.0);
    assert_eq!(range::power_of_two_above(f64::MAX), f64::MAX);
    let x = Tensor::from_vec(&[1, 2], vec![f64::NEG_INFINITY, 1.0]).expect("x");
    assert!(matches!(InputBound::of_batch(&x), Err(DslError::NonFinite { index: 0, .. })));
}
