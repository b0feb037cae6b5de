//! Comparisons, max/argmax over an axis and max pooling (forward and backward) against plaintext on fresh random
//! inputs, exact in the ring, with rounds and bytes per party asserted against the declared costs.

mod common;

use common::session;
use cryptgpu_runtime::protocols::cost::{self, Cost};
use cryptgpu_runtime::{Conv2dParams, Party, Result, RingTensor, Share, Stats, Tensor};
use proptest::prelude::*;

const T: u32 = 20;

fn bit(plane: &[u64], e: usize) -> bool {
    (plane[e / 64] >> (e % 64)) & 1 == 1
}

fn sorted_bytes(stats: [Stats; 3]) -> [u64; 3] {
    let mut b = stats.map(|s| s.bytes_sent);
    b.sort_unstable_by(|a, b| b.cmp(a));
    b
}

fn assert_stats(what: &str, stats: [Stats; 3], rounds: u64, bytes: [u64; 3]) {
    for s in stats {
        assert_eq!(s.rounds, rounds, "{what}: rounds {stats:?}");
    }
    assert_eq!(sorted_bytes(stats), bytes, "{what}: bytes {stats:?}");
}

/// Ring values in `(−2^62, 2^62)`: ties (a few repeated small values), zero, ±1 ulp, large magnitudes.
fn values(n: usize) -> impl Strategy<Value = Vec<i64>> {
    let big = 1i64 << 61;
    prop::collection::vec(
        prop_oneof![
            4 => -big..=big,
            3 => -3i64..=3,
            1 => Just(0i64),
            1 => Just(1i64 << T),
            1 => Just(-(1i64 << T)),
            1 => Just(big),
            1 => Just(-big),
            1 => Just((1i64 << 62) - 1),
            1 => Just(-(1i64 << 62) + 1),
        ],
        n,
    )
}

fn ring(shape: &[usize], v: &[i64]) -> RingTensor {
    RingTensor::new(shape, v.iter().map(|&x| x as u64).collect()).unwrap()
}

/// Share `x` from party 0, run `f`, and collect its result and its call's stats from every party.
fn run<R: Send>(x: &RingTensor, f: impl Fn(&mut Party, &Share) -> Result<R> + Sync) -> [(R, Stats); 3] {
    session()
        .run(|p| {
            let xs = p.share(0, (p.id() == 0).then_some(x), x.shape())?;
            let r = f(p, &xs)?;
            Ok((r, p.last_call_stats()))
        })
        .unwrap()
}

/// Plaintext max and first argmax of `x` `[pre, k, post]` over axis 1.
fn plain_max(x: &[i64], pre: usize, k: usize, post: usize) -> (Vec<i64>, Vec<u64>) {
    let mut best = vec![0i64; pre * post];
    let mut onehot = vec![0u64; x.len()];
    for a in 0..pre {
        for b in 0..post {
            let at = |i: usize| (a * k + i) * post + b;
            let win = (0..k).fold(0, |w, i| if x[at(i)] > x[at(w)] { i } else { w });
            best[a * post + b] = x[at(win)];
            onehot[at(win)] = 1;
        }
    }
    (best, onehot)
}

/// Plaintext max pooling: the maxima and the flat input index of each window's first maximum (padding never wins).
fn plain_pool(x: &[i64], [n, c, h, w]: [usize; 4], [kh, kw]: [usize; 2], p: Conv2dParams) -> (Vec<i64>, Vec<usize>) {
    let (s, pad) = (p.stride, p.padding);
    let (oh, ow) = ((h + 2 * pad - kh) / s + 1, (w + 2 * pad - kw) / s + 1);
    let (mut best, mut arg) = (Vec::new(), Vec::new());
    for ni in 0..n {
        for ci in 0..c {
            for y in 0..oh {
                for xq in 0..ow {
                    let mut win: Option<(i64, usize)> = None;
                    for i in 0..kh {
                        for j in 0..kw {
                            let (hh, ww) = ((y * s + i) as isize - pad as isize, (xq * s + j) as isize - pad as isize);
                            if hh < 0 || ww < 0 || hh as usize >= h || ww as usize >= w {
                                continue;
                            }
                            let idx = ((ni * c + ci) * h + hh as usize) * w + ww as usize;
                            if win.is_none_or(|(v, _)| x[idx] > v) {
                                win = Some((x[idx], idx));
                            }
                        }
                    }
                    let (v, idx) = win.expect("every window holds an input");
                    best.push(v);
                    arg.push(idx);
                }
            }
        }
    }
    (best, arg)
}

fn as_i64(t: &RingTensor) -> Vec<i64> {
    t.data().iter().map(|&v| v as i64).collect()
}

