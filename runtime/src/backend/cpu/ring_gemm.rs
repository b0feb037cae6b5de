//! Dense matrix multiplication over the ring Z_2^64 (wrapping `u64` arithmetic).
//!
//! # Limb trick
//!
//! x86 SIMD has no cheap 64×64→64-bit lane multiply in AVX2, so every operand
//! is split into 32-bit limbs, `a = a_lo + 2^32·a_hi`.  Modulo 2^64,
//!
//! ```text
//! a·b = a_lo·b_lo + 2^32·(a_lo·b_hi + a_hi·b_lo)        (a_hi·b_hi·2^64 vanishes)
//! ```
//!
//! * `a_lo·b_lo` is an exact 64-bit product: `vpmuludq` multiplies the low 32
//!   bits of each 64-bit lane.  These products are summed in 64-bit lanes.
//! * The cross terms only matter modulo 2^32.  The A operand is packed a second
//!   time with its 32-bit halves swapped, `(a_hi, a_lo)`; one `vpmulld`
//!   (32-bit lane multiply) of that against the unmodified B lane `(b_lo, b_hi)`
//!   produces `a_hi·b_lo` in the low half and `a_lo·b_hi` in the high half of
//!   each 64-bit lane.  They are accumulated with 32-bit adds (no carry between
//!   halves), and once per output tile the halves are folded:
//!   `(x << 32) + (x & 0xffff_ffff_0000_0000)` equals `(x_lo + x_hi) << 32`
//!   modulo 2^64.
//!
//! All accumulations are exact modulo their lane width, so partial sums can
//! wrap freely: the result is bit-identical to the naive wrapping loop for
//! every input and every `k`.
//!
//! The AVX-512 path (IFMA + VNNI) uses a different split, `a = a0 + 2^52·a1`:
//! `a·b ≡ lo52(a0·b0) + 2^52·(hi52(a0·b0) + a0·b1 + a1·b0)`, where the bracket
//! only matters modulo 2^12.  `vpmadd52luq`/`vpmadd52huq` produce and
//! accumulate the two halves of `a0·b0` straight from the raw words (they read
//! only the low 52 bits), and a single `vpdpwssd` computes the 12-bit cross
//! terms of 16 outputs at once from 16-bit pairs packed alongside A and B.
//! That is 2.5 uops per 8 products instead of 4 for `vpmullq` + add or 5 for
//! the limb trick in zmm registers (see [`Kernel::Avx512`]'s kernel docs).
//!
//! # Blocking
//!
//! The driver is BLIS-shaped.  B is packed once per column super-block into
//! `KC × NR` micro-panels (zero padded at the right/bottom edges); A is packed
//! per task into `MR × KC` micro-panels (`MC` rows per task block, L2
//! resident).  The micro-kernel computes an `MR × NR` tile of C entirely in
//! registers over one `KC` slice, and adds it into C (or overwrites C on the
//! first `KC` slice).  Edge tiles are computed into a scratch tile and copied.
//!
//! # Parallelism
//!
//! The output is cut into (row block × column chunk) tasks which run on the
//! current rayon thread pool (`rayon::current_num_threads()` decides the
//! split); packing of B is also parallel.  Small products run on the calling
//! thread only.
//!
//! # Kernel selection
//!
//! [`ring_gemm`] picks the best kernel by runtime feature detection
//! (`is_x86_feature_detected!`).  The environment variable
//! `RING_GEMM_KERNEL=scalar|avx2|avx512` (read once per process) caps the
//! choice, and [`ring_gemm_with_kernel`] selects explicitly.  All kernels give
//! identical results.

#![deny(unsafe_op_in_unsafe_fn)]

use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::OnceLock;

/// Micro-kernel implementation used by [`ring_gemm_with_kernel`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kernel {
    /// Portable Rust (any architecture).
    Scalar,
    /// x86-64 AVX2 limb-trick kernel.
    Avx2,
    /// x86-64 AVX-512F + AVX-512IFMA + AVX-512VNNI kernel (Ice Lake /
    /// Sapphire Rapids and later, AMD Zen 4 and later).
    Avx512,
}

