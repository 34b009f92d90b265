//! The op harness: the ops of the CUDA backend on `cuda:0` (or
//! `TESSERA_CUDA_DEVICE`) on small graphs with odd and aligned shapes,
//! compared by normalised mean squared error `Σ(gpu − ref)² / Σ ref²`:
//!
//! - products (`matmul`, `mul_mat_heads`, `mul_mat_id`) against an f64
//!   product of the dequantized weights: the kernels decode weights
//!   exactly (tests/dequant_host.rs) and keep activations in f32, so only
//!   the order of the f32 sums is left (`NMSE_EXACT_PRODUCT`); embeddings
//!   against the dequantized rows, exactly;
//! - every other op against the CPU backend, with the tolerances the wgpu
//!   backend's harness measured for the same algorithms (these kernels are
//!   ports of its shaders).
//!
//! **Never run**: written without a GPU. Without a CUDA device every test
//! prints "no CUDA device: …" and passes, unless `TESSERA_REQUIRE_CUDA=1`,
//! which makes that a failure. The tolerances are the wgpu ones, not
//! measured on CUDA: the first run on a GPU should confirm or correct them
//! (with a reason), never loosen them to get green.

mod common;

use std::sync::{Arc, OnceLock};

use common::*;
use tessera_core::backend::cpu::CpuBackend;
use tessera_core::backend::Backend;
use tessera_core::graph::{AttnCfg, Glu, Op, RopeCfg, TensorId, Unary};
use tessera_core::kv::{KvShape, KvType};
use tessera_cuda::CudaBackend;
use tessera_gguf::GgmlType;

// ---- Devices ------------------------------------------------------------------

struct Devices {
    cpu: Arc<dyn Backend>,
    gpu: Arc<dyn Backend>,
}

/// The CPU and the CUDA device, or `None` after saying why there is none.
fn devices() -> Option<&'static Devices> {
    static D: OnceLock<Option<Devices>> = OnceLock::new();
    D.get_or_init(|| {
        let require = std::env::var("TESSERA_REQUIRE_CUDA").is_ok_and(|v| v == "1");
        let name = match tessera_cuda::probe() {
            Ok(all) => std::env::var("TESSERA_CUDA_DEVICE").unwrap_or_else(|_| all[0].name.clone()),
            Err(e) => {
                let msg = format!("tessera-cuda harness: {e}; skipping");
                assert!(!require, "{msg} — but TESSERA_REQUIRE_CUDA=1");
                stderr(&msg);
                return None;
            }
        };
        let gpu = CudaBackend::new(&name).unwrap_or_else(|e| panic!("cannot open {name}: {e}"));
        let d = &gpu.gpu().desc;
        stderr(&format!(
            "tessera-cuda harness on {name}: {} ({} MiB, {})",
            d.gpu,
            d.total_memory >> 20,
            gpu.gpu().arch
        ));
        Some(Devices {
            cpu: Arc::new(CpuBackend::new("cpu", 2)),
            gpu: Arc::new(gpu),
        })
    })
    .as_ref()
}

/// Runs `steps` on the CPU and on the GPU and checks every node output of
/// every step against the CPU's with `tol`.
fn compare_steps(
    d: &Devices,
    rep: &mut Report,
    label: &str,
    steps: Vec<(Case, Vec<i32>)>,
    kv: Option<KvShape>,
    tol: f64,
) {
    let cpu = run_steps(&d.cpu, &steps, kv);
    let gpu = run_steps(&d.gpu, &steps, kv);
    let worst = gpu
        .iter()
        .flatten()
        .zip(cpu.iter().flatten())
        .map(|(a, b)| nmse(a, b))
        .fold(0f64, f64::max);
    rep.check(label, worst, tol);
}

fn compare(d: &Devices, rep: &mut Report, label: &str, case: Case, pos: Vec<i32>, tol: f64) {
    compare_steps(d, rep, label, vec![(case, pos)], None, tol);
}

// ---- Products --------------------------------------------------------------------------

