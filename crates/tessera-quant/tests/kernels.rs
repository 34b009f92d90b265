//! The dot-kernel harness: every [`DotEntry`] of every family table, every
//! SIMD variant this CPU can run, against its scalar twin; and every scalar
//! twin against the ground truth, an f64 dot of the dequantized weights with
//! the dequantized activations.
//!
//! Lengths: 1, 3, 7 and 13 blocks and a big row (4096 values, 8192 for the
//! 32-value types), plus odd lengths for the one-value float types. Data:
//! random f32 rows (per-block magnitudes from 1e-2 to 10, one all-zero block
//! in the longer rows) quantized with the reference quantizer, and, for every
//! type, random bytes with every half-float kept finite (see
//! [`random_weight_bytes`]). Each row is also tried at an odd byte address,
//! since GGUF rows of 18-byte blocks are not aligned.
//!
//! Tolerances are named per type and measured against `mag = Σ|w_i·a_i|`
//! (f64, dequantized values), the scale of the rounding errors of a sum:
//! - [`simd_tolerance`]: a SIMD variant vs its scalar twin. Integer block
//!   dots are exact on both sides; only the f32 summation order (and FMA)
//!   differs.
//! - [`ground_tolerance`]: a scalar twin vs the f64 ground truth. The Q8_1
//!   types (Q4_1, Q5_1) use the activation's `s = d·Σq` stored as f16, whose
//!   rounding (2⁻¹¹) the ground truth does not have.
//!
//! The AVX-512 variants that have not been run anywhere yet
//! (`float::AVX512_UNTESTED`, `legacy::AVX512_UNTESTED`) are checked the same
//! way when this CPU has AVX-512 F/BW; otherwise that test says it skipped.

use tessera_quant::kernels::{self, DotEntry, SimdLevel, VecDot};
use tessera_quant::{dequantize, info, quantize, GgmlType};
use tessera_testkit::rng::SplitMix64 as Rng;

/// Named tolerance, SIMD variant vs scalar twin, relative to `mag`.
fn simd_tolerance(t: GgmlType) -> f64 {
    match t {
        // f32 sums of up to 8192 products (scalar: f64 sum).
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 2e-6,
        // f32 sums of ≤ 256 scaled block dots in both.
        _ => 2e-6,
    }
}

/// Named tolerance, scalar twin vs f64 ground truth, relative to `mag`.
fn ground_tolerance(t: GgmlType) -> f64 {
    match t {
        // The m·s term uses an f16 s computed from the unrounded f32 d.
        GgmlType::Q4_1 | GgmlType::Q5_1 => 2e-3,
        _ => 2e-5,
    }
}

/// Absolute floor added to every tolerance (rows whose dot is ~0).
const ABS_FLOOR: f64 = 1e-30;

/// Random values, 32 at a time with a magnitude in 1e-2..10; in rows of at
/// least 8 × 32 values the second 32 are zeros.
fn random_row(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut x = Vec::with_capacity(n);
    while x.len() < n {
        let scale = 10f32.powf(rng.next_signed_unit() * 1.5 - 0.5);
        let zero = n >= 256 && x.len() == 32;
        for _ in 0..32.min(n - x.len()) {
            x.push(if zero {
                0.0
            } else {
                rng.next_signed_unit() * scale
            });
        }
    }
    x
}

/// `n` values of type `t` as bytes: F32/F16/BF16 converted, other types
/// through the reference quantizer. `None` if tessera cannot make `t`.
fn make(t: GgmlType, x: &[f32]) -> Option<Vec<u8>> {
    match t {
        GgmlType::F32 => Some(bytemuck::cast_slice(x).to_vec()),
        GgmlType::F16 => Some(
            x.iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
        ),
        GgmlType::BF16 => Some(
            x.iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
        ),
        _ => {
            info(t).from_f32?;
            let mut out = vec![0u8; x.len() / t.block_size() as usize * t.type_size() as usize];
            quantize(t, x, &mut out).ok()?;
            Some(out)
        }
    }
}

