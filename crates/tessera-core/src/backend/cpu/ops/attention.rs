//! Fused attention over a KV cache, as ggml-cpu's `flash_attn_ext` computes
//! it for llama.cpp (`ggml_compute_forward_flash_attn_ext_f16`), bit for bit.
//! ggml picks one of three paths, and so does tessera:
//!
//! - **one chunk** (`..._f16_one_chunk`), the default: the query head is
//!   converted to the K cache's dot type (F16, or x86 Q8_0 for a Q8_0 cache)
//!   and dotted with each visible key (`ggml_vec_dot_f16`: [`math::dot_f16`]);
//!   `s = dot * scale`, or with a softcap `s = softcap * tanh(dot * (scale /
//!   softcap))`; masked keys are skipped (llama.cpp's mask is 0 or -inf);
//!   online softmax with running max `M` and sum `S = fma(S, ms, vs)` (GCC
//!   contracts it), the value accumulator in f16 for an F16 V (ggml's
//!   `VKQ16`, `ggml_vec_mad_f16`) or f32; the sink logit of the head, if any,
//!   joins `M` and `S` at the end (`S = S*ms + vs`, not contracted there);
//!   `out = acc * (1 / S)` (0 when nothing was visible).
//! - **split KV** (one query token, F16 K and V, a KV view of 512+ cells):
//!   the view's cells are cut into `n_threads` chunks of `ceil(kv_cells /
//!   n_threads)`, each chunk runs the one-chunk loop (the sink on the first
//!   only) and the partials are folded in chunk order as
//!   `ggml_flash_attn_ext_reduce_partials`: `acc = fma(acc, e_old, acc_c *
//!   e_new)`, `S` likewise. Its rounding depends on the thread count, so
//!   tessera splits by its pool's thread count, which must be llama.cpp's.
//! - **tiled** (64+ query tokens, F16 K and V): everything in f32; keys in
//!   tiles of 64 cells from cell 0; `s = fold fma(k, q)` over the head, then
//!   `* scale` (softcap: `tanh`, `* softcap`), the tile's max joins `M`
//!   (`acc`, `S` scaled by `expf(M_old - M)`), `p = v_expf(s - M)` with the
//!   sum of [`math::exp_sum_row`] added to `S` in f64, `acc = fold fma(p,
//!   v)` over the tile's cells in order; the sink as in one chunk.
//!
//! Tiles of queries and the thread split of the one-chunk and tiled paths do
//! not change any value; only the split-KV path depends on `n_threads` and on
//! the view's cell count (`kv_cells`, llama.cpp's padded `n_kv`).
//!
//! Shapes: `q`, `out`: `[n_tokens, n_head * head_dim]`; cache cells `0..n_kv`
//! of `k` and `v`, each `[n_kv_head * head_dim]`; `q_pos`: `[n_tokens]`;
//! `sinks`: `[n_head]`. GQA: head `h` reads KV head `h / (n_head / n_kv_head)`.

use std::cell::RefCell;

use tessera_quant::kernels::{dot_entry, SimdLevel, VecDot};
use tessera_quant::pool::ThreadPool;

use super::kv::{KvType, KvView};
use super::math::{self, LANES};
use super::{check_len, par_rows_work, shape, OpError, SendPtr, MAX_HEAD_DIM};

/// Query tokens from which ggml takes its tiled path (`GGML_FA_TILE_Q`).
pub const Q_TILE: usize = 64;
/// Cells per key tile of the tiled path (`GGML_FA_TILE_KV`).
pub const KV_TILE: usize = 64;
/// Cells of the KV view from which ggml splits a one-token decode.
pub const SPLIT_MIN_CELLS: usize = 512;
/// llama.cpp pads its KV view (`n_kv`) to a multiple of this many cells.
pub const LLAMA_KV_PAD: usize = 256;

/// The cells of llama.cpp's KV view when cells `0..n_kv` are used in a cache
/// of `n_ctx` cells (llama-kv-cache.cpp `get_n_kv`: at least 256, a multiple
/// of 256, at most the cache).
pub fn llama_kv_cells(n_kv: usize, n_ctx: usize) -> usize {
    n_ctx.min(LLAMA_KV_PAD.max(n_kv.next_multiple_of(LLAMA_KV_PAD)))
}

