//! Non-linear functions (exp, reciprocal, inverse square root, log, softmax) against f64 on fresh random inputs
//! across their whole stated domains and at their edges, with the documented error bounds and the declared rounds
//! asserted.

mod common;

use cryptgpu_runtime::protocols::exp::ExpConfig;
use cryptgpu_runtime::protocols::softmax::softmax_error_bound;
use cryptgpu_runtime::protocols::TruncationMode;
use cryptgpu_runtime::protocols::{cost, log, rsqrt, softmax};
use cryptgpu_runtime::{Config, Party, Result, Session, Share, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const T: u32 = 20;
const ULP: f64 = 1.0 / (1u64 << T) as f64;

fn rng() -> StdRng {
    let seed: u64 = rand::random();
    eprintln!("seed {seed}");
    StdRng::seed_from_u64(seed)
}

fn session(mode: TruncationMode) -> Session {
    Session::new(Config { truncation: mode, ..Config::default() }).expect("session")
}

/// Round to the fixed-point grid (what the parties actually share).
fn grid(v: f64) -> f64 {
    (v / ULP).round() * ULP
}

/// Share `x` from party 0, apply `f` once, reveal: the outputs and the rounds each party counted for `f`.
fn run_one(
    mode: TruncationMode,
    shape: &[usize],
    x: &[f64],
    f: impl Fn(&mut Party, &Share) -> Result<Share> + Sync,
) -> (Vec<f64>, [u64; 3]) {
    let input = Tensor::new(shape, x.to_vec()).unwrap();
    let out = session(mode)
        .run(|p| {
            let xs = p.share_fixed(0, (p.id() == 0).then_some(&input), shape)?;
            let y = f(p, &xs)?;
            let rounds = p.last_call_stats().rounds;
            Ok((p.reveal_fixed(&y)?.data().to_vec(), rounds))
        })
        .unwrap();
    (out[0].0.clone(), [out[0].1, out[1].1, out[2].1])
}

/// Log-uniform positive values between `2^lo` and `2^hi`.
fn log_uniform(r: &mut StdRng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n).map(|_| grid(r.gen_range(lo..hi).exp2()).max(ULP)).collect()
}

/// Powers of two and their neighbours one ulp away, over `2^lo ..= 2^hi`.
fn power_edges(lo: i32, hi: i32) -> Vec<f64> {
    (lo..=hi).flat_map(|k| [2f64.powi(k), 2f64.powi(k) - ULP, 2f64.powi(k) + ULP]).filter(|&v| v >= ULP).collect()
}

#[test]
fn exp_is_within_its_bound_on_the_whole_line() {
    let mut r = rng();
    let cfg = ExpConfig::default();
    let mut x: Vec<f64> = (0..150).map(|_| grid(r.gen_range(-20.0..0.0))).collect();
    x.extend((0..40).map(|_| grid(r.gen_range(-300.0..-20.0))));
    x.extend((0..40).map(|_| grid(r.gen_range(0.0..cfg.max_input))));
    x.extend((0..20).map(|_| grid(r.gen_range(cfg.max_input..30.0))));
    x.extend([
        0.0,
        -ULP,
        ULP,
        -2.0,
        -255.9,
        -256.0,
        -257.0,
        -1000.0,
        -(2f64.powi(30)),
        4.0,
        4.0 + ULP,
        1e6,
        2f64.powi(30),
    ]);
    let n = x.len();
    let (y, rounds) = run_one(TruncationMode::Exact, &[n], &x, |p, s| p.exp(s));
    assert_eq!(rounds, [cost::exp_rounds(cfg.iterations, TruncationMode::Exact); 3]);
    let big_n = (cfg.iterations as f64).exp2();
    let (mut worst_neg, mut worst_pos) = (0f64, 0f64);
    for (&xi, &yi) in x.iter().zip(&y) {
        if xi <= 0.0 {
            let err = (yi - xi.exp()).abs();
            worst_neg = worst_neg.max(err);
            assert!(err <= cfg.error_bound_nonpositive(T), "exp({xi}) = {yi}, want {}", xi.exp());
        } else {
            let xc = xi.min(cfg.max_input);
            let want = if xi <= cfg.max_input { xi.exp() } else { (1.0 + xc / big_n).powf(big_n) };
            let rel = (yi / want - 1.0).abs();
            if xi <= cfg.max_input {
                worst_pos = worst_pos.max(rel);
            }
            assert!(rel <= cfg.relative_error_bound(xc, T), "exp({xi}) = {yi}, want {want} (relative {rel})");
        }
    }
    eprintln!(
        "exp: worst abs error for x ≤ 0: {worst_neg:.3e} (bound {:.3e}); worst relative for 0 < x ≤ 4: {worst_pos:.3e}",
        cfg.error_bound_nonpositive(T)
    );
}

