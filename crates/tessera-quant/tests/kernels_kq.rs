//! The Q8_K-activation dot kernels (K-quants, IQ types, ternary types):
//!
//! - every SIMD variant this CPU can run against the scalar twin, on rows of
//!   1, 2, 3, 7 and 16 super-blocks, and on extreme values (all-ones bytes,
//!   activations at ±127) that would expose an `i16` overflow;
//! - the scalar twin against the exact (`f64`) dot product of the
//!   dequantized weights ([`tessera_quant::dequantize`]) and the dequantized
//!   activations (`d · q`): this checks the kernel's arithmetic, not only
//!   that two variants agree;
//! - unaligned input (a row at an odd byte offset) gives the same result.
//!
//! Errors are measured relative to `Σ |w_i · a_i|` (the size of the terms
//! being added), with a tolerance named per type. Data is seeded: random
//! bytes, with the half-float scale fields set to finite values of
//! moderate size and random sign; random activations quantized with
//! `quantize_row_q8_K`.

use std::mem::offset_of;

use half::f16;
use tessera_quant::blocks::*;
use tessera_quant::kernels::{dot_entry, DotEntry, SimdLevel};
use tessera_quant::quantize::quantize_row_q8_K;
use tessera_quant::{dequantize, GgmlType, QuantError};
use tessera_testkit::rng::SplitMix64 as Rng;

/// Tolerances of one weight type, relative to `Σ |w_i · a_i|`.
struct Tol {
    /// A SIMD variant against the scalar twin (same integers, different
    /// float summation order and FMA).
    simd: f64,
    /// The scalar twin against the exact dot product of the dequantized
    /// values (the kernel factors the scales out of the sums; the
    /// dequantizer rounds each value to `f32`).
    math: f64,
}

/// Agreement of two `f32` summations of ≤ 16 super-block terms, each
/// rounded a handful of times: a few ulps of the magnitude.
const SIMD_TOL: f64 = 2e-6;
/// Exactness of the kernel's math against `f64`: the same plus the `f32`
/// rounding of each dequantized weight.
const MATH_TOL: f64 = 5e-6;

const TOL: Tol = Tol {
    simd: SIMD_TOL,
    math: MATH_TOL,
};

/// Every type whose kernel takes Q8_K activations, with its tolerances.
const TYPES: &[(GgmlType, Tol)] = &[
    (GgmlType::Q2_K, TOL),
    (GgmlType::Q3_K, TOL),
    (GgmlType::Q4_K, TOL),
    (GgmlType::Q5_K, TOL),
    (GgmlType::Q6_K, TOL),
    (GgmlType::IQ4_XS, TOL),
    (GgmlType::IQ1_S, TOL),
    (GgmlType::IQ1_M, TOL),
    (GgmlType::IQ2_XXS, TOL),
    (GgmlType::IQ2_XS, TOL),
    (GgmlType::IQ2_S, TOL),
    (GgmlType::IQ3_XXS, TOL),
    (GgmlType::IQ3_S, TOL),
    (GgmlType::TQ1_0, TOL),
    (GgmlType::TQ2_0, TOL),
];

/// Every type of [`TYPES`] has an AVX2 variant on x86-64.
const ALL_HAVE_AVX2: bool = cfg!(target_arch = "x86_64");

const ROW_BLOCKS: &[usize] = &[1, 2, 3, 7, 16];

// ---------------------------------------------------------------- data

/// Byte offsets, within a block, of the half-float scale fields of `t`.
fn f16_fields(t: GgmlType) -> Vec<usize> {
    use GgmlType as T;
    match t {
        T::Q2_K => vec![offset_of!(BlockQ2K, d), offset_of!(BlockQ2K, dmin)],
        T::Q3_K => vec![offset_of!(BlockQ3K, d)],
        T::Q4_K => vec![offset_of!(BlockQ4K, d), offset_of!(BlockQ4K, dmin)],
        T::Q5_K => vec![offset_of!(BlockQ5K, d), offset_of!(BlockQ5K, dmin)],
        T::Q6_K => vec![offset_of!(BlockQ6K, d)],
        T::IQ4_XS => vec![offset_of!(BlockIq4Xs, d)],
        T::IQ2_XXS => vec![offset_of!(BlockIq2Xxs, d)],
        T::IQ2_XS => vec![offset_of!(BlockIq2Xs, d)],
        T::IQ2_S => vec![offset_of!(BlockIq2S, d)],
        T::IQ3_XXS => vec![offset_of!(BlockIq3Xxs, d)],
        T::IQ3_S => vec![offset_of!(BlockIq3S, d)],
        T::IQ1_S => vec![offset_of!(BlockIq1S, d)],
        T::TQ1_0 => vec![offset_of!(BlockTq1_0, d)],
        T::TQ2_0 => vec![offset_of!(BlockTq2_0, d)],
        T::IQ1_M => vec![], // spread over the scales: see `set_scales`
        _ => panic!("{t:?} is not a type of this test"),
    }
}

