//! `llama`: Llama 2/3.x, Mistral, SmolLM2, Mixtral (with `expert_count`:
//! a softmax-routed MoE FFN, weights renormalised) — pre-norm, RMS norm, rotary
//! embedding on adjacent pairs, grouped-query attention, SwiGLU FFN.

use crate::error::Result;
use crate::graph::TensorId;
use crate::hparams::{Gating, HParams};

use super::blocks::{self, AttnOpts, QkNorm};
use super::builder::Builder;
use super::moe::{self, MoeOpts};

/// Builds the llama graph.
pub fn build(b: &mut Builder, hp: &HParams) -> Result<TensorId> {
    let rope = blocks::rope_cfg(hp, false, hp.rope_freq_base);
    let moe = MoeOpts::from_hparams(hp, Gating::Softmax, true);
    blocks::pre_norm_decoder(
        b,
        hp,
        |b, _il| {
            let rope = crate::graph::RopeCfg {
                freq_factors: b.weight_opt("rope_freqs.weight"),
                ..rope
            };
            Ok(AttnOpts {
                softcap: hp.attn_logit_softcap,
                ..AttnOpts::plain(hp, rope, QkNorm::None)
            })
        },
        |b, x, il| {
            // Mixtral: the llama architecture with experts.
            if hp.n_expert > 0 {
                moe::moe_ffn(b, hp, x, il, &moe)
            } else {
                blocks::swiglu_ffn(b, x, il)
            }
        },
    )
}
