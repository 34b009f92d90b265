//! Bit-exactness against llama.cpp's *default* CPU kernels, which are not
//! always `vec_dot` (what `tests/ggml_exact.rs` checks): Q4_K weights with
//! a row count divisible by 8 are repacked (`q4_K_8x8`, computed by ggml's
//! gemv/gemm), and F32/F16/BF16 batches go through llamafile's tinyBLAS.
//! Neither is exported by ggml-cpu, so a C harness
//! (`scripts/ggml-mulmat-harness.c`) builds a real `ggml_mul_mat` graph on
//! the CPU backend, with the weight in the CPU_REPACK extra buffer type as
//! llama.cpp allocates it, and `MatmulCtx::matmul` must give the same f32
//! bits:
//!
//! - Q4_K, rows × cols 640×2048, 640×1024 (Gemma-3-270M's Q4_K shapes), 2048×512 and
//!   12×512 (not repacked), for 1, 2, 3, 4, 5, 8, 13 tokens, 1 and 2
//!   threads; and with repacking off on both sides (`--no-repack`);
//! - Q4_0, IQ4_NL, MXFP4 (repacked `8x8` where rows % 8 == 0), 64×1024,
//!   640×2048 and 12×512 (not IQ4_NL: tinyBLAS), for 1, 2, 3, 4, 5, 8 tokens;
//! - F32, F16, BF16, rows × cols 64×640 (tinyBLAS), 10×640 (rows % 4 ≠ 0)
//!   and 64×100 (cols % 8 ≠ 0: `vec_dot`), for 2, 3, 5, 8, 13, 64 tokens.
//!
//! - ggml-cpu's tiled K-quant matmul (`ggml-cpu/tiled/`, on by default:
//!   non-repacked Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS with ≥ 8 tokens),
//!   rows × cols 640×2048, 2048×768, 4096×512, 12×512 and 100×256, for 1, 7
//!   (below the threshold: `vec_dot`), 8, 9, 13, 16, 64, 100 tokens (Q4_K
//!   with repacking off, and repacked where rows % 8 ≠ 0); and the same
//!   types with `GGML_CPU_TILED_MM=0` on ggml's side, `set_tiled(false)`
//!   on tessera's.
//!
//! Skips (or fails under `TESSERA_STRICT=1`) when the reference build, its
//! headers, a C compiler or AVX2 is missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use half::{bf16, f16};
use tessera_quant::kernels::SimdLevel;
use tessera_quant::matmul::{self, MatmulCtx, Matrix};
use tessera_quant::pool::ThreadPool;
use tessera_quant::{quantize, GgmlType};
use tessera_testkit::rng::SplitMix64 as Rng;
use tessera_testkit::{cref, env};

/// The compiled harness, or `None` (after `env::missing`).
fn harness() -> Option<&'static Path> {
    static EXE: OnceLock<Option<PathBuf>> = OnceLock::new();
    EXE.get_or_init(|| {
        cref::compile_harness("scripts/ggml-mulmat-harness.c", &["ggml-cpu", "ggml-base"])
    })
    .as_deref()
}

fn avx2() -> Option<()> {
    if SimdLevel::detect() >= SimdLevel::Avx2 {
        Some(())
    } else {
        env::missing("no AVX2+FMA+F16C: ggml-cpu's x86 kernels cannot be matched")
    }
}

/// ggml-cpu's `y = w · xᵀ` through a CPU-backend graph.
#[allow(clippy::too_many_arguments)]
fn ggml(
    t: GgmlType,
    rows: usize,
    cols: usize,
    w: &[u8],
    x: &[f32],
    threads: usize,
    repack: bool,
    tiled: bool,
) -> Vec<f32> {
    let exe = harness().expect("checked by the caller");
    let tokens = x.len() / cols;
    let mut cmd = Command::new(exe);
    // ggml-cpu's tiled K-quant matmul (`ggml-cpu/tiled/`, on by default,
    // non-repacked K-quants/IQ with >= 8 tokens); "0" turns it off.
    cmd.env("GGML_CPU_TILED_MM", if tiled { "1" } else { "0" })
        .args([
            (t as u32).to_string(),
            cols.to_string(),
            rows.to_string(),
            tokens.to_string(),
            threads.to_string(),
            u8::from(repack).to_string(),
        ])
        .args(["w.bin", "x.f32", "y.f32"]);
    let dir = cref::run_harness(cmd, &[("w.bin", w), ("x.f32", bytemuck::cast_slice(x))]);
    bytemuck::pod_collect_to_vec(&dir.read("y.f32"))
}

