//! K-quant and IQ4_XS · Q8_K in the float order of ggml-cpu's tiled matmul
//! (`ggml-cpu/tiled/`), one weight row times up to [`MAX_TOKENS`]
//! activation rows per call.
//!
//! llama.cpp (this build, on by default, `GGML_CPU_TILED_MM=0` turns it
//! off) multiplies **non-repacked** Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS
//! (and IQ1/IQ2/IQ3, not here) weights by batches of **8 or more** tokens
//! (per expert for `mul_mat_id`) with its tiled kernels instead of
//! `vec_dot`. The integers are the same as `vec_dot`'s; the floats are not.
//! Per output (row, token), over the super-blocks `b` in order, with the
//! row's `d`/`dmin` (f16 → f32) and the activation's `dy`:
//!
//! ```text
//! s1  = Σ_s sc_s · Σ_{i in s} (q_i − BIAS) · y_i      (exact i32)
//! s2  = Σ_s m_s · bsum_s                               (exact i32, min types)
//! res = d · f32(s1)                                    (vmulps)
//! res = res − dmin · f32(s2)                           (vfnmadd, min types)
//! acc = fma(res, dy, acc)                              (vfmadd, acc from +0)
//! ```
//!
//! (`tiled_run_microtile_avx2`, checked against the objdump of the built
//! `libggml-cpu.so`.) Per type: Q4_K/Q5_K sub-blocks of 32 with mins,
//! Q2_K of 16 with mins, Q6_K of 16 with `BIAS = 32` (q in 0..64, scales
//! i8), Q3_K of 16 with `BIAS = 4` (scales `sc − 32`), IQ4_XS of 32 with
//! the signed table values (scales `ls − 32`). For IQ4_XS ggml forms the
//! products with the `sign` trick, `|w| · sign(y, w)`, which turns
//! `−(−128)` into `−128`; both variants here do the same.
//!
//! Row splits, token tiles and threads never change a result: each output
//! is its own chain. The weight super-block is decoded once per call into
//! one byte per value plus 16 sub-block scales and mins ([`Decoded`]) and
//! reused for every token; the AVX2 variant forms 8 tokens' integers at a
//! time, reduces them with one `hadd` tree into the lanes of one vector and
//! runs the float chain of 8 tokens in one `__m256`.

use half::f16;

use super::{scales_mins_k4, scales_q3_k, super_blocks, view};
use crate::blocks::{BlockIq4Xs, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, QK_K};
use crate::kernels::SimdLevel;
use crate::quantize::iq4::KVALUES_IQ4NL;
use crate::GgmlType;

/// Activation rows per call at most.
pub const MAX_TOKENS: usize = 64;

/// One weight row (`n` values) times `acts.len() <= MAX_TOKENS` Q8_K rows:
/// `out[t] = w · acts[t]` in the tiled order.
pub type TiledRow = fn(n: usize, w: &[u8], acts: &[&[u8]], out: &mut [f32]);

/// `Some(kernel::<B>)` for the block type `B` of `t`, or `None` for a type
/// the tiled path does not take: the one list of the tiled types.
macro_rules! per_type {
    ($t:expr, $($kernel:ident)::+) => {
        match $t {
            GgmlType::Q2_K => Some($($kernel)::+::<BlockQ2K>),
            GgmlType::Q3_K => Some($($kernel)::+::<BlockQ3K>),
            GgmlType::Q4_K => Some($($kernel)::+::<BlockQ4K>),
            GgmlType::Q5_K => Some($($kernel)::+::<BlockQ5K>),
            GgmlType::Q6_K => Some($($kernel)::+::<BlockQ6K>),
            GgmlType::IQ4_XS => Some($($kernel)::+::<BlockIq4Xs>),
            _ => None,
        }
    };
}

