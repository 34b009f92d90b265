//! Dot kernels for the 32-element block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
//! IQ4_NL, MXFP4.
//!
//! Each weight block of 32 values meets one activation block of 32 values
//! quantized to Q8_0 (`d`, 32 × i8) or, for the types with a min, Q8_1
//! (`d`, `s = d·Σq`, 32 × i8). Per block the integer dot `Σ qx·qy` is exact;
//! it is scaled by `dx·dy` and summed in f32:
//!
//! | weight | act  | per block                                 | scalar twin                      | AVX2 | AVX-512            |
//! |--------|------|-------------------------------------------|----------------------------------|------|--------------------|
//! | Q4_0   | Q8_0 | `dx·dy·Σ(q−8)·qy`                         | [`vec_dot_q4_0_q8_0_scalar`]     | yes  | compiles, untested |
//! | Q4_1   | Q8_1 | `dx·dy·Σq·qy + m·s`                       | [`vec_dot_q4_1_q8_1_scalar`]     | yes  | —                  |
//! | Q5_0   | Q8_0 | `dx·dy·Σ(q−16)·qy`                        | [`vec_dot_q5_0_q8_0_scalar`]     | yes  | —                  |
//! | Q5_1   | Q8_1 | `dx·dy·Σq·qy + m·s`                       | [`vec_dot_q5_1_q8_1_scalar`]     | yes  | —                  |
//! | Q8_0   | Q8_0 | `dx·dy·Σqx·qy`                            | [`vec_dot_q8_0_q8_0_scalar`]     | yes  | compiles, untested |
//! | IQ4_NL | Q8_0 | `dx·dy·Σ K[q]·qy` (`K` = `kvalues_iq4nl`) | [`vec_dot_iq4_nl_q8_0_scalar`]   | yes  | —                  |
//! | MXFP4  | Q8_0 | `2^(e−128)·dy·Σ F[q]·qy` (`F` = doubled E2M1) | [`vec_dot_mxfp4_q8_0_scalar`] | yes  | —                  |
//!
//! The scalar twins are ggml's `ggml_vec_dot_*_generic` (`quants.c`) in the
//! same order of operations. The AVX2 variants compute the same integer dots
//! (`maddubs` on unsigned × signed bytes, exact for these ranges) and differ
//! from the twins only in the f32 summation of the scaled block results (FMA,
//! several accumulators).
//!
//! Rows may start at any byte address (an 18-byte Q4_0 block leaves rows
//! 2-aligned at best): the kernels read through unaligned loads. `n` must be
//! a multiple of 32 and the slices must hold `n / 32` blocks; otherwise the
//! kernel panics rather than read out of bounds (the matmul drivers check
//! shapes first and return errors).
//!
//! AVX-512 variants (Q4_0, Q8_0) have never run: this machine has no
//! AVX-512. They are in [`AVX512_UNTESTED`], not in [`DOTS`], so nothing
//! selects them until `tests/kernels.rs` (which runs them against their
//! scalar twins whenever the CPU has AVX-512 F/BW) has passed on such a CPU.

// Offsets, checks and imports used only by the x86-64 variants.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code, unused_imports))]

use std::mem::{offset_of, size_of};

use super::{DotEntry, SimdLevel, VecDot};
use crate::blocks::*;
use crate::GgmlType;
use half::f16;

/// IQ4_NL's 16 non-linear levels (ggml: `kvalues_iq4nl`; the same table as
/// `dequant::grids::KVALUES_IQ4NL`).
pub(super) const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];
/// MXFP4's 16 E2M1 values, doubled (ggml: `kvalues_mxfp4`).
pub(super) const KVALUES_MXFP4: [i8; 16] =
    [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// Half the value of an E8M0 exponent: `2^(e − 128)` (ggml: `ggml_e8m0_to_fp32_half`).
#[inline]
pub(super) fn e8m0_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        u32::from(e - 1) << 23
    };
    f32::from_bits(bits)
}

macro_rules! entry {
    ($w:ident, $a:ident, $scalar:ident, $avx2:ident) => {
        DotEntry {
            weight: GgmlType::$w,
            act: GgmlType::$a,
            scalar: $scalar,
            avx2: avx2!($avx2),
            avx512: None,
        }
    };
}

#[cfg(target_arch = "x86_64")]
macro_rules! avx2 {
    ($f:ident) => {
        Some(x86::$f as VecDot)
    };
}
#[cfg(not(target_arch = "x86_64"))]
macro_rules! avx2 {
    ($f:ident) => {
        None
    };
}

/// The kernels of this family.
pub const DOTS: &[DotEntry] = &[
    entry!(Q4_0, Q8_0, vec_dot_q4_0_q8_0_scalar, vec_dot_q4_0_q8_0_avx2),
    entry!(Q4_1, Q8_1, vec_dot_q4_1_q8_1_scalar, vec_dot_q4_1_q8_1_avx2),
    entry!(Q5_0, Q8_0, vec_dot_q5_0_q8_0_scalar, vec_dot_q5_0_q8_0_avx2),
    entry!(Q5_1, Q8_1, vec_dot_q5_1_q8_1_scalar, vec_dot_q5_1_q8_1_avx2),
    entry!(Q8_0, Q8_0, vec_dot_q8_0_q8_0_scalar, vec_dot_q8_0_q8_0_avx2),
    entry!(
        IQ4_NL,
        Q8_0,
        vec_dot_iq4_nl_q8_0_scalar,
        vec_dot_iq4_nl_q8_0_avx2
    ),
    entry!(
        MXFP4,
        Q8_0,
        vec_dot_mxfp4_q8_0_scalar,
        vec_dot_mxfp4_q8_0_avx2
    ),
];

/// AVX-512 variants that compile but have not been run (see the module docs).
#[cfg(target_arch = "x86_64")]
pub const AVX512_UNTESTED: &[(GgmlType, VecDot)] = &[
    (GgmlType::Q4_0, x86::vec_dot_q4_0_q8_0_avx512),
    (GgmlType::Q8_0, x86::vec_dot_q8_0_q8_0_avx512),
];
/// AVX-512 variants that compile but have not been run (none off x86-64).
#[cfg(not(target_arch = "x86_64"))]
pub const AVX512_UNTESTED: &[(GgmlType, VecDot)] = &[];

/// Quantizes an activation row to Q8_0 at `level` the way ggml-cpu does on
/// x86-64 (`quantize_row_q8_0` in `arch/x86/quants.c`), which is what
/// llama.cpp multiplies with: `d = amax / 127` (stored as f16), scale
/// `127 / amax`, rounding to nearest with **ties to even**. That differs from
/// the reference quantizer ([`crate::quantize::quantize_row_q8_0`]: `1 / d`,
/// ties away from zero) on exact halves, which real activations hit, and
/// one flipped value is enough to change a greedy token downstream. The
/// AVX2 variant and the scalar twin [`quantize_act_q8_scalar`] write the
/// same bytes (`tests/kernels.rs`).
///
/// # Panics
/// If `x.len() != 32 * y.len()`.
pub fn quantize_act_q8_0(level: SimdLevel, x: &[f32], y: &mut [BlockQ8_0]) {
    assert_eq!(
        x.len(),
        QK * y.len(),
        "Q8_0: {} values for {} blocks",
        x.len(),
        y.len()
    );
    #[cfg(target_arch = "x86_64")]
    if level >= SimdLevel::Avx2 && x86::has_avx2() {
        // SAFETY: features checked; lengths asserted.
        unsafe { x86::quantize_q8_avx2::<false>(x, y.as_mut_ptr().cast(), y.len()) };
        return;
    }
    let _ = level;
    for (b, xb) in y.iter_mut().zip(x.chunks_exact(QK)) {
        let (d, qs, _) = quantize_act_q8_scalar(xb);
        b.d = d;
        b.qs = qs;
    }
}