/// `(pre, k, post)` and the axis layout: `[pre, k, post]` axis 1, `[k, post]` axis 0, or `[pre, k]` axis 1.
fn axis_case() -> impl Strategy<Value = (usize, usize, usize, usize)> {
    (1usize..=3, 1usize..=9, 1usize..=4, 0usize..3).prop_map(|(pre, k, post, layout)| match layout {
        0 => (pre, k, post, 0),
        1 => (1, k, post, 1),
        _ => (pre, k, 1, 2),
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn max_and_argmax_over_an_axis_are_exact(
        (pre, k, post, layout) in axis_case(),
        data in values(3 * 9 * 4),
    ) {
        let (shape, axis) = match layout {
            0 => (vec![pre, k, post], 1),
            1 => (vec![k, post], 0),
            _ => (vec![pre, k], 1),
        };
        let x: Vec<i64> = data[..pre * k * post].to_vec();
        let xt = ring(&shape, &x);
        let out = run(&xt, |p, xs| {
            let m = p.max_axis(xs, axis)?;
            let m_stats = p.last_call_stats();
            let (am, oh) = p.argmax_axis(xs, axis)?;
            let a_stats = p.last_call_stats();
            Ok((p.reveal(&m)?, p.reveal(&am)?, p.reveal(&oh)?, m_stats, a_stats))
        });
        let (want_max, want_onehot) = plain_max(&x, pre, k, post);
        let r = &out[0].0;
        prop_assert_eq!(as_i64(&r.0), want_max.clone());
        prop_assert_eq!(as_i64(&r.1), want_max);
        prop_assert_eq!(r.2.data(), &want_onehot[..]);
        prop_assert_eq!(r.2.shape(), &shape[..]);
        let m = pre * post;
        assert_stats("max", out.each_ref().map(|o| o.0 .3), cost::max_rounds(k), cost::max_bytes(k, m));
        assert_stats("argmax", out.each_ref().map(|o| o.0 .4), cost::argmax_rounds(k), cost::argmax_bytes(k, m));
        prop_assert!(cost::max_rounds(k) <= 10 * (k as f64).log2().ceil() as u64);
    }

    #[test]
    fn max_pool2d_forward_and_backward_match_plaintext(
        (n, c, h, w) in (1usize..=2, 1usize..=2, 2usize..=7, 2usize..=7),
        (kh, kw, stride, pad) in (1usize..=3, 1usize..=3, 1usize..=3, 0usize..=1),
        data in values(2 * 2 * 7 * 7),
        grad in prop::collection::vec(any::<u64>(), 2 * 2 * 8 * 8),
    ) {
        let (kh, kw) = (kh.min(h), kw.min(w));
        let pad = if 2 * pad > kh.min(kw) { 0 } else { pad };
        let params = Conv2dParams { stride, padding: pad };
        let x: Vec<i64> = data[..n * c * h * w].to_vec();
        let (want, arg) = plain_pool(&x, [n, c, h, w], [kh, kw], params);
        let (oh, ow) = ((h + 2 * pad - kh) / stride + 1, (w + 2 * pad - kw) / stride + 1);
        let g = RingTensor::new(&[n, c, oh, ow], grad[..want.len()].to_vec()).unwrap();
        let xt = ring(&[n, c, h, w], &x);
        let out = session().run(|p| {
            let xs = p.share(0, (p.id() == 0).then_some(&xt), xt.shape())?;
            let gs = p.share(1, (p.id() == 1).then_some(&g), g.shape())?;
            let y = p.max_pool2d(&xs, [kh, kw], params)?;
            let y_stats = p.last_call_stats();
            let (y2, rec) = p.max_pool2d_with_argmax(&xs, [kh, kw], params)?;
            let a_stats = p.last_call_stats();
            let dx = p.max_pool2d_backward(&gs, &rec)?;
            let b_stats = p.last_call_stats();
            Ok((p.reveal(&y)?, p.reveal(&y2)?, p.reveal(&dx)?, [y_stats, a_stats, b_stats]))
        }).unwrap();
        let r = &out[0];
        prop_assert_eq!(r.0.shape(), &[n, c, oh, ow][..]);
        prop_assert_eq!(as_i64(&r.0), want.clone());
        prop_assert_eq!(as_i64(&r.1), want.clone());
        let mut want_dx = vec![0u64; x.len()];
        for (o, &idx) in arg.iter().enumerate() {
            want_dx[idx] = want_dx[idx].wrapping_add(g.data()[o]);
        }
        prop_assert_eq!(r.2.shape(), &[n, c, h, w][..]);
        prop_assert_eq!(r.2.data(), &want_dx[..]);
        let (kk, m) = (kh * kw, want.len());
        let st = |i: usize| out.each_ref().map(|o| o.3[i]);
        assert_stats("max_pool2d", st(0), cost::max_rounds(kk), cost::max_bytes(kk, m));
        assert_stats("max_pool2d_with_argmax", st(1), cost::argmax_rounds(kk), cost::argmax_bytes(kk, m));
        let back: Cost = cost::MAX_POOL2D_BACKWARD;
        assert_stats("max_pool2d_backward", st(2), back.rounds, back.bytes_for(kk * m, 20));
    }

    #[test]
    fn comparisons_match_plaintext(a in values(70), b in values(70), c in -4.0f64..4.0) {
        let n = a.len();
        let (x, y) = (ring(&[n], &a), ring(&[n], &b));
        // The public operand: y as reals; the reference compares with their encoding.
        let fp = cryptgpu_runtime::FixedPoint::default();
        let yt = Tensor::new(&[n], b.iter().map(|&v| fp.decode(v as u64)).collect()).unwrap();
        let y_pub: Vec<i64> = yt.encode(&fp).unwrap().data().iter().map(|&v| v as i64).collect();
        let out = session().run(|p| {
            let xs = p.share(0, (p.id() == 0).then_some(&x), &[n])?;
            let ys = p.share(1, (p.id() == 1).then_some(&y), &[n])?;
            let mut bits = Vec::new();
            let mut stats = Vec::new();
            type Cmp = fn(&mut Party, &Share, &Share) -> Result<cryptgpu_runtime::protocols::BinShare>;
            let shared: [Cmp; 4] =
                [Party::less_than, Party::greater_than, Party::greater_equal, Party::less_equal];
            for f in shared {
                let r = f(p, &xs, &ys)?;
                stats.push(p.last_call_stats());
                bits.push(p.reveal_bits(&r)?);
            }
            type PubCmp = fn(&mut Party, &Share, &Tensor) -> Result<cryptgpu_runtime::protocols::BinShare>;
            let public: [PubCmp; 4] = [
                Party::less_than_public,
                Party::greater_than_public,
                Party::greater_equal_public,
                Party::less_equal_public,
            ];
            for f in public {
                let r = f(p, &xs, &yt)?;
                stats.push(p.last_call_stats());
                bits.push(p.reveal_bits(&r)?);
            }
            type ScalarCmp = fn(&mut Party, &Share, f64) -> Result<cryptgpu_runtime::protocols::BinShare>;
            let scalar: [ScalarCmp; 4] = [
                Party::less_than_scalar,
                Party::greater_than_scalar,
                Party::greater_equal_scalar,
                Party::less_equal_scalar,
            ];
            for f in scalar {
                let r = f(p, &xs, c)?;
                stats.push(p.last_call_stats());
                bits.push(p.reveal_bits(&r)?);
            }
            Ok((bits, stats))
        }).unwrap();
        let cq = fp.encode(c).unwrap() as i64;
        let ops = [|u: i64, v: i64| u < v, |u, v| u > v, |u, v| u >= v, |u, v| u <= v];
        for (k, bits) in out[0].0.iter().enumerate() {
            for e in 0..n {
                let other = [b[e], y_pub[e], cq][k / 4];
                prop_assert_eq!(bit(bits, e), ops[k % 4](a[e], other), "comparison {} of {} and {}", k, a[e], other);
            }
        }
        for k in 0..12 {
            let st = out.each_ref().map(|o| o.1[k]);
            assert_stats("comparison", st, cost::comparison_rounds(), cost::comparison_bytes(n));
        }
    }
}

#[test]
fn ties_go_to_the_first_maximum_and_padding_never_wins() {
    // All-equal rows (ties everywhere), and a padded pooling of the most negative allowed inputs.
    let x = ring(&[2, 5], &[7, 7, 7, 7, 7, -3, 9, 9, -3, 9]);
    let out = run(&x, |p, xs| {
        let (m, oh) = p.argmax_axis(xs, 1)?;
        Ok((p.reveal(&m)?, p.reveal(&oh)?))
    });
    assert_eq!(as_i64(&out[0].0 .0), vec![7, 9]);
    assert_eq!(out[0].0 .1.data(), &[1, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
    let low = -(1i64 << 62) + 1;
    let x = ring(&[1, 1, 2, 2], &[low; 4]);
    let out = run(&x, |p, xs| {
        let (y, rec) = p.max_pool2d_with_argmax(xs, [2, 2], Conv2dParams { stride: 1, padding: 1 })?;
        Ok((p.reveal(&y)?, p.reveal(&rec.onehot)?))
    });
    assert_eq!(as_i64(&out[0].0 .0), vec![low; 9]);
    // Each window's winner is an input position: the one-hot sums to 1 per window and is 0 on every padded slot.
    let onehot = out[0].0 .1.data();
    for win in 0..9 {
        assert_eq!((0..4).map(|r| onehot[r * 9 + win]).sum::<u64>(), 1);
    }
}

#[test]
fn bad_arguments_are_errors() {
    let x = ring(&[1, 1, 4, 4], &[0; 16]);
    let out = run(&x, |p, xs| {
        Ok([
            p.max_axis(xs, 4).is_err(),
            p.max_pool2d(xs, [2, 2], Conv2dParams { stride: 1, padding: 2 }).is_err(),
            p.max_pool2d(&xs.clone().reshaped(&[16]).unwrap(), [2, 2], Conv2dParams::default()).is_err(),
            p.less_than_public(xs, &Tensor::new(&[3], vec![0.0; 3]).unwrap()).is_err(),
        ])
    });
    assert_eq!(out[0].0, [true; 4]);
}
