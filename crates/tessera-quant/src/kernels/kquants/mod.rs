//! Dot kernels for the K-quants: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, with the
//! activations in Q8_K (ggml's `vec_dot_type` for these).
//!
//! A Q8_K activation block holds 256 `i8` values `q`, an `f32` scale `d` and
//! `bsums`, the sums of each 16 consecutive `q`. Every kernel computes, per
//! super-block, integer dot products of the weight's small integers with `q`
//! weighted by the sub-block scales, and turns them into floats once per
//! super-block: `d_w * d_a * Σ sc·(q_w·q_a)`. The "min" types (Q2_K, Q4_K,
//! Q5_K) subtract `dmin_w * d_a * Σ m·bsum` with the precomputed `bsums`
//! instead of touching each value twice.
//!
//! - [`scalar`]: the twins, `vec_dot_q4_K_q8_K_scalar` etc., the same
//!   arithmetic as ggml's `ggml_vec_dot_*_q8_K_generic` (`ggml-cpu/quants.c`),
//!   float operations in the same order.
//! - `avx2` (x86-64): AVX2 + FMA + F16C variants after the ideas of ggml's
//!   `ggml-cpu/arch/x86/quants.c`: `maddubs` of unsigned weight bytes with
//!   signed activation bytes, `madd` with the 16-bit sub-block scales, one
//!   `f32` FMA per super-block, and a software prefetch 2 KiB ahead of the
//!   weights (a streaming GEMV is memory-bound; the hardware prefetcher
//!   alone leaves bandwidth unused). Reachable only through [`DOTS`]; each one
//!   checks the CPU before it runs, so the table's safe `fn` pointers stay
//!   sound on any machine. Q4_K/Q5_K/Q6_K are chains of per-super-block
//!   steps (`avx2::VecDotChain`) that [`gemv8`] reuses.
//! - [`gemv8`]: the one-token GEMV 8 rows per call in `vec_dot`'s order
//!   (Q4_K, Q5_K, Q6_K); [`q4k_8x8`]: Q4_K in llama.cpp's repacked order;
//!   [`tiled`]: batches in ggml-cpu's tiled order.
//!
//! The kernels take rows as bytes ([`super::VecDot`]). Block-aligned bytes
//! are read in place; unaligned ones (a weight row at an odd offset, an
//! activation buffer that is not 4-aligned) are copied to an aligned buffer
//! first: correct, but slow, so callers hand aligned buffers.

use std::borrow::Cow;

use bytemuck::Pod;

use super::DotEntry;
use crate::blocks::QK_K;
use crate::GgmlType;

#[cfg(target_arch = "x86_64")]
pub(in crate::kernels) mod avx2;
pub mod gemv8;
pub mod q4k_8x8;
pub mod scalar;
pub mod tiled;

pub use scalar::{
    vec_dot_q2_K_q8_K_scalar, vec_dot_q3_K_q8_K_scalar, vec_dot_q4_K_q8_K_scalar,
    vec_dot_q5_K_q8_K_scalar, vec_dot_q6_K_q8_K_scalar,
};

/// `Some(f)` on x86-64, `None` elsewhere (where `f` does not exist).
#[cfg(target_arch = "x86_64")]
macro_rules! avx2_variant {
    ($f:path) => {
        Some($f as $crate::kernels::VecDot)
    };
}
#[cfg(not(target_arch = "x86_64"))]
macro_rules! avx2_variant {
    ($f:path) => {
        None
    };
}
pub(in crate::kernels) use avx2_variant;

/// The kernels of this family.
pub const DOTS: &[DotEntry] = &[
    DotEntry {
        weight: GgmlType::Q2_K,
        act: GgmlType::Q8_K,
        scalar: vec_dot_q2_K_q8_K_scalar,
        avx2: avx2_variant!(avx2::vec_dot_q2_k_q8_k),
        avx512: None,
    },
    DotEntry {
        weight: GgmlType::Q3_K,
        act: GgmlType::Q8_K,
        scalar: vec_dot_q3_K_q8_K_scalar,
        avx2: avx2_variant!(avx2::vec_dot_q3_k_q8_k),
        avx512: None,
    },
    DotEntry {
        weight: GgmlType::Q4_K,
        act: GgmlType::Q8_K,
        scalar: vec_dot_q4_K_q8_K_scalar,
        avx2: avx2_variant!(avx2::vec_dot_q4_k_q8_k),
        avx512: None,
    },
    DotEntry {
        weight: GgmlType::Q5_K,
        act: GgmlType::Q8_K,
        scalar: vec_dot_q5_K_q8_K_scalar,
        avx2: avx2_variant!(avx2::vec_dot_q5_k_q8_k),
        avx512: None,
    },
    DotEntry {
        weight: GgmlType::Q6_K,
        act: GgmlType::Q8_K,
        scalar: vec_dot_q6_K_q8_K_scalar,
        avx2: avx2_variant!(avx2::vec_dot_q6_k_q8_k),
        avx512: None,
    },
];

/// The number of super-blocks of an `n`-value row.
///
/// # Panics
/// If `n` is not a multiple of 256 (a caller bug: rows of these types are
/// whole super-blocks by construction).
#[inline]
pub(in crate::kernels) fn super_blocks(n: usize) -> usize {
    assert!(
        n.is_multiple_of(QK_K),
        "{n} values are not whole super-blocks of {QK_K}"
    );
    n / QK_K
}