/// Activations: 32-value runs of normal values of varied scale, with
/// outliers, zeros and exact ties of the Q8 quantizers.
fn activations(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut x = vec![0f32; n];
    for run in x.chunks_mut(32) {
        let scale = 10f32.powf(-2.0 + 3.5 * rng.unit());
        match rng.below(5) {
            0 => run.fill(0.0),
            1 => {
                run.iter_mut()
                    .for_each(|v| *v = rng.below(254) as f32 - 126.5);
                run[0] = if rng.below(2) == 0 { 127.0 } else { -127.0 };
            }
            2 => run.iter_mut().for_each(|v| {
                *v = rng.normal() * scale * if rng.below(16) == 0 { 30.0 } else { 1.0 };
            }),
            _ => run.iter_mut().for_each(|v| *v = rng.normal() * scale),
        }
    }
    x
}

fn weights(rng: &mut Rng, t: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let vals: Vec<f32> = (0..rows * cols)
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
        _ => {
            let mut w = vec![0u8; matmul::row_bytes(t, cols).unwrap() * rows];
            quantize(t, &vals, &mut w).unwrap();
            w
        }
    }
}

/// `None` if equal, else a line saying where they differ.
fn diff(what: &str, got: &[f32], want: &[f32]) -> Option<String> {
    let bad: Vec<usize> = (0..want.len())
        .filter(|&i| got[i].to_bits() != want[i].to_bits())
        .collect();
    let &i = bad.first()?;
    let ulps = (got[i].to_bits() as i64 - want[i].to_bits() as i64).abs();
    Some(format!(
        "{what}: {} of {} differ; first [{i}] {:e} vs ggml {:e} ({ulps} ulp)",
        bad.len(),
        want.len(),
        got[i],
        want[i]
    ))
}

/// Every (tokens, threads) of one shape; `repack` and `tiled` on both sides.
fn check(
    t: GgmlType,
    rows: usize,
    cols: usize,
    tokens: &[usize],
    (repack, tiled): (bool, bool),
    bad: &mut Vec<String>,
) -> Option<()> {
    avx2()?;
    harness()?;
    let mut rng = Rng::new(0x9a_b1 ^ (t as u64) << 32 ^ (rows * 7919 + cols) as u64);
    let w = weights(&mut rng, t, rows, cols);
    let most = *tokens.iter().max().unwrap();
    let x: Vec<f32> = (0..most)
        .flat_map(|_| activations(&mut rng, cols))
        .collect();
    let m = Matrix {
        ggml_type: t,
        data: &w,
        rows,
        cols,
    };
    for threads in [1, 2] {
        let pool = ThreadPool::new(threads);
        let mut ctx = MatmulCtx::with_level(SimdLevel::Avx2);
        ctx.set_repack(repack);
        ctx.set_tiled(tiled);
        for &n in tokens {
            let x = &x[..n * cols];
            let want = ggml(t, rows, cols, &w, x, threads, repack, tiled);
            let mut y = vec![f32::NAN; n * rows];
            ctx.matmul(&pool, &m, x, &mut y).unwrap();
            let tag =
                format!("{t:?} {rows}x{cols} repack={repack} tiled={tiled} {n} tok {threads} thr");
            bad.extend(diff(&tag, &y, &want));
        }
    }
    Some(())
}

fn finish(bad: Vec<String>) {
    assert!(
        bad.is_empty(),
        "not bit-exact with ggml-cpu:\n{}",
        bad.join("\n")
    );
}

const Q4K_TOKENS: &[usize] = &[1, 2, 3, 4, 5, 8, 13];

#[test]
fn q4_k_repacked() {
    let mut bad = Vec::new();
    for (rows, cols) in [(640, 2048), (640, 1024), (2048, 512), (12, 512)] {
        if check(
            GgmlType::Q4_K,
            rows,
            cols,
            Q4K_TOKENS,
            (true, false),
            &mut bad,
        )
        .is_none()
        {
            return;
        }
    }
    finish(bad);
}

/// Q4_0, IQ4_NL and MXFP4 in ggml's repacked `8x8` order (rows % 8 == 0:
/// `legacy8::repacked_rows8`, whole 8-row groups), 12×512 not repacked
/// (not for IQ4_NL: ggml sends its batches to tinyBLAS, whose IQ4_NL order
/// tessera does not reproduce; docs/quant-kernels.md).
#[test]
fn legacy_repacked() {
    let mut bad = Vec::new();
    for t in [GgmlType::Q4_0, GgmlType::IQ4_NL, GgmlType::MXFP4] {
        for (rows, cols) in [(64, 1024), (640, 2048), (12, 512)] {
            if t == GgmlType::IQ4_NL && rows % 8 != 0 {
                continue;
            }
            if check(t, rows, cols, &[1, 2, 3, 4, 5, 8], (true, false), &mut bad).is_none() {
                return;
            }
        }
    }
    finish(bad);
}

