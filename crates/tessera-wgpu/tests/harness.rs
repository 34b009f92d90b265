//! The op harness: every op the wgpu backend supports, run on the wgpu
//! device and on the CPU backend (the reference) on small graphs, odd shapes
//! (5, 7, 11, 13 …) and aligned ones, compared by normalised mean squared
//! error `Σ(gpu − ref)² / Σ ref²` against a named tolerance per op and
//! weight type. Products round their activations as the CPU does (Q8_0,
//! Q8_1, Q8_K, f16, bf16 by weight type: `NMSE_PRODUCT`); a device opened
//! with products in f32 is also compared with an f64 product of the
//! dequantized weights (`NMSE_EXACT_PRODUCT`): the dequantization in the
//! shaders is exact, so only the summation order is left.
//!
//! The cases the CUDA backend runs too are built by
//! `tessera_testkit::gpu::cases` from the shapes listed here; the graphs,
//! the runs and the report are `tessera_testkit::gpu`'s.
//!
//! Without a wgpu adapter every test prints why and passes, unless
//! `TESSERA_REQUIRE_WGPU=1` is set (CI), which makes a missing adapter a
//! failure. `TESSERA_WGPU_DEVICE` picks the device (default: the first).
//! Every case runs twice when the device has subgroups: with them and with
//! the workgroup-memory fallback. The report (one line per case, and the
//! ops and types `supports` refuses) goes to stderr directly, so it shows
//! even when the test passes: `cargo test -p tessera-wgpu --release`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use tessera_core::backend::cpu::CpuBackend;
use tessera_core::backend::{Backend, HostSlice};
use tessera_core::graph::{AttnCfg, Glu, Op, RopeCfg, TensorId};
use tessera_core::kv::{KvShape, KvType};
use tessera_gguf::GgmlType;
use tessera_testkit::gpu::cases::{self, AttnCase, Bcast};
use tessera_testkit::gpu::{
    nmse, run_steps, skip, stderr, Case, Harness, KvSetup, Report, Rng, Tolerances,
};
use tessera_wgpu::{GpuOptions, WgpuBackend};

// ---- Tolerances (normalised MSE) ----------------------------------------

/// The figures of the cases compared with the CPU:
/// - `copy`: data movement (embedding rows of F32/F16/BF16, select, slice,
///   concat, gather): the values are copied, so they must match exactly;
/// - `f32`: f32 arithmetic in another order (sums, norms, softmax,
///   elementwise);
/// - `transcendental`: exp, tanh, erf, sin/cos: the shader's and libm's
///   last bits;
/// - `rope`: rope at positions up to a few thousand (sin/cos of large
///   angles);
/// - `gelu_f16`: GELU through ggml's f16 table: an input on an f16
///   rounding edge may round the other way, one f16 step of the output;
/// - `attn_f16`: attention over an F16 cache: below 64 query tokens both
///   round the query to f16 and accumulate V in f16 cell by cell, as
///   ggml-cpu does; a score or `exp` differing in the last bit flips some
///   of those f16 roundings (measured up to 1.7e-8, softcap 50 over 70
///   tokens);
/// - `attn_q8`: attention with a Q8_0 cache (both quantize the query the
///   same way).
const TOL: Tolerances = Tolerances {
    copy: 0.0,
    f32: 1e-10,
    transcendental: 1e-9,
    rope: 1e-9,
    gelu_f16: 1e-7,
    attn_f16: 1e-7,
    attn_q8: 1e-6,
};

/// A product in f32 (`cpu_activations: false`) against an f64 product of
/// the same dequantized weights: the dequantization is exact, only the f32
/// sums remain.
const NMSE_EXACT_PRODUCT: f64 = 1e-10;

/// A product against the CPU backend: the shaders round the activations
/// as the CPU does (f16, bf16, Q8_0/Q8_1, Q8_K by weight type) and
/// dequantize exactly, so only the order of the f32 sums differs
/// (measured up to 1.1e-13, on a row of 5 F32 values).
const NMSE_PRODUCT: f64 = 1e-12;

