//! The graph builder the architectures use: looks weights up by name,
//! names every node per layer (`attn_norm-3`, like llama.cpp's callbacks,
//! so two runs can be diffed layer by layer) and checks shapes as nodes are
//! added, so a malformed model fails at load with the tensor's name.

use crate::error::{CoreError, Result};
use crate::graph::{ActType, Graph, Node, Op, TensorDef, TensorId, TensorKind};
use crate::weights::Weights;

/// Builds one [`Graph`].
pub struct Builder<'a> {
    g: Graph,
    weights: &'a Weights,
    layer: Option<usize>,
}

impl<'a> Builder<'a> {
    /// A builder for steps of `n_tokens` tokens and `n_out` output rows.
    pub fn new(weights: &'a Weights, n_tokens: usize, n_out: usize) -> Builder<'a> {
        Builder {
            g: Graph {
                n_tokens,
                n_out,
                ..Graph::default()
            },
            weights,
            layer: None,
        }
    }

    /// Tokens per step.
    pub fn n_tokens(&self) -> usize {
        self.g.n_tokens
    }

    /// Sets the layer that node names get as suffix (`None`: no suffix).
    pub fn set_layer(&mut self, layer: Option<usize>) {
        self.layer = layer;
    }

    /// The weight `name`, or an error naming it.
    pub fn weight(&mut self, name: &str) -> Result<TensorId> {
        self.weight_opt(name).ok_or_else(|| CoreError::Tensor {
            name: name.into(),
            reason: "missing from the model".into(),
        })
    }

    /// The weight `name`, if the model has it.
    pub fn weight_opt(&mut self, name: &str) -> Option<TensorId> {
        let (i, w) = self.weights.get(name)?;
        if let Some(pos) = self
            .g
            .tensors
            .iter()
            .position(|t| t.kind == TensorKind::Weight(i))
        {
            return Some(TensorId(pos as u32));
        }
        Some(self.push(TensorDef {
            name: name.into(),
            shape: w.shape,
            kind: TensorKind::Weight(i),
        }))
    }

    /// The weight of layer `il`: `blk.{il}.{base}.weight`.
    pub fn layer_weight(&mut self, il: usize, base: &str) -> Result<TensorId> {
        self.weight(&format!("blk.{il}.{base}.weight"))
    }

    /// The optional weight `blk.{il}.{base}.{suffix}`.
    pub fn layer_opt(&mut self, il: usize, base: &str, suffix: &str) -> Option<TensorId> {
        self.weight_opt(&format!("blk.{il}.{base}.{suffix}"))
    }

    /// Shape `[n_mat, rows, cols]` of `t`.
    pub fn shape(&self, t: TensorId) -> [usize; 3] {
        self.g.tensor(t).shape
    }

    fn name_of(&self, t: TensorId) -> &str {
        &self.g.tensor(t).name
    }

    fn push(&mut self, def: TensorDef) -> TensorId {
        let id = TensorId(self.g.tensors.len() as u32);
        self.g.tensors.push(def);
        id
    }

    fn shape_err(&self, name: &str, reason: String) -> CoreError {
        CoreError::Tensor {
            name: name.into(),
            reason,
        }
    }

    /// Adds `op` as node `name` (suffixed with the layer) and returns its
    /// output. A product with a row-split weight becomes one product per
    /// part (`name#0`, `name#1` …, each on its part's device) gathered by
    /// column concatenations, the last of them named `name`.
    pub fn op(&mut self, name: &str, op: Op) -> Result<TensorId> {
        if let Op::MatMul { w, x } = op {
            if let TensorKind::Weight(i) = self.g.tensor(w).kind {
                let parts = self.weights.as_slice()[i].parts.clone();
                if !parts.is_empty() {
                    self.infer(name, &op)?;
                    return self.split_matmul(name, &parts, x);
                }
            }
        }
        self.add(name, op)
    }

    /// `x · wᵀ` over the row parts `parts` of `w`, gathered.
    fn split_matmul(&mut self, name: &str, parts: &[usize], x: TensorId) -> Result<TensorId> {
        let mut outs = Vec::with_capacity(parts.len());
        for (k, &p) in parts.iter().enumerate() {
            let pw = self.weight(&self.weights.as_slice()[p].name.clone())?;
            outs.push(self.add(&format!("{name}#{k}"), Op::MatMul { w: pw, x })?);
        }
        let mut acc = outs[0];
        for (k, &o) in outs.iter().enumerate().skip(1) {
            let last = k + 1 == outs.len();
            let cat = if last {
                name.to_string()
            } else {
                format!("{name}#cat{k}")
            };
            acc = self.add(
                &cat,
                Op::ConcatHeads {
                    a: acc,
                    b: o,
                    n_heads: 1,
                },
            )?;
        }
        Ok(acc)
    }

    /// Adds `op` as node `name` (suffixed with the layer), as it is.
    fn add(&mut self, name: &str, op: Op) -> Result<TensorId> {
        let full = match self.layer {
            Some(il) => format!("{name}-{il}"),
            None => name.to_string(),
        };
        let (rows, cols) = self.infer(&full, &op)?;
        let dtype = match op {
            Op::TopK { .. } => ActType::I32,
            _ => ActType::F32,
        };
        let out = self.push(TensorDef {
            name: full,
            shape: [1, rows, cols],
            kind: TensorKind::Act(dtype),
        });
        self.g.nodes.push(Node { op, out });
        Ok(out)
    }

    /// Output `[rows, cols]` of `op`, checking its inputs.
    fn infer(&self, name: &str, op: &Op) -> Result<(usize, usize)> {
        let s = |t: TensorId| self.shape(t);
        let vector_len = |t: TensorId| {
            let [m, r, c] = s(t);
            m * r * c
        };
        let same_or_row = |a: TensorId, b: TensorId| -> Result<(usize, usize)> {
            let (sa, sb) = (s(a), s(b));
            let ok = sa == sb || (vector_len(b) == sa[2]);
            if !ok {
                return Err(self.shape_err(
                    name,
                    format!(
                        "{} {:?} and {} {:?} do not broadcast",
                        self.name_of(a),
                        sa,
                        self.name_of(b),
                        sb
                    ),
                ));
            }
            Ok((sa[1], sa[2]))
        };
        match *op {
            Op::Embed { table } => Ok((self.g.n_tokens, s(table)[2])),
            Op::MatMul { w, x } => {
                let (sw, sx) = (s(w), s(x));
                if sw[0] != 1 || sw[2] != sx[2] {
                    return Err(self.shape_err(
                        name,
                        format!(
                            "weight {} {:?} cannot multiply {} {:?}",
                            self.name_of(w),
                            sw,
                            self.name_of(x),
                            sx
                        ),
                    ));
                }
                Ok((sx[1], sw[1]))
            }
            Op::Add { a, b } | Op::Mul { a, b } | Op::Div { a, b } => same_or_row(a, b),
            Op::Scale { x, .. } | Op::Unary { x, .. } | Op::Copy { x } => Ok((s(x)[1], s(x)[2])),
            Op::RmsNorm { x, w, group, .. } | Op::LayerNorm { x, w, group, .. } => {
                if group == 0 || s(x)[2] % group != 0 {
                    return Err(self.shape_err(
                        name,
                        format!("rows of {} are not groups of {group}", s(x)[2]),
                    ));
                }
                if let Some(w) = w {
                    if vector_len(w) != group {
                        return Err(self.shape_err(
                            name,
                            format!(
                                "norm weight {} has {} values, not {group}",
                                self.name_of(w),
                                vector_len(w)
                            ),
                        ));
                    }
                }
                Ok((s(x)[1], s(x)[2]))
            }
            Op::Rope {
                x,
                n_heads,
                head_dim,
                cfg,
            } => {
                if s(x)[2] != n_heads * head_dim || cfg.n_rot > head_dim {
                    return Err(self.shape_err(
                        name,
                        format!(
                            "{:?} is not {n_heads} heads of {head_dim} (rotating {})",
                            s(x),
                            cfg.n_rot
                        ),
                    ));
                }
                Ok((s(x)[1], s(x)[2]))
            }
            Op::Attention { q, k, v, cfg, .. } => {
                let hd = cfg.head_dim;
                let want = [
                    (q, cfg.n_head * hd),
                    (k, cfg.n_head_kv * hd),
                    (v, cfg.n_head_kv * cfg.head_dim_v),
                ];
                for (t, w) in want {
                    if s(t)[2] != w || s(t)[1] != s(q)[1] {
                        return Err(self.shape_err(
                            name,
                            format!("{} is {:?}, expected width {w}", self.name_of(t), s(t)),
                        ));
                    }
                }
                if cfg.n_head_kv == 0 || cfg.n_head % cfg.n_head_kv != 0 {
                    return Err(self.shape_err(
                        name,
                        format!("{} heads over {} kv heads", cfg.n_head, cfg.n_head_kv),
                    ));
                }
                Ok((s(q)[1], cfg.n_head * cfg.head_dim_v))
            }
            Op::Glu { gate, up, .. } => {
                if s(gate) != s(up) {
                    return Err(self.shape_err(
                        name,
                        format!("gate {:?} and up {:?} differ", s(gate), s(up)),
                    ));
                }
                Ok((s(gate)[1], s(gate)[2]))
            }
            Op::SelectRows { x } => Ok((self.g.n_out, s(x)[2])),
            Op::Softmax { x } | Op::NormSum { x, .. } => Ok((s(x)[1], s(x)[2])),
            Op::GroupMask {
                x,
                n_groups,
                n_used,
            } => {
                let cols = s(x)[2];
                if n_groups == 0
                    || !cols.is_multiple_of(n_groups)
                    || cols / n_groups < 2
                    || n_used == 0
                    || n_used > n_groups
                {
                    return Err(self.shape_err(
                        name,
                        format!("{cols} experts in {n_groups} groups, {n_used} used"),
                    ));
                }
                Ok((s(x)[1], cols))
            }
            Op::TopK { x, k } => {
                if k == 0 || k > s(x)[2] {
                    return Err(
                        self.shape_err(name, format!("top {k} of rows of {} values", s(x)[2]))
                    );
                }
                Ok((s(x)[1], k))
            }
            Op::GatherCols { x, ids } => {
                self.check_ids(name, ids, s(x)[1])?;
                Ok((s(x)[1], s(ids)[2]))
            }
            Op::MatMulId { w, x, ids } => {
                let (sw, sx, si) = (s(w), s(x), s(ids));
                self.check_ids(name, ids, si[1])?;
                let (n, k) = (si[1], si[2]);
                if sw[2] != sx[2] || (sx[1] != n && sx[1] != n * k) {
                    return Err(self.shape_err(
                        name,
                        format!(
                            "experts {} {:?} cannot multiply {} {:?} routed by {:?}",
                            self.name_of(w),
                            sw,
                            self.name_of(x),
                            sx,
                            si
                        ),
                    ));
                }
                Ok((n * k, sw[1]))
            }
            Op::AddId { x, b: bias, ids } => {
                let (sx, sb, si) = (s(x), s(bias), s(ids));
                self.check_ids(name, ids, si[1])?;
                if sx[1] != si[1] * si[2] || sb[2] != sx[2] || sb[0] != 1 {
                    return Err(self.shape_err(
                        name,
                        format!(
                            "biases {} {:?} for {} {:?} routed by {:?}",
                            self.name_of(bias),
                            sb,
                            self.name_of(x),
                            sx,
                            si
                        ),
                    ));
                }
                Ok((sx[1], sx[2]))
            }
            Op::MoeSum { x, w } => {
                let (sx, sw) = (s(x), s(w));
                if sx[1] != sw[1] * sw[2] {
                    return Err(self.shape_err(
                        name,
                        format!(
                            "{} {:?} is not {} tokens × {} experts",
                            self.name_of(x),
                            sx,
                            sw[1],
                            sw[2]
                        ),
                    ));
                }
                Ok((sw[1], sx[2]))
            }
            Op::SliceHeads {
                x,
                n_heads,
                head_dim,
                start,
                len,
            } => {
                if n_heads * head_dim != s(x)[2] || len == 0 || start + len > head_dim {
                    return Err(self.shape_err(
                        name,
                        format!(
                            "columns {start}..{} of {n_heads} heads of {head_dim} in {:?}",
                            start + len,
                            s(x)
                        ),
                    ));
                }
                Ok((s(x)[1], n_heads * len))
            }
            Op::ConcatHeads { a, b, n_heads } => {
                let (sa, sb) = (s(a), s(b));
                if n_heads == 0
                    || sa[1] != sb[1]
                    || !sa[2].is_multiple_of(n_heads)
                    || !sb[2].is_multiple_of(n_heads)
                {
                    return Err(
                        self.shape_err(name, format!("{sa:?} and {sb:?} in {n_heads} heads"))
                    );
                }
                Ok((sa[1], sa[2] + sb[2]))
            }
            Op::MatMulHeads { w, x } => {
                let (sw, sx) = (s(w), s(x));
                if sw[0] == 0 || sw[0] * sw[2] != sx[2] {
                    return Err(self.shape_err(
                        name,
                        format!(
                            "per-head weights {} {:?} cannot multiply {} {:?}",
                            self.name_of(w),
                            sw,
                            self.name_of(x),
                            sx
                        ),
                    ));
                }
                Ok((sx[1], sw[0] * sw[1]))
            }
            Op::MulRows { x, s: f } => {
                if s(f)[1] != s(x)[1] || s(f)[2] != 1 {
                    return Err(
                        self.shape_err(name, format!("row factors {:?} for {:?}", s(f), s(x)))
                    );
                }
                Ok((s(x)[1], s(x)[2]))
            }
        }
    }

    /// `ids` must be an i32 activation of `rows` rows.
    fn check_ids(&self, name: &str, ids: TensorId, rows: usize) -> Result<()> {
        let t = self.g.tensor(ids);
        if t.kind != TensorKind::Act(ActType::I32) || t.shape[1] != rows {
            return Err(self.shape_err(
                name,
                format!("{} {:?} is not i32 ids for {rows} rows", t.name, t.shape),
            ));
        }
        Ok(())
    }

    /// Finishes the graph with `output` as the step's result.
    pub fn finish(mut self, output: TensorId) -> Graph {
        self.g.output = Some(output);
        self.g
    }
}
