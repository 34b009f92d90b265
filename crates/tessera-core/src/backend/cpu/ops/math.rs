//! Scalar functions the ops share, each written to give ggml-cpu's exact
//! bits on an x86-64 AVX2 + FMA build:
//!
//! - [`v_expf`]: one lane of ggml's vector `ggml_v_expf` (an ARM-derived
//!   polynomial, not libm's `expf`), used by ggml for the 8-wide parts of
//!   silu, swiglu and softmax; the leftover tail of a row uses libm `expf`.
//! - [`hsum8`]: the AVX2 horizontal sum ggml uses to fold 8 lanes to one.
//! - [`gelu`]: ggml's `GGML_GELU_FP16` path (input rounded to f16, looked up
//!   in a table of f16 results, clamped outside ±10), [`gelu_erf`].
//! - libm bindings: Rust's `f32::exp`/`tanh`/`sin`/`cos` already call the
//!   platform's `expf`/`tanhf`/`sinf`/`cosf`; [`erff`] binds the C function.
//!
//! Every kernel that uses `f32::mul_add` is built twice by [`fma_twin!`]:
//! a portable `*_scalar` twin and a copy compiled with AVX2 + FMA enabled,
//! picked at run time. Both give the same bits (a fused multiply-add is
//! exact either way); the FMA copy only avoids the slow software `fmaf`.

use std::sync::OnceLock;

use half::f16;

/// `0x1.8p23f`: adding it rounds to an integer held in the low mantissa bits.
const SHIFT: f32 = 12_582_912.0;
/// `0x1.715476p+0f` (log2 e).
const LOG2E: f32 = f32::from_bits(0x3FB8_AA3B);
/// `0x1.62e4p-1f`, the high part of ln 2.
const LN2_HI: f32 = f32::from_bits(0x3F31_7200);
/// `0x1.7f7d1cp-20f`, the low part of ln 2.
const LN2_LO: f32 = f32::from_bits(0x35BF_BE8E);
/// Polynomial coefficients of `ggml_v_expf`, lowest degree first.
const EXP_C: [f32; 5] = [
    f32::from_bits(0x3F7F_FFF6), // 0x1.ffffecp-1f
    f32::from_bits(0x3EFF_FEDB), // 0x1.fffdb6p-2f
    f32::from_bits(0x3E2A_AF33), // 0x1.555e66p-3f
    f32::from_bits(0x3D2B_9F17), // 0x1.573e2ep-5f
    f32::from_bits(0x3C07_2010), // 0x1.0e4020p-7f
];

/// ggml's `GELU_COEF_A`.
const GELU_COEF_A: f32 = 0.044715;
/// ggml's `SQRT_2_OVER_PI` (as f32).
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
/// ggml's `SQRT_2_INV` (as f32).
const SQRT_2_INV: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// Width of ggml's AVX2 vector loops: rows are processed in groups of this
/// many values with the vector formulas, the tail with the scalar ones.
pub const LANES: usize = 8;

/// Whether the CPU has AVX2 and FMA (cached by the standard library).
#[inline]
pub fn has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines a kernel twice, a portable `$scalar` and an AVX2 + FMA build of
/// the same body, and a dispatcher `$name` that picks the FMA build when the
/// CPU has it. The body must be safe code; both builds give the same bits.
macro_rules! fma_twin {
    ($(#[$doc:meta])* $vis:vis fn $name:ident / $scalar:ident / $fma:ident
        ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        /// The portable twin of the dispatcher of the same name without
        /// `_scalar` (same results).
        $vis fn $scalar($($arg: $ty),*) $(-> $ret)? $body

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        fn $fma($($arg: $ty),*) $(-> $ret)? $body

        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            if $crate::backend::cpu::ops::math::has_fma() {
                // SAFETY: the CPU has AVX2 and FMA, the features `$fma` is built for.
                return unsafe { $fma($($arg),*) };
            }
            $scalar($($arg),*)
        }
    };
}

