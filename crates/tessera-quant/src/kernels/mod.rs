//! CPU dot-product kernels, one per weight type, each with a scalar twin and
//! SIMD variants chosen at run time.
//!
//! A dot kernel multiplies one weight row (`n` values stored as blocks of the
//! weight type) with one activation row already converted to the kernel's
//! activation type (Q8_0 for Q4_0, Q8_K for the K-quants, F32 for F32 …),
//! the way ggml's `vec_dot` does. Family modules register their kernels in a
//! [`DotEntry`] table; [`dot_kernel`] picks the best variant the running CPU
//! supports ([`SimdLevel::detect`]). Nothing is compiled for a fixed CPU: a
//! binary built on one x86-64 machine runs on any. On aarch64 the NEON
//! variants ([`neon`]) are a table of their own, [`neon::NEON_DOTS`].

use crate::GgmlType;

pub mod float;
pub mod iquants;
pub mod kquants;
pub mod legacy;
pub mod legacy8;
pub mod neon;

/// A dot kernel: `n` values; `w` holds `n / block_size` weight blocks, `a`
/// the activation row in the kernel's activation type.
pub type VecDot = fn(n: usize, w: &[u8], a: &[u8]) -> f32;

/// SIMD levels tessera has kernels for, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimdLevel {
    /// Portable Rust, the reference every variant is tested against.
    Scalar,
    /// aarch64 NEON (+ `dotprod` where the kernel and CPU have it); see
    /// [`neon`]. Sorts below the x86 levels, which it never meets.
    Neon,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// x86-64 AVX-512 F/BW/VL (+ VNNI where the kernel says so).
    Avx512,
}

impl SimdLevel {
    /// The best level this CPU supports.
    pub fn detect() -> SimdLevel {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = has_avx2();
            let avx512 = avx2
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl");
            if avx512 {
                return SimdLevel::Avx512;
            }
            if avx2 {
                return SimdLevel::Avx2;
            }
        }
        if neon::has_neon() {
            return SimdLevel::Neon;
        }
        SimdLevel::Scalar
    }

    /// Every level this CPU can run, lowest first (what the tests compare).
    pub fn available() -> Vec<SimdLevel> {
        let top = Self::detect();
        let arch: &[SimdLevel] = if top == SimdLevel::Neon {
            &[SimdLevel::Scalar, SimdLevel::Neon]
        } else {
            &[SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512]
        };
        arch.iter().copied().filter(|&l| l <= top).collect()
    }

    /// Lower-case name (`scalar`, `neon`, `avx2`, `avx512`).
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Neon => "neon",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }
}

/// Whether the CPU has what the AVX2 kernels use (AVX2, FMA, F16C); a
/// cached bit test, cheap enough to ask in every kernel entry point.
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// Prefetches bytes `[done, done + len)` of the next row group of an 8-row
/// GEMV kernel (`group` bytes at `next`, swept while the current group is
/// computed), as 4 interleaved streams: the group's quarters advance in
/// lockstep, each by `len / 4` bytes per call. One core reads memory
/// faster as several streams than as one (the bench's read table), and a
/// single sequential prefetch stream held the GEMV near the 1-stream
/// speed. A prefetch never faults; lines fetched twice at the quarters'
/// edges cost nothing.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn prefetch_group(next: *const u8, group: usize, done: usize, len: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    let (quarter, from, part) = (group / 4, done / 4, len.div_ceil(4));
    for s in 0..4 {
        let base = next.wrapping_add(s * quarter + from);
        let mut o = 0;
        while o < part {
            // SAFETY: a prefetch never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(o).cast()) };
            o += 64;
        }
    }
}

/// Panics unless `n` is whole blocks of `qk` values and `w`, `a` hold them
/// (`wb`, `ab` bytes per block); returns the number of blocks. Messages
/// read `{name} {kind}: …` (`Q4_0 dot`, `Q4_K NEON dot`).
#[inline]
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_blocks(
    name: &str,
    kind: &str,
    n: usize,
    qk: usize,
    w: &[u8],
    wb: usize,
    a: &[u8],
    ab: usize,
) -> usize {
    assert!(
        n.is_multiple_of(qk),
        "{name} {kind}: {n} values are not whole blocks of {qk}"
    );
    let nb = n / qk;
    assert!(
        w.len() >= nb * wb && a.len() >= nb * ab,
        "{name} {kind}: {nb} blocks need {} + {} bytes, got {} and {}",
        nb * wb,
        nb * ab,
        w.len(),
        a.len()
    );
    nb
}

