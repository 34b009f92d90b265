//! The CPU backend: weights stay in the mapped file (zero copy), activations
//! live in one [`HostBuffer`] arena laid out by the scheduler, ops run on
//! the persistent thread pool of `tessera-quant` (work split by rows).
//!
//! Debugging against llama.cpp: `TESSERA_DUMP=1` prints every node's name,
//! shape, sum and first values as it runs (like `llama-eval-callback`);
//! `TESSERA_DUMP_DIR=dir` also writes each node's output to
//! `dir/<node name>.f32`, to diff with `scripts/llama-dump-tensors.c` and
//! `scripts/diff-tensors.py`.
//!
//! A decode-exact graph ([`crate::graph::Graph::decode_exact`]) computes
//! each row as a one-token step: the matrix products in the one-token
//! float chains ([`MatmulCtx::set_decode_exact`]) and attention one query
//! row at a time over the cells that row's own step would have seen.

pub mod ops;
mod profile;

use std::sync::{Arc, Mutex};

use tessera_gguf::GgmlType;
use tessera_quant::matmul::{Experts, MatmulCtx, Matrix};
use tessera_quant::pool::ThreadPool;

use crate::backend::{
    Backend, DeviceBuffer, DeviceInfo, DeviceKind, HostBuffer, HostSlice, SegmentRun, WeightData,
};
use crate::error::{CoreError, Result};
use crate::graph::{Glu, Op, TensorId, TensorKind, Unary};
use crate::kv::KvCache;

use ops::{AttnParams, KvView, RopeParams};

/// The CPU as one device.
pub struct CpuBackend {
    name: String,
    pool: Arc<ThreadPool>,
    /// The NUMA node the device stands for, if any: `info()` reports its
    /// memory instead of the machine's.
    node: Option<usize>,
    matmul: Mutex<MatmulCtx>,
    profile: profile::Profile,
}

impl Drop for CpuBackend {
    fn drop(&mut self) {
        if let Some(table) = self.profile.report(&self.name) {
            eprint!("{table}");
        }
    }
}

impl CpuBackend {
    /// A CPU device named `name` computing on `n_threads` threads.
    pub fn new(name: &str, n_threads: usize) -> CpuBackend {
        CpuBackend::with_pool(name, Arc::new(ThreadPool::new(n_threads.max(1))))
    }

    /// A CPU device named `name` computing on `pool`, which other devices
    /// may share (logical devices over the same cores: they take turns, as
    /// every device does within one step).
    pub fn with_pool(name: &str, pool: Arc<ThreadPool>) -> CpuBackend {
        CpuBackend {
            name: name.into(),
            pool,
            node: None,
            matmul: Mutex::new(MatmulCtx::new()),
            profile: profile::Profile::default(),
        }
    }

    /// A CPU device named `name` computing on `n_threads` threads whose
    /// workers are pinned to `cpus` ([`ThreadPool::pinned`]: the calling
    /// thread is not pinned), standing for NUMA node `node` when given: its
    /// `info()` then reports that node's memory ([`crate::numa::node_memory`]).
    /// A pin the OS refuses leaves the device working unpinned;
    /// `pool().pin_error()` says why.
    pub fn pinned(name: &str, n_threads: usize, cpus: &[usize], node: Option<usize>) -> CpuBackend {
        let pool = Arc::new(ThreadPool::pinned(n_threads.max(1), cpus));
        let mut b = CpuBackend::with_pool(name, pool);
        b.node = node;
        b
    }

    /// The pool the device computes on (its pinning: `cpus()`, `pin_error()`).
    pub fn pool(&self) -> &Arc<ThreadPool> {
        &self.pool
    }

    /// The NUMA node the device stands for, if any.
    pub fn node(&self) -> Option<usize> {
        self.node
    }

    /// Threads of the pool.
    pub fn n_threads(&self) -> usize {
        self.pool.n_threads()
    }
}

impl Backend for CpuBackend {
    fn info(&self) -> DeviceInfo {
        let (total_memory, free_memory) = self
            .node
            .and_then(crate::numa::node_memory)
            .unwrap_or_else(|| {
                (
                    crate::numa::proc_meminfo("MemTotal"),
                    crate::numa::proc_meminfo("MemAvailable"),
                )
            });
        DeviceInfo {
            name: self.name.clone(),
            kind: DeviceKind::Cpu,
            total_memory,
            free_memory,
            bandwidth_gbs: 20.0,
        }
    }