/// One lane of ggml's AVX2 `ggml_v_expf` (max error ~1.5 ulp; flushes to
/// infinity above ~88.38 and to zero below ~-103.97).
#[inline(always)]
pub fn v_expf(x: f32) -> f32 {
    let z = x.mul_add(LOG2E, SHIFT);
    let n = z - SHIFT;
    let b = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    let e = z.to_bits() << 23;
    let k = f32::from_bits(e.wrapping_add(1f32.to_bits()));
    let u = b * b;
    let j = EXP_C[4]
        .mul_add(b, EXP_C[3])
        .mul_add(u, EXP_C[2].mul_add(b, EXP_C[1]))
        .mul_add(u, EXP_C[0] * b);
    if n.abs() <= 126.0 || n.is_nan() {
        return k.mul_add(j, k);
    }
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = f32::from_bits(g.wrapping_add(0x7F00_0000));
    let s2 = f32::from_bits(e.wrapping_sub(g));
    if n.abs() > 192.0 {
        s1 * s1
    } else {
        s2.mul_add(j, s2) * s1
    }
}

/// ggml's AVX2 horizontal sum of 8 lanes: `((a4+a0)+(a6+a2)) + ((a5+a1)+(a7+a3))`.
#[inline(always)]
pub fn hsum8(a: &[f32; LANES]) -> f32 {
    let t = [a[4] + a[0], a[5] + a[1], a[6] + a[2], a[7] + a[3]];
    (t[0] + t[2]) + (t[1] + t[3])
}

/// SiLU as ggml's vector path computes it: `x / (1 + v_expf(0 - x))`.
#[inline(always)]
pub fn silu_v(x: f32) -> f32 {
    x / (1.0 + v_expf(0.0 - x))
}

/// SiLU as ggml's scalar tail computes it: `x / (1 + expf(-x))`.
#[inline(always)]
pub fn silu_libm(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// ggml's `ggml_gelu_f32`, the tanh approximation in f32, as GCC compiles
/// it in ggml-cpu (`1 + GELU_COEF_A*x*x` contracted to one FMA):
/// `(0.5 x) (1 + tanh((SQRT_2_OVER_PI x) fma(GELU_COEF_A x, x, 1)))`.
#[inline]
pub fn gelu_f32(x: f32) -> f32 {
    let inner = (GELU_COEF_A * x).mul_add(x, 1.0);
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * inner).tanh())
}

/// `ggml_table_gelu_f16`: [`gelu_f32`] of every f16 value, rounded to f16.
/// Built once on first use (128 KiB).
fn gelu_table() -> &'static [u16] {
    static TABLE: OnceLock<Box<[u16]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|i| f16::from_f32(gelu_f32(f16::from_bits(i).to_f32())).to_bits())
            .collect()
    })
}

/// GELU as ggml-cpu computes it for f32 (`GGML_GELU_FP16`): 0 at or below
/// -10, `x` at or above 10, else the f16 table entry of `x` rounded to f16.
#[inline]
pub fn gelu(x: f32) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        f16::from_bits(gelu_table()[usize::from(f16::from_f32(x).to_bits())]).to_f32()
    }
}

/// [`gelu`] times `g`, as ggml's `ggml_vec_geglu_f32` (the clamped high end
/// is `x * g`, the low end exactly 0).
#[inline]
pub fn geglu(x: f32, g: f32) -> f32 {
    if x <= -10.0 {
        0.0
    } else {
        gelu(x) * g
    }
}

/// ggml's erf GELU: `0.5 * x * (1 + erff(x / sqrt 2))`.
#[inline]
pub fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erff(x * SQRT_2_INV))
}

extern "C" {
    #[link_name = "erff"]
    fn c_erff(x: f32) -> f32;
}

