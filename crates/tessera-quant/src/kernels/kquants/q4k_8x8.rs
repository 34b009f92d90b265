//! Q4_K · Q8_K in the float order of llama.cpp's repacked Q4_K weights
//! (`q4_K_8x8`, ggml-cpu's `CPU_REPACK` buffer), eight weight rows at a time.
//!
//! On an AVX2 machine llama.cpp repacks every Q4_K matrix whose row count
//! is a multiple of 8 and multiplies it with `ggml_gemv_q4_K_8x8_q8_K` (one
//! token) or `ggml_gemm_q4_K_8x8_q8_K` (4 tokens at a time), not with
//! `vec_dot` (`ggml-cpu/arch/x86/repack.cpp`, `repack.cpp`). The integers
//! are the same as `vec_dot`'s; the floats are not: each output is one lane
//! of its own, with no horizontal sum.
//!
//! Per output, over the super-blocks `b` in order, with `d·dy` and
//! `dmin·dy` rounded products of the weight row's f16 scales and the
//! activation's `d`:
//!
//! - [`Chain::Block`] (the gemv): `isum_b = Σ_j sc_j·(q·y)_j` and
//!   `imin_b = Σ_j m_j·bsum_j` over the super-block's 8 sub-blocks, then
//!   `acc = fma(f32(isum_b), d·dy, acc)`, `accm = fma(f32(imin_b), dmin·dy, accm)`;
//! - [`Chain::Pair`] (the gemm): the same two FMAs per *pair* of sub-blocks
//!   (64 values), four per super-block;
//!
//! and the output is `acc − accm`. llama.cpp's repacked mul_mat quantizes
//! the first `n − n % 4` tokens of a batch with `ggml_quantize_mat_q8_K_4x8`
//! and runs them through the gemm, the last `n % 4` through the gemv; its
//! mul_mat_id always uses the gemv. The 4×8 quantizer may choose the
//! opposite sign of the reference one when `+amax` and `−amax` both occur,
//! which negates `q`, `bsums` and `d` together and leaves every product,
//! hence every output, unchanged, so the ordinary Q8_K rows serve both.
//!
//! The AVX2 variant forms each row's four pair sums with `maddubs` and one
//! `madd` per pair (the pair's two sub-blocks in the two halves of one
//! register, each half with its own scale: only the exact integer sums
//! matter here, not which lane holds what), reduces them with `hadd`s,
//! transposes the eight rows' sums into one vector per pair and keeps the
//! eight chains in the lanes of one `__m256`.

use half::f16;

use super::{scales_mins_k4, super_blocks, view, EightRows};
use crate::blocks::{BlockQ4K, BlockQ8K};
use crate::kernels::SimdLevel;

/// Where the float chain takes a step: see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chain {
    /// One FMA per super-block (`ggml_gemv_q4_K_8x8_q8_K`).
    Block,
    /// One FMA per pair of sub-blocks (`ggml_gemm_q4_K_8x8_q8_K`).
    Pair,
}

/// The most activation rows one [`Rows8`] call takes (llama.cpp's gemm
/// takes 4 tokens at a time).
pub const MAX_ACTS: usize = 4;

/// Eight Q4_K rows times `a.len()` (1..=[`MAX_ACTS`]) Q8_K rows: `n`
/// values; row `r` of the eight at `w[r * w_row..]`; `out[t][r]` the result
/// of row `r` with activation `a[t]`. Every output is computed as if alone:
/// more activations only share the weights' unpacking.
pub type Rows8 =
    fn(n: usize, w: &[u8], w_row: usize, a: &[&[u8]], chain: Chain, out: &mut [[f32; 8]]);

/// The best variant at `level`.
pub fn rows8(level: SimdLevel) -> Rows8 {
    #[cfg(target_arch = "x86_64")]
    if level >= SimdLevel::Avx2 {
        return avx2::rows8_q4_k;
    }
    let _ = level;
    rows8_q4_k_scalar
}

