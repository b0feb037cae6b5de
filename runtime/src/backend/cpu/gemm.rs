//! Ring GEMM on the CPU: `C = Σ_j A_j · B_j` over Z_2^64.
//!
//! The A blocks are laid side by side (a copy of `m × Σk_j` words, small next to the product) and the B blocks
//! are read in place as one stacked matrix, so the product runs over the concatenated inner dimension in one
//! pass of the [`ring_gemm`] kernel.

pub use super::ring_gemm::{ring_gemm, ring_gemm_stacked, ring_gemm_with_kernel, Kernel};
use rayon::prelude::*;

/// `Σ_j A_j · B_j` for row-major `A_j` (`m × k_j`) and `B_j` (`k_j × n`).
pub fn block_gemm(m: usize, n: usize, k_blocks: &[usize], a: &[&[u64]], b: &[&[u64]]) -> Vec<u64> {
    let k: usize = k_blocks.iter().sum();
    let mut c = vec![0u64; m * n];
    if n == 0 || m == 0 {
        return c;
    }
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
    ring_gemm_stacked(m, n, &a_cat, b, &mut c);
    c
}