/// A whole decoder layer (seven Q8_0 products, rope, attention over an
/// F16 cache, SwiGLU) against the CPU, over a prompt and decode steps: the
/// attention's last-bit differences (the CPU accumulates V in f16) flip
/// some Q8_0 roundings of the next product's activations (measured 5.2e-5).
const NMSE_LAYER: f64 = 1e-3;

/// Embedding rows of a quantized table: dequantized exactly on both sides.
const NMSE_EMBED_QUANT: f64 = 0.0;

/// Activations of the harness's graphs: 64-byte aligned, 64-byte gaps.
const ALIGN: usize = 64;

// ---- Devices ------------------------------------------------------------------

struct Devices {
    /// The CPU and the device with and without subgroups (activations of
    /// products rounded as the CPU's).
    h: Harness,
    /// The device with products in f32 (`cpu_activations: false`), for
    /// the check against exact products.
    exact: (String, Arc<dyn Backend>),
}

/// The CPU and the wgpu device(s), or `None` (after saying why) when the
/// machine has no adapter and `TESSERA_REQUIRE_WGPU` is not set.
fn devices() -> Option<&'static Devices> {
    static D: OnceLock<Option<Devices>> = OnceLock::new();
    D.get_or_init(|| {
        let require = "TESSERA_REQUIRE_WGPU";
        let all = tessera_wgpu::devices();
        let name = std::env::var("TESSERA_WGPU_DEVICE")
            .ok()
            .or_else(|| all.first().map(|d| d.name.clone()));
        let Some(name) = name else {
            skip(
                require,
                "tessera-wgpu harness: no wgpu adapter on this machine \
                 (install a Vulkan driver, e.g. `apt-get install mesa-vulkan-drivers libvulkan1`); \
                 skipping",
            );
            return None;
        };
        let mut gpus: Vec<(String, Arc<dyn Backend>)> = Vec::new();
        // Products round their activations as the CPU's, so that each one
        // can be held to the CPU's numbers.
        let cpu_like = GpuOptions {
            cpu_activations: true,
            ..GpuOptions::default()
        };
        let main = match WgpuBackend::with_options(&name, cpu_like) {
            Ok(b) => b,
            Err(e) => {
                skip(
                    require,
                    &format!("tessera-wgpu harness: cannot open {name}: {e}; skipping"),
                );
                return None;
            }
        };
        let sg = main.gpu().subgroups;
        stderr(&format!(
            "tessera-wgpu harness on {name}: {} ({}), subgroups {sg}, f16 {}",
            main.gpu().desc.adapter,
            main.gpu().desc.driver,
            main.gpu().shader_f16
        ));
        gpus.push((
            format!("{name}{}", if sg { "+sg" } else { "" }),
            Arc::new(main),
        ));
        if sg {
            let opts = GpuOptions {
                subgroups: false,
                ..cpu_like
            };
            let b = WgpuBackend::with_options(&name, opts).expect("reopen without subgroups");
            gpus.push((format!("{name}-sg"), Arc::new(b)));
        }
        let opts = GpuOptions {
            cpu_activations: false,
            ..GpuOptions::default()
        };
        let exact = WgpuBackend::with_options(&name, opts).expect("reopen with f32 products");
        Some(Devices {
            h: Harness {
                cpu: Arc::new(CpuBackend::new("cpu", 2)),
                gpus,
                align: ALIGN,
            },
            exact: (format!("{name} f32 products"), Arc::new(exact)),
        })
    })
    .as_ref()
}

// ---- Matmul --------------------------------------------------------------------------

const MATMUL_TYPES: [GgmlType; 16] = tessera_wgpu::dequant::TYPES;

/// Shapes `(rows, cols, tokens)` for type `t`: odd ones and aligned ones.
fn matmul_shapes(t: GgmlType) -> Vec<(usize, usize, usize)> {
    let bs = t.block_size() as usize;
    if bs == 1 {
        vec![
            (1, 5, 1),
            (11, 7, 5),
            (13, 13, 7),
            (37, 64, 3),
            (64, 128, 13),
        ]
    } else if bs == 32 {
        vec![(5, 32, 1), (13, 96, 7), (64, 256, 3), (11, 160, 13)]
    } else {
        vec![(5, 256, 1), (13, 768, 3), (64, 512, 7)]
    }
}

