//! AVX2 + FMA + F16C variants of the grid IQ dot kernels (IQ1_S, IQ1_M,
//! IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S) and the ternary ones (TQ1_0,
//! TQ2_0), after the ideas of ggml's `ggml-cpu/arch/x86/quants.c`.
//!
//! Per 32 values: the grid points are looked up one by one (a `u64` holds
//! 8 values, a `u32` 4; gathers are slower) into a 256-bit register of
//! unsigned bytes; the signs are moved onto the Q8_K bytes
//! (`_mm256_sign_epi8` with ±1 bytes, or `(q ^ m) - m` with a 0/−1 mask);
//! `maddubs` multiplies and adds pairs into `i16` (at most `2 · 62 · 127`),
//! `madd` weights them with the sub-block scale into `i32`, and each
//! super-block ends with one `f32` FMA. IQ1's grid bytes are signed
//! (`-1..=1`) and use [`mul_add_i8`]; its `±1/8` shift is a separate sum.

use std::arch::x86_64::*;

use super::scalar;
use crate::blocks::{
    BlockIq1M, BlockIq1S, BlockIq2S, BlockIq2Xs, BlockIq2Xxs, BlockIq3S, BlockIq3Xxs, BlockQ8K,
    BlockTq1_0, BlockTq2_0,
};
use crate::dequant::grids::{
    IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID,
};
use crate::kernels::kquants::avx2::{
    entry_point, f16_to_f32, hsum_ps, load128, load256, mul_add_i8, prefetch_ahead, SHUFFLE_BYTES,
};

entry_point!(
    /// IQ2_XXS · Q8_K, AVX2.
    vec_dot_iq2_xxs_q8_k, BlockIq2Xxs, iq2_xxs, scalar::vec_dot_iq2_xxs_q8_K_scalar
);
entry_point!(
    /// IQ2_XS · Q8_K, AVX2.
    vec_dot_iq2_xs_q8_k, BlockIq2Xs, iq2_xs, scalar::vec_dot_iq2_xs_q8_K_scalar
);
entry_point!(
    /// IQ2_S · Q8_K, AVX2.
    vec_dot_iq2_s_q8_k, BlockIq2S, iq2_s, scalar::vec_dot_iq2_s_q8_K_scalar
);
entry_point!(
    /// IQ3_XXS · Q8_K, AVX2.
    vec_dot_iq3_xxs_q8_k, BlockIq3Xxs, iq3_xxs, scalar::vec_dot_iq3_xxs_q8_K_scalar
);
entry_point!(
    /// IQ3_S · Q8_K, AVX2.
    vec_dot_iq3_s_q8_k, BlockIq3S, iq3_s, scalar::vec_dot_iq3_s_q8_K_scalar
);
entry_point!(
    /// IQ1_S · Q8_K, AVX2.
    vec_dot_iq1_s_q8_k, BlockIq1S, iq1_s, scalar::vec_dot_iq1_s_q8_K_scalar
);
entry_point!(
    /// IQ1_M · Q8_K, AVX2.
    vec_dot_iq1_m_q8_k, BlockIq1M, iq1_m, scalar::vec_dot_iq1_m_q8_K_scalar
);
entry_point!(
    /// TQ1_0 · Q8_K, AVX2.
    vec_dot_tq1_0_q8_k, BlockTq1_0, tq1_0, scalar::vec_dot_tq1_0_q8_K_scalar
);
entry_point!(
    /// TQ2_0 · Q8_K, AVX2.
    vec_dot_tq2_0_q8_k, BlockTq2_0, tq2_0, scalar::vec_dot_tq2_0_q8_K_scalar
);

// ------------------------------------------------------------------ helpers

/// For each 7-bit sign index `k` of IQ2_XXS/IQ2_XS/IQ3_XXS, 8 bytes of `±1`:
/// byte `j` is `-1` where bit `j` of `k | parity(k) << 7` is set (ggml's
/// `keven_signs_q2xs`; the eighth sign makes the count of minus signs even,
/// as [`crate::dequant::grids::KSIGNS_IQ2XS`]).
pub(in crate::kernels) static KEVEN_SIGNS: [u64; 128] = {
    let mut t = [0u64; 128];
    let mut k = 0usize;
    while k < 128 {
        let bits = k | ((k.count_ones() as usize & 1) << 7);
        let mut v = 0u64;
        let mut j = 0;
        while j < 8 {
            let byte: u64 = if bits >> j & 1 != 0 { 0xff } else { 0x01 };
            v |= byte << (8 * j);
            j += 1;
        }
        t[k] = v;
        k += 1;
    }
    t
};

