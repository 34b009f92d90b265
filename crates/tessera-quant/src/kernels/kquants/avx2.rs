//! AVX2 + FMA + F16C variants of the K-quant dot kernels, and the small
//! helpers the IQ kernels share.
//!
//! The scheme is ggml's (`ggml-cpu/arch/x86/quants.c`): the weight's
//! integers are made non-negative bytes (Q3_K and Q6_K subtract their offset
//! afterwards), `_mm256_maddubs_epi16` multiplies them with the signed Q8_K
//! bytes and adds neighbouring pairs into `i16` (no saturation: at most
//! `2 · 63 · 127`), `_mm256_madd_epi16` weights those with the 16-bit
//! sub-block scales into `i32`, and each super-block ends with one `f32`
//! FMA of `d_w · d_a`. The mins of Q2_K/Q4_K/Q5_K and the offset of Q6_K come
//! from the activations' `bsums`.
//!
//! The public functions are the table's entry points: each checks that the
//! CPU has AVX2, FMA and F16C and runs the scalar twin if not, so calling
//! one through a safe `fn` pointer is sound everywhere.

use std::arch::x86_64::*;

use bytemuck::Pod;
use half::f16;

use super::{scalar, scales_q3_k};
use crate::blocks::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K};

/// Whether this CPU runs the kernels of this module.
pub(in crate::kernels) use crate::kernels::has_avx2;

/// Defines the table entry `$name`: checks the CPU, views the bytes as
/// blocks and runs the `#[target_feature]` kernel `$kernel`, or the scalar
/// twin `$scalar` on a CPU without AVX2/FMA/F16C.
macro_rules! entry_point {
    ($(#[$m:meta])* $name:ident, $block:ty, $kernel:ident, $scalar:path) => {
        $(#[$m])*
        pub(in crate::kernels) fn $name(n: usize, w: &[u8], a: &[u8]) -> f32 {
            if !$crate::kernels::kquants::avx2::has_avx2() {
                return $scalar(n, w, a);
            }
            let nb = $crate::kernels::kquants::super_blocks(n);
            let x = $crate::kernels::kquants::view::<$block>(w, nb);
            let y = $crate::kernels::kquants::view::<$crate::blocks::BlockQ8K>(a, nb);
            // SAFETY: the CPU has AVX2, FMA and F16C (checked above).
            unsafe { $kernel(&x, &y) }
        }
    };
}
pub(in crate::kernels) use entry_point;

entry_point!(
    /// Q2_K · Q8_K, AVX2.
    vec_dot_q2_k_q8_k, BlockQ2K, q2_k, scalar::vec_dot_q2_K_q8_K_scalar
);
entry_point!(
    /// Q3_K · Q8_K, AVX2.
    vec_dot_q3_k_q8_k, BlockQ3K, q3_k, scalar::vec_dot_q3_K_q8_K_scalar
);
entry_point!(
    /// Q4_K · Q8_K, AVX2.
    vec_dot_q4_k_q8_k, BlockQ4K, q4_k, scalar::vec_dot_q4_K_q8_K_scalar
);
entry_point!(
    /// Q5_K · Q8_K, AVX2.
    vec_dot_q5_k_q8_k, BlockQ5K, q5_k, scalar::vec_dot_q5_K_q8_K_scalar
);
entry_point!(
    /// Q6_K · Q8_K, AVX2.
    vec_dot_q6_k_q8_k, BlockQ6K, q6_k, scalar::vec_dot_q6_K_q8_K_scalar
);

// ------------------------------------------------------------------ helpers

/// The 32 bytes of `v` (any 32-byte `Pod`: `[u8; 32]`, `[i16; 16]` …).
#[inline]
#[target_feature(enable = "avx2")]
pub(in crate::kernels) fn load256<T: Pod>(v: &T) -> __m256i {
    const { assert!(std::mem::size_of::<T>() == 32) };
    // SAFETY: `v` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256((v as *const T).cast()) }
}

/// The 16 bytes of `v`.
#[inline]
#[target_feature(enable = "avx2")]
pub(in crate::kernels) fn load128<T: Pod>(v: &T) -> __m128i {
    const { assert!(std::mem::size_of::<T>() == 16) };
    // SAFETY: `v` is 16 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm_loadu_si128((v as *const T).cast()) }
}

/// How far ahead of the block being read the kernels prefetch, in bytes.
/// On the 2-core Zen 3 development machine the hardware prefetcher alone
/// left a 2-thread Q4_K..Q6_K GEMV at 70-80% of a plain read loop's
/// bandwidth; 1 KiB ahead gave 82-89%, 2 KiB 82-92% (noisy, shared host).
/// Running past the end of a row is harmless: a prefetch never faults, and
/// in a matrix the next row follows.
pub(in crate::kernels) const PREFETCH_AHEAD: usize = 2048;

/// Prefetches the cache lines `PREFETCH_AHEAD` bytes past block `i` of
/// `blocks` (every line of one block's size, so consecutive calls cover a
/// contiguous range).
#[inline]
#[target_feature(enable = "avx2")]
pub(in crate::kernels) fn prefetch_ahead<B>(blocks: &[B], i: usize) {
    let size = std::mem::size_of::<B>();
    let p = blocks
        .as_ptr()
        .cast::<i8>()
        .wrapping_add(i * size + PREFETCH_AHEAD);
    let mut off = 0;
    while off < size {
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off));
        off += 64;
    }
}

