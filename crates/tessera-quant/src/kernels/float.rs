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
//! product in f32, summed in f64 (`ggml_float`). The SIMD variants sum in
//! f32 with FMA over several accumulators, so they differ from the twin by
//! f32 rounding of the sum (the tests bound it relative to `Σ|w·a|`).
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
        return match t {
            GgmlType::F32 => Some(x86::tile_f32),
            GgmlType::F16 => Some(x86::tile_f16),
            GgmlType::BF16 => Some(x86::tile_bf16),
            _ => None,
        };
    }
    let _ = (t, level);
    None
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
        unsafe { f32_avx2(n, w.as_ptr().cast(), a.as_ptr().cast()) }
    }

    /// Four 8-lane FMA accumulators, 32 values per step, then 8, then one.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn f32_avx2(n: usize, x: *const f32, y: *const f32) -> f32 {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY (all loads): i + width <= n, and x, y point to n values.
        unsafe {
            while i + 32 <= n {
                for (k, acc) in acc.iter_mut().enumerate() {
                    let xv = _mm256_loadu_ps(x.add(i + 8 * k));
                    let yv = _mm256_loadu_ps(y.add(i + 8 * k));
                    *acc = _mm256_fmadd_ps(xv, yv, *acc);
                }
                i += 32;
            }
            while i + 8 <= n {
                acc[0] =
                    _mm256_fmadd_ps(_mm256_loadu_ps(x.add(i)), _mm256_loadu_ps(y.add(i)), acc[0]);
                i += 8;
            }
            let mut sum = hsum_ps(_mm256_add_ps(
                _mm256_add_ps(acc[0], acc[1]),
                _mm256_add_ps(acc[2], acc[3]),
            ));
            while i < n {
                sum += x.add(i).read_unaligned() * y.add(i).read_unaligned();
                i += 1;
            }
            sum
        }
    }

    pub(super) fn vec_dot_f16_avx2(n: usize, w: &[u8], a: &[u8]) -> f32 {
        check("F16", n, 2, w, a);
        if !has_avx2() {
            return vec_dot_f16_scalar(n, w, a);
        }
        // SAFETY: lengths checked above, features checked above.
        unsafe { f16_avx2(n, w.as_ptr().cast(), a.as_ptr().cast()) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load_f16x8(p: *const u16) -> __m256 {
        // SAFETY: the caller guarantees 8 readable halves at p.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn f16_avx2(n: usize, x: *const u16, y: *const u16) -> f32 {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY (all loads): i + width <= n, and x, y point to n values.
        unsafe {
            while i + 32 <= n {
                for (k, acc) in acc.iter_mut().enumerate() {
                    let xv = load_f16x8(x.add(i + 8 * k));
                    let yv = load_f16x8(y.add(i + 8 * k));
                    *acc = _mm256_fmadd_ps(xv, yv, *acc);
                }
                i += 32;
            }
            while i + 8 <= n {
                acc[0] = _mm256_fmadd_ps(load_f16x8(x.add(i)), load_f16x8(y.add(i)), acc[0]);
                i += 8;
            }
            let mut sum = hsum_ps(_mm256_add_ps(
                _mm256_add_ps(acc[0], acc[1]),
                _mm256_add_ps(acc[2], acc[3]),
            ));
            while i < n {
                let xv = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(
                    x.add(i).read_unaligned(),
                ))));
                let yv = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(
                    y.add(i).read_unaligned(),
                ))));
                sum += xv * yv;
                i += 1;
            }
            sum
        }
    }

    pub(super) fn vec_dot_bf16_avx2(n: usize, w: &[u8], a: &[u8]) -> f32 {
        check("BF16", n, 2, w, a);
        if !has_avx2() {
            return vec_dot_bf16_scalar(n, w, a);
        }
        // SAFETY: lengths checked above, features checked above.
        unsafe { bf16_avx2(n, w.as_ptr().cast(), a.as_ptr().cast()) }
    }

    /// 8 bf16 → 8 f32: widen to 32 bits, shift into the high half.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load_bf16x8(p: *const u16) -> __m256 {
        // SAFETY: the caller guarantees 8 readable values at p.
        let h = unsafe { _mm_loadu_si128(p.cast()) };
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn bf16_avx2(n: usize, x: *const u16, y: *const u16) -> f32 {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY (all loads): i + width <= n, and x, y point to n values.
        unsafe {
            while i + 32 <= n {
                for (k, acc) in acc.iter_mut().enumerate() {
                    let xv = load_bf16x8(x.add(i + 8 * k));
                    let yv = load_bf16x8(y.add(i + 8 * k));
                    *acc = _mm256_fmadd_ps(xv, yv, *acc);
                }
                i += 32;
            }
            while i + 8 <= n {
                acc[0] = _mm256_fmadd_ps(load_bf16x8(x.add(i)), load_bf16x8(y.add(i)), acc[0]);
                i += 8;
            }
            let mut sum = hsum_ps(_mm256_add_ps(
                _mm256_add_ps(acc[0], acc[1]),
                _mm256_add_ps(acc[2], acc[3]),
            ));
            while i < n {
                let xv = f32::from_bits(u32::from(x.add(i).read_unaligned()) << 16);
                let yv = f32::from_bits(u32::from(y.add(i).read_unaligned()) << 16);
                sum += xv * yv;
                i += 1;
            }
            sum
        }
    }

    // ---- Tiles: up to 4 weight rows × 2 activation rows per pass ----

    /// 8 values of a float type at element `i` of `p`, as f32.
    trait Load {
        const ELEM: usize;
        unsafe fn load8(p: *const u8, i: usize) -> __m256;
        fn one(b: &[u8], i: usize) -> f32;
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
        fn one(b: &[u8], i: usize) -> f32 {
            f32_at(b, i)
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
        fn one(b: &[u8], i: usize) -> f32 {
            half::f16::from_bits(u16_at(b, i)).to_f32()
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
        fn one(b: &[u8], i: usize) -> f32 {
            f32::from_bits(u32::from(u16_at(b, i)) << 16)
        }
    }

    /// The tile body: 8 values per step, one accumulator per pair, the
    /// values past the last multiple of 8 in scalar f32.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile<L: Load, const R: usize, const C: usize>(
        n: usize,
        w: [&[u8]; R],
        a: [&[u8]; C],
    ) -> [[f32; R]; C] {
        let mut acc = [[_mm256_setzero_ps(); R]; C];
        let wp = w.map(|r| r.as_ptr());
        let ap = a.map(|r| r.as_ptr());
        // The next tile's rows, at the same column (see legacy's tiles).
        let ahead = super::super::legacy::prefetch_ahead_bytes(R * n * L::ELEM);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n values in every row.
            unsafe {
                let y: [__m256; C] = std::array::from_fn(|c| L::load8(ap[c], i));
                for r in 0..R {
                    if (i * L::ELEM) % 64 == 0 {
                        _mm_prefetch::<_MM_HINT_T0>(wp[r].wrapping_add(ahead + i * L::ELEM).cast());
                    }
                    let x = L::load8(wp[r], i);
                    for c in 0..C {
                        acc[c][r] = _mm256_fmadd_ps(x, y[c], acc[c][r]);
                    }
                }
            }
            i += 8;
        }
        let mut out = [[0f32; R]; C];
        for c in 0..C {
            for r in 0..R {
                let mut s = hsum_ps(acc[c][r]);
                for j in i..n {
                    s += L::one(w[r], j) * L::one(a[c], j);
                }
                out[c][r] = s;
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
