//! Golden tests: tessera's dequantization equals ggml's, bit for bit
//! (`f32::to_bits`, NaN included), for every type it supports.
//!
//! Goldens:
//! - **ggml itself**: a small C program (below), built here with `cc` and
//!   linked against the reference llama.cpp's `libggml-base.so`, calls
//!   `ggml_get_type_traits(t)->to_float` on the raw bytes (and
//!   `dequantize_row_q8_K`, which has no trait entry). It also quantizes
//!   synthetic data with `ggml_quantize_chunk`, the function llama-quantize
//!   calls. ggml has no Q8_1 dequantizer: Q8_1 is checked against ggml's
//!   Q8_0 dequantizer on the same `d` and `qs`.
//! - **gguf-py**'s numpy dequantizers (`scripts/gguf_py_quants.py`), for the
//!   types it has.
//!
//! Data: random blocks of every type (seeded; the half-float scale fields
//! hold random finite values, every other byte is random), tensors that ggml
//! quantized from synthetic f32 data, and the tensors of the real models.
//!
//! A missing prerequisite (llama.cpp build, `cc`, Python `gguf`, models)
//! skips a test, or fails it under `TESSERA_STRICT=1`.

use std::mem::offset_of;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use tessera_gguf::GgufModel;
use tessera_quant::blocks::*;
use tessera_quant::{dequantize, GgmlType, QuantError};
use tessera_testkit::env;
use tessera_testkit::rng::SplitMix64 as Rng;

/// Every type tessera dequantizes.
const TYPES: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q8_1,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q8_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
    GgmlType::MXFP4,
    GgmlType::IQ1_S,
    GgmlType::IQ1_M,
    GgmlType::IQ2_XXS,
    GgmlType::IQ2_XS,
    GgmlType::IQ2_S,
    GgmlType::IQ3_XXS,
    GgmlType::IQ3_S,
    GgmlType::TQ1_0,
    GgmlType::TQ2_0,
];

/// Types gguf-py 0.19 cannot dequantize (ggml has no Q8_1/Q8_K `to_float` either).
const NOT_IN_GGUF_PY: &[GgmlType] = &[GgmlType::Q8_1, GgmlType::Q8_K];

// ---------------------------------------------------------------- data

/// Byte offsets, within a block, of the half-float scale fields of `t`.
fn f16_fields(t: GgmlType) -> Vec<usize> {
    use GgmlType as T;
    match t {
        T::Q4_0 => vec![offset_of!(BlockQ4_0, d)],
        T::Q4_1 => vec![offset_of!(BlockQ4_1, d), offset_of!(BlockQ4_1, m)],
        T::Q5_0 => vec![offset_of!(BlockQ5_0, d)],
        T::Q5_1 => vec![offset_of!(BlockQ5_1, d), offset_of!(BlockQ5_1, m)],
        T::Q8_0 => vec![offset_of!(BlockQ8_0, d)],
        T::Q8_1 => vec![offset_of!(BlockQ8_1, d), offset_of!(BlockQ8_1, s)],
        T::Q2_K => vec![offset_of!(BlockQ2K, d), offset_of!(BlockQ2K, dmin)],
        T::Q3_K => vec![offset_of!(BlockQ3K, d)],
        T::Q4_K => vec![offset_of!(BlockQ4K, d), offset_of!(BlockQ4K, dmin)],
        T::Q5_K => vec![offset_of!(BlockQ5K, d), offset_of!(BlockQ5K, dmin)],
        T::Q6_K => vec![offset_of!(BlockQ6K, d)],
        T::IQ4_NL => vec![offset_of!(BlockIq4Nl, d)],
        T::IQ4_XS => vec![offset_of!(BlockIq4Xs, d)],
        T::IQ2_XXS => vec![offset_of!(BlockIq2Xxs, d)],
        T::IQ2_XS => vec![offset_of!(BlockIq2Xs, d)],
        T::IQ2_S => vec![offset_of!(BlockIq2S, d)],
        T::IQ3_XXS => vec![offset_of!(BlockIq3Xxs, d)],
        T::IQ3_S => vec![offset_of!(BlockIq3S, d)],
        T::IQ1_S => vec![offset_of!(BlockIq1S, d)],
        T::TQ1_0 => vec![offset_of!(BlockTq1_0, d)],
        T::TQ2_0 => vec![offset_of!(BlockTq2_0, d)],
        _ => vec![],
    }
}

