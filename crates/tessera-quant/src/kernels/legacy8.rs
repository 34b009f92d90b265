//! Eight weight rows per pass for the 32-value block types: the decode
//! GEMV kernels (one activation row, a matrix far larger than the cache).
//!
//! A one-row dot ([`super::legacy`]) pays per block for the activation load,
//! the scale conversions and a horizontal sum; with one token those costs
//! are not shared with anything and the kernel is compute-bound well below
//! the memory's speed. The kernels here take 8 consecutive rows at once:
//! each activation block is loaded (and rearranged) once for all 8, the 8
//! rows' scales are converted by one instruction, the rows' integer sums
//! are reduced together, and the next 8-row group is prefetched (as 4
//! interleaved streams, [`super::prefetch_group`]) while this one is
//! computed.
//!
//! **Same bits.** Every output keeps exactly the float operations of the
//! one-row kernel it replaces; only integer work (exact) and loads are
//! shared:
//!
//! - [`repacked_rows8`] (Q4_0, IQ4_NL, MXFP4 in ggml-cpu's repacked `8x8`
//!   order, [`super::legacy::repacked_dot`]): per row and block the exact
//!   integer dot `i`, then `acc = fma(f32(i), dx·dy, acc)` from 0. Here the
//!   8 rows' chains are the 8 lanes of one `__m256` (in the lane order
//!   [`ORDER`]), the same `vmulps`/`vfmadd` per lane.
//! - [`rows8`] (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 in `vec_dot`'s order, what a
//!   GEMV of a non-repacked matrix runs): per row the 8 i32 lanes of each
//!   block exactly as the one-row AVX2 kernel forms them, `acc =
//!   fma(dx·dy, f32(lanes), acc)` in its own 8-lane accumulator, `extra =
//!   fma(m, s, extra)` for the types with a min (8 rows in the lanes of one
//!   vector), then `hsum(acc) + extra` with the one-row kernel's `hsum`.
//!
//! Row `r` of a group is at `w[r * w_row..]`; rows may start at any byte
//! address (unaligned loads). The safe entry points check the shapes (a
//! short row panics) and the CPU features (without them they compute each
//! row with the one-row kernel).

#[cfg(target_arch = "x86_64")]
use std::mem::{offset_of, size_of};

#[cfg(target_arch = "x86_64")]
use super::legacy::{self, KVALUES_IQ4NL, KVALUES_MXFP4};
use super::SimdLevel;
#[cfg(target_arch = "x86_64")]
use super::VecDot;
#[cfg(target_arch = "x86_64")]
use crate::blocks::*;
use crate::GgmlType;

/// Eight weight rows times one activation row: `n` values, row `r` of the
/// eight at `w[r * w_row..]`, `out[r]` its result.
pub type Rows8 = fn(n: usize, w: &[u8], w_row: usize, a: &[u8], out: &mut [f32; 8]);

