//! Scalar twins of the IQ and ternary dot kernels (activations in Q8_K).
//!
//! Each follows ggml's `ggml_vec_dot_*_q8_K_generic` (`ggml-cpu/quants.c`):
//! integer sums per sub-block, weighted by the integer sub-block scale, then
//! per super-block one `f32` step in ggml's order. The IQ2 types scale the
//! result by `1/8` at the end (their scale is `(2s + 1)/8 = (0.5 + s)/4`),
//! IQ3_XXS by `1/4`. Grid points and sign patterns come from
//! [`crate::dequant::grids`].

#![allow(non_snake_case)] // ggml's names (`q8_K`), so the two read side by side

use half::f16;

use crate::blocks::{
    BlockIq1M, BlockIq1S, BlockIq2S, BlockIq2Xs, BlockIq2Xxs, BlockIq3S, BlockIq3Xxs, BlockIq4Xs,
    BlockQ8K, BlockTq1_0, BlockTq2_0,
};
use crate::dequant::grids::{
    IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KMASK_IQ2XS,
    KSIGNS_IQ2XS, KVALUES_IQ4NL,
};
use crate::kernels::kquants::{super_blocks, view};

/// ggml's `IQ1S_DELTA` and `IQ1M_DELTA`.
const IQ1_DELTA: f32 = 0.125;

/// `Σ_j grid[j] · q8[j] · ±1` of one 8-value grid point, the sign of value
/// `j` being bit `j` of `signs`.
#[inline]
fn signed_dot8(grid: [u8; 8], signs: u8, q8: &[i8]) -> i32 {
    let mut sum = 0;
    for j in 0..8 {
        let p = i32::from(grid[j]) * i32::from(q8[j]);
        sum += if signs & KMASK_IQ2XS[j] != 0 { -p } else { p };
    }
    sum
}

/// IQ2_XXS · Q8_K over `n` values (`w`: `n / 256` [`BlockIq2Xxs`]).
pub fn vec_dot_iq2_xxs_q8_K_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = super_blocks(n);
    let (x, y) = (view::<BlockIq2Xxs>(w, nb), view::<BlockQ8K>(a, nb));
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y.iter()) {
        let d = x.d.to_f32() * y.d;
        let mut bsum = 0i32;
        for (q2, q8) in x.qs.chunks_exact(4).zip(y.qs.chunks_exact(32)) {
            // First u32: 4 grid indices; second: 4 × 7 sign bits and the 4-bit scale.
            let aux0 = u32::from(q2[0]) | (u32::from(q2[1]) << 16);
            let aux1 = u32::from(q2[2]) | (u32::from(q2[3]) << 16);
            let ls = (2 * (aux1 >> 28) + 1) as i32;
            let mut sumi = 0i32;
            for (l, q8) in q8.chunks_exact(8).enumerate() {
                let grid = IQ2XXS_GRID[((aux0 >> (8 * l)) & 0xff) as usize].to_le_bytes();
                let signs = KSIGNS_IQ2XS[((aux1 >> (7 * l)) & 127) as usize];
                sumi += signed_dot8(grid, signs, q8);
            }
            bsum += sumi * ls;
        }
        sumf += d * bsum as f32;
    }
    0.125 * sumf
}

/// IQ2_XS · Q8_K over `n` values.
pub fn vec_dot_iq2_xs_q8_K_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = super_blocks(n);
    let (x, y) = (view::<BlockIq2Xs>(w, nb), view::<BlockQ8K>(a, nb));
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y.iter()) {
        let d = x.d.to_f32() * y.d;
        let mut bsum = 0i32;
        for ((q2, q8), &sc) in
            x.qs.chunks_exact(4)
                .zip(y.qs.chunks_exact(32))
                .zip(&x.scales)
        {
            // Each u16: 9-bit grid index, 7 sign bits; a 4-bit scale per 16 values.
            let ls = [i32::from(2 * (sc & 0xf) + 1), i32::from(2 * (sc >> 4) + 1)];
            for (half, (q2, q8)) in q2.chunks_exact(2).zip(q8.chunks_exact(16)).enumerate() {
                let mut sumi = 0i32;
                for (&q, q8) in q2.iter().zip(q8.chunks_exact(8)) {
                    let grid = IQ2XS_GRID[usize::from(q & 511)].to_le_bytes();
                    sumi += signed_dot8(grid, KSIGNS_IQ2XS[usize::from(q >> 9)], q8);
                }
                bsum += sumi * ls[half];
            }
        }
        sumf += d * bsum as f32;
    }
    0.125 * sumf
}