#[test]
fn reciprocal_converges_over_the_whole_fixed_point_range() {
    let mut r = rng();
    let mut a = log_uniform(&mut r, 300, -20.0, 42.9);
    a.extend(log_uniform(&mut r, 60, 8.0, 21.0)); // sums ≥ 400, where CrypTen diverges
    a.extend(power_edges(-20, 42));
    a.extend([ULP, 2.0 * ULP, 3.0 * ULP, 400.0, 1000.0, 2f64.powi(43) - 1.0]);
    let n_pos = a.len();
    a.extend([0.0, -ULP, -1.0, -1000.0]);
    let n = a.len();
    for mode in [TruncationMode::Exact, TruncationMode::Probabilistic] {
        let (y, rounds) = run_one(mode, &[n], &a, |p, s| p.reciprocal(s));
        assert_eq!(rounds, [cost::reciprocal_rounds(3, mode); 3], "{mode:?}");
        let mut worst_rel = 0f64;
        for (&ai, &yi) in a[..n_pos].iter().zip(&y) {
            let want = 1.0 / ai;
            let err = (yi - want).abs();
            assert!(err <= 2f64.powi(2 - T as i32) * want + 2.0 * ULP, "{mode:?}: 1/{ai} = {yi}, want {want}");
            if want >= 1.0 {
                worst_rel = worst_rel.max(err / want);
            }
        }
        for (&ai, &yi) in a[n_pos..].iter().zip(&y[n_pos..]) {
            assert!(yi.abs() <= 2.0 * ULP, "{mode:?}: 1/{ai} outside the domain gave {yi}, documented 0");
        }
        eprintln!(
            "reciprocal ({mode:?}): worst relative error {worst_rel:.3e} (bound {:.3e})",
            2f64.powi(2 - T as i32)
        );
    }
}

#[test]
fn rsqrt_is_within_its_bound_over_the_whole_range() {
    let mut r = rng();
    let mut a = log_uniform(&mut r, 300, -20.0, 42.9);
    a.extend(power_edges(-20, 42));
    a.extend([ULP, 2.0 * ULP, grid(1e-5), 0.5, 1.0, 2f64.powi(43) - 1.0]);
    let n_pos = a.len();
    a.extend([0.0, -ULP, -3.0]);
    let n = a.len();
    let (y, rounds) = run_one(TruncationMode::Exact, &[n], &a, |p, s| p.rsqrt(s));
    assert_eq!(rounds, [rsqrt::rsqrt_rounds(T, 3, TruncationMode::Exact); 3]);
    let mut worst_rel = 0f64;
    for (&ai, &yi) in a[..n_pos].iter().zip(&y) {
        let want = 1.0 / ai.sqrt();
        let err = (yi - want).abs();
        assert!(err <= 2f64.powi(3 - T as i32) * want + 2.0 * ULP, "1/√{ai} = {yi}, want {want}");
        if want >= 1.0 {
            worst_rel = worst_rel.max(err / want);
        }
    }
    for (&ai, &yi) in a[n_pos..].iter().zip(&y[n_pos..]) {
        assert!(yi.abs() <= 2.0 * ULP, "1/√{ai} outside the domain gave {yi}, documented 0");
    }
    eprintln!("rsqrt: worst relative error {worst_rel:.3e} (bound {:.3e})", 2f64.powi(3 - T as i32));
}

