//! Dot kernels for F32, F16 and BF16 weights.
//!
//! The activations are converted to the weight's own type first, as ggml
//! does (`vec_dot_type` of F16 is F16, of BF16 is BF16): the dot is then
//! F32·F32, F16·F16 or BF16·BF16, every product formed in f32.
//!
//! | weight | act  | scalar twin                | AVX2+FMA+F16C | AVX-512F            |
//! |--------|------|----------------------------|---------------|---------------------|
//! | F32    | F32  | [`vec_dot_f32_scalar`]     | yes           | compiles, untested  |
//! | F16    | F16  | [`vec_dot_f16_scalar`]     | yes           | compiles, untested  |
//! | BF16   | BF16 | [`vec_dot_bf16_scalar`]    | yes           | —                   |
//!
//! The scalar twins follow ggml's generic `ggml_vec_dot_f32/f16/bf16`: each
//! product in f32, summed in f64 (`ggml_float`). The AVX2 variants and tiles
//! are bit-identical with ggml-cpu's x86 build (`tests/ggml_exact.rs`): 4
//! accumulators of 8 lanes, ggml's reductions and tails (see `Load::finish`),
//! so they differ from the twin by f32 rounding of the sum (the tests bound
//! it relative to `Σ|w·a|`).
//!
//! Rows may start at any byte address (a GGUF row of F16 is 2-aligned at
//! best): every load is unaligned. `n` values need `4n` (F32) or `2n` bytes
//! in both `w` and `a`; shorter slices panic rather than read out of bounds.
//!
//! The AVX-512 variants have never run on a machine with AVX-512 (the
//! development machine has none). They are compiled and listed in
//! [`AVX512_UNTESTED`], not registered in [`DOTS`], so nothing selects them
//! until `tests/kernels.rs` has passed on an AVX-512 machine (it runs every
//! entry of [`AVX512_UNTESTED`] against its scalar twin when the CPU allows).

// Offsets, checks and imports used only by the x86-64 variants.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code, unused_imports))]

use super::legacy::{DotTile, TILE_ACTS, TILE_ROWS};
use super::{DotEntry, SimdLevel, VecDot};
use crate::GgmlType;

/// The kernels of this family.
pub const DOTS: &[DotEntry] = &[
    DotEntry {
        weight: GgmlType::F32,
        act: GgmlType::F32,
        scalar: vec_dot_f32_scalar,
        avx2: AVX2_F32,
        avx512: None,
    },
    DotEntry {
        weight: GgmlType::F16,
        act: GgmlType::F16,
        scalar: vec_dot_f16_scalar,
        avx2: AVX2_F16,
        avx512: None,
    },
    DotEntry {
        weight: GgmlType::BF16,
        act: GgmlType::BF16,
        scalar: vec_dot_bf16_scalar,
        avx2: AVX2_BF16,
        avx512: None,
    },
];

/// AVX-512 variants that compile but have not been run (see the module docs).
#[cfg(target_arch = "x86_64")]
pub const AVX512_UNTESTED: &[(GgmlType, VecDot)] = &[
    (GgmlType::F32, x86::vec_dot_f32_avx512),
    (GgmlType::F16, x86::vec_dot_f16_avx512),
];
/// AVX-512 variants that compile but have not been run (none off x86-64).
#[cfg(not(target_arch = "x86_64"))]
pub const AVX512_UNTESTED: &[(GgmlType, VecDot)] = &[];

#[cfg(target_arch = "x86_64")]
const AVX2_F32: Option<VecDot> = Some(x86::vec_dot_f32_avx2);
#[cfg(target_arch = "x86_64")]
const AVX2_F16: Option<VecDot> = Some(x86::vec_dot_f16_avx2);
#[cfg(target_arch = "x86_64")]
const AVX2_BF16: Option<VecDot> = Some(x86::vec_dot_bf16_avx2);
#[cfg(not(target_arch = "x86_64"))]
const AVX2_F32: Option<VecDot> = None;
#[cfg(not(target_arch = "x86_64"))]
const AVX2_F16: Option<VecDot> = None;
#[cfg(not(target_arch = "x86_64"))]
const AVX2_BF16: Option<VecDot> = None;

