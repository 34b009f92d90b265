// Shared by every kernel source (prepended to each before NVRTC compiles
// it: NVRTC has no file system, and no standard headers are needed):
// integer types, half and bfloat conversions through PTX, and warp/block
// reductions. Kernels take raw device pointers already offset to the
// tensor's first value, and 32-bit sizes.
//
// Outside CUDA (__CUDACC__ undefined) the file is plain C (or C++) with
// host versions of the conversions and of the thread indices, so that
// dequant.cuh (tests/dequant_host.rs) and the kernels whose threads do not
// talk to each other (ew.cu, rope.cu, routing.cu: tests/kernels_host.rs)
// can be compiled by a host compiler and checked without a GPU, one
// thread after another.

typedef unsigned char u8;
typedef signed char i8;
typedef unsigned short u16;
typedef short i16;
typedef unsigned int u32;
typedef int i32;
typedef unsigned long long u64;

#define WARP 32
#define FLT_MAX_ 3.402823466e+38f

#ifndef __CUDACC__
#include <math.h>
#include <string.h>
#define __device__
#define __forceinline__ static inline
#define __constant__ static const
#define __global__
#define __shared__ static

// The emulated launch sets these before calling a kernel for each thread
// (tests/kernels_host.rs: one OS thread per CUDA thread of a block, blocks
// one after another).
typedef struct {
    u32 x, y, z;
} dim3_;
#ifdef __cplusplus
static thread_local dim3_ blockIdx, threadIdx;
static dim3_ blockDim, gridDim;
template <typename T> static inline T min(T a, T b) { return a < b ? a : b; }
template <typename T> static inline T max(T a, T b) { return a > b ? a : b; }
// Defined by the emulator: a barrier of the block, and a warp's exchange.
static void __syncthreads();
static float __shfl_xor_sync(u32 mask, float v, int lane_mask);
#else
static dim3_ blockIdx, threadIdx, blockDim, gridDim;
#endif

static inline float __uint_as_float(u32 u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// IEEE half (bits) to float, exact (subnormals, infinities, NaN).
static inline float f16_to_f32(u16 h) {
    const u32 sign = (u32)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0x1f) return __uint_as_float(sign | 0x7f800000u | (m << 13));
    if (e != 0) return __uint_as_float(sign | ((e + 112) << 23) | (m << 13));
    // Subnormal or zero: m * 2^-24, exact in f32.
    const float v = (float)m * 5.9604644775390625e-8f;
    return sign ? -v : v;
}

// Float to IEEE half (bits), round to nearest even (as cvt.rn.f16.f32).
static inline u16 f32_to_f16(float f) {
    u32 x;
    memcpy(&x, &f, 4);
    const u32 sign = (x >> 16) & 0x8000, e = (x >> 23) & 0xff;
    u32 m = x & 0x7fffff;
    if (e == 0xff) return (u16)(sign | 0x7c00 | (m ? 0x200 | (m >> 13) : 0));
    const i32 he = (i32)e - 112;
    if (he >= 0x1f) return (u16)(sign | 0x7c00);
    u32 shift = 13, hm;
    if (he <= 0) {
        if (he < -10) return (u16)sign;
        m |= 0x800000;
        shift = 14 - he;
    }
    hm = m >> shift;
    const u32 rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    u32 h = sign | (he > 0 ? ((u32)he << 10) : 0) | hm;
    if (rem > half || (rem == half && (hm & 1))) h++;
    return (u16)h;
}

static inline float f16_round(float f) {
    return f16_to_f32(f32_to_f16(f));
}

static inline u64 gindex(void) {
    return ((u64)blockIdx.y * gridDim.x + blockIdx.x) * blockDim.x + threadIdx.x;
}
#else

// IEEE half (bits) to float, exact.
__device__ __forceinline__ float f16_to_f32(u16 h) {
    float f;
    asm("{ .reg .b16 t; mov.b16 t, %1; cvt.f32.f16 %0, t; }" : "=f"(f) : "h"(h));
    return f;
}

// Float to IEEE half (bits), round to nearest even.
__device__ __forceinline__ u16 f32_to_f16(float f) {
    u16 h;
    asm("{ .reg .b16 t; cvt.rn.f16.f32 t, %1; mov.b16 %0, t; }" : "=h"(h) : "f"(f));
    return h;
}

// The float rounded to half and back.
__device__ __forceinline__ float f16_round(float f) {
    return f16_to_f32(f32_to_f16(f));
}

#endif

// bfloat16 (bits) to float, exact.
__device__ __forceinline__ float bf16_to_f32(u16 h) {
    return __uint_as_float(((u32)h) << 16);
}

// Little-endian loads of unaligned data.
__device__ __forceinline__ u16 ld_u16(const u8* p) {
    return (u16)(p[0] | (p[1] << 8));
}
__device__ __forceinline__ u32 ld_u32(const u8* p) {
    return (u32)p[0] | ((u32)p[1] << 8) | ((u32)p[2] << 16) | ((u32)p[3] << 24);
}
__device__ __forceinline__ float ld_f16(const u8* p) {
    return f16_to_f32(ld_u16(p));
}

#if defined(__CUDACC__) || defined(__cplusplus)
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = WARP / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = WARP / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every
// thread gets the result. `sh` holds 32 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* sh) {
    const int lane = threadIdx.x % WARP, w = threadIdx.x / WARP;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    const int nw = blockDim.x / WARP;
    v = lane < nw ? sh[lane] : 0.0f;
    return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v, float* sh) {
    const int lane = threadIdx.x % WARP, w = threadIdx.x / WARP;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    const int nw = blockDim.x / WARP;
    v = lane < nw ? sh[lane] : -FLT_MAX_;
    return warp_max(v);
}

#endif

#ifdef __CUDACC__
// Linear index of a thread over a 2-D grid of 1-D blocks.
__device__ __forceinline__ u64 gindex() {
    return ((u64)blockIdx.y * gridDim.x + blockIdx.x) * blockDim.x + threadIdx.x;
}
#endif
