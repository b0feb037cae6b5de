//! Bit transposes on the CPU: 64×64 bit-matrix transposes, one block of 64 elements at a time.

use cryptgpu_codegen::{BitKernel, BitOp};
use rayon::prelude::*;

/// Transpose a 64×64 bit matrix in place: afterwards bit `c` of word `r` is what bit `r` of word `c` was.
pub fn transpose64(a: &mut [u64; 64]) {
    let mut j = 32;
    let mut m: u64 = 0x0000_0000_ffff_ffff;
    while j != 0 {
        let mut k = 0;
        while k < 64 {
            // swap the off-diagonal j×j blocks: high bits of a[k] with low bits of a[k + j]
            let t = ((a[k] >> j) ^ a[k + j]) & m;
            a[k] ^= t << j;
            a[k + j] ^= t;
            k = (k + j + 1) & !j;
        }
        j >>= 1;
        m ^= m << j;
    }
}

pub(super) fn run(k: &BitKernel, input: &[u64], output: &mut [u64]) {
    let (n, w, planes) = (k.n, k.words_per_plane(), k.planes);
    match k.op {
        BitOp::ToPlanes => {
            // One block of 64 elements per task; each block writes word `b` of every plane.
            let blocks: Vec<[u64; 64]> = (0..w)
                .into_par_iter()
                .map(|b| {
                    let mut t = [0u64; 64];
                    let src = &input[64 * b..(64 * b + 64).min(n)];
                    t[..src.len()].copy_from_slice(src);
                    transpose64(&mut t);
                    t
                })
                .collect();
            for (i, plane) in output.chunks_mut(w.max(1)).take(planes).enumerate() {
                for (word, t) in plane.iter_mut().zip(&blocks) {
                    *word = t[i];
                }
            }
        }
        BitOp::FromPlanes => {
            output.par_chunks_mut(64).enumerate().for_each(|(b, out)| {
                let mut t = [0u64; 64];
                for (i, ti) in t.iter_mut().enumerate().take(planes) {
                    *ti = input[i * w + b];
                }
                transpose64(&mut t);
                out.copy_from_slice(&t[..out.len()]);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_matches_the_definition_and_round_trips() {
        let mut a = [0u64; 64];
        for (r, x) in a.iter_mut().enumerate() {
            *x = (r as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (r as u64).rotate_left(17);
        }
        let orig = a;
        transpose64(&mut a);
        for (r, row) in a.iter().enumerate() {
            for (c, col) in orig.iter().enumerate() {
                assert_eq!((row >> c) & 1, (col >> r) & 1, "bit ({r}, {c})");
            }
        }
        transpose64(&mut a);
        assert_eq!(a, orig);
    }

    #[test]
    fn planes_round_trip_for_ragged_sizes() {
        for (n, planes) in [(1, 64), (63, 64), (64, 1), (65, 3), (200, 64)] {
            let x: Vec<u64> = (0..n as u64).map(|i| i.wrapping_mul(0xc2b2_ae3d_27d4_eb4f)).collect();
            let to = BitKernel { name: "to".into(), op: BitOp::ToPlanes, n, planes };
            let mut p = vec![0; to.out_len()];
            run(&to, &x, &mut p);
            for i in 0..planes {
                for e in 0..n {
                    assert_eq!((p[i * to.words_per_plane() + e / 64] >> (e % 64)) & 1, (x[e] >> i) & 1);
                }
            }
            let from = BitKernel { op: BitOp::FromPlanes, ..to };
            let mut back = vec![0; n];
            run(&from, &p, &mut back);
            let mask = if planes == 64 { u64::MAX } else { (1u64 << planes) - 1 };
            assert_eq!(back, x.iter().map(|v| v & mask).collect::<Vec<_>>());
        }
    }
}