impl Kernel {
    /// Whether this kernel can run on the current CPU.
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512ifma")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The fastest available kernel that is not "above" `self`
    /// (order: `Scalar < Avx2 < Avx512`).
    pub fn downgrade_to_available(self) -> Kernel {
        [Kernel::Avx512, Kernel::Avx2, Kernel::Scalar]
            .into_iter()
            .find(|k| *k <= self && k.is_available())
            .unwrap_or(Kernel::Scalar)
    }

    /// The kernel [`ring_gemm`] uses: the best available one, capped by the
    /// `RING_GEMM_KERNEL` environment variable (read once per process).
    pub fn selected() -> Kernel {
        static SELECTED: OnceLock<Kernel> = OnceLock::new();
        *SELECTED.get_or_init(|| {
            let cap = match std::env::var("RING_GEMM_KERNEL").as_deref() {
                Ok("scalar") => Kernel::Scalar,
                Ok("avx2") => Kernel::Avx2,
                _ => Kernel::Avx512,
            };
            cap.downgrade_to_available()
        })
    }
}

/// C = A · B over Z_2^64 (wrapping), row-major, A is m×k, B is k×n, C is m×n
/// (overwritten).
///
/// Parallel over blocks of C on the current rayon pool; uses AVX-512 or AVX2
/// when the CPU has them (runtime detection, see [`Kernel::selected`]) and a
/// portable scalar kernel otherwise.  All paths give bit-identical results.
///
/// # Panics
///
/// Only if `a.len() != m * k`, `b.len() != k * n` or `c.len() != m * n`.
pub fn ring_gemm(m: usize, n: usize, k: usize, a: &[u64], b: &[u64], c: &mut [u64]) {
    ring_gemm_with_kernel(Kernel::selected(), m, n, k, a, b, c);
}

/// Like [`ring_gemm`] but with an explicit kernel choice.  If `kernel` is not
/// available on this CPU the best available lower kernel is used instead; the
/// kernel actually used is returned.
///
/// # Panics
///
/// Only if `a.len() != m * k`, `b.len() != k * n` or `c.len() != m * n`.
pub fn ring_gemm_with_kernel(
    kernel: Kernel,
    m: usize,
    n: usize,
    k: usize,
    a: &[u64],
    b: &[u64],
    c: &mut [u64],
) -> Kernel {
    assert!(k.checked_mul(n) == Some(b.len()), "ring_gemm: b.len() != k * n");
    assert!(m.checked_mul(k) == Some(a.len()), "ring_gemm: a.len() != m * k");
    gemm_blocks(kernel, m, n, k, &[a], &[b], c)
}

/// C = Σ_j A_j · B_j over Z_2^64: one product over the concatenated inner
/// dimension `[A_0 | A_1 | …] · [B_0; B_1; …]`, with the blocks (`A_j`
/// row-major `m × k_j`, `B_j` row-major `k_j × n`) read in place while
/// packing, so the concatenation costs no copy.  C is overwritten.
///
/// # Panics
///
/// Only if the block counts differ or the lengths are not `m × k_j`,
/// `k_j × n` and `m × n`.
pub fn ring_gemm_blocks(m: usize, n: usize, a_blocks: &[&[u64]], b_blocks: &[&[u64]], c: &mut [u64]) {
    assert!(a_blocks.len() == b_blocks.len(), "ring_gemm: as many A blocks as B blocks");
    let mut k = 0;
    for (a, b) in a_blocks.iter().zip(b_blocks) {
        let kj = b.len().checked_div(n).unwrap_or_else(|| a.len().checked_div(m).unwrap_or(0));
        assert!(kj.checked_mul(n) == Some(b.len()), "ring_gemm: a B block is not k_j × n");
        assert!(m.checked_mul(kj) == Some(a.len()), "ring_gemm: an A block is not m × k_j");
        k += kj;
    }
    gemm_blocks(Kernel::selected(), m, n, k, a_blocks, b_blocks, c);
}

