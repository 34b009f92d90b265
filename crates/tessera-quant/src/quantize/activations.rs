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

#[cfg(test)]
mod tests {
    use super::*;
    use bytemuck::Zeroable;

    /// Integers in -127..=127 with one at ±127 quantize exactly: `d = 1`.
    fn integers(top: f32) -> Vec<f32> {
        let mut x: Vec<f32> = (0..QK_K).map(|i| ((i * 37) % 255) as f32 - 127.0).collect();
        x.iter_mut().for_each(|v| *v = v.clamp(-126.0, 126.0));
        x[5] = top;
        x
    }

    #[test]
    fn q8_0_and_q8_1_are_exact_on_integers() {
        let x = integers(-127.0);
        let mut y0 = vec![BlockQ8_0::zeroed(); QK_K / QK];
        let mut y1 = vec![BlockQ8_1::zeroed(); QK_K / QK];
        quantize_row_q8_0(&x, &mut y0);
        quantize_row_q8_1(&x, &mut y1);
        let d0 = abs_max(&x[..QK]) / 127.0;
        assert_eq!(y0[0].d, f16::from_f32(d0));
        assert_eq!(y0[0].d.to_f32(), 1.0);
        for (b, (b0, b1)) in y0.iter().zip(&y1).enumerate() {
            assert_eq!(b0.qs, b1.qs);
            assert_eq!(b0.d, b1.d);
            let xb = &x[b * QK..][..QK];
            let sum: i32 = b1.qs.iter().map(|&q| i32::from(q)).sum();
            // `s` uses the f32 scale, before its rounding to f16.
            assert_eq!(b1.s, f16::from_f32(sum as f32 * (abs_max(xb) / 127.0)));
            if b == 0 {
                let want: Vec<i8> = xb.iter().map(|&v| v as i8).collect();
                assert_eq!(b0.qs.to_vec(), want);
            }
        }
    }

    #[test]
    fn q8_k_scale_takes_the_sign_of_the_largest_value() {
        for (top, d) in [(-127.0, 1.0), (127.0, -1.0)] {
            let x = integers(top);
            let mut y = [BlockQ8K::zeroed()];
            quantize_row_q8_K(&x, &mut y);
            assert_eq!(y[0].d, d);
            for (q, v) in y[0].qs.iter().zip(&x) {
                assert_eq!(f32::from(*q) * d, *v);
            }
            for (j, s) in y[0].bsums.iter().enumerate() {
                let want: i32 = y[0].qs[16 * j..][..16].iter().map(|&q| i32::from(q)).sum();
                assert_eq!(i32::from(*s), want);
            }
        }
    }

    #[test]
    fn zero_blocks_are_all_zero() {
        let x = [0f32; QK_K];
        let mut k = [BlockQ8K::zeroed()];
        k[0].bsums = [7; QK_K / 16];
        quantize_row_q8_K(&x, &mut k);
        assert_eq!(bytemuck::bytes_of(&k[0]), &[0u8; 292][..]);
        let mut b = [BlockQ8_1::zeroed(); QK_K / QK];
        quantize_row_q8_1(&x, &mut b);
        assert!(bytemuck::cast_slice::<_, u8>(&b).iter().all(|&v| v == 0));
    }

    #[test]
    #[should_panic(expected = "Q8_0: 31 values for 1 blocks")]
    fn wrong_length_panics() {
        quantize_row_q8_0(&[0.0; 31], &mut [BlockQ8_0::zeroed()]);
    }
}