/// `(rows, cols, tokens)`: odd and aligned, more tokens than one block's 4.
fn matmul_shapes(t: GgmlType) -> Vec<(usize, usize, usize)> {
    match t.block_size() {
        1 => vec![(1, 5, 1), (11, 7, 5), (13, 13, 7), (64, 128, 13)],
        32 => vec![(5, 32, 1), (13, 96, 7), (11, 160, 13)],
        _ => vec![(5, 256, 1), (13, 768, 3), (64, 512, 7)],
    }
}

#[test]
fn matmul_vs_f64() {
    let Some(d) = devices() else { return };
    let mut rep = Report::default();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for t in TYPES {
        for (rows, cols, n) in matmul_shapes(t) {
            let mut c = Case::default();
            let wv = rng.vec(rows * cols, 1.0);
            let w = c.weight("w", t, [1, rows, cols], &wv);
            let xv = rng.vec(n * cols, 1.0);
            let want = product_f64(&decode(t, &encode(t, &wv), rows * cols), &xv, rows, cols);
            let x = c.input("x", n, cols, xv);
            c.node("y", Op::MatMul { w, x }, n, rows);
            let got = run_steps(&d.gpu, &[(c, vec![0; n])], None).remove(0);
            rep.check(
                &format!("matmul {t:?} w[{rows}, {cols}] x[{n}, {cols}]"),
                nmse(&got[0], &want),
                NMSE_EXACT_PRODUCT,
            );
        }
    }
    rep.finish("matmul_vs_f64");
}

#[test]
fn heads_and_experts_vs_f64() {
    let Some(d) = devices() else { return };
    let mut rep = Report::default();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for t in [
        GgmlType::F16,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::MXFP4,
    ] {
        let bs = t.block_size() as usize;
        let cols = if bs == 1 { 13 } else { bs * 2 };
        // Per-head products: 3 heads of [7, cols], 5 tokens.
        let (heads, rows, n) = (3, 7, 5);
        let mut c = Case::default();
        let wv = rng.vec(heads * rows * cols, 1.0);
        let wd = decode(t, &encode(t, &wv), wv.len());
        let w = c.weight("wh", t, [heads, rows, cols], &wv);
        let xv = rng.vec(n * heads * cols, 1.0);
        let mut want = vec![0f32; n * heads * rows];
        for h in 0..heads {
            let xh: Vec<f32> = (0..n)
                .flat_map(|i| xv[(i * heads + h) * cols..(i * heads + h + 1) * cols].to_vec())
                .collect();
            let yh = product_f64(&wd[h * rows * cols..(h + 1) * rows * cols], &xh, rows, cols);
            for i in 0..n {
                want[(i * heads + h) * rows..(i * heads + h + 1) * rows]
                    .copy_from_slice(&yh[i * rows..(i + 1) * rows]);
            }
        }
        let x = c.input("x", n, heads * cols, xv);
        c.node("y", Op::MatMulHeads { w, x }, n, heads * rows);
        let got = run_steps(&d.gpu, &[(c, vec![0; n])], None).remove(0);
        rep.check(
            &format!("mul_mat_heads {t:?} {heads} × [{rows}, {cols}], {n} tokens"),
            nmse(&got[0], &want),
            NMSE_EXACT_PRODUCT,
        );
        // Experts: 6 of [11, cols], 5 tokens × 3 slots, x per token and per slot.
        for per_slot in [false, true] {
            let (ne, rows, n, k) = (6, 11, 5, 3);
            let mut c = Case::default();
            let wv = rng.vec(ne * rows * cols, 1.0);
            let wd = decode(t, &encode(t, &wv), wv.len());
            let w = c.weight("experts", t, [ne, rows, cols], &wv);
            let xr = if per_slot { n * k } else { n };
            let xv = rng.vec(xr * cols, 1.0);
            let ids: Vec<usize> = (0..n * k).map(|i| (i * 5 + i / k) % ne).collect();
            let mut want = Vec::new();
            for (u, &e) in ids.iter().enumerate() {
                let r = if per_slot { u } else { u / k };
                let xu = &xv[r * cols..(r + 1) * cols];
                want.extend(product_f64(
                    &wd[e * rows * cols..(e + 1) * rows * cols],
                    xu,
                    rows,
                    cols,
                ));
            }
            let x = c.input("x", xr, cols, xv);
            let idv = ids.iter().map(|&e| f32::from_bits(e as u32)).collect();
            let ids = c.input("ids", n, k, idv);
            c.node("y", Op::MatMulId { w, x, ids }, n * k, rows);
            let got = run_steps(&d.gpu, &[(c, vec![0; n])], None).remove(0);
            rep.check(
                &format!(
                    "mul_mat_id {t:?} {ne} × [{rows}, {cols}], {n}×{k}, x per slot {per_slot}"
                ),
                nmse(&got[0], &want),
                NMSE_EXACT_PRODUCT,
            );
        }
    }
    rep.finish("heads_and_experts_vs_f64");
}

