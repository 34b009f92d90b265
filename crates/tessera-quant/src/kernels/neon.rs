//! NEON (aarch64) variants of the dot kernels, chosen at run time as
//! [`SimdLevel::Neon`](super::SimdLevel::Neon).
//!
//! | weight | act  | scalar twin                                   | float order                 |
//! |--------|------|-----------------------------------------------|-----------------------------|
//! | Q4_0   | Q8_0 | [`legacy::vec_dot_q4_0_q8_0_scalar`]          | ggml NEON, 2 × 4 f32 lanes  |
//! | Q4_1   | Q8_1 | [`legacy::vec_dot_q4_1_q8_1_scalar`]          | ggml NEON, 2 × 4 f32 lanes  |
//! | Q5_0   | Q8_0 | [`legacy::vec_dot_q5_0_q8_0_scalar`]          | ggml NEON, 2 × 4 f32 lanes  |
//! | Q5_1   | Q8_1 | [`legacy::vec_dot_q5_1_q8_1_scalar`]          | ggml NEON, 2 × 4 f32 lanes  |
//! | Q8_0   | Q8_0 | [`legacy::vec_dot_q8_0_q8_0_scalar`]          | ggml NEON, 2 × 4 f32 lanes  |
//! | IQ4_NL | Q8_0 | [`legacy::vec_dot_iq4_nl_q8_0_scalar`]        | one f32 per block pair      |
//! | MXFP4  | Q8_0 | [`legacy::vec_dot_mxfp4_q8_0_scalar`]         | one f32 per block pair      |
//! | Q2_K   | Q8_K | [`kquants::vec_dot_q2_K_q8_K_scalar`]         | one f32 per super-block     |
//! | Q3_K   | Q8_K | [`kquants::vec_dot_q3_K_q8_K_scalar`]         | one f32 per super-block     |
//! | Q4_K   | Q8_K | [`kquants::vec_dot_q4_K_q8_K_scalar`]         | one f32 per super-block     |
//! | Q5_K   | Q8_K | [`kquants::vec_dot_q5_K_q8_K_scalar`]         | one f32 per super-block     |
//! | Q6_K   | Q8_K | [`kquants::vec_dot_q6_K_q8_K_scalar`]         | one f32 per super-block     |
//!
//! Every kernel computes the same exact integer dots as its scalar twin
//! (`i8 × i8` products summed in `i32`, which cannot overflow for these
//! ranges) and differs from it only in how the scaled per-block results are
//! added in f32:
//!
//! - the 32-value types follow ggml's `arch/arm/quants.c` NEON path: two
//!   blocks per step, each block's integer dot kept as four `i32` lanes,
//!   converted to f32 lane by lane and accumulated with an unfused
//!   multiply-add (`vmlaq_n_f32`) into two `float32x4_t` sums (even and odd
//!   blocks), reduced at the end as `vaddvq(sum0) + vaddvq(sum1)` (+ the
//!   summed `m·s` terms for Q4_1 and Q5_1); an odd last block is added the scalar
//!   twin's way. Which `i32` lane holds which products depends on the path
//!   (see below), so the two paths can differ in the last bits;
//! - IQ4_NL and MXFP4 look their 16 levels up with `vqtbl1q_s8`, reduce
//!   each block's lanes to one `i32`, and add per pair of blocks
//!   `sumf += dx0·dy0·i0 + dx1·dy1·i1` (ggml's order; both paths give the
//!   same bits);
//! - the K-quants sum each super-block's integer dot exactly (lanes reduced
//!   with `vaddvq_s32` before scaling) and add one f32 term per super-block
//!   in ggml's NEON order: Q2_K `sum += (−dmin)·mins; sum += d·isum`,
//!   Q3_K `sum += d·isum`, Q4_K `sumf -= dmin·mins; sumf += d·isum`, Q5_K
//!   `sumf += d·isum − dmin·mins`, Q6_K `sum += d_w·d_a·(isum − 32·mins)`;
//!   here both paths give the same bits.
//!
//! Two paths, picked per call from the CPU's features
//! (`is_aarch64_feature_detected!`, cached by std):
//!
//! - **dotprod** (`SDOT`, ARMv8.2 and later, when the CPU reports
//!   `dotprod`): each `i32` lane is the sum of 4 consecutive byte products.
//!   `vdotq_s32` is not stable in Rust yet, so the instruction is written as
//!   inline assembly in a `#[target_feature(enable = "dotprod")]` function;
//! - **plain** NEON (any aarch64): ggml's fallback `ggml_vdotq_s32`
//!   (`vmull_s8` of the low and high halves, `vpaddlq_s16` each, added), so
//!   lane `i` holds products `2i, 2i+1, 8+2i, 9+2i`.
//!
//! Without NEON (impossible on aarch64 Linux, still checked) a kernel falls
//! back to its scalar twin. Rows may start at any byte address: every load
//! is a byte load (`vld1q_s8`/`vld1q_u8`, reinterpreted), and `n` must be
//! whole blocks held by both slices, or the kernel panics before reading.
//!
//! The order was read from ggml's `ggml-cpu/arch/arm/quants.c` (the
//! `__ARM_NEON` branches, `nrc == 1`, of ggml-org/llama.cpp at commit
//! `0549d660`, and `ggml_vdotq_s32` from `ggml-cpu-impl.h`): Q4_0, Q4_1,
//! Q5_0, Q5_1 and Q8_0 (lanes, the two sums, the tail, the `m·s` scalars),
//! MXFP4 (the per-pair step), Q2_K … Q6_K (the per-super-block float step).
//! IQ4_NL's branch was read from a copy of ggml in another repository; it
//! is MXFP4's with the other table.
//!
//! **Not bit-exact with llama.cpp's ARM build**, and never compared with it
//! (no ARM machine; only `qemu-aarch64`). llama.cpp's ARM builds have paths
//! tessera lacks (SVE, `i8mm` two-row `vmmlaq_s32` for `nrc == 2`, repacked
//! `4x4`/`4x8`/`8x8` weights); its C compiler may contract float steps into
//! FMAs where Rust does not (clang may turn `vmlaq_n_f32` into `fmla`; GCC's
//! default `-ffp-contract=fast` may fuse `sumf -= dmin·m` or
//! `d·isum − dmin·m`); and tessera's Q8_0/Q8_1 activations are quantized as
//! ggml-cpu's *x86* build does (`127/amax`), not as its NEON
//! `quantize_row_q8_0` (`1/d`). The x86 bit-exactness work of
//! `tests/ggml_exact.rs` does not transfer. Treat these kernels as "within
//! f32 rounding of the scalar twin", nothing more.
//!
//! Tests (aarch64 only, `cargo test --target aarch64-unknown-linux-gnu`,
//! runnable under `qemu-aarch64`): for each kernel and both paths forced
//! (the dotprod one only where the CPU has it), random weights from the
//! reference quantizers and activations from the activation quantizers, 1,
//! 2, 3, 7 and 16 blocks, rows at odd byte offsets; the result must be within
//! a per-type tolerance (`tests::TOLERANCE`, 1e-5 for all) of `Σ|terms|` of
//! the scalar twin. Portable tests check that every type of [`NEON_TYPES`]
//! has a [`DotEntry`](super::DotEntry) with the same activation type, and
//! that `DotEntry::at(SimdLevel::Neon)` returns the NEON kernel (the scalar
//! twin off aarch64).

#![cfg_attr(not(target_arch = "aarch64"), allow(unused_imports))]

use super::VecDot;
#[cfg(doc)]
use super::{kquants, legacy};
use crate::GgmlType;

/// The NEON kernels, by weight type (their activation types are those of the
/// type's [`DotEntry`](super::DotEntry)). Empty off aarch64.
#[cfg(target_arch = "aarch64")]
pub static NEON_DOTS: &[(GgmlType, VecDot)] = &[
    (GgmlType::Q4_0, arm::vec_dot_q4_0_q8_0_neon),
    (GgmlType::Q4_1, arm::vec_dot_q4_1_q8_1_neon),
    (GgmlType::Q5_0, arm::vec_dot_q5_0_q8_0_neon),
    (GgmlType::Q5_1, arm::vec_dot_q5_1_q8_1_neon),
    (GgmlType::Q8_0, arm::vec_dot_q8_0_q8_0_neon),
    (GgmlType::IQ4_NL, arm::vec_dot_iq4_nl_q8_0_neon),
    (GgmlType::MXFP4, arm::vec_dot_mxfp4_q8_0_neon),
    (GgmlType::Q2_K, arm::vec_dot_q2_k_q8_k_neon),
    (GgmlType::Q3_K, arm::vec_dot_q3_k_q8_k_neon),
    (GgmlType::Q4_K, arm::vec_dot_q4_k_q8_k_neon),
    (GgmlType::Q5_K, arm::vec_dot_q5_k_q8_k_neon),
    (GgmlType::Q6_K, arm::vec_dot_q6_k_q8_k_neon),
];
/// The NEON kernels, by weight type. Empty off aarch64.
#[cfg(not(target_arch = "aarch64"))]
pub static NEON_DOTS: &[(GgmlType, VecDot)] = &[];

