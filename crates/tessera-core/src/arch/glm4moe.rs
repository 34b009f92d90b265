//! `glm4moe`: GLM-4.5 / 4.6 / 4.7 (and Solar Open) — the llama block with
//! q/k/v biases, optional per-head q/k norms, NeoX RoPE on the first
//! `rope.dimension_count` dimensions of each head, the FFN's norm named
//! `post_attention_norm`, dense leading layers, then sigmoid-routed experts
//! (with the `exp_probs_b` selection bias) plus an ungated shared expert.
//! The multi-token-prediction layers after `block_count −
//! nextn_predict_layers` are not run (see [`HParams::n_layer`]).

use crate::error::{CoreError, Result};
use crate::graph::TensorId;
use crate::hparams::{Gating, HParams};

use super::blocks::{self, AttnOpts, QkNorm};
use super::builder::Builder;
use super::moe::{self, MoeOpts};

/// Builds the glm4moe graph.
pub fn build(b: &mut Builder, hp: &HParams) -> Result<TensorId> {
    if hp.rope_sections.iter().any(|&s| s != 0) {
        return Err(CoreError::HParam {
            key: "glm4moe.rope.dimension_sections".into(),
            reason: "multimodal rotary sections (M-RoPE) are not supported".into(),
        });
    }
    let rope = blocks::rope_cfg(hp, true, hp.rope_freq_base);
    let opts = MoeOpts::from_hparams(hp, Gating::Sigmoid, false);
    blocks::pre_norm_decoder_with(
        b,
        hp,
        "post_attention_norm",
        |b, il| {
            let qk_norm = if b.layer_opt(il, "attn_q_norm", "weight").is_some() {
                QkNorm::PerHead(hp.rms_eps)
            } else {
                QkNorm::None
            };
            Ok(AttnOpts::plain(hp, rope, qk_norm))
        },
        |b, x, il| moe::moe_or_dense_ffn(b, hp, x, il, &opts),
    )
}
