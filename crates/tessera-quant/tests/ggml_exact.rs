//! Bit-exactness against ggml-cpu itself: tessera's matmul must give the
//! very f32 bits llama.cpp's CPU backend gives, or greedy decoding drifts (a
//! 1-ulp difference flips an 8-bit activation quantization a few layers on).
//!
//! A C harness (`scripts/ggml-dot-harness.c`) is compiled at test time
//! against the reference build's `libggml-cpu` and calls ggml-cpu's public
//! type traits (`ggml_get_type_traits_cpu`): `from_float` of the weight
//! type's `vec_dot_type` on every activation row, then `vec_dot` on every
//! (weight row, activation row) pair, as `ggml_compute_forward_mul_mat` does
//! for weights that are neither repacked nor taken by tinyBLAS (see
//! docs/quant-kernels.md, "Bit-exactness with ggml-cpu", for when llama.cpp
//! uses those instead). For each weight type and several row lengths
//! (576, 640, 1536, 2048, 2560 and short ones with odd block counts), on the
//! AVX2 level (what ggml-cpu runs on an AVX2 machine):
//!
//! - (a) the activations converted by [`matmul::convert_row`] equal ggml's
//!   `from_float`, byte for byte;
//! - (b) the single-row dot kernel, the tile kernel (every tile shape) and
//!   `MatmulCtx::matmul` for 1, 2, 3, 5 and 8 tokens (1 and 2 threads) equal
//!   ggml's `vec_dot`, bit for bit.
//!
//! Skips (or fails under `TESSERA_STRICT=1`) when the reference build, a C
//! compiler or AVX2 is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use half::{bf16, f16};
use tessera_quant::kernels::{self, SimdLevel};
use tessera_quant::matmul::{self, MatmulCtx, Matrix};
use tessera_quant::pool::ThreadPool;
use tessera_quant::{quantize, GgmlType};
use tessera_testkit::rng::SplitMix64 as Rng;
use tessera_testkit::{cref, env};

/// Weight rows per matrix.
const ROWS: usize = 9;
/// Activation rows (the matmul checks use the first 1, 2, 3, 5, 8).
const TOKENS: usize = 8;

/// The compiled harness, or `None` (after `env::missing`) when it cannot be built.
fn harness() -> Option<&'static Path> {
    static EXE: OnceLock<Option<PathBuf>> = OnceLock::new();
    EXE.get_or_init(|| {
        cref::compile_harness("scripts/ggml-dot-harness.c", &["ggml-cpu", "ggml-base"])
    })
    .as_deref()
}

/// The level ggml-cpu's x86 kernels correspond to, or `None` (after
/// `env::missing`) on a CPU without it.
fn level() -> Option<SimdLevel> {
    if SimdLevel::detect() >= SimdLevel::Avx2 {
        Some(SimdLevel::Avx2)
    } else {
        env::missing("no AVX2+FMA+F16C: ggml-cpu's x86 kernels cannot be matched")
    }
}

/// A uniform value in `[lo, hi)`.
fn uniform(rng: &mut Rng, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * rng.unit()
}

/// One activation row: 32-value runs of several kinds, including exact
/// rounding ties of the Q8 quantizers, zeros and outliers.
fn activations(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut x = vec![0f32; n];
    for run in x.chunks_mut(32) {
        let scale = 10f32.powf(uniform(rng, -2.0, 1.5));
        match rng.below(6) {
            0 => run.fill(0.0),
            // amax 127: every value j + 0.5 is a tie of `x * 127 / amax`.
            1 => {
                run.iter_mut()
                    .for_each(|v| *v = rng.below(254) as f32 - 126.5);
                run[rng.below(run.len())] = if rng.below(2) == 0 { 127.0 } else { -127.0 };
            }
            2 => run.iter_mut().for_each(|v| {
                *v = rng.normal() * scale * if rng.below(16) == 0 { 30.0 } else { 1.0 };
            }),
            3 => run.iter_mut().for_each(|v| *v = uniform(rng, 0.0, scale)),
            _ => run.iter_mut().for_each(|v| *v = rng.normal() * scale),
        }
    }
    x
}

