//! The scheduler: gives every node of a graph a device, cuts the graph into
//! per-device segments, inserts copies where an activation crosses devices,
//! and plans the activation buffers so that running a planned graph
//! allocates nothing.
//!
//! Rules (see `docs/ARCHITECTURE.md`):
//! - an op that reads a weight runs on that weight's device;
//! - attention runs on the device of its layer's KV cache;
//! - any other op runs where its first activation input lives;
//! - an op the chosen backend does not support falls back to device 0 (the
//!   CPU), unless it reads a weight that lives elsewhere (an error).
//!
//! Buffers: each device has one arena; an activation occupies a 64-byte
//! aligned range of it from the node that computes it to the last node that
//! reads it (the graph output to the end). Ranges are reused first-fit.

use std::collections::HashMap;
use std::sync::Arc;

use crate::backend::Backend;
use crate::error::{CoreError, Result};
use crate::graph::{Graph, Node, NodeId, Op, TensorDef, TensorId, TensorKind};
use crate::weights::Weights;

/// Alignment of every activation in an arena.
const ALIGN: usize = 64;

/// Where an activation lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Device index.
    pub device: usize,
    /// Byte offset in that device's arena.
    pub offset: usize,
    /// Bytes.
    pub bytes: usize,
}

/// Activation placement: a slot per activation tensor, arena size per device.
#[derive(Clone, Debug, Default)]
pub struct BufferPlan {
    /// Per tensor (indexed by [`TensorId`]): its slot, `None` for weights.
    pub slots: Vec<Option<Slot>>,
    /// Arena bytes each device needs.
    pub arena_bytes: Vec<usize>,
}

impl BufferPlan {
    /// The slot of `t`.
    pub fn slot(&self, t: TensorId) -> Option<Slot> {
        self.slots.get(t.0 as usize).copied().flatten()
    }

    /// The slot of the tensor named `name` in `g` (for tests and reports).
    pub fn slot_of_name(&self, g: &Graph, name: &str) -> Option<Slot> {
        let i = g.tensors.iter().position(|t| t.name == name)?;
        self.slot(TensorId(i as u32))
    }
}

/// A run of consecutive nodes on one device.
#[derive(Clone, Debug)]
pub struct Segment {
    /// The device.
    pub device: usize,
    /// Its nodes, in order.
    pub nodes: Vec<NodeId>,
    /// A cross-device copy (run by the session, not by a backend).
    pub is_copy: bool,
}

/// A graph ready to run.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The graph, with the copy nodes inserted.
    pub graph: Graph,
    /// Device of each node.
    pub node_device: Vec<usize>,
    /// The segments in execution order.
    pub segments: Vec<Segment>,
    /// Activation buffers.
    pub plan: BufferPlan,
}

/// Schedules `graph` whose weights are `weights` and whose attention layer
/// `il` has its KV cache on `kv_devices[il]`.
pub fn schedule(
    graph: Graph,
    weights: &Weights,
    kv_devices: &[usize],
    backends: &[Arc<dyn Backend>],
) -> Result<Schedule> {
    let mut g = graph;
    let old_nodes = std::mem::take(&mut g.nodes);
    let mut producer_dev: HashMap<TensorId, usize> = HashMap::new();
    let mut copies: HashMap<(TensorId, usize), TensorId> = HashMap::new();
    let mut node_device = Vec::with_capacity(old_nodes.len());
    let mut nodes = Vec::with_capacity(old_nodes.len());
    for node in old_nodes {
        let dev = choose_device(&g, &node, weights, kv_devices, &producer_dev, backends)?;
        let mut op = node.op;
        for input in node.op.inputs() {
            let Some(&src_dev) = producer_dev.get(&input) else {
                continue;
            };
            if src_dev == dev {
                continue;
            }
            let copy = *copies.entry((input, dev)).or_insert_with(|| {
                let def = g.tensor(input).clone();
                let id = TensorId(g.tensors.len() as u32);
                g.tensors.push(TensorDef {
                    name: format!("{}@{}", def.name, backends[dev].info().name),
                    ..def
                });
                nodes.push(Node {
                    op: Op::Copy { x: input },
                    out: id,
                });
                node_device.push(dev);
                id
            });
            producer_dev.insert(copy, dev);
            op = op.map_inputs(|t| if t == input { copy } else { t });
        }
        producer_dev.insert(node.out, dev);
        nodes.push(Node { op, out: node.out });
        node_device.push(dev);
    }
    g.nodes = nodes;
    let segments = cut_segments(&g, &node_device);
    let plan = plan_buffers(&g, &node_device, backends.len());
    Ok(Schedule {
        graph: g,
        node_device,
        segments,
        plan,
    })
}

