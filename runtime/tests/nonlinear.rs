//! Comparison protocols against plaintext on fresh random inputs: sign/DReLU, ReLU, multiplication by a shared bit,
//! with their rounds and bytes asserted.

mod common;

use common::session;
use cryptgpu_runtime::protocols::SignBits;
use cryptgpu_runtime::{RingTensor, Stats};
use proptest::prelude::*;

fn bit(plane: &[u64], e: usize) -> u64 {
    (plane[e / 64] >> (e % 64)) & 1
}

/// Values over the whole ring with the edges mixed in.
fn values(n: usize) -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(
        prop_oneof![
            4 => any::<u64>(),
            2 => (-(1i64 << 30)..(1i64 << 30)).prop_map(|v| v as u64),
            1 => Just(0u64), 1 => Just(1u64), 1 => Just(u64::MAX), 1 => Just(1u64 << 63), 1 => Just((1u64 << 63) - 1),
        ],
        n,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn drelu_relu_and_mul_bit_match_plaintext(xv in values(150), vv in values(150)) {
        let n = xv.len();
        let x = RingTensor::new(&[n], xv.clone()).unwrap();
        let v = RingTensor::new(&[n], vv.clone()).unwrap();
        let s = session();
        let out = s.run(|p| {
            let xs = p.share(0, (p.id() == 0).then_some(&x), &[n])?;
            let vs = p.share(1, (p.id() == 1).then_some(&v), &[n])?;
            let d = p.drelu(&xs)?;
            let d_stats = p.last_call_stats();
            let d_open = p.reveal_bits(&d)?;
            let (y, mask) = p.relu_with_mask(&xs, SignBits::default())?;
            let r_stats = p.last_call_stats();
            let m_open = p.reveal_bits(&mask)?;
            let g = p.mul_bit(&vs, &mask)?;
            let g_stats = p.last_call_stats();
            Ok((d_open, p.reveal(&y)?, m_open, p.reveal(&g)?, [d_stats, r_stats, g_stats]))
        }).unwrap();
        for e in 0..n {
            let nonneg = (xv[e] as i64 >= 0) as u64;
            prop_assert_eq!(bit(&out[0].0, e), nonneg, "drelu of {}", xv[e] as i64);
            // The ReLU mask is [x > 0] (PyTorch's ReLU'(0) = 0), exact except at −2^63, whose negation wraps.
            let positive = if xv[e] == 1 << 63 { 1 } else { (xv[e] as i64 > 0) as u64 };
            prop_assert_eq!(bit(&out[0].2, e), positive, "relu mask of {}", xv[e] as i64);
            prop_assert_eq!(out[0].1.data()[e], if positive == 1 { xv[e] } else { 0 }, "relu of {}", xv[e] as i64);
            prop_assert_eq!(out[0].3.data()[e], if positive == 1 { vv[e] } else { 0 });
        }
        let rounds = |k: usize| out.iter().map(|o| o.4[k].rounds).collect::<Vec<_>>();
        prop_assert_eq!(rounds(0), vec![6; 3]);
        prop_assert_eq!(rounds(1), vec![7; 3]);
        prop_assert_eq!(rounds(2), vec![3; 3]);
        for k in 0..3 {
            let bytes: Vec<u64> = out.iter().map(|o| o.4[k].bytes_sent).collect();
            let declared = match k {
                0 => cryptgpu_runtime::protocols::cost::drelu_bytes(n, SignBits::default()),
                1 => cryptgpu_runtime::protocols::cost::relu_bytes(n, SignBits::default()),
                _ => cryptgpu_runtime::protocols::cost::mul_bit_bytes(n),
            };
            let mut got = bytes.clone();
            got.sort_unstable_by(|a, b| b.cmp(a));
            prop_assert_eq!(got, declared.to_vec(), "protocol {}: {:?}", k, out.iter().map(|o| o.4[k]).collect::<Vec<Stats>>());
        }
    }
}