#[test]
fn embed_exact() {
    let Some(d) = devices() else { return };
    let mut rep = Report::default();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for t in TYPES {
        let bs = t.block_size() as usize;
        for (rows, cols) in [(7, if bs == 1 { 5 } else { bs }), (50, bs.max(4) * 3)] {
            let mut c = Case::default();
            let tv = rng.vec(rows * cols, 1.0);
            let td = decode(t, &encode(t, &tv), tv.len());
            let table = c.weight("token_embd", t, [1, rows, cols], &tv);
            c.tokens = vec![3, 0, (rows - 1) as u32, 3, 1];
            let n = c.tokens.len();
            let want: Vec<f32> = c
                .tokens
                .iter()
                .flat_map(|&id| td[id as usize * cols..(id as usize + 1) * cols].to_vec())
                .collect();
            c.node("emb", Op::Embed { table }, n, cols);
            let got = run_steps(&d.gpu, &[(c, vec![0; n])], None).remove(0);
            rep.check(
                &format!("embed {t:?} [{rows}, {cols}], {n} tokens"),
                nmse(&got[0], &want),
                NMSE_COPY,
            );
        }
    }
    rep.finish("embed_exact");
}

// ---- Other ops against the CPU ----------------------------------------------------------

#[test]
fn elementwise() {
    let Some(d) = devices() else { return };
    let mut rep = Report::default();
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    for (rows, cols) in [(1, 5), (7, 13), (3, 4096)] {
        let n = rows * cols;
        type Mk = fn(TensorId, TensorId) -> Op;
        let binaries: [(&str, Mk); 3] = [
            ("add", |a, b| Op::Add { a, b }),
            ("mul", |a, b| Op::Mul { a, b }),
            ("div", |a, b| Op::Div { a, b }),
        ];
        for (name, mk) in binaries {
            for row in [false, true] {
                let mut c = Case::default();
                let a = c.input("a", rows, cols, rng.vec(n, 2.0));
                let bv: Vec<f32> = rng
                    .vec(if row { cols } else { n }, 2.0)
                    .into_iter()
                    .map(|v| if v.abs() < 0.1 { v + 0.5 } else { v })
                    .collect();
                let b = c.input("b", if row { 1 } else { rows }, cols, bv);
                c.node("y", mk(a, b), rows, cols);
                let label = format!("{name} [{rows}, {cols}] row broadcast {row}");
                compare(d, &mut rep, &label, c, vec![0; rows], NMSE_COPY);
            }
        }
        for (name, op, tol) in [
            ("scale", None, NMSE_COPY),
            ("silu", Some(Unary::Silu), NMSE_TRANSCENDENTAL),
            ("gelu", Some(Unary::Gelu), NMSE_GELU_F16),
            ("gelu_erf", Some(Unary::GeluErf), NMSE_TRANSCENDENTAL),
            ("tanh", Some(Unary::Tanh), NMSE_TRANSCENDENTAL),
            ("sigmoid", Some(Unary::Sigmoid), NMSE_TRANSCENDENTAL),
        ] {
            let mut c = Case::default();
            let x = c.input("x", rows, cols, rng.vec(n, 6.0));
            let op = match op {
                Some(f) => Op::Unary { x, f },
                None => Op::Scale { x, s: 0.37 },
            };
            c.node("y", op, rows, cols);
            compare(
                d,
                &mut rep,
                &format!("{name} [{rows}, {cols}]"),
                c,
                vec![0; rows],
                tol,
            );
        }
        for (name, f, tol) in [
            ("swiglu", Glu::SwiGlu, NMSE_TRANSCENDENTAL),
            ("geglu", Glu::GeGlu, NMSE_GELU_F16),
            ("swiglu_oai", Glu::SwiGluOai, NMSE_TRANSCENDENTAL),
        ] {
            let mut c = Case::default();
            let gate = c.input("gate", rows, cols, rng.vec(n, 9.0));
            let up = c.input("up", rows, cols, rng.vec(n, 9.0));
            c.node("y", Op::Glu { gate, up, f }, rows, cols);
            compare(
                d,
                &mut rep,
                &format!("{name} [{rows}, {cols}]"),
                c,
                vec![0; rows],
                tol,
            );
        }
    }
    rep.finish("elementwise");
}

