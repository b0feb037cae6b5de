//! Privacy of the non-linear protocols: what a party receives must not depend on the secret. For two different
//! secrets, every byte a party receives over many sessions with fresh keys is tested for uniformity and for equal
//! distribution across the secrets (chi-square on byte histograms), as in `privacy.rs`: AND, DReLU (A2B and the
//! adder), multiplication by a shared bit (bit injection), ReLU, and the max tournament with argmax and pooling.
//! Element counts are multiples of 64, so bit planes have no zero padding bits.

mod common;

use common::{chi2_two_sample, chi2_uniform, received_bytes, CHI2_CRITICAL as CRITICAL, PRIVACY_RUNS as RUNS};
use cryptgpu_runtime::protocols::SignBits;
use cryptgpu_runtime::{Conv2dParams, Party, Result, RingTensor, Share};

type Program = fn(&mut Party, &Share, &Share) -> Result<()>;

fn received(x: &RingTensor, y: &RingTensor, f: Program) -> [[u64; 256]; 3] {
    received_bytes(x, y, f)
}

/// Secret A: all zeros. Secret B: a structured pattern of both signs, ties and large magnitudes.
fn secrets(n: usize) -> [RingTensor; 2] {
    let b = (0..n as u64)
        .map(|i| match i % 5 {
            0 => 0,
            1 => (i % 7) << 20,
            2 => ((i % 3) << 40).wrapping_neg(),
            3 => 1 << 61,
            _ => (1u64 << 20).wrapping_neg(),
        })
        .collect();
    [RingTensor::new(&[n], vec![0; n]).unwrap(), RingTensor::new(&[n], b).unwrap()]
}

fn check(name: &str, shape: &[usize], f: Program) {
    let n: usize = shape.iter().product();
    let [xa, xb] = secrets(n).map(|t| RingTensor::new(shape, t.into_data()).unwrap());
    let ya = RingTensor::new(shape, vec![0; n]).unwrap();
    let yb = RingTensor::new(shape, (0..n as u64).map(|i| (3 + i % 5) << 19).collect()).unwrap();
    let ha = received(&xa, &ya, f);
    let hb = received(&xb, &yb, f);
    for j in 0..3 {
        let total: u64 = ha[j].iter().sum();
        assert!(total > 0, "{name}: party {j} received nothing");
        let (ua, ub, two) = (chi2_uniform(&ha[j]), chi2_uniform(&hb[j]), chi2_two_sample(&ha[j], &hb[j]));
        assert!(
            ua < CRITICAL && ub < CRITICAL && two < CRITICAL,
            "{name}: party {j} receives non-uniform or secret-dependent bytes: χ² uniform {ua:.0}/{ub:.0}, \
             two-sample {two:.0} ({total} bytes)"
        );
    }
}

#[test]
fn and_of_shared_bits_is_private() {
    check("and", &[128], |p, x, y| {
        let (a, b) = (p.drelu(x)?, p.drelu(y)?);
        p.and(&a, &b).map(drop)
    });
}

#[test]
fn drelu_is_private() {
    check("drelu", &[128], |p, x, _| p.drelu(x).map(drop));
}

#[test]
fn mul_bit_is_private() {
    check("mul_bit", &[128], |p, x, y| {
        let b = p.drelu(x)?;
        p.mul_bit(y, &b).map(drop)
    });
}

#[test]
fn relu_is_private() {
    check("relu", &[128], |p, x, _| p.relu_with_mask(x, SignBits::default()).map(drop));
}

#[test]
fn max_tournament_is_private() {
    check("max_axis", &[5, 64], |p, x, _| p.max_axis(x, 0).map(drop));
    check("argmax_axis", &[3, 64], |p, x, _| p.argmax_axis(x, 0).map(drop));
    check("max_pool2d with argmax and backward", &[1, 4, 8, 8], |p, x, y| {
        // The upstream gradient: the pooled secret itself (secret-dependent), plus y's pooling.
        let (out, rec) = p.max_pool2d_with_argmax(x, [2, 2], Conv2dParams { stride: 2, padding: 0 })?;
        let pooled_y = p.sum_pool2d(y, [2, 2], Conv2dParams { stride: 2, padding: 0 })?;
        let g = p.add(&out, &pooled_y)?;
        p.max_pool2d_backward(&g, &rec).map(drop)
    });
}

#[test]
fn the_statistic_detects_unmasked_comparison_results() {
    // Negative control: had a party received the secret's sign bit planes, or an unmasked bit-injection product
    // v·β, in the clear (what an unmasked A2B or AND would send), both statistics would fail.
    let [xa, xb] = secrets(128);
    let hist = |words: &dyn Fn(&RingTensor) -> Vec<u64>, x: &RingTensor| {
        let mut h = [0u64; 256];
        for _ in 0..RUNS {
            for w in words(x) {
                for b in w.to_le_bytes() {
                    h[b as usize] += 1;
                }
            }
        }
        h
    };
    let sign_planes = |x: &RingTensor| -> Vec<u64> {
        x.data().chunks(64).map(|c| c.iter().enumerate().fold(0, |w, (j, &v)| w | ((v >> 63) << j))).collect()
    };
    let relu = |x: &RingTensor| -> Vec<u64> { x.data().iter().map(|&v| if (v as i64) >= 0 { v } else { 0 }).collect() };
    for f in [&sign_planes as &dyn Fn(&RingTensor) -> Vec<u64>, &relu] {
        let (a, b) = (hist(f, &xa), hist(f, &xb));
        assert!(chi2_uniform(&a) > CRITICAL && chi2_uniform(&b) > CRITICAL && chi2_two_sample(&a, &b) > CRITICAL);
    }
}