/// The tiled kernel of `t` at `level`, or `None` for a type ggml's tiled
/// path does not take (or this module does not reproduce).
pub fn tiled_row(t: GgmlType, level: SimdLevel) -> Option<TiledRow> {
    #[cfg(target_arch = "x86_64")]
    if level >= SimdLevel::Avx2 {
        return per_type!(t, avx2::row);
    }
    let _ = level;
    tiled_row_scalar(t)
}

/// The scalar twins (the same floats; the integers are exact either way).
pub fn tiled_row_scalar(t: GgmlType) -> Option<TiledRow> {
    per_type!(t, row_scalar)
}

/// One weight super-block decoded for the tiled kernels: value `i` of the
/// block in `q[i]` (unsigned `0..64` for the K-quants, before `BIAS`; the
/// signed table value for IQ4_XS), the scale and min of the 16 values
/// `16s..16s + 16` in `sc[s]`, `mn[s]` (a 32-value sub-block's twice).
#[repr(C, align(32))]
pub struct Decoded {
    q: [u8; QK_K],
    sc: [i16; 16],
    mn: [i16; 16],
    d: f32,
    dmin: f32,
}

impl Decoded {
    fn new() -> Decoded {
        Decoded {
            q: [0; QK_K],
            sc: [0; 16],
            mn: [0; 16],
            d: 0.0,
            dmin: 0.0,
        }
    }
}

/// A weight block type of the tiled path.
pub trait TiledBlock: bytemuck::Pod {
    /// Subtracted from every `q` (as ggml's `BIAS`; 0 for the min types).
    const BIAS: i32 = 0;
    /// Whether `dmin · Σ m·bsum` is subtracted.
    const MIN: bool = false;
    /// `q` holds signed values multiplied with the `sign` trick (IQ4_XS).
    const SIGNED: bool = false;
    /// Fills `out` (every field the type uses).
    fn decode(&self, out: &mut Decoded);
}

/// What Q4_K and Q5_K share: `d`, `dmin`, the 8 scales and mins (each
/// stored for both halves of its 32) and the low 4 bits of every `q`.
#[inline(always)]
fn decode_k4(d: f16, dmin: f16, packed: &[u8; 12], qs: &[u8; 128], out: &mut Decoded) {
    out.d = d.to_f32();
    out.dmin = dmin.to_f32();
    let sm = scales_mins_k4(packed);
    for s in 0..16 {
        out.sc[s] = i16::from(sm[s / 2]);
        out.mn[s] = i16::from(sm[8 + s / 2]);
    }
    for j in 0..4 {
        for l in 0..32 {
            let b = qs[32 * j + l];
            out.q[64 * j + l] = b & 0xf;
            out.q[64 * j + 32 + l] = b >> 4;
        }
    }
}

/// What Q2_K and Q3_K share: the low 2 bits of every `q`.
#[inline(always)]
fn decode_2bit(qs: &[u8; 64], out: &mut Decoded) {
    for h in 0..2 {
        for k in 0..4 {
            for l in 0..32 {
                out.q[128 * h + 32 * k + l] = (qs[32 * h + l] >> (2 * k)) & 3;
            }
        }
    }
}

impl TiledBlock for BlockQ4K {
    const MIN: bool = true;
    #[inline(always)]
    fn decode(&self, out: &mut Decoded) {
        decode_k4(self.d, self.dmin, &self.scales, &self.qs, out);
    }
}

impl TiledBlock for BlockQ5K {
    const MIN: bool = true;
    #[inline(always)]
    fn decode(&self, out: &mut Decoded) {
        decode_k4(self.d, self.dmin, &self.scales, &self.qs, out);
        // The fifth bit.
        for j in 0..4 {
            for l in 0..32 {
                let h = self.qh[l] >> (2 * j);
                out.q[64 * j + l] |= (h & 1) << 4;
                out.q[64 * j + 32 + l] |= (h & 2) << 3;
            }
        }
    }
}

