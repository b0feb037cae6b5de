use cryptgpu_runtime::backend::cpu::gemm::{ring_gemm, ring_gemm_blocks, ring_gemm_with_kernel, Kernel};

struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn vec(&mut self, len: usize) -> Vec<u64> {
        (0..len).map(|_| self.next()).collect()
    }
}

fn naive(m: usize, n: usize, k: usize, a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut c = vec![0u64; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0u64;
            for p in 0..k {
                s = s.wrapping_add(a[i * k + p].wrapping_mul(b[p * n + j]));
            }
            c[i * n + j] = s;
        }
    }
    c
}

const KERNELS: [Kernel; 3] = [Kernel::Scalar, Kernel::Avx2, Kernel::Avx512];

fn check(m: usize, n: usize, k: usize, seed: u64) {
    let mut rng = SplitMix(seed ^ ((m * 1_000_003 + n * 1009 + k) as u64));
    let a = rng.vec(m * k);
    let b = rng.vec(k * n);
    let want = naive(m, n, k, &a, &b);
    for kern in KERNELS {
        // Pre-fill C with garbage: it must be overwritten.
        let mut c = rng.vec(m * n);
        let used = ring_gemm_with_kernel(kern, m, n, k, &a, &b, &mut c);
        assert!(used <= kern);
        assert!(c == want, "mismatch m={m} n={n} k={k} kernel={used:?}");
    }
    let mut c = rng.vec(m * n);
    ring_gemm(m, n, k, &a, &b, &mut c);
    assert!(c == want, "mismatch (default) m={m} n={n} k={k}");
}

#[test]
fn report_kernels() {
    for kern in KERNELS {
        eprintln!("{kern:?}: available={}", kern.is_available());
    }
    eprintln!("selected: {:?}", Kernel::selected());
}

#[test]
fn tiny_and_degenerate() {
    for &(m, n, k) in
        &[(0, 0, 0), (0, 5, 3), (4, 0, 3), (3, 5, 0), (1, 1, 1), (1, 1, 2), (2, 1, 1), (1, 7, 1), (3, 5, 7), (5, 3, 7)]
    {
        check(m, n, k, 1);
    }
}

#[test]
fn odd_shapes() {
    let dims = [1usize, 2, 3, 4, 5, 7, 8, 9, 11, 12, 13, 15, 16, 17, 23, 24, 25, 31, 33];
    let mut seed = 7;
    for &m in &dims {
        for &n in &dims {
            for &k in &[1usize, 3, 17, 65] {
                seed += 1;
                check(m, n, k, seed);
            }
        }
    }
    check(17, 33, 65, 99);
}

#[test]
fn medium_shapes_parallel() {
    for &(m, n, k) in &[
        (64, 64, 64),
        (100, 130, 70),
        (97, 101, 257),
        (128, 200, 384),
        (255, 129, 193),
        (37, 500, 90),
        (500, 37, 90),
        (1, 3000, 400),
        (3000, 1, 400),
        (200, 3, 1000),
    ] {
        check(m, n, k, 3);
    }
}

#[test]
fn large_k() {
    check(13, 19, 2000, 5);
    check(40, 70, 2000, 6);
    check(97, 65, 4099, 7);
}

#[test]
fn all_ones_extremes() {
    // u64::MAX entries stress every carry path.
    let (m, n, k) = (29, 31, 777);
    let a = vec![u64::MAX; m * k];
    let b = vec![u64::MAX; k * n];
    let want = naive(m, n, k, &a, &b);
    for kern in KERNELS {
        let mut c = vec![0; m * n];
        ring_gemm_with_kernel(kern, m, n, k, &a, &b, &mut c);
        assert!(c == want, "{kern:?}");
    }
}

#[test]
fn kernels_agree_large() {
    let (m, n, k) = (300, 260, 700);
    let mut rng = SplitMix(42);
    let a = rng.vec(m * k);
    let b = rng.vec(k * n);
    let mut reference = vec![0; m * n];
    ring_gemm_with_kernel(Kernel::Scalar, m, n, k, &a, &b, &mut reference);
    for kern in [Kernel::Avx2, Kernel::Avx512] {
        let mut c = vec![1; m * n];
        ring_gemm_with_kernel(kern, m, n, k, &a, &b, &mut c);
        assert!(c == reference, "{kern:?}");
    }
    // spot check against naive on a few entries
    for &(i, j) in &[(0, 0), (299, 259), (150, 17)] {
        let mut s = 0u64;
        for p in 0..k {
            s = s.wrapping_add(a[i * k + p].wrapping_mul(b[p * n + j]));
        }
        assert_eq!(reference[i * n + j], s);
    }
}

#[test]
#[should_panic]
fn length_mismatch_panics() {
    let mut c = vec![0; 4];
    ring_gemm(2, 2, 2, &[0; 3], &[0; 4], &mut c);
}

#[test]
fn column_superblocks() {
    // k large enough that B is packed in several column super-blocks.
    check(7, 1500, 2000, 8);
    check(40, 1100, 2100, 9);
}

#[test]
fn nested_in_rayon() {
    use rayon::prelude::*;
    let (m, n, k) = (70, 90, 300);
    let mut rng = SplitMix(11);
    let a = rng.vec(m * k);
    let b = rng.vec(k * n);
    let want = naive(m, n, k, &a, &b);
    (0..8).into_par_iter().for_each(|_| {
        let mut c = vec![0; m * n];
        ring_gemm(m, n, k, &a, &b, &mut c);
        assert!(c == want);
    });
}

#[test]
fn blocks_equal_the_concatenated_product() {
    let mut rng = SplitMix(99);
    for (m, n, ks) in [
        (5, 7, vec![3, 4]),
        (33, 65, vec![17, 1, 40]),
        (64, 300, vec![256, 256]),
        (2, 1, vec![1]),
        (100, 90, vec![300, 5, 700]),
    ] {
        let k: usize = ks.iter().sum();
        let a_blocks: Vec<Vec<u64>> = ks.iter().map(|kj| rng.vec(m * kj)).collect();
        let blocks: Vec<Vec<u64>> = ks.iter().map(|kj| rng.vec(kj * n)).collect();
        let b: Vec<u64> = blocks.concat();
        // [A_0 | A_1 | …] row by row
        let a: Vec<u64> = (0..m)
            .flat_map(|i| a_blocks.iter().zip(&ks).flat_map(move |(blk, &kj)| blk[i * kj..(i + 1) * kj].to_vec()))
            .collect();
        let arefs: Vec<&[u64]> = a_blocks.iter().map(|v| v.as_slice()).collect();
        let refs: Vec<&[u64]> = blocks.iter().map(|v| v.as_slice()).collect();
        let mut c = vec![7u64; m * n];
        ring_gemm_blocks(m, n, &arefs, &refs, &mut c);
        assert_eq!(c, naive(m, n, k, &a, &b), "{m}x{n} blocks {ks:?}");
    }
}
