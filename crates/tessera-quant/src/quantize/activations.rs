//! Activation quantizers: Q8_0, Q8_1 and Q8_K, the types the dot kernels
//! quantize an f32 activation row to before multiplying it with a weight row
//! (`quantize_row_q8_0_ref`, `quantize_row_q8_1_ref`, `quantize_row_q8_K_ref`
//! in ggml). Q8_0 is also a weight type.

use half::f16;

use super::{abs_max, c_trunc, nearest_int};
use crate::blocks::{BlockQ8K, BlockQ8_0, BlockQ8_1, QK, QK_K};

/// Quantizes `x` to Q8_0: per block of 32, `d = amax / 127` (as f16) and
/// `q = round(x / d)`. `x.len()` must be `y.len() * 32`.
pub fn quantize_row_q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    assert_eq!(
        x.len(),
        y.len() * QK,
        "Q8_0: {} values for {} blocks",
        x.len(),
        y.len()
    );
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let amax = abs_max(xb);
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        yb.d = f16::from_f32(d);
        for (q, &v) in yb.qs.iter_mut().zip(xb) {
            *q = c_trunc((v * id).round()) as i8;
        }
    }
}

/// Quantizes `x` to Q8_1: Q8_0's scheme plus `s = d * sum(q)` (as f16), which
/// the Q4_1/Q5_1 dots use for the min term. `x.len()` must be `y.len() * 32`.
pub fn quantize_row_q8_1(x: &[f32], y: &mut [BlockQ8_1]) {
    assert_eq!(
        x.len(),
        y.len() * QK,
        "Q8_1: {} values for {} blocks",
        x.len(),
        y.len()
    );
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let amax = abs_max(xb);
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        yb.d = f16::from_f32(d);
        let mut sum = 0i32;
        for (q, &v) in yb.qs.iter_mut().zip(xb) {
            *q = c_trunc((v * id).round()) as i8;
            sum += i32::from(*q);
        }
        yb.s = f16::from_f32(sum as f32 * d);
    }
}

/// Quantizes `x` to Q8_K: per super-block of 256, `d = max / -127` as f32,
/// where `max` is the value of largest magnitude, `q = nearest(x / d)` capped
/// at 127, and `bsums` the sums of each 16 q's. `x.len()` must be `y.len() * 256`.
#[allow(non_snake_case)] // ggml's name, so the two read side by side
pub fn quantize_row_q8_K(x: &[f32], y: &mut [BlockQ8K]) {
    assert_eq!(
        x.len(),
        y.len() * QK_K,
        "Q8_K: {} values for {} blocks",
        x.len(),
        y.len()
    );
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let (mut max, mut amax) = (0.0f32, 0.0f32);
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            // ggml leaves `bsums` as they were here; zero them so the output
            // does not depend on the buffer's previous contents.
            yb.d = 0.0;
            yb.qs = [0; QK_K];
            yb.bsums = [0; QK_K / 16];
            continue;
        }
        // -127 rather than -128: ggml's IQ2_XXS AVX path needs it.
        let iscale = -127.0 / max;
        for (q, &v) in yb.qs.iter_mut().zip(xb) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for (s, q) in yb.bsums.iter_mut().zip(yb.qs.chunks_exact(16)) {
            *s = q.iter().map(|&q| i16::from(q)).sum();
        }
        yb.d = 1.0 / iscale;
    }
}