/// The bounded sign circuit (`SignBits::for_bound(h)`: DReLU exact for `−2^h ≤ x < 2^h`, ReLU for `|x| < 2^h`) at
/// the edges of its range and on
/// random values inside it, for bounds that fill whole digits and bounds that do not; rounds and bytes as declared.
#[test]
fn bounded_sign_is_exact_inside_its_range_and_reads_bit_h_outside() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xb00d);
    for h in [1u32, 3, 4, 5, 17, 40, 41, 62] {
        let bits = SignBits::for_bound(h).unwrap();
        let top = 1i64 << h;
        let mut xv: Vec<i64> = vec![-top, -top + 1, -1, 0, 1, top - 1];
        xv.extend((0..200).map(|_| rng.gen_range(-top..top)));
        let n = xv.len();
        let x = RingTensor::new(&[n], xv.iter().map(|&v| v as u64).collect()).unwrap();
        let s = session();
        let out = s
            .run(|p| {
                let xs = p.share(0, (p.id() == 0).then_some(&x), &[n])?;
                let d = p.drelu_bits(&xs, bits)?;
                let d_stats = p.last_call_stats();
                let (y, _) = p.relu_with_mask(&xs, bits)?;
                let r_stats = p.last_call_stats();
                Ok((p.reveal_bits(&d)?, p.reveal(&y)?, [d_stats, r_stats]))
            })
            .unwrap();
        for (e, &v) in xv.iter().enumerate() {
            assert_eq!(bit(&out[0].0, e), (v >= 0) as u64, "drelu of {v} with bound 2^{h}");
            // ReLU reads the sign of −x, so its range is −2^h < x ≤ 2^h − 1 (|x| < 2^h).
            if v > -top {
                assert_eq!(out[0].1.data()[e], v.max(0) as u64, "relu of {v} with bound 2^{h}");
            }
        }
        use cryptgpu_runtime::protocols::cost;
        for k in 0..2 {
            let rounds: Vec<u64> = out.iter().map(|o| o.2[k].rounds).collect();
            let want = if k == 0 { cost::sign_rounds(bits) } else { cost::relu_rounds_for(bits) };
            assert_eq!(rounds, vec![want; 3], "bound 2^{h}, protocol {k}");
            let mut got: Vec<u64> = out.iter().map(|o| o.2[k].bytes_sent).collect();
            got.sort_unstable_by(|a, b| b.cmp(a));
            let declared = if k == 0 { cost::drelu_bytes(n, bits) } else { cost::relu_bytes(n, bits) };
            assert_eq!(got, declared.to_vec(), "bound 2^{h}, protocol {k}");
        }
    }
    // Outside the range the circuit reads bit h of x (documented): 2^h is called negative, −2^h − 1 non-negative.
    let bits = SignBits::for_bound(40).unwrap();
    let xv = [1i64 << 40, -(1i64 << 40) - 1];
    let x = RingTensor::new(&[2], xv.iter().map(|&v| v as u64).collect()).unwrap();
    let out = session()
        .run(|p| {
            let xs = p.share(0, (p.id() == 0).then_some(&x), &[2])?;
            let d = p.drelu_bits(&xs, bits)?;
            p.reveal_bits(&d)
        })
        .unwrap();
    assert_eq!((bit(&out[0], 0), bit(&out[0], 1)), (0, 1));
}

/// The declared costs the targets are about: ReLU on values bounded by 2^40 in at most 8 rounds (7) and at
/// most 28 bytes per element and party on average (and the full range in 7 rounds too).
#[test]
fn relu_costs_at_the_2_40_bound() {
    use cryptgpu_runtime::protocols::cost;
    let n = 1 << 20;
    let bits = SignBits::for_bound(40).unwrap();
    assert_eq!(cost::relu_rounds_for(bits), 7);
    assert_eq!(cost::relu_rounds_for(SignBits::default()), 7);
    let total: u64 = cost::relu_bytes(n, bits).iter().sum();
    let per_party = total as f64 / 3.0 / n as f64;
    assert!(per_party <= 28.0, "{per_party} bytes per element and party");
}

