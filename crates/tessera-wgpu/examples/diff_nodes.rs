//! Runs a model on the CPU and on a wgpu device node by node and prints,
//! for every node of every step, the NMSE of the device's output against
//! the CPU's, with the first nodes over a threshold flagged:
//! `cargo run --release -p tessera-wgpu --example diff_nodes -- model.gguf [steps] [device]`.
//!
//! `device` may be `cpu`: the CPU against itself, which with
//! `PERTURB=node[,node…]` (every value of those nodes' outputs at the first
//! step moved one ulp up or down on the second run; at every step with
//! `PERTURB_EVERY_STEP=1`) measures how far a last-bit difference carries
//! through the model. `FREE=1`: each run follows its own greedy
//! token instead of both the first's; `PROMPT=1,504,…` sets the prompt.

use std::sync::Arc;

use tessera_core::backend::{Backend, DeviceBuffer, SegmentRun};
use tessera_core::graph::{Op, StepInputs};
use tessera_core::kv::{KvCache, KvShape};
use tessera_core::placement::TensorOverride;
use tessera_core::{KvType, Model, ModelParams, Placement};

fn nmse(a: &[f32], b: &[f32]) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        num += (x as f64 - y as f64).powi(2);
        den += (y as f64).powi(2);
    }
    if num == 0.0 {
        0.0
    } else {
        num / den.max(f64::MIN_POSITIVE)
    }
}

struct Runner {
    model: Model,
    kv: KvCache,
    work: Vec<Box<dyn DeviceBuffer>>,
    /// The nodes whose output values move by one ulp (comma-separated).
    perturb: Option<String>,
}

impl Runner {
    fn new(model: Model) -> Runner {
        let hp = model.hparams();
        let shape = KvShape {
            n_ctx: 256,
            k_width: hp.n_embd_k_gqa(),
            v_width: hp.n_embd_v_gqa(),
            k_type: KvType::F16,
            v_type: KvType::F16,
        };
        let kv = KvCache::new(shape, model.layer_devices(), model.backends()).unwrap();
        let work = model
            .backends()
            .iter()
            .map(|b| b.alloc(0).unwrap())
            .collect();
        Runner {
            model,
            kv,
            work,
            perturb: None,
        }
    }

