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
    entry_point, f16_to_f32, hsum_ps, load128, load256, mul_add_i8,
};

entry_point!(
    /// IQ4_XS · Q8_K, AVX2.
    vec_dot_iq4_xs_q8_k, BlockIq4Xs, iq4_xs, scalar::vec_dot_iq4_xs_q8_K_scalar
);

#[target_feature(enable = "avx2,fma,f16c")]
fn iq4_xs(x: &[BlockIq4Xs], y: &[BlockQ8K]) -> f32 {
    let values = load128(&KVALUES_IQ4NL);
    let values = _mm256_broadcastsi128_si256(values);
    let m4 = _mm256_set1_epi8(0xf);
    let mut acc = _mm256_setzero_ps();
    for (x, y) in x.iter().zip(y) {
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
            let q4b_1 = lookup(load128(&qs[ib]));
            let q4b_2 = lookup(load128(&qs[ib + 1]));
            let p16_1 = mul_add_i8(q4b_1, load256(&q8[ib]));
            let p16_2 = mul_add_i8(q4b_2, load256(&q8[ib + 1]));
            let ls = |ib: usize| {
                let low = (x.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xf;
                let high = ((x.scales_h >> (2 * ib)) & 3) as u8;
                i16::from(low | (high << 4)) - 32
            };
            sumi1 = _mm256_add_epi32(sumi1, _mm256_madd_epi16(p16_1, _mm256_set1_epi16(ls(ib))));
            sumi2 = _mm256_add_epi32(
                sumi2,
                _mm256_madd_epi16(p16_2, _mm256_set1_epi16(ls(ib + 1))),
            );
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
