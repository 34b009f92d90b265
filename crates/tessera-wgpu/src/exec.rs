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

use tessera_core::backend::gpu::{self, shapes, GpuError, Shaped};
use tessera_core::backend::{SegmentRun, WeightData};
use tessera_core::graph::{TensorId, TensorKind};
use tessera_core::kv::{KvCache, KvType};
use tessera_gguf::GgmlType;

use crate::buffer::{DeviceWeight, WgpuBuffer};
use crate::device::Gpu;
use crate::error::{Result, WgpuError};
use crate::pipelines::{self as k, Cache, Kernel, Pipe, WG};
use crate::LIMITS;

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

/// The parameters of a `routing.wgsl` kernel: `rows` rows of `cols`,
/// and what the kernel at hand reads of the rest.
struct Routing {
    x: TensorId,
    out: TensorId,
    rows: usize,
    cols: usize,
    k: usize,
    min_sum: f32,
    n_groups: usize,
    n_used: usize,
}

impl Routing {
    fn new(x: TensorId, out: TensorId, rows: usize, cols: usize) -> Routing {
        Routing {
            x,
            out,
            rows,
            cols,
            k: 0,
            min_sum: 0.0,
            n_groups: 0,
            n_used: 0,
        }
    }
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
        GpuError::op(&self.gpu.name, self.run, self.node, reason).into()
    }

    fn len(&self, t: TensorId) -> usize {
        self.run.graph.tensor(t).len()
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
    fn weight(&self, t: TensorId) -> Result<&DeviceWeight> {
        let w = gpu::weight(self.run, t).map_err(|r| self.op_err(r))?;
        match &w.data {
            WeightData::Device(b) => b
                .downcast_ref::<DeviceWeight>()
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
                let offset =
                    gpu::act_offset(self.run, t, self.work.len).map_err(|r| self.op_err(r))?;
                let (v, off) = self.window(&self.work.buf, offset as u64, bytes, &def.name)?;
                Ok((v, (off / 4) as usize))
            }
            TensorKind::Weight(_) => {
                let w = self.weight(t)?;
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
        let op = gpu::check(self.run, n, &LIMITS).map_err(|r| self.op_err(r))?;
        match op {
            Shaped::Attention(sh) => self.attention(&sh, kv),
            Shaped::Embed(sh) => self.embed(&sh),
            Shaped::MatMul(sh) => self.matmul(&sh),
            Shaped::MatMulId(sh) => self.matmul_id(&sh),
            Shaped::Binary(sh) => {
                let e = Ew {
                    op: sh.op as usize,
                    blen: sh.b_len,
                    ..Ew::default()
                };
                self.ew(&k::BINARY, sh.a, Some(sh.b), None, sh.out, e)
            }
            Shaped::Unary(sh) => {
                let e = Ew {
                    op: sh.op as usize,
                    s: sh.s,
                    ..Ew::default()
                };
                self.ew(&k::UNARY, sh.x, None, None, sh.out, e)
            }
            Shaped::Glu(sh) => {
                let e = Ew {
                    op: sh.op as usize,
                    s: sh.alpha,
                    ..Ew::default()
                };
                self.ew(&k::GLU, sh.gate, Some(sh.up), None, sh.out, e)
            }
            Shaped::Norm(sh) => {
                let kernel = if sh.layer {
                    &k::LAYER_NORM
                } else {
                    &k::RMS_NORM
                };
                let (xv, xo) = self.tensor(sh.x)?;
                let (wv, wo, hw) = self.opt_tensor(sh.w)?;
                let (bv, bo, hb) = self.opt_tensor(sh.b)?;
                let (yv, yo) = self.tensor(sh.out)?;
                let (gx, gy) = grid(sh.n_groups);
                let prm = p()
                    .u(sh.group)
                    .u(sh.n_groups)
                    .f(sh.eps)
                    .u(xo)
                    .u(wo)
                    .u(bo)
                    .u(yo)
                    .u(hw as usize)
                    .u(hb as usize)
                    .u(gx as usize);
                self.dispatch(kernel, None, prm, vec![xv, wv, bv, yv], [gx, gy, 1])
            }
            Shaped::Rope(sh) => {
                let (xv, xo) = self.tensor(sh.x)?;
                let (fv, fo, hf) = self.opt_tensor(sh.cfg.freq_factors)?;
                let (yv, yo) = self.tensor(sh.out)?;
                let (g, sx) = Self::elementwise(sh.n);
                let prm = p()
                    .u(sh.n)
                    .u(sh.n_heads)
                    .u(sh.head_dim)
                    .u(sh.cfg.n_rot)
                    .u(sh.cfg.neox as usize)
                    .f(sh.cfg.freq_base)
                    .f(sh.cfg.freq_scale)
                    .f(sh.cfg.ext_factor)
                    .f(sh.cfg.attn_factor)
                    .f(sh.consts.corr[0])
                    .f(sh.consts.corr[1])
                    .f(sh.consts.theta_scale)
                    .u(hf as usize)
                    .u(fo)
                    .u(xo)
                    .u(yo)
                    .u(self.pos_off)
                    .u(sx);
                let views = vec![xv, fv, yv, self.step_view.clone()];
                self.dispatch(&k::ROPE, None, prm, views, g)
            }
            Shaped::SelectRows(sh) => {
                let (xv, xo) = self.tensor(sh.x)?;
                let (yv, yo) = self.tensor(sh.out)?;
                let (g, sx) = Self::elementwise(sh.n);
                let prm = p().u(sh.n).u(sh.cols).u(xo).u(yo).u(self.rows_off).u(sx);
                let step = self.step_view.clone();
                self.dispatch(&k::SELECT_ROWS, None, prm, vec![xv, step, yv], g)
            }
            Shaped::Copy => Err(self.op_err("copies are run by the session".into())),
            Shaped::Softmax(sh) => {
                let (xv, xo) = self.tensor(sh.x)?;
                let (yv, yo) = self.tensor(sh.out)?;
                let (gx, gy) = grid(sh.rows);
                let prm = p().u(sh.cols).u(sh.rows).u(xo).u(yo).u(gx as usize);
                self.dispatch(&k::SOFTMAX, None, prm, vec![xv, yv], [gx, gy, 1])
            }
            Shaped::TopK(sh) => {
                let r = Routing {
                    k: sh.k,
                    ..Routing::new(sh.x, sh.out, sh.rows, sh.cols)
                };
                self.routing(&k::TOP_K, r)
            }
            Shaped::NormSum(sh) => {
                let r = Routing {
                    min_sum: sh.min_sum,
                    ..Routing::new(sh.x, sh.out, sh.rows, sh.cols)
                };
                self.routing(&k::NORM_SUM, r)
            }
            Shaped::GroupMask(sh) => {
                let r = Routing {
                    n_groups: sh.n_groups,
                    n_used: sh.n_used,
                    ..Routing::new(sh.x, sh.out, sh.rows, sh.cols)
                };
                self.routing(&k::GROUP_MASK, r)
            }
            Shaped::GatherCols(sh) => {
                let e = Ew {
                    cols: sh.cols,
                    k: sh.k,
                    ..Ew::default()
                };
                self.ew(&k::GATHER_COLS, sh.x, Some(sh.ids), None, sh.out, e)
            }
            Shaped::AddId(sh) => {
                let e = Ew {
                    cols: sh.cols,
                    ..Ew::default()
                };
                self.ew(&k::ADD_ID, sh.x, Some(sh.b), Some(sh.ids), sh.out, e)
            }
            Shaped::MoeSum(sh) => {
                let e = Ew {
                    cols: sh.cols,
                    k: sh.k,
                    ..Ew::default()
                };
                self.ew(&k::MOE_SUM, sh.x, Some(sh.w), None, sh.out, e)
            }
            Shaped::MulRows(sh) => {
                let e = Ew {
                    cols: sh.cols,
                    ..Ew::default()
                };
                self.ew(&k::MUL_ROWS, sh.x, Some(sh.s), None, sh.out, e)
            }
            Shaped::SliceHeads(sh) => {
                let e = Ew {
                    start: sh.start,
                    len: sh.len,
                    hd: sh.head_dim,
                    ..Ew::default()
                };
                self.ew(&k::SLICE_HEADS, sh.x, None, None, sh.out, e)
            }
            Shaped::ConcatHeads(sh) => {
                let e = Ew {
                    la: sh.la,
                    lb: sh.lb,
                    ..Ew::default()
                };
                self.ew(&k::CONCAT_HEADS, sh.a, Some(sh.b), None, sh.out, e)
            }
        }
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
    /// A `routing.wgsl` kernel.
    fn routing(&mut self, kernel: &Kernel, r: Routing) -> Result<()> {
        if r.rows > (MAX_GROUPS * WG) as usize {
            return Err(self.op_err(format!("{} rows", r.rows)));
        }
        let (xv, xo) = self.tensor(r.x)?;
        let (yv, yo) = self.tensor(r.out)?;
        let prm = p()
            .u(r.rows)
            .u(r.cols)
            .u(r.k)
            .u(xo)
            .u(yo)
            .f(r.min_sum)
            .u(r.n_groups)
            .u(r.n_used);
        let g = [r.rows.div_ceil(WG as usize) as u32, 1, 1];
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

    fn row_bytes(&self, w: &DeviceWeight, cols: usize, n_rows: usize) -> Result<usize> {
        gpu::row_bytes(&w.name, w.ggml_type, w.bytes as usize, cols, n_rows)
            .map_err(|r| self.op_err(r))
    }

    /// Rows `tokens[i]` of the table for the step's tokens.
    fn embed(&mut self, e: &shapes::Embed) -> Result<()> {
        let (cols, n) = (e.cols, e.n_tokens);
        let w = self.weight(e.table)?;
        let t = w.ggml_type;
        let rb = self.row_bytes(w, cols, e.rows)?;
        let windows = self.row_windows(w, rb, e.rows)?;
        let (yv, yo) = self.tensor(e.out)?;
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
    fn matmul(&mut self, m: &shapes::MatMul) -> Result<()> {
        let (rows, cols, n_mat, n) = (m.rows, m.cols, m.n_mat, m.n);
        let w = self.weight(m.w)?;
        let t = w.ggml_type;
        let rb = self.row_bytes(w, cols, rows * n_mat)?;
        let windows = self.row_windows(w, rb, rows * n_mat)?;
        let (xv, xo, so) = self.product_input(m.x, t, cols)?;
        let (yv, yo) = self.tensor(m.out)?;
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
                .u(cols * n_mat)
                .u(yo)
                .u(rows * n_mat)
                .u(rows)
                .u(m.x_mat_stride)
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

    /// The products of the experts `ids` choose, slot by slot.
    fn matmul_id(&mut self, m: &shapes::MatMulId) -> Result<()> {
        let (rows, cols, slots) = (m.rows, m.cols, m.slots);
        let w = self.weight(m.w)?;
        let t = w.ggml_type;
        let rb = self.row_bytes(w, cols, rows * m.n_expert)?;
        let windows = self.row_windows(w, rb, rows * m.n_expert)?;
        let (xv, xo, so) = self.product_input(m.x, t, cols)?;
        let (iv, io) = self.tensor(m.ids)?;
        let (yv, yo) = self.tensor(m.out)?;
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
                .u(m.k)
                .u(m.x_per_slot as usize)
                .u(nr)
                .u(so);
            let views = vec![wv, xv.clone(), yv.clone(), iv.clone()];
            self.dispatch(&k::MATMUL_ID, Some(t), prm, views, [gx, gy, z])?;
        }
        Ok(())
    }

    /// Stores the step's keys and values in cells `first..first + n_tokens`
    /// of `layer`'s cache, then attends.
    fn attention(&mut self, at: &shapes::Attention, kv: &mut KvCache) -> Result<()> {
        let (cfg, n_tokens, first) = (&at.cfg, at.n_tokens, at.first);
        let (q, kt, vt, out) = (at.q, at.k, at.v, at.out);
        let (hd, hdv) = (cfg.head_dim, cfg.head_dim_v);
        let l = kv
            .layer_mut(at.layer)
            .ok_or_else(|| self.op_err(format!("no KV cache for layer {}", at.layer)))?;
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
        let q8 = (k_type == KvType::Q8_0, v_type == KvType::Q8_0);
        let sizes = (kbuf.size() as usize, vbuf.size() as usize);
        gpu::check_cache(cfg, n_kv, q8, (k_row, v_row), sizes).map_err(|r| self.op_err(r))?;
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
            .u(q8.0 as usize)
            .u(q8.1 as usize)
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
