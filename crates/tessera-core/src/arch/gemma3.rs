//! `gemma3`: Gemma 3 text — embeddings scaled by √n_embd, four RMS norms
//! per block (before and after attention and FFN; the GGUF weights already
//! include Gemma's `1 +`), per-head q/k norm, NeoX RoPE with a different
//! base on sliding-window layers (10 000) and global layers, a sliding
//! window on five of every six layers, q pre-scaled by 1/√head_dim, and a
//! GELU-gated FFN.

use crate::error::Result;
use crate::graph::{Glu, Op, TensorId};
use crate::hparams::HParams;

use super::blocks::{self, AttnOpts, Norm, QkNorm};
use super::builder::Builder;

/// Builds the gemma3 graph.
pub fn build(b: &mut Builder, hp: &HParams) -> Result<TensorId> {
    let n = Norm::Rms(hp.rms_eps);
    let mut x = blocks::embed(b, Some((hp.n_embd as f32).sqrt()))?;
    for il in 0..hp.n_layer {
        b.set_layer(Some(il));
        let swa = hp.swa_layers[il];
        let base = if swa {
            hp.rope_freq_base_swa
        } else {
            hp.rope_freq_base
        };
        let opts = AttnOpts {
            prescale_q: true,
            softcap: hp.attn_logit_softcap,
            window: if swa { hp.n_swa } else { None },
            ..AttnOpts::plain(
                hp,
                blocks::rope_cfg(hp, true, base),
                QkNorm::PerHead(hp.rms_eps),
            )
        };
        let h = blocks::norm(b, x, Some(il), "attn_norm", n, "attn_norm")?;
        let mut a = blocks::attention(b, hp, h, il, &opts)?;
        if il + 1 == hp.n_layer {
            a = b.op("attn_out_rows", Op::SelectRows { x: a })?;
            x = b.op("inp_rows", Op::SelectRows { x })?;
        }
        let a = blocks::norm(b, a, Some(il), "post_attention_norm", n, "attn_post_norm")?;
        let sa = b.op("sa_out", Op::Add { a, b: x })?;
        let h = blocks::norm(b, sa, Some(il), "ffn_norm", n, "ffn_norm")?;
        let f = blocks::ffn(b, h, il, Glu::GeGlu)?;
        let f = blocks::norm(b, f, Some(il), "post_ffw_norm", n, "ffn_post_norm")?;
        x = b.op("l_out", Op::Add { a: f, b: sa })?;
    }
    blocks::output(b, x, n, hp.final_logit_softcap)
}
