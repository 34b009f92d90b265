//! The compute graph an architecture builds for one step: tensors (weights
//! and activations) and the nodes that compute them, in execution order.
//!
//! A graph is built for a step *shape* — `n_tokens` tokens in, `n_out` rows
//! of logits out — and reused for every step of that shape (decode builds
//! it once). What changes from step to step (the token ids, their
//! positions, which rows are outputs) is not in the graph: it is the
//! [`StepInputs`] the ops read when they run.
//!
//! # Shapes
//! Every tensor is `[n_mat, rows, cols]`, row-major, `cols` innermost
//! (ggml's `ne0`). Activations have `n_mat = 1` and `rows` = tokens of the
//! step (or outputs, after [`Op::SelectRows`]); 3-D weights are expert
//! stacks. Activations are f32, except routing ids (i32).

use std::fmt;

/// A tensor of a [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub u32);

/// A node of a [`Graph`] (its index in execution order).
pub type NodeId = usize;

/// Element type of an activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActType {
    /// 32-bit float.
    F32,
    /// 32-bit signed integer (routing ids), stored in the same 4-byte words.
    I32,
}

/// Where a tensor's data comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorKind {
    /// A model weight: index into the model's weight table.
    Weight(usize),
    /// An activation computed by a node of this graph.
    Act(ActType),
}

/// A tensor's name, shape and kind.
#[derive(Clone, Debug)]
pub struct TensorDef {
    /// Weight name (`blk.3.attn_q.weight`) or node name (`attn_norm-3`).
    pub name: String,
    /// `[n_mat, rows, cols]`.
    pub shape: [usize; 3],
    /// Weight or activation.
    pub kind: TensorKind,
}

impl TensorDef {
    /// Elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows (of the last matrix).
    pub fn rows(&self) -> usize {
        self.shape[1]
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.shape[2]
    }
}

/// Rotary embedding settings (ggml's `rope_ext` arguments).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeCfg {
    /// Dimensions rotated per head (the rest pass through).
    pub n_rot: usize,
    /// NeoX layout (rotate `i` with `i + n_rot/2`) instead of adjacent pairs.
    pub neox: bool,
    /// Base frequency.
    pub freq_base: f32,
    /// Frequency scale (1 / context scaling factor).
    pub freq_scale: f32,
    /// YaRN extrapolation mix (0 = off).
    pub ext_factor: f32,
    /// YaRN attention magnitude factor.
    pub attn_factor: f32,
    /// YaRN low correction dimension parameter.
    pub beta_fast: f32,
    /// YaRN high correction dimension parameter.
    pub beta_slow: f32,
    /// Training context the scaling refers to.
    pub n_ctx_orig: usize,
    /// Per-frequency divisors (`rope_freqs.weight`), if the model has them.
    pub freq_factors: Option<TensorId>,
}

/// Attention settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttnCfg {
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// Dimension of one query/key head.
    pub head_dim: usize,
    /// Dimension of one value head (= `head_dim` except with MLA).
    pub head_dim_v: usize,
    /// Multiplier of `q·k`.
    pub scale: f32,
    /// Soft cap of the scores (0 = none).
    pub softcap: f32,
    /// Sliding window (keys older than this many positions are masked).
    pub window: Option<usize>,
    /// Per-head sink logits (`attn_sinks`), if the model has them.
    pub sinks: Option<TensorId>,
}

/// Elementwise activation functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unary {
    /// `x * sigmoid(x)`.
    Silu,
    /// GELU, tanh approximation (ggml's `gelu`).
    Gelu,
    /// GELU, exact (erf).
    GeluErf,
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
}

/// Gated linear units: `act(gate) * up`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Glu {
    /// `silu(gate) * up`.
    SwiGlu,
    /// `gelu(gate) * up` (tanh approximation).
    GeGlu,
    /// gpt-oss's clamped SwiGLU (ggml's `swiglu_oai`, α = 1.702, limit 7):
    /// `g = min(gate, 7)`, `u = clamp(up, −7, 7)`, `g·σ(α·g) · (u + 1)`.
    SwiGluOai,
}

