//! The ternary types TQ1_0 and TQ2_0 (values in `{-1, 0, 1} * d`),
//! bit-exact with ggml's `dequantize_row_tq1_0`/`_tq2_0` (`ggml-quants.c`).
//!
//! - TQ2_0: 2 bits per value, `x = (q - 1) * d`. Byte `m` of each 32-byte
//!   run of `qs` holds values `m`, `m + 32`, `m + 64`, `m + 96` of that run's
//!   128 values, lowest bits first.
//! - TQ1_0: 5 ternary digits per byte of `qs` and 4 per byte of `qh`, stored
//!   as a fixed-point fraction: digit `n` of byte `b` is
//!   `((b * 3^n mod 256) * 3) >> 8`, and `x = (digit - 1) * d`. The first 32
//!   bytes of `qs` give 160 values (digit-major), the last 16 bytes 80, and
//!   the 4 bytes of `qh` the last 16.

use crate::blocks::{BlockTq1_0, BlockTq2_0, QK_K};

fn check(name: &str, blocks: usize, y: &[f32]) {
    assert_eq!(
        y.len(),
        blocks * QK_K,
        "{name}: {blocks} blocks need {} outputs",
        blocks * QK_K
    );
}

const POW3: [u8; 6] = [1, 3, 9, 27, 81, 243];

/// Ternary digit `n` of a TQ1_0 byte, minus one, as `f32`.
#[inline]
fn trit(byte: u8, n: usize) -> f32 {
    let q = byte.wrapping_mul(POW3[n]);
    let xi = (u16::from(q) * 3) >> 8;
    (i32::from(xi) - 1) as f32
}

/// TQ1_0 → f32.
///
/// # Panics
/// If `y.len() != 256 * x.len()`.
pub fn dequantize_row_tq1_0(x: &[BlockTq1_0], y: &mut [f32]) {
    check("TQ1_0", x.len(), y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let mut out = y.iter_mut();
        let whole = b.qs.len() - b.qs.len() % 32;
        let runs = b.qs[..whole]
            .chunks_exact(32)
            .chain(b.qs[whole..].chunks_exact(16));
        for run in runs {
            for n in 0..5 {
                for &q in run {
                    *out.next().unwrap() = trit(q, n) * d;
                }
            }
        }
        for n in 0..4 {
            for &q in &b.qh {
                *out.next().unwrap() = trit(q, n) * d;
            }
        }
    }
}

/// TQ2_0 → f32.
///
/// # Panics
/// If `y.len() != 256 * x.len()`.
pub fn dequantize_row_tq2_0(x: &[BlockTq2_0], y: &mut [f32]) {
    check("TQ2_0", x.len(), y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (run, y) in b.qs.chunks_exact(32).zip(y.chunks_exact_mut(128)) {
            for (l, y) in y.chunks_exact_mut(32).enumerate() {
                for (y, &q) in y.iter_mut().zip(run) {
                    *y = (i32::from((q >> (2 * l)) & 3) - 1) as f32 * d;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tq1_trits_decode_base3() {
        // The 5 base-3 digits of v (most significant first) are stored as ceil(v * 256 / 243).
        let v: u16 = 2 * 81 + 27 + 2 * 3; // digits 2, 1, 0, 2, 0
        let byte = ((v * 256).div_ceil(243)) as u8;
        let digits: Vec<f32> = (0..5).map(|n| trit(byte, n) + 1.0).collect();
        assert_eq!(digits, [2.0, 1.0, 0.0, 2.0, 0.0]);
    }
}