fn gemm_blocks(kernel: Kernel, m: usize, n: usize, k: usize, a: &[&[u64]], b: &[&[u64]], c: &mut [u64]) -> Kernel {
    assert!(m.checked_mul(n) == Some(c.len()), "ring_gemm: c.len() != m * n");
    let kernel = kernel.downgrade_to_available();
    if m == 0 || n == 0 {
        return kernel;
    }
    if k == 0 {
        c.fill(0);
        return kernel;
    }
    match kernel {
        Kernel::Scalar => drive::<ScalarMicro>(m, n, k, a, b, c),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => drive::<x86::Avx2Micro>(m, n, k, a, b, c),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => drive::<x86::Avx512Micro>(m, n, k, a, b, c),
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("non-scalar kernels are never available off x86-64"),
    }
    kernel
}

// ---------------------------------------------------------------------------
// Micro-kernel interface and driver
// ---------------------------------------------------------------------------

/// Largest `MR * NR` of any micro-kernel (size of the edge scratch tile).
const MAX_TILE: usize = 256;

/// A register-tiled micro-kernel together with its packing format.
///
/// Packed A micro-panel: for each `p < kc`, for each row `r < MR`, `A_PARTS`
/// words `a_part(a[r][p], 0..A_PARTS)`.  Packed B micro-panel: for each
/// `p < kc`, `B_WORDS` words produced by `pack_b_row(b[p][j..j + w])`.
/// Padding rows/columns are zero.
trait Micro {
    const MR: usize;
    const NR: usize;
    const A_PARTS: usize;
    const B_WORDS: usize = Self::NR;
    /// K block: the `KC × NR` B micro-panel should sit in about half of L1.
    const KC: usize;
    /// Preferred row-block height (multiple of `MR`); A block is `MC × KC`.
    const MC: usize;

    fn a_part(x: u64, part: usize) -> u64;

    /// Pack one row of a B micro-panel; `src.len() <= NR`, `dst.len() ==
    /// B_WORDS`, missing columns are zero.
    #[inline(always)]
    fn pack_b_row(src: &[u64], dst: &mut [u64]) {
        let dst = &mut dst[..Self::NR];
        for (j, d) in dst.iter_mut().enumerate() {
            *d = src.get(j).copied().unwrap_or(0);
        }
    }

    /// `C[0..MR][0..NR] (+)= Apanel · Bpanel` where C has row stride `rsc`;
    /// overwrite instead of accumulate when `overwrite`.
    ///
    /// # Safety
    /// `pa` must point to `kc * MR * A_PARTS` readable words, `pb` to
    /// `kc * B_WORDS` readable words, `c` to an `MR × NR` tile with row stride
    /// `rsc` that is valid for reads and writes, and the CPU must support the
    /// kernel's target features.
    unsafe fn kernel(kc: usize, pa: *const u64, pb: *const u64, c: *mut u64, rsc: usize, overwrite: bool);
}

/// Portable kernel; exact same arithmetic, just wrapping_mul / wrapping_add.
struct ScalarMicro;

impl Micro for ScalarMicro {
    const MR: usize = 4;
    const NR: usize = 4;
    const A_PARTS: usize = 1;
    const KC: usize = 256;
    const MC: usize = 64;

    #[inline(always)]
    fn a_part(x: u64, _part: usize) -> u64 {
        x
    }