/// Quantizes an activation row to Q8_1 at `level` (as [`quantize_act_q8_0`],
/// plus ggml-cpu's `s = f16(d · Σq)`).
///
/// # Panics
/// If `x.len() != 32 * y.len()`.
pub fn quantize_act_q8_1(level: SimdLevel, x: &[f32], y: &mut [BlockQ8_1]) {
    assert_eq!(
        x.len(),
        QK * y.len(),
        "Q8_1: {} values for {} blocks",
        x.len(),
        y.len()
    );
    #[cfg(target_arch = "x86_64")]
    if level >= SimdLevel::Avx2 && x86::has_avx2() {
        // SAFETY: features checked; lengths asserted.
        unsafe { x86::quantize_q8_avx2::<true>(x, y.as_mut_ptr().cast(), y.len()) };
        return;
    }
    let _ = level;
    for (b, xb) in y.iter_mut().zip(x.chunks_exact(QK)) {
        let (d, qs, s) = quantize_act_q8_scalar(xb);
        b.d = d;
        b.s = s;
        b.qs = qs;
    }
}

/// The scalar twin of the activation quantizers: one block of 32 values
/// to `(d, qs, s)` with ggml-cpu x86 semantics (see [`quantize_act_q8_0`]).
pub fn quantize_act_q8_scalar(x: &[f32]) -> (f16, [i8; QK], f16) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut qs = [0i8; QK];
    let mut sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(x) {
        let t = (v * id).round_ties_even();
        // `cvtps2dq`: NaN and out-of-range values become i32::MIN.
        let r = if (-2_147_483_648.0..2_147_483_648.0).contains(&t) {
            t as i32
        } else {
            i32::MIN
        };
        *q = r as u8 as i8;
        sum = sum.wrapping_add(r);
    }
    (f16::from_f32(d), qs, f16::from_f32(d * sum as f32))
}

/// A tile kernel: `out[c * w.len() + r] = dot(n, w[r], a[c])` for up to
/// [`TILE_ROWS`] weight rows and [`TILE_ACTS`] activation rows in one pass
/// over the blocks, so each activation block is loaded (and its scale
/// converted) once for all rows, and each weight block is unpacked once for
/// all activation rows. The nibble types (Q4_0, Q4_1, Q5_0, Q5_1, MXFP4)
/// go two blocks at a time: the 16-byte halves of two blocks fill one
/// register, the activations are rearranged to match (once for all rows),
/// and one int→float conversion and one FMA serve both blocks. Its scalar
/// twin is the type's scalar dot, once per (row, activation) pair; the
/// results differ from the twin only by f32 summation order, as the one-row
/// variants do.
///
/// # Panics
/// If `w` or `a` is empty or longer than the limits, a row is shorter than
/// `n` values, `n` is not whole blocks, or `out` is shorter than
/// `w.len() * a.len()`.
pub type DotTile = fn(n: usize, w: &[&[u8]], a: &[&[u8]], out: &mut [f32]);

/// Most weight rows of one tile.
pub const TILE_ROWS: usize = 4;
/// Most activation rows of one tile.
pub const TILE_ACTS: usize = 2;

/// The tile kernel of weight type `t` at `level`, if there is one (AVX2:
/// every type of this family). Callers without one use the one-row dots.
pub fn dot_tile(t: GgmlType, level: SimdLevel) -> Option<DotTile> {
    #[cfg(target_arch = "x86_64")]
    if level >= SimdLevel::Avx2 {
        return x86::TILES.iter().find(|(ty, _)| *ty == t).map(|&(_, f)| f);
    }
    let _ = (t, level);
    None
}

/// The one-row dot of weight type `t` in the float order of ggml-cpu's
/// repacked `8x8` weights (`q4_0_8x8_q8_0`, `iq4_nl_8x8_q8_0`,
/// `mxfp4_8x8_q8_0`; AVX2 builds repack every such matrix with a multiple
/// of 8 rows, for `mul_mat` and `mul_mat_id`): per block the exact integer
/// dot `i`, then `acc = fma(f32(i), dx·dy, acc)` from 0, no horizontal sum
/// of floats (`gemv/gemm_q4_b32_8x8_q8_0_lut_avx`). `None` below AVX2 (the
/// generic repack kernels round differently and are not reproduced).
pub fn repacked_dot(t: GgmlType, level: SimdLevel) -> Option<VecDot> {
    #[cfg(target_arch = "x86_64")]
    if level >= SimdLevel::Avx2 {
        return match t {
            GgmlType::Q4_0 => Some(x86::repacked_q4_0),
            GgmlType::IQ4_NL => Some(x86::repacked_iq4_nl),
            GgmlType::MXFP4 => Some(x86::repacked_mxfp4),
            _ => None,
        };
    }
    let _ = (t, level);
    None
}

/// How far ahead of a tile of `tile_bytes` (its rows' bytes) the tile
/// kernels prefetch: whole tiles, at least 8 KiB.
#[cfg(target_arch = "x86_64")]
pub(crate) fn prefetch_ahead_bytes(tile_bytes: usize) -> usize {
    x86::prefetch_ahead(tile_bytes)
}

/// Checks a tile's shapes; returns the number of blocks.
fn check_tile(
    name: &str,
    n: usize,
    w: &[&[u8]],
    wb: usize,
    a: &[&[u8]],
    ab: usize,
    out: &[f32],
) -> usize {
    assert!(
        (1..=TILE_ROWS).contains(&w.len()) && (1..=TILE_ACTS).contains(&a.len()),
        "{name} tile: {} rows × {} activations (at most {TILE_ROWS} × {TILE_ACTS})",
        w.len(),
        a.len()
    );
    assert!(
        out.len() >= w.len() * a.len(),
        "{name} tile: output too short"
    );
    let mut nb = 0;
    for &wr in w {
        for &ar in a {
            nb = check(name, n, wr, wb, ar, ab);
        }
    }
    nb
}

/// Panics unless `n` is whole blocks and `w`, `a` hold them.
#[inline]
fn check(name: &str, n: usize, w: &[u8], wb: usize, a: &[u8], ab: usize) -> usize {
    super::check_blocks(name, "dot", n, QK, w, wb, a, ab)
}

/// Block `i` of `bytes`, copied out (rows need not be aligned for `B`).
#[inline]
fn block<B: bytemuck::Pod>(bytes: &[u8], i: usize) -> B {
    let s = size_of::<B>();
    bytemuck::pod_read_unaligned(&bytes[i * s..(i + 1) * s])
}

const Q4_0: usize = size_of::<BlockQ4_0>();
const Q4_1: usize = size_of::<BlockQ4_1>();
const Q5_0: usize = size_of::<BlockQ5_0>();
const Q5_1: usize = size_of::<BlockQ5_1>();
const Q8_0: usize = size_of::<BlockQ8_0>();
const Q8_1: usize = size_of::<BlockQ8_1>();
const IQ4NL: usize = size_of::<BlockIq4Nl>();
const MXFP4: usize = size_of::<BlockMxfp4>();

/// Q4_0 × Q8_0 (ggml: `ggml_vec_dot_q4_0_q8_0_generic`).
pub fn vec_dot_q4_0_q8_0_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = check("Q4_0", n, w, Q4_0, a, Q8_0);
    let mut sumf = 0f32;
    for ib in 0..nb {
        let x: BlockQ4_0 = block(w, ib);
        let y: BlockQ8_0 = block(a, ib);
        let (mut sumi0, mut sumi1) = (0i32, 0i32);
        for j in 0..QK / 2 {
            let v0 = i32::from(x.qs[j] & 0x0f) - 8;
            let v1 = i32::from(x.qs[j] >> 4) - 8;
            sumi0 += v0 * i32::from(y.qs[j]);
            sumi1 += v1 * i32::from(y.qs[j + QK / 2]);
        }
        let sumi = sumi0 + sumi1;
        sumf += sumi as f32 * x.d.to_f32() * y.d.to_f32();
    }
    sumf
}

