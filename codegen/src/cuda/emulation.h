/* CPU emulation of the CUDA subset the emitted kernels use, so their exact source runs under a host C++20
   compiler (g++ -std=c++20 -pthread) and can be compared bit for bit with the CPU backend.

   Execution model (simple and deterministic in its results, not fast):
   - one launch runs its blocks one after another; the block's threads are real std::threads that persist across
     the launch's blocks, and every thread passes a std::barrier after each block, so no thread starts block b+1
     while another is still in block b;
   - threadIdx and blockIdx are thread_local; blockDim and gridDim are set once per launch;
   - __syncthreads() is the block's barrier (it must be reached by every thread of the block, as on the GPU: a
     divergent __syncthreads deadlocks here, where it is undefined behaviour on the GPU);
   - CG_SHARED(T, name, count) declares a static array (one block runs at a time, so a static array is exactly
     "one copy per block") and POISONS it at every block start: thread (0,0,0) fills it with CG_POISON_BYTE, then
     all threads pass the barrier. A read of shared memory before any thread wrote it therefore sees the poison
     (0x4242... as u64, about 1.7e11 as double: large enough to change any sum it enters) instead of a left-over or
     zero value, and the comparison with the CPU backend fails, as the kernel would on a GPU. The macro is only
     used at the top of a kernel, where every thread reaches it, so the extra barrier is safe. CG_SHARED_ALIGNED
     is the same with an alignment;
   - warps are 32 consecutive linear thread ids (x fastest); __syncwarp() is a barrier of the warp's threads;
   - the integer tensor-core builtins NVRTC exposes for wmma m16n16k16 on u8 (__imma_m16n16k16_ld_a_u8,
     _ld_b_u8, _mma_u8, _st_c_i32) are emulated per warp: a lane's fragment holds its own elements in an order of
     the emulation's choosing (element i of lane l is the tile's element 32i + l, row-major in the order the
     matrix lies in memory; scattered across lanes, as on the GPU, so a lane that reads back a stored tile
     depends on the other lanes' stores), loads and stores touch only the lane's own elements, and the
     multiply-accumulate exchanges the fragments through per-warp scratch between two warp barriers. The layout
     argument of an A or B load must equal the one the multiply declares for that operand (0 row major, 1 column
     major; the multiply's code is 2·A + B), else the program stops with a message: on the GPU a mismatch gives
     wrong products. Kernels must use fragments only through these builtins or fill them uniformly.
   Races: the threads really run concurrently, so a missing __syncthreads/__syncwarp shows only when the race is
   lost during the run (likely for a whole-tile race, not guaranteed); a read of memory no thread wrote in this
   block is deterministic (the poison).
   Floating point: x86-64 doubles are IEEE binary64 with round-to-nearest (SSE2, no excess precision), as on the
   GPU; the limb plans keep every double an exact integer, so contraction into FMA (NVRTC's default) cannot change
   a result either. */
#ifndef CRYPTGPU_EMULATION
#define CRYPTGPU_EMULATION

#include <barrier>
#include <cstddef>
#include <cstring>
#include <functional>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>
#include <unordered_map>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
/* __restrict__ is a keyword of g++ and clang++ already; other compilers get it as a no-op. */
#if !defined(__GNUC__)
#define __restrict__
#endif

/* Byte every shared array is filled with at each block start (see above). */
#define CG_POISON_BYTE 0x42

/* CUDA's dim3, as far as the kernels use it. */
struct cg_dim3 {
    unsigned x, y, z;
};

inline thread_local cg_dim3 threadIdx;
inline thread_local cg_dim3 blockIdx;
inline cg_dim3 blockDim;
inline cg_dim3 gridDim;
/* The barrier of the running launch's block. */
inline std::barrier<>* cg_block_barrier = nullptr;

inline void __syncthreads() { cg_block_barrier->arrive_and_wait(); }

/* Poison a block's shared array (thread 0 writes, everyone waits). */
inline void cg_shared_poison(void* p, std::size_t bytes) {
    if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) std::memset(p, CG_POISON_BYTE, bytes);
    __syncthreads();
}

#define CG_SHARED(T, name, count) \
    static T name[count];         \
    cg_shared_poison(name, sizeof(name))
#define CG_SHARED_ALIGNED(T, name, count, align) \
    alignas(align) static T name[count];         \
    cg_shared_poison(name, sizeof(name))

/* ---- warps ---- */

/* One warp of the running block: its barrier and the scratch the tensor-core multiply exchanges fragments in. */
struct cg_warp {
    explicit cg_warp(std::ptrdiff_t lanes) : bar(lanes) {}
    std::barrier<> bar;
    unsigned char a[32][8], b[32][8];
};

inline thread_local cg_warp* cg_this_warp = nullptr;
inline thread_local unsigned cg_lane = 0;

/* Full-warp barrier (the emulation supports only the full mask). */
inline void __syncwarp(unsigned mask = 0xffffffffu) {
    if (mask != 0xffffffffu) {
        std::fprintf(stderr, "cryptgpu emulation: __syncwarp with a partial mask is not emulated\n");
        std::abort();
    }
    cg_this_warp->bar.arrive_and_wait();
}