#[test]
fn matmul() {
    let Some(d) = devices() else { return };
    let mut rep = Report::default();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for t in MATMUL_TYPES {
        for (rows, cols, n) in matmul_shapes(t) {
            let p = cases::matmul(&mut rng, t, rows, cols, n);
            let steps = [(p.case, vec![0; n])];
            let (name, b) = &d.exact;
            let o = run_steps(b, &steps, None, ALIGN).remove(0);
            rep.check(
                &format!("{} vs f64 [{name}]", p.label),
                nmse(&o[0], &p.want),
                NMSE_EXACT_PRODUCT,
            );
            d.h.compare_steps(&mut rep, &p.label, &steps, None, NMSE_PRODUCT);
        }
    }
    rep.finish("matmul");
}

#[test]
fn matmul_heads_and_id() {
    let Some(d) = devices() else { return };
    let mut rep = Report::default();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for t in [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::MXFP4,
    ] {
        let mut ps = vec![cases::mul_mat_heads(&mut rng, t)];
        for per_slot in [false, true] {
            ps.push(cases::mul_mat_id(&mut rng, t, per_slot));
        }
        for p in ps {
            d.h.compare(&mut rep, &p.label, p.case, vec![0; p.tokens], NMSE_PRODUCT);
        }
    }
    rep.finish("matmul_heads_and_id");
}

#[test]
fn embed() {
    let Some(d) = devices() else { return };
    let mut rep = Report::default();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for t in MATMUL_TYPES {
        for (rows, cols) in cases::embed_shapes(t) {
            let p = cases::embed(&mut rng, t, rows, cols);
            let tol = if t.block_size() == 1 {
                TOL.copy
            } else {
                NMSE_EMBED_QUANT
            };
            d.h.compare(&mut rep, &p.label, p.case, vec![0; p.tokens], tol);
        }
    }
    rep.finish("embed");
}

/// Tensors larger than a storage binding (lavapipe: 128 MiB) are bound in
/// windows of whole rows; the embedding and the product read them so.
#[test]
fn larger_than_a_binding() {
    let Some(d) = devices() else { return };
    let mut rep = Report::default();
    let (rows, cols) = (65_600, 1024);
    let mut rng = Rng(0x5851_f42d_4c95_7f2d);
    let mut c = Case::default();
    let wv = rng.vec(rows * cols, 1.0);
    let table = c.weight("token_embd", GgmlType::F16, [1, rows, cols], &wv);
    c.tokens = vec![0, 65_535, 65_599, 40_000, 1];
    let emb = c.node("emb", Op::Embed { table }, 5, cols);
    c.node("logits", Op::MatMul { w: table, x: emb }, 5, rows);
    stderr(&format!(
        "larger_than_a_binding: an F16 table of {} MiB",
        (rows * cols * 2) >> 20
    ));
    d.h.compare(
        &mut rep,
        &format!("embed + matmul F16 [{rows}, {cols}] (134 MB)"),
        c,
        vec![0; 5],
        NMSE_PRODUCT,
    );
    rep.finish("larger_than_a_binding");
}

