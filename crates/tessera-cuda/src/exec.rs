//! Running a segment: every node becomes one or more kernel launches on the
//! device's stream, in order (the stream orders them; nothing waits until
//! the session reads a result). The step's token ids, positions and output
//! rows are copied to a small device buffer once per segment.
//!
//! Kernels take raw device addresses already offset to each tensor's first
//! value: an activation is the arena's address plus its slot's offset
//! (`run.plan`), a weight its own buffer. Shapes are checked here, before
//! any launch: a shape a kernel cannot take is an error naming the node,
//! never a wrong result. Grids whose y extent could pass 65535 (tokens,
//! MoE slots) are launched in pieces.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use tessera_core::backend::cpu::ops::{rope::yarn_corr_dims, RopeMode, RopeParams};
use tessera_core::backend::{SegmentRun, WeightData};
use tessera_core::graph::{AttnCfg, Glu, Op, RopeCfg, TensorId, TensorKind, Unary};
use tessera_core::kv::{KvCache, KvType};
use tessera_gguf::GgmlType;

use crate::buffer::{addr, CudaBuffer, DeviceWeight};
use crate::device::Gpu;
use crate::error::{CudaError, Result};
use crate::kernels::{self, Source, ATTENTION, EW, MATMUL, NORM, ROPE, ROUTING};

/// Largest `k` of the top-k kernel (`MAX_K` in `routing.cu`).
pub const MAX_TOP_K: usize = 64;
/// Largest head of the attention kernel (`MAX_HD` in `attention.cu`).
pub const MAX_HEAD_DIM: usize = 1024;
/// Threads of an elementwise block.
const EW_BLOCK: u32 = 256;
/// Warps (weight rows) per product block and tokens per product block
/// (`ROWS`, `TN` in `matmul.cu`).
const ROWS: usize = 4;
const TN: usize = 4;
/// Largest grid extent in y.
const MAX_Y: usize = 65535;

/// The kernel-name suffix of weight type `t` (`TYPES` in `dequant.cuh`),
/// `None` for types the kernels do not read.
pub fn type_suffix(t: GgmlType) -> Option<&'static str> {
    Some(match t {
        GgmlType::F32 => "f32",
        GgmlType::F16 => "f16",
        GgmlType::BF16 => "bf16",
        GgmlType::Q4_0 => "q4_0",
        GgmlType::Q4_1 => "q4_1",
        GgmlType::Q5_0 => "q5_0",
        GgmlType::Q5_1 => "q5_1",
        GgmlType::Q8_0 => "q8_0",
        GgmlType::IQ4_NL => "iq4_nl",
        GgmlType::MXFP4 => "mxfp4",
        GgmlType::Q2_K => "q2_k",
        GgmlType::Q3_K => "q3_k",
        GgmlType::Q4_K => "q4_k",
        GgmlType::Q5_K => "q5_k",
        GgmlType::Q6_K => "q6_k",
        _ => return None,
    })
}

/// Buffers reused from segment to segment.
#[derive(Default)]
pub(crate) struct Scratch {
    step: Option<CudaSlice<u8>>,
}

/// One kernel argument.
enum Arg {
    U32(u32),
    U64(u64),
    F32(f32),
}

