//! MXFP4 (OCP microscaling FP4): 32 E2M1 values sharing an E8M0 exponent,
//! as ggml's `quantize_row_mxfp4_ref`.
//!
//! The shared exponent is `floor(log2(amax)) - 2` (so the largest value lands
//! near E2M1's top level 6); each value takes the nearest of the 16 FP4
//! levels by absolute error, the first one on ties.

use crate::blocks::{BlockMxfp4, QK};
use crate::dequant::legacy::e8m0_to_f32_half;

/// The 16 FP4 (E2M1) levels, doubled (`kvalues_mxfp4`); index 8 is -0.
pub const KVALUES_MXFP4: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

fn best_index(x: f32, d: f32) -> u8 {
    let mut best = 0;
    let mut best_err = (f32::from(KVALUES_MXFP4[0]) * d - x).abs();
    for (i, &k) in KVALUES_MXFP4.iter().enumerate().skip(1) {
        let err = (f32::from(k) * d - x).abs();
        if err < best_err {
            best = i as u8;
            best_err = err;
        }
    }
    best
}

/// MXFP4: `e = floor(log2(amax)) - 2 + 127`, values to the nearest FP4 level
/// times `2^(e - 127)`.
pub fn quantize_row_mxfp4(x: &[f32], y: &mut [BlockMxfp4]) {
    assert_eq!(
        x.len(),
        y.len() * QK,
        "MXFP4: {} values for {} blocks",
        x.len(),
        y.len()
    );
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let mut amax = 0.0f32;
        for &v in xb {
            if amax < v.abs() {
                amax = v.abs();
            }
        }
        // log2f from the C library, like ggml (near powers of two its rounding
        // decides the exponent). The float-to-byte conversion goes through
        // i32 as x86-64 C code does, for amax below 2^-125 where the
        // exponent would be negative.
        yb.e = if amax > 0.0 {
            (amax.log2().floor() - 2.0 + 127.0) as i32 as u8
        } else {
            0
        };
        let d = e8m0_to_f32_half(yb.e);
        for (j, q) in yb.qs.iter_mut().enumerate() {
            *q = best_index(xb[j], d) | (best_index(xb[j + QK / 2], d) << 4);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytemuck::Zeroable;

    #[test]
    fn e2m1_values_quantize_exactly() {
        // Halved levels, amax 6: e = floor(log2 6) - 2 + 127 = 127, d = 0.5.
        let x: Vec<f32> = (0..QK)
            .map(|i| 0.5 * f32::from(KVALUES_MXFP4[i % 16]))
            .collect();
        let mut y = [BlockMxfp4::zeroed()];
        quantize_row_mxfp4(&x, &mut y);
        assert_eq!(y[0].e, 127);
        for j in 0..QK / 2 {
            let want = if j % 16 == 8 { 0 } else { j % 16 }; // -0 is level 0
            assert_eq!(usize::from(y[0].qs[j] & 0xf), want);
            assert_eq!(usize::from(y[0].qs[j] >> 4), want);
        }
    }

    #[test]
    fn e8m0_half_covers_subnormals() {
        assert_eq!(e8m0_to_f32_half(0), f32::from_bits(1 << 21));
        assert_eq!(e8m0_to_f32_half(1), f32::from_bits(1 << 22));
        assert_eq!(e8m0_to_f32_half(127), 0.5);
        assert_eq!(e8m0_to_f32_half(254), 2f32.powi(126));
    }
}
