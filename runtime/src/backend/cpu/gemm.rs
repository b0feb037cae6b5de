//! Ring GEMM on the CPU: `C = Σ_j A_j · B_j` over Z_2^64.
//!
//! The blocks are laid side by side (A) and stacked (B) into one product over the concatenated inner dimension.

use rayon::prelude::*;

/// `Σ_j A_j · B_j` for row-major `A_j` (`m × k_j`) and `B_j` (`k_j × n`).
pub fn block_gemm(m: usize, n: usize, k_blocks: &[usize], a: &[&[u64]], b: &[&[u64]]) -> Vec<u64> {
    let k: usize = k_blocks.iter().sum();
    let mut c = vec![0u64; m * n];
    if k_blocks.len() == 1 {
        ring_gemm(m, n, k, a[0], b[0], &mut c);
        return c;
    }
    let mut a_cat = vec![0u64; m * k];
    a_cat.par_chunks_mut(k.max(1)).enumerate().for_each(|(i, row)| {
        let mut at = 0;
        for (aj, &kj) in a.iter().zip(k_blocks) {
            row[at..at + kj].copy_from_slice(&aj[i * kj..(i + 1) * kj]);
            at += kj;
        }
    });
    let b_cat: Vec<u64> = b.concat();
    ring_gemm(m, n, k, &a_cat, &b_cat, &mut c);
    c
}

/// `C = A · B` over Z_2^64 (wrapping), row-major; `C` is overwritten.
pub fn ring_gemm(m: usize, n: usize, k: usize, a: &[u64], b: &[u64], c: &mut [u64]) {
    assert!(
        a.len() == m * k && b.len() == k * n && c.len() == m * n,
        "ring_gemm: slice lengths do not match the shape"
    );
    c.par_chunks_mut(n.max(1)).enumerate().for_each(|(i, row)| {
        row.fill(0);
        for (kk, &aik) in a[i * k..(i + 1) * k].iter().enumerate() {
            for (o, &bv) in row.iter_mut().zip(&b[kk * n..(kk + 1) * n]) {
                *o = o.wrapping_add(aik.wrapping_mul(bv));
            }
        }
    });
}