/// The C library's `erff` (what ggml calls; Rust has no stable f32 erf).
#[inline]
pub fn erff(x: f32) -> f32 {
    // SAFETY: `erff` is a pure C99 libm function of one float.
    unsafe { c_erff(x) }
}

fma_twin! {
    /// `out[i] = silu(x[i])` with ggml's split: groups of [`LANES`] from the
    /// start use [`silu_v`], the tail [`silu_libm`].
    pub fn silu_row / silu_row_scalar / silu_row_fma (x: &[f32], out: &mut [f32]) {
        let split = x.len() / LANES * LANES;
        for (o, &v) in out[..split].iter_mut().zip(&x[..split]) {
            *o = silu_v(v);
        }
        for (o, &v) in out[split..].iter_mut().zip(&x[split..]) {
            *o = silu_libm(v);
        }
    }
}

fma_twin! {
    /// `out[i] = silu(g[i]) * u[i]` with ggml's split (see [`silu_row`]).
    pub fn swiglu_row / swiglu_row_scalar / swiglu_row_fma (g: &[f32], u: &[f32], out: &mut [f32]) {
        let split = g.len() / LANES * LANES;
        for ((o, &a), &b) in out[..split].iter_mut().zip(&g[..split]).zip(&u[..split]) {
            *o = silu_v(a) * b;
        }
        for ((o, &a), &b) in out[split..].iter_mut().zip(&g[split..]).zip(&u[split..]) {
            *o = silu_libm(a) * b;
        }
    }
}

fma_twin! {
    /// ggml's `ggml_vec_soft_max_f32`, in place: `y[i] = exp(y[i] - max)`
    /// ([`v_expf`] on groups of [`LANES`], libm on the tail) and their sum in
    /// f64, each group folded by [`hsum8`] in f32 first.
    pub fn exp_sum_row / exp_sum_row_scalar / exp_sum_row_fma (y: &mut [f32], max: f32) -> f64 {
        let mut sum = 0f64;
        let split = y.len() / LANES * LANES;
        for yc in y[..split].chunks_exact_mut(LANES) {
            let mut lanes = [0f32; LANES];
            for (l, o) in lanes.iter_mut().zip(yc.iter_mut()) {
                *l = v_expf(*o - max);
                *o = *l;
            }
            sum += f64::from(hsum8(&lanes));
        }
        for o in y[split..].iter_mut() {
            *o = (*o - max).exp();
            sum += f64::from(*o);
        }
        sum
    }
}

/// ggml's `ggml_vec_cvar_f32`: `y[i] = x[i] - mean` and the mean of the
/// squares of `y`, groups of [`LANES`] folded by [`hsum8`] in f32, summed in
/// f64.
pub fn centered_var_row(x: &[f32], y: &mut [f32], mean: f32) -> f64 {
    let mut sum = 0f64;
    let split = x.len() / LANES * LANES;
    for (yc, xc) in y[..split]
        .chunks_exact_mut(LANES)
        .zip(x[..split].chunks_exact(LANES))
    {
        let mut lanes = [0f32; LANES];
        for ((l, o), &v) in lanes.iter_mut().zip(yc.iter_mut()).zip(xc) {
            *o = v - mean;
            *l = *o * *o;
        }
        sum += f64::from(hsum8(&lanes));
    }
    for (o, &v) in y[split..].iter_mut().zip(&x[split..]) {
        *o = v - mean;
        sum += f64::from(*o * *o);
    }
    sum / x.len() as f64
}

fma_twin! {
    /// ggml's `ggml_vec_mad_f32` (vector path): `y[i] = fma(x[i], v, y[i])`.
    pub fn mad_f32 / mad_f32_scalar / mad_f32_fma (y: &mut [f32], x: &[f32], v: f32) {
        for (a, &b) in y.iter_mut().zip(x) {
            *a = b.mul_add(v, *a);
        }
    }
}

