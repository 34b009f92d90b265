//! The K-quants: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and Q8_K, bit-exact with
//! ggml's `dequantize_row_*` (`ggml-quants.c`).
//!
//! A super-block holds 256 values with a half-float scale `d` (Q8_K: an
//! `f32`) and, for the "min" types, a half-float `dmin`; it is cut into
//! sub-blocks, each with a small integer scale `sc` (and min `m`):
//!
//! | type | sub-blocks | value |
//! |------|------------|-------|
//! | Q2_K | 16 × 16 | `(d * sc) * q - dmin * m`; `sc`, `m` 4 bits each in `scales[i]`; `q` 2 bits |
//! | Q3_K | 16 × 16 | `(d * (sc - 32)) * (q - 4 * !hbit)`; `sc` 6 bits packed in 12 bytes; `q` 2 bits plus the high bit in `hmask` |
//! | Q4_K | 8 × 32 | `(d * sc) * q - dmin * m`; `sc`, `m` 6 bits packed in 12 bytes ([`get_scale_min_k4`]); `q` 4 bits |
//! | Q5_K | 8 × 32 | as Q4_K with a fifth bit of `q` in `qh` |
//! | Q6_K | 16 × 16 | `(d * sc) * (q - 32)`; `sc` an `i8`; `q` 4 bits in `ql` plus 2 in `qh` |
//! | Q8_K | — | `d * q`, `d` an `f32` (the activations of the K-quant dot products) |
//!
//! The bit positions follow ggml's loops: values are produced in runs of
//! 128 (Q2/Q3/Q6) or 64 (Q4/Q5), each run reading the same 32 bytes of
//! `qs` with growing shifts. Every operation is one `f32` multiplication or
//! subtraction, in ggml's order, never fused.

use crate::blocks::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, QK_K};

fn check(name: &str, blocks: usize, y: &[f32]) {
    assert_eq!(
        y.len(),
        blocks * QK_K,
        "{name}: {blocks} blocks need {} outputs",
        blocks * QK_K
    );
}

/// Scale and min `j` (0..8) of the 12 packed scale bytes of Q4_K/Q5_K:
/// 6 bits each (ggml: `get_scale_min_k4`).
#[inline]
pub fn get_scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Q2_K → f32.
///
/// # Panics
/// If `y.len() != 256 * x.len()`.
pub fn dequantize_row_q2_k(x: &[BlockQ2K], y: &mut [f32]) {
    check("Q2_K", x.len(), y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let (d, min) = (b.d.to_f32(), b.dmin.to_f32());
        let mut out = y.iter_mut();
        let mut is = 0;
        for q in b.qs.chunks_exact(32) {
            for shift in [0, 2, 4, 6] {
                for half in q.chunks_exact(16) {
                    let sc = b.scales[is];
                    is += 1;
                    let dl = d * (sc & 0x0f) as f32;
                    let ml = min * (sc >> 4) as f32;
                    for &ql in half {
                        *out.next().unwrap() = dl * ((ql >> shift) & 3) as f32 - ml;
                    }
                }
            }
        }
    }
}

/// The 16 signed 6-bit scales of a Q3_K block, unpacked as ggml does.
#[inline]
fn q3_k_scales(packed: &[u8; 12]) -> [i8; 16] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let w = |i: usize| {
        u32::from_le_bytes([
            packed[4 * i],
            packed[4 * i + 1],
            packed[4 * i + 2],
            packed[4 * i + 3],
        ])
    };
    let (a0, a1, tmp) = (w(0), w(1), w(2));
    let aux = [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    let mut out = [0i8; 16];
    for (o, byte) in out.iter_mut().zip(aux.iter().flat_map(|a| a.to_le_bytes())) {
        *o = byte as i8;
    }
    out
}

