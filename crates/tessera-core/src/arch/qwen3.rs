//! `qwen3` and `qwen3moe`: Qwen 3 dense and MoE (softmax-routed experts,
//! weights renormalised, no shared expert) — the llama block with per-head RMS norm of q and
//! k before RoPE (`attn_q_norm`, `attn_k_norm`), NeoX rotary layout, no
//! q/k/v biases.

use crate::error::Result;
use crate::graph::TensorId;
use crate::hparams::{Gating, HParams};

use super::blocks::{self, AttnOpts, QkNorm};
use super::builder::Builder;
use super::moe::{self, MoeOpts};

/// Builds the qwen3 graph.
pub fn build(b: &mut Builder, hp: &HParams) -> Result<TensorId> {
    let rope = blocks::rope_cfg(hp, true, hp.rope_freq_base);
    let moe = MoeOpts::from_hparams(hp, Gating::Softmax, true);
    blocks::pre_norm_decoder(
        b,
        hp,
        |_, _| Ok(AttnOpts::plain(hp, rope, QkNorm::PerHead(hp.rms_eps))),
        |b, x, il| {
            if hp.n_expert > 0 {
                moe::moe_ffn(b, hp, x, il, &moe)
            } else {
                blocks::swiglu_ffn(b, x, il)
            }
        },
    )
}