/// The integer sums of one super-block per pair of sub-blocks `j`:
/// `(Σ sc·(q·y), Σ m·bsum)` over sub-blocks `2j` and `2j + 1`.
fn pair_sums(x: &BlockQ4K, y: &BlockQ8K) -> ([i32; 4], [i32; 4]) {
    let sm = scales_mins_k4(&x.scales);
    let qs: &[[u8; 32]; 4] = bytemuck::cast_ref(&x.qs);
    let q8: &[[i8; 32]; 8] = bytemuck::cast_ref(&y.qs);
    let mut isum = [0i32; 4];
    let mut imin = [0i32; 4];
    for j in 0..4 {
        for h in 0..2 {
            let sub = 2 * j + h;
            let dot: i32 = qs[j]
                .iter()
                .zip(&q8[sub])
                .map(|(&q, &a)| i32::from((q >> (4 * h)) & 0xf) * i32::from(a))
                .sum();
            isum[j] += i32::from(sm[sub]) * dot;
            let bsum = i32::from(y.bsums[2 * sub]) + i32::from(y.bsums[2 * sub + 1]);
            imin[j] += i32::from(sm[8 + sub]) * bsum;
        }
    }
    (isum, imin)
}

/// One row in the repacked order (the scalar twin's body).
fn row_scalar(x: &[BlockQ4K], y: &[BlockQ8K], chain: Chain) -> f32 {
    let mut acc = 0f32;
    let mut accm = 0f32;
    for (x, y) in x.iter().zip(y) {
        let d = f16::to_f32(x.d) * y.d;
        let dmin = f16::to_f32(x.dmin) * y.d;
        let (isum, imin) = pair_sums(x, y);
        match chain {
            Chain::Block => {
                acc = (isum.iter().sum::<i32>() as f32).mul_add(d, acc);
                accm = (imin.iter().sum::<i32>() as f32).mul_add(dmin, accm);
            }
            Chain::Pair => {
                for (&i, &m) in isum.iter().zip(&imin) {
                    acc = (i as f32).mul_add(d, acc);
                    accm = (m as f32).mul_add(dmin, accm);
                }
            }
        }
    }
    acc - accm
}

/// The scalar twin of [`rows8`] (the same floats: the chains are scalar).
pub fn rows8_q4_k_scalar(
    n: usize,
    w: &[u8],
    w_row: usize,
    a: &[&[u8]],
    chain: Chain,
    out: &mut [[f32; 8]],
) {
    check_acts(a, out);
    let nb = super_blocks(n);
    for (a, out) in a.iter().zip(out.iter_mut()) {
        let y = view::<BlockQ8K>(a, nb);
        for (r, o) in out.iter_mut().enumerate() {
            let x = view::<BlockQ4K>(&w[r * w_row..], nb);
            *o = row_scalar(&x, &y, chain);
        }
    }
}