    unsafe fn kernel(kc: usize, pa: *const u64, pb: *const u64, c: *mut u64, rsc: usize, overwrite: bool) {
        // SAFETY: the caller guarantees the panel lengths (see trait docs).
        let pa = unsafe { std::slice::from_raw_parts(pa, kc * 4) };
        let pb = unsafe { std::slice::from_raw_parts(pb, kc * 4) };
        let mut acc = [[0u64; 4]; 4];
        for (av, bv) in pa.chunks_exact(4).zip(pb.chunks_exact(4)) {
            for (row, &x) in acc.iter_mut().zip(av) {
                for (cij, &y) in row.iter_mut().zip(bv) {
                    *cij = cij.wrapping_add(x.wrapping_mul(y));
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                // SAFETY: (r, j) lies inside the caller's MR × NR tile.
                unsafe {
                    let p = c.add(r * rsc + j);
                    *p = if overwrite { v } else { (*p).wrapping_add(v) };
                }
            }
        }
    }
}

/// Raw pointer to C shared between tasks that write disjoint tiles.
#[derive(Clone, Copy)]
struct SharedMut(*mut u64);
// SAFETY: tasks only ever write disjoint regions of C through this pointer.
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

/// 64-byte aligned, reusable scratch buffer of `u64`.
#[derive(Default)]
struct AlignedBuf {
    raw: Vec<u64>,
}

impl AlignedBuf {
    /// Returns an aligned mutable slice of exactly `len` words (contents
    /// unspecified).
    fn get(&mut self, len: usize) -> &mut [u64] {
        if self.raw.len() < len + 8 {
            self.raw = vec![0; len + 8];
        }
        let off = self.raw.as_ptr().align_offset(64).min(8);
        &mut self.raw[off..off + len]
    }
}

/// Packed-B buffers kept between calls: a fresh multi-megabyte buffer per call costs page faults and page
/// zeroing comparable to the packing itself. At most [`B_POOL_MAX`] are kept (one per concurrent caller).
static B_POOL: std::sync::Mutex<Vec<AlignedBuf>> = std::sync::Mutex::new(Vec::new());
const B_POOL_MAX: usize = 4;

thread_local! {
    static A_BUF: RefCell<AlignedBuf> = RefCell::new(AlignedBuf::default());
}

/// Products smaller than this many multiply-adds run on the calling thread.
const PAR_THRESHOLD: usize = 1 << 20;
/// Bound on the packed B super-block, in words (16 MiB; column super-blocks
/// of B are packed one at a time, at least one micro-panel wide).
const B_PACK_WORDS: usize = 1 << 23;

fn round_up(a: usize, b: usize) -> usize {
    a.div_ceil(b) * b
}

/// Pack columns `j0..j0+nc` of B (all k rows) into `KC × NR` micro-panels,
/// ordered by K block then panel.  Panel `(pc, jp)` starts at word
/// `(pc * npanels + jp * kc) * B_WORDS`.
fn pack_b<T: Micro>(b: &[&[u64]], n: usize, k: usize, j0: usize, nc: usize, out: &mut [u64], parallel: bool) {
    /// Panels per packing work unit.
    const GROUP: usize = 16;
    let npanels = nc.div_ceil(T::NR);
    let block_words = T::KC * npanels * T::B_WORDS;
    // One unit: K block `pb`, panels `g*GROUP..`.  Rows of B are read
    // sequentially (row-outer loop) for prefetch-friendliness.
    let pack_unit = |pb: usize, g: usize, unit: &mut [u64]| {
        let pc = pb * T::KC;
        let kc = T::KC.min(k - pc);
        let panel_words = kc * T::B_WORDS;
        for p in 0..kc {
            let row = stacked_row(b, pc + p, n);
            for (q, panel) in unit.chunks_exact_mut(panel_words).enumerate() {
                let col0 = j0 + (g * GROUP + q) * T::NR;
                let w = T::NR.min(j0 + nc - col0);
                T::pack_b_row(&row[col0..col0 + w], &mut panel[p * T::B_WORDS..][..T::B_WORDS]);
            }
        }
    };
    for (pb, block) in out.chunks_mut(block_words).enumerate() {
        let unit_words = GROUP * (block.len() / npanels);
        if parallel {
            block.par_chunks_mut(unit_words).enumerate().for_each(|(g, u)| pack_unit(pb, g, u));
        } else {
            block.chunks_mut(unit_words).enumerate().for_each(|(g, u)| pack_unit(pb, g, u));
        }
    }
}

/// The pieces of row `row`, columns `pc..pc+kc`, of the side-by-side blocks
/// `a` (each `m × k_j`).
fn row_segments<'a, 'b>(
    a: &'b [&'a [u64]],
    m: usize,
    row: usize,
    pc: usize,
    kc: usize,
) -> impl Iterator<Item = &'a [u64]> + 'b {
    let mut first = 0; // first column of the current block
    a.iter().filter_map(move |blk| {
        let kj = blk.len() / m;
        let (lo, hi) = (pc.max(first), (pc + kc).min(first + kj));
        let local = first;
        first += kj;
        (lo < hi).then(|| &blk[row * kj + lo - local..row * kj + hi - local])
    })
}