/// The NEON kernel of weight type `t`, if there is one.
pub fn kernel(t: GgmlType) -> Option<VecDot> {
    NEON_DOTS.iter().find(|(w, _)| *w == t).map(|&(_, f)| f)
}

/// Whether the CPU runs the NEON kernels (always, on aarch64 Linux).
pub fn has_neon() -> bool {
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("neon")
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        false
    }
}

/// Whether the CPU has the dot-product instructions (`SDOT`) the faster path
/// uses.
pub fn has_dotprod() -> bool {
    #[cfg(target_arch = "aarch64")]
    {
        has_neon() && std::arch::is_aarch64_feature_detected!("dotprod")
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        false
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use core::arch::aarch64::*;
    use std::mem::size_of;

    use super::{has_dotprod, has_neon};
    use crate::blocks::*;
    use crate::kernels::kquants::{
        scales_mins_k4, scales_q3_k, vec_dot_q2_K_q8_K_scalar, vec_dot_q3_K_q8_K_scalar,
        vec_dot_q4_K_q8_K_scalar, vec_dot_q5_K_q8_K_scalar, vec_dot_q6_K_q8_K_scalar,
    };
    use crate::kernels::legacy::{
        e8m0_half, vec_dot_iq4_nl_q8_0_scalar, vec_dot_mxfp4_q8_0_scalar, vec_dot_q4_0_q8_0_scalar,
        vec_dot_q4_1_q8_1_scalar, vec_dot_q5_0_q8_0_scalar, vec_dot_q5_1_q8_1_scalar,
        vec_dot_q8_0_q8_0_scalar, KVALUES_IQ4NL, KVALUES_MXFP4,
    };

    /// `SDOT acc.4s, a.16b, b.16b`: lane `i` of `acc` plus the products of
    /// bytes `4i..4i+4` of `a` and `b`.
    ///
    /// # Safety
    /// The CPU must have `dotprod`.
    #[target_feature(enable = "dotprod")]
    #[inline]
    unsafe fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // SAFETY: register-only instruction; the caller checked the feature.
        unsafe {
            core::arch::asm!(
                "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
                acc = inout(vreg) acc,
                a = in(vreg) a,
                b = in(vreg) b,
                options(pure, nomem, nostack, preserves_flags)
            );
        }
        acc
    }

    /// ggml's `ggml_vdotq_s32` without dotprod: lane `i` of `acc` plus the
    /// products of bytes `2i, 2i+1, 8+2i, 9+2i`.
    #[inline(always)]
    fn vdot_plain(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // SAFETY: NEON is baseline on aarch64; register-only operations.
        unsafe {
            let p0 = vmull_s8(vget_low_s8(a), vget_low_s8(b));
            let p1 = vmull_s8(vget_high_s8(a), vget_high_s8(b));
            vaddq_s32(acc, vaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1)))
        }
    }

    /// `ggml_vdotq_s32` of the path `DP` (dotprod or plain).
    ///
    /// # Safety
    /// With `DP`, the CPU must have `dotprod`.
    #[inline(always)]
    unsafe fn vdot<const DP: bool>(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        if DP {
            // SAFETY: the caller checked the feature.
            unsafe { sdot(acc, a, b) }
        } else {
            vdot_plain(acc, a, b)
        }
    }

    /// 16 bytes at `p`, as `i8`.
    ///
    /// # Safety
    /// `p..p + 16` must be readable.
    #[inline(always)]
    unsafe fn ld_s8(p: *const u8) -> int8x16_t {
        // SAFETY: the caller guarantees 16 readable bytes; byte loads need
        // no alignment.
        unsafe { vld1q_s8(p.cast()) }
    }

    /// 16 bytes at `p`.
    ///
    /// # Safety
    /// `p..p + 16` must be readable.
    #[inline(always)]
    unsafe fn ld_u8(p: *const u8) -> uint8x16_t {
        // SAFETY: as `ld_s8`.
        unsafe { vld1q_u8(p) }
    }

    /// 8 little-endian `i16` at `p` (any alignment).
    ///
    /// # Safety
    /// `p..p + 16` must be readable.
    #[inline(always)]
    unsafe fn ld_s16(p: *const u8) -> int16x8_t {
        // SAFETY: as `ld_s8`; aarch64 Linux is little-endian.
        unsafe { vreinterpretq_s16_u8(vld1q_u8(p)) }
    }

    /// The f16 at `b[off..off + 2]`, widened.
    #[inline(always)]
    fn f16_at(b: &[u8], off: usize) -> f32 {
        half::f16::from_le_bytes([b[off], b[off + 1]]).to_f32()
    }

    /// The f32 at `b[off..off + 4]`.
    #[inline(always)]
    fn f32_at(b: &[u8], off: usize) -> f32 {
        f32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
    }

    /// [`super::super::check_blocks`] for the NEON entry points.
    #[inline]
    fn check(name: &str, n: usize, qk: usize, w: &[u8], wb: usize, a: &[u8], ab: usize) -> usize {
        super::super::check_blocks(name, "NEON dot", n, qk, w, wb, a, ab)
    }

    /// Defines the safe entry point `$name` (checks shapes, picks the path
    /// at run time, scalar twin without NEON) and its two paths
    /// `$name_dotprod` / `$name_plain` (pub(super) for the tests) around
    /// `$body::<DP>(nb, w, a)`.
    macro_rules! kernel {
        ($name:ident, $dotprod:ident, $plain:ident, $body:ident, $scalar:ident,
         $label:literal, $qk:expr, $wb:expr, $ab:expr) => {
            /// NEON dot (see the module docs); the scalar twin is
            #[doc = concat!("`", stringify!($scalar), "`.")]
            pub fn $name(n: usize, w: &[u8], a: &[u8]) -> f32 {
                if has_dotprod() {
                    // SAFETY: dotprod (and NEON) present.
                    unsafe { $dotprod(n, w, a) }
                } else if has_neon() {
                    $plain(n, w, a)
                } else {
                    $scalar(n, w, a)
                }
            }

            /// The dotprod path of
            #[doc = concat!("[`", stringify!($name), "`].")]
            ///
            /// # Safety
            /// The CPU must have `dotprod`.
            #[target_feature(enable = "dotprod")]
            pub(in crate::kernels) unsafe fn $dotprod(n: usize, w: &[u8], a: &[u8]) -> f32 {
                let nb = check($label, n, $qk, w, $wb, a, $ab);
                // SAFETY: shapes checked; the caller checked the feature.
                unsafe { $body::<true>(nb, w, a) }
            }

            /// The plain-NEON path of
            #[doc = concat!("[`", stringify!($name), "`].")]
            pub(in crate::kernels) fn $plain(n: usize, w: &[u8], a: &[u8]) -> f32 {
                let nb = check($label, n, $qk, w, $wb, a, $ab);
                // SAFETY: shapes checked; the plain path needs only NEON,
                // baseline on aarch64.
                unsafe { $body::<false>(nb, w, a) }
            }
        };
    }

    const Q4_0: usize = size_of::<BlockQ4_0>();
    const Q4_1: usize = size_of::<BlockQ4_1>();
    const Q5_0: usize = size_of::<BlockQ5_0>();
    const Q5_1: usize = size_of::<BlockQ5_1>();
    const Q8_0: usize = size_of::<BlockQ8_0>();
    const Q8_1: usize = size_of::<BlockQ8_1>();
    const IQ4NL: usize = size_of::<BlockIq4Nl>();
    const MXFP4: usize = size_of::<BlockMxfp4>();
    const Q2K: usize = size_of::<BlockQ2K>();
    const Q3K: usize = size_of::<BlockQ3K>();
    const Q4K: usize = size_of::<BlockQ4K>();
    const Q5K: usize = size_of::<BlockQ5K>();
    const Q6K: usize = size_of::<BlockQ6K>();
    const Q8K: usize = size_of::<BlockQ8K>();

    kernel!(
        vec_dot_q4_0_q8_0_neon,
        q4_0_dotprod,
        q4_0_plain,
        q4_0_body,
        vec_dot_q4_0_q8_0_scalar,
        "Q4_0",
        QK,
        Q4_0,
        Q8_0
    );
    kernel!(
        vec_dot_q4_1_q8_1_neon,
        q4_1_dotprod,
        q4_1_plain,
        q4_1_body,
        vec_dot_q4_1_q8_1_scalar,
        "Q4_1",
        QK,
        Q4_1,
        Q8_1
    );
    kernel!(
        vec_dot_q5_0_q8_0_neon,
        q5_0_dotprod,
        q5_0_plain,
        q5_0_body,
        vec_dot_q5_0_q8_0_scalar,
        "Q5_0",
        QK,
        Q5_0,
        Q8_0
    );
    kernel!(
        vec_dot_q5_1_q8_1_neon,
        q5_1_dotprod,
        q5_1_plain,
        q5_1_body,
        vec_dot_q5_1_q8_1_scalar,
        "Q5_1",
        QK,
        Q5_1,
        Q8_1
    );
    kernel!(
        vec_dot_q8_0_q8_0_neon,
        q8_0_dotprod,
        q8_0_plain,
        q8_0_body,
        vec_dot_q8_0_q8_0_scalar,
        "Q8_0",
        QK,
        Q8_0,
        Q8_0
    );
    kernel!(
        vec_dot_iq4_nl_q8_0_neon,
        iq4_nl_dotprod,
        iq4_nl_plain,
        iq4_nl_body,
        vec_dot_iq4_nl_q8_0_scalar,
        "IQ4_NL",
        QK,
        IQ4NL,
        Q8_0
    );
    kernel!(
        vec_dot_mxfp4_q8_0_neon,
        mxfp4_dotprod,
        mxfp4_plain,
        mxfp4_body,
        vec_dot_mxfp4_q8_0_scalar,
        "MXFP4",
        QK,
        MXFP4,
        Q8_0
    );
    kernel!(
        vec_dot_q2_k_q8_k_neon,
        q2_k_dotprod,
        q2_k_plain,
        q2_k_body,
        vec_dot_q2_K_q8_K_scalar,
        "Q2_K",
        QK_K,
        Q2K,
        Q8K
    );
    kernel!(
        vec_dot_q3_k_q8_k_neon,
        q3_k_dotprod,
        q3_k_plain,
        q3_k_body,
        vec_dot_q3_K_q8_K_scalar,
        "Q3_K",
        QK_K,
        Q3K,
        Q8K
    );
    kernel!(
        vec_dot_q4_k_q8_k_neon,
        q4_k_dotprod,
        q4_k_plain,
        q4_k_body,
        vec_dot_q4_K_q8_K_scalar,
        "Q4_K",
        QK_K,
        Q4K,
        Q8K
    );
    kernel!(
        vec_dot_q5_k_q8_k_neon,
        q5_k_dotprod,
        q5_k_plain,
        q5_k_body,
        vec_dot_q5_K_q8_K_scalar,
        "Q5_K",
        QK_K,
        Q5K,
        Q8K
    );
    kernel!(
        vec_dot_q6_k_q8_k_neon,
        q6_k_dotprod,
        q6_k_plain,
        q6_k_body,
        vec_dot_q6_K_q8_K_scalar,
        "Q6_K",
        QK_K,
        Q6K,
        Q8K
    );

    // ------------------------------------------------------------ 32-value blocks

    /// The odd last block, the scalar twin's way (`0 + term` is `term`), as
    /// ggml's tail loop.
    #[inline(always)]
    fn tail(
        sumf: f32,
        nb: usize,
        w: &[u8],
        wb: usize,
        a: &[u8],
        ab: usize,
        scalar: super::VecDot,
    ) -> f32 {
        if nb % 2 == 1 {
            let ib = nb - 1;
            sumf + scalar(QK, &w[ib * wb..(ib + 1) * wb], &a[ib * ab..(ib + 1) * ab])
        } else {
            sumf
        }
    }

    /// ggml's two-accumulator loop of the 32-value types: blocks in pairs,
    /// `sumv0 += f32(p0)·d0`, `sumv1 += f32(p1)·d1` per lane, then
    /// `sum(sumv0) + sum(sumv1)`, the odd last block the scalar way.
    /// `block(ib)` gives block `ib`'s integer dot lanes and `dx·dy`.
    ///
    /// # Safety
    /// `block` must be safe to call for every `ib < nb`.
    #[inline(always)]
    unsafe fn pairs(
        nb: usize,
        w: &[u8],
        wb: usize,
        a: &[u8],
        ab: usize,
        scalar: super::VecDot,
        block: impl Fn(usize) -> (int32x4_t, f32),
    ) -> f32 {
        // SAFETY: NEON is baseline on aarch64; `block` is the caller's.
        unsafe {
            let (mut sumv0, mut sumv1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
            let mut ib = 0;
            while ib + 1 < nb {
                let (p0, d0) = block(ib);
                let (p1, d1) = block(ib + 1);
                sumv0 = vmlaq_n_f32(sumv0, vcvtq_f32_s32(p0), d0);
                sumv1 = vmlaq_n_f32(sumv1, vcvtq_f32_s32(p1), d1);
                ib += 2;
            }
            let sumf = vaddvq_f32(sumv0) + vaddvq_f32(sumv1);
            tail(sumf, nb, w, wb, a, ab, scalar)
        }
    }

    /// Q4_0 × Q8_0 (ggml NEON: `ggml_vec_dot_q4_0_q8_0`, `nrc == 1`).
    ///
    /// # Safety
    /// `w`, `a` hold `nb` blocks; with `DP`, the CPU has dotprod.
    #[inline(always)]
    unsafe fn q4_0_body<const DP: bool>(nb: usize, w: &[u8], a: &[u8]) -> f32 {
        // SAFETY: every pointer stays inside the `nb` checked blocks.
        unsafe {
            pairs(nb, w, Q4_0, a, Q8_0, vec_dot_q4_0_q8_0_scalar, |ib| {
                q4_0_block::<DP>(w, a, ib)
            })
        }
    }

    /// Block `ib` of [`q4_0_body`]: its integer dot lanes and scales.
    ///
    /// # Safety
    /// As [`q4_0_body`].
    #[inline(always)]
    unsafe fn q4_0_block<const DP: bool>(w: &[u8], a: &[u8], ib: usize) -> (int32x4_t, f32) {
        // SAFETY: the loads stay inside block `ib`, which the slices hold.
        unsafe {
            let m4b = vdupq_n_u8(0x0f);
            let s8b = vdupq_n_s8(8);
            let zero = vdupq_n_s32(0);
            let x = &w[ib * Q4_0..(ib + 1) * Q4_0];
            let y = &a[ib * Q8_0..(ib + 1) * Q8_0];
            let v = ld_u8(x.as_ptr().add(2));
            let l = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, m4b)), s8b);
            let h = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(v)), s8b);
            let yl = ld_s8(y.as_ptr().add(2));
            let yh = ld_s8(y.as_ptr().add(18));
            let p = vdot::<DP>(vdot::<DP>(zero, l, yl), h, yh);
            (p, f16_at(x, 0) * f16_at(y, 0))
        }
    }

    /// Q4_1 × Q8_1 (ggml NEON: `ggml_vec_dot_q4_1_q8_1`, `nrc == 1`).
    ///
    /// # Safety
    /// As [`q4_0_body`].
    #[inline(always)]
    unsafe fn q4_1_body<const DP: bool>(nb: usize, w: &[u8], a: &[u8]) -> f32 {
        // SAFETY: every pointer stays inside the `nb` checked blocks.
        unsafe {
            let (mut sumv0, mut sumv1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
            let mut summs = 0f32;
            let mut ib = 0;
            while ib + 1 < nb {
                let (p0, d0, ms0) = q4_1_block::<DP>(w, a, ib);
                let (p1, d1, ms1) = q4_1_block::<DP>(w, a, ib + 1);
                summs += ms0 + ms1;
                sumv0 = vmlaq_n_f32(sumv0, vcvtq_f32_s32(p0), d0);
                sumv1 = vmlaq_n_f32(sumv1, vcvtq_f32_s32(p1), d1);
                ib += 2;
            }
            let sumf = vaddvq_f32(sumv0) + vaddvq_f32(sumv1) + summs;
            tail(sumf, nb, w, Q4_1, a, Q8_1, vec_dot_q4_1_q8_1_scalar)
        }
    }

    /// Block `ib` of [`q4_1_body`]: its integer dot lanes and scales.
    ///
    /// # Safety
    /// As [`q4_1_body`].
    #[inline(always)]
    unsafe fn q4_1_block<const DP: bool>(w: &[u8], a: &[u8], ib: usize) -> (int32x4_t, f32, f32) {
        // SAFETY: the loads stay inside block `ib`, which the slices hold.
        unsafe {
            let m4b = vdupq_n_u8(0x0f);
            let zero = vdupq_n_s32(0);
            let x = &w[ib * Q4_1..(ib + 1) * Q4_1];
            let y = &a[ib * Q8_1..(ib + 1) * Q8_1];
            let v = ld_u8(x.as_ptr().add(4));
            let l = vreinterpretq_s8_u8(vandq_u8(v, m4b));
            let h = vreinterpretq_s8_u8(vshrq_n_u8::<4>(v));
            let yl = ld_s8(y.as_ptr().add(4));
            let yh = ld_s8(y.as_ptr().add(20));
            let p = vdot::<DP>(vdot::<DP>(zero, l, yl), h, yh);
            (p, f16_at(x, 0) * f16_at(y, 0), f16_at(x, 2) * f16_at(y, 2))
        }
    }

    /// Bit `j` of the 16 bits of `qh` (lanes `j` = 0..16), as 0xff / 0.
    ///
    /// # Safety
    /// None beyond NEON.
    #[inline(always)]
    unsafe fn bits16(qh: u16) -> uint8x16_t {
        const MASK: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
        // SAFETY: register operations and a load of a 16-byte constant.
        unsafe {
            let [lo, hi] = qh.to_le_bytes();
            let v = vcombine_u8(vdup_n_u8(lo), vdup_n_u8(hi));
            vtstq_u8(v, vld1q_u8(MASK.as_ptr()))
        }
    }

    /// Q5_0 × Q8_0 (ggml NEON: `ggml_vec_dot_q5_0_q8_0`; the high bits by
    /// bit tests instead of ggml's `table_b2b_1`, the same bytes).
    ///
    /// # Safety
    /// As [`q4_0_body`].
    #[inline(always)]
    unsafe fn q5_0_body<const DP: bool>(nb: usize, w: &[u8], a: &[u8]) -> f32 {
        // SAFETY: every pointer stays inside the `nb` checked blocks.
        unsafe {
            pairs(nb, w, Q5_0, a, Q8_0, vec_dot_q5_0_q8_0_scalar, |ib| {
                q5_0_block::<DP>(w, a, ib)
            })
        }
    }

    /// Block `ib` of [`q5_0_body`]: its integer dot lanes and scales.
    ///
    /// # Safety
    /// As [`q5_0_body`].
    #[inline(always)]
    unsafe fn q5_0_block<const DP: bool>(w: &[u8], a: &[u8], ib: usize) -> (int32x4_t, f32) {
        // SAFETY: the loads stay inside block `ib`, which the slices hold.
        unsafe {
            let m4b = vdupq_n_u8(0x0f);
            let x10 = vdupq_n_u8(0x10);
            let zero = vdupq_n_s32(0);
            let x = &w[ib * Q5_0..(ib + 1) * Q5_0];
            let y = &a[ib * Q8_0..(ib + 1) * Q8_0];
            let qh = u32::from_le_bytes([x[2], x[3], x[4], x[5]]);
            // (!b) << 4, subtracted: (q | b << 4) − 16.
            let hl = vbicq_u8(x10, bits16(qh as u16));
            let hh = vbicq_u8(x10, bits16((qh >> 16) as u16));
            let v = ld_u8(x.as_ptr().add(6));
            let l = vreinterpretq_s8_u8(vsubq_u8(vandq_u8(v, m4b), hl));
            let h = vreinterpretq_s8_u8(vsubq_u8(vshrq_n_u8::<4>(v), hh));
            let yl = ld_s8(y.as_ptr().add(2));
            let yh = ld_s8(y.as_ptr().add(18));
            let p = vaddq_s32(vdot::<DP>(zero, l, yl), vdot::<DP>(zero, h, yh));
            (p, f16_at(x, 0) * f16_at(y, 0))
        }
    }

    /// Q5_1 × Q8_1 (ggml NEON: `ggml_vec_dot_q5_1_q8_1`: `m·s` summed in
    /// two scalars, even and odd blocks; the high bits OR-ed in as ggml's
    /// `table_b2b_0`).
    ///
    /// # Safety
    /// As [`q4_0_body`].
    #[inline(always)]
    unsafe fn q5_1_body<const DP: bool>(nb: usize, w: &[u8], a: &[u8]) -> f32 {
        // SAFETY: every pointer stays inside the `nb` checked blocks.
        unsafe {
            let (mut sumv0, mut sumv1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
            let (mut summs0, mut summs1) = (0f32, 0f32);
            let mut ib = 0;
            while ib + 1 < nb {
                let (p0, d0, ms0) = q5_1_block::<DP>(w, a, ib);
                let (p1, d1, ms1) = q5_1_block::<DP>(w, a, ib + 1);
                summs0 += ms0;
                summs1 += ms1;
                sumv0 = vmlaq_n_f32(sumv0, vcvtq_f32_s32(p0), d0);
                sumv1 = vmlaq_n_f32(sumv1, vcvtq_f32_s32(p1), d1);
                ib += 2;
            }
            let sumf = vaddvq_f32(sumv0) + vaddvq_f32(sumv1) + summs0 + summs1;
            tail(sumf, nb, w, Q5_1, a, Q8_1, vec_dot_q5_1_q8_1_scalar)
        }
    }

    /// Block `ib` of [`q5_1_body`]: its integer dot lanes, `dx·dy` and `m·s`.
    ///
    /// # Safety
    /// As [`q5_1_body`].
    #[inline(always)]
    unsafe fn q5_1_block<const DP: bool>(w: &[u8], a: &[u8], ib: usize) -> (int32x4_t, f32, f32) {
        // SAFETY: the loads stay inside block `ib`, which the slices hold.
        unsafe {
            let m4b = vdupq_n_u8(0x0f);
            let x10 = vdupq_n_u8(0x10);
            let zero = vdupq_n_s32(0);
            // d at 0, m at 2, qh at 4, qs at 8.
            let x = &w[ib * Q5_1..(ib + 1) * Q5_1];
            let y = &a[ib * Q8_1..(ib + 1) * Q8_1];
            let qh = u32::from_le_bytes([x[4], x[5], x[6], x[7]]);
            let hl = vandq_u8(x10, bits16(qh as u16));
            let hh = vandq_u8(x10, bits16((qh >> 16) as u16));
            let v = ld_u8(x.as_ptr().add(8));
            let l = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(v, m4b), hl));
            let h = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8::<4>(v), hh));
            let yl = ld_s8(y.as_ptr().add(4));
            let yh = ld_s8(y.as_ptr().add(20));
            let p = vaddq_s32(vdot::<DP>(zero, l, yl), vdot::<DP>(zero, h, yh));
            (p, f16_at(x, 0) * f16_at(y, 0), f16_at(x, 2) * f16_at(y, 2))
        }
    }

    /// Q8_0 × Q8_0 (ggml NEON: `ggml_vec_dot_q8_0_q8_0`, `nrc == 1`).
    ///
    /// # Safety
    /// As [`q4_0_body`].
    #[inline(always)]
    unsafe fn q8_0_body<const DP: bool>(nb: usize, w: &[u8], a: &[u8]) -> f32 {
        // SAFETY: every pointer stays inside the `nb` checked blocks.
        unsafe {
            pairs(nb, w, Q8_0, a, Q8_0, vec_dot_q8_0_q8_0_scalar, |ib| {
                q8_0_block::<DP>(w, a, ib)
            })
        }
    }

    /// Block `ib` of [`q8_0_body`]: its integer dot lanes and scales.
    ///
    /// # Safety
    /// As [`q8_0_body`].
    #[inline(always)]
    unsafe fn q8_0_block<const DP: bool>(w: &[u8], a: &[u8], ib: usize) -> (int32x4_t, f32) {
        // SAFETY: the loads stay inside block `ib`, which the slices hold.
        unsafe {
            let zero = vdupq_n_s32(0);
            let x = &w[ib * Q8_0..(ib + 1) * Q8_0];
            let y = &a[ib * Q8_0..(ib + 1) * Q8_0];
            let (x0, x1) = (ld_s8(x.as_ptr().add(2)), ld_s8(x.as_ptr().add(18)));
            let (y0, y1) = (ld_s8(y.as_ptr().add(2)), ld_s8(y.as_ptr().add(18)));
            let p = vaddq_s32(vdot::<DP>(zero, x0, y0), vdot::<DP>(zero, x1, y1));
            (p, f16_at(x, 0) * f16_at(y, 0))
        }
    }

    /// IQ4_NL × Q8_0 (ggml NEON: `ggml_vec_dot_iq4_nl_q8_0`).
    ///
    /// # Safety
    /// As [`q4_0_body`].
    #[inline(always)]
    unsafe fn iq4_nl_body<const DP: bool>(nb: usize, w: &[u8], a: &[u8]) -> f32 {
        // SAFETY: as `lut4_body`'s.
        unsafe { lut4_body::<DP, false>(nb, w, a) }
    }

    /// MXFP4 × Q8_0 (ggml NEON: `ggml_vec_dot_mxfp4_q8_0`).
    ///
    /// # Safety
    /// As [`q4_0_body`].
    #[inline(always)]
    unsafe fn mxfp4_body<const DP: bool>(nb: usize, w: &[u8], a: &[u8]) -> f32 {
        // SAFETY: as `lut4_body`'s.
        unsafe { lut4_body::<DP, true>(nb, w, a) }
    }

    /// The 4-bit lookup types: IQ4_NL (`d` f16 at 0, `qs` at 2) or, with
    /// `MX`, MXFP4 (`e` E8M0 at 0, `qs` at 1). Per pair of blocks
    /// `sumf += dx0·dy0·i0 + dx1·dy1·i1`, the odd last block the scalar way.
    ///
    /// # Safety
    /// As [`q4_0_body`].
    #[inline(always)]
    unsafe fn lut4_body<const DP: bool, const MX: bool>(nb: usize, w: &[u8], a: &[u8]) -> f32 {
        let wb = if MX { MXFP4 } else { IQ4NL };
        // SAFETY: every pointer stays inside the `nb` checked blocks.
        unsafe {
            let mut sumf = 0f32;
            let mut ib = 0;
            while ib + 1 < nb {
                let (d0, i0) = lut4_block::<DP, MX>(w, a, ib);
                let (d1, i1) = lut4_block::<DP, MX>(w, a, ib + 1);
                sumf += d0 * i0 as f32 + d1 * i1 as f32;
                ib += 2;
            }
            let scalar = if MX {
                vec_dot_mxfp4_q8_0_scalar
            } else {
                vec_dot_iq4_nl_q8_0_scalar
            };
            tail(sumf, nb, w, wb, a, Q8_0, scalar)
        }
    }

    /// Block `ib` of [`lut4_body`]: `dx·dy` and the block's integer dot.
    ///
    /// # Safety
    /// As [`lut4_body`].
    #[inline(always)]
    unsafe fn lut4_block<const DP: bool, const MX: bool>(
        w: &[u8],
        a: &[u8],
        ib: usize,
    ) -> (f32, i32) {
        let (wb, qs) = if MX { (MXFP4, 1) } else { (IQ4NL, 2) };
        // SAFETY: the loads stay inside block `ib`, which the slices hold.
        unsafe {
            let table = if MX { &KVALUES_MXFP4 } else { &KVALUES_IQ4NL };
            let values = vld1q_s8(table.as_ptr());
            let m4b = vdupq_n_u8(0x0f);
            let zero = vdupq_n_s32(0);
            let x = &w[ib * wb..(ib + 1) * wb];
            let y = &a[ib * Q8_0..(ib + 1) * Q8_0];
            let v = ld_u8(x.as_ptr().add(qs));
            let l = vqtbl1q_s8(values, vandq_u8(v, m4b));
            let h = vqtbl1q_s8(values, vshrq_n_u8::<4>(v));
            let p = vdot::<DP>(
                vdot::<DP>(zero, l, ld_s8(y.as_ptr().add(2))),
                h,
                ld_s8(y.as_ptr().add(18)),
            );
            let dx = if MX { e8m0_half(x[0]) } else { f16_at(x, 0) };
            (dx * f16_at(y, 0), vaddvq_s32(p))
        }
    }

    // ------------------------------------------------------------ K-quants

    // Q8_K layout: d (f32) at 0, qs at 4, bsums (16 × i16) at 260.
    const Q8K_QS: usize = 4;
    const Q8K_BSUMS: usize = 4 + QK_K;

    /// `Σ_j bsums[2j..2j+2] · mins[j]` over the 8 sub-blocks of 32 (ggml:
    /// `vpaddq_s16` of the bsums, `vmull_s16` with the mins, `vaddvq_s32`).
    ///
    /// # Safety
    /// `y` is one whole Q8_K block.
    #[inline(always)]
    unsafe fn mins_dot(y: &[u8], mins: &[u8; 8]) -> i32 {
        // SAFETY: 32 bytes of bsums inside the block; 8 bytes of `mins`.
        unsafe {
            let b = y.as_ptr().add(Q8K_BSUMS);
            let q8sums = vpaddq_s16(ld_s16(b), ld_s16(b.add(16)));
            let m = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mins.as_ptr())));
            let prod = vaddq_s32(
                vmull_s16(vget_low_s16(q8sums), vget_low_s16(m)),
                vmull_s16(vget_high_s16(q8sums), vget_high_s16(m)),
            );
            vaddvq_s32(prod)
        }
    }

    /// Q2_K × Q8_K (ggml NEON: `ggml_vec_dot_q2_K_q8_K`: the mins term
    /// `Σ bsums·(scale >> 4)` in integers, `sum += (−d_a·dmin)·mins`, then
    /// one `i32` per 16 values times `scale & 15`, `sum += d·isum`).
    ///
    /// # Safety
    /// As [`q4_k_body`].
    #[inline(always)]
    unsafe fn q2_k_body<const DP: bool>(nb: usize, w: &[u8], a: &[u8]) -> f32 {
        // SAFETY: every pointer stays inside the `nb` checked blocks.
        unsafe {
            let m3 = vdupq_n_u8(3);
            let m4 = vdupq_n_u8(0x0f);
            let zero = vdupq_n_s32(0);
            let mut sum = 0f32;
            for i in 0..nb {
                // scales at 0 (16 bytes), qs at 16 (64), d at 80, dmin at 82.
                let x = &w[i * Q2K..(i + 1) * Q2K];
                let y = &a[i * Q8K..(i + 1) * Q8K];
                let yd = f32_at(y, 0);
                let d = yd * f16_at(x, 80);
                let dmin = -yd * f16_at(x, 82);

                let mins_and_scales = ld_u8(x.as_ptr());
                let mut aux = [0u8; 16];
                vst1q_u8(aux.as_mut_ptr(), vandq_u8(mins_and_scales, m4));
                let mins = vshrq_n_u8::<4>(mins_and_scales);
                let b = y.as_ptr().add(Q8K_BSUMS);
                let (s0, s1) = (ld_s16(b), ld_s16(b.add(16)));
                let (n0, n1) = (
                    vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(mins))),
                    vreinterpretq_s16_u16(vmovl_u8(vget_high_u8(mins))),
                );
                let p0 = vaddq_s32(
                    vmull_s16(vget_low_s16(n0), vget_low_s16(s0)),
                    vmull_s16(vget_high_s16(n0), vget_high_s16(s0)),
                );
                let p1 = vaddq_s32(
                    vmull_s16(vget_low_s16(n1), vget_low_s16(s1)),
                    vmull_s16(vget_high_s16(n1), vget_high_s16(s1)),
                );
                sum += dmin * vaddvq_s32(vaddq_s32(p0, p1)) as f32;

                let mut q2 = x.as_ptr().add(16);
                let mut q8 = y.as_ptr().add(Q8K_QS);
                let mut isum = 0i32;
                for j in 0..QK_K / 128 {
                    let bits = [ld_u8(q2), ld_u8(q2.add(16))];
                    for (k, shift) in [0i8, 2, 4, 6].into_iter().enumerate() {
                        let sh = vdupq_n_s8(-shift);
                        let q0 = vandq_u8(vshlq_u8(bits[0], sh), m3);
                        let q1 = vandq_u8(vshlq_u8(bits[1], sh), m3);
                        let p0 = vdot::<DP>(zero, vreinterpretq_s8_u8(q0), ld_s8(q8));
                        let p1 = vdot::<DP>(zero, vreinterpretq_s8_u8(q1), ld_s8(q8.add(16)));
                        let is = 8 * j + 2 * k;
                        isum += vaddvq_s32(p0) * i32::from(aux[is]);
                        isum += vaddvq_s32(p1) * i32::from(aux[is + 1]);
                        q8 = q8.add(32);
                    }
                    q2 = q2.add(32);
                }
                sum += d * isum as f32;
            }
            sum
        }
    }

    /// Q3_K × Q8_K (ggml NEON: `ggml_vec_dot_q3_K_q8_K`: `q = (bits & 3) −
    /// 4·(high bit clear)`, one `i32` per 16 values times its scale − 32,
    /// `sum += d·isum` per super-block).
    ///
    /// # Safety
    /// As [`q4_k_body`].
    #[inline(always)]
    unsafe fn q3_k_body<const DP: bool>(nb: usize, w: &[u8], a: &[u8]) -> f32 {
        // SAFETY: every pointer stays inside the `nb` checked blocks.
        unsafe {
            let m3b = vdupq_n_u8(3);
            let m0 = vdupq_n_u8(1);
            let m1 = vdupq_n_u8(2);
            let m2 = vdupq_n_u8(4);
            let m3 = vdupq_n_u8(8);
            let zero = vdupq_n_s32(0);
            let mut sum = 0f32;
            for i in 0..nb {
                // hmask at 0 (32 bytes), qs at 32 (64), scales at 96 (12), d at 108.
                let x = &w[i * Q3K..(i + 1) * Q3K];
                let y = &a[i * Q8K..(i + 1) * Q8K];
                let d = f32_at(y, 0) * f16_at(x, 108);
                let words = scales_q3_k(x[96..108].try_into().unwrap());
                let scale: [i32; 16] =
                    std::array::from_fn(|j| ((words[j / 4] >> (8 * (j % 4))) & 0xff) as i32 - 32);
                let mut qh = [ld_u8(x.as_ptr()), ld_u8(x.as_ptr().add(16))];
                let mut q3 = x.as_ptr().add(32);
                let mut q8 = y.as_ptr().add(Q8K_QS);
                let mut sc = scale.as_slice();
                let mut isum = 0i32;
                for j in 0..QK_K / 128 {
                    let b = [ld_u8(q3), ld_u8(q3.add(16))];
                    // 4 where the high bit is clear, for bit 0..4 of hmask.
                    let h = [
                        vshlq_n_u8::<2>(vbicq_u8(m0, qh[0])),
                        vshlq_n_u8::<2>(vbicq_u8(m0, qh[1])),
                        vshlq_n_u8::<1>(vbicq_u8(m1, qh[0])),
                        vshlq_n_u8::<1>(vbicq_u8(m1, qh[1])),
                        vbicq_u8(m2, qh[0]),
                        vbicq_u8(m2, qh[1]),
                        vshrq_n_u8::<1>(vbicq_u8(m3, qh[0])),
                        vshrq_n_u8::<1>(vbicq_u8(m3, qh[1])),
                    ];
                    let low = [
                        vandq_u8(b[0], m3b),
                        vandq_u8(b[1], m3b),
                        vandq_u8(vshrq_n_u8::<2>(b[0]), m3b),
                        vandq_u8(vshrq_n_u8::<2>(b[1]), m3b),
                        vandq_u8(vshrq_n_u8::<4>(b[0]), m3b),
                        vandq_u8(vshrq_n_u8::<4>(b[1]), m3b),
                        vandq_u8(vshrq_n_u8::<6>(b[0]), m3b),
                        vandq_u8(vshrq_n_u8::<6>(b[1]), m3b),
                    ];
                    for k in 0..8 {
                        let q = vsubq_s8(vreinterpretq_s8_u8(low[k]), vreinterpretq_s8_u8(h[k]));
                        let p = vdot::<DP>(zero, q, ld_s8(q8.add(16 * k)));
                        isum += vaddvq_s32(p) * sc[k];
                    }
                    sc = &sc[8..];
                    q3 = q3.add(32);
                    q8 = q8.add(128);
                    if j == 0 {
                        qh = [vshrq_n_u8::<4>(qh[0]), vshrq_n_u8::<4>(qh[1])];
                    }
                }
                sum += d * isum as f32;
            }
            sum
        }
    }

    /// Q4_K × Q8_K (ggml NEON: `ggml_vec_dot_q4_K_q8_K`, dotprod order of
    /// the float steps: `sumf -= dmin·mins`, then `sumf += d·(sumi1 + sumi2)`).
    ///
    /// # Safety
    /// `w`, `a` hold `nb` blocks; with `DP`, the CPU has dotprod.
    #[inline(always)]
    unsafe fn q4_k_body<const DP: bool>(nb: usize, w: &[u8], a: &[u8]) -> f32 {
        // SAFETY: every pointer stays inside the `nb` checked blocks.
        unsafe {
            let m4b = vdupq_n_u8(0x0f);
            let zero = vdupq_n_s32(0);
            let mut sumf = 0f32;
            for i in 0..nb {
                let x = &w[i * Q4K..(i + 1) * Q4K];
                let y = &a[i * Q8K..(i + 1) * Q8K];
                let yd = f32_at(y, 0);
                let d = yd * f16_at(x, 0);
                let dmin = yd * f16_at(x, 2);
                let packed: &[u8; 12] = x[4..16].try_into().unwrap();
                let sm = scales_mins_k4(packed);
                let mins: &[u8; 8] = sm[8..].try_into().unwrap();
                sumf -= dmin * mins_dot(y, mins) as f32;

                let mut q4 = x.as_ptr().add(16);
                let mut q8 = y.as_ptr().add(Q8K_QS);
                let (mut sumi1, mut sumi2) = (0i32, 0i32);
                for j in 0..QK_K / 64 {
                    let (b0, b1) = (ld_u8(q4), ld_u8(q4.add(16)));
                    let l0 = vreinterpretq_s8_u8(vandq_u8(b0, m4b));
                    let l1 = vreinterpretq_s8_u8(vandq_u8(b1, m4b));
                    let p1 = vdot::<DP>(vdot::<DP>(zero, l0, ld_s8(q8)), l1, ld_s8(q8.add(16)));
                    sumi1 += vaddvq_s32(p1) * i32::from(sm[2 * j]);
                    let h0 = vreinterpretq_s8_u8(vshrq_n_u8::<4>(b0));
                    let h1 = vreinterpretq_s8_u8(vshrq_n_u8::<4>(b1));
                    let p2 = vdot::<DP>(
                        vdot::<DP>(zero, h0, ld_s8(q8.add(32))),
                        h1,
                        ld_s8(q8.add(48)),
                    );
                    sumi2 += vaddvq_s32(p2) * i32::from(sm[2 * j + 1]);
                    q4 = q4.add(32);
                    q8 = q8.add(64);
                }
                sumf += d * (sumi1 + sumi2) as f32;
            }
            sumf
        }
    }

    /// Q5_K × Q8_K (ggml NEON: `ggml_vec_dot_q5_K_q8_K`:
    /// `sumf += d·sumi − dmin·mins` per super-block).
    ///
    /// # Safety
    /// As [`q4_k_body`].
    #[inline(always)]
    unsafe fn q5_k_body<const DP: bool>(nb: usize, w: &[u8], a: &[u8]) -> f32 {
        // SAFETY: every pointer stays inside the `nb` checked blocks.
        unsafe {
            let m4b = vdupq_n_u8(0x0f);
            let mone = vdupq_n_u8(1);
            let mtwo = vdupq_n_u8(2);
            let zero = vdupq_n_s32(0);
            let mut sumf = 0f32;
            for i in 0..nb {
                let x = &w[i * Q5K..(i + 1) * Q5K];
                let y = &a[i * Q8K..(i + 1) * Q8K];
                let yd = f32_at(y, 0);
                let d = yd * f16_at(x, 0);
                let dmin = yd * f16_at(x, 2);
                let packed: &[u8; 12] = x[4..16].try_into().unwrap();
                let sm = scales_mins_k4(packed);
                let mins: &[u8; 8] = sm[8..].try_into().unwrap();
                let sumi_mins = mins_dot(y, mins);

                // qh at 16 (32 bytes), qs at 48 (128 bytes).
                let mut qhbits = [ld_u8(x.as_ptr().add(16)), ld_u8(x.as_ptr().add(32))];
                let mut q5 = x.as_ptr().add(48);
                let mut q8 = y.as_ptr().add(Q8K_QS);
                let mut sumi = 0i32;
                for j in 0..QK_K / 64 {
                    let (b0, b1) = (ld_u8(q5), ld_u8(q5.add(16)));
                    // Bit 0 of qh → 16 on the low nibbles, bit 1 → the high ones.
                    let hl0 = vshlq_n_u8::<4>(vandq_u8(mone, qhbits[0]));
                    let hl1 = vshlq_n_u8::<4>(vandq_u8(mone, qhbits[1]));
                    let hh0 = vshlq_n_u8::<3>(vandq_u8(mtwo, qhbits[0]));
                    let hh1 = vshlq_n_u8::<3>(vandq_u8(mtwo, qhbits[1]));
                    qhbits = [vshrq_n_u8::<2>(qhbits[0]), vshrq_n_u8::<2>(qhbits[1])];
                    let l0 = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(b0, m4b), hl0));
                    let l1 = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(b1, m4b), hl1));
                    let h0 = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8::<4>(b0), hh0));
                    let h1 = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8::<4>(b1), hh1));
                    let p1 = vdot::<DP>(vdot::<DP>(zero, l0, ld_s8(q8)), l1, ld_s8(q8.add(16)));
                    sumi += vaddvq_s32(p1) * i32::from(sm[2 * j]);
                    let p2 = vdot::<DP>(
                        vdot::<DP>(zero, h0, ld_s8(q8.add(32))),
                        h1,
                        ld_s8(q8.add(48)),
                    );
                    sumi += vaddvq_s32(p2) * i32::from(sm[2 * j + 1]);
                    q5 = q5.add(32);
                    q8 = q8.add(64);
                }
                sumf += d * sumi as f32 - dmin * sumi_mins as f32;
            }
            sumf
        }
    }

    /// Q6_K × Q8_K (ggml NEON: `ggml_vec_dot_q6_K_q8_K`: the 6-bit values
    /// unsigned, `32·Σ bsums·scales` subtracted in integers, `sum += d_w·d_a·
    /// (isum − 32·isum_mins)` per super-block).
    ///
    /// # Safety
    /// As [`q4_k_body`].
    #[inline(always)]
    unsafe fn q6_k_body<const DP: bool>(nb: usize, w: &[u8], a: &[u8]) -> f32 {
        // SAFETY: every pointer stays inside the `nb` checked blocks.
        unsafe {
            let m4b = vdupq_n_u8(0x0f);
            let m3 = vdupq_n_u8(3);
            let zero = vdupq_n_s32(0);
            let mut sum = 0f32;
            for i in 0..nb {
                // ql at 0 (128 bytes), qh at 128 (64), scales at 192 (16 × i8), d at 208.
                let x = &w[i * Q6K..(i + 1) * Q6K];
                let y = &a[i * Q8K..(i + 1) * Q8K];
                let d_all = f16_at(x, 208);
                let scale: [i32; 16] = std::array::from_fn(|k| i32::from(x[192 + k] as i8));

                let b = y.as_ptr().add(Q8K_BSUMS);
                let (s0, s1) = (ld_s16(b), ld_s16(b.add(16)));
                let sc = vld1q_s8(x.as_ptr().add(192).cast());
                let (c0, c1) = (vmovl_s8(vget_low_s8(sc)), vmovl_s8(vget_high_s8(sc)));
                let prod = vaddq_s32(
                    vaddq_s32(
                        vmull_s16(vget_low_s16(s0), vget_low_s16(c0)),
                        vmull_s16(vget_high_s16(s0), vget_high_s16(c0)),
                    ),
                    vaddq_s32(
                        vmull_s16(vget_low_s16(s1), vget_low_s16(c1)),
                        vmull_s16(vget_high_s16(s1), vget_high_s16(c1)),
                    ),
                );
                let isum_mins = vaddvq_s32(prod);

                let mut isum = 0i32;
                let mut ql = x.as_ptr();
                let mut qh = x.as_ptr().add(128);
                let mut q8 = y.as_ptr().add(Q8K_QS);
                let mut sc = scale.as_slice();
                for _ in 0..QK_K / 128 {
                    let h = [ld_u8(qh), ld_u8(qh.add(16))];
                    let l = [
                        ld_u8(ql),
                        ld_u8(ql.add(16)),
                        ld_u8(ql.add(32)),
                        ld_u8(ql.add(48)),
                    ];
                    // Values 0..32: low nibbles of ql[0..32], qh bits 0-1;
                    // 32..64: low nibbles of ql[32..64], bits 2-3; 64..96:
                    // high nibbles of ql[0..32], bits 4-5; 96..128: high
                    // nibbles of ql[32..64], bits 6-7.
                    let hi = |v: uint8x16_t, shift: i32| -> uint8x16_t {
                        let s = vshlq_u8(v, vdupq_n_s8(-(shift as i8)));
                        vshlq_n_u8::<4>(vandq_u8(s, m3))
                    };
                    let q6 = [
                        vorrq_u8(vandq_u8(l[0], m4b), hi(h[0], 0)),
                        vorrq_u8(vandq_u8(l[1], m4b), hi(h[1], 0)),
                        vorrq_u8(vandq_u8(l[2], m4b), hi(h[0], 2)),
                        vorrq_u8(vandq_u8(l[3], m4b), hi(h[1], 2)),
                        vorrq_u8(vshrq_n_u8::<4>(l[0]), hi(h[0], 4)),
                        vorrq_u8(vshrq_n_u8::<4>(l[1]), hi(h[1], 4)),
                        vorrq_u8(vshrq_n_u8::<4>(l[2]), hi(h[0], 6)),
                        vorrq_u8(vshrq_n_u8::<4>(l[3]), hi(h[1], 6)),
                    ];
                    for (k, &q) in q6.iter().enumerate() {
                        let p = vdot::<DP>(zero, vreinterpretq_s8_u8(q), ld_s8(q8.add(16 * k)));
                        isum += vaddvq_s32(p) * sc[k];
                    }
                    ql = ql.add(64);
                    qh = qh.add(32);
                    q8 = q8.add(128);
                    sc = &sc[8..];
                }
                sum += d_all * f32_at(y, 0) * (isum - 32 * isum_mins) as f32;
            }
            sum
        }
    }
}