/// 1..=[`MAX_ACTS`] activations, an output row for each.
fn check_acts(a: &[&[u8]], out: &[[f32; 8]]) {
    assert!(
        (1..=MAX_ACTS).contains(&a.len()) && out.len() >= a.len(),
        "rows8 takes 1..={MAX_ACTS} activation rows and an output row each, got {} and {}",
        a.len(),
        out.len()
    );
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use std::arch::x86_64::*;

    use super::super::avx2::{has_avx2, head128, load128, load256, scales_mins_k4_v, SHUFFLE_PAIR};
    use super::*;
    use crate::kernels::prefetch_group;

    /// The table entry: checks the CPU and the shapes, then runs the kernel.
    pub(super) fn rows8_q4_k(
        n: usize,
        w: &[u8],
        w_row: usize,
        a: &[&[u8]],
        chain: Chain,
        out: &mut [[f32; 8]],
    ) {
        if !has_avx2() {
            return rows8_q4_k_scalar(n, w, w_row, a, chain, out);
        }
        check_acts(a, out);
        let nb = super_blocks(n);
        let ys: [_; MAX_ACTS] =
            std::array::from_fn(|t| view::<BlockQ8K>(a[t.min(a.len() - 1)], nb));
        let rows = EightRows::<BlockQ4K>::new(w, w_row, nb, "Q4_K");
        let (x, stride) = (rows.ptr, rows.stride);
        fn run<const T: usize, const PAIR: bool>(
            x: *const BlockQ4K,
            stride: usize,
            nb: usize,
            ys: &[std::borrow::Cow<'_, [BlockQ8K]>],
            out: &mut [[f32; 8]],
        ) {
            let y: [&[BlockQ8K]; T] = std::array::from_fn(|t| &ys[t][..]);
            // SAFETY: AVX2/FMA/F16C checked by the caller; 8 rows of nb
            // blocks at `x`, `stride` blocks apart (asserted or copied).
            let o = unsafe { kernel::<T, PAIR>(x, stride, nb, y) };
            out[..T].copy_from_slice(&o);
        }
        let pair = chain == Chain::Pair;
        match (a.len(), pair) {
            (1, false) => run::<1, false>(x, stride, nb, &ys, out),
            (2, false) => run::<2, false>(x, stride, nb, &ys, out),
            (3, false) => run::<3, false>(x, stride, nb, &ys, out),
            (_, false) => run::<4, false>(x, stride, nb, &ys, out),
            (1, true) => run::<1, true>(x, stride, nb, &ys, out),
            (2, true) => run::<2, true>(x, stride, nb, &ys, out),
            (3, true) => run::<3, true>(x, stride, nb, &ys, out),
            (_, true) => run::<4, true>(x, stride, nb, &ys, out),
        }
    }

    /// The four pair sums of a row's `i32` lanes `p[j]` (each summing to
    /// pair `j`), as one `__m128i`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn pair_totals(p: [__m256i; 4]) -> __m128i {
        let h = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
        _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h))
    }

    /// Rows `r` and `r + 4` of 8 rows × 4 pairs → per pair, the 8 rows.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn transpose(s: &[__m128i; 8]) -> [__m256i; 4] {
        let v: [__m256i; 4] = std::array::from_fn(|r| _mm256_set_m128i(s[r + 4], s[r]));
        let t0 = _mm256_unpacklo_epi32(v[0], v[1]);
        let t1 = _mm256_unpackhi_epi32(v[0], v[1]);
        let t2 = _mm256_unpacklo_epi32(v[2], v[3]);
        let t3 = _mm256_unpackhi_epi32(v[2], v[3]);
        [
            _mm256_unpacklo_epi64(t0, t2),
            _mm256_unpackhi_epi64(t0, t2),
            _mm256_unpacklo_epi64(t1, t3),
            _mm256_unpackhi_epi64(t1, t3),
        ]
    }

    /// The lane sums of 8 rows' `i32` vectors, row `r` in lane `r` (also
    /// the tiled kernels' per-token sums).
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(in crate::kernels::kquants) fn row_totals(v: &[__m256i; 8]) -> __m256i {
        let h0 = _mm256_hadd_epi32(v[0], v[1]);
        let h1 = _mm256_hadd_epi32(v[2], v[3]);
        let h2 = _mm256_hadd_epi32(v[4], v[5]);
        let h3 = _mm256_hadd_epi32(v[6], v[7]);
        // Per 128-bit half: rows 0..3 (g0) and 4..7 (g1).
        let g0 = _mm256_hadd_epi32(h0, h1);
        let g1 = _mm256_hadd_epi32(h2, h3);
        _mm256_add_epi32(
            _mm256_permute2x128_si256::<0x20>(g0, g1),
            _mm256_permute2x128_si256::<0x31>(g0, g1),
        )
    }

    /// The lane sums of 8 rows' 4-lane vectors, row `r` in lane `r`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn row_totals4(v: &[__m128i; 8]) -> __m256i {
        let lo = _mm_hadd_epi32(_mm_hadd_epi32(v[0], v[1]), _mm_hadd_epi32(v[2], v[3]));
        let hi = _mm_hadd_epi32(_mm_hadd_epi32(v[4], v[5]), _mm_hadd_epi32(v[6], v[7]));
        _mm256_set_m128i(hi, lo)
    }

    /// `T` activations × 8 rows; `PAIR` picks [`Chain::Pair`]. The weight
    /// side of each row's super-block (nibbles, scales) is unpacked once and
    /// used by every activation; each output keeps its own float chain.
    ///
    /// # Safety
    /// AVX2+FMA+F16C; `x` points at 8 rows of `nb` blocks, `stride` blocks apart.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(clippy::needless_range_loop)] // `b` indexes T activations' blocks
    unsafe fn kernel<const T: usize, const PAIR: bool>(
        x: *const BlockQ4K,
        stride: usize,
        nb: usize,
        y: [&[BlockQ8K]; T],
    ) -> [[f32; 8]; T] {
        let m4 = _mm256_set1_epi8(0xf);
        // Shifts the high half's nibbles down.
        let nibble_shift = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
        let group = 8 * stride * std::mem::size_of::<BlockQ4K>();
        let mut acc = [_mm256_setzero_ps(); T];
        let mut accm = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            // The 32-value sums of each activation (sub-block j at i16 j).
            let bs32: [__m128i; T] = std::array::from_fn(|t| {
                let q8sums = load256(&y[t][b].bsums);
                _mm_hadd_epi16(
                    _mm256_castsi256_si128(q8sums),
                    _mm256_extracti128_si256::<1>(q8sums),
                )
            });
            // Per pair j: values 0..16 of sub-blocks 2j | 2j + 1, then
            // values 16..32 (the weights' order below).
            let ys: [[[__m256i; 2]; 4]; T] = std::array::from_fn(|t| {
                let q8: &[[i8; 32]; 8] = bytemuck::cast_ref(&y[t][b].qs);
                std::array::from_fn(|j| {
                    let (lo, hi) = (load256(&q8[2 * j]), load256(&q8[2 * j + 1]));
                    [
                        _mm256_permute2x128_si256::<0x20>(lo, hi),
                        _mm256_permute2x128_si256::<0x31>(lo, hi),
                    ]
                })
            });
            let mut sums = [[_mm_setzero_si128(); 8]; T];
            let mut ds = [0u16; 8];
            let mut dms = [0u16; 8];
            let mut lanes = [[_mm256_setzero_si256(); 8]; T];
            let mut mins = [[_mm_setzero_si128(); 8]; T];
            for r in 0..8 {
                // SAFETY: row r's block b is in bounds (the caller's).
                let xb = unsafe { &*x.add(r * stride + b) };
                // The next group's bytes, 144 per row-block (as many as
                // consumed: one group ahead all along), as 4 streams.
                let step = (b * 8 + r) * 144;
                if step < group {
                    prefetch_group(x.cast::<u8>().wrapping_add(group), group, step, 144);
                }
                ds[r] = xb.d.to_bits();
                dms[r] = xb.dmin.to_bits();
                let scales_mins = _mm256_cvtepu8_epi16(scales_mins_k4_v(head128(xb)));
                let scales = _mm256_permute2x128_si256::<0x00>(scales_mins, scales_mins);
                let qs: &[[u8; 16]; 8] = bytemuck::cast_ref(&xb.qs);
                // Per pair j: the scales of sub-blocks 2j | 2j + 1 (low |
                // high 128 bits) and their values 0..16 and 16..32, the low
                // nibbles of 16 bytes in the low half, their high nibbles in
                // the high half.
                let wq: [[__m256i; 3]; 4] = std::array::from_fn(|j| {
                    let half = |k: usize| {
                        let q = _mm256_broadcastsi128_si256(load128(&qs[2 * j + k]));
                        _mm256_and_si256(_mm256_srlv_epi32(q, nibble_shift), m4)
                    };
                    [
                        _mm256_shuffle_epi8(scales, load256(&SHUFFLE_PAIR[j])),
                        half(0),
                        half(1),
                    ]
                });
                for t in 0..T {
                    // Pair j's mins: m_2j·bs_2j + m_2j+1·bs_2j+1.
                    mins[t][r] =
                        _mm_madd_epi16(_mm256_extracti128_si256::<1>(scales_mins), bs32[t]);
                    // Both sub-blocks' products in one register, each half
                    // with its own scale: one `madd` per pair (|Σ| ≤ 4·15·128).
                    let p: [__m256i; 4] = std::array::from_fn(|j| {
                        let [scale, q0, q1] = wq[j];
                        let [y0, y1] = ys[t][j];
                        let p16 = _mm256_add_epi16(
                            _mm256_maddubs_epi16(q0, y0),
                            _mm256_maddubs_epi16(q1, y1),
                        );
                        _mm256_madd_epi16(scale, p16)
                    });
                    if PAIR {
                        sums[t][r] = pair_totals(p);
                    } else {
                        lanes[t][r] = _mm256_add_epi32(
                            _mm256_add_epi32(p[0], p[1]),
                            _mm256_add_epi32(p[2], p[3]),
                        );
                    }
                }
            }
            // SAFETY: 8 u16 each, unaligned loads.
            let (d, dmin) = unsafe {
                (
                    _mm256_cvtph_ps(_mm_loadu_si128(ds.as_ptr().cast())),
                    _mm256_cvtph_ps(_mm_loadu_si128(dms.as_ptr().cast())),
                )
            };
            for t in 0..T {
                let dy = _mm256_set1_ps(y[t][b].d);
                let d = _mm256_mul_ps(d, dy);
                let dmin = _mm256_mul_ps(dmin, dy);
                if PAIR {
                    let s = transpose(&sums[t]);
                    let m = transpose(&mins[t]);
                    for j in 0..4 {
                        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[j]), d, acc[t]);
                        accm[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(m[j]), dmin, accm[t]);
                    }
                } else {
                    let si = row_totals(&lanes[t]);
                    let mi = row_totals4(&mins[t]);
                    acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si), d, acc[t]);
                    accm[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mi), dmin, accm[t]);
                }
            }
        }
        let mut out = [[0f32; 8]; T];
        for t in 0..T {
            // SAFETY: out[t] is 8 f32.
            unsafe { _mm256_storeu_ps(out[t].as_mut_ptr(), _mm256_sub_ps(acc[t], accm[t])) };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX2 variant gives the scalar twin's bits (the chains are the
    /// same float operations), aligned and at an odd address, both chains.
    #[test]
    fn avx2_equals_scalar() {
        let (n, rows) = (3 * 256, 8);
        let mut state = 0x2545_f491u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let vals: Vec<f32> = (0..n * rows)
            .map(|_| (next() % 2001) as f32 / 1000.0 - 1.0)
            .collect();
        let w_row = n / 256 * 144;
        let mut w = vec![0u8; w_row * rows + 1];
        crate::quantize(crate::GgmlType::Q4_K, &vals, &mut w[..w_row * rows]).unwrap();
        let a_row = n / 256 * 292;
        let x: Vec<f32> = (0..n * MAX_ACTS)
            .map(|_| (next() % 2001) as f32 / 100.0 - 10.0)
            .collect();
        let mut a = vec![0u64; (a_row * MAX_ACTS).div_ceil(8)];
        let a: &mut [u8] = &mut bytemuck::cast_slice_mut(&mut a)[..a_row * MAX_ACTS];
        crate::quantize(crate::GgmlType::Q8_K, &x, a).unwrap();
        let acts: Vec<&[u8]> = a.chunks(a_row).collect();
        let odd: Vec<u8> = std::iter::once(0)
            .chain(w[..w_row * rows].iter().copied())
            .collect();
        for chain in [Chain::Block, Chain::Pair] {
            for t in 1..=MAX_ACTS {
                let mut want = [[0f32; 8]; MAX_ACTS];
                rows8_q4_k_scalar(n, &w, w_row, &acts[..t], chain, &mut want);
                for wb in [&w[..], &odd[1..]] {
                    let mut got = [[f32::NAN; 8]; MAX_ACTS];
                    rows8(SimdLevel::detect())(n, wb, w_row, &acts[..t], chain, &mut got);
                    for i in 0..t {
                        assert_eq!(
                            got[i].map(f32::to_bits),
                            want[i].map(f32::to_bits),
                            "{chain:?}, {t} activations, activation {i}"
                        );
                    }
                    // One activation alone gives the same bits as in a group.
                    let mut one = [[f32::NAN; 8]; 1];
                    rows8(SimdLevel::detect())(n, wb, w_row, &acts[t - 1..t], chain, &mut one);
                    assert_eq!(one[0].map(f32::to_bits), got[t - 1].map(f32::to_bits));
                }
            }
        }
    }
}
