//! The CPU backend's ops on f32 activations, written to give the same
//! numbers as ggml-cpu (an x86-64 AVX2 + FMA build of llama.cpp) so that
//! tessera's greedy tokens match llama.cpp's.
//!
//! Layout: every activation is row-major f32, `[n_rows, n_cols]`, stored
//! contiguously. One file per op family:
//!
//! - [`norm`]: `rms_norm`, `layer_norm` over groups of values (rows or heads).
//! - [`rope`]: rotary position embedding (normal and NeoX, partial rotary,
//!   YaRN, frequency factors).
//! - [`softmax`]: row softmax with scale, mask and ggml's vector `expf`.
//! - [`attention`] and [`kv`]: fused attention over an F16/Q8_0 KV cache
//!   (ggml's `flash_attn_ext`: its one-chunk, split-KV and tiled paths) and
//!   the cache writer.
//! - [`elementwise`]: add, mul, scale, silu, gelu, gelu_erf, swiglu, geglu.
//! - [`rows`]: `get_rows` (embedding lookup from a quantized matrix).
//! - [`routing`]: `top_k`, `concat`, `copy`, `transpose2d` (MoE helpers).
//! - [`math`]: the scalar functions the ops share (ggml's `ggml_v_expf`,
//!   gelu, libm bindings).
//!
//! Contract shared by all ops: shapes are checked first and a mismatch is an
//! [`OpError`] naming the op and the shape, never a panic; nothing is
//! allocated per call (scratch is on the stack, bounded by [`MAX_HEAD_DIM`],
//! or for tiled attention a per-thread buffer grown once); each output row
//! depends only on its inputs, so the result does not depend on the pool's
//! thread count, except in attention's split-KV decode, which splits as
//! ggml does over its threads (the pool must have llama.cpp's count).

use std::ops::Range;

use tessera_quant::pool::ThreadPool;

pub mod attention;
pub mod elementwise;
pub mod heads;
pub mod kv;
pub mod math;
pub mod moe;
pub mod norm;
pub mod rope;
pub mod routing;
pub mod rows;
pub mod softmax;

pub use attention::{attention, attention_scalar, AttnParams};
pub use elementwise::{
    add, div, geglu, gelu, gelu_erf, mul, scale, sigmoid, silu, silu_rows, swiglu, tanh,
};
pub use heads::{concat_heads, gather_head, scatter_head, slice_heads};
pub use kv::{kv_store, KvType, KvView};
pub use moe::{
    add_id, gather_cols, group_mask, moe_sum, mul_rows, norm_sum, swiglu_oai, top_k_ids,
};
pub use norm::{layer_norm, rms_norm};
pub use rope::{rope, RopeMode, RopeParams};
pub use routing::{concat, copy, top_k, transpose2d};
pub use rows::get_rows;
pub use softmax::softmax;

/// Largest head dimension (and rotary dimension) the ops keep stack scratch for.
pub const MAX_HEAD_DIM: usize = 1024;

/// Below this many f32 values an op runs on the calling thread: waking the
/// pool costs more than the work.
pub(crate) const PAR_MIN_VALUES: usize = 16 * 1024;

/// An op was given buffers or parameters it cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// A buffer length or a dimension does not fit the op's shape.
    #[error("{op}: bad shape: {reason}")]
    Shape {
        /// The op (`"rms_norm"`, `"attention"`, …).
        op: &'static str,
        /// What was expected and what was given.
        reason: String,
    },
    /// An index (a token id, a cache cell) points outside its table.
    #[error("{op}: index out of range: {reason}")]
    Index {
        /// The op.
        op: &'static str,
        /// Which index and the table's size.
        reason: String,
    },
    /// A weight or cache type the op cannot read or write.
    #[error("{op}: {reason}")]
    Unsupported {
        /// The op.
        op: &'static str,
        /// The type and what was asked of it.
        reason: String,
    },
}