/// The tile kernel of float weight type `t` at `level`, if there is one
/// (AVX2: F32, F16, BF16): up to [`TILE_ROWS`] weight rows × [`TILE_ACTS`]
/// activation rows per pass (see [`DotTile`]), each activation vector loaded
/// once for all rows, the next tile's rows prefetched. Its scalar twin is
/// the type's scalar dot per pair.
pub fn dot_tile(t: GgmlType, level: SimdLevel) -> Option<DotTile> {
    #[cfg(target_arch = "x86_64")]
    if level >= SimdLevel::Avx2 {
        return pick(t, [x86::tile_f32 as DotTile, x86::tile_f16, x86::tile_bf16]);
    }
    let _ = (t, level);
    None
}

/// The entry of `fns` (F32, F16, BF16, in that order) for float type `t`.
fn pick<F>(t: GgmlType, fns: [F; 3]) -> Option<F> {
    let i = match t {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::BF16 => 2,
        _ => return None,
    };
    fns.into_iter().nth(i)
}

/// Checks a tile's shapes (as [`super::legacy::DotTile`] documents).
#[cfg(target_arch = "x86_64")]
fn check_tile(name: &str, n: usize, elem: usize, w: &[&[u8]], a: &[&[u8]], out: &[f32]) {
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
    for &wr in w {
        for &ar in a {
            check(name, n, elem, wr, ar);
        }
    }
}

/// Panics unless `w` and `a` hold `n` values of `elem` bytes each.
#[inline]
fn check(name: &str, n: usize, elem: usize, w: &[u8], a: &[u8]) {
    let need = n.checked_mul(elem).expect("row length overflows");
    assert!(
        w.len() >= need && a.len() >= need,
        "{name} dot: {n} values need {need} bytes, got {} (weights) and {} (activations)",
        w.len(),
        a.len()
    );
}

#[inline]
fn f32_at(b: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
}

#[inline]
fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[2 * i], b[2 * i + 1]])
}

/// F32·F32 (ggml: `ggml_vec_dot_f32`, generic path): f32 products summed in f64.
pub fn vec_dot_f32_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check("F32", n, 4, w, a);
    let mut sum = 0f64;
    for i in 0..n {
        sum += f64::from(f32_at(w, i) * f32_at(a, i));
    }
    sum as f32
}

/// F16·F16 (ggml: `ggml_vec_dot_f16`, generic path): each half widened to
/// f32, the product in f32, summed in f64.
pub fn vec_dot_f16_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check("F16", n, 2, w, a);
    let mut sum = 0f64;
    for i in 0..n {
        let x = half::f16::from_bits(u16_at(w, i)).to_f32();
        let y = half::f16::from_bits(u16_at(a, i)).to_f32();
        sum += f64::from(x * y);
    }
    sum as f32
}

/// BF16·BF16 (ggml: `ggml_vec_dot_bf16`, generic path): each bf16 widened by
/// a 16-bit shift, the product in f32, summed in f64.
pub fn vec_dot_bf16_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check("BF16", n, 2, w, a);
    let mut sum = 0f64;
    for i in 0..n {
        let x = f32::from_bits(u32::from(u16_at(w, i)) << 16);
        let y = f32::from_bits(u32::from(u16_at(a, i)) << 16);
        sum += f64::from(x * y);
    }
    sum as f32
}

// ---------------------------------------------------------------- tinyBLAS order