/// Runs `run` on `gpu` with activations in `work` and the KV cache `kv`.
pub(crate) fn compute(
    gpu: &Gpu,
    scratch: &mut Scratch,
    run: &SegmentRun<'_>,
    work: &CudaBuffer,
    kv: &mut KvCache,
) -> Result<()> {
    let s = run.step;
    let mut words: Vec<u32> = Vec::with_capacity(s.tokens.len() + s.pos.len() + s.out_rows.len());
    words.extend_from_slice(s.tokens);
    words.extend(s.pos.iter().map(|&p| p as u32));
    words.extend_from_slice(s.out_rows);
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    if scratch
        .step
        .as_ref()
        .is_none_or(|b| b.len() < bytes.len().max(4))
    {
        let n = bytes.len().next_power_of_two().max(4096);
        scratch.step = Some(
            gpu.stream
                .alloc_zeros::<u8>(n)
                .map_err(|e| gpu.err("allocating the step buffer", e))?,
        );
    }
    let step = scratch
        .step
        .as_mut()
        .ok_or_else(|| CudaError::NoDevice("no step buffer".into()))?;
    if !bytes.is_empty() {
        let mut view = step.slice_mut(0..bytes.len());
        gpu.stream
            .memcpy_htod(&bytes, &mut view)
            .map_err(|e| gpu.err("copying the step's ids", e))?;
    }
    let base = addr(gpu, step);
    let ex = Exec {
        gpu,
        run,
        work: work.addr(),
        work_len: work.len,
        tok: base,
        pos: base + 4 * s.tokens.len() as u64,
        rows: base + 4 * (s.tokens.len() + s.pos.len()) as u64,
        node: 0,
    };
    let mut ex = ex;
    for &n in run.nodes {
        ex.node = n;
        ex.record(n, kv)?;
    }
    // The step buffer is rewritten by the next segment: wait until this
    // one's kernels (and the pageable copy above) are done with it.
    gpu.sync()
}

struct Exec<'a> {
    gpu: &'a Gpu,
    run: &'a SegmentRun<'a>,
    work: u64,
    work_len: usize,
    tok: u64,
    pos: u64,
    rows: u64,
    node: usize,
}