/// `rows` weight rows of type `t`, `n` values each: quantized from random
/// values where tessera has the quantizer (the reference one, byte-identical
/// with ggml's), otherwise random blocks with a sane f16 scale.
fn weights(rng: &mut Rng, t: GgmlType, n: usize, rows: usize) -> Vec<u8> {
    let vals: Vec<f32> = (0..n * rows)
        .map(|i| rng.normal() * if i % 97 == 0 { 4.0 } else { 0.05 })
        .collect();
    match t {
        GgmlType::F32 => bytemuck::cast_slice(&vals).to_vec(),
        GgmlType::F16 => vals
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect(),
        GgmlType::BF16 => vals
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
            .collect(),
        _ if tessera_quant::info(t).from_f32.is_some() => {
            let mut w = vec![0u8; matmul::row_bytes(t, n).unwrap() * rows];
            quantize(t, &vals, &mut w).unwrap();
            w
        }
        _ => {
            let bs = t.type_size() as usize;
            let mut w = vec![0u8; matmul::row_bytes(t, n).unwrap() * rows];
            rng.fill_bytes(&mut w);
            // The f16 super-block scale: first for the IQ types, last for TQ.
            let at = if matches!(t, GgmlType::TQ1_0 | GgmlType::TQ2_0) {
                bs - 2
            } else {
                0
            };
            for b in w.chunks_exact_mut(bs) {
                let d = f16::from_f32(uniform(rng, 0.001, 0.01));
                b[at..at + 2].copy_from_slice(&d.to_le_bytes());
            }
            w
        }
    }
}

/// What ggml-cpu gives: the converted activations and `dot[t * rows + r]`.
fn ggml(t: GgmlType, n: usize, w: &[u8], x: &[f32]) -> Option<(Vec<u8>, Vec<f32>)> {
    let exe = harness()?;
    let mut cmd = Command::new(exe);
    cmd.arg((t as u32).to_string())
        .arg(n.to_string())
        .arg(ROWS.to_string())
        .arg((x.len() / n).to_string())
        .args(["w.bin", "x.f32", "act.bin", "dot.f32"]);
    let dir = cref::run_harness(cmd, &[("w.bin", w), ("x.f32", bytemuck::cast_slice(x))]);
    let act = dir.read("act.bin");
    let dot = bytemuck::pod_collect_to_vec(&dir.read("dot.f32"));
    Some((act, dot))
}

/// Mismatches of one check, for the failure message.
#[derive(Default)]
struct Report {
    lines: Vec<String>,
}

impl Report {
    fn bits(&mut self, what: &str, got: &[f32], want: &[f32]) {
        let bad: Vec<usize> = (0..want.len())
            .filter(|&i| got[i].to_bits() != want[i].to_bits())
            .collect();
        if let Some(&i) = bad.first() {
            let ulps = (got[i].to_bits() as i64 - want[i].to_bits() as i64).abs();
            self.lines.push(format!(
                "{what}: {} of {} differ; first [{i}] {:e} vs ggml {:e} ({ulps} ulp)",
                bad.len(),
                want.len(),
                got[i],
                want[i]
            ));
        }
    }
}

