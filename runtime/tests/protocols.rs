//! Every protocol against a plaintext reference on fresh random inputs, with its communication asserted exactly.

mod common;

use common::*;
use cryptgpu_runtime::protocols::cost::{self, Cost};
use cryptgpu_runtime::protocols::TruncationMode;
use cryptgpu_runtime::{Conv2dParams, RingTensor, Stats, Tensor};
use proptest::prelude::*;

const T: u32 = 20;

type LocalOp<'a> = dyn Fn(&mut cryptgpu_runtime::Party) -> cryptgpu_runtime::Result<cryptgpu_runtime::Share> + 'a;

fn sorted_bytes(stats: &[Stats; 3]) -> [u64; 3] {
    let mut b = stats.map(|s| s.bytes_sent);
    b.sort_unstable_by(|a, b| b.cmp(a));
    b
}

/// Assert that the three parties' stats of one call equal the declared cost for `elements` elements (`k`: the bits
/// an exact truncation divides by, which size its packed wrap terms; 20 elsewhere).
fn assert_cost(stats: &[Stats; 3], cost: Cost, elements: usize, k: u32) {
    for s in stats {
        assert_eq!(s.rounds, cost.rounds, "rounds: {stats:?}");
    }
    assert_eq!(sorted_bytes(stats), cost.bytes_for(elements, k), "bytes: {stats:?}");
}

/// Values spanning the ring, with zero, ±1 and the extremes mixed in.
fn ring_values(n: usize) -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(
        prop_oneof![any::<u64>(), Just(0u64), Just(1), Just(u64::MAX), Just(1 << 63), Just((1 << 63) - 1)],
        n,
    )
}

/// Fixed-point encodings with |v| ≤ 2^bits (real), including zero, ±1 ulp and the bound itself.
fn fixed_values(n: usize, bits: u32) -> impl Strategy<Value = Vec<i64>> {
    let m = 1i64 << (bits + T);
    prop::collection::vec(
        prop_oneof![4 => -m..=m, 1 => Just(0i64), 1 => Just(1), 1 => Just(-1), 1 => Just(m), 1 => Just(-m)],
        n,
    )
}

