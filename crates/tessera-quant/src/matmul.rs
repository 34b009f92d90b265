//! Matrix multiplication drivers on top of the dot kernels: a weight matrix
//! of any type that has a kernel times f32 activations, for one token
//! (matrix-vector, decode), many tokens (matrix-matrix, prompt processing)
//! and mixture-of-experts layers (`mul_mat_id`: only the experts each token
//! selected).
//!
//! # Shapes (row-major, ggml's `ne0` is the innermost, `cols`)
//!
//! | operand | shape | layout |
//! |---|---|---|
//! | weights `w` | `[rows, cols]` | row `r` is `cols / block_size` blocks at byte `r * row_bytes` |
//! | activations `x` | `[n_tokens, cols]` f32 | token `t` at `x[t * cols..]` |
//! | output `y` | `[n_tokens, rows]` f32 | `y[t * rows + r] = w[r] · x[t]` |
//! | experts `w` | `[n_expert, rows, cols]` | expert `e`'s matrix at byte `e * rows * row_bytes` |
//! | `ids` | `[n_tokens, n_used]` i32 | the experts token `t` uses |
//! | MoE `x` | `[n_tokens, 1 or n_used, cols]` f32 | one row per token (shared by its experts, gate/up) or per slot (down) |
//! | MoE `y` | `[n_tokens, n_used, rows]` f32 | `y[(t * n_used + s) * rows + r] = w[ids[t, s]][r] · x[t, s or 0]` |
//!
//! `cols` must be a whole number of the weight type's blocks. Every shape is
//! checked before anything runs; a mismatch is a [`QuantError::Shape`], a
//! type without a kernel a [`QuantError::Unsupported`]. Nothing panics on a
//! bad shape.
//!
//! # How it runs
//!
//! 1. The activations are converted once into the kernel's activation type
//!    (Q8_0, Q8_1, Q8_K, F16, BF16; F32 is used in place), spread over the
//!    pool by token rows: Q8_0 and Q8_1 by the SIMD quantizers of
//!    [`kernels::legacy`] (byte-identical with the reference ones), Q8_K by
//!    the reference quantizer ([`crate::quantize()`]).
//!    The buffer lives in a [`MatmulCtx`] and is reused: after the first call
//!    of a given size, a matmul allocates nothing. [`matmul`] and
//!    [`mul_mat_id`] keep one [`MatmulCtx`] per calling thread.
//! 2. The output rows are cut into blocks of a multiple of 8 rows, at least
//!    four per pool thread, which the pool's threads claim one at a time.
//! 3. Within a row block the tokens go in tiles: for each weight row, the
//!    dot with every token of the tile, so the row is read from memory once
//!    per tile and the next dots find it in L1; the tile's activations
//!    (sized to about 128 KiB) stay in L2 across the block's rows. With one
//!    token this is a plain matrix-vector product streaming the weights.
//!    Where the type has a tile kernel ([`kernels::legacy::dot_tile`],
//!    [`kernels::float::dot_tile`]), 4 rows × 2 tokens go through it at
//!    once; otherwise one dot per pair. A single token (decode) skips the
//!    tiles: the single kernel row after row is one sequential stream per
//!    task, which the memory system serves faster than interleaved rows.
//!    Q5_0 batches of 8 or more tokens first widen the task's row block to
//!    Q8_0 (same integers, so the same bits) and run the Q8_0 tile on it.
//!    Batches of 8 or more tokens of
//!    non-repacked Q2_K…Q6_K and IQ4_XS go through
//!    [`kernels::kquants::tiled`] (one row × up to 64 tokens per call), in
//!    the float order of ggml-cpu's tiled matmul ([`MatmulCtx::set_tiled`]).
//! 4. `mul_mat_id` groups the (token, slot) pairs by expert (a counting
//!    sort), then runs step 3 on each selected expert's matrix with its
//!    tokens only; experts nobody selected are never read.

use std::cell::RefCell;

use half::{bf16, f16};

use crate::kernels::kquants::gemv8;
use crate::kernels::kquants::q4k_8x8::{self, Chain, Rows8};
use crate::kernels::kquants::tiled::{self, TiledRow};
use crate::kernels::legacy::{DotTile, TILE_ACTS, TILE_ROWS};
use crate::kernels::legacy8;
use crate::kernels::{self, SimdLevel, VecDot};
use crate::pool::ThreadPool;
use crate::{GgmlType, QuantError};

/// Bytes of activations per token tile (kept in L2 while a row block runs).
const TILE_ACT_BYTES: usize = 128 << 10;
/// Bytes of weights per row block in a matrix-matrix product.
const BLOCK_W_BYTES: usize = 256 << 10;
/// Row blocks are multiples of this many rows.
const ROW_ALIGN: usize = 8;
/// Row blocks per pool thread (for balance when a thread is preempted).
const BLOCKS_PER_THREAD: usize = 4;

/// A weight matrix `[rows, cols]` of type `ggml_type`.
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    /// Weight type.
    pub ggml_type: GgmlType,
    /// `rows * row_bytes` bytes.
    pub data: &'a [u8],
    /// Output features.
    pub rows: usize,
    /// Input features (a multiple of the type's block size).
    pub cols: usize,
}

