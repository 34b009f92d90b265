//! The plain float types: F32 (a copy), F16 and BF16.
//!
//! - F16: `x = f32(h)`, IEEE half to single, exact. A NaN keeps its payload
//!   and becomes quiet, as ggml's `ggml_compute_fp16_to_fp32` (and F16C's
//!   `vcvtph2ps`) make it.
//! - BF16: `x = f32::from_bits(b << 16)`, the bits shifted as they are, as
//!   ggml's `GGML_BF16_TO_FP32` does — a signalling NaN stays signalling
//!   (`half::bf16::to_f32` would quiet it, so it is not used here).

use half::{bf16, f16};

/// F32 → f32: a copy.
///
/// # Panics
/// If `y.len() != x.len()`.
pub fn dequantize_row_f32(x: &[f32], y: &mut [f32]) {
    y.copy_from_slice(x);
}

/// F16 → f32 (ggml: `ggml_fp16_to_fp32_row`).
///
/// # Panics
/// If `y.len() != x.len()`.
pub fn dequantize_row_f16(x: &[f16], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "F16: one output per input");
    for (y, x) in y.iter_mut().zip(x) {
        *y = x.to_f32();
    }
}

/// BF16 → f32 (ggml: `ggml_bf16_to_fp32_row`).
///
/// # Panics
/// If `y.len() != x.len()`.
pub fn dequantize_row_bf16(x: &[bf16], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "BF16: one output per input");
    for (y, x) in y.iter_mut().zip(x) {
        *y = f32::from_bits(u32::from(x.to_bits()) << 16);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_keeps_signalling_nan_bits() {
        let x = [bf16::from_bits(0x7f81), bf16::from_bits(0xbf80)];
        let mut y = [0f32; 2];
        dequantize_row_bf16(&x, &mut y);
        assert_eq!(y[0].to_bits(), 0x7f81_0000);
        assert_eq!(y[1], -1.0);
    }

    #[test]
    fn f16_quiets_nan_keeping_payload() {
        let x = [f16::from_bits(0x7c01), f16::from_bits(0x3c00)];
        let mut y = [0f32; 2];
        dequantize_row_f16(&x, &mut y);
        assert_eq!(y[0].to_bits(), 0x7fc0_2000);
        assert_eq!(y[1], 1.0);
    }
}