/// Pack rows `i0..i0+mc`, columns `pc..pc+kc` of A into `MR × kc` panels.
fn pack_a<T: Micro>(a: &[&[u64]], m: usize, i0: usize, mc: usize, pc: usize, kc: usize, out: &mut [u64]) {
    let step = T::MR * T::A_PARTS;
    for (ip, panel) in out.chunks_exact_mut(kc * step).enumerate() {
        let r0 = i0 + ip * T::MR;
        let h = T::MR.min(i0 + mc - r0);
        for r in 0..T::MR {
            if r < h {
                let mut p = 0;
                for src in row_segments(a, m, r0 + r, pc, kc) {
                    for &x in src {
                        for part in 0..T::A_PARTS {
                            panel[p * step + r * T::A_PARTS + part] = T::a_part(x, part);
                        }
                        p += 1;
                    }
                }
            } else {
                for p in 0..kc {
                    panel[p * step + r * T::A_PARTS..][..T::A_PARTS].fill(0);
                }
            }
        }
    }
}

/// One task: rows `i0..i0+mc` × packed panels `jp0..jp1` of the current
/// column super-block starting at column `j0` with width `nc`.
#[allow(clippy::too_many_arguments)]
fn run_task<T: Micro>(
    a: &[&[u64]],
    m: usize,
    bpack: &[u64],
    c: SharedMut,
    n: usize,
    k: usize,
    (i0, mc): (usize, usize),
    (j0, nc): (usize, usize),
    (jp0, jp1): (usize, usize),
) {
    let npanels = nc.div_ceil(T::NR);
    let mpanels = mc.div_ceil(T::MR);
    A_BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        let abuf = buf.get(mpanels * T::MR * T::A_PARTS * T::KC.min(k));
        for pc in (0..k).step_by(T::KC) {
            let kc = T::KC.min(k - pc);
            let apanel = kc * T::MR * T::A_PARTS;
            let abuf = &mut abuf[..mpanels * apanel];
            pack_a::<T>(a, m, i0, mc, pc, kc, abuf);
            let overwrite = pc == 0;
            for jp in jp0..jp1 {
                let bp = &bpack[(pc * npanels + jp * kc) * T::B_WORDS..][..kc * T::B_WORDS];
                let col = j0 + jp * T::NR;
                let w = T::NR.min(j0 + nc - col);
                for ip in 0..mpanels {
                    let row = i0 + ip * T::MR;
                    let h = T::MR.min(i0 + mc - row);
                    let pa = abuf[ip * apanel..][..apanel].as_ptr();
                    // SAFETY: (row.., col..) is inside C and inside this
                    // task's exclusive region; panel lengths match.
                    unsafe {
                        let cptr = c.0.add(row * n + col);
                        if h == T::MR && w == T::NR {
                            T::kernel(kc, pa, bp.as_ptr(), cptr, n, overwrite);
                        } else {
                            let mut tile = [0u64; MAX_TILE];
                            T::kernel(kc, pa, bp.as_ptr(), tile.as_mut_ptr(), T::NR, true);
                            for r in 0..h {
                                for j in 0..w {
                                    let v = tile[r * T::NR + j];
                                    let p = cptr.add(r * n + j);
                                    *p = if overwrite { v } else { (*p).wrapping_add(v) };
                                }
                            }
                        }
                    }
                }
            }
        }
    });
}

/// Row `r` of the vertically stacked blocks `b` (each `k_j × n`).
#[inline]
fn stacked_row<'a>(b: &[&'a [u64]], mut r: usize, n: usize) -> &'a [u64] {
    for blk in b {
        let rows = blk.len() / n;
        if r < rows {
            return &blk[r * n..][..n];
        }
        r -= rows;
    }
    unreachable!("row inside the stacked blocks")
}