/// The same windowed and chunked paths at a small scale: a device whose
/// weight bindings are capped at 2 KiB and weight buffers at 8 KiB, so
/// every weight here is bound in many windows and stored in overlapping
/// chunks.
#[test]
fn windows_and_chunks() {
    let Some(d) = devices() else { return };
    let name = d.h.gpus[0].0.trim_end_matches("+sg").to_string();
    let opts = GpuOptions {
        max_weight_binding: Some(2048),
        max_weight_buffer: Some(8192),
        cpu_activations: true,
        ..GpuOptions::default()
    };
    let small: Arc<dyn Backend> = Arc::new(WgpuBackend::with_options(&name, opts).expect("open"));
    // The weights below are stored in several chunks.
    let bytes = Arc::new(vec![0u8; 10_200]);
    let data = small
        .load_weight(
            "probe",
            GgmlType::Q8_0,
            HostSlice::new(bytes, |v: &Vec<u8>| &v[..]),
        )
        .expect("load");
    let chunks = match &data {
        tessera_core::backend::WeightData::Device(b) => b
            .downcast_ref::<tessera_wgpu::DeviceWeight>()
            .expect("device weight")
            .chunks
            .len(),
        _ => 0,
    };
    assert!(chunks >= 2, "{chunks} chunks");
    let capped = Harness {
        cpu: d.h.cpu.clone(),
        gpus: vec![(format!("{name} capped"), small)],
        align: ALIGN,
    };
    let mut rep = Report::default();
    let mut rng = Rng(0x1f83_d9ab_fb41_bd6b);
    // Embedding rows and a product with the same table (F32, 52-byte rows).
    let (rows, cols) = (300, 13);
    let mut c = Case::default();
    let table = c.weight(
        "token_embd",
        GgmlType::F32,
        [1, rows, cols],
        &rng.vec(rows * cols, 1.0),
    );
    c.tokens = vec![0, 299, 150, 77, 200, 1, 298];
    let e = c.node("emb", Op::Embed { table }, 7, cols);
    c.node("logits", Op::MatMul { w: table, x: e }, 7, rows);
    capped.compare(
        &mut rep,
        "embed + matmul F32 [300, 13] (15.6 KB)",
        c,
        vec![0; 7],
        TOL.f32,
    );
    // A quantized product (68-byte rows).
    let mut c = Case::default();
    let w = c.weight("w", GgmlType::Q8_0, [1, 150, 64], &rng.vec(150 * 64, 1.0));
    let x = c.input("x", 5, 64, rng.vec(5 * 64, 1.0));
    c.node("y", Op::MatMul { w, x }, 5, 150);
    capped.compare(
        &mut rep,
        "matmul Q8_0 [150, 64] (10.2 KB)",
        c,
        vec![0; 5],
        NMSE_PRODUCT,
    );
    // Experts whose stack spans chunks (experts cut across windows).
    let mut c = Case::default();
    let w = c.weight(
        "experts",
        GgmlType::F16,
        [8, 40, 16],
        &rng.vec(8 * 40 * 16, 1.0),
    );
    let x = c.input("x", 5, 16, rng.vec(5 * 16, 1.0));
    let idv: Vec<f32> = (0..10)
        .map(|i| f32::from_bits((i * 3 % 8) as u32))
        .collect();
    let ids = c.input("ids", 5, 2, idv);
    c.node("y", Op::MatMulId { w, x, ids }, 10, 40);
    capped.compare(
        &mut rep,
        "mul_mat_id F16 8 × [40, 16] (10.2 KB)",
        c,
        vec![0; 5],
        NMSE_PRODUCT,
    );
    rep.finish("windows_and_chunks");
}

// ---- Elementwise and norms ----------------------------------------------------------------

#[test]
fn elementwise() {
    let Some(d) = devices() else { return };
    let mut rep = Report::default();
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    for (rows, cols) in [(1, 5), (7, 13), (5, 64), (3, 4096)] {
        let b = [Bcast::Same, Bcast::Row, Bcast::Weight];
        d.h.run(&mut rep, cases::elementwise(&mut rng, rows, cols, &b), &TOL);
    }
    rep.finish("elementwise");
}

#[test]
fn norms_and_softmax() {
    let Some(d) = devices() else { return };
    let mut rep = Report::default();
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut checks = Vec::new();
    for (rows, cols, group) in [
        (1, 5, 5),
        (7, 13, 13),
        (5, 64, 64),
        (3, 1536, 1536),
        (5, 256, 64),
    ] {
        checks.extend(cases::norms(&mut rng, rows, cols, group));
    }
    for (rows, cols) in [(1, 5), (7, 13), (5, 64), (3, 1000), (2, 32000)] {
        checks.push(cases::softmax(&mut rng, rows, cols));
    }
    d.h.run(&mut rep, checks, &TOL);
    rep.finish("norms_and_softmax");
}