/// A stack of expert matrices `[n_expert, rows, cols]` of type `ggml_type`.
#[derive(Clone, Copy, Debug)]
pub struct Experts<'a> {
    /// Weight type.
    pub ggml_type: GgmlType,
    /// `n_expert * rows * row_bytes` bytes.
    pub data: &'a [u8],
    /// Number of experts.
    pub n_expert: usize,
    /// Output features per expert.
    pub rows: usize,
    /// Input features (a multiple of the type's block size).
    pub cols: usize,
}

fn shape_err(t: GgmlType, reason: String) -> QuantError {
    QuantError::Shape {
        ggml_type: t,
        reason,
    }
}

/// Bytes of one row of `cols` values of type `t`.
pub fn row_bytes(t: GgmlType, cols: usize) -> Result<usize, QuantError> {
    let bs = t.block_size() as usize;
    if bs == 0 || !cols.is_multiple_of(bs) {
        return Err(shape_err(
            t,
            format!("{cols} columns are not a whole number of blocks of {bs}"),
        ));
    }
    (cols / bs)
        .checked_mul(t.type_size() as usize)
        .ok_or_else(|| shape_err(t, format!("a row of {cols} columns overflows")))
}

fn mul(t: GgmlType, a: usize, b: usize) -> Result<usize, QuantError> {
    a.checked_mul(b)
        .ok_or_else(|| shape_err(t, format!("{a} × {b} overflows")))
}

/// The resolved kernel of a weight type at a SIMD level.
#[derive(Clone, Copy)]
struct Kernel {
    dot: VecDot,
    /// Several rows × activations per pass, where the family has it.
    tile: Option<DotTile>,
    act: GgmlType,
    w_row: usize,
    a_row: usize,
    /// Q4_K in the order of llama.cpp's repacked weights, 8 rows per call.
    rows8: Option<Rows8>,
    /// Q4_0, IQ4_NL, MXFP4 in the order of ggml's repacked weights, 8 rows
    /// per call (the same bits as `dot`, which is then the one-row kernel).
    legacy8: Option<legacy8::Rows8>,
    /// One token: 8 rows per call in `dot`'s own order (Q4_0, Q4_1, Q5_0,
    /// Q5_1, Q8_0: [`legacy8::rows8`]; Q4_K, Q5_K, Q6_K:
    /// [`gemv8::rows8`]).
    gemv8: Option<legacy8::Rows8>,
    /// K-quants/IQ4_XS in the order of ggml-cpu's tiled matmul, taken
    /// where the batch (per expert for `mul_mat_id`) has at least
    /// [`TILED_MIN_TOKENS`] tokens.
    tiled: Option<TiledRow>,
    /// Q5_0 batches: the Q8_0 tile kernel and Q8_0 row bytes, run on the
    /// row block widened to Q8_0 once (see [`widen_q5_0`]).
    widen: Option<(DotTile, usize)>,
}

/// Batches of at least this many tokens widen Q5_0 row blocks to Q8_0.
const WIDEN_MIN_TOKENS: usize = 8;

/// ggml-cpu's tiled matmul takes batches of at least this many tokens
/// (`ggml_tiled_min_batch`).
const TILED_MIN_TOKENS: usize = 8;

