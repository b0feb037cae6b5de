//! The self-contained prelude every emitted kernel starts with: integer typedefs, the ChaCha20 word function
//! (RFC 8439 block function, bit-identical to the runtime's `prg` module), signed floor division, and the
//! shared-memory declaration macro. No headers: NVRTC has none, and the CPU emulation compiles the same text.
//!
//! Under the CPU emulation (`CRYPTGPU_EMULATION` defined by its header) the CUDA keywords and `CG_SHARED` come
//! from that header instead; the text of the kernels is identical.

/// Version of the emitted code; part of every compiled-kernel cache key.
pub const EMITTER_VERSION: u32 = 1;

/// The prelude text (guarded, so several kernels can share one translation unit).
pub const PRELUDE: &str = r#"#ifndef CRYPTGPU_PRELUDE
#define CRYPTGPU_PRELUDE
typedef unsigned long long u64;
typedef long long i64;
typedef unsigned int u32;
#ifndef CRYPTGPU_EMULATION
#define CG_SHARED(T, name, count) __shared__ T name[count]
#define CG_SHARED_ALIGNED(T, name, count, align) __shared__ __attribute__((aligned(align))) T name[count]
#endif

__device__ __forceinline__ u32 cg_rotl(u32 x, int n) { return (x << n) | (x >> (32 - n)); }

#define CG_QR(a, b, c, d)                                        \
    a += b; d ^= a; d = cg_rotl(d, 16);                          \
    c += d; b ^= c; b = cg_rotl(b, 12);                          \
    a += b; d ^= a; d = cg_rotl(d, 8);                           \
    c += d; b ^= c; b = cg_rotl(b, 7);

/* Word e of a PRF stream: bytes 8e..8e+8 of the ChaCha20 keystream (RFC 8439) under s[0..8] (key, LE words)
   and s[8..11] (nonce, LE words), block counter e / 8. */
__device__ u64 cg_prg_word(const u32* s, u64 e) {
    u32 x[16], j[16];
    j[0] = 0x61707865u; j[1] = 0x3320646eu; j[2] = 0x79622d32u; j[3] = 0x6b206574u;
    for (int i = 0; i < 8; i++) j[4 + i] = s[i];
    j[12] = (u32)(e >> 3);
    j[13] = s[8]; j[14] = s[9]; j[15] = s[10];
    for (int i = 0; i < 16; i++) x[i] = j[i];
    for (int r = 0; r < 10; r++) {
        CG_QR(x[0], x[4], x[8], x[12]) CG_QR(x[1], x[5], x[9], x[13])
        CG_QR(x[2], x[6], x[10], x[14]) CG_QR(x[3], x[7], x[11], x[15])
        CG_QR(x[0], x[5], x[10], x[15]) CG_QR(x[1], x[6], x[11], x[12])
        CG_QR(x[2], x[7], x[8], x[13]) CG_QR(x[3], x[4], x[9], x[14])
    }
    int w = (int)(e & 7) * 2;
    return (u64)(x[w] + j[w]) | ((u64)(x[w + 1] + j[w + 1]) << 32);
}

/* Floor division of a signed value by a positive divisor. */
__device__ __forceinline__ u64 cg_floor_div(u64 a, u64 d) {
    i64 x = (i64)a, y = (i64)d;
    i64 q = x / y;
    if ((x % y != 0) && (x < 0)) q -= 1;
    return (u64)q;
}

/* Arithmetic shift right of the signed value. */
__device__ __forceinline__ u64 cg_sar(u64 a, int k) { return (u64)((i64)a >> k); }
#endif
"#;
