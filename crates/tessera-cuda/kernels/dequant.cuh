// Weight decoding in registers: dq_<type>(row, i) is value i of a weight
// row that starts at `row`, bit-exact with tessera-quant's scalar
// dequantizers (crates/tessera-quant/src/dequant/{legacy,kquants}.rs, which
// follow ggml's dequantize_row_*): the same products and subtractions in
// the same order, each rounded to f32 (kernels are compiled with
// --fmad=false so nothing is fused). Block layouts: crates/tessera-quant/
// src/blocks.rs; every field is read bytewise (blocks are not aligned).
//
// TYPES(X) lists every type as X(name, values per block, bytes per block);
// kernels are instantiated per type from it.

#define TYPES(X)            \
    X(f32, 1, 4)            \
    X(f16, 1, 2)            \
    X(bf16, 1, 2)           \
    X(q4_0, 32, 18)         \
    X(q4_1, 32, 20)         \
    X(q5_0, 32, 22)         \
    X(q5_1, 32, 24)         \
    X(q8_0, 32, 34)         \
    X(iq4_nl, 32, 18)       \
    X(mxfp4, 32, 17)        \
    X(q2_k, 256, 84)        \
    X(q3_k, 256, 110)       \
    X(q4_k, 256, 144)       \
    X(q5_k, 256, 176)       \
    X(q6_k, 256, 210)

__constant__ signed char KVALUES_IQ4NL[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                               1,    13,   25,  38,  53,  69,  89,  113};
__constant__ signed char KVALUES_FP4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

__device__ __forceinline__ float dq_f32(const u8* row, u32 i) {
    return __uint_as_float(ld_u32(row + 4 * (u64)i));
}

__device__ __forceinline__ float dq_f16(const u8* row, u32 i) {
    return ld_f16(row + 2 * (u64)i);
}

__device__ __forceinline__ float dq_bf16(const u8* row, u32 i) {
    return bf16_to_f32(ld_u16(row + 2 * (u64)i));
}

// The 4-bit code of value j (0..32) of a 32-value block whose qs start at q:
// byte j holds value j (low nibble) and value j + 16 (high nibble).
__device__ __forceinline__ u32 nib32(const u8* q, u32 j) {
    return j < 16 ? (q[j] & 0x0f) : (q[j - 16] >> 4);
}

// The fifth bit of value j of a Q5 block (bit j of the little-endian qh).
__device__ __forceinline__ u32 q5_high(const u8* qh, u32 j) {
    return ((ld_u32(qh) >> j) & 1u) << 4;
}

__device__ __forceinline__ float dq_q4_0(const u8* row, u32 i) {
    const u8* b = row + (u64)(i / 32) * 18;
    const float d = ld_f16(b);
    return (float)((i32)nib32(b + 2, i % 32) - 8) * d;
}

__device__ __forceinline__ float dq_q4_1(const u8* row, u32 i) {
    const u8* b = row + (u64)(i / 32) * 20;
    const float d = ld_f16(b), m = ld_f16(b + 2);
    return (float)nib32(b + 4, i % 32) * d + m;
}

__device__ __forceinline__ float dq_q5_0(const u8* row, u32 i) {
    const u8* b = row + (u64)(i / 32) * 22;
    const u32 j = i % 32;
    const float d = ld_f16(b);
    const u32 q = nib32(b + 6, j) | q5_high(b + 2, j);
    return (float)((i32)q - 16) * d;
}

__device__ __forceinline__ float dq_q5_1(const u8* row, u32 i) {
    const u8* b = row + (u64)(i / 32) * 24;
    const u32 j = i % 32;
    const float d = ld_f16(b), m = ld_f16(b + 2);
    const u32 q = nib32(b + 8, j) | q5_high(b + 4, j);
    return (float)q * d + m;
}

__device__ __forceinline__ float dq_q8_0(const u8* row, u32 i) {
    const u8* b = row + (u64)(i / 32) * 34;
    const float d = ld_f16(b);
    return (float)(i8)b[2 + i % 32] * d;
}

__device__ __forceinline__ float dq_iq4_nl(const u8* row, u32 i) {
    const u8* b = row + (u64)(i / 32) * 18;
    const float d = ld_f16(b);
    return d * (float)KVALUES_IQ4NL[nib32(b + 2, i % 32)];
}

// 2^(e - 128) (ggml_e8m0_to_fp32_half).
__device__ __forceinline__ float e8m0_half(u32 e) {
    const u32 bits = e < 2 ? (0x00200000u << e) : ((e - 1) << 23);
    return __uint_as_float(bits);
}

__device__ __forceinline__ float dq_mxfp4(const u8* row, u32 i) {
    const u8* b = row + (u64)(i / 32) * 17;
    const float d = e8m0_half(b[0]);
    return (float)KVALUES_FP4[nib32(b + 1, i % 32)] * d;
}