#[test]
fn norms_and_softmax() {
    let Some(d) = devices() else { return };
    let mut rep = Report::default();
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    for (rows, cols, group) in [(1, 5, 5), (7, 13, 13), (3, 1536, 1536), (5, 256, 64)] {
        let n = rows * cols;
        for with_w in [false, true] {
            let mut c = Case::default();
            let x = c.input("x", rows, cols, rng.vec(n, 3.0));
            let w = with_w.then(|| {
                c.weight(
                    "norm.weight",
                    GgmlType::F32,
                    [1, 1, group],
                    &rng.vec(group, 1.5),
                )
            });
            let eps = 1e-6;
            c.node("y", Op::RmsNorm { x, w, group, eps }, rows, cols);
            let label = format!("rms_norm [{rows}, {cols}] group {group} weight {with_w}");
            compare(d, &mut rep, &label, c, vec![0; rows], NMSE_F32);
            let mut c = Case::default();
            let xv = rng.vec(n, 3.0).iter().map(|v| v + 0.7).collect();
            let x = c.input("x", rows, cols, xv);
            let w = with_w.then(|| {
                c.weight(
                    "ln.weight",
                    GgmlType::F32,
                    [1, 1, group],
                    &rng.vec(group, 1.5),
                )
            });
            let b = with_w.then(|| {
                c.weight(
                    "ln.bias",
                    GgmlType::F32,
                    [1, 1, group],
                    &rng.vec(group, 0.5),
                )
            });
            let eps = 1e-5;
            c.node(
                "y",
                Op::LayerNorm {
                    x,
                    w,
                    b,
                    group,
                    eps,
                },
                rows,
                cols,
            );
            let label = format!("layer_norm [{rows}, {cols}] group {group} weight+bias {with_w}");
            compare(d, &mut rep, &label, c, vec![0; rows], NMSE_F32);
        }
    }
    for (rows, cols) in [(1, 5), (7, 13), (2, 32000)] {
        let mut c = Case::default();
        let x = c.input("x", rows, cols, rng.vec(rows * cols, 8.0));
        c.node("p", Op::Softmax { x }, rows, cols);
        let label = format!("softmax [{rows}, {cols}]");
        compare(d, &mut rep, &label, c, vec![0; rows], NMSE_TRANSCENDENTAL);
    }
    rep.finish("norms_and_softmax");
}

#[test]
fn rope() {
    let Some(d) = devices() else { return };
    let mut rep = Report::default();
    let mut rng = Rng(0x4f1b_bcdc_bfa5_3e0b);
    let base = RopeCfg {
        n_rot: 64,
        neox: false,
        freq_base: 10000.0,
        freq_scale: 1.0,
        ext_factor: 0.0,
        attn_factor: 1.0,
        beta_fast: 32.0,
        beta_slow: 1.0,
        n_ctx_orig: 4096,
        freq_factors: None,
    };
    let neox = RopeCfg {
        n_rot: 128,
        neox: true,
        freq_base: 1e6,
        ..base
    };
    let partial = RopeCfg {
        n_rot: 32,
        neox: true,
        ..base
    };
    let yarn = RopeCfg {
        freq_scale: 0.25,
        ext_factor: 1.0,
        n_ctx_orig: 2048,
        neox: true,
        ..base
    };
    let variants = [
        ("normal", 4, 64, base, false),
        ("neox", 3, 128, neox, false),
        ("neox partial", 5, 96, partial, false),
        ("freq factors", 2, 64, base, true),
        ("yarn", 3, 64, yarn, false),
    ];
    for (name, n_heads, head_dim, cfg, ff) in variants {
        for pos in [
            vec![0, 1, 2, 3, 4],
            vec![7],
            vec![1000, 1001, 4095, 3000, 12],
        ] {
            let n = pos.len();
            let width = n_heads * head_dim;
            let mut c = Case::default();
            let x = c.input("x", n, width, rng.vec(n * width, 2.0));
            let mut cfg = cfg;
            if ff {
                let f: Vec<f32> = (0..cfg.n_rot / 2).map(|i| 1.0 + i as f32 * 0.37).collect();
                cfg.freq_factors =
                    Some(c.weight("rope_freqs.weight", GgmlType::F32, [1, 1, f.len()], &f));
            }
            let op = Op::Rope {
                x,
                n_heads,
                head_dim,
                cfg,
            };
            c.node("r", op, n, width);
            let label = format!(
                "rope {name} {n_heads}×{head_dim} pos {:?}",
                &pos[..pos.len().min(3)]
            );
            compare(d, &mut rep, &label, c, pos, NMSE_ROPE);
        }
    }
    rep.finish("rope");
}

