//! The "i-quants" on 256-value super-blocks: IQ2_XXS, IQ2_XS, IQ2_S,
//! IQ3_XXS, IQ3_S, IQ1_S, IQ1_M and IQ4_XS, bit-exact with ggml's
//! `dequantize_row_*` (`ggml-quants.c`).
//!
//! Except IQ4_XS, a group of 8 (or 4) values is one point of a lattice grid
//! ([`super::grids`]), picked by an index of 8 to 11 bits; the IQ2/IQ3 types
//! add a sign per value and IQ1 a shared offset `±1/8`. Per sub-block of 32
//! values (`ib`), with `d` the super-block's half-float scale:
//!
//! | type    | value |
//! |---------|-------|
//! | IQ2_XXS | `(d * (0.5 + s) * 0.25) * g * ±1`; `s` = top 4 bits of the sub-block's 2nd `u32`, which also holds 4 × 7 sign bits (parity gives the 8th, [`KSIGNS_IQ2XS`]); the 1st `u32` holds 4 grid indices |
//! | IQ2_XS  | `(d * (0.5 + s) * 0.25) * g * ±1`; `s` 4 bits per 16 values; each `u16` = 9-bit index + 7 sign bits |
//! | IQ2_S   | `(d * (0.5 + s) * 0.25) * g * ±1`; 10-bit index (8 in `qs`, 2 in `qh`); 8 explicit sign bits per group |
//! | IQ3_XXS | `(d * (0.5 + s) * 0.5) * g * ±1`; two 4-value grid points per 8 values; signs and `s` as IQ2_XXS |
//! | IQ3_S   | `(d * (1 + 2s)) * g * ±1`; 9-bit index (8 in `qs`, 1 in `qh`), 4 values per point; `s` 4 bits per 32 values |
//! | IQ1_S   | `(d * (2s + 1)) * (g + δ)`; 11-bit index (8 in `qs`, 3 in `qh`); `s` 3 bits and the sign of `δ = ±0.125` in `qh[ib]` |
//! | IQ1_M   | `(d * (2s + 1)) * (g + δ)`; `s` 3 bits per 16 values; `d` itself is spread over the top nibbles of the four `u16` scales |
//! | IQ4_XS  | `(d * (ls - 32)) * KVALUES_IQ4NL[q]`; `ls` 6 bits (4 in `scales_l`, 2 in `scales_h`), `q` 4 bits as IQ4_NL |
//!
//! Every operation is one `f32` multiplication or addition, in ggml's
//! order, never fused.

use super::grids::{
    IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KMASK_IQ2XS,
    KSIGNS_IQ2XS, KVALUES_IQ4NL,
};
use crate::blocks::{
    BlockIq1M, BlockIq1S, BlockIq2S, BlockIq2Xs, BlockIq2Xxs, BlockIq3S, BlockIq3Xxs, BlockIq4Xs,
    QK_K,
};
use half::f16;

/// ggml's `IQ1S_DELTA` (and `IQ1M_DELTA`).
pub const IQ1S_DELTA: f32 = 0.125;

fn check(name: &str, blocks: usize, y: &[f32]) {
    assert_eq!(
        y.len(),
        blocks * QK_K,
        "{name}: {blocks} blocks need {} outputs",
        blocks * QK_K
    );
}

/// `1.0` or `-1.0` for value `j` of a group, by its bit in `signs`.
#[inline]
fn sign(signs: u8, j: usize) -> f32 {
    if signs & KMASK_IQ2XS[j] != 0 {
        -1.0
    } else {
        1.0
    }
}

/// Writes 8 values `db * grid[j] * ±1` of an 8-value grid point.
#[inline]
fn grid8(y: &mut [f32], db: f32, point: u64, signs: u8) {
    for (j, (y, g)) in y.iter_mut().zip(point.to_le_bytes()).enumerate() {
        *y = db * g as f32 * sign(signs, j);
    }
}

