//! A node's operands and sizes as the GPU kernels take them, checked
//! against the graph and the step before anything is recorded or
//! launched. [`check`] turns node `n` of a segment into a [`Shaped`] (or
//! the reason it cannot run, which the backend wraps with its device and
//! the node's name); the backend then only binds or passes what it names.
//!
//! The checks are the kernels' preconditions, the same for every GPU
//! backend: element counts of inputs and output agree, groups and heads
//! divide their rows, top-k and attention heads stay within the backend's
//! [`Limits`], positions are those of one contiguous run, ids index their
//! tables. Kernel codes (binary, unary and GLU functions) are the numbers
//! both kernel sets switch on.

use crate::backend::SegmentRun;
use crate::graph::{self, AttnCfg, NodeId, Op, RopeCfg, TensorId};

use super::{rope_consts, weight, Limits, RopeConsts};

/// Node operands and sizes (element counts, not bytes), one struct per
/// kind of kernel; `out` is the node's output everywhere.
#[derive(Clone, Copy, Debug)]
pub enum Shaped {
    /// [`Embed`].
    Embed(Embed),
    /// [`MatMul`].
    MatMul(MatMul),
    /// [`MatMulId`].
    MatMulId(MatMulId),
    /// [`Binary`].
    Binary(Binary),
    /// [`Unary`].
    Unary(Unary),
    /// [`Glu`].
    Glu(Glu),
    /// [`Norm`].
    Norm(Norm),
    /// [`Rope`].
    Rope(Rope),
    /// [`Attention`].
    Attention(Attention),
    /// [`SelectRows`].
    SelectRows(SelectRows),
    /// [`Softmax`].
    Softmax(Softmax),
    /// [`TopK`].
    TopK(TopK),
    /// [`NormSum`].
    NormSum(NormSum),
    /// [`GroupMask`].
    GroupMask(GroupMask),
    /// [`GatherCols`].
    GatherCols(GatherCols),
    /// [`AddId`].
    AddId(AddId),
    /// [`MoeSum`].
    MoeSum(MoeSum),
    /// [`MulRows`].
    MulRows(MulRows),
    /// [`SliceHeads`].
    SliceHeads(SliceHeads),
    /// [`ConcatHeads`].
    ConcatHeads(ConcatHeads),
    /// A copy: run by the session, never by a backend.
    Copy,
}

/// Rows `tokens[i]` of `table` (`[1, rows, cols]`) into `out`
/// (`[n_tokens, cols]`); every token id is below `rows`.
#[derive(Clone, Copy, Debug)]
pub struct Embed {
    pub table: TensorId,
    pub out: TensorId,
    pub rows: usize,
    pub cols: usize,
    pub n_tokens: usize,
}

/// `out = x · wᵀ` for `n_mat` matrices of `rows × cols` (`MatMul`:
/// one, x_mat_stride 0; `MatMulHeads`: one per head, matrix `m` reads
/// `x` from `m * x_mat_stride`), over `n` rows of `x` of
/// `cols * n_mat`.
#[derive(Clone, Copy, Debug)]
pub struct MatMul {
    pub w: TensorId,
    pub x: TensorId,
    pub out: TensorId,
    pub rows: usize,
    pub cols: usize,
    pub n_mat: usize,
    pub x_mat_stride: usize,
    pub n: usize,
}

/// The product of expert `ids[t, j]` (`n_expert` of `rows × cols`) for
/// each of `slots = n × k` slots; `x` has a row per slot or per token.
#[derive(Clone, Copy, Debug)]
pub struct MatMulId {
    pub w: TensorId,
    pub x: TensorId,
    pub ids: TensorId,
    pub out: TensorId,
    pub n_expert: usize,
    pub rows: usize,
    pub cols: usize,
    pub k: usize,
    pub slots: usize,
    pub x_per_slot: bool,
}

/// `out = a op b` over `n` values, `b` of `b_len` repeated (`op`: 0
/// add, 1 mul, 2 div).
#[derive(Clone, Copy, Debug)]
pub struct Binary {
    pub op: u32,
    pub a: TensorId,
    pub b: TensorId,
    pub out: TensorId,
    pub n: usize,
    pub b_len: usize,
}

