//! The weight types in WGSL: for each GGML type the shaders read, a
//! function `dq4(b, k) -> vec4<f32>` giving values `k..k + 4` (`k` a
//! multiple of 4) of the block whose first byte is `b` in the weight
//! binding `W`, and the block's size in values (`BS`) and bytes (`BB`).
//!
//! Each function is a port of `tessera-quant`'s scalar dequantizer
//! (`dequant/legacy.rs`, `kquants.rs`, `iquants.rs`, `float.rs`), which are
//! bit-exact with ggml: the same integer unpacking and the same f32
//! products in the same order, so a dequantized value is exact (a shader
//! compiler may fuse `d * q - m` into one FMA, a last-bit difference).
//! F32, F16 and BF16 use virtual blocks of 4 values.

use tessera_core::backend::gpu;
use tessera_gguf::GgmlType;

/// `(BS, BB, source of dq4)` for `t`, or `None` when no shader reads it.
///
/// The source also defines `dq4_d(b, k)`, `blk_min(b)` and `MIN_S`: for
/// Q4_1 and Q5_1 (`MIN_S = true`) the values without the block minimum and
/// the minimum, so that a product adds `m · s` per block with the sum `s`
/// of the block's activations as the CPU computes it (its Q8_1 `s`); for
/// the other types `dq4` itself, 0 and `false`.
pub fn dq4(t: GgmlType) -> Option<(u32, u32, String)> {
    let (bs, bb, src) = dq4_parts(t)?;
    let pre = match t {
        GgmlType::Q4_K | GgmlType::Q5_K => K4_SCALES,
        _ => "",
    };
    let post = if has_min_s(t) {
        MIN_S_PARTS
    } else {
        "const MIN_S: bool = false;\nfn dq4_d(b: u32, k: u32) -> vec4<f32> { return dq4(b, k); }\nfn blk_min(b: u32) -> f32 { return 0.0; }\n"
    };
    Some((bs, bb, format!("{pre}{src}{post}")))
}

/// Whether products with `t` weights add the block minimum times the
/// activations' block sum (Q4_1, Q5_1: the CPU's Q8_1 `s` term).
pub fn has_min_s(t: GgmlType) -> bool {
    matches!(t, GgmlType::Q4_1 | GgmlType::Q5_1)
}

// Q4_1 and Q5_1: `d · q` and `m` apart (the minimum is at byte 2).
const MIN_S_PARTS: &str = r#"
const MIN_S: bool = true;
fn blk_min(b: u32) -> f32 {
    return wf16(b + 2u);
}
fn dq4_d(b: u32, k: u32) -> vec4<f32> {
    return dq4(b, k) - blk_min(b);
}
"#;

fn dq4_parts(t: GgmlType) -> Option<(u32, u32, &'static str)> {
    Some(match t {
        GgmlType::F32 => (4, 16, F32),
        GgmlType::F16 => (4, 8, F16),
        GgmlType::BF16 => (4, 8, BF16),
        GgmlType::Q4_0 => (32, 18, Q4_0),
        GgmlType::Q4_1 => (32, 20, Q4_1),
        GgmlType::Q5_0 => (32, 22, Q5_0),
        GgmlType::Q5_1 => (32, 24, Q5_1),
        GgmlType::Q8_0 => (32, 34, Q8_0),
        GgmlType::IQ4_NL => (32, 18, IQ4_NL),
        GgmlType::MXFP4 => (32, 17, MXFP4),
        GgmlType::Q2_K => (256, 84, Q2_K),
        GgmlType::Q3_K => (256, 110, Q3_K),
        GgmlType::Q4_K => (256, 144, Q4_K),
        GgmlType::Q5_K => (256, 176, Q5_K),
        GgmlType::Q6_K => (256, 210, Q6_K),
        GgmlType::IQ4_XS => (256, 136, IQ4_XS),
        _ => return None,
    })
}

