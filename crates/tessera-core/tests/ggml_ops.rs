//! The CPU ops against ggml-cpu itself, bit for bit: scripts/ggml-ops-harness.c
//! builds each op as a one-node ggml graph (the way llama.cpp's graph builder
//! does), computes it with the reference llama.cpp build on the same thread
//! count as tessera's pool, and every f32 of tessera's output must have the
//! same bits. Shapes are those of real models (SmolLM2: 9 heads / 3 KV heads
//! of 64; Gemma 3 270M: 4 / 1 of 256 with a 512 window; Qwen3 q/k norms) and
//! odd ones. Attention covers ggml's three paths: one chunk, split-KV decode
//! (512+ cells) and tiled prefill (64+ tokens).
//!
//! Skipped when the reference build (scripts' `llama-ref.sh`, `LLAMA_BIN`) or
//! a C compiler is missing; `TESSERA_STRICT=1` makes that a failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use half::f16;
use tessera_core::backend::cpu::ops::{self, AttnParams, KvType, KvView};
use tessera_quant::pool::ThreadPool;
use tessera_quant::GgmlType;
use tessera_testkit::cref;
use tessera_testkit::rng::SplitMix64;

/// The compiled harness, or `None` (after `env::missing`).
fn harness() -> Option<&'static Path> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        cref::compile_harness(
            "scripts/ggml-ops-harness.c",
            &["ggml", "ggml-base", "ggml-cpu", "m"],
        )
    })
    .as_deref()
}