#[test]
fn rope() {
    let Some(d) = devices() else { return };
    let mut rep = Report::default();
    let mut rng = Rng(0x4f1b_bcdc_bfa5_3e0b);
    let mut checks = Vec::new();
    for r in cases::rope_variants() {
        for pos in [
            vec![0, 1, 2, 3, 4],
            vec![7],
            vec![1000, 1001, 1002, 4095, 3000, 12, 77],
        ] {
            checks.push(cases::rope(&mut rng, &r, &pos));
        }
    }
    d.h.run(&mut rep, checks, &TOL);
    rep.finish("rope");
}

// ---- Rows, routing, heads ---------------------------------------------------------------

#[test]
fn rows_routing_heads() {
    let Some(d) = devices() else { return };
    let mut rep = Report::default();
    let mut rng = Rng(0x7a3c_91e5_0b2d_4f68);
    let ids_of = |v: &[i32]| {
        v.iter()
            .map(|&i| f32::from_bits(i as u32))
            .collect::<Vec<f32>>()
    };
    // select_rows: the step's output rows (all of them, in the harness).
    let mut checks = Vec::new();
    for (rows, cols) in [(1, 5), (7, 13), (4, 64)] {
        checks.push(cases::select_rows(&mut rng, rows, cols));
    }
    for (rows, cols, k) in [(1, 8, 2), (5, 13, 3), (7, 64, 8), (3, 128, 6), (2, 256, 16)] {
        // top_k with ties (values on a coarse grid) and the routing helpers.
        checks.push(cases::router(&mut rng, rows, cols, k, None));
        // group_mask: groups of the columns.
        for (n_groups, n_used) in [(4, 2), (8, 3)] {
            if cols % n_groups != 0 || cols / n_groups < 2 {
                continue;
            }
            checks.push(cases::group_mask(&mut rng, rows, cols, n_groups, n_used));
        }
    }
    d.h.run(&mut rep, checks, &TOL);
    // MoE combination: add_id, moe_sum, mul_rows.
    for (n, k, cols, ne) in [(1, 2, 5, 4), (5, 3, 13, 6), (3, 8, 64, 16)] {
        let mut c = Case::default();
        let x = c.input("experts_out", n * k, cols, rng.vec(n * k * cols, 1.0));
        let idv: Vec<i32> = (0..n * k).map(|i| ((i * 7 + 3) % ne) as i32).collect();
        let ids = c.input("ids", n, k, ids_of(&idv));
        let b = c.weight(
            "exp_bias",
            GgmlType::F32,
            [1, ne, cols],
            &rng.vec(ne * cols, 1.0),
        );
        let xb = c.node("biased", Op::AddId { x, b, ids }, n * k, cols);
        let w = c.input("weights", n, k, rng.vec(n * k, 1.0));
        let s = c.node("sum", Op::MoeSum { x: xb, w }, n, cols);
        let g = c.input("gate", n, 1, rng.vec(n, 1.0));
        c.node("gated", Op::MulRows { x: s, s: g }, n, cols);
        d.h.compare(
            &mut rep,
            &format!("add_id → moe_sum → mul_rows n {n} k {k} cols {cols}"),
            c,
            vec![0; n],
            TOL.f32,
        );
    }
    // Heads: slice and concat.
    for (n, heads, hd, start, len) in [(1, 1, 5, 1, 3), (5, 3, 13, 0, 7), (3, 4, 64, 32, 32)] {
        let mut c = Case::default();
        let x = c.input("x", n, heads * hd, rng.vec(n * heads * hd, 1.0));
        let a = c.node(
            "slice",
            Op::SliceHeads {
                x,
                n_heads: heads,
                head_dim: hd,
                start,
                len,
            },
            n,
            heads * len,
        );
        let b = c.input("b", n, heads * 3, rng.vec(n * heads * 3, 1.0));
        c.node(
            "concat",
            Op::ConcatHeads {
                a,
                b,
                n_heads: heads,
            },
            n,
            heads * (len + 3),
        );
        d.h.compare(
            &mut rep,
            &format!(
                "slice_heads → concat_heads n {n} {heads}×{hd} [{start}..{}]",
                start + len
            ),
            c,
            vec![0; n],
            TOL.copy,
        );
    }
    rep.finish("rows_routing_heads");
}