/// The ReLU backward from the forward's saved injection: `dy·[x > 0]` exactly, in 2 rounds and the declared bytes,
/// for the full and a bounded range.
#[test]
fn relu_backward_reuses_the_forward_injection() {
    use cryptgpu_runtime::protocols::cost;
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x05ee_db4c);
    let n = 300;
    let xv: Vec<i64> =
        (0..n).map(|i| if i % 7 == 0 { 0 } else { rng.gen_range(-(1i64 << 39)..(1i64 << 39)) }).collect();
    let gv: Vec<u64> = (0..n).map(|_| rng.gen()).collect();
    let x = RingTensor::new(&[n], xv.iter().map(|&v| v as u64).collect()).unwrap();
    let g = RingTensor::new(&[n], gv.clone()).unwrap();
    for bits in [SignBits::default(), SignBits::for_bound(40).unwrap()] {
        let out = session()
            .run(|p| {
                let xs = p.share(0, (p.id() == 0).then_some(&x), &[n])?;
                let gs = p.share(1, (p.id() == 1).then_some(&g), &[n])?;
                let (_, saved) = p.relu_for_backward(&xs, bits)?;
                let dx = p.relu_backward(&gs, &saved)?;
                let stats = p.last_call_stats();
                Ok((p.reveal(&dx)?, stats))
            })
            .unwrap();
        for e in 0..n {
            assert_eq!(out[0].0.data()[e], if xv[e] > 0 { gv[e] } else { 0 }, "x = {}", xv[e]);
        }
        assert!(out.iter().all(|o| o.1.rounds == cost::RELU_BACKWARD_ROUNDS));
        let mut got: Vec<u64> = out.iter().map(|o| o.1.bytes_sent).collect();
        got.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(got, cost::relu_backward_bytes(n).to_vec());
    }
}

/// A ReLU announced before a fixed-point product with exact truncation (and a bias added after it) starts in the
/// truncation's second round: one round fewer, the same bytes, and the same results as run after the product.
#[test]
fn a_relu_fused_into_its_products_truncation_saves_a_round() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x0f05_ed00);
    let (m, k, n) = (8, 16, 12);
    let enc = |v: f64| (v * (1u64 << 20) as f64).round() as i64 as u64;
    let a: Vec<f64> = (0..m * k).map(|_| rng.gen_range(-2.0..2.0)).collect();
    let b: Vec<f64> = (0..k * n).map(|_| rng.gen_range(-2.0..2.0)).collect();
    let bias: Vec<f64> = (0..m * n).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let t = |v: &[f64], s: &[usize]| RingTensor::new(s, v.iter().map(|&x| enc(x)).collect()).unwrap();
    let (at, bt, ct) = (t(&a, &[m, k]), t(&b, &[k, n]), t(&bias, &[m, n]));
    let bits = SignBits::for_bound(40).unwrap();
    for fused in [false, true] {
        for rep in 0..3 {
            // Different numbers of warm-up steps put every party in every role.
            let out = session()
                .run(|p| {
                    let xa = p.share(0, (p.id() == 0).then_some(&at), &[m, k])?;
                    let xb = p.share(1, (p.id() == 1).then_some(&bt), &[k, n])?;
                    let xc = p.share(2, (p.id() == 2).then_some(&ct), &[m, n])?;
                    for _ in 0..rep {
                        p.neg(&xa)?;
                        p.share(0, (p.id() == 0).then_some(&at), &[m, k])?;
                    }
                    let before = p.total_stats();
                    let (y, saved) = if fused {
                        p.expect_relu(bits, Some(xc.clone()))?;
                        let z = p.matmul(&xa, &xb)?;
                        let z = p.add(&z, &xc)?;
                        p.relu_expected(&z, bits)?
                    } else {
                        let z = p.matmul(&xa, &xb)?;
                        let z = p.add(&z, &xc)?;
                        p.relu_for_backward(&z, bits)?
                    };
                    let used = p.total_stats() - before;
                    Ok((p.reveal(&y)?, p.reveal_bits(&saved.mask)?, used))
                })
                .unwrap();
            let (mm, mb) = (&out[0].0, &out[0].1);
            for i in 0..m {
                for j in 0..n {
                    let z: f64 = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum::<f64>() + bias[i * n + j];
                    let got = mm.data()[i * n + j] as i64 as f64 / (1u64 << 20) as f64;
                    assert!((got - z.max(0.0)).abs() < 1e-4, "fused {fused}: relu({z}) = {got}");
                    if z.abs() > 1e-4 {
                        assert_eq!(bit(mb, i * n + j), (z > 0.0) as u64, "fused {fused}: mask of {z}");
                    }
                }
            }
            let rounds: Vec<u64> = out.iter().map(|o| o.2.rounds).collect();
            let want = 2 + cryptgpu_runtime::protocols::cost::relu_rounds_for(bits) - u64::from(fused);
            assert_eq!(rounds, vec![want; 3], "fused {fused}, rep {rep}");
            let total: u64 = out.iter().map(|o| o.2.bytes_sent).sum();
            let mut relu: u64 = cryptgpu_runtime::protocols::cost::relu_bytes(m * n, bits).iter().sum();
            relu += cryptgpu_runtime::protocols::cost::MUL_EXACT.bytes_for(m * n, 20).iter().sum::<u64>(); // the product
            assert_eq!(total, relu, "fused {fused}, rep {rep}");
        }
    }
}