/// Sets the scale fields of one block of `t` to `d` (and a second random
/// scale for `dmin`), leaving every other byte as it is.
fn set_scales(t: GgmlType, block: &mut [u8], rng: &mut Rng) {
    for off in f16_fields(t) {
        block[off..off + 2].copy_from_slice(&rng.scale_f16().to_bits().to_le_bytes());
    }
    if t == GgmlType::IQ1_M {
        // The super-block scale is the top nibbles of the four u16 scales.
        let bits = rng.scale_f16().to_bits();
        let sc = offset_of!(BlockIq1M, scales);
        for i in 0..4 {
            let p = sc + 2 * i + 1;
            block[p] = (block[p] & 0x0f) | ((((bits >> (4 * i)) & 0xf) as u8) << 4);
        }
    }
}

/// `nb` random blocks of `t`.
fn random_weights(t: GgmlType, nb: usize, seed: u64) -> Vec<u8> {
    let ts = t.type_size() as usize;
    let mut rng = Rng::new(seed ^ (u64::from(t.id()) << 40));
    let mut bytes = vec![0u8; nb * ts];
    rng.fill_bytes(&mut bytes);
    for block in bytes.chunks_exact_mut(ts) {
        set_scales(t, block, &mut rng);
    }
    bytes
}

/// `nb` blocks of `t` whose bytes are all `fill` (scales set as usual).
fn constant_weights(t: GgmlType, nb: usize, fill: u8, seed: u64) -> Vec<u8> {
    let ts = t.type_size() as usize;
    let mut rng = Rng::new(seed);
    let mut bytes = vec![fill; nb * ts];
    for block in bytes.chunks_exact_mut(ts) {
        set_scales(t, block, &mut rng);
    }
    bytes
}

/// Quantizes `x` to Q8_K blocks.
fn q8k(x: &[f32]) -> Vec<BlockQ8K> {
    let mut y = vec![bytemuck::Zeroable::zeroed(); x.len() / QK_K];
    quantize_row_q8_K(x, &mut y);
    y
}

/// Random activations (each super-block with its own magnitude), as Q8_K.
fn random_activations(nb: usize, seed: u64) -> Vec<BlockQ8K> {
    let mut rng = Rng::new(seed);
    let mut x = Vec::with_capacity(nb * QK_K);
    for _ in 0..nb {
        let scale = 2f32.powi((rng.next_u64() % 9) as i32 - 4);
        x.extend((0..QK_K).map(|_| scale * rng.next_signed_unit()));
    }
    q8k(&x)
}

// ---------------------------------------------------------------- checks

fn entry(t: GgmlType) -> &'static DotEntry {
    let e = dot_entry(t).unwrap_or_else(|| panic!("{t:?} has no dot kernel"));
    assert_eq!(e.act, GgmlType::Q8_K, "{t:?}: activation type");
    e
}

/// The dequantized weights of `t`, or `None` (printed) if tessera cannot
/// dequantize `t` yet.
fn dequantized(t: GgmlType, w: &[u8]) -> Option<Vec<f32>> {
    let mut out = vec![0f32; w.len() / t.type_size() as usize * t.block_size() as usize];
    match dequantize(t, w, &mut out) {
        Ok(()) => Some(out),
        Err(QuantError::Unsupported { .. }) => {
            println!("{t:?}: no dequantizer yet, math check against f64 skipped");
            None
        }
        Err(e) => panic!("{t:?}: {e}"),
    }
}