/// The weight types [`NEON_DOTS`] covers on aarch64, with the activation
/// type each kernel reads (that of the type's [`DotEntry`](super::DotEntry)).
/// Listed on every architecture so the table can be checked anywhere.
pub const NEON_TYPES: &[(GgmlType, GgmlType)] = &[
    (GgmlType::Q4_0, GgmlType::Q8_0),
    (GgmlType::Q4_1, GgmlType::Q8_1),
    (GgmlType::Q5_0, GgmlType::Q8_0),
    (GgmlType::Q5_1, GgmlType::Q8_1),
    (GgmlType::Q8_0, GgmlType::Q8_0),
    (GgmlType::IQ4_NL, GgmlType::Q8_0),
    (GgmlType::MXFP4, GgmlType::Q8_0),
    (GgmlType::Q2_K, GgmlType::Q8_K),
    (GgmlType::Q3_K, GgmlType::Q8_K),
    (GgmlType::Q4_K, GgmlType::Q8_K),
    (GgmlType::Q5_K, GgmlType::Q8_K),
    (GgmlType::Q6_K, GgmlType::Q8_K),
];

#[cfg(test)]
mod portable_tests {
    use super::*;
    use crate::kernels::{dot_entry, SimdLevel};

    #[test]
    fn neon_types_have_a_dot_entry_with_the_same_activation() {
        for &(w, act) in NEON_TYPES {
            let e = dot_entry(w).unwrap_or_else(|| panic!("{w}: NEON kernel but no DotEntry"));
            assert_eq!(
                e.act, act,
                "{w}: NEON kernel reads {act}, the entry says {}",
                e.act
            );
        }
    }