/// The scalar body of the tinyBLAS-order dots: 8 lane accumulators over
/// steps of 8 values (`acc[l] = fma(w, a, acc[l])`), then tinyBLAS's `hsum`:
/// the two halves added lane-wise, then `movehl` and `movehdup` sums.
fn sgemm_dot_by(n: usize, w: impl Fn(usize) -> f32, a: impl Fn(usize) -> f32) -> f32 {
    assert!(
        n.is_multiple_of(8),
        "tinyBLAS-order dot: {n} values are not whole steps of 8"
    );
    let mut acc = [0f32; 8];
    for i in (0..n).step_by(8) {
        for (l, acc) in acc.iter_mut().enumerate() {
            *acc = w(i + l).mul_add(a(i + l), *acc);
        }
    }
    let s: [f32; 4] = std::array::from_fn(|l| acc[l + 4] + acc[l]);
    (s[0] + s[2]) + (s[1] + s[3])
}

/// F32·F32 in the order of llamafile's `tinyBLAS<8, __m256>` (what
/// llama.cpp runs for batches of ≥ 2 tokens): one 8-lane FMA accumulator
/// per output, then `hsum`. `n` must be a multiple of 8.
pub fn sgemm_dot_f32_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check("F32", n, 4, w, a);
    sgemm_dot_by(n, |i| f32_at(w, i), |i| f32_at(a, i))
}

/// F16·F16 in tinyBLAS's order (values widened to f32, then as F32).
pub fn sgemm_dot_f16_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check("F16", n, 2, w, a);
    let h = |b: &[u8], i| half::f16::from_bits(u16_at(b, i)).to_f32();
    sgemm_dot_by(n, |i| h(w, i), |i| h(a, i))
}

/// BF16·BF16 in tinyBLAS's order (values widened to f32, then as F32).
pub fn sgemm_dot_bf16_scalar(n: usize, w: &[u8], a: &[u8]) -> f32 {
    check("BF16", n, 2, w, a);
    let h = |b: &[u8], i| f32::from_bits(u32::from(u16_at(b, i)) << 16);
    sgemm_dot_by(n, |i| h(w, i), |i| h(a, i))
}

/// The tinyBLAS-order dot of float weight type `t` at `level`: llama.cpp's
/// order for F32/F16/BF16 batches of ≥ 2 tokens when the row length is a
/// multiple of 8 and the row count of 4 (`llamafile_sgemm`), which the
/// caller checks. With it, [`sgemm_tile`] (AVX2), bit-identical per pair.
pub fn sgemm_dot(t: GgmlType, level: SimdLevel) -> Option<VecDot> {
    #[cfg(target_arch = "x86_64")]
    if level >= SimdLevel::Avx2 {
        return pick(
            t,
            [
                x86::sgemm_dot_f32_avx2 as VecDot,
                x86::sgemm_dot_f16_avx2,
                x86::sgemm_dot_bf16_avx2,
            ],
        );
    }
    let _ = level;
    pick(
        t,
        [
            sgemm_dot_f32_scalar as VecDot,
            sgemm_dot_f16_scalar,
            sgemm_dot_bf16_scalar,
        ],
    )
}