fn drive<T: Micro>(m: usize, n: usize, k: usize, a: &[&[u64]], b: &[&[u64]], c: &mut [u64]) {
    debug_assert!(T::MR * T::NR <= MAX_TILE && T::MC % T::MR == 0);
    let threads = rayon::current_num_threads().max(1);
    let parallel = threads > 1 && m.saturating_mul(n).saturating_mul(k) >= PAR_THRESHOLD;
    // Column super-block width so that the packed B block stays bounded.
    let nc_max = (B_PACK_WORDS / (k * T::B_WORDS)).max(1) * T::NR;
    let mut bbuf = B_POOL.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default();
    let cptr = SharedMut(c.as_mut_ptr());

    for j0 in (0..n).step_by(nc_max) {
        let nc = nc_max.min(n - j0);
        let npanels = nc.div_ceil(T::NR);
        let bpack = bbuf.get(k * npanels * T::B_WORDS);
        pack_b::<T>(b, n, k, j0, nc, bpack, parallel);
        let bpack: &[u64] = bpack;

        if !parallel {
            for i0 in (0..m).step_by(T::MC) {
                let mc = T::MC.min(m - i0);
                run_task::<T>(a, m, bpack, cptr, n, k, (i0, mc), (j0, nc), (0, npanels));
            }
            continue;
        }

        // Task grid: row blocks of about MC rows, their count rounded up to
        // a multiple of the thread count; column chunks only when there are
        // too few row blocks.  Blocks are balanced in whole micro-panels so
        // that equal-count task sets carry equal work.
        let rpanels = m.div_ceil(T::MR);
        let nrb = round_up(m.div_ceil(T::MC), threads).min(rpanels);
        let ncb = if nrb >= 2 * threads { 1 } else { (2 * threads).div_ceil(nrb).min(npanels) };
        (0..nrb * ncb).into_par_iter().for_each(|t| {
            let (rb, cb) = (t / ncb, t % ncb);
            let (rp0, rp1) = (rb * rpanels / nrb, (rb + 1) * rpanels / nrb);
            let (jp0, jp1) = (cb * npanels / ncb, (cb + 1) * npanels / ncb);
            let i0 = rp0 * T::MR;
            let mc = (rp1 * T::MR).min(m) - i0;
            run_task::<T>(a, m, bpack, cptr, n, k, (i0, mc), (j0, nc), (jp0, jp1));
        });
    }
    let mut pool = B_POOL.lock().unwrap_or_else(|e| e.into_inner());
    if pool.len() < B_POOL_MAX {
        pool.push(bbuf);
    }
}