impl Kernel {
    fn new(t: GgmlType, level: SimdLevel, cols: usize) -> Result<Kernel, QuantError> {
        let e = kernels::dot_entry(t).ok_or(QuantError::Unsupported {
            ggml_type: t,
            op: "matmul (no dot kernel)",
        })?;
        let w_row = row_bytes(t, cols)?;
        let a_row = row_bytes(e.act, cols)?;
        if !matches!(e.act, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
            && crate::info(e.act).from_f32.is_none()
        {
            return Err(QuantError::Unsupported {
                ggml_type: e.act,
                op: "quantize activations",
            });
        }
        Ok(Kernel {
            dot: e.at(level),
            tile: kernels::legacy::dot_tile(t, level)
                .or_else(|| kernels::float::dot_tile(t, level)),
            act: e.act,
            w_row,
            a_row,
            rows8: None,
            legacy8: None,
            gemv8: legacy8::rows8(t, level).or_else(|| gemv8::rows8(t, level)),
            tiled: None,
            widen: match (t, kernels::legacy::dot_tile(GgmlType::Q8_0, level)) {
                (GgmlType::Q5_0, Some(tile)) => Some((tile, row_bytes(GgmlType::Q8_0, cols)?)),
                _ => None,
            },
        })
    }

    /// The kernel ggml-cpu (AVX2, llama.cpp's default build and extra
    /// buffers) runs for this shape, where its float order differs from
    /// `vec_dot`'s (docs/quant-kernels.md, "Which kernels llama.cpp
    /// actually runs"):
    ///
    /// - Q4_K with `rows % 8 == 0` (and `repack`): repacked `q4_K_8x8`,
    ///   [`q4k_8x8`]'s order;
    /// - Q4_0, IQ4_NL, MXFP4 with `rows % 8 == 0` (and `repack`): their
    ///   repacked `8x8` order ([`kernels::legacy::repacked_dot`]);
    /// - other (non-repacked) Q2_K … Q6_K and IQ4_XS (and `tiled`): the
    ///   tiled matmul for batches of at least [`TILED_MIN_TOKENS`],
    ///   [`tiled`]'s order (the drivers check the batch size);
    /// - F32/F16/BF16 with `n_tokens >= 2`, `cols % 8 == 0`, `rows % 4 == 0`:
    ///   llamafile's tinyBLAS, [`kernels::float::sgemm_dot`]'s order.
    #[allow(clippy::too_many_arguments)]
    fn as_ggml(
        mut self,
        t: GgmlType,
        level: SimdLevel,
        rows: usize,
        n_tokens: usize,
        cols: usize,
        repack: bool,
        tiled_on: bool,
    ) -> Kernel {
        if t == GgmlType::Q4_K && repack && rows.is_multiple_of(8) {
            self.rows8 = Some(q4k_8x8::rows8(level));
        } else if let (Some(dot), true) = (
            kernels::legacy::repacked_dot(t, level),
            repack && rows.is_multiple_of(8),
        ) {
            self.dot = dot;
            self.tile = None;
            self.legacy8 = legacy8::repacked_rows8(t, level);
            self.gemv8 = None;
        } else if tiled_on {
            self.tiled = tiled::tiled_row(t, level);
        }
        if n_tokens >= 2 && cols.is_multiple_of(8) && rows.is_multiple_of(4) {
            if let Some(dot) = kernels::float::sgemm_dot(t, level) {
                self.dot = dot;
                self.tile = kernels::float::sgemm_tile(t, level);
            }
        }
        self
    }
}

/// The drivers' reusable state: the SIMD level they run at and the buffer
/// the activations are converted into. Keep one per thread that issues
/// matmuls (the CPU backend holds one per op stream); after the first call of
/// a given size, calls allocate nothing.
pub struct MatmulCtx {
    level: SimdLevel,
    /// Q4_K with rows % 8 == 0 in the order of ggml's repacked weights.
    repack: bool,
    /// Batches of >= 8 tokens of K-quants/IQ4_XS in ggml's tiled order.
    tiled: bool,
    /// Every token of a batch in the float chain of a one-token product.
    decode_exact: bool,
    /// 8-aligned, so every block type's rows are aligned for it.
    buf: Vec<u64>,
    /// Scratch for `mul_mat_id`'s grouping.
    counts: Vec<usize>,
    pairs: Vec<u32>,
    used: Vec<usize>,
}

impl Default for MatmulCtx {
    fn default() -> Self {
        Self::new()
    }
}

impl MatmulCtx {
    /// A context at the best SIMD level of this CPU.
    pub fn new() -> MatmulCtx {
        Self::with_level(SimdLevel::detect())
    }

    /// A context at `level`, or the best this CPU has if that is lower.
    pub fn with_level(level: SimdLevel) -> MatmulCtx {
        MatmulCtx {
            level: level.min(SimdLevel::detect()),
            repack: true,
            tiled: true,
            decode_exact: false,
            buf: Vec::new(),
            counts: Vec::new(),
            pairs: Vec::new(),
            used: Vec::new(),
        }
    }

    /// Whether Q4_K matrices with a row count divisible by 8 are computed
    /// in the float order of llama.cpp's repacked weights (`q4_K_8x8`, its
    /// default on AVX2) rather than `vec_dot`'s (`--no-repack`). On by
    /// default.
    pub fn set_repack(&mut self, on: bool) {
        self.repack = on;
    }

    /// Whether Q4_K matrices are computed in the repacked order (see
    /// [`MatmulCtx::set_repack`]).
    pub fn repack(&self) -> bool {
        self.repack
    }

    /// Whether batches of at least 8 tokens (per expert in `mul_mat_id`)
    /// of non-repacked Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and IQ4_XS weights are
    /// computed in the float order of ggml-cpu's tiled matmul (its default)
    /// rather than `vec_dot`'s (`GGML_CPU_TILED_MM=0`). On by default.
    pub fn set_tiled(&mut self, on: bool) {
        self.tiled = on;
    }

    /// Whether every token of a batch is computed in the float order a
    /// one-token product (the GEMV, decode) gives it, so that a batch's
    /// outputs equal, bit for bit, those of one product per token: no
    /// tinyBLAS order for F32/F16/BF16, no pair chain for repacked Q4_K,
    /// no tiled K-quant order; what stays is what already gives the GEMV's
    /// bits (the tile kernels, 8-row groups, several tokens per weight
    /// unpacking), so the weights are still read once per batch. For
    /// verifying a speculative draft, where a batch's logits must be those
    /// of decoding its tokens one at a time. Off by default (batches in
    /// ggml-cpu's batched order, as llama.cpp computes a prompt).
    pub fn set_decode_exact(&mut self, on: bool) {
        self.decode_exact = on;
    }

    /// Whether batches are computed in the one-token order (see
    /// [`MatmulCtx::set_decode_exact`]).
    pub fn decode_exact(&self) -> bool {
        self.decode_exact
    }

    /// The level the kernels run at (per type, the best variant at or below it).
    pub fn level(&self) -> SimdLevel {
        self.level
    }

