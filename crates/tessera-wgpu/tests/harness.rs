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
//! Without a wgpu adapter every test prints why and passes, unless
//! `TESSERA_REQUIRE_WGPU=1` is set (CI), which makes a missing adapter a
//! failure. `TESSERA_WGPU_DEVICE` picks the device (default: the first).
//! Every case runs twice when the device has subgroups: with them and with
//! the workgroup-memory fallback. The report (one line per case, and the
//! ops and types `supports` refuses) goes to stderr directly, so it shows
//! even when the test passes: `cargo test -p tessera-wgpu --release`.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use half::{bf16, f16};
use tessera_core::backend::cpu::CpuBackend;
use tessera_core::backend::{Backend, HostSlice, SegmentRun};
use tessera_core::graph::{
    ActType, AttnCfg, Glu, Graph, Node, Op, RopeCfg, StepInputs, TensorDef, TensorId, TensorKind,
    Unary,
};
use tessera_core::kv::{KvCache, KvShape, KvType};
use tessera_core::sched::{BufferPlan, Slot};
use tessera_core::weights::Weight;
use tessera_gguf::GgmlType;
use tessera_wgpu::{GpuOptions, WgpuBackend};

// ---- Tolerances (normalised MSE) ----------------------------------------

/// Data movement (embedding rows of F32/F16/BF16, select, slice, concat,
/// gather): the values are copied, so they must match exactly.
const NMSE_COPY: f64 = 0.0;
/// f32 arithmetic in another order (sums, norms, softmax, elementwise).
const NMSE_F32: f64 = 1e-10;
/// Transcendentals (exp, tanh, erf, sin/cos): the shader's and libm's last bits.
const NMSE_TRANSCENDENTAL: f64 = 1e-9;
/// Rope at positions up to a few thousand (sin/cos of large angles).
const NMSE_ROPE: f64 = 1e-9;
/// GELU through ggml's f16 table: an input on an f16 rounding edge may
/// round the other way, one f16 step of the output.
const NMSE_GELU_F16: f64 = 1e-7;
/// Attention over an F16 cache: below 64 query tokens both round the query
/// to f16 and accumulate V in f16 cell by cell, as ggml-cpu does; a score
/// or `exp` differing in the last bit flips some of those f16 roundings
/// (measured up to 1.7e-8, softcap 50 over 70 tokens).
const NMSE_ATTN_F16: f64 = 1e-7;
/// Attention with a Q8_0 cache (both quantize the query the same way).
const NMSE_ATTN_Q8: f64 = 1e-6;
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

// ---- Devices ------------------------------------------------------------------

struct Devices {
    cpu: Arc<dyn Backend>,
    /// The device with and without subgroups (activations of products
    /// rounded as the CPU's).
    gpus: Vec<(String, Arc<dyn Backend>)>,
    /// The device with products in f32 (`cpu_activations: false`), for
    /// the check against exact products.
    exact: Option<(String, Arc<dyn Backend>)>,
}

fn stderr(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The CPU and the wgpu device(s), or `None` (after saying why) when the
/// machine has no adapter and `TESSERA_REQUIRE_WGPU` is not set.
fn devices() -> Option<&'static Devices> {
    static D: OnceLock<Option<Devices>> = OnceLock::new();
    D.get_or_init(|| {
        let require = std::env::var("TESSERA_REQUIRE_WGPU").is_ok_and(|v| v == "1");
        let all = tessera_wgpu::devices();
        let name = std::env::var("TESSERA_WGPU_DEVICE")
            .ok()
            .or_else(|| all.first().map(|d| d.name.clone()));
        let Some(name) = name else {
            let msg = "tessera-wgpu harness: no wgpu adapter on this machine \
                       (install a Vulkan driver, e.g. `apt-get install mesa-vulkan-drivers libvulkan1`); \
                       skipping";
            assert!(!require, "{msg} — but TESSERA_REQUIRE_WGPU=1");
            stderr(msg);
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
                assert!(!require, "cannot open {name}: {e}");
                stderr(&format!("tessera-wgpu harness: cannot open {name}: {e}; skipping"));
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
        gpus.push((format!("{name}{}", if sg { "+sg" } else { "" }), Arc::new(main)));
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
            cpu: Arc::new(CpuBackend::new("cpu", 2)),
            gpus,
            exact: Some((format!("{name} f32 products"), Arc::new(exact))),
        })
    })
    .as_ref()
}