    #[test]
    fn neon_table_matches_neon_types() {
        // On aarch64 the table holds exactly NEON_TYPES (in order); elsewhere
        // it is empty and `at(Neon)` is the scalar twin.
        if cfg!(target_arch = "aarch64") {
            let got: Vec<_> = NEON_DOTS.iter().map(|&(t, _)| t).collect();
            let want: Vec<_> = NEON_TYPES.iter().map(|&(t, _)| t).collect();
            assert_eq!(got, want);
        } else {
            assert!(NEON_DOTS.is_empty());
        }
        for &(w, _) in NEON_TYPES {
            let e = dot_entry(w).unwrap();
            let want = kernel(w).unwrap_or(e.scalar);
            assert_eq!(e.at(SimdLevel::Neon) as usize, want as usize, "{w}");
        }
    }

    #[test]
    fn neon_level_sorts_above_scalar_only() {
        assert!(SimdLevel::Scalar < SimdLevel::Neon);
        assert!(SimdLevel::Neon < SimdLevel::Avx2);
        assert_eq!(SimdLevel::Neon.name(), "neon");
        let levels = SimdLevel::available();
        assert_eq!(
            levels.contains(&SimdLevel::Neon),
            cfg!(target_arch = "aarch64")
        );
    }
}

#[cfg(all(test, target_arch = "aarch64"))]
mod tests {
    use super::arm::*;
    use super::*;
    use crate::blocks::QK_K;
    use crate::kernels::dot_entry;
    use crate::kernels::kquants::scales_mins_k4;