/// The types the shaders read, in report order: the GPU backends' common
/// ones, then IQ4_XS.
pub const TYPES: [GgmlType; 16] = {
    let mut all = [GgmlType::IQ4_XS; 16];
    let mut i = 0;
    while i < gpu::WEIGHT_TYPES.len() {
        all[i] = gpu::WEIGHT_TYPES[i];
        i += 1;
    }
    all
};

const F32: &str = r#"
fn dq4(b: u32, k: u32) -> vec4<f32> {
    return vec4<f32>(bitcast<f32>(w32(b)), bitcast<f32>(w32(b + 4u)),
                     bitcast<f32>(w32(b + 8u)), bitcast<f32>(w32(b + 12u)));
}
"#;

const F16: &str = r#"
fn dq4(b: u32, k: u32) -> vec4<f32> {
    let lo = unpack2x16float(w32(b));
    let hi = unpack2x16float(w32(b + 4u));
    return vec4<f32>(lo.x, lo.y, hi.x, hi.y);
}
"#;

// BF16: the bits shifted as they are (a signalling NaN stays one).
const BF16: &str = r#"
fn dq4(b: u32, k: u32) -> vec4<f32> {
    let lo = w32(b);
    let hi = w32(b + 4u);
    return vec4<f32>(bitcast<f32>(lo << 16u), bitcast<f32>(lo & 0xffff0000u),
                     bitcast<f32>(hi << 16u), bitcast<f32>(hi & 0xffff0000u));
}
"#;

// Byte j of qs: value j (low nibble) and j + 16 (high nibble).
const Q4_0: &str = r#"
fn dq4(b: u32, k: u32) -> vec4<f32> {
    let d = wf16(b);
    let sh = (k >> 4u) << 2u;
    let q = wb4(b + 2u + (k & 15u));
    return (vec4<f32>((q >> vec4<u32>(sh)) & vec4<u32>(15u)) - 8.0) * d;
}
"#;

const Q4_1: &str = r#"
fn dq4(b: u32, k: u32) -> vec4<f32> {
    let d = wf16(b);
    let m = wf16(b + 2u);
    let sh = (k >> 4u) << 2u;
    let q = wb4(b + 4u + (k & 15u));
    return vec4<f32>((q >> vec4<u32>(sh)) & vec4<u32>(15u)) * d + m;
}
"#;

// Bit i of qh is the fifth bit of value i.
const Q5_0: &str = r#"
fn dq4(b: u32, k: u32) -> vec4<f32> {
    let d = wf16(b);
    let qh = w32(b + 2u);
    let sh = (k >> 4u) << 2u;
    let q = wb4(b + 6u + (k & 15u));
    let i = vec4<u32>(k) + vec4<u32>(0u, 1u, 2u, 3u);
    let v = ((q >> vec4<u32>(sh)) & vec4<u32>(15u)) | (((vec4<u32>(qh) >> i) & vec4<u32>(1u)) << vec4<u32>(4u));
    return (vec4<f32>(v) - 16.0) * d;
}
"#;

const Q5_1: &str = r#"
fn dq4(b: u32, k: u32) -> vec4<f32> {
    let d = wf16(b);
    let m = wf16(b + 2u);
    let qh = w32(b + 4u);
    let sh = (k >> 4u) << 2u;
    let q = wb4(b + 8u + (k & 15u));
    let i = vec4<u32>(k) + vec4<u32>(0u, 1u, 2u, 3u);
    let v = ((q >> vec4<u32>(sh)) & vec4<u32>(15u)) | (((vec4<u32>(qh) >> i) & vec4<u32>(1u)) << vec4<u32>(4u));
    return vec4<f32>(v) * d + m;
}
"#;

const Q8_0: &str = r#"
fn dq4(b: u32, k: u32) -> vec4<f32> {
    return wi4(b + 2u + k) * wf16(b);
}
"#;

const IQ4_NL: &str = r#"
const KV_IQ4NL = array<f32, 16>(-127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0,
                                1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0);