/// Four 8-value grid points (`u64` entries), lowest first.
#[inline]
#[target_feature(enable = "avx2")]
fn grid_u64(g: [u64; 4]) -> __m256i {
    _mm256_set_epi64x(g[3] as i64, g[2] as i64, g[1] as i64, g[0] as i64)
}

/// Eight 4-value grid points (`u32` entries), lowest first.
#[inline]
#[target_feature(enable = "avx2")]
fn grid_u32(g: [u32; 8]) -> __m256i {
    let g = g.map(|v| v as i32);
    _mm256_setr_epi32(g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7])
}

/// `q8` with the signs of four 7-bit IQ2/IQ3 sign indices packed in `bits`
/// (7 bits each, lowest first).
#[inline]
#[target_feature(enable = "avx2")]
fn apply_keven_signs(q8: __m256i, bits: u32) -> __m256i {
    let s = |l: u32| KEVEN_SIGNS[((bits >> (7 * l)) & 127) as usize];
    _mm256_sign_epi8(q8, grid_u64([s(0), s(1), s(2), s(3)]))
}

/// `q8` with 32 explicit sign bits (`bits` bit `j` set: value `j` negative).
#[inline]
#[target_feature(enable = "avx2")]
fn apply_sign_bits(q8: __m256i, bits: u32) -> __m256i {
    // Byte j of the result gets sign byte j / 8, tested against bit j % 8.
    let spread = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, //
        2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
    );
    let select = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let b = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), spread);
    let neg = _mm256_cmpeq_epi8(_mm256_and_si256(b, select), select);
    _mm256_sub_epi8(_mm256_xor_si256(q8, neg), neg)
}

/// The 16 scales `2s + 1` of 4-bit `s` packed two per byte (low nibble
/// first) in `packed`, as bytes in a 128-bit register, in order.
#[inline]
#[target_feature(enable = "avx2")]
fn odd_scales16(packed: u64) -> __m128i {
    let m4 = _mm_set1_epi8(0xf);
    let v = _mm_cvtsi64_si128(packed as i64);
    let s = _mm_unpacklo_epi8(
        _mm_and_si128(v, m4),
        _mm_and_si128(_mm_srli_epi16::<4>(v), m4),
    );
    _mm_add_epi8(_mm_add_epi8(s, s), _mm_set1_epi8(1))
}

/// The `i16` scales of sub-block `ib` from [`odd_scales16`]: scale `2ib`
/// over values 0..16 (lane 0), `2ib + 1` over 16..32 (lane 1).
#[inline]
#[target_feature(enable = "avx2")]
fn half_scales(scales: __m128i, ib: usize) -> __m256i {
    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, load128(&SHUFFLE_BYTES[ib])))
}

// ------------------------------------------------------------------ IQ2, IQ3