/// The tile kernel of [`sgemm_dot`] (AVX2 only).
pub fn sgemm_tile(t: GgmlType, level: SimdLevel) -> Option<DotTile> {
    #[cfg(target_arch = "x86_64")]
    if level >= SimdLevel::Avx2 {
        return pick(
            t,
            [
                x86::sgemm_tile_f32 as DotTile,
                x86::sgemm_tile_f16,
                x86::sgemm_tile_bf16,
            ],
        );
    }
    let _ = (t, level);
    None
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The x86-64 variants. Each public (to the family) function is a safe
    //! wrapper that checks the slice lengths and the CPU features, then calls
    //! the `#[target_feature]` body; without the features it runs the scalar
    //! twin instead, so a stray call through the table is never undefined
    //! behaviour. The feature check is a cached bit test.

    use super::*;
    use std::arch::x86_64::*;

    use crate::kernels::{has_avx2, store_tile, tile_by_dots, tile_shape};

    fn has_avx512() -> bool {
        is_x86_feature_detected!("avx512f")
    }

    /// Sum of the 8 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn hsum_ps(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    pub(super) fn vec_dot_f32_avx2(n: usize, w: &[u8], a: &[u8]) -> f32 {
        check("F32", n, 4, w, a);
        if !has_avx2() {
            return vec_dot_f32_scalar(n, w, a);
        }
        // SAFETY: lengths checked above, features checked above.
        unsafe { dots::<LF32, 1>(n, w.as_ptr(), [a.as_ptr()])[0] }
    }

    pub(super) fn vec_dot_f16_avx2(n: usize, w: &[u8], a: &[u8]) -> f32 {
        check("F16", n, 2, w, a);
        if !has_avx2() {
            return vec_dot_f16_scalar(n, w, a);
        }
        // SAFETY: lengths checked above, features checked above.
        unsafe { dots::<LF16, 1>(n, w.as_ptr(), [a.as_ptr()])[0] }
    }

    pub(super) fn vec_dot_bf16_avx2(n: usize, w: &[u8], a: &[u8]) -> f32 {
        check("BF16", n, 2, w, a);
        if !has_avx2() {
            return vec_dot_bf16_scalar(n, w, a);
        }
        // SAFETY: lengths checked above, features checked above.
        unsafe { dots::<LBf16, 1>(n, w.as_ptr(), [a.as_ptr()])[0] }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load_f16x8(p: *const u16) -> __m256 {
        // SAFETY: the caller guarantees 8 readable halves at p.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
    }

    /// 8 bf16 → 8 f32: widen to 32 bits, shift into the high half.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load_bf16x8(p: *const u16) -> __m256 {
        // SAFETY: the caller guarantees 8 readable values at p.
        let h = unsafe { _mm_loadu_si128(p.cast()) };
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
    }

    /// ggml's `GGML_F32x8_REDUCE` of 4 accumulators: `(a0 + a2) + (a1 + a3)`,
    /// the two halves added, then two `hadd`s.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn reduce_hadd(acc: [__m256; 4]) -> f32 {
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
        let t0 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let t1 = _mm_hadd_ps(t0, t0);
        _mm_cvtss_f32(_mm_hadd_ps(t1, t1))
    }

    /// A float type as ggml-cpu's x86 `ggml_vec_dot_f32/f16/bf16` (built by
    /// GCC with `-march=native`) sees it: 4 accumulators of 8 lanes over
    /// steps of 32 values (the products fused), then a type-specific
    /// reduction and tail.
    trait Load {
        const ELEM: usize;
        /// 8 values at element `i` of `p`, as f32.
        unsafe fn load8(p: *const u8, i: usize) -> __m256;
        /// Value `i` of `p`, as f32.
        unsafe fn one(p: *const u8, i: usize) -> f32;
        /// The accumulators reduced and the values `from..n` (fewer than
        /// 32) added, as ggml's compiled code does.
        unsafe fn finish(
            acc: [__m256; 4],
            x: *const u8,
            y: *const u8,
            from: usize,
            n: usize,
        ) -> f32;
    }

    struct LF32;
    impl Load for LF32 {
        const ELEM: usize = 4;
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn load8(p: *const u8, i: usize) -> __m256 {
            // SAFETY: the caller guarantees 8 values at i.
            unsafe { _mm256_loadu_ps(p.cast::<f32>().add(i)) }
        }
        #[inline]
        unsafe fn one(p: *const u8, i: usize) -> f32 {
            // SAFETY: the caller guarantees value i.
            unsafe { p.cast::<f32>().add(i).read_unaligned() }
        }
        /// `GGML_F32x8_REDUCE`, then `sumf += x[i]*y[i]` in f32, which GCC
        /// vectorizes as products rounded apart and added in order for the
        /// first `4·⌊left/4⌋` values and contracts to FMA for the last
        /// `left % 4` (read from the objdump of libggml-cpu.so).
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn finish(
            acc: [__m256; 4],
            x: *const u8,
            y: *const u8,
            from: usize,
            n: usize,
        ) -> f32 {
            let mut sum = reduce_hadd(acc);
            let fused_from = from + (n - from) / 4 * 4;
            for i in from..n {
                // SAFETY: i < n, the caller's.
                let (xv, yv) = unsafe { (Self::one(x, i), Self::one(y, i)) };
                sum = if i < fused_from {
                    sum + xv * yv
                } else {
                    xv.mul_add(yv, sum)
                };
            }
            sum
        }
    }

    struct LF16;
    impl Load for LF16 {
        const ELEM: usize = 2;
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn load8(p: *const u8, i: usize) -> __m256 {
            // SAFETY: the caller guarantees 8 values at i.
            unsafe { load_f16x8(p.cast::<u16>().add(i)) }
        }
        #[inline]
        unsafe fn one(p: *const u8, i: usize) -> f32 {
            // SAFETY: the caller guarantees value i.
            half::f16::from_bits(unsafe { p.cast::<u16>().add(i).read_unaligned() }).to_f32()
        }
        /// `GGML_F16_VEC_REDUCE` (as F32's) into an f64 sum, the tail's f32
        /// products added in f64, rounded to f32 at the end.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn finish(
            acc: [__m256; 4],
            x: *const u8,
            y: *const u8,
            from: usize,
            n: usize,
        ) -> f32 {
            let mut sum = f64::from(reduce_hadd(acc));
            for i in from..n {
                // SAFETY: i < n, the caller's.
                sum += f64::from(unsafe { Self::one(x, i) * Self::one(y, i) });
            }
            sum as f32
        }
    }

    struct LBf16;
    impl Load for LBf16 {
        const ELEM: usize = 2;
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn load8(p: *const u8, i: usize) -> __m256 {
            // SAFETY: the caller guarantees 8 values at i.
            unsafe { load_bf16x8(p.cast::<u16>().add(i)) }
        }
        #[inline]
        unsafe fn one(p: *const u8, i: usize) -> f32 {
            // SAFETY: the caller guarantees value i.
            f32::from_bits(u32::from(unsafe { p.cast::<u16>().add(i).read_unaligned() }) << 16)
        }
        /// `(c1 + c3) + (c2 + c4)`, halves added, `movehl`/`movehdup` sums
        /// (ggml's own AVX2 code in `ggml_vec_dot_bf16`) into an f64 sum,
        /// the tail's f32 products added in f64.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn finish(
            acc: [__m256; 4],
            x: *const u8,
            y: *const u8,
            from: usize,
            n: usize,
        ) -> f32 {
            let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
            let mut sum = f64::from(hsum_ps(v));
            for i in from..n {
                // SAFETY: i < n, the caller's.
                sum += f64::from(unsafe { Self::one(x, i) * Self::one(y, i) });
            }
            sum as f32
        }
    }

    /// The dots of one weight row `x` with `C` activation rows, each exactly
    /// as ggml's single dot: 4 accumulators per activation, steps of 32
    /// values, [`Load::finish`]. The weight vectors are loaded once for all
    /// activations.
    ///
    /// # Safety
    /// AVX2+FMA+F16C; `n` values at `x` and at every `a[c]`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(clippy::needless_range_loop)] // k indexes the accumulators and the offsets
    unsafe fn dots<L: Load, const C: usize>(n: usize, x: *const u8, a: [*const u8; C]) -> [f32; C] {
        let mut acc = [[_mm256_setzero_ps(); 4]; C];
        let np = n & !31;
        let mut i = 0;
        while i < np {
            for k in 0..4 {
                // SAFETY: i + 32 <= n.
                unsafe {
                    let xv = L::load8(x, i + 8 * k);
                    for c in 0..C {
                        acc[c][k] = _mm256_fmadd_ps(xv, L::load8(a[c], i + 8 * k), acc[c][k]);
                    }
                }
            }
            i += 32;
        }
        // SAFETY: the caller's.
        std::array::from_fn(|c| unsafe { L::finish(acc[c], x, a[c], np, n) })
    }

    /// The tile body: every row through [`dots`] with the tile's
    /// activations (bit-identical with the single kernel), the next tile's
    /// rows prefetched.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile<L: Load, const R: usize, const C: usize>(
        n: usize,
        w: [&[u8]; R],
        a: [&[u8]; C],
    ) -> [[f32; R]; C] {
        let ap = a.map(|r| r.as_ptr());
        // The next tile's rows, at the same column (see legacy's tiles).
        let ahead = super::super::legacy::prefetch_ahead_bytes(R * n * L::ELEM);
        let mut out = [[0f32; R]; C];
        for (r, wr) in w.iter().enumerate() {
            let p = wr.as_ptr();
            let mut off = 0;
            while off < n * L::ELEM {
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(ahead + off).cast());
                off += 64;
            }
            // SAFETY: shapes checked by the caller.
            let d = unsafe { dots::<L, C>(n, p, ap) };
            for c in 0..C {
                out[c][r] = d[c];
            }
        }
        out
    }

    macro_rules! float_tile_fn {
        ($name:ident, $L:ty, $tname:literal, $scalar:ident) => {
            pub(super) fn $name(n: usize, w: &[&[u8]], a: &[&[u8]], out: &mut [f32]) {
                check_tile($tname, n, <$L>::ELEM, w, a, out);
                if !has_avx2() {
                    return tile_by_dots(n, w, a, out, $scalar);
                }
                fn run<const R: usize, const C: usize>(
                    n: usize,
                    w: &[&[u8]],
                    a: &[&[u8]],
                    out: &mut [f32],
                ) {
                    let wr: [&[u8]; R] = std::array::from_fn(|r| w[r]);
                    let ar: [&[u8]; C] = std::array::from_fn(|c| a[c]);
                    // SAFETY: shapes checked by check_tile, features by has_avx2.
                    store_tile(&unsafe { tile::<$L, R, C>(n, wr, ar) }, out);
                }
                tile_shape!(w.len(), a.len(), run(n, w, a, out))
            }
        };
    }

    float_tile_fn!(tile_f32, LF32, "F32", vec_dot_f32_scalar);
    float_tile_fn!(tile_f16, LF16, "F16", vec_dot_f16_scalar);
    float_tile_fn!(tile_bf16, LBf16, "BF16", vec_dot_bf16_scalar);

    // ---- tinyBLAS order (llamafile's `tinyBLAS<8, __m256>`) ----

    /// The dots of one weight row `x` with `C` activation rows, one 8-lane
    /// FMA accumulator each over steps of 8, then [`hsum_ps`] (tinyBLAS's
    /// `hsum`: halves, `movehl`, `movehdup`).
    ///
    /// # Safety
    /// AVX2+FMA+F16C; `n` (a multiple of 8) values at `x` and every `a[c]`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn sgemm_dots<L: Load, const C: usize>(
        n: usize,
        x: *const u8,
        a: [*const u8; C],
    ) -> [f32; C] {
        let mut acc = [_mm256_setzero_ps(); C];
        let mut i = 0;
        while i < n {
            // SAFETY: i + 8 <= n.
            unsafe {
                let xv = L::load8(x, i);
                for c in 0..C {
                    acc[c] = _mm256_fmadd_ps(xv, L::load8(a[c], i), acc[c]);
                }
            }
            i += 8;
        }
        acc.map(|v| hsum_ps(v))
    }

    /// Checks a tinyBLAS-order dot's shapes.
    fn check_sgemm(name: &str, n: usize, elem: usize, w: &[u8], a: &[u8]) {
        check(name, n, elem, w, a);
        assert!(
            n.is_multiple_of(8),
            "{name} tinyBLAS-order dot: {n} values are not whole steps of 8"
        );
    }

    macro_rules! sgemm_fns {
        ($dot:ident, $tile:ident, $L:ty, $tname:literal, $scalar:ident) => {
            pub(super) fn $dot(n: usize, w: &[u8], a: &[u8]) -> f32 {
                check_sgemm($tname, n, <$L>::ELEM, w, a);
                if !has_avx2() {
                    return $scalar(n, w, a);
                }
                // SAFETY: lengths checked above, features checked above.
                unsafe { sgemm_dots::<$L, 1>(n, w.as_ptr(), [a.as_ptr()])[0] }
            }

            pub(super) fn $tile(n: usize, w: &[&[u8]], a: &[&[u8]], out: &mut [f32]) {
                check_tile($tname, n, <$L>::ELEM, w, a, out);
                assert!(
                    n.is_multiple_of(8),
                    "{} tinyBLAS-order tile: {n} values",
                    $tname
                );
                if !has_avx2() {
                    return tile_by_dots(n, w, a, out, $scalar);
                }
                fn run<const R: usize, const C: usize>(
                    n: usize,
                    w: &[&[u8]],
                    a: &[&[u8]],
                    out: &mut [f32],
                ) {
                    let ap: [*const u8; C] = std::array::from_fn(|c| a[c].as_ptr());
                    let mut res = [[0f32; R]; C];
                    let ahead = super::super::legacy::prefetch_ahead_bytes(R * n * <$L>::ELEM);
                    for r in 0..R {
                        let p = w[r].as_ptr();
                        let mut off = 0;
                        while off < n * <$L>::ELEM {
                            // SAFETY: a prefetch never faults.
                            unsafe {
                                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(ahead + off).cast())
                            };
                            off += 64;
                        }
                        // SAFETY: shapes checked by check_tile, features by has_avx2.
                        let d = unsafe { sgemm_dots::<$L, C>(n, p, ap) };
                        for c in 0..C {
                            res[c][r] = d[c];
                        }
                    }
                    store_tile(&res, out);
                }
                tile_shape!(w.len(), a.len(), run(n, w, a, out))
            }
        };
    }

    sgemm_fns!(
        sgemm_dot_f32_avx2,
        sgemm_tile_f32,
        LF32,
        "F32",
        sgemm_dot_f32_scalar
    );
    sgemm_fns!(
        sgemm_dot_f16_avx2,
        sgemm_tile_f16,
        LF16,
        "F16",
        sgemm_dot_f16_scalar
    );
    sgemm_fns!(
        sgemm_dot_bf16_avx2,
        sgemm_tile_bf16,
        LBf16,
        "BF16",
        sgemm_dot_bf16_scalar
    );

    // ---- AVX-512F (compiles, untested: see the module docs) ----

    pub(super) fn vec_dot_f32_avx512(n: usize, w: &[u8], a: &[u8]) -> f32 {
        check("F32", n, 4, w, a);
        if !has_avx512() {
            return vec_dot_f32_scalar(n, w, a);
        }
        // SAFETY: lengths checked above, features checked above.
        unsafe { f32_avx512(n, w.as_ptr().cast(), a.as_ptr().cast()) }
    }

    /// Four 16-lane accumulators, 64 values per step, then 16, then a masked tail.
    #[target_feature(enable = "avx512f")]
    unsafe fn f32_avx512(n: usize, x: *const f32, y: *const f32) -> f32 {
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY (all loads): i + width <= n, or masked to the values left.
        unsafe {
            while i + 64 <= n {
                for (k, acc) in acc.iter_mut().enumerate() {
                    let xv = _mm512_loadu_ps(x.add(i + 16 * k));
                    let yv = _mm512_loadu_ps(y.add(i + 16 * k));
                    *acc = _mm512_fmadd_ps(xv, yv, *acc);
                }
                i += 64;
            }
            while i + 16 <= n {
                acc[0] =
                    _mm512_fmadd_ps(_mm512_loadu_ps(x.add(i)), _mm512_loadu_ps(y.add(i)), acc[0]);
                i += 16;
            }
            if i < n {
                let m: __mmask16 = (1u16 << (n - i)) - 1;
                let xv = _mm512_maskz_loadu_ps(m, x.add(i));
                let yv = _mm512_maskz_loadu_ps(m, y.add(i));
                acc[1] = _mm512_fmadd_ps(xv, yv, acc[1]);
            }
        }
        let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        _mm512_reduce_add_ps(s)
    }

    pub(super) fn vec_dot_f16_avx512(n: usize, w: &[u8], a: &[u8]) -> f32 {
        check("F16", n, 2, w, a);
        if !has_avx512() {
            return vec_dot_f16_scalar(n, w, a);
        }
        // SAFETY: lengths checked above, features checked above.
        unsafe { f16_avx512(n, w.as_ptr().cast(), a.as_ptr().cast()) }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn f16_avx512(n: usize, x: *const u16, y: *const u16) -> f32 {
        let mut acc = [_mm512_setzero_ps(); 2];
        let mut i = 0;
        // SAFETY (all loads): i + 16 <= n, or masked to the values left.
        unsafe {
            while i + 32 <= n {
                for (k, acc) in acc.iter_mut().enumerate() {
                    let xv = _mm512_cvtph_ps(_mm256_loadu_si256(x.add(i + 16 * k).cast()));
                    let yv = _mm512_cvtph_ps(_mm256_loadu_si256(y.add(i + 16 * k).cast()));
                    *acc = _mm512_fmadd_ps(xv, yv, *acc);
                }
                i += 32;
            }
            while i < n {
                let left = (n - i).min(16);
                let m: __mmask16 = if left == 16 {
                    u16::MAX
                } else {
                    (1u16 << left) - 1
                };
                // Masked 16-bit loads need AVX-512BW; load the halves through f32 lanes instead.
                let mut xs = [0u16; 16];
                let mut ys = [0u16; 16];
                std::ptr::copy_nonoverlapping(x.add(i), xs.as_mut_ptr(), left);
                std::ptr::copy_nonoverlapping(y.add(i), ys.as_mut_ptr(), left);
                let xv = _mm512_cvtph_ps(_mm256_loadu_si256(xs.as_ptr().cast()));
                let yv = _mm512_cvtph_ps(_mm256_loadu_si256(ys.as_ptr().cast()));
                acc[0] = _mm512_mask3_fmadd_ps(xv, yv, acc[0], m);
                i += left;
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]))
    }
}