/// Q4_1 × Q8_1 (ggml: `ggml_vec_dot_q4_1_q8_1_generic`).
pub fn vec_dot_q4_1_q8_1_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = check("Q4_1", n, w, Q4_1, a, Q8_1);
    let mut sumf = 0f32;
    for ib in 0..nb {
        let x: BlockQ4_1 = block(w, ib);
        let y: BlockQ8_1 = block(a, ib);
        let (mut sumi0, mut sumi1) = (0i32, 0i32);
        for j in 0..QK / 2 {
            sumi0 += i32::from(x.qs[j] & 0x0f) * i32::from(y.qs[j]);
            sumi1 += i32::from(x.qs[j] >> 4) * i32::from(y.qs[j + QK / 2]);
        }
        let sumi = sumi0 + sumi1;
        sumf += (x.d.to_f32() * y.d.to_f32()) * sumi as f32 + x.m.to_f32() * y.s.to_f32();
    }
    sumf
}

/// Q5_0 × Q8_0 (ggml: `ggml_vec_dot_q5_0_q8_0_generic`).
pub fn vec_dot_q5_0_q8_0_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = check("Q5_0", n, w, Q5_0, a, Q8_0);
    let mut sumf = 0f32;
    for ib in 0..nb {
        let x: BlockQ5_0 = block(w, ib);
        let y: BlockQ8_0 = block(a, ib);
        let qh = u32::from_le_bytes(x.qh);
        let (mut sumi0, mut sumi1) = (0i32, 0i32);
        for j in 0..QK / 2 {
            let xh0 = (((qh >> j) & 1) << 4) as u8;
            let xh1 = (((qh >> (j + 16)) & 1) << 4) as u8;
            let x0 = i32::from((x.qs[j] & 0x0f) | xh0) - 16;
            let x1 = i32::from((x.qs[j] >> 4) | xh1) - 16;
            sumi0 += x0 * i32::from(y.qs[j]);
            sumi1 += x1 * i32::from(y.qs[j + QK / 2]);
        }
        let sumi = sumi0 + sumi1;
        sumf += (x.d.to_f32() * y.d.to_f32()) * sumi as f32;
    }
    sumf
}

/// Q5_1 × Q8_1 (ggml: `ggml_vec_dot_q5_1_q8_1_generic`).
pub fn vec_dot_q5_1_q8_1_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = check("Q5_1", n, w, Q5_1, a, Q8_1);
    let mut sumf = 0f32;
    for ib in 0..nb {
        let x: BlockQ5_1 = block(w, ib);
        let y: BlockQ8_1 = block(a, ib);
        let qh = u32::from_le_bytes(x.qh);
        let (mut sumi0, mut sumi1) = (0i32, 0i32);
        for j in 0..QK / 2 {
            let xh0 = (((qh >> j) << 4) & 0x10) as u8;
            let xh1 = ((qh >> (j + 12)) & 0x10) as u8;
            let x0 = i32::from((x.qs[j] & 0x0f) | xh0);
            let x1 = i32::from((x.qs[j] >> 4) | xh1);
            sumi0 += x0 * i32::from(y.qs[j]);
            sumi1 += x1 * i32::from(y.qs[j + QK / 2]);
        }
        let sumi = sumi0 + sumi1;
        sumf += (x.d.to_f32() * y.d.to_f32()) * sumi as f32 + x.m.to_f32() * y.s.to_f32();
    }
    sumf
}

/// Q8_0 × Q8_0 (ggml: `ggml_vec_dot_q8_0_q8_0_generic`).
pub fn vec_dot_q8_0_q8_0_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = check("Q8_0", n, w, Q8_0, a, Q8_0);
    let mut sumf = 0f32;
    for ib in 0..nb {
        let x: BlockQ8_0 = block(w, ib);
        let y: BlockQ8_0 = block(a, ib);
        let sumi: i32 =
            x.qs.iter()
                .zip(&y.qs)
                .map(|(&p, &q)| i32::from(p) * i32::from(q))
                .sum();
        sumf += sumi as f32 * (x.d.to_f32() * y.d.to_f32());
    }
    sumf
}

/// IQ4_NL × Q8_0 (ggml: `ggml_vec_dot_iq4_nl_q8_0_generic`).
pub fn vec_dot_iq4_nl_q8_0_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = check("IQ4_NL", n, w, IQ4NL, a, Q8_0);
    let mut sumf = 0f32;
    for ib in 0..nb {
        let x: BlockIq4Nl = block(w, ib);
        let y: BlockQ8_0 = block(a, ib);
        let d = y.d.to_f32() * x.d.to_f32();
        let (mut sumi1, mut sumi2) = (0i32, 0i32);
        for j in 0..QK / 2 {
            sumi1 += i32::from(y.qs[j]) * i32::from(KVALUES_IQ4NL[usize::from(x.qs[j] & 0x0f)]);
            sumi2 +=
                i32::from(y.qs[j + QK / 2]) * i32::from(KVALUES_IQ4NL[usize::from(x.qs[j] >> 4)]);
        }
        sumf += d * (sumi1 + sumi2) as f32;
    }
    sumf
}

/// MXFP4 × Q8_0 (ggml: `ggml_vec_dot_mxfp4_q8_0_generic`).
pub fn vec_dot_mxfp4_q8_0_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = check("MXFP4", n, w, MXFP4, a, Q8_0);
    let mut sumf = 0f32;
    for ib in 0..nb {
        let x: BlockMxfp4 = block(w, ib);
        let y: BlockQ8_0 = block(a, ib);
        let d = y.d.to_f32() * e8m0_half(x.e);
        let (mut sumi1, mut sumi2) = (0i32, 0i32);
        for j in 0..QK / 2 {
            sumi1 += i32::from(y.qs[j]) * i32::from(KVALUES_MXFP4[usize::from(x.qs[j] & 0x0f)]);
            sumi2 +=
                i32::from(y.qs[j + QK / 2]) * i32::from(KVALUES_MXFP4[usize::from(x.qs[j] >> 4)]);
        }
        sumf += d * (sumi1 + sumi2) as f32;
    }
    sumf
}

