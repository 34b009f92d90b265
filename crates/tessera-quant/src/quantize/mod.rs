//! Reference quantizers, byte-identical with ggml's `quantize_row_*_ref`
//! (the quantizers without an importance matrix), split by family:
//!
//! - [`activations`]: Q8_0, Q8_1, Q8_K — what the dot kernels quantize
//!   activations to.
//!
//! Byte identity depends on doing the float arithmetic exactly as ggml does:
//! f32 throughout, in ggml's evaluation order, no fused multiply-add, and
//! [`nearest_int`]'s rounding trick rather than `round`.

pub mod activations;

pub use activations::{quantize_row_q8_0, quantize_row_q8_1, quantize_row_q8_K};

use crate::blocks::{BlockQ8_0, BlockQ8_1};
use crate::dtype::FromF32;
use crate::{from_f32_fn, GgmlType};

/// The reference quantizers, by type.
pub const FROM_F32: &[(GgmlType, FromF32)] = &[
    (GgmlType::Q8_0, from_f32_fn!(quantize_row_q8_0, BlockQ8_0)),
    (GgmlType::Q8_1, from_f32_fn!(quantize_row_q8_1, BlockQ8_1)),
    (
        GgmlType::Q8_K,
        from_f32_fn!(quantize_row_q8_K, crate::blocks::BlockQ8K),
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
