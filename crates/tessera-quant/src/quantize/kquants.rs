//! K-quants: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, as ggml's `quantize_row_q*_K_ref`
//! (what `ggml_quantize_chunk` and llama-quantize use without an importance
//! matrix).
//!
//! A super-block of 256 values is cut into sub-blocks of 16 or 32; each
//! sub-block gets its own scale (and min) by a small search
//! ([`make_qx_quants`], [`make_q3_quants`], [`make_qkx2_quants`]); the
//! sub-block scales are then quantized against one f16 super-block scale and
//! the levels recomputed with the scales as stored.
//!
//! Byte identity with ggml depends on the float details, kept here on
//! purpose: f32 arithmetic in ggml's evaluation order (`w * x * l` is
//! `(w * x) * l`), no fused multiply-add, [`nearest_int`] for rounding, and
//! C's integer truncations where ggml stores an `int` in a byte.

#![allow(non_snake_case)] // ggml's names (q4_K), so the two read side by side

use half::f16;

use super::nearest_int;
use crate::blocks::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, QK_K};

/// Below this, a group counts as all zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// The value of largest magnitude (the first one on ties) and its magnitude.
fn signed_abs_max(x: &[f32]) -> (f32, f32) {
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}

/// Symmetric levels `L[i] in 0..2*nmax` (value `L[i] - nmax`) and the scale,
/// chosen among 19 candidate scales around `max / -nmax` to minimise the
/// weighted squared error. Weights by `rmse_type`: 1 → `x²`, 2 → 1,
/// 3 → `|x|`, other → `sqrt|x|`; 0 takes the first candidate, a negative
/// type returns after it. ggml's `make_qx_quants` with no importance weights.
fn make_qx_quants(nmax: i32, x: &[f32], levels: &mut [i8], rmse_type: i32) -> f32 {
    let (max, amax) = signed_abs_max(x);
    if amax < GROUP_MAX_EPS {
        levels.fill(0);
        return 0.0;
    }
    let clamp = |l: i32| l.clamp(-nmax, nmax - 1);
    let mut iscale = -nmax as f32 / max;
    if rmse_type == 0 {
        for (q, &v) in levels.iter_mut().zip(x) {
            *q = (nmax + clamp(nearest_int(iscale * v))) as i8;
        }
        return 1.0 / iscale;
    }
    let (rmse_type, return_early) = (rmse_type.abs(), rmse_type < 0);
    let weight = |v: f32| match rmse_type {
        1 => v * v,
        2 => 1.0,
        3 => v.abs(),
        _ => v.abs().sqrt(),
    };
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for (q, &v) in levels.iter_mut().zip(x) {
        let l = clamp(nearest_int(iscale * v));
        *q = (l + nmax) as i8;
        let w = weight(v);
        sumlx += w * v * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    if return_early {
        return if suml2 > 0.0 {
            0.5 * (scale + 1.0 / iscale)
        } else {
            1.0 / iscale
        };
    }
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for &v in x {
            let l = clamp(nearest_int(iscale * v)) as f32;
            let w = weight(v);
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (q, &v) in levels.iter_mut().zip(x) {
                *q = (nmax + clamp(nearest_int(iscale * v))) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Q3_K's sub-block search: symmetric levels in `-nmax..nmax` (stored as
/// `L + nmax`), refined one level at a time (up to 5 rounds) to minimise the
/// `x²`-weighted error. ggml's `make_q3_quants` with `do_rmse = true`.
/// All-zero groups get `L = 0` (not `nmax`), as in ggml.
fn make_q3_quants(nmax: i32, x: &[f32], levels: &mut [i8]) -> f32 {
    let (max, amax) = signed_abs_max(x);
    if amax < GROUP_MAX_EPS {
        levels.fill(0);
        return 0.0;
    }
    let clamp = |l: i32| l.clamp(-nmax, nmax - 1);
    let iscale = -nmax as f32 / max;
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for (q, &v) in levels.iter_mut().zip(x) {
        let l = clamp(nearest_int(iscale * v));
        *q = l as i8;
        let w = v * v;
        sumlx += w * v * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut changed = false;
        for (q, &v) in levels.iter_mut().zip(x) {
            let w = v * v;
            let old = f32::from(*q);
            let mut slx = sumlx - w * v * old;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * old * old;
                let new_l = clamp(nearest_int(v * sl2 / slx));
                if new_l != i32::from(*q) {
                    let nl = new_l as f32;
                    slx += w * v * nl;
                    sl2 += w * nl * nl;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *q = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    for q in levels.iter_mut() {
        *q += nmax as i8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// The search of [`make_qkx2_quants`]: candidate scales
/// `(rmin + rdelta * is + nmax) / (max - min)` for `is in 0..=nstep`.
struct Search {
    rmin: f32,
    rdelta: f32,
    nstep: i32,
}

/// Asymmetric levels `L in 0..=nmax` with `x ≈ scale * L - min`: starts from
/// the min/max fit and tries `nstep + 1` scales, each refined by weighted
/// least squares for scale and min; keeps the one of least weighted error
/// (squared, or absolute with `use_mad`). Returns `(scale, min)`, `min >= 0`.
/// ggml's `make_qkx2_quants`.
fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    levels: &mut [u8],
    search: Search,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        levels.fill(0);
        return (0.0, -min);
    }
    let err = |diff: f32| if use_mad { diff.abs() } else { diff * diff };
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        levels[i] = l as u8;
        best_error += weights[i] * err(scale * l as f32 + min - x[i]);
    }
    if search.nstep < 1 {
        return (scale, -min);
    }
    let mut aux = [0u8; 32];
    let aux = &mut aux[..n];
    for is in 0..=search.nstep {
        iscale = (search.rmin + search.rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            aux[i] = l as u8;
            let (w, l) = (weights[i], l as f32);
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                cur_error += weights[i] * err(this_scale * f32::from(aux[i]) + this_min - x[i]);
            }
            if cur_error < best_error {
                levels.copy_from_slice(aux);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Scale and min of sub-block `j` from Q4_K/Q5_K's 12 packed bytes of 6-bit values.
fn get_scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Packs Q4_K/Q5_K's 8 six-bit scales and mins into 12 bytes.
fn set_scale_min_k4(j: usize, ls: u8, lm: u8, q: &mut [u8; 12]) {
    if j < 4 {
        q[j] = ls;
        q[j + 4] = lm;
    } else {
        q[j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
        q[j - 4] |= (ls >> 4) << 6;
        q[j] |= (lm >> 4) << 6;
    }
}

fn check_len(name: &str, x: &[f32], blocks: usize) {
    assert_eq!(
        x.len(),
        blocks * QK_K,
        "{name}: {} values for {blocks} super-blocks",
        x.len()
    );
}

/// Packs 2-bit levels as Q2_K/Q3_K store them: per 128 values, byte `l` of
/// each 32-byte run holds elements `l`, `l+32`, `l+64`, `l+96`.
fn pack2(levels: &[u8; QK_K], qs: &mut [u8; QK_K / 4]) {
    for (lv, q) in levels.chunks_exact(128).zip(qs.chunks_exact_mut(32)) {
        for (l, q) in q.iter_mut().enumerate() {
            *q = lv[l] | (lv[l + 32] << 2) | (lv[l + 64] << 4) | (lv[l + 96] << 6);
        }
    }
}

/// Q2_K: 16 sub-blocks of 16 with a 4-bit scale and min each, 2-bit levels.
pub fn quantize_row_q2_K(x: &[f32], y: &mut [BlockQ2K]) {
    check_len("Q2_K", x, y.len());
    const Q4SCALE: f32 = 15.0;
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut levels = [0u8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        let mut mins = [0f32; QK_K / 16];
        let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
        for j in 0..QK_K / 16 {
            let xs = &xb[16 * j..][..16];
            let weights: [f32; 16] = std::array::from_fn(|l| xs[l].abs());
            let search = Search {
                rmin: -0.5,
                rdelta: 0.1,
                nstep: 15,
            };
            let lv = &mut levels[16 * j..][..16];
            (scales[j], mins[j]) = make_qkx2_quants(3, xs, &weights, lv, search, true);
            if scales[j] > max_scale {
                max_scale = scales[j];
            }
            if mins[j] > max_min {
                max_min = mins[j];
            }
        }

        if max_scale > 0.0 {
            let iscale = Q4SCALE / max_scale;
            for (s, &scale) in yb.scales.iter_mut().zip(&scales) {
                *s = nearest_int(iscale * scale) as u8;
            }
            yb.d = f16::from_f32(max_scale / Q4SCALE);
        } else {
            yb.scales = [0; QK_K / 16];
            yb.d = f16::from_f32(0.0);
        }
        if max_min > 0.0 {
            let iscale = Q4SCALE / max_min;
            for (s, &min) in yb.scales.iter_mut().zip(&mins) {
                *s |= (nearest_int(iscale * min) << 4) as u8;
            }
            yb.dmin = f16::from_f32(max_min / Q4SCALE);
        } else {
            yb.dmin = f16::from_f32(0.0);
        }

        let (d_all, dmin_all) = (yb.d.to_f32(), yb.dmin.to_f32());
        for j in 0..QK_K / 16 {
            let d = d_all * f32::from(yb.scales[j] & 0xf);
            if d == 0.0 {
                continue;
            }
            let dm = dmin_all * f32::from(yb.scales[j] >> 4);
            for ii in 0..16 {
                let l = nearest_int((xb[16 * j + ii] + dm) / d).clamp(0, 3);
                levels[16 * j + ii] = l as u8;
            }
        }
        pack2(&levels, &mut yb.qs);
    }
}

/// Q3_K: 16 sub-blocks of 16 with a signed 6-bit scale each, 3-bit levels
/// (low 2 bits in `qs`, the high bit in `hmask`).
pub fn quantize_row_q3_K(x: &[f32], y: &mut [BlockQ3K]) {
    check_len("Q3_K", x, y.len());
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut levels = [0i8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        let (mut max_scale, mut amax) = (0.0f32, 0.0f32);
        for j in 0..QK_K / 16 {
            scales[j] = make_q3_quants(4, &xb[16 * j..][..16], &mut levels[16 * j..][..16]);
            if scales[j].abs() > amax {
                amax = scales[j].abs();
                max_scale = scales[j];
            }
        }

        yb.scales = [0; 12];
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for (j, &scale) in scales.iter().enumerate() {
                // ggml stores nearest_int's result in an int8_t first.
                let l = ((nearest_int(iscale * scale) as i8).clamp(-32, 31) + 32) as u8;
                if j < 8 {
                    yb.scales[j] = l & 0xf;
                } else {
                    yb.scales[j - 8] |= (l & 0xf) << 4;
                }
                yb.scales[j % 4 + 8] |= (l >> 4) << (2 * (j / 4));
            }
            yb.d = f16::from_f32(1.0 / iscale);
        } else {
            yb.d = f16::from_f32(0.0);
        }

        let d_all = yb.d.to_f32();
        for j in 0..QK_K / 16 {
            let low = if j < 8 {
                yb.scales[j] & 0xf
            } else {
                yb.scales[j - 8] >> 4
            };
            let high = (yb.scales[8 + j % 4] >> (2 * (j / 4))) & 3;
            let sc = (low | (high << 4)) as i8 - 32;
            let d = d_all * f32::from(sc);
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let l = nearest_int(xb[16 * j + ii] / d).clamp(-4, 3);
                levels[16 * j + ii] = (l + 4) as i8;
            }
        }

        // The high bit of the first 32 levels goes to bit 0 of hmask[0..32],
        // of the next 32 to bit 1, and so on.
        yb.hmask = [0; QK_K / 8];
        let mut low = [0u8; QK_K];
        for (j, (&l, lo)) in levels.iter().zip(low.iter_mut()).enumerate() {
            let mut l = l as u8;
            if l > 3 {
                yb.hmask[j % 32] |= 1 << (j / 32);
                l -= 4;
            }
            *lo = l;
        }
        pack2(&low, &mut yb.qs);
    }
}

/// The sub-block search shared by Q4_K and Q5_K: eight sub-blocks of 32,
/// weights `rms(x) + |x|`. Returns the levels, scales and mins.
fn qkx2_sub_blocks(
    xb: &[f32],
    nmax: i32,
    search: impl Fn() -> Search,
) -> ([u8; QK_K], [f32; 8], [f32; 8]) {
    let mut levels = [0u8; QK_K];
    let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
    for j in 0..QK_K / 32 {
        let xs = &xb[32 * j..][..32];
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let weights: [f32; 32] = std::array::from_fn(|l| av_x + xs[l].abs());
        let lv = &mut levels[32 * j..][..32];
        (scales[j], mins[j]) = make_qkx2_quants(nmax, xs, &weights, lv, search(), false);
    }
    (levels, scales, mins)
}

/// Quantizes the 8 sub-block scales and mins of Q4_K/Q5_K to 6 bits against
/// `d`/`dmin`, then recomputes the levels (`0..=nmax`) with the stored scales.
fn set_k4_scales(
    xb: &[f32],
    nmax: i32,
    levels: &mut [u8; QK_K],
    scales: &[f32; 8],
    mins: &[f32; 8],
    packed: &mut [u8; 12],
) -> (f16, f16) {
    let max_scale = scales
        .iter()
        .fold(0.0f32, |m, &s| if s > m { s } else { m });
    let max_min = mins.iter().fold(0.0f32, |m, &s| if s > m { s } else { m });
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    for j in 0..QK_K / 32 {
        // ggml stores nearest_int's result in a uint8_t before capping it.
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        set_scale_min_k4(j, ls, lm, packed);
    }
    let d = f16::from_f32(max_scale / 63.0);
    let dmin = f16::from_f32(max_min / 63.0);
    for j in 0..QK_K / 32 {
        let (sc, m) = get_scale_min_k4(j, packed);
        let d = d.to_f32() * f32::from(sc);
        if d == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * f32::from(m);
        for ii in 0..32 {
            let l = nearest_int((xb[32 * j + ii] + dm) / d).clamp(0, nmax);
            levels[32 * j + ii] = l as u8;
        }
    }
    (d, dmin)
}

/// Q4_K: 8 sub-blocks of 32 with 6-bit scales and mins, 4-bit levels.
pub fn quantize_row_q4_K(x: &[f32], y: &mut [BlockQ4K]) {
    check_len("Q4_K", x, y.len());
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let search = || Search {
            rmin: -1.0,
            rdelta: 0.1,
            nstep: 20,
        };
        let (mut levels, scales, mins) = qkx2_sub_blocks(xb, 15, search);
        (yb.d, yb.dmin) = set_k4_scales(xb, 15, &mut levels, &scales, &mins, &mut yb.scales);
        for (lv, q) in levels.chunks_exact(64).zip(yb.qs.chunks_exact_mut(32)) {
            for (l, q) in q.iter_mut().enumerate() {
                *q = lv[l] | (lv[l + 32] << 4);
            }
        }
    }
}

/// Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins, 5-bit levels (the
/// fifth bit in `qh`).
pub fn quantize_row_q5_K(x: &[f32], y: &mut [BlockQ5K]) {
    check_len("Q5_K", x, y.len());
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let search = || Search {
            rmin: -0.5,
            rdelta: 0.1,
            nstep: 15,
        };
        let (mut levels, scales, mins) = qkx2_sub_blocks(xb, 31, search);
        (yb.d, yb.dmin) = set_k4_scales(xb, 31, &mut levels, &scales, &mins, &mut yb.scales);
        yb.qh = [0; QK_K / 8];
        for (n, (lv, ql)) in levels
            .chunks_exact(64)
            .zip(yb.qs.chunks_exact_mut(32))
            .enumerate()
        {
            let (m1, m2) = (1u8 << (2 * n), 2u8 << (2 * n));
            for (j, q) in ql.iter_mut().enumerate() {
                let (mut l1, mut l2) = (lv[j], lv[j + 32]);
                if l1 > 15 {
                    l1 -= 16;
                    yb.qh[j] |= m1;
                }
                if l2 > 15 {
                    l2 -= 16;
                    yb.qh[j] |= m2;
                }
                *q = l1 | (l2 << 4);
            }
        }
    }
}

/// Q6_K: 16 sub-blocks of 16 with signed 8-bit scales, 6-bit levels (low 4
/// bits in `ql`, high 2 in `qh`).
pub fn quantize_row_q6_K(x: &[f32], y: &mut [BlockQ6K]) {
    check_len("Q6_K", x, y.len());
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut levels = [0i8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
        for ib in 0..QK_K / 16 {
            scales[ib] = make_qx_quants(32, &xb[16 * ib..][..16], &mut levels[16 * ib..][..16], 1);
            if scales[ib].abs() > max_abs_scale {
                max_abs_scale = scales[ib].abs();
                max_scale = scales[ib];
            }
        }

        if max_abs_scale < GROUP_MAX_EPS {
            *yb = bytemuck::Zeroable::zeroed();
            continue;
        }

        let iscale = -128.0 / max_scale;
        yb.d = f16::from_f32(1.0 / iscale);
        for (s, &scale) in yb.scales.iter_mut().zip(&scales) {
            *s = nearest_int(iscale * scale).min(127) as i8;
        }

        let d_all = yb.d.to_f32();
        for j in 0..QK_K / 16 {
            let d = d_all * f32::from(yb.scales[j]);
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let l = nearest_int(xb[16 * j + ii] / d).clamp(-32, 31);
                levels[16 * j + ii] = (l + 32) as i8;
            }
        }

        for ((lv, ql), qh) in levels
            .chunks_exact(128)
            .zip(yb.ql.chunks_exact_mut(64))
            .zip(yb.qh.chunks_exact_mut(32))
        {
            for l in 0..32 {
                let q = |k: usize| lv[l + 32 * k] as u8;
                ql[l] = (q(0) & 0xf) | ((q(2) & 0xf) << 4);
                ql[l + 32] = (q(1) & 0xf) | ((q(3) & 0xf) << 4);
                qh[l] = (q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytemuck::Zeroable;

    #[test]
    fn scale_min_k4_round_trips() {
        let ls = [0u8, 1, 17, 63, 32, 5, 48, 62];
        let lm = [63u8, 2, 40, 0, 31, 33, 7, 16];
        let mut q = [0u8; 12];
        for j in 0..8 {
            set_scale_min_k4(j, ls[j], lm[j], &mut q);
        }
        for j in 0..8 {
            assert_eq!(get_scale_min_k4(j, &q), (ls[j], lm[j]));
        }
    }

    #[test]
    fn qkx2_fits_an_exact_ramp() {
        // x = 0.25 * L - 1 for L = 0..=15: scale 0.25, min 1, levels exact.
        let x: Vec<f32> = (0..32).map(|i| 0.25 * (i % 16) as f32 - 1.0).collect();
        let w = [1.0f32; 32];
        let mut l = [0u8; 32];
        let search = Search {
            rmin: -1.0,
            rdelta: 0.1,
            nstep: 20,
        };
        let (scale, min) = make_qkx2_quants(15, &x, &w, &mut l, search, false);
        assert_eq!((scale, min), (0.25, 1.0));
        for (i, &l) in l.iter().enumerate() {
            assert_eq!(usize::from(l), i % 16);
        }
    }

    #[test]
    fn zero_super_blocks() {
        let x = [0f32; QK_K];
        let mut q6 = [BlockQ6K::zeroed()];
        quantize_row_q6_K(&x, &mut q6);
        assert!(bytemuck::bytes_of(&q6[0]).iter().all(|&b| b == 0));
        let mut q4 = [BlockQ4K::zeroed()];
        quantize_row_q4_K(&x, &mut q4);
        assert!(bytemuck::bytes_of(&q4[0]).iter().all(|&b| b == 0));
        let mut q3 = [BlockQ3K::zeroed()];
        quantize_row_q3_K(&x, &mut q3);
        assert_eq!(q3[0].d.to_f32(), 0.0);
        assert_eq!(q3[0].qs, [0; QK_K / 4]);
    }

    /// Level of element `i` of a Q6_K block, read back as ggml's dequantizer does.
    fn q6_level(b: &BlockQ6K, i: usize) -> i32 {
        let (n, k, l) = (i / 128, i % 128 / 32, i % 32);
        let ql = b.ql[64 * n + 32 * (k % 2) + l];
        let lo = if k < 2 { ql & 0xf } else { ql >> 4 };
        let hi = (b.qh[32 * n + l] >> (2 * k)) & 3;
        i32::from(lo | (hi << 4)) - 32
    }

    #[test]
    fn q6_k_is_within_half_a_step() {
        let mut x: Vec<f32> = (0..QK_K)
            .map(|i| ((i * 7) % 23) as f32 * 0.01 - 0.11)
            .collect();
        x[77] = -1.0;
        let mut y = [BlockQ6K::zeroed()];
        quantize_row_q6_K(&x, &mut y);
        for (i, &v) in x.iter().enumerate() {
            let d = y[0].d.to_f32() * f32::from(y[0].scales[i / 16]);
            let err = (d * q6_level(&y[0], i) as f32 - v).abs();
            assert!(
                err <= 0.5 * d.abs() * 1.001 + 1e-6,
                "element {i}: error {err}, step {d}"
            );
        }
    }
}
