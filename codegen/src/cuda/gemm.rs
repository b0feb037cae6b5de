//! Ring GEMMs with fused epilogues, tiled through shared memory, under a limb plan chosen per shape.
//!
//! | plan | arithmetic | exact while | tile |
//! |---|---|---|---|
//! | [`GemmPlan::Native64`] | 64-bit integer multiply-add (wraps mod 2^64 by itself) | always | 64×64×16, 4×4 per thread |
//! | [`GemmPlan::F64Limbs16`] | 16-bit limbs in float64, the 10 limb products with `p + q ≤ 3` (CryptGPU) | `K·(2^16−1)^2 ≤ 2^53`, i.e. `K ≤ 2^21` | 32×32×16, 2×2 per thread |
//! | [`GemmPlan::Int8TensorCore`] | 8-bit limbs on integer tensor cores (`wmma` m16n16k16 u8×u8→s32), the 36 limb products with `p + q ≤ 7`, one s32 accumulator per weight `2^(8s)` | always: the s32 accumulators are flushed into u64 every [`INT8_FLUSH_K`] of K, before `K·8·(2^8−1)^2` can reach 2^31 | 32×32×16, one 16×16 tile per warp |
//!
//! `K` is the whole concatenated inner dimension (the accumulators run across the blocks). A plan whose bound a shape
//! exceeds is refused at plan time ([`GemmPlan::check`]); [`GemmPlan::for_k`] picks one that is exact.

use super::expr::{emit_body, Ctx};
use super::{ident, param_list, prelude::PRELUDE, Arg, CudaKernel, Launch};
use crate::{Error, GemmKernel, Result};
use std::fmt::Write;

/// How the 64-bit ring products are built from the GPU's arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GemmPlan {
    /// Native 64-bit integer multiply-add.
    Native64,
    /// 16-bit limbs in float64 (10 of the 16 limb products).
    F64Limbs16,
    /// 8-bit limbs on integer tensor cores (36 of the 64 limb products), K chunked so s32 accumulation is exact.
    Int8TensorCore,
}

/// K steps between flushes of the tensor-core accumulators: each s32 accumulator sums at most 8 limb products of
/// at most (2^8−1)^2 per k, so `INT8_FLUSH_K · 8 · 65025 < 2^31` keeps it exact and non-negative.
pub const INT8_FLUSH_K: usize = 4096;
const _: () = assert!(INT8_FLUSH_K * 8 * 255 * 255 < 1 << 31);

impl GemmPlan {
    /// Every plan.
    pub const ALL: [GemmPlan; 3] = [GemmPlan::Native64, GemmPlan::F64Limbs16, GemmPlan::Int8TensorCore];

    /// Largest total inner dimension the plan is exact for (`None`: any).
    pub fn max_k(self) -> Option<usize> {
        match self {
            GemmPlan::Native64 | GemmPlan::Int8TensorCore => None,
            // K·(2^16−1)^2 ≤ 2^53 ⇔ K ≤ 2^21 (2^21·(2^32 − 2^17 + 1) = 2^53 − 2^38 + 2^21).
            GemmPlan::F64Limbs16 => Some(1 << 21),
        }
    }

    /// Refuse a shape the plan would compute wrongly.
    pub fn check(self, kernel: &str, k: usize) -> Result<()> {
        match self.max_k() {
            Some(max) if k > max => Err(Error::Invalid {
                kernel: kernel.into(),
                reason: format!("plan {self:?} is exact only for an inner dimension ≤ {max}, found {k}"),
            }),
            _ => Ok(()),
        }
    }

    /// The default plan for an inner dimension: float64 limbs where exact, native 64-bit products otherwise.
    pub fn for_k(k: usize) -> GemmPlan {
        if GemmPlan::F64Limbs16.check("", k).is_ok() {
            GemmPlan::F64Limbs16
        } else {
            GemmPlan::Native64
        }
    }
}

