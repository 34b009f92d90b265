//! Scalar twins of the K-quant dot kernels: portable Rust, the reference
//! every SIMD variant is tested against.
//!
//! Each follows ggml's `ggml_vec_dot_*_q8_K_generic` (`ggml-cpu/quants.c`):
//! the weight's integers are unpacked into 256 `i8`, multiplied with the
//! Q8_K integers, weighted by the sub-block scale, and summed exactly in
//! `i32`. The float operations then come in ggml's order: Q2_K adds one
//! `dall * isum - dmin * summs` per super-block; Q3_K … Q6_K keep eight
//! `f32` lane sums (`sums[l] += d * aux32[l]`, lane `l` holding the values
//! `≡ l mod 8`), added up at the end, and subtract the mins term per
//! super-block. No multiplication and addition are fused.

#![allow(non_snake_case)] // ggml's names (`q4_K`), so the two read side by side

use super::{scales_mins_k4, scales_q3_k, super_blocks, view};
use crate::blocks::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, QK_K};

/// `Σ_j scale[j] · Σ_{l<16} q8[16j + l] · a[16j + l]` kept in eight `i32`
/// lanes by `l mod 8`, as ggml's `aux32` (exact: every partial sum fits).
#[inline]
fn lane_sums(a: &[i8; QK_K], q8: &[i8; QK_K], scale: &[i32; 16]) -> [i32; 8] {
    let mut aux32 = [0i32; 8];
    for ((a, q8), &sc) in a.chunks_exact(16).zip(q8.chunks_exact(16)).zip(scale) {
        for (a8, q8) in a.chunks_exact(8).zip(q8.chunks_exact(8)) {
            // ggml's aux16: |q8 · a| ≤ 127 · 63 fits in i16.
            let aux16: [i16; 8] = std::array::from_fn(|l| i16::from(q8[l]) * i16::from(a8[l]));
            for l in 0..8 {
                aux32[l] += sc * i32::from(aux16[l]);
            }
        }
    }
    aux32
}

/// `sums[l] += d * aux32[l]`, ggml's per-super-block float step.
#[inline]
fn add_lanes(sums: &mut [f32; 8], d: f32, aux32: &[i32; 8]) {
    for (s, &v) in sums.iter_mut().zip(aux32) {
        *s += d * v as f32;
    }
}

/// Q2_K · Q8_K over `n` values (`w`: `n / 256` [`BlockQ2K`], `a`: as many [`BlockQ8K`]).
pub fn vec_dot_q2_K_q8_K_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = super_blocks(n);
    dot_q2_K(&view::<BlockQ2K>(w, nb), &view::<BlockQ8K>(a, nb))
}

fn dot_q2_K(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let sc = &x.scales;
        // Mins: the high nibble of each scale byte, one per 16 values.
        let summs: i32 = y
            .bsums
            .iter()
            .zip(sc)
            .map(|(&b, &s)| i32::from(b) * i32::from(s >> 4))
            .sum();
        let dall = y.d * x.d.to_f32();
        let dmin = y.d * x.dmin.to_f32();

        // Two runs of 128 values; each reads the same 32 bytes of `qs` with
        // shifts 0, 2, 4, 6, one 32-value group per shift.
        let mut isum = 0i32;
        for (k, q2) in x.qs.chunks_exact(32).enumerate() {
            for j in 0..4 {
                let shift = 2 * j;
                let q8 = &y.qs[128 * k + 32 * j..][..32];
                let is = 8 * k + 2 * j;
                for (half, sc) in [sc[is], sc[is + 1]].into_iter().enumerate() {
                    let r = 16 * half..16 * half + 16;
                    let isuml: i32 = q2[r.clone()]
                        .iter()
                        .zip(&q8[r])
                        .map(|(&q2, &q8)| i32::from(q8) * i32::from((q2 >> shift) & 3))
                        .sum();
                    isum += i32::from(sc & 0xf) * isuml;
                }
            }
        }
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    sumf
}

/// Q3_K · Q8_K over `n` values.
pub fn vec_dot_q3_K_q8_K_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = super_blocks(n);
    dot_q3_K(&view::<BlockQ3K>(w, nb), &view::<BlockQ8K>(a, nb))
}

fn dot_q3_K(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
    let mut sums = [0.0f32; 8];
    for (x, y) in x.iter().zip(y) {
        // q = low 2 bits - (high bit clear ? 4 : 0), in -4..=3. Value
        // 128k + 32j + l reads bits 2j of qs[32k + l] and bit 4k + j of hmask[l].
        let mut aux8 = [0i8; QK_K];
        for (k, q3) in x.qs.chunks_exact(32).enumerate() {
            for j in 0..4 {
                let m = 1u8 << (4 * k + j);
                let a = &mut aux8[128 * k + 32 * j..][..32];
                for l in 0..32 {
                    let low = ((q3[l] >> (2 * j)) & 3) as i8;
                    a[l] = low - if x.hmask[l] & m != 0 { 0 } else { 4 };
                }
            }
        }
        let words = scales_q3_k(&x.scales);
        let scale: [i32; 16] =
            std::array::from_fn(|j| (words[j / 4] >> (8 * (j % 4)) & 0xff) as i32 - 32);
        let aux32 = lane_sums(&aux8, &y.qs, &scale);
        add_lanes(&mut sums, x.d.to_f32() * y.d, &aux32);
    }
    sums.iter().fold(0.0f32, |acc, &s| acc + s)
}

