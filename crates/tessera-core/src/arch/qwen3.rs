//! `qwen3`: Qwen 3 dense — the llama block with per-head RMS norm of q and
//! k before RoPE (`attn_q_norm`, `attn_k_norm`), NeoX rotary layout, no
//! q/k/v biases.

use crate::error::Result;
use crate::graph::TensorId;
use crate::hparams::HParams;

use super::blocks::{self, AttnOpts};
use super::builder::Builder;

/// Builds the qwen3 graph.
pub fn build(b: &mut Builder, hp: &HParams) -> Result<TensorId> {
    let rope = blocks::rope_cfg(hp, true, hp.rope_freq_base);
    blocks::pre_norm_decoder(b, hp, |_, _| {
        Ok(AttnOpts {
            qk_norm: Some(hp.rms_eps),
            rope,
            scale: 1.0 / (hp.head_dim_k as f32).sqrt(),
            prescale_q: false,
            softcap: 0.0,
            window: None,
        })
    })
}
