//! Running a segment: every node of the segment becomes one or more
//! dispatches recorded into **one** command encoder and one compute pass,
//! submitted once (wgpu orders the dispatches and puts the barriers between
//! them). The step's token ids, positions and output rows go to a small
//! storage buffer and every dispatch's parameters to one uniform buffer,
//! both written once per segment.
//!
//! Binding: an activation is bound as a window of the arena that starts at
//! its slot rounded down to the device's offset alignment (the shader gets
//! the rest as an element offset); a weight read by rows is bound in
//! windows of whole rows no larger than the binding limit, one dispatch per
//! window (one for every tensor that fits, several for large embeddings and
//! expert stacks).

use std::sync::Arc;

use tessera_core::backend::cpu::ops::{rope::yarn_corr_dims, RopeMode, RopeParams};
use tessera_core::backend::{SegmentRun, WeightData};
use tessera_core::graph::{Glu, Op, TensorId, TensorKind, Unary};
use tessera_core::kv::{KvCache, KvType};
use tessera_gguf::GgmlType;

use crate::buffer::{DeviceWeight, WgpuBuffer};
use crate::device::Gpu;
use crate::error::{Result, WgpuError};
use crate::pipelines::{self as k, Cache, Kernel, Pipe, WG};

/// Tokens per matmul workgroup (`TN` in `matmul.wgsl`).
const MATMUL_TN: u32 = 4;
/// Largest `k` of the top-k kernel (`MAX_K` in `routing.wgsl`).
pub const MAX_TOP_K: usize = 64;
/// Largest head of the attention kernel (`MAX_HD` in `attention.wgsl`).
pub const MAX_HEAD_DIM: usize = 1024;
/// Largest workgroup count along one dimension that every device accepts.
const MAX_GROUPS: u32 = 65535;

/// A byte range of a buffer bound to one binding.
#[derive(Clone)]
pub(crate) struct View {
    buf: wgpu::Buffer,
    start: u64,
    size: u64,
}

/// One recorded dispatch.
struct Dispatch {
    pipe: Arc<Pipe>,
    params: u64,
    params_len: u64,
    views: Vec<View>,
    groups: [u32; 3],
}

/// Buffers reused from segment to segment.
pub(crate) struct Scratch {
    params: Option<wgpu::Buffer>,
    step: Option<wgpu::Buffer>,
    dummy: wgpu::Buffer,
    /// Rounded activations of the product being computed.
    act: Option<wgpu::Buffer>,
}

impl Scratch {
    pub(crate) fn new(gpu: &Gpu) -> Result<Scratch> {
        Ok(Scratch {
            params: None,
            step: None,
            dummy: gpu.storage_buffer("tessera dummy", 256)?,
            act: None,
        })
    }
}

/// Parameters of one dispatch: 32-bit words in the shader's struct order.
#[derive(Default)]
struct Params(Vec<u32>);

impl Params {
    fn u(mut self, v: usize) -> Self {
        self.0.push(v as u32);
        self
    }
    fn f(mut self, v: f32) -> Self {
        self.0.push(v.to_bits());
        self
    }
}

/// The parameters of an `ew.wgsl` kernel besides the offsets.
#[derive(Default)]
struct Ew {
    op: usize,
    blen: usize,
    cols: usize,
    s: f32,
    k: usize,
    start: usize,
    len: usize,
    hd: usize,
    la: usize,
    lb: usize,
}

fn p() -> Params {
    Params::default()
}

/// Workgroups for `n` units: `(x, y)` with `x * y >= n`, both at most 65535.
fn grid(n: usize) -> (u32, u32) {
    let n = n.max(1) as u64;
    let x = n.min(MAX_GROUPS as u64);
    let y = n.div_ceil(x);
    (x as u32, y as u32)
}

/// Records the dispatches of a segment, then runs them.
pub(crate) struct Exec<'a> {
    gpu: &'a Gpu,
    cache: &'a Cache,
    run: &'a SegmentRun<'a>,
    work: &'a WgpuBuffer,
    dummy: View,
    step_view: View,
    tok_off: usize,
    pos_off: usize,
    rows_off: usize,
    dispatches: Vec<Dispatch>,
    params: Vec<u8>,
    param_align: usize,
    node: usize,
    /// The scratch buffer of rounded activations (grown on demand; the
    /// dispatches recorded before a growth keep the old one alive).
    act: Option<wgpu::Buffer>,
}

/// The step's ids as one u32 array: tokens, then positions, then output rows.
fn step_words(run: &SegmentRun<'_>) -> (Vec<u32>, usize, usize, usize) {
    let s = run.step;
    let mut v = Vec::with_capacity(s.tokens.len() + s.pos.len() + s.out_rows.len() + 1);
    v.extend_from_slice(s.tokens);
    let pos_off = v.len();
    v.extend(s.pos.iter().map(|&p| p as u32));
    let rows_off = v.len();
    v.extend_from_slice(s.out_rows);
    v.push(0);
    (v, 0, pos_off, rows_off)
}