/// The exact dot product and `Σ |w_i · a_i|`, in f64.
fn exact_dot(w: &[f32], a: &[BlockQ8K]) -> (f64, f64) {
    let (mut dot, mut mag) = (0f64, 0f64);
    for (w, a) in w.chunks_exact(QK_K).zip(a) {
        for (&w, &q) in w.iter().zip(&a.qs) {
            let p = f64::from(w) * (f64::from(a.d) * f64::from(q));
            dot += p;
            mag += p.abs();
        }
    }
    (dot, mag)
}

/// Relative error of `got` against `want`, over the magnitude `mag`.
fn rel(got: f32, want: f64, mag: f64) -> f64 {
    if mag == 0.0 {
        return f64::from(got).abs();
    }
    (f64::from(got) - want).abs() / mag
}

/// Runs every check on one weight row `w` and activation row `a`; returns
/// the worst SIMD and math errors seen.
fn check_row(t: GgmlType, tol: &Tol, what: &str, w: &[u8], a: &[BlockQ8K]) -> (f64, f64) {
    let e = entry(t);
    let n = a.len() * QK_K;
    let a_bytes: &[u8] = bytemuck::cast_slice(a);
    let scalar = (e.scalar)(n, w, a_bytes);
    assert!(scalar.is_finite(), "{t:?} {what}: scalar gave {scalar}");

    let (mut worst_simd, mut worst_math) = (0f64, 0f64);
    let deq = dequantized(t, w);
    let (want, mag) = match &deq {
        Some(d) => exact_dot(d, a),
        None => (f64::from(scalar), f64::from(scalar).abs()),
    };
    if deq.is_some() {
        let err = rel(scalar, want, mag);
        assert!(
            err <= tol.math,
            "{t:?} {what}: scalar {scalar} vs exact {want} (Σ|w·a| = {mag}): relative error {err:e} > {:e}",
            tol.math
        );
        worst_math = err;
    }
    for level in SimdLevel::available() {
        let f = e.at(level);
        let got = f(n, w, a_bytes);
        let err = rel(got, f64::from(scalar), mag);
        assert!(
            err <= tol.simd,
            "{t:?} {what} {}: {got} vs scalar {scalar} (Σ|w·a| = {mag}): relative error {err:e} > {:e}",
            level.name(),
            tol.simd
        );
        worst_simd = worst_simd.max(err);
    }
    (worst_simd, worst_math)
}

fn check_type(t: GgmlType) {
    let tol = &TYPES.iter().find(|(u, _)| *u == t).unwrap().1;
    let levels: Vec<_> = SimdLevel::available()
        .into_iter()
        .filter(|&l| {
            let e = entry(t);
            l == SimdLevel::Scalar || e.at(l) as usize != e.scalar as usize
        })
        .map(SimdLevel::name)
        .collect();
    let (mut simd, mut math) = (0f64, 0f64);
    for (i, &nb) in ROW_BLOCKS.iter().enumerate() {
        for rep in 0..4u64 {
            let seed = 1000 * i as u64 + rep;
            let w = random_weights(t, nb, seed);
            let a = random_activations(nb, seed + 77);
            let (s, m) = check_row(t, tol, &format!("random {nb} blocks #{rep}"), &w, &a);
            simd = simd.max(s);
            math = math.max(m);
        }
    }
    // Extremes: every weight byte 0xff / 0x00 / 0x55 / 0xaa, activations
    // all +127, all -127 or alternating.
    for fill in [0xffu8, 0x00, 0x55, 0xaa] {
        for (name, x) in [
            ("+max", vec![1.0f32; 3 * QK_K]),
            ("-max", vec![-1.0f32; 3 * QK_K]),
            (
                "±max",
                (0..3 * QK_K)
                    .map(|i| if i % 3 == 0 { -1.0 } else { 1.0 })
                    .collect(),
            ),
        ] {
            let w = constant_weights(t, 3, fill, u64::from(fill));
            let (s, m) = check_row(
                t,
                tol,
                &format!("bytes {fill:#04x}, activations {name}"),
                &w,
                &q8k(&x),
            );
            simd = simd.max(s);
            math = math.max(m);
        }
    }
    // Zero activations give exactly zero.
    let w = random_weights(t, 2, 5);
    let zero = q8k(&[0.0; 2 * QK_K]);
    for level in SimdLevel::available() {
        let got = entry(t).at(level)(2 * QK_K, &w, bytemuck::cast_slice(&zero));
        assert_eq!(got, 0.0, "{t:?} {}: zero activations", level.name());
    }
    println!(
        "{t:?}: variants {levels:?}; worst relative error vs scalar {simd:.2e} (tol {:.0e}), scalar vs exact {math:.2e} (tol {:.0e})",
        tol.simd, tol.math
    );
}