fn dq4(b: u32, k: u32) -> vec4<f32> {
    let d = wf16(b);
    let sh = (k >> 4u) << 2u;
    let q = (wb4(b + 2u + (k & 15u)) >> vec4<u32>(sh)) & vec4<u32>(15u);
    return vec4<f32>(d * KV_IQ4NL[q.x], d * KV_IQ4NL[q.y], d * KV_IQ4NL[q.z], d * KV_IQ4NL[q.w]);
}
"#;

// E8M0 exponent halved: 2^(e - 128), subnormal below 2.
const MXFP4: &str = r#"
const KV_FP4 = array<f32, 16>(0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0,
                              0.0, -1.0, -2.0, -3.0, -4.0, -6.0, -8.0, -12.0);
fn dq4(b: u32, k: u32) -> vec4<f32> {
    let e = wb(b);
    var bits = 0u;
    if (e < 2u) {
        bits = 0x00200000u << e;
    } else {
        bits = (e - 1u) << 23u;
    }
    let d = bitcast<f32>(bits);
    let sh = (k >> 4u) << 2u;
    let q = (wb4(b + 1u + (k & 15u)) >> vec4<u32>(sh)) & vec4<u32>(15u);
    return vec4<f32>(KV_FP4[q.x] * d, KV_FP4[q.y] * d, KV_FP4[q.z] * d, KV_FP4[q.w] * d);
}
"#;

// Value i: n = i / 128 (32 bytes of qs each), shift 2 * ((i % 128) / 32),
// byte 16 * ((i % 32) / 16) + i % 16; scale byte 8n + 2j + half.
const Q2_K: &str = r#"
fn dq4(b: u32, k: u32) -> vec4<f32> {
    let d = wf16(b + 80u);
    let dmin = wf16(b + 82u);
    let n = k >> 7u;
    let j = (k & 127u) >> 5u;
    let h = (k & 31u) >> 4u;
    let sc = wb(b + 8u * n + 2u * j + h);
    let dl = d * f32(sc & 15u);
    let ml = dmin * f32(sc >> 4u);
    let q = (wb4(b + 16u + 32u * n + 16u * h + (k & 15u)) >> vec4<u32>(2u * j)) & vec4<u32>(3u);
    return dl * vec4<f32>(q) - ml;
}
"#;

// The 16 6-bit scales of Q3_K unpacked as ggml's kmask shuffle does.
const Q3_K: &str = r#"
fn q3_scale(b: u32, is: u32) -> i32 {
    let kk = is >> 2u;
    let byte = is & 3u;
    let a0 = w32(b + 96u);
    let a1 = w32(b + 100u);
    let tmp = w32(b + 104u);
    var lo = 0u;
    if (kk == 0u) { lo = a0; } else if (kk == 1u) { lo = a1; } else if (kk == 2u) { lo = a0 >> 4u; } else { lo = a1 >> 4u; }
    let l4 = (lo >> (8u * byte)) & 15u;
    let h2 = (tmp >> (2u * kk + 8u * byte)) & 3u;
    return i32(l4 | (h2 << 4u));
}
fn dq4(b: u32, k: u32) -> vec4<f32> {
    let d = wf16(b + 108u);
    let n = k >> 7u;
    let j = (k & 127u) >> 5u;
    let h = (k & 31u) >> 4u;
    let l = k & 15u;
    let dl = d * f32(q3_scale(b, 8u * n + 2u * j + h) - 32);
    let q = (wb4(b + 32u + 32u * n + 16u * h + l) >> vec4<u32>(2u * j)) & vec4<u32>(3u);
    let hm = wb4(b + 16u * h + l) & vec4<u32>(1u << (4u * n + j));
    let hi = select(vec4<i32>(4), vec4<i32>(0), hm != vec4<u32>(0u));
    return dl * vec4<f32>(vec4<i32>(q) - hi);
}
"#;

