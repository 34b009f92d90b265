//! The shared mixture-of-experts FFN, as llama.cpp's `build_moe_ffn`:
//!
//! ```text
//! logits  = x · ffn_gate_inp                    [n, n_expert]
//! probs   = softmax(logits) | sigmoid(logits)
//! ids     = top_k(probs (+ exp_probs_b), k)      [n, k]
//! w       = probs[ids]  (/ Σ w) (× scale)        [n, k]
//! h       = act(gate_exps[ids] · x) * (up_exps[ids] · x)   [n·k, n_ff_exp]
//! out     = Σ_s w[s] · (down_exps[ids] · h)      [n, n_embd]
//! ```
//!
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
    let logits = b.op("ffn_moe_logits", Op::MatMul { w: router, x })?;
    let probs = match o.gating {
        Gating::Softmax => b.op("ffn_moe_probs", Op::Softmax { x: logits })?,
        Gating::Sigmoid => b.op(
            "ffn_moe_probs",
            Op::Unary {
                x: logits,
                f: Unary::Sigmoid,
            },
        )?,
    };
    let selection = match b.layer_opt(il, "exp_probs_b", "bias") {
        Some(bias) => b.op("ffn_moe_probs_biased", Op::Add { a: probs, b: bias })?,
        None => probs,
    };
    let ids = b.op(
        "ffn_moe_topk",
        Op::TopK {
            x: selection,
            k: hp.n_expert_used,
        },
    )?;
    let mut w = b.op("ffn_moe_weights", Op::GatherCols { x: probs, ids })?;
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
    let up_w = b.layer_weight(il, "ffn_up_exps")?;
    let gate_w = b.layer_weight(il, "ffn_gate_exps")?;
    let down_w = b.layer_weight(il, "ffn_down_exps")?;
    let up = b.op("ffn_moe_up", Op::MatMulId { w: up_w, x, ids })?;
    let gate = b.op("ffn_moe_gate", Op::MatMulId { w: gate_w, x, ids })?;
    let h = b.op("ffn_moe_act", Op::Glu { gate, up, f: o.act })?;
    let down = b.op(
        "ffn_moe_down",
        Op::MatMulId {
            w: down_w,
            x: h,
            ids,
        },
    )?;
    b.op("ffn_moe_out", Op::MoeSum { x: down, w })
}
