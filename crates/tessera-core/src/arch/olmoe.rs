//! `olmoe`: OLMoE — the llama block with RMS q/k norms over the whole
//! projection (not per head), NeoX RoPE, and a softmax-routed MoE FFN whose
//! weights are not renormalised.

use crate::error::Result;
use crate::graph::TensorId;
use crate::hparams::{Gating, HParams};

use super::blocks::{self, AttnOpts, QkNorm};
use super::builder::Builder;
use super::moe::{self, MoeOpts};

/// Builds the olmoe graph.
pub fn build(b: &mut Builder, hp: &HParams) -> Result<TensorId> {
    let rope = blocks::rope_cfg(hp, true, hp.rope_freq_base);
    let opts = MoeOpts::from_hparams(hp, Gating::Softmax, false);
    blocks::pre_norm_decoder(
        b,
        hp,
        |_, _| Ok(AttnOpts::plain(hp, rope, QkNorm::Whole(hp.rms_eps))),
        |b, x, il| moe::moe_ffn(b, hp, x, il, &opts),
    )
}
