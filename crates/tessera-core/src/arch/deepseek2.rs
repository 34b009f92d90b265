//! `deepseek2`: DeepSeek-V2 / V2-Lite / V3 and GLM-4.7-Flash — multi-head
//! latent attention (MLA) in its absorbed form, dense leading layers, then
//! routed experts (softmax or sigmoid gating, selection bias, groups) plus
//! shared experts.
//!
//! MLA, per token (`r` = `n_rot` rotated dims, `c` = `kv_lora_rank`):
//!
//! ```text
//! q        = x · attn_q  |  (rms(x · attn_q_a) · attn_q_b)     [n_head × (nope + r)]
//! kv       = x · attn_kv_a_mqa                                 [c + r]
//! k_pe     = rope(kv[c..]),   kv_cmpr = rms(kv[..c])
//! q_abs_h  = attn_k_b[h] · q_nope_h                            [n_head × c]
//! Q_h      = [q_abs_h | rope(q_pe_h)],  K = [kv_cmpr | k_pe],  V = kv_cmpr
//! out_h    = attn_v_b[h] · attention(Q, K, V)_h                [n_head × v_mla]
//! ```
//!
//! One KV head of `c + r` keys and `c` values serves every query head. The
//! score scale is `mscale² / √(nope + r)` with YaRN's `mscale` (1 without
//! rope scaling), as llama.cpp computes it.

use crate::error::{CoreError, Result};
use crate::graph::{AttnCfg, Op, RopeCfg, TensorId};
use crate::hparams::{Gating, HParams, Mla, RopeScaling};

use super::blocks::{self, Norm};
use super::builder::Builder;
use super::moe::{self, MoeOpts};

/// Builds the deepseek2 graph.
pub fn build(b: &mut Builder, hp: &HParams) -> Result<TensorId> {
    let mla = hp.mla.ok_or_else(|| CoreError::HParam {
        key: "deepseek2.attention.key_length_mla".into(),
        reason: "missing: only the absorbed MLA layout (attn_k_b/attn_v_b, GGUFs converted \
                 since mid-2025) is supported"
            .into(),
    })?;
    let (attn_factor, kq_scale) = yarn_factors(hp, &mla);
    let rope = RopeCfg {
        attn_factor,
        ..blocks::rope_cfg(hp, false, hp.rope_freq_base)
    };
    // GLM-4.7-Flash (47/48 layers, 154880 tokens) defaults to sigmoid.
    let glm = matches!(hp.n_layer, 47 | 48) && hp.n_vocab == 154_880;
    let gating = if glm {
        Gating::Sigmoid
    } else {
        Gating::Softmax
    };
    let opts = MoeOpts::from_hparams(hp, gating, false);
    let n = Norm::Rms(hp.rms_eps);
    let mut x = blocks::embed(b, None)?;
    for il in 0..hp.n_layer {
        b.set_layer(Some(il));
        let h = blocks::norm(b, x, Some(il), "attn_norm", n, "attn_norm")?;
        let mut a = mla_attention(b, hp, &mla, h, il, rope, kq_scale)?;
        if il + 1 == hp.n_layer {
            a = b.op("attn_out_rows", Op::SelectRows { x: a })?;
            x = b.op("inp_rows", Op::SelectRows { x })?;
        }
        x = b.op("ffn_inp", Op::Add { a, b: x })?;
        let h = blocks::norm(b, x, Some(il), "ffn_norm", n, "ffn_norm")?;
        let f = moe::moe_or_dense_ffn(b, hp, h, il, &opts)?;
        x = b.op("l_out", Op::Add { a: f, b: x })?;
    }
    blocks::output(b, x, n, 0.0)
}

/// llama.cpp's YaRN factors for DeepSeek-V2: the rope's `attn_factor`
/// (`cparams.yarn_attn_factor`) and the score scale `kq_scale`.
fn yarn_factors(hp: &HParams, mla: &Mla) -> (f32, f32) {
    let freq_scale = hp.rope_freq_scale;
    // The file stores 0.1·mscale_all_dim; llama.cpp divides it back.
    let log_mul = hp.rope_yarn_log_mul / 0.1;
    let get_mscale = |scale: f32, m: f32| {
        if scale <= 1.0 {
            1.0
        } else {
            0.1 * m * scale.ln() + 1.0
        }
    };
    let mut attn_factor = 1.0f32;
    if hp.rope_scaling == RopeScaling::Yarn {
        let factor = 1.0 / freq_scale;
        attn_factor = if log_mul != 0.0 {
            let m = if log_mul != 1.0 { log_mul } else { 1.0 };
            get_mscale(factor, m) / get_mscale(factor, log_mul)
        } else {
            get_mscale(factor, 1.0)
        };
        attn_factor *= 1.0 / (1.0 + 0.1 * factor.ln());
    }
    attn_factor *= hp.rope_attn_factor;
    let attn_factor_org = attn_factor * (1.0 + 0.1 * (1.0 / freq_scale).ln());
    let mscale = attn_factor_org * (1.0 + 0.1 * log_mul * (1.0 / freq_scale).ln());
    let kq_scale = mscale * mscale / (mla.head_dim_k as f32).sqrt();
    (attn_factor, kq_scale)
}

