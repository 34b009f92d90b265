//! `qwen2` and `qwen2moe`: Qwen 2 / 2.5 and Qwen1.5/2-MoE — the llama block
//! with q/k/v biases (picked up by [`blocks::linear`] from
//! `attn_{q,k,v}.bias`) and NeoX rotary layout; the MoE variant routes by
//! softmax without renormalising and adds a sigmoid-gated shared expert.

use crate::error::Result;
use crate::graph::TensorId;
use crate::hparams::{Gating, HParams};

use super::blocks::{self, AttnOpts, QkNorm};
use super::builder::Builder;
use super::moe::{self, MoeOpts};

/// Builds the qwen2 graph.
pub fn build(b: &mut Builder, hp: &HParams) -> Result<TensorId> {
    let rope = blocks::rope_cfg(hp, true, hp.rope_freq_base);
    let moe = MoeOpts::from_hparams(hp, Gating::Softmax, false);
    blocks::pre_norm_decoder(
        b,
        hp,
        |_, _| Ok(AttnOpts::plain(hp, rope, QkNorm::None)),
        |b, x, il| moe::moe_or_dense_ffn(b, hp, x, il, &moe),
    )
}