impl TiledBlock for BlockQ6K {
    const BIAS: i32 = 32;
    #[inline(always)]
    fn decode(&self, out: &mut Decoded) {
        out.d = self.d.to_f32();
        for s in 0..16 {
            out.sc[s] = i16::from(self.scales[s]);
        }
        for h in 0..2 {
            let (ql, qh) = (&self.ql[64 * h..], &self.qh[32 * h..]);
            let q = &mut out.q[128 * h..];
            for l in 0..32 {
                let (a, b, c) = (ql[l], ql[l + 32], qh[l]);
                q[l] = (a & 0xf) | ((c & 3) << 4);
                q[l + 32] = (b & 0xf) | (((c >> 2) & 3) << 4);
                q[l + 64] = (a >> 4) | (((c >> 4) & 3) << 4);
                q[l + 96] = (b >> 4) | (((c >> 6) & 3) << 4);
            }
        }
    }
}

impl TiledBlock for BlockQ3K {
    const BIAS: i32 = 4;
    #[inline(always)]
    fn decode(&self, out: &mut Decoded) {
        out.d = self.d.to_f32();
        let words = scales_q3_k(&self.scales);
        for s in 0..16 {
            out.sc[s] = i16::from(words[s / 4].to_le_bytes()[s % 4]) - 32;
        }
        decode_2bit(&self.qs, out);
        // The third bit.
        for h in 0..2 {
            for k in 0..4 {
                for l in 0..32 {
                    let high = (self.hmask[l] >> (4 * h + k)) & 1;
                    out.q[128 * h + 32 * k + l] |= high << 2;
                }
            }
        }
    }
}

impl TiledBlock for BlockQ2K {
    const MIN: bool = true;
    #[inline(always)]
    fn decode(&self, out: &mut Decoded) {
        out.d = self.d.to_f32();
        out.dmin = self.dmin.to_f32();
        for s in 0..16 {
            out.sc[s] = i16::from(self.scales[s] & 0xf);
            out.mn[s] = i16::from(self.scales[s] >> 4);
        }
        decode_2bit(&self.qs, out);
    }
}

