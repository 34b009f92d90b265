//! `gpt-oss`: OpenAI's gpt-oss — pre-norm blocks with q/k/v/o biases,
//! attention sinks, a sliding window on every other layer (even layers),
//! NeoX RoPE with YaRN scaling, the FFN's norm named `post_attention_norm`,
//! and experts (MXFP4 in the released files) with bias rows, routed by the
//! softmax of the chosen logits (the router has a bias too) through the
//! clamped SwiGLU.

use crate::error::Result;
use crate::graph::{Glu, TensorId};
use crate::hparams::{Gating, HParams};

use super::blocks::{self, AttnOpts, QkNorm};
use super::builder::Builder;
use super::moe::{self, MoeOpts};

/// Builds the gpt-oss graph.
pub fn build(b: &mut Builder, hp: &HParams) -> Result<TensorId> {
    let rope = blocks::rope_cfg(hp, true, hp.rope_freq_base);
    let opts = MoeOpts {
        act: Glu::SwiGluOai,
        ..MoeOpts::from_hparams(hp, Gating::SoftmaxWeight, false)
    };
    blocks::pre_norm_decoder_with(
        b,
        hp,
        "post_attention_norm",
        |_, il| {
            Ok(AttnOpts {
                window: if hp.swa_layers[il] { hp.n_swa } else { None },
                ..AttnOpts::plain(hp, rope, QkNorm::None)
            })
        },
        |b, x, il| moe::moe_ffn(b, hp, x, il, &opts),
    )
}