/// Parameters of [`attention`].
#[derive(Clone, Copy, Debug)]
pub struct AttnParams<'a> {
    /// Query tokens.
    pub n_tokens: usize,
    /// Query heads (a multiple of `n_kv_head`).
    pub n_head: usize,
    /// KV heads.
    pub n_kv_head: usize,
    /// Values per query/key head, at most [`MAX_HEAD_DIM`]. A value head
    /// has the V view's `head_dim` (the same, except with DeepSeek's MLA,
    /// whose keys are 576 wide and values 512).
    pub head_dim: usize,
    /// Valid cache cells: `0..n_kv` (cell index = token position).
    pub n_kv: usize,
    /// Cells of llama.cpp's KV view (its padded `n_kv`, at least `n_kv`;
    /// the cells past `n_kv` are masked): with one query token, F16 K and V
    /// and 512 or more cells, ggml splits the cells over its threads, and
    /// the rounding follows the split. 0 = as llama.cpp pads for a cache of
    /// the cells the K view holds ([`llama_kv_cells`]).
    pub kv_cells: usize,
    /// Position of each query token.
    pub q_pos: &'a [i32],
    /// Key `j` is visible only if `j <= q_pos`.
    pub causal: bool,
    /// Sliding window (llama.cpp's standard SWA): key `j` is hidden when
    /// `q_pos - j >= window`.
    pub window: Option<usize>,
    /// Factor of the scores (usually `1 / sqrt(head_dim)`).
    pub scale: f32,
    /// Logit softcap (gemma2), 0 = off.
    pub softcap: f32,
    /// One extra logit per head that takes part in the softmax but has no
    /// value (ggml's attention sinks).
    pub sinks: Option<&'a [f32]>,
}

impl AttnParams<'_> {
    /// Whether query position `qp` sees key `j`.
    #[inline]
    fn visible(&self, qp: i32, j: usize) -> bool {
        let d = i64::from(qp) - j as i64;
        j < self.n_kv && (!self.causal || d >= 0) && self.window.is_none_or(|w| d < w as i64)
    }

    /// The scale applied to the raw dot: ggml folds the softcap into it.
    fn dot_scale(&self) -> f32 {
        if self.softcap != 0.0 {
            self.scale / self.softcap
        } else {
            self.scale
        }
    }
}

/// Which of ggml's paths an attention call takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    OneChunk,
    /// Split-KV decode, chunks of `chunk` cells out of `cells`.
    Split {
        cells: usize,
        chunk: usize,
    },
    Tiled,
}

/// The inner kernels one attention call uses.
#[derive(Clone, Copy)]
struct Kernels {
    dot: VecDot,
    dot_f16: fn(&[u8], &[u8]) -> f32,
    mad_f32: fn(&mut [f32], &[f32], f32),
    mad_f16: fn(&mut [u16], &[u8], f32),
    exp_sum: fn(&mut [f32], f32) -> f64,
    gemm: fn(&mut [f32], &[f32], &[f32], usize, usize),
}

impl Kernels {
    fn new(k_type: KvType, level: SimdLevel) -> Result<Kernels, OpError> {
        let entry = dot_entry(k_type.ggml_type()).ok_or_else(|| OpError::Unsupported {
            op: "attention",
            reason: format!("no dot kernel for a {:?} K cache", k_type),
        })?;
        let simd = level > SimdLevel::Scalar;
        Ok(Kernels {
            dot: entry.at(level),
            dot_f16: if simd {
                math::dot_f16
            } else {
                math::dot_f16_scalar
            },
            mad_f32: if simd {
                math::mad_f32
            } else {
                math::mad_f32_scalar
            },
            mad_f16: if simd {
                math::mad_f16
            } else {
                math::mad_f16_scalar
            },
            exp_sum: if simd {
                math::exp_sum_row
            } else {
                math::exp_sum_row_scalar
            },
            gemm: if simd {
                math::gemm_acc
            } else {
                math::gemm_acc_scalar
            },
        })
    }

    /// The dot of a key head with the converted query.
    #[inline]
    fn dot(&self, t: KvType, hd: usize, k: &[u8], q: &[u8]) -> f32 {
        match t {
            KvType::F16 => (self.dot_f16)(k, q),
            KvType::Q8_0 => (self.dot)(hd, k, q),
        }
    }
}

/// Attention of every (token, head) of `q` over cells `0..p.n_kv` of the
/// cache, into `out`, with the best kernels this CPU has. The split-KV
/// decode path splits by `pool.n_threads()` (see the module docs).
pub fn attention(
    pool: &ThreadPool,
    q: &[f32],
    k: KvView,
    v: KvView,
    out: &mut [f32],
    p: &AttnParams,
) -> Result<(), OpError> {
    run(pool, q, k, v, out, p, SimdLevel::detect())
}

