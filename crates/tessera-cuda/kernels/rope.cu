// Rotary position embedding as ggml's rope_ext (normal and NeoX pairs,
// partial rotary, frequency factors, YaRN), one thread per output value,
// as the wgpu backend's rope.wgsl: theta starts at the position and is
// multiplied by theta_scale once per pair (rounding as ggml's cache does);
// sin and cos by a Cody-Waite reduction and minimax polynomials (the
// hardware's fast ones are too coarse for angles in the thousands).

__device__ __forceinline__ void sincos_(float x, float* s_out, float* c_out) {
    const float ax = fabsf(x);
    u32 j = (u32)(ax * 1.27323954473516f);
    float y = (float)j;
    if (j & 1u) {
        j += 1;
        y += 1.0f;
    }
    const u32 oct = (j & 7u) >> 1;
    const float z = ((ax - y * 0.78515625f) - y * 2.4187564849853515625e-4f) -
                    y * 3.77489497744594108e-8f;
    const float zz = z * z;
    const float sp =
        ((-1.9515295891e-4f * zz + 8.3321608736e-3f) * zz - 1.6666654611e-1f) * zz * z + z;
    const float cp = ((2.443315711809948e-5f * zz - 1.388731625493765e-3f) * zz +
                      4.166664568298827e-2f) * zz * zz - 0.5f * zz + 1.0f;
    float s = sp, c = cp;
    if (oct == 1) {
        s = cp;
        c = -sp;
    } else if (oct == 2) {
        s = -sp;
        c = -cp;
    } else if (oct == 3) {
        s = -cp;
        c = sp;
    }
    if (x < 0.0f) s = -s;
    *s_out = s;
    *c_out = c;
}

__device__ __forceinline__ float yarn_ramp(float low, float high, u32 i0) {
    const float y = ((float)(i0 / 2) - low) / fmaxf(0.001f, high - low);
    return 1.0f - fminf(fmaxf(y, 0.0f), 1.0f);
}

// x, y: [n_tokens, n_heads * hd]; pos: one i32 per token; ff: n_rot / 2
// frequency divisors or null; corr0/corr1: YaRN correction dims (host).
extern "C" __global__ void rope(const float* x, float* y, const i32* pos, const float* ff, u32 n,
                                u32 n_heads, u32 hd, u32 n_rot, u32 neox, float freq_scale,
                                float ext_factor, float attn_factor, float corr0, float corr1,
                                float theta_scale) {
    const u64 e = gindex();
    if (e >= n) return;
    const u64 row = (u64)n_heads * hd;
    const u64 t = e / row;
    const u32 d = e % hd;
    const u64 hb = e - d;
    if (d >= n_rot) {
        y[e] = x[e];
        return;
    }
    u32 pair, i0, i1;
    bool first;
    if (neox) {
        const u32 half = n_rot / 2;
        pair = d % half;
        i0 = pair;
        i1 = pair + half;
        first = d < half;
    } else {
        pair = d / 2;
        i0 = 2 * pair;
        i1 = i0 + 1;
        first = (d & 1) == 0;
    }
    float theta = (float)pos[t];
    for (u32 k = 0; k < pair; k++) theta = theta * theta_scale;
    const float f = ff ? ff[pair] : 1.0f;
    const float theta_extrap = theta / f;
    const float theta_interp = freq_scale * theta_extrap;
    float angle = theta_interp;
    float mscale = attn_factor;
    if (ext_factor != 0.0f) {
        const float mix = yarn_ramp(corr0, corr1, 2 * pair) * ext_factor;
        angle = theta_interp * (1.0f - mix) + theta_extrap * mix;
        mscale = mscale * (1.0f + 0.1f * logf(1.0f / freq_scale));
    }
    float sn, cs;
    sincos_(angle, &sn, &cs);
    cs = cs * mscale;
    sn = sn * mscale;
    const float x0 = x[hb + i0], x1 = x[hb + i1];
    y[e] = first ? fmaf(x0, cs, -(x1 * sn)) : fmaf(x0, sn, x1 * cs);
}