/// Half float → `f32` with F16C (exact).
#[inline]
#[target_feature(enable = "f16c")]
pub(in crate::kernels) fn f16_to_f32(h: f16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h.to_bits()))))
}

/// The sum of the 8 lanes.
#[inline]
#[target_feature(enable = "avx2")]
pub(in crate::kernels) fn hsum_ps(x: __m256) -> f32 {
    let r = _mm_add_ps(_mm256_extractf128_ps::<1>(x), _mm256_castps256_ps128(x));
    hsum_ps128(r)
}

/// The sum of the 4 lanes.
#[inline]
#[target_feature(enable = "avx2")]
pub(in crate::kernels) fn hsum_ps128(r: __m128) -> f32 {
    let r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    let r = _mm_add_ss(r, _mm_movehdup_ps(r));
    _mm_cvtss_f32(r)
}

/// `Σ x·y` of signed bytes, neighbouring pairs added into `i16`
/// (`maddubs` needs an unsigned first operand: move the signs onto `y`).
/// Exact while `|x|, |y| ≤ 127`.
#[inline]
#[target_feature(enable = "avx2")]
pub(in crate::kernels) fn mul_add_i8(x: __m256i, y: __m256i) -> __m256i {
    _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}

/// Shuffles that broadcast 16-bit element `2i` of each 128-bit lane over
/// lane 0 and element `2i + 1` over lane 1 (ggml's `get_scale_shuffle_q3k`):
/// a 32-value group's two 16-value sub-block scales.
pub(in crate::kernels) static SHUFFLE_PAIR: [[u8; 32]; 4] = {
    let mut t = [[0u8; 32]; 4];
    let mut i = 0;
    while i < 4 {
        let mut b = 0;
        while b < 32 {
            let elem = 2 * i + b / 16;
            t[i][b] = (2 * elem + b % 2) as u8;
            b += 1;
        }
        i += 1;
    }
    t
};

/// Shuffles that broadcast 16-bit element `i` over both lanes (ggml's
/// `get_scale_shuffle_k4`): a 32-value sub-block's one scale.
pub(in crate::kernels) static SHUFFLE_ONE: [[u8; 32]; 8] = {
    let mut t = [[0u8; 32]; 8];
    let mut i = 0;
    while i < 8 {
        let mut b = 0;
        while b < 32 {
            t[i][b] = (2 * i + b % 2) as u8;
            b += 1;
        }
        i += 1;
    }
    t
};

/// Byte shuffles that spread bytes `2i` and `2i + 1` over 8 bytes each
/// (ggml's `get_scale_shuffle`): Q6_K's two `i8` scales of a 32-value group.
pub(in crate::kernels) static SHUFFLE_BYTES: [[u8; 16]; 8] = {
    let mut t = [[0u8; 16]; 8];
    let mut i = 0;
    while i < 8 {
        let mut b = 0;
        while b < 16 {
            t[i][b] = (2 * i + b / 8) as u8;
            b += 1;
        }
        i += 1;
    }
    t
};

// ------------------------------------------------------------------ kernels