#[test]
fn q4_k_no_repack() {
    let mut bad = Vec::new();
    if check(
        GgmlType::Q4_K,
        640,
        1024,
        Q4K_TOKENS,
        (false, false),
        &mut bad,
    )
    .is_none()
    {
        return;
    }
    finish(bad);
}

/// The repacked order really differs from `vec_dot`'s (else the test above
/// would prove nothing): ggml's own two paths disagree somewhere.
#[test]
fn q4_k_repack_changes_ggml_results() {
    if avx2().is_none() || harness().is_none() {
        return;
    }
    let mut rng = Rng::new(7);
    let (rows, cols) = (640, 2048);
    let w = weights(&mut rng, GgmlType::Q4_K, rows, cols);
    let x: Vec<f32> = (0..5).flat_map(|_| activations(&mut rng, cols)).collect();
    let a = ggml(GgmlType::Q4_K, rows, cols, &w, &x, 1, true, false);
    let b = ggml(GgmlType::Q4_K, rows, cols, &w, &x, 1, false, false);
    assert!(
        a.iter().zip(&b).any(|(a, b)| a.to_bits() != b.to_bits()),
        "repacked and plain Q4_K agree bit for bit: is CPU_REPACK in use?"
    );
}

const FLOAT_TOKENS: &[usize] = &[2, 3, 5, 8, 13, 64];

fn floats(t: GgmlType) {
    let mut bad = Vec::new();
    for (rows, cols) in [(64, 640), (10, 640), (64, 100)] {
        if check(t, rows, cols, FLOAT_TOKENS, (true, true), &mut bad).is_none() {
            return;
        }
    }
    finish(bad);
}

#[test]
fn f32_tinyblas() {
    floats(GgmlType::F32);
}

#[test]
fn f16_tinyblas() {
    floats(GgmlType::F16);
}

#[test]
fn bf16_tinyblas() {
    floats(GgmlType::BF16);
}

const TILED_TOKENS: &[usize] = &[1, 7, 8, 9, 13, 16, 64, 100];
const TILED_SHAPES: &[(usize, usize)] =
    &[(640, 2048), (2048, 768), (4096, 512), (12, 512), (100, 256)];

/// Every tiled shape of `t` with ggml's tiled matmul on (`repack` as
/// given) and off.
fn tiled(t: GgmlType, repack: bool) {
    let mut bad = Vec::new();
    for &(rows, cols) in TILED_SHAPES {
        for tiled in [true, false] {
            if check(t, rows, cols, TILED_TOKENS, (repack, tiled), &mut bad).is_none() {
                return;
            }
        }
    }
    finish(bad);
}

#[test]
fn q6_k_tiled() {
    tiled(GgmlType::Q6_K, true);
}

#[test]
fn q4_k_tiled_no_repack() {
    tiled(GgmlType::Q4_K, false);
}

/// Q4_K with rows % 8 ≠ 0 is not repacked: ggml tiles it (≥ 8 tokens).
#[test]
fn q4_k_tiled_ragged_rows() {
    let mut bad = Vec::new();
    for (rows, cols) in [(12, 512), (100, 256), (1001, 768)] {
        if check(
            GgmlType::Q4_K,
            rows,
            cols,
            TILED_TOKENS,
            (true, true),
            &mut bad,
        )
        .is_none()
        {
            return;
        }
    }
    finish(bad);
}

#[test]
fn q5_k_tiled() {
    tiled(GgmlType::Q5_K, true);
}

#[test]
fn q3_k_tiled() {
    tiled(GgmlType::Q3_K, true);
}

#[test]
fn q2_k_tiled() {
    tiled(GgmlType::Q2_K, true);
}

#[test]
fn iq4_xs_tiled() {
    tiled(GgmlType::IQ4_XS, true);
}

/// The tiled order really differs from `vec_dot`'s (else the tests above
/// would prove nothing): ggml's own two paths disagree somewhere.
#[test]
fn tiled_changes_ggml_results() {
    if avx2().is_none() || harness().is_none() {
        return;
    }
    let mut rng = Rng::new(11);
    let (rows, cols) = (640, 2048);
    let w = weights(&mut rng, GgmlType::Q6_K, rows, cols);
    let x: Vec<f32> = (0..16).flat_map(|_| activations(&mut rng, cols)).collect();
    let a = ggml(GgmlType::Q6_K, rows, cols, &w, &x, 1, true, true);
    let b = ggml(GgmlType::Q6_K, rows, cols, &w, &x, 1, true, false);
    assert!(
        a.iter().zip(&b).any(|(a, b)| a.to_bits() != b.to_bits()),
        "tiled and vec_dot Q6_K agree bit for bit: is the tiled matmul in use?"
    );
}
