//! A batch norm folded into the convolution or linear layer after it (inference, [`Fusion::On`]): models built with
//! the DSL builder — after a ReLU into a convolution without padding, into a linear layer through a flatten, through
//! fused average pools and a dropout — and one whose convolution after the batch norm pads (not folded, still
//! right). The checks (costs, reference, unfused runs within the stated bound, range report) are in
//! `common/bn_fold.rs`, shared with the `secure_model!` declarations of `tests/bn_fold_macro.rs`.

use cryptgpu_dsl::{BatchNorm2d, Builder, Conv2d, Graph, Layer, Linear, Params, Pool2d, Tensor};
use cryptgpu_runtime::executor::{Executor, Roles};
use cryptgpu_runtime::{Config, Error, Session};

#[path = "common/bn_fold.rs"]
mod bn_fold;
use bn_fold::check_folding;

/// `conv → ReLU → bn → conv` whose second convolution has `padding`, then `ReLU → flatten → fc`.
fn bn_conv(padding: usize) -> Graph {
    let mut b = Builder::new();
    b.layer("conv1", Conv2d::new(3, 4, 3).padding(1)).layer("relu1", Layer::Relu).layer("bn", BatchNorm2d::new(4));
    b.layer("conv2", Conv2d::new(4, 6, 3).padding(padding)).layer("relu2", Layer::Relu);
    let side = 8 - 2 + 2 * padding;
    b.layer("flatten", Layer::Flatten).layer("fc", Linear::new(6 * side * side, 5));
    b.build(if padding == 0 { "BnConv" } else { "BnPaddedConv" }, &[3, 8, 8]).expect("graph")
}

/// `conv → ReLU → bn → flatten → fc` (no bias: the fold gives it one).
fn bn_linear() -> Graph {
    let mut b = Builder::new();
    b.layer("conv1", Conv2d::new(3, 4, 3).padding(1)).layer("relu1", Layer::Relu).layer("bn", BatchNorm2d::new(4));
    b.layer("flatten", Layer::Flatten).layer("fc", Linear::new(256, 5).bias(false));
    b.build("BnLinear", &[3, 8, 8]).expect("graph")
}

/// Through fused pools: `… ReLU → bn1 → dropout → avgpool 2×2 → conv 1×1 → ReLU → bn2 → global pool (4×4) →
/// flatten → fc`; the pools' divisions fold into the products too.
fn bn_pools() -> Graph {
    let mut b = Builder::new();
    b.layer("conv1", Conv2d::new(3, 4, 3).padding(1)).layer("relu1", Layer::Relu).layer("bn1", BatchNorm2d::new(4));
    b.layer("drop", Layer::Dropout { p: 0.5 }).layer("pool", Layer::AvgPool2d(Pool2d::new(2)));
    b.layer("conv2", Conv2d::new(4, 6, 1).bias(false)).layer("relu2", Layer::Relu).layer("bn2", BatchNorm2d::new(6));
    b.layer("gap", Layer::GlobalAvgPool).layer("flatten", Layer::Flatten).layer("fc", Linear::new(6, 5));
    b.build("BnPools", &[3, 8, 8]).expect("graph")
}

#[test]
fn batch_norm_after_relu_folds_into_an_unpadded_convolution() {
    check_folding(&bn_conv(0), &[("bn", "conv2")], &[]);
}

#[test]
fn batch_norm_folds_through_a_flatten_into_a_linear_layer() {
    check_folding(&bn_linear(), &[("bn", "fc")], &[]);
}

#[test]
fn batch_norm_before_a_padded_convolution_is_not_folded() {
    check_folding(&bn_conv(1), &[], &["bn"]);
}

#[test]
fn batch_norms_fold_through_fused_pools_and_dropout() {
    check_folding(&bn_pools(), &[("bn1", "conv2"), ("bn2", "fc")], &[]);
}

/// A batch norm whose statistics do not have its channels: the model owner's run stops with an error naming the
/// tensor, before anything is shared.
#[test]
fn mis_shaped_batch_norm_statistics_are_an_error() {
    let graph = bn_linear();
    let mut rng = rand::SeedableRng::seed_from_u64(3);
    let mut params: Params = bn_fold::random_params(&graph, &mut rng);
    params.insert("bn.running_mean", Tensor::full(&[3], 0.0));
    let x = Tensor::full(&[1, 3, 8, 8], 0.5);
    let session = Session::new(Config::default()).expect("session");
    let exec = Executor::new(graph, Roles::default()).expect("executor");
    let err = exec.infer(&session, &params, &x).expect_err("mis-shaped running mean");
    assert!(matches!(err, Error::Model { .. }), "{err:?}");
    assert!(err.to_string().contains("bn.running_mean"), "{err}");
}
