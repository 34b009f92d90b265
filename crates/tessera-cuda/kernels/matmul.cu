// Products and embeddings for every weight type of dequant.cuh, the weights
// dequantized in registers and the sums in f32.
//
// matmul_<t>: y[u, g] = w[g] · x[u, m(g)] for a stack of matrices (g a row
// of the whole stack, m(g) = g / mat_rows its matrix, whose x values start
// at m * x_mat_stride; mat_rows = all rows for a plain matmul). One warp
// per weight row, ROWS warps per block; blockIdx.y picks TN tokens, each
// dequantized value is used for all of them.
//
// mul_mat_id_<t>: y[u, r] = w[ids[u]] row r · x[u or u / k] (MoE): one
// warp per row of an expert, blockIdx.y the slot u. An id outside the
// stack gives NaN (the host checks nothing it cannot see; a NaN is never
// mistaken for a result).
//
// get_rows_<t>: y[t, c] = row ids[t] of the table, value c (embedding).
//
// blockIdx.y counts tokens (slots) from tok0 (slot0): the host launches
// grids of at most 65535 in y and moves the start.

#define ROWS 4
#define TN 4

#define MATMUL_KERNELS(T, BS, BB)                                                              \
    extern "C" __global__ void matmul_##T(const u8* w, u64 row_bytes, u32 rows_total,         \
                                          u32 mat_rows, u32 cols, const float* x,              \
                                          u32 x_stride, u32 x_mat_stride, u32 n, float* y,     \
                                          u32 y_stride, u32 tok0) {                            \
        const u32 lane = threadIdx.x % WARP;                                                   \
        const u32 g = blockIdx.x * ROWS + threadIdx.x / WARP;                                  \
        if (g >= rows_total) return;                                                           \
        const u32 t0 = tok0 + blockIdx.y * TN;                                                    \
        const u8* wr = w + (u64)g * row_bytes;                                                 \
        const float* xb = x + (u64)(g / mat_rows) * x_mat_stride;                              \
        float acc[TN];                                                                         \
        _Pragma("unroll") for (int t = 0; t < TN; t++) acc[t] = 0.0f;                          \
        for (u32 c = lane; c < cols; c += WARP) {                                              \
            const float v = dq_##T(wr, c);                                                     \
            _Pragma("unroll") for (int t = 0; t < TN; t++) {                                   \
                if (t0 + t < n) acc[t] += v * xb[(u64)(t0 + t) * x_stride + c];                \
            }                                                                                  \
        }                                                                                      \
        _Pragma("unroll") for (int t = 0; t < TN; t++) {                                       \
            const float s = warp_sum(acc[t]);                                                  \
            if (lane == 0 && t0 + t < n) y[(u64)(t0 + t) * y_stride + g] = s;                  \
        }                                                                                      \
    }                                                                                          \
                                                                                               \
    extern "C" __global__ void mul_mat_id_##T(const u8* w, u64 row_bytes, u32 rows,            \
                                              u32 n_expert, u32 cols, const float* x,          \
                                              u32 x_per_slot, const i32* ids, u32 k,           \
                                              float* y, u32 slot0) {                           \
        const u32 lane = threadIdx.x % WARP;                                                   \
        const u32 r = blockIdx.x * ROWS + threadIdx.x / WARP;                                  \
        if (r >= rows) return;                                                                 \
        const u32 u = slot0 + blockIdx.y;                                                           \
        const i32 e = ids[u];                                                                  \
        if (e < 0 || (u32)e >= n_expert) {                                                     \
            if (lane == 0) y[(u64)u * rows + r] = __uint_as_float(0x7fc00000u);                \
            return;                                                                            \
        }                                                                                      \
        const u8* wr = w + ((u64)e * rows + r) * row_bytes;                                    \
        const float* xr = x + (u64)(x_per_slot ? u : u / k) * cols;                            \
        float acc = 0.0f;                                                                      \
        for (u32 c = lane; c < cols; c += WARP) acc += dq_##T(wr, c) * xr[c];                  \
        acc = warp_sum(acc);                                                                   \
        if (lane == 0) y[(u64)u * rows + r] = acc;                                             \
    }                                                                                          \
                                                                                               \
    extern "C" __global__ void get_rows_##T(const u8* w, u64 row_bytes, u32 cols,              \
                                            const u32* ids, float* y, u32 tok0) {              \
        const u32 c = blockIdx.x * blockDim.x + threadIdx.x;                                   \
        const u32 t = tok0 + blockIdx.y;                                                           \
        if (c >= cols) return;                                                                 \
        y[(u64)t * cols + c] = dq_##T(w + (u64)ids[t] * row_bytes, c);                         \
    }

TYPES(MATMUL_KERNELS)