    /// Largest `|neon − scalar|` allowed, relative to `Σ|terms|` (see
    /// [`abs_terms`]). The two differ only in the order of f32 additions of
    /// at most a few dozen terms (two or four lanes per block against one,
    /// or eight lanes against one per super-block), so the error is a few
    /// f32 ulps of `Σ|terms|`; 1e-5 leaves room for ~100 of them and still
    /// catches any integer mistake (one wrong product moves the sum by
    /// ≥ `1/Σ|q|` of it, ~1e-4 for a 32-value block).
    const TOLERANCE: &[(GgmlType, f64)] = &[
        (GgmlType::Q4_0, 1e-5),
        (GgmlType::Q4_1, 1e-5),
        (GgmlType::Q5_0, 1e-5),
        (GgmlType::Q5_1, 1e-5),
        (GgmlType::Q8_0, 1e-5),
        (GgmlType::IQ4_NL, 1e-5),
        (GgmlType::MXFP4, 1e-5),
        (GgmlType::Q2_K, 1e-5),
        (GgmlType::Q3_K, 1e-5),
        (GgmlType::Q4_K, 1e-5),
        (GgmlType::Q5_K, 1e-5),
        (GgmlType::Q6_K, 1e-5),
    ];

    /// Block counts: odd and even, the pair loop's tail, a long row.
    const BLOCKS: [usize; 5] = [1, 2, 3, 7, 16];