/// A shape error for `op`.
pub(crate) fn shape(op: &'static str, reason: String) -> OpError {
    OpError::Shape { op, reason }
}

/// Checks that buffer `name` of `op` holds exactly `want` values.
pub(crate) fn check_len(
    op: &'static str,
    name: &str,
    got: usize,
    want: usize,
) -> Result<(), OpError> {
    if got != want {
        return Err(shape(
            op,
            format!("{name} has {got} values, expected {want}"),
        ));
    }
    Ok(())
}

/// Runs `f(rows, out_rows)` over `out` split into rows of `row_len` values:
/// inline when the work is small or the pool has one thread, else over the
/// pool in chunks of at least `min_rows` rows. `f` gets the row range and the
/// matching part of `out`; the parts are disjoint.
pub(crate) fn par_rows(
    pool: &ThreadPool,
    out: &mut [f32],
    row_len: usize,
    min_rows: usize,
    f: impl Fn(Range<usize>, &mut [f32]) + Sync,
) {
    let work = out.len();
    par_rows_work(pool, out, row_len, min_rows, work, f);
}

/// [`par_rows`] for ops whose cost is not proportional to their output
/// (attention): `work` estimates the values touched in all.
pub(crate) fn par_rows_work(
    pool: &ThreadPool,
    out: &mut [f32],
    row_len: usize,
    min_rows: usize,
    work: usize,
    f: impl Fn(Range<usize>, &mut [f32]) + Sync,
) {
    let n_rows = out.len().checked_div(row_len).unwrap_or(0);
    if n_rows == 0 {
        return;
    }
    if pool.n_threads() == 1 || work < PAR_MIN_VALUES || n_rows == 1 {
        f(0..n_rows, out);
        return;
    }
    let base = SendPtr(out.as_mut_ptr());
    pool.for_chunks(n_rows, min_rows.max(1), |rows| {
        let len = rows.len() * row_len;
        // SAFETY: `for_chunks` hands out disjoint row ranges inside
        // `0..n_rows`, so every slice made here lies inside `out` and no two
        // overlap; `out` is borrowed mutably for the whole call.
        let part = unsafe { std::slice::from_raw_parts_mut(base.at(rows.start * row_len), len) };
        f(rows, part);
    });
}

/// Values per block of [`par_flat`]: a multiple of ggml's vector width, so
/// that the 8-lane groups of the silu/softmax kernels fall where ggml's do.
pub(crate) const FLAT_BLOCK: usize = 64;

/// Runs `f(range, out_part)` over `out` taken as one flat array, inline when
/// small, else over the pool in chunks that start at multiples of
/// [`FLAT_BLOCK`] (the last one may be shorter).
pub(crate) fn par_flat(
    pool: &ThreadPool,
    out: &mut [f32],
    f: impl Fn(Range<usize>, &mut [f32]) + Sync,
) {
    let len = out.len();
    if pool.n_threads() == 1 || len < PAR_MIN_VALUES {
        f(0..len, out);
        return;
    }
    let base = SendPtr(out.as_mut_ptr());
    let n_blocks = len.div_ceil(FLAT_BLOCK);
    pool.for_chunks(n_blocks, PAR_MIN_VALUES / (4 * FLAT_BLOCK), |blocks| {
        let range = blocks.start * FLAT_BLOCK..(blocks.end * FLAT_BLOCK).min(len);
        // SAFETY: as in `par_rows_work`: disjoint block ranges inside `out`.
        let part = unsafe { std::slice::from_raw_parts_mut(base.at(range.start), range.len()) };
        f(range, part);
    });
}

/// A raw pointer that may cross to the pool's threads (see [`par_rows`]).
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: only used by `par_rows` and attention's tiled path, which give
// each thread disjoint rows.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    pub(crate) fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: callers stay inside the slice the pointer came from.
        unsafe { self.0.add(offset) }
    }
}
