//! Shared transformer blocks, configured by option structs: norm,
//! attention, dense FFN, the output head. Architectures compose these.

use crate::error::Result;
use crate::graph::{AttnCfg, Glu, Op, RopeCfg, TensorId};
use crate::hparams::{HParams, RopeScaling};

use super::builder::Builder;

/// Which normalisation.
#[derive(Clone, Copy, Debug)]
pub enum Norm {
    /// RMS norm with this epsilon.
    Rms(f32),
    /// Layer norm with this epsilon (and a bias if the model has one).
    Layer(f32),
}

/// `norm(x) * w` with the weight `blk.{il}.{base}.weight` (or `base.weight`
/// when `il` is `None`), node `name`.
pub fn norm(
    b: &mut Builder,
    x: TensorId,
    il: Option<usize>,
    base: &str,
    kind: Norm,
    name: &str,
) -> Result<TensorId> {
    let prefix = il.map(|il| format!("blk.{il}.")).unwrap_or_default();
    let w = b.weight(&format!("{prefix}{base}.weight"))?;
    let group = b.shape(x)[2];
    match kind {
        Norm::Rms(eps) => b.op(
            name,
            Op::RmsNorm {
                x,
                w: Some(w),
                group,
                eps,
            },
        ),
        Norm::Layer(eps) => {
            let bias = b.weight_opt(&format!("{prefix}{base}.bias"));
            b.op(
                name,
                Op::LayerNorm {
                    x,
                    w: Some(w),
                    b: bias,
                    group,
                    eps,
                },
            )
        }
    }
}

/// `x · wᵀ (+ bias)` with `blk.{il}.{base}.weight` / `.bias`.
pub fn linear(b: &mut Builder, x: TensorId, il: usize, base: &str, name: &str) -> Result<TensorId> {
    let w = b.layer_weight(il, base)?;
    let y = b.op(name, Op::MatMul { w, x })?;
    match b.layer_opt(il, base, "bias") {
        Some(bias) => b.op(&format!("{name}_b"), Op::Add { a: y, b: bias }),
        None => Ok(y),
    }
}

/// RMS norm of q and k (`attn_q_norm`/`attn_k_norm`) before RoPE.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum QkNorm {
    /// None.
    None,
    /// Each head on its own, with this epsilon (Qwen3, Gemma 3).
    PerHead(f32),
    /// The whole projection at once, with this epsilon (OLMoE).
    Whole(f32),
}

/// Options of the attention block.
#[derive(Clone, Copy, Debug)]
pub struct AttnOpts {
    /// Q/K normalisation.
    pub qk_norm: QkNorm,
    /// Rotary embedding.
    pub rope: RopeCfg,
    /// Scale applied to the scores (or to q first, when `prescale_q`).
    pub scale: f32,
    /// Multiply q by `scale` before attention instead of the scores (Gemma).
    pub prescale_q: bool,
    /// Score soft cap (0 = none).
    pub softcap: f32,
    /// Sliding window of this layer.
    pub window: Option<usize>,
}

impl AttnOpts {
    /// The usual settings: scores scaled by `1/√head_dim`, no soft cap, no
    /// window, with this rope and q/k norm.
    pub fn plain(hp: &HParams, rope: RopeCfg, qk_norm: QkNorm) -> AttnOpts {
        AttnOpts {
            qk_norm,
            rope,
            scale: 1.0 / (hp.head_dim_k as f32).sqrt(),
            prescale_q: false,
            softcap: 0.0,
            window: None,
        }
    }
}

/// Self-attention of layer `il` on the normalised input `x`, through the
/// KV cache; returns the output projection `[n_tokens, n_embd]`.
pub fn attention(
    b: &mut Builder,
    hp: &HParams,
    x: TensorId,
    il: usize,
    o: &AttnOpts,
) -> Result<TensorId> {
    let hd = hp.head_dim_k;
    let mut q = linear(b, x, il, "attn_q", "Qcur")?;
    let mut k = linear(b, x, il, "attn_k", "Kcur")?;
    let v = linear(b, x, il, "attn_v", "Vcur")?;
    let qk = match o.qk_norm {
        QkNorm::None => None,
        QkNorm::PerHead(eps) => Some((eps, hd, hd)),
        QkNorm::Whole(eps) => Some((eps, b.shape(q)[2], b.shape(k)[2])),
    };
    if let Some((eps, q_group, k_group)) = qk {
        let qn = b.layer_weight(il, "attn_q_norm")?;
        let kn = b.layer_weight(il, "attn_k_norm")?;
        q = b.op(
            "Qcur_normed",
            Op::RmsNorm {
                x: q,
                w: Some(qn),
                group: q_group,
                eps,
            },
        )?;
        k = b.op(
            "Kcur_normed",
            Op::RmsNorm {
                x: k,
                w: Some(kn),
                group: k_group,
                eps,
            },
        )?;
    }
    q = b.op(
        "Qcur_rope",
        Op::Rope {
            x: q,
            n_heads: hp.n_head,
            head_dim: hd,
            cfg: o.rope,
        },
    )?;
    k = b.op(
        "Kcur_rope",
        Op::Rope {
            x: k,
            n_heads: hp.n_head_kv,
            head_dim: hd,
            cfg: o.rope,
        },
    )?;
    let mut scale = o.scale;
    if o.prescale_q {
        q = b.op("Qcur_scaled", Op::Scale { x: q, s: o.scale })?;
        scale = 1.0;
    }
    let cfg = AttnCfg {
        n_head: hp.n_head,
        n_head_kv: hp.n_head_kv,
        head_dim: hd,
        head_dim_v: hd,
        scale,
        softcap: o.softcap,
        window: o.window,
        sinks: b.layer_opt(il, "attn_sinks", "weight"),
    };
    let kqv = b.op(
        "kqv_out",
        Op::Attention {
            q,
            k,
            v,
            layer: il,
            cfg,
        },
    )?;
    linear(b, kqv, il, "attn_output", "attn_out")
}