    type Unsafe = unsafe fn(usize, &[u8], &[u8]) -> f32;

    /// The two paths of weight type `t`: plain and dotprod.
    fn paths(t: GgmlType) -> (VecDot, Unsafe) {
        match t {
            GgmlType::Q4_0 => (q4_0_plain, q4_0_dotprod),
            GgmlType::Q4_1 => (q4_1_plain, q4_1_dotprod),
            GgmlType::Q5_0 => (q5_0_plain, q5_0_dotprod),
            GgmlType::Q5_1 => (q5_1_plain, q5_1_dotprod),
            GgmlType::Q8_0 => (q8_0_plain, q8_0_dotprod),
            GgmlType::IQ4_NL => (iq4_nl_plain, iq4_nl_dotprod),
            GgmlType::MXFP4 => (mxfp4_plain, mxfp4_dotprod),
            GgmlType::Q2_K => (q2_k_plain, q2_k_dotprod),
            GgmlType::Q3_K => (q3_k_plain, q3_k_dotprod),
            GgmlType::Q4_K => (q4_k_plain, q4_k_dotprod),
            GgmlType::Q5_K => (q5_k_plain, q5_k_dotprod),
            GgmlType::Q6_K => (q6_k_plain, q6_k_dotprod),
            _ => panic!("{t}: no NEON kernel"),
        }
    }