/// IQ2_S · Q8_K over `n` values.
pub fn vec_dot_iq2_s_q8_K_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = super_blocks(n);
    let (x, y) = (view::<BlockIq2S>(w, nb), view::<BlockQ8K>(a, nb));
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y.iter()) {
        let d = x.d.to_f32() * y.d;
        // qs: 32 bytes of grid-index low bits, then 32 bytes of explicit signs.
        let (qs, signs) = x.qs.split_at(32);
        let mut bsum = 0i32;
        for ib in 0..8 {
            let sc = x.scales[ib];
            let ls = [i32::from(1 + 2 * (sc & 0xf)), i32::from(1 + 2 * (sc >> 4))];
            let qh = usize::from(x.qh[ib]);
            let mut sumi = [0i32; 2];
            for l in 0..4 {
                let idx = usize::from(qs[4 * ib + l]) | ((qh << (8 - 2 * l)) & 0x300);
                let q8 = &y.qs[32 * ib + 8 * l..][..8];
                sumi[l / 2] += signed_dot8(IQ2S_GRID[idx].to_le_bytes(), signs[4 * ib + l], q8);
            }
            bsum += ls[0] * sumi[0] + ls[1] * sumi[1];
        }
        sumf += d * bsum as f32;
    }
    0.125 * sumf
}

/// `Σ_j grid1[j] · q8[j] · ±1 + grid2[j] · q8[j + 4] · ±1` of two 4-value
/// grid points making 8 values, signs as in [`signed_dot8`].
#[inline]
fn signed_dot4x2(grid1: [u8; 4], grid2: [u8; 4], signs: u8, q8: &[i8]) -> i32 {
    let mut grid = [0u8; 8];
    grid[..4].copy_from_slice(&grid1);
    grid[4..].copy_from_slice(&grid2);
    signed_dot8(grid, signs, q8)
}

/// IQ3_XXS · Q8_K over `n` values.
pub fn vec_dot_iq3_xxs_q8_K_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = super_blocks(n);
    let (x, y) = (view::<BlockIq3Xxs>(w, nb), view::<BlockQ8K>(a, nb));
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y.iter()) {
        let d = x.d.to_f32() * y.d;
        // qs: 64 bytes of grid indices (8 per 32 values), then 8 u32 of
        // 4 × 7 sign bits and a 4-bit scale.
        let (q3, gas) = x.qs.split_at(64);
        let mut bsum = 0i32;
        for ib in 0..8 {
            let aux = u32::from_le_bytes([
                gas[4 * ib],
                gas[4 * ib + 1],
                gas[4 * ib + 2],
                gas[4 * ib + 3],
            ]);
            let ls = (2 * (aux >> 28) + 1) as i32;
            let q3 = &q3[8 * ib..][..8];
            let mut sumi = 0i32;
            for l in 0..4 {
                let grid1 = IQ3XXS_GRID[usize::from(q3[2 * l])].to_le_bytes();
                let grid2 = IQ3XXS_GRID[usize::from(q3[2 * l + 1])].to_le_bytes();
                let signs = KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
                sumi += signed_dot4x2(grid1, grid2, signs, &y.qs[32 * ib + 8 * l..][..8]);
            }
            bsum += sumi * ls;
        }
        sumf += d * bsum as f32;
    }
    0.25 * sumf
}