/// Random bytes for `nb` blocks of `t`, with bit 6 of every odd byte
/// cleared. Every block type keeps its half floats at even offsets of
/// even-sized blocks, so this clears bit 14 of each f16, which keeps it
/// finite and below 2 (no Inf/NaN scales). MXFP4 (odd-sized, no f16) gets
/// its exponent bytes limited to 2^±16 instead.
fn random_weight_bytes(rng: &mut Rng, t: GgmlType, nb: usize) -> Vec<u8> {
    let ts = t.type_size() as usize;
    let mut b: Vec<u8> = (0..nb * ts).map(|_| rng.next_u64() as u8).collect();
    match t {
        GgmlType::MXFP4 => {
            for blk in b.chunks_exact_mut(ts) {
                blk[0] = 112 + blk[0] % 32;
            }
        }
        GgmlType::F32 => {
            // Random f32 bits would be NaN/Inf: use values instead.
            let v: Vec<f32> = (0..nb).map(|_| rng.next_signed_unit()).collect();
            b = bytemuck::cast_slice(&v).to_vec();
        }
        _ => {
            for (i, byte) in b.iter_mut().enumerate() {
                if i % 2 == 1 {
                    *byte &= !0x40;
                }
            }
        }
    }
    b
}

fn to_f32(t: GgmlType, bytes: &[u8], n: usize) -> Option<Vec<f32>> {
    let mut out = vec![0f32; n];
    dequantize(t, bytes, &mut out).ok()?;
    Some(out)
}

/// Every entry of every family table.
fn entries() -> Vec<&'static DotEntry> {
    GgmlType::ALL
        .iter()
        .filter_map(|&t| kernels::dot_entry(t))
        .collect()
}

/// Row lengths for `t`: 1, 3, 7, 13 blocks and a big row.
fn lengths(t: GgmlType) -> Vec<usize> {
    let bs = t.block_size() as usize;
    let mut v: Vec<usize> = [1, 3, 7, 13].iter().map(|&k| k * bs).collect();
    v.push(if bs == 1 {
        8192
    } else {
        bs * (8192 / bs).max(16)
    });
    if bs == 1 {
        v.extend([8, 15, 31, 32, 33, 64, 100, 4099]);
    }
    v
}

/// Copies `b` to an odd address (offset 1 in a fresh buffer).
fn shifted(b: &[u8]) -> (Vec<u8>, std::ops::Range<usize>) {
    let mut v = vec![0xa5u8; b.len() + 1];
    v[1..].copy_from_slice(b);
    (v, 1..b.len() + 1)
}

struct Case {
    t: GgmlType,
    n: usize,
    what: &'static str,
    w: Vec<u8>,
    a: Vec<u8>,
    /// Σ|w_i·a_i| and Σ w_i·a_i in f64 from dequantized values, if dequantization exists.
    truth: Option<(f64, f64)>,
}

fn cases(e: &DotEntry, seed: u64) -> Vec<Case> {
    let mut rng = Rng::new(seed ^ (e.weight as u64).wrapping_mul(0x1234_5678_9abc_def1));
    let mut out = Vec::new();
    for n in lengths(e.weight) {
        let nb = n / e.weight.block_size() as usize;
        let xa = random_row(&mut rng, n);
        let a =
            make(e.act, &xa).unwrap_or_else(|| panic!("no converter for activations {}", e.act));
        let xw = random_row(&mut rng, n);
        let mut ws = vec![("random bytes", random_weight_bytes(&mut rng, e.weight, nb))];
        if let Some(w) = make(e.weight, &xw) {
            ws.push(("quantized", w));
        }
        for (what, w) in ws {
            let truth = match (to_f32(e.weight, &w, n), to_f32(e.act, &a, n)) {
                (Some(wf), Some(af)) => {
                    let mag = wf
                        .iter()
                        .zip(&af)
                        .map(|(&p, &q)| (f64::from(p) * f64::from(q)).abs())
                        .sum();
                    let dot = wf
                        .iter()
                        .zip(&af)
                        .map(|(&p, &q)| f64::from(p) * f64::from(q))
                        .sum();
                    Some((mag, dot))
                }
                _ => None,
            };
            out.push(Case {
                t: e.weight,
                n,
                what,
                w,
                a: a.clone(),
                truth,
            });
        }
    }
    out
}