/// `n` random blocks of `t`: random bytes, with finite scales (see module doc).
/// F16/BF16/F32 stay fully random, NaNs and infinities included.
fn random_blocks(t: GgmlType, n: usize, seed: u64) -> Vec<u8> {
    let ts = t.type_size() as usize;
    let mut rng = Rng::new(seed ^ (u64::from(t.id()) << 32));
    let mut bytes = vec![0u8; n * ts];
    rng.fill_bytes(&mut bytes);
    for block in bytes.chunks_exact_mut(ts) {
        for off in f16_fields(t) {
            block[off..off + 2].copy_from_slice(&rng.finite_f16());
        }
        match t {
            GgmlType::Q8_K => {
                // `d` is an f32: a random finite one.
                let mut d = f32::NAN;
                while !d.is_finite() {
                    d = f32::from_bits(rng.next_u64() as u32);
                }
                block[..4].copy_from_slice(&d.to_le_bytes());
            }
            GgmlType::IQ1_M => {
                // The super-block scale is the top nibbles of the four u16 scales.
                let sc = offset_of!(BlockIq1M, scales);
                loop {
                    let s: Vec<u16> = (0..4)
                        .map(|i| u16::from_le_bytes([block[sc + 2 * i], block[sc + 2 * i + 1]]))
                        .collect();
                    let d = (s[0] >> 12)
                        | ((s[1] >> 8) & 0xf0)
                        | ((s[2] >> 4) & 0xf00)
                        | (s[3] & 0xf000);
                    if d & 0x7c00 != 0x7c00 {
                        break;
                    }
                    rng.fill_bytes(&mut block[sc..sc + 8]);
                }
            }
            _ => {}
        }
    }
    bytes
}

/// Synthetic weights: `rows` rows of `n_per_row`, roughly Gaussian with a
/// per-row scale over six orders of magnitude, a few outliers, one zero
/// row and one constant row.
fn synthetic_f32(rows: usize, n_per_row: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut v = Vec::with_capacity(rows * n_per_row);
    for r in 0..rows {
        let scale = 10f32.powf(-4.0 + 6.0 * r as f32 / rows as f32);
        for _ in 0..n_per_row {
            let g: f32 = (0..4).map(|_| rng.unit()).sum::<f32>() - 2.0;
            let outlier = if rng.unit() < 0.002 { 20.0 } else { 1.0 };
            v.push(match r {
                0 => 0.0,
                1 => 0.75,
                _ => g * scale * outlier,
            });
        }
    }
    v
}

// ---------------------------------------------------------------- tessera

fn ours(t: GgmlType, bytes: &[u8]) -> Vec<f32> {
    let n = bytes.len() / t.type_size() as usize * t.block_size() as usize;
    let mut out = vec![f32::NAN; n];
    dequantize(t, bytes, &mut out).unwrap_or_else(|e| panic!("{t:?}: {e}"));
    out
}

/// Asserts `ours == golden` bit for bit; returns the number of values compared.
fn assert_same_bits(what: &str, ours: &[f32], golden: &[f32]) -> usize {
    assert_bits_equal_except(what, ours, golden, |_, _| false)
}