/// IQ3_S · Q8_K over `n` values.
pub fn vec_dot_iq3_s_q8_K_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = super_blocks(n);
    let (x, y) = (view::<BlockIq3S>(w, nb), view::<BlockQ8K>(a, nb));
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y.iter()) {
        let d = x.d.to_f32() * y.d;
        let mut bsum = 0i32;
        for ib in 0..8 {
            // A 4-bit scale per 32 values; 9-bit grid indices (8 bits in qs,
            // the ninth in qh[ib]), 8 explicit sign bits per 8 values.
            let sc = x.scales[ib / 2] >> (4 * (ib % 2));
            let ls = i32::from(2 * (sc & 0xf) + 1);
            let qh = usize::from(x.qh[ib]);
            let mut sumi = 0i32;
            for l in 0..4 {
                let i1 = usize::from(x.qs[8 * ib + 2 * l]) | ((qh << (8 - 2 * l)) & 256);
                let i2 = usize::from(x.qs[8 * ib + 2 * l + 1]) | ((qh << (7 - 2 * l)) & 256);
                sumi += signed_dot4x2(
                    IQ3S_GRID[i1].to_le_bytes(),
                    IQ3S_GRID[i2].to_le_bytes(),
                    x.signs[4 * ib + l],
                    &y.qs[32 * ib + 8 * l..][..8],
                );
            }
            bsum += sumi * ls;
        }
        sumf += d * bsum as f32;
    }
    sumf
}

/// `Σ_j grid[j] · q8[j]` of an IQ1 grid point (bytes are `i8` in `-1..=1`).
#[inline]
fn grid_dot8(point: u64, q8: &[i8]) -> i32 {
    point
        .to_le_bytes()
        .iter()
        .zip(q8)
        .map(|(&g, &q)| i32::from(g as i8) * i32::from(q))
        .sum()
}

/// IQ1_S · Q8_K over `n` values.
pub fn vec_dot_iq1_s_q8_K_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = super_blocks(n);
    let (x, y) = (view::<BlockIq1S>(w, nb), view::<BlockQ8K>(a, nb));
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y.iter()) {
        let (mut sumi, mut sumi1) = (0i32, 0i32);
        for ib in 0..8 {
            // qh[ib]: 3 high index bits per 8 values, a 3-bit scale and the sign of the shift.
            let qh = usize::from(x.qh[ib]);
            let ls = (2 * ((qh >> 12) & 7) + 1) as i32;
            let delta = if qh & 0x8000 != 0 { -1 } else { 1 };
            let mut lsum = 0i32;
            for l in 0..4 {
                let idx = usize::from(x.qs[4 * ib + l]) | (((qh >> (3 * l)) & 7) << 8);
                lsum += grid_dot8(IQ1S_GRID[idx], &y.qs[32 * ib + 8 * l..][..8]);
            }
            sumi += ls * lsum;
            sumi1 += ls * delta * (i32::from(y.bsums[2 * ib]) + i32::from(y.bsums[2 * ib + 1]));
        }
        sumf += x.d.to_f32() * y.d * (sumi as f32 + IQ1_DELTA * sumi1 as f32);
    }
    sumf
}

/// IQ1_M · Q8_K over `n` values.
pub fn vec_dot_iq1_m_q8_K_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = super_blocks(n);
    let (x, y) = (view::<BlockIq1M>(w, nb), view::<BlockQ8K>(a, nb));
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y.iter()) {
        // Four u16 of 3-bit scales; their top nibbles make the f16 super-block scale.
        let sc: [u16; 4] =
            std::array::from_fn(|i| u16::from_le_bytes([x.scales[2 * i], x.scales[2 * i + 1]]));
        let d_bits =
            (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000);
        let (mut sumi1, mut sumi2) = (0i32, 0i32);
        for ib in 0..8 {
            let (h0, h1) = (x.qh[2 * ib], x.qh[2 * ib + 1]);
            let delta = |h: u8, bit: u8| if h & bit != 0 { -1 } else { 1 };
            let deltas = [
                delta(h0, 0x08),
                delta(h0, 0x80),
                delta(h1, 0x08),
                delta(h1, 0x80),
            ];
            let (mut sum1, mut sum2) = ([0i32; 2], [0i32; 2]);
            for l in 0..4 {
                let h = u16::from(x.qh[2 * ib + l / 2]);
                let idx =
                    usize::from(x.qs[4 * ib + l]) | usize::from((h << (8 - 4 * (l % 2))) & 0x700);
                let q8 = &y.qs[32 * ib + 8 * l..][..8];
                let lsum2: i32 = q8.iter().map(|&q| i32::from(q)).sum();
                sum1[l / 2] += grid_dot8(IQ1S_GRID[idx], q8);
                sum2[l / 2] += lsum2 * deltas[l];
            }
            let s = sc[ib / 2] >> (6 * (ib % 2));
            let ls1 = i32::from(2 * (s & 7) + 1);
            let ls2 = i32::from(2 * ((s >> 3) & 7) + 1);
            sumi1 += sum1[0] * ls1 + sum1[1] * ls2;
            sumi2 += sum2[0] * ls1 + sum2[1] * ls2;
        }
        sumf += f16::from_bits(d_bits).to_f32() * y.d * (sumi1 as f32 + IQ1_DELTA * sumi2 as f32);
    }
    sumf
}

