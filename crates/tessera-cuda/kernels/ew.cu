// Elementwise and gather ops on f32 activations, one thread per output
// value (index over a 2-D grid of 256-thread blocks, gindex()). Pointers
// are already at each tensor's first value. Semantics follow the CPU
// backend (crates/tessera-core/src/backend/cpu/ops/) as the wgpu backend's
// ew.wgsl does.

#define GELU_COEF_A 0.044715f
#define SQRT_2_OVER_PI 0.79788456080286535587989211986876f
#define SQRT_2_INV 0.70710678118654752440084436210484f

// tanh through exp, accurate over the whole range (no overflow).
__device__ __forceinline__ float tanh_(float x) {
    const float e = expf(-2.0f * fabsf(x));
    const float t = (1.0f - e) / (1.0f + e);
    return x < 0.0f ? -t : t;
}

__device__ __forceinline__ float gelu_f32(float x) {
    const float inner = fmaf(GELU_COEF_A * x, x, 1.0f);
    return 0.5f * x * (1.0f + tanh_(SQRT_2_OVER_PI * x * inner));
}

// ggml-cpu's GELU: the f16 table entry of x rounded to f16, clamped
// outside ±10.
__device__ __forceinline__ float gelu(float x) {
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    return f16_round(gelu_f32(f16_round(x)));
}

__device__ __forceinline__ float silu(float x) {
    return x / (1.0f + expf(-x));
}

// y = a op b; b has blen values (a's length, or one row broadcast).
// op: 0 add, 1 mul, 2 div.
extern "C" __global__ void binary(u32 op, const float* a, const float* b, u32 blen, float* y,
                                  u32 n) {
    const u64 i = gindex();
    if (i >= n) return;
    const float va = a[i], vb = b[i % blen];
    y[i] = op == 0 ? va + vb : (op == 1 ? va * vb : va / vb);
}

// op: 0 scale by s, 1 silu, 2 gelu (f16 table), 3 gelu_erf, 4 tanh,
// 5 sigmoid.
extern "C" __global__ void unary(u32 op, float s, const float* x, float* y, u32 n) {
    const u64 i = gindex();
    if (i >= n) return;
    const float v = x[i];
    float r;
    switch (op) {
    case 0: r = v * s; break;
    case 1: r = silu(v); break;
    case 2: r = gelu(v); break;
    case 3: r = 0.5f * v * (1.0f + erff(v * SQRT_2_INV)); break;
    case 4: r = tanhf(v); break;
    default: r = 1.0f / (1.0f + expf(-v)); break;
    }
    y[i] = r;
}

// op: 0 swiglu, 1 geglu, 2 swiglu_oai (alpha = s, limit 7).
extern "C" __global__ void glu(u32 op, float s, const float* gate, const float* up, float* y,
                               u32 n) {
    const u64 i = gindex();
    if (i >= n) return;
    const float g = gate[i], u = up[i];
    float r = 0.0f;
    if (op == 0) {
        r = silu(g) * u;
    } else if (op == 1) {
        if (g > -10.0f) r = gelu(g) * u;
    } else {
        const float xg = fminf(g, 7.0f);
        const float xu = fminf(fmaxf(u, -7.0f), 7.0f);
        r = xg / (1.0f + expf(s * -xg)) * (xu + 1.0f);
    }
    y[i] = r;
}

// y[r, c] = x[r, c] * s[r]
extern "C" __global__ void mul_rows(const float* x, const float* s, u32 cols, float* y, u32 n) {
    const u64 i = gindex();
    if (i >= n) return;
    y[i] = x[i] * s[i / cols];
}

// y[t, h, j] = x[t, h, start + j]: heads of hd values, len taken.
extern "C" __global__ void slice_heads(const float* x, u32 hd, u32 start, u32 len, float* y,
                                       u32 n) {
    const u64 i = gindex();
    if (i >= n) return;
    y[i] = x[(i / len) * hd + start + i % len];
}

// y[t, h] = [a[t, h] (la values) | b[t, h] (lb values)]
extern "C" __global__ void concat_heads(const float* a, u32 la, const float* b, u32 lb, float* y,
                                        u32 n) {
    const u64 i = gindex();
    if (i >= n) return;
    const u32 wdt = la + lb;
    const u64 hh = i / wdt;
    const u32 j = i % wdt;
    y[i] = j < la ? a[hh * la + j] : b[hh * lb + j - la];
}

// y[t, c] = Σ_s x[t·k + s, c] · w[t, s], each product rounded, in slot order.
extern "C" __global__ void moe_sum(const float* x, const float* w, u32 k, u32 cols, float* y,
                                   u32 n) {
    const u64 i = gindex();
    if (i >= n) return;
    const u64 t = i / cols;
    const u32 c = i % cols;
    float acc = 0.0f;
    for (u32 s = 0; s < k; s++) {
        const float p = x[(t * k + s) * cols + c] * w[t * k + s];
        acc = s == 0 ? p : acc + p;
    }
    y[i] = acc;
}

// y[t, s] = x[t, ids[t, s]] (ids clamped into the row).
extern "C" __global__ void gather_cols(const float* x, const i32* ids, u32 cols, u32 k, float* y,
                                       u32 n) {
    const u64 i = gindex();
    if (i >= n) return;
    const u32 id = min((u32)ids[i], cols - 1);
    y[i] = x[(i / k) * cols + id];
}

// y[r, c] = x[r, c] + b[ids[r], c]
extern "C" __global__ void add_id(const float* x, const float* b, const i32* ids, u32 cols,
                                  float* y, u32 n) {
    const u64 i = gindex();
    if (i >= n) return;
    y[i] = x[i] + b[(u64)ids[i / cols] * cols + i % cols];
}

// The step's output rows: y[i, :] = x[rows[i], :].
extern "C" __global__ void select_rows(const float* x, const u32* rows, u32 cols, float* y, u32 n) {
    const u64 i = gindex();
    if (i >= n) return;
    y[i] = x[(u64)rows[i / cols] * cols + i % cols];
}
