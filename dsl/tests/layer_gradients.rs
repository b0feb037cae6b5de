//! Every layer's backward against central finite differences of its forward, on small random shapes.

mod common;

use common::{check_grad, dot, randn, rng};
use cryptgpu_dsl::reference::*;
use cryptgpu_dsl::{Conv2d, Pool2d, Tensor};

#[test]
fn conv2d_backward_matches_finite_differences() {
    let mut r = rng(1);
    for c in [Conv2d::new(2, 3, 3), Conv2d::new(2, 3, 3).stride(2).padding(1), Conv2d::new(3, 2, 2).bias(false)] {
        let x = randn(&[2, c.in_channels, 5, 6], &mut r);
        let w = randn(&[c.out_channels, c.in_channels, c.kernel.0, c.kernel.1], &mut r);
        let b = randn(&[c.out_channels], &mut r);
        let bias = c.bias.then_some(&b);
        let y = conv2d_forward(&x, &w, bias, &c).unwrap();
        let g = randn(y.shape(), &mut r);
        let (dx, dw, db) = conv2d_backward(&x, &w, &g, &c).unwrap();
        check_grad("conv dx", &x, &dx, 1, |x| dot(&conv2d_forward(x, &w, bias, &c).unwrap(), &g));
        check_grad("conv dw", &w, &dw, 1, |w| dot(&conv2d_forward(&x, w, bias, &c).unwrap(), &g));
        match db {
            Some(db) => check_grad("conv db", &b, &db, 1, |b| dot(&conv2d_forward(&x, &w, Some(b), &c).unwrap(), &g)),
            None => assert!(!c.bias, "a conv with bias must return its bias gradient"),
        }
    }
}

#[test]
fn conv2d_forward_known_value() {
    // 1×1×3×3 input of 1..9, 2×2 kernel of ones, bias 0.5: each output is the window sum plus 0.5.
    let x = Tensor::from_vec(&[1, 1, 3, 3], (1..=9).map(f64::from).collect()).unwrap();
    let w = Tensor::full(&[1, 1, 2, 2], 1.0);
    let b = Tensor::full(&[1], 0.5);
    let y = conv2d_forward(&x, &w, Some(&b), &Conv2d::new(1, 1, 2)).unwrap();
    assert_eq!(y.data(), &[12.5, 16.5, 24.5, 28.5]);
}

#[test]
fn linear_backward_matches_finite_differences() {
    let mut r = rng(2);
    let x = randn(&[3, 7], &mut r);
    let w = randn(&[4, 7], &mut r);
    let b = randn(&[4], &mut r);
    let g = randn(&[3, 4], &mut r);
    let (dx, dw, db) = linear_backward(&x, &w, &g).unwrap();
    check_grad("linear dx", &x, &dx, 1, |x| dot(&linear_forward(x, &w, Some(&b)).unwrap(), &g));
    check_grad("linear dw", &w, &dw, 1, |w| dot(&linear_forward(&x, w, Some(&b)).unwrap(), &g));
    check_grad("linear db", &b, &db, 1, |b| dot(&linear_forward(&x, &w, Some(b)).unwrap(), &g));
}

#[test]
fn relu_backward_matches_finite_differences() {
    let mut r = rng(3);
    let x = randn(&[2, 3, 4, 4], &mut r);
    let g = randn(x.shape(), &mut r);
    let dx = relu_backward(&x, &g).unwrap();
    check_grad("relu dx", &x, &dx, 1, |x| dot(&relu_forward(x), &g));
    assert!(relu_forward(&x).data().iter().all(|&v| v >= 0.0));
}

#[test]
fn pooling_backward_matches_finite_differences() {
    let mut r = rng(4);
    for p in [Pool2d::new(2), Pool2d::new(3).stride(2).padding(1), Pool2d::new(2).stride(1)] {
        let x = randn(&[2, 2, 6, 5], &mut r);
        let ya = avg_pool2d_forward(&x, &p).unwrap();
        let g = randn(ya.shape(), &mut r);
        let dx = avg_pool2d_backward(x.shape(), &g, &p).unwrap();
        check_grad("avg pool dx", &x, &dx, 1, |x| dot(&avg_pool2d_forward(x, &p).unwrap(), &g));

        let (ym, argmax) = max_pool2d_forward(&x, &p).unwrap();
        assert_eq!(ym.shape(), ya.shape());
        for (o, &i) in argmax.iter().enumerate() {
            assert_eq!(ym.data()[o], x.data()[i], "argmax routes to the maximum");
        }
        let dx = max_pool2d_backward(x.shape(), &argmax, &g).unwrap();
        check_grad("max pool dx", &x, &dx, 1, |x| dot(&max_pool2d_forward(x, &p).unwrap().0, &g));
    }
}