/// An operation. Inputs are tensors of the same graph; the output is the
/// node's tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    /// Rows of an embedding table (a weight) for the step's token ids:
    /// out `[n_tokens, cols]`.
    Embed {
        /// The table `[n_vocab, n_embd]`.
        table: TensorId,
    },
    /// `x · wᵀ`: `w [rows, cols]`, `x [n, cols]` → `[n, rows]`.
    MatMul {
        /// Weight.
        w: TensorId,
        /// Activations.
        x: TensorId,
    },
    /// `a + b`, `b` of `a`'s shape or one row broadcast over `a`'s rows.
    Add {
        /// Left.
        a: TensorId,
        /// Right.
        b: TensorId,
    },
    /// `a * b`, broadcast as [`Op::Add`].
    Mul {
        /// Left.
        a: TensorId,
        /// Right.
        b: TensorId,
    },
    /// `a / b`, broadcast as [`Op::Add`].
    Div {
        /// Left.
        a: TensorId,
        /// Right.
        b: TensorId,
    },
    /// `x * s`.
    Scale {
        /// Input.
        x: TensorId,
        /// Factor.
        s: f32,
    },
    /// RMS norm over groups of `group` values, times `w` if given.
    RmsNorm {
        /// Input.
        x: TensorId,
        /// Weight of length `group`.
        w: Option<TensorId>,
        /// Values normalised together (a row, or one head).
        group: usize,
        /// Epsilon.
        eps: f32,
    },
    /// Layer norm over groups of `group` values, then `* w + b`.
    LayerNorm {
        /// Input.
        x: TensorId,
        /// Weight.
        w: Option<TensorId>,
        /// Bias.
        b: Option<TensorId>,
        /// Values normalised together.
        group: usize,
        /// Epsilon.
        eps: f32,
    },
    /// Rotary position embedding of `x [n_tokens, n_heads * head_dim]` at
    /// the step's positions.
    Rope {
        /// Input.
        x: TensorId,
        /// Heads per row.
        n_heads: usize,
        /// Dimension of a head.
        head_dim: usize,
        /// Settings.
        cfg: RopeCfg,
    },
    /// Stores `k` and `v` of the step into layer `layer`'s KV cache, then
    /// attends `q` over the cache (causal, optional window). Out
    /// `[n_tokens, n_head * head_dim]`.
    Attention {
        /// Queries `[n_tokens, n_head * head_dim]`.
        q: TensorId,
        /// Keys of the step `[n_tokens, n_head_kv * head_dim]`.
        k: TensorId,
        /// Values of the step `[n_tokens, n_head_kv * head_dim]`.
        v: TensorId,
        /// KV cache layer.
        layer: usize,
        /// Settings.
        cfg: AttnCfg,
    },
    /// Elementwise function.
    Unary {
        /// Input.
        x: TensorId,
        /// Function.
        f: Unary,
    },
    /// Gated unit `act(gate) * up`.
    Glu {
        /// Gate.
        gate: TensorId,
        /// Up projection.
        up: TensorId,
        /// Kind.
        f: Glu,
    },
    /// The rows of `x` whose logits the step returns (the step's output rows).
    SelectRows {
        /// Input `[n_tokens, cols]`.
        x: TensorId,
    },
    /// Copy of a tensor that lives on another device (inserted by the scheduler).
    Copy {
        /// Source.
        x: TensorId,
    },
    /// Softmax of each row of `x` (the router's probabilities).
    Softmax {
        /// Input `[n, cols]`.
        x: TensorId,
    },
    /// Per row, the columns of the `k` largest values, largest first:
    /// `x [n, cols]` → ids `[n, k]` (i32).
    TopK {
        /// Input.
        x: TensorId,
        /// How many.
        k: usize,
    },
    /// `out[t, s] = x[t, ids[t, s]]`: `x [n, cols]`, `ids [n, k]` → `[n, k]`.
    GatherCols {
        /// Values.
        x: TensorId,
        /// Column ids (i32).
        ids: TensorId,
    },
    /// Expert-group routing: per row, the experts (in `n_groups` equal
    /// groups of columns) outside the `n_used` groups with the largest
    /// sums of their two best values set to −∞. `[n, cols]` → `[n, cols]`.
    GroupMask {
        /// Selection scores.
        x: TensorId,
        /// Groups per row.
        n_groups: usize,
        /// Groups kept.
        n_used: usize,
    },
    /// Each row divided by its sum, the sum clamped below at `min_sum`.
    NormSum {
        /// Input `[n, cols]`.
        x: TensorId,
        /// Smallest divisor.
        min_sum: f32,
    },
    /// Mixture-of-experts product: `out[t·k + s] = w[ids[t, s]] · x[t or
    /// t·k + s]`. `w [n_expert, rows, cols]`, `x [n, cols]` (every slot
    /// reads its token's row) or `[n·k, cols]`, `ids [n, k]` → `[n·k, rows]`.
    MatMulId {
        /// Expert stack.
        w: TensorId,
        /// Activations.
        x: TensorId,
        /// Expert ids (i32).
        ids: TensorId,
    },
    /// `out[t·k + s] = x[t·k + s] + b[ids[t, s]]`: each expert's bias row
    /// (ggml's `add_id`). `x [n·k, cols]`, `b [n_expert, cols]`, `ids [n, k]`.
    AddId {
        /// Expert outputs.
        x: TensorId,
        /// Biases, one row per expert.
        b: TensorId,
        /// Expert ids (i32).
        ids: TensorId,
    },
    /// The weighted sum of each token's expert outputs, in slot order:
    /// `out[t] = Σ_s x[t·k + s] · w[t, s]` (each product rounded, then
    /// added one by one, as llama.cpp's `mul` and chain of `add`s).
    /// `x [n·k, cols]`, `w [n, k]` → `[n, cols]`.
    MoeSum {
        /// Expert outputs.
        x: TensorId,
        /// Weights.
        w: TensorId,
    },
    /// Columns `start..start + len` of every head: `x [n, n_heads·head_dim]`
    /// → `[n, n_heads·len]`.
    SliceHeads {
        /// Input.
        x: TensorId,
        /// Heads per row.
        n_heads: usize,
        /// Values per head of `x`.
        head_dim: usize,
        /// First column taken from each head.
        start: usize,
        /// Columns taken from each head.
        len: usize,
    },
    /// Heads side by side: head `h` of the output is head `h` of `a`
    /// followed by head `h` of `b` (`n_heads` heads in each).
    ConcatHeads {
        /// First parts.
        a: TensorId,
        /// Second parts.
        b: TensorId,
        /// Heads per row.
        n_heads: usize,
    },
    /// One matrix per head: `w [n_heads, rows, cols]`, `x [n, n_heads·cols]`
    /// → `[n, n_heads·rows]`, head `h` of the output `w[h] · x_h`.
    MatMulHeads {
        /// Per-head matrices.
        w: TensorId,
        /// Activations.
        x: TensorId,
    },
    /// `x` times one value per row: `x [n, cols]`, `s [n, 1]` → `[n, cols]`.
    MulRows {
        /// Input.
        x: TensorId,
        /// Row factors.
        s: TensorId,
    },
}