/// Q3_K → f32.
///
/// # Panics
/// If `y.len() != 256 * x.len()`.
pub fn dequantize_row_q3_k(x: &[BlockQ3K], y: &mut [f32]) {
    check("Q3_K", x.len(), y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d_all = b.d.to_f32();
        let scales = q3_k_scales(&b.scales);
        let mut out = y.iter_mut();
        let mut is = 0;
        let mut m = 1u8;
        for q in b.qs.chunks_exact(32) {
            for shift in [0, 2, 4, 6] {
                for (q, hm) in q.chunks_exact(16).zip(b.hmask.chunks_exact(16)) {
                    let dl = d_all * (scales[is] as i32 - 32) as f32;
                    is += 1;
                    for (&q, &h) in q.iter().zip(hm) {
                        let lo = ((q >> shift) & 3) as i32;
                        let hi = if h & m != 0 { 0 } else { 4 };
                        *out.next().unwrap() = dl * (lo - hi) as f32;
                    }
                }
                m <<= 1;
            }
        }
    }
}

/// Q4_K → f32.
///
/// # Panics
/// If `y.len() != 256 * x.len()`.
pub fn dequantize_row_q4_k(x: &[BlockQ4K], y: &mut [f32]) {
    check("Q4_K", x.len(), y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let (d, min) = (b.d.to_f32(), b.dmin.to_f32());
        for (j, (q, y)) in
            b.qs.chunks_exact(32)
                .zip(y.chunks_exact_mut(64))
                .enumerate()
        {
            let (sc1, m1) = get_scale_min_k4(2 * j, &b.scales);
            let (sc2, m2) = get_scale_min_k4(2 * j + 1, &b.scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            for l in 0..32 {
                y[l] = d1 * (q[l] & 0x0f) as f32 - m1;
                y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

/// Q5_K → f32.
///
/// # Panics
/// If `y.len() != 256 * x.len()`.
pub fn dequantize_row_q5_k(x: &[BlockQ5K], y: &mut [f32]) {
    check("Q5_K", x.len(), y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let (d, min) = (b.d.to_f32(), b.dmin.to_f32());
        for (j, (ql, y)) in
            b.qs.chunks_exact(32)
                .zip(y.chunks_exact_mut(64))
                .enumerate()
        {
            let (sc1, m1) = get_scale_min_k4(2 * j, &b.scales);
            let (sc2, m2) = get_scale_min_k4(2 * j + 1, &b.scales);
            let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
            let (u1, u2) = (1u8 << (2 * j), 2u8 << (2 * j));
            for l in 0..32 {
                let h1 = if b.qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if b.qh[l] & u2 != 0 { 16 } else { 0 };
                y[l] = d1 * ((ql[l] & 0x0f) + h1) as f32 - m1;
                y[l + 32] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
            }
        }
    }
}

/// Q6_K → f32.
///
/// # Panics
/// If `y.len() != 256 * x.len()`.
pub fn dequantize_row_q6_k(x: &[BlockQ6K], y: &mut [f32]) {
    check("Q6_K", x.len(), y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (n, y) in y.chunks_exact_mut(128).enumerate() {
            let ql = &b.ql[64 * n..64 * n + 64];
            let qh = &b.qh[32 * n..32 * n + 32];
            let sc = &b.scales[8 * n..8 * n + 8];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                y[l] = d * sc[is] as f32 * q1 as f32;
                y[l + 32] = d * sc[is + 2] as f32 * q2 as f32;
                y[l + 64] = d * sc[is + 4] as f32 * q3 as f32;
                y[l + 96] = d * sc[is + 6] as f32 * q4 as f32;
            }
        }
    }
}

/// Q8_K → f32.
///
/// # Panics
/// If `y.len() != 256 * x.len()`.
pub fn dequantize_row_q8_k(x: &[BlockQ8K], y: &mut [f32]) {
    check("Q8_K", x.len(), y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        for (y, &q) in y.iter_mut().zip(&b.qs) {
            *y = b.d * q as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_min_k4_unpacks_high_bits() {
        let mut q = [0u8; 12];
        q[0] = 0b1100_0001; // sc0 = 1, top bits → sc4 bits 4..6
        q[4] = 0b0100_0010; // m0 = 2, top bits → m4
        q[8] = 0x53; // sc4 low = 3, m4 low = 5
        assert_eq!(get_scale_min_k4(0, &q), (1, 2));
        assert_eq!(get_scale_min_k4(4, &q), (3 | (3 << 4), 5 | (1 << 4)));
    }
}