/// The 8-row kernel in the repacked `8x8` order of `t` (Q4_0, IQ4_NL,
/// MXFP4) at `level`: `out[r]` equals [`legacy::repacked_dot`]`(t)` of row
/// `r` bit for bit. `None` where `repacked_dot` is `None`.
pub fn repacked_rows8(t: GgmlType, level: SimdLevel) -> Option<Rows8> {
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

/// The 8-row GEMV kernel in `vec_dot`'s order of `t` (Q4_0, Q4_1, Q5_0,
/// Q5_1, Q8_0) at `level`: `out[r]` equals the type's AVX2 dot
/// ([`super::dot_kernel`]) of row `r` bit for bit. `None` below AVX2.
pub fn rows8(t: GgmlType, level: SimdLevel) -> Option<Rows8> {
    #[cfg(target_arch = "x86_64")]
    if level >= SimdLevel::Avx2 {
        return x86::ROWS8.iter().find(|(ty, _)| *ty == t).map(|&(_, f)| f);
    }
    let _ = (t, level);
    None
}

/// Lane `j` of the kernels' vectors holds row `ORDER[j]` of the group (the
/// order the `hadd` tree leaves the row sums in).
pub const ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

#[cfg(target_arch = "x86_64")]
/// Panics unless `n` is whole blocks of 32 and `w` holds 8 rows of them
/// `w_row` bytes apart and `a` one row; returns the number of blocks.
fn check8(name: &str, n: usize, w: &[u8], w_row: usize, wb: usize, a: &[u8], ab: usize) -> usize {
    assert!(
        n.is_multiple_of(QK),
        "{name} rows8: {n} values are not whole blocks of {QK}"
    );
    let nb = n / QK;
    assert!(
        w_row >= nb * wb && w.len() >= 7 * w_row + nb * wb && a.len() >= nb * ab,
        "{name} rows8: 8 rows of {nb} blocks {w_row} bytes apart and an activation row \
         need {} + {} bytes, got {} and {}",
        7 * w_row + nb * wb,
        nb * ab,
        w.len(),
        a.len()
    );
    nb
}

/// Each row alone through the one-row kernel `dot`.
#[cfg(target_arch = "x86_64")]
fn rows_by_dots(n: usize, w: &[u8], w_row: usize, a: &[u8], out: &mut [f32; 8], dot: VecDot) {
    for (r, o) in out.iter_mut().enumerate() {
        *o = dot(n, &w[r * w_row..], a);
    }
}

#[cfg(target_arch = "x86_64")]
const Q8_0_QS: usize = offset_of!(BlockQ8_0, qs);
#[cfg(target_arch = "x86_64")]
const Q8_0: usize = size_of::<BlockQ8_0>();

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The AVX2 bodies. The safe wrappers check shapes and features; the
    //! `#[target_feature]` bodies read through raw pointers with unaligned
    //! loads.

    use super::*;
    use crate::kernels::legacy::x86::{
        hsum_ps, products, Mode, TileType, TQ4_0, TQ4_1, TQ5_0, TQ5_1, TQ8_0,
    };
    use crate::kernels::{has_avx2, prefetch_group};
    use std::arch::x86_64::*;

    /// A nibble type as the 8-row kernels see it: 16 bytes of packed values
    /// at `QS` (value `j` in the low nibble of byte `j`, value `16 + j` in
    /// its high nibble), mapped through `LUT` where there is one.
    trait Nibbles {
        /// Block bytes.
        const W: usize;
        /// Where the packed nibbles start.
        const QS: usize;
        /// The values of the 16 codes (none: the code itself).
        const LUT: Option<[i8; 16]>;
        /// The unsigned codes stand for `code − OFFSET`; 0: `LUT` gives
        /// signed values (multiplied by sign tricks).
        const OFFSET: i8;
        /// The 8 blocks' scales as f32, block `xb[ORDER[j]]` in lane `j`.
        unsafe fn scales8(xb: &[*const u8; 8]) -> __m256;
    }

    /// The f16 scale at byte 0 of each block, in [`ORDER`].
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn f16_scales8(xb: &[*const u8; 8]) -> __m256 {
        // SAFETY: the caller's: each block starts with its f16 scale.
        let h = |j: usize| u64::from(unsafe { xb[ORDER[j]].cast::<u16>().read_unaligned() });
        // Packed in general registers, as in `f16x8`.
        let lo = h(0) | h(1) << 16 | h(2) << 32 | h(3) << 48;
        let hi = h(4) | h(5) << 16 | h(6) << 32 | h(7) << 48;
        _mm256_cvtph_ps(_mm_set_epi64x(hi as i64, lo as i64))
    }

    struct NQ4_0;
    impl Nibbles for NQ4_0 {
        const W: usize = size_of::<BlockQ4_0>();
        const QS: usize = offset_of!(BlockQ4_0, qs);
        const LUT: Option<[i8; 16]> = None;
        const OFFSET: i8 = 8;
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn scales8(xb: &[*const u8; 8]) -> __m256 {
            // SAFETY: the caller's.
            unsafe { f16_scales8(xb) }
        }
    }

    struct Iq4Nl;
    impl Nibbles for Iq4Nl {
        const W: usize = size_of::<BlockIq4Nl>();
        const QS: usize = offset_of!(BlockIq4Nl, qs);
        const LUT: Option<[i8; 16]> = Some(KVALUES_IQ4NL);
        const OFFSET: i8 = 0;
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn scales8(xb: &[*const u8; 8]) -> __m256 {
            // SAFETY: the caller's.
            unsafe { f16_scales8(xb) }
        }
    }

    /// MXFP4's values plus 12 (0..=24, unsigned).
    const KVALUES_MXFP4_U: [i8; 16] = {
        let mut t = [0i8; 16];
        let mut i = 0;
        while i < 16 {
            t[i] = KVALUES_MXFP4[i] + 12;
            i += 1;
        }
        t
    };

    struct Mxfp4;
    impl Nibbles for Mxfp4 {
        const W: usize = size_of::<BlockMxfp4>();
        const QS: usize = offset_of!(BlockMxfp4, qs);
        const LUT: Option<[i8; 16]> = Some(KVALUES_MXFP4_U);
        const OFFSET: i8 = 12;
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn scales8(xb: &[*const u8; 8]) -> __m256 {
            // SAFETY: the caller's: each block starts with its exponent byte.
            let v: [f32; 8] =
                std::array::from_fn(|j| legacy::e8m0_half(unsafe { xb[ORDER[j]].read() }));
            // SAFETY: 8 f32.
            unsafe { _mm256_loadu_ps(v.as_ptr()) }
        }
    }

    /// The repacked order for 8 rows: per block, the exact integer dot of
    /// each row (two rows per register: row `2k` in the low 128 bits, row
    /// `2k + 1` in the high), the 8 sums reduced by one `hadd` tree into
    /// the lanes of one vector ([`ORDER`]), then, lane-wise as the one-row
    /// kernel does in scalar, `acc = fma(f32(i), dx·dy, acc)`.
    ///
    /// # Safety
    /// AVX2+FMA+F16C; 8 rows of `nb` blocks at `w`, `w_row` bytes apart;
    /// `nb` Q8_0 blocks at `a`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn repacked8<T: Nibbles>(
        nb: usize,
        w: *const u8,
        w_row: usize,
        a: *const u8,
    ) -> [f32; 8] {
        let m4 = _mm256_set1_epi8(0x0f);
        let ones = _mm256_set1_epi16(1);
        let k = _mm256_set1_epi8(T::OFFSET);
        // SAFETY: 16 bytes.
        let lut = T::LUT
            .map(|t| unsafe { _mm256_broadcastsi128_si256(_mm_loadu_si128(t.as_ptr().cast())) });
        // The next group of 8 rows (a GEMV's rows are consecutive), swept
        // in order, 8 blocks' worth of bytes per block step.
        let next = w.wrapping_add(8 * w_row);
        let mut acc = _mm256_setzero_ps();
        // SAFETY (every read): block b < nb of each row and of a.
        unsafe {
            let rows: [*const u8; 8] = std::array::from_fn(|r| w.add(r * w_row));
            for b in 0..nb {
                prefetch_group(next, 8 * nb * T::W, b * 8 * T::W, 8 * T::W);
                let yb = a.add(b * Q8_0);
                // Values 0..16 and 16..32 of the activation, in both halves.
                let ylo = _mm256_broadcastsi128_si256(_mm_loadu_si128(yb.add(Q8_0_QS).cast()));
                let yhi = _mm256_broadcastsi128_si256(_mm_loadu_si128(yb.add(Q8_0_QS + 16).cast()));
                let corr =
                    _mm256_add_epi16(_mm256_maddubs_epi16(k, ylo), _mm256_maddubs_epi16(k, yhi));
                let xb: [*const u8; 8] = std::array::from_fn(|r| rows[r].add(b * T::W));
                let v: [__m256i; 4] = std::array::from_fn(|p| {
                    let q = _mm256_loadu2_m128i(
                        xb[2 * p + 1].add(T::QS).cast(),
                        xb[2 * p].add(T::QS).cast(),
                    );
                    let mut lo = _mm256_and_si256(q, m4);
                    let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
                    if let Some(lut) = lut {
                        lo = _mm256_shuffle_epi8(lut, lo);
                        hi = _mm256_shuffle_epi8(lut, hi);
                    }
                    if T::OFFSET != 0 {
                        // Σ(code − k)·y over 4 values per i16 (|·| ≤ 4·24·128).
                        let p16 = _mm256_add_epi16(
                            _mm256_maddubs_epi16(lo, ylo),
                            _mm256_maddubs_epi16(hi, yhi),
                        );
                        _mm256_madd_epi16(_mm256_sub_epi16(p16, corr), ones)
                    } else {
                        // Signed values: |x|·sign(y, x), pairs ≤ 2·127·128.
                        let pl = _mm256_maddubs_epi16(
                            _mm256_sign_epi8(lo, lo),
                            _mm256_sign_epi8(ylo, lo),
                        );
                        let ph = _mm256_maddubs_epi16(
                            _mm256_sign_epi8(hi, hi),
                            _mm256_sign_epi8(yhi, hi),
                        );
                        _mm256_add_epi32(_mm256_madd_epi16(pl, ones), _mm256_madd_epi16(ph, ones))
                    }
                });
                // Low halves rows 0,2 | 4,6, high halves 1,3 | 5,7 → ORDER.
                let i =
                    _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
                let dy = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(
                    yb.cast::<u16>().read_unaligned(),
                ))));
                let d = _mm256_mul_ps(T::scales8(&xb), _mm256_set1_ps(dy));
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), d, acc);
            }
        }
        let mut lanes = [0f32; 8];
        // SAFETY: 8 f32.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        let mut out = [0f32; 8];
        for (j, &r) in ORDER.iter().enumerate() {
            out[r] = lanes[j];
        }
        out
    }

    /// The f16 at byte `off` of each of 8 blocks, row order, as f32 (a
    /// gather was slower here).
    ///
    /// # Safety
    /// 2 readable bytes at `xb[r] + off`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn f16x8(xb: &[*const u8; 8], off: usize) -> __m256 {
        // SAFETY: the caller's.
        let h = |r: usize| u64::from(unsafe { xb[r].add(off).cast::<u16>().read_unaligned() });
        // Packed in general registers: 8 narrow stores read back by one wide
        // load would miss store-to-load forwarding (5 % slower).
        let lo = h(0) | h(1) << 16 | h(2) << 32 | h(3) << 48;
        let hi = h(4) | h(5) << 16 | h(6) << 32 | h(7) << 48;
        _mm256_cvtph_ps(_mm_set_epi64x(hi as i64, lo as i64))
    }

    /// [`dot8`] for the 4-bit types with plain nibbles (Q4_0, Q4_1), two
    /// rows per register: the 16 packed bytes of rows `2p` and `2p + 1`
    /// in one load, their low nibbles (values 0–15) against the
    /// activation's first 16 bytes in both halves, the high nibbles
    /// (16–31) against the last 16. Row `2p`'s lanes 0–3 are then the low
    /// 128 bits of `lo`'s sums, its lanes 4–7 the low 128 bits of `hi`'s
    /// (row `2p + 1` in the high bits): each lane holds the one-row
    /// kernel's integers and takes its FMA chain, only in another register
    /// position; the lanes are put back in place before the `hsum`.
    ///
    /// # Safety
    /// As [`dot8`]; `T` has 16 packed nibble bytes at `qs`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot8_nibbles<T: TileType>(
        nb: usize,
        w: *const u8,
        w_row: usize,
        qs: usize,
        a: *const u8,
    ) -> [f32; 8] {
        let ones = _mm256_set1_epi16(1);
        let m4 = _mm256_set1_epi8(0x0f);
        let next = w.wrapping_add(8 * w_row);
        // Pair p: lanes 0–3 (in `acc[p][0]`) and 4–7 (`acc[p][1]`) of rows
        // 2p (low 128 bits) and 2p + 1 (high).
        let mut acc = [[_mm256_setzero_ps(); 2]; 4];
        // The types with a min: Σ m·s of rows 0–3 and 4–7 in the odd lanes.
        let mut extra = [_mm256_setzero_ps(); 2];
        // dx·dy of rows 2p, 2p + 1, each in 4 lanes, from the vector of 8
        // rows (d only) or of rows 0–3 / 4–7 (d in the even lanes, m in the
        // odd ones).
        let spread: [__m256i; 4] = std::array::from_fn(|p| {
            let (r0, r1) = if T::MIN {
                (4 * (p % 2) as i32, 4 * (p % 2) as i32 + 2)
            } else {
                (2 * p as i32, 2 * p as i32 + 1)
            };
            _mm256_setr_epi32(r0, r0, r0, r0, r1, r1, r1, r1)
        });
        // SAFETY (every read): block b < nb of each row and of a.
        unsafe {
            let rows: [*const u8; 8] = std::array::from_fn(|r| w.add(r * w_row));
            for b in 0..nb {
                prefetch_group(next, 8 * nb * T::W, b * 8 * T::W, 8 * T::W);
                let yb = a.add(b * T::A);
                let ylo = _mm256_broadcastsi128_si256(_mm_loadu_si128(yb.add(T::A_QS).cast()));
                let yhi = _mm256_broadcastsi128_si256(_mm_loadu_si128(yb.add(T::A_QS + 16).cast()));
                let (clo, chi) = match T::MODE {
                    Mode::Offset(k) => (
                        _mm256_maddubs_epi16(_mm256_set1_epi8(k), ylo),
                        _mm256_maddubs_epi16(_mm256_set1_epi8(k), yhi),
                    ),
                    _ => (_mm256_setzero_si256(), _mm256_setzero_si256()),
                };
                let xb: [*const u8; 8] = std::array::from_fn(|r| rows[r].add(b * T::W));
                let ys = _mm_cvtph_ps(_mm_cvtsi32_si128(yb.cast::<i32>().read_unaligned()));
                let dy = _mm256_broadcastss_ps(ys);
                let d = if T::MIN {
                    // (d, m) of each row as f32 pairs: rows 0–3, rows 4–7.
                    let dm = dm_pairs(&xb);
                    // s in the odd lanes: the m lanes' chains, 0 (unused) in
                    // the d lanes.
                    let s = _mm256_and_ps(
                        _mm256_broadcastss_ps(_mm_movehdup_ps(ys)),
                        _mm256_castsi256_ps(_mm256_setr_epi32(0, -1, 0, -1, 0, -1, 0, -1)),
                    );
                    for h in 0..2 {
                        extra[h] = _mm256_fmadd_ps(dm[h], s, extra[h]);
                    }
                    [_mm256_mul_ps(dm[0], dy), _mm256_mul_ps(dm[1], dy)]
                } else {
                    let d = _mm256_mul_ps(f16x8(&xb, 0), dy);
                    [d, d]
                };
                for p in 0..4 {
                    let q =
                        _mm256_loadu2_m128i(xb[2 * p + 1].add(qs).cast(), xb[2 * p].add(qs).cast());
                    let lo = _mm256_and_si256(q, m4);
                    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
                    let (plo, phi) = match T::MODE {
                        Mode::Offset(_) => (
                            _mm256_sub_epi16(_mm256_maddubs_epi16(lo, ylo), clo),
                            _mm256_sub_epi16(_mm256_maddubs_epi16(hi, yhi), chi),
                        ),
                        _ => (_mm256_maddubs_epi16(lo, ylo), _mm256_maddubs_epi16(hi, yhi)),
                    };
                    let dp = _mm256_permutevar8x32_ps(d[p / 2], spread[p]);
                    let [a0, a1] = &mut acc[p];
                    *a0 =
                        _mm256_fmadd_ps(dp, _mm256_cvtepi32_ps(_mm256_madd_epi16(plo, ones)), *a0);
                    *a1 =
                        _mm256_fmadd_ps(dp, _mm256_cvtepi32_ps(_mm256_madd_epi16(phi, ones)), *a1);
                }
            }
        }
        let mut ex = [0f32; 16];
        // SAFETY: 2 × 8 f32.
        unsafe {
            _mm256_storeu_ps(ex.as_mut_ptr(), extra[0]);
            _mm256_storeu_ps(ex.as_mut_ptr().add(8), extra[1]);
        }
        std::array::from_fn(|r| {
            let [a0, a1] = acc[r / 2];
            let lanes = if r % 2 == 0 {
                _mm256_permute2f128_ps::<0x20>(a0, a1)
            } else {
                _mm256_permute2f128_ps::<0x31>(a0, a1)
            };
            let sum = hsum_ps(lanes);
            if T::MIN {
                sum + ex[2 * r + 1]
            } else {
                sum
            }
        })
    }

    /// The f16 pairs at byte 0 of each of 8 blocks (`d`, `m`) as f32:
    /// `[d0, m0, d1, m1, d2, m2, d3, m3]` and the same for blocks 4–7. Two
    /// blocks' 4 bytes per general register: half the loads and shifts of
    /// [`f16x8`] twice.
    ///
    /// # Safety
    /// 4 readable bytes at each `xb[r]`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dm_pairs(xb: &[*const u8; 8]) -> [__m256; 2] {
        // SAFETY: the caller's.
        let w = |r: usize| u64::from(unsafe { xb[r].cast::<u32>().read_unaligned() });
        let p = |r: usize| (w(r) | w(r + 1) << 32) as i64;
        [
            _mm256_cvtph_ps(_mm_set_epi64x(p(2), p(0))),
            _mm256_cvtph_ps(_mm_set_epi64x(p(6), p(4))),
        ]
    }

    /// `vec_dot`'s order for 8 rows (see the module docs): the activation
    /// block loaded once, the 8 rows' `dx·dy` (and `m`) converted together,
    /// each row's lanes and FMA chain as in `legacy`'s `kernel!`.
    ///
    /// # Safety
    /// AVX2+FMA+F16C; 8 rows of `nb` blocks of `T` at `w`, `w_row` bytes
    /// apart; `nb` activation blocks of `T` at `a`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot8<T: TileType>(nb: usize, w: *const u8, w_row: usize, a: *const u8) -> [f32; 8] {
        let ones = _mm256_set1_epi16(1);
        let next = w.wrapping_add(8 * w_row);
        let mut acc = [_mm256_setzero_ps(); 8];
        // Σ m·s of the types with a min, row r in lane r.
        let mut extra = _mm256_setzero_ps();
        let mut d8 = [0f32; 8];
        // SAFETY (every read): block b < nb of each row and of a.
        unsafe {
            let rows: [*const u8; 8] = std::array::from_fn(|r| w.add(r * w_row));
            for b in 0..nb {
                prefetch_group(next, 8 * nb * T::W, b * 8 * T::W, 8 * T::W);
                let yb = a.add(b * T::A);
                let y = _mm256_loadu_si256(yb.add(T::A_QS).cast());
                let corr = match T::MODE {
                    Mode::Offset(k) => _mm256_maddubs_epi16(_mm256_set1_epi8(k), y),
                    _ => _mm256_setzero_si256(),
                };
                let xb: [*const u8; 8] = std::array::from_fn(|r| rows[r].add(b * T::W));
                // dy and (for the types with a min) s, both f16 at bytes 0 and 2.
                let ys = _mm_cvtph_ps(_mm_cvtsi32_si128(yb.cast::<i32>().read_unaligned()));
                let dy = _mm256_broadcastss_ps(ys);
                let (dx, m) = (f16x8(&xb, 0), f16x8(&xb, 2));
                _mm256_storeu_ps(d8.as_mut_ptr(), _mm256_mul_ps(dx, dy));
                if T::MIN {
                    let s = _mm256_broadcastss_ps(_mm_movehdup_ps(ys));
                    extra = _mm256_fmadd_ps(m, s, extra);
                }
                for r in 0..8 {
                    let q = T::unpack(xb[r]);
                    let lanes = _mm256_madd_epi16(products::<T>(q, y, corr), ones);
                    acc[r] = _mm256_fmadd_ps(
                        _mm256_broadcast_ss(&d8[r]),
                        _mm256_cvtepi32_ps(lanes),
                        acc[r],
                    );
                }
            }
        }
        let mut ex = [0f32; 8];
        // SAFETY: 8 f32.
        unsafe { _mm256_storeu_ps(ex.as_mut_ptr(), extra) };
        std::array::from_fn(|r| {
            let sum = hsum_ps(acc[r]);
            if T::MIN {
                sum + ex[r]
            } else {
                sum
            }
        })
    }

    macro_rules! rows8_fn {
        ($name:ident, $T:ty, $t:ident, $tname:literal, $body:ident $(, $qs:expr)?) => {
            fn $name(n: usize, w: &[u8], w_row: usize, a: &[u8], out: &mut [f32; 8]) {
                let nb = check8($tname, n, w, w_row, <$T>::W, a, <$T>::A);
                if !has_avx2() {
                    let dot = super::super::dot_entry(GgmlType::$t)
                        .expect("a legacy type")
                        .at(SimdLevel::Avx2);
                    return rows_by_dots(n, w, w_row, a, out, dot);
                }
                // SAFETY: shapes and features checked above.
                *out = unsafe { $body::<$T>(nb, w.as_ptr(), w_row, $($qs,)? a.as_ptr()) };
            }
        };
    }
    rows8_fn!(
        rows8_q4_0,
        TQ4_0,
        Q4_0,
        "Q4_0",
        dot8_nibbles,
        offset_of!(BlockQ4_0, qs)
    );
    rows8_fn!(
        rows8_q4_1,
        TQ4_1,
        Q4_1,
        "Q4_1",
        dot8_nibbles,
        offset_of!(BlockQ4_1, qs)
    );
    rows8_fn!(rows8_q5_0, TQ5_0, Q5_0, "Q5_0", dot8);
    rows8_fn!(rows8_q5_1, TQ5_1, Q5_1, "Q5_1", dot8);
    rows8_fn!(rows8_q8_0, TQ8_0, Q8_0, "Q8_0", dot8);

    /// The `vec_dot`-order 8-row kernels.
    pub(super) const ROWS8: &[(GgmlType, Rows8)] = &[
        (GgmlType::Q4_0, rows8_q4_0),
        (GgmlType::Q4_1, rows8_q4_1),
        (GgmlType::Q5_0, rows8_q5_0),
        (GgmlType::Q5_1, rows8_q5_1),
        (GgmlType::Q8_0, rows8_q8_0),
    ];

    macro_rules! repacked_fn {
        ($name:ident, $T:ty, $t:ident, $tname:literal) => {
            pub(super) fn $name(n: usize, w: &[u8], w_row: usize, a: &[u8], out: &mut [f32; 8]) {
                let nb = check8($tname, n, w, w_row, <$T as Nibbles>::W, a, Q8_0);
                if !has_avx2() {
                    let dot = legacy::repacked_dot(GgmlType::$t, SimdLevel::Avx2)
                        .expect("a repacked type");
                    return rows_by_dots(n, w, w_row, a, out, dot);
                }
                // SAFETY: shapes and features checked above.
                *out = unsafe { repacked8::<$T>(nb, w.as_ptr(), w_row, a.as_ptr()) };
            }
        };
    }
    repacked_fn!(repacked_q4_0, NQ4_0, Q4_0, "Q4_0");
    repacked_fn!(repacked_iq4_nl, Iq4Nl, IQ4_NL, "IQ4_NL");
    repacked_fn!(repacked_mxfp4, Mxfp4, MXFP4, "MXFP4");
}