/* ---- wmma m16n16k16, u8 x u8 -> s32 ---- */

/* The layout each A/B fragment (by address, per thread) was loaded with: 'a' or 'b' and 0/1. */
inline thread_local std::unordered_map<const void*, int> cg_fragment_layout;

inline void cg_fragment_load(int* dst, const int* src, unsigned ldm, int layout, int operand) {
    const unsigned char* m = (const unsigned char*)src;
    unsigned char* f = (unsigned char*)dst;
    for (unsigned i = 0; i < 8; i++) {
        const unsigned idx = 32u * i + cg_lane; /* the tile's element in memory order: major index idx / 16 */
        f[i] = m[(idx / 16u) * ldm + idx % 16u];
    }
    cg_fragment_layout[dst] = operand * 2 + layout;
}

inline void __imma_m16n16k16_ld_a_u8(int* dst, const int* src, unsigned ldm, int layout) {
    cg_fragment_load(dst, src, ldm, layout, 0);
}

inline void __imma_m16n16k16_ld_b_u8(int* dst, const int* src, unsigned ldm, int layout) {
    cg_fragment_load(dst, src, ldm, layout, 1);
}

inline void cg_fragment_check(const int* frag, int operand, int layout) {
    auto it = cg_fragment_layout.find(frag);
    if (it != cg_fragment_layout.end() && it->second != operand * 2 + layout) {
        std::fprintf(stderr, "cryptgpu emulation: wmma %s fragment loaded as %s of layout %d, multiplied as layout %d\n",
                     operand ? "B" : "A", it->second / 2 ? "B" : "A", it->second % 2, layout);
        std::abort();
    }
}

/* d = a·b + c over one 16×16×16 tile; `layout` = 2·(A column major) + (B column major); satf saturates. */
inline void __imma_m16n16k16_mma_u8(int* d, const int* a, const int* b, const int* c, int layout, int satf) {
    const int a_col = (layout >> 1) & 1, b_col = layout & 1;
    cg_fragment_check(a, 0, a_col);
    cg_fragment_check(b, 1, b_col);
    cg_warp& w = *cg_this_warp;
    std::memcpy(w.a[cg_lane], a, 8);
    std::memcpy(w.b[cg_lane], b, 8);
    w.bar.arrive_and_wait();
    /* element (i, j) of the memory-order tile of fragment f */
    auto at = [](unsigned char (*f)[8], unsigned i, unsigned j) {
        const unsigned idx = i * 16u + j;
        return (long long)f[idx % 32u][idx / 32u];
    };
    int out[8];
    for (unsigned e = 0; e < 8; e++) {
        const unsigned idx = 32u * e + cg_lane, r = idx / 16u, col = idx % 16u;
        long long s = c[e];
        for (unsigned k = 0; k < 16; k++)
            s += (a_col ? at(w.a, k, r) : at(w.a, r, k)) * (b_col ? at(w.b, col, k) : at(w.b, k, col));
        if (satf) s = s > 2147483647LL ? 2147483647LL : (s < -2147483648LL ? -2147483648LL : s);
        out[e] = (int)(unsigned)(unsigned long long)s; /* wraps mod 2^32 without satf */
    }
    w.bar.arrive_and_wait();
    std::memcpy(d, out, sizeof out);
}

/* Store an accumulator tile: element (r, c) to dst[r·ldm + c] (layout 0) or dst[c·ldm + r] (layout 1). */
inline void __imma_m16n16k16_st_c_i32(int* dst, const int* src, unsigned ldm, int layout) {
    for (unsigned e = 0; e < 8; e++) {
        const unsigned idx = 32u * e + cg_lane, r = idx / 16u, c = idx % 16u;
        dst[layout ? c * ldm + r : r * ldm + c] = src[e];
    }
}

/* ---- launch ---- */

/* Run `body` (one call of the kernel) as a launch of `grid` blocks of `block` threads. */
inline void cg_launch(cg_dim3 grid, cg_dim3 block, const std::function<void()>& body) {
    const unsigned threads = block.x * block.y * block.z;
    std::barrier<> bar((std::ptrdiff_t)threads);
    std::vector<std::unique_ptr<cg_warp>> warps;
    for (unsigned first = 0; first < threads; first += 32)
        warps.push_back(std::make_unique<cg_warp>((std::ptrdiff_t)(threads - first < 32 ? threads - first : 32)));
    cg_block_barrier = &bar;
    gridDim = grid;
    blockDim = block;
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (unsigned t = 0; t < threads; t++) {
        pool.emplace_back([&, t] {
            threadIdx = cg_dim3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
            cg_this_warp = warps[t / 32].get();
            cg_lane = t % 32;
            for (unsigned z = 0; z < grid.z; z++)
                for (unsigned y = 0; y < grid.y; y++)
                    for (unsigned x = 0; x < grid.x; x++) {
                        blockIdx = cg_dim3{x, y, z};
                        body();
                        bar.arrive_and_wait();
                    }
        });
    }
    for (auto& th : pool) th.join();
    cg_block_barrier = nullptr;
}
#endif