/// [`attention`] with the portable scalar kernels only (the twin the tests
/// compare against).
pub fn attention_scalar(
    pool: &ThreadPool,
    q: &[f32],
    k: KvView,
    v: KvView,
    out: &mut [f32],
    p: &AttnParams,
) -> Result<(), OpError> {
    run(pool, q, k, v, out, p, SimdLevel::Scalar)
}

fn check(q: &[f32], k: &KvView, v: &KvView, out: &[f32], p: &AttnParams) -> Result<(), OpError> {
    const OP: &str = "attention";
    if p.n_kv_head == 0 || !p.n_head.is_multiple_of(p.n_kv_head) {
        return Err(shape(
            OP,
            format!(
                "n_head {} is not a multiple of n_kv_head {}",
                p.n_head, p.n_kv_head
            ),
        ));
    }
    if p.head_dim == 0 || p.head_dim > MAX_HEAD_DIM {
        return Err(shape(
            OP,
            format!("head_dim {} not in 1..={MAX_HEAD_DIM}", p.head_dim),
        ));
    }
    if p.kv_cells != 0 && p.kv_cells < p.n_kv {
        return Err(shape(
            OP,
            format!("kv_cells {} < n_kv {}", p.kv_cells, p.n_kv),
        ));
    }
    for (name, view, hd) in [("k", k, p.head_dim), ("v", v, v.head_dim)] {
        if view.n_kv_head != p.n_kv_head || view.head_dim != hd || hd == 0 || hd > MAX_HEAD_DIM {
            return Err(shape(
                OP,
                format!(
                    "{name} cache is [{} heads x {}], params say [{} x {hd}] (at most {MAX_HEAD_DIM})",
                    view.n_kv_head, view.head_dim, p.n_kv_head
                ),
            ));
        }
        view.check(OP, name, p.n_kv)?;
    }
    check_len(OP, "q", q.len(), p.n_tokens * p.n_head * p.head_dim)?;
    check_len(OP, "out", out.len(), p.n_tokens * p.n_head * v.head_dim)?;
    check_len(OP, "q_pos", p.q_pos.len(), p.n_tokens)?;
    if let Some(s) = p.sinks {
        check_len(OP, "sinks", s.len(), p.n_head)?;
    }
    Ok(())
}

/// ggml's choice of path (`ggml_compute_forward_flash_attn_ext_f16`).
fn path(k: &KvView, v: &KvView, p: &AttnParams, n_threads: usize) -> Path {
    let f16 = k.dtype == KvType::F16 && v.dtype == KvType::F16;
    let cells = match p.kv_cells {
        0 => llama_kv_cells(p.n_kv, k.n_cells().max(p.n_kv)),
        c => c,
    };
    if f16 && p.n_tokens == 1 && cells >= SPLIT_MIN_CELLS {
        Path::Split {
            cells,
            chunk: cells.div_ceil(n_threads.max(1)),
        }
    } else if f16 && p.n_tokens >= Q_TILE {
        Path::Tiled
    } else {
        Path::OneChunk
    }
}

fn run(
    pool: &ThreadPool,
    q: &[f32],
    k: KvView,
    v: KvView,
    out: &mut [f32],
    p: &AttnParams,
    level: SimdLevel,
) -> Result<(), OpError> {
    check(q, &k, &v, out, p)?;
    let kern = Kernels::new(k.dtype, level)?;
    let (hd, hdv) = (p.head_dim, v.head_dim);
    let path = path(&k, &v, p, pool.n_threads());
    if path == Path::Tiled {
        tiled(pool, q, &k, &v, out, p, kern);
        return Ok(());
    }
    let work = out.len().saturating_mul(p.n_kv.max(1)).saturating_mul(2);
    par_rows_work(pool, out, hdv, 1, work, |rows, out| {
        for (r, o) in rows.clone().zip(out.chunks_exact_mut(hdv)) {
            let (t, h) = (r / p.n_head, r % p.n_head);
            let qh = &q[r * hd..(r + 1) * hd];
            match path {
                Path::Split { cells, chunk } => split_head(qh, &k, &v, p, h, kern, cells, chunk, o),
                _ => one_head(qh, &k, &v, p, t, h, kern, o),
            }
        }
    });
    Ok(())
}