impl Exec<'_> {
    fn op_err(&self, reason: String) -> CudaError {
        let node = &self.run.graph.nodes[self.node];
        CudaError::Op {
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

    /// A 32-bit kernel argument, or an error when `v` does not fit.
    fn u(&self, v: usize) -> Result<Arg> {
        u32::try_from(v)
            .map(Arg::U32)
            .map_err(|_| self.op_err(format!("{v} exceeds the kernels' 32-bit sizes")))
    }

    /// The device weight behind tensor `t`, and its shape.
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
                .ok_or_else(|| self.op_err(format!("weight {} is not on a CUDA device", w.name))),
            WeightData::Host(_) => Err(self.op_err(format!(
                "weight {} is in host memory, not on {}",
                w.name, self.gpu.name
            ))),
        }
    }

    /// The device address of tensor `t` (an activation, or an F32 weight).
    fn tensor(&self, t: TensorId) -> Result<u64> {
        let def = self.run.graph.tensor(t);
        let bytes = def.len() * 4;
        match def.kind {
            TensorKind::Act(_) => {
                let slot = self
                    .run
                    .plan
                    .slot(t)
                    .ok_or_else(|| self.op_err(format!("{} has no buffer", def.name)))?;
                if slot.offset + bytes > self.work_len {
                    return Err(self.op_err(format!("{} lies outside the arena", def.name)));
                }
                Ok(self.work + slot.offset as u64)
            }
            TensorKind::Weight(_) => {
                let (w, _) = self.weight(t)?;
                if w.ggml_type != GgmlType::F32 || w.bytes < bytes {
                    return Err(self.op_err(format!(
                        "{} is {:?} of {} bytes; this op reads {bytes} bytes of F32",
                        w.name, w.ggml_type, w.bytes
                    )));
                }
                Ok(w.addr())
            }
        }
    }

    /// The optional tensor `t`, or address 0 (the kernels' "none").
    fn opt_tensor(&self, t: Option<TensorId>) -> Result<u64> {
        t.map_or(Ok(0), |t| self.tensor(t))
    }

    /// Launches kernel `func` of `src` with `grid` blocks of `block`
    /// threads. An empty grid launches nothing.
    fn launch(
        &self,
        src: &Source,
        func: &str,
        grid: (usize, usize, usize),
        block: u32,
        args: &[Arg],
    ) -> Result<()> {
        if grid.0 == 0 || grid.1 == 0 || grid.2 == 0 {
            return Ok(());
        }
        let dim = |v: usize, max: usize| {
            if v > max {
                Err(self.op_err(format!("a grid of {v} blocks (at most {max})")))
            } else {
                Ok(v as u32)
            }
        };
        let grid_dim = (
            dim(grid.0, i32::MAX as usize)?,
            dim(grid.1, MAX_Y)?,
            dim(grid.2, MAX_Y)?,
        );
        let sizes: Vec<u8> = args
            .iter()
            .map(|a| match a {
                Arg::U32(_) | Arg::F32(_) => 4,
                Arg::U64(_) => 8,
            })
            .collect();
        if kernels::signature(src, func).as_deref() != Some(&sizes[..]) {
            return Err(self.op_err(format!(
                "{func} of {}: arguments of {sizes:?} bytes do not match its parameters {:?}",
                src.name,
                kernels::signature(src, func)
            )));
        }
        let f = self.gpu.function(src, func)?;
        let mut b = self.gpu.stream.launch_builder(&f);
        for a in args {
            match a {
                Arg::U32(v) => b.arg(v),
                Arg::U64(v) => b.arg(v),
                Arg::F32(v) => b.arg(v),
            };
        }
        let cfg = LaunchConfig {
            grid_dim,
            block_dim: (block, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: `args` follow the kernel's parameter list in `src` (sizes
        // checked above against the source; order and meaning as written
        // beside each call), every address points
        // into a live buffer of this device with the extent the kernel
        // reads (checked by the callers from the graph's shapes).
        unsafe { b.launch(cfg) }.map_err(|e| self.gpu.err(&format!("launching {func}"), e))?;
        Ok(())
    }

    /// An elementwise kernel over `n` outputs; `args` end with `n`.
    fn ew(&self, src: &Source, func: &str, n: usize, mut args: Vec<Arg>) -> Result<()> {
        args.push(self.u(n)?);
        let blocks = n.div_ceil(EW_BLOCK as usize);
        self.launch(src, func, (blocks, 1, 1), EW_BLOCK, &args)
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
                // glu(op, s, gate, up, y, n)
                let args = vec![
                    Arg::U32(code),
                    Arg::F32(1.702),
                    Arg::U64(self.tensor(gate)?),
                    Arg::U64(self.tensor(up)?),
                    Arg::U64(self.tensor(out)?),
                ];
                self.ew(&EW, "glu", self.len(out), args)
            }
            Op::RmsNorm { x, w, group, eps } => self.norm(x, w, None, group, eps, out, false),
            Op::LayerNorm {
                x,
                w,
                b,
                group,
                eps,
            } => self.norm(x, w, b, group, eps, out, true),
            Op::Rope {
                x,
                n_heads,
                head_dim,
                cfg,
            } => self.rope(x, n_heads, head_dim, &cfg, out),
            Op::Attention {
                q,
                k,
                v,
                layer,
                cfg,
            } => self.attention(q, k, v, layer, &cfg, out, kv),
            Op::SelectRows { x } => {
                let cols = self.cols(x);
                let n_rows = self.shape(x)[1];
                if let Some(&bad) = self
                    .run
                    .step
                    .out_rows
                    .iter()
                    .find(|&&r| r as usize >= n_rows)
                {
                    return Err(self.op_err(format!("output row {bad} of {n_rows}")));
                }
                if self.len(out) != self.run.step.out_rows.len() * cols {
                    return Err(self.op_err(format!("out {:?}", self.shape(out))));
                }
                // select_rows(x, rows, cols, y, n)
                let args = vec![
                    Arg::U64(self.tensor(x)?),
                    Arg::U64(self.rows),
                    self.u(cols.max(1))?,
                    Arg::U64(self.tensor(out)?),
                ];
                self.ew(&EW, "select_rows", self.len(out), args)
            }
            Op::Copy { .. } => Err(self.op_err("copies are run by the session".into())),
            Op::Softmax { x } => {
                let cols = self.cols(x);
                let rows = self.len(x) / cols.max(1);
                if self.len(out) != self.len(x) {
                    return Err(self.op_err(format!("out {:?}", self.shape(out))));
                }
                // softmax(x, y, cols, rows)
                let args = [
                    Arg::U64(self.tensor(x)?),
                    Arg::U64(self.tensor(out)?),
                    self.u(cols)?,
                    self.u(rows)?,
                ];
                self.launch(&NORM, "softmax", (rows, 1, 1), 256, &args)
            }
            Op::TopK { x, k } => {
                let cols = self.cols(x);
                let rows = self.len(x) / cols.max(1);
                if k == 0 || k > MAX_TOP_K || k > cols || self.len(out) != rows * k {
                    return Err(
                        self.op_err(format!("k = {k} (at most {MAX_TOP_K} and the row length)"))
                    );
                }
                // top_k(x, ids_out, rows, cols, k)
                let args = [
                    Arg::U64(self.tensor(x)?),
                    Arg::U64(self.tensor(out)?),
                    self.u(rows)?,
                    self.u(cols)?,
                    self.u(k)?,
                ];
                self.launch(&ROUTING, "top_k", (rows.div_ceil(64), 1, 1), 64, &args)
            }
            Op::NormSum { x, min_sum } => {
                let cols = self.cols(x);
                let rows = self.len(x) / cols.max(1);
                // norm_sum(x, y, rows, cols, min_sum)
                let args = [
                    Arg::U64(self.tensor(x)?),
                    Arg::U64(self.tensor(out)?),
                    self.u(rows)?,
                    self.u(cols)?,
                    Arg::F32(min_sum),
                ];
                self.launch(&ROUTING, "norm_sum", (rows.div_ceil(64), 1, 1), 64, &args)
            }
            Op::GroupMask {
                x,
                n_groups,
                n_used,
            } => {
                let cols = self.cols(x);
                let rows = self.len(x) / cols.max(1);
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
                // group_mask(x, y, rows, cols, n_groups, n_used)
                let args = [
                    Arg::U64(self.tensor(x)?),
                    Arg::U64(self.tensor(out)?),
                    self.u(rows)?,
                    self.u(cols)?,
                    self.u(n_groups)?,
                    self.u(n_used)?,
                ];
                self.launch(&ROUTING, "group_mask", (rows.div_ceil(64), 1, 1), 64, &args)
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
                // gather_cols(x, ids, cols, k, y, n)
                let args = vec![
                    Arg::U64(self.tensor(x)?),
                    Arg::U64(self.tensor(ids)?),
                    self.u(cols)?,
                    self.u(self.len(ids) / rows)?,
                    Arg::U64(self.tensor(out)?),
                ];
                self.ew(&EW, "gather_cols", self.len(out), args)
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
                // add_id(x, b, ids, cols, y, n)
                let args = vec![
                    Arg::U64(self.tensor(x)?),
                    Arg::U64(self.tensor(b)?),
                    Arg::U64(self.tensor(ids)?),
                    self.u(cols)?,
                    Arg::U64(self.tensor(out)?),
                ];
                self.ew(&EW, "add_id", self.len(out), args)
            }
            Op::MoeSum { x, w } => {
                let k = self.cols(w);
                let cols = self.cols(out);
                if self.len(x) != self.len(w) * cols || self.len(out) * k != self.len(x) {
                    return Err(self.op_err(format!(
                        "x {:?}, w {:?}, out {:?}",
                        self.shape(x),
                        self.shape(w),
                        self.shape(out)
                    )));
                }
                // moe_sum(x, w, k, cols, y, n)
                let args = vec![
                    Arg::U64(self.tensor(x)?),
                    Arg::U64(self.tensor(w)?),
                    self.u(k)?,
                    self.u(cols.max(1))?,
                    Arg::U64(self.tensor(out)?),
                ];
                self.ew(&EW, "moe_sum", self.len(out), args)
            }
            Op::MulRows { x, s } => {
                let rows = self.len(s);
                if rows == 0 || !self.len(x).is_multiple_of(rows) {
                    return Err(self.op_err(format!("{} values for {rows} rows", self.len(x))));
                }
                // mul_rows(x, s, cols, y, n)
                let args = vec![
                    Arg::U64(self.tensor(x)?),
                    Arg::U64(self.tensor(s)?),
                    self.u((self.len(x) / rows).max(1))?,
                    Arg::U64(self.tensor(out)?),
                ];
                self.ew(&EW, "mul_rows", self.len(out), args)
            }
            Op::SliceHeads {
                x,
                n_heads,
                head_dim,
                start,
                len,
            } => {
                if len == 0
                    || start + len > head_dim
                    || self.len(x) != self.shape(x)[1] * n_heads * head_dim
                    || self.len(out) * head_dim != self.len(x) * len
                {
                    return Err(
                        self.op_err(format!("columns {start}..{} of {head_dim}", start + len))
                    );
                }
                // slice_heads(x, hd, start, len, y, n)
                let args = vec![
                    Arg::U64(self.tensor(x)?),
                    self.u(head_dim)?,
                    self.u(start)?,
                    self.u(len)?,
                    Arg::U64(self.tensor(out)?),
                ];
                self.ew(&EW, "slice_heads", self.len(out), args)
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
                // concat_heads(a, la, b, lb, y, n)
                let args = vec![
                    Arg::U64(self.tensor(a)?),
                    self.u(la)?,
                    Arg::U64(self.tensor(b)?),
                    self.u(lb)?,
                    Arg::U64(self.tensor(out)?),
                ];
                self.ew(&EW, "concat_heads", self.len(out), args)
            }
        }
    }

    /// `Y = A op B`, `B` one row broadcast or A's shape.
    fn binary(&self, op: u32, a: TensorId, b: TensorId, out: TensorId) -> Result<()> {
        let (na, nb) = (self.len(a), self.len(b));
        if nb == 0 || (nb != na && !na.is_multiple_of(nb)) || self.len(out) != na {
            return Err(self.op_err(format!("b has {nb} values for a's {na}")));
        }
        // binary(op, a, b, blen, y, n)
        let args = vec![
            Arg::U32(op),
            Arg::U64(self.tensor(a)?),
            Arg::U64(self.tensor(b)?),
            self.u(nb)?,
            Arg::U64(self.tensor(out)?),
        ];
        self.ew(&EW, "binary", na, args)
    }

    fn unary(&self, op: u32, s: f32, x: TensorId, out: TensorId) -> Result<()> {
        if self.len(x) != self.len(out) {
            return Err(self.op_err(format!("{:?} into {:?}", self.shape(x), self.shape(out))));
        }
        // unary(op, s, x, y, n)
        let args = vec![
            Arg::U32(op),
            Arg::F32(s),
            Arg::U64(self.tensor(x)?),
            Arg::U64(self.tensor(out)?),
        ];
        self.ew(&EW, "unary", self.len(out), args)
    }

    #[allow(clippy::too_many_arguments)]
    fn norm(
        &self,
        x: TensorId,
        w: Option<TensorId>,
        b: Option<TensorId>,
        group: usize,
        eps: f32,
        out: TensorId,
        layer: bool,
    ) -> Result<()> {
        let n = self.len(x);
        if group == 0 || !n.is_multiple_of(group) || self.len(out) != n {
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
        let n_groups = n / group;
        let mut args = vec![Arg::U64(self.tensor(x)?), Arg::U64(self.opt_tensor(w)?)];
        if layer {
            args.push(Arg::U64(self.opt_tensor(b)?));
        }
        // rms_norm(x, w, y, group, n_groups, eps);
        // layer_norm(x, w, b, y, group, n_groups, eps)
        args.extend([
            Arg::U64(self.tensor(out)?),
            self.u(group)?,
            self.u(n_groups)?,
            Arg::F32(eps),
        ]);
        let func = if layer { "layer_norm" } else { "rms_norm" };
        self.launch(&NORM, func, (n_groups, 1, 1), 256, &args)
    }

    /// The kernel name `<base>_<type>` for weight `w`, or an error for a
    /// type the kernels do not read.
    fn typed(&self, base: &str, w: &DeviceWeight) -> Result<String> {
        type_suffix(w.ggml_type)
            .map(|s| format!("{base}_{s}"))
            .ok_or_else(|| self.op_err(format!("{} is {:?}: no kernel", w.name, w.ggml_type)))
    }

    fn row_bytes(&self, w: &DeviceWeight, cols: usize, n_rows: usize) -> Result<usize> {
        let rb = tessera_quant::matmul::row_bytes(w.ggml_type, cols)
            .map_err(|e| self.op_err(e.to_string()))?;
        if rb * n_rows > w.bytes {
            return Err(self.op_err(format!(
                "{} has {} bytes, fewer than {n_rows} rows of {rb}",
                w.name, w.bytes
            )));
        }
        Ok(rb)
    }

    fn embed(&self, table: TensorId, out: TensorId) -> Result<()> {
        let (w, [_, rows, cols]) = self.weight(table)?;
        let rb = self.row_bytes(w, cols, rows)?;
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
        let func = self.typed("get_rows", w)?;
        let y = self.tensor(out)?;
        for t0 in (0..n).step_by(MAX_Y) {
            // get_rows_<t>(w, row_bytes, cols, ids, y, tok0)
            let args = [
                Arg::U64(w.addr()),
                Arg::U64(rb as u64),
                self.u(cols)?,
                Arg::U64(self.tok),
                Arg::U64(y),
                self.u(t0)?,
            ];
            let grid = (cols.div_ceil(256), (n - t0).min(MAX_Y), 1);
            self.launch(&MATMUL, &func, grid, 256, &args)?;
        }
        Ok(())
    }

    /// `out = x · wᵀ` for a stack of `n_mat` matrices of `rows × cols`
    /// (matrix `m` reads `x` values from `m * x_mat_stride`).
    #[allow(clippy::too_many_arguments)]
    fn matmul(
        &self,
        wt: TensorId,
        x: TensorId,
        out: TensorId,
        rows: usize,
        cols: usize,
        n_mat: usize,
        x_mat_stride: usize,
    ) -> Result<()> {
        let (w, _) = self.weight(wt)?;
        let rb = self.row_bytes(w, cols, rows * n_mat)?;
        let x_stride = cols * n_mat;
        let n = self.len(x) / x_stride.max(1);
        if rows == 0 || n * x_stride != self.len(x) || self.len(out) != n * rows * n_mat {
            return Err(self.op_err(format!(
                "x {:?}, out {:?} for {n_mat} × [{rows}, {cols}]",
                self.shape(x),
                self.shape(out)
            )));
        }
        let func = self.typed("matmul", w)?;
        let (xa, ya) = (self.tensor(x)?, self.tensor(out)?);
        let per_launch = MAX_Y * TN;
        for t0 in (0..n).step_by(per_launch) {
            // matmul_<t>(w, row_bytes, rows_total, mat_rows, cols, x,
            //   x_stride, x_mat_stride, n, y, y_stride, tok0)
            let args = [
                Arg::U64(w.addr()),
                Arg::U64(rb as u64),
                self.u(rows * n_mat)?,
                self.u(rows)?,
                self.u(cols)?,
                Arg::U64(xa),
                self.u(x_stride)?,
                self.u(x_mat_stride)?,
                self.u(n)?,
                Arg::U64(ya),
                self.u(rows * n_mat)?,
                self.u(t0)?,
            ];
            let grid = (
                (rows * n_mat).div_ceil(ROWS),
                (n - t0).min(per_launch).div_ceil(TN),
                1,
            );
            self.launch(&MATMUL, &func, grid, (32 * ROWS) as u32, &args)?;
        }
        Ok(())
    }

    fn matmul_id(&self, wt: TensorId, x: TensorId, ids: TensorId, out: TensorId) -> Result<()> {
        let (w, [n_expert, rows, cols]) = self.weight(wt)?;
        let rb = self.row_bytes(w, cols, rows * n_expert)?;
        let k = self.cols(ids);
        let n = self.len(ids) / k.max(1);
        let slots = n * k;
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
        let func = self.typed("mul_mat_id", w)?;
        let (xa, ia, ya) = (self.tensor(x)?, self.tensor(ids)?, self.tensor(out)?);
        for s0 in (0..slots).step_by(MAX_Y) {
            // mul_mat_id_<t>(w, row_bytes, rows, n_expert, cols, x,
            //   x_per_slot, ids, k, y, slot0)
            let args = [
                Arg::U64(w.addr()),
                Arg::U64(rb as u64),
                self.u(rows)?,
                self.u(n_expert)?,
                self.u(cols)?,
                Arg::U64(xa),
                Arg::U32(x_per_slot as u32),
                Arg::U64(ia),
                self.u(k.max(1))?,
                Arg::U64(ya),
                self.u(s0)?,
            ];
            let grid = (rows.div_ceil(ROWS), (slots - s0).min(MAX_Y), 1);
            self.launch(&MATMUL, &func, grid, (32 * ROWS) as u32, &args)?;
        }
        Ok(())
    }

    fn rope(
        &self,
        x: TensorId,
        n_heads: usize,
        head_dim: usize,
        cfg: &RopeCfg,
        out: TensorId,
    ) -> Result<()> {
        let n = self.len(x);
        let n_tokens = self.shape(x)[1];
        if n != n_tokens * n_heads * head_dim
            || self.len(out) != n
            || cfg.n_rot == 0
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
        // rope(x, y, pos, ff, n, n_heads, hd, n_rot, neox, freq_scale,
        //   ext_factor, attn_factor, corr0, corr1, theta_scale)
        let args = vec![
            Arg::U64(self.tensor(x)?),
            Arg::U64(self.tensor(out)?),
            Arg::U64(self.pos),
            Arg::U64(self.opt_tensor(cfg.freq_factors)?),
            self.u(n)?,
            self.u(n_heads)?,
            self.u(head_dim)?,
            self.u(cfg.n_rot)?,
            Arg::U32(cfg.neox as u32),
            Arg::F32(cfg.freq_scale),
            Arg::F32(cfg.ext_factor),
            Arg::F32(cfg.attn_factor),
            Arg::F32(corr[0]),
            Arg::F32(corr[1]),
            Arg::F32(theta_scale),
        ];
        let blocks = n.div_ceil(EW_BLOCK as usize);
        self.launch(&ROPE, "rope", (blocks, 1, 1), EW_BLOCK, &args)
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        q: TensorId,
        kt: TensorId,
        vt: TensorId,
        layer: usize,
        cfg: &AttnCfg,
        out: TensorId,
        kv: &mut KvCache,
    ) -> Result<()> {
        let n_tokens = self.shape(q)[1];
        let pos = self.run.step.pos;
        let first = *pos
            .first()
            .ok_or_else(|| self.op_err("empty step".into()))?;
        let contiguous = pos.iter().enumerate().all(|(i, &p)| p == first + i as i32);
        let (hd, hdv) = (cfg.head_dim, cfg.head_dim_v);
        if first < 0
            || !contiguous
            || cfg.n_head_kv == 0
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
                "q {:?}, out {:?}: {} heads ({} KV) of {hd}/{hdv} (at most {MAX_HEAD_DIM}), \
                 positions from {first}, contiguous: {contiguous}",
                self.shape(q),
                self.shape(out),
                cfg.n_head,
                cfg.n_head_kv
            )));
        }
        let first = first as usize;
        let l = kv
            .layer_mut(layer)
            .ok_or_else(|| self.op_err(format!("no KV cache for layer {layer}")))?;
        let cache = |b: &dyn tessera_core::backend::DeviceBuffer, what: &str| {
            b.as_any()
                .downcast_ref::<CudaBuffer>()
                .map(|c| (c.addr(), c.len))
                .ok_or_else(|| self.op_err(format!("the {what} cache is not on a CUDA device")))
        };
        let (ka, klen) = cache(l.k.as_ref(), "K")?;
        let (va, vlen) = cache(l.v.as_ref(), "V")?;
        let (k_type, v_type, k_row, v_row) = (l.k_type, l.v_type, l.k_row_bytes, l.v_row_bytes);
        let n_kv = first + n_tokens;
        if n_kv * k_row > klen || n_kv * v_row > vlen {
            return Err(self.op_err(format!("cells up to {n_kv} do not fit the cache")));
        }
        let (k_q8, v_q8) = (k_type == KvType::Q8_0, v_type == KvType::Q8_0);
        if (k_q8 && !hd.is_multiple_of(32)) || (v_q8 && !hdv.is_multiple_of(32)) {
            return Err(self.op_err(format!("Q8_0 cache rows of heads of {hd}/{hdv}")));
        }
        for (t, width, row, q8) in [
            (kt, cfg.n_head_kv * hd, k_row, k_q8),
            (vt, cfg.n_head_kv * hdv, v_row, v_q8),
        ] {
            let need = if q8 { width / 32 * 34 } else { width * 2 };
            if self.len(t) != n_tokens * width || row < need {
                return Err(self.op_err(format!(
                    "{:?} holds {} values, not {n_tokens} rows of {width} (cache rows of {row} bytes)",
                    self.shape(t),
                    self.len(t)
                )));
            }
        }
        // Store the step's keys and values in cells first.. .
        for (t, base, width, row, q8) in [
            (kt, ka, cfg.n_head_kv * hd, k_row, k_q8),
            (vt, va, cfg.n_head_kv * hdv, v_row, v_q8),
        ] {
            let per_row = if q8 { width / 32 } else { width };
            // kv_store(x, cache, width, n, row_bytes, first, q8)
            let args = [
                Arg::U64(self.tensor(t)?),
                Arg::U64(base),
                self.u(width)?,
                self.u(n_tokens)?,
                Arg::U64(row as u64),
                self.u(first)?,
                Arg::U32(q8 as u32),
            ];
            let blocks = (n_tokens * per_row).div_ceil(EW_BLOCK as usize);
            self.launch(&ATTENTION, "kv_store", (blocks, 1, 1), EW_BLOCK, &args)?;
        }
        // attention(q, kc, vc, sinks, o, pos, n_head, n_head_kv, hd, hdv,
        //   n_kv, k_row, v_row, k_q8, v_q8, scale, softcap, window)
        let args = [
            Arg::U64(self.tensor(q)?),
            Arg::U64(ka),
            Arg::U64(va),
            Arg::U64(self.opt_tensor(cfg.sinks)?),
            Arg::U64(self.tensor(out)?),
            Arg::U64(self.pos),
            self.u(cfg.n_head)?,
            self.u(cfg.n_head_kv)?,
            self.u(hd)?,
            self.u(hdv)?,
            self.u(n_kv)?,
            Arg::U64(k_row as u64),
            Arg::U64(v_row as u64),
            Arg::U32(k_q8 as u32),
            Arg::U32(v_q8 as u32),
            Arg::F32(cfg.scale),
            Arg::F32(cfg.softcap),
            self.u(cfg.window.unwrap_or(0))?,
        ];
        self.launch(
            &ATTENTION,
            "attention",
            (cfg.n_head, n_tokens, 1),
            128,
            &args,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every type with a suffix has kernels of that name in matmul.cu's
    /// instantiation list (`TYPES` in dequant.cuh).
    #[test]
    fn suffixes_match_the_kernel_list() {
        let list = crate::kernels::DEQUANT;
        let types = [
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
        for t in types {
            let s = type_suffix(t).unwrap();
            let bs = t.block_size();
            let bb = t.type_size();
            assert!(
                list.contains(&format!("X({s}, {bs}, {bb})")),
                "{t:?}: X({s}, {bs}, {bb}) missing from TYPES"
            );
        }
        assert_eq!(list.matches("    X(").count(), types.len());
        assert!(type_suffix(GgmlType::IQ2_XXS).is_none());
    }
}