/// [`assert_same_bits`], except for pairs of bit patterns that `allowed` accepts.
fn assert_bits_equal_except(
    what: &str,
    ours: &[f32],
    golden: &[f32],
    allowed: impl Fn(u32, u32) -> bool,
) -> usize {
    assert_eq!(ours.len(), golden.len(), "{what}: value counts differ");
    let bad: Vec<usize> = (0..ours.len())
        .filter(|&i| {
            let (a, b) = (ours[i].to_bits(), golden[i].to_bits());
            a != b && !allowed(a, b)
        })
        .collect();
    if let Some(&i) = bad.first() {
        panic!(
            "{what}: {} of {} values differ; first at {i}: tessera {} ({:#010x}), golden {} ({:#010x})",
            bad.len(),
            ours.len(),
            ours[i],
            ours[i].to_bits(),
            golden[i],
            golden[i].to_bits()
        );
    }
    ours.len()
}

// ---------------------------------------------------------------- goldens

fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("dequant-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

const HARNESS_C: &str = r#"
// ggml's dequantizers and quantizers on raw files, for tessera's golden tests.
//   harness dequant TYPE_ID IN.bin OUT.f32 [TYPE_ID IN OUT ...]
//   harness quant TYPE_ID IN.f32 OUT.bin N_PER_ROW
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ggml.h"

// In ggml-quants.h (not installed), exported by libggml-base.
void dequantize_row_q8_K(const void * x, float * y, int64_t k);
void quantize_row_q8_K_ref(const float * x, void * y, int64_t k);

static void * slurp(const char * path, size_t * n) {
    FILE * f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    void * buf = malloc(len > 0 ? len : 1);
    if (fread(buf, 1, len, f) != (size_t) len) { perror(path); exit(1); }
    fclose(f);
    *n = (size_t) len;
    return buf;
}

static void spill(const char * path, const void * buf, size_t n) {
    FILE * f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, n, f) != n) { perror(path); exit(1); }
    fclose(f);
}

int main(int argc, char ** argv) {
    if (argc >= 5 && !strcmp(argv[1], "dequant") && (argc - 2) % 3 == 0) {
        int status = 0;
        for (int i = 2; i < argc; i += 3) {
            enum ggml_type t = (enum ggml_type) atoi(argv[i]);
            const struct ggml_type_traits * tr = ggml_get_type_traits(t);
            size_t n;
            void * src = slurp(argv[i + 1], &n);
            int64_t k = (int64_t) (n / tr->type_size) * tr->blck_size;
            float * dst = malloc(k * sizeof(float) + 4);
            if (t == GGML_TYPE_F32) {
                memcpy(dst, src, k * sizeof(float));  // ggml's F32 has no to_float
            } else if (t == GGML_TYPE_Q8_K) {
                dequantize_row_q8_K(src, dst, k);
            } else if (tr->to_float) {
                tr->to_float(src, dst, k);
            } else {
                fprintf(stderr, "%s: ggml has no to_float\n", tr->type_name);
                status = 3;
                free(src); free(dst);
                continue;
            }
            spill(argv[i + 2], dst, k * sizeof(float));
            free(src); free(dst);
        }
        return status;
    }
    if (argc == 6 && !strcmp(argv[1], "quant")) {
        enum ggml_type t = (enum ggml_type) atoi(argv[2]);
        size_t n;
        float * src = slurp(argv[3], &n);
        int64_t n_per_row = atoll(argv[5]);
        int64_t k = (int64_t) (n / sizeof(float));
        int64_t nrows = k / n_per_row;
        size_t bytes = ggml_row_size(t, n_per_row) * nrows;
        void * dst = malloc(bytes);
        if (t == GGML_TYPE_Q8_K) {
            quantize_row_q8_K_ref(src, dst, k);
        } else if (t == GGML_TYPE_Q8_1) {
            ggml_get_type_traits(t)->from_float_ref(src, dst, k);
        } else {
            // The low-bit IQ types get an importance matrix (some require one).
            float * imatrix = NULL;
            if (t == GGML_TYPE_IQ2_XXS || t == GGML_TYPE_IQ2_XS || t == GGML_TYPE_IQ2_S ||
                t == GGML_TYPE_IQ3_XXS || t == GGML_TYPE_IQ3_S || t == GGML_TYPE_IQ1_S ||
                t == GGML_TYPE_IQ1_M) {
                imatrix = malloc(n_per_row * sizeof(float));
                for (int64_t j = 0; j < n_per_row; j++) imatrix[j] = 1.0f + (float) (j % 7);
            }
            ggml_quantize_init(t);
            size_t got = ggml_quantize_chunk(t, src, dst, 0, nrows, n_per_row, imatrix);
            if (got != bytes) { fprintf(stderr, "quantize: %zu bytes, expected %zu\n", got, bytes); return 1; }
        }
        spill(argv[4], dst, bytes);
        return 0;
    }
    fprintf(stderr, "usage: harness dequant TYPE_ID IN OUT ... | quant TYPE_ID IN.f32 OUT.bin N_PER_ROW\n");
    return 2;
}
"#;