/// Dense gated FFN of layer `il`: `down(act(gate(x)) * up(x))`.
pub fn ffn(b: &mut Builder, x: TensorId, il: usize, act: Glu) -> Result<TensorId> {
    let gate = linear(b, x, il, "ffn_gate", "ffn_gate")?;
    let up = linear(b, x, il, "ffn_up", "ffn_up")?;
    let h = b.op("ffn_act", Op::Glu { gate, up, f: act })?;
    linear(b, h, il, "ffn_down", "ffn_out")
}

/// Final norm and LM head (`output.weight`, or the tied `token_embd.weight`),
/// with an optional final soft cap. `x` already holds only the output rows.
pub fn output(b: &mut Builder, x: TensorId, norm_kind: Norm, softcap: f32) -> Result<TensorId> {
    b.set_layer(None);
    let x = norm(b, x, None, "output_norm", norm_kind, "result_norm")?;
    let w = match b.weight_opt("output.weight") {
        Some(w) => w,
        None => b.weight("token_embd.weight")?,
    };
    let mut y = b.op("result_output", Op::MatMul { w, x })?;
    if softcap > 0.0 {
        y = b.op(
            "logits_div",
            Op::Scale {
                x: y,
                s: 1.0 / softcap,
            },
        )?;
        y = b.op(
            "logits_tanh",
            Op::Unary {
                x: y,
                f: crate::graph::Unary::Tanh,
            },
        )?;
        y = b.op("logits_capped", Op::Scale { x: y, s: softcap })?;
    }
    Ok(y)
}

/// Token embeddings of the step, optionally scaled.
pub fn embed(b: &mut Builder, scale: Option<f32>) -> Result<TensorId> {
    let table = b.weight("token_embd.weight")?;
    let x = b.op("inp_embd", Op::Embed { table })?;
    match scale {
        Some(s) => b.op("inp_scaled", Op::Scale { x, s }),
        None => Ok(x),
    }
}

/// RoPE settings of the model at base frequency `freq_base`.
pub fn rope_cfg(hp: &HParams, neox: bool, freq_base: f32) -> RopeCfg {
    RopeCfg {
        n_rot: hp.n_rot,
        neox,
        freq_base,
        freq_scale: hp.rope_freq_scale,
        ext_factor: if hp.rope_scaling == RopeScaling::Yarn {
            1.0
        } else {
            0.0
        },
        attn_factor: 1.0,
        beta_fast: 32.0,
        beta_slow: 1.0,
        n_ctx_orig: hp.n_ctx_orig,
        freq_factors: None,
    }
}

/// The SwiGLU FFN of layer `il` (the dense FFN of the llama family).
pub fn swiglu_ffn(b: &mut Builder, x: TensorId, il: usize) -> Result<TensorId> {
    ffn(b, x, il, Glu::SwiGlu)
}

/// The pre-norm residual decoder used by llama, qwen2, qwen3 and their MoE
/// variants: per layer `x += attn(norm(x)); x += ffn(norm(x))`, the last
/// layer keeping only the output rows after attention, then the output
/// head. `ffn(b, h, il)` builds layer `il`'s FFN on the normalised `h`.
pub fn pre_norm_decoder(
    b: &mut Builder,
    hp: &HParams,
    attn: impl Fn(&mut Builder, usize) -> Result<AttnOpts>,
    ffn: impl Fn(&mut Builder, TensorId, usize) -> Result<TensorId>,
) -> Result<TensorId> {
    pre_norm_decoder_with(b, hp, "ffn_norm", attn, ffn)
}

/// [`pre_norm_decoder`] whose FFN norm weight is `blk.{il}.{ffn_norm}.weight`
/// (GLM-4 MoE names it `post_attention_norm`).
pub fn pre_norm_decoder_with(
    b: &mut Builder,
    hp: &HParams,
    ffn_norm: &str,
    attn: impl Fn(&mut Builder, usize) -> Result<AttnOpts>,
    ffn: impl Fn(&mut Builder, TensorId, usize) -> Result<TensorId>,
) -> Result<TensorId> {
    let n = Norm::Rms(hp.rms_eps);
    let mut x = embed(b, None)?;
    for il in 0..hp.n_layer {
        b.set_layer(Some(il));
        let h = norm(b, x, Some(il), "attn_norm", n, "attn_norm")?;
        let opts = attn(b, il)?;
        let mut a = attention(b, hp, h, il, &opts)?;
        if il + 1 == hp.n_layer {
            a = b.op("attn_out_rows", Op::SelectRows { x: a })?;
            x = b.op("inp_rows", Op::SelectRows { x })?;
        }
        x = b.op("ffn_inp", Op::Add { a, b: x })?;
        let h = norm(b, x, Some(il), ffn_norm, n, "ffn_norm")?;
        let f = ffn(b, h, il)?;
        x = b.op("l_out", Op::Add { a: f, b: x })?;
    }
    output(b, x, n, hp.final_logit_softcap)
}