impl Op {
    /// The tensors this op reads.
    pub fn inputs(&self) -> Vec<TensorId> {
        match *self {
            Op::Embed { table } => vec![table],
            Op::MatMul { w, x } => vec![w, x],
            Op::Add { a, b } | Op::Mul { a, b } | Op::Div { a, b } => vec![a, b],
            Op::Scale { x, .. } | Op::Unary { x, .. } | Op::SelectRows { x } | Op::Copy { x } => {
                vec![x]
            }
            Op::RmsNorm { x, w, .. } => [Some(x), w].into_iter().flatten().collect(),
            Op::LayerNorm { x, w, b, .. } => [Some(x), w, b].into_iter().flatten().collect(),
            Op::Rope { x, cfg, .. } => [Some(x), cfg.freq_factors].into_iter().flatten().collect(),
            Op::Attention { q, k, v, cfg, .. } => [Some(q), Some(k), Some(v), cfg.sinks]
                .into_iter()
                .flatten()
                .collect(),
            Op::Glu { gate, up, .. } => vec![gate, up],
            Op::Softmax { x }
            | Op::TopK { x, .. }
            | Op::NormSum { x, .. }
            | Op::GroupMask { x, .. } => vec![x],
            Op::GatherCols { x, ids } => vec![x, ids],
            Op::MatMulId { w, x, ids } => vec![w, x, ids],
            Op::AddId { x, b, ids } => vec![x, b, ids],
            Op::MoeSum { x, w } => vec![x, w],
            Op::MulRows { x, s } => vec![x, s],
            Op::SliceHeads { x, .. } => vec![x],
            Op::ConcatHeads { a, b, .. } => vec![a, b],
            Op::MatMulHeads { w, x } => vec![w, x],
        }
    }

