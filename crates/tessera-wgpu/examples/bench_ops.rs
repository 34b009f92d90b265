//! Times single products on a wgpu device (lavapipe's times say nothing
//! about a GPU's; this is for comparing shader variants on one device):
//! `cargo run --release -p tessera-wgpu --example bench_ops -- [device]`.

use std::sync::Arc;

use tessera_core::backend::{Backend, HostSlice, SegmentRun};
use tessera_core::graph::{ActType, Graph, Node, Op, StepInputs, TensorDef, TensorId, TensorKind};
use tessera_core::kv::{KvCache, KvShape, KvType};
use tessera_core::sched::{BufferPlan, Slot};
use tessera_core::weights::Weight;
use tessera_gguf::GgmlType;

fn main() {
    let dev = std::env::args().nth(1).unwrap_or_else(|| "vulkan:0".into());
    let b: Arc<dyn Backend> = Arc::new(tessera_wgpu::WgpuBackend::new(&dev).expect("device"));
    for (t, rows, cols, n) in [
        (GgmlType::Q4_1, 1536, 576, 1),
        (GgmlType::Q4_K, 1536, 768, 1),
        (GgmlType::Q8_0, 49152, 576, 1),
        (GgmlType::F16, 4096, 1024, 1),
        (GgmlType::Q4_1, 1536, 576, 64),
    ] {
        let bs = t.block_size() as usize;
        let bytes = vec![0x11u8; rows * cols / bs * t.type_size() as usize];
        let data = b
            .load_weight(
                "w",
                t,
                HostSlice::new(Arc::new(bytes), |v: &Vec<u8>| &v[..]),
            )
            .unwrap();
        let weights = vec![Weight {
            name: "w".into(),
            ggml_type: t,
            shape: [1, rows, cols],
            device: 0,
            data,
            parts: vec![],
        }];
        let mut g = Graph::default();
        let def = |name: &str, shape, kind| TensorDef {
            name: name.into(),
            shape,
            kind,
        };
        g.tensors
            .push(def("w", [1, rows, cols], TensorKind::Weight(0)));
        g.tensors
            .push(def("x", [1, n, cols], TensorKind::Act(ActType::F32)));
        g.tensors
            .push(def("y", [1, n, rows], TensorKind::Act(ActType::F32)));
        let reps = 20;
        for _ in 0..reps {
            g.nodes.push(Node {
                op: Op::MatMul {
                    w: TensorId(0),
                    x: TensorId(1),
                },
                out: TensorId(2),
            });
        }
        let xb = n * cols * 4;
        let plan = BufferPlan {
            slots: vec![
                None,
                Some(Slot {
                    device: 0,
                    offset: 0,
                    bytes: xb,
                }),
                Some(Slot {
                    device: 0,
                    offset: xb.next_multiple_of(256),
                    bytes: n * rows * 4,
                }),
            ],
            arena_bytes: vec![xb.next_multiple_of(256) + n * rows * 4],
        };
        let mut work = b.alloc(plan.arena_bytes[0]).unwrap();
        let backends = [b.clone()];
        let shape = KvShape {
            n_ctx: 1,
            k_width: 32,
            v_width: 32,
            k_type: KvType::F16,
            v_type: KvType::F16,
        };
        let mut kv = KvCache::new(shape, &[], &backends).unwrap();
        let tokens = vec![0u32; n];
        let pos = vec![0i32; n];
        let step = StepInputs {
            tokens: &tokens,
            pos: &pos,
            out_rows: &[0],
        };
        let nodes: Vec<usize> = (0..reps).collect();
        let run = SegmentRun {
            graph: &g,
            nodes: &nodes,
            plan: &plan,
            weights: &weights,
            step: &step,
        };
        // Warm up (compiles the pipeline), then time `reps` products in one submission.
        b.compute(&run, work.as_mut(), &mut kv).unwrap();
        let mut one = [0u8; 4];
        work.read(0, &mut one).unwrap();
        let t0 = std::time::Instant::now();
        b.compute(&run, work.as_mut(), &mut kv).unwrap();
        work.read(0, &mut one).unwrap();
        let dt = t0.elapsed() / reps as u32;
        let gbs = (rows * cols / bs * t.type_size() as usize) as f64 / dt.as_secs_f64() / 1e9;
        println!(
            "{t:?} [{rows}, {cols}] x {n} tokens: {dt:.2?} per product ({gbs:.2} GB/s of weights)"
        );
    }
}
