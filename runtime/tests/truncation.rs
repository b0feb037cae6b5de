//! The probabilistic truncation fails with probability (|z| + 1)/2^64 per element (documented in
//! `protocols::reshare` and `protocols::divide`): measure the rate at magnitudes where failures are frequent.

mod common;

use common::{check_quotients, session};
use cryptgpu_runtime::protocols::TruncationMode;
use cryptgpu_runtime::{Config, Conv2dParams, RingTensor, Session};

const N: usize = 100_000;

fn assert_rate(name: &str, wraps: usize, z_abs: u64, nonneg: bool) {
    let p = (z_abs as f64 + if nonneg { 1.0 } else { 0.0 }) / 2f64.powi(64);
    let (mean, sd) = (N as f64 * p, (N as f64 * p * (1.0 - p)).sqrt());
    assert!(
        (wraps as f64 - mean).abs() <= 6.0 * sd,
        "{name}: {wraps} failures in {N}, documented rate gives {mean:.0} ± {sd:.0}"
    );
}

#[test]
fn truncation_failure_rate_matches_the_documented_probability() {
    for (z, bits) in [(1i64 << 60, 20u32), (-(1i64 << 60), 20), (1 << 58, 13), (3 << 59, 31)] {
        let x = RingTensor::new(&[N], vec![z as u64; N]).unwrap();
        let s = session();
        let [q, _, _] = s
            .run(|p| {
                p.set_truncation(TruncationMode::Probabilistic);
                let xs = p.share(0, (p.id() == 0).then_some(&x), &[N])?;
                let q = p.truncate(&xs, bits)?;
                p.reveal(&q)
            })
            .unwrap();
        let tally = check_quotients(q.data(), &vec![(z as i128) >> bits; N], 1 << bits);
        assert_rate(&format!("truncate({z}, {bits})"), tally.wraps, z.unsigned_abs(), z >= 0);
    }
}

#[test]
fn fused_mul_truncation_failure_rate_matches_the_documented_probability() {
    // x = 2^40 ulps, y = 1.0 = 2^20 ulps: z = 2^60 before the truncation by 20 bits.
    let x = RingTensor::new(&[N], vec![1 << 40; N]).unwrap();
    let y = RingTensor::new(&[N], vec![1 << 20; N]).unwrap();
    let s = session();
    let [q, _, _] = s
        .run(|p| {
            p.set_truncation(TruncationMode::Probabilistic);
            let xs = p.share(0, (p.id() == 0).then_some(&x), &[N])?;
            let ys = p.share(1, (p.id() == 1).then_some(&y), &[N])?;
            let z = p.mul(&xs, &ys)?;
            p.reveal(&z)
        })
        .unwrap();
    let tally = check_quotients(q.data(), &vec![1i128 << 40; N], 1 << 20);
    assert_rate("mul", tally.wraps, 1 << 60, true);
    // and at magnitude 1 × 1 no failure shows
    assert!(tally.exact > 0);
}

#[test]
fn exact_truncation_never_fails_where_the_probabilistic_one_does() {
    // 10^7 truncations of values up to 2^59 in magnitude (the probabilistic mode fails up to 1/32 of these),
    // standalone and fused into products.
    const M: usize = 1_000_000;
    let mut seed = 0x1234_5678_9abc_def0u64;
    let s = session();
    let mut checked = 0usize;
    for round in 0..10 {
        let vals: Vec<u64> = (0..M)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let mag = (seed >> 3) >> (2 + (seed % 8)); // magnitudes up to 2^59
                if seed & 1 == 0 {
                    mag
                } else {
                    mag.wrapping_neg()
                }
            })
            .collect();
        let x = RingTensor::new(&[M], vals.clone()).unwrap();
        let bits = 12 + (round as u32 % 20);
        let [q, _, _] = s
            .run(|p| {
                let xs = p.share(0, (p.id() == 0).then_some(&x), &[M])?;
                let q = p.truncate(&xs, bits)?;
                p.reveal(&q)
            })
            .unwrap();
        let floor: Vec<i128> = vals.iter().map(|&v| (v as i64 as i128) >> bits).collect();
        let tally = check_quotients(q.data(), &floor, 1 << bits);
        assert_eq!(tally.wraps, 0, "exact truncation by {bits} bits failed");
        checked += M;
    }
    assert_eq!(checked, 10_000_000);
    // products in the exact mode: z = 2^40 · 2^20 = 2^60 (the probabilistic mode fails 1/16 of these)
    let x = RingTensor::new(&[M], vec![1 << 40; M]).unwrap();
    let y = RingTensor::new(&[M], vec![(1u64 << 20).wrapping_neg(); M]).unwrap();
    let [z, _, _] = s
        .run(|p| {
            let xs = p.share(0, (p.id() == 0).then_some(&x), &[M])?;
            let ys = p.share(1, (p.id() == 1).then_some(&y), &[M])?;
            let z = p.mul(&xs, &ys)?;
            p.reveal(&z)
        })
        .unwrap();
    let tally = check_quotients(z.data(), &vec![-(1i128 << 40); M], 1 << 20);
    assert_eq!(tally.wraps, 0);
}

