//! The 32-element ("legacy") weight types: Q4_0, Q4_1, Q5_0, Q5_1, as
//! ggml's `quantize_row_q{4,5}_{0,1}_ref` (which `ggml_quantize_chunk` and
//! llama-quantize use when there is no importance matrix). Q8_0 lives in
//! [`super::activations`].
//!
//! `_0` types are symmetric: `d = max / -2^(bits-1)` where `max` is the value
//! of largest magnitude, so that value maps to the lowest level exactly. `_1`
//! types store `d = (max - min) / (2^bits - 1)` and `m = min`. The levels are
//! found by adding 0.5 and truncating, as ggml does (not `round`).

use half::f16;

use super::c_trunc;
use crate::blocks::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, QK};

/// The signed value of largest magnitude (the first one on ties), from 0.
fn signed_abs_max(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// `(min, max)` of `x`, from `(FLT_MAX, -FLT_MAX)`.
fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

fn inverse(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

fn check_len(name: &str, x: &[f32], blocks: usize) {
    assert_eq!(
        x.len(),
        blocks * QK,
        "{name}: {} values for {blocks} blocks",
        x.len()
    );
}

/// Q4_0: `q = min(15, trunc(x / d + 8.5))` with `d = max / -8`.
pub fn quantize_row_q4_0(x: &[f32], y: &mut [BlockQ4_0]) {
    check_len("Q4_0", x, y.len());
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let d = signed_abs_max(xb) / -8.0;
        let id = inverse(d);
        yb.d = f16::from_f32(d);
        let level = |v: f32| (c_trunc(v * id + 8.5) as i8).min(15) as u8;
        for (j, q) in yb.qs.iter_mut().enumerate() {
            *q = level(xb[j]) | (level(xb[j + QK / 2]) << 4);
        }
    }
}

/// Q4_1: `q = min(15, trunc((x - min) / d + 0.5))` with `d = (max - min) / 15`.
pub fn quantize_row_q4_1(x: &[f32], y: &mut [BlockQ4_1]) {
    check_len("Q4_1", x, y.len());
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let (min, max) = min_max(xb);
        let d = (max - min) / 15.0;
        let id = inverse(d);
        yb.d = f16::from_f32(d);
        yb.m = f16::from_f32(min);
        let level = |v: f32| (c_trunc((v - min) * id + 0.5) as i8).min(15) as u8;
        for (j, q) in yb.qs.iter_mut().enumerate() {
            *q = level(xb[j]) | (level(xb[j + QK / 2]) << 4);
        }
    }
}

/// Packs 32 five-bit levels: low nibbles in `qs` (element `j` and `j + 16`
/// share a byte), the fifth bits in `qh` (bit `j` for element `j`).
fn pack5(level: impl Fn(usize) -> u8, qs: &mut [u8; QK / 2], qh: &mut [u8; 4]) {
    let mut h = 0u32;
    for (j, q) in qs.iter_mut().enumerate() {
        let (l0, l1) = (level(j), level(j + QK / 2));
        *q = (l0 & 0x0f) | ((l1 & 0x0f) << 4);
        h |= u32::from((l0 & 0x10) >> 4) << j;
        h |= u32::from((l1 & 0x10) >> 4) << (j + QK / 2);
    }
    *qh = h.to_le_bytes();
}

/// Q5_0: `q = min(31, trunc(x / d + 16.5))` with `d = max / -16`.
pub fn quantize_row_q5_0(x: &[f32], y: &mut [BlockQ5_0]) {
    check_len("Q5_0", x, y.len());
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let d = signed_abs_max(xb) / -16.0;
        let id = inverse(d);
        yb.d = f16::from_f32(d);
        let level = |j: usize| (c_trunc(xb[j] * id + 16.5) as i8).min(31) as u8;
        pack5(level, &mut yb.qs, &mut yb.qh);
    }
}

/// Q5_1: `q = trunc((x - min) / d + 0.5)` with `d = (max - min) / 31`.
pub fn quantize_row_q5_1(x: &[f32], y: &mut [BlockQ5_1]) {
    check_len("Q5_1", x, y.len());
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let (min, max) = min_max(xb);
        let d = (max - min) / 31.0;
        let id = inverse(d);
        yb.d = f16::from_f32(d);
        yb.m = f16::from_f32(min);
        let level = |j: usize| c_trunc((xb[j] - min) * id + 0.5) as u8;
        pack5(level, &mut yb.qs, &mut yb.qh);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytemuck::Zeroable;

    #[test]
    fn q4_0_is_exact_when_the_largest_value_is_minus_8() {
        let mut x: Vec<f32> = (0..QK).map(|i| (i % 16) as f32 - 8.0).collect();
        x.reverse();
        let mut y = [BlockQ4_0::zeroed()];
        quantize_row_q4_0(&x, &mut y);
        assert_eq!(y[0].d.to_f32(), 1.0);
        for j in 0..QK / 2 {
            assert_eq!(f32::from(y[0].qs[j] & 0xf) - 8.0, x[j]);
            assert_eq!(f32::from(y[0].qs[j] >> 4) - 8.0, x[j + QK / 2]);
        }
    }

    #[test]
    fn q5_1_is_exact_on_a_31_step_ramp() {
        let x: Vec<f32> = (0..QK).map(|i| 0.5 * (i % 32) as f32 - 3.0).collect();
        let mut y = [BlockQ5_1::zeroed()];
        quantize_row_q5_1(&x, &mut y);
        let (d, m) = (y[0].d.to_f32(), y[0].m.to_f32());
        assert_eq!((d, m), (0.5, -3.0));
        let qh = u32::from_le_bytes(y[0].qh);
        for (j, &v) in x.iter().enumerate() {
            let low = if j < 16 {
                y[0].qs[j] & 0xf
            } else {
                y[0].qs[j - 16] >> 4
            };
            let q = u32::from(low) | (((qh >> j) & 1) << 4);
            assert_eq!(d * q as f32 + m, v, "element {j}");
        }
    }

    #[test]
    fn zero_blocks() {
        let x = [0f32; QK];
        let mut a = [BlockQ4_0::zeroed()];
        quantize_row_q4_0(&x, &mut a);
        assert_eq!((a[0].d.to_f32(), a[0].qs), (0.0, [0x88; QK / 2]));
        let mut b = [BlockQ5_0::zeroed()];
        quantize_row_q5_0(&x, &mut b);
        assert_eq!((b[0].qs, b[0].qh), ([0; QK / 2], [0xff; 4]));
        let mut c = [BlockQ4_1::zeroed()];
        quantize_row_q4_1(&x, &mut c);
        assert_eq!(bytemuck::bytes_of(&c[0]), &[0u8; 20][..]);
    }
}