/// The C harness, built once per test run; `None` (skip) without a llama.cpp build or `cc`.
fn harness() -> Option<&'static Path> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let lib = env::llama_tool("libggml-base.so").ok_or("no libggml-base.so")?;
        let bin = lib.parent().unwrap().to_path_buf();
        let include = bin.join("../../vendor/llama.cpp/ggml/include");
        if !include.join("ggml.h").is_file() {
            return Err(format!("ggml.h not found in {}", include.display()));
        }
        let dir = scratch("harness");
        let src = dir.join("harness.c");
        let exe = dir.join("harness");
        std::fs::write(&src, HARNESS_C).unwrap();
        let out = Command::new("cc")
            .args(["-O2", "-std=c11", "-Wall", "-Werror", "-o"])
            .arg(&exe)
            .arg(&src)
            .arg("-I")
            .arg(&include)
            .arg("-L")
            .arg(&bin)
            .arg(format!("-Wl,-rpath,{}", bin.display()))
            .arg("-lggml-base")
            .output()
            .map_err(|e| format!("cc: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cc failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(exe)
    });
    match built {
        Ok(p) => Some(p.as_path()),
        Err(e) => env::missing(&format!("ggml C harness: {e}")),
    }
}

/// A dequantization job: type and raw bytes.
struct Job<'a> {
    t: GgmlType,
    bytes: &'a [u8],
}

/// ggml's values for each job. Q8_1 (no ggml dequantizer) is asked as the
/// Q8_0 blocks with the same `d` and `qs`.
fn ggml_golden(harness: &Path, dir: &Path, jobs: &[Job]) -> Vec<Vec<f32>> {
    let mut cmd = Command::new(harness);
    cmd.arg("dequant");
    let mut outs = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        let (t, bytes) = if job.t == GgmlType::Q8_1 {
            (GgmlType::Q8_0, q8_1_as_q8_0(job.bytes))
        } else {
            (job.t, job.bytes.to_vec())
        };
        let (src, dst) = (dir.join(format!("g{i}.bin")), dir.join(format!("g{i}.f32")));
        std::fs::write(&src, bytes).unwrap();
        cmd.arg(t.id().to_string()).arg(&src).arg(&dst);
        outs.push(dst);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "harness dequant: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    outs.iter().map(|p| read_f32(p)).collect()
}

fn q8_1_as_q8_0(bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for b in bytes.chunks_exact(36) {
        v.extend_from_slice(&b[..2]);
        v.extend_from_slice(&b[4..]);
    }
    v
}

