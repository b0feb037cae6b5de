//! Helpers shared by the dsl integration tests: seeded randomness and central finite differences.

#![allow(dead_code)]

use cryptgpu_dsl::Tensor;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// A seeded generator so failures reproduce.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// A random tensor with N(0, 1) entries.
pub fn randn(shape: &[usize], rng: &mut StdRng) -> Tensor {
    Tensor::randn(shape, 1.0, rng)
}

/// `Σ y·r`: the scalar whose gradient w.r.t. `y` is `r`.
pub fn dot(y: &Tensor, r: &Tensor) -> f64 {
    assert_eq!(y.shape(), r.shape());
    y.data().iter().zip(r.data()).map(|(a, b)| a * b).sum()
}

/// Checks `analytic` against central finite differences of `f` around `x` on every coordinate
/// (or every `stride`-th one), with a mixed absolute/relative tolerance.
pub fn check_grad(what: &str, x: &Tensor, analytic: &Tensor, stride: usize, f: impl Fn(&Tensor) -> f64) {
    assert_eq!(x.shape(), analytic.shape(), "{what}: gradient shape");
    let h = 1e-5;
    let mut checked = 0;
    for i in (0..x.len()).step_by(stride.max(1)) {
        let mut xp = x.clone();
        xp.data_mut()[i] += h;
        let mut xm = x.clone();
        xm.data_mut()[i] -= h;
        let numeric = (f(&xp) - f(&xm)) / (2.0 * h);
        let a = analytic.data()[i];
        let tol = 1e-6 + 1e-5 * numeric.abs().max(a.abs());
        assert!((numeric - a).abs() <= tol, "{what}[{i}]: analytic {a}, numeric {numeric}");
        checked += 1;
    }
    assert!(checked > 0, "{what}: nothing checked");
}