fn as_ring(v: &[i64]) -> Vec<u64> {
    v.iter().map(|&x| x as u64).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn share_reveal_round_trip(data in ring_values(37), owner in 0usize..3, to in 0usize..3) {
        let x = RingTensor::new(&[37], data.clone()).unwrap();
        let s = session();
        let out = s.run(|p| {
            let xs = p.share(owner, (p.id() == owner).then_some(&x), &[37])?;
            let share_stats = p.last_call_stats();
            let all = p.reveal(&xs)?;
            let all_stats = p.last_call_stats();
            let one = p.reveal_to(&xs, to)?;
            Ok((all, one, [share_stats, all_stats, p.last_call_stats()]))
        }).unwrap();
        for (id, (all, one, _)) in out.iter().enumerate() {
            prop_assert_eq!(all.data(), &data[..]);
            prop_assert_eq!(one.is_some(), id == to);
            if let Some(v) = one { prop_assert_eq!(v.data(), &data[..]); }
        }
        let stats = |k: usize| [out[0].2[k], out[1].2[k], out[2].2[k]];
        assert_cost(&stats(0), cost::SHARE, 37, 20);
        assert_cost(&stats(1), cost::REVEAL_ALL, 37, 20);
        assert_cost(&stats(2), cost::REVEAL_TO_ONE, 37, 20);
        prop_assert_eq!(out[owner].2[0].bytes_sent, 16 * 37); // the owner is the one who sends
    }

    #[test]
    fn local_ops_are_exact_in_the_ring(a in ring_values(20), b in ring_values(20), c in ring_values(20)) {
        let (x, y, pc) = (RingTensor::new(&[4, 5], a.clone()).unwrap(), RingTensor::new(&[4, 5], b.clone()).unwrap(), RingTensor::new(&[4, 5], c.clone()).unwrap());
        let s = session();
        let out = s.run(|p| {
            let xs = p.share(0, (p.id() == 0).then_some(&x), &[4, 5])?;
            let ys = p.share(2, (p.id() == 2).then_some(&y), &[4, 5])?;
            let mut res = Vec::new();
            let mut local = Vec::new();
            let ops: [&LocalOp; 5] = [
                &|p| p.add(&xs, &ys),
                &|p| p.sub(&xs, &ys),
                &|p| p.neg(&xs),
                &|p| p.add_public(&xs, &pc),
                &|p| p.mul_public_ring(&xs, &pc),
            ];
            for op in ops {
                let z = op(p)?;
                local.push(p.last_call_stats());
                res.push(p.reveal(&z)?.into_data());
            }
            Ok((res, local))
        }).unwrap();
        let want: Vec<Vec<u64>> = vec![
            a.iter().zip(&b).map(|(x, y)| x.wrapping_add(*y)).collect(),
            a.iter().zip(&b).map(|(x, y)| x.wrapping_sub(*y)).collect(),
            a.iter().map(|x| x.wrapping_neg()).collect(),
            a.iter().zip(&c).map(|(x, y)| x.wrapping_add(*y)).collect(),
            a.iter().zip(&c).map(|(x, y)| x.wrapping_mul(*y)).collect(),
        ];
        for (res, local) in &out {
            prop_assert_eq!(res, &want);
            for st in local { prop_assert_eq!(*st, Stats::default()); }
        }
    }

    #[test]
    fn mul_is_within_one_ulp(xv in fixed_values(64, 10), yv in fixed_values(64, 1)) {
        // |x·y| ≤ 2^11: the product fits with room, wrap failures have probability ≤ 2^-13 per element.
        let (x, y) = (RingTensor::new(&[8, 8], as_ring(&xv)).unwrap(), RingTensor::new(&[8, 8], as_ring(&yv)).unwrap());
        let s = session();
        let out = s.run(|p| {
            let xs = p.share(0, (p.id() == 0).then_some(&x), &[8, 8])?;
            let ys = p.share(1, (p.id() == 1).then_some(&y), &[8, 8])?;
            let z = p.mul(&xs, &ys)?;
            let st = p.last_call_stats();
            let zr = p.mul_ring(&xs, &ys)?;
            p.set_truncation(TruncationMode::Probabilistic);
            let zp = p.mul(&xs, &ys)?;
            let stp = p.last_call_stats();
            Ok((p.reveal(&z)?, p.reveal(&zr)?, st, p.reveal(&zp)?, stp))
        }).unwrap();
        let floor: Vec<i128> = xv.iter().zip(&yv).map(|(&a, &b)| floor_shift(a as i128 * b as i128, T)).collect();
        let tally = check_quotients(out[0].0.data(), &floor, 1 << T);
        prop_assert_eq!(tally.wraps, 0, "the exact mode never wraps");
        let tally = check_quotients(out[0].3.data(), &floor, 1 << T);
        prop_assert!(tally.wraps <= 2, "{tally:?}");
        let ring: Vec<u64> = xv.iter().zip(&yv).map(|(&a, &b)| (a as u64).wrapping_mul(b as u64)).collect();
        prop_assert_eq!(out[0].1.data(), &ring[..]);
        assert_cost(&[out[0].2, out[1].2, out[2].2], cost::MUL_EXACT, 64, 20);
        assert_cost(&[out[0].4, out[1].4, out[2].4], cost::MUL, 64, 20);
    }

    #[test]
    fn matmul_is_within_one_ulp(m in 1usize..9, k in 1usize..40, n in 1usize..9, seed in any::<u64>()) {
        let mut rng = Lcg(seed);
        let xv: Vec<i64> = (0..m * k).map(|_| rng.range(1 << (T + 3))).collect();
        let yv: Vec<i64> = (0..k * n).map(|_| rng.range(1 << (T + 3))).collect();
        let (x, y) = (RingTensor::new(&[m, k], as_ring(&xv)).unwrap(), RingTensor::new(&[k, n], as_ring(&yv)).unwrap());
        let s = session();
        let out = s.run(|p| {
            let xs = p.share(0, (p.id() == 0).then_some(&x), &[m, k])?;
            let ys = p.share(1, (p.id() == 1).then_some(&y), &[k, n])?;
            let z = p.matmul(&xs, &ys)?;
            let st = p.last_call_stats();
            Ok((p.reveal(&z)?, st))
        }).unwrap();
        prop_assert_eq!(out[0].0.shape(), &[m, n]);
        let floor: Vec<i128> = (0..m * n).map(|e| {
            let (i, j) = (e / n, e % n);
            floor_shift((0..k).map(|kk| xv[i * k + kk] as i128 * yv[kk * n + j] as i128).sum(), T)
        }).collect();
        let tally = check_quotients(out[0].0.data(), &floor, 1 << T);
        prop_assert_eq!(tally.wraps, 0, "{:?}", tally);
        assert_cost(&[out[0].1, out[1].1, out[2].1], cost::MUL_EXACT, m * n, 20);
    }

    #[test]
    fn conv2d_is_within_one_ulp(n in 1usize..3, c in 1usize..4, hw in 3usize..8, co in 1usize..4, kk in 1usize..4,
                                stride in 1usize..3, pad in 0usize..2, bias in any::<bool>(), seed in any::<u64>()) {
        prop_assume!(hw + 2 * pad >= kk);
        let mut rng = Lcg(seed);
        let xv: Vec<i64> = (0..n * c * hw * hw).map(|_| rng.range(1 << (T + 3))).collect();
        let wv: Vec<i64> = (0..co * c * kk * kk).map(|_| rng.range(1 << (T + 1))).collect();
        let bv: Vec<i64> = (0..co).map(|_| rng.range(1 << (T + 2))).collect();
        let x = RingTensor::new(&[n, c, hw, hw], as_ring(&xv)).unwrap();
        let w = RingTensor::new(&[co, c, kk, kk], as_ring(&wv)).unwrap();
        let b = RingTensor::new(&[co], as_ring(&bv)).unwrap();
        let prm = Conv2dParams { stride, padding: pad };
        let s = session();
        let out = s.run(|p| {
            let xs = p.share(0, (p.id() == 0).then_some(&x), x.shape())?;
            let ws = p.share(1, (p.id() == 1).then_some(&w), w.shape())?;
            let bs = p.share(1, (p.id() == 1).then_some(&b), b.shape())?;
            let y = p.conv2d(&xs, &ws, bias.then_some(&bs), prm)?;
            let st = p.last_call_stats();
            Ok((p.reveal(&y)?, st))
        }).unwrap();
        let oh = (hw + 2 * pad - kk) / stride + 1;
        prop_assert_eq!(out[0].0.shape(), &[n, co, oh, oh]);
        let mut floor = Vec::new();
        for ni in 0..n { for o in 0..co { for y in 0..oh { for xq in 0..oh {
            let mut z: i128 = if bias { (bv[o] as i128) << T } else { 0 };
            for ci in 0..c { for i in 0..kk { for j in 0..kk {
                let (h, wq) = ((y * stride + i) as i64 - pad as i64, (xq * stride + j) as i64 - pad as i64);
                if h >= 0 && wq >= 0 && (h as usize) < hw && (wq as usize) < hw {
                    z += xv[((ni * c + ci) * hw + h as usize) * hw + wq as usize] as i128 * wv[((o * c + ci) * kk + i) * kk + j] as i128;
                }
            }}}
            floor.push(floor_shift(z, T));
        }}}}
        let tally = check_quotients(out[0].0.data(), &floor, 1 << T);
        prop_assert_eq!(tally.wraps, 0, "{:?}", tally);
        assert_cost(&[out[0].1, out[1].1, out[2].1], cost::MUL_EXACT, n * co * oh * oh, 20);
    }

    #[test]
    fn division_by_public_integers(xv in fixed_values(50, 20), d in prop_oneof![1u64..=1000, Just(3u64), Just((1 << 20) + 1),
                                   Just(1u64 << 40), Just((1u64 << 62) + 12345), Just(i64::MAX as u64), 1u64..=i64::MAX as u64]) {
        let x = RingTensor::new(&[50], as_ring(&xv)).unwrap();
        let s = session();
        let out = s.run(|p| {
            let xs = p.share(2, (p.id() == 2).then_some(&x), &[50])?;
            let q = p.div_public(&xs, d)?;
            let st = p.last_call_stats();
            Ok((p.reveal(&q)?, st))
        }).unwrap();
        let floor: Vec<i128> = xv.iter().map(|&v| (v as i128).div_euclid(d as i128)).collect();
        let tally = check_quotients(out[0].0.data(), &floor, d as u128);
        prop_assert!(tally.wraps <= 2, "{tally:?}");
        if d.is_power_of_two() {
            prop_assert_eq!(tally.wraps, 0, "powers of two use the exact mode");
            assert_cost(&[out[0].1, out[1].1, out[2].1], cost::DIVIDE_EXACT, 50, d.trailing_zeros());
        } else {
            assert_cost(&[out[0].1, out[1].1, out[2].1], cost::DIVIDE, 50, 20);
        }
    }

    #[test]
    fn sum_and_average_pooling(n in 1usize..3, c in 1usize..3, hw in 2usize..9, k in 1usize..4, stride in 1usize..3, pad in 0usize..2, seed in any::<u64>()) {
        prop_assume!(hw + 2 * pad >= k && pad < k);
        let mut rng = Lcg(seed);
        let xv: Vec<i64> = (0..n * c * hw * hw).map(|_| rng.range(1 << (T + 8))).collect();
        let x = RingTensor::new(&[n, c, hw, hw], as_ring(&xv)).unwrap();
        let prm = Conv2dParams { stride, padding: pad };
        let s = session();
        let out = s.run(|p| {
            let xs = p.share(0, (p.id() == 0).then_some(&x), x.shape())?;
            let sum = p.sum_pool2d(&xs, [k, k], prm)?;
            let sum_st = p.last_call_stats();
            let avg = p.avg_pool2d(&xs, [k, k], prm)?;
            let avg_st = p.last_call_stats();
            Ok((p.reveal(&sum)?, p.reveal(&avg)?, sum_st, avg_st))
        }).unwrap();
        let oh = (hw + 2 * pad - k) / stride + 1;
        let mut sums = Vec::new();
        for ni in 0..n { for ci in 0..c { for y in 0..oh { for xq in 0..oh {
            let mut z = 0i128;
            for i in 0..k { for j in 0..k {
                let (h, w) = ((y * stride + i) as i64 - pad as i64, (xq * stride + j) as i64 - pad as i64);
                if h >= 0 && w >= 0 && (h as usize) < hw && (w as usize) < hw { z += xv[((ni * c + ci) * hw + h as usize) * hw + w as usize] as i128; }
            }}
            sums.push(z);
        }}}}
        prop_assert_eq!(out[0].0.data(), &sums.iter().map(|&z| z as u64).collect::<Vec<_>>()[..]);
        let floor: Vec<i128> = sums.iter().map(|&z| z.div_euclid((k * k) as i128)).collect();
        let tally = check_quotients(out[0].1.data(), &floor, (k * k) as u128);
        prop_assert!(tally.wraps <= 2, "{tally:?}");
        assert_cost(&[out[0].2, out[1].2, out[2].2], cost::LOCAL, 0, 20);
        let declared = if (k * k).is_power_of_two() { cost::DIVIDE_EXACT } else { cost::DIVIDE };
        assert_cost(&[out[0].3, out[1].3, out[2].3], declared, n * c * oh * oh, (k * k).trailing_zeros());
    }
}