/// Runs `f` on the case at aligned and odd addresses; both must agree exactly.
fn run(f: VecDot, c: &Case) -> f32 {
    let r = f(c.n, &c.w, &c.a);
    let (w1, wr) = shifted(&c.w);
    let (a1, ar) = shifted(&c.a);
    let r1 = f(c.n, &w1[wr], &a1[ar]);
    assert!(
        r.to_bits() == r1.to_bits() || (r.is_nan() && r1.is_nan()),
        "{} n={} ({}): {r} at aligned, {r1} at odd addresses",
        c.t,
        c.n,
        c.what
    );
    r
}

fn within(got: f32, want: f64, mag: f64, rel: f64) -> bool {
    got.is_finite() && (f64::from(got) - want).abs() <= rel * mag + ABS_FLOOR
}

#[test]
fn every_simd_variant_matches_its_scalar_twin() {
    let levels = SimdLevel::available();
    eprintln!("levels on this CPU: {levels:?}");
    let mut failures = Vec::new();
    let mut checked = 0;
    for e in entries() {
        for level in &levels {
            let f = match level {
                SimdLevel::Scalar => continue,
                SimdLevel::Neon => kernels::neon::kernel(e.weight),
                SimdLevel::Avx2 => e.avx2,
                SimdLevel::Avx512 => e.avx512,
            };
            let Some(f) = f else { continue };
            for c in cases(e, 1) {
                let want = run(e.scalar, &c);
                let got = run(f, &c);
                let mag = c.truth.map_or(f64::from(want.abs()) + 1.0, |t| t.0);
                checked += 1;
                if !within(got, f64::from(want), mag, simd_tolerance(c.t)) {
                    failures.push(format!(
                        "{} {} n={} ({}): {got} vs scalar {want} (mag {mag:.3e}, tol {:.0e})",
                        c.t,
                        level.name(),
                        c.n,
                        c.what,
                        simd_tolerance(c.t)
                    ));
                }
            }
        }
    }
    eprintln!("{checked} SIMD cases checked");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_scalar_twin_matches_the_dequantized_dot() {
    let mut failures = Vec::new();
    let mut skipped = Vec::new();
    for e in entries() {
        for c in cases(e, 2) {
            let Some((mag, dot)) = c.truth else {
                skipped.push(format!("{} (no dequantizer for {} or {})", c.t, c.t, e.act));
                continue;
            };
            let got = run(e.scalar, &c);
            if !within(got, dot, mag, ground_tolerance(c.t)) {
                failures.push(format!(
                    "{} n={} ({}): scalar {got} vs f64 {dot} (mag {mag:.3e}, tol {:.0e})",
                    c.t,
                    c.n,
                    c.what,
                    ground_tolerance(c.t)
                ));
            }
        }
    }
    skipped.dedup();
    for s in &skipped {
        eprintln!("skipped: {s}");
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn untested_avx512_variants_match_their_scalar_twins_when_the_cpu_has_avx512() {
    #[cfg(target_arch = "x86_64")]
    let has = is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw");
    #[cfg(not(target_arch = "x86_64"))]
    let has = false;
    let list: Vec<(GgmlType, VecDot)> = kernels::float::AVX512_UNTESTED
        .iter()
        .chain(kernels::legacy::AVX512_UNTESTED)
        .copied()
        .collect();
    if !has {
        eprintln!(
            "skipped: this CPU has no AVX-512 F/BW; {} AVX-512 variants ({}) stay unregistered",
            list.len(),
            list.iter()
                .map(|(t, _)| t.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return;
    }
    let mut failures = Vec::new();
    for (t, f) in list {
        let e = kernels::dot_entry(t).expect("an AVX-512 variant without a table entry");
        for c in cases(e, 3) {
            let want = run(e.scalar, &c);
            let got = run(f, &c);
            let mag = c.truth.map_or(f64::from(want.abs()) + 1.0, |t| t.0);
            if !within(got, f64::from(want), mag, simd_tolerance(t)) {
                failures.push(format!(
                    "{t} avx512 n={} ({}): {got} vs scalar {want}",
                    c.n, c.what
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_best_kernel_is_the_highest_level_present() {
    let top = SimdLevel::detect();
    for e in entries() {
        let (f, act) = kernels::dot_kernel(e.weight).unwrap();
        assert_eq!(act, e.act);
        assert_eq!(f as usize, e.at(top) as usize, "{}", e.weight);
        assert_eq!(e.at(SimdLevel::Scalar) as usize, e.scalar as usize);
    }
}

#[test]
fn a_short_row_panics_instead_of_reading_past_the_end() {
    for e in entries() {
        let bs = e.weight.block_size() as usize;
        let n = 4 * bs;
        let w = vec![0u8; 4 * e.weight.type_size() as usize - 1];
        let a = vec![0u8; 4 * e.act.type_size() as usize * bs / e.act.block_size() as usize];
        for level in SimdLevel::available() {
            let f = e.at(level);
            let r = std::panic::catch_unwind(|| f(n, &w, &a));
            assert!(
                r.is_err(),
                "{} {}: a short weight row did not panic",
                e.weight,
                level.name()
            );
        }
    }
}

/// Activation rows that probe the quantizers' rounding: exact ties after
/// scaling (a block whose largest value is 127 has `d = 1`), values just
/// below a tie, zeros, tiny and huge magnitudes, infinities.
fn quantizer_rows() -> Vec<Vec<f32>> {
    let mut rows = Vec::new();
    let mut ties: Vec<f32> = vec![127.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 126.5, -126.5];
    ties.extend([
        0.499_999_97,
        -0.499_999_97,
        1.499_999_9,
        3.0,
        -7.25,
        0.0,
        -0.0,
        64.5,
    ]);
    while ties.len() < 64 {
        ties.push((ties.len() as f32 - 40.0) + 0.5);
    }
    rows.push(ties);
    rows.push(vec![0.0; 64]);
    rows.push((0..64).map(|i| (i as f32 - 31.5) * 1e-30).collect());
    rows.push((0..64).map(|i| (i as f32 - 31.5) * 1e30).collect());
    let mut inf: Vec<f32> = (0..64).map(|i| i as f32).collect();
    inf[3] = f32::INFINITY;
    inf[40] = f32::NEG_INFINITY;
    rows.push(inf);
    let mut rng = Rng::new(11);
    for n in [32, 96, 4096] {
        rows.push(random_row(&mut rng, n));
    }
    rows
}

#[test]
fn simd_activation_quantizers_match_their_scalar_twin() {
    use tessera_quant::blocks::{BlockQ8_0, BlockQ8_1};
    use tessera_quant::kernels::legacy::{
        quantize_act_q8_0, quantize_act_q8_1, quantize_act_q8_scalar,
    };
    for level in SimdLevel::available() {
        for x in quantizer_rows() {
            for (b, xb) in x.chunks_exact(32).enumerate() {
                let (d, qs, s) = quantize_act_q8_scalar(xb);
                let mut got0 = [<BlockQ8_0 as bytemuck::Zeroable>::zeroed()];
                quantize_act_q8_0(level, xb, &mut got0);
                assert_eq!(
                    (got0[0].d.to_bits(), got0[0].qs),
                    (d.to_bits(), qs),
                    "Q8_0 {} block {b}",
                    level.name()
                );
                let mut got1 = [<BlockQ8_1 as bytemuck::Zeroable>::zeroed()];
                quantize_act_q8_1(level, xb, &mut got1);
                assert_eq!(
                    (got1[0].d.to_bits(), got1[0].s.to_bits(), got1[0].qs),
                    (d.to_bits(), s.to_bits(), qs),
                    "Q8_1 {} block {b}",
                    level.name()
                );
            }
        }
    }
}

#[test]
fn activation_quantizer_rounds_halves_to_even_like_ggml_cpu() {
    use tessera_quant::kernels::legacy::quantize_act_q8_scalar;
    // amax 127 makes the scale exactly 1, so these values hit exact halves;
    // ggml-cpu's x86 quantizer (round to nearest even) gives 30, -30, 2, -2,
    // where the reference quantizer (half away from zero) gives 31, -31, 3, -3.
    let mut x = [0f32; 32];
    x[0] = 127.0;
    x[1..5].copy_from_slice(&[30.5, -30.5, 2.5, -2.5]);
    let (d, qs, s) = quantize_act_q8_scalar(&x);
    assert_eq!(d.to_f32(), 1.0);
    assert_eq!(&qs[..5], &[127, 30, -30, 2, -2]);
    assert_eq!(s.to_f32(), 127.0);
}

/// The tile kernels (32-value block and float families) against their
/// scalar twins (the type's scalar dot per pair), for every tile shape up
/// to 4 rows × 2 activations.
#[test]
fn tile_kernels_match_the_scalar_dot_of_every_pair() {
    use tessera_quant::kernels::legacy::{DotTile, TILE_ACTS, TILE_ROWS};
    type TileOf = fn(GgmlType, SimdLevel) -> Option<DotTile>;
    let families: [(&[DotEntry], TileOf); 2] = [
        (kernels::legacy::DOTS, kernels::legacy::dot_tile),
        (kernels::float::DOTS, kernels::float::dot_tile),
    ];
    let mut rng = Rng::new(21);
    let mut failures = Vec::new();
    let mut checked = 0;
    for (e, dot_tile) in families
        .iter()
        .flat_map(|(dots, f)| dots.iter().map(move |e| (e, *f)))
    {
        for level in SimdLevel::available() {
            let Some(tile) = dot_tile(e.weight, level) else {
                continue;
            };
            let bs = e.weight.block_size() as usize;
            let lengths: &[usize] = if bs == 1 {
                &[5, 37, 4099]
            } else {
                &[32, 7 * 32, 4096]
            };
            for &n in lengths {
                let nb = n / bs;
                let ws: Vec<Vec<u8>> = (0..TILE_ROWS)
                    .map(|i| {
                        if i % 2 == 0 {
                            random_weight_bytes(&mut rng, e.weight, nb)
                        } else {
                            make(e.weight, &random_row(&mut rng, n)).unwrap()
                        }
                    })
                    .collect();
                let acts: Vec<Vec<u8>> = (0..TILE_ACTS)
                    .map(|_| make(e.act, &random_row(&mut rng, n)).unwrap())
                    .collect();
                // One row at an odd address.
                let (w_odd, wr) = shifted(&ws[1]);
                for nr in 1..=TILE_ROWS {
                    for na in 1..=TILE_ACTS {
                        let w: Vec<&[u8]> = (0..nr)
                            .map(|i| {
                                if i == 1 {
                                    &w_odd[wr.clone()]
                                } else {
                                    &ws[i][..]
                                }
                            })
                            .collect();
                        let a: Vec<&[u8]> = acts[..na].iter().map(|v| &v[..]).collect();
                        let mut out = vec![f32::NAN; nr * na];
                        tile(n, &w, &a, &mut out);
                        for c in 0..na {
                            for r in 0..nr {
                                let want = (e.scalar)(n, w[r], a[c]);
                                let (wf, af) = (
                                    to_f32(e.weight, w[r], n).unwrap(),
                                    to_f32(e.act, a[c], n).unwrap(),
                                );
                                let mag: f64 = wf
                                    .iter()
                                    .zip(&af)
                                    .map(|(&p, &q)| (f64::from(p) * f64::from(q)).abs())
                                    .sum();
                                let got = out[c * nr + r];
                                checked += 1;
                                if !within(got, f64::from(want), mag, simd_tolerance(e.weight)) {
                                    failures.push(format!(
                                        "{} {} tile {nr}×{na} n={n} [{c}][{r}]: {got} vs scalar {want} (mag {mag:.3e})",
                                        e.weight,
                                        level.name()
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    eprintln!("{checked} tile outputs checked");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