/// Runs `run` on `gpu` with activations in `work` and the KV cache `kv`.
pub(crate) fn compute(
    gpu: &Gpu,
    cache: &Cache,
    scratch: &mut Scratch,
    run: &SegmentRun<'_>,
    work: &WgpuBuffer,
    kv: &mut KvCache,
    profile: Option<&Profile>,
) -> Result<()> {
    let (words, tok_off, pos_off, rows_off) = step_words(run);
    let step_bytes = (words.len() * 4) as u64;
    if scratch.step.as_ref().is_none_or(|b| b.size() < step_bytes) {
        scratch.step = Some(gpu.storage_buffer("tessera step", step_bytes.next_power_of_two())?);
    }
    let step = scratch
        .step
        .clone()
        .ok_or_else(|| gpu.err("no step buffer".into()))?;
    gpu.write(&step, 0, bytemuck::cast_slice(&words));
    let mut ex = Exec {
        gpu,
        cache,
        run,
        work,
        dummy: View {
            buf: scratch.dummy.clone(),
            start: 0,
            size: 256,
        },
        step_view: View {
            buf: step,
            start: 0,
            size: step_bytes,
        },
        tok_off,
        pos_off,
        rows_off,
        dispatches: Vec::new(),
        params: Vec::new(),
        param_align: (gpu.limits.min_uniform_buffer_offset_alignment as usize).max(16),
        node: 0,
        act: scratch.act.take(),
    };
    let sync = sync_per_node();
    for &n in run.nodes {
        ex.node = n;
        let t0 = sync.then(std::time::Instant::now);
        ex.record(n, kv)?;
        if let Some(t0) = t0 {
            ex.submit(scratch)?;
            gpu.wait()?;
            if let Some(p) = profile {
                // The node's name without its layer: `ffn_up-7` → `ffn_up`.
                let name = run.graph.node_name(n);
                let base = name
                    .rsplit_once('-')
                    .filter(|(_, l)| l.chars().all(|c| c.is_ascii_digit()))
                    .map_or(name, |(b, _)| b);
                p.add(run.graph.nodes[n].op.name(), base, t0.elapsed());
            }
        }
    }
    let r = ex.submit(scratch);
    scratch.act = ex.act.take();
    r
}

/// How the CPU rounds the activations of a product with weights of type
/// `t` (its dot kernel's activation type): the `act_round.wgsl` mode and
/// block size, `None` when it keeps them in f32.
fn act_mode(t: GgmlType) -> Option<(u32, u32)> {
    let act = tessera_quant::kernels::dot_entry(t)?.act;
    match act {
        GgmlType::F16 => Some((1, 32)),
        GgmlType::BF16 => Some((2, 32)),
        GgmlType::Q8_0 | GgmlType::Q8_1 => Some((3, 32)),
        GgmlType::Q8_K => Some((4, 256)),
        _ => None,
    }
}

/// `TESSERA_WGPU_SYNC=1` (or `TESSERA_WGPU_PROFILE=1`): submit and wait
/// after every node instead of once per segment (to time ops, or to rule
/// out a missing barrier).
fn sync_per_node() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        ["TESSERA_WGPU_SYNC", "TESSERA_WGPU_PROFILE"]
            .iter()
            .any(|k| std::env::var_os(k).is_some_and(|v| v != "0"))
    })
}

/// Time per op name, printed when the backend is dropped
/// (`TESSERA_WGPU_PROFILE=1`).
#[derive(Default)]
pub(crate) struct Profile {
    by_op: std::sync::Mutex<Vec<(String, std::time::Duration, usize)>>,
}

impl Profile {
    /// Whether `TESSERA_WGPU_PROFILE` is set.
    pub(crate) fn enabled() -> bool {
        std::env::var_os("TESSERA_WGPU_PROFILE").is_some_and(|v| v != "0")
    }

    fn add(&self, op: &'static str, node: &str, t: std::time::Duration) {
        let key = format!("{op} {node}");
        let mut v = self.by_op.lock().unwrap_or_else(|e| e.into_inner());
        match v.iter_mut().find(|(o, _, _)| *o == key) {
            Some(e) => {
                e.1 += t;
                e.2 += 1;
            }
            None => v.push((key, t, 1)),
        }
    }

    /// The table, slowest op first.
    pub(crate) fn report(&self, device: &str) -> Option<String> {
        let mut v = self.by_op.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by_key(|e| std::cmp::Reverse(e.1));
        let total: std::time::Duration = v.iter().map(|e| e.1).sum();
        let mut out = format!("tessera-wgpu profile of {device} (submit and wait per node):\n");
        for (op, t, n) in v {
            out.push_str(&format!(
                "  {op:<28} {:>10.1?} {:>5.1}% {n:>7} calls\n",
                t,
                100.0 * t.as_secs_f64() / total.as_secs_f64().max(1e-12)
            ));
        }
        Some(out)
    }
}