#[target_feature(enable = "avx2,fma,f16c")]
fn q2_k(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    let m3 = _mm256_set1_epi8(3);
    let m4 = _mm_set1_epi8(0xf);
    let mut acc = _mm256_setzero_ps();
    let xs = x;
    for (i, (x, y)) in x.iter().zip(y).enumerate() {
        prefetch_ahead(xs, i);
        let d = y.d * f16_to_f32(x.d);
        let dmin = -y.d * f16_to_f32(x.dmin);

        // scales[i]: low nibble the scale, high nibble the min of 16 values.
        let mins_and_scales = load128(&x.scales);
        let scales8 = _mm_and_si128(mins_and_scales, m4);
        let mins8 = _mm_and_si128(_mm_srli_epi16::<4>(mins_and_scales), m4);
        let mins = _mm256_cvtepi8_epi16(mins8);
        let prod = _mm256_madd_epi16(mins, load256(&y.bsums));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod), acc);

        let all_scales = _mm256_cvtepi8_epi16(scales8);
        let scales = [
            _mm256_permute2x128_si256::<0x00>(all_scales, all_scales),
            _mm256_permute2x128_si256::<0x11>(all_scales, all_scales),
        ];

        let qs: &[[u8; 32]; 2] = bytemuck::cast_ref(&x.qs);
        let q8: &[[i8; 32]; 8] = bytemuck::cast_ref(&y.qs);
        let mut sumi = _mm256_setzero_si256();
        for j in 0..2 {
            let q2bits = load256(&qs[j]);
            let q2 = [
                _mm256_and_si256(q2bits, m3),
                _mm256_and_si256(_mm256_srli_epi16::<2>(q2bits), m3),
                _mm256_and_si256(_mm256_srli_epi16::<4>(q2bits), m3),
                _mm256_and_si256(_mm256_srli_epi16::<6>(q2bits), m3),
            ];
            let mut p = [_mm256_setzero_si256(); 4];
            for k in 0..4 {
                let p16 = _mm256_maddubs_epi16(q2[k], load256(&q8[4 * j + k]));
                let sc = _mm256_shuffle_epi8(scales[j], load256(&SHUFFLE_PAIR[k]));
                p[k] = _mm256_madd_epi16(sc, p16);
            }
            let p01 = _mm256_add_epi32(p[0], p[1]);
            let p23 = _mm256_add_epi32(p[2], p[3]);
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p01, p23));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_ps(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q3_k(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
    let m3 = _mm256_set1_epi8(3);
    let four = _mm256_set1_epi8(4);
    let mut acc = _mm256_setzero_ps();
    let xs = x;
    for (i, (x, y)) in x.iter().zip(y).enumerate() {
        prefetch_ahead(xs, i);
        let d = y.d * f16_to_f32(x.d);

        let [w0, w1, w2, w3] = scales_q3_k(&x.scales).map(|w| w as i32);
        let scales128 = _mm_sub_epi8(_mm_set_epi32(w3, w2, w1, w0), _mm_set1_epi8(32));
        let all_scales = _mm256_cvtepi8_epi16(scales128);
        let scales = [
            _mm256_permute2x128_si256::<0x00>(all_scales, all_scales),
            _mm256_permute2x128_si256::<0x11>(all_scales, all_scales),
        ];
        let hbits = load256(&x.hmask);

        let qs: &[[u8; 32]; 2] = bytemuck::cast_ref(&x.qs);
        let q8: &[[i8; 32]; 8] = bytemuck::cast_ref(&y.qs);
        let mut sumi = _mm256_setzero_si256();
        for j in 0..2 {
            let q3bits = load256(&qs[j]);
            let q3l = [
                _mm256_and_si256(q3bits, m3),
                _mm256_and_si256(_mm256_srli_epi16::<2>(q3bits), m3),
                _mm256_and_si256(_mm256_srli_epi16::<4>(q3bits), m3),
                _mm256_and_si256(_mm256_srli_epi16::<6>(q3bits), m3),
            ];
            let mut p = [_mm256_setzero_si256(); 4];
            for k in 0..4 {
                // q = low - 4·!hbit: multiply both parts (non-negative) and subtract.
                let m = _mm256_set1_epi8((1u8 << (4 * j + k)) as i8);
                let set = _mm256_cmpeq_epi8(_mm256_and_si256(hbits, m), m);
                let q3h = _mm256_andnot_si256(set, four);
                let q8v = load256(&q8[4 * j + k]);
                let p16 = _mm256_sub_epi16(
                    _mm256_maddubs_epi16(q3l[k], q8v),
                    _mm256_maddubs_epi16(q3h, q8v),
                );
                let sc = _mm256_shuffle_epi8(scales[j], load256(&SHUFFLE_PAIR[k]));
                p[k] = _mm256_madd_epi16(sc, p16);
            }
            let p01 = _mm256_add_epi32(p[0], p[1]);
            let p23 = _mm256_add_epi32(p[2], p[3]);
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p01, p23));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_ps(acc)
}

/// [`scales_mins_k4`] in SIMD registers: `head` is the first 16 bytes of a
/// Q4_K/Q5_K block (`d`, `dmin`, the 12 packed scale bytes); the result
/// holds the 8 scales in bytes 0..8 and the 8 mins in bytes 8..16. (The
/// scalar unpack and its insertion into a vector took a fifth of the
/// Q4_K GEMV's instructions.)
#[inline]
#[target_feature(enable = "avx2")]
pub(in crate::kernels) fn scales_mins_k4_v(head: __m128i) -> __m128i {
    // Words of `head`: d|dmin, then u0, u1, u2 as in `scales_mins_k4`.
    // Scales lo/hi and mins lo/hi: the low six bits of u0 and u1, the
    // nibbles of u2 with the top two bits of u0 and u1 above them.
    let low = _mm_srlv_epi32(
        _mm_shuffle_epi32::<0b11_10_11_01>(head), // u0, u2, u1, u2
        _mm_setr_epi32(0, 0, 0, 4),
    );
    let low = _mm_and_si128(
        low,
        _mm_setr_epi32(0x3f3f_3f3f, 0x0f0f_0f0f, 0x3f3f_3f3f, 0x0f0f_0f0f),
    );
    let top = _mm_srli_epi32::<2>(_mm_shuffle_epi32::<0b10_10_01_01>(head)); // u0, u0, u1, u1
    let top = _mm_and_si128(top, _mm_setr_epi32(0, 0x3030_3030, 0, 0x3030_3030));
    _mm_or_si128(low, top)
}

/// The first 16 bytes of a block (Q4_K/Q5_K: `d`, `dmin`, `scales`).
#[inline]
#[target_feature(enable = "avx2")]
pub(in crate::kernels) fn head128<B: Pod>(x: &B) -> __m128i {
    const { assert!(std::mem::size_of::<B>() >= 16) };
    // SAFETY: `x` has at least 16 readable bytes; `loadu` is unaligned.
    unsafe { _mm_loadu_si128((x as *const B).cast()) }
}

/// The 8 scales of a Q4_K/Q5_K block (`head`: [`head128`]) as `i16` in
/// both lanes, and the mins term `Σ_j bsums[j] · min[j / 2]` as 4 `i32`
/// (to be summed).
#[inline]
#[target_feature(enable = "avx2")]
fn k4_scales_and_mins(head: __m128i, bsums: &[i16; 16]) -> (__m256i, __m128i) {
    let mins_and_scales = _mm256_cvtepu8_epi16(scales_mins_k4_v(head));
    let q8sums = load256(bsums);
    // Sums of bsums by pairs: the 8 sums of 32 values, one per min.
    let q8s = _mm_hadd_epi16(
        _mm256_castsi256_si128(q8sums),
        _mm256_extracti128_si256::<1>(q8sums),
    );
    let prod = _mm_madd_epi16(_mm256_extracti128_si256::<1>(mins_and_scales), q8s);
    let scales = _mm256_permute2x128_si256::<0x00>(mins_and_scales, mins_and_scales);
    (scales, prod)
}

/// A K-quant's `vec_dot` as a chain of per-super-block steps: the one-row
/// kernels here and the 8-row GEMV ([`super::gemv8`]) run the same steps,
/// so both give the same bits.
pub(in crate::kernels) trait VecDotChain: Pod {
    /// The running sums of one row.
    type Acc: Copy;

    /// The scalar twin of the whole dot (for a CPU without AVX2).
    const SCALAR: crate::kernels::VecDot;

    /// The sums before the first super-block.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C.
    unsafe fn start() -> Self::Acc;

    /// Adds super-block `self` times `y`.
    ///
    /// # Safety
    /// As [`VecDotChain::start`].
    unsafe fn step(&self, y: &BlockQ8K, acc: &mut Self::Acc);

    /// The row's result.
    ///
    /// # Safety
    /// As [`VecDotChain::start`].
    unsafe fn finish(acc: Self::Acc) -> f32;
}

/// One row: the chain over its super-blocks, prefetching ahead.
#[target_feature(enable = "avx2,fma,f16c")]
fn chain<B: VecDotChain>(x: &[B], y: &[BlockQ8K]) -> f32 {
    // SAFETY (all three): this function's features.
    let mut acc = unsafe { B::start() };
    for (i, (xb, yb)) in x.iter().zip(y).enumerate() {
        prefetch_ahead(x, i);
        unsafe { xb.step(yb, &mut acc) };
    }
    unsafe { B::finish(acc) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    chain(x, y)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q5_k(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    chain(x, y)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    chain(x, y)
}

impl VecDotChain for BlockQ4K {
    /// The 8 lanes of `d·Σ sc·(q·y)` and the 4 lanes of `−dmin·Σ m·bsum`.
    type Acc = (__m256, __m128);

    const SCALAR: crate::kernels::VecDot = scalar::vec_dot_q4_K_q8_K_scalar;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn start() -> Self::Acc {
        (_mm256_setzero_ps(), _mm_setzero_ps())
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn step(&self, y: &BlockQ8K, (acc, acc_m): &mut Self::Acc) {
        let x = self;
        let m4 = _mm256_set1_epi8(0xf);
        let d = y.d * f16_to_f32(x.d);
        let dmin = -y.d * f16_to_f32(x.dmin);
        let (scales, mins) = k4_scales_and_mins(head128(x), &y.bsums);
        *acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(mins), *acc_m);

        let qs: &[[u8; 32]; 4] = bytemuck::cast_ref(&x.qs);
        let q8: &[[i8; 32]; 8] = bytemuck::cast_ref(&y.qs);
        let mut sumi = _mm256_setzero_si256();
        for j in 0..4 {
            let scale_l = _mm256_shuffle_epi8(scales, load256(&SHUFFLE_ONE[2 * j]));
            let scale_h = _mm256_shuffle_epi8(scales, load256(&SHUFFLE_ONE[2 * j + 1]));
            let q4bits = load256(&qs[j]);
            let q4l = _mm256_and_si256(q4bits, m4);
            let q4h = _mm256_and_si256(_mm256_srli_epi16::<4>(q4bits), m4);
            let p16l = _mm256_maddubs_epi16(q4l, load256(&q8[2 * j]));
            let p16h = _mm256_maddubs_epi16(q4h, load256(&q8[2 * j + 1]));
            let p = _mm256_add_epi32(
                _mm256_madd_epi16(scale_l, p16l),
                _mm256_madd_epi16(scale_h, p16h),
            );
            sumi = _mm256_add_epi32(sumi, p);
        }
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), *acc);
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn finish((acc, acc_m): Self::Acc) -> f32 {
        hsum_ps(acc) + hsum_ps128(acc_m)
    }
}

impl VecDotChain for BlockQ5K {
    /// The 8 lanes of `d·Σ sc·(q·y)` and the scalar `−Σ dmin·Σ m·bsum`
    /// (ggml's Q5_K keeps the mins as a scalar fused per super-block,
    /// unlike its Q4_K).
    type Acc = (__m256, f32);

    const SCALAR: crate::kernels::VecDot = scalar::vec_dot_q5_K_q8_K_scalar;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn start() -> Self::Acc {
        (_mm256_setzero_ps(), 0.0)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn step(&self, y: &BlockQ8K, (acc, summs): &mut Self::Acc) {
        let x = self;
        let m4 = _mm256_set1_epi8(0xf);
        let sixteen = _mm256_set1_epi8(16);
        let d = y.d * f16_to_f32(x.d);
        let dmin = -y.d * f16_to_f32(x.dmin);
        let (scales, mins) = k4_scales_and_mins(head128(x), &y.bsums);
        let m = _mm_hadd_epi32(
            _mm_hadd_epi32(mins, _mm_setzero_si128()),
            _mm_setzero_si128(),
        );
        *summs = dmin.mul_add(_mm_cvtsi128_si32(m) as f32, *summs);

        let hbits = load256(&x.qh);
        let qs: &[[u8; 32]; 4] = bytemuck::cast_ref(&x.qs);
        let q8: &[[i8; 32]; 8] = bytemuck::cast_ref(&y.qs);
        let mut sumi = _mm256_setzero_si256();
        for j in 0..4 {
            let scale_l = _mm256_shuffle_epi8(scales, load256(&SHUFFLE_ONE[2 * j]));
            let scale_h = _mm256_shuffle_epi8(scales, load256(&SHUFFLE_ONE[2 * j + 1]));
            // The fifth bit, as 16: bit 2j (low nibbles) or 2j + 1 (high) of
            // qh moved to bit 4. A 16-bit shift by at most 4 carries no other
            // byte's bit into bit 4.
            let (h_lo, h_hi) = match j {
                0 => (_mm256_slli_epi16::<4>(hbits), _mm256_slli_epi16::<3>(hbits)),
                1 => (_mm256_slli_epi16::<2>(hbits), _mm256_slli_epi16::<1>(hbits)),
                2 => (hbits, _mm256_srli_epi16::<1>(hbits)),
                _ => (_mm256_srli_epi16::<2>(hbits), _mm256_srli_epi16::<3>(hbits)),
            };
            let q5bits = load256(&qs[j]);
            let q5l = _mm256_or_si256(
                _mm256_and_si256(q5bits, m4),
                _mm256_and_si256(h_lo, sixteen),
            );
            let q5h = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(q5bits), m4),
                _mm256_and_si256(h_hi, sixteen),
            );
            let p16l = _mm256_maddubs_epi16(q5l, load256(&q8[2 * j]));
            let p16h = _mm256_maddubs_epi16(q5h, load256(&q8[2 * j + 1]));
            let p = _mm256_add_epi32(
                _mm256_madd_epi16(scale_l, p16l),
                _mm256_madd_epi16(scale_h, p16h),
            );
            sumi = _mm256_add_epi32(sumi, p);
        }
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), *acc);
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn finish((acc, summs): Self::Acc) -> f32 {
        hsum_ps(acc) + summs
    }
}