    /// `y = w · xᵀ`: see the [module docs](self) for shapes.
    pub fn matmul(
        &mut self,
        pool: &ThreadPool,
        w: &Matrix,
        x: &[f32],
        y: &mut [f32],
    ) -> Result<(), QuantError> {
        let t = w.ggml_type;
        let k = Kernel::new(t, self.level, w.cols)?;
        if w.data.len() != mul(t, w.rows, k.w_row)? {
            return Err(shape_err(
                t,
                format!(
                    "{} weight bytes for {} rows of {} bytes",
                    w.data.len(),
                    w.rows,
                    k.w_row
                ),
            ));
        }
        if w.cols == 0 || !x.len().is_multiple_of(w.cols) {
            return Err(shape_err(
                t,
                format!(
                    "{} activations are not whole rows of {} columns",
                    x.len(),
                    w.cols
                ),
            ));
        }
        let n_tokens = x.len() / w.cols;
        if y.len() != mul(t, n_tokens, w.rows)? {
            return Err(shape_err(
                t,
                format!(
                    "{} outputs for {} tokens × {} rows",
                    y.len(),
                    n_tokens,
                    w.rows
                ),
            ));
        }
        if n_tokens == 0 || w.rows == 0 {
            return Ok(());
        }
        let exact = self.decode_exact;
        // Decode-exact: the kernels chosen for one token.
        let k = k.as_ggml(
            t,
            self.level,
            w.rows,
            if exact { 1 } else { n_tokens },
            w.cols,
            self.repack,
            self.tiled && !exact,
        );
        let act = self.convert(pool, &k, x, w.cols)?;
        let out = Out::new(y);
        let tiles = Tiling::new(&k, w.rows, n_tokens, pool.n_threads());
        let rows = w.rows;
        // ggml's repacked Q4_K takes the tokens by fours through its gemm
        // (the pair chain), the last n % 4 through its gemv; decode-exact,
        // every token through the gemv's chain.
        let n_pair = if exact { 0 } else { n_tokens - n_tokens % 4 };
        pool.run(tiles.n_blocks, |b| {
            // SAFETY: row blocks are disjoint, so each output t * rows + r
            // is written by one task only.
            unsafe {
                dot_rows(
                    &k,
                    w.data,
                    act,
                    w.cols,
                    tiles.block(b),
                    n_tokens,
                    &|t| t,
                    n_pair,
                    tiles.tile,
                    |t, r| out.at(t * rows + r),
                )
            }
        });
        Ok(())
    }

