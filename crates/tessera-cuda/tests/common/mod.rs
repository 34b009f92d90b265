//! Shared by the CUDA backend's op tests (`harness.rs` on a device,
//! `kernels_host.rs` on the host): the tolerances, deterministic data,
//! one-step graphs with a buffer plan, running them on a backend (the CPU
//! backend is the reference), and the report. Each test binary uses part
//! of it.
#![allow(dead_code)]

use std::io::Write;
use std::sync::Arc;

use half::{bf16, f16};
use tessera_core::backend::{Backend, HostSlice, SegmentRun};
use tessera_core::graph::{ActType, Graph, Node, Op, StepInputs, TensorDef, TensorId, TensorKind};
use tessera_core::kv::{KvCache, KvShape, KvType};
use tessera_core::sched::{BufferPlan, Slot};
use tessera_core::weights::Weight;
use tessera_gguf::GgmlType;

pub fn stderr(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

// ---- Tolerances (normalised MSE) ----------------------------------------

/// Data movement (select, slice, concat, gather, embeddings): exact.
pub const NMSE_COPY: f64 = 0.0;
/// f32 arithmetic in another order (sums, norms).
pub const NMSE_F32: f64 = 1e-10;
/// Transcendentals (exp, tanh, erf): the device's and libm's last bits.
pub const NMSE_TRANSCENDENTAL: f64 = 1e-9;
/// Rope at positions up to a few thousand.
pub const NMSE_ROPE: f64 = 1e-9;
/// GELU through ggml's f16 table: an input on an f16 rounding edge may
/// round the other way.
pub const NMSE_GELU_F16: f64 = 1e-7;
/// Attention over an F16 cache: below 64 query tokens the CPU rounds the
/// query to f16 and accumulates V in f16; the kernel keeps both in f32.
pub const NMSE_ATTN_F16: f64 = 1e-5;
/// Attention over a Q8_0 cache (both quantize the query the same way).
pub const NMSE_ATTN_Q8: f64 = 1e-6;
/// A product in f32 against an f64 product of the same dequantized weights.
pub const NMSE_EXACT_PRODUCT: f64 = 1e-10;

// ---- Data ------------------------------------------------------------------------

/// Deterministic values in [-1, 1).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

/// `values` stored as `t`.
pub fn encode(t: GgmlType, values: &[f32]) -> Vec<u8> {
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
            let n = values.len() / t.block_size() as usize * t.type_size() as usize;
            let mut out = vec![0u8; n];
            tessera_quant::quantize(t, values, &mut out).expect("quantize");
            out
        }
    }
}

/// `bytes` of type `t` as f32.
pub fn decode(t: GgmlType, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    tessera_quant::dequantize(t, bytes, &mut out).expect("dequantize");
    out
}

/// `Σ(a − b)² / Σ b²` (0 when equal; inf when NaNs differ or b is 0).
pub fn nmse(a: &[f32], b: &[f32]) -> f64 {
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
pub struct Case {
    pub g: Graph,
    pub weights: Vec<(String, GgmlType, [usize; 3], Vec<u8>)>,
    pub inputs: Vec<(TensorId, Vec<f32>)>,
    pub nodes: Vec<usize>,
    pub tokens: Vec<u32>,
}

impl Case {
    pub fn tensor(&mut self, name: &str, shape: [usize; 3], kind: TensorKind) -> TensorId {
        let id = TensorId(self.g.tensors.len() as u32);
        self.g.tensors.push(TensorDef {
            name: name.into(),
            shape,
            kind,
        });
        id
    }

    pub fn weight(
        &mut self,
        name: &str,
        t: GgmlType,
        shape: [usize; 3],
        values: &[f32],
    ) -> TensorId {
        let i = self.weights.len();
        self.weights
            .push((name.into(), t, shape, encode(t, values)));
        self.tensor(name, shape, TensorKind::Weight(i))
    }

    pub fn input(&mut self, name: &str, rows: usize, cols: usize, values: Vec<f32>) -> TensorId {
        assert_eq!(values.len(), rows * cols, "{name}");
        let t = self.tensor(name, [1, rows, cols], TensorKind::Act(ActType::F32));
        self.inputs.push((t, values));
        t
    }

    pub fn node(&mut self, name: &str, op: Op, rows: usize, cols: usize) -> TensorId {
        let out = self.tensor(name, [1, rows, cols], TensorKind::Act(ActType::F32));
        self.nodes.push(self.g.nodes.len());
        self.g.nodes.push(Node { op, out });
        out
    }
}

/// Every activation its own 256-byte aligned range, with gaps.
pub fn plan(g: &Graph) -> BufferPlan {
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
            end += bytes.next_multiple_of(256) + 256;
        }
    }
    BufferPlan {
        slots,
        arena_bytes: vec![end + 256],
    }
}

/// The value of every node output of one step.
pub type Outputs = Vec<Vec<f32>>;

/// Runs `steps` (case and positions) on `backend`, with one KV cache of
/// `kv` across them when given.
pub fn run_steps(
    backend: &Arc<dyn Backend>,
    steps: &[(Case, Vec<i32>)],
    kv: Option<KvShape>,
) -> Vec<Outputs> {
    let backends = [backend.clone()];
    let shape = kv.unwrap_or(KvShape {
        n_ctx: 1,
        k_width: 32,
        v_width: 32,
        k_type: KvType::F16,
        v_type: KvType::F16,
    });
    let layers: &[usize] = if kv.is_some() { &[0] } else { &[] };
    let mut cache = KvCache::new(shape, layers, &backends).expect("kv");
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
        // NaN everywhere first: an output a kernel forgets shows up.
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
pub struct Report {
    lines: Vec<String>,
    failures: Vec<String>,
}

impl Report {
    pub fn check(&mut self, what: &str, got: f64, tol: f64) {
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

    pub fn finish(self, test: &str) {
        stderr(&format!("--- {test}\n{}", self.lines.join("\n")));
        assert!(
            self.failures.is_empty(),
            "{test}: {} case(s) over tolerance:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

/// The weight types the product kernels read.
pub const TYPES: [GgmlType; 15] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::IQ4_NL,
    GgmlType::MXFP4,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// `y[t, r] = Σ_c w[r, c] x[t, c]` in f64.
pub fn product_f64(w: &[f32], x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
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