// ---------------------------------------------------------------------------
// x86-64 SIMD kernels
// ---------------------------------------------------------------------------

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Micro;
    use std::arch::asm;
    use std::arch::x86_64::*;

    /// AVX2 limb-trick kernel, 3 × 8 tile (2 ymm per row): 6 low-product and
    /// 6 cross accumulators, 2 B vectors, 2 broadcasts = 16 ymm registers.
    /// A is packed as `[a, a.rotate_left(32)]` per element.
    pub(super) struct Avx2Micro;

    impl Micro for Avx2Micro {
        const MR: usize = 3;
        const NR: usize = 8;
        const A_PARTS: usize = 2;
        const KC: usize = 256;
        const MC: usize = 96;

        #[inline(always)]
        fn a_part(x: u64, part: usize) -> u64 {
            if part == 0 {
                x
            } else {
                x.rotate_left(32)
            }
        }

        unsafe fn kernel(kc: usize, pa: *const u64, pb: *const u64, c: *mut u64, rsc: usize, overwrite: bool) {
            // SAFETY: Avx2Micro is only selected after AVX2 detection; the
            // pointer contract is forwarded from the caller.
            unsafe { kernel_avx2(kc, pa, pb, c, rsc, overwrite) }
        }
    }

    /// `vpbroadcastq ymm, m64`.  Written as asm because LLVM, seeing that
    /// `vpmuludq` reads only the low 32 bits, otherwise narrows the load to
    /// `vpmovzxdq` + register broadcast: two extra shuffle-port uops per row
    /// and k step (measured ≈10% slower on Sapphire Rapids).
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn broadcast_u64(p: *const u64) -> __m256i {
        let v: __m256i;
        // SAFETY: the caller guarantees `p` is readable for 8 bytes; the
        // enclosing function enables AVX2.
        unsafe {
            asm!(
                "vpbroadcastq {v}, qword ptr [{p}]",
                v = out(ymm_reg) v,
                p = in(reg) p,
                options(pure, readonly, nostack, preserves_flags)
            );
        }
        v
    }

    #[target_feature(enable = "avx2")]
    unsafe fn kernel_avx2(kc: usize, mut pa: *const u64, mut pb: *const u64, c: *mut u64, rsc: usize, overwrite: bool) {
        let z = _mm256_setzero_si256();
        let mut lo = [[z; 2]; 3];
        let mut x = [[z; 2]; 3];
        for _ in 0..kc {
            // SAFETY: kc steps of 8 B words and 6 A words are in bounds.
            let (b0, b1) =
                unsafe { (_mm256_loadu_si256(pb as *const __m256i), _mm256_loadu_si256(pb.add(4) as *const __m256i)) };
            for r in 0..3 {
                // SAFETY: as above.
                let (av, sv) = unsafe { (broadcast_u64(pa.add(2 * r)), broadcast_u64(pa.add(2 * r + 1))) };
                lo[r][0] = _mm256_add_epi64(lo[r][0], _mm256_mul_epu32(av, b0));
                lo[r][1] = _mm256_add_epi64(lo[r][1], _mm256_mul_epu32(av, b1));
                x[r][0] = _mm256_add_epi32(x[r][0], _mm256_mullo_epi32(sv, b0));
                x[r][1] = _mm256_add_epi32(x[r][1], _mm256_mullo_epi32(sv, b1));
            }
            // SAFETY: advancing within (or one past) the panels.
            unsafe {
                pa = pa.add(6);
                pb = pb.add(8);
            }
        }
        let hmask = _mm256_set1_epi64x(0xffff_ffff_0000_0000_u64 as i64);
        for r in 0..3 {
            for v in 0..2 {
                let xv = x[r][v];
                let cross = _mm256_add_epi64(_mm256_slli_epi64::<32>(xv), _mm256_and_si256(xv, hmask));
                let mut res = _mm256_add_epi64(lo[r][v], cross);
                // SAFETY: the 3 × 8 tile at c (row stride rsc) is valid.
                unsafe {
                    let p = c.add(r * rsc + 4 * v) as *mut __m256i;
                    if !overwrite {
                        res = _mm256_add_epi64(res, _mm256_loadu_si256(p));
                    }
                    _mm256_storeu_si256(p, res);
                }
            }
        }
    }

    /// Low 12 bits of a word.
    const M12: u64 = 0xfff;

    /// 32-bit word holding the two 16-bit operands of the `vpdpwssd` cross
    /// term: `lo16 = first`, `hi16 = second`.
    #[inline(always)]
    fn pair16(first: u64, second: u64) -> u64 {
        first | (second << 16)
    }

    /// AVX-512 IFMA + VNNI kernel, 5 × 16 tile.
    ///
    /// Split `a = a0 + 2^52·a1` (`a0` 52 bits, `a1` 12 bits).  Modulo 2^64,
    /// `a·b = lo52(a0·b0) + 2^52·(hi52(a0·b0) + a0·b1 + a1·b0)` and the
    /// bracket is needed only modulo 2^12, so the cross terms only need the
    /// low 12 bits of `a0`, `b0`.  `vpmadd52luq`/`vpmadd52huq` read the low
    /// 52 bits of raw `a`, `b` (no masking needed) and accumulate; one
    /// `vpdpwssd` (16-bit pair dot product into 32-bit lanes) computes
    /// `a1·(b0 mod 2^12) + (a0 mod 2^12)·b1` for 16 columns at once.
    /// 4 IFMA + 1 VNNI uops per row and k step for 16 products, all
    /// accumulating in place: 20 IFMA accumulators + 5 VNNI accumulators +
    /// 3 B vectors + 1 broadcast register.
    ///
    /// Packing: A element = `[a, (a >> 52) | (a mod 2^12) << 16]`; B row =
    /// 16 raw words followed by 16 u32 `(b mod 2^12) | (b >> 52) << 16`.
    pub(super) struct Avx512Micro;

    impl Micro for Avx512Micro {
        const MR: usize = 5;
        const NR: usize = 16;
        const A_PARTS: usize = 2;
        const B_WORDS: usize = 24;
        const KC: usize = 128;
        const MC: usize = 120;

        #[inline(always)]
        fn a_part(x: u64, part: usize) -> u64 {
            if part == 0 {
                x
            } else {
                pair16(x >> 52, x & M12)
            }
        }

        #[inline(always)]
        fn pack_b_row(src: &[u64], dst: &mut [u64]) {
            let (raw, cross) = dst[..24].split_at_mut(16);
            for (j, d) in raw.iter_mut().enumerate() {
                *d = src.get(j).copied().unwrap_or(0);
            }
            for (j, d) in cross.iter_mut().enumerate() {
                let (b0, b1) = (raw[2 * j], raw[2 * j + 1]);
                *d = pair16(b0 & M12, b0 >> 52) | pair16(b1 & M12, b1 >> 52) << 32;
            }
        }

        unsafe fn kernel(kc: usize, pa: *const u64, pb: *const u64, c: *mut u64, rsc: usize, overwrite: bool) {
            // SAFETY: Avx512Micro is only selected after avx512f, avx512ifma
            // and avx512vnni detection; the pointer contract is forwarded.
            unsafe { kernel_avx512(kc, pa, pb, c, rsc, overwrite) }
        }
    }

    #[target_feature(enable = "avx512f,avx512ifma,avx512vnni")]
    unsafe fn kernel_avx512(
        kc: usize,
        mut pa: *const u64,
        mut pb: *const u64,
        c: *mut u64,
        rsc: usize,
        overwrite: bool,
    ) {
        const MR: usize = 5;
        let z = _mm512_setzero_si512();
        let mut lo = [[z; 2]; MR];
        let mut hi = [[z; 2]; MR];
        let mut cx = [z; MR];
        if !overwrite {
            for r in 0..MR {
                // SAFETY: prefetch is only a hint; the addresses lie in the tile.
                unsafe {
                    _mm_prefetch::<_MM_HINT_T0>(c.add(r * rsc) as *const i8);
                    _mm_prefetch::<_MM_HINT_T0>(c.add(r * rsc + 8) as *const i8);
                }
            }
        }
        for _ in 0..kc {
            // SAFETY: kc steps of 24 B words and 10 A words are in bounds.
            let (b0, b1, bx) = unsafe {
                (
                    _mm512_loadu_si512(pb as *const _),
                    _mm512_loadu_si512(pb.add(8) as *const _),
                    _mm512_loadu_si512(pb.add(16) as *const _),
                )
            };
            for r in 0..MR {
                // SAFETY: as above.
                let (av, xv) = unsafe { (*pa.add(2 * r), *pa.add(2 * r + 1)) };
                let av = _mm512_set1_epi64(av as i64);
                let xv = _mm512_set1_epi32(xv as i32);
                lo[r][0] = _mm512_madd52lo_epu64(lo[r][0], av, b0);
                hi[r][0] = _mm512_madd52hi_epu64(hi[r][0], av, b0);
                lo[r][1] = _mm512_madd52lo_epu64(lo[r][1], av, b1);
                hi[r][1] = _mm512_madd52hi_epu64(hi[r][1], av, b1);
                cx[r] = _mm512_dpwssd_epi32(cx[r], xv, bx);
            }
            // SAFETY: advancing within (or one past) the panels.
            unsafe {
                pa = pa.add(2 * MR);
                pb = pb.add(24);
            }
        }
        for r in 0..MR {
            let cross = [
                _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64::<0>(cx[r])),
                _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64::<1>(cx[r])),
            ];
            for v in 0..2 {
                let top = _mm512_slli_epi64::<52>(_mm512_add_epi64(hi[r][v], cross[v]));
                let res = _mm512_add_epi64(lo[r][v], top);
                // SAFETY: the 5 × 16 tile at c (row stride rsc) is valid.
                unsafe {
                    let p = c.add(r * rsc + 8 * v) as *mut _;
                    let res = if overwrite { res } else { _mm512_add_epi64(res, _mm512_loadu_si512(p)) };
                    _mm512_storeu_si512(p, res);
                }
            }
        }
    }
}