// ---- Attention -----------------------------------------------------------------------------

#[test]
fn attention() {
    let Some(d) = devices() else { return };
    let mut rep = Report::default();
    let mut rng = Rng(0x6a09_e667_f3bc_c908);
    let base = AttnCase::BASE;
    let cases = [
        AttnCase {
            label: "mha",
            ..base
        },
        AttnCase {
            label: "gqa 8/2",
            n_head: 8,
            n_head_kv: 2,
            ..base
        },
        AttnCase {
            label: "gqa 6/3 head 128",
            n_head: 6,
            n_head_kv: 3,
            head_dim: 128,
            ..base
        },
        AttnCase {
            label: "odd head 40",
            n_head: 3,
            n_head_kv: 1,
            head_dim: 40,
            ..base
        },
        AttnCase {
            label: "window 5",
            window: Some(5),
            ..base
        },
        AttnCase {
            label: "softcap 50",
            softcap: 50.0,
            ..base
        },
        AttnCase {
            label: "sinks",
            sinks: true,
            n_head: 8,
            n_head_kv: 2,
            ..base
        },
        AttnCase {
            label: "sinks + window 4",
            sinks: true,
            window: Some(4),
            ..base
        },
        AttnCase {
            label: "q8_0 cache",
            kv: KvType::Q8_0,
            ..base
        },
        AttnCase {
            label: "mla-like k 576 v 512",
            n_head: 4,
            n_head_kv: 1,
            head_dim: 576,
            head_dim_v: 512,
            ..base
        },
        AttnCase {
            label: "mla-like q8_0 k 192 v 128",
            n_head: 2,
            n_head_kv: 1,
            head_dim: 192,
            head_dim_v: 128,
            kv: KvType::Q8_0,
            ..base
        },
        AttnCase {
            label: "q8_0 cache gqa head 96",
            kv: KvType::Q8_0,
            n_head: 6,
            n_head_kv: 2,
            head_dim: 96,
            ..base
        },
    ];
    let mut checks = Vec::new();
    for a in &cases {
        for (prompt, decode) in [(1, 2), (7, 3), (13, 2), (70, 2)] {
            checks.push(cases::attention(&mut rng, a, prompt, decode));
        }
    }
    d.h.run(&mut rep, checks, &TOL);
    rep.finish("attention");
}

// ---- A decode block in one segment ----------------------------------------------------------

