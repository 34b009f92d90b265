//! The shared mixture-of-experts FFN, as llama.cpp's `build_moe_ffn`:
//!
//! ```text
//! logits  = x · ffn_gate_inp (+ bias)           [n, n_expert]
//! probs   = softmax(logits) | sigmoid(logits) | logits
//! ids     = top_k(probs (+ exp_probs_b), k)      [n, k]
//! w       = probs[ids] (softmax) (/ Σ w) (× scale)   [n, k]
//! h       = act(gate_exps[ids] · x) * (up_exps[ids] · x)   [n·k, n_ff_exp]
//!           (each expert product plus its bias row, where there is one;
//!           gate and up from one fused `ffn_gate_up_exps` where the file has it)
//! out     = Σ_s w[s] · (down_exps[ids] · h)      [n, n_embd]
//! ```
//!
//! With expert groups (DeepSeek-V3), only the experts of the `n_group_used`
//! groups with the largest sums of their two best scores compete.
//! Only the chosen experts' rows are read (`mul_mat_id`). Node names are
//! llama.cpp's (`ffn_moe_logits-3`, …) so dumps line up.

use crate::error::Result;
use crate::graph::{Glu, Op, TensorId, Unary};
use crate::hparams::{Gating, HParams};

use super::builder::Builder;

/// llama.cpp's clamp of the routed weights' sum (the smallest normal f16).
const MIN_WEIGHT_SUM: f32 = 6.103_515_6e-5;

/// Options of [`moe_ffn`].
#[derive(Clone, Copy, Debug)]
pub struct MoeOpts {
    /// How logits become probabilities.
    pub gating: Gating,
    /// Normalise the chosen experts' weights to sum 1.
    pub norm_w: bool,
    /// Multiply the weights by this (0 or 1: not at all).
    pub w_scale: f32,
    /// The experts' gated activation.
    pub act: Glu,
}

impl MoeOpts {
    /// The options of a family whose defaults are `gating` and `norm_w`,
    /// overridden by the file's `expert_gating_func`/`expert_weights_norm`
    /// where it has them, with the file's `expert_weights_scale`.
    pub fn from_hparams(hp: &HParams, gating: Gating, norm_w: bool) -> MoeOpts {
        MoeOpts {
            gating: hp.expert_gating.unwrap_or(gating),
            norm_w: hp.expert_weights_norm.unwrap_or(norm_w),
            w_scale: hp.expert_weights_scale,
            act: Glu::SwiGlu,
        }
    }
}

/// The routed experts of layer `il` on the normalised input `x`.
pub fn moe_ffn(
    b: &mut Builder,
    hp: &HParams,
    x: TensorId,
    il: usize,
    o: &MoeOpts,
) -> Result<TensorId> {
    let router = b.layer_weight(il, "ffn_gate_inp")?;
    let mut logits = b.op("ffn_moe_logits", Op::MatMul { w: router, x })?;
    if let Some(bias) = b.layer_opt(il, "ffn_gate_inp", "bias") {
        logits = b.op("ffn_moe_logits_biased", Op::Add { a: logits, b: bias })?;
    }
    let probs = match o.gating {
        Gating::Softmax => b.op("ffn_moe_probs", Op::Softmax { x: logits })?,
        Gating::Sigmoid => b.op(
            "ffn_moe_probs",
            Op::Unary {
                x: logits,
                f: Unary::Sigmoid,
            },
        )?,
        Gating::SoftmaxWeight => logits,
    };
    let mut selection = match b.layer_opt(il, "exp_probs_b", "bias") {
        Some(bias) => b.op("ffn_moe_probs_biased", Op::Add { a: probs, b: bias })?,
        None => probs,
    };
    if hp.n_expert_groups > 1 {
        selection = b.op(
            "ffn_moe_probs_masked",
            Op::GroupMask {
                x: selection,
                n_groups: hp.n_expert_groups,
                n_used: hp.n_group_used,
            },
        )?;
    }
    let ids = b.op(
        "ffn_moe_topk",
        Op::TopK {
            x: selection,
            k: hp.n_expert_used,
        },
    )?;
    let mut w = b.op("ffn_moe_weights", Op::GatherCols { x: probs, ids })?;
    if o.gating == Gating::SoftmaxWeight {
        w = b.op("ffn_moe_weights_softmax", Op::Softmax { x: w })?;
    }
    if o.norm_w {
        w = b.op(
            "ffn_moe_weights_norm",
            Op::NormSum {
                x: w,
                min_sum: MIN_WEIGHT_SUM,
            },
        )?;
    }
    if o.w_scale != 0.0 && o.w_scale != 1.0 {
        w = b.op("ffn_moe_weights_scaled", Op::Scale { x: w, s: o.w_scale })?;
    }
    let (gate, up) = if b.layer_opt(il, "ffn_gate_up_exps", "weight").is_some() {
        // Fused: one product, gate in the first half of each row, up in the second.
        let gu = experts(b, il, "ffn_gate_up_exps", "ffn_moe_gate_up", x, ids)?;
        let n_ff = b.shape(gu)[2] / 2;
        let half = |b: &mut Builder, name: &str, start| {
            b.op(
                name,
                Op::SliceHeads {
                    x: gu,
                    n_heads: 1,
                    head_dim: 2 * n_ff,
                    start,
                    len: n_ff,
                },
            )
        };
        (half(b, "ffn_moe_gate", 0)?, half(b, "ffn_moe_up", n_ff)?)
    } else {
        let up = experts(b, il, "ffn_up_exps", "ffn_moe_up", x, ids)?;
        let gate = experts(b, il, "ffn_gate_exps", "ffn_moe_gate", x, ids)?;
        (gate, up)
    };
    let h = b.op("ffn_moe_act", Op::Glu { gate, up, f: o.act })?;
    let down = experts(b, il, "ffn_down_exps", "ffn_moe_down", h, ids)?;
    b.op("ffn_moe_out", Op::MoeSum { x: down, w })
}

