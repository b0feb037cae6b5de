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
        prop_assert_eq!(rounds(0), vec![8; 3]);
        prop_assert_eq!(rounds(1), vec![10; 3]);
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