/// A tile computed one dot at a time: `out[c * w.len() + r] = dot(w[r], a[c])`.
/// The fallback of the tile kernels when the CPU lacks their SIMD level.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // callers are x86-64 only
pub(crate) fn tile_by_dots(n: usize, w: &[&[u8]], a: &[&[u8]], out: &mut [f32], dot: VecDot) {
    for (c, ar) in a.iter().enumerate() {
        for (r, wr) in w.iter().enumerate() {
            out[c * w.len() + r] = dot(n, wr, ar);
        }
    }
}

/// Copies a tile result `res[c][r]` (C activation rows × R weight rows) to
/// `out[c * R + r]`.
#[cfg(target_arch = "x86_64")]
pub(crate) fn store_tile<const R: usize, const C: usize>(res: &[[f32; R]; C], out: &mut [f32]) {
    for (c, row) in res.iter().enumerate() {
        out[c * R..(c + 1) * R].copy_from_slice(row);
    }
}

/// Calls `$run::<R, C>($args…)` for a tile of `$r` weight rows (1–4) and `$c`
/// activation rows (1–2), the shapes the tile kernels are instantiated for;
/// the caller has checked the shape.
#[cfg(target_arch = "x86_64")]
macro_rules! tile_shape {
    ($r:expr, $c:expr, $run:ident($($arg:expr),*)) => {
        match ($r, $c) {
            (1, 1) => $run::<1, 1>($($arg),*),
            (2, 1) => $run::<2, 1>($($arg),*),
            (3, 1) => $run::<3, 1>($($arg),*),
            (4, 1) => $run::<4, 1>($($arg),*),
            (1, 2) => $run::<1, 2>($($arg),*),
            (2, 2) => $run::<2, 2>($($arg),*),
            (3, 2) => $run::<3, 2>($($arg),*),
            _ => $run::<4, 2>($($arg),*),
        }
    };
}
#[cfg(target_arch = "x86_64")]
pub(crate) use tile_shape;

/// The kernels of one weight type.
#[derive(Clone, Copy, Debug)]
pub struct DotEntry {
    /// Weight type.
    pub weight: GgmlType,
    /// Type the activations must be converted to.
    pub act: GgmlType,
    /// The scalar twin.
    pub scalar: VecDot,
    /// AVX2 variant. Only called when the CPU has AVX2+FMA+F16C.
    pub avx2: Option<VecDot>,
    /// AVX-512 variant. Only called when the CPU has AVX-512 F/BW/VL.
    pub avx512: Option<VecDot>,
}

impl DotEntry {
    /// The variant for `level`, falling back to lower levels (for
    /// [`SimdLevel::Neon`]: the type's kernel in [`neon::NEON_DOTS`], else
    /// the scalar twin).
    pub fn at(&self, level: SimdLevel) -> VecDot {
        if level == SimdLevel::Neon {
            return neon::kernel(self.weight).unwrap_or(self.scalar);
        }
        let avx512 = self.avx512.filter(|_| level >= SimdLevel::Avx512);
        let avx2 = self.avx2.filter(|_| level >= SimdLevel::Avx2);
        avx512.or(avx2).unwrap_or(self.scalar)
    }
}

/// Every family's kernels.
fn tables() -> [&'static [DotEntry]; 4] {
    [float::DOTS, legacy::DOTS, kquants::DOTS, iquants::DOTS]
}

/// The kernel entry of weight type `t`, if tessera has one.
pub fn dot_entry(t: GgmlType) -> Option<&'static DotEntry> {
    tables()
        .into_iter()
        .flat_map(|table| table.iter())
        .find(|e| e.weight == t)
}

/// The best dot kernel for weight type `t` on this CPU, with its activation type.
pub fn dot_kernel(t: GgmlType) -> Option<(VecDot, GgmlType)> {
    let e = dot_entry(t)?;
    Some((e.at(SimdLevel::detect()), e.act))
}
