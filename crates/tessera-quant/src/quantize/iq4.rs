//! IQ4_NL and IQ4_XS: 4-bit indices into ggml's non-linear table
//! [`KVALUES_IQ4NL`], with one f16 scale per 32 values (IQ4_NL) or a 6-bit
//! scale per 32 under an f16 super-block scale (IQ4_XS), as ggml's
//! `quantize_row_iq4_nl_impl` without an importance matrix.
//!
//! ggml has two IQ4_NL quantizers: `quantize_iq4_nl` (what
//! `ggml_quantize_chunk` and llama-quantize use; it searches 15 scales per
//! block) and `quantize_row_iq4_nl_ref` (the type trait's `from_float_ref`,
//! used when ggml quantizes at run time, e.g. a KV cache; one scale, no
//! search). Both are here: [`quantize_iq4_nl`] and [`quantize_row_iq4_nl`].
//! IQ4_XS has only the first kind.

use half::f16;

use super::nearest_int;
use crate::blocks::{BlockIq4Nl, BlockIq4Xs, QK, QK_K};

/// The 16 levels of IQ4_NL/IQ4_XS (`kvalues_iq4nl`).
pub const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// Below this, a group counts as all zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// Index of the level nearest `x` in the sorted `values` (ties to the upper
/// one), by bisection as ggml's `best_index_int8`.
fn best_index(values: &[i8; 16], x: f32) -> u8 {
    let v = |i: usize| f32::from(values[i]);
    if x <= v(0) {
        return 0;
    }
    if x >= v(15) {
        return 15;
    }
    let (mut ml, mut mu) = (0usize, 15usize);
    while mu - ml > 1 {
        let mav = (ml + mu) / 2;
        if x < v(mav) {
            mu = mav;
        } else {
            ml = mav;
        }
    }
    if x - v(mu - 1) < v(mu) - x {
        (mu - 1) as u8
    } else {
        mu as u8
    }
}

/// `(Σ w·q·x, Σ w·q²)` for the levels `values[best_index(id·x)]`, `w = x²`;
/// writes the indices to `levels` when given.
fn fit(x: &[f32], id: f32, mut levels: Option<&mut [u8]>) -> (f32, f32) {
    let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
    for (j, &v) in x.iter().enumerate() {
        let l = best_index(&KVALUES_IQ4NL, id * v);
        if let Some(levels) = levels.as_deref_mut() {
            levels[j] = l;
        }
        let q = f32::from(KVALUES_IQ4NL[usize::from(l)]);
        let w = v * v;
        sumqx += w * q * v;
        sumq2 += w * q * q;
    }
    (sumqx, sumq2)
}

/// The scale of one block of 32 (0 for an all-zero block, whose `levels` are
/// left alone): the least-squares scale for the levels at `max / -127`, then,
/// when `ntry > 0`, the best of `2 * ntry + 1` further candidates
/// `(itry - 127) / max`.
fn block_scale(x: &[f32], levels: &mut [u8], ntry: i32) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        return 0.0;
    }
    let v0 = f32::from(KVALUES_IQ4NL[0]);
    let d = if ntry > 0 { -max / v0 } else { max / v0 };
    let (sumqx, sumq2) = fit(x, 1.0 / d, Some(levels));
    let mut d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
    let mut best = d * sumqx;
    for itry in -ntry..=ntry {
        let id = (itry + i32::from(KVALUES_IQ4NL[0])) as f32 / max;
        let (sumqx, sumq2) = fit(x, id, None);
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    d
}

/// Packs 4-bit indices: per 32, byte `j` holds elements `j` and `j + 16`.
fn pack4(levels: &[u8], qs: &mut [u8]) {
    for (lv, q) in levels.chunks_exact(32).zip(qs.chunks_exact_mut(16)) {
        for (j, q) in q.iter_mut().enumerate() {
            *q = lv[j] | (lv[j + 16] << 4);
        }
    }
}

fn iq4_nl(x: &[f32], y: &mut [BlockIq4Nl], ntry: i32) {
    assert_eq!(
        x.len(),
        y.len() * QK,
        "IQ4_NL: {} values for {} blocks",
        x.len(),
        y.len()
    );
    for (xb, yb) in x.chunks_exact(QK).zip(y.iter_mut()) {
        // Index 8 (level 1) is what ggml's search picks for zeros; ggml's
        // `_ref` leaves an all-zero block's indices unset (stale).
        let mut levels = [8u8; QK];
        let d = block_scale(xb, &mut levels, ntry);
        yb.d = f16::from_f32(d);
        if ntry > 0 {
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            for (l, &v) in levels.iter_mut().zip(xb) {
                *l = best_index(&KVALUES_IQ4NL, id * v);
            }
        }
        pack4(&levels, &mut yb.qs);
    }
}