pub(super) fn emit(k: &GemmKernel, plan: GemmPlan) -> Result<CudaKernel> {
    k.validate()?;
    plan.check(&k.name, k.k())?;
    let entry = ident(&k.name);
    let blocks = k.k_blocks.len();
    let mut args = vec![Arg::M, Arg::N];
    args.extend((0..blocks).map(Arg::K));
    args.extend((0..2 * blocks + k.epilogue.inputs as usize).map(Arg::Input));
    args.extend((0..k.epilogue.outputs.len()).map(Arg::Output));
    args.extend((0..k.epilogue.params as usize).map(Arg::Param));
    args.push(Arg::Streams);
    let mut s = String::from(PRELUDE);
    let _ = writeln!(s, "\nextern \"C\" __global__ void {entry}({}) {{", param_list(&args));
    if plan == GemmPlan::Int8TensorCore {
        int8_body(&mut s, blocks);
        emit_body(
            &mut s,
            &k.epilogue,
            &Ctx { elem: "e", row: "row", col: "col", acc: "acc_v", len: "", input_base: 2 * blocks },
            "            ",
        );
        s.push_str("        }\n    }\n}\n");
        return Ok(CudaKernel {
            entry,
            source: s,
            args,
            launch: Launch::Tiles { tile_m: 32, tile_n: 32, threads: [32, 4] },
        });
    }
    let (tile, per) = match plan {
        GemmPlan::Native64 => native_body(&mut s, blocks),
        GemmPlan::F64Limbs16 => f64_body(&mut s, blocks),
        GemmPlan::Int8TensorCore => unreachable!("emitted above"),
    };
    // Epilogue over this thread's outputs.
    let _ = writeln!(s, "    for (int i = 0; i < {per}; i++) for (int j = 0; j < {per}; j++) {{");
    let _ = writeln!(s, "        const u64 row = row0 + ty * {per} + i, col = col0 + tx * {per} + j;");
    s.push_str("        if (row < m && col < n) {\n            const u64 e = row * n + col;\n");
    s.push_str(match plan {
        GemmPlan::Native64 => "            const u64 acc_v = acc[i][j];\n",
        GemmPlan::F64Limbs16 => {
            "            u64 acc_v = 0;\n            for (int t = 0; t < 10; t++) acc_v += ((u64)acc[i][j][t]) << (16 * CG_SHIFT[t]);\n"
        }
        GemmPlan::Int8TensorCore => unreachable!("emitted above"),
    });
    emit_body(
        &mut s,
        &k.epilogue,
        &Ctx { elem: "e", row: "row", col: "col", acc: "acc_v", len: "", input_base: 2 * blocks },
        "            ",
    );
    s.push_str("        }\n    }\n}\n");
    Ok(CudaKernel { entry, source: s, args, launch: Launch::Tiles { tile_m: tile, tile_n: tile, threads: [16, 16] } })
}

/// Native 64-bit: 64×64 tiles, K steps of 16, 4×4 outputs per thread. Returns (tile, outputs per thread per axis).
fn native_body(s: &mut String, blocks: usize) -> (u32, u32) {
    s.push_str(
        "    CG_SHARED(u64, As, 16 * 64);\n    CG_SHARED(u64, Bs, 16 * 64);\n\
         \x20   const unsigned tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16u + tx;\n\
         \x20   const u64 row0 = (u64)blockIdx.y * 64ull, col0 = (u64)blockIdx.x * 64ull;\n\
         \x20   u64 acc[4][4];\n    for (int i = 0; i < 4; i++) for (int j = 0; j < 4; j++) acc[i][j] = 0;\n",
    );
    for j in 0..blocks {
        let (a, b) = (j, blocks + j);
        let _ = write!(
            s,
            "    for (u64 kt = 0; kt < k{j}; kt += 16) {{\n\
             \x20       for (int l = 0; l < 4; l++) {{\n\
             \x20           const unsigned idx = tid + 256u * l;\n\
             \x20           {{ const unsigned r = idx / 16u, c = idx % 16u; const u64 gr = row0 + r, gc = kt + c;\n\
             \x20             As[c * 64u + r] = (gr < m && gc < k{j}) ? in{a}[gr * k{j} + gc] : 0ull; }}\n\
             \x20           {{ const unsigned r = idx / 64u, c = idx % 64u; const u64 gr = kt + r, gc = col0 + c;\n\
             \x20             Bs[r * 64u + c] = (gr < k{j} && gc < n) ? in{b}[gr * n + gc] : 0ull; }}\n\
             \x20       }}\n\
             \x20       __syncthreads();\n\
             \x20       for (int kk = 0; kk < 16; kk++) {{\n\
             \x20           u64 av[4], bv[4];\n\
             \x20           for (int i = 0; i < 4; i++) av[i] = As[kk * 64 + ty * 4 + i];\n\
             \x20           for (int q = 0; q < 4; q++) bv[q] = Bs[kk * 64 + tx * 4 + q];\n\
             \x20           for (int i = 0; i < 4; i++) for (int q = 0; q < 4; q++) acc[i][q] += av[i] * bv[q];\n\
             \x20       }}\n\
             \x20       __syncthreads();\n\
             \x20   }}\n"
        );
    }
    (64, 4)
}