#[test]
fn fixed_point_values_near_the_range_limits_round_trip_and_add() {
    let fp = cryptgpu_runtime::FixedPoint::default();
    let big = fp.max_abs() - 1.0;
    let x = Tensor::new(&[6], vec![big, -big - 0.5, 0.0, 1.0 / (1 << T) as f64, -1.0 / (1 << T) as f64, 12345.678])
        .unwrap();
    let s = session();
    let [out, _, _] = s
        .run(|p| {
            let xs = p.share_fixed(0, (p.id() == 0).then_some(&x), &[6])?;
            let neg = p.neg(&xs)?;
            let back = p.sub(&xs, &neg)?; // 2x wraps for the extremes: compare in the ring
            Ok((p.reveal_fixed(&xs)?, p.reveal(&back)?))
        })
        .unwrap();
    let rounded: Vec<f64> = x.data().iter().map(|&v| fp.decode(fp.encode(v).unwrap())).collect();
    assert_eq!(out.0.data(), &rounded[..]);
    let want: Vec<u64> = x.data().iter().map(|&v| fp.encode(v).unwrap().wrapping_mul(2)).collect();
    assert_eq!(out.1.data(), &want[..]);
}

#[test]
fn mul_public_real_and_a_quotient_below_one_ulp() {
    let x = Tensor::new(&[3], vec![1.5, -2.25, 1.0]).unwrap();
    let c = Tensor::new(&[3], vec![-0.5, 4.0, 3.0]).unwrap();
    let s = session();
    let [out, _, _] = s
        .run(|p| {
            let xs = p.share_fixed(1, (p.id() == 1).then_some(&x), &[3])?;
            let y = p.mul_public(&xs, &c)?;
            let tiny = p.div_public(&xs, 1 << 30)?; // 1.5 / 2^30 is below one ulp at t = 20: 0 or 1 ulp
            Ok((p.reveal_fixed(&y)?, p.reveal(&tiny)?))
        })
        .unwrap();
    for (g, w) in out.0.data().iter().zip([-0.75, -9.0, 3.0]) {
        assert!((g - w).abs() <= 1.0 / (1 << T) as f64, "{g} vs {w}");
    }
    for (&q, &v) in out.1.data().iter().zip(x.data()) {
        let floor = ((v * (1 << T) as f64) as i64).div_euclid(1 << 30);
        assert!(q as i64 == floor || q as i64 == floor + 1, "{} for {v}", q as i64);
    }
}

/// Small deterministic generator for shapes' contents inside proptest cases (the seed itself is random).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 ^ (self.0 >> 29)
    }
    /// Uniform in [-m, m].
    fn range(&mut self, m: i64) -> i64 {
        (self.next() % (2 * m as u64 + 1)) as i64 - m
    }
}

#[test]
fn zero_shares_sum_and_xor_to_zero_and_are_not_zero() {
    use cryptgpu_runtime::protocols::ZeroKind;
    let s = session();
    let out =
        s.run(|p| Ok((p.zero_share(ZeroKind::Arithmetic, 1000)?, p.zero_share(ZeroKind::Binary, 1000)?))).unwrap();
    for e in 0..1000 {
        assert_eq!(out[0].0[e].wrapping_add(out[1].0[e]).wrapping_add(out[2].0[e]), 0);
        assert_eq!(out[0].1[e] ^ out[1].1[e] ^ out[2].1[e], 0);
    }
    assert!(out[0].0.iter().filter(|&&x| x == 0).count() < 2 && out[1].1.iter().filter(|&&x| x == 0).count() < 2);
    assert_ne!(out[0].0, out[1].0);
}
