//! `qwen2`: Qwen 2 / 2.5 — the llama block with q/k/v biases (picked up by
//! [`blocks::linear`] from `attn_{q,k,v}.bias`) and NeoX rotary layout.

use crate::error::Result;
use crate::graph::TensorId;
use crate::hparams::HParams;

use super::blocks::{self, AttnOpts, QkNorm};
use super::builder::Builder;

/// Builds the qwen2 graph.
pub fn build(b: &mut Builder, hp: &HParams) -> Result<TensorId> {
    let rope = blocks::rope_cfg(hp, true, hp.rope_freq_base);
    blocks::pre_norm_decoder(
        b,
        hp,
        |_, _| {
            Ok(AttnOpts {
                qk_norm: QkNorm::None,
                rope,
                scale: 1.0 / (hp.head_dim_k as f32).sqrt(),
                prescale_q: false,
                softcap: 0.0,
                window: None,
            })
        },
        blocks::swiglu_ffn,
    )
}