/// The running state of one query row's online softmax.
struct Online {
    /// Running max of the scores.
    m: f32,
    /// Running sum of `exp(s - m)`.
    s: f32,
}

/// The one-chunk loop of query token `t`, head `h` (query values `qh`) over
/// the visible cells of `cells`: leaves the value accumulator in `acc32`
/// (f32, a value head) and returns `M` and `S`; adds the sink when
/// `with_sink`.
#[allow(clippy::too_many_arguments)]
fn chunk(
    qh: &[f32],
    k: &KvView,
    v: &KvView,
    p: &AttnParams,
    t: usize,
    h: usize,
    kern: Kernels,
    cells: std::ops::Range<usize>,
    with_sink: bool,
    acc32: &mut [f32],
) -> Online {
    let (hd, hdv) = (p.head_dim, v.head_dim);
    let kvh = h / (p.n_head / p.n_kv_head);
    let qp = p.q_pos[t];
    // Checked by `KvView::check`: both are whole blocks.
    let k_bytes = k.head_bytes().unwrap_or(0);
    let v_bytes = v.head_bytes().unwrap_or(0);

    let mut q_buf = [0u8; 2 * MAX_HEAD_DIM];
    let q_conv = &mut q_buf[..k_bytes];
    k.dtype.from_f32(qh, q_conv);

    let mut acc16 = [0u16; MAX_HEAD_DIM];
    let mut v32 = [0f32; MAX_HEAD_DIM];
    let (acc16, v32) = (&mut acc16[..hdv], &mut v32[..hdv]);
    acc32.fill(0.0);
    let v_f16 = v.dtype == KvType::F16;

    let scale = p.dot_scale();
    let mut st = Online {
        m: f32::NEG_INFINITY,
        s: 0.0,
    };
    for j in cells.filter(|&j| p.visible(qp, j)) {
        let mut s = kern.dot(k.dtype, hd, k.head(j, kvh, k_bytes), q_conv) * scale;
        if p.softcap != 0.0 {
            s = p.softcap * s.tanh();
        }
        let (mut ms, mut vs) = (1f32, 1f32);
        if s > st.m {
            ms = (st.m - s).exp();
            st.m = s;
        } else {
            vs = (s - st.m).exp();
        }
        let vh = v.head(j, kvh, v_bytes);
        if v_f16 {
            if ms != 1.0 {
                math::scale_f16(acc16, ms);
            }
            (kern.mad_f16)(acc16, vh, vs);
        } else {
            if ms != 1.0 {
                acc32.iter_mut().for_each(|a| *a *= ms);
            }
            v.dtype.to_f32(vh, v32);
            (kern.mad_f32)(acc32, v32, vs);
        }
        // GCC contracts ggml's `S = S*ms + vs` here.
        st.s = st.s.mul_add(ms, vs);
    }
    if v_f16 {
        for (a, &b) in acc32.iter_mut().zip(acc16.iter()) {
            *a = half::f16::from_bits(b).to_f32();
        }
    }
    if with_sink {
        add_sink(p, h, &mut st, acc32);
    }
    st
}

/// The sink logit of head `h` joins the softmax (not contracted in ggml).
fn add_sink(p: &AttnParams, h: usize, st: &mut Online, acc32: &mut [f32]) {
    if let Some(sinks) = p.sinks {
        let s = sinks[h];
        let (mut ms, mut vs) = (1f32, 1f32);
        if s > st.m {
            ms = (st.m - s).exp();
            acc32.iter_mut().for_each(|a| *a *= ms);
        } else {
            vs = (s - st.m).exp();
        }
        st.s = st.s * ms + vs;
    }
}

/// `o = acc * (1 / S)`, 0 when `S` is 0.
fn finish(acc32: &[f32], s: f32, o: &mut [f32]) {
    let inv = if s == 0.0 { 0.0 } else { 1.0 / s };
    for (d, &a) in o.iter_mut().zip(acc32.iter()) {
        *d = a * inv;
    }
}

/// ggml's one-chunk path for query token `t`, head `h`, into `o`.
#[allow(clippy::too_many_arguments)]
fn one_head(
    qh: &[f32],
    k: &KvView,
    v: &KvView,
    p: &AttnParams,
    t: usize,
    h: usize,
    kern: Kernels,
    o: &mut [f32],
) {
    let mut acc32 = [0f32; MAX_HEAD_DIM];
    let acc32 = &mut acc32[..v.head_dim];
    let st = chunk(qh, k, v, p, t, h, kern, 0..p.n_kv, true, acc32);
    finish(acc32, st.s, o);
}

