//! One-step graphs and how the harness runs them: a [`Case`] (weights,
//! input activations with values, nodes), a buffer plan with guard gaps
//! ([`plan`]), [`run_steps`] (steps on one backend over one KV cache, the
//! arena filled with NaN first so that an output a kernel forgets shows
//! up), the [`Harness`] that runs them on the CPU backend (the reference)
//! and on each GPU variant and checks the worst NMSE, and the [`Report`].

use std::sync::Arc;

use tessera_core::backend::{Backend, HostSlice, SegmentRun};
use tessera_core::graph::{ActType, Graph, Node, Op, StepInputs, TensorDef, TensorId, TensorKind};
use tessera_core::kv::{KvCache, KvShape, KvType};
use tessera_core::sched::{BufferPlan, Slot};
use tessera_core::weights::Weight;
use tessera_gguf::GgmlType;

use super::data::{encode, nmse};
use super::stderr;

/// A small graph: weights, input activations with values, nodes to run.
#[derive(Default)]
pub struct Case {
    /// The graph.
    pub g: Graph,
    /// (name, type, shape `[n_mat, rows, cols]`, bytes)
    pub weights: Vec<(String, GgmlType, [usize; 3], Vec<u8>)>,
    /// Input activations and their values.
    pub inputs: Vec<(TensorId, Vec<f32>)>,
    /// The nodes to run, in order.
    pub nodes: Vec<usize>,
    /// The step's token ids (zeros when empty).
    pub tokens: Vec<u32>,
}

impl Case {
    /// A new tensor of the graph.
    pub fn tensor(&mut self, name: &str, shape: [usize; 3], kind: TensorKind) -> TensorId {
        let id = TensorId(self.g.tensors.len() as u32);
        self.g.tensors.push(TensorDef {
            name: name.into(),
            shape,
            kind,
        });
        id
    }

    /// A weight of type `t` holding `values` (shape `[n_mat, rows, cols]`).
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

    /// An input activation `[rows, cols]` with `values`.
    pub fn input(&mut self, name: &str, rows: usize, cols: usize, values: Vec<f32>) -> TensorId {
        assert_eq!(values.len(), rows * cols, "{name}");
        let t = self.tensor(name, [1, rows, cols], TensorKind::Act(ActType::F32));
        self.inputs.push((t, values));
        t
    }

    /// A node computing `op` into a new `[rows, cols]` activation.
    pub fn node(&mut self, name: &str, op: Op, rows: usize, cols: usize) -> TensorId {
        let out = self.tensor(name, [1, rows, cols], TensorKind::Act(ActType::F32));
        self.nodes.push(self.g.nodes.len());
        self.g.nodes.push(Node { op, out });
        out
    }
}

/// The buffer plan: every activation its own `align`-aligned range, with
/// an `align`-byte gap after each (guard bytes).
pub fn plan(g: &Graph, align: usize) -> BufferPlan {
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
            end += bytes.next_multiple_of(align) + align;
        }
    }
    BufferPlan {
        slots,
        arena_bytes: vec![end + 256],
    }
}

/// What a run gives back: the value of every node output.
pub type Outputs = Vec<Vec<f32>>;

/// The KV cache of an attention case: its shape, and how many layers.
#[derive(Clone, Copy)]
pub struct KvSetup {
    /// Cells, widths and types.
    pub shape: KvShape,
    /// Layers (all on the backend run).
    pub n_layers: usize,
}

/// Runs `steps` (each a case and the step's positions) on `backend`, with
/// one KV cache across them when `kv` is given, the activations laid out
/// by [`plan`] with `align`.
pub fn run_steps(
    backend: &Arc<dyn Backend>,
    steps: &[(Case, Vec<i32>)],
    kv: Option<KvSetup>,
    align: usize,
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
        let plan = plan(&case.g, align);
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

/// One line per case checked, the failures kept for the end.
#[derive(Default)]
pub struct Report {
    lines: Vec<String>,
    failures: Vec<String>,
}

impl Report {
    /// Records case `what` with NMSE `got` against `tol`.
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

    /// Prints the report of `test` and fails when a case was over its
    /// tolerance.
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

/// The CPU backend (the reference) and the GPU variants a harness checks,
/// each under a name the report shows.
pub struct Harness {
    /// The reference.
    pub cpu: Arc<dyn Backend>,
    /// The devices checked against it.
    pub gpus: Vec<(String, Arc<dyn Backend>)>,
    /// The buffer plan's alignment ([`plan`]).
    pub align: usize,
}

impl Harness {
    /// Runs `steps` on the CPU and on every GPU variant and checks the
    /// worst NMSE over every node output of every step against `tol`
    /// (one report line per variant). Returns each variant's outputs.
    pub fn compare_steps(
        &self,
        rep: &mut Report,
        label: &str,
        steps: &[(Case, Vec<i32>)],
        kv: Option<KvSetup>,
        tol: f64,
    ) -> Vec<Vec<Outputs>> {
        let cpu = run_steps(&self.cpu, steps, kv, self.align);
        let mut outs = Vec::new();
        for (name, gpu) in &self.gpus {
            let got = run_steps(gpu, steps, kv, self.align);
            let worst = got
                .iter()
                .flatten()
                .zip(cpu.iter().flatten())
                .map(|(a, b)| nmse(a, b))
                .fold(0f64, f64::max);
            rep.check(&format!("{label} [{name}]"), worst, tol);
            outs.push(got);
        }
        outs
    }

    /// [`Self::compare_steps`] of one step: `case` at positions `pos`.
    pub fn compare(&self, rep: &mut Report, label: &str, case: Case, pos: Vec<i32>, tol: f64) {
        self.compare_steps(rep, label, &[(case, pos)], None, tol);
    }
}
