//! The 32-value block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, IQ4_NL and
//! MXFP4, bit-exact with ggml's `dequantize_row_*` (`ggml-quants.c`).
//!
//! In each block of 32 values, byte `j` of `qs` holds value `j` in its low
//! nibble and value `j + 16` in its high nibble (Q8_* store one `i8` per
//! value). With `d`/`m` the block's half-float scale/minimum:
//!
//! | type   | value `i` |
//! |--------|-----------|
//! | Q4_0   | `(q - 8) * d`, `q` 4 bits |
//! | Q4_1   | `q * d + m`, `q` 4 bits |
//! | Q5_0   | `(q - 16) * d`, `q` 4 bits plus bit 4 = bit `i` of `qh` (little-endian `u32`) |
//! | Q5_1   | `q * d + m`, `q` as in Q5_0 |
//! | Q8_0   | `q * d` |
//! | Q8_1   | `q * d` (`s = d * Σq` is only used by dot products; ggml has no dequantizer for Q8_1) |
//! | IQ4_NL | `d * KVALUES_IQ4NL[q]`, `q` 4 bits |
//! | MXFP4  | `KVALUES_FP4[q] * 2^(e - 128)`, `q` 4 bits, `e` the block's E8M0 exponent (the table holds doubled E2M1 values, hence `- 128`, not `- 127`) |
//!
//! Every product is one `f32` multiplication (plus one addition for the
//! `_1` types), in ggml's order, never fused.

use super::grids::{KVALUES_FP4, KVALUES_IQ4NL};
use crate::blocks::{
    BlockIq4Nl, BlockMxfp4, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, QK,
};

fn check(name: &str, blocks: usize, y: &[f32]) {
    assert_eq!(
        y.len(),
        blocks * QK,
        "{name}: {blocks} blocks need {} outputs",
        blocks * QK
    );
}

/// Q4_0 → f32.
///
/// # Panics
/// If `y.len() != 32 * x.len()`.
pub fn dequantize_row_q4_0(x: &[BlockQ4_0], y: &mut [f32]) {
    check("Q4_0", x.len(), y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        for (j, &q) in b.qs.iter().enumerate() {
            y[j] = ((q & 0x0f) as i32 - 8) as f32 * d;
            y[j + QK / 2] = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// Q4_1 → f32.
///
/// # Panics
/// If `y.len() != 32 * x.len()`.
pub fn dequantize_row_q4_1(x: &[BlockQ4_1], y: &mut [f32]) {
    check("Q4_1", x.len(), y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let (d, m) = (b.d.to_f32(), b.m.to_f32());
        for (j, &q) in b.qs.iter().enumerate() {
            y[j] = (q & 0x0f) as f32 * d + m;
            y[j + QK / 2] = (q >> 4) as f32 * d + m;
        }
    }
}

/// The 5-bit values of a Q5 block: `(low, high)` half for byte `j`.
#[inline]
fn q5(qs: &[u8; QK / 2], qh: [u8; 4], j: usize) -> (u8, u8) {
    let qh = u32::from_le_bytes(qh);
    let h0 = ((qh >> j) << 4) as u8 & 0x10;
    let h1 = (qh >> (j + 12)) as u8 & 0x10;
    ((qs[j] & 0x0f) | h0, (qs[j] >> 4) | h1)
}

/// Q5_0 → f32.
///
/// # Panics
/// If `y.len() != 32 * x.len()`.
pub fn dequantize_row_q5_0(x: &[BlockQ5_0], y: &mut [f32]) {
    check("Q5_0", x.len(), y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        for j in 0..QK / 2 {
            let (q0, q1) = q5(&b.qs, b.qh, j);
            y[j] = (q0 as i32 - 16) as f32 * d;
            y[j + QK / 2] = (q1 as i32 - 16) as f32 * d;
        }
    }
}

/// Q5_1 → f32.
///
/// # Panics
/// If `y.len() != 32 * x.len()`.
pub fn dequantize_row_q5_1(x: &[BlockQ5_1], y: &mut [f32]) {
    check("Q5_1", x.len(), y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let (d, m) = (b.d.to_f32(), b.m.to_f32());
        for j in 0..QK / 2 {
            let (q0, q1) = q5(&b.qs, b.qh, j);
            y[j] = q0 as f32 * d + m;
            y[j + QK / 2] = q1 as f32 * d + m;
        }
    }
}

/// Q8_0 → f32.
///
/// # Panics
/// If `y.len() != 32 * x.len()`.
pub fn dequantize_row_q8_0(x: &[BlockQ8_0], y: &mut [f32]) {
    check("Q8_0", x.len(), y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        for (y, &q) in y.iter_mut().zip(&b.qs) {
            *y = q as f32 * d;
        }
    }
}

/// Q8_1 → f32: `q * d`, as Q8_0 (the block sum `s` is not needed).
///
/// # Panics
/// If `y.len() != 32 * x.len()`.
pub fn dequantize_row_q8_1(x: &[BlockQ8_1], y: &mut [f32]) {
    check("Q8_1", x.len(), y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        for (y, &q) in y.iter_mut().zip(&b.qs) {
            *y = q as f32 * d;
        }
    }
}

/// IQ4_NL → f32.
///
/// # Panics
/// If `y.len() != 32 * x.len()`.
pub fn dequantize_row_iq4_nl(x: &[BlockIq4Nl], y: &mut [f32]) {
    check("IQ4_NL", x.len(), y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        for (j, &q) in b.qs.iter().enumerate() {
            y[j] = d * KVALUES_IQ4NL[(q & 0x0f) as usize] as f32;
            y[j + QK / 2] = d * KVALUES_IQ4NL[(q >> 4) as usize] as f32;
        }
    }
}

/// Half the value of an E8M0 exponent byte: `2^(e - 128)`, as ggml's
/// `ggml_e8m0_to_fp32_half` (subnormal for `e < 2`; `e = 255` is the finite
/// `2^127`, not NaN).
#[inline]
pub fn e8m0_to_f32_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        u32::from(e - 1) << 23
    };
    f32::from_bits(bits)
}

/// MXFP4 → f32.
///
/// # Panics
/// If `y.len() != 32 * x.len()`.
pub fn dequantize_row_mxfp4(x: &[BlockMxfp4], y: &mut [f32]) {
    check("MXFP4", x.len(), y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = e8m0_to_f32_half(b.e);
        for (j, &q) in b.qs.iter().enumerate() {
            y[j] = KVALUES_FP4[(q & 0x0f) as usize] as f32 * d;
            y[j + QK / 2] = KVALUES_FP4[(q >> 4) as usize] as f32 * d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    #[test]
    fn q4_0_by_hand() {
        let b = BlockQ4_0 {
            d: f16::from_f32(0.5),
            qs: [0xf0; 16],
        };
        let mut y = [0f32; 32];
        dequantize_row_q4_0(&[b], &mut y);
        assert!(y[..16].iter().all(|&v| v == -4.0));
        assert!(y[16..].iter().all(|&v| v == 3.5));
    }

    #[test]
    fn e8m0_half_matches_powers_of_two() {
        assert_eq!(e8m0_to_f32_half(128), 1.0);
        assert_eq!(e8m0_to_f32_half(127), 0.5);
        assert_eq!(e8m0_to_f32_half(1), f32::from_bits(1 << 22));
        assert_eq!(e8m0_to_f32_half(0), f32::from_bits(1 << 21));
        assert_eq!(e8m0_to_f32_half(255), 2f32.powi(127));
    }
}