/// ggml's split-KV decode path for head `h` of the one query token: the
/// chunks of `chunk` cells of `0..cells` in order, each folded into the
/// result as `ggml_flash_attn_ext_reduce_partials` does.
#[allow(clippy::too_many_arguments)]
fn split_head(
    qh: &[f32],
    k: &KvView,
    v: &KvView,
    p: &AttnParams,
    h: usize,
    kern: Kernels,
    cells: usize,
    chunk_len: usize,
    o: &mut [f32],
) {
    let hdv = v.head_dim;
    let mut acc = [0f32; MAX_HEAD_DIM];
    let mut part = [0f32; MAX_HEAD_DIM];
    let (acc, part) = (&mut acc[..hdv], &mut part[..hdv]);
    let (mut m, mut s) = (f32::NEG_INFINITY, 0f32);
    for start in (0..cells).step_by(chunk_len.max(1)) {
        let end = (start + chunk_len).min(cells);
        let c = chunk(qh, k, v, p, 0, h, kern, start..end, start == 0, part);
        if c.s == 0.0 {
            continue;
        }
        let m_new = m.max(c.m);
        let e_old = (m - m_new).exp();
        let e_new = (c.m - m_new).exp();
        for (a, &x) in acc.iter_mut().zip(part.iter()) {
            *a = a.mul_add(e_old, x * e_new);
        }
        s = s.mul_add(e_old, c.s * e_new);
        m = m_new;
    }
    if s != 0.0 {
        finish(acc, s, o);
    } else {
        o.copy_from_slice(acc);
    }
}

/// Per-thread scratch of the tiled path, grown once to the largest head.
struct TileScratch {
    /// The key tile in f32, transposed: `[head_dim][KV_TILE]`.
    kt: Vec<f32>,
    /// The value tile in f32: `[KV_TILE][head_dim]`.
    vt: Vec<f32>,
    /// The accumulators of the query tile: `[Q_TILE][head_dim]`.
    acc: Vec<f32>,
    /// The query tile: `[Q_TILE][head_dim]`.
    qt: Vec<f32>,
}

thread_local! {
    static TILE_SCRATCH: RefCell<TileScratch> = const {
        RefCell::new(TileScratch { kt: Vec::new(), vt: Vec::new(), acc: Vec::new(), qt: Vec::new() })
    };
}

/// ggml's tiled path: units of (head, up to [`Q_TILE`] tokens) over the pool.
fn tiled(
    pool: &ThreadPool,
    q: &[f32],
    k: &KvView,
    v: &KvView,
    out: &mut [f32],
    p: &AttnParams,
    kern: Kernels,
) {
    let blocks = p.n_tokens.div_ceil(Q_TILE);
    let n_units = p.n_head * blocks;
    let base = SendPtr(out.as_mut_ptr());
    let unit = |u: usize| {
        let (h, b) = (u / blocks, u % blocks);
        let tokens = b * Q_TILE..((b + 1) * Q_TILE).min(p.n_tokens);
        TILE_SCRATCH.with_borrow_mut(|sc| {
            // SAFETY: unit (h, b) writes rows t * n_head + h for t in its
            // tokens only; no two units share a row, and every row lies
            // inside `out`, borrowed mutably for the whole call.
            let row = |t: usize| unsafe {
                std::slice::from_raw_parts_mut(base.at((t * p.n_head + h) * v.head_dim), v.head_dim)
            };
            tiled_unit(q, k, v, p, kern, h, tokens, sc, row);
        });
    };
    if pool.n_threads() == 1 || n_units == 1 {
        (0..n_units).for_each(unit);
    } else {
        pool.for_chunks(n_units, 1, |r| r.for_each(unit));
    }
}