#[test]
fn routing_rows_heads() {
    let Some(d) = devices() else { return };
    let mut rep = Report::default();
    let mut rng = Rng(0x7a3c_91e5_0b2d_4f68);
    for (rows, cols) in [(1, 5), (7, 13)] {
        let mut c = Case::default();
        let x = c.input("x", rows, cols, rng.vec(rows * cols, 1.0));
        c.node("sel", Op::SelectRows { x }, rows, cols);
        compare(
            d,
            &mut rep,
            &format!("select_rows [{rows}, {cols}]"),
            c,
            vec![0; rows],
            NMSE_COPY,
        );
    }
    for (rows, cols, k) in [(1, 8, 2), (5, 13, 3), (7, 64, 8), (2, 256, 16)] {
        // The router of an MoE layer: softmax, top-k (with ties: values on
        // a coarse grid), the chosen weights, normalised; then the expert
        // outputs weighted and summed.
        let mut c = Case::default();
        let xv = rng
            .vec(rows * cols, 1.0)
            .iter()
            .map(|v| (v * 8.0).round() / 8.0)
            .collect();
        let x = c.input("logits", rows, cols, xv);
        let probs = c.node("probs", Op::Softmax { x }, rows, cols);
        let ids = c.node("ids", Op::TopK { x: probs, k }, rows, k);
        let w = c.node("w", Op::GatherCols { x: probs, ids }, rows, k);
        let wn = c.node(
            "wn",
            Op::NormSum {
                x: w,
                min_sum: 6.1e-5,
            },
            rows,
            k,
        );
        let e = c.input("experts_out", rows * k, 9, rng.vec(rows * k * 9, 1.0));
        c.node("moe", Op::MoeSum { x: e, w: wn }, rows, 9);
        let label = format!("router [{rows}, {cols}] top {k}, moe_sum");
        compare(d, &mut rep, &label, c, vec![0; rows], NMSE_TRANSCENDENTAL);
    }
    for (rows, groups, used) in [(3, 8, 3), (2, 4, 2)] {
        let cols = groups * 8;
        let mut c = Case::default();
        let x = c.input("scores", rows, cols, rng.vec(rows * cols, 1.0));
        let op = Op::GroupMask {
            x,
            n_groups: groups,
            n_used: used,
        };
        c.node("masked", op, rows, cols);
        let label = format!("group_mask [{rows}, {cols}] {groups} groups, {used} used");
        compare(d, &mut rep, &label, c, vec![0; rows], NMSE_COPY);
    }
    {
        let (n, k, ne, cols) = (3, 2, 4, 11);
        let mut c = Case::default();
        let x = c.input("x", n * k, cols, rng.vec(n * k * cols, 1.0));
        let b = c.weight(
            "exp_bias",
            GgmlType::F32,
            [1, ne, cols],
            &rng.vec(ne * cols, 1.0),
        );
        let idv = (0..n * k)
            .map(|i| f32::from_bits(((i * 3) % ne) as u32))
            .collect();
        let ids = c.input("ids", n, k, idv);
        c.node("xb", Op::AddId { x, b, ids }, n * k, cols);
        let s = c.input("s", n * k, 1, rng.vec(n * k, 2.0));
        c.node("xs", Op::MulRows { x, s }, n * k, cols);
        compare(d, &mut rep, "add_id, mul_rows", c, vec![0; n], NMSE_COPY);
    }
    {
        let (n, heads, hd) = (3, 4, 24);
        let mut c = Case::default();
        let x = c.input("x", n, heads * hd, rng.vec(n * heads * hd, 1.0));
        let a = c.node(
            "nope",
            Op::SliceHeads {
                x,
                n_heads: heads,
                head_dim: hd,
                start: 0,
                len: 16,
            },
            n,
            heads * 16,
        );
        let b = c.node(
            "pe",
            Op::SliceHeads {
                x,
                n_heads: heads,
                head_dim: hd,
                start: 16,
                len: 8,
            },
            n,
            heads * 8,
        );
        c.node(
            "cat",
            Op::ConcatHeads {
                a,
                b,
                n_heads: heads,
            },
            n,
            heads * hd,
        );
        compare(
            d,
            &mut rep,
            "slice_heads, concat_heads",
            c,
            vec![0; n],
            NMSE_COPY,
        );
    }
    rep.finish("routing_rows_heads");
}