    /// The same op with every input `t` replaced by `f(t)`.
    pub fn map_inputs(self, f: impl Fn(TensorId) -> TensorId) -> Op {
        let o = |t: Option<TensorId>| t.map(&f);
        match self {
            Op::Embed { table } => Op::Embed { table: f(table) },
            Op::MatMul { w, x } => Op::MatMul { w: f(w), x: f(x) },
            Op::Add { a, b } => Op::Add { a: f(a), b: f(b) },
            Op::Mul { a, b } => Op::Mul { a: f(a), b: f(b) },
            Op::Div { a, b } => Op::Div { a: f(a), b: f(b) },
            Op::Scale { x, s } => Op::Scale { x: f(x), s },
            Op::RmsNorm { x, w, group, eps } => Op::RmsNorm {
                x: f(x),
                w: o(w),
                group,
                eps,
            },
            Op::LayerNorm {
                x,
                w,
                b,
                group,
                eps,
            } => Op::LayerNorm {
                x: f(x),
                w: o(w),
                b: o(b),
                group,
                eps,
            },
            Op::Rope {
                x,
                n_heads,
                head_dim,
                cfg,
            } => Op::Rope {
                x: f(x),
                n_heads,
                head_dim,
                cfg: RopeCfg {
                    freq_factors: o(cfg.freq_factors),
                    ..cfg
                },
            },
            Op::Attention {
                q,
                k,
                v,
                layer,
                cfg,
            } => Op::Attention {
                q: f(q),
                k: f(k),
                v: f(v),
                layer,
                cfg: AttnCfg {
                    sinks: o(cfg.sinks),
                    ..cfg
                },
            },
            Op::Unary { x, f: u } => Op::Unary { x: f(x), f: u },
            Op::Glu { gate, up, f: k } => Op::Glu {
                gate: f(gate),
                up: f(up),
                f: k,
            },
            Op::SelectRows { x } => Op::SelectRows { x: f(x) },
            Op::Copy { x } => Op::Copy { x: f(x) },
            Op::Softmax { x } => Op::Softmax { x: f(x) },
            Op::TopK { x, k } => Op::TopK { x: f(x), k },
            Op::GatherCols { x, ids } => Op::GatherCols {
                x: f(x),
                ids: f(ids),
            },
            Op::NormSum { x, min_sum } => Op::NormSum { x: f(x), min_sum },
            Op::GroupMask {
                x,
                n_groups,
                n_used,
            } => Op::GroupMask {
                x: f(x),
                n_groups,
                n_used,
            },
            Op::MatMulId { w, x, ids } => Op::MatMulId {
                w: f(w),
                x: f(x),
                ids: f(ids),
            },
            Op::AddId { x, b, ids } => Op::AddId {
                x: f(x),
                b: f(b),
                ids: f(ids),
            },
            Op::MoeSum { x, w } => Op::MoeSum { x: f(x), w: f(w) },
            Op::MulRows { x, s } => Op::MulRows { x: f(x), s: f(s) },
            Op::SliceHeads {
                x,
                n_heads,
                head_dim,
                start,
                len,
            } => Op::SliceHeads {
                x: f(x),
                n_heads,
                head_dim,
                start,
                len,
            },
            Op::ConcatHeads { a, b, n_heads } => Op::ConcatHeads {
                a: f(a),
                b: f(b),
                n_heads,
            },
            Op::MatMulHeads { w, x } => Op::MatMulHeads { w: f(w), x: f(x) },
        }
    }