/// The same for a convolution with bias, whose output is reordered to NCHW after the truncation.
#[test]
fn a_relu_fused_into_a_convolutions_truncation_matches_plaintext() {
    use cryptgpu_runtime::Conv2dParams;
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x0c0f_0500);
    let ([n, c, h, w], co, kk) = ([2usize, 3, 6, 6], 4usize, 3usize);
    let enc = |v: f64| (v * (1u64 << 20) as f64).round() as i64 as u64;
    let x: Vec<f64> = (0..n * c * h * w).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let wt: Vec<f64> = (0..co * c * kk * kk).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let bias: Vec<f64> = (0..co).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let t = |v: &[f64], s: &[usize]| RingTensor::new(s, v.iter().map(|&x| enc(x)).collect()).unwrap();
    let (xt, wtt, bt) = (t(&x, &[n, c, h, w]), t(&wt, &[co, c, kk, kk]), t(&bias, &[co]));
    let bits = SignBits::for_bound(40).unwrap();
    let params = Conv2dParams { stride: 1, padding: 1 };
    for fused in [false, true] {
        let out = session()
            .run(|p| {
                let xs = p.share(0, (p.id() == 0).then_some(&xt), &[n, c, h, w])?;
                let ws = p.share(1, (p.id() == 1).then_some(&wtt), &[co, c, kk, kk])?;
                let bs = p.share(1, (p.id() == 1).then_some(&bt), &[co])?;
                let before = p.total_stats();
                if fused {
                    p.expect_relu(bits, None)?;
                }
                let z = p.conv2d(&xs, &ws, Some(&bs), params)?;
                let (y, _) = p.relu_expected(&z, bits)?;
                let used = p.total_stats() - before;
                Ok((p.reveal(&y)?, used))
            })
            .unwrap();
        for b in 0..n {
            for o in 0..co {
                for i in 0..h {
                    for j in 0..w {
                        let mut z = bias[o];
                        for ci in 0..c {
                            for u in 0..kk {
                                for v in 0..kk {
                                    let (ii, jj) = (i as i64 + u as i64 - 1, j as i64 + v as i64 - 1);
                                    if (0..h as i64).contains(&ii) && (0..w as i64).contains(&jj) {
                                        let xv = x[((b * c + ci) * h + ii as usize) * w + jj as usize];
                                        z += xv * wt[((o * c + ci) * kk + u) * kk + v];
                                    }
                                }
                            }
                        }
                        let e = ((b * co + o) * h + i) * w + j;
                        let got = out[0].0.data()[e] as i64 as f64 / (1u64 << 20) as f64;
                        assert!((got - z.max(0.0)).abs() < 1e-4, "fused {fused}: relu({z}) = {got} at {e}");
                    }
                }
            }
        }
        let want = 2 + cryptgpu_runtime::protocols::cost::relu_rounds_for(bits) - u64::from(fused);
        assert!(out.iter().all(|o| o.1.rounds == want), "fused {fused}");
    }
}
