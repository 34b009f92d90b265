//! AVX2 + FMA + F16C variants of the IQ dot kernels: IQ4_XS.
//!
//! IQ4_XS (after ggml's `ggml_vec_dot_iq4_xs_q8_K`): a `pshufb` looks the
//! 4-bit indices up in the 16 non-linear levels, giving signed bytes in
//! `-127..=113`; their products with the Q8_K bytes are added in pairs
//! ([`mul_add_i8`]), weighted by the 6-bit sub-block scale minus 32 with
//! `madd`, and each super-block ends with one FMA of `d_w · d_a`.

use std::arch::x86_64::*;

use super::scalar;
use crate::blocks::{BlockIq4Xs, BlockQ8K};
use crate::dequant::grids::KVALUES_IQ4NL;
use crate::kernels::kquants::avx2::{
    entry_point, f16_to_f32, hsum_ps, load128, load256, mul_add_i8, prefetch_ahead, SHUFFLE_ONE,
};

entry_point!(
    /// IQ4_XS · Q8_K, AVX2.
    vec_dot_iq4_xs_q8_k, BlockIq4Xs, iq4_xs, scalar::vec_dot_iq4_xs_q8_K_scalar
);

/// The 8 six-bit sub-block scales of an IQ4_XS block minus 32, as `i16`
/// in both 128-bit lanes: 4 bits per scale in `scales_l` (low nibble first),
/// 2 in `scales_h`.
#[inline]
#[target_feature(enable = "avx2")]
fn iq4_xs_scales(x: &BlockIq4Xs) -> __m256i {
    let m4 = _mm_set1_epi8(0xf);
    let l = _mm_cvtsi32_si128(i32::from_le_bytes(x.scales_l));
    // Bytes b0 & 15, b0 >> 4, b1 & 15, …: the low 4 bits of scales 0..8.
    let low = _mm_unpacklo_epi8(
        _mm_and_si128(l, m4),
        _mm_and_si128(_mm_srli_epi16::<4>(l), m4),
    );
    let low = _mm_cvtepu8_epi16(low);
    // Bits 2i, 2i + 1 of scales_h to the top of lane i (multiply by 2^(14 - 2i)), then down.
    let h = _mm_set1_epi16(x.scales_h as i16);
    let shifts = _mm_setr_epi16(1 << 14, 1 << 12, 1 << 10, 1 << 8, 1 << 6, 1 << 4, 1 << 2, 1);
    let high = _mm_srli_epi16::<14>(_mm_mullo_epi16(h, shifts));
    let scales = _mm_sub_epi16(
        _mm_or_si128(low, _mm_slli_epi16::<4>(high)),
        _mm_set1_epi16(32),
    );
    _mm256_broadcastsi128_si256(scales)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn iq4_xs(x: &[BlockIq4Xs], y: &[BlockQ8K]) -> f32 {
    let values = _mm256_broadcastsi128_si256(load128(&KVALUES_IQ4NL));
    let m4 = _mm256_set1_epi8(0xf);
    let mut acc = _mm256_setzero_ps();
    let xs = x;
    for (i, (x, y)) in x.iter().zip(y).enumerate() {
        prefetch_ahead(xs, i);
        let scales = iq4_xs_scales(x);
        let qs: &[[u8; 16]; 8] = bytemuck::cast_ref(&x.qs);
        let q8: &[[i8; 32]; 8] = bytemuck::cast_ref(&y.qs);
        let mut sumi1 = _mm256_setzero_si256();
        let mut sumi2 = _mm256_setzero_si256();
        for ib in (0..8).step_by(2) {
            // 16 bytes of indices: low nibbles are values 0..16, high 16..32.
            let lookup = |bits: __m128i| {
                let both = _mm256_set_m128i(_mm_srli_epi16::<4>(bits), bits);
                _mm256_shuffle_epi8(values, _mm256_and_si256(both, m4))
            };
            let p16_1 = mul_add_i8(lookup(load128(&qs[ib])), load256(&q8[ib]));
            let p16_2 = mul_add_i8(lookup(load128(&qs[ib + 1])), load256(&q8[ib + 1]));
            let ls1 = _mm256_shuffle_epi8(scales, load256(&SHUFFLE_ONE[ib]));
            let ls2 = _mm256_shuffle_epi8(scales, load256(&SHUFFLE_ONE[ib + 1]));
            sumi1 = _mm256_add_epi32(sumi1, _mm256_madd_epi16(p16_1, ls1));
            sumi2 = _mm256_add_epi32(sumi2, _mm256_madd_epi16(p16_2, ls2));
        }
        let d = f16_to_f32(x.d) * y.d;
        acc = _mm256_fmadd_ps(
            _mm256_set1_ps(d),
            _mm256_cvtepi32_ps(_mm256_add_epi32(sumi1, sumi2)),
            acc,
        );
    }
    hsum_ps(acc)
}