// ---- Data ------------------------------------------------------------------------

/// Deterministic values in [-1, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

/// `values` stored as `t`.
fn encode(t: GgmlType, values: &[f32]) -> Vec<u8> {
    match t {
        GgmlType::F32 => bytemuck::cast_slice(values).to_vec(),
        GgmlType::F16 => values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect(),
        GgmlType::BF16 => values
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
            .collect(),
        _ => {
            let bs = t.block_size() as usize;
            let n = values.len() / bs * t.type_size() as usize;
            let mut out = vec![0u8; n];
            tessera_quant::quantize(t, values, &mut out).expect("quantize");
            out
        }
    }
}

/// `bytes` of type `t` as f32.
fn decode(t: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    tessera_quant::dequantize(t, bytes, &mut out).expect("dequantize");
    out
}

/// `Σ(a − b)² / Σ b²` (0 when both are all zero; inf when a has a NaN
/// where b has none).
fn nmse(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut num, mut den) = (0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        if x.is_nan() || y.is_nan() {
            if x.is_nan() != y.is_nan() {
                return f64::INFINITY;
            }
            continue;
        }
        let d = x as f64 - y as f64;
        num += d * d;
        den += (y as f64) * (y as f64);
    }
    if num == 0.0 {
        0.0
    } else if den == 0.0 {
        f64::INFINITY
    } else {
        num / den
    }
}

// ---- Graph cases -----------------------------------------------------------------

/// A small graph: weights, input activations with values, nodes to run.
#[derive(Default)]
struct Case {
    g: Graph,
    /// (tensor, name, type, shape, bytes)
    weights: Vec<(String, GgmlType, [usize; 3], Vec<u8>)>,
    inputs: Vec<(TensorId, Vec<f32>)>,
    nodes: Vec<usize>,
    tokens: Vec<u32>,
}

impl Case {
    fn tensor(&mut self, name: &str, shape: [usize; 3], kind: TensorKind) -> TensorId {
        let id = TensorId(self.g.tensors.len() as u32);
        self.g.tensors.push(TensorDef {
            name: name.into(),
            shape,
            kind,
        });
        id
    }

    /// A weight of type `t` holding `values` (shape `[n_mat, rows, cols]`).
    fn weight(&mut self, name: &str, t: GgmlType, shape: [usize; 3], values: &[f32]) -> TensorId {
        let i = self.weights.len();
        self.weights
            .push((name.into(), t, shape, encode(t, values)));
        self.tensor(name, shape, TensorKind::Weight(i))
    }

    /// An input activation `[rows, cols]` with `values`.
    fn input(&mut self, name: &str, rows: usize, cols: usize, values: Vec<f32>) -> TensorId {
        assert_eq!(values.len(), rows * cols, "{name}");
        let t = self.tensor(name, [1, rows, cols], TensorKind::Act(ActType::F32));
        self.inputs.push((t, values));
        t
    }

    /// A node computing `op` into a new `[rows, cols]` activation.
    fn node(&mut self, name: &str, op: Op, rows: usize, cols: usize) -> TensorId {
        let out = self.tensor(name, [1, rows, cols], TensorKind::Act(ActType::F32));
        self.nodes.push(self.g.nodes.len());
        self.g.nodes.push(Node { op, out });
        out
    }
}

/// The buffer plan: every activation its own 64-byte aligned range, with a
/// 64-byte gap between them (guard bytes).
fn plan(g: &Graph) -> BufferPlan {
    let mut slots = vec![None; g.tensors.len()];
    let mut end = 256usize;
    for (i, t) in g.tensors.iter().enumerate() {
        if let TensorKind::Act(_) = t.kind {
            let bytes = (t.len() * 4).max(64);
            slots[i] = Some(Slot {
                device: 0,
                offset: end,
                bytes,
            });
            end += bytes.next_multiple_of(64) + 64;
        }
    }
    BufferPlan {
        slots,
        arena_bytes: vec![end + 256],
    }
}

/// What a run gives back: the value of every node output.
type Outputs = Vec<Vec<f32>>;

/// The KV setup of an attention case.
#[derive(Clone, Copy)]
struct KvSetup {
    shape: KvShape,
    n_layers: usize,
}