#[test]
fn attention() {
    let Some(d) = devices() else { return };
    let mut rep = Report::default();
    let mut rng = Rng(0x6a09_e667_f3bc_c908);
    /// (label, heads, kv heads, head dim, value head dim, window, softcap, sinks)
    type AttnCase = (
        &'static str,
        usize,
        usize,
        usize,
        usize,
        Option<usize>,
        f32,
        bool,
    );
    let cases: [AttnCase; 5] = [
        ("mha", 4, 4, 64, 64, None, 0.0, false),
        ("gqa", 8, 2, 128, 128, None, 0.0, false),
        ("window", 4, 2, 64, 64, Some(5), 0.0, false),
        ("softcap+sinks", 4, 4, 64, 64, None, 50.0, true),
        ("mla-like", 2, 1, 192, 128, None, 0.0, false),
    ];
    for (label, n_head, n_head_kv, hd, hdv, window, softcap, sinks) in cases {
        for kv_type in [KvType::F16, KvType::Q8_0] {
            let (prompt, decode) = (9, 4);
            let sink_vals = rng.vec(n_head, 2.0);
            let mut steps = Vec::new();
            let mut p = 0usize;
            for n in std::iter::once(prompt).chain(std::iter::repeat_n(1, decode)) {
                let mut c = Case::default();
                let q = c.input("q", n, n_head * hd, rng.vec(n * n_head * hd, 2.0));
                let k = c.input("k", n, n_head_kv * hd, rng.vec(n * n_head_kv * hd, 2.0));
                let v = c.input("v", n, n_head_kv * hdv, rng.vec(n * n_head_kv * hdv, 2.0));
                let sinks = sinks
                    .then(|| c.weight("attn_sinks", GgmlType::F32, [1, 1, n_head], &sink_vals));
                let cfg = AttnCfg {
                    n_head,
                    n_head_kv,
                    head_dim: hd,
                    head_dim_v: hdv,
                    scale: 1.0 / (hd as f32).sqrt(),
                    softcap,
                    window,
                    sinks,
                };
                let op = Op::Attention {
                    q,
                    k,
                    v,
                    layer: 0,
                    cfg,
                };
                c.node("attn", op, n, n_head * hdv);
                steps.push((c, (p..p + n).map(|x| x as i32).collect()));
                p += n;
            }
            let kv = KvShape {
                n_ctx: 64,
                k_width: n_head_kv * hd,
                v_width: n_head_kv * hdv,
                k_type: kv_type,
                v_type: kv_type,
            };
            let tol = match kv_type {
                KvType::F16 => NMSE_ATTN_F16,
                KvType::Q8_0 => NMSE_ATTN_Q8,
            };
            let name = format!("attention {label} {kv_type:?} prompt {prompt} + {decode} steps");
            compare_steps(d, &mut rep, &name, steps, Some(kv), tol);
        }
    }
    rep.finish("attention");
}
