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
//!   ports of its shaders); the cases are `tessera_testkit::gpu::cases`'
//!   (the wgpu harness runs them too) on the shapes listed here.
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
use tessera_core::graph::Op;
use tessera_core::kv::KvType;
use tessera_cuda::CudaBackend;
use tessera_gguf::GgmlType;
use tessera_testkit::gpu::cases::{self, AttnCase, Bcast, Product};
use tessera_testkit::gpu::skip;

// ---- Devices ------------------------------------------------------------------

/// The CPU and the CUDA device, or `None` after saying why there is none.
fn devices() -> Option<&'static Harness> {
    static D: OnceLock<Option<Harness>> = OnceLock::new();
    D.get_or_init(|| {
        let name = match tessera_cuda::probe() {
            Ok(all) => std::env::var("TESSERA_CUDA_DEVICE").unwrap_or_else(|_| all[0].name.clone()),
            Err(e) => {
                let msg = format!("tessera-cuda harness: {e}; skipping");
                skip("TESSERA_REQUIRE_CUDA", &msg);
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
        Some(Harness {
            cpu: Arc::new(CpuBackend::new("cpu", 2)),
            gpus: vec![(name, Arc::new(gpu) as Arc<dyn Backend>)],
            align: ALIGN,
        })
    })
    .as_ref()
}

/// Product `p` on the device against its exact result.
fn check_exact(d: &Harness, rep: &mut Report, p: Product, tol: f64) {
    let (name, gpu) = &d.gpus[0];
    let got = run_steps(gpu, &[(p.case, vec![0; p.tokens])], None, ALIGN).remove(0);
    rep.check(
        &format!("{} [{name}]", p.label),
        nmse(&got[0], &p.want),
        tol,
    );
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
            let p = cases::matmul(&mut rng, t, rows, cols, n);
            check_exact(d, &mut rep, p, NMSE_EXACT_PRODUCT);
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
        let p = cases::mul_mat_heads(&mut rng, t);
        check_exact(d, &mut rep, p, NMSE_EXACT_PRODUCT);
        for per_slot in [false, true] {
            let p = cases::mul_mat_id(&mut rng, t, per_slot);
            check_exact(d, &mut rep, p, NMSE_EXACT_PRODUCT);
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
        for (rows, cols) in cases::embed_shapes(t) {
            let p = cases::embed(&mut rng, t, rows, cols);
            check_exact(d, &mut rep, p, NMSE_COPY);
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
        let b = [Bcast::Same, Bcast::Row];
        d.run(&mut rep, cases::elementwise(&mut rng, rows, cols, &b), &TOL);
    }
    rep.finish("elementwise");
}

#[test]
fn norms_and_softmax() {
    let Some(d) = devices() else { return };
    let mut rep = Report::default();
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut checks = Vec::new();
    for (rows, cols, group) in [(1, 5, 5), (7, 13, 13), (3, 1536, 1536), (5, 256, 64)] {
        checks.extend(cases::norms(&mut rng, rows, cols, group));
    }
    for (rows, cols) in [(1, 5), (7, 13), (2, 32000)] {
        checks.push(cases::softmax(&mut rng, rows, cols));
    }
    d.run(&mut rep, checks, &TOL);
    rep.finish("norms_and_softmax");
}

#[test]
fn rope() {
    let Some(d) = devices() else { return };
    let mut rep = Report::default();
    let mut rng = Rng(0x4f1b_bcdc_bfa5_3e0b);
    let mut checks = Vec::new();
    let variants = cases::rope_variants();
    // All but the odd heads of partial rotation.
    for r in variants
        .iter()
        .filter(|r| r.name != "normal partial odd heads")
    {
        for pos in [
            vec![0, 1, 2, 3, 4],
            vec![7],
            vec![1000, 1001, 4095, 3000, 12],
        ] {
            checks.push(cases::rope(&mut rng, r, &pos));
        }
    }
    d.run(&mut rep, checks, &TOL);
    rep.finish("rope");
}

#[test]
fn routing_rows_heads() {
    let Some(d) = devices() else { return };
    let mut rep = Report::default();
    let mut rng = Rng(0x7a3c_91e5_0b2d_4f68);
    let mut checks = Vec::new();
    for (rows, cols) in [(1, 5), (7, 13)] {
        checks.push(cases::select_rows(&mut rng, rows, cols));
    }
    for (rows, cols, k) in [(1, 8, 2), (5, 13, 3), (7, 64, 8), (2, 256, 16)] {
        // The router of an MoE layer, then the expert outputs weighted and
        // summed.
        checks.push(cases::router(&mut rng, rows, cols, k, Some(9)));
    }
    for (rows, groups, used) in [(3, 8, 3), (2, 4, 2)] {
        checks.push(cases::group_mask(&mut rng, rows, groups * 8, groups, used));
    }
    d.run(&mut rep, checks, &TOL);
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
        d.compare(&mut rep, "add_id, mul_rows", c, vec![0; n], NMSE_COPY);
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
        d.compare(
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
    let cases = [
        AttnCase::heads("mha", 4, 4, 64),
        AttnCase::heads("gqa", 8, 2, 128),
        AttnCase {
            window: Some(5),
            ..AttnCase::heads("window", 4, 2, 64)
        },
        AttnCase {
            softcap: 50.0,
            sinks: true,
            ..AttnCase::heads("softcap+sinks", 4, 4, 64)
        },
        AttnCase {
            head_dim_v: 128,
            ..AttnCase::heads("mla-like", 2, 1, 192)
        },
    ];
    let mut checks = Vec::new();
    for a in cases {
        for kv in [KvType::F16, KvType::Q8_0] {
            checks.push(cases::attention(&mut rng, &AttnCase { kv, ..a }, 9, 4));
        }
    }
    d.run(&mut rep, checks, &TOL);
    rep.finish("attention");
}
