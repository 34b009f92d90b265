// The KV cache and attention, as ggml's flash_attn_ext defines it (ported
// from the wgpu backend's kv_store.wgsl and attention.wgsl).
//
// Cache rows: n_head_kv heads side by side, F16 (2 bytes a value) or Q8_0
// (34-byte blocks of 32: f16 d, then 32 i8), `row_bytes` apart; cell c
// holds position c.

#define ATT_WG 128
#define MAX_HD 1024
#define MAX_VPT (MAX_HD / ATT_WG)

// Q8_0 of 32 values as ggml-cpu's x86 quantize_row_q8_0: d = amax / 127
// (stored as f16), q = round-half-even(x * (127 / amax)).
__device__ __forceinline__ void q8_block(const float* x, u8* out) {
    float amax = 0.0f;
    for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[i]));
    const u16 d = f32_to_f16(amax / 127.0f);
    out[0] = d & 0xff;
    out[1] = d >> 8;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    for (int i = 0; i < 32; i++) {
        const int q = (int)rintf(x[i] * id);
        out[2 + i] = (u8)(i8)max(-128, min(127, q));
    }
}

// Stores n rows of `width` values of x into cells first.. of the cache.
// F16: one thread per value; Q8_0: one thread per block of 32.
extern "C" __global__ void kv_store(const float* x, u8* cache, u32 width, u32 n, u64 row_bytes,
                                    u32 first, u32 q8) {
    const u64 i = gindex();
    const u32 per_row = q8 ? width / 32 : width;
    if (i >= (u64)n * per_row) return;
    const u64 t = i / per_row;
    const u32 j = i % per_row;
    u8* row = cache + (first + t) * row_bytes;
    if (q8) {
        q8_block(x + t * width + 32 * j, row + 34 * j);
    } else {
        const u16 h = f32_to_f16(x[t * width + j]);
        row[2 * j] = h & 0xff;
        row[2 * j + 1] = h >> 8;
    }
}

// One block per (head h = blockIdx.x, query token t = blockIdx.y) over
// cells 0..n_kv: the query in f32 against an F16 cache, or quantized to
// Q8_0 for the integer dot with a Q8_0 cache; s = dot · scale (softcap:
// softcap · tanh(dot · scale / softcap)); causal and sliding-window masks
// from the token's position; GQA (head h reads KV head h / (n_head /
// n_head_kv)); an online softmax over tiles of ATT_WG cells, values summed
// in f32; the head's sink logit (sinks may be null) joins at the end.
// q: [n_tokens, n_head * hd]; o: [n_tokens, n_head * hdv].
extern "C" __global__ void attention(const float* q, const u8* kc, const u8* vc,
                                     const float* sinks, float* o, const i32* pos, u32 n_head,
                                     u32 n_head_kv, u32 hd, u32 hdv, u32 n_kv, u64 k_row,
                                     u64 v_row, u32 k_q8, u32 v_q8, float scale, float softcap,
                                     u32 window) {
    __shared__ float qs[MAX_HD];
    __shared__ float qd[MAX_HD / 32];
    __shared__ float ps[ATT_WG];
    __shared__ float sh[32];
    const u32 h = blockIdx.x, t = blockIdx.y, li = threadIdx.x;
    const u32 kvh = h / (n_head / n_head_kv);
    const i32 qp = pos[t];
    const float* qr = q + ((u64)t * n_head + h) * hd;
    const u32 nb = hd / 32;
    if (!k_q8) {
        for (u32 i = li; i < hd; i += ATT_WG) qs[i] = qr[i];
    } else if (li < nb) {
        float amax = 0.0f;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(qr[li * 32 + i]));
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        qd[li] = f16_round(amax / 127.0f);
        for (int i = 0; i < 32; i++) {
            const int v = (int)rintf(qr[li * 32 + i] * id);
            qs[li * 32 + i] = (float)max(-128, min(127, v));
        }
    }
    __syncthreads();
    const float dot_scale = softcap != 0.0f ? scale / softcap : scale;
    const u32 j_end = min(n_kv, (u32)max(qp + 1, 0));
    const u32 j_start = window ? (u32)max(qp - (i32)window + 1, 0) : 0;
    const u64 k_head = k_q8 ? (u64)nb * 34 : (u64)hd * 2;
    const u64 v_head = v_q8 ? (u64)(hdv / 32) * 34 : (u64)hdv * 2;
    float acc[MAX_VPT];
#pragma unroll
    for (int i = 0; i < MAX_VPT; i++) acc[i] = 0.0f;
    float m = -FLT_MAX_, ssum = 0.0f;
    bool seen = false;
    for (u32 tile = j_start; tile < j_end; tile += ATT_WG) {
        const u32 j = tile + li;
        float s = -FLT_MAX_;
        const bool vis = j < j_end;
        if (vis) {
            const u8* kb0 = kc + (u64)j * k_row + kvh * k_head;
            float d = 0.0f;
            if (!k_q8) {
                for (u32 i = 0; i < hd; i++) d += qs[i] * ld_f16(kb0 + 2 * i);
            } else {
                for (u32 b = 0; b < nb; b++) {
                    const u8* bo = kb0 + b * 34;
                    float isum = 0.0f;
                    for (int i = 0; i < 32; i++) isum += qs[b * 32 + i] * (float)(i8)bo[2 + i];
                    d += isum * (ld_f16(bo) * qd[b]);
                }
            }
            s = d * dot_scale;
            if (softcap != 0.0f) s = softcap * tanhf(s);
        }
        const float tmax = block_max(s, sh);
        const float m_new = fmaxf(m, tmax);
        const float pj = vis ? expf(s - m_new) : 0.0f;
        ps[li] = pj;
        const float ms = seen ? expf(m - m_new) : 1.0f;
        const float psum = block_sum(pj, sh);
        ssum = ssum * ms + psum;
        m = m_new;
        seen = true;
        const u32 nt = min((u32)ATT_WG, j_end - tile);
#pragma unroll
        for (int vi = 0; vi < MAX_VPT; vi++) {
            const u32 dv = li + vi * ATT_WG;
            if (dv < hdv) {
                float a = acc[vi] * ms;
                for (u32 c = 0; c < nt; c++) {
                    const u8* vb = vc + (u64)(tile + c) * v_row + kvh * v_head;
                    float v;
                    if (!v_q8) {
                        v = ld_f16(vb + 2 * dv);
                    } else {
                        const u8* bo = vb + (dv / 32) * 34;
                        v = (float)(i8)bo[2 + dv % 32] * ld_f16(bo);
                    }
                    a += ps[c] * v;
                }
                acc[vi] = a;
            }
        }
        __syncthreads();
    }
    if (sinks) {
        const float sk = sinks[h];
        float ms = 1.0f, vs = 1.0f;
        if (!seen || sk > m) {
            ms = seen ? expf(m - sk) : 0.0f;
        } else {
            vs = expf(sk - m);
        }
        ssum = ssum * ms + vs;
#pragma unroll
        for (int vi = 0; vi < MAX_VPT; vi++) acc[vi] *= ms;
    }
    const float inv = ssum != 0.0f ? 1.0f / ssum : 0.0f;
    float* orow = o + ((u64)t * n_head + h) * hdv;
#pragma unroll
    for (int vi = 0; vi < MAX_VPT; vi++) {
        const u32 dv = li + vi * ATT_WG;
        if (dv < hdv) orow[dv] = acc[vi] * inv;
    }
}