impl TiledBlock for BlockIq4Xs {
    const SIGNED: bool = true;
    #[inline(always)]
    fn decode(&self, out: &mut Decoded) {
        out.d = self.d.to_f32();
        for ib in 0..8 {
            let ls = ((self.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xf)
                | ((((self.scales_h >> (2 * ib)) & 3) as u8) << 4);
            let sc = i16::from(ls) - 32;
            out.sc[2 * ib] = sc;
            out.sc[2 * ib + 1] = sc;
            for j in 0..16 {
                let b = self.qs[16 * ib + j];
                out.q[32 * ib + j] = KVALUES_IQ4NL[usize::from(b & 0xf)] as u8;
                out.q[32 * ib + 16 + j] = KVALUES_IQ4NL[usize::from(b >> 4)] as u8;
            }
        }
    }
}

/// `(s1, s2)` of one decoded block and one activation block, as integers.
fn block_ints<B: TiledBlock>(x: &Decoded, y: &BlockQ8K) -> (i32, i32) {
    let mut s1 = 0i32;
    let mut s2 = 0i32;
    for s in 0..16 {
        let mut dot = 0i32;
        for i in 16 * s..16 * s + 16 {
            let a = y.qs[i];
            dot += if B::SIGNED {
                // _mm256_sign_epi8(y, w) wraps −(−128) to −128.
                let w = x.q[i] as i8;
                let sy = match w.signum() {
                    -1 => a.wrapping_neg(),
                    0 => 0,
                    _ => a,
                };
                i32::from(w.unsigned_abs()) * i32::from(sy)
            } else {
                (i32::from(x.q[i]) - B::BIAS) * i32::from(a)
            };
        }
        s1 += i32::from(x.sc[s]) * dot;
        s2 += i32::from(x.mn[s]) * i32::from(y.bsums[s]);
    }
    (s1, s2)
}

/// The scalar twin of [`TiledRow`] for `B`.
fn row_scalar<B: TiledBlock>(n: usize, w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
    assert!(acts.len() <= MAX_TOKENS && out.len() >= acts.len());
    let nb = super_blocks(n);
    let x = view::<B>(w, nb);
    let ys: [_; MAX_TOKENS] = std::array::from_fn(|t| acts.get(t).map(|a| view::<BlockQ8K>(a, nb)));
    let ys = &ys[..acts.len()];
    let mut acc = [0f32; MAX_TOKENS];
    let mut dec = Decoded::new();
    for (b, xb) in x.iter().enumerate() {
        xb.decode(&mut dec);
        for (t, y) in ys.iter().enumerate() {
            let y = &y.as_ref().expect("t < acts.len()")[b];
            let (s1, s2) = block_ints::<B>(&dec, y);
            let mut res = dec.d * s1 as f32;
            if B::MIN {
                res = (-dec.dmin).mul_add(s2 as f32, res);
            }
            acc[t] = res.mul_add(y.d, acc[t]);
        }
    }
    out[..acts.len()].copy_from_slice(&acc[..acts.len()]);
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::super::avx2::load256;
    use super::super::q4k_8x8::avx2::row_totals;
    use super::*;
    use crate::kernels::has_avx2;

    /// The table entry: checks the CPU, then runs the kernel.
    pub(super) fn row<B: TiledBlock>(n: usize, w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
        if !has_avx2() {
            return row_scalar::<B>(n, w, acts, out);
        }
        assert!(acts.len() <= MAX_TOKENS && out.len() >= acts.len());
        if acts.is_empty() {
            return;
        }
        let nb = super_blocks(n);
        let x = view::<B>(w, nb);
        let ys: [std::borrow::Cow<'_, [BlockQ8K]>; MAX_TOKENS] =
            std::array::from_fn(|t| view::<BlockQ8K>(acts[t.min(acts.len() - 1)], nb));
        // SAFETY: AVX2/FMA checked; every activation row holds nb blocks.
        unsafe { kernel::<B>(&x, &ys, acts.len(), out) };
    }

    #[inline(always)]
    fn decode<B: TiledBlock>(x: &B, dec: &mut Decoded) {
        x.decode(dec);
    }

    /// # Safety
    /// AVX2+FMA; `ys[t]` holds `x.len()` blocks for every `t`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn kernel<B: TiledBlock>(
        x: &[B],
        ys: &[std::borrow::Cow<'_, [BlockQ8K]>; MAX_TOKENS],
        nt: usize,
        out: &mut [f32],
    ) {
        let mut acc = [_mm256_setzero_ps(); MAX_TOKENS / 8];
        let groups = nt.div_ceil(8);
        let mut dec = Decoded::new();
        for (b, xb) in x.iter().enumerate() {
            decode(xb, &mut dec);
            let q: &[[u8; 32]; 8] = bytemuck::cast_ref(&dec.q);
            // Chunk c: values 32c..32c+32, scales sc[2c] (low half) and sc[2c+1].
            let scv: [__m256i; 8] = std::array::from_fn(|c| {
                _mm256_set_m128i(
                    _mm_set1_epi16(dec.sc[2 * c + 1]),
                    _mm_set1_epi16(dec.sc[2 * c]),
                )
            });
            // SAFETY: 16 i16 each.
            let sc16 = unsafe { _mm256_loadu_si256(dec.sc.as_ptr().cast()) };
            let mn16 = unsafe { _mm256_loadu_si256(dec.mn.as_ptr().cast()) };
            let d = _mm256_set1_ps(dec.d);
            let dmin = _mm256_set1_ps(dec.dmin);
            let bias = _mm256_set1_epi32(B::BIAS);
            for (g, acc) in acc.iter_mut().enumerate().take(groups) {
                let mut s1 = [_mm256_setzero_si256(); 8];
                let mut s2 = [_mm256_setzero_si256(); 8];
                let mut dy = [0f32; 8];
                for t in 0..8 {
                    let y = &ys[8 * g + t][b];
                    dy[t] = y.d;
                    let q8: &[[i8; 32]; 8] = bytemuck::cast_ref(&y.qs);
                    let mut lanes = _mm256_setzero_si256();
                    for c in 0..8 {
                        let qv = load256(&q[c]);
                        let yv = load256(&q8[c]);
                        let p = if B::SIGNED {
                            _mm256_maddubs_epi16(_mm256_sign_epi8(qv, qv), _mm256_sign_epi8(yv, qv))
                        } else {
                            _mm256_maddubs_epi16(qv, yv)
                        };
                        lanes = _mm256_add_epi32(lanes, _mm256_madd_epi16(scv[c], p));
                    }
                    if B::BIAS != 0 || B::MIN {
                        let bs = load256(&y.bsums);
                        if B::BIAS != 0 {
                            let corr = _mm256_mullo_epi32(_mm256_madd_epi16(sc16, bs), bias);
                            lanes = _mm256_sub_epi32(lanes, corr);
                        }
                        if B::MIN {
                            s2[t] = _mm256_madd_epi16(mn16, bs);
                        }
                    }
                    s1[t] = lanes;
                }
                // SAFETY: 8 f32.
                let dy = unsafe { _mm256_loadu_ps(dy.as_ptr()) };
                let mut res = _mm256_mul_ps(d, _mm256_cvtepi32_ps(row_totals(&s1)));
                if B::MIN {
                    res = _mm256_fnmadd_ps(dmin, _mm256_cvtepi32_ps(row_totals(&s2)), res);
                }
                *acc = _mm256_fmadd_ps(res, dy, *acc);
            }
        }
        let mut all = [0f32; MAX_TOKENS];
        for (g, acc) in acc.iter().enumerate().take(groups) {
            // SAFETY: 8 f32 in bounds.
            unsafe { _mm256_storeu_ps(all.as_mut_ptr().add(8 * g), *acc) };
        }
        out[..nt].copy_from_slice(&all[..nt]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(t: GgmlType) {
        let n = 3 * 256;
        let mut state = 0x2545_f491u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let vals: Vec<f32> = (0..n)
            .map(|_| (next() % 2001) as f32 / 1000.0 - 1.0)
            .collect();
        let mut w = vec![0u8; crate::matmul::row_bytes(t, n).unwrap()];
        crate::quantize(t, &vals, &mut w).unwrap();
        let a_row = n / 256 * 292;
        let mut a = vec![0u64; (a_row * 13).div_ceil(8)];
        let a: &mut [u8] = &mut bytemuck::cast_slice_mut(&mut a)[..a_row * 13];
        let x: Vec<f32> = (0..n * 13)
            .map(|_| (next() % 2001) as f32 / 100.0 - 10.0)
            .collect();
        crate::quantize(GgmlType::Q8_K, &x, a).unwrap();
        let acts: Vec<&[u8]> = a.chunks(a_row).collect();
        for nt in [1, 8, 13] {
            let mut want = vec![0f32; nt];
            tiled_row_scalar(t).unwrap()(n, &w, &acts[..nt], &mut want);
            let mut got = vec![f32::NAN; nt];
            tiled_row(t, SimdLevel::detect()).unwrap()(n, &w, &acts[..nt], &mut got);
            let (g, wa): (Vec<u32>, Vec<u32>) = (
                got.iter().map(|v| v.to_bits()).collect(),
                want.iter().map(|v| v.to_bits()).collect(),
            );
            assert_eq!(g, wa, "{t:?} {nt} tokens");
            // Close to the vec_dot (a different order of the same integers).
            let e = crate::kernels::dot_entry(t).unwrap();
            for (i, &v) in want.iter().enumerate() {
                let r = (e.scalar)(n, &w, acts[i]);
                assert!((v - r).abs() <= 1e-4 * r.abs().max(1.0), "{t:?} {v} vs {r}");
            }
        }
    }

    #[test]
    fn avx2_equals_scalar_and_near_vec_dot() {
        for t in [
            GgmlType::Q2_K,
            GgmlType::Q3_K,
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
            GgmlType::IQ4_XS,
        ] {
            check(t);
        }
    }
}