/// The chosen experts of stack `blk.{il}.{base}.weight` applied to `x`
/// (plus their `.bias` rows, where the model has them), node `name`.
fn experts(
    b: &mut Builder,
    il: usize,
    base: &str,
    name: &str,
    x: TensorId,
    ids: TensorId,
) -> Result<TensorId> {
    let w = b.layer_weight(il, base)?;
    let y = b.op(name, Op::MatMulId { w, x, ids })?;
    match b.layer_opt(il, base, "bias") {
        Some(bias) => b.op(&format!("{name}_biased"), Op::AddId { x: y, b: bias, ids }),
        None => Ok(y),
    }
}

/// The shared expert of layer `il` (`ffn_{gate,up,down}_shexp`, a SwiGLU
/// FFN every token uses), gated per token when the layer has
/// `ffn_gate_inp_shexp` (Qwen2-MoE): `out = shexp(x) · σ(x · gate_inp)`,
/// the sigmoid computed as llama.cpp does, `silu(g) / g`.
pub fn shared_expert(b: &mut Builder, x: TensorId, il: usize) -> Result<TensorId> {
    let up = super::blocks::linear(b, x, il, "ffn_up_shexp", "ffn_shexp_up")?;
    let gate = super::blocks::linear(b, x, il, "ffn_gate_shexp", "ffn_shexp_gate_proj")?;
    let h = b.op(
        "ffn_shexp_act",
        Op::Glu {
            gate,
            up,
            f: Glu::SwiGlu,
        },
    )?;
    let out = super::blocks::linear(b, h, il, "ffn_down_shexp", "ffn_shexp")?;
    let Some(gate_inp) = b.layer_opt(il, "ffn_gate_inp_shexp", "weight") else {
        return Ok(out);
    };
    let g = b.op("ffn_shexp_gate_inp", Op::MatMul { w: gate_inp, x })?;
    let silu = b.op(
        "ffn_shexp_gate_silu",
        Op::Unary {
            x: g,
            f: Unary::Silu,
        },
    )?;
    let g = b.op("ffn_shexp_gate", Op::Div { a: silu, b: g })?;
    b.op("ffn_shexp_out", Op::MulRows { x: out, s: g })
}

/// The FFN of a MoE layer (Qwen2-MoE, GLM-4 MoE, DeepSeek-V2/V3): dense
/// below `n_layer_dense_lead` (or without experts), else the routed experts
/// plus the shared expert where the layer has one ([`shared_expert`]).
pub fn moe_or_dense_ffn(
    b: &mut Builder,
    hp: &HParams,
    x: TensorId,
    il: usize,
    o: &MoeOpts,
) -> Result<TensorId> {
    if il < hp.n_layer_dense_lead || hp.n_expert == 0 {
        return super::blocks::swiglu_ffn(b, x, il);
    }
    let routed = moe_ffn(b, hp, x, il, o)?;
    if b.layer_opt(il, "ffn_up_shexp", "weight").is_none() {
        return Ok(routed);
    }
    let shared = shared_expert(b, x, il)?;
    b.op(
        "ffn_out",
        Op::Add {
            a: routed,
            b: shared,
        },
    )
}
