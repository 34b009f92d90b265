//! Golden: tessera's reference quantizers against the built reference ggml.
//!
//! A small C harness (`scripts/quant-golden-harness.c`) is compiled at test
//! time against llama.cpp's `libggml-base` and fed the same f32 rows as
//! tessera; every block must come out byte-identical. The inputs are seeded
//! random rows of many distributions (normal, uniform, one-signed, outliers,
//! all-zero, constant, sparse, rounding ties, tiny, large, powers of two,
//! magnitudes over many decades, subnormals, huge values),
//! whole super-blocks of one kind and super-blocks whose 32-blocks mix kinds.
//!
//! Skips (or fails under `TESSERA_STRICT=1`) when the reference build or a C
//! compiler is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use tessera_quant::blocks::BlockIq4Nl;
use tessera_quant::GgmlType;
use tessera_testkit::cref;
use tessera_testkit::rng::SplitMix64 as Rng;

const N_PER_ROW: usize = 4096;
/// Rows of input: 12288 super-blocks in release (the CI profile), a quarter
/// of that in debug builds.
const NROWS: usize = if cfg!(debug_assertions) { 192 } else { 768 };

/// The compiled harness, or `None` (after `env::missing`) when it cannot be built.
fn harness() -> Option<&'static Path> {
    static EXE: OnceLock<Option<PathBuf>> = OnceLock::new();
    EXE.get_or_init(|| {
        cref::compile_harness("scripts/quant-golden-harness.c", &["ggml-base", "dl"])
    })
    .as_deref()
}

/// The kinds of data a run of values is drawn from.
const KINDS: &[&str] = &[
    "normal",
    "uniform",
    "positive",
    "negative",
    "outliers",
    "zeros",
    "constant",
    "sparse",
    "ties",
    "tiny",
    "large",
    "pow2",
    "wide",
    "subnormal",
    "huge",
];

fn fill(rng: &mut Rng, kind: &str, out: &mut [f32]) {
    let scale = 10f32.powf(rng.uniform(-3.0, 2.0));
    match kind {
        "normal" => out.iter_mut().for_each(|v| *v = scale * rng.normal()),
        "uniform" => out.iter_mut().for_each(|v| *v = rng.uniform(-scale, scale)),
        "positive" => out
            .iter_mut()
            .for_each(|v| *v = rng.uniform(0.1 * scale, scale)),
        "negative" => out.iter_mut().for_each(|v| *v = -rng.uniform(0.0, scale)),
        "outliers" => out.iter_mut().for_each(|v| {
            let big = rng.below(40) == 0;
            *v = rng.normal() * if big { 60.0 } else { 1.0 };
        }),
        "zeros" => out.fill(0.0),
        "constant" => {
            let c = if rng.below(2) == 0 { scale } else { -scale };
            out.fill(c);
        }
        "sparse" => out.iter_mut().for_each(|v| {
            *v = if rng.below(4) == 0 { rng.normal() } else { 0.0 };
        }),
        // Small integers and halves: ties for every rounding rule.
        "ties" => out
            .iter_mut()
            .for_each(|v| *v = (rng.below(65) as f32 - 32.0) * 0.5),
        "tiny" => out.iter_mut().for_each(|v| *v = 1e-30 * rng.normal()),
        "large" => out.iter_mut().for_each(|v| *v = 3e4 * rng.normal()),
        // Values whose maximum is a power of two, or just below one.
        "pow2" => {
            let e = rng.below(40) as i32 - 20;
            let top = 2f32.powi(e)
                * if rng.below(2) == 0 {
                    1.0
                } else {
                    1.0 - f32::EPSILON
                };
            out.iter_mut().for_each(|v| *v = rng.uniform(-top, top));
            let i = rng.below(out.len());
            out[i] = if rng.below(2) == 0 { top } else { -top };
        }
        // Magnitudes spread over many decades inside one run.
        "wide" => out
            .iter_mut()
            .for_each(|v| *v = rng.normal() * 10f32.powf(rng.uniform(-6.0, 3.0))),
        // Down to the smallest subnormal: `1 / d` overflows in the legacy types.
        "subnormal" => {
            let s = 10f32.powf(rng.uniform(-45.0, -36.0));
            out.iter_mut().for_each(|v| *v = s * rng.normal());
        }
        // Scales overflow f16, squares overflow f32.
        "huge" => {
            let s = 10f32.powf(rng.uniform(5.0, 37.0));
            out.iter_mut().for_each(|v| *v = s * rng.normal());
        }
        _ => unreachable!("{kind}"),
    }
}