#[target_feature(enable = "avx2,fma,f16c")]
fn iq2_xxs(x: &[BlockIq2Xxs], y: &[BlockQ8K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let xs = x;
    for (i, (x, y)) in x.iter().zip(y).enumerate() {
        prefetch_ahead(xs, i);
        let q8: &[[i8; 32]; 8] = bytemuck::cast_ref(&y.qs);
        let mut sumi = _mm256_setzero_si256();
        for (ib, q2) in x.qs.chunks_exact(4).enumerate() {
            // First u32: 4 grid indices; second: 4 × 7 sign bits, 4-bit scale.
            let aux0 = u32::from(q2[0]) | (u32::from(q2[1]) << 16);
            let aux1 = u32::from(q2[2]) | (u32::from(q2[3]) << 16);
            let g = aux0.to_le_bytes().map(|b| IQ2XXS_GRID[usize::from(b)]);
            let q8s = apply_keven_signs(load256(&q8[ib]), aux1);
            let dot = _mm256_maddubs_epi16(grid_u64(g), q8s);
            let ls = (2 * (aux1 >> 28) + 1) as i16;
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(dot, _mm256_set1_epi16(ls)));
        }
        let d = f16_to_f32(x.d) * y.d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    0.125 * hsum_ps(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn iq2_xs(x: &[BlockIq2Xs], y: &[BlockQ8K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let xs = x;
    for (i, (x, y)) in x.iter().zip(y).enumerate() {
        prefetch_ahead(xs, i);
        let scales = odd_scales16(u64::from_le_bytes(x.scales));
        let q8: &[[i8; 32]; 8] = bytemuck::cast_ref(&y.qs);
        let mut sumi = _mm256_setzero_si256();
        for (ib, q2) in x.qs.chunks_exact(4).enumerate() {
            // Each u16: 9-bit grid index, 7 sign bits.
            let g = [0, 1, 2, 3].map(|l| IQ2XS_GRID[usize::from(q2[l] & 511)]);
            let signs = [0, 1, 2, 3].map(|l| KEVEN_SIGNS[usize::from(q2[l] >> 9)]);
            let q8s = _mm256_sign_epi8(load256(&q8[ib]), grid_u64(signs));
            let dot = _mm256_maddubs_epi16(grid_u64(g), q8s);
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(dot, half_scales(scales, ib)));
        }
        let d = f16_to_f32(x.d) * y.d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    0.125 * hsum_ps(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn iq2_s(x: &[BlockIq2S], y: &[BlockQ8K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let xs = x;
    for (i, (x, y)) in x.iter().zip(y).enumerate() {
        prefetch_ahead(xs, i);
        let scales = odd_scales16(u64::from_le_bytes(x.scales));
        let q8: &[[i8; 32]; 8] = bytemuck::cast_ref(&y.qs);
        // qs: 32 bytes of grid-index low bits, then 32 bytes of explicit signs.
        let (qs, signs) = x.qs.split_at(32);
        let mut sumi = _mm256_setzero_si256();
        for ib in 0..8 {
            let qh = usize::from(x.qh[ib]);
            let g = [0, 1, 2, 3]
                .map(|l| IQ2S_GRID[usize::from(qs[4 * ib + l]) | ((qh << (8 - 2 * l)) & 0x300)]);
            let s = &signs[4 * ib..4 * ib + 4];
            let q8s = apply_sign_bits(
                load256(&q8[ib]),
                u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
            );
            let dot = _mm256_maddubs_epi16(grid_u64(g), q8s);
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(dot, half_scales(scales, ib)));
        }
        let d = f16_to_f32(x.d) * y.d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    0.125 * hsum_ps(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn iq3_xxs(x: &[BlockIq3Xxs], y: &[BlockQ8K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let xs = x;
    for (i, (x, y)) in x.iter().zip(y).enumerate() {
        prefetch_ahead(xs, i);
        let q8: &[[i8; 32]; 8] = bytemuck::cast_ref(&y.qs);
        // qs: 64 bytes of grid indices (8 per 32 values), then 8 u32 of
        // 4 × 7 sign bits and a 4-bit scale.
        let (q3, gas) = x.qs.split_at(64);
        let mut sumi = _mm256_setzero_si256();
        for ib in 0..8 {
            let g: [u32; 8] = std::array::from_fn(|k| IQ3XXS_GRID[usize::from(q3[8 * ib + k])]);
            let a = &gas[4 * ib..4 * ib + 4];
            let aux = u32::from_le_bytes([a[0], a[1], a[2], a[3]]);
            let q8s = apply_keven_signs(load256(&q8[ib]), aux);
            let dot = _mm256_maddubs_epi16(grid_u32(g), q8s);
            let ls = (2 * (aux >> 28) + 1) as i16;
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(dot, _mm256_set1_epi16(ls)));
        }
        let d = f16_to_f32(x.d) * y.d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    0.25 * hsum_ps(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn iq3_s(x: &[BlockIq3S], y: &[BlockQ8K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let xs = x;
    for (i, (x, y)) in x.iter().zip(y).enumerate() {
        prefetch_ahead(xs, i);
        let q8: &[[i8; 32]; 8] = bytemuck::cast_ref(&y.qs);
        let mut sumi = _mm256_setzero_si256();
        for ib in 0..8 {
            // 9-bit grid indices: 8 bits in qs, bit k of qh[ib] for point k.
            let qh = usize::from(x.qh[ib]);
            let g: [u32; 8] = std::array::from_fn(|k| {
                IQ3S_GRID[usize::from(x.qs[8 * ib + k]) | ((qh << (8 - k)) & 256)]
            });
            let s = &x.signs[4 * ib..4 * ib + 4];
            let q8s = apply_sign_bits(
                load256(&q8[ib]),
                u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
            );
            let dot = _mm256_maddubs_epi16(grid_u32(g), q8s);
            let ls = i16::from(2 * ((x.scales[ib / 2] >> (4 * (ib % 2))) & 0xf) + 1);
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(dot, _mm256_set1_epi16(ls)));
        }
        let d = f16_to_f32(x.d) * y.d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_ps(acc)
}

// ------------------------------------------------------------------ IQ1

#[target_feature(enable = "avx2,fma,f16c")]
fn iq1_s(x: &[BlockIq1S], y: &[BlockQ8K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut acc_delta = 0.0f32;
    let xs = x;
    for (i, (x, y)) in x.iter().zip(y).enumerate() {
        prefetch_ahead(xs, i);
        let q8: &[[i8; 32]; 8] = bytemuck::cast_ref(&y.qs);
        let mut sumi = _mm256_setzero_si256();
        let mut sumi_delta = 0i32;
        for ib in 0..8 {
            // qh[ib]: 3 high index bits per 8 values, a 3-bit scale, the sign of the shift.
            let qh = usize::from(x.qh[ib]);
            let g = [0, 1, 2, 3]
                .map(|l| IQ1S_GRID[usize::from(x.qs[4 * ib + l]) | (((qh >> (3 * l)) & 7) << 8)]);
            let dot = mul_add_i8(grid_u64(g), load256(&q8[ib]));
            let ls = (2 * ((qh >> 12) & 7) + 1) as i16;
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(dot, _mm256_set1_epi16(ls)));
            let delta = if qh & 0x8000 != 0 { -1 } else { 1 };
            let bsum = i32::from(y.bsums[2 * ib]) + i32::from(y.bsums[2 * ib + 1]);
            sumi_delta += bsum * delta * i32::from(ls);
        }
        let d = y.d * f16_to_f32(x.d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        acc_delta = d.mul_add(sumi_delta as f32, acc_delta);
    }
    hsum_ps(acc) + 0.125 * acc_delta
}

/// The 16 IQ1_M scales `2s + 1` (3-bit `s`, one per 16 values: bits
/// `3(j % 4)..` of the `u16` `j / 4` of `scales`) as bytes, in order.
#[inline]
#[target_feature(enable = "avx2")]
fn iq1m_scales(scales: [u8; 8]) -> __m128i {
    let v = _mm256_set1_epi64x(i64::from_le_bytes(scales));
    // 16-bit lane j gets u16 j / 4 (lanes 0..8 in the low half, 8..16 high).
    let spread = _mm256_setr_epi8(
        0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, //
        4, 5, 4, 5, 4, 5, 4, 5, 6, 7, 6, 7, 6, 7, 6, 7,
    );
    let v = _mm256_shuffle_epi8(v, spread);
    // Bits 3(j % 4).. to the top by a multiplication, then down.
    let up = _mm256_setr_epi16(
        1 << 13,
        1 << 10,
        1 << 7,
        1 << 4,
        1 << 13,
        1 << 10,
        1 << 7,
        1 << 4, //
        1 << 13,
        1 << 10,
        1 << 7,
        1 << 4,
        1 << 13,
        1 << 10,
        1 << 7,
        1 << 4,
    );
    let s = _mm256_srli_epi16::<13>(_mm256_mullo_epi16(v, up));
    let s = _mm256_add_epi16(_mm256_add_epi16(s, s), _mm256_set1_epi16(1));
    // Bytes: lane 0 holds scales 0..8 twice, lane 1 scales 8..16; take one of each.
    let p = _mm256_packus_epi16(s, s);
    _mm256_castsi256_si128(_mm256_permute4x64_epi64::<0b1000>(p))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn iq1_m(x: &[BlockIq1M], y: &[BlockQ8K]) -> f32 {
    let ones = _mm256_set1_epi8(1);
    // Byte j of 32: qh byte j / 16, tested against bit 3 (first 8 values of
    // each 16) or bit 7: the sign of the shift of values 8(j / 8)...
    let spread = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, //
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    );
    let select = _mm256_setr_epi8(
        8, 8, 8, 8, 8, 8, 8, 8, -128, -128, -128, -128, -128, -128, -128, -128, //
        8, 8, 8, 8, 8, 8, 8, 8, -128, -128, -128, -128, -128, -128, -128, -128,
    );
    let mut acc = _mm256_setzero_ps();
    let mut acc_delta = _mm256_setzero_ps();
    let xs = x;
    for (i, (x, y)) in x.iter().zip(y).enumerate() {
        prefetch_ahead(xs, i);
        // Four u16 of 3-bit scales; their top nibbles make the f16 super-block scale.
        let sc: [u16; 4] =
            std::array::from_fn(|i| u16::from_le_bytes([x.scales[2 * i], x.scales[2 * i + 1]]));
        let d_bits =
            (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000);
        let scales = iq1m_scales(x.scales);
        let q8: &[[i8; 32]; 8] = bytemuck::cast_ref(&y.qs);
        let mut sumi = _mm256_setzero_si256();
        let mut sumi_delta = _mm256_setzero_si256();
        for (ib, q8) in q8.iter().enumerate() {
            let (h0, h1) = (u16::from(x.qh[2 * ib]), u16::from(x.qh[2 * ib + 1]));
            let qs = &x.qs[4 * ib..4 * ib + 4];
            let g = [
                IQ1S_GRID[usize::from(u16::from(qs[0]) | ((h0 << 8) & 0x700))],
                IQ1S_GRID[usize::from(u16::from(qs[1]) | ((h0 << 4) & 0x700))],
                IQ1S_GRID[usize::from(u16::from(qs[2]) | ((h1 << 8) & 0x700))],
                IQ1S_GRID[usize::from(u16::from(qs[3]) | ((h1 << 4) & 0x700))],
            ];
            // The shift's sign per 8 values, as ±1 bytes.
            let hh = _mm256_shuffle_epi8(_mm256_set1_epi16((h0 | (h1 << 8)) as i16), spread);
            let neg = _mm256_cmpeq_epi8(_mm256_and_si256(hh, select), select);
            let deltas = _mm256_or_si256(neg, ones);
            let q8v = load256(q8);
            let dot = mul_add_i8(grid_u64(g), q8v);
            let dot_delta = _mm256_maddubs_epi16(ones, _mm256_sign_epi8(q8v, deltas));
            let scale = half_scales(scales, ib);
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(dot, scale));
            sumi_delta = _mm256_add_epi32(sumi_delta, _mm256_madd_epi16(dot_delta, scale));
        }
        let d = _mm256_set1_ps(y.d * f16_to_f32(half::f16::from_bits(d_bits)));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
        acc_delta = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi_delta), acc_delta);
    }
    hsum_ps(acc) + 0.125 * hsum_ps(acc_delta)
}

// ------------------------------------------------------------------ ternary

/// Ternary digits (0, 1 or 2) of 32 bytes whose digit has been moved to
/// the top by a multiplication with `3^n` (mod 256): `(q · 3) >> 8`, via
/// `avg(q, avg(q, 0)) ≈ (3q + 2) / 4` with the `+1`s of `avg` cancelled.
#[inline]
#[target_feature(enable = "avx2")]
fn top_trit(q: __m256i) -> __m256i {
    let zero = _mm256_setzero_si256();
    let q = _mm256_subs_epu8(q, _mm256_set1_epi8(1));
    let q = _mm256_avg_epu8(q, _mm256_avg_epu8(q, zero));
    _mm256_and_si256(_mm256_srli_epi16::<6>(q), _mm256_set1_epi8(3))
}

/// `q · 3^n` (mod 256) of each byte, for n = 0..5 from the `q · 3^(n-1)`
/// products: `3q = q + 2q`, `9q = 8q + q` (byte-wise shifts by masking).
#[inline]
#[target_feature(enable = "avx2")]
fn times9(q: __m256i) -> __m256i {
    _mm256_add_epi8(
        _mm256_and_si256(_mm256_slli_epi16::<3>(q), _mm256_set1_epi8(-8)),
        q,
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
fn tq1_0(x: &[BlockTq1_0], y: &[BlockQ8K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let xs = x;
    for (i, (x, y)) in x.iter().zip(y).enumerate() {
        prefetch_ahead(xs, i);
        let q8: &[[i8; 32]; 8] = bytemuck::cast_ref(&y.qs);
        // Sums of digit · q8 in i16 (at most 2 · 2 · 127 per pair and
        // 5 pairs per lane), minus Σ q8 for the `- 1`.
        // qs[0..32]: digits 0..5 are values 32n + m.
        let qs32: &[u8; 32] = x.qs[..32].try_into().unwrap();
        let q0 = load256(qs32);
        let q1 = _mm256_add_epi8(q0, _mm256_add_epi8(q0, q0));
        let q2 = times9(q0);
        let q3 = times9(q1);
        let q4 = times9(q2);
        let mut sum16 = _mm256_setzero_si256();
        for (n, q) in [q0, q1, q2, q3, q4].into_iter().enumerate() {
            let p = _mm256_maddubs_epi16(top_trit(q), load256(&q8[n]));
            sum16 = _mm256_add_epi16(sum16, p);
        }
        // qs[32..48]: values 160 + 16n + m; qh: values 240 + 4n + j.
        let qs16: &[u8; 16] = x.qs[32..].try_into().unwrap();
        let r0 = load128(qs16);
        let r1 = _mm_add_epi8(r0, _mm_add_epi8(r0, r0));
        let r01 = _mm256_set_m128i(r1, r0);
        let r23 = times9(r01);
        let r4 = _mm256_castsi256_si128(times9(r23));
        // qh's 4 digits by 16-bit multiplies: bytes j of qh times 1, 3, 9, 27.
        let h = _mm256_cvtepu8_epi16(_mm_set1_epi32(i32::from_le_bytes(x.qh)));
        let h = _mm256_mullo_epi16(
            h,
            _mm256_setr_epi16(1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27),
        );
        let h = _mm256_and_si256(h, _mm256_set1_epi16(0xff));
        let r5 = _mm_packus_epi16(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h));
        let r45 = _mm256_set_m128i(r5, r4);
        let tail: &[[i8; 32]; 3] =
            bytemuck::cast_ref::<[i8; 96], _>(y.qs[160..].try_into().unwrap());
        for (k, r) in [r01, r23, r45].into_iter().enumerate() {
            let p = _mm256_maddubs_epi16(top_trit(r), load256(&tail[k]));
            sum16 = _mm256_add_epi16(sum16, p);
        }
        let sum16 = _mm256_sub_epi16(sum16, load256(&y.bsums));
        let sumi = _mm256_madd_epi16(sum16, _mm256_set1_epi16(1));
        let d = y.d * f16_to_f32(x.d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_ps(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn tq2_0(x: &[BlockTq2_0], y: &[BlockQ8K]) -> f32 {
    let m3 = _mm256_set1_epi8(3);
    let mut acc = _mm256_setzero_ps();
    let xs = x;
    for (i, (x, y)) in x.iter().zip(y).enumerate() {
        prefetch_ahead(xs, i);
        let qs: &[[u8; 32]; 2] = bytemuck::cast_ref(&x.qs);
        let q8: &[[i8; 32]; 8] = bytemuck::cast_ref(&y.qs);
        // q · q8 in i16 (q ≤ 3: at most 8 pairs of 2 · 3 · 127 per lane),
        // minus Σ q8 for the `- 1`.
        let mut sum16 = _mm256_setzero_si256();
        for (j, qs) in qs.iter().enumerate() {
            let q = load256(qs);
            let parts = [
                _mm256_and_si256(q, m3),
                _mm256_and_si256(_mm256_srli_epi16::<2>(q), m3),
                _mm256_and_si256(_mm256_srli_epi16::<4>(q), m3),
                _mm256_and_si256(_mm256_srli_epi16::<6>(q), m3),
            ];
            for (l, p) in parts.into_iter().enumerate() {
                sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(p, load256(&q8[4 * j + l])));
            }
        }
        let sum16 = _mm256_sub_epi16(sum16, load256(&y.bsums));
        let sumi = _mm256_madd_epi16(sum16, _mm256_set1_epi16(1));
        let d = y.d * f16_to_f32(x.d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_ps(acc)
}

#[cfg(test)]
mod tests {
    use super::KEVEN_SIGNS;
    use crate::dequant::grids::KSIGNS_IQ2XS;

    #[test]
    fn keven_signs_match_ksigns_iq2xs() {
        for (k, &v) in KEVEN_SIGNS.iter().enumerate() {
            for (j, b) in v.to_le_bytes().into_iter().enumerate() {
                let negative = KSIGNS_IQ2XS[k] >> j & 1 != 0;
                assert_eq!(b as i8, if negative { -1 } else { 1 }, "k = {k}, j = {j}");
            }
        }
    }
}