#[test]
fn global_avg_pool_backward_matches_finite_differences() {
    let mut r = rng(5);
    let x = randn(&[2, 3, 3, 4], &mut r);
    let y = global_avg_pool_forward(&x).unwrap();
    assert_eq!(y.shape(), &[2, 3, 1, 1]);
    let g = randn(y.shape(), &mut r);
    let dx = global_avg_pool_backward(x.shape(), &g).unwrap();
    check_grad("gap dx", &x, &dx, 1, |x| dot(&global_avg_pool_forward(x).unwrap(), &g));
}

#[test]
fn batch_norm_train_backward_matches_finite_differences() {
    let mut r = rng(6);
    let x = randn(&[3, 2, 3, 3], &mut r);
    let gamma = randn(&[2], &mut r);
    let beta = randn(&[2], &mut r);
    let (y, cache) = batch_norm2d_forward_train(&x, &gamma, &beta, 1e-5).unwrap();
    // Per channel the normalised output has mean 0 and (biased) variance ≈ 1.
    let xh = &cache.xhat;
    let mean0: f64 = (0..3).flat_map(|n| xh.data()[n * 18..n * 18 + 9].to_vec()).sum::<f64>() / 27.0;
    assert!(mean0.abs() < 1e-12);
    let g = randn(y.shape(), &mut r);
    let (dx, dg, db) = batch_norm2d_backward_train(&cache, &gamma, &g).unwrap();
    let f = |x: &Tensor, gm: &Tensor, bt: &Tensor| dot(&batch_norm2d_forward_train(x, gm, bt, 1e-5).unwrap().0, &g);
    check_grad("bn train dx", &x, &dx, 1, |x| f(x, &gamma, &beta));
    check_grad("bn train dgamma", &gamma, &dg, 1, |gm| f(&x, gm, &beta));
    check_grad("bn train dbeta", &beta, &db, 1, |bt| f(&x, &gamma, bt));
}

#[test]
fn batch_norm_eval_backward_matches_finite_differences() {
    let mut r = rng(7);
    let x = randn(&[2, 3, 2, 2], &mut r);
    let gamma = randn(&[3], &mut r);
    let beta = randn(&[3], &mut r);
    let mean = randn(&[3], &mut r);
    let var = Tensor::uniform(&[3], 0.5, 2.0, &mut r);
    let fwd = |x: &Tensor, gm: &Tensor| batch_norm2d_forward_eval(x, gm, &beta, &mean, &var, 1e-5).unwrap();
    let g = randn(x.shape(), &mut r);
    let (dx, dg, db) = batch_norm2d_backward_eval(&x, &gamma, &mean, &var, 1e-5, &g).unwrap();
    check_grad("bn eval dx", &x, &dx, 1, |x| dot(&fwd(x, &gamma), &g));
    check_grad("bn eval dgamma", &gamma, &dg, 1, |gm| dot(&fwd(&x, gm), &g));
    let sums: Vec<f64> = (0..3)
        .map(|c| (0..2).map(|n| g.data()[(n * 3 + c) * 4..(n * 3 + c + 1) * 4].iter().sum::<f64>()).sum())
        .collect();
    assert_eq!(db.data().len(), 3);
    for (a, b) in db.data().iter().zip(&sums) {
        assert!((a - b).abs() < 1e-12);
    }
}

#[test]
fn softmax_cross_entropy_gradient_matches_finite_differences() {
    let mut r = rng(8);
    let logits = randn(&[4, 5], &mut r);
    let labels = [0, 3, 4, 1];
    let (loss, grad) = softmax_cross_entropy(&logits, &labels).unwrap();
    assert!(loss > 0.0);
    check_grad("softmax-CE", &logits, &grad, 1, |l| softmax_cross_entropy(l, &labels).unwrap().0);
    // Uniform logits give loss ln K.
    let (uniform, _) = softmax_cross_entropy(&Tensor::zeros(&[2, 5]), &[1, 2]).unwrap();
    assert!((uniform - 5f64.ln()).abs() < 1e-12);
    let err = softmax_cross_entropy(&logits, &[0, 1, 2, 5]).unwrap_err().to_string();
    assert!(err.contains("label 5") && err.contains("5 classes"), "{err}");
}