macro_rules! per_type {
    ($($name:ident => $t:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check_type(GgmlType::$t);
            }
        )*
    };
}

per_type!(
    q2_k => Q2_K,
    q3_k => Q3_K,
    q4_k => Q4_K,
    q5_k => Q5_K,
    q6_k => Q6_K,
    iq4_xs => IQ4_XS,
    iq1_s => IQ1_S,
    iq1_m => IQ1_M,
    iq2_xxs => IQ2_XXS,
    iq2_xs => IQ2_XS,
    iq2_s => IQ2_S,
    iq3_xxs => IQ3_XXS,
    iq3_s => IQ3_S,
    tq1_0 => TQ1_0,
    tq2_0 => TQ2_0,
);

#[test]
fn table_has_every_type_with_q8_k_activations() {
    for (t, _) in TYPES {
        let e = entry(*t);
        assert_eq!(e.weight, *t);
        if ALL_HAVE_AVX2 {
            assert!(e.avx2.is_some(), "{t:?} must have an AVX2 variant");
        }
    }
}

#[test]
fn unaligned_rows_give_the_same_result() {
    for (t, _) in TYPES {
        let e = entry(*t);
        let nb = 3;
        let w = random_weights(*t, nb, 42);
        let a = random_activations(nb, 43);
        let a_bytes: &[u8] = bytemuck::cast_slice(&a);
        // Copies at an odd offset of an 8-aligned buffer.
        let mut wbuf = vec![0u64; w.len() / 8 + 2];
        let mut abuf = vec![0u64; a_bytes.len() / 8 + 2];
        let wu = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut wbuf)[1..1 + w.len()];
        wu.copy_from_slice(&w);
        let au = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut abuf)[1..1 + a_bytes.len()];
        au.copy_from_slice(a_bytes);
        for level in SimdLevel::available() {
            let f = e.at(level);
            let aligned = f(nb * QK_K, &w, a_bytes);
            let unaligned = f(nb * QK_K, wu, au);
            assert_eq!(
                aligned.to_bits(),
                unaligned.to_bits(),
                "{t:?} {}",
                level.name()
            );
        }
    }
}

#[test]
fn rows_longer_than_n_use_only_n_values() {
    // The matmul may hand a longer activation buffer; only the first n / 256 blocks count.
    for (t, _) in TYPES {
        let e = entry(*t);
        let w = random_weights(*t, 2, 7);
        let a = random_activations(3, 8);
        let a_bytes: &[u8] = bytemuck::cast_slice(&a);
        for level in SimdLevel::available() {
            let f = e.at(level);
            let exact = f(
                2 * QK_K,
                &w,
                &a_bytes[..2 * std::mem::size_of::<BlockQ8K>()],
            );
            assert_eq!(
                f(2 * QK_K, &w, a_bytes).to_bits(),
                exact.to_bits(),
                "{t:?} {}",
                level.name()
            );
        }
    }
}

#[test]
fn empty_rows_give_zero() {
    for (t, _) in TYPES {
        for level in SimdLevel::available() {
            assert_eq!(
                entry(*t).at(level)(0, &[], &[]),
                0.0,
                "{t:?} {}",
                level.name()
            );
        }
    }
}

#[test]
#[should_panic(expected = "not whole super-blocks")]
fn a_partial_super_block_is_a_caller_bug() {
    let w = random_weights(GgmlType::Q4_K, 1, 1);
    let a = random_activations(1, 2);
    (entry(GgmlType::Q4_K).scalar)(200, &w, bytemuck::cast_slice(&a));
}

/// Test-data helpers on top of the shared generator.
trait RngExt {
    /// A finite half float of random sign, magnitude in [2^-12, 2).
    fn scale_f16(&mut self) -> f16;
}

impl RngExt for Rng {
    fn scale_f16(&mut self) -> f16 {
        let mag =
            (1.0 + self.next_signed_unit().abs()) * 2f32.powi(-((self.next_u64() % 13) as i32));
        let sign = if self.next_u64() & 1 == 0 { 1.0 } else { -1.0 };
        f16::from_f32(sign * mag)
    }
}
