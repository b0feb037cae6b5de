//! A batch norm folded into the product after it, on models declared with `secure_model!` (the same models as the
//! builder-built ones of `runtime/tests/bn_fold.rs`, whose checks this file shares): after a ReLU into a
//! convolution without padding, through a flatten into a linear layer without bias, and before a padded convolution
//! (not folded, still right).

#[path = "../runtime/tests/common/bn_fold.rs"]
mod bn_fold;
use bn_fold::check_folding;

cryptgpu::secure_model! {
    /// `conv → ReLU → bn → conv (no padding) → ReLU → flatten → fc`.
    struct BnConv(input = [3, 8, 8]) {
        conv1: Conv2d(3 => 4, kernel = 3, padding = 1), relu1: Relu, bn: BatchNorm2d(4),
        conv2: Conv2d(4 => 6, kernel = 3), relu2: Relu,
        flatten: Flatten, fc: Linear(216 => 5),
    }

    /// `conv → ReLU → bn → flatten → fc` (no bias: the fold gives it one).
    struct BnLinear(input = [3, 8, 8]) {
        conv1: Conv2d(3 => 4, kernel = 3, padding = 1), relu1: Relu, bn: BatchNorm2d(4),
        flatten: Flatten, fc: Linear(256 => 5, bias = false),
    }

    /// `conv → ReLU → bn → conv (padding 1) → …`: a border window would see 0 where the unfolded run has the shift.
    struct BnPaddedConv(input = [3, 8, 8]) {
        conv1: Conv2d(3 => 4, kernel = 3, padding = 1), relu1: Relu, bn: BatchNorm2d(4),
        conv2: Conv2d(4 => 6, kernel = 3, padding = 1), relu2: Relu,
        flatten: Flatten, fc: Linear(384 => 5),
    }
}

#[test]
fn macro_batch_norm_after_relu_folds_into_an_unpadded_convolution() {
    check_folding(&BnConv::graph(), &[("bn", "conv2")], &[]);
}

#[test]
fn macro_batch_norm_folds_through_a_flatten_into_a_linear_layer() {
    check_folding(&BnLinear::graph(), &[("bn", "fc")], &[]);
}

#[test]
fn macro_batch_norm_before_a_padded_convolution_is_not_folded() {
    check_folding(&BnPaddedConv::graph(), &[], &["bn"]);
}