// Q2_K: values come in runs of 128 (n), each reading qs[32n..32n+32] at
// shifts 0, 2, 4, 6 (s), each shift two halves of 16 (h) with their own
// 4-bit scale and min.
__device__ __forceinline__ float dq_q2_k(const u8* row, u32 i) {
    const u8* b = row + (u64)(i / 256) * 84;
    const u32 j = i % 256, n = j / 128, r = j % 128, s = r / 32, h = (r % 32) / 16, l = r % 16;
    const float d = ld_f16(b + 80), dmin = ld_f16(b + 82);
    const u32 sc = b[n * 8 + s * 2 + h];
    const float dl = d * (float)(sc & 0x0f);
    const float ml = dmin * (float)(sc >> 4);
    const u32 q = (b[16 + 32 * n + 16 * h + l] >> (2 * s)) & 3;
    return dl * (float)q - ml;
}

// Scale `is` (0..16) of a Q3_K block, 6 bits from 12 packed bytes as
// tessera-quant's q3_k_scales unpacks them, minus 32.
__device__ __forceinline__ i32 q3_k_scale(const u8* p, u32 is) {
    const u32 k = is % 4, g = is / 4;
    const u32 lowb = p[(g & 1) * 4 + k];
    const u32 low = (g >> 1) ? (lowb >> 4) : (lowb & 0x0f);
    const u32 high = (p[8 + k] >> (2 * g)) & 3;
    return (i32)(low | (high << 4)) - 32;
}

__device__ __forceinline__ float dq_q3_k(const u8* row, u32 i) {
    const u8* b = row + (u64)(i / 256) * 110;
    const u32 j = i % 256, n = j / 128, r = j % 128, s = r / 32, h = (r % 32) / 16, l = r % 16;
    const float d = ld_f16(b + 108);
    const float dl = d * (float)q3_k_scale(b + 96, n * 8 + s * 2 + h);
    const i32 lo = (b[32 + 32 * n + 16 * h + l] >> (2 * s)) & 3;
    const u32 m = 1u << (n * 4 + s);
    const i32 hi = (b[16 * h + l] & m) ? 0 : 4;
    return dl * (float)(lo - hi);
}

// Scale and min j (0..8) of the 12 packed bytes of Q4_K/Q5_K.
__device__ __forceinline__ void scale_min_k4(u32 j, const u8* q, u32* sc, u32* m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// Q4_K: runs of 64 (c) read qs[32c..32c+32], low nibbles then high
// nibbles, sub-blocks 2c and 2c + 1.
__device__ __forceinline__ float dq_q4_k(const u8* row, u32 i) {
    const u8* b = row + (u64)(i / 256) * 144;
    const u32 j = i % 256, c = j / 64, r = j % 64, l = r % 32, hi = r / 32;
    const float d = ld_f16(b), dmin = ld_f16(b + 2);
    u32 sc, m;
    scale_min_k4(2 * c + hi, b + 4, &sc, &m);
    const float d1 = d * (float)sc, m1 = dmin * (float)m;
    const u32 qb = b[16 + 32 * c + l];
    const u32 q = hi ? (qb >> 4) : (qb & 0x0f);
    return d1 * (float)q - m1;
}

__device__ __forceinline__ float dq_q5_k(const u8* row, u32 i) {
    const u8* b = row + (u64)(i / 256) * 176;
    const u32 j = i % 256, c = j / 64, r = j % 64, l = r % 32, hi = r / 32;
    const float d = ld_f16(b), dmin = ld_f16(b + 2);
    u32 sc, m;
    scale_min_k4(2 * c + hi, b + 4, &sc, &m);
    const float d1 = d * (float)sc, m1 = dmin * (float)m;
    const u32 qb = b[48 + 32 * c + l];
    const u32 u = (hi ? 2u : 1u) << (2 * c);
    const u32 q = (hi ? (qb >> 4) : (qb & 0x0f)) + ((b[16 + l] & u) ? 16 : 0);
    return d1 * (float)q - m1;
}

// Q6_K: runs of 128 (n) with ql[64n..], qh[32n..], scales[8n..]; quarter
// k of a run takes the low (k < 2) or high nibble of ql[l + 32 (k & 1)]
// and bits 2k..2k+2 of qh[l].
__device__ __forceinline__ float dq_q6_k(const u8* row, u32 i) {
    const u8* b = row + (u64)(i / 256) * 210;
    const u32 j = i % 256, n = j / 128, r = j % 128, k = r / 32, l = r % 32;
    const float d = ld_f16(b + 208);
    const u32 qlb = b[64 * n + l + 32 * (k & 1)];
    const u32 lo = (k >> 1) ? (qlb >> 4) : (qlb & 0x0f);
    const u32 hb = (b[128 + 32 * n + l] >> (2 * k)) & 3;
    const i32 q = (i32)(lo | (hb << 4)) - 32;
    const float sc = (float)(i8)b[192 + 8 * n + l / 16 + 2 * k];
    return d * sc * (float)q;
}
