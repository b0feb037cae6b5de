//! The self-contained prelude every emitted kernel starts with: integer typedefs, the PRF word function (AES-128 in
//! counter mode, FIPS-197, byte-oriented with one 256-byte S-box table and round keys expanded on the fly;
//! bit-identical to the runtime's `prg` module, which uses the `aes` and `ctr` crates), signed floor division, and
//! the shared-memory declaration macro. No headers: NVRTC has none, and the CPU emulation compiles the same text.
//!
//! Under the CPU emulation (`CRYPTGPU_EMULATION` defined by its header) the CUDA keywords and `CG_SHARED` come
//! from that header instead; the text of the kernels is identical.

/// Version of the emitted code; part of every compiled-kernel cache key.
pub const EMITTER_VERSION: u32 = 2;

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

/* The AES S-box (FIPS-197 figure 7). */
__device__ const unsigned char cg_aes_sbox[256] = {
    0x63, 0x7c, 0x77, 0x7b, 0xf2, 0x6b, 0x6f, 0xc5, 0x30, 0x01, 0x67, 0x2b, 0xfe, 0xd7, 0xab, 0x76,
    0xca, 0x82, 0xc9, 0x7d, 0xfa, 0x59, 0x47, 0xf0, 0xad, 0xd4, 0xa2, 0xaf, 0x9c, 0xa4, 0x72, 0xc0,
    0xb7, 0xfd, 0x93, 0x26, 0x36, 0x3f, 0xf7, 0xcc, 0x34, 0xa5, 0xe5, 0xf1, 0x71, 0xd8, 0x31, 0x15,
    0x04, 0xc7, 0x23, 0xc3, 0x18, 0x96, 0x05, 0x9a, 0x07, 0x12, 0x80, 0xe2, 0xeb, 0x27, 0xb2, 0x75,
    0x09, 0x83, 0x2c, 0x1a, 0x1b, 0x6e, 0x5a, 0xa0, 0x52, 0x3b, 0xd6, 0xb3, 0x29, 0xe3, 0x2f, 0x84,
    0x53, 0xd1, 0x00, 0xed, 0x20, 0xfc, 0xb1, 0x5b, 0x6a, 0xcb, 0xbe, 0x39, 0x4a, 0x4c, 0x58, 0xcf,
    0xd0, 0xef, 0xaa, 0xfb, 0x43, 0x4d, 0x33, 0x85, 0x45, 0xf9, 0x02, 0x7f, 0x50, 0x3c, 0x9f, 0xa8,
    0x51, 0xa3, 0x40, 0x8f, 0x92, 0x9d, 0x38, 0xf5, 0xbc, 0xb6, 0xda, 0x21, 0x10, 0xff, 0xf3, 0xd2,
    0xcd, 0x0c, 0x13, 0xec, 0x5f, 0x97, 0x44, 0x17, 0xc4, 0xa7, 0x7e, 0x3d, 0x64, 0x5d, 0x19, 0x73,
    0x60, 0x81, 0x4f, 0xdc, 0x22, 0x2a, 0x90, 0x88, 0x46, 0xee, 0xb8, 0x14, 0xde, 0x5e, 0x0b, 0xdb,
    0xe0, 0x32, 0x3a, 0x0a, 0x49, 0x06, 0x24, 0x5c, 0xc2, 0xd3, 0xac, 0x62, 0x91, 0x95, 0xe4, 0x79,
    0xe7, 0xc8, 0x37, 0x6d, 0x8d, 0xd5, 0x4e, 0xa9, 0x6c, 0x56, 0xf4, 0xea, 0x65, 0x7a, 0xae, 0x08,
    0xba, 0x78, 0x25, 0x2e, 0x1c, 0xa6, 0xb4, 0xc6, 0xe8, 0xdd, 0x74, 0x1f, 0x4b, 0xbd, 0x8b, 0x8a,
    0x70, 0x3e, 0xb5, 0x66, 0x48, 0x03, 0xf6, 0x0e, 0x61, 0x35, 0x57, 0xb9, 0x86, 0xc1, 0x1d, 0x9e,
    0xe1, 0xf8, 0x98, 0x11, 0x69, 0xd9, 0x8e, 0x94, 0x9b, 0x1e, 0x87, 0xe9, 0xce, 0x55, 0x28, 0xdf,
    0x8c, 0xa1, 0x89, 0x0d, 0xbf, 0xe6, 0x42, 0x68, 0x41, 0x99, 0x2d, 0x0f, 0xb0, 0x54, 0xbb, 0x16,
};

