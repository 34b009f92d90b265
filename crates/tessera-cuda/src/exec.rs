//! Running a segment: every node becomes one or more kernel launches on the
//! device's stream, in order (the stream orders them; nothing waits until
//! the session reads a result). The step's token ids, positions and output
//! rows are copied to a small device buffer once per segment.
//!
//! Kernels take raw device addresses already offset to each tensor's first
//! value: an activation is the arena's address plus its slot's offset
//! (`run.plan`), a weight its own buffer. Shapes are checked before any
//! launch (`tessera_core::backend::gpu::check`, shared with the wgpu
//! backend): a shape a kernel cannot take is an error naming the node,
//! never a wrong result. Grids whose y extent could pass 65535 (tokens,
//! MoE slots) are launched in pieces.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use tessera_core::backend::gpu::{self, shapes, GpuError, Shaped};
use tessera_core::backend::{SegmentRun, WeightData};
use tessera_core::graph::{TensorId, TensorKind};
use tessera_core::kv::{KvCache, KvType};
use tessera_gguf::GgmlType;

use crate::buffer::{addr, CudaBuffer, DeviceWeight};
use crate::device::Gpu;
use crate::error::{CudaError, Result};
use crate::kernels::{self, Source, ATTENTION, EW, MATMUL, NORM, ROPE, ROUTING};
use crate::LIMITS;

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
        GpuError::op(&self.gpu.name, self.run, self.node, reason).into()
    }

    fn len(&self, t: TensorId) -> usize {
        self.run.graph.tensor(t).len()
    }

    /// A 32-bit kernel argument, or an error when `v` does not fit.
    fn u(&self, v: usize) -> Result<Arg> {
        u32::try_from(v)
            .map(Arg::U32)
            .map_err(|_| self.op_err(format!("{v} exceeds the kernels' 32-bit sizes")))
    }

    /// The device weight behind tensor `t`.
    fn weight(&self, t: TensorId) -> Result<&DeviceWeight> {
        let w = gpu::weight(self.run, t).map_err(|r| self.op_err(r))?;
        match &w.data {
            WeightData::Device(b) => b
                .downcast_ref::<DeviceWeight>()
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
                let offset =
                    gpu::act_offset(self.run, t, self.work_len).map_err(|r| self.op_err(r))?;
                Ok(self.work + offset as u64)
            }
            TensorKind::Weight(_) => {
                let w = self.weight(t)?;
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
        let op = gpu::check(self.run, n, &LIMITS).map_err(|r| self.op_err(r))?;
        match op {
            Shaped::Embed(sh) => self.embed(&sh),
            Shaped::MatMul(sh) => self.matmul(&sh),
            Shaped::MatMulId(sh) => self.matmul_id(&sh),
            Shaped::Binary(sh) => {
                // binary(op, a, b, blen, y, n)
                let args = vec![
                    Arg::U32(sh.op),
                    Arg::U64(self.tensor(sh.a)?),
                    Arg::U64(self.tensor(sh.b)?),
                    self.u(sh.b_len)?,
                    Arg::U64(self.tensor(sh.out)?),
                ];
                self.ew(&EW, "binary", sh.n, args)
            }
            Shaped::Unary(sh) => {
                // unary(op, s, x, y, n)
                let args = vec![
                    Arg::U32(sh.op),
                    Arg::F32(sh.s),
                    Arg::U64(self.tensor(sh.x)?),
                    Arg::U64(self.tensor(sh.out)?),
                ];
                self.ew(&EW, "unary", sh.n, args)
            }
            Shaped::Glu(sh) => {
                // glu(op, s, gate, up, y, n)
                let args = vec![
                    Arg::U32(sh.op),
                    Arg::F32(sh.alpha),
                    Arg::U64(self.tensor(sh.gate)?),
                    Arg::U64(self.tensor(sh.up)?),
                    Arg::U64(self.tensor(sh.out)?),
                ];
                self.ew(&EW, "glu", sh.n, args)
            }
            Shaped::Norm(sh) => {
                let mut args = vec![
                    Arg::U64(self.tensor(sh.x)?),
                    Arg::U64(self.opt_tensor(sh.w)?),
                ];
                if sh.layer {
                    args.push(Arg::U64(self.opt_tensor(sh.b)?));
                }
                // rms_norm(x, w, y, group, n_groups, eps);
                // layer_norm(x, w, b, y, group, n_groups, eps)
                args.extend([
                    Arg::U64(self.tensor(sh.out)?),
                    self.u(sh.group)?,
                    self.u(sh.n_groups)?,
                    Arg::F32(sh.eps),
                ]);
                let func = if sh.layer { "layer_norm" } else { "rms_norm" };
                self.launch(&NORM, func, (sh.n_groups, 1, 1), 256, &args)
            }
            Shaped::Rope(sh) => {
                // rope(x, y, pos, ff, n, n_heads, hd, n_rot, neox, freq_scale,
                //   ext_factor, attn_factor, corr0, corr1, theta_scale)
                let args = vec![
                    Arg::U64(self.tensor(sh.x)?),
                    Arg::U64(self.tensor(sh.out)?),
                    Arg::U64(self.pos),
                    Arg::U64(self.opt_tensor(sh.cfg.freq_factors)?),
                    self.u(sh.n)?,
                    self.u(sh.n_heads)?,
                    self.u(sh.head_dim)?,
                    self.u(sh.cfg.n_rot)?,
                    Arg::U32(sh.cfg.neox as u32),
                    Arg::F32(sh.cfg.freq_scale),
                    Arg::F32(sh.cfg.ext_factor),
                    Arg::F32(sh.cfg.attn_factor),
                    Arg::F32(sh.consts.corr[0]),
                    Arg::F32(sh.consts.corr[1]),
                    Arg::F32(sh.consts.theta_scale),
                ];
                let blocks = sh.n.div_ceil(EW_BLOCK as usize);
                self.launch(&ROPE, "rope", (blocks, 1, 1), EW_BLOCK, &args)
            }
            Shaped::Attention(sh) => self.attention(&sh, kv),
            Shaped::SelectRows(sh) => {
                // select_rows(x, rows, cols, y, n)
                let args = vec![
                    Arg::U64(self.tensor(sh.x)?),
                    Arg::U64(self.rows),
                    self.u(sh.cols.max(1))?,
                    Arg::U64(self.tensor(sh.out)?),
                ];
                self.ew(&EW, "select_rows", sh.n, args)
            }
            Shaped::Copy => Err(self.op_err("copies are run by the session".into())),
            Shaped::Softmax(sh) => {
                // softmax(x, y, cols, rows)
                let args = [
                    Arg::U64(self.tensor(sh.x)?),
                    Arg::U64(self.tensor(sh.out)?),
                    self.u(sh.cols)?,
                    self.u(sh.rows)?,
                ];
                self.launch(&NORM, "softmax", (sh.rows, 1, 1), 256, &args)
            }
            Shaped::TopK(sh) => {
                // top_k(x, ids_out, rows, cols, k)
                let args = [
                    Arg::U64(self.tensor(sh.x)?),
                    Arg::U64(self.tensor(sh.out)?),
                    self.u(sh.rows)?,
                    self.u(sh.cols)?,
                    self.u(sh.k)?,
                ];
                self.launch(&ROUTING, "top_k", (sh.rows.div_ceil(64), 1, 1), 64, &args)
            }
            Shaped::NormSum(sh) => {
                // norm_sum(x, y, rows, cols, min_sum)
                let args = [
                    Arg::U64(self.tensor(sh.x)?),
                    Arg::U64(self.tensor(sh.out)?),
                    self.u(sh.rows)?,
                    self.u(sh.cols)?,
                    Arg::F32(sh.min_sum),
                ];
                self.launch(
                    &ROUTING,
                    "norm_sum",
                    (sh.rows.div_ceil(64), 1, 1),
                    64,
                    &args,
                )
            }
            Shaped::GroupMask(sh) => {
                // group_mask(x, y, rows, cols, n_groups, n_used)
                let args = [
                    Arg::U64(self.tensor(sh.x)?),
                    Arg::U64(self.tensor(sh.out)?),
                    self.u(sh.rows)?,
                    self.u(sh.cols)?,
                    self.u(sh.n_groups)?,
                    self.u(sh.n_used)?,
                ];
                self.launch(
                    &ROUTING,
                    "group_mask",
                    (sh.rows.div_ceil(64), 1, 1),
                    64,
                    &args,
                )
            }
            Shaped::GatherCols(sh) => {
                // gather_cols(x, ids, cols, k, y, n)
                let args = vec![
                    Arg::U64(self.tensor(sh.x)?),
                    Arg::U64(self.tensor(sh.ids)?),
                    self.u(sh.cols)?,
                    self.u(sh.k)?,
                    Arg::U64(self.tensor(sh.out)?),
                ];
                self.ew(&EW, "gather_cols", self.len(sh.out), args)
            }
            Shaped::AddId(sh) => {
                // add_id(x, b, ids, cols, y, n)
                let args = vec![
                    Arg::U64(self.tensor(sh.x)?),
                    Arg::U64(self.tensor(sh.b)?),
                    Arg::U64(self.tensor(sh.ids)?),
                    self.u(sh.cols)?,
                    Arg::U64(self.tensor(sh.out)?),
                ];
                self.ew(&EW, "add_id", self.len(sh.out), args)
            }
            Shaped::MoeSum(sh) => {
                // moe_sum(x, w, k, cols, y, n)
                let args = vec![
                    Arg::U64(self.tensor(sh.x)?),
                    Arg::U64(self.tensor(sh.w)?),
                    self.u(sh.k)?,
                    self.u(sh.cols.max(1))?,
                    Arg::U64(self.tensor(sh.out)?),
                ];
                self.ew(&EW, "moe_sum", self.len(sh.out), args)
            }
            Shaped::MulRows(sh) => {
                // mul_rows(x, s, cols, y, n)
                let args = vec![
                    Arg::U64(self.tensor(sh.x)?),
                    Arg::U64(self.tensor(sh.s)?),
                    self.u(sh.cols.max(1))?,
                    Arg::U64(self.tensor(sh.out)?),
                ];
                self.ew(&EW, "mul_rows", self.len(sh.out), args)
            }
            Shaped::SliceHeads(sh) => {
                // slice_heads(x, hd, start, len, y, n)
                let args = vec![
                    Arg::U64(self.tensor(sh.x)?),
                    self.u(sh.head_dim)?,
                    self.u(sh.start)?,
                    self.u(sh.len)?,
                    Arg::U64(self.tensor(sh.out)?),
                ];
                self.ew(&EW, "slice_heads", self.len(sh.out), args)
            }
            Shaped::ConcatHeads(sh) => {
                // concat_heads(a, la, b, lb, y, n)
                let args = vec![
                    Arg::U64(self.tensor(sh.a)?),
                    self.u(sh.la)?,
                    Arg::U64(self.tensor(sh.b)?),
                    self.u(sh.lb)?,
                    Arg::U64(self.tensor(sh.out)?),
                ];
                self.ew(&EW, "concat_heads", self.len(sh.out), args)
            }
        }
    }

    /// The kernel name `<base>_<type>` for weight `w`, or an error for a
    /// type the kernels do not read.
    fn typed(&self, base: &str, w: &DeviceWeight) -> Result<String> {
        type_suffix(w.ggml_type)
            .map(|s| format!("{base}_{s}"))
            .ok_or_else(|| self.op_err(format!("{} is {:?}: no kernel", w.name, w.ggml_type)))
    }

    fn row_bytes(&self, w: &DeviceWeight, cols: usize, n_rows: usize) -> Result<usize> {
        gpu::row_bytes(&w.name, w.ggml_type, w.bytes, cols, n_rows).map_err(|r| self.op_err(r))
    }

    fn embed(&self, e: &shapes::Embed) -> Result<()> {
        let w = self.weight(e.table)?;
        let rb = self.row_bytes(w, e.cols, e.rows)?;
        let func = self.typed("get_rows", w)?;
        let y = self.tensor(e.out)?;
        let (n, cols) = (e.n_tokens, e.cols);
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
    fn matmul(&self, m: &shapes::MatMul) -> Result<()> {
        let (rows, cols, n_mat, n) = (m.rows, m.cols, m.n_mat, m.n);
        let w = self.weight(m.w)?;
        let rb = self.row_bytes(w, cols, rows * n_mat)?;
        let func = self.typed("matmul", w)?;
        let (xa, ya) = (self.tensor(m.x)?, self.tensor(m.out)?);
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
                self.u(cols * n_mat)?,
                self.u(m.x_mat_stride)?,
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

    /// The products of the experts `ids` choose, slot by slot.
    fn matmul_id(&self, m: &shapes::MatMulId) -> Result<()> {
        let (rows, cols, slots) = (m.rows, m.cols, m.slots);
        let w = self.weight(m.w)?;
        let rb = self.row_bytes(w, cols, rows * m.n_expert)?;
        let func = self.typed("mul_mat_id", w)?;
        let (xa, ia, ya) = (self.tensor(m.x)?, self.tensor(m.ids)?, self.tensor(m.out)?);
        for s0 in (0..slots).step_by(MAX_Y) {
            // mul_mat_id_<t>(w, row_bytes, rows, n_expert, cols, x,
            //   x_per_slot, ids, k, y, slot0)
            let args = [
                Arg::U64(w.addr()),
                Arg::U64(rb as u64),
                self.u(rows)?,
                self.u(m.n_expert)?,
                self.u(cols)?,
                Arg::U64(xa),
                Arg::U32(m.x_per_slot as u32),
                Arg::U64(ia),
                self.u(m.k.max(1))?,
                Arg::U64(ya),
                self.u(s0)?,
            ];
            let grid = (rows.div_ceil(ROWS), (slots - s0).min(MAX_Y), 1);
            self.launch(&MATMUL, &func, grid, (32 * ROWS) as u32, &args)?;
        }
        Ok(())
    }

    /// Stores the step's keys and values in cells `first..first + n_tokens`
    /// of `layer`'s cache, then attends.
    fn attention(&self, at: &shapes::Attention, kv: &mut KvCache) -> Result<()> {
        let (cfg, n_tokens, first) = (&at.cfg, at.n_tokens, at.first);
        let (kt, vt) = (at.k, at.v);
        let (hd, hdv) = (cfg.head_dim, cfg.head_dim_v);
        let l = kv
            .layer_mut(at.layer)
            .ok_or_else(|| self.op_err(format!("no KV cache for layer {}", at.layer)))?;
        let cache = |b: &dyn tessera_core::backend::DeviceBuffer, what: &str| {
            b.as_any()
                .downcast_ref::<CudaBuffer>()
                .map(|c| (c.addr(), c.len))
                .ok_or_else(|| self.op_err(format!("the {what} cache is not on a CUDA device")))
        };
        let (ka, klen) = cache(l.k.as_ref(), "K")?;
        let (va, vlen) = cache(l.v.as_ref(), "V")?;
        let (k_row, v_row) = (l.k_row_bytes, l.v_row_bytes);
        let (k_q8, v_q8) = (l.k_type == KvType::Q8_0, l.v_type == KvType::Q8_0);
        let n_kv = first + n_tokens;
        gpu::check_cache(cfg, n_kv, (k_q8, v_q8), (k_row, v_row), (klen, vlen))
            .map_err(|r| self.op_err(r))?;
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
            Arg::U64(self.tensor(at.q)?),
            Arg::U64(ka),
            Arg::U64(va),
            Arg::U64(self.opt_tensor(cfg.sinks)?),
            Arg::U64(self.tensor(at.out)?),
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
        let types = gpu::WEIGHT_TYPES;
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