impl VecDotChain for BlockQ6K {
    /// The 8 lanes of `d·Σ sc·(q·y)`.
    type Acc = __m256;

    const SCALAR: crate::kernels::VecDot = scalar::vec_dot_q6_K_q8_K_scalar;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn start() -> Self::Acc {
        _mm256_setzero_ps()
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn step(&self, y: &BlockQ8K, acc: &mut Self::Acc) {
        let x = self;
        let m3 = _mm256_set1_epi8(3);
        let m15 = _mm256_set1_epi8(15);
        let d = y.d * f16_to_f32(x.d);

        // q - 32 = q' - 32: dot with the unsigned q' and subtract 32·Σ sc·bsum.
        let scales = _mm256_cvtepi8_epi16(load128(&x.scales));
        let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(load256(&y.bsums), scales));
        // Scales 0..8 (sub-blocks of the first 128 values) in both halves,
        // then 8..16: a vector's two 16-value halves take scales 2i and
        // 2i + 1 of one of them (`SHUFFLE_PAIR`).
        let halves = [
            _mm256_permute2x128_si256::<0x00>(scales, scales),
            _mm256_permute2x128_si256::<0x11>(scales, scales),
        ];

        let ql: &[[u8; 32]; 4] = bytemuck::cast_ref(&x.ql);
        let qh: &[[u8; 32]; 2] = bytemuck::cast_ref(&x.qh);
        let q8: &[[i8; 32]; 8] = bytemuck::cast_ref(&y.qs);
        let mut sumi = _mm256_setzero_si256();
        for j in 0..2 {
            let bits1 = load256(&ql[2 * j]);
            let bits2 = load256(&ql[2 * j + 1]);
            let hb = load256(&qh[j]);
            let h = [
                _mm256_slli_epi16::<4>(_mm256_and_si256(hb, m3)),
                _mm256_slli_epi16::<2>(_mm256_and_si256(hb, _mm256_set1_epi8(12))),
                _mm256_and_si256(hb, _mm256_set1_epi8(48)),
                _mm256_srli_epi16::<2>(_mm256_and_si256(hb, _mm256_set1_epi8(-64))),
            ];
            let q = [
                _mm256_or_si256(_mm256_and_si256(bits1, m15), h[0]),
                _mm256_or_si256(_mm256_and_si256(bits2, m15), h[1]),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(bits1), m15), h[2]),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(bits2), m15), h[3]),
            ];
            let mut p = [_mm256_setzero_si256(); 4];
            for k in 0..4 {
                let p16 = _mm256_maddubs_epi16(q[k], load256(&q8[4 * j + k]));
                let sc = _mm256_shuffle_epi8(halves[j], load256(&SHUFFLE_PAIR[k]));
                p[k] = _mm256_madd_epi16(sc, p16);
            }
            let p01 = _mm256_add_epi32(p[0], p[1]);
            let p23 = _mm256_add_epi32(p[2], p[3]);
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p01, p23));
        }
        sumi = _mm256_sub_epi32(sumi, offset);
        *acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), *acc);
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn finish(acc: Self::Acc) -> f32 {
        hsum_ps(acc)
    }
}