/// Float64 limbs: 32×32 tiles, K steps of 16, 2×2 outputs per thread, 10 accumulators per output.
fn f64_body(s: &mut String, blocks: usize) -> (u32, u32) {
    s.push_str(
        "    /* limb pairs (p, q) with p + q <= 3; the product of pair t is weighted 2^(16·CG_SHIFT[t]) */\n\
         \x20   const int CG_P[10] = {0, 0, 1, 0, 1, 2, 0, 1, 2, 3};\n\
         \x20   const int CG_Q[10] = {0, 1, 0, 2, 1, 0, 3, 2, 1, 0};\n\
         \x20   const int CG_SHIFT[10] = {0, 1, 1, 2, 2, 2, 3, 3, 3, 3};\n\
         \x20   CG_SHARED(double, Al, 4 * 16 * 32);\n    CG_SHARED(double, Bl, 4 * 16 * 32);\n\
         \x20   const unsigned tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16u + tx;\n\
         \x20   const u64 row0 = (u64)blockIdx.y * 32ull, col0 = (u64)blockIdx.x * 32ull;\n\
         \x20   double acc[2][2][10];\n\
         \x20   for (int i = 0; i < 2; i++) for (int j = 0; j < 2; j++) for (int t = 0; t < 10; t++) acc[i][j][t] = 0.0;\n",
    );
    for j in 0..blocks {
        let (a, b) = (j, blocks + j);
        let _ = write!(
            s,
            "    for (u64 kt = 0; kt < k{j}; kt += 16) {{\n\
             \x20       for (int l = 0; l < 2; l++) {{\n\
             \x20           const unsigned idx = tid + 256u * l;\n\
             \x20           {{ const unsigned r = idx / 16u, c = idx % 16u; const u64 gr = row0 + r, gc = kt + c;\n\
             \x20             const u64 x = (gr < m && gc < k{j}) ? in{a}[gr * k{j} + gc] : 0ull;\n\
             \x20             for (int p = 0; p < 4; p++) Al[(p * 16 + c) * 32 + r] = (double)((x >> (16 * p)) & 0xffffull); }}\n\
             \x20           {{ const unsigned r = idx / 32u, c = idx % 32u; const u64 gr = kt + r, gc = col0 + c;\n\
             \x20             const u64 x = (gr < k{j} && gc < n) ? in{b}[gr * n + gc] : 0ull;\n\
             \x20             for (int q = 0; q < 4; q++) Bl[(q * 16 + r) * 32 + c] = (double)((x >> (16 * q)) & 0xffffull); }}\n\
             \x20       }}\n\
             \x20       __syncthreads();\n\
             \x20       for (int kk = 0; kk < 16; kk++) {{\n\
             \x20           double av[2][4], bv[2][4];\n\
             \x20           for (int i = 0; i < 2; i++) for (int p = 0; p < 4; p++) av[i][p] = Al[(p * 16 + kk) * 32 + ty * 2 + i];\n\
             \x20           for (int q = 0; q < 2; q++) for (int p = 0; p < 4; p++) bv[q][p] = Bl[(p * 16 + kk) * 32 + tx * 2 + q];\n\
             \x20           for (int i = 0; i < 2; i++) for (int q = 0; q < 2; q++) for (int t = 0; t < 10; t++)\n\
             \x20               acc[i][q][t] += av[i][CG_P[t]] * bv[q][CG_Q[t]];\n\
             \x20       }}\n\
             \x20       __syncthreads();\n\
             \x20   }}\n"
        );
    }
    (32, 2)
}