/// Every check of weight type `t` on rows of `n` values.
fn check(t: GgmlType, n: usize, report: &mut Report) -> Option<()> {
    let level = level()?;
    let mut rng = Rng::new(0x6e_7a_c7 ^ (t as u64) << 32 ^ n as u64);
    let w = weights(&mut rng, t, n, ROWS);
    let x: Vec<f32> = (0..TOKENS).flat_map(|_| activations(&mut rng, n)).collect();
    let (g_act, g_dot) = ggml(t, n, &w, &x)?;

    let e = kernels::dot_entry(t).expect("a kernel");
    let w_row = matmul::row_bytes(t, n).unwrap();
    let a_row = matmul::row_bytes(e.act, n).unwrap();
    let tag = format!("{t:?} n={n}");

    // (a) activations, byte for byte (8-aligned, as the drivers' buffer).
    let mut act_words = vec![0u64; (a_row * TOKENS).div_ceil(8)];
    let act: &mut [u8] = &mut bytemuck::cast_slice_mut(&mut act_words)[..a_row * TOKENS];
    if e.act == GgmlType::F32 {
        act.copy_from_slice(bytemuck::cast_slice(&x));
    } else {
        for (tok, dst) in act.chunks_exact_mut(a_row).enumerate() {
            matmul::convert_row(level, e.act, &x[tok * n..(tok + 1) * n], dst).unwrap();
        }
    }
    if let Some(i) = (0..act.len()).find(|&i| act[i] != g_act[i]) {
        report.lines.push(format!(
            "{tag} activations ({:?}): first differing byte {i} (row {}, byte {})",
            e.act,
            i / a_row,
            i % a_row
        ));
    }
    // The dots below run on ggml's activations, so a conversion mismatch
    // does not hide a kernel one.
    act.copy_from_slice(&g_act);
    let act = &*act;
    let wr = |r: usize| &w[r * w_row..(r + 1) * w_row];
    let ar = |c: usize| &act[c * a_row..(c + 1) * a_row];

    // (b) the single-row kernel.
    let dot = e.at(level);
    let single: Vec<f32> = (0..TOKENS * ROWS)
        .map(|i| dot(n, wr(i % ROWS), ar(i / ROWS)))
        .collect();
    report.bits(&format!("{tag} single"), &single, &g_dot);

    // The tile kernel, every shape up to 4 × 2.
    let tile = kernels::legacy::dot_tile(t, level).or_else(|| kernels::float::dot_tile(t, level));
    if let Some(tile) = tile {
        for nr in 1..=kernels::legacy::TILE_ROWS {
            for nc in 1..=kernels::legacy::TILE_ACTS {
                let (r0, c0) = (ROWS - nr - 1, TOKENS - nc - 1);
                let ws: Vec<&[u8]> = (r0..r0 + nr).map(wr).collect();
                let as_: Vec<&[u8]> = (c0..c0 + nc).map(ar).collect();
                let mut out = vec![f32::NAN; nr * nc];
                tile(n, &ws, &as_, &mut out);
                let want: Vec<f32> = (0..nr * nc)
                    .map(|i| g_dot[(c0 + i / nr) * ROWS + r0 + i % nr])
                    .collect();
                report.bits(&format!("{tag} tile {nr}x{nc}"), &out, &want);
            }
        }
    }

    // The drivers (on the f32 activations: conversion included).
    for threads in [1, 2] {
        let pool = ThreadPool::new(threads);
        let mut ctx = MatmulCtx::with_level(level);
        // `vec_dot`'s order is checked here; ggml's tiled K-quant order
        // (its default for >= 8 tokens) by tests/ggml_graph.rs.
        ctx.set_tiled(false);
        for tokens in [1, 2, 3, 5, 8] {
            let m = Matrix {
                ggml_type: t,
                data: &w,
                rows: ROWS,
                cols: n,
            };
            let mut y = vec![f32::NAN; tokens * ROWS];
            ctx.matmul(&pool, &m, &x[..tokens * n], &mut y).unwrap();
            report.bits(
                &format!("{tag} matmul {tokens} tok {threads} thr"),
                &y,
                &g_dot[..tokens * ROWS],
            );
        }
    }
    Some(())
}

/// Row lengths: those of real models, and short rows of odd block counts.
fn lengths(t: GgmlType) -> Vec<usize> {
    let bs = t.block_size() as usize;
    let mut ns: Vec<usize> = [576, 640, 1536, 2048, 2560]
        .into_iter()
        .filter(|n| n % bs == 0)
        .collect();
    ns.extend([bs, 3 * bs]);
    if bs == 1 {
        // Floats: leftovers after ggml's 32- and 8-value steps.
        ns.extend([5, 77, 1000]);
    }
    if bs == 256 {
        ns.push(1280);
    }
    ns
}

fn run(t: GgmlType) {
    let mut report = Report::default();
    for n in lengths(t) {
        if check(t, n, &mut report).is_none() {
            return;
        }
    }
    assert!(
        report.lines.is_empty(),
        "{t:?} is not bit-exact with ggml-cpu:\n{}",
        report.lines.join("\n")
    );
}

macro_rules! exact {
    ($($name:ident: $t:ident,)*) => {$(
        #[test]
        fn $name() {
            run(GgmlType::$t);
        }
    )*};
}

exact! {
    f32: F32,
    f16: F16,
    bf16: BF16,
    q4_0: Q4_0,
    q4_1: Q4_1,
    q5_0: Q5_0,
    q5_1: Q5_1,
    q8_0: Q8_0,
    mxfp4: MXFP4,
    iq4_nl: IQ4_NL,
    q2_k: Q2_K,
    q3_k: Q3_K,
    q4_k: Q4_K,
    q5_k: Q5_K,
    q6_k: Q6_K,
    iq4_xs: IQ4_XS,
    iq1_s: IQ1_S,
    iq2_xxs: IQ2_XXS,
    iq2_xs: IQ2_XS,
    iq2_s: IQ2_S,
    iq3_xxs: IQ3_XXS,
    iq3_s: IQ3_S,
    tq1_0: TQ1_0,
    tq2_0: TQ2_0,
}