fn choose_device(
    g: &Graph,
    node: &Node,
    weights: &Weights,
    kv_devices: &[usize],
    producer_dev: &HashMap<TensorId, usize>,
    backends: &[Arc<dyn Backend>],
) -> Result<usize> {
    let inputs = node.op.inputs();
    let weight_of = |t: TensorId| match g.tensor(t).kind {
        TensorKind::Weight(i) => weights.as_slice().get(i),
        TensorKind::Act(_) => None,
    };
    let ws: Vec<_> = inputs.iter().filter_map(|&t| weight_of(t)).collect();
    let types: Vec<_> = ws.iter().map(|w| w.ggml_type).collect();
    let preferred = if let Op::Attention { layer, .. } = node.op {
        *kv_devices
            .get(layer)
            .ok_or_else(|| CoreError::Config(format!("attention layer {layer} has no KV cache")))?
    } else if let Some(w) = ws.first() {
        w.device
    } else {
        inputs
            .iter()
            .find_map(|t| producer_dev.get(t).copied())
            .unwrap_or(0)
    };
    if backends[preferred].supports(&node.op, &types) {
        return Ok(preferred);
    }
    let name = &g.tensor(node.out).name;
    if let Some(w) = ws.iter().find(|w| w.device != 0) {
        return Err(CoreError::Backend {
            device: backends[preferred].info().name,
            reason: format!(
                "cannot run {} ({name}) on weight `{}` of type {:?}",
                node.op.name(),
                w.name,
                w.ggml_type
            ),
        });
    }
    if backends[0].supports(&node.op, &types) {
        return Ok(0);
    }
    match ws.first() {
        Some(w) => Err(CoreError::UnsupportedType {
            name: w.name.clone(),
            ggml_type: w.ggml_type,
            op: node.op.name(),
        }),
        None => Err(CoreError::Backend {
            device: backends[0].info().name,
            reason: format!("no backend runs {} ({name})", node.op.name()),
        }),
    }
}

fn cut_segments(g: &Graph, node_device: &[usize]) -> Vec<Segment> {
    let mut segments: Vec<Segment> = Vec::new();
    for (i, node) in g.nodes.iter().enumerate() {
        let is_copy = matches!(node.op, Op::Copy { .. });
        let dev = node_device[i];
        match segments.last_mut() {
            Some(s) if s.device == dev && !s.is_copy && !is_copy => s.nodes.push(i),
            _ => segments.push(Segment {
                device: dev,
                nodes: vec![i],
                is_copy,
            }),
        }
    }
    segments
}

/// First-fit allocator of byte ranges in one arena.
#[derive(Default)]
struct Arena {
    /// Free ranges (offset, len), sorted by offset.
    free: Vec<(usize, usize)>,
    end: usize,
}

impl Arena {
    fn alloc(&mut self, bytes: usize) -> usize {
        let bytes = bytes.div_ceil(ALIGN) * ALIGN;
        if let Some(i) = self.free.iter().position(|&(_, len)| len >= bytes) {
            let (off, len) = self.free[i];
            if len == bytes {
                self.free.remove(i);
            } else {
                self.free[i] = (off + bytes, len - bytes);
            }
            return off;
        }
        // Grow, absorbing a free range that touches the end.
        if let Some(&(off, len)) = self.free.last() {
            if off + len == self.end {
                self.free.pop();
                self.end = off + bytes;
                return off;
            }
        }
        let off = self.end;
        self.end += bytes;
        off
    }

    fn release(&mut self, off: usize, bytes: usize) {
        let bytes = bytes.div_ceil(ALIGN) * ALIGN;
        let i = self.free.partition_point(|&(o, _)| o < off);
        self.free.insert(i, (off, bytes));
        // Merge with neighbours.
        if i + 1 < self.free.len() && self.free[i].0 + self.free[i].1 == self.free[i + 1].0 {
            self.free[i].1 += self.free[i + 1].1;
            self.free.remove(i + 1);
        }
        if i > 0 && self.free[i - 1].0 + self.free[i - 1].1 == self.free[i].0 {
            self.free[i - 1].1 += self.free[i].1;
            self.free.remove(i);
        }
    }
}

fn plan_buffers(g: &Graph, node_device: &[usize], n_devices: usize) -> BufferPlan {
    let n = g.tensors.len();
    let mut last_use = vec![None::<usize>; n];
    for (i, node) in g.nodes.iter().enumerate() {
        for t in node.op.inputs() {
            last_use[t.0 as usize] = Some(i);
        }
    }
    if let Some(out) = g.output {
        last_use[out.0 as usize] = Some(usize::MAX);
    }
    let mut arenas: Vec<Arena> = (0..n_devices).map(|_| Arena::default()).collect();
    let mut slots = vec![None; n];
    for (i, node) in g.nodes.iter().enumerate() {
        let def = g.tensor(node.out);
        let bytes = (def.len() * 4).max(ALIGN);
        let dev = node_device[i];
        let offset = arenas[dev].alloc(bytes);
        slots[node.out.0 as usize] = Some(Slot {
            device: dev,
            offset,
            bytes,
        });
        // Inputs whose last reader is this node are free for the next ones.
        let mut inputs = node.op.inputs();
        inputs.dedup();
        for t in inputs {
            if last_use[t.0 as usize] == Some(i) {
                if let Some(s) = slots[t.0 as usize] {
                    arenas[s.device].release(s.offset, s.bytes);
                }
            }
        }
        // An output nobody reads is free at once (after this node).
        if last_use[node.out.0 as usize].is_none() {
            arenas[dev].release(offset, bytes);
        }
    }
    BufferPlan {
        slots,
        arena_bytes: arenas.iter().map(|a| a.end).collect(),
    }
}