    /// Mixture-of-experts product: for every token `t` and slot `s`,
    /// `y[t, s] = experts[ids[t, s]] · x[t, s or 0]`. See the
    /// [module docs](self) for shapes.
    pub fn mul_mat_id(
        &mut self,
        pool: &ThreadPool,
        w: &Experts,
        x: &[f32],
        ids: &[i32],
        n_used: usize,
        y: &mut [f32],
    ) -> Result<(), QuantError> {
        let t = w.ggml_type;
        let k = Kernel::new(t, self.level, w.cols)?;
        let per_expert = mul(t, w.rows, k.w_row)?;
        if w.data.len() != mul(t, w.n_expert, per_expert)? {
            return Err(shape_err(
                t,
                format!(
                    "{} weight bytes for {} experts × {} rows of {} bytes",
                    w.data.len(),
                    w.n_expert,
                    w.rows,
                    k.w_row
                ),
            ));
        }
        if n_used == 0 || !ids.len().is_multiple_of(n_used) {
            return Err(shape_err(
                t,
                format!("{} expert ids are not whole rows of {n_used}", ids.len()),
            ));
        }
        let n_tokens = ids.len() / n_used;
        let x_rows = if w.cols == 0 {
            0
        } else if x.len() == mul(t, n_tokens, w.cols)? {
            1
        } else if x.len() == mul(t, mul(t, n_tokens, n_used)?, w.cols)? {
            n_used
        } else {
            return Err(shape_err(
                t,
                format!(
                    "{} activations for {n_tokens} tokens: need [{n_tokens}, 1 or {n_used}, {}]",
                    x.len(),
                    w.cols
                ),
            ));
        };
        if x_rows == 0 {
            return Err(shape_err(t, "0 columns".into()));
        }
        if y.len() != mul(t, ids.len(), w.rows)? {
            return Err(shape_err(
                t,
                format!(
                    "{} outputs for {n_tokens} tokens × {n_used} experts × {} rows",
                    y.len(),
                    w.rows
                ),
            ));
        }
        if let Some(&bad) = ids.iter().find(|&&e| e < 0 || e as usize >= w.n_expert) {
            return Err(shape_err(
                t,
                format!("expert id {bad} out of range 0..{}", w.n_expert),
            ));
        }
        if ids.len() > u32::MAX as usize {
            return Err(shape_err(t, format!("{} expert ids", ids.len())));
        }
        if n_tokens == 0 || w.rows == 0 {
            return Ok(());
        }

        // Group the (token, slot) pairs by expert: counts, then offsets, then pairs.
        let mut counts = std::mem::take(&mut self.counts);
        let mut pairs = std::mem::take(&mut self.pairs);
        counts.clear();
        counts.resize(w.n_expert + 1, 0);
        // counts[e + 1] = pairs of expert e; then counts[e] = where e's pairs start.
        for &e in ids {
            counts[e as usize + 1] += 1;
        }
        for e in 0..w.n_expert {
            counts[e + 1] += counts[e];
        }
        pairs.clear();
        pairs.resize(ids.len(), 0);
        // Fill with counts[e] as e's cursor (ending at e + 1's start), then shift back.
        for (p, &e) in ids.iter().enumerate() {
            pairs[counts[e as usize]] = p as u32;
            counts[e as usize] += 1;
        }
        for e in (1..=w.n_expert).rev() {
            counts[e] = counts[e - 1];
        }
        counts[0] = 0;

        let mut used = std::mem::take(&mut self.used);
        used.clear();
        used.extend((0..w.n_expert).filter(|&e| counts[e + 1] > counts[e]));

        // ggml's repacked mul_mat_id runs every pair through its gemv (the
        // block chain); tinyBLAS never serves mul_mat_id. ggml's tiled
        // matmul does, per expert with >= 8 routed rows; not reproduced here
        // yet (tests/matmul.rs holds mul_mat_id to one matmul per token).
        let k = k.as_ggml(t, self.level, w.rows, 1, w.cols, self.repack, false);
        let act = match self.convert(pool, &k, x, w.cols) {
            Ok(a) => a,
            Err(e) => {
                self.counts = counts;
                self.pairs = pairs;
                self.used = used;
                return Err(e);
            }
        };

        // Row blocks per expert: enough blocks in all for the pool.
        let tiles = Tiling::new(
            &k,
            w.rows,
            ids.len() / used.len().max(1),
            pool.n_threads().div_ceil(used.len()).max(1),
        );
        let out = Out::new(y);
        let (rows, cols, pairs_ref, counts_ref) = (w.rows, w.cols, &pairs[..], &counts[..]);
        pool.run(used.len() * tiles.n_blocks, |task| {
            let e = used[task / tiles.n_blocks];
            let block = tiles.block(task % tiles.n_blocks);
            let mine = &pairs_ref[counts_ref[e]..counts_ref[e + 1]];
            let we = &w.data[e * per_expert..(e + 1) * per_expert];
            let act_row = |i: usize| {
                let p = mine[i] as usize;
                if x_rows == 1 {
                    p / n_used
                } else {
                    p
                }
            };
            // SAFETY: each (pair, row) is written by the one task that holds
            // the pair's expert and the row's block.
            unsafe {
                dot_rows(
                    &k,
                    we,
                    act,
                    cols,
                    block,
                    mine.len(),
                    &act_row,
                    0,
                    tiles.tile,
                    |i, r| out.at(mine[i] as usize * rows + r),
                )
            }
        });
        self.counts = counts;
        self.pairs = pairs;
        self.used = used;
        Ok(())
    }