fma_twin! {
    /// ggml's `ggml_vec_mad_f16` (vector path): the f16 accumulator `y`
    /// widened, `fma(x[i], v, y[i])` in f32, rounded back to f16; `x` is
    /// little-endian f16 bytes (a cache row, maybe unaligned).
    pub fn mad_f16_portable / mad_f16_scalar / mad_f16_fma (y: &mut [u16], x: &[u8], v: f32) {
        for (a, b) in y.iter_mut().zip(x.chunks_exact(2)) {
            let acc = f16::from_bits(*a).to_f32();
            let xv = f16::from_le_bytes([b[0], b[1]]).to_f32();
            *a = f16::from_f32(xv.mul_add(v, acc)).to_bits();
        }
    }
}

fma_twin! {
    /// ggml's `ggml_vec_dot_f16` on x86 AVX2: four 8-lane f32 accumulators
    /// over steps of 32 values (`acc = fma(x, y, acc)`), folded as
    /// `GGML_F32x8_REDUCE` (`(a0+a2)+(a1+a3)`, then the halves, then two
    /// `hadd`s: `((l0+l4)+(l1+l5)) + ((l2+l6)+(l3+l7))`), the leftover
    /// products added in f64, the result rounded to f32. `x` and `y` are
    /// little-endian f16 bytes of equal length.
    pub fn dot_f16_portable / dot_f16_scalar / dot_f16_fma (x: &[u8], y: &[u8]) -> f32 {
        let at = |b: &[u8], i: usize| f16::from_le_bytes([b[2 * i], b[2 * i + 1]]).to_f32();
        let n = x.len() / 2;
        let np = n / 32 * 32;
        let mut acc = [[0f32; LANES]; 4];
        for i in (0..np).step_by(32) {
            for (j, a) in acc.iter_mut().enumerate() {
                for (l, v) in a.iter_mut().enumerate() {
                    let k = i + j * LANES + l;
                    *v = at(x, k).mul_add(at(y, k), *v);
                }
            }
        }
        let mut lanes = [0f32; LANES];
        for (l, v) in lanes.iter_mut().enumerate() {
            *v = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
        }
        let t: [f32; 4] = std::array::from_fn(|i| lanes[i] + lanes[i + 4]);
        let mut sum = f64::from((t[0] + t[1]) + (t[2] + t[3]));
        for i in np..n {
            sum += f64::from(at(x, i) * at(y, i));
        }
        sum as f32
    }
}

fma_twin! {
    /// ggml's `simd_gemm` (its flash-attention tiles): `c[m×n] += a[m×k] ·
    /// b[k×n]`, all row-major and packed, `m = c.len() / n`. Each output
    /// is one fused chain over `k` in order, starting from its value in `c`.
    pub fn gemm_acc_portable / gemm_acc_scalar / gemm_acc_fma
        (c: &mut [f32], a: &[f32], b: &[f32], k: usize, n: usize) {
        for (ci, ai) in c.chunks_exact_mut(n).zip(a.chunks_exact(k)) {
            for (kk, &av) in ai.iter().enumerate() {
                for (o, &bv) in ci.iter_mut().zip(&b[kk * n..(kk + 1) * n]) {
                    *o = bv.mul_add(av, *o);
                }
            }
        }
    }
}

/// [`gemm_acc_portable`] with register tiles of 6 rows × 16 columns, as
/// ggml's AVX2 `simd_gemm`: the same fused chain per output, so the same
/// bits.
pub fn gemm_acc(c: &mut [f32], a: &[f32], b: &[f32], k: usize, n: usize) {
    assert!(
        n > 0 && c.len().is_multiple_of(n) && a.len() >= c.len() / n * k && b.len() >= k * n,
        "gemm_acc: c {} (n {n}), a {}, b {} (k {k}) do not fit",
        c.len(),
        a.len(),
        b.len()
    );
    #[cfg(target_arch = "x86_64")]
    if f16c::available() && n.is_multiple_of(8) {
        // SAFETY: features present; the shapes are checked above.
        return unsafe { f16c::gemm_acc(c, a, b, k, n) };
    }
    gemm_acc_portable(c, a, b, k, n)
}