    /// xorshift32 → roughly normal f32 (sum of four uniforms, centred).
    struct Rng(u32);
    impl Rng {
        fn uniform(&mut self) -> f32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 17;
            self.0 ^= self.0 << 5;
            (self.0 >> 8) as f32 / (1u32 << 24) as f32
        }
        fn normal(&mut self) -> f32 {
            (0..4).map(|_| self.uniform()).sum::<f32>() - 2.0
        }
    }

    /// `bytes` copied to offset 1 of a fresh buffer: a row at an odd address.
    fn unaligned(bytes: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; bytes.len() + 1];
        v[1..].copy_from_slice(bytes);
        v
    }

    /// The activation values of a quantized activation row (`d · q`).
    fn act_values(act: GgmlType, a: &[u8], n: usize) -> Vec<f32> {
        let (qk, size, qs, d_f32) = match act {
            GgmlType::Q8_0 => (32, 34, 2, false),
            GgmlType::Q8_1 => (32, 36, 4, false),
            GgmlType::Q8_K => (QK_K, 292, 4, true),
            _ => unreachable!(),
        };
        (0..n)
            .map(|i| {
                let b = &a[(i / qk) * size..];
                let d = if d_f32 {
                    f32::from_le_bytes(b[..4].try_into().unwrap())
                } else {
                    half::f16::from_le_bytes([b[0], b[1]]).to_f32()
                };
                d * f32::from(b[qs + i % qk] as i8)
            })
            .collect()
    }

    /// `|min|` of the weight's value `i` (the offset a dot kernel adds in a
    /// separate float term): Q4_1/Q5_1's `m`, Q2_K's `dmin · m_j` (per 16), Q4_K/Q5_K's `dmin · m_j`; 0 for the
    /// types without one.
    fn abs_min(t: GgmlType, w: &[u8], i: usize) -> f32 {
        let f16 = |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).to_f32().abs();
        match t {
            GgmlType::Q4_1 => f16(&w[(i / 32) * 20 + 2..]),
            GgmlType::Q5_1 => f16(&w[(i / 32) * 24 + 2..]),
            GgmlType::Q4_K | GgmlType::Q5_K => {
                let size = if t == GgmlType::Q4_K { 144 } else { 176 };
                let b = &w[(i / QK_K) * size..];
                let sm = scales_mins_k4(b[4..16].try_into().unwrap());
                f16(&b[2..]) * f32::from(sm[8 + (i % QK_K) / 32])
            }
            GgmlType::Q2_K => {
                let b = &w[(i / QK_K) * 84..];
                f16(&b[82..]) * f32::from(b[(i % QK_K) / 16] >> 4)
            }
            _ => 0.0,
        }
    }

    /// `Σ|terms|` of a dot: `Σ|w_i·a_i| + 2·Σ|min_i|·|a_i|`, a bound on the
    /// magnitudes of the float terms either kernel adds (the integer part
    /// `Σ(w_i − min_i)·a_i` and the mins term `Σ min_i·a_i`).
    fn abs_terms(t: GgmlType, act: GgmlType, w: &[u8], a: &[u8], n: usize) -> f64 {
        let mut wf = vec![0f32; n];
        crate::dequantize(t, w, &mut wf).unwrap();
        let af = act_values(act, a, n);
        (0..n)
            .map(|i| {
                let (wv, av) = (f64::from(wf[i]), f64::from(af[i]));
                (wv * av).abs() + 2.0 * f64::from(abs_min(t, w, i)) * av.abs()
            })
            .sum()
    }

    /// A weight row and an activation row of `nb` blocks of `t`, quantized
    /// from random values (the weights with a row scale and an offset, so
    /// the min types use their mins).
    fn case(t: GgmlType, act: GgmlType, nb: usize, seed: u32) -> (usize, Vec<u8>, Vec<u8>) {
        let n = nb * t.block_size() as usize;
        let mut rng = Rng(seed.wrapping_mul(2_654_435_761).max(1));
        let scale = 0.01 + 3.0 * rng.uniform();
        let offset = rng.normal() * 0.5;
        let x: Vec<f32> = (0..n).map(|_| (rng.normal() + offset) * scale).collect();
        let y: Vec<f32> = (0..n).map(|_| rng.normal() * 2.0).collect();
        let mut w = vec![0u8; nb * t.type_size() as usize];
        crate::quantize(t, &x, &mut w).unwrap();
        let na = n / act.block_size() as usize;
        let mut a = vec![0u8; na * act.type_size() as usize];
        crate::quantize(act, &y, &mut a).unwrap();
        (n, w, a)
    }

    fn tolerance(t: GgmlType) -> f64 {
        TOLERANCE.iter().find(|(ty, _)| *ty == t).unwrap().1
    }

    /// Runs `dot` against the scalar twin over every block count and a few
    /// seeds, with rows at odd addresses; returns the number of cases.
    fn check_path(t: GgmlType, path: &str, dot: impl Fn(usize, &[u8], &[u8]) -> f32) -> usize {
        let e = dot_entry(t).unwrap();
        let tol = tolerance(t);
        let mut cases = 0;
        for nb in BLOCKS {
            for seed in 1..=4u32 {
                let (n, w, a) = case(t, e.act, nb, seed * 7919 + nb as u32);
                let (wu, au) = (unaligned(&w), unaligned(&a));
                let want = (e.scalar)(n, &w, &a);
                let got = dot(n, &wu[1..], &au[1..]);
                let mag = abs_terms(t, e.act, &w, &a, n);
                let err = (f64::from(got) - f64::from(want)).abs();
                assert!(
                    got.is_finite() && err <= tol * mag + 1e-30,
                    "{t} {path} nb={nb} seed={seed}: {got} vs scalar {want} \
                     (err {err:.3e}, Σ|terms| {mag:.3e}, tol {tol:.0e})"
                );
                cases += 1;
            }
        }
        // An all-zero activation row gives exactly 0 (up to the sign).
        let (n, w, mut a) = case(t, e.act, 3, 99);
        a.iter_mut().for_each(|b| *b = 0);
        assert_eq!(dot(n, &w, &a), 0.0, "{t} {path}: zero activations");
        cases + 1
    }

    #[test]
    fn neon_plain_path_matches_scalar_twin() {
        let mut total = 0;
        for &(t, _) in NEON_TYPES {
            let (plain, _) = paths(t);
            total += check_path(t, "plain", plain);
        }
        eprintln!("plain NEON: {total} cases");
    }

    #[test]
    fn neon_dotprod_path_matches_scalar_twin() {
        if !has_dotprod() {
            eprintln!("no dotprod on this CPU: dotprod path not run");
            return;
        }
        let mut total = 0;
        for &(t, _) in NEON_TYPES {
            let (_, dotprod) = paths(t);
            // SAFETY: dotprod checked above.
            total += check_path(t, "dotprod", |n, w, a| unsafe { dotprod(n, w, a) });
        }
        eprintln!("dotprod NEON: {total} cases");
    }

    #[test]
    fn neon_entry_point_takes_the_detected_path() {
        for &(t, f) in NEON_DOTS {
            let e = dot_entry(t).unwrap();
            let (plain, dotprod) = paths(t);
            let (n, w, a) = case(t, e.act, 5, 3);
            let want = if has_dotprod() {
                // SAFETY: dotprod present.
                unsafe { dotprod(n, &w, &a) }
            } else {
                plain(n, &w, &a)
            };
            assert_eq!(f(n, &w, &a).to_bits(), want.to_bits(), "{t}");
        }
    }

    #[test]
    fn neon_lane_reducing_kernels_paths_agree_bit_for_bit() {
        // IQ4_NL, MXFP4 and the K-quants reduce each block's integer dot
        // before any float step, so the two paths give the same bits.
        if !has_dotprod() {
            return;
        }
        for t in [
            GgmlType::IQ4_NL,
            GgmlType::MXFP4,
            GgmlType::Q2_K,
            GgmlType::Q3_K,
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
        ] {
            let e = dot_entry(t).unwrap();
            let (plain, dotprod) = paths(t);
            for nb in BLOCKS {
                let (n, w, a) = case(t, e.act, nb, 11);
                // SAFETY: dotprod checked above.
                let d = unsafe { dotprod(n, &w, &a) };
                assert_eq!(plain(n, &w, &a).to_bits(), d.to_bits(), "{t} nb={nb}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "not whole blocks")]
    fn neon_rejects_partial_blocks() {
        let f = super::kernel(GgmlType::Q4_0).unwrap();
        f(48, &[0u8; 36], &[0u8; 68]);
    }

    #[test]
    #[should_panic(expected = "blocks need")]
    fn neon_rejects_short_rows() {
        let f = super::kernel(GgmlType::Q4_K).unwrap();
        f(512, &[0u8; 144], &[0u8; 584]);
    }
}