#[cfg(test)]
mod sgemm_tests {
    use super::*;

    /// The AVX2 tinyBLAS-order dot and tile give the scalar twin's bits.
    #[test]
    fn avx2_equals_scalar() {
        let n = 648;
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 20001) as f32 / 1000.0 - 10.0
        };
        let v: Vec<f32> = (0..3 * n).map(|_| next()).collect();
        for t in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
            let bytes: Vec<u8> = match t {
                GgmlType::F32 => bytemuck::cast_slice(&v).to_vec(),
                GgmlType::F16 => v
                    .iter()
                    .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                    .collect(),
                _ => v
                    .iter()
                    .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
                    .collect(),
            };
            let row = bytes.len() / 3;
            let (w, a0, a1) = (&bytes[..row], &bytes[row..2 * row], &bytes[2 * row..]);
            let scalar = sgemm_dot(t, SimdLevel::Scalar).unwrap();
            let best = sgemm_dot(t, SimdLevel::detect()).unwrap();
            let want = [scalar(n, w, a0), scalar(n, w, a1)];
            assert_eq!(best(n, w, a0).to_bits(), want[0].to_bits(), "{t:?}");
            if let Some(tile) = sgemm_tile(t, SimdLevel::detect()) {
                let mut out = [f32::NAN; 2];
                tile(n, &[w], &[a0, a1], &mut out);
                assert_eq!(out.map(f32::to_bits), want.map(f32::to_bits), "{t:?} tile");
            }
        }
    }
}