/// Integer tensor cores: 4 warps, each one 16×16 output tile of a 32×32 block; per K step of 16 every warp loads the
/// 8 byte planes of its A rows and B columns as `wmma` fragments and issues the 36 products with `p + q ≤ 7` into the
/// accumulator of weight `2^(8(p+q))`. Leaves the text inside the per-element epilogue (`acc_v`, `row`, `col`, `e`).
fn int8_body(s: &mut String, blocks: usize) {
    let _ = write!(
        s,
        "    /* byte planes: A8[p] is 32 rows x 16 k (row major), B8[q] is 32 columns x 16 k (column major) */\n\
         \x20   CG_SHARED_ALIGNED(unsigned char, A8, 8 * 32 * 16, 32);\n\
         \x20   CG_SHARED_ALIGNED(unsigned char, B8, 8 * 32 * 16, 32);\n\
         \x20   CG_SHARED_ALIGNED(int, Cs, 4 * 256, 32);\n\
         \x20   const unsigned lane = threadIdx.x, warp = threadIdx.y, tid = warp * 32u + lane;\n\
         \x20   const unsigned wr = warp / 2u, wc = warp % 2u;\n\
         \x20   const u64 row0 = (u64)blockIdx.y * 32ull, col0 = (u64)blockIdx.x * 32ull;\n\
         \x20   int fc[8][8];\n\
         \x20   for (int t = 0; t < 8; t++) for (int i = 0; i < 8; i++) fc[t][i] = 0;\n\
         \x20   u64 acc64[8];\n\
         \x20   for (int i = 0; i < 8; i++) acc64[i] = 0;\n\
         \x20   u64 since_flush = 0;\n"
    );
    let flush = "            for (int t = 0; t < 8; t++) {\n\
                 \x20               __imma_m16n16k16_st_c_i32(Cs + warp * 256u, fc[t], 16u, 0);\n\
                 \x20               __syncwarp();\n\
                 \x20               for (int i = 0; i < 8; i++) acc64[i] += ((u64)(u32)Cs[warp * 256u + lane * 8u + i]) << (8 * t);\n\
                 \x20               __syncwarp();\n\
                 \x20               for (int i = 0; i < 8; i++) fc[t][i] = 0;\n\
                 \x20           }\n";
    for j in 0..blocks {
        let (a, b) = (j, blocks + j);
        let _ = write!(
            s,
            "    for (u64 kt = 0; kt < k{j}; kt += 16) {{\n\
             \x20       for (int l = 0; l < 4; l++) {{\n\
             \x20           const unsigned idx = tid + 128u * l;\n\
             \x20           {{ const unsigned r = idx / 16u, c = idx % 16u; const u64 gr = row0 + r, gc = kt + c;\n\
             \x20             const u64 x = (gr < m && gc < k{j}) ? in{a}[gr * k{j} + gc] : 0ull;\n\
             \x20             for (int p = 0; p < 8; p++) A8[p * 512 + r * 16 + c] = (unsigned char)(x >> (8 * p)); }}\n\
             \x20           {{ const unsigned r = idx / 32u, c = idx % 32u; const u64 gr = kt + r, gc = col0 + c;\n\
             \x20             const u64 x = (gr < k{j} && gc < n) ? in{b}[gr * n + gc] : 0ull;\n\
             \x20             for (int q = 0; q < 8; q++) B8[q * 512 + c * 16 + r] = (unsigned char)(x >> (8 * q)); }}\n\
             \x20       }}\n\
             \x20       __syncthreads();\n\
             \x20       {{\n\
             \x20           int fa[8][2], fb[8][2];\n\
             \x20           for (int p = 0; p < 8; p++) {{\n\
             \x20               __imma_m16n16k16_ld_a_u8(fa[p], (const int*)(A8 + p * 512 + wr * 256), 16u, 0);\n\
             \x20               __imma_m16n16k16_ld_b_u8(fb[p], (const int*)(B8 + p * 512 + wc * 256), 16u, 1);\n\
             \x20           }}\n\
             \x20           for (int t = 0; t < 8; t++) for (int p = 0; p <= t; p++)\n\
             \x20               __imma_m16n16k16_mma_u8(fc[t], fa[p], fb[t - p], fc[t], 1, 0);\n\
             \x20       }}\n\
             \x20       __syncthreads();\n\
             \x20       since_flush += 16;\n\
             \x20       if (since_flush == {INT8_FLUSH_K}) {{\n{flush}\
             \x20           since_flush = 0;\n\
             \x20       }}\n\
             \x20   }}\n"
        );
    }
    let _ = write!(
        s,
        "    {{\n{flush}    }}\n\
         \x20   for (int i = 0; i < 8; i++) {{\n\
         \x20       const unsigned idx = lane * 8u + (unsigned)i;\n\
         \x20       const u64 row = row0 + wr * 16u + idx / 16u, col = col0 + wc * 16u + idx % 16u;\n\
         \x20       if (row < m && col < n) {{\n\
         \x20           const u64 e = row * n + col;\n\
         \x20           const u64 acc_v = acc64[i];\n"
    );
}
