//! `llama`: Llama 2/3.x, Mistral, SmolLM2 — pre-norm, RMS norm, rotary
//! embedding on adjacent pairs, grouped-query attention, SwiGLU FFN.

use crate::error::Result;
use crate::graph::TensorId;
use crate::hparams::HParams;

use super::blocks::{self, AttnOpts};
use super::builder::Builder;

/// Builds the llama graph.
pub fn build(b: &mut Builder, hp: &HParams) -> Result<TensorId> {
    let rope = blocks::rope_cfg(hp, false, hp.rope_freq_base);
    blocks::pre_norm_decoder(b, hp, |b, _il| {
        Ok(AttnOpts {
            qk_norm: None,
            rope: crate::graph::RopeCfg {
                freq_factors: b.weight_opt("rope_freqs.weight"),
                ..rope
            },
            scale: 1.0 / (hp.head_dim_k as f32).sqrt(),
            prescale_q: false,
            softcap: hp.attn_logit_softcap,
            window: None,
        })
    })
}
