//! Reference quantizers, byte-identical with ggml's `quantize_row_*_ref`
//! (the quantizers without an importance matrix), split by family:
//!
//! - Q8_0, Q8_1, Q8_K ([`activations`]): what the dot kernels quantize
//!   activations to;
//! - Q4_0, Q4_1, Q5_0, Q5_1 ([`legacy`]);
//! - Q2_K, Q3_K, Q4_K, Q5_K, Q6_K ([`kquants`]);
//! - IQ4_NL, IQ4_XS ([`iq4`]);
//! - MXFP4 ([`mxfp4`]).
//!
//! [`FROM_F32`] registers, for each weight type, the quantizer llama-quantize
//! uses without an importance matrix (`ggml_quantize_chunk` with no imatrix).
//! That is ggml's `quantize_row_*_ref` for every type but IQ4_NL, whose
//! `_ref` is a cheaper variant ([`iq4::quantize_row_iq4_nl`]).
//!
//! Byte identity depends on doing the float arithmetic exactly as ggml does:
//! f32 throughout, in ggml's evaluation order, no fused multiply-add, and
//! [`nearest_int`]'s rounding trick rather than `round`.

pub mod activations;
pub mod float;
pub mod iq4;
pub mod kquants;
pub mod legacy;
pub mod mxfp4;

pub use activations::{quantize_row_q8_0, quantize_row_q8_1, quantize_row_q8_K};
pub use float::{quantize_row_bf16, quantize_row_f16, quantize_row_f32};
pub use iq4::{quantize_iq4_nl, quantize_row_iq4_nl, quantize_row_iq4_xs};
pub use kquants::{
    quantize_row_q2_K, quantize_row_q3_K, quantize_row_q4_K, quantize_row_q5_K, quantize_row_q6_K,
};
pub use legacy::{quantize_row_q4_0, quantize_row_q4_1, quantize_row_q5_0, quantize_row_q5_1};
pub use mxfp4::quantize_row_mxfp4;

use crate::blocks::*;
use crate::dtype::FromF32;
use crate::{from_f32_fn, GgmlType};

/// The reference quantizers, by type.
pub const FROM_F32: &[(GgmlType, FromF32)] = &[
    (GgmlType::F32, from_f32_fn!(quantize_row_f32, f32)),
    (GgmlType::F16, from_f32_fn!(quantize_row_f16, half::f16)),
    (GgmlType::BF16, from_f32_fn!(quantize_row_bf16, half::bf16)),
    (GgmlType::Q4_0, from_f32_fn!(quantize_row_q4_0, BlockQ4_0)),
    (GgmlType::Q4_1, from_f32_fn!(quantize_row_q4_1, BlockQ4_1)),
    (GgmlType::Q5_0, from_f32_fn!(quantize_row_q5_0, BlockQ5_0)),
    (GgmlType::Q5_1, from_f32_fn!(quantize_row_q5_1, BlockQ5_1)),
    (GgmlType::Q8_0, from_f32_fn!(quantize_row_q8_0, BlockQ8_0)),
    (GgmlType::Q8_1, from_f32_fn!(quantize_row_q8_1, BlockQ8_1)),
    (GgmlType::Q2_K, from_f32_fn!(quantize_row_q2_K, BlockQ2K)),
    (GgmlType::Q3_K, from_f32_fn!(quantize_row_q3_K, BlockQ3K)),
    (GgmlType::Q4_K, from_f32_fn!(quantize_row_q4_K, BlockQ4K)),
    (GgmlType::Q5_K, from_f32_fn!(quantize_row_q5_K, BlockQ5K)),
    (GgmlType::Q6_K, from_f32_fn!(quantize_row_q6_K, BlockQ6K)),
    (GgmlType::Q8_K, from_f32_fn!(quantize_row_q8_K, BlockQ8K)),
    (GgmlType::IQ4_NL, from_f32_fn!(quantize_iq4_nl, BlockIq4Nl)),
    (
        GgmlType::IQ4_XS,
        from_f32_fn!(quantize_row_iq4_xs, BlockIq4Xs),
    ),
    (
        GgmlType::MXFP4,
        from_f32_fn!(quantize_row_mxfp4, BlockMxfp4),
    ),
];

/// ggml's `nearest_int`: rounds to nearest, ties to even, by adding 1.5·2²³
/// and reading the low mantissa bits. Valid for |x| ≤ 4194303; like ggml (built
/// with `NDEBUG`) it does not check, and gives the same bits as ggml outside
/// that range.
#[inline]
pub(crate) fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0;
    (v.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// C's float-to-integer conversion as ggml's x86-64 build does it
/// (`cvttss2si`): truncation toward zero, and `i32::MIN` for NaN and values
/// out of range, where C leaves the result undefined. ggml then keeps the low
/// byte. This only shows in blocks whose largest magnitude is below ~1e-37,
/// where `1 / d` overflows to infinity (and `d` is 0 as f16 anyway).
#[inline]
pub(crate) fn c_trunc(v: f32) -> i32 {
    if v > -2_147_483_648.0 && v < 2_147_483_648.0 {
        v as i32
    } else {
        i32::MIN
    }
}

/// `amax = MAX(amax, fabsf(v))` over `x`, from 0, as ggml's Q8_0/Q8_1 write it.
#[inline]
pub(crate) fn abs_max(x: &[f32]) -> f32 {
    x.iter()
        .fold(0.0f32, |m, v| if m > v.abs() { m } else { v.abs() })
}

#[cfg(test)]
mod tests {
    use super::nearest_int;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        let cases = [
            (0.5, 0),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (3.49, 3),
            (-7.6, -8),
        ];
        for (x, want) in cases {
            assert_eq!(nearest_int(x), want, "{x}");
        }
    }
}