    /// Short op name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Embed { .. } => "embed",
            Op::MatMul { .. } => "matmul",
            Op::Add { .. } => "add",
            Op::Mul { .. } => "mul",
            Op::Div { .. } => "div",
            Op::Scale { .. } => "scale",
            Op::RmsNorm { .. } => "rms_norm",
            Op::LayerNorm { .. } => "layer_norm",
            Op::Rope { .. } => "rope",
            Op::Attention { .. } => "attention",
            Op::Unary { .. } => "unary",
            Op::Glu { .. } => "glu",
            Op::SelectRows { .. } => "select_rows",
            Op::Copy { .. } => "copy",
            Op::Softmax { .. } => "softmax",
            Op::TopK { .. } => "top_k",
            Op::GatherCols { .. } => "gather_cols",
            Op::NormSum { .. } => "norm_sum",
            Op::GroupMask { .. } => "group_mask",
            Op::MatMulId { .. } => "mul_mat_id",
            Op::AddId { .. } => "add_id",
            Op::MoeSum { .. } => "moe_sum",
            Op::MulRows { .. } => "mul_rows",
            Op::SliceHeads { .. } => "slice_heads",
            Op::ConcatHeads { .. } => "concat_heads",
            Op::MatMulHeads { .. } => "mul_mat_heads",
        }
    }
}

/// One computation: an op and the tensor it produces.
#[derive(Clone, Debug)]
pub struct Node {
    /// The op.
    pub op: Op,
    /// Its output tensor (an activation).
    pub out: TensorId,
}

/// Tensors and nodes of one step shape, nodes in execution order.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// All tensors; a [`TensorId`] indexes this.
    pub tensors: Vec<TensorDef>,
    /// Nodes in execution order.
    pub nodes: Vec<Node>,
    /// The tensor the step returns (logits `[n_out, n_vocab]`).
    pub output: Option<TensorId>,
    /// Tokens per step.
    pub n_tokens: usize,
    /// Output rows per step.
    pub n_out: usize,
    /// Compute every row as a one-token step computes it, so that the
    /// step's outputs equal, bit for bit, those of evaluating its tokens
    /// one at a time (see [`crate::Session::set_decode_exact`]): the
    /// backend takes its one-token kernels' float order for each row, not
    /// its batched order. Off for graphs the builder makes.
    pub decode_exact: bool,
}

impl Graph {
    /// The tensor `id`.
    pub fn tensor(&self, id: TensorId) -> &TensorDef {
        &self.tensors[id.0 as usize]
    }

    /// The node name (its output's name).
    pub fn node_name(&self, node: NodeId) -> &str {
        &self.tensor(self.nodes[node].out).name
    }
}

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for n in &self.nodes {
            let t = self.tensor(n.out);
            let ins: Vec<&str> =
                n.op.inputs()
                    .iter()
                    .map(|&i| self.tensor(i).name.as_str())
                    .collect();
            writeln!(
                f,
                "{:<24} {:<12} {:?} <- {}",
                t.name,
                n.op.name(),
                t.shape,
                ins.join(", ")
            )?;
        }
        Ok(())
    }
}

/// What one step feeds the graph.
#[derive(Clone, Copy, Debug)]
pub struct StepInputs<'a> {
    /// Token ids, one per row.
    pub tokens: &'a [u32],
    /// Position of each token in the sequence (= its KV cache cell).
    pub pos: &'a [i32],
    /// Rows (token indices within the step) whose logits are returned.
    pub out_rows: &'a [u32],
}
