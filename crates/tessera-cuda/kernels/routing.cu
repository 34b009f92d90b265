// MoE routing helpers, one thread per row (rows are tokens, columns
// experts: few), as the wgpu backend's routing.wgsl.

#define MAX_K 64

// v ranks above w: larger, or w is NaN and v is not.
__device__ __forceinline__ bool above(float v, float w) {
    return v > w || (w != w && v == v);
}

// The columns of the k largest values of each row, largest first, ties in
// column order: x [rows, cols] -> ids [rows, k] (i32).
extern "C" __global__ void top_k(const float* x, i32* ids_out, u32 rows, u32 cols, u32 k) {
    const u32 r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    float vals[MAX_K];
    u32 ids[MAX_K];
    u32 filled = 0;
    const float* xr = x + (u64)r * cols;
    for (u32 j = 0; j < cols; j++) {
        const float v = xr[j];
        u32 p = filled;
        for (u32 i = 0; i < filled; i++) {
            if (above(v, vals[i])) {
                p = i;
                break;
            }
        }
        if (p >= k) continue;
        for (u32 i = min(filled, k - 1); i > p; i--) {
            vals[i] = vals[i - 1];
            ids[i] = ids[i - 1];
        }
        vals[p] = v;
        ids[p] = j;
        filled = min(filled + 1, k);
    }
    for (u32 i = 0; i < k; i++) ids_out[(u64)r * k + i] = (i32)ids[i];
}

// Each row divided by its sum, the sum clamped below at min_sum.
extern "C" __global__ void norm_sum(const float* x, float* y, u32 rows, u32 cols, float min_sum) {
    const u32 r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    const float* xr = x + (u64)r * cols;
    float s = 0.0f;
    for (u32 j = 0; j < cols; j++) s += xr[j];
    s = fmaxf(s, min_sum);
    for (u32 j = 0; j < cols; j++) y[(u64)r * cols + j] = xr[j] / s;
}

// Expert groups: a group's score is the sum of its two largest values; the
// n_used best groups (ties: lower group) keep their values, the rest -inf.
extern "C" __global__ void group_mask(const float* x, float* y, u32 rows, u32 cols, u32 n_groups,
                                      u32 n_used) {
    const u32 r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    const u32 per = cols / n_groups;
    const float* xr = x + (u64)r * cols;
    float score[MAX_K];
    bool keep[MAX_K];
    for (u32 g = 0; g < n_groups; g++) {
        float b0 = -FLT_MAX_, b1 = -FLT_MAX_;
        for (u32 j = 0; j < per; j++) {
            const float v = xr[g * per + j];
            if (j == 0 || above(v, b0)) {
                b1 = b0;
                b0 = v;
            } else if (j == 1 || above(v, b1)) {
                b1 = v;
            }
        }
        score[g] = b0 + b1;
        keep[g] = false;
    }
    for (u32 u = 0; u < n_used; u++) {
        u32 best = n_groups;
        for (u32 g = 0; g < n_groups; g++) {
            if (!keep[g] && (best == n_groups || above(score[g], score[best]))) best = g;
        }
        if (best < n_groups) keep[best] = true;
    }
    for (u32 j = 0; j < cols; j++) {
        y[(u64)r * cols + j] = keep[j / per] ? xr[j] : __uint_as_float(0xff800000u);
    }
}