/// Eight rows of `nb` blocks of `B`, `w_row` bytes apart from the start of
/// `w`, as the 8-row kernels read them: `ptr` with rows `stride` blocks
/// apart, in place when the rows are aligned and whole blocks apart, else
/// a copy (correct, slow; callers align).
pub(in crate::kernels) struct EightRows<'a, B> {
    pub ptr: *const B,
    pub stride: usize,
    /// Owns the copy `ptr` points into, if any.
    _copy: Vec<B>,
    _w: std::marker::PhantomData<&'a [u8]>,
}

impl<'a, B: Pod> EightRows<'a, B> {
    /// # Panics
    /// If `w` holds fewer than 8 such rows (a caller bug); `what` names the
    /// type in the message.
    pub fn new(w: &'a [u8], w_row: usize, nb: usize, what: &str) -> Self {
        let size = std::mem::size_of::<B>();
        let row_len = nb * size;
        assert!(
            w_row >= row_len && w.len() >= 7 * w_row + row_len,
            "8 {what} rows of {nb} blocks {w_row} bytes apart need {} bytes, got {}",
            7 * w_row + row_len,
            w.len()
        );
        let _w = std::marker::PhantomData;
        if w.as_ptr().align_offset(std::mem::align_of::<B>()) == 0 && w_row.is_multiple_of(size) {
            let ptr = w.as_ptr().cast();
            EightRows {
                ptr,
                stride: w_row / size,
                _copy: Vec::new(),
                _w,
            }
        } else {
            let copy: Vec<B> = (0..8)
                .flat_map(|r| view::<B>(&w[r * w_row..], nb).into_owned())
                .collect();
            EightRows {
                ptr: copy.as_ptr(),
                stride: nb,
                _copy: copy,
                _w,
            }
        }
    }
}

/// The first `nb` blocks of `B` in `bytes`: borrowed when `bytes` is aligned
/// for `B`, copied to an aligned buffer otherwise.
///
/// # Panics
/// If `bytes` holds fewer than `nb` blocks.
#[inline]
pub(in crate::kernels) fn view<B: Pod>(bytes: &[u8], nb: usize) -> Cow<'_, [B]> {
    let len = nb * std::mem::size_of::<B>();
    assert!(
        bytes.len() >= len,
        "{} bytes hold fewer than {nb} blocks of {} bytes",
        bytes.len(),
        std::mem::size_of::<B>()
    );
    let bytes = &bytes[..len];
    match bytemuck::try_cast_slice(bytes) {
        Ok(blocks) => Cow::Borrowed(blocks),
        Err(_) => Cow::Owned(bytemuck::pod_collect_to_vec(bytes)),
    }
}

/// The 8 scales (bytes 0..8) and 8 mins (bytes 8..16) of Q4_K/Q5_K, unpacked
/// from their 12 packed bytes of 6-bit values (ggml's `utmp` shuffle, the
/// same values as [`crate::dequant::kquants::get_scale_min_k4`]).
#[inline]
pub(in crate::kernels) fn scales_mins_k4(packed: &[u8; 12]) -> [u8; 16] {
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    let word =
        |i: usize| u32::from_le_bytes([packed[i], packed[i + 1], packed[i + 2], packed[i + 3]]);
    let (u0, u1, u2) = (word(0), word(4), word(8));
    let scales_lo = u0 & KMASK1;
    let scales_hi = (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4);
    let mins_lo = u1 & KMASK1;
    let mins_hi = ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4);
    let mut out = [0u8; 16];
    for (chunk, w) in out
        .chunks_exact_mut(4)
        .zip([scales_lo, scales_hi, mins_lo, mins_hi])
    {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// The 16 six-bit scales of Q3_K, unpacked from 12 bytes (ggml's `aux`
/// shuffle) as four little-endian words of four bytes, each in `0..64`:
/// scale `j` is byte `j % 4` of word `j / 4`, and the weight uses `sc - 32`.
#[inline]
pub(in crate::kernels) fn scales_q3_k(packed: &[u8; 12]) -> [u32; 4] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let word =
        |i: usize| u32::from_le_bytes([packed[i], packed[i + 1], packed[i + 2], packed[i + 3]]);
    let (a0, a1, tmp) = (word(0), word(4), word(8));
    [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dequant::kquants::get_scale_min_k4;

    #[test]
    fn scale_unpacking_matches_get_scale_min_k4() {
        let mut state = 0x1234_5678u32;
        for _ in 0..200 {
            let mut packed = [0u8; 12];
            for b in &mut packed {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                *b = (state >> 24) as u8;
            }
            let sm = scales_mins_k4(&packed);
            for j in 0..8 {
                assert_eq!(get_scale_min_k4(j, &packed), (sm[j], sm[8 + j]), "j = {j}");
            }
        }
    }

    #[test]
    fn q3_k_scales_match_the_dequantizer_layout() {
        // ggml's dequantize_row_q3_K builds the same 16 scales byte by byte.
        let mut state = 0x9e37_79b9u32;
        for _ in 0..200 {
            let mut packed = [0u8; 12];
            for b in &mut packed {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                *b = (state >> 24) as u8;
            }
            let words = scales_q3_k(&packed);
            let got: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            for (j, &g) in got.iter().enumerate() {
                let low = if j < 8 {
                    packed[j] & 0xf
                } else {
                    packed[j - 8] >> 4
                };
                let high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
                assert_eq!(g, low | (high << 4), "j = {j}");
            }
        }
    }
}