// The kernels under test exist on x86-64 only (elsewhere `rows8` is `None`).
#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// Every `vec_dot`-order 8-row kernel gives the one-row AVX2 kernel's
    /// bits for each row, aligned and at an odd address.
    #[test]
    fn rows8_equal_one_row() {
        let level = SimdLevel::detect();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        use GgmlType::*;
        for t in [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0] {
            let Some(r8) = rows8(t, level) else {
                continue;
            };
            let (dot, act) = super::super::dot_kernel(t).unwrap();
            for nb in [1, 3, 8, 37] {
                let n = nb * QK;
                let row = crate::matmul::row_bytes(t, n).unwrap();
                let w_row = row + 3;
                let mut w = vec![0u8; 8 * w_row + 1];
                for r in 0..8 {
                    let v: Vec<f32> = (0..n)
                        .map(|_| ((next() % 2001) as f32 / 1000.0 - 1.0) * (r as f32 + 0.5))
                        .collect();
                    crate::quantize(t, &v, &mut w[1 + r * w_row..1 + r * w_row + row]).unwrap();
                }
                let x: Vec<f32> = (0..n)
                    .map(|_| (next() % 2001) as f32 / 100.0 - 10.0)
                    .collect();
                let mut a = vec![0u8; crate::matmul::row_bytes(act, n).unwrap()];
                crate::matmul::convert_row(level, act, &x, &mut a).unwrap();
                let aligned: Vec<u8> = w[1..].to_vec();
                for wb in [&w[1..], &aligned[..]] {
                    let mut got = [f32::NAN; 8];
                    r8(n, wb, w_row, &a, &mut got);
                    for r in 0..8 {
                        let want = dot(n, &wb[r * w_row..r * w_row + row], &a);
                        assert_eq!(
                            got[r].to_bits(),
                            want.to_bits(),
                            "{t:?} {nb} blocks row {r}"
                        );
                    }
                }
            }
        }
    }

    /// Every 8-row kernel gives each row's one-row bits, aligned and at an
    /// odd address, with rows further apart than their length.
    #[test]
    fn repacked_rows8_equal_one_row() {
        let level = SimdLevel::detect();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for t in [GgmlType::Q4_0, GgmlType::IQ4_NL, GgmlType::MXFP4] {
            let (Some(r8), Some(dot)) = (repacked_rows8(t, level), legacy::repacked_dot(t, level))
            else {
                continue;
            };
            for nb in [1, 3, 8, 37] {
                let n = nb * QK;
                let row = crate::matmul::row_bytes(t, n).unwrap();
                let w_row = row + 5;
                let vals: Vec<f32> = (0..n)
                    .map(|_| (next() % 2001) as f32 / 1000.0 - 1.0)
                    .collect();
                let mut w = vec![0u8; 8 * w_row + 1];
                for r in 0..8 {
                    let v: Vec<f32> = vals.iter().map(|&x| x * (r as f32 + 0.5)).collect();
                    crate::quantize(t, &v, &mut w[1 + r * w_row..1 + r * w_row + row]).unwrap();
                }
                let x: Vec<f32> = (0..n)
                    .map(|_| (next() % 2001) as f32 / 100.0 - 10.0)
                    .collect();
                let mut a = vec![<BlockQ8_0 as bytemuck::Zeroable>::zeroed(); nb];
                legacy::quantize_act_q8_0(level, &x, &mut a);
                let a: &[u8] = bytemuck::cast_slice(&a);
                let aligned: Vec<u8> = w[1..].to_vec();
                for wb in [&w[1..], &aligned[..]] {
                    let mut got = [f32::NAN; 8];
                    r8(n, wb, w_row, a, &mut got);
                    for r in 0..8 {
                        let want = dot(n, &wb[r * w_row..r * w_row + row], a);
                        assert_eq!(
                            got[r].to_bits(),
                            want.to_bits(),
                            "{t:?} {nb} blocks row {r}"
                        );
                    }
                }
            }
        }
    }
}
