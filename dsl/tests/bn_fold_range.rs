//! The range analysis of a model whose batch norms the fusion plan folds into the product after them
//! ([`cryptgpu_dsl::fold::bn_input_folds`]): the folded product's values are those of the unfolded batch norm →
//! product chain, so every layer's bounds equal the unfolded report's, and the folded batch norm records what the
//! run stores (its input, unchanged) with no truncation of its own.

use cryptgpu_dsl::fuse::inference_fusions;
use cryptgpu_dsl::range::{self, InputBound, RangeReport};
use cryptgpu_dsl::{BatchNorm2d, Builder, Conv2d, Graph, Layer, Linear, Params, Pool2d, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// `conv → ReLU → bn → conv (no padding) → ReLU → flatten → fc`.
fn bn_conv() -> Graph {
    let mut b = Builder::new();
    b.layer("conv1", Conv2d::new(3, 4, 3).padding(1)).layer("relu1", Layer::Relu).layer("bn", BatchNorm2d::new(4));
    b.layer("conv2", Conv2d::new(4, 6, 3)).layer("relu2", Layer::Relu).layer("flatten", Layer::Flatten);
    b.layer("fc", Linear::new(216, 5));
    b.build("BnConv", &[3, 8, 8]).expect("graph")
}

/// Batch norms folded through fused pools: `… → ReLU → bn1 → dropout → avgpool 2×2 → conv 1×1 → ReLU → bn2 →
/// global pool → flatten → fc` (no biases on the products, so the fold gives them one).
fn bn_pools() -> Graph {
    let mut b = Builder::new();
    b.layer("conv1", Conv2d::new(3, 4, 3).padding(1)).layer("relu1", Layer::Relu).layer("bn1", BatchNorm2d::new(4));
    b.layer("drop", Layer::Dropout { p: 0.5 }).layer("pool", Layer::AvgPool2d(Pool2d::new(2)));
    b.layer("conv2", Conv2d::new(4, 6, 1).bias(false)).layer("relu2", Layer::Relu).layer("bn2", BatchNorm2d::new(6));
    b.layer("gap", Layer::GlobalAvgPool).layer("flatten", Layer::Flatten);
    b.layer("fc", Linear::new(6, 5).bias(false));
    b.build("BnPools", &[3, 8, 8]).expect("graph")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-300)
}

/// Every layer of `folded` has `unfolded`'s bounds, but: each folded batch norm truncates nothing and stores its
/// input; the shape-only layers after it (until the product) carry that input, not the batch norm's output; the
/// product's input is that too, while its pre-truncation value and output are the unfolded ones.
fn assert_same_but_the_folded(folded: &RangeReport, unfolded: &RangeReport, folds: &[(&str, &str)]) {
    assert_eq!(folded.layers.len(), unfolded.layers.len());
    let mut between = None;
    for (f, u) in folded.layers.iter().zip(&unfolded.layers) {
        assert_eq!(f.name, u.name);
        if let Some(&(_, product)) = folds.iter().find(|(bn, _)| *bn == f.name) {
            assert!(f.truncation.is_none(), "{}: a folded batch norm truncates nothing", f.name);
            assert!(u.truncation.is_some(), "{}: unfolded, a product on shares", u.name);
            assert_eq!(f.output, f.input, "{}: the run stores its input", f.name);
            assert!(close(f.input, u.input), "{}: input {} vs {}", f.name, f.input, u.input);
            between = Some(product);
            continue;
        }
        match between {
            Some(product) if product != f.name => {
                assert_eq!(f.truncation.is_some(), u.truncation.is_some(), "{}", f.name);
                continue;
            }
            Some(_) => between = None,
            None => assert!(close(f.input, u.input), "{}: input {} vs {}", f.name, f.input, u.input),
        }
        assert!(close(f.output, u.output), "{}: {f:?} vs {u:?}", f.name);
        // A linear layer adds its bias after the truncation: folded, it truncates `W·scale·x` and adds
        // `b + W·shift` afterwards, so its truncated value is not the unfolded `W·(scale⊙x + shift)`.
        let linear_after_fold = f.kind == "Linear" && folds.iter().any(|(_, p)| *p == f.name);
        match (&f.truncation, &u.truncation) {
            (Some(a), Some(b)) => {
                assert_eq!((a.op, a.elements), (b.op, b.elements), "{}", f.name);
                let same = close(a.max, b.max) && close(a.sum, b.sum);
                assert!(same || linear_after_fold, "{}: {a:?} vs {b:?}", f.name);
            }
            (None, None) => {}
            _ => panic!("{}: truncation in one report only", f.name),
        }
    }
}

#[test]
fn folded_reports_equal_the_unfolded_chain() {
    let seed: u64 = rand::random();
    eprintln!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    for (graph, folds) in [(bn_conv(), vec![("bn", "conv2")]), (bn_pools(), vec![("bn1", "conv2"), ("bn2", "fc")])] {
        let p = Params::random(&graph, &mut rng, 0.5, true);
        let (plan, plain) = (inference_fusions(&graph, true), inference_fusions(&graph, false));
        let mut found: Vec<_> = plan.batch_norms.iter().map(|(p, (bn, _))| (bn.as_str(), p.as_str())).collect();
        found.sort();
        assert_eq!(found, folds, "{}", graph.name());
        assert_eq!(plan.pools, plain.pools, "the same pool fusions");
        let bound = InputBound::Uniform(2.0);
        let iv = |plan| range::intervals_fused(&graph, &p, &bound, true, plan).expect("intervals");
        assert_same_but_the_folded(&iv(&plan), &iv(&plain), &folds);
        let x = Tensor::uniform(&[4, 3, 8, 8], -2.0, 2.0, &mut rng);
        let cal = |plan| range::calibrate_fused(&graph, &p, &x, 1.0, true, plan).expect("calibrate");
        assert_same_but_the_folded(&cal(&plan), &cal(&plain), &folds);
        // The intervals still bound what the folded run computes.
        for (b, m) in iv(&plan).layers.iter().zip(&cal(&plan).layers) {
            assert!(m.output <= b.output * (1.0 + 1e-12), "{}: {} > {}", b.name, m.output, b.output);
            if let (Some(bt), Some(mt)) = (&b.truncation, &m.truncation) {
                assert!(mt.max <= bt.max * (1.0 + 1e-12), "{}: |z| {} > {}", b.name, mt.max, bt.max);
            }
        }
    }
}