    fn threads(&self) -> usize {
        self.pool.n_threads()
    }

    fn supports(&self, op: &Op, weight_types: &[GgmlType]) -> bool {
        match op {
            Op::MatMul { .. } | Op::MatMulId { .. } | Op::MatMulHeads { .. } => weight_types
                .iter()
                .all(|&t| tessera_quant::kernels::dot_entry(t).is_some()),
            Op::Embed { .. } => weight_types
                .iter()
                .all(|&t| tessera_quant::info(t).to_f32.is_some()),
            _ => weight_types.iter().all(|&t| t == GgmlType::F32),
        }
    }

    fn load_weight(&self, _name: &str, _t: GgmlType, bytes: HostSlice) -> Result<WeightData> {
        Ok(WeightData::Host(bytes))
    }

    fn alloc(&self, bytes: usize) -> Result<Box<dyn DeviceBuffer>> {
        Ok(Box::new(HostBuffer::new(bytes)?))
    }

    fn compute(
        &self,
        run: &SegmentRun<'_>,
        work: &mut dyn DeviceBuffer,
        kv: &mut KvCache,
    ) -> Result<()> {
        self.run_nodes(run, work, &mut KvTarget::One(kv))
    }

    fn supports_multi_seq(&self) -> bool {
        true
    }

    fn compute_multi_seq(
        &self,
        run: &SegmentRun<'_>,
        work: &mut dyn DeviceBuffer,
        kvs: &mut [&mut KvCache],
        seq: &[usize],
    ) -> Result<()> {
        let n_rows = run.step.pos.len();
        if seq.len() != n_rows || run.step.tokens.len() != n_rows {
            return Err(self.err(&format!(
                "a multi-sequence step of {n_rows} rows has {} sequence ids and {} tokens",
                seq.len(),
                run.step.tokens.len()
            )));
        }
        if let Some(&bad) = seq.iter().find(|&&s| s >= kvs.len()) {
            return Err(self.err(&format!(
                "row of sequence {bad}, but the step has {} caches",
                kvs.len()
            )));
        }
        self.run_nodes(run, work, &mut KvTarget::Rows { caches: kvs, seq })
    }
}

/// The KV caches a step's attention stores into and reads.
enum KvTarget<'a, 'b> {
    /// Every row is a token of this one sequence, at consecutive positions.
    One(&'a mut KvCache),
    /// Row `t` is a token of the sequence whose cache is `caches[seq[t]]`.
    Rows {
        caches: &'a mut [&'b mut KvCache],
        seq: &'a [usize],
    },
}

impl CpuBackend {
    /// Runs `run.nodes` in `work`, attention against `kv`.
    fn run_nodes(
        &self,
        run: &SegmentRun<'_>,
        work: &mut dyn DeviceBuffer,
        kv: &mut KvTarget<'_, '_>,
    ) -> Result<()> {
        let work = work
            .as_any_mut()
            .downcast_mut::<HostBuffer>()
            .ok_or_else(|| self.err("work buffer is not host memory"))?;
        let mut mm = self.matmul.lock().unwrap_or_else(|e| e.into_inner());
        mm.set_decode_exact(run.graph.decode_exact);
        let mut ex = Exec {
            run,
            base: work.as_mut_ptr(),
            len: work.len(),
            pool: &self.pool,
            device: &self.name,
        };
        let dump = dump_enabled();
        let profile = profile::enabled();
        for &n in run.nodes {
            let t0 = profile.then(std::time::Instant::now);
            ex.node(n, &mut mm, kv)?;
            if let Some(t0) = t0 {
                let out = run.graph.nodes[n].out;
                self.profile.add(&run.graph.tensor(out).name, t0.elapsed());
            }
            if dump {
                ex.dump(n)?;
            }
        }
        Ok(())
    }
}

impl CpuBackend {
    fn err(&self, reason: &str) -> CoreError {
        CoreError::Backend {
            device: self.name.clone(),
            reason: reason.into(),
        }
    }
}

fn kv_view(
    b: &HostBuffer,
    dtype: ops::KvType,
    row_stride_bytes: usize,
    n_kv_head: usize,
    head_dim: usize,
) -> KvView<'_> {
    KvView {
        data: b.bytes(),
        dtype,
        row_stride_bytes,
        n_kv_head,
        head_dim,
    }
}