/// Runs `steps` (each a case: graph, inputs, and the step's positions) on
/// `backend`, with one KV cache across the steps when `kv` is given.
fn run_steps(
    backend: &Arc<dyn Backend>,
    steps: &[(Case, Vec<i32>)],
    kv: Option<KvSetup>,
) -> Vec<Outputs> {
    let backends = [backend.clone()];
    let mut cache = match kv {
        Some(s) => KvCache::new(s.shape, &vec![0; s.n_layers], &backends).expect("kv"),
        None => KvCache::new(
            KvShape {
                n_ctx: 1,
                k_width: 32,
                v_width: 32,
                k_type: KvType::F16,
                v_type: KvType::F16,
            },
            &[],
            &backends,
        )
        .expect("kv"),
    };
    let mut all = Vec::new();
    for (case, pos) in steps {
        let weights: Vec<Weight> = case
            .weights
            .iter()
            .map(|(name, t, shape, bytes)| {
                let slice = HostSlice::new(Arc::new(bytes.clone()), |v: &Vec<u8>| &v[..]);
                Weight {
                    name: name.clone(),
                    ggml_type: *t,
                    shape: *shape,
                    device: 0,
                    data: backend.load_weight(name, *t, slice).expect("load weight"),
                    parts: Vec::new(),
                }
            })
            .collect();
        let plan = plan(&case.g);
        let mut work = backend.alloc(plan.arena_bytes[0]).expect("alloc");
        // NaN everywhere first: an output a shader forgets shows up.
        let nan = vec![f32::NAN; plan.arena_bytes[0] / 4];
        work.write(0, bytemuck::cast_slice(&nan)).expect("fill");
        for (t, v) in &case.inputs {
            let s = plan.slot(*t).expect("input slot");
            work.write(s.offset, bytemuck::cast_slice(v))
                .expect("write input");
        }
        let n = pos.len();
        let out_rows: Vec<u32> = (0..n as u32).collect();
        let tokens = if case.tokens.is_empty() {
            vec![0; n]
        } else {
            case.tokens.clone()
        };
        let step = StepInputs {
            tokens: &tokens,
            pos,
            out_rows: &out_rows,
        };
        let run = SegmentRun {
            graph: &case.g,
            nodes: &case.nodes,
            plan: &plan,
            weights: &weights,
            step: &step,
        };
        backend
            .compute(&run, work.as_mut(), &mut cache)
            .unwrap_or_else(|e| panic!("{}: {e}", backend.info().name));
        cache.advance(n);
        let outs = case
            .nodes
            .iter()
            .map(|&i| {
                let t = case.g.nodes[i].out;
                let s = plan.slot(t).expect("slot");
                let mut v = vec![0f32; case.g.tensor(t).len()];
                work.read(s.offset, bytemuck::cast_slice_mut(&mut v))
                    .expect("read");
                v
            })
            .collect();
        all.push(outs);
    }
    all
}

// ---- Reporting -------------------------------------------------------------------------

#[derive(Default)]
struct Report {
    lines: Vec<String>,
    failures: Vec<String>,
}