/// The shared input: `NROWS` rows of `N_PER_ROW` values, and the kind of
/// each 32-block (for failure messages).
fn inputs() -> &'static (Vec<f32>, Vec<&'static str>) {
    static DATA: OnceLock<(Vec<f32>, Vec<&'static str>)> = OnceLock::new();
    DATA.get_or_init(|| {
        let mut rng = Rng::new(0x7e55_e4a0_0001);
        let mut x = vec![0f32; N_PER_ROW * NROWS];
        let mut kinds = Vec::with_capacity(x.len() / 32);
        for (c, sb) in x.chunks_exact_mut(256).enumerate() {
            if c % 3 == 2 {
                // A super-block whose 32-blocks are all of different kinds.
                for b in sb.chunks_exact_mut(32) {
                    let k = KINDS[rng.below(KINDS.len())];
                    fill(&mut rng, k, b);
                    kinds.push(k);
                }
            } else {
                let k = KINDS[(c / 3 * 2 + c % 3) % KINDS.len()];
                fill(&mut rng, k, sb);
                kinds.extend(std::iter::repeat_n(k, 8));
            }
        }
        (x, kinds)
    })
}

/// One comparison: ggml's `mode` (see the harness) against tessera's `ours`,
/// on every block but those `unspecified` says ggml's output is not a
/// function of the block for.
struct Case {
    ty: GgmlType,
    mode: &'static str,
    ours: fn(GgmlType, &[f32], &mut [u8]),
    unspecified: fn(&[f32]) -> bool,
}

/// tessera's table path: `tessera_quant::quantize`.
fn via_table(t: GgmlType, x: &[f32], out: &mut [u8]) {
    tessera_quant::quantize(t, x, out).unwrap_or_else(|e| panic!("{e}"));
}

fn case(ty: GgmlType, mode: &'static str) -> Case {
    Case {
        ty,
        mode,
        ours: via_table,
        unspecified: |_| false,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs every case through ggml and tessera and asserts byte identity.
fn check(cases: &[Case]) {
    let Some(exe) = harness() else { return };
    let (x, kinds) = inputs();
    let mut cmd = Command::new(exe);
    cmd.arg("in.f32")
        .arg(N_PER_ROW.to_string())
        .arg(NROWS.to_string());
    for (i, c) in cases.iter().enumerate() {
        cmd.arg(c.mode)
            .arg(c.ty.id().to_string())
            .arg(format!("{i}.out"));
    }
    let dir = cref::run_harness(cmd, &[("in.f32", bytemuck::cast_slice::<f32, u8>(x))]);

    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let want = dir.read(&format!("{i}.out"));
        let mut got = vec![0u8; want.len()];
        (c.ours)(c.ty, x, &mut got);
        let (bs, ts) = (c.ty.block_size() as usize, c.ty.type_size() as usize);
        let nblocks = want.len() / ts;
        assert_eq!(nblocks * bs, x.len());
        let compared: Vec<usize> = (0..nblocks)
            .filter(|&b| !(c.unspecified)(&x[b * bs..][..bs]))
            .collect();
        let bad: Vec<usize> = compared
            .iter()
            .copied()
            .filter(|&b| want[b * ts..][..ts] != got[b * ts..][..ts])
            .collect();
        eprintln!(
            "{} ({}): {}/{} blocks byte-identical{}",
            c.ty,
            c.mode,
            compared.len() - bad.len(),
            compared.len(),
            if compared.len() < nblocks {
                format!(
                    " ({} blocks left out as unspecified in ggml)",
                    nblocks - compared.len()
                )
            } else {
                String::new()
            }
        );
        assert!(compared.len() * 2 > nblocks, "most blocks must be compared");
        for &b in bad.iter().take(3) {
            let block_kinds: Vec<_> = kinds[b * bs / 32..][..bs.div_ceil(32)].to_vec();
            failures.push(format!(
                "{} ({}) block {b} ({block_kinds:?}):\n  ggml:    {}\n  tessera: {}\n  input:   {:?}",
                c.ty,
                c.mode,
                hex(&want[b * ts..][..ts]),
                hex(&got[b * ts..][..ts]),
                &x[b * bs..][..bs.min(64)],
            ));
        }
        if !bad.is_empty() {
            failures.push(format!(
                "{} ({}): {} blocks differ",
                c.ty,
                c.mode,
                bad.len()
            ));
        }
    }
    drop(dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn activations_match_ggml() {
    check(&[
        case(GgmlType::Q8_0, "chunk"),
        case(GgmlType::Q8_0, "quantize_row_q8_0_ref"),
        case(GgmlType::Q8_1, "quantize_row_q8_1_ref"),
        case(GgmlType::Q8_K, "quantize_row_q8_K_ref"),
    ]);
}

#[test]
fn legacy_match_ggml() {
    check(&[
        case(GgmlType::Q4_0, "chunk"),
        case(GgmlType::Q4_1, "chunk"),
        case(GgmlType::Q5_0, "chunk"),
        case(GgmlType::Q5_1, "chunk"),
    ]);
}

#[test]
fn kquants_match_ggml() {
    check(&[
        case(GgmlType::Q2_K, "chunk"),
        case(GgmlType::Q3_K, "chunk"),
        case(GgmlType::Q4_K, "chunk"),
        case(GgmlType::Q5_K, "chunk"),
        case(GgmlType::Q6_K, "chunk"),
    ]);
}

#[test]
fn iq4_match_ggml() {
    check(&[
        case(GgmlType::IQ4_NL, "chunk"),
        // ggml's from_float_ref: no scale search, and an all-zero block
        // keeps the previous block's indices, so those are left out.
        Case {
            ty: GgmlType::IQ4_NL,
            mode: "quantize_row_iq4_nl_ref",
            ours: |_, x, out| {
                let blocks: &mut [BlockIq4Nl] = bytemuck::cast_slice_mut(out);
                tessera_quant::quantize::quantize_row_iq4_nl(x, blocks);
            },
            unspecified: |x| x.iter().all(|v| v.abs() < 1e-15),
        },
        case(GgmlType::IQ4_XS, "chunk"),
        case(GgmlType::IQ4_XS, "quantize_row_iq4_xs_ref"),
    ]);
}

#[test]
fn mxfp4_matches_ggml() {
    check(&[case(GgmlType::MXFP4, "chunk")]);
}

/// Test-data helpers on top of the shared generator.
trait RngExt {
    /// Uniform in `[lo, hi)`.
    fn uniform(&mut self, lo: f32, hi: f32) -> f32;
}

impl RngExt for Rng {
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }
}