    /// Runs one step node by node; the output of each node (reading copies
    /// from the device they land on).
    fn step(&mut self, tokens: &[u32], pos0: usize) -> Vec<(String, &'static str, Vec<f32>)> {
        let n = tokens.len();
        let sched = self.model.schedule(n, 1).unwrap();
        for (d, &b) in sched.plan.arena_bytes.iter().enumerate() {
            if self.work[d].len() < b {
                self.work[d] = self.model.backends()[d].alloc(b).unwrap();
            }
        }
        let pos: Vec<i32> = (pos0..pos0 + n).map(|p| p as i32).collect();
        let out_rows = [(n - 1) as u32];
        let step = StepInputs {
            tokens,
            pos: &pos,
            out_rows: &out_rows,
        };
        let backends: Vec<Arc<dyn Backend>> = self.model.backends().to_vec();
        let mut outs = Vec::new();
        for (i, node) in sched.graph.nodes.iter().enumerate() {
            let dev = sched.node_device[i];
            if let Op::Copy { x } = node.op {
                let src = sched.plan.slot(x).unwrap();
                let dst = sched.plan.slot(node.out).unwrap();
                let mut buf = vec![0u8; sched.graph.tensor(x).len() * 4];
                self.work[src.device].read(src.offset, &mut buf).unwrap();
                self.work[dst.device].write(dst.offset, &buf).unwrap();
            } else {
                let run = SegmentRun {
                    graph: &sched.graph,
                    nodes: &[i],
                    plan: &sched.plan,
                    weights: self.model.weights().as_slice(),
                    step: &step,
                };
                backends[dev]
                    .compute(&run, self.work[dev].as_mut(), &mut self.kv)
                    .unwrap();
            }
            let s = sched.plan.slot(node.out).unwrap();
            let mut v = vec![0f32; sched.graph.tensor(node.out).len()];
            self.work[s.device]
                .read(s.offset, bytemuck::cast_slice_mut(&mut v))
                .unwrap();
            let name = sched.graph.node_name(i);
            if self
                .perturb
                .as_deref()
                .is_some_and(|p| p.split(',').any(|n| n == name))
            {
                // Every value one ulp up or down (a fixed pseudo-random
                // pattern), as another f32 summation order moves them.
                for (j, x) in v.iter_mut().enumerate() {
                    let up = (j as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 63 == 1;
                    let b = x.to_bits();
                    *x = f32::from_bits(if up || b & 0x7fff_ffff == 0 {
                        b + 1
                    } else {
                        b - 1
                    });
                }
                self.work[s.device]
                    .write(s.offset, bytemuck::cast_slice(&v))
                    .unwrap();
                if std::env::var_os("PERTURB_EVERY_STEP").is_none() {
                    self.perturb = None;
                }
            }
            outs.push((sched.graph.node_name(i).to_string(), node.op.name(), v));
        }
        self.kv.advance(n);
        outs
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).expect("model path");
    let steps: usize = args.get(2).map_or(8, |s| s.parse().unwrap());
    let dev = args.get(3).cloned().unwrap_or_else(|| "vulkan:0".into());
    tessera_wgpu::register();
    let load = |p: Placement| {
        Model::load(
            path,
            &ModelParams {
                n_threads: 2,
                placement: p,
            },
        )
        .unwrap()
    };
    let mut cpu = Runner::new(load(Placement::default()));
    let placement = match dev.as_str() {
        "cpu" => Placement::default(),
        d => Placement::default().with_override(TensorOverride::device(".", d)),
    };
    let mut gpu = Runner::new(load(placement));
    gpu.perturb = std::env::var("PERTURB").ok();
    let free = std::env::var_os("FREE").is_some();
    let prompt: Vec<u32> = std::env::var("PROMPT")
        .map_or(vec![1, 504, 3458, 282, 4649, 314], |s| {
            s.split(',').map(|t| t.trim().parse().unwrap()).collect()
        });
    let mut tokens = prompt.clone();
    let mut tokens_b = prompt;
    let mut pos = 0;
    for s in 0..steps {
        let a = cpu.step(&tokens, pos);
        let b = gpu.step(if free { &tokens_b } else { &tokens }, pos);
        let mut flagged = 0;
        let mut worst = (0f64, String::new());
        for ((name, op, x), (_, _, y)) in b.iter().zip(&a) {
            let e = nmse(x, y);
            if e > worst.0 {
                worst = (e, format!("{name} ({op})"));
            }
            // DIFF_ALL=1: every node of the first step; else the first
            // five over 1e-3 of each step.
            let all = std::env::var_os("DIFF_ALL").is_some() && s == 0 && flagged < 60;
            if all || (e > 1e-3 && flagged < 5) {
                println!("step {s}: {name} ({op}) nmse {e:.3e}");
                flagged += 1;
            }
        }
        // The best token and its lead over the second.
        let best = |l: &[f32]| {
            let (mut i1, mut v1, mut v2) = (0, f32::MIN, f32::MIN);
            for (i, &v) in l.iter().enumerate() {
                if v > v1 {
                    (i1, v1, v2) = (i, v, v1);
                } else if v > v2 {
                    v2 = v;
                }
            }
            (i1 as u32, v1 - v2)
        };
        let (next, lead) = best(&a.last().unwrap().2);
        let (la, lb) = (&a.last().unwrap().2, &b.last().unwrap().2);
        let (next_b, _) = best(lb);
        // The largest difference at the first run's 10 best tokens.
        let mut ids: Vec<usize> = (0..la.len()).collect();
        ids.sort_by(|&i, &j| la[j].total_cmp(&la[i]));
        let top10 = ids[..10.min(ids.len())]
            .iter()
            .map(|&i| (la[i] - lb[i]).abs())
            .fold(0f32, f32::max);
        println!(
            "step {s} ({} tokens at {pos}): worst {:.3e} at {}, logits {:.3e}, top-10 Δ {top10:.4}, next {next} (lead {lead:.3}) / {next_b}",
            tokens.len(),
            worst.0,
            worst.1,
            nmse(lb, la),
        );
        pos += tokens.len();
        tokens = vec![next];
        tokens_b = vec![if free { next_b } else { next }];
    }
}