/// IQ4_XS · Q8_K over `n` values.
pub fn vec_dot_iq4_xs_q8_K_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = super_blocks(n);
    let (x, y) = (view::<BlockIq4Xs>(w, nb), view::<BlockQ8K>(a, nb));
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y.iter()) {
        let d4d8 = x.d.to_f32() * y.d;
        for ib in 0..8 {
            // 6-bit scale: 4 bits in scales_l, 2 in scales_h; minus 32.
            let low = (x.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xf;
            let high = ((x.scales_h >> (2 * ib)) & 3) as u8;
            let ls = i32::from(low | (high << 4)) - 32;
            let dl = d4d8 * ls as f32;
            let qs = &x.qs[16 * ib..][..16];
            let q8 = &y.qs[32 * ib..][..32];
            let (mut sumi1, mut sumi2) = (0i32, 0i32);
            for j in 0..16 {
                sumi1 += i32::from(q8[j]) * i32::from(KVALUES_IQ4NL[usize::from(qs[j] & 0xf)]);
                sumi2 += i32::from(q8[j + 16]) * i32::from(KVALUES_IQ4NL[usize::from(qs[j] >> 4)]);
            }
            sumf += dl * (sumi1 + sumi2) as f32;
        }
    }
    sumf
}

/// TQ1_0 · Q8_K over `n` values.
pub fn vec_dot_tq1_0_q8_K_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    const POW3: [u8; 6] = [1, 3, 9, 27, 81, 243];
    // Ternary digit `l` of a byte, minus one.
    let trit = |byte: u8, l: usize| -> i32 {
        let q = byte.wrapping_mul(POW3[l]);
        i32::from((u16::from(q) * 3) >> 8) - 1
    };
    let nb = super_blocks(n);
    let (x, y) = (view::<BlockTq1_0>(w, nb), view::<BlockQ8K>(a, nb));
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y.iter()) {
        let q8 = &y.qs;
        let mut sum = 0i32;
        // qs[0..32]: 5 digits each, values 32·l + m; qs[32..48]: values
        // 160 + 16·l + m; qh: 4 digits each, values 240 + 4·l + j.
        for l in 0..5 {
            for m in 0..32 {
                sum += trit(x.qs[m], l) * i32::from(q8[32 * l + m]);
            }
        }
        for l in 0..5 {
            for m in 0..16 {
                sum += trit(x.qs[32 + m], l) * i32::from(q8[160 + 16 * l + m]);
            }
        }
        for l in 0..4 {
            for (j, &h) in x.qh.iter().enumerate() {
                sum += trit(h, l) * i32::from(q8[240 + 4 * l + j]);
            }
        }
        sumf += sum as f32 * (x.d.to_f32() * y.d);
    }
    sumf
}

/// TQ2_0 · Q8_K over `n` values.
pub fn vec_dot_tq2_0_q8_K_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = super_blocks(n);
    let (x, y) = (view::<BlockTq2_0>(w, nb), view::<BlockQ8K>(a, nb));
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y.iter()) {
        // Byte m of each 32-byte run holds values m, m + 32, m + 64, m + 96 of its 128.
        let mut sumi = 0i32;
        for (j, qs) in x.qs.chunks_exact(32).enumerate() {
            for l in 0..4 {
                for (k, &q) in qs.iter().enumerate() {
                    let v = i32::from((q >> (2 * l)) & 3) - 1;
                    sumi += i32::from(y.qs[128 * j + 32 * l + k]) * v;
                }
            }
        }
        let d = y.d * x.d.to_f32();
        sumf += sumi as f32 * d;
    }
    sumf
}
