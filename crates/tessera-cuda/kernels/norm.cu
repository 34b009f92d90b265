// Norms over groups and row softmax: one block of NORM_WG threads per group
// (row), blockIdx over a 2-D grid (g = blockIdx.y * gridDim.x + blockIdx.x).

#define NORM_WG 256

__device__ __forceinline__ u64 group_index() {
    return (u64)blockIdx.y * gridDim.x + blockIdx.x;
}

// y = x * (1 / sqrt(mean(x²) + eps)) * w (w may be null).
extern "C" __global__ void rms_norm(const float* x, const float* w, float* y, u32 group,
                                    u32 n_groups, float eps) {
    __shared__ float sh[32];
    const u64 g = group_index();
    if (g >= n_groups) return;
    const float* xr = x + g * group;
    float* yr = y + g * group;
    float s = 0.0f;
    for (u32 i = threadIdx.x; i < group; i += blockDim.x) s += xr[i] * xr[i];
    const float sum = block_sum(s, sh);
    const float scale = 1.0f / sqrtf(sum / (float)group + eps);
    for (u32 i = threadIdx.x; i < group; i += blockDim.x) {
        float v = xr[i] * scale;
        if (w) v = v * w[i];
        yr[i] = v;
    }
}

// y = (x - mean) / sqrt(var + eps) * w + b (w, b may be null).
extern "C" __global__ void layer_norm(const float* x, const float* w, const float* b, float* y,
                                      u32 group, u32 n_groups, float eps) {
    __shared__ float sh[32];
    const u64 g = group_index();
    if (g >= n_groups) return;
    const float* xr = x + g * group;
    float* yr = y + g * group;
    float s = 0.0f;
    for (u32 i = threadIdx.x; i < group; i += blockDim.x) s += xr[i];
    const float mean = block_sum(s, sh) / (float)group;
    float s2 = 0.0f;
    for (u32 i = threadIdx.x; i < group; i += blockDim.x) {
        const float d = xr[i] - mean;
        s2 += d * d;
    }
    const float var = block_sum(s2, sh) / (float)group;
    const float scale = 1.0f / sqrtf(var + eps);
    for (u32 i = threadIdx.x; i < group; i += blockDim.x) {
        float v = (xr[i] - mean) * scale;
        if (w) v = v * w[i];
        if (b) v = v + b[i];
        yr[i] = v;
    }
}

// y = exp(x - max) / Σ exp(x - max), per row.
extern "C" __global__ void softmax(const float* x, float* y, u32 cols, u32 rows) {
    __shared__ float sh[32];
    const u64 r = group_index();
    if (r >= rows) return;
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    float m = -FLT_MAX_;
    for (u32 i = threadIdx.x; i < cols; i += blockDim.x) m = fmaxf(m, xr[i]);
    const float mx = block_max(m, sh);
    float s = 0.0f;
    for (u32 i = threadIdx.x; i < cols; i += blockDim.x) {
        const float e = expf(xr[i] - mx);
        yr[i] = e;
        s += e;
    }
    const float inv = 1.0f / block_sum(s, sh);
    for (u32 i = threadIdx.x; i < cols; i += blockDim.x) yr[i] = yr[i] * inv;
}