/// The tiled path for head `h` and query tokens `tokens`; `row(t)` is the
/// output row of token `t`.
#[allow(clippy::too_many_arguments)]
fn tiled_unit<'o>(
    q: &[f32],
    k: &KvView,
    v: &KvView,
    p: &AttnParams,
    kern: Kernels,
    h: usize,
    tokens: std::ops::Range<usize>,
    sc: &mut TileScratch,
    row: impl Fn(usize) -> &'o mut [f32],
) {
    let (hd, hdv) = (p.head_dim, v.head_dim);
    let kvh = h / (p.n_head / p.n_kv_head);
    let (k_bytes, v_bytes) = (2 * hd, 2 * hdv);
    let n_rows = tokens.len();
    for buf in [&mut sc.kt, &mut sc.vt, &mut sc.acc, &mut sc.qt] {
        if buf.len() < KV_TILE.max(Q_TILE) * hd.max(hdv) {
            buf.resize(KV_TILE.max(Q_TILE) * hd.max(hdv), 0.0);
        }
    }
    let (kt, vt, acc, qt) = (
        &mut sc.kt[..KV_TILE * hd],
        &mut sc.vt[..KV_TILE * hdv],
        &mut sc.acc[..n_rows * hdv],
        &mut sc.qt[..n_rows * hd],
    );
    acc.fill(0.0);
    for (i, t) in tokens.clone().enumerate() {
        qt[i * hd..(i + 1) * hd].copy_from_slice(&q[(t * p.n_head + h) * hd..][..hd]);
    }
    let mut st: [Online; Q_TILE] = std::array::from_fn(|_| Online {
        m: f32::NEG_INFINITY,
        s: 0.0,
    });
    let mut kq = [0f32; Q_TILE * KV_TILE];
    let kq = &mut kq[..n_rows * KV_TILE];
    let scale = p.dot_scale();
    let first_pos = tokens.clone().map(|t| p.q_pos[t]).min().unwrap_or(0);
    let last_pos = tokens.clone().map(|t| p.q_pos[t]).max().unwrap_or(0);
    for start in (0..p.n_kv).step_by(KV_TILE) {
        let tile = start..(start + KV_TILE).min(p.n_kv);
        // Cheap skip of tiles no row sees (ggml skips all-masked tiles; a
        // row that sees nothing in a tile it computes is skipped too).
        if p.causal && start as i64 > i64::from(last_pos) {
            break;
        }
        if let Some(w) = p.window {
            if (tile.end as i64 - 1) <= i64::from(first_pos) - w as i64 {
                continue;
            }
        }
        for (tk, j) in tile.clone().enumerate() {
            let kh = k.head(j, kvh, k_bytes);
            for (dk, b) in kh.chunks_exact(2).enumerate() {
                kt[dk * KV_TILE + tk] = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
            v.dtype
                .to_f32(v.head(j, kvh, v_bytes), &mut vt[tk * hdv..(tk + 1) * hdv]);
        }
        // Past a short last tile: zero values, so their (zero) weights add
        // nothing whatever the earlier tile left there.
        vt[tile.len() * hdv..].fill(0.0);
        // The scores of the whole tile, then each row's softmax step.
        kq.fill(0.0);
        (kern.gemm)(kq, qt, kt, hd, KV_TILE);
        for (i, t) in tokens.clone().enumerate() {
            let qp = p.q_pos[t];
            let kq = &mut kq[i * KV_TILE..(i + 1) * KV_TILE];
            let mut tile_max = f32::NEG_INFINITY;
            if tile.clone().any(|j| p.visible(qp, j)) {
                for (tk, s) in kq.iter_mut().enumerate() {
                    let j = start + tk;
                    if j < tile.end && p.visible(qp, j) {
                        *s *= scale;
                        if p.softcap != 0.0 {
                            *s = s.tanh() * p.softcap;
                        }
                    } else {
                        *s = f32::NEG_INFINITY;
                    }
                }
                tile_max = kq.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            }
            if tile_max == f32::NEG_INFINITY {
                // The row sees nothing here: zero weights leave it as it is.
                kq.fill(0.0);
                continue;
            }
            let a = &mut acc[i * hdv..(i + 1) * hdv];
            let r = &mut st[i];
            let m_new = r.m.max(tile_max);
            if m_new > r.m {
                let ms = (r.m - m_new).exp();
                a.iter_mut().for_each(|x| *x *= ms);
                r.s *= ms;
            }
            r.m = m_new;
            r.s = (f64::from(r.s) + (kern.exp_sum)(kq, m_new)) as f32;
        }
        (kern.gemm)(acc, kq, vt, KV_TILE, hdv);
    }
    for (i, t) in tokens.enumerate() {
        let a = &mut acc[i * hdv..(i + 1) * hdv];
        add_sink(p, h, &mut st[i], a);
        finish(a, st[i].s, row(t));
    }
}

const _: () = assert!(KV_TILE.is_multiple_of(LANES));