/// IQ4_NL as llama-quantize writes it (ggml's `quantize_iq4_nl` with no
/// importance matrix): per block of 32, the best of 15 candidate scales,
/// then the indices for the scale found.
pub fn quantize_iq4_nl(x: &[f32], y: &mut [BlockIq4Nl]) {
    iq4_nl(x, y, 7);
}

/// IQ4_NL as ggml quantizes at run time (`quantize_row_iq4_nl_ref`): one
/// least-squares scale per block, no search. For an all-zero block (every
/// |x| < 1e-15) ggml reuses the previous block's indices; tessera writes
/// index 8 (level 1, times `d = 0`), so such blocks dequantize the same but
/// may differ from ggml in their bytes.
pub fn quantize_row_iq4_nl(x: &[f32], y: &mut [BlockIq4Nl]) {
    iq4_nl(x, y, -1);
}

/// IQ4_XS (ggml's `quantize_iq4_xs` / `quantize_row_iq4_xs_ref`, the same
/// without an importance matrix): each block of 32 gets the best of 15
/// candidate scales, quantized to 6 bits against the f16 super-block scale
/// `d = max_scale / -32`; the indices are recomputed for the stored scales.
pub fn quantize_row_iq4_xs(x: &[f32], y: &mut [BlockIq4Xs]) {
    assert_eq!(
        x.len(),
        y.len() * QK_K,
        "IQ4_XS: {} values for {} super-blocks",
        x.len(),
        y.len()
    );
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut levels = [0u8; QK_K];
        let mut scales = [0f32; QK_K / 32];
        let (mut max_scale, mut amax_scale) = (0.0f32, 0.0f32);
        for (ib, s) in scales.iter_mut().enumerate() {
            *s = block_scale(&xb[32 * ib..][..32], &mut levels[32 * ib..][..32], 7);
            if s.abs() > amax_scale {
                amax_scale = s.abs();
                max_scale = *s;
            }
        }

        let d = -max_scale / 32.0;
        yb.d = f16::from_f32(d);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut scales_h = 0u16;
        yb.scales_l = [0; QK_K / 64];
        for (ib, &scale) in scales.iter().enumerate() {
            let l = nearest_int(id * scale).clamp(-32, 31);
            let dl = d * l as f32;
            let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            for (lv, &v) in levels[32 * ib..][..32].iter_mut().zip(&xb[32 * ib..][..32]) {
                *lv = best_index(&KVALUES_IQ4NL, idl * v);
            }
            let l = (l + 32) as u8;
            yb.scales_l[ib / 2] |= (l & 0xf) << (4 * (ib % 2));
            scales_h |= u16::from(l >> 4) << (2 * (ib % 8));
        }
        yb.scales_h = scales_h;
        pack4(&levels, &mut yb.qs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytemuck::Zeroable;

    #[test]
    fn best_index_picks_the_nearest_level() {
        let v = &KVALUES_IQ4NL;
        assert_eq!(best_index(v, -500.0), 0);
        assert_eq!(best_index(v, 500.0), 15);
        assert_eq!(best_index(v, 0.0), 8);
        assert_eq!(best_index(v, -4.5), 8, "a tie goes to the upper level");
        assert_eq!(best_index(v, -4.6), 7);
        assert_eq!(best_index(v, -4.4), 8);
        for (i, &k) in v.iter().enumerate() {
            assert_eq!(usize::from(best_index(v, f32::from(k))), i);
        }
    }

    #[test]
    fn the_table_levels_quantize_exactly() {
        let x: Vec<f32> = (0..QK).map(|i| f32::from(KVALUES_IQ4NL[i % 16])).collect();
        let mut y = [BlockIq4Nl::zeroed()];
        quantize_iq4_nl(&x, &mut y);
        assert_eq!(y[0].d.to_f32(), 1.0);
        for j in 0..QK / 2 {
            assert_eq!(usize::from(y[0].qs[j] & 0xf), j % 16);
            assert_eq!(usize::from(y[0].qs[j] >> 4), (j + 16) % 16);
        }
    }

    #[test]
    fn iq4_xs_zero_super_block() {
        let mut y = [BlockIq4Xs::zeroed()];
        quantize_row_iq4_xs(&[0.0; QK_K], &mut y);
        assert_eq!(y[0].d.to_bits(), 0x8000, "-0.0, as ggml writes it");
        assert_eq!(y[0].qs, [0x88; QK_K / 2]);
        assert_eq!((y[0].scales_h, y[0].scales_l), (0xaaaa, [0; 4]));
    }
}