static REPORT: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl Report {
    fn check(&mut self, what: &str, got: f64, tol: f64) {
        let ok = got <= tol;
        let line = format!(
            "{:<4} {what:<64} nmse {got:>10.3e}  (tolerance {tol:.0e})",
            if ok { "ok" } else { "FAIL" }
        );
        if !ok {
            self.failures.push(line.clone());
        }
        self.lines.push(line);
    }

    fn finish(self, test: &str) {
        let mut out = format!("--- {test}\n");
        for l in &self.lines {
            out.push_str(l);
            out.push('\n');
        }
        stderr(out.trim_end());
        REPORT.lock().unwrap().extend(self.lines);
        assert!(
            self.failures.is_empty(),
            "{test}: {} case(s) over tolerance:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

/// Runs single-step `case` on the CPU and on every GPU variant and checks
/// node `which` (an index into `case.nodes`) of each against the CPU with
/// `tol`. Returns the GPU outputs for further checks.
fn compare(
    d: &Devices,
    rep: &mut Report,
    label: &str,
    case: Case,
    pos: Vec<i32>,
    tol: f64,
) -> Vec<Outputs> {
    let steps = [(case, pos)];
    let cpu = run_steps(&d.cpu, &steps, None).remove(0);
    let mut gpu_outs = Vec::new();
    for (name, gpu) in &d.gpus {
        let got = run_steps(gpu, &steps, None).remove(0);
        let worst = got
            .iter()
            .zip(&cpu)
            .map(|(a, b)| nmse(a, b))
            .fold(0f64, f64::max);
        rep.check(&format!("{label} [{name}]"), worst, tol);
        gpu_outs.push(got);
    }
    gpu_outs
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

/// `x · wᵀ` in f64 from the dequantized weight.
fn product_f64(w: &[f32], x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let n = x.len() / cols;
    let mut y = vec![0f32; n * rows];
    for t in 0..n {
        for r in 0..rows {
            let s: f64 = (0..cols)
                .map(|c| w[r * cols + c] as f64 * x[t * cols + c] as f64)
                .sum();
            y[t * rows + r] = s as f32;
        }
    }
    y
}

#[test]
fn matmul() {
    let Some(d) = devices() else { return };
    let mut rep = Report::default();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for t in MATMUL_TYPES {
        for (rows, cols, n) in matmul_shapes(t) {
            let mut c = Case::default();
            let wv = rng.vec(rows * cols, 1.0);
            let w = c.weight("w", t, [1, rows, cols], &wv);
            let exact_w = decode(t, &encode(t, &wv), rows * cols);
            let xv = rng.vec(n * cols, 1.0);
            let exact = product_f64(&exact_w, &xv, rows, cols);
            let x = c.input("x", n, cols, xv);
            c.node("y", Op::MatMul { w, x }, n, rows);
            let label = format!("matmul {t:?} w[{rows}, {cols}] x[{n}, {cols}]");
            let steps = [(c, vec![0; n])];
            if let Some((name, b)) = &d.exact {
                let o = run_steps(b, &steps, None).remove(0);
                rep.check(
                    &format!("{label} vs f64 [{name}]"),
                    nmse(&o[0], &exact),
                    NMSE_EXACT_PRODUCT,
                );
            }
            let [(c, pos)] = steps;
            compare(d, &mut rep, &label, c, pos, NMSE_PRODUCT);
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
        let bs = t.block_size() as usize;
        let cols = if bs == 1 { 13 } else { bs * 2 };
        // Per-head products: 3 heads of [7, cols], 5 tokens.
        let (heads, rows, n) = (3, 7, 5);
        let mut c = Case::default();
        let wv = rng.vec(heads * rows * cols, 1.0);
        let w = c.weight("wh", t, [heads, rows, cols], &wv);
        let x = c.input("x", n, heads * cols, rng.vec(n * heads * cols, 1.0));
        c.node("y", Op::MatMulHeads { w, x }, n, heads * rows);
        compare(
            d,
            &mut rep,
            &format!("mul_mat_heads {t:?} {heads} × [{rows}, {cols}], {n} tokens"),
            c,
            vec![0; n],
            NMSE_PRODUCT,
        );
        // Experts: 6 of [11, cols], 5 tokens × 3 slots, x per token and per slot.
        for per_slot in [false, true] {
            let (ne, rows, n, k) = (6, 11, 5, 3);
            let mut c = Case::default();
            let w = c.weight(
                "experts",
                t,
                [ne, rows, cols],
                &rng.vec(ne * rows * cols, 1.0),
            );
            let xr = if per_slot { n * k } else { n };
            let x = c.input("x", xr, cols, rng.vec(xr * cols, 1.0));
            let ids: Vec<f32> = (0..n * k)
                .map(|i| f32::from_bits(((i * 5 + i / k) % ne) as u32))
                .collect();
            let ids = c.input("ids", n, k, ids);
            c.node("y", Op::MatMulId { w, x, ids }, n * k, rows);
            compare(
                d,
                &mut rep,
                &format!("mul_mat_id {t:?} {ne} × [{rows}, {cols}], {n}×{k} slots, x per slot {per_slot}"),
                c,
                vec![0; n],
                NMSE_PRODUCT,
            );
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
        let bs = t.block_size() as usize;
        for (rows, cols) in [(7, if bs == 1 { 5 } else { bs }), (50, bs.max(4) * 3)] {
            let mut c = Case::default();
            let table = c.weight("token_embd", t, [1, rows, cols], &rng.vec(rows * cols, 1.0));
            c.tokens = vec![3, 0, (rows - 1) as u32, 3, 1];
            let n = c.tokens.len();
            c.node("emb", Op::Embed { table }, n, cols);
            let tol = if bs == 1 { NMSE_COPY } else { NMSE_EMBED_QUANT };
            compare(
                d,
                &mut rep,
                &format!("embed {t:?} [{rows}, {cols}], {n} tokens"),
                c,
                vec![0; n],
                tol,
            );
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
    compare(
        d,
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
    let name = d.gpus[0].0.trim_end_matches("+sg").to_string();
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
    let capped = Devices {
        cpu: d.cpu.clone(),
        gpus: vec![(format!("{name} capped"), small)],
        exact: None,
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
    compare(
        &capped,
        &mut rep,
        "embed + matmul F32 [300, 13] (15.6 KB)",
        c,
        vec![0; 7],
        NMSE_F32,
    );
    // A quantized product (68-byte rows).
    let mut c = Case::default();
    let w = c.weight("w", GgmlType::Q8_0, [1, 150, 64], &rng.vec(150 * 64, 1.0));
    let x = c.input("x", 5, 64, rng.vec(5 * 64, 1.0));
    c.node("y", Op::MatMul { w, x }, 5, 150);
    compare(
        &capped,
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
    compare(
        &capped,
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
        let n = rows * cols;
        // Binary ops: same shape, one row broadcast, an F32 weight row.
        for (name, mk) in [
            (
                "add",
                (|a, b| Op::Add { a, b }) as fn(TensorId, TensorId) -> Op,
            ),
            ("mul", |a, b| Op::Mul { a, b }),
            ("div", |a, b| Op::Div { a, b }),
        ] {
            for bcast in ["same", "row", "weight"] {
                let mut c = Case::default();
                let a = c.input("a", rows, cols, rng.vec(n, 2.0));
                let bv: Vec<f32> = match bcast {
                    "same" => rng.vec(n, 2.0),
                    _ => rng.vec(cols, 2.0),
                }
                .into_iter()
                .map(|v| if v.abs() < 0.1 { v + 0.5 } else { v })
                .collect();
                let b = match bcast {
                    "same" => c.input("b", rows, cols, bv),
                    "row" => c.input("b", 1, cols, bv),
                    _ => c.weight("bias", GgmlType::F32, [1, 1, cols], &bv),
                };
                c.node("y", mk(a, b), rows, cols);
                compare(
                    d,
                    &mut rep,
                    &format!("{name} [{rows}, {cols}] b {bcast}"),
                    c,
                    vec![0; rows],
                    NMSE_COPY,
                );
            }
        }
        // Unary functions and scale.
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
    for (rows, cols, group) in [
        (1, 5, 5),
        (7, 13, 13),
        (5, 64, 64),
        (3, 1536, 1536),
        (5, 256, 64),
    ] {
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
            c.node(
                "y",
                Op::RmsNorm {
                    x,
                    w,
                    group,
                    eps: 1e-6,
                },
                rows,
                cols,
            );
            compare(
                d,
                &mut rep,
                &format!("rms_norm [{rows}, {cols}] group {group} weight {with_w}"),
                c,
                vec![0; rows],
                NMSE_F32,
            );
            let mut c = Case::default();
            let x = c.input(
                "x",
                rows,
                cols,
                rng.vec(n, 3.0).iter().map(|v| v + 0.7).collect(),
            );
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
            c.node(
                "y",
                Op::LayerNorm {
                    x,
                    w,
                    b,
                    group,
                    eps: 1e-5,
                },
                rows,
                cols,
            );
            compare(
                d,
                &mut rep,
                &format!("layer_norm [{rows}, {cols}] group {group} weight+bias {with_w}"),
                c,
                vec![0; rows],
                NMSE_F32,
            );
        }
    }
    for (rows, cols) in [(1, 5), (7, 13), (5, 64), (3, 1000), (2, 32000)] {
        let mut c = Case::default();
        let x = c.input("x", rows, cols, rng.vec(rows * cols, 8.0));
        c.node("p", Op::Softmax { x }, rows, cols);
        compare(
            d,
            &mut rep,
            &format!("softmax [{rows}, {cols}]"),
            c,
            vec![0; rows],
            NMSE_TRANSCENDENTAL,
        );
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
    let variants: Vec<(&str, usize, usize, RopeCfg, bool)> = vec![
        ("normal", 4, 64, base, false),
        (
            "neox",
            3,
            128,
            RopeCfg {
                n_rot: 128,
                neox: true,
                freq_base: 1e6,
                ..base
            },
            false,
        ),
        (
            "neox partial",
            5,
            96,
            RopeCfg {
                n_rot: 32,
                neox: true,
                ..base
            },
            false,
        ),
        (
            "normal partial odd heads",
            7,
            80,
            RopeCfg { n_rot: 16, ..base },
            false,
        ),
        ("freq factors", 2, 64, base, true),
        (
            "yarn",
            3,
            64,
            RopeCfg {
                freq_scale: 0.25,
                ext_factor: 1.0,
                attn_factor: 1.0,
                n_ctx_orig: 2048,
                neox: true,
                ..base
            },
            false,
        ),
    ];
    for (name, n_heads, head_dim, cfg, ff) in variants {
        for pos in [
            vec![0, 1, 2, 3, 4],
            vec![7],
            vec![1000, 1001, 1002, 4095, 3000, 12, 77],
        ] {
            let n = pos.len();
            let mut c = Case::default();
            let x = c.input(
                "x",
                n,
                n_heads * head_dim,
                rng.vec(n * n_heads * head_dim, 2.0),
            );
            let mut cfg = cfg;
            if ff {
                let f: Vec<f32> = (0..cfg.n_rot / 2).map(|i| 1.0 + i as f32 * 0.37).collect();
                cfg.freq_factors =
                    Some(c.weight("rope_freqs.weight", GgmlType::F32, [1, 1, f.len()], &f));
            }
            c.node(
                "r",
                Op::Rope {
                    x,
                    n_heads,
                    head_dim,
                    cfg,
                },
                n,
                n_heads * head_dim,
            );
            compare(
                d,
                &mut rep,
                &format!(
                    "rope {name} {n_heads}×{head_dim} rot {} pos {:?}",
                    cfg.n_rot,
                    &pos[..pos.len().min(3)]
                ),
                c,
                pos,
                NMSE_ROPE,
            );
        }
    }
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
    for (rows, cols) in [(1, 5), (7, 13), (4, 64)] {
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
    for (rows, cols, k) in [(1, 8, 2), (5, 13, 3), (7, 64, 8), (3, 128, 6), (2, 256, 16)] {
        // top_k with ties (values on a coarse grid) and the routing helpers.
        let mut c = Case::default();
        let xv: Vec<f32> = rng
            .vec(rows * cols, 1.0)
            .iter()
            .map(|v| (v * 8.0).round() / 8.0)
            .collect();
        let x = c.input("logits", rows, cols, xv);
        let probs = c.node("probs", Op::Softmax { x }, rows, cols);
        let ids = c.node("ids", Op::TopK { x: probs, k }, rows, k);
        let w = c.node("w", Op::GatherCols { x: probs, ids }, rows, k);
        c.node(
            "wn",
            Op::NormSum {
                x: w,
                min_sum: 6.1e-5,
            },
            rows,
            k,
        );
        compare(
            d,
            &mut rep,
            &format!("softmax → top_k → gather_cols → norm_sum [{rows}, {cols}] k {k}"),
            c,
            vec![0; rows],
            NMSE_TRANSCENDENTAL,
        );
        // group_mask: groups of the columns.
        for (n_groups, n_used) in [(4, 2), (8, 3)] {
            if cols % n_groups != 0 || cols / n_groups < 2 {
                continue;
            }
            let mut c = Case::default();
            let x = c.input("scores", rows, cols, rng.vec(rows * cols, 1.0));
            c.node(
                "masked",
                Op::GroupMask {
                    x,
                    n_groups,
                    n_used,
                },
                rows,
                cols,
            );
            compare(
                d,
                &mut rep,
                &format!("group_mask [{rows}, {cols}] {n_groups} groups, {n_used} used"),
                c,
                vec![0; rows],
                NMSE_COPY,
            );
        }
    }
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
        compare(
            d,
            &mut rep,
            &format!("add_id → moe_sum → mul_rows n {n} k {k} cols {cols}"),
            c,
            vec![0; n],
            NMSE_F32,
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
        compare(
            d,
            &mut rep,
            &format!(
                "slice_heads → concat_heads n {n} {heads}×{hd} [{start}..{}]",
                start + len
            ),
            c,
            vec![0; n],
            NMSE_COPY,
        );
    }
    rep.finish("rows_routing_heads");
}

// ---- Attention -----------------------------------------------------------------------------

struct AttnCase {
    label: &'static str,
    n_head: usize,
    n_head_kv: usize,
    head_dim: usize,
    /// Value head dimension (0: `head_dim`; DeepSeek's MLA: K 576, V 512).
    head_dim_v: usize,
    window: Option<usize>,
    softcap: f32,
    sinks: bool,
    kv: KvType,
}

/// Prompt of `prompt` tokens, then decode steps, on a cache of `n_ctx`.
fn attention_steps(
    a: &AttnCase,
    rng: &mut Rng,
    prompt: usize,
    decode: usize,
) -> (Vec<(Case, Vec<i32>)>, KvSetup) {
    let hd = a.head_dim;
    let hdv = if a.head_dim_v == 0 { hd } else { a.head_dim_v };
    let mut steps = Vec::new();
    let mut p = 0usize;
    let sinks: Vec<f32> = rng.vec(a.n_head, 2.0);
    for n in std::iter::once(prompt).chain(std::iter::repeat_n(1, decode)) {
        let mut c = Case::default();
        let q = c.input("q", n, a.n_head * hd, rng.vec(n * a.n_head * hd, 2.0));
        let k = c.input("k", n, a.n_head_kv * hd, rng.vec(n * a.n_head_kv * hd, 2.0));
        let v = c.input(
            "v",
            n,
            a.n_head_kv * hdv,
            rng.vec(n * a.n_head_kv * hdv, 2.0),
        );
        let sinks = a
            .sinks
            .then(|| c.weight("attn_sinks", GgmlType::F32, [1, 1, a.n_head], &sinks));
        let cfg = AttnCfg {
            n_head: a.n_head,
            n_head_kv: a.n_head_kv,
            head_dim: hd,
            head_dim_v: hdv,
            scale: 1.0 / (hd as f32).sqrt(),
            softcap: a.softcap,
            window: a.window,
            sinks,
        };
        c.node(
            "attn",
            Op::Attention {
                q,
                k,
                v,
                layer: 0,
                cfg,
            },
            n,
            a.n_head * hdv,
        );
        steps.push((c, (p..p + n).map(|x| x as i32).collect()));
        p += n;
    }
    let setup = KvSetup {
        shape: KvShape {
            n_ctx: p.next_multiple_of(32).max(64),
            k_width: a.n_head_kv * hd,
            v_width: a.n_head_kv * hdv,
            k_type: a.kv,
            v_type: a.kv,
        },
        n_layers: 1,
    };
    (steps, setup)
}

#[test]
fn attention() {
    let Some(d) = devices() else { return };
    let mut rep = Report::default();
    let mut rng = Rng(0x6a09_e667_f3bc_c908);
    let base = AttnCase {
        label: "",
        n_head: 4,
        n_head_kv: 4,
        head_dim: 64,
        head_dim_v: 0,
        window: None,
        softcap: 0.0,
        sinks: false,
        kv: KvType::F16,
    };
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
    for a in &cases {
        for (prompt, decode) in [(1, 2), (7, 3), (13, 2), (70, 2)] {
            let (steps, setup) = attention_steps(a, &mut rng, prompt, decode);
            let cpu = run_steps(&d.cpu, &steps, Some(setup));
            for (name, gpu) in &d.gpus {
                let got = run_steps(gpu, &steps, Some(setup));
                let worst = got
                    .iter()
                    .zip(&cpu)
                    .map(|(g, c)| nmse(&g[0], &c[0]))
                    .fold(0f64, f64::max);
                let tol = match a.kv {
                    KvType::F16 => NMSE_ATTN_F16,
                    KvType::Q8_0 => NMSE_ATTN_Q8,
                };
                rep.check(
                    &format!(
                        "attention {} {}/{}×{} prompt {prompt} + {decode} decode [{name}]",
                        a.label, a.n_head, a.n_head_kv, a.head_dim
                    ),
                    worst,
                    tol,
                );
            }
        }
    }
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
            freq_base: 10000.0,
            freq_scale: 1.0,
            ext_factor: 0.0,
            attn_factor: 1.0,
            beta_fast: 32.0,
            beta_slow: 1.0,
            n_ctx_orig: 2048,
            freq_factors: None,
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
    let cpu = run_steps(&d.cpu, &steps, Some(setup));
    for (name, gpu) in &d.gpus {
        let got = run_steps(gpu, &steps, Some(setup));
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
    let gpu = &d.gpus[0].1;
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
            if !gpu.supports(&op, &[t]) && d.cpu.supports(&op, &[t]) {
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
    let gpu = &d.gpus[0].1;
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
