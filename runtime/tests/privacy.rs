//! Privacy: what a party receives must not depend on the secret. For two different secrets, every byte a party
//! receives (over many runs with fresh keys) is tested for uniformity and for equal distribution across the two
//! secrets with chi-square tests on byte histograms. An opened intermediate value would fail both.

mod common;

use common::{chi2_two_sample, chi2_uniform, received_bytes, CHI2_CRITICAL as CRITICAL, PRIVACY_RUNS as RUNS};
use cryptgpu_runtime::{Conv2dParams, Party, Result, RingTensor, Share};

type Program = fn(&mut Party, &Share, &Share) -> Result<Share>;

fn received(x: &RingTensor, y: &RingTensor, f: Program) -> [[u64; 256]; 3] {
    received_bytes(x, y, f)
}

fn check(name: &str, shape_x: &[usize], shape_y: &[usize], f: Program) {
    let n = |s: &[usize]| s.iter().product::<usize>();
    // Secret A: all zeros. Secret B: a fixed, very structured non-zero pattern.
    let xa = RingTensor::new(shape_x, vec![0; n(shape_x)]).unwrap();
    let ya = RingTensor::new(shape_y, vec![0; n(shape_y)]).unwrap();
    let xb = RingTensor::new(shape_x, (0..n(shape_x) as u64).map(|i| (i % 7) << 20).collect()).unwrap();
    let yb = RingTensor::new(shape_y, (0..n(shape_y) as u64).map(|i| (3 + i % 5) << 19).collect()).unwrap();
    let ha = received(&xa, &ya, f);
    let hb = received(&xb, &yb, f);
    for j in 0..3 {
        let total: u64 = ha[j].iter().sum();
        if total == 0 {
            continue;
        }
        let (ua, ub, two) = (chi2_uniform(&ha[j]), chi2_uniform(&hb[j]), chi2_two_sample(&ha[j], &hb[j]));
        assert!(ua < CRITICAL && ub < CRITICAL && two < CRITICAL, "{name}: party {j} receives non-uniform or secret-dependent bytes: χ² uniform {ua:.0}/{ub:.0}, two-sample {two:.0} ({total} bytes)");
    }
}

#[test]
fn share_is_private() {
    check("share", &[64], &[64], |_, x, _| Ok(x.clone()));
}

#[test]
fn mul_with_truncation_is_private() {
    check("mul", &[64], &[64], |p, x, y| p.mul(x, y));
}

#[test]
fn ring_mul_is_private() {
    check("mul_ring", &[64], &[64], |p, x, y| p.mul_ring(x, y));
}

#[test]
fn matmul_is_private() {
    check("matmul", &[8, 6], &[6, 8], |p, x, y| p.matmul(x, y));
}

#[test]
fn conv2d_is_private() {
    check("conv2d", &[1, 2, 6, 6], &[2, 2, 3, 3], |p, x, w| {
        p.conv2d(x, w, None, Conv2dParams { stride: 1, padding: 1 })
    });
}

#[test]
fn division_and_average_pooling_are_private() {
    check("div_public", &[64], &[1], |p, x, _| p.div_public(x, 12345));
    check("avg_pool2d", &[1, 4, 8, 8], &[1], |p, x, _| p.avg_pool2d(x, [2, 2], Conv2dParams { stride: 2, padding: 0 }));
}

#[test]
fn the_statistic_detects_a_value_sent_in_the_clear() {
    // Negative control: had a party received the secret itself (an opened intermediate), the test would fail.
    let clear = |f: &dyn Fn(u64) -> u64| {
        let mut h = [0u64; 256];
        for r in 0..RUNS as u64 {
            for i in 0..192u64 {
                for b in f(i + r).to_le_bytes() {
                    h[b as usize] += 1;
                }
            }
        }
        h
    };
    let (a, b) = (clear(&|_| 0), clear(&|i| (i % 7) << 20));
    assert!(chi2_uniform(&b) > CRITICAL && chi2_two_sample(&a, &b) > CRITICAL);
}