/// A llama-style layer in one segment (norm, q/k/v products, rope,
/// attention, output product, residual, norm, SwiGLU FFN, residual), over a
/// prompt and decode steps: the dispatches of one encoder see each other's
/// results.
#[test]
fn decoder_layer_segment() {
    let Some(d) = devices() else { return };
    let mut rep = Report::default();
    let mut rng = Rng(0xbb67_ae85_84ca_a73b);
    let (n_embd, n_head, n_kv, hd, n_ff) = (128, 4, 2, 32, 192);
    let t = GgmlType::Q8_0;
    let wq = rng.vec(n_head * hd * n_embd, 0.2);
    let wk = rng.vec(n_kv * hd * n_embd, 0.2);
    let wv = rng.vec(n_kv * hd * n_embd, 0.2);
    let wo = rng.vec(n_embd * n_head * hd, 0.2);
    let wg = rng.vec(n_ff * n_embd, 0.2);
    let wu = rng.vec(n_ff * n_embd, 0.2);
    let wd = rng.vec(n_embd * n_ff, 0.2);
    let norm1 = rng.vec(n_embd, 1.0);
    let norm2 = rng.vec(n_embd, 1.0);
    let embd = rng.vec(50 * n_embd, 1.0);
    let mut steps = Vec::new();
    let mut p = 0;
    for n in [5usize, 1, 1] {
        let mut c = Case::default();
        let table = c.weight(
            "token_embd",
            GgmlType::Q4_K,
            [1, 50, n_embd * 2],
            &[embd.clone(), embd.clone()].concat(),
        );
        let w = |c: &mut Case, name: &str, rows: usize, cols: usize, v: &[f32]| {
            c.weight(name, t, [1, rows, cols], v)
        };
        let (q_w, k_w, v_w, o_w) = (
            w(&mut c, "wq", n_head * hd, n_embd, &wq),
            w(&mut c, "wk", n_kv * hd, n_embd, &wk),
            w(&mut c, "wv", n_kv * hd, n_embd, &wv),
            w(&mut c, "wo", n_embd, n_head * hd, &wo),
        );
        let (g_w, u_w, d_w) = (
            w(&mut c, "wg", n_ff, n_embd, &wg),
            w(&mut c, "wu", n_ff, n_embd, &wu),
            w(&mut c, "wd", n_embd, n_ff, &wd),
        );
        let n1 = c.weight("n1", GgmlType::F32, [1, 1, n_embd], &norm1);
        let n2 = c.weight("n2", GgmlType::F32, [1, 1, n_embd], &norm2);
        c.tokens = (0..n as u32).map(|i| (i * 7 + p as u32) % 50).collect();
        let e2 = c.node("embd2", Op::Embed { table }, n, n_embd * 2);
        let x = c.node(
            "x",
            Op::SliceHeads {
                x: e2,
                n_heads: 1,
                head_dim: n_embd * 2,
                start: 0,
                len: n_embd,
            },
            n,
            n_embd,
        );
        let h = c.node(
            "attn_norm",
            Op::RmsNorm {
                x,
                w: Some(n1),
                group: n_embd,
                eps: 1e-5,
            },
            n,
            n_embd,
        );
        let q = c.node("q", Op::MatMul { w: q_w, x: h }, n, n_head * hd);
        let k = c.node("k", Op::MatMul { w: k_w, x: h }, n, n_kv * hd);
        let v = c.node("v", Op::MatMul { w: v_w, x: h }, n, n_kv * hd);
        let rope = RopeCfg {
            n_rot: hd,
            neox: true,
            n_ctx_orig: 2048,
            ..cases::ROPE_BASE
        };
        let qr = c.node(
            "q_rope",
            Op::Rope {
                x: q,
                n_heads: n_head,
                head_dim: hd,
                cfg: rope,
            },
            n,
            n_head * hd,
        );
        let kr = c.node(
            "k_rope",
            Op::Rope {
                x: k,
                n_heads: n_kv,
                head_dim: hd,
                cfg: rope,
            },
            n,
            n_kv * hd,
        );
        let cfg = AttnCfg {
            n_head,
            n_head_kv: n_kv,
            head_dim: hd,
            head_dim_v: hd,
            scale: 1.0 / (hd as f32).sqrt(),
            softcap: 0.0,
            window: None,
            sinks: None,
        };
        let a = c.node(
            "attn",
            Op::Attention {
                q: qr,
                k: kr,
                v,
                layer: 0,
                cfg,
            },
            n,
            n_head * hd,
        );
        let o = c.node("attn_out", Op::MatMul { w: o_w, x: a }, n, n_embd);
        let r1 = c.node("res1", Op::Add { a: o, b: x }, n, n_embd);
        let h2 = c.node(
            "ffn_norm",
            Op::RmsNorm {
                x: r1,
                w: Some(n2),
                group: n_embd,
                eps: 1e-5,
            },
            n,
            n_embd,
        );
        let gt = c.node("gate", Op::MatMul { w: g_w, x: h2 }, n, n_ff);
        let up = c.node("up", Op::MatMul { w: u_w, x: h2 }, n, n_ff);
        let act = c.node(
            "act",
            Op::Glu {
                gate: gt,
                up,
                f: Glu::SwiGlu,
            },
            n,
            n_ff,
        );
        let dn = c.node("down", Op::MatMul { w: d_w, x: act }, n, n_embd);
        c.node("out", Op::Add { a: dn, b: r1 }, n, n_embd);
        steps.push((c, (p..p + n).map(|x| x as i32).collect::<Vec<_>>()));
        p += n;
    }
    let setup = KvSetup {
        shape: KvShape {
            n_ctx: 64,
            k_width: n_kv * hd,
            v_width: n_kv * hd,
            k_type: KvType::F16,
            v_type: KvType::F16,
        },
        n_layers: 1,
    };
    let names: Vec<String> = steps[0]
        .0
        .nodes
        .iter()
        .map(|&i| steps[0].0.g.node_name(i).to_string())
        .collect();
    let cpu = run_steps(&d.h.cpu, &steps, Some(setup), ALIGN);
    for (name, gpu) in &d.h.gpus {
        let got = run_steps(gpu, &steps, Some(setup), ALIGN);
        for (s, (g, c)) in got.iter().zip(&cpu).enumerate() {
            // The layer's output; the intermediates are reported when it fails.
            let last = g.len() - 1;
            let e = nmse(&g[last], &c[last]);
            if e > NMSE_LAYER {
                for (i, nm) in names.iter().enumerate() {
                    stderr(&format!("  step {s} {nm}: nmse {:.3e}", nmse(&g[i], &c[i])));
                }
            }
            rep.check(
                &format!(
                    "decoder layer Q8_0 step {s} ({} tokens) [{name}]",
                    steps[s].1.len()
                ),
                e,
                NMSE_LAYER,
            );
        }
    }
    rep.finish("decoder_layer_segment");
}