/// Q4_K · Q8_K over `n` values.
pub fn vec_dot_q4_K_q8_K_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = super_blocks(n);
    dot_q4_K(&view::<BlockQ4K>(w, nb), &view::<BlockQ8K>(a, nb))
}

/// Per 16 values, the scale of their 32-value sub-block.
#[inline]
fn scales_per_16(scales: &[u8]) -> [i32; 16] {
    std::array::from_fn(|j| i32::from(scales[j / 2]))
}

/// `Σ_j bsums[j] · mins[j / 2]`: the mins term of Q4_K/Q5_K, in integers.
#[inline]
fn mins_term(bsums: &[i16; 16], mins: &[u8]) -> i32 {
    bsums
        .iter()
        .enumerate()
        .map(|(j, &b)| i32::from(b) * i32::from(mins[j / 2]))
        .sum()
}

fn dot_q4_K(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    let mut sums = [0.0f32; 8];
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        // Value 64j + l is the low nibble of qs[32j + l], 64j + 32 + l its high nibble.
        let mut aux8 = [[0i8; 32]; 8];
        let qs: &[[u8; 32]; 4] = bytemuck::cast_ref(&x.qs);
        for (j, q4) in qs.iter().enumerate() {
            aux8[2 * j] = q4.map(|q| (q & 0xf) as i8);
            aux8[2 * j + 1] = q4.map(|q| (q >> 4) as i8);
        }
        let aux8: &[i8; QK_K] = bytemuck::cast_ref(&aux8);
        let sm = scales_mins_k4(&x.scales);
        let sumi = mins_term(&y.bsums, &sm[8..]);
        let aux32 = lane_sums(aux8, &y.qs, &scales_per_16(&sm[..8]));
        add_lanes(&mut sums, x.d.to_f32() * y.d, &aux32);
        let dmin = x.dmin.to_f32() * y.d;
        sumf -= dmin * sumi as f32;
    }
    sums.iter().fold(sumf, |acc, &s| acc + s)
}

/// Q5_K · Q8_K over `n` values.
pub fn vec_dot_q5_K_q8_K_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = super_blocks(n);
    dot_q5_K(&view::<BlockQ5K>(w, nb), &view::<BlockQ8K>(a, nb))
}

fn dot_q5_K(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    let mut sums = [0.0f32; 8];
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        // As Q4_K, plus 16 where bit 2j (low nibbles) or 2j + 1 (high
        // nibbles) of qh[l] is set.
        let mut aux8 = [0i8; QK_K];
        for (j, (a, q4)) in aux8
            .chunks_exact_mut(64)
            .zip(x.qs.chunks_exact(32))
            .enumerate()
        {
            let (shift_lo, shift_hi) = (2 * j, 2 * j + 1);
            let (lo, hi) = a.split_at_mut(32);
            for (((lo, hi), &q), &h) in lo.iter_mut().zip(hi).zip(q4).zip(&x.qh) {
                *lo = ((q & 0xf) | (((h >> shift_lo) & 1) << 4)) as i8;
                *hi = ((q >> 4) | (((h >> shift_hi) & 1) << 4)) as i8;
            }
        }
        let sm = scales_mins_k4(&x.scales);
        let sumi = mins_term(&y.bsums, &sm[8..]);
        let aux32 = lane_sums(&aux8, &y.qs, &scales_per_16(&sm[..8]));
        add_lanes(&mut sums, x.d.to_f32() * y.d, &aux32);
        let dmin = x.dmin.to_f32() * y.d;
        sumf -= dmin * sumi as f32;
    }
    sums.iter().fold(sumf, |acc, &s| acc + s)
}

/// Q6_K · Q8_K over `n` values.
pub fn vec_dot_q6_K_q8_K_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = super_blocks(n);
    dot_q6_K(&view::<BlockQ6K>(w, nb), &view::<BlockQ8K>(a, nb))
}

fn dot_q6_K(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    let mut sums = [0.0f32; 8];
    for (x, y) in x.iter().zip(y) {
        // Per run of 128 values: 64 bytes of `ql` (nibbles) and 32 of `qh`
        // (2 bits for each of 4 values), minus 32.
        let mut aux8 = [0i8; QK_K];
        for ((a, ql), qh) in aux8
            .chunks_exact_mut(128)
            .zip(x.ql.chunks_exact(64))
            .zip(x.qh.chunks_exact(32))
        {
            for l in 0..32 {
                let h = |shift: u32| ((qh[l] >> shift) & 3) << 4;
                a[l] = ((ql[l] & 0xf) | h(0)) as i8 - 32;
                a[l + 32] = ((ql[l + 32] & 0xf) | h(2)) as i8 - 32;
                a[l + 64] = ((ql[l] >> 4) | h(4)) as i8 - 32;
                a[l + 96] = ((ql[l + 32] >> 4) | h(6)) as i8 - 32;
            }
        }
        let aux32 = lane_sums(&aux8, &y.qs, &x.scales.map(i32::from));
        add_lanes(&mut sums, x.d.to_f32() * y.d, &aux32);
    }
    sums.iter().fold(0.0f32, |acc, &s| acc + s)
}