/// ggml's `ggml_vec_scale_f16`: `y[i] = f16(f32(y[i]) * v)`.
pub fn scale_f16(y: &mut [u16], v: f32) {
    #[cfg(target_arch = "x86_64")]
    if f16c::available() {
        // SAFETY: AVX2, FMA and F16C present.
        return unsafe { f16c::scale_f16(y, v) };
    }
    scale_f16_scalar(y, v)
}

/// The portable twin of [`scale_f16`].
pub fn scale_f16_scalar(y: &mut [u16], v: f32) {
    for a in y.iter_mut() {
        *a = f16::from_f32(f16::from_bits(*a).to_f32() * v).to_bits();
    }
}

/// [`mad_f16_portable`] with F16C conversions 8 values at a time when the
/// CPU has them (same bits: the arithmetic is elementwise).
pub fn mad_f16(y: &mut [u16], x: &[u8], v: f32) {
    #[cfg(target_arch = "x86_64")]
    if f16c::available() && x.len() == 2 * y.len() {
        // SAFETY: features present; `x` holds `y.len()` f16 values.
        return unsafe { f16c::mad_f16(y, x, v) };
    }
    mad_f16_portable(y, x, v)
}

/// [`dot_f16_portable`] with F16C loads when the CPU has them (same
/// order of operations, so the same bits).
pub fn dot_f16(x: &[u8], y: &[u8]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if f16c::available() && x.len() == y.len() {
        // SAFETY: features present; equal lengths.
        return unsafe { f16c::dot_f16(x, y) };
    }
    dot_f16_portable(x, y)
}

/// The f16 kernels with F16C conversions (`vcvtph2ps`/`vcvtps2ph`), as
/// ggml's `GGML_F16_VEC_LOAD/STORE` on AVX2.
#[cfg(target_arch = "x86_64")]
mod f16c {
    use std::arch::x86_64::*;

    use half::f16;