// ---- Discovery and what is not supported -----------------------------------------------------

#[test]
fn discovery_is_clean() {
    // Never panics, with or without an adapter.
    let devs = tessera_wgpu::devices();
    for d in &devs {
        assert!(d.name.contains(':'), "{}", d.name);
    }
    assert_eq!(tessera_wgpu::canonical_name("Vulkan0").unwrap(), "vulkan:0");
    assert_eq!(tessera_wgpu::canonical_name("metal").unwrap(), "metal:0");
    assert!(tessera_wgpu::canonical_name("cuda:0").is_err());
    let e = WgpuBackend::new("vulkan:99").err().expect("no such device");
    assert!(e.to_string().contains("vulkan:99"), "{e}");
}

/// Prints the ops and weight types `supports` refuses (they run on the CPU).
#[test]
fn unsupported_report() {
    let Some(d) = devices() else { return };
    let gpu = &d.h.gpus[0].1;
    let t0 = TensorId(0);
    let all_types: Vec<GgmlType> = (0..=40u32).filter_map(GgmlType::from_id).collect();
    let mut refused: HashMap<&str, Vec<String>> = HashMap::new();
    for (name, op) in [
        ("matmul", Op::MatMul { w: t0, x: t0 }),
        (
            "mul_mat_id",
            Op::MatMulId {
                w: t0,
                x: t0,
                ids: t0,
            },
        ),
        ("mul_mat_heads", Op::MatMulHeads { w: t0, x: t0 }),
        ("embed", Op::Embed { table: t0 }),
    ] {
        for &t in &all_types {
            if !gpu.supports(&op, &[t]) && d.h.cpu.supports(&op, &[t]) {
                refused.entry(name).or_default().push(format!("{t:?}"));
            }
        }
    }
    let mut lines: Vec<String> = refused
        .into_iter()
        .map(|(op, ts)| format!("  {op}: {}", ts.join(" ")))
        .collect();
    lines.sort();
    if !gpu.supports(&Op::TopK { x: t0, k: 65 }, &[]) {
        lines.push(format!("  top_k: k > {}", tessera_wgpu::MAX_TOP_K));
    }
    lines.push(format!(
        "  attention: head_dim > {}",
        tessera_wgpu::MAX_HEAD_DIM
    ));
    stderr(&format!(
        "--- not supported on wgpu (the scheduler runs these on the CPU; the CPU itself has them):\n{}",
        lines.join("\n")
    ));
}

/// `info()` reports the memory tessera holds on the device as used.
#[test]
fn memory_is_counted() {
    let Some(d) = devices() else { return };
    let gpu = &d.h.gpus[0].1;
    let before = gpu.info().free_memory;
    if before == 0 {
        stderr("memory_is_counted: the device does not report its memory; skipping");
        return;
    }
    let buf = gpu.alloc(8 << 20).expect("alloc");
    let during = gpu.info().free_memory;
    drop(buf);
    let after = gpu.info().free_memory;
    assert_eq!(before - during, 8 << 20, "{before} → {during}");
    assert_eq!(after, before);
}