    /// Converts `x` (rows of `cols` f32) to `k.act`, in the context's buffer
    /// (or in place for F32), and returns the bytes.
    fn convert<'s>(
        &'s mut self,
        pool: &ThreadPool,
        k: &Kernel,
        x: &'s [f32],
        cols: usize,
    ) -> Result<&'s [u8], QuantError> {
        if k.act == GgmlType::F32 {
            return Ok(bytemuck::cast_slice(x));
        }
        let n_rows = x.len() / cols;
        let total = mul(k.act, n_rows, k.a_row)?;
        let words = total.div_ceil(8);
        if self.buf.len() < words {
            self.buf.resize(words, 0);
        }
        let buf: &mut [u8] = &mut bytemuck::cast_slice_mut(&mut self.buf[..words])[..total];
        let out = Out::new(buf);
        let act = k.act;
        let a_row = k.a_row;
        let level = self.level;
        // Small jobs stay on the calling thread.
        let rows_per_task = (16384 / cols.max(1)).max(1);
        let failed = std::sync::atomic::AtomicBool::new(false);
        pool.run(n_rows.div_ceil(rows_per_task), |task| {
            let r0 = task * rows_per_task;
            let r1 = (r0 + rows_per_task).min(n_rows);
            for r in r0..r1 {
                let src = &x[r * cols..(r + 1) * cols];
                // SAFETY: each task converts its own rows.
                let dst = unsafe { out.slice(r * a_row, a_row) };
                if convert_row(level, act, src, dst).is_err() {
                    failed.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        if failed.into_inner() {
            return Err(QuantError::Unsupported {
                ggml_type: act,
                op: "quantize activations",
            });
        }
        Ok(&bytemuck::cast_slice(&self.buf[..words])[..total])
    }
}

/// One row of f32 to the activation type `act`, as the drivers convert
/// activations at `level`: Q8_0 and Q8_1 through the SIMD quantizers of
/// [`kernels::legacy`] (as ggml-cpu's x86 `quantize_row_q8_0/1`), the others
/// through [`crate::quantize`] and `half`. Public so the bit-exactness tests
/// can compare it with ggml-cpu's `from_float`.
pub fn convert_row(
    level: SimdLevel,
    act: GgmlType,
    src: &[f32],
    dst: &mut [u8],
) -> Result<(), QuantError> {
    let shape = || QuantError::Shape {
        ggml_type: act,
        reason: "activation buffer not aligned to its blocks".into(),
    };
    match act {
        GgmlType::Q8_0 => {
            let d = crate::blocks::blocks_mut(dst).ok_or_else(shape)?;
            kernels::legacy::quantize_act_q8_0(level, src, d);
            Ok(())
        }
        GgmlType::Q8_1 => {
            let d = crate::blocks::blocks_mut(dst).ok_or_else(shape)?;
            kernels::legacy::quantize_act_q8_1(level, src, d);
            Ok(())
        }
        GgmlType::F16 => {
            let d: &mut [f16] = bytemuck::cast_slice_mut(dst);
            for (d, &s) in d.iter_mut().zip(src) {
                *d = f16::from_f32(s);
            }
            Ok(())
        }
        GgmlType::BF16 => {
            let d: &mut [bf16] = bytemuck::cast_slice_mut(dst);
            for (d, &s) in d.iter_mut().zip(src) {
                *d = bf16::from_f32(s);
            }
            Ok(())
        }
        _ => crate::quantize(act, src, dst),
    }
}

/// How rows and tokens are cut: `n_blocks` row blocks of `rows_per_block`
/// rows (a multiple of [`ROW_ALIGN`]), tokens in tiles of `tile`.
struct Tiling {
    rows: usize,
    rows_per_block: usize,
    n_blocks: usize,
    tile: usize,
}

impl Tiling {
    fn new(k: &Kernel, rows: usize, n_tokens: usize, threads: usize) -> Tiling {
        let tile = if n_tokens <= 1 {
            1
        } else {
            (TILE_ACT_BYTES / k.a_row.max(1)).clamp(1, 64).min(n_tokens)
        };
        // Enough blocks for the pool; with many tokens, blocks small enough
        // that their weights stay in L2 across the token tiles.
        let for_balance = rows.div_ceil(threads * BLOCKS_PER_THREAD);
        let mut per = if n_tokens > 1 {
            for_balance.min((BLOCK_W_BYTES / k.w_row.max(1)).max(1))
        } else {
            for_balance
        };
        per = per.div_ceil(ROW_ALIGN) * ROW_ALIGN;
        let per = per.clamp(ROW_ALIGN, rows.div_ceil(ROW_ALIGN) * ROW_ALIGN);
        Tiling {
            rows,
            rows_per_block: per,
            n_blocks: rows.div_ceil(per),
            tile,
        }
    }

    fn block(&self, b: usize) -> std::ops::Range<usize> {
        let r0 = b * self.rows_per_block;
        r0..(r0 + self.rows_per_block).min(self.rows)
    }
}

/// The shared inner loops: weight rows `rows` of `w` against activation rows
/// `act_row(i)` for `i` in `0..n`, tiled by `tile`; `put(i, r)` is where the
/// result of (`i`, row `r`) goes. With a [`Kernel::rows8`] (rows in whole
/// groups of 8), `i < n_pair` takes [`Chain::Pair`], the rest [`Chain::Block`].
///
/// # Safety
/// Every pointer `put` returns must be valid for a write and not written by
/// anyone else meanwhile.
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn dot_rows(
    k: &Kernel,
    w: &[u8],
    act: &[u8],
    cols: usize,
    rows: std::ops::Range<usize>,
    n: usize,
    act_row: &dyn Fn(usize) -> usize,
    n_pair: usize,
    tile: usize,
    put: impl Fn(usize, usize) -> *mut f32,
) {
    if let Some(rows8) = k.rows8 {
        debug_assert!(rows.start.is_multiple_of(8) && rows.len().is_multiple_of(8));
        let mut out = [[0f32; 8]; q4k_8x8::MAX_ACTS];
        let mut i0 = 0;
        while i0 < n {
            let i1 = (i0 + tile).min(n);
            for g in rows.clone().step_by(8) {
                let wg = &w[g * k.w_row..(g + 8) * k.w_row];
                let mut i = i0;
                while i < i1 {
                    // Whole groups of 4 in the pair chain, one by one after.
                    let (chain, m) = if i < n_pair {
                        (Chain::Pair, (n_pair.min(i1) - i).min(q4k_8x8::MAX_ACTS))
                    } else {
                        (Chain::Block, (i1 - i).min(q4k_8x8::MAX_ACTS))
                    };
                    let acts: [&[u8]; q4k_8x8::MAX_ACTS] = std::array::from_fn(|t| {
                        &act[act_row(i + t.min(m - 1)) * k.a_row..][..k.a_row]
                    });
                    rows8(cols, wg, k.w_row, &acts[..m], chain, &mut out);
                    for (t, o) in out[..m].iter().enumerate() {
                        for (j, &v) in o.iter().enumerate() {
                            // SAFETY: forwarded to the caller.
                            unsafe { put(i + t, g + j).write(v) };
                        }
                    }
                    i += m;
                }
            }
            i0 = i1;
        }
        return;
    }
    if let Some(r8) = k.legacy8 {
        // Whole groups of 8 rows (every token on a group while it is in
        // L1/L2), the rest one by one: the same bits either way.
        let mut out = [0f32; 8];
        let mut g = rows.start;
        while g + 8 <= rows.end {
            let wg = &w[g * k.w_row..(g + 8) * k.w_row];
            for i in 0..n {
                let a = &act[act_row(i) * k.a_row..][..k.a_row];
                r8(cols, wg, k.w_row, a, &mut out);
                for (j, &v) in out.iter().enumerate() {
                    // SAFETY: forwarded to the caller.
                    unsafe { put(i, g + j).write(v) };
                }
            }
            g += 8;
        }
        for r in g..rows.end {
            let wr = &w[r * k.w_row..(r + 1) * k.w_row];
            for i in 0..n {
                let a = &act[act_row(i) * k.a_row..][..k.a_row];
                // SAFETY: forwarded to the caller.
                unsafe { put(i, r).write((k.dot)(cols, wr, a)) };
            }
        }
        return;
    }
    if let (Some(row_fn), true) = (k.tiled, n >= TILED_MIN_TOKENS) {
        let mut out = [0f32; tiled::MAX_TOKENS];
        let mut i0 = 0;
        while i0 < n {
            let i1 = (i0 + tile.min(tiled::MAX_TOKENS)).min(n);
            let acts: [&[u8]; tiled::MAX_TOKENS] = std::array::from_fn(|c| {
                let i = act_row((i0 + c).min(i1 - 1));
                &act[i * k.a_row..(i + 1) * k.a_row]
            });
            for r in rows.clone() {
                let wr = &w[r * k.w_row..(r + 1) * k.w_row];
                row_fn(cols, wr, &acts[..i1 - i0], &mut out);
                for (c, &v) in out[..i1 - i0].iter().enumerate() {
                    // SAFETY: forwarded to the caller.
                    unsafe { put(i0 + c, r).write(v) };
                }
            }
            i0 = i1;
        }
        return;
    }
    if let (Some((tile8, row8)), true) = (k.widen, n >= WIDEN_MIN_TOKENS) {
        WIDE.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.clear();
            buf.resize(rows.len() * row8, 0);
            for (j, r) in rows.clone().enumerate() {
                widen_q5_0(
                    &w[r * k.w_row..(r + 1) * k.w_row],
                    &mut buf[j * row8..(j + 1) * row8],
                );
            }
            let k8 = Kernel {
                w_row: row8,
                tile: Some(tile8),
                ..*k
            };
            let start = rows.start;
            // SAFETY: forwarded to the caller (rows shifted back by `start`).
            unsafe {
                dot_rows_tiled(
                    &k8,
                    tile8,
                    &buf,
                    act,
                    cols,
                    0..rows.len(),
                    n,
                    act_row,
                    tile,
                    |i, r| put(i, r + start),
                )
            };
        });
        return;
    }
    // One token (a GEMV): the single kernel row after row, one sequential
    // stream per task, which reads memory faster than interleaved 4-row
    // tiles (Gemma 3's 170 MB Q8_0 head: 54 → 61 tokens/s decode).
    if let Some(tile_fn) = k.tile.filter(|_| n > 1) {
        // SAFETY: forwarded to the caller.
        unsafe { dot_rows_tiled(k, tile_fn, w, act, cols, rows, n, act_row, tile, put) };
        return;
    }
    let dot = k.dot;
    if n == 1 {
        let a = &act[act_row(0) * k.a_row..][..k.a_row];
        let mut rows = rows;
        if let Some(r8) = k.gemv8 {
            // 8 rows per call (one activation load and scale conversion
            // for all, the next group prefetched), the same bits as `dot`.
            let mut out = [0f32; 8];
            while rows.len() >= 8 {
                let g = rows.start;
                r8(
                    cols,
                    &w[g * k.w_row..(g + 8) * k.w_row],
                    k.w_row,
                    a,
                    &mut out,
                );
                for (j, &v) in out.iter().enumerate() {
                    // SAFETY: forwarded to the caller.
                    unsafe { put(0, g + j).write(v) };
                }
                rows.start += 8;
            }
        }
        for r in rows {
            let v = dot(cols, &w[r * k.w_row..(r + 1) * k.w_row], a);
            // SAFETY: forwarded to the caller.
            unsafe { put(0, r).write(v) };
        }
        return;
    }
    let mut i0 = 0;
    while i0 < n {
        let i1 = (i0 + tile).min(n);
        for r in rows.clone() {
            let wr = &w[r * k.w_row..(r + 1) * k.w_row];
            for i in i0..i1 {
                let a = &act[act_row(i) * k.a_row..][..k.a_row];
                // SAFETY: forwarded to the caller.
                unsafe { put(i, r).write(dot(cols, wr, a)) };
            }
        }
        i0 = i1;
    }
}

/// [`dot_rows`] with a tile kernel: [`TILE_ROWS`] weight rows ×
/// [`TILE_ACTS`] activation rows per call.
///
/// # Safety
/// As [`dot_rows`].
#[allow(clippy::too_many_arguments)]
unsafe fn dot_rows_tiled(
    k: &Kernel,
    tile_fn: DotTile,
    w: &[u8],
    act: &[u8],
    cols: usize,
    rows: std::ops::Range<usize>,
    n: usize,
    act_row: &dyn Fn(usize) -> usize,
    tile: usize,
    put: impl Fn(usize, usize) -> *mut f32,
) {
    let mut out = [0f32; TILE_ROWS * TILE_ACTS];
    let mut i0 = 0;
    while i0 < n {
        let i1 = (i0 + tile).min(n);
        let mut r = rows.start;
        while r < rows.end {
            let nr = (rows.end - r).min(TILE_ROWS);
            let wr: [&[u8]; TILE_ROWS] = std::array::from_fn(|j| {
                let rj = r + j.min(nr - 1);
                &w[rj * k.w_row..(rj + 1) * k.w_row]
            });
            let mut i = i0;
            while i < i1 {
                let na = (i1 - i).min(TILE_ACTS);
                let ar: [&[u8]; TILE_ACTS] = std::array::from_fn(|c| {
                    let ic = act_row(i + c.min(na - 1));
                    &act[ic * k.a_row..(ic + 1) * k.a_row]
                });
                tile_fn(cols, &wr[..nr], &ar[..na], &mut out);
                for c in 0..na {
                    for j in 0..nr {
                        // SAFETY: forwarded to the caller.
                        unsafe { put(i + c, r + j).write(out[c * nr + j]) };
                    }
                }
                i += na;
            }
            r += nr;
        }
        i0 = i1;
    }
}

/// A mutable slice shared by the pool's tasks, each writing its own part.
struct Out<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: tasks write disjoint elements (the callers' invariant).
unsafe impl<T: Send> Sync for Out<T> {}

impl<T> Out<T> {
    fn new(s: &mut [T]) -> Out<T> {
        Out {
            ptr: s.as_mut_ptr(),
            len: s.len(),
        }
    }

    /// Pointer to element `i`. Panics if out of range.
    fn at(&self, i: usize) -> *mut T {
        assert!(i < self.len, "output index {i} out of {}", self.len);
        // SAFETY: in bounds.
        unsafe { self.ptr.add(i) }
    }

    /// `len` elements from `start`.
    ///
    /// # Safety
    /// No one else may access them while the slice lives.
    #[allow(clippy::mut_from_ref)] // the point of `Out`: disjoint parts per task
    unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start + len <= self.len);
        // SAFETY: in bounds; exclusivity is the caller's.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

thread_local! {
    static CTX: RefCell<MatmulCtx> = RefCell::new(MatmulCtx::new());
    /// Per pool thread: a Q5_0 row block widened to Q8_0.
    static WIDE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// One Q5_0 row as Q8_0 blocks: the same `d`, each 5-bit value minus 16 as
/// a signed byte. The Q8_0 kernel's integer sums of a block equal the Q5_0
/// kernel's (`Σ(q−16)·y` either way, no saturation: |q−16| ≤ 16), and the
/// scale and float steps are the same, so the results are the same bits —
/// but the unpacking is done once per row instead of once per token pair.
fn widen_q5_0(src: &[u8], dst: &mut [u8]) {
    const Q5: usize = std::mem::size_of::<crate::blocks::BlockQ5_0>();
    const Q8: usize = std::mem::size_of::<crate::blocks::BlockQ8_0>();
    for (s, d) in src.chunks_exact(Q5).zip(dst.chunks_exact_mut(Q8)) {
        d[..2].copy_from_slice(&s[..2]);
        let qh = u32::from_le_bytes([s[2], s[3], s[4], s[5]]);
        let qs = &s[6..22];
        for j in 0..16 {
            let lo = (qs[j] & 0x0f) | ((((qh >> j) & 1) as u8) << 4);
            let hi = (qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
            d[2 + j] = (lo as i8 - 16) as u8;
            d[2 + j + 16] = (hi as i8 - 16) as u8;
        }
    }
}

/// Runs `f` with this thread's context (a fresh one if it is in use).
fn with_ctx<R>(f: impl FnOnce(&mut MatmulCtx) -> R) -> R {
    CTX.with(|c| match c.try_borrow_mut() {
        Ok(mut ctx) => f(&mut ctx),
        Err(_) => f(&mut MatmulCtx::new()),
    })
}

/// `y = w · xᵀ` for a weight matrix `[rows, cols]` of type `w_type` and
/// activations `x` `[n_tokens, cols]`, into `y` `[n_tokens, rows]`, at the
/// best SIMD level, with this thread's reusable [`MatmulCtx`].
pub fn matmul(
    pool: &ThreadPool,
    w_type: GgmlType,
    w: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    y: &mut [f32],
) -> Result<(), QuantError> {
    let m = Matrix {
        ggml_type: w_type,
        data: w,
        rows,
        cols,
    };
    with_ctx(|ctx| ctx.matmul(pool, &m, x, y))
}

/// The selected experts' products (see [`MatmulCtx::mul_mat_id`]), with
/// this thread's reusable [`MatmulCtx`].
pub fn mul_mat_id(
    pool: &ThreadPool,
    w: &Experts,
    x: &[f32],
    ids: &[i32],
    n_used: usize,
    y: &mut [f32],
) -> Result<(), QuantError> {
    with_ctx(|ctx| ctx.mul_mat_id(pool, w, x, ids, n_used, y))
}