/// `out = f(x)` over `n` values (`op`: 0 scale by `s`, 1 silu, 2 gelu,
/// 3 gelu_erf, 4 tanh, 5 sigmoid).
#[derive(Clone, Copy, Debug)]
pub struct Unary {
    pub op: u32,
    pub s: f32,
    pub x: TensorId,
    pub out: TensorId,
    pub n: usize,
}

/// `out = glu(gate, up)` over `n` values (`op`: 0 SwiGLU, 1 GeGLU, 2
/// SwiGLU-OAI with `alpha`).
#[derive(Clone, Copy, Debug)]
pub struct Glu {
    pub op: u32,
    pub alpha: f32,
    pub gate: TensorId,
    pub up: TensorId,
    pub out: TensorId,
    pub n: usize,
}

/// RMS norm (`layer`: false) or layer norm of `n_groups` groups of
/// `group` values, optional weight and bias of `group` values each.
#[derive(Clone, Copy, Debug)]
pub struct Norm {
    pub layer: bool,
    pub x: TensorId,
    pub w: Option<TensorId>,
    pub b: Option<TensorId>,
    pub group: usize,
    pub n_groups: usize,
    pub eps: f32,
    pub out: TensorId,
}

/// Rope over `n` values: `n_tokens` rows of `n_heads × head_dim`.
#[derive(Clone, Copy, Debug)]
pub struct Rope {
    pub x: TensorId,
    pub out: TensorId,
    pub n: usize,
    pub n_heads: usize,
    pub head_dim: usize,
    pub cfg: RopeCfg,
    pub consts: RopeConsts,
}

/// Attention of `n_tokens` queries at positions `first..first +
/// n_tokens` over the cache of `layer` (the step's K and V stored at
/// those cells first).
#[derive(Clone, Copy, Debug)]
pub struct Attention {
    pub q: TensorId,
    pub k: TensorId,
    pub v: TensorId,
    pub out: TensorId,
    pub layer: usize,
    pub cfg: AttnCfg,
    pub n_tokens: usize,
    pub first: usize,
}

/// The step's output rows of `x` (rows of `cols`), `n` values out.
#[derive(Clone, Copy, Debug)]
pub struct SelectRows {
    pub x: TensorId,
    pub out: TensorId,
    pub cols: usize,
    pub n: usize,
}

/// Softmax of `rows` rows of `cols`.
#[derive(Clone, Copy, Debug)]
pub struct Softmax {
    pub x: TensorId,
    pub out: TensorId,
    pub rows: usize,
    pub cols: usize,
}

/// The ids of the `k` largest of each of `rows` rows of `cols`.
#[derive(Clone, Copy, Debug)]
pub struct TopK {
    pub x: TensorId,
    pub out: TensorId,
    pub rows: usize,
    pub cols: usize,
    pub k: usize,
}

/// Each of `rows` rows of `cols` divided by its sum (at least
/// `min_sum`).
#[derive(Clone, Copy, Debug)]
pub struct NormSum {
    pub x: TensorId,
    pub out: TensorId,
    pub rows: usize,
    pub cols: usize,
    pub min_sum: f32,
}

/// The columns of all but the `n_used` best of `n_groups` groups set
/// to -inf, in `rows` rows of `cols`.
#[derive(Clone, Copy, Debug)]
pub struct GroupMask {
    pub x: TensorId,
    pub out: TensorId,
    pub rows: usize,
    pub cols: usize,
    pub n_groups: usize,
    pub n_used: usize,
}

/// `out[r, j] = x[r, ids[r, j]]`, rows of `cols`, `k` ids a row.
#[derive(Clone, Copy, Debug)]
pub struct GatherCols {
    pub x: TensorId,
    pub ids: TensorId,
    pub out: TensorId,
    pub cols: usize,
    pub k: usize,
}

/// `out[s] = x[s] + b[ids[s]]`, rows of `cols`.
#[derive(Clone, Copy, Debug)]
pub struct AddId {
    pub x: TensorId,
    pub b: TensorId,
    pub ids: TensorId,
    pub out: TensorId,
    pub cols: usize,
}

/// `out[t] = Σ_j w[t, j] x[t, j]` over `k` slots, rows of `cols`.
#[derive(Clone, Copy, Debug)]
pub struct MoeSum {
    pub x: TensorId,
    pub w: TensorId,
    pub out: TensorId,
    pub k: usize,
    pub cols: usize,
}