// Scale and min j of the 12 packed bytes (ggml's get_scale_min_k4).
const K4_SCALES: &str = r#"
fn scale_min_k4(s: u32, j: u32) -> vec2<u32> {
    if (j < 4u) {
        return vec2<u32>(wb(s + j) & 63u, wb(s + j + 4u) & 63u);
    }
    return vec2<u32>((wb(s + j + 4u) & 15u) | ((wb(s + j - 4u) >> 6u) << 4u),
                     (wb(s + j + 4u) >> 4u) | ((wb(s + j) >> 6u) << 4u));
}
"#;

const Q4_K: &str = r#"
fn dq4(b: u32, k: u32) -> vec4<f32> {
    let d = wf16(b);
    let dmin = wf16(b + 2u);
    let j = k >> 6u;
    let hi = (k & 63u) >> 5u;
    let sm = scale_min_k4(b + 4u, 2u * j + hi);
    let d1 = d * f32(sm.x);
    let m1 = dmin * f32(sm.y);
    let q = (wb4(b + 16u + 32u * j + (k & 31u)) >> vec4<u32>(4u * hi)) & vec4<u32>(15u);
    return d1 * vec4<f32>(q) - m1;
}
"#;

const Q5_K: &str = r#"
fn dq4(b: u32, k: u32) -> vec4<f32> {
    let d = wf16(b);
    let dmin = wf16(b + 2u);
    let j = k >> 6u;
    let hi = (k & 63u) >> 5u;
    let sub = 2u * j + hi;
    let sm = scale_min_k4(b + 4u, sub);
    let d1 = d * f32(sm.x);
    let m1 = dmin * f32(sm.y);
    let l = k & 31u;
    let q = (wb4(b + 48u + 32u * j + l) >> vec4<u32>(4u * hi)) & vec4<u32>(15u);
    let h = select(vec4<u32>(0u), vec4<u32>(16u), (wb4(b + 16u + l) & vec4<u32>(1u << sub)) != vec4<u32>(0u));
    return d1 * vec4<f32>(q + h) - m1;
}
"#;

// Value i: n = i / 128, quarter = (i % 128) / 32, l = i % 32.
const Q6_K: &str = r#"
fn dq4(b: u32, k: u32) -> vec4<f32> {
    let d = wf16(b + 208u);
    let n = k >> 7u;
    let qt = (k & 127u) >> 5u;
    let l = k & 31u;
    let ql = (wb4(b + 64u * n + l + 32u * (qt & 1u)) >> vec4<u32>(4u * (qt >> 1u))) & vec4<u32>(15u);
    let qh = (wb4(b + 128u + 32u * n + l) >> vec4<u32>(2u * qt)) & vec4<u32>(3u);
    let q = vec4<i32>(ql | (qh << vec4<u32>(4u))) - vec4<i32>(32);
    let scb = wb(b + 192u + 8u * n + (l >> 4u) + 2u * qt);
    let sc = f32((bitcast<i32>(scb) << 24u) >> 24u);
    return d * sc * vec4<f32>(q);
}
"#;

const IQ4_XS: &str = r#"
const KV_IQ4NL = array<f32, 16>(-127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0,
                                1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0);
fn dq4(b: u32, k: u32) -> vec4<f32> {
    let d = wf16(b);
    let ib = k >> 5u;
    let lo = (wb(b + 4u + (ib >> 1u)) >> (4u * (ib & 1u))) & 15u;
    let hi = (w16(b + 2u) >> (2u * ib)) & 3u;
    let dl = d * f32(i32(lo | (hi << 4u)) - 32);
    let w = k & 31u;
    let q = (wb4(b + 8u + 16u * ib + (w & 15u)) >> vec4<u32>(4u * (w >> 4u))) & vec4<u32>(15u);
    return vec4<f32>(dl * KV_IQ4NL[q.x], dl * KV_IQ4NL[q.y], dl * KV_IQ4NL[q.z], dl * KV_IQ4NL[q.w]);
}
"#;