/// Runs the harness op with the input files `inputs` (a.bin, b.bin, ...) on
/// `n_threads` threads and returns its f32 output.
fn ggml(op: &str, n_threads: usize, args: &[String], inputs: &[&[u8]]) -> Vec<f32> {
    let bin = harness().expect("checked by the caller");
    const NAMES: [&str; 6] = ["a.bin", "b.bin", "c.bin", "d.bin", "e.bin", "f.bin"];
    assert!(inputs.len() <= NAMES.len(), "{op}: too many inputs");
    let files: Vec<(&str, &[u8])> = NAMES.into_iter().zip(inputs.iter().copied()).collect();
    let mut cmd = Command::new(bin);
    // The inputs and out.f32 are in the harness's working directory.
    cmd.arg(op).arg(n_threads.to_string()).arg(".").args(args);
    let dir = cref::run_harness(cmd, &files);
    dir.read("out.f32")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn f32_bytes(x: &[f32]) -> Vec<u8> {
    x.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn normals(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut r = SplitMix64::new(seed);
    (0..n).map(|_| r.normal() * scale).collect()
}

/// Requires bit equality; reports the first differences.
#[track_caller]
fn assert_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let bad: Vec<usize> = (0..got.len())
        .filter(|&i| got[i].to_bits() != want[i].to_bits())
        .collect();
    if let Some(&i) = bad.first() {
        let worst = bad
            .iter()
            .map(|&i| ((got[i] - want[i]) / want[i].abs().max(1e-30)).abs())
            .fold(0f32, f32::max);
        panic!(
            "{what}: {} of {} values differ (worst rel {worst:.2e}); first at {i}: tessera {:e} ({:#010x}) vs ggml {:e} ({:#010x})",
            bad.len(),
            got.len(),
            got[i],
            got[i].to_bits(),
            want[i],
            want[i].to_bits()
        );
    }
}

/// One attention case: `n_kv` valid cells of a cache whose view (llama.cpp's
/// padded n_kv) has `kv_cells`; the queries are the last `n_tokens` positions.
struct Attn {
    name: &'static str,
    n_tokens: usize,
    n_head: usize,
    n_kv_head: usize,
    hd: usize,
    n_kv: usize,
    kv_cells: usize,
    window: Option<usize>,
    softcap: f32,
    sinks: bool,
    kv: KvType,
}

impl Attn {
    fn run(&self, n_threads: usize, seed: u64) {
        let (nt, nh, nkh, hd) = (self.n_tokens, self.n_head, self.n_kv_head, self.hd);
        let row = nkh * hd;
        let row_bytes = self.kv.bytes(row).unwrap();
        let mut k = vec![0u8; self.kv_cells * row_bytes];
        let mut v = vec![0u8; self.kv_cells * row_bytes];
        let (kf, vf) = (
            normals(seed, self.kv_cells * row, 1.0),
            normals(seed + 1, self.kv_cells * row, 1.0),
        );
        ops::kv_store(&kf, row, &mut k, self.kv, row_bytes, 0).unwrap();
        ops::kv_store(&vf, row, &mut v, self.kv, row_bytes, 0).unwrap();
        // Large enough queries for a peaked softmax, as in real models.
        let q = normals(seed + 2, nt * nh * hd, 2.0);
        let q_pos: Vec<i32> = (0..nt).map(|t| (self.n_kv - nt + t) as i32).collect();
        let sinks = normals(seed + 3, nh, 1.0);
        let scale = 1.0 / (hd as f32).sqrt();
        let p = AttnParams {
            n_tokens: nt,
            n_head: nh,
            n_kv_head: nkh,
            head_dim: hd,
            n_kv: self.n_kv,
            kv_cells: self.kv_cells,
            q_pos: &q_pos,
            causal: true,
            window: self.window,
            scale,
            softcap: self.softcap,
            sinks: self.sinks.then_some(&sinks[..]),
        };
        let mut mask = Vec::with_capacity(nt * self.kv_cells * 2);
        for &qp in &q_pos {
            for j in 0..self.kv_cells {
                let d = i64::from(qp) - j as i64;
                let vis = j < self.n_kv && d >= 0 && self.window.is_none_or(|w| d < w as i64);
                let m = if vis { 0.0 } else { f32::NEG_INFINITY };
                mask.extend(f16::from_f32(m).to_le_bytes());
            }
        }
        let ty = self.kv.ggml_type() as u32;
        let args: Vec<String> = [
            hd.to_string(),
            nt.to_string(),
            nh.to_string(),
            nkh.to_string(),
            self.kv_cells.to_string(),
            ty.to_string(),
            ty.to_string(),
            format!("{:e}", scale),
            format!("{:e}", self.softcap),
            u8::from(self.sinks).to_string(),
        ]
        .to_vec();
        let want = ggml(
            "fattn",
            n_threads,
            &args,
            &[&f32_bytes(&q), &k, &v, &mask, &f32_bytes(&sinks)],
        );
        let view = |data| KvView {
            data,
            dtype: self.kv,
            row_stride_bytes: row_bytes,
            n_kv_head: nkh,
            head_dim: hd,
        };
        let pool = ThreadPool::new(n_threads);
        let mut got = vec![f32::NAN; nt * nh * hd];
        ops::attention(&pool, &q, view(&k), view(&v), &mut got, &p).unwrap();
        assert_bits(&format!("{} ({n_threads} threads)", self.name), &got, &want);
    }
}

fn smollm2(name: &'static str, n_tokens: usize, n_kv: usize) -> Attn {
    Attn {
        name,
        n_tokens,
        n_head: 9,
        n_kv_head: 3,
        hd: 64,
        n_kv,
        kv_cells: llama_cells(n_kv, 8192),
        window: None,
        softcap: 0.0,
        sinks: false,
        kv: KvType::F16,
    }
}

fn gemma3(name: &'static str, n_tokens: usize, n_kv: usize) -> Attn {
    Attn {
        n_head: 4,
        n_kv_head: 1,
        hd: 256,
        window: Some(512),
        ..smollm2(name, n_tokens, n_kv)
    }
}

/// llama.cpp's padded n_kv (llama-kv-cache.cpp `get_n_kv`).
fn llama_cells(n_kv: usize, n_ctx: usize) -> usize {
    ops::attention::llama_kv_cells(n_kv, n_ctx)
}

#[test]
fn attention_one_chunk_matches_ggml() {
    if harness().is_none() {
        return;
    }
    for nth in [1, 2] {
        smollm2("smollm2 decode 5", 1, 5).run(nth, 10);
        smollm2("smollm2 decode 300", 1, 300).run(nth, 11);
        smollm2("smollm2 prefill 7 at 40", 7, 47).run(nth, 12);
        gemma3("gemma3 decode 200", 1, 200).run(nth, 13);
        gemma3("gemma3 prefill 63", 63, 63).run(nth, 14);
        Attn {
            softcap: 30.0,
            sinks: true,
            ..smollm2("softcap + sinks", 3, 100)
        }
        .run(nth, 15);
        Attn {
            hd: 40,
            ..smollm2("head_dim 40", 2, 33)
        }
        .run(nth, 16);
        Attn {
            kv: KvType::Q8_0,
            ..smollm2("q8_0 cache", 5, 90)
        }
        .run(nth, 17);
        Attn {
            kv: KvType::Q8_0,
            ..smollm2("q8_0 cache decode 700", 1, 700)
        }
        .run(nth, 18);
    }
}

#[test]
fn attention_split_kv_decode_matches_ggml() {
    if harness().is_none() {
        return;
    }
    for nth in [1, 2, 3] {
        smollm2("smollm2 decode 512", 1, 512).run(nth, 20);
        smollm2("smollm2 decode 700", 1, 700).run(nth, 21);
        smollm2("smollm2 decode 2000", 1, 2000).run(nth, 22);
        gemma3("gemma3 decode 900 (window)", 1, 900).run(nth, 23);
        Attn {
            sinks: true,
            softcap: 20.0,
            ..smollm2("split + sinks + softcap", 1, 600)
        }
        .run(nth, 24);
        Attn {
            kv_cells: 700,
            ..smollm2("unpadded 700 cells", 1, 650)
        }
        .run(nth, 25);
    }
}

#[test]
fn attention_tiled_prefill_matches_ggml() {
    if harness().is_none() {
        return;
    }
    for nth in [1, 2] {
        smollm2("smollm2 prefill 64", 64, 64).run(nth, 30);
        smollm2("smollm2 prefill 100 at 200", 100, 300).run(nth, 31);
        gemma3("gemma3 prefill 130 at 500 (window)", 130, 630).run(nth, 32);
        Attn {
            sinks: true,
            softcap: 20.0,
            hd: 72,
            ..smollm2("tiled + sinks + softcap, head_dim 72", 70, 90)
        }
        .run(nth, 33);
    }
}

/// Runs a row-wise op through tessera (`f`) and ggml and compares bits.
fn check_op(
    op: &str,
    args: &[String],
    inputs: &[&[u8]],
    f: impl Fn(&ThreadPool, &mut [f32]),
    n_out: usize,
) {
    for nth in [1, 2] {
        let want = ggml(op, nth, args, inputs);
        let mut got = vec![f32::NAN; n_out];
        f(&ThreadPool::new(nth), &mut got);
        assert_bits(&format!("{op} {args:?} ({nth} threads)"), &got, &want);
    }
}

fn s(v: impl ToString) -> String {
    v.to_string()
}

#[test]
fn norms_match_ggml() {
    if harness().is_none() {
        return;
    }
    // (group, rows): SmolLM2 rows, Gemma 3 / Qwen3 q/k heads, odd.
    for (g, r) in [(576, 5), (64, 9 * 3), (256, 4 * 7), (128, 16 * 2), (37, 3)] {
        let x = normals(40 + g as u64, g * r, 3.0);
        let w = normals(41, g, 1.0);
        for (eps, has_w) in [(1e-5f32, true), (1e-6, false)] {
            check_op(
                "rms_norm",
                &[s(g), s(r), format!("{eps:e}"), s(u8::from(has_w))],
                &[&f32_bytes(&x), &f32_bytes(&w)],
                |pool, out| ops::rms_norm(pool, &x, out, g, eps, has_w.then_some(&w[..])).unwrap(),
                g * r,
            );
        }
        check_op(
            "norm",
            &[s(g), s(r), s(1e-5)],
            &[&f32_bytes(&x)],
            |pool, out| ops::layer_norm(pool, &x, out, g, 1e-5, None, None).unwrap(),
            g * r,
        );
    }
}

#[test]
fn unary_and_glu_match_ggml() {
    if harness().is_none() {
        return;
    }
    type Unary = fn(&ThreadPool, &[f32], &mut [f32]) -> Result<(), ops::OpError>;
    type Glu = fn(&ThreadPool, &[f32], &[f32], &mut [f32]) -> Result<(), ops::OpError>;
    let unary: [(&str, Unary); 4] = [
        ("silu", ops::silu),
        ("gelu", ops::gelu),
        ("gelu_erf", ops::gelu_erf),
        ("tanh", ops::tanh),
    ];
    let glu: [(&str, Glu); 2] = [("swiglu", ops::swiglu), ("geglu", ops::geglu)];
    // (cols, rows): SmolLM2 FFN 1536, Gemma 3 270M FFN 2048, odd. tessera
    // takes the data flat, ggml groups by 8 from each row's start: the same
    // when rows are a multiple of 8 long or there is one row.
    for (c, r) in [(1536, 3), (2048, 2), (64, 5), (13, 1)] {
        let x = normals(50 + c as u64, c * r, 4.0);
        let u = normals(51, c * r, 1.0);
        for (op, f) in unary {
            check_op(
                op,
                &[s(c), s(r)],
                &[&f32_bytes(&x)],
                |p, o| f(p, &x, o).unwrap(),
                c * r,
            );
        }
        for (op, f) in glu {
            check_op(
                op,
                &[s(c), s(r)],
                &[&f32_bytes(&x), &f32_bytes(&u)],
                |p, o| f(p, &x, &u, o).unwrap(),
                c * r,
            );
        }
    }
}

#[test]
fn binary_scale_softmax_rows_match_ggml() {
    if harness().is_none() {
        return;
    }
    for (c, r) in [(576, 4), (13, 3)] {
        let x = normals(60, c * r, 2.0);
        let y = normals(61, c * r, 2.0);
        for brows in [r, 1] {
            let yb = &y[..c * brows];
            check_op(
                "add",
                &[s(c), s(r), s(brows)],
                &[&f32_bytes(&x), &f32_bytes(yb)],
                |p, o| ops::add(p, &x, yb, o).unwrap(),
                c * r,
            );
            check_op(
                "mul",
                &[s(c), s(r), s(brows)],
                &[&f32_bytes(&x), &f32_bytes(yb)],
                |p, o| ops::mul(p, &x, yb, o).unwrap(),
                c * r,
            );
        }
        check_op(
            "scale",
            &[s(c), s(r), s(0.125)],
            &[&f32_bytes(&x)],
            |p, o| ops::scale(p, &x, 0.125, o).unwrap(),
            c * r,
        );
        let mask: Vec<f32> = (0..c * r)
            .map(|i| if i % 7 == 3 { f32::NEG_INFINITY } else { 0.0 })
            .collect();
        for mrows in [0, r] {
            let m = &mask[..c * mrows];
            check_op(
                "soft_max",
                &[s(c), s(r), s(0.3), s(mrows)],
                &[&f32_bytes(&x), &f32_bytes(m)],
                |p, o| ops::softmax(p, &x, o, c, 0.3, (mrows > 0).then_some(m)).unwrap(),
                c * r,
            );
        }
    }
    // get_rows from F32, F16 and Q8_0 tables.
    let (c, n) = (64, 10);
    let w = normals(62, c * n, 1.0);
    let ids: Vec<u32> = vec![3, 0, 9, 3];
    let id_bytes: Vec<u8> = ids.iter().flat_map(|&i| (i as i32).to_le_bytes()).collect();
    let f16s: Vec<u8> = w
        .iter()
        .flat_map(|&v| f16::from_f32(v).to_le_bytes())
        .collect();
    let mut q8 = vec![0u8; KvType::Q8_0.bytes(c * n).unwrap()];
    KvType::Q8_0.from_f32(&w, &mut q8);
    for (t, data) in [
        (GgmlType::F32, f32_bytes(&w)),
        (GgmlType::F16, f16s),
        (GgmlType::Q8_0, q8),
    ] {
        check_op(
            "get_rows",
            &[s(t as u32), s(c), s(n), s(ids.len())],
            &[&data, &id_bytes],
            |_, o| ops::get_rows(t, &data, c, &ids, o).unwrap(),
            c * ids.len(),
        );
    }
}