thread_local! {
    /// Per-head products' packed input and output (grown once, reused).
    static HEAD_SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// `TESSERA_DUMP=1`: print every node's name, shape and sum as it runs,
/// like `llama-eval-callback`, to diff two runs layer by layer.
fn dump_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("TESSERA_DUMP").is_some_and(|v| v != "0"))
}

/// What every row of one attention node shares.
struct AttnRows<'a> {
    layer: usize,
    cfg: &'a crate::graph::AttnCfg,
    sinks: Option<&'a [f32]>,
    /// Several rows of one sequence each as its own one-token step.
    exact: bool,
}

/// Runs nodes with their activations in one arena.
struct Exec<'a> {
    run: &'a SegmentRun<'a>,
    base: *mut u8,
    len: usize,
    pool: &'a ThreadPool,
    device: &'a str,
}

impl Exec<'_> {
    fn err(&self, reason: String) -> CoreError {
        CoreError::Backend {
            device: self.device.into(),
            reason,
        }
    }

    /// Bytes of weight `t`.
    fn weight(&self, t: TensorId) -> Result<(GgmlType, &[u8], [usize; 3])> {
        let def = self.run.graph.tensor(t);
        let TensorKind::Weight(i) = def.kind else {
            return Err(self.err(format!("{} is not a weight", def.name)));
        };
        let w = &self.run.weights[i];
        let bytes = w
            .host_bytes()
            .ok_or_else(|| self.err(format!("weight {} is not in host memory", w.name)))?;
        Ok((w.ggml_type, bytes, w.shape))
    }

    /// An F32 weight vector.
    fn weight_f32(&self, t: TensorId) -> Result<&[f32]> {
        let (ty, bytes, _) = self.weight(t)?;
        let name = &self.run.graph.tensor(t).name;
        if ty != GgmlType::F32 {
            return Err(self.err(format!("{name} is {ty:?}; this op needs F32")));
        }
        bytemuck::try_cast_slice(bytes).map_err(|e| self.err(format!("{name}: {e}")))
    }

    /// The arena address and length (in f32) of activation `t`, checked
    /// to lie inside the arena.
    fn arena(&self, t: TensorId) -> Result<(*mut f32, usize)> {
        let def = self.run.graph.tensor(t);
        let s = self
            .run
            .plan
            .slot(t)
            .ok_or_else(|| self.err(format!("{} has no buffer", def.name)))?;
        if s.offset + def.len() * 4 > self.len {
            return Err(self.err(format!("{} lies outside the arena", def.name)));
        }
        // SAFETY: `offset` is inside the arena (checked above).
        Ok((unsafe { self.base.add(s.offset) }.cast::<f32>(), def.len()))
    }

    /// The activation `t` (weights: F32 only) as f32.
    fn input(&self, t: TensorId) -> Result<&[f32]> {
        if let TensorKind::Weight(_) = self.run.graph.tensor(t).kind {
            return self.weight_f32(t);
        }
        let (ptr, len) = self.arena(t)?;
        // SAFETY: the range is inside the arena; the planner gives live
        // tensors disjoint ranges, and the output of the running node is not
        // one of its inputs, so no `&mut` aliases this slice.
        Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
    }

    /// The output of the running node. It lives in the arena behind the raw
    /// `base` pointer, not in `self`: the planner gave it a range no live
    /// input overlaps, which is what makes handing it out beside the inputs
    /// sound.
    #[allow(clippy::mut_from_ref)]
    fn output(&self, t: TensorId) -> Result<&mut [f32]> {
        let (ptr, len) = self.arena(t)?;
        // SAFETY: as in `input`: disjoint from every live input.
        Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
    }

    /// Stores the keys and values of `pos.len()` consecutive tokens of one
    /// sequence (at positions `pos`, the first `pos[0]`) into layer
    /// `rows.layer` of `kv`, then attends their queries over the cache.
    /// Decode-exact, row by row over the cells each row's own one-token
    /// step sees (the split-KV decode path and its chunks depend on that
    /// count).
    #[allow(clippy::too_many_arguments)]
    fn attend(
        &self,
        kv: &mut KvCache,
        rows: &AttnRows<'_>,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        pos: &[i32],
        out: &mut [f32],
    ) -> std::result::Result<(), ops::OpError> {
        let cfg = rows.cfg;
        let n_tokens = pos.len();
        let bad = |m: String| ops::OpError::Shape {
            op: "attention",
            reason: m,
        };
        let first = *pos.first().ok_or_else(|| bad("empty step".into()))?;
        let first = usize::try_from(first).map_err(|_| bad(format!("position {first}")))?;
        let l = kv
            .layer_mut(rows.layer)
            .ok_or_else(|| bad(format!("no KV cache for layer {}", rows.layer)))?;
        let not_host = || bad("KV not in host memory".into());
        let (k_width, v_width) = (cfg.n_head_kv * cfg.head_dim, cfg.n_head_kv * cfg.head_dim_v);
        for (buf, src, width, dtype, row) in [
            (&mut l.k, k, k_width, l.k_type, l.k_row_bytes),
            (&mut l.v, v, v_width, l.v_type, l.v_row_bytes),
        ] {
            let b = buf
                .as_any_mut()
                .downcast_mut::<HostBuffer>()
                .ok_or_else(not_host)?;
            ops::kv_store(src, width, b.bytes_mut(), dtype, row, first)?;
        }
        fn host(buf: &dyn DeviceBuffer) -> Option<&HostBuffer> {
            buf.as_any().downcast_ref::<HostBuffer>()
        }
        let (kh, vh) = match (host(l.k.as_ref()), host(l.v.as_ref())) {
            (Some(k), Some(v)) => (k, v),
            _ => return Err(not_host()),
        };
        let p = AttnParams {
            n_tokens,
            n_head: cfg.n_head,
            n_kv_head: cfg.n_head_kv,
            head_dim: cfg.head_dim,
            n_kv: first + n_tokens,
            kv_cells: 0,
            q_pos: pos,
            causal: true,
            window: cfg.window,
            scale: cfg.scale,
            softcap: cfg.softcap,
            sinks: rows.sinks,
        };
        let kview = kv_view(kh, l.k_type, l.k_row_bytes, cfg.n_head_kv, cfg.head_dim);
        let vview = kv_view(vh, l.v_type, l.v_row_bytes, cfg.n_head_kv, cfg.head_dim_v);
        if !(rows.exact && n_tokens > 1) {
            return ops::attention(self.pool, q, kview, vview, out, &p);
        }
        let (q_w, o_w) = (q.len() / n_tokens, out.len() / n_tokens);
        for (t, o) in out.chunks_exact_mut(o_w).enumerate() {
            let row = AttnParams {
                n_tokens: 1,
                n_kv: first + t + 1,
                q_pos: &pos[t..t + 1],
                ..p
            };
            ops::attention(self.pool, &q[t * q_w..(t + 1) * q_w], kview, vview, o, &row)?;
        }
        Ok(())
    }

    fn dump(&self, n: usize) -> Result<()> {
        let out = self.run.graph.nodes[n].out;
        let def = self.run.graph.tensor(out);
        let v = self.input(out)?;
        let sum: f64 = v.iter().map(|&x| x as f64).sum();
        let cols = def.cols();
        let head: Vec<String> = v
            .chunks(cols)
            .map(|r| format!("{:.4} {:.4} {:.4}", r[0], r[1], r[2]))
            .collect();
        if let Some(dir) = std::env::var_os("TESSERA_DUMP_DIR") {
            let path = std::path::Path::new(&dir).join(format!("{}.f32", def.name));
            let _ = std::fs::write(path, bytemuck::cast_slice::<f32, u8>(v));
        }
        eprintln!(
            "tessera_dump: {:>24} {:?} sum = {sum:.6} [{}]",
            def.name,
            def.shape,
            head.join(" | ")
        );
        Ok(())
    }

    fn node(&mut self, n: usize, mm: &mut MatmulCtx, kv: &mut KvTarget<'_, '_>) -> Result<()> {
        let node = &self.run.graph.nodes[n];
        let name = || self.run.graph.node_name(n).to_string();
        let op_err = |source| CoreError::Op {
            node: name(),
            source,
        };
        let step = self.run.step;
        let out = self.output(node.out)?;
        let pool = self.pool;
        match node.op {
            Op::Embed { table } => {
                let (ty, bytes, shape) = self.weight(table)?;
                ops::get_rows(ty, bytes, shape[2], step.tokens, out).map_err(op_err)?;
            }
            Op::MatMul { w, x } => {
                let (ty, data, [_, rows, cols]) = self.weight(w)?;
                let m = Matrix {
                    ggml_type: ty,
                    data,
                    rows,
                    cols,
                };
                mm.matmul(pool, &m, self.input(x)?, out)?;
            }
            Op::Add { a, b } => {
                ops::add(pool, self.input(a)?, self.input(b)?, out).map_err(op_err)?
            }
            Op::Mul { a, b } => {
                ops::mul(pool, self.input(a)?, self.input(b)?, out).map_err(op_err)?
            }
            Op::Div { a, b } => {
                ops::div(pool, self.input(a)?, self.input(b)?, out).map_err(op_err)?
            }
            Op::Scale { x, s } => ops::scale(pool, self.input(x)?, s, out).map_err(op_err)?,
            Op::RmsNorm { x, w, group, eps } => {
                let w = w.map(|w| self.weight_f32(w)).transpose()?;
                ops::rms_norm(pool, self.input(x)?, out, group, eps, w).map_err(op_err)?;
            }
            Op::LayerNorm {
                x,
                w,
                b,
                group,
                eps,
            } => {
                let w = w.map(|w| self.weight_f32(w)).transpose()?;
                let b = b.map(|b| self.weight_f32(b)).transpose()?;
                ops::layer_norm(pool, self.input(x)?, out, group, eps, w, b).map_err(op_err)?;
            }
            Op::Rope {
                x,
                n_heads,
                head_dim,
                cfg,
            } => {
                let freq_factors = cfg.freq_factors.map(|f| self.weight_f32(f)).transpose()?;
                let p = RopeParams::from_cfg(&cfg, freq_factors);
                let n_tokens = self.run.graph.tensor(x).rows();
                ops::rope(
                    pool,
                    self.input(x)?,
                    out,
                    n_tokens,
                    n_heads,
                    head_dim,
                    step.pos,
                    &p,
                )
                .map_err(op_err)?;
            }
            Op::Attention {
                q,
                k,
                v,
                layer,
                cfg,
            } => {
                let n_tokens = self.run.graph.tensor(q).rows();
                let (q, k, v) = (self.input(q)?, self.input(k)?, self.input(v)?);
                let sinks = cfg.sinks.map(|s| self.weight_f32(s)).transpose()?;
                let rows = AttnRows {
                    layer,
                    cfg: &cfg,
                    sinks,
                    exact: self.run.graph.decode_exact,
                };
                match kv {
                    KvTarget::One(kv) => self
                        .attend(kv, &rows, q, k, v, step.pos, out)
                        .map_err(op_err)?,
                    KvTarget::Rows { caches, seq } => {
                        if step.pos.len() != n_tokens {
                            return Err(self.err(format!(
                                "{n_tokens} query rows for {} positions",
                                step.pos.len()
                            )));
                        }
                        // Each row alone, in its own sequence's cache: the
                        // store and the attention of that sequence's
                        // one-token step.
                        let w = |x: &[f32]| x.len() / n_tokens.max(1);
                        let (q_w, k_w, v_w, o_w) = (w(q), w(k), w(v), out.len() / n_tokens.max(1));
                        fn row(x: &[f32], t: usize, w: usize) -> &[f32] {
                            &x[t * w..(t + 1) * w]
                        }
                        for (t, o) in out.chunks_exact_mut(o_w.max(1)).enumerate() {
                            let cache = seq
                                .get(t)
                                .and_then(|&s| caches.get_mut(s))
                                .ok_or_else(|| self.err(format!("row {t} has no cache")))?;
                            self.attend(
                                cache,
                                &rows,
                                row(q, t, q_w),
                                row(k, t, k_w),
                                row(v, t, v_w),
                                &step.pos[t..t + 1],
                                o,
                            )
                            .map_err(op_err)?;
                        }
                    }
                }
            }
            Op::Unary { x, f } => {
                let cols = self.run.graph.tensor(x).cols();
                let x = self.input(x)?;
                match f {
                    Unary::Silu => ops::silu_rows(pool, x, cols, out),
                    Unary::Gelu => ops::gelu(pool, x, out),
                    Unary::GeluErf => ops::gelu_erf(pool, x, out),
                    Unary::Tanh => ops::tanh(pool, x, out),
                    Unary::Sigmoid => ops::sigmoid(pool, x, out),
                }
                .map_err(op_err)?
            }
            Op::Glu { gate, up, f } => {
                let (g, u) = (self.input(gate)?, self.input(up)?);
                match f {
                    Glu::SwiGlu => ops::swiglu(pool, g, u, out),
                    Glu::GeGlu => ops::geglu(pool, g, u, out),
                    Glu::SwiGluOai => ops::swiglu_oai(g, u, 1.702, 7.0, out),
                }
                .map_err(op_err)?
            }
            Op::SelectRows { x } => {
                let cols = self.run.graph.tensor(x).cols();
                let x = self.input(x)?;
                for (i, &r) in step.out_rows.iter().enumerate() {
                    let r = r as usize;
                    let src = x
                        .get(r * cols..(r + 1) * cols)
                        .ok_or_else(|| self.err(format!("output row {r} out of range")))?;
                    out[i * cols..(i + 1) * cols].copy_from_slice(src);
                }
            }
            Op::Copy { .. } => return Err(self.err("copies are run by the session".into())),
            Op::Softmax { x } => {
                let cols = self.run.graph.tensor(x).cols();
                ops::softmax(pool, self.input(x)?, out, cols, 1.0, None).map_err(op_err)?
            }
            Op::TopK { x, k } => {
                let cols = self.run.graph.tensor(x).cols();
                ops::top_k_ids(self.input(x)?, cols, k, bytemuck::cast_slice_mut(out))
                    .map_err(op_err)?
            }
            Op::GatherCols { x, ids } => {
                let cols = self.run.graph.tensor(x).cols();
                let ids = bytemuck::cast_slice(self.input(ids)?);
                ops::gather_cols(self.input(x)?, cols, ids, out).map_err(op_err)?
            }
            Op::GroupMask {
                x,
                n_groups,
                n_used,
            } => {
                let cols = self.run.graph.tensor(x).cols();
                ops::group_mask(self.input(x)?, cols, n_groups, n_used, out).map_err(op_err)?
            }
            Op::NormSum { x, min_sum } => {
                let cols = self.run.graph.tensor(x).cols();
                ops::norm_sum(self.input(x)?, cols, min_sum, out).map_err(op_err)?
            }
            Op::MatMulId { w, x, ids } => {
                let (ty, data, [n_expert, rows, cols]) = self.weight(w)?;
                let k = self.run.graph.tensor(ids).cols();
                let e = Experts {
                    ggml_type: ty,
                    data,
                    n_expert,
                    rows,
                    cols,
                };
                let ids = bytemuck::cast_slice(self.input(ids)?);
                mm.mul_mat_id(pool, &e, self.input(x)?, ids, k, out)?;
            }
            Op::AddId { x, b, ids } => {
                let ids = bytemuck::cast_slice(self.input(ids)?);
                ops::add_id(self.input(x)?, self.input(b)?, ids, out).map_err(op_err)?
            }
            Op::MoeSum { x, w } => {
                let k = self.run.graph.tensor(w).cols();
                ops::moe_sum(self.input(x)?, self.input(w)?, k, out).map_err(op_err)?
            }
            Op::SliceHeads {
                x,
                n_heads,
                head_dim,
                start,
                len,
            } => ops::slice_heads(self.input(x)?, n_heads, head_dim, start, len, out)
                .map_err(op_err)?,
            Op::ConcatHeads { a, b, n_heads } => {
                let la = self.run.graph.tensor(a).cols() / n_heads;
                let lb = self.run.graph.tensor(b).cols() / n_heads;
                ops::concat_heads(self.input(a)?, la, self.input(b)?, lb, out).map_err(op_err)?
            }
            Op::MatMulHeads { w, x } => {
                let (ty, data, [n_heads, rows, cols]) = self.weight(w)?;
                let x = self.input(x)?;
                let n = x.len() / (n_heads * cols).max(1);
                let per_head = data.len() / n_heads.max(1);
                // ggml repacks only 2-D weights: a stack of per-head
                // matrices keeps the plain kernels' order.
                let repack = mm.repack();
                mm.set_repack(false);
                let r = HEAD_SCRATCH.with_borrow_mut(|(xin, yh)| -> Result<()> {
                    xin.resize(n * cols, 0.0);
                    yh.resize(n * rows, 0.0);
                    for h in 0..n_heads {
                        ops::gather_head(x, n_heads, cols, h, xin);
                        let m = Matrix {
                            ggml_type: ty,
                            data: &data[h * per_head..(h + 1) * per_head],
                            rows,
                            cols,
                        };
                        mm.matmul(pool, &m, xin, yh)?;
                        ops::scatter_head(yh, n_heads, rows, h, out);
                    }
                    Ok(())
                });
                mm.set_repack(repack);
                r?;
            }
            Op::MulRows { x, s } => {
                ops::mul_rows(self.input(x)?, self.input(s)?, out).map_err(op_err)?
            }
        }
        Ok(())
    }
}