/// gguf-py's values for each job; `None` for a type it lacks.
fn gguf_py_golden(python: &Path, dir: &Path, jobs: &[Job]) -> Vec<Option<Vec<f32>>> {
    let script = env::workspace_root().join("scripts/gguf_py_quants.py");
    let mut cmd = Command::new(python);
    cmd.arg(&script).arg("dequant");
    let mut outs = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        let (src, dst) = (dir.join(format!("p{i}.bin")), dir.join(format!("p{i}.f32")));
        std::fs::write(&src, job.bytes).unwrap();
        let _ = std::fs::remove_file(&dst);
        cmd.arg(job.t.name()).arg(&src).arg(&dst);
        outs.push(dst);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success() || out.status.code() == Some(3),
        "gguf_py_quants.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    outs.iter()
        .map(|p| p.is_file().then(|| read_f32(p)))
        .collect()
}

/// ggml quantizes `values` (rows of `n_per_row`) to `t`.
fn ggml_quantize(
    harness: &Path,
    dir: &Path,
    t: GgmlType,
    values: &[f32],
    n_per_row: usize,
) -> Vec<u8> {
    let (src, dst) = (
        dir.join(format!("q{}.f32", t.id())),
        dir.join(format!("q{}.bin", t.id())),
    );
    std::fs::write(
        &src,
        values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let out = Command::new(harness)
        .arg("quant")
        .arg(t.id().to_string())
        .arg(&src)
        .arg(&dst)
        .arg(n_per_row.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "harness quant {t:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(dst).unwrap()
}

// ---------------------------------------------------------------- tests

/// Blocks per type in the random tests: enough to hit every grid entry of
/// IQ1_S (2048 points, 32 lookups per block) many times over.
const RANDOM_BLOCKS: usize = 1024;

fn random_jobs() -> Vec<(GgmlType, Vec<u8>)> {
    TYPES
        .iter()
        .map(|&t| {
            // The plain types are one value per "block": give them as many values as a Q4_0 run.
            let n = if t.block_size() == 1 {
                RANDOM_BLOCKS * 32
            } else {
                RANDOM_BLOCKS
            };
            (t, random_blocks(t, n, 0x7e55_e2a0))
        })
        .collect()
}

#[test]
fn random_blocks_match_ggml() {
    let Some(harness) = harness() else { return };
    let dir = scratch("random-ggml");
    let data = random_jobs();
    let jobs: Vec<Job> = data.iter().map(|(t, b)| Job { t: *t, bytes: b }).collect();
    let golden = ggml_golden(harness, &dir, &jobs);
    let mut total = 0;
    for (job, golden) in jobs.iter().zip(&golden) {
        let mine = ours(job.t, job.bytes);
        total += assert_same_bits(&format!("{:?} random vs ggml", job.t), &mine, golden);
        // The unaligned path (bytes copied to aligned blocks) gives the same values.
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(job.bytes);
        assert_same_bits(
            &format!("{:?} unaligned", job.t),
            &ours(job.t, &shifted[1..]),
            &mine,
        );
    }
    eprintln!(
        "random blocks: {total} values of {} types equal ggml's",
        jobs.len()
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn random_blocks_match_gguf_py() {
    let Some(python) = env::python_with_gguf() else {
        return;
    };
    let dir = scratch("random-gguf-py");
    let data = random_jobs();
    let jobs: Vec<Job> = data.iter().map(|(t, b)| Job { t: *t, bytes: b }).collect();
    let golden = gguf_py_golden(&python, &dir, &jobs);
    let mut total = 0;
    for (job, golden) in jobs.iter().zip(&golden) {
        let Some(golden) = golden else {
            assert!(
                NOT_IN_GGUF_PY.contains(&job.t),
                "gguf-py failed on {:?}",
                job.t
            );
            continue;
        };
        assert!(
            !NOT_IN_GGUF_PY.contains(&job.t),
            "gguf-py now has {:?}: add it",
            job.t
        );
        let what = format!("{:?} random vs gguf-py", job.t);
        total += if job.t == GgmlType::F16 {
            // numpy's half → single conversion leaves a signalling NaN
            // signalling; ggml (and tessera) quiet it, keeping the payload.
            let quieted =
                |ours: u32, py: u32| f32::from_bits(py).is_nan() && ours == py | 0x0040_0000;
            assert_bits_equal_except(&what, &ours(job.t, job.bytes), golden, quieted)
        } else {
            assert_same_bits(&what, &ours(job.t, job.bytes), golden)
        };
    }
    eprintln!("random blocks: {total} values equal gguf-py's");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn ggml_quantized_synthetic_tensors_match_ggml() {
    let Some(harness) = harness() else { return };
    let dir = scratch("synthetic");
    let (rows, n_per_row) = (24, 1024);
    let values = synthetic_f32(rows, n_per_row, 0x5eed);
    let data: Vec<(GgmlType, Vec<u8>)> = TYPES
        .iter()
        .map(|&t| (t, ggml_quantize(harness, &dir, t, &values, n_per_row)))
        .collect();
    let jobs: Vec<Job> = data.iter().map(|(t, b)| Job { t: *t, bytes: b }).collect();
    let golden = ggml_golden(harness, &dir, &jobs);
    let mut total = 0;
    for (job, golden) in jobs.iter().zip(&golden) {
        let mine = ours(job.t, job.bytes);
        total += assert_same_bits(
            &format!("{:?} ggml-quantized vs ggml", job.t),
            &mine,
            golden,
        );
        // A sanity check that the data is real weights, not noise: the
        // dequantized rows correlate with the input.
        if ![
            GgmlType::IQ1_S,
            GgmlType::IQ1_M,
            GgmlType::TQ1_0,
            GgmlType::TQ2_0,
        ]
        .contains(&job.t)
        {
            let row = &values[5 * n_per_row..6 * n_per_row];
            let got = &mine[5 * n_per_row..6 * n_per_row];
            let dot: f64 = row
                .iter()
                .zip(got)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            let (na, nb): (f64, f64) = (
                row.iter().map(|a| f64::from(*a).powi(2)).sum(),
                got.iter().map(|b| f64::from(*b).powi(2)).sum(),
            );
            assert!(
                dot / (na * nb).sqrt() > 0.8,
                "{:?}: dequantized row does not resemble the input",
                job.t
            );
        }
    }
    eprintln!(
        "ggml-quantized synthetic tensors: {total} values of {} types equal ggml's",
        jobs.len()
    );
    std::fs::remove_dir_all(dir).ok();
}

/// The part of a tensor compared: all of it if small, else its first
/// 64 KiB and last 16 KiB of whole blocks.
fn sample(t: GgmlType, data: &[u8]) -> Vec<u8> {
    let ts = t.type_size() as usize;
    let (head, tail) = ((64 << 10) / ts * ts, (16 << 10) / ts * ts);
    if data.len() <= head + tail {
        data.to_vec()
    } else {
        [&data[..head], &data[data.len() - tail..]].concat()
    }
}

fn real_model_matches(name: &str) {
    let Some(path) = env::real_model(name) else {
        return;
    };
    let Some(harness) = harness() else { return };
    let python = env::python_with_gguf();
    let model = GgufModel::open(&path).unwrap();
    let dir = scratch(name);
    let data: Vec<(String, GgmlType, Vec<u8>)> = model
        .tensors()
        .map(|t| {
            (
                t.info.name.clone(),
                t.info.ggml_type,
                sample(t.info.ggml_type, model.tensor_data(t)),
            )
        })
        .collect();
    let jobs: Vec<Job> = data
        .iter()
        .map(|(_, t, b)| Job { t: *t, bytes: b })
        .collect();
    let golden = ggml_golden(harness, &dir, &jobs);
    let py = python.map(|p| gguf_py_golden(&p, &dir, &jobs));
    let mut total = 0;
    let mut types = std::collections::BTreeMap::new();
    for (i, ((tensor, t, _), golden)) in data.iter().zip(&golden).enumerate() {
        let mine = ours(*t, jobs[i].bytes);
        total += assert_same_bits(&format!("{name} {tensor} ({t:?}) vs ggml"), &mine, golden);
        if let Some(py) = &py {
            let g = py[i]
                .as_ref()
                .unwrap_or_else(|| panic!("gguf-py lacks {t:?}"));
            assert_same_bits(&format!("{name} {tensor} ({t:?}) vs gguf-py"), &mine, g);
        }
        *types.entry(t.name()).or_insert(0usize) += mine.len();
    }
    let also = if py.is_some() { " and gguf-py's" } else { "" };
    eprintln!(
        "{name}: {total} values of {} tensors equal ggml's{also} ({types:?})",
        data.len()
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn smollm2_tensors_match_ggml() {
    real_model_matches(env::SMOLLM2);
}

#[test]
fn gemma3_tensors_match_ggml() {
    real_model_matches(env::GEMMA3);
}

#[test]
fn q8_1_round_trips_ggml_reference_quantizer() {
    let Some(harness) = harness() else { return };
    let dir = scratch("q8_1");
    let values = synthetic_f32(4, 256, 7);
    let q = ggml_quantize(harness, &dir, GgmlType::Q8_1, &values, 256);
    let got = ours(GgmlType::Q8_1, &q);
    for (block, (x, y)) in q
        .chunks_exact(36)
        .zip(values.chunks_exact(32).zip(got.chunks_exact(32)))
    {
        let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
        for (a, b) in x.iter().zip(y) {
            // d is rounded to f16 after quantizing with the f32 scale: allow a little more than d / 2.
            assert!(
                (a - b).abs() <= 0.51 * d + 1e-30,
                "Q8_1: {a} came back as {b} (d = {d})"
            );
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn partial_blocks_are_a_shape_error() {
    for &t in TYPES {
        let (bs, ts) = (t.block_size() as usize, t.type_size() as usize);
        let bytes = vec![0u8; 2 * ts];
        let mut out = vec![0f32; 2 * bs];
        assert_eq!(dequantize(t, &bytes, &mut out), Ok(()), "{t:?}");
        let err = dequantize(t, &bytes[..2 * ts - 1], &mut out).unwrap_err();
        assert!(
            matches!(err, QuantError::Shape { ggml_type, .. } if ggml_type == t),
            "{t:?}: {err:?}"
        );
        let err = dequantize(t, &bytes, &mut out[..2 * bs - 1]).unwrap_err();
        assert!(matches!(err, QuantError::Shape { .. }), "{t:?}: {err:?}");
        assert!(
            out.iter().all(|&v| v == 0.0),
            "{t:?}: zero blocks give zeros"
        );
    }
}

#[test]
fn unsupported_types_are_an_error() {
    for t in [
        GgmlType::NVFP4,
        GgmlType::Q1_0,
        GgmlType::I8,
        GgmlType::I32,
        GgmlType::F64,
    ] {
        let bytes = vec![0u8; t.type_size() as usize];
        let mut out = vec![0f32; t.block_size() as usize];
        assert_eq!(
            dequantize(t, &bytes, &mut out),
            Err(QuantError::Unsupported {
                ggml_type: t,
                op: "dequantize"
            })
        );
        let msg = dequantize(t, &bytes, &mut out).unwrap_err().to_string();
        assert!(
            msg.contains(t.name()) && msg.contains("dequantize"),
            "{msg}"
        );
    }
    for &t in TYPES {
        assert!(
            tessera_quant::info(t).to_f32.is_some(),
            "{t:?} is not registered"
        );
    }
}

/// Test-data helpers on top of the shared generator.
trait RngExt {
    /// A random finite half float (any sign, exponent and mantissa, subnormals included).
    fn finite_f16(&mut self) -> [u8; 2];
}

impl RngExt for Rng {
    fn finite_f16(&mut self) -> [u8; 2] {
        loop {
            let h = self.next_u64() as u16;
            if h & 0x7c00 != 0x7c00 {
                return h.to_le_bytes();
            }
        }
    }
}