// Field offsets the SIMD kernels read at.
const Q4_0_QS: usize = offset_of!(BlockQ4_0, qs);
const Q4_1_M: usize = offset_of!(BlockQ4_1, m);
const Q4_1_QS: usize = offset_of!(BlockQ4_1, qs);
const Q5_0_QH: usize = offset_of!(BlockQ5_0, qh);
const Q5_0_QS: usize = offset_of!(BlockQ5_0, qs);
const Q5_1_M: usize = offset_of!(BlockQ5_1, m);
const Q5_1_QH: usize = offset_of!(BlockQ5_1, qh);
const Q5_1_QS: usize = offset_of!(BlockQ5_1, qs);
const Q8_0_QS: usize = offset_of!(BlockQ8_0, qs);
const Q8_1_S: usize = offset_of!(BlockQ8_1, s);
const Q8_1_QS: usize = offset_of!(BlockQ8_1, qs);
const IQ4NL_QS: usize = offset_of!(BlockIq4Nl, qs);
const MXFP4_QS: usize = offset_of!(BlockMxfp4, qs);
const _: () = assert!(offset_of!(BlockQ4_0, d) == 0 && offset_of!(BlockQ8_0, d) == 0);
const _: () = assert!(offset_of!(BlockQ4_1, d) == 0 && offset_of!(BlockQ8_1, d) == 0);
const _: () = assert!(offset_of!(BlockQ5_0, d) == 0 && offset_of!(BlockQ5_1, d) == 0);
const _: () = assert!(offset_of!(BlockIq4Nl, d) == 0 && offset_of!(BlockMxfp4, e) == 0);

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    //! x86-64 variants. The `vec_dot_*` functions are safe wrappers: they
    //! check the shapes and the CPU features (a cached bit test) and run the
    //! scalar twin when the features are missing, so a call through the table
    //! is never undefined behaviour. The `#[target_feature]` bodies read the
    //! blocks through raw pointers with unaligned loads.

    use super::*;
    use half::f16;
    use std::arch::x86_64::*;

    pub(super) use crate::kernels::has_avx2;
    use crate::kernels::{store_tile, tile_by_dots, tile_shape};

    fn has_avx512() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
    }

    /// Reads a little-endian u16 at `p` (an f16's bits).
    #[inline(always)]
    unsafe fn rd16(p: *const u8) -> u16 {
        // SAFETY: the caller guarantees 2 readable bytes.
        unsafe { p.cast::<u16>().read_unaligned() }
    }

    /// `f32(h0) * f32(h1)` through F16C, broadcast to 8 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn scale2(h0: u16, h1: u16) -> __m256 {
        let v = _mm_cvtph_ps(_mm_cvtsi32_si128(
            (u32::from(h0) | (u32::from(h1) << 16)) as i32,
        ));
        _mm256_broadcastss_ps(_mm_mul_ss(v, _mm_movehdup_ps(v)))
    }

    /// Two f16 → (f32, f32) through F16C.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn f16x2(h0: u16, h1: u16) -> (f32, f32) {
        let v = _mm_cvtph_ps(_mm_cvtsi32_si128(
            (u32::from(h0) | (u32::from(h1) << 16)) as i32,
        ));
        (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
    }

    /// Sum of the 8 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(in crate::kernels) fn hsum_ps(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// Sum of the 8 i32 lanes (exact: the lanes of one block are small).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum_i32(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01));
        _mm_cvtsi128_si32(s)
    }

    /// 16 packed nibbles → 32 bytes in 0..16: low nibbles first, then high
    /// (the order of the 32 values of a block).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn nibbles(p: *const u8) -> __m256i {
        // SAFETY: the caller guarantees 16 readable bytes.
        let q = unsafe { _mm256_broadcastsi128_si256(_mm_loadu_si128(p.cast())) };
        // The low half as it is, the high half shifted down by 4.
        let both = _mm256_srlv_epi64(q, _mm256_setr_epi64x(0, 0, 4, 4));
        _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
    }

    /// 32 bits → 32 bytes, `0xff` where the bit is set.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn bits_to_bytes(p: *const u8) -> __m256i {
        // SAFETY: the caller guarantees 4 readable bytes.
        let x = unsafe { p.cast::<u32>().read_unaligned() } as i32;
        let shuf = _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        );
        let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x), shuf);
        let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
        _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
    }

    /// Σ x·y of signed bytes in 8 i32 lanes (pairs of 4 products each).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_i8(x: __m256i, y: __m256i) -> __m256i {
        let ax = _mm256_sign_epi8(x, x);
        let sy = _mm256_sign_epi8(y, x);
        _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1))
    }

    /// Σ x·y of unsigned `x` (< 128) and signed `y` bytes in 8 i32 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot_u8i8(x: __m256i, y: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1))
    }

    /// One loop shape for every type, ggml-cpu's AVX2 order: blocks in
    /// order into one 8-lane accumulator (`ACCS = 1`), or two alternating
    /// over block pairs, summed lane-wise before the horizontal sum, with an
    /// odd last block added in scalar as `d · isum`, not fused (`ACCS = 2`:
    /// IQ4_NL, MXFP4). `body(x, y)` returns (scale, integer lanes, extra)
    /// for the block at `x`, `y`; `extra` is the per-block `(m, s)` of the
    /// types with a min, whose `Σ m·s` is fused apart and added last.
    macro_rules! kernel {
        ($name:ident, $wrapper:ident, $scalar:ident, $tname:literal, $wb:expr, $ab:expr,
         |$x:ident, $y:ident| $body:block) => {
            kernel!($name, $wrapper, $scalar, $tname, $wb, $ab, 1, |$x, $y| {
                $body
            });
        };
        ($name:ident, $wrapper:ident, $scalar:ident, $tname:literal, $wb:expr, $ab:expr,
         $accs:literal, |$x:ident, $y:ident| $body:block) => {
            pub(super) fn $wrapper(n: usize, w: &[u8], a: &[u8]) -> f32 {
                let nb = check($tname, n, w, $wb, a, $ab);
                if !has_avx2() {
                    return $scalar(n, w, a);
                }
                // SAFETY: shapes and features checked above.
                unsafe { $name(nb, w.as_ptr(), a.as_ptr()) }
            }

            #[target_feature(enable = "avx2,fma,f16c")]
            #[allow(clippy::modulo_one)] // `$accs` is 1 for most types
            unsafe fn $name(nb: usize, w: *const u8, a: *const u8) -> f32 {
                let mut acc = [_mm256_setzero_ps(); $accs];
                let mut extra = 0f32;
                let mut has_min = false;
                let full = nb - nb % $accs;
                // SAFETY (every read): block ib < nb of w and a, which hold nb blocks.
                unsafe {
                    for ib in 0..full {
                        let ($x, $y) = (w.add(ib * $wb), a.add(ib * $ab));
                        let (d, q, mins): (__m256, __m256i, Option<(f32, f32)>) = $body;
                        let k = ib % $accs;
                        acc[k] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(q), acc[k]);
                        if let Some((m, s)) = mins {
                            extra = m.mul_add(s, extra);
                            has_min = true;
                        }
                    }
                    let mut sum = acc[0];
                    for v in &acc[1..] {
                        sum = _mm256_add_ps(sum, *v);
                    }
                    let mut sumf = hsum_ps(sum);
                    for ib in full..nb {
                        let ($x, $y) = (w.add(ib * $wb), a.add(ib * $ab));
                        let (d, q, _): (__m256, __m256i, Option<(f32, f32)>) = $body;
                        sumf += _mm256_cvtss_f32(d) * hsum_i32(q) as f32;
                    }
                    if has_min {
                        sumf += extra;
                    }
                    sumf
                }
            }
        };
    }

    kernel!(
        q4_0_avx2,
        vec_dot_q4_0_q8_0_avx2,
        vec_dot_q4_0_q8_0_scalar,
        "Q4_0",
        Q4_0,
        Q8_0,
        |x, y| {
            let d = scale2(rd16(x), rd16(y));
            let qx = _mm256_sub_epi8(nibbles(x.add(Q4_0_QS)), _mm256_set1_epi8(8));
            let qy = _mm256_loadu_si256(y.add(Q8_0_QS).cast());
            (d, dot_i8(qx, qy), None)
        }
    );

    kernel!(
        q4_1_avx2,
        vec_dot_q4_1_q8_1_avx2,
        vec_dot_q4_1_q8_1_scalar,
        "Q4_1",
        Q4_1,
        Q8_1,
        |x, y| {
            let d = scale2(rd16(x), rd16(y));
            let (m, s) = f16x2(rd16(x.add(Q4_1_M)), rd16(y.add(Q8_1_S)));
            let qx = nibbles(x.add(Q4_1_QS));
            let qy = _mm256_loadu_si256(y.add(Q8_1_QS).cast());
            (d, dot_u8i8(qx, qy), Some((m, s)))
        }
    );

    kernel!(
        q5_0_avx2,
        vec_dot_q5_0_q8_0_avx2,
        vec_dot_q5_0_q8_0_scalar,
        "Q5_0",
        Q5_0,
        Q8_0,
        |x, y| {
            let d = scale2(rd16(x), rd16(y));
            // q − 16 as a byte: the 4 low bits, and 0xf0 where the fifth bit is clear.
            let hi = _mm256_andnot_si256(
                bits_to_bytes(x.add(Q5_0_QH)),
                _mm256_set1_epi8(0xf0u8 as i8),
            );
            let qx = _mm256_or_si256(nibbles(x.add(Q5_0_QS)), hi);
            let qy = _mm256_loadu_si256(y.add(Q8_0_QS).cast());
            (d, dot_i8(qx, qy), None)
        }
    );

    kernel!(
        q5_1_avx2,
        vec_dot_q5_1_q8_1_avx2,
        vec_dot_q5_1_q8_1_scalar,
        "Q5_1",
        Q5_1,
        Q8_1,
        |x, y| {
            let d = scale2(rd16(x), rd16(y));
            let (m, s) = f16x2(rd16(x.add(Q5_1_M)), rd16(y.add(Q8_1_S)));
            let qx = five_bits(x, Q5_1_QS, Q5_1_QH);
            let qy = _mm256_loadu_si256(y.add(Q8_1_QS).cast());
            (d, dot_u8i8(qx, qy), Some((m, s)))
        }
    );

    kernel!(
        q8_0_avx2,
        vec_dot_q8_0_q8_0_avx2,
        vec_dot_q8_0_q8_0_scalar,
        "Q8_0",
        Q8_0,
        Q8_0,
        |x, y| {
            let d = scale2(rd16(x), rd16(y));
            let qx = _mm256_loadu_si256(x.add(Q8_0_QS).cast());
            let qy = _mm256_loadu_si256(y.add(Q8_0_QS).cast());
            (d, dot_i8(qx, qy), None)
        }
    );

    /// 16 packed nibbles → 32 table values (low nibbles first, then high).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn lookup(p: *const u8, table: &[i8; 16]) -> __m256i {
        // SAFETY: the caller guarantees 16 readable bytes; the table is 16 bytes.
        let (q, t) = unsafe {
            (
                _mm_loadu_si128(p.cast()),
                _mm_loadu_si128(table.as_ptr().cast()),
            )
        };
        let m4 = _mm_set1_epi8(0x0f);
        let lo = _mm_shuffle_epi8(t, _mm_and_si128(q, m4));
        let hi = _mm_shuffle_epi8(t, _mm_and_si128(_mm_srli_epi16(q, 4), m4));
        _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1)
    }

    kernel!(
        iq4_nl_avx2,
        vec_dot_iq4_nl_q8_0_avx2,
        vec_dot_iq4_nl_q8_0_scalar,
        "IQ4_NL",
        IQ4NL,
        Q8_0,
        2,
        |x, y| {
            let d = scale2(rd16(x), rd16(y));
            let qx = lookup(x.add(IQ4NL_QS), &KVALUES_IQ4NL);
            let qy = _mm256_loadu_si256(y.add(Q8_0_QS).cast());
            (d, dot_i8(qx, qy), None)
        }
    );

    kernel!(
        mxfp4_avx2,
        vec_dot_mxfp4_q8_0_avx2,
        vec_dot_mxfp4_q8_0_scalar,
        "MXFP4",
        MXFP4,
        Q8_0,
        2,
        |x, y| {
            let (dy, _) = f16x2(rd16(y), 0);
            let d = _mm256_set1_ps(dy * e8m0_half(x.read()));
            let qx = lookup(x.add(MXFP4_QS), &KVALUES_MXFP4);
            let qy = _mm256_loadu_si256(y.add(Q8_0_QS).cast());
            (d, dot_i8(qx, qy), None)
        }
    );

    /// Q8_0 (`S = false`) or Q8_1 (`S = true`) quantization of `nb` blocks
    /// of `x` into `y` as ggml-cpu's x86 `quantize_row_q8_0/1`: `amax` by
    /// lane-wise max, `d = amax / 127`, scale `127 / amax` (or 0), rounding
    /// to nearest with ties to even (`_mm256_round_ps`), the low byte of
    /// each i32 kept (|q| ≤ 127 for finite input); Q8_1 adds
    /// `s = f16(d · Σq)`. The scalar twin is [`super::quantize_act_q8_scalar`].
    ///
    /// # Safety
    /// AVX2+FMA+F16C present; `x` holds `32 · nb` values; `y` points to `nb`
    /// writable blocks of 34 (Q8_0) or 36 (Q8_1) bytes.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn quantize_q8_avx2<const S: bool>(x: &[f32], y: *mut u8, nb: usize) {
        let (size, qs) = if S { (Q8_1, Q8_1_QS) } else { (Q8_0, Q8_0_QS) };
        let sign = _mm256_set1_ps(-0.0);
        // Byte 0 of each i32 lane, in order, into the low 4 bytes of each 128-bit half.
        let low_bytes = _mm256_setr_epi8(
            0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, //
            0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
        );
        for (b, xb) in x.chunks_exact(QK).take(nb).enumerate() {
            // SAFETY: xb holds 32 values; block b of y is writable.
            unsafe {
                let p = xb.as_ptr();
                let v = [
                    _mm256_loadu_ps(p),
                    _mm256_loadu_ps(p.add(8)),
                    _mm256_loadu_ps(p.add(16)),
                    _mm256_loadu_ps(p.add(24)),
                ];
                let a = v.map(|v| _mm256_andnot_ps(sign, v));
                let m = _mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3]));
                let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
                let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
                let m = _mm_max_ss(m, _mm_movehdup_ps(m));
                let amax = _mm_cvtss_f32(m);
                let d = amax / 127.0;
                let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
                let idv = _mm256_set1_ps(id);
                let mut sum = _mm256_setzero_si256();
                let out = y.add(b * size);
                for (k, v) in v.into_iter().enumerate() {
                    let q = _mm256_mul_ps(v, idv);
                    let r = _mm256_cvtps_epi32(_mm256_round_ps(
                        q,
                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
                    ));
                    sum = _mm256_add_epi32(sum, r);
                    let bytes = _mm256_shuffle_epi8(r, low_bytes);
                    let lo = _mm_cvtsi128_si32(_mm256_castsi256_si128(bytes));
                    let hi = _mm_cvtsi128_si32(_mm256_extracti128_si256(bytes, 1));
                    let word = (lo as u32 as u64) | ((hi as u32 as u64) << 32);
                    out.add(qs + 8 * k).cast::<u64>().write_unaligned(word);
                }
                let dh =
                    _mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(d), _MM_FROUND_TO_NEAREST_INT), 0)
                        as u16;
                out.cast::<u16>().write_unaligned(dh);
                if S {
                    let s = _mm_add_epi32(
                        _mm256_castsi256_si128(sum),
                        _mm256_extracti128_si256(sum, 1),
                    );
                    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
                    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01));
                    let total = _mm_cvtsi128_si32(s);
                    let sh = _mm_extract_epi16(
                        _mm_cvtps_ph(_mm_set_ss(total as f32 * d), _MM_FROUND_TO_NEAREST_INT),
                        0,
                    ) as u16;
                    out.add(Q8_1_S).cast::<u16>().write_unaligned(sh);
                }
            }
        }
    }

    // ---- Tiles: up to 4 weight rows × 2 activation rows per pass ----

    /// How a type's unpacked bytes meet the signed activation bytes.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub(in crate::kernels) enum Mode {
        /// Unsigned values `u` standing for `u − k`: `maddubs(u, y) − maddubs(k, y)`,
        /// the second shared by all rows.
        Offset(i8),
        /// Unsigned values used as they are (the types with a min).
        Unsigned,
        /// Signed values: `maddubs(|x|, sign(y, x))`.
        Signed,
    }

    /// A weight type as the tile kernel sees it.
    pub(in crate::kernels) trait TileType {
        /// Weight block bytes.
        const W: usize;
        /// Activation block bytes (Q8_0 or Q8_1) and where their `qs` start.
        const A: usize;
        const A_QS: usize;
        const MODE: Mode;
        /// `m` at byte 2 of the weight block, `s` at byte 2 of the activation block.
        const MIN: bool;
        /// Accumulators of ggml's kernel: 1, or 2 alternating over block
        /// pairs with a scalar odd last block (IQ4_NL, MXFP4).
        const ACCS: usize = 1;
        /// The 32 values of the block at `x`, as bytes.
        unsafe fn unpack(x: *const u8) -> __m256i;
        /// The scales of the blocks at `x[0..R]` as f32 lanes (unused lanes 0).
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn scales<const R: usize>(x: [*const u8; R]) -> __m128 {
            let mut bits = 0u64;
            for (r, &p) in x.iter().enumerate() {
                // SAFETY: each block starts with its f16 scale.
                bits |= u64::from(unsafe { rd16(p) }) << (16 * r);
            }
            cvt_f16x4(bits)
        }
    }

    /// The 5-bit values (0..=31) of a Q5_0/Q5_1 block at `x`: low nibbles at
    /// `x + qs`, fifth bits at `x + qh`.
    ///
    /// # Safety
    /// A whole block at `x`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn five_bits(x: *const u8, qs: usize, qh: usize) -> __m256i {
        // SAFETY: the caller's.
        unsafe {
            let hi = _mm256_and_si256(bits_to_bytes(x.add(qh)), _mm256_set1_epi8(0x10));
            _mm256_or_si256(nibbles(x.add(qs)), hi)
        }
    }

    /// The tile kernels prefetch whole tiles ahead, at least this many bytes.
    pub(super) const PREFETCH_BYTES: usize = 8192;

    /// Bytes from a tile's rows to the rows to prefetch: whole tiles of
    /// `tile_bytes`, at least [`PREFETCH_BYTES`] ahead (short rows make short
    /// tiles, and one tile ahead would leave the loads too little time).
    #[inline]
    pub(super) fn prefetch_ahead(tile_bytes: usize) -> usize {
        let tile_bytes = tile_bytes.max(1);
        PREFETCH_BYTES.div_ceil(tile_bytes) * tile_bytes
    }

    /// Four f16 (in the low 64 bits) → four f32.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn cvt_f16x4(bits: u64) -> __m128 {
        _mm_cvtph_ps(_mm_cvtsi64_si128(bits as i64))
    }

    pub(in crate::kernels) struct TQ4_0;
    impl TileType for TQ4_0 {
        const W: usize = Q4_0;
        const A: usize = Q8_0;
        const A_QS: usize = Q8_0_QS;
        const MODE: Mode = Mode::Offset(8);
        const MIN: bool = false;
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn unpack(x: *const u8) -> __m256i {
            // SAFETY: a whole block at x.
            unsafe { nibbles(x.add(Q4_0_QS)) }
        }
    }

    pub(in crate::kernels) struct TQ4_1;
    impl TileType for TQ4_1 {
        const W: usize = Q4_1;
        const A: usize = Q8_1;
        const A_QS: usize = Q8_1_QS;
        const MODE: Mode = Mode::Unsigned;
        const MIN: bool = true;
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn unpack(x: *const u8) -> __m256i {
            // SAFETY: a whole block at x.
            unsafe { nibbles(x.add(Q4_1_QS)) }
        }
    }

    pub(in crate::kernels) struct TQ5_0;
    impl TileType for TQ5_0 {
        const W: usize = Q5_0;
        const A: usize = Q8_0;
        const A_QS: usize = Q8_0_QS;
        const MODE: Mode = Mode::Offset(16);
        const MIN: bool = false;
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn unpack(x: *const u8) -> __m256i {
            // SAFETY: a whole block at x.
            unsafe { five_bits(x, Q5_0_QS, Q5_0_QH) }
        }
    }

    pub(in crate::kernels) struct TQ5_1;
    impl TileType for TQ5_1 {
        const W: usize = Q5_1;
        const A: usize = Q8_1;
        const A_QS: usize = Q8_1_QS;
        const MODE: Mode = Mode::Unsigned;
        const MIN: bool = true;
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn unpack(x: *const u8) -> __m256i {
            // SAFETY: a whole block at x.
            unsafe { five_bits(x, Q5_1_QS, Q5_1_QH) }
        }
    }

    pub(in crate::kernels) struct TQ8_0;
    impl TileType for TQ8_0 {
        const W: usize = Q8_0;
        const A: usize = Q8_0;
        const A_QS: usize = Q8_0_QS;
        const MODE: Mode = Mode::Signed;
        const MIN: bool = false;
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn unpack(x: *const u8) -> __m256i {
            // SAFETY: a whole block at x.
            unsafe { _mm256_loadu_si256(x.add(Q8_0_QS).cast()) }
        }
    }

    struct TIq4Nl;
    impl TileType for TIq4Nl {
        const W: usize = IQ4NL;
        const A: usize = Q8_0;
        const A_QS: usize = Q8_0_QS;
        const MODE: Mode = Mode::Signed;
        const MIN: bool = false;
        const ACCS: usize = 2;
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn unpack(x: *const u8) -> __m256i {
            // SAFETY: a whole block at x.
            unsafe { lookup(x.add(IQ4NL_QS), &KVALUES_IQ4NL) }
        }
    }

    /// MXFP4's values plus 12, so they are unsigned (0..=24).
    const KVALUES_MXFP4_U: [i8; 16] = {
        let mut t = [0i8; 16];
        let mut i = 0;
        while i < 16 {
            t[i] = KVALUES_MXFP4[i] + 12;
            i += 1;
        }
        t
    };

    struct TMxfp4;
    impl TileType for TMxfp4 {
        const W: usize = MXFP4;
        const A: usize = Q8_0;
        const A_QS: usize = Q8_0_QS;
        const MODE: Mode = Mode::Offset(12);
        const MIN: bool = false;
        const ACCS: usize = 2;
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn unpack(x: *const u8) -> __m256i {
            // SAFETY: a whole block at x.
            unsafe { lookup(x.add(MXFP4_QS), &KVALUES_MXFP4_U) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn scales<const R: usize>(x: [*const u8; R]) -> __m128 {
            let mut v = [0f32; 4];
            for (v, &p) in v.iter_mut().zip(&x) {
                // SAFETY: each block starts with its exponent byte.
                *v = e8m0_half(unsafe { p.read() });
            }
            // SAFETY: 4 floats.
            unsafe { _mm_loadu_ps(v.as_ptr()) }
        }
    }

    /// Broadcast of lane `i` of `v`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn lane(v: __m128, i: usize) -> __m256 {
        _mm256_permutevar8x32_ps(_mm256_castps128_ps256(v), _mm256_set1_epi32(i as i32))
    }

    /// One block `ib` of every (row, activation) pair of a tile, with the
    /// single kernel's arithmetic: the pair's 8 i32 lanes, scaled by
    /// `dx·dy`, fused-multiply-added into its accumulator; the `m·s` term of
    /// the types with a min fused into `acc_min` (row `r` in lane `r`).
    ///
    /// # Safety
    /// AVX2+FMA+F16C; block `ib` exists in every row of `w` and `a`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile_block<T: TileType, const R: usize, const C: usize>(
        ib: usize,
        w: [*const u8; R],
        a: [*const u8; C],
        ahead: usize,
        acc: &mut [[__m256; R]; C],
        acc_min: &mut [__m128; C],
    ) {
        let ones = _mm256_set1_epi16(1);
        // SAFETY (every read): block ib of every row, the caller's.
        unsafe {
            let xb = w.map(|p| p.add(ib * T::W));
            let yb = a.map(|p| p.add(ib * T::A));
            let y = yb.map(|p| _mm256_loadu_si256(p.add(T::A_QS).cast()));
            let corr = match T::MODE {
                Mode::Offset(k) => y.map(|y| _mm256_maddubs_epi16(_mm256_set1_epi8(k), y)),
                _ => [_mm256_setzero_si256(); C],
            };
            let ds = act_scales(yb, T::MIN);
            let dx = T::scales(xb);
            // dx·dy of every (row, activation), rows in lanes.
            let dxy: [__m128; C] =
                std::array::from_fn(|c| _mm_mul_ps(dx, _mm256_castps256_ps128(lane(ds, 2 * c))));
            if T::MIN {
                let mut mbits = 0u64;
                for (r, &p) in xb.iter().enumerate() {
                    mbits |= u64::from(rd16(p.add(Q4_1_M))) << (16 * r);
                }
                let m = cvt_f16x4(mbits);
                for (c, acc_min) in acc_min.iter_mut().enumerate() {
                    let s = _mm256_castps256_ps128(lane(ds, 2 * c + 1));
                    *acc_min = _mm_fmadd_ps(m, s, *acc_min);
                }
            }
            for r in 0..R {
                _mm_prefetch::<_MM_HINT_T0>(xb[r].wrapping_add(ahead).cast());
                let q = T::unpack(xb[r]);
                for c in 0..C {
                    let sf = _mm256_cvtepi32_ps(_mm256_madd_epi16(
                        products::<T>(q, y[c], corr[c]),
                        ones,
                    ));
                    acc[c][r] = _mm256_fmadd_ps(lane(dxy[c], r), sf, acc[c][r]);
                }
            }
        }
    }

    /// The i16 pair sums of weight bytes `q` (as [`TileType::unpack`] gives
    /// them) with activation bytes `y`; `corr` is `maddubs(k, y)` for
    /// [`Mode::Offset`]`(k)`. The same integers as ggml's signed products.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(in crate::kernels) fn products<T: TileType>(
        q: __m256i,
        y: __m256i,
        corr: __m256i,
    ) -> __m256i {
        match T::MODE {
            Mode::Offset(_) => _mm256_sub_epi16(_mm256_maddubs_epi16(q, y), corr),
            Mode::Unsigned => _mm256_maddubs_epi16(q, y),
            Mode::Signed => _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(y, q)),
        }
    }

    /// The f16 `d` (and `s` where `min`) of up to 2 activation blocks in one
    /// conversion: lane `2c` is `d` of `yb[c]`, lane `2c + 1` its `s`.
    ///
    /// # Safety
    /// AVX2+F16C; whole activation blocks at `yb`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn act_scales<const C: usize>(yb: [*const u8; C], min: bool) -> __m128 {
        let mut bits = 0u64;
        for (c, &p) in yb.iter().enumerate() {
            // SAFETY: the caller's.
            unsafe {
                bits |= u64::from(rd16(p)) << (32 * c);
                if min {
                    bits |= u64::from(rd16(p.add(Q8_1_S))) << (32 * c + 16);
                }
            }
        }
        cvt_f16x4(bits)
    }

    /// The tile body: `R` weight rows × `C` activation rows over `nb` blocks,
    /// every pair computed exactly as the single kernel (ggml-cpu's order):
    /// blocks in order into one accumulator (two, alternating, for the
    /// `T::ACCS == 2` types, whose odd last block is added in scalar), then
    /// `hsum + Σ m·s`. The tile only shares the loads and conversions.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile<T: TileType, const R: usize, const C: usize>(
        nb: usize,
        w: [*const u8; R],
        a: [*const u8; C],
    ) -> [[f32; R]; C] {
        let mut acc = [[_mm256_setzero_ps(); R]; C];
        let mut acc_min = [_mm_setzero_ps(); C];
        // Prefetch: the rows of the next tile, at the same column. A GEMV's
        // rows are consecutive, so that is where the stream goes next; the
        // hardware prefetcher only sees short interleaved streams (one per
        // row) and restarts at every tile. Rows that are not consecutive
        // just waste the hint (a prefetch never faults).
        let ahead = prefetch_ahead(R * nb * T::W);
        let tail = if T::ACCS == 2 { nb % 2 } else { 0 };
        // SAFETY (every call): blocks below nb, features enabled here.
        unsafe {
            if T::ACCS == 2 {
                let mut acc2 = [[_mm256_setzero_ps(); R]; C];
                let mut ib = 0;
                while ib + 2 <= nb {
                    tile_block::<T, R, C>(ib, w, a, ahead, &mut acc, &mut acc_min);
                    tile_block::<T, R, C>(ib + 1, w, a, ahead, &mut acc2, &mut acc_min);
                    ib += 2;
                }
                for c in 0..C {
                    for r in 0..R {
                        acc[c][r] = _mm256_add_ps(acc[c][r], acc2[c][r]);
                    }
                }
            } else {
                for ib in 0..nb {
                    tile_block::<T, R, C>(ib, w, a, ahead, &mut acc, &mut acc_min);
                }
            }
        }
        let mut out = [[0f32; R]; C];
        for c in 0..C {
            let mut mins = [0f32; 4];
            // SAFETY: 4 floats.
            unsafe { _mm_storeu_ps(mins.as_mut_ptr(), acc_min[c]) };
            for r in 0..R {
                out[c][r] = hsum_ps(acc[c][r]);
                if T::MIN {
                    out[c][r] += mins[r];
                }
            }
        }
        if tail == 1 {
            // ggml's scalar loop for the last block: `sumf += d * isum`,
            // not fused.
            let ib = nb - 1;
            // SAFETY: block ib of every row.
            unsafe {
                let xb = w.map(|p| p.add(ib * T::W));
                let yb = a.map(|p| p.add(ib * T::A));
                let mut dy = [0f32; 4];
                _mm_storeu_ps(dy.as_mut_ptr(), act_scales(yb, false));
                let mut dx = [0f32; 4];
                _mm_storeu_ps(dx.as_mut_ptr(), T::scales(xb));
                for r in 0..R {
                    let q = T::unpack(xb[r]);
                    for c in 0..C {
                        let y = _mm256_loadu_si256(yb[c].add(T::A_QS).cast());
                        let corr = match T::MODE {
                            Mode::Offset(k) => _mm256_maddubs_epi16(_mm256_set1_epi8(k), y),
                            _ => _mm256_setzero_si256(),
                        };
                        let i = _mm256_madd_epi16(products::<T>(q, y, corr), _mm256_set1_epi16(1));
                        out[c][r] += (dy[2 * c] * dx[r]) * hsum_i32(i) as f32;
                    }
                }
            }
        }
        out
    }

    /// [`super::repacked_dot`]'s body: `nb` blocks of `T`.
    ///
    /// # Safety
    /// AVX2+FMA+F16C; `nb` whole blocks at `w` and at `a`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn repacked<T: TileType>(nb: usize, w: *const u8, a: *const u8) -> f32 {
        let ones = _mm256_set1_epi16(1);
        let mut acc = 0f32;
        // SAFETY (every read): block ib < nb of w and a.
        unsafe {
            for ib in 0..nb {
                let (xb, yb) = (w.add(ib * T::W), a.add(ib * T::A));
                let y = _mm256_loadu_si256(yb.add(T::A_QS).cast());
                let corr = match T::MODE {
                    Mode::Offset(k) => _mm256_maddubs_epi16(_mm256_set1_epi8(k), y),
                    _ => _mm256_setzero_si256(),
                };
                let q = T::unpack(xb);
                let i = hsum_i32(_mm256_madd_epi16(products::<T>(q, y, corr), ones));
                let dx = _mm_cvtss_f32(T::scales::<1>([xb]));
                let dy = f16::from_bits(rd16(yb)).to_f32();
                acc = (i as f32).mul_add(dx * dy, acc);
            }
        }
        acc
    }

    macro_rules! repacked_fn {
        ($name:ident, $T:ty, $tname:literal, $scalar:ident) => {
            pub(super) fn $name(n: usize, w: &[u8], a: &[u8]) -> f32 {
                let nb = check($tname, n, w, <$T>::W, a, <$T>::A);
                if !has_avx2() {
                    return $scalar(n, w, a);
                }
                // SAFETY: shapes and features checked above.
                unsafe { repacked::<$T>(nb, w.as_ptr(), a.as_ptr()) }
            }
        };
    }
    repacked_fn!(repacked_q4_0, TQ4_0, "Q4_0", vec_dot_q4_0_q8_0_scalar);
    repacked_fn!(
        repacked_iq4_nl,
        TIq4Nl,
        "IQ4_NL",
        vec_dot_iq4_nl_q8_0_scalar
    );
    repacked_fn!(repacked_mxfp4, TMxfp4, "MXFP4", vec_dot_mxfp4_q8_0_scalar);

    /// Dispatches a tile of `w.len()` × `a.len()` rows to its instance.
    macro_rules! tile_fn {
        ($name:ident, $T:ty, $tname:literal, $scalar:ident) => {
            fn $name(n: usize, w: &[&[u8]], a: &[&[u8]], out: &mut [f32]) {
                let nb = check_tile($tname, n, w, <$T>::W, a, <$T>::A, out);
                if !has_avx2() {
                    return tile_by_dots(n, w, a, out, $scalar);
                }
                fn run<const R: usize, const C: usize>(
                    nb: usize,
                    w: &[&[u8]],
                    a: &[&[u8]],
                    out: &mut [f32],
                ) {
                    let wp: [*const u8; R] = std::array::from_fn(|r| w[r].as_ptr());
                    let ap: [*const u8; C] = std::array::from_fn(|c| a[c].as_ptr());
                    // SAFETY: shapes checked by check_tile, features by has_avx2.
                    store_tile(&unsafe { tile::<$T, R, C>(nb, wp, ap) }, out);
                }
                tile_shape!(w.len(), a.len(), run(nb, w, a, out))
            }
        };
    }

    tile_fn!(tile_q4_0, TQ4_0, "Q4_0", vec_dot_q4_0_q8_0_scalar);
    tile_fn!(tile_q4_1, TQ4_1, "Q4_1", vec_dot_q4_1_q8_1_scalar);
    tile_fn!(tile_q5_0, TQ5_0, "Q5_0", vec_dot_q5_0_q8_0_scalar);
    tile_fn!(tile_q5_1, TQ5_1, "Q5_1", vec_dot_q5_1_q8_1_scalar);
    tile_fn!(tile_q8_0, TQ8_0, "Q8_0", vec_dot_q8_0_q8_0_scalar);
    tile_fn!(tile_iq4_nl, TIq4Nl, "IQ4_NL", vec_dot_iq4_nl_q8_0_scalar);
    tile_fn!(tile_mxfp4, TMxfp4, "MXFP4", vec_dot_mxfp4_q8_0_scalar);

    /// The AVX2 tile kernels.
    pub(super) const TILES: &[(GgmlType, DotTile)] = &[
        (GgmlType::Q4_0, tile_q4_0),
        (GgmlType::Q4_1, tile_q4_1),
        (GgmlType::Q5_0, tile_q5_0),
        (GgmlType::Q5_1, tile_q5_1),
        (GgmlType::Q8_0, tile_q8_0),
        (GgmlType::IQ4_NL, tile_iq4_nl),
        (GgmlType::MXFP4, tile_mxfp4),
    ];

    // ---- AVX-512 F/BW (compiles, untested: see the module docs) ----
    //
    // Two blocks per 512-bit register: lanes 0..8 of the i32 sums belong to
    // block ib, lanes 8..16 to block ib + 1. AVX-512 has no `sign_epi8`, so
    // the signed × signed product uses |x| and y negated where x < 0.

    /// Σ x·y of signed bytes in 16 i32 lanes.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn dot_i8_512(x: __m512i, y: __m512i) -> __m512i {
        let neg = _mm512_movepi8_mask(x);
        let ax = _mm512_abs_epi8(x);
        let sy = _mm512_mask_sub_epi8(y, neg, _mm512_setzero_si512(), y);
        _mm512_madd_epi16(_mm512_maddubs_epi16(ax, sy), _mm512_set1_epi16(1))
    }

    /// Two 256-bit halves into one 512-bit register (`lo` in lanes 0..8).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn join(lo: __m256i, hi: __m256i) -> __m512i {
        _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1)
    }

    /// Combined scales of two blocks: `d0` in lanes 0..8, `d1` in 8..16.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn scales_512(d0: f32, d1: f32) -> __m512 {
        _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(d0), _mm512_set1_ps(d1))
    }

    /// `f32(h0) * f32(h1)` in plain Rust (F16C may be missing under AVX-512 in theory).
    #[inline]
    fn dd(h0: u16, h1: u16) -> f32 {
        f16::from_bits(h0).to_f32() * f16::from_bits(h1).to_f32()
    }

    /// 16 packed nibbles → 32 bytes in 0..16 (low nibbles, then high).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn nibbles_512(p: *const u8) -> __m256i {
        // SAFETY: the caller guarantees 16 readable bytes.
        let q = unsafe { _mm_loadu_si128(p.cast()) };
        let both = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
        _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
    }

    pub(super) fn vec_dot_q4_0_q8_0_avx512(n: usize, w: &[u8], a: &[u8]) -> f32 {
        let nb = check("Q4_0", n, w, Q4_0, a, Q8_0);
        if !has_avx512() {
            return vec_dot_q4_0_q8_0_scalar(n, w, a);
        }
        // SAFETY: shapes and features checked above.
        unsafe { q4_0_avx512(nb, w.as_ptr(), a.as_ptr()) }
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn q4_0_avx512(nb: usize, w: *const u8, a: *const u8) -> f32 {
        let mut acc = _mm512_setzero_ps();
        let mut ib = 0;
        let mut tail = 0f32;
        // SAFETY (every read): blocks ib, ib + 1 < nb of w and a.
        unsafe {
            while ib + 2 <= nb {
                let (x0, y0) = (w.add(ib * Q4_0), a.add(ib * Q8_0));
                let (x1, y1) = (w.add((ib + 1) * Q4_0), a.add((ib + 1) * Q8_0));
                let qx = join(nibbles_512(x0.add(Q4_0_QS)), nibbles_512(x1.add(Q4_0_QS)));
                let qx = _mm512_sub_epi8(qx, _mm512_set1_epi8(8));
                let qy = join(
                    _mm256_loadu_si256(y0.add(Q8_0_QS).cast()),
                    _mm256_loadu_si256(y1.add(Q8_0_QS).cast()),
                );
                let d = scales_512(dd(rd16(x0), rd16(y0)), dd(rd16(x1), rd16(y1)));
                acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(dot_i8_512(qx, qy)), acc);
                ib += 2;
            }
            if ib < nb {
                let off = ib * Q4_0;
                let w = std::slice::from_raw_parts(w.add(off), Q4_0);
                let a = std::slice::from_raw_parts(a.add(ib * Q8_0), Q8_0);
                tail = vec_dot_q4_0_q8_0_scalar(QK, w, a);
            }
        }
        _mm512_reduce_add_ps(acc) + tail
    }

    pub(super) fn vec_dot_q8_0_q8_0_avx512(n: usize, w: &[u8], a: &[u8]) -> f32 {
        let nb = check("Q8_0", n, w, Q8_0, a, Q8_0);
        if !has_avx512() {
            return vec_dot_q8_0_q8_0_scalar(n, w, a);
        }
        // SAFETY: shapes and features checked above.
        unsafe { q8_0_avx512(nb, w.as_ptr(), a.as_ptr()) }
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn q8_0_avx512(nb: usize, w: *const u8, a: *const u8) -> f32 {
        let mut acc = _mm512_setzero_ps();
        let mut ib = 0;
        let mut tail = 0f32;
        // SAFETY (every read): blocks ib, ib + 1 < nb of w and a.
        unsafe {
            while ib + 2 <= nb {
                let (x0, y0) = (w.add(ib * Q8_0), a.add(ib * Q8_0));
                let (x1, y1) = (w.add((ib + 1) * Q8_0), a.add((ib + 1) * Q8_0));
                let qx = join(
                    _mm256_loadu_si256(x0.add(Q8_0_QS).cast()),
                    _mm256_loadu_si256(x1.add(Q8_0_QS).cast()),
                );
                let qy = join(
                    _mm256_loadu_si256(y0.add(Q8_0_QS).cast()),
                    _mm256_loadu_si256(y1.add(Q8_0_QS).cast()),
                );
                let d = scales_512(dd(rd16(x0), rd16(y0)), dd(rd16(x1), rd16(y1)));
                acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(dot_i8_512(qx, qy)), acc);
                ib += 2;
            }
            if ib < nb {
                let w = std::slice::from_raw_parts(w.add(ib * Q8_0), Q8_0);
                let a = std::slice::from_raw_parts(a.add(ib * Q8_0), Q8_0);
                tail = vec_dot_q8_0_q8_0_scalar(QK, w, a);
            }
        }
        _mm512_reduce_add_ps(acc) + tail
    }
}