#[test]
fn log_is_within_its_bound_over_the_whole_range() {
    let mut r = rng();
    let mut a = log_uniform(&mut r, 300, -20.0, 41.9);
    a.extend((0..60).map(|_| grid(r.gen_range(0.0..1.0)).max(ULP))); // probabilities
    a.extend(power_edges(-20, 41));
    a.extend([ULP, 1.0, 1.0 - ULP, 0.75, 2f64.powi(42) - 1.0]);
    let n_pos = a.len();
    a.extend([0.0, -ULP, -5.0]);
    let n = a.len();
    let (y, rounds) = run_one(TruncationMode::Exact, &[n], &a, |p, s| p.log(s));
    assert_eq!(rounds, [log::log_rounds(T, TruncationMode::Exact); 3]);
    let bound = 2f64.powi(3 - T as i32);
    let mut worst = 0f64;
    for (&ai, &yi) in a[..n_pos].iter().zip(&y) {
        let err = (yi - ai.ln()).abs();
        worst = worst.max(err);
        assert!(err <= bound, "ln {ai} = {yi}, want {}", ai.ln());
    }
    let clamp = -(T as f64) * std::f64::consts::LN_2;
    for (&ai, &yi) in a[n_pos..].iter().zip(&y[n_pos..]) {
        assert!((yi - clamp).abs() <= bound, "ln {ai} outside the domain gave {yi}, documented {clamp}");
    }
    eprintln!("log: worst abs error {worst:.3e} (bound {bound:.3e})");
}

#[test]
fn softmax_matches_plaintext_without_opening_the_logits() {
    let mut r = rng();
    let (rows, m) = (24, 10);
    let mut x = Vec::with_capacity(rows * m);
    for row in 0..rows {
        let scale = [0.5, 1.0, 3.0, 10.0, 50.0, 0.0][row % 6];
        let offset = [0.0, 1000.0, -1000.0, 7.5][row % 4];
        for k in 0..m {
            let v = match row {
                5 if k == 3 => 40.0,
                // the worst case of the row sum's error: the others where their total weight is near the maximum's
                7 | 11 => {
                    if k == 0 {
                        offset
                    } else {
                        offset - r.gen_range(2.0..5.0)
                    }
                }
                _ => r.gen_range(-1.0..1.0) * scale + offset,
            };
            x.push(grid(v));
        }
    }
    let cfg = ExpConfig::default();
    let (y, rounds) = run_one(TruncationMode::Exact, &[rows, m], &x, |p, s| p.softmax(s));
    assert_eq!(rounds, [softmax::softmax_rounds(m, cfg.iterations, TruncationMode::Exact); 3]);
    let bound = softmax_error_bound(m, cfg.iterations, T);
    let mut worst = 0f64;
    for row in 0..rows {
        let xs = &x[row * m..(row + 1) * m];
        let mx = xs.iter().cloned().fold(f64::MIN, f64::max);
        let s: f64 = xs.iter().map(|v| (v - mx).exp()).sum();
        for k in 0..m {
            let want = (xs[k] - mx).exp() / s;
            let err = (y[row * m + k] - want).abs();
            worst = worst.max(err);
            assert!(err <= bound, "row {row} col {k}: {} want {want}", y[row * m + k]);
        }
    }
    eprintln!("softmax: worst abs error {worst:.3e} (bound {bound:.3e})");
}

#[test]
fn softmax_over_ten_classes_sends_exactly_its_declared_bytes() {
    for mode in [TruncationMode::Exact, TruncationMode::Probabilistic] {
        let (rows, m) = (7, 10);
        let input =
            Tensor::new(&[rows, m], (0..rows * m).map(|i| ((i * 37) % 23) as f64 / 4.0 - 2.0).collect()).unwrap();
        let out = session(mode)
            .run(|p| {
                let xs = p.share_fixed(0, (p.id() == 0).then_some(&input), &[rows, m])?;
                p.softmax(&xs)?;
                Ok(p.last_call_stats())
            })
            .unwrap();
        let measured: u64 = out.iter().map(|s| s.bytes_sent).sum();
        assert_eq!(measured, softmax::softmax_total_bytes(rows, m, 8, T, mode), "{mode:?}: {out:?}");
        assert!(out.iter().all(|s| s.rounds == softmax::softmax_rounds(m, 8, mode)));
    }
}