__device__ __forceinline__ u32 cg_rotr(u32 x, int n) { return (x >> n) | (x << (32 - n)); }

/* SubBytes of each byte of a word. */
__device__ __forceinline__ u32 cg_aes_sub(u32 w) {
    return (u32)cg_aes_sbox[w & 0xffu] | ((u32)cg_aes_sbox[(w >> 8) & 0xffu] << 8) |
           ((u32)cg_aes_sbox[(w >> 16) & 0xffu] << 16) | ((u32)cg_aes_sbox[w >> 24] << 24);
}

/* SubBytes and ShiftRows of one output column: byte r comes from byte r of the r-th of columns a, b, c, d. */
#define CG_AES_SR(a, b, c, d)                                                                       \
    ((u32)cg_aes_sbox[(a) & 0xffu] | ((u32)cg_aes_sbox[((b) >> 8) & 0xffu] << 8) |                 \
     ((u32)cg_aes_sbox[((c) >> 16) & 0xffu] << 16) | ((u32)cg_aes_sbox[(d) >> 24] << 24))

/* Multiplication by x in GF(2^8) of each byte of a word. */
__device__ __forceinline__ u32 cg_aes_xt(u32 w) { return ((w & 0x7f7f7f7fu) << 1) ^ (((w >> 7) & 0x01010101u) * 0x1bu); }

/* MixColumns of one column (byte r of the word is row r): out_r = 2a_r + 3a_(r+1) + a_(r+2) + a_(r+3). */
__device__ __forceinline__ u32 cg_aes_mix(u32 w) {
    u32 r1 = cg_rotr(w, 8);
    return cg_aes_xt(w ^ r1) ^ r1 ^ cg_rotr(w, 16) ^ cg_rotr(w, 24);
}

/* Word e of a PRF stream: bytes 8e..8e+8 of the AES-128-CTR keystream under the key s[0..4] (the first 16 key
   bytes, LE words): block e / 2 is AES-128 of the counter block nonce (s[8..11], 12 bytes) || e / 2 (32-bit big
   endian), its bytes 8(e mod 2)..8(e mod 2)+8 are the word (little endian). The round keys are expanded on the
   fly (FIPS-197 section 5.2); a state column is one LE word, byte r = row r. */
__device__ u64 cg_prg_word(const u32* s, u64 e) {
    u32 k0 = s[0], k1 = s[1], k2 = s[2], k3 = s[3];
    u32 b = (u32)(e >> 1);
    u32 c0 = s[8] ^ k0, c1 = s[9] ^ k1, c2 = s[10] ^ k2;
    u32 c3 = ((b >> 24) | ((b >> 8) & 0xff00u) | ((b << 8) & 0xff0000u) | (b << 24)) ^ k3;
    u32 rc = 1;
    for (int r = 1; r <= 10; r++) {
        k0 ^= cg_aes_sub(cg_rotr(k3, 8)) ^ rc;
        k1 ^= k0; k2 ^= k1; k3 ^= k2;
        rc = (rc << 1) ^ ((rc >> 7) * 0x11bu);
        u32 t0 = CG_AES_SR(c0, c1, c2, c3), t1 = CG_AES_SR(c1, c2, c3, c0);
        u32 t2 = CG_AES_SR(c2, c3, c0, c1), t3 = CG_AES_SR(c3, c0, c1, c2);
        if (r < 10) { t0 = cg_aes_mix(t0); t1 = cg_aes_mix(t1); t2 = cg_aes_mix(t2); t3 = cg_aes_mix(t3); }
        c0 = t0 ^ k0; c1 = t1 ^ k1; c2 = t2 ^ k2; c3 = t3 ^ k3;
    }
    return (e & 1) ? ((u64)c2 | ((u64)c3 << 32)) : ((u64)c0 | ((u64)c1 << 32));
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
