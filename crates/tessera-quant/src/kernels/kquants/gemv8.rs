//! Eight weight rows per pass for the K-quant GEMV in `vec_dot`'s order
//! (Q4_K when not repacked, Q5_K, Q6_K): one token, a matrix far larger
//! than the cache.
//!
//! The one-row kernels read one row after another, prefetching 2 KiB ahead
//! in a single stream. Here the 8 rows of a group advance together, super-
//! block by super-block, while the next group is prefetched as 4
//! interleaved streams (`kernels::prefetch_group`), the pattern
//! under which the 32-value types' 8-row kernels read memory fastest.
//!
//! **Same bits.** Each row runs exactly the one-row kernel's steps
//! (`avx2::VecDotChain`) in its own accumulator: the order of the
//! rows' steps is interleaved, the float operations of each row are not.

use super::super::legacy8::Rows8;
use crate::kernels::SimdLevel;
use crate::GgmlType;

/// The 8-row GEMV kernel in `vec_dot`'s order of `t` (Q4_K, Q5_K, Q6_K) at
/// `level`: `out[r]` equals the type's AVX2 dot ([`super::DOTS`]) of row
/// `r` bit for bit. `None` for other types and below AVX2.
pub fn rows8(t: GgmlType, level: SimdLevel) -> Option<Rows8> {
    #[cfg(target_arch = "x86_64")]
    if level >= SimdLevel::Avx2 {
        return match t {
            GgmlType::Q4_K => Some(x86::rows8::<crate::blocks::BlockQ4K>),
            GgmlType::Q5_K => Some(x86::rows8::<crate::blocks::BlockQ5K>),
            GgmlType::Q6_K => Some(x86::rows8::<crate::blocks::BlockQ6K>),
            _ => None,
        };
    }
    let _ = (t, level);
    None
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::mem::size_of;

    use super::super::avx2::VecDotChain;
    use super::super::{super_blocks, view, EightRows};
    use crate::blocks::BlockQ8K;
    use crate::kernels::{has_avx2, prefetch_group};

    /// The table entry: checks the shapes and the CPU (without AVX2, FMA
    /// and F16C each row goes through the scalar twin), then runs
    /// [`kernel`].
    pub(super) fn rows8<B: VecDotChain>(
        n: usize,
        w: &[u8],
        w_row: usize,
        a: &[u8],
        out: &mut [f32; 8],
    ) {
        let nb = super_blocks(n);
        let rows = EightRows::<B>::new(w, w_row, nb, "K-quant");
        let y = view::<BlockQ8K>(a, nb);
        if !has_avx2() {
            for (r, o) in out.iter_mut().enumerate() {
                *o = (B::SCALAR)(n, &w[r * w_row..], a);
            }
            return;
        }
        // SAFETY: AVX2/FMA/F16C checked; 8 aligned rows of nb blocks,
        // `rows.stride` blocks apart.
        *out = unsafe { kernel::<B>(rows.ptr.cast(), rows.stride * size_of::<B>(), nb, &y) };
    }

    /// 8 rows, `w_row` bytes apart from `x`, times `y`.
    ///
    /// # Safety
    /// AVX2+FMA+F16C; `x` is aligned for `B` and holds 8 rows of `nb`
    /// blocks `w_row` (a multiple of `B`'s alignment) bytes apart; `y` has
    /// `nb` blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn kernel<B: VecDotChain>(
        x: *const u8,
        w_row: usize,
        nb: usize,
        y: &[BlockQ8K],
    ) -> [f32; 8] {
        let size = size_of::<B>();
        // The next group's bytes, as many per row-block as the block
        // consumed: one group ahead all along (a third more, ending the
        // prefetch early, read 5-10 points slower, A/B in a quiet window).
        let (group, ahead) = (8 * w_row, size);
        let next = x.wrapping_add(group);
        // SAFETY (every call): this function's features.
        let mut acc = [unsafe { B::start() }; 8];
        for (b, yb) in y.iter().enumerate().take(nb) {
            for (r, acc) in acc.iter_mut().enumerate() {
                let done = (b * 8 + r) * ahead;
                if done < group {
                    prefetch_group(next, group, done, ahead);
                }
                // SAFETY: block b of row r is in bounds and aligned (the
                // caller's).
                let xb = unsafe { &*x.add(r * w_row + b * size).cast::<B>() };
                unsafe { xb.step(yb, acc) };
            }
        }
        acc.map(|a| unsafe { B::finish(a) })
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::kernels::dot_kernel;

    /// Every row equals the one-row kernel's bits, at an aligned and an odd
    /// address, with rows farther apart than their length.
    #[test]
    fn rows8_equal_one_row() {
        let level = SimdLevel::detect();
        let n = 3 * 256;
        let mut rng = tessera_testkit::rng::SplitMix64::new(0x6e6d_7638);
        for t in [GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K] {
            let Some(r8) = rows8(t, level) else { continue };
            let (dot, act) = dot_kernel(t).unwrap();
            let row = crate::matmul::row_bytes(t, n).unwrap();
            let w_row = row + 2 * t.type_size() as usize;
            let vals: Vec<f32> = (0..n).map(|_| rng.next_signed_unit()).collect();
            let mut w = vec![0u64; (8 * w_row + 8).div_ceil(8)];
            let wb: &mut [u8] = bytemuck::cast_slice_mut(&mut w);
            for r in 0..8 {
                let scaled: Vec<f32> = vals.iter().map(|v| v * (r as f32 + 1.0)).collect();
                crate::quantize(t, &scaled, &mut wb[r * w_row..r * w_row + row]).unwrap();
            }
            let x: Vec<f32> = (0..n).map(|_| rng.next_signed_unit() * 10.0).collect();
            let a_row = crate::matmul::row_bytes(act, n).unwrap();
            let mut a = vec![0u64; a_row.div_ceil(8)];
            let ab = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut a)[..a_row];
            crate::quantize(act, &x, ab).unwrap();
            let want: [f32; 8] = std::array::from_fn(|r| dot(n, &wb[r * w_row..], ab));
            let odd: Vec<u8> = std::iter::once(0)
                .chain(wb[..8 * w_row].iter().copied())
                .collect();
            for w in [&wb[..8 * w_row], &odd[1..]] {
                let mut got = [f32::NAN; 8];
                r8(n, w, w_row, ab, &mut got);
                assert_eq!(got.map(f32::to_bits), want.map(f32::to_bits), "{t:?}");
            }
        }
    }
}
