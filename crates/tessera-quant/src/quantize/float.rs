//! f32 to the plain float types, as ggml's `from_float` of each writes them
//! (what llama-quantize uses for `F16`, `BF16` and `F32` outputs).
//!
//! - F16: round to nearest, ties to even (`ggml_fp32_to_fp16_row`, F16C's
//!   `vcvtps2ph` with rounding mode 0): `half::f16::from_f32`.
//! - BF16: ggml's `ggml_compute_fp32_to_bf16`: a NaN keeps its top bits and
//!   is made quiet (`| 64`), everything else rounds to nearest even by
//!   adding `0x7fff + lsb` to the bits.
//! - F32: a copy.

use half::{bf16, f16};

/// f32 → F16.
///
/// # Panics
/// If `y.len() != x.len()`.
pub fn quantize_row_f16(x: &[f32], y: &mut [f16]) {
    assert_eq!(x.len(), y.len(), "F16: one output per input");
    for (y, &x) in y.iter_mut().zip(x) {
        *y = f16::from_f32(x);
    }
}

/// f32 → BF16, ggml's rounding.
///
/// # Panics
/// If `y.len() != x.len()`.
pub fn quantize_row_bf16(x: &[f32], y: &mut [bf16]) {
    assert_eq!(x.len(), y.len(), "BF16: one output per input");
    for (y, &x) in y.iter_mut().zip(x) {
        let i = x.to_bits();
        let bits = if (i & 0x7fff_ffff) > 0x7f80_0000 {
            (i >> 16) | 64
        } else {
            (i + (0x7fff + ((i >> 16) & 1))) >> 16
        };
        *y = bf16::from_bits(bits as u16);
    }
}

/// f32 → F32: a copy.
///
/// # Panics
/// If `y.len() != x.len()`.
pub fn quantize_row_f32(x: &[f32], y: &mut [f32]) {
    y.copy_from_slice(x);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_like_ggml() {
        // 1 + 2^-8 is a tie between two BF16 values: to even (1.0); 1 + 3·2^-8
        // rounds up; a signalling NaN becomes quiet with its top bits.
        let x = [
            1.0 + 1.0 / 256.0,
            1.0 + 3.0 / 256.0,
            f32::from_bits(0x7f80_0001 | 0x0001_0000),
            -2.5,
        ];
        let mut y = [bf16::ZERO; 4];
        quantize_row_bf16(&x, &mut y);
        assert_eq!(y[0].to_bits(), 0x3f80);
        assert_eq!(y[1].to_bits(), 0x3f82);
        assert_eq!(y[2].to_bits(), 0x7f81 | 64);
        assert_eq!(y[3].to_f32(), -2.5);
    }

    #[test]
    fn f16_ties_to_even() {
        let x = [1.0 + 1.0 / 2048.0, 1.0 + 3.0 / 2048.0];
        let mut y = [f16::ZERO; 2];
        quantize_row_f16(&x, &mut y);
        assert_eq!(y[0].to_bits(), 0x3c00);
        assert_eq!(y[1].to_bits(), 0x3c02);
    }
}