/// The MLA block of layer `il` on the normalised `x`, through the cache;
/// returns the output projection `[n, n_embd]`.
fn mla_attention(
    b: &mut Builder,
    hp: &HParams,
    mla: &Mla,
    x: TensorId,
    il: usize,
    rope: RopeCfg,
    kq_scale: f32,
) -> Result<TensorId> {
    let (n_head, r, c) = (hp.n_head, hp.n_rot, mla.kv_lora_rank);
    let nope = mla
        .head_dim_k
        .checked_sub(r)
        .filter(|&v| v > 0)
        .ok_or_else(|| CoreError::HParam {
            key: "deepseek2.attention.key_length_mla".into(),
            reason: format!("{} leaves nothing beside {r} rotated dims", mla.head_dim_k),
        })?;
    let q = if b.layer_opt(il, "attn_q_a", "weight").is_some() {
        let qa = blocks::linear(b, x, il, "attn_q_a", "q_a")?;
        let qa = blocks::norm(
            b,
            qa,
            Some(il),
            "attn_q_a_norm",
            Norm::Rms(hp.rms_eps),
            "q_a_norm",
        )?;
        blocks::linear(b, qa, il, "attn_q_b", "q")?
    } else {
        blocks::linear(b, x, il, "attn_q", "q")?
    };
    let kv = blocks::linear(b, x, il, "attn_kv_a_mqa", "kv_cmpr_pe")?;
    let slice = |b: &mut Builder, name: &str, x, n_heads, head_dim, start, len| {
        b.op(
            name,
            Op::SliceHeads {
                x,
                n_heads,
                head_dim,
                start,
                len,
            },
        )
    };
    let kv_cmpr = slice(b, "kv_cmpr", kv, 1, c + r, 0, c)?;
    let k_pe = slice(b, "k_pe", kv, 1, c + r, c, r)?;
    let rot = |b: &mut Builder, name: &str, x, n_heads| {
        b.op(
            name,
            Op::Rope {
                x,
                n_heads,
                head_dim: r,
                cfg: rope,
            },
        )
    };
    let k_pe = rot(b, "k_pe_rope", k_pe, 1)?;
    let kv_cmpr = blocks::norm(
        b,
        kv_cmpr,
        Some(il),
        "attn_kv_a_norm",
        Norm::Rms(hp.rms_eps),
        "kv_cmpr_norm",
    )?;
    let q_nope = slice(b, "q_nope", q, n_head, nope + r, 0, nope)?;
    let q_pe = slice(b, "q_pe", q, n_head, nope + r, nope, r)?;
    let q_pe = rot(b, "q_pe_rope", q_pe, n_head)?;
    let k_b = b.layer_weight(il, "attn_k_b")?;
    let q_abs = b.op("q_nope_absorbed", Op::MatMulHeads { w: k_b, x: q_nope })?;
    let q = b.op(
        "Qcur",
        Op::ConcatHeads {
            a: q_abs,
            b: q_pe,
            n_heads: n_head,
        },
    )?;
    let k = b.op(
        "Kcur",
        Op::ConcatHeads {
            a: kv_cmpr,
            b: k_pe,
            n_heads: 1,
        },
    )?;
    let cfg = AttnCfg {
        n_head,
        n_head_kv: 1,
        head_dim: c + r,
        head_dim_v: c,
        scale: kq_scale,
        softcap: 0.0,
        window: None,
        sinks: None,
    };
    let att = b.op(
        "kqv_out",
        Op::Attention {
            q,
            k,
            v: kv_cmpr,
            layer: il,
            cfg,
        },
    )?;
    let v_b = b.layer_weight(il, "attn_v_b")?;
    let o = b.op("kqv_mla", Op::MatMulHeads { w: v_b, x: att })?;
    blocks::linear(b, o, il, "attn_output", "attn_out")
}