/// Each row of `x` (rows of `cols`) times its value of `s`.
#[derive(Clone, Copy, Debug)]
pub struct MulRows {
    pub x: TensorId,
    pub s: TensorId,
    pub out: TensorId,
    pub cols: usize,
}

/// Columns `start..start + len` of every head of `head_dim`.
#[derive(Clone, Copy, Debug)]
pub struct SliceHeads {
    pub x: TensorId,
    pub out: TensorId,
    pub head_dim: usize,
    pub start: usize,
    pub len: usize,
}

/// Heads of `la` values of `a` and `lb` of `b` joined.
#[derive(Clone, Copy, Debug)]
pub struct ConcatHeads {
    pub a: TensorId,
    pub b: TensorId,
    pub out: TensorId,
    pub la: usize,
    pub lb: usize,
}

/// Node `n` of `run` as the kernels take it, or why it cannot run (the
/// reason only: the caller names the device and the node).
pub fn check(run: &SegmentRun<'_>, n: NodeId, limits: &Limits) -> Result<Shaped, String> {
    let g = run.graph;
    let shape = |t: TensorId| g.tensor(t).shape;
    let len = |t: TensorId| g.tensor(t).len();
    let cols = |t: TensorId| g.tensor(t).cols();
    let rows_of = |t: TensorId| len(t) / cols(t).max(1);
    let node = &g.nodes[n];
    let out = node.out;
    let max_k = limits.max_top_k;
    Ok(match node.op {
        Op::Embed { table } => {
            let [_, rows, c] = weight(run, table)?.shape;
            let n_tokens = run.step.tokens.len();
            if len(out) != n_tokens * c {
                return Err(format!("{} outputs for {n_tokens} tokens of {c}", len(out)));
            }
            if let Some(&bad) = run.step.tokens.iter().find(|&&id| id as usize >= rows) {
                return Err(format!("token id {bad}, the table has {rows} rows"));
            }
            Shaped::Embed(Embed {
                table,
                out,
                rows,
                cols: c,
                n_tokens,
            })
        }
        Op::MatMul { w, x } => {
            let [_, rows, c] = weight(run, w)?.shape;
            matmul(run, w, x, out, rows, c, 1, 0)?
        }
        Op::MatMulHeads { w, x } => {
            let [n_heads, rows, c] = weight(run, w)?.shape;
            matmul(run, w, x, out, rows, c, n_heads, c)?
        }
        Op::MatMulId { w, x, ids } => {
            let [n_expert, rows, c] = weight(run, w)?.shape;
            let k = cols(ids);
            let n_tok = len(ids) / k.max(1);
            let slots = n_tok * k;
            let x_rows = len(x) / c.max(1);
            let x_per_slot = x_rows == slots;
            if (!x_per_slot && x_rows != n_tok) || len(out) != slots * rows {
                return Err(format!(
                    "x {:?}, ids {:?}, out {:?} for {n_expert} experts of [{rows}, {c}]",
                    shape(x),
                    shape(ids),
                    shape(out)
                ));
            }
            Shaped::MatMulId(MatMulId {
                w,
                x,
                ids,
                out,
                n_expert,
                rows,
                cols: c,
                k,
                slots,
                x_per_slot,
            })
        }
        Op::Add { a, b } => binary(run, 0, a, b, out)?,
        Op::Mul { a, b } => binary(run, 1, a, b, out)?,
        Op::Div { a, b } => binary(run, 2, a, b, out)?,
        Op::Scale { x, s } => unary(run, 0, s, x, out)?,
        Op::Unary { x, f } => {
            let op = match f {
                graph::Unary::Silu => 1,
                graph::Unary::Gelu => 2,
                graph::Unary::GeluErf => 3,
                graph::Unary::Tanh => 4,
                graph::Unary::Sigmoid => 5,
            };
            unary(run, op, 0.0, x, out)?
        }
        Op::Glu { gate, up, f } => {
            let op = match f {
                graph::Glu::SwiGlu => 0,
                graph::Glu::GeGlu => 1,
                graph::Glu::SwiGluOai => 2,
            };
            if len(up) != len(gate) || len(out) != len(gate) {
                return Err(format!("gate {:?}, up {:?}", shape(gate), shape(up)));
            }
            Shaped::Glu(Glu {
                op,
                alpha: 1.702,
                gate,
                up,
                out,
                n: len(out),
            })
        }
        Op::RmsNorm { x, w, group, eps } => norm(run, false, x, w, None, group, eps, out)?,
        Op::LayerNorm {
            x,
            w,
            b,
            group,
            eps,
        } => norm(run, true, x, w, b, group, eps, out)?,
        Op::Rope {
            x,
            n_heads,
            head_dim,
            cfg,
        } => {
            let n = len(x);
            let n_tokens = shape(x)[1];
            let n_pos = run.step.pos.len();
            if n != n_tokens * n_heads * head_dim
                || len(out) != n
                || cfg.n_rot == 0
                || !cfg.n_rot.is_multiple_of(2)
                || cfg.n_rot > head_dim
                || n_pos != n_tokens
            {
                return Err(format!(
                    "x {:?} as {n_heads} heads of {head_dim}, n_rot {}, {n_pos} positions",
                    shape(x),
                    cfg.n_rot,
                ));
            }
            if let Some(f) = cfg.freq_factors {
                if len(f) < cfg.n_rot / 2 {
                    return Err(format!(
                        "{} frequency factors for n_rot {}",
                        len(f),
                        cfg.n_rot
                    ));
                }
            }
            Shaped::Rope(Rope {
                x,
                out,
                n,
                n_heads,
                head_dim,
                cfg,
                consts: rope_consts(&cfg),
            })
        }
        Op::Attention {
            q,
            k,
            v,
            layer,
            cfg,
        } => attention(run, q, k, v, layer, cfg, out, limits.max_head_dim)?,
        Op::SelectRows { x } => {
            let c = cols(x);
            let n_rows = shape(x)[1];
            if let Some(&bad) = run.step.out_rows.iter().find(|&&r| r as usize >= n_rows) {
                return Err(format!("output row {bad} of {n_rows}"));
            }
            if len(out) != run.step.out_rows.len() * c {
                return Err(format!("out {:?}", shape(out)));
            }
            Shaped::SelectRows(SelectRows {
                x,
                out,
                cols: c,
                n: len(out),
            })
        }
        Op::Copy { .. } => Shaped::Copy,
        Op::Softmax { x } => {
            if len(out) != len(x) {
                return Err(format!("out {:?}", shape(out)));
            }
            Shaped::Softmax(Softmax {
                x,
                out,
                rows: rows_of(x),
                cols: cols(x),
            })
        }
        Op::TopK { x, k } => {
            let (rows, c) = (rows_of(x), cols(x));
            if k == 0 || k > max_k || k > c || len(out) != rows * k {
                return Err(format!("k = {k} (at most {max_k} and the row length)"));
            }
            Shaped::TopK(TopK {
                x,
                out,
                rows,
                cols: c,
                k,
            })
        }
        Op::NormSum { x, min_sum } => Shaped::NormSum(NormSum {
            x,
            out,
            rows: rows_of(x),
            cols: cols(x),
            min_sum,
        }),
        Op::GroupMask {
            x,
            n_groups,
            n_used,
        } => {
            let c = cols(x);
            if n_groups == 0
                || n_groups > max_k
                || !c.is_multiple_of(n_groups)
                || c / n_groups < 2
                || n_used > n_groups
            {
                return Err(format!("{c} experts in {n_groups} groups, {n_used} used"));
            }
            Shaped::GroupMask(GroupMask {
                x,
                out,
                rows: rows_of(x),
                cols: c,
                n_groups,
                n_used,
            })
        }
        Op::GatherCols { x, ids } => {
            let rows = rows_of(x);
            if len(ids) != len(out) || rows == 0 || !len(ids).is_multiple_of(rows) {
                return Err(format!("{} ids for {rows} rows", len(ids)));
            }
            Shaped::GatherCols(GatherCols {
                x,
                ids,
                out,
                cols: cols(x),
                k: len(ids) / rows,
            })
        }
        Op::AddId { x, b, ids } => {
            let c = cols(x);
            if len(ids) * c != len(x) || cols(b) != c {
                return Err(format!(
                    "x {:?}, b {:?}, ids {:?}",
                    shape(x),
                    shape(b),
                    shape(ids)
                ));
            }
            Shaped::AddId(AddId {
                x,
                b,
                ids,
                out,
                cols: c,
            })
        }
        Op::MoeSum { x, w } => {
            let k = cols(w);
            let c = cols(out);
            if len(x) != len(w) * c || len(out) * k != len(x) {
                return Err(format!(
                    "x {:?}, w {:?}, out {:?}",
                    shape(x),
                    shape(w),
                    shape(out)
                ));
            }
            Shaped::MoeSum(MoeSum {
                x,
                w,
                out,
                k,
                cols: c,
            })
        }
        Op::MulRows { x, s } => {
            let rows = len(s);
            if rows == 0 || !len(x).is_multiple_of(rows) {
                return Err(format!("{} values for {rows} rows", len(x)));
            }
            Shaped::MulRows(MulRows {
                x,
                s,
                out,
                cols: len(x) / rows,
            })
        }
        Op::SliceHeads {
            x,
            n_heads,
            head_dim,
            start,
            len: l,
        } => {
            // Whole heads in, `l` of each out (the CPU's preconditions).
            let width = n_heads * head_dim;
            if l == 0
                || start + l > head_dim
                || width == 0
                || !len(x).is_multiple_of(width)
                || len(out) * head_dim != len(x) * l
            {
                return Err(format!("columns {start}..{} of {head_dim}", start + l));
            }
            Shaped::SliceHeads(SliceHeads {
                x,
                out,
                head_dim,
                start,
                len: l,
            })
        }
        Op::ConcatHeads { a, b, n_heads } => {
            let nh = n_heads.max(1);
            let (la, lb) = (cols(a) / nh, cols(b) / nh);
            if la == 0 || lb == 0 || len(out) != len(a) + len(b) {
                return Err(format!("heads of {la} and {lb} into {:?}", shape(out)));
            }
            Shaped::ConcatHeads(ConcatHeads { a, b, out, la, lb })
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn matmul(
    run: &SegmentRun<'_>,
    w: TensorId,
    x: TensorId,
    out: TensorId,
    rows: usize,
    cols: usize,
    n_mat: usize,
    x_mat_stride: usize,
) -> Result<Shaped, String> {
    let g = run.graph;
    let x_stride = cols * n_mat;
    let (lx, lo) = (g.tensor(x).len(), g.tensor(out).len());
    let n = lx / x_stride.max(1);
    if rows == 0 || n * x_stride != lx || lo != n * rows * n_mat {
        return Err(format!(
            "x {:?}, out {:?} for {n_mat} × [{rows}, {cols}]",
            g.tensor(x).shape,
            g.tensor(out).shape
        ));
    }
    Ok(Shaped::MatMul(MatMul {
        w,
        x,
        out,
        rows,
        cols,
        n_mat,
        x_mat_stride,
        n,
    }))
}

fn binary(
    run: &SegmentRun<'_>,
    op: u32,
    a: TensorId,
    b: TensorId,
    out: TensorId,
) -> Result<Shaped, String> {
    let g = run.graph;
    let (na, nb) = (g.tensor(a).len(), g.tensor(b).len());
    if nb == 0 || (nb != na && !na.is_multiple_of(nb)) || g.tensor(out).len() != na {
        return Err(format!("b has {nb} values for a's {na}"));
    }
    Ok(Shaped::Binary(Binary {
        op,
        a,
        b,
        out,
        n: na,
        b_len: nb,
    }))
}

fn unary(
    run: &SegmentRun<'_>,
    op: u32,
    s: f32,
    x: TensorId,
    out: TensorId,
) -> Result<Shaped, String> {
    let g = run.graph;
    if g.tensor(x).len() != g.tensor(out).len() {
        return Err(format!(
            "{:?} into {:?}",
            g.tensor(x).shape,
            g.tensor(out).shape
        ));
    }
    Ok(Shaped::Unary(Unary {
        op,
        s,
        x,
        out,
        n: g.tensor(out).len(),
    }))
}

#[allow(clippy::too_many_arguments)]
fn norm(
    run: &SegmentRun<'_>,
    layer: bool,
    x: TensorId,
    w: Option<TensorId>,
    b: Option<TensorId>,
    group: usize,
    eps: f32,
    out: TensorId,
) -> Result<Shaped, String> {
    let g = run.graph;
    let n = g.tensor(x).len();
    if group == 0 || !n.is_multiple_of(group) || g.tensor(out).len() != n {
        return Err(format!("{n} values in groups of {group}"));
    }
    for t in [w, b].into_iter().flatten() {
        if g.tensor(t).len() != group {
            return Err(format!(
                "weight has {} values for groups of {group}",
                g.tensor(t).len()
            ));
        }
    }
    Ok(Shaped::Norm(Norm {
        layer,
        x,
        w,
        b,
        group,
        n_groups: n / group,
        eps,
        out,
    }))
}

#[allow(clippy::too_many_arguments)]
fn attention(
    run: &SegmentRun<'_>,
    q: TensorId,
    k: TensorId,
    v: TensorId,
    layer: usize,
    cfg: AttnCfg,
    out: TensorId,
    max_hd: usize,
) -> Result<Shaped, String> {
    let g = run.graph;
    let len = |t: TensorId| g.tensor(t).len();
    let n_tokens = g.tensor(q).shape[1];
    let pos = run.step.pos;
    let first = *pos.first().ok_or("empty step")?;
    let contiguous = pos.iter().enumerate().all(|(i, &p)| p == first + i as i32);
    let (hd, hdv) = (cfg.head_dim, cfg.head_dim_v);
    if first < 0
        || !contiguous
        || cfg.n_head_kv == 0
        || !cfg.n_head.is_multiple_of(cfg.n_head_kv)
        || hd == 0
        || hd > max_hd
        || hdv == 0
        || hdv > max_hd
        || len(q) != n_tokens * cfg.n_head * hd
        || len(out) != n_tokens * cfg.n_head * hdv
        || pos.len() != n_tokens
    {
        return Err(format!(
            "q {:?}, out {:?}: {} heads ({} KV) of {hd}/{hdv} (at most {max_hd}), \
             positions from {first}, contiguous: {contiguous}",
            g.tensor(q).shape,
            g.tensor(out).shape,
            cfg.n_head,
            cfg.n_head_kv
        ));
    }
    for (t, width) in [(k, cfg.n_head_kv * hd), (v, cfg.n_head_kv * hdv)] {
        if len(t) != n_tokens * width {
            return Err(format!(
                "{:?} holds {} values, not {n_tokens} rows of {width}",
                g.tensor(t).shape,
                len(t)
            ));
        }
    }
    Ok(Shaped::Attention(Attention {
        q,
        k,
        v,
        out,
        layer,
        cfg,
        n_tokens,
        first: first as usize,
    }))
}

/// The cache a [`Shaped::Attention`] reads, checked: K and V rows of
/// `k_row`/`v_row` bytes (`q8`: Q8_0, else F16) in buffers of
/// `k_bytes`/`v_bytes`, holding cells `0..n_kv`. Q8_0 rows need heads of
/// whole blocks of 32.
#[allow(clippy::too_many_arguments)]
pub fn check_cache(
    cfg: &AttnCfg,
    n_kv: usize,
    (k_q8, v_q8): (bool, bool),
    (k_row, v_row): (usize, usize),
    (k_bytes, v_bytes): (usize, usize),
) -> Result<(), String> {
    let (hd, hdv) = (cfg.head_dim, cfg.head_dim_v);
    if n_kv * k_row > k_bytes || n_kv * v_row > v_bytes {
        return Err(format!("cells up to {n_kv} do not fit the cache"));
    }
    if (k_q8 && !hd.is_multiple_of(32)) || (v_q8 && !hdv.is_multiple_of(32)) {
        return Err(format!("Q8_0 cache rows of heads of {hd}/{hdv}"));
    }
    for (width, row, q8) in [
        (cfg.n_head_kv * hd, k_row, k_q8),
        (cfg.n_head_kv * hdv, v_row, v_q8),
    ] {
        let need = if q8 { width / 32 * 34 } else { width * 2 };
        if row < need {
            return Err(format!("cache rows of {row} bytes for {width} values"));
        }
    }
    Ok(())
}