/// IQ2_XXS → f32.
///
/// # Panics
/// If `y.len() != 256 * x.len()`.
pub fn dequantize_row_iq2_xxs(x: &[BlockIq2Xxs], y: &mut [f32]) {
    check("IQ2_XXS", x.len(), y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let q = &b.qs[4 * ib..4 * ib + 4];
            let aux0 = u32::from(q[0]) | (u32::from(q[1]) << 16);
            let aux1 = u32::from(q[2]) | (u32::from(q[3]) << 16);
            let db = d * (0.5 + (aux1 >> 28) as f32) * 0.25;
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let idx = (aux0 >> (8 * l)) & 0xff;
                let signs = KSIGNS_IQ2XS[((aux1 >> (7 * l)) & 127) as usize];
                grid8(y, db, IQ2XXS_GRID[idx as usize], signs);
            }
        }
    }
}

/// IQ2_XS → f32.
///
/// # Panics
/// If `y.len() != 256 * x.len()`.
pub fn dequantize_row_iq2_xs(x: &[BlockIq2Xs], y: &mut [f32]) {
    check("IQ2_XS", x.len(), y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let s = b.scales[ib];
            let db = [
                d * (0.5 + (s & 0x0f) as f32) * 0.25,
                d * (0.5 + (s >> 4) as f32) * 0.25,
            ];
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let q = b.qs[4 * ib + l];
                let signs = KSIGNS_IQ2XS[(q >> 9) as usize];
                grid8(y, db[l / 2], IQ2XS_GRID[(q & 511) as usize], signs);
            }
        }
    }
}

/// IQ2_S → f32.
///
/// # Panics
/// If `y.len() != 256 * x.len()`.
pub fn dequantize_row_iq2_s(x: &[BlockIq2S], y: &mut [f32]) {
    check("IQ2_S", x.len(), y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let (qs, signs) = b.qs.split_at(QK_K / 8);
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let s = b.scales[ib];
            let db = [
                d * (0.5 + (s & 0x0f) as f32) * 0.25,
                d * (0.5 + (s >> 4) as f32) * 0.25,
            ];
            let qh = usize::from(b.qh[ib]);
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let idx = usize::from(qs[4 * ib + l]) | ((qh << (8 - 2 * l)) & 0x300);
                grid8(y, db[l / 2], IQ2S_GRID[idx], signs[4 * ib + l]);
            }
        }
    }
}

/// Writes 8 values from two 4-value grid points (IQ3 types).
#[inline]
fn grid4x2(y: &mut [f32], db: f32, p1: u32, p2: u32, signs: u8) {
    let (g1, g2) = (p1.to_le_bytes(), p2.to_le_bytes());
    for j in 0..4 {
        y[j] = db * g1[j] as f32 * sign(signs, j);
        y[j + 4] = db * g2[j] as f32 * sign(signs, j + 4);
    }
}

/// IQ3_XXS → f32.
///
/// # Panics
/// If `y.len() != 256 * x.len()`.
pub fn dequantize_row_iq3_xxs(x: &[BlockIq3Xxs], y: &mut [f32]) {
    check("IQ3_XXS", x.len(), y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let (qs, scales_and_signs) = b.qs.split_at(QK_K / 4);
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let s = &scales_and_signs[4 * ib..4 * ib + 4];
            let aux = u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            let db = d * (0.5 + (aux >> 28) as f32) * 0.5;
            let q = &qs[8 * ib..8 * ib + 8];
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let signs = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
                let p1 = IQ3XXS_GRID[usize::from(q[2 * l])];
                let p2 = IQ3XXS_GRID[usize::from(q[2 * l + 1])];
                grid4x2(y, db, p1, p2, signs);
            }
        }
    }
}

/// IQ3_S → f32.
///
/// # Panics
/// If `y.len() != 256 * x.len()`.
pub fn dequantize_row_iq3_s(x: &[BlockIq3S], y: &mut [f32]) {
    check("IQ3_S", x.len(), y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        // Sub-block ib: 8 index bytes, 1 qh byte, 4 sign bytes; a scale nibble.
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let sc = (b.scales[ib / 2] >> (4 * (ib % 2))) & 0x0f;
            let db = d * (1 + 2 * i32::from(sc)) as f32;
            let qs = &b.qs[8 * ib..8 * ib + 8];
            let qh = usize::from(b.qh[ib]);
            let signs = &b.signs[4 * ib..4 * ib + 4];
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let i1 = usize::from(qs[2 * l]) | ((qh << (8 - 2 * l)) & 256);
                let i2 = usize::from(qs[2 * l + 1]) | ((qh << (7 - 2 * l)) & 256);
                grid4x2(y, db, IQ3S_GRID[i1], IQ3S_GRID[i2], signs[l]);
            }
        }
    }
}