impl Exec<'_> {
    fn op_err(&self, reason: String) -> WgpuError {
        let node = &self.run.graph.nodes[self.node];
        WgpuError::Op {
            device: self.gpu.name.clone(),
            op: node.op.name(),
            node: self.run.graph.node_name(self.node).to_string(),
            reason,
        }
    }

    fn shape(&self, t: TensorId) -> [usize; 3] {
        self.run.graph.tensor(t).shape
    }

    fn len(&self, t: TensorId) -> usize {
        self.run.graph.tensor(t).len()
    }

    fn cols(&self, t: TensorId) -> usize {
        self.run.graph.tensor(t).cols()
    }

    /// A window of `buf` covering bytes `a..a + n`, and `a`'s offset in it.
    fn window(&self, buf: &wgpu::Buffer, a: u64, n: u64, what: &str) -> Result<(View, u64)> {
        self.window_max(buf, a, n, what, self.gpu.max_binding())
    }

    /// [`Self::window`] of at most `max` bytes.
    fn window_max(
        &self,
        buf: &wgpu::Buffer,
        a: u64,
        n: u64,
        what: &str,
        max: u64,
    ) -> Result<(View, u64)> {
        let align = self.gpu.binding_align();
        let start = a - a % align;
        let size = (a + n - start)
            .max(4)
            .next_multiple_of(4)
            .min(buf.size() - start);
        if size > max {
            return Err(WgpuError::TooLarge {
                device: self.gpu.name.clone(),
                what: format!("binding {what}"),
                bytes: size,
                limit: max,
            });
        }
        Ok((
            View {
                buf: buf.clone(),
                start,
                size,
            },
            a - start,
        ))
    }

    /// The device weight behind tensor `t`.
    fn weight(&self, t: TensorId) -> Result<(&DeviceWeight, [usize; 3])> {
        let def = self.run.graph.tensor(t);
        let TensorKind::Weight(i) = def.kind else {
            return Err(self.op_err(format!("{} is not a weight", def.name)));
        };
        let w = self
            .run
            .weights
            .get(i)
            .ok_or_else(|| self.op_err(format!("no weight {i}")))?;
        match &w.data {
            WeightData::Device(b) => b
                .downcast_ref::<DeviceWeight>()
                .map(|d| (d, w.shape))
                .ok_or_else(|| self.op_err(format!("weight {} is not on a wgpu device", w.name))),
            WeightData::Host(_) => Err(self.op_err(format!(
                "weight {} is in host memory, not on {}",
                w.name, self.gpu.name
            ))),
        }
    }

    /// Tensor `t` (an activation, or an F32 weight) as a binding and the
    /// element offset of its first value in it.
    fn tensor(&self, t: TensorId) -> Result<(View, usize)> {
        let def = self.run.graph.tensor(t);
        let bytes = (def.len() * 4) as u64;
        match def.kind {
            TensorKind::Act(_) => {
                let slot = self
                    .run
                    .plan
                    .slot(t)
                    .ok_or_else(|| self.op_err(format!("{} has no buffer", def.name)))?;
                if slot.offset as u64 + bytes > self.work.len as u64 {
                    return Err(self.op_err(format!("{} lies outside the arena", def.name)));
                }
                let (v, off) = self.window(&self.work.buf, slot.offset as u64, bytes, &def.name)?;
                Ok((v, (off / 4) as usize))
            }
            TensorKind::Weight(_) => {
                let (w, _) = self.weight(t)?;
                if w.ggml_type != GgmlType::F32 {
                    return Err(self.op_err(format!(
                        "{} is {:?}; this op reads F32 weights",
                        w.name, w.ggml_type
                    )));
                }
                let (c, off) = w
                    .chunk_for(0, bytes)
                    .ok_or_else(|| self.op_err(format!("{} is split", w.name)))?;
                let (v, o) = self.window(&c.buf, off, bytes, &w.name)?;
                Ok((v, (o / 4) as usize))
            }
        }
    }

    /// The optional tensor `t`, or the dummy buffer.
    fn opt_tensor(&self, t: Option<TensorId>) -> Result<(View, usize, bool)> {
        match t {
            Some(t) => {
                let (v, o) = self.tensor(t)?;
                Ok((v, o, true))
            }
            None => Ok((self.dummy.clone(), 0, false)),
        }
    }

    /// Windows of whole rows of weight `w` (rows of `row_bytes` bytes,
    /// `n_rows` of them): `(binding, byte offset of the first row in it,
    /// first row, rows)`.
    fn row_windows(
        &self,
        w: &DeviceWeight,
        row_bytes: usize,
        n_rows: usize,
    ) -> Result<Vec<(View, u64, usize, usize)>> {
        let rb = row_bytes as u64;
        let align = self.gpu.binding_align();
        let max = self.gpu.max_weight_binding();
        let cap = max.saturating_sub(align + 4);
        let per = (cap / rb.max(1)) as usize;
        if per == 0 {
            return Err(self.op_err(format!(
                "a row of {} ({row_bytes} bytes) exceeds the binding limit",
                w.name
            )));
        }
        if (n_rows as u64) * rb > w.bytes {
            return Err(self.op_err(format!(
                "{} has {} bytes, fewer than {n_rows} rows of {row_bytes}",
                w.name, w.bytes
            )));
        }
        let mut out = Vec::new();
        let mut r0 = 0usize;
        while r0 < n_rows {
            let a = r0 as u64 * rb;
            let c = w
                .chunks
                .iter()
                .rev()
                .find(|c| a >= c.start && a + rb <= c.start + c.len)
                .ok_or_else(|| self.op_err(format!("row {r0} of {} is in no chunk", w.name)))?;
            let in_chunk = ((c.start + c.len - a) / rb) as usize;
            let nr = per.min(n_rows - r0).min(in_chunk);
            let (v, off) = self.window_max(&c.buf, a - c.start, nr as u64 * rb, &w.name, max)?;
            out.push((v, off, r0, nr));
            r0 += nr;
        }
        Ok(out)
    }

    /// Queues one dispatch of `kernel` (weight type `t`).
    fn dispatch(
        &mut self,
        kernel: &Kernel,
        t: Option<GgmlType>,
        params: Params,
        views: Vec<View>,
        groups: [u32; 3],
    ) -> Result<()> {
        if views.len() != kernel.bindings.len() {
            return Err(self.op_err(format!(
                "{}.{}: {} bindings given, {} expected",
                kernel.file,
                kernel.entry,
                views.len(),
                kernel.bindings.len()
            )));
        }
        if groups.contains(&0) {
            return Ok(());
        }
        let pipe = self.cache.get(self.gpu, kernel, t)?;
        let at = self.params.len().next_multiple_of(self.param_align);
        self.params.resize(at, 0);
        let mut words = params.0;
        words.resize(words.len().next_multiple_of(4).max(4), 0);
        self.params.extend_from_slice(bytemuck::cast_slice(&words));
        self.dispatches.push(Dispatch {
            pipe,
            params: at as u64,
            params_len: (words.len() * 4) as u64,
            views,
            groups,
        });
        Ok(())
    }

    /// A per-element kernel over `n` values: its grid and x stride.
    fn elementwise(n: usize) -> ([u32; 3], usize) {
        let (x, y) = grid(n.div_ceil(WG as usize));
        ([x, y, 1], x as usize * WG as usize)
    }

    /// Submits the dispatches recorded so far in one encoder.
    fn submit(&mut self, scratch: &mut Scratch) -> Result<()> {
        if self.dispatches.is_empty() {
            return Ok(());
        }
        let gpu = self.gpu;
        let bytes = self.params.len() as u64;
        if scratch.params.as_ref().is_none_or(|b| b.size() < bytes) {
            scratch.params = Some(gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("tessera params"),
                size: bytes.next_power_of_two().max(4096),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        let pbuf = scratch
            .params
            .as_ref()
            .ok_or_else(|| gpu.err("no parameter buffer".into()))?;
        gpu.write(pbuf, 0, &self.params);
        let groups: Vec<wgpu::BindGroup> = self
            .dispatches
            .iter()
            .map(|d| {
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: pbuf,
                        offset: d.params,
                        size: std::num::NonZeroU64::new(d.params_len),
                    }),
                }];
                for (i, v) in d.views.iter().enumerate() {
                    entries.push(wgpu::BindGroupEntry {
                        binding: i as u32 + 1,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &v.buf,
                            offset: v.start,
                            size: std::num::NonZeroU64::new(v.size),
                        }),
                    });
                }
                gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout: &d.pipe.layout,
                    entries: &entries,
                })
            })
            .collect();
        let mut enc = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("tessera segment"),
            });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("tessera segment"),
                timestamp_writes: None,
            });
            for (d, bg) in self.dispatches.iter().zip(&groups) {
                pass.set_pipeline(&d.pipe.pipeline);
                pass.set_bind_group(0, bg, &[]);
                pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
            }
        }
        gpu.queue.submit([enc.finish()]);
        self.dispatches.clear();
        self.params.clear();
        gpu.check("running a segment")
    }

    fn record(&mut self, n: usize, kv: &mut KvCache) -> Result<()> {
        let node = self.run.graph.nodes[n].clone();
        let out = node.out;
        match node.op {
            Op::Embed { table } => self.embed(table, out),
            Op::MatMul { w, x } => {
                let [_, rows, cols] = self.weight(w)?.1;
                self.matmul(w, x, out, rows, cols, 1, 0)
            }
            Op::MatMulHeads { w, x } => {
                let [n_heads, rows, cols] = self.weight(w)?.1;
                self.matmul(w, x, out, rows, cols, n_heads, cols)
            }
            Op::MatMulId { w, x, ids } => self.matmul_id(w, x, ids, out),
            Op::Add { a, b } => self.binary(0, a, b, out),
            Op::Mul { a, b } => self.binary(1, a, b, out),
            Op::Div { a, b } => self.binary(2, a, b, out),
            Op::Scale { x, s } => self.unary(0, s, x, out),
            Op::Unary { x, f } => {
                let code = match f {
                    Unary::Silu => 1,
                    Unary::Gelu => 2,
                    Unary::GeluErf => 3,
                    Unary::Tanh => 4,
                    Unary::Sigmoid => 5,
                };
                self.unary(code, 0.0, x, out)
            }
            Op::Glu { gate, up, f } => {
                let code = match f {
                    Glu::SwiGlu => 0,
                    Glu::GeGlu => 1,
                    Glu::SwiGluOai => 2,
                };
                if self.len(up) != self.len(gate) || self.len(out) != self.len(gate) {
                    return Err(self.op_err(format!(
                        "gate {:?}, up {:?}",
                        self.shape(gate),
                        self.shape(up)
                    )));
                }
                let e = Ew {
                    op: code,
                    s: 1.702,
                    ..Ew::default()
                };
                self.ew(&k::GLU, gate, Some(up), None, out, e)
            }
            Op::RmsNorm { x, w, group, eps } => {
                self.norm(&k::RMS_NORM, x, w, None, group, eps, out)
            }
            Op::LayerNorm {
                x,
                w,
                b,
                group,
                eps,
            } => self.norm(&k::LAYER_NORM, x, w, b, group, eps, out),
            Op::Rope {
                x,
                n_heads,
                head_dim,
                cfg,
            } => self.rope(x, n_heads, head_dim, &cfg, out),
            Op::Attention {
                q,
                k: kk,
                v,
                layer,
                cfg,
            } => self.attention(q, kk, v, layer, &cfg, out, kv),
            Op::SelectRows { x } => {
                let (xv, xo) = self.tensor(x)?;
                let (yv, yo) = self.tensor(out)?;
                let n = self.len(out);
                let (g, sx) = Self::elementwise(n);
                let prm = p().u(n).u(self.cols(x)).u(xo).u(yo).u(self.rows_off).u(sx);
                let step = self.step_view.clone();
                self.dispatch(&k::SELECT_ROWS, None, prm, vec![xv, step, yv], g)
            }
            Op::Copy { .. } => Err(self.op_err("copies are run by the session".into())),
            Op::Softmax { x } => {
                let (xv, xo) = self.tensor(x)?;
                let (yv, yo) = self.tensor(out)?;
                let cols = self.cols(x);
                let rows = self.len(x) / cols.max(1);
                let (gx, gy) = grid(rows);
                let prm = p().u(cols).u(rows).u(xo).u(yo).u(gx as usize);
                self.dispatch(&k::SOFTMAX, None, prm, vec![xv, yv], [gx, gy, 1])
            }
            Op::TopK { x, k: kk } => {
                if kk == 0 || kk > MAX_TOP_K || kk > self.cols(x) {
                    return Err(
                        self.op_err(format!("k = {kk} (at most {MAX_TOP_K} and the row length)"))
                    );
                }
                self.routing(&k::TOP_K, x, out, kk, 0.0, 0, 0)
            }
            Op::NormSum { x, min_sum } => self.routing(&k::NORM_SUM, x, out, 0, min_sum, 0, 0),
            Op::GroupMask {
                x,
                n_groups,
                n_used,
            } => {
                let cols = self.cols(x);
                if n_groups == 0
                    || n_groups > MAX_TOP_K
                    || !cols.is_multiple_of(n_groups)
                    || cols / n_groups < 2
                    || n_used > n_groups
                {
                    return Err(self.op_err(format!(
                        "{cols} experts in {n_groups} groups, {n_used} used"
                    )));
                }
                self.routing(&k::GROUP_MASK, x, out, 0, 0.0, n_groups, n_used)
            }
            Op::GatherCols { x, ids } => {
                let cols = self.cols(x);
                let rows = self.len(x) / cols.max(1);
                if self.len(ids) != self.len(out)
                    || rows == 0
                    || !self.len(ids).is_multiple_of(rows)
                {
                    return Err(self.op_err(format!("{} ids for {rows} rows", self.len(ids))));
                }
                let e = Ew {
                    cols,
                    k: self.len(ids) / rows,
                    ..Ew::default()
                };
                self.ew(&k::GATHER_COLS, x, Some(ids), None, out, e)
            }
            Op::AddId { x, b, ids } => {
                let cols = self.cols(x);
                if self.len(ids) * cols != self.len(x) || self.cols(b) != cols {
                    return Err(self.op_err(format!(
                        "x {:?}, b {:?}, ids {:?}",
                        self.shape(x),
                        self.shape(b),
                        self.shape(ids)
                    )));
                }
                let e = Ew {
                    cols,
                    ..Ew::default()
                };
                self.ew(&k::ADD_ID, x, Some(b), Some(ids), out, e)
            }
            Op::MoeSum { x, w } => {
                let kk = self.cols(w);
                let cols = self.cols(out);
                if self.len(x) != self.len(w) * cols || self.len(out) * kk != self.len(x) {
                    return Err(self.op_err(format!(
                        "x {:?}, w {:?}, out {:?}",
                        self.shape(x),
                        self.shape(w),
                        self.shape(out)
                    )));
                }
                let e = Ew {
                    cols,
                    k: kk,
                    ..Ew::default()
                };
                self.ew(&k::MOE_SUM, x, Some(w), None, out, e)
            }
            Op::MulRows { x, s } => {
                let rows = self.len(s);
                if rows == 0 || !self.len(x).is_multiple_of(rows) {
                    return Err(self.op_err(format!("{} values for {rows} rows", self.len(x))));
                }
                let e = Ew {
                    cols: self.len(x) / rows,
                    ..Ew::default()
                };
                self.ew(&k::MUL_ROWS, x, Some(s), None, out, e)
            }
            Op::SliceHeads {
                x,
                n_heads: _,
                head_dim,
                start,
                len,
            } => {
                if len == 0 || start + len > head_dim {
                    return Err(
                        self.op_err(format!("columns {start}..{} of {head_dim}", start + len))
                    );
                }
                let e = Ew {
                    start,
                    len,
                    hd: head_dim,
                    ..Ew::default()
                };
                self.ew(&k::SLICE_HEADS, x, None, None, out, e)
            }
            Op::ConcatHeads { a, b, n_heads } => {
                let nh = n_heads.max(1);
                let la = self.cols(a) / nh;
                let lb = self.cols(b) / nh;
                if la == 0 || lb == 0 || self.len(out) != self.len(a) + self.len(b) {
                    return Err(
                        self.op_err(format!("heads of {la} and {lb} into {:?}", self.shape(out)))
                    );
                }
                let e = Ew {
                    la,
                    lb,
                    ..Ew::default()
                };
                self.ew(&k::CONCAT_HEADS, a, Some(b), None, out, e)
            }
        }
    }

    /// `Y = A op B`, `B` one row broadcast or A's shape.
    fn binary(&mut self, op: usize, a: TensorId, b: TensorId, out: TensorId) -> Result<()> {
        let (na, nb) = (self.len(a), self.len(b));
        if nb == 0 || (nb != na && !na.is_multiple_of(nb)) || self.len(out) != na {
            return Err(self.op_err(format!("b has {nb} values for a's {na}")));
        }
        let e = Ew {
            op,
            blen: nb,
            ..Ew::default()
        };
        self.ew(&k::BINARY, a, Some(b), None, out, e)
    }

    fn unary(&mut self, op: usize, s: f32, x: TensorId, out: TensorId) -> Result<()> {
        if self.len(x) != self.len(out) {
            return Err(self.op_err(format!("{:?} into {:?}", self.shape(x), self.shape(out))));
        }
        let e = Ew {
            op,
            s,
            ..Ew::default()
        };
        self.ew(&k::UNARY, x, None, None, out, e)
    }

    /// An `ew.wgsl` kernel over the values of `out`.
    fn ew(
        &mut self,
        kernel: &Kernel,
        a: TensorId,
        b: Option<TensorId>,
        c: Option<TensorId>,
        out: TensorId,
        e: Ew,
    ) -> Result<()> {
        let (av, ao) = self.tensor(a)?;
        let (bv, bo, _) = self.opt_tensor(b)?;
        let (cv, co, _) = self.opt_tensor(c)?;
        let (yv, yo) = self.tensor(out)?;
        let n = self.len(out);
        let (g, sx) = Self::elementwise(n);
        let prm = p()
            .u(n)
            .u(e.op)
            .u(e.blen.max(1))
            .u(e.cols.max(1))
            .u(ao)
            .u(bo)
            .u(co)
            .u(yo)
            .f(e.s)
            .u(e.k.max(1))
            .u(e.start)
            .u(e.len.max(1))
            .u(e.hd)
            .u(e.la)
            .u(e.lb)
            .u(sx);
        self.dispatch(kernel, None, prm, vec![av, bv, cv, yv], g)
    }

    #[allow(clippy::too_many_arguments)]
    fn norm(
        &mut self,
        kernel: &Kernel,
        x: TensorId,
        w: Option<TensorId>,
        b: Option<TensorId>,
        group: usize,
        eps: f32,
        out: TensorId,
    ) -> Result<()> {
        let n = self.len(x);
        if group == 0 || !n.is_multiple_of(group) {
            return Err(self.op_err(format!("{n} values in groups of {group}")));
        }
        for t in [w, b].into_iter().flatten() {
            if self.len(t) != group {
                return Err(self.op_err(format!(
                    "weight has {} values for groups of {group}",
                    self.len(t)
                )));
            }
        }
        let (xv, xo) = self.tensor(x)?;
        let (wv, wo, hw) = self.opt_tensor(w)?;
        let (bv, bo, hb) = self.opt_tensor(b)?;
        let (yv, yo) = self.tensor(out)?;
        let n_groups = n / group;
        let (gx, gy) = grid(n_groups);
        let prm = p()
            .u(group)
            .u(n_groups)
            .f(eps)
            .u(xo)
            .u(wo)
            .u(bo)
            .u(yo)
            .u(hw as usize)
            .u(hb as usize)
            .u(gx as usize);
        self.dispatch(kernel, None, prm, vec![xv, wv, bv, yv], [gx, gy, 1])
    }

    #[allow(clippy::too_many_arguments)]
    fn routing(
        &mut self,
        kernel: &Kernel,
        x: TensorId,
        out: TensorId,
        kk: usize,
        min_sum: f32,
        n_groups: usize,
        n_used: usize,
    ) -> Result<()> {
        let cols = self.cols(x);
        let rows = self.len(x) / cols.max(1);
        if rows > (MAX_GROUPS * WG) as usize {
            return Err(self.op_err(format!("{rows} rows")));
        }
        let (xv, xo) = self.tensor(x)?;
        let (yv, yo) = self.tensor(out)?;
        let prm = p()
            .u(rows)
            .u(cols)
            .u(kk)
            .u(xo)
            .u(yo)
            .f(min_sum)
            .u(n_groups)
            .u(n_used);
        let g = [rows.div_ceil(WG as usize) as u32, 1, 1];
        self.dispatch(kernel, None, prm, vec![xv, yv], g)
    }

    /// The activations `x` of a product with `t` weights, as the product
    /// reads them, and where the block sums are (element offset in the
    /// same binding; 0 when the type has none): rounded like the CPU's
    /// into the scratch buffer (rows of `cols` values, then for Q4_1/Q5_1
    /// one sum per block of 32), or `x` itself.
    fn product_input(
        &mut self,
        x: TensorId,
        t: GgmlType,
        cols: usize,
    ) -> Result<(View, usize, usize)> {
        let with_s = crate::dequant::has_min_s(t);
        let mode = match act_mode(t) {
            Some(m) if self.gpu.opts.cpu_activations => m,
            _ if with_s => (0, 32),
            _ => {
                let (xv, xo) = self.tensor(x)?;
                return Ok((xv, xo, 0));
            }
        };
        let (xv, xo) = self.tensor(x)?;
        let n = self.len(x);
        let bs = mode.1 as usize;
        if cols == 0 || !n.is_multiple_of(cols) || (bs > 32 && !cols.is_multiple_of(bs)) {
            return Err(self.op_err(format!("{n} activations in rows of {cols}")));
        }
        let rows = n / cols;
        let blocks = rows * cols.div_ceil(bs);
        let bytes = ((n + if with_s { blocks } else { 0 }) * 4) as u64;
        if self.act.as_ref().is_none_or(|b| b.size() < bytes) {
            self.act = Some(self.gpu.storage_buffer(
                "tessera activations",
                bytes.next_power_of_two().max(1 << 16),
            )?);
        }
        let act = self
            .act
            .clone()
            .ok_or_else(|| self.op_err("no scratch".into()))?;
        let (av, _) = self.window(&act, 0, bytes, "rounded activations")?;
        let (g, sx) = Self::elementwise(blocks);
        let prm = p()
            .u(rows)
            .u(cols)
            .u(xo)
            .u(0)
            .u(mode.0 as usize)
            .u(bs)
            .u(blocks)
            .u(sx)
            .u(with_s as usize);
        self.dispatch(&k::ACT_ROUND, None, prm, vec![xv, av.clone()], g)?;
        Ok((av, 0, if with_s { n } else { 0 }))
    }

    fn embed(&mut self, table: TensorId, out: TensorId) -> Result<()> {
        let (w, [_, rows, cols]) = self.weight(table)?;
        let t = w.ggml_type;
        let rb =
            tessera_quant::matmul::row_bytes(t, cols).map_err(|e| self.op_err(e.to_string()))?;
        let n = self.run.step.tokens.len();
        if self.len(out) != n * cols {
            return Err(self.op_err(format!(
                "{} outputs for {n} tokens of {cols}",
                self.len(out)
            )));
        }
        if let Some(&bad) = self.run.step.tokens.iter().find(|&&id| id as usize >= rows) {
            return Err(self.op_err(format!("token id {bad}, the table has {rows} rows")));
        }
        let windows = self.row_windows(w, rb, rows)?;
        let (yv, yo) = self.tensor(out)?;
        let groups = cols.div_ceil(4);
        for (wv, off, r0, nr) in windows {
            let prm = p()
                .u(nr)
                .u(r0)
                .u(cols)
                .u(rb)
                .u(off as usize)
                .u(n)
                .u(self.tok_off)
                .u(yo)
                .u(groups);
            let g = [groups.div_ceil(WG as usize) as u32, n as u32, 1];
            let views = vec![wv, self.step_view.clone(), yv.clone()];
            self.dispatch(&k::GET_ROWS, Some(t), prm, views, g)?;
        }
        Ok(())
    }

    /// `out = x · wᵀ` for a stack of `n_mat` matrices of `rows × cols`
    /// (matrix `m` reads `x` values from `m * x_mat_stride`).
    #[allow(clippy::too_many_arguments)]
    fn matmul(
        &mut self,
        wt: TensorId,
        x: TensorId,
        out: TensorId,
        rows: usize,
        cols: usize,
        n_mat: usize,
        x_mat_stride: usize,
    ) -> Result<()> {
        let (w, _) = self.weight(wt)?;
        let t = w.ggml_type;
        let rb =
            tessera_quant::matmul::row_bytes(t, cols).map_err(|e| self.op_err(e.to_string()))?;
        let x_stride = cols * n_mat;
        let n = self.len(x) / x_stride.max(1);
        if n * x_stride != self.len(x) || self.len(out) != n * rows * n_mat {
            return Err(self.op_err(format!(
                "x {:?}, out {:?} for {n_mat} × [{rows}, {cols}]",
                self.shape(x),
                self.shape(out)
            )));
        }
        let windows = self.row_windows(w, rb, rows * n_mat)?;
        let (xv, xo, so) = self.product_input(x, t, cols)?;
        let (yv, yo) = self.tensor(out)?;
        let z = n.div_ceil(MATMUL_TN as usize) as u32;
        for (wv, off, r0, nr) in windows {
            let (gx, gy) = grid(nr.div_ceil(self.gpu.matmul_rows_per_wg()));
            let prm = p()
                .u(nr)
                .u(r0)
                .u(cols)
                .u(rb)
                .u(off as usize)
                .u(n)
                .u(xo)
                .u(x_stride)
                .u(yo)
                .u(rows * n_mat)
                .u(rows)
                .u(x_mat_stride)
                .u(gx as usize)
                .u(0)
                .u(1)
                .u(0)
                .u(0)
                .u(so);
            let views = vec![wv, xv.clone(), yv.clone()];
            self.dispatch(&k::MATMUL, Some(t), prm, views, [gx, gy, z])?;
        }
        Ok(())
    }

    fn matmul_id(&mut self, wt: TensorId, x: TensorId, ids: TensorId, out: TensorId) -> Result<()> {
        let (w, [n_expert, rows, cols]) = self.weight(wt)?;
        let t = w.ggml_type;
        let rb =
            tessera_quant::matmul::row_bytes(t, cols).map_err(|e| self.op_err(e.to_string()))?;
        let kk = self.cols(ids);
        let n = self.len(ids) / kk.max(1);
        let slots = n * kk;
        let x_rows = self.len(x) / cols.max(1);
        let x_per_slot = x_rows == slots;
        if (!x_per_slot && x_rows != n) || self.len(out) != slots * rows {
            return Err(self.op_err(format!(
                "x {:?}, ids {:?}, out {:?} for {n_expert} experts of [{rows}, {cols}]",
                self.shape(x),
                self.shape(ids),
                self.shape(out)
            )));
        }
        let windows = self.row_windows(w, rb, rows * n_expert)?;
        let (xv, xo, so) = self.product_input(x, t, cols)?;
        let (iv, io) = self.tensor(ids)?;
        let (yv, yo) = self.tensor(out)?;
        let z = slots.div_ceil(MATMUL_TN as usize) as u32;
        let (gx, gy) = grid(rows.div_ceil(self.gpu.matmul_rows_per_wg()));
        for (wv, off, r0, nr) in windows {
            let prm = p()
                .u(rows)
                .u(r0)
                .u(cols)
                .u(rb)
                .u(off as usize)
                .u(slots)
                .u(xo)
                .u(cols)
                .u(yo)
                .u(rows)
                .u(rows)
                .u(0)
                .u(gx as usize)
                .u(io)
                .u(kk)
                .u(x_per_slot as usize)
                .u(nr)
                .u(so);
            let views = vec![wv, xv.clone(), yv.clone(), iv.clone()];
            self.dispatch(&k::MATMUL_ID, Some(t), prm, views, [gx, gy, z])?;
        }
        Ok(())
    }

    fn rope(
        &mut self,
        x: TensorId,
        n_heads: usize,
        head_dim: usize,
        cfg: &tessera_core::graph::RopeCfg,
        out: TensorId,
    ) -> Result<()> {
        let n = self.len(x);
        let n_tokens = self.shape(x)[1];
        if n != n_tokens * n_heads * head_dim
            || !cfg.n_rot.is_multiple_of(2)
            || cfg.n_rot > head_dim
            || self.run.step.pos.len() != n_tokens
        {
            return Err(self.op_err(format!(
                "x {:?} as {n_heads} heads of {head_dim}, n_rot {}, {} positions",
                self.shape(x),
                cfg.n_rot,
                self.run.step.pos.len()
            )));
        }
        if let Some(f) = cfg.freq_factors {
            if self.len(f) < cfg.n_rot / 2 {
                return Err(self.op_err(format!(
                    "{} frequency factors for n_rot {}",
                    self.len(f),
                    cfg.n_rot
                )));
            }
        }
        let rp = RopeParams {
            n_rot: cfg.n_rot,
            mode: if cfg.neox {
                RopeMode::Neox
            } else {
                RopeMode::Normal
            },
            freq_base: cfg.freq_base,
            freq_scale: cfg.freq_scale,
            ext_factor: cfg.ext_factor,
            attn_factor: cfg.attn_factor,
            beta_fast: cfg.beta_fast,
            beta_slow: cfg.beta_slow,
            n_ctx_orig: cfg.n_ctx_orig,
            freq_factors: None,
        };
        let corr = yarn_corr_dims(&rp);
        let theta_scale = cfg.freq_base.powf(-2.0 / cfg.n_rot as f32);
        let (xv, xo) = self.tensor(x)?;
        let (fv, fo, hf) = self.opt_tensor(cfg.freq_factors)?;
        let (yv, yo) = self.tensor(out)?;
        let (g, sx) = Self::elementwise(n);
        let prm = p()
            .u(n)
            .u(n_heads)
            .u(head_dim)
            .u(cfg.n_rot)
            .u(cfg.neox as usize)
            .f(cfg.freq_base)
            .f(cfg.freq_scale)
            .f(cfg.ext_factor)
            .f(cfg.attn_factor)
            .f(corr[0])
            .f(corr[1])
            .f(theta_scale)
            .u(hf as usize)
            .u(fo)
            .u(xo)
            .u(yo)
            .u(self.pos_off)
            .u(sx);
        let views = vec![xv, fv, yv, self.step_view.clone()];
        self.dispatch(&k::ROPE, None, prm, views, g)
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &mut self,
        q: TensorId,
        kt: TensorId,
        vt: TensorId,
        layer: usize,
        cfg: &tessera_core::graph::AttnCfg,
        out: TensorId,
        kv: &mut KvCache,
    ) -> Result<()> {
        let n_tokens = self.shape(q)[1];
        let pos = self.run.step.pos;
        let first = *pos
            .first()
            .ok_or_else(|| self.op_err("empty step".into()))? as usize;
        let (hd, hdv) = (cfg.head_dim, cfg.head_dim_v);
        if cfg.n_head_kv == 0
            || !cfg.n_head.is_multiple_of(cfg.n_head_kv)
            || hd == 0
            || hd > MAX_HEAD_DIM
            || hdv == 0
            || hdv > MAX_HEAD_DIM
            || self.len(q) != n_tokens * cfg.n_head * hd
            || self.len(out) != n_tokens * cfg.n_head * hdv
            || pos.len() != n_tokens
        {
            return Err(self.op_err(format!(
                "q {:?}, out {:?}: {} heads ({} KV) of {hd}/{hdv} (at most {MAX_HEAD_DIM})",
                self.shape(q),
                self.shape(out),
                cfg.n_head,
                cfg.n_head_kv
            )));
        }
        let l = kv
            .layer_mut(layer)
            .ok_or_else(|| self.op_err(format!("no KV cache for layer {layer}")))?;
        let kbuf =
            l.k.as_any()
                .downcast_ref::<WgpuBuffer>()
                .ok_or_else(|| self.op_err("the K cache is not on a wgpu device".into()))?
                .buf
                .clone();
        let vbuf =
            l.v.as_any()
                .downcast_ref::<WgpuBuffer>()
                .ok_or_else(|| self.op_err("the V cache is not on a wgpu device".into()))?
                .buf
                .clone();
        let (k_type, v_type, k_row, v_row) = (l.k_type, l.v_type, l.k_row_bytes, l.v_row_bytes);
        let n_kv = first + n_tokens;
        if (n_kv * k_row) as u64 > kbuf.size() || (n_kv * v_row) as u64 > vbuf.size() {
            return Err(self.op_err(format!("cells up to {n_kv} do not fit the cache")));
        }
        for (t, ty, width) in [
            (kt, k_type, cfg.n_head_kv * hd),
            (vt, v_type, cfg.n_head_kv * hdv),
        ] {
            if self.len(t) != n_tokens * width {
                return Err(self.op_err(format!(
                    "{:?} holds {} values, not {n_tokens} rows of {width}",
                    self.shape(t),
                    self.len(t)
                )));
            }
            if ty == KvType::Q8_0 && !width.is_multiple_of(32) {
                return Err(self.op_err(format!("a Q8_0 cache row of {width} values")));
            }
        }
        // Store the step's keys and values.
        for (t, buf, ty, row, width) in [
            (kt, &kbuf, k_type, k_row, cfg.n_head_kv * hd),
            (vt, &vbuf, v_type, v_row, cfg.n_head_kv * hdv),
        ] {
            let a = (first * row) as u64;
            let bytes = (n_tokens * row) as u64;
            let (cv, off) = self.window(buf, a, bytes, "the KV cache")?;
            let words = ((off + bytes).div_ceil(4) - off / 4) as usize;
            let (xv, xo) = self.tensor(t)?;
            let (g, sx) = Self::elementwise(words);
            let prm = p()
                .u(width)
                .u(n_tokens)
                .u(row)
                .u(off as usize)
                .u(xo)
                .u((ty == KvType::Q8_0) as usize)
                .u(words)
                .u(sx);
            self.dispatch(&k::KV_STORE, None, prm, vec![xv, cv], g)?;
        }
        // The CPU's order (`tessera_core::backend::cpu::ops::attention`):
        // its tiled path for 64+ query tokens on F16 caches, else one
        // chunk; a decode-exact step computes each row as a one-token step.
        let tiled = k_type == KvType::F16
            && v_type == KvType::F16
            && n_tokens >= tessera_core::backend::cpu::ops::attention::Q_TILE
            && !self.run.graph.decode_exact;
        let (kv_view, ko) = self.window(&kbuf, 0, (n_kv * k_row) as u64, "the K cache")?;
        let (vv_view, vo) = self.window(&vbuf, 0, (n_kv * v_row) as u64, "the V cache")?;
        debug_assert!(ko == 0 && vo == 0);
        let (qv, qo) = self.tensor(q)?;
        let (sv, so, hs) = self.opt_tensor(cfg.sinks)?;
        let (ov, oo) = self.tensor(out)?;
        let prm = p()
            .u(cfg.n_head)
            .u(cfg.n_head_kv)
            .u(hd)
            .u(hdv)
            .u(n_kv)
            .u(qo)
            .u(oo)
            .u(k_row)
            .u(v_row)
            .u((k_type == KvType::Q8_0) as usize)
            .u((v_type == KvType::Q8_0) as usize)
            .f(cfg.scale)
            .f(cfg.softcap)
            .u(cfg.window.unwrap_or(0))
            .u(hs as usize)
            .u(so)
            .u(self.pos_off)
            .u(!tiled as usize);
        let views = vec![qv, kv_view, vv_view, sv, ov, self.step_view.clone()];
        let g = [cfg.n_head as u32, n_tokens as u32, 1];
        self.dispatch(&k::ATTENTION, None, prm, views, g)
    }
}