    pub fn available() -> bool {
        static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ON.get_or_init(|| {
            is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
        })
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(p: *const u8) -> __m256 {
        // SAFETY: the caller guarantees 16 readable bytes at `p`.
        _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p.cast()) })
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn store(p: *mut u16, v: __m256) {
        // SAFETY: the caller guarantees 16 writable bytes at `p`.
        unsafe { _mm_storeu_si128(p.cast(), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT)) }
    }

    /// See [`super::dot_f16_portable`].
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16(x: &[u8], y: &[u8]) -> f32 {
        let n = x.len() / 2;
        let np = n / 32 * 32;
        let mut acc = [_mm256_setzero_ps(); 4];
        let (xp, yp) = (x.as_ptr(), y.as_ptr());
        let mut i = 0;
        while i < np {
            for (j, a) in acc.iter_mut().enumerate() {
                let k = 2 * (i + 8 * j);
                // SAFETY: k + 16 <= 2 * np <= x.len() == y.len().
                unsafe { *a = _mm256_fmadd_ps(load(xp.add(k)), load(yp.add(k)), *a) };
            }
            i += 32;
        }
        let r = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
        let t = _mm_add_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps(r, 1));
        let t = _mm_hadd_ps(t, t);
        let mut sum = f64::from(_mm_cvtss_f32(_mm_hadd_ps(t, t)));
        let at = |b: &[u8], i: usize| f16::from_le_bytes([b[2 * i], b[2 * i + 1]]).to_f32();
        for i in np..n {
            sum += f64::from(at(x, i) * at(y, i));
        }
        sum as f32
    }

    /// See [`super::mad_f16_portable`].
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn mad_f16(y: &mut [u16], x: &[u8], v: f32) {
        let n = y.len();
        let np = n / 8 * 8;
        let vv = _mm256_set1_ps(v);
        let (xp, yp) = (x.as_ptr(), y.as_mut_ptr());
        let mut i = 0;
        while i < np {
            // SAFETY: i + 8 <= n values in both.
            unsafe {
                let acc = _mm256_cvtph_ps(_mm_loadu_si128(yp.add(i).cast()));
                store(yp.add(i), _mm256_fmadd_ps(load(xp.add(2 * i)), vv, acc));
            }
            i += 8;
        }
        super::mad_f16_scalar(&mut y[np..], &x[2 * np..], v);
    }

    /// See [`super::gemm_acc`]: `n` a multiple of 8, the shapes checked.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn gemm_acc(c: &mut [f32], a: &[f32], b: &[f32], k: usize, n: usize) {
        let m = c.len() / n;
        let (cp, ap, bp) = (c.as_mut_ptr(), a.as_ptr(), b.as_ptr());
        let mut i = 0;
        while i < m {
            let rm = (m - i).min(6);
            // SAFETY (each): rows i..i + rm of c and a, all of b.
            unsafe {
                let (c, a) = (cp.add(i * n), ap.add(i * k));
                match rm {
                    6 => gemm_rows::<6>(c, a, bp, k, n),
                    5 => gemm_rows::<5>(c, a, bp, k, n),
                    4 => gemm_rows::<4>(c, a, bp, k, n),
                    3 => gemm_rows::<3>(c, a, bp, k, n),
                    2 => gemm_rows::<2>(c, a, bp, k, n),
                    _ => gemm_rows::<1>(c, a, bp, k, n),
                }
            }
            i += rm;
        }
    }

    /// `RM` rows of [`gemm_acc`], 16 then 8 columns at a time.
    ///
    /// # Safety
    /// AVX2+FMA; `RM` rows of `n` at `c`, of `k` at `a`; `k` rows of `n` at `b`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn gemm_rows<const RM: usize>(
        c: *mut f32,
        a: *const f32,
        b: *const f32,
        k: usize,
        n: usize,
    ) {
        let mut j = 0;
        // SAFETY (both): columns j..j + 8·RN < n of the caller's rows.
        while j + 16 <= n {
            unsafe { gemm_tile::<RM, 2>(c.add(j), a, b.add(j), k, n) };
            j += 16;
        }
        while j + 8 <= n {
            unsafe { gemm_tile::<RM, 1>(c.add(j), a, b.add(j), k, n) };
            j += 8;
        }
    }

    /// One `RM` × `8·RN` tile held in registers across all of `k`.
    ///
    /// # Safety
    /// As [`gemm_rows`], for the tile's columns.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn gemm_tile<const RM: usize, const RN: usize>(
        c: *mut f32,
        a: *const f32,
        b: *const f32,
        k: usize,
        n: usize,
    ) {
        // SAFETY (every access): inside the caller's rows and columns.
        unsafe {
            let mut acc: [[__m256; RN]; RM] = std::array::from_fn(|i| {
                std::array::from_fn(|r| _mm256_loadu_ps(c.add(i * n + 8 * r)))
            });
            for kk in 0..k {
                let bv: [__m256; RN] =
                    std::array::from_fn(|r| _mm256_loadu_ps(b.add(kk * n + 8 * r)));
                for (i, acc) in acc.iter_mut().enumerate() {
                    let p = _mm256_set1_ps(*a.add(i * k + kk));
                    for (acc, &bv) in acc.iter_mut().zip(&bv) {
                        *acc = _mm256_fmadd_ps(bv, p, *acc);
                    }
                }
            }
            for (i, acc) in acc.iter().enumerate() {
                for (r, &v) in acc.iter().enumerate() {
                    _mm256_storeu_ps(c.add(i * n + 8 * r), v);
                }
            }
        }
    }

    /// See [`super::scale_f16`].
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn scale_f16(y: &mut [u16], v: f32) {
        let n = y.len();
        let np = n / 8 * 8;
        let vv = _mm256_set1_ps(v);
        let yp = y.as_mut_ptr();
        let mut i = 0;
        while i < np {
            // SAFETY: i + 8 <= n.
            unsafe {
                let a = _mm256_cvtph_ps(_mm_loadu_si128(yp.add(i).cast()));
                store(yp.add(i), _mm256_mul_ps(a, vv));
            }
            i += 8;
        }
        super::scale_f16_scalar(&mut y[np..], v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v_expf_is_close_to_exp_and_saturates_like_ggml() {
        for i in -1740..1760 {
            let x = i as f32 * 0.05;
            let want = (x as f64).exp();
            let got = v_expf(x) as f64;
            assert!((got - want).abs() <= want * 4e-7, "x={x}: {got} vs {want}");
        }
        assert_eq!(v_expf(0.0), 1.0);
        assert_eq!(v_expf(-200.0), 0.0);
        assert_eq!(v_expf(200.0), f32::INFINITY);
        assert_eq!(v_expf(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn f16c_kernels_give_the_portable_bits() {
        let mut r = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            f16::from_f32(((r >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0)
        };
        for n in [1usize, 7, 8, 31, 32, 64, 65, 200, 256] {
            let x: Vec<u8> = (0..n).flat_map(|_| next().to_le_bytes()).collect();
            let y: Vec<u8> = (0..n).flat_map(|_| next().to_le_bytes()).collect();
            assert_eq!(
                dot_f16(&x, &y).to_bits(),
                dot_f16_portable(&x, &y).to_bits(),
                "dot {n}"
            );
            let acc: Vec<u16> = (0..n).map(|_| next().to_bits()).collect();
            let (mut a, mut b) = (acc.clone(), acc.clone());
            mad_f16(&mut a, &x, 0.37);
            mad_f16_portable(&mut b, &x, 0.37);
            assert_eq!(a, b, "mad {n}");
            for (m, cols) in [
                (1usize, 8usize),
                (5, 24),
                (6, 64),
                (7, 72),
                (13, 136),
                (3, 5),
            ] {
                let av: Vec<f32> = (0..m * n).map(|_| next().to_f32()).collect();
                let bv: Vec<f32> = (0..n * cols).map(|_| next().to_f32()).collect();
                let c0: Vec<f32> = (0..m * cols).map(|_| next().to_f32()).collect();
                let (mut o1, mut o2) = (c0.clone(), c0);
                gemm_acc(&mut o1, &av, &bv, n, cols);
                gemm_acc_portable(&mut o2, &av, &bv, n, cols);
                assert_eq!(
                    o1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    o2.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "gemm_acc {m}×{n}×{cols}"
                );
            }
            let (mut a, mut b) = (acc.clone(), acc);
            scale_f16(&mut a, 0.61);
            scale_f16_scalar(&mut b, 0.61);
            assert_eq!(a, b, "scale {n}");
        }
    }

    #[test]
    fn hsum8_adds_in_ggml_order() {
        // 1e8 + 1 loses the 1 in f32; ggml's pairing keeps or drops it by lane.
        let a = [1e8, 1.0, 0.0, 0.0, -1e8, 1.0, 0.0, 0.0];
        assert_eq!(hsum8(&a), 2.0); // (a4+a0) cancels first, then 1 + 1
    }

    #[test]
    fn gelu_table_matches_direct_formula_to_f16() {
        for &x in &[-3.0f32, -0.5, 0.0, 0.25, 1.0, 2.5, 9.9] {
            let direct = f16::from_f32(gelu_f32(f16::from_f32(x).to_f32())).to_f32();
            assert_eq!(gelu(x), direct);
        }
        assert_eq!(gelu(-10.0), 0.0);
        assert_eq!(gelu(12.0), 12.0);
    }
}