/// Writes 8 values `dl * (grid[j] + delta)` of an IQ1 grid point.
#[inline]
fn grid1(y: &mut [f32], dl: f32, point: u64, delta: f32) {
    for (y, g) in y.iter_mut().zip(point.to_le_bytes()) {
        *y = dl * (g as i8 as f32 + delta);
    }
}

/// IQ1_S → f32.
///
/// # Panics
/// If `y.len() != 256 * x.len()`.
pub fn dequantize_row_iq1_s(x: &[BlockIq1S], y: &mut [f32]) {
    check("IQ1_S", x.len(), y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let qh = usize::from(b.qh[ib]);
            let dl = d * (2 * ((qh >> 12) & 7) + 1) as f32;
            let delta = if qh & 0x8000 != 0 {
                -IQ1S_DELTA
            } else {
                IQ1S_DELTA
            };
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let idx = usize::from(b.qs[4 * ib + l]) | (((qh >> (3 * l)) & 7) << 8);
                grid1(y, dl, IQ1S_GRID[idx], delta);
            }
        }
    }
}

/// IQ1_M → f32.
///
/// # Panics
/// If `y.len() != 256 * x.len()`.
pub fn dequantize_row_iq1_m(x: &[BlockIq1M], y: &mut [f32]) {
    check("IQ1_M", x.len(), y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let sc: [u16; 4] =
            std::array::from_fn(|i| u16::from_le_bytes([b.scales[2 * i], b.scales[2 * i + 1]]));
        let d_bits =
            (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000);
        let d = f16::from_bits(d_bits).to_f32();
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let s = usize::from(sc[ib / 2]);
            let dl1 = d * (2 * ((s >> (6 * (ib % 2))) & 7) + 1) as f32;
            let dl2 = d * (2 * ((s >> (6 * (ib % 2) + 3)) & 7) + 1) as f32;
            let qs = &b.qs[4 * ib..4 * ib + 4];
            let (h0, h1) = (usize::from(b.qh[2 * ib]), usize::from(b.qh[2 * ib + 1]));
            let idx = [
                usize::from(qs[0]) | ((h0 << 8) & 0x700),
                usize::from(qs[1]) | ((h0 << 4) & 0x700),
                usize::from(qs[2]) | ((h1 << 8) & 0x700),
                usize::from(qs[3]) | ((h1 << 4) & 0x700),
            ];
            let delta = |h: usize, bit: usize| {
                if h & bit != 0 {
                    -IQ1S_DELTA
                } else {
                    IQ1S_DELTA
                }
            };
            let deltas = [
                delta(h0, 0x08),
                delta(h0, 0x80),
                delta(h1, 0x08),
                delta(h1, 0x80),
            ];
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let dl = if l < 2 { dl1 } else { dl2 };
                grid1(y, dl, IQ1S_GRID[idx[l]], deltas[l]);
            }
        }
    }
}

/// IQ4_XS → f32.
///
/// # Panics
/// If `y.len() != 256 * x.len()`.
pub fn dequantize_row_iq4_xs(x: &[BlockIq4Xs], y: &mut [f32]) {
    check("IQ4_XS", x.len(), y);
    for (b, y) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let lo = i32::from((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f);
            let hi = i32::from((b.scales_h >> (2 * ib)) & 3);
            let dl = d * ((lo | (hi << 4)) - 32) as f32;
            let qs = &b.qs[16 * ib..16 * ib + 16];
            for (j, &q) in qs.iter().enumerate() {
                y[j] = dl * KVALUES_IQ4NL[usize::from(q & 0x0f)] as f32;
                y[j + 16] = dl * KVALUES_IQ4NL[usize::from(q >> 4)] as f32;
            }
        }
    }
}