/// Everything one party saw and computed in [`run_products`]: its pieces of every result, its view and its
/// communication.
type PartyRun = (Vec<(Vec<u64>, Vec<u64>)>, Vec<cryptgpu_runtime::party::ViewEntry>, cryptgpu_runtime::Stats);

/// A matmul, a convolution with a bias and an elementwise product of ring values whose pre-truncation values lie
/// near the range edges `±2^62`, under exact truncation, fused or staged, in a session whose keys come from `seed`.
fn run_products(seed: u64, fused: bool, x: &RingTensor, y: &RingTensor, w: &RingTensor) -> [PartyRun; 3] {
    let config = Config { insecure_test_seed: Some(seed), ..Config::default() };
    let s = Session::new(config).unwrap();
    s.run(|p| {
        p.set_truncation_fusion(fused);
        let xs = p.share(0, (p.id() == 0).then_some(x), x.shape())?;
        let ys = p.share(1, (p.id() == 1).then_some(y), y.shape())?;
        let ws = p.share(1, (p.id() == 1).then_some(w), w.shape())?;
        let view = p.record_view();
        let before = p.total_stats();
        let mut pieces = Vec::new();
        for _ in 0..3 {
            // three calls: every party plays every role
            let z = p.matmul(&xs, &ys)?;
            pieces.push((z.mine().to_vec(), z.next().to_vec()));
        }
        // conv: x (m×1) as a [1, 1, 1, m] image, w as a [1, 1, 1, 2] kernel, with a bias of 3.0
        let img = xs.clone().reshaped(&[1, 1, 1, x.len()]).unwrap();
        let kernel = ws.reshaped(&[1, 1, 1, w.len()]).unwrap();
        let bias = p.share(2, (p.id() == 2).then(|| RingTensor::new(&[1], vec![3 << 20]).unwrap()).as_ref(), &[1])?;
        let c = p.conv2d(&img, &kernel, Some(&bias), Conv2dParams::default())?;
        pieces.push((c.mine().to_vec(), c.next().to_vec()));
        let e = p.mul(&xs, &xs)?;
        pieces.push((e.mine().to_vec(), e.next().to_vec()));
        p.stop_recording_view();
        let entries = view.lock().unwrap().clone();
        Ok((pieces, entries, p.total_stats() - before))
    })
    .unwrap()
}

fn lcg(state: &mut u64) -> u64 {
    *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *state
}

/// A value of magnitude in `[2^31 − 2^12 − 2^20, 2^31 − 2^12]`, either sign.
fn edge(state: &mut u64) -> u64 {
    let r = lcg(state);
    let mag = (1u64 << 31) - (1 << 12) - ((r >> 20) % (1 << 20));
    if r & 1 == 0 {
        mag
    } else {
        mag.wrapping_neg()
    }
}

#[test]
fn fused_exact_truncation_matches_the_staged_plan_bit_for_bit_near_the_range_edges() {
    // x (m×1), y (1×n) with entries in ±[2^31 − 2^12 − 2^20, 2^31 − 2^12]: z = x·y (k = 1) lies within 2^53 of
    // ±2^62 (and below it by at least 2^44 − 2^25), as does x ⊙ x; the conv adds to x_j·w_0 a term below 2^41 and
    // the bias 3.0 (2^41.6 before the truncation).
    let mut state = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    println!("seed {state:#x}");
    let (m, n) = (37, 29);
    let x = RingTensor::new(&[m, 1], (0..m).map(|_| edge(&mut state)).collect()).unwrap();
    let y = RingTensor::new(&[1, n], (0..n).map(|_| edge(&mut state)).collect()).unwrap();
    let small = (lcg(&mut state) % (1 << 11)).wrapping_sub(1 << 10);
    let w = RingTensor::new(&[2], vec![edge(&mut state), small]).unwrap();
    let key = lcg(&mut state);
    let fused = run_products(key, true, &x, &y, &w);
    let staged = run_products(key, false, &x, &y, &w);
    for (party, (f, s)) in fused.iter().zip(&staged).enumerate() {
        assert_eq!(f.2, s.2, "party {party}: communication differs");
        assert_eq!(f.1, s.1, "party {party}: the messages differ");
        for (call, (fp, sp)) in f.0.iter().zip(&s.0).enumerate() {
            assert_eq!(fp, sp, "party {party}, product {call}: the shares differ");
        }
    }
    // and the results are the exact truncations: reconstruct from party 0's and party 1's pieces
    let xv: Vec<i128> = x.data().iter().map(|&v| v as i64 as i128).collect();
    let yv: Vec<i128> = y.data().iter().map(|&v| v as i64 as i128).collect();
    for call in 0..3 {
        let (a, b) = &fused[0].0[call];
        let (_, c) = &fused[1].0[call];
        let got: Vec<u64> = (0..m * n).map(|e| a[e].wrapping_add(b[e]).wrapping_add(c[e])).collect();
        let floor: Vec<i128> = (0..m * n).map(|e| (xv[e / n] * yv[e % n]) >> 20).collect();
        let z_max = (0..m * n).map(|e| (xv[e / n] * yv[e % n]).unsigned_abs()).max().unwrap();
        assert!(z_max > (1u128 << 62) - (1u128 << 53), "the inputs reach the range edge");
        assert_eq!(check_quotients(&got, &floor, 1 << 20).wraps, 0);
    }
}
