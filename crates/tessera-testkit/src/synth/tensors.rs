//! The tensor list of a synthetic model, built from shared blocks
//! (embedding, attention, dense FFN, MoE FFN, output) steered by the
//! architecture's [`ArchSpec`] row.
//!
//! Shapes are given in GGML order, as GGUF stores them: `dims[0]` is the
//! length of a contiguous row. A matrix `[n_in, n_out]` is `n_out` rows of
//! `n_in` values (row-major `[n_out][n_in]`, PyTorch's `Linear.weight`), and
//! computes `y = W·x` with `x` of length `n_in`. Expert stacks are
//! `[n_in, n_out, n_expert]` (row-major `[n_expert][n_out][n_in]`).
//!
//! | tensor | GGML dims | stored as |
//! |---|---|---|
//! | `token_embd.weight` | `[n_embd, n_vocab]` | weight type |
//! | `output_norm.weight` | `[n_embd]` | F32 |
//! | `output.weight` (absent when tied) | `[n_embd, n_vocab]` | weight type |
//! | `blk.{l}.attn_norm.weight` | `[n_embd]` | F32 |
//! | `blk.{l}.attn_q.weight` | `[n_embd, n_head·head_dim]` | weight type |
//! | `blk.{l}.attn_k.weight` | `[n_embd, n_head_kv·head_dim]` | weight type |
//! | `blk.{l}.attn_v.weight` | `[n_embd, n_head_kv·head_dim]` | weight type |
//! | `blk.{l}.attn_output.weight` | `[n_head·head_dim, n_embd]` | weight type |
//! | `blk.{l}.attn_q_norm.weight` | `[head_dim]` (per head) or `[n_head·head_dim]` (OLMoE) | F32 |
//! | `blk.{l}.attn_k_norm.weight` | `[head_dim]` (per head) or `[n_head_kv·head_dim]` (OLMoE) | F32 |
//! | `blk.{l}.post_attention_norm.weight` (Gemma 3) | `[n_embd]` | F32 |
//! | `blk.{l}.ffn_norm.weight` | `[n_embd]` | F32 |
//! | `blk.{l}.ffn_gate.weight`, `ffn_up.weight` (dense) | `[n_embd, n_ff]` | weight type |
//! | `blk.{l}.ffn_down.weight` (dense) | `[n_ff, n_embd]` | weight type |
//! | `blk.{l}.ffn_gate_inp.weight` (MoE router) | `[n_embd, n_expert]` | F32 |
//! | `blk.{l}.ffn_gate_exps.weight`, `ffn_up_exps.weight` | `[n_embd, n_ff_exp, n_expert]` | weight type |
//! | `blk.{l}.ffn_gate_up_exps.weight` (`cfg.fused_gate_up`, instead of the two above) | `[n_embd, 2·n_ff_exp, n_expert]` | weight type |
//! | `blk.{l}.ffn_down_exps.weight` | `[n_ff_exp, n_embd, n_expert]` | weight type |
//! | `blk.{l}.post_ffw_norm.weight` (Gemma 3) | `[n_embd]` | F32 |
//!
//! The MoE architectures add (`n_ff_shexp = n_expert_shared·n_ff_exp`,
//! `n_q = n_head·head_dim`, `n_kv = n_head_kv·head_dim`):
//!
//! | tensor | GGML dims | stored as |
//! |---|---|---|
//! | `blk.{l}.attn_{q,k,v}.bias` (Qwen2 MoE, GLM-4.5, gpt-oss) | `[n_q]`, `[n_kv]`, `[n_kv]` | F32 |
//! | `blk.{l}.attn_output.bias` (gpt-oss) | `[n_embd]` | F32 |
//! | `blk.{l}.attn_sinks.weight` (gpt-oss) | `[n_head]` | F32 |
//! | `blk.{l}.post_attention_norm.weight` (GLM-4.5, gpt-oss: instead of `ffn_norm`) | `[n_embd]` | F32 |
//! | `blk.{l}.ffn_{gate,up,down}.weight` in the first `n_layer_dense_lead` layers | as dense | weight type |
//! | `blk.{l}.ffn_gate_inp.bias` (gpt-oss) | `[n_expert]` | F32 |
//! | `blk.{l}.exp_probs_b.bias` (`cfg.exp_probs_b`) | `[n_expert]` | F32 |
//! | `blk.{l}.ffn_{gate,up}_exps.bias` (gpt-oss) | `[n_ff_exp, n_expert]` | F32 |
//! | `blk.{l}.ffn_down_exps.bias` (gpt-oss) | `[n_embd, n_expert]` | F32 |
//! | `blk.{l}.ffn_gate_inp_shexp.weight` (Qwen2 MoE) | `[n_embd]` | F32 |
//! | `blk.{l}.ffn_{gate,up}_shexp.weight` | `[n_embd, n_ff_shexp]` | weight type |
//! | `blk.{l}.ffn_down_shexp.weight` | `[n_ff_shexp, n_embd]` | weight type |
//!
//! MLA layers (DeepSeek 2; `q_lora = q_lora_rank`, `kv_lora = kv_lora_rank`,
//! `hd = head_dim` = no-RoPE + RoPE part, `n_rot` the RoPE part, `hd_v =
//! head_dim_v`) have instead of `attn_{q,k,v,output}`:
//!
//! | tensor | GGML dims | stored as |
//! |---|---|---|
//! | `blk.{l}.attn_q.weight` (no q-LoRA) | `[n_embd, n_head·hd]` | weight type |
//! | `blk.{l}.attn_q_a.weight`, `attn_q_a_norm.weight`, `attn_q_b.weight` (q-LoRA) | `[n_embd, q_lora]`, `[q_lora]`, `[q_lora, n_head·hd]` | weight type, F32, weight type |
//! | `blk.{l}.attn_kv_a_mqa.weight` | `[n_embd, kv_lora + n_rot]` | weight type |
//! | `blk.{l}.attn_kv_a_norm.weight` | `[kv_lora]` | F32 |
//! | `blk.{l}.attn_k_b.weight` | `[hd − n_rot, kv_lora, n_head]` | weight type |
//! | `blk.{l}.attn_v_b.weight` | `[kv_lora, hd_v, n_head]` | weight type |
//! | `blk.{l}.attn_output.weight` | `[n_head·hd_v, n_embd]` | weight type |
//!
//! Norms, biases and the routers stay F32 whatever the weight type, as
//! `convert_hf_to_gguf.py` keeps them.
//!
//! Values: a norm is `1 ± 0.1`; a matrix is uniform with standard deviation
//! `1/√n_in`, so activations keep unit scale through every layer and the
//! logits spread by about 1 (greedy decoding is not decided by rounding noise).
//! Biases (and `exp_probs_b`) are uniform with standard deviation
//! [`BIAS_STD`], attention sinks with standard deviation 1, and a 1-D weight
//! (`ffn_gate_inp_shexp`) like a matrix row. `exp_gate_up_scale` multiplies
//! the standard deviation of `ffn_gate_exps` and `ffn_up_exps`. A fused
//! `ffn_gate_up_exps` holds, per expert, exactly the values those two would
//! have had (gate rows, then up rows; [`Init::FusedGateUp`]).

use super::arch::{ArchSpec, Attention, OutputHead, QkNorm, SharedExpert};
use super::fill::Init;
use super::SynthConfig;

/// Jitter of norm weights around 1.
const NORM_JITTER: f32 = 0.1;

/// Standard deviation of biases.
pub const BIAS_STD: f32 = 0.25;

/// One tensor of a synthetic model.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    /// GGUF tensor name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions in GGML order (`dims[0]` is the contiguous row length).
    pub dims: Vec<u64>,
    /// How the values are drawn.
    pub init: Init,
    /// Stored as F32 whatever the configured weight type.
    pub keep_f32: bool,
}

impl TensorSpec {
    fn norm(name: String, n: u64) -> Self {
        TensorSpec {
            name,
            dims: vec![n],
            init: Init::Norm {
                jitter: NORM_JITTER,
            },
            keep_f32: true,
        }
    }

    /// A matrix or a stack of matrices: `dims[0]` is the fan-in.
    fn weight(name: String, dims: &[u64]) -> Self {
        TensorSpec {
            name,
            dims: dims.to_vec(),
            init: Init::Uniform {
                std: 1.0 / (dims[0] as f32).sqrt(),
            },
            keep_f32: false,
        }
    }

    /// A matrix kept in F32 (routers, 1-D gate rows).
    fn weight_f32(name: String, dims: &[u64]) -> Self {
        TensorSpec {
            keep_f32: true,
            ..TensorSpec::weight(name, dims)
        }
    }

    /// A bias (or a stack of them), F32.
    fn bias(name: String, dims: &[u64], std: f32) -> Self {
        TensorSpec {
            name,
            dims: dims.to_vec(),
            init: Init::Uniform { std },
            keep_f32: true,
        }
    }

    /// Number of values.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

fn blk(l: u64, role: &str) -> String {
    format!("blk.{l}.{role}.weight")
}

fn blk_bias(l: u64, role: &str) -> String {
    format!("blk.{l}.{role}.bias")
}

/// The tensors of the model `cfg` with a vocabulary of `n_vocab` tokens, in
/// file order: `token_embd`, the layers, `output_norm`, `output`.
pub fn tensor_plan(cfg: &SynthConfig, n_vocab: u64) -> Vec<TensorSpec> {
    let spec = cfg.arch.spec();
    let mut out = vec![TensorSpec::weight(
        "token_embd.weight".into(),
        &[cfg.n_embd, n_vocab],
    )];
    for l in 0..cfg.n_layer {
        match spec.attention {
            Attention::Standard => attention_block(&mut out, cfg, &spec, l),
            Attention::Mla => mla_block(&mut out, cfg, l),
        }
        ffn_block(&mut out, cfg, &spec, l);
    }
    out.push(TensorSpec::norm("output_norm.weight".into(), cfg.n_embd));
    if !output_is_tied(cfg, &spec) {
        out.push(TensorSpec::weight(
            "output.weight".into(),
            &[cfg.n_embd, n_vocab],
        ));
    }
    out
}

/// Whether the model has no `output.weight` (the head reuses `token_embd`).
pub(crate) fn output_is_tied(cfg: &SynthConfig, spec: &ArchSpec) -> bool {
    cfg.tie_embeddings && spec.output != OutputHead::Required
}

fn attention_block(out: &mut Vec<TensorSpec>, cfg: &SynthConfig, spec: &ArchSpec, l: u64) {
    let n_q = cfg.n_head * cfg.head_dim;
    let n_kv = cfg.n_head_kv * cfg.head_dim;
    out.push(TensorSpec::norm(blk(l, "attn_norm"), cfg.n_embd));
    out.push(TensorSpec::weight(blk(l, "attn_q"), &[cfg.n_embd, n_q]));
    out.push(TensorSpec::weight(blk(l, "attn_k"), &[cfg.n_embd, n_kv]));
    out.push(TensorSpec::weight(blk(l, "attn_v"), &[cfg.n_embd, n_kv]));
    if spec.qkv_bias {
        out.push(TensorSpec::bias(blk_bias(l, "attn_q"), &[n_q], BIAS_STD));
        out.push(TensorSpec::bias(blk_bias(l, "attn_k"), &[n_kv], BIAS_STD));
        out.push(TensorSpec::bias(blk_bias(l, "attn_v"), &[n_kv], BIAS_STD));
    }
    out.push(TensorSpec::weight(
        blk(l, "attn_output"),
        &[n_q, cfg.n_embd],
    ));
    if spec.out_bias {
        out.push(TensorSpec::bias(
            blk_bias(l, "attn_output"),
            &[cfg.n_embd],
            BIAS_STD,
        ));
    }
    if spec.attn_sinks {
        out.push(TensorSpec::bias(blk(l, "attn_sinks"), &[cfg.n_head], 1.0));
    }
    let qk = match spec.qk_norm {
        QkNorm::None => None,
        QkNorm::PerHead => Some((cfg.head_dim, cfg.head_dim)),
        QkNorm::Full => Some((n_q, n_kv)),
    };
    if let Some((q, k)) = qk {
        out.push(TensorSpec::norm(blk(l, "attn_q_norm"), q));
        out.push(TensorSpec::norm(blk(l, "attn_k_norm"), k));
    }
    if spec.post_norms {
        out.push(TensorSpec::norm(blk(l, "post_attention_norm"), cfg.n_embd));
    }
}

/// DeepSeek's multi-head latent attention, split as `convert_hf_to_gguf.py`
/// writes it.
fn mla_block(out: &mut Vec<TensorSpec>, cfg: &SynthConfig, l: u64) {
    let (hd, rot, hd_v) = (cfg.head_dim, cfg.rot_dims(), cfg.value_dim());
    let (q_lora, kv_lora) = (cfg.q_lora_rank, cfg.kv_lora_rank);
    out.push(TensorSpec::norm(blk(l, "attn_norm"), cfg.n_embd));
    if q_lora > 0 {
        out.push(TensorSpec::weight(
            blk(l, "attn_q_a"),
            &[cfg.n_embd, q_lora],
        ));
        out.push(TensorSpec::norm(blk(l, "attn_q_a_norm"), q_lora));
        out.push(TensorSpec::weight(
            blk(l, "attn_q_b"),
            &[q_lora, cfg.n_head * hd],
        ));
    } else {
        out.push(TensorSpec::weight(
            blk(l, "attn_q"),
            &[cfg.n_embd, cfg.n_head * hd],
        ));
    }
    out.push(TensorSpec::weight(
        blk(l, "attn_kv_a_mqa"),
        &[cfg.n_embd, kv_lora + rot],
    ));
    out.push(TensorSpec::norm(blk(l, "attn_kv_a_norm"), kv_lora));
    out.push(TensorSpec::weight(
        blk(l, "attn_k_b"),
        &[hd - rot, kv_lora, cfg.n_head],
    ));
    out.push(TensorSpec::weight(
        blk(l, "attn_v_b"),
        &[kv_lora, hd_v, cfg.n_head],
    ));
    out.push(TensorSpec::weight(
        blk(l, "attn_output"),
        &[cfg.n_head * hd_v, cfg.n_embd],
    ));
}

/// `ffn_gate`, `ffn_up`, `ffn_down` of width `n_ff` (`suffix` "" for a
/// dense FFN, "_shexp" for a shared expert).
fn swiglu(out: &mut Vec<TensorSpec>, cfg: &SynthConfig, l: u64, suffix: &str, n_ff: u64) {
    out.push(TensorSpec::weight(
        blk(l, &format!("ffn_gate{suffix}")),
        &[cfg.n_embd, n_ff],
    ));
    out.push(TensorSpec::weight(
        blk(l, &format!("ffn_up{suffix}")),
        &[cfg.n_embd, n_ff],
    ));
    out.push(TensorSpec::weight(
        blk(l, &format!("ffn_down{suffix}")),
        &[n_ff, cfg.n_embd],
    ));
}

fn ffn_block(out: &mut Vec<TensorSpec>, cfg: &SynthConfig, spec: &ArchSpec, l: u64) {
    out.push(TensorSpec::norm(blk(l, spec.ffn_norm), cfg.n_embd));
    if cfg.is_moe_layer(l) {
        moe_block(out, cfg, spec, l);
    } else {
        swiglu(out, cfg, l, "", cfg.n_ff);
    }
    if spec.post_norms {
        out.push(TensorSpec::norm(blk(l, "post_ffw_norm"), cfg.n_embd));
    }
}

fn moe_block(out: &mut Vec<TensorSpec>, cfg: &SynthConfig, spec: &ArchSpec, l: u64) {
    let (e, f) = (cfg.n_expert, cfg.n_ff_exp);
    out.push(TensorSpec::weight_f32(
        blk(l, "ffn_gate_inp"),
        &[cfg.n_embd, e],
    ));
    if spec.moe_biases {
        out.push(TensorSpec::bias(
            blk_bias(l, "ffn_gate_inp"),
            &[e],
            BIAS_STD,
        ));
    }
    if cfg.exp_probs_b {
        out.push(TensorSpec::bias(blk_bias(l, "exp_probs_b"), &[e], BIAS_STD));
    }
    let gate_up_std = cfg.exp_gate_up_scale / (cfg.n_embd as f32).sqrt();
    if cfg.fused_gate_up {
        out.push(TensorSpec {
            init: Init::FusedGateUp {
                std: gate_up_std,
                n_expert: e,
            },
            ..TensorSpec::weight(blk(l, "ffn_gate_up_exps"), &[cfg.n_embd, 2 * f, e])
        });
    } else {
        for role in ["ffn_gate_exps", "ffn_up_exps"] {
            let mut t = TensorSpec::weight(blk(l, role), &[cfg.n_embd, f, e]);
            if cfg.exp_gate_up_scale != 1.0 {
                t.init = Init::Uniform { std: gate_up_std };
            }
            out.push(t);
        }
    }
    out.push(TensorSpec::weight(
        blk(l, "ffn_down_exps"),
        &[f, cfg.n_embd, e],
    ));
    if spec.moe_biases {
        out.push(TensorSpec::bias(
            blk_bias(l, "ffn_gate_exps"),
            &[f, e],
            BIAS_STD,
        ));
        out.push(TensorSpec::bias(
            blk_bias(l, "ffn_up_exps"),
            &[f, e],
            BIAS_STD,
        ));
        out.push(TensorSpec::bias(
            blk_bias(l, "ffn_down_exps"),
            &[cfg.n_embd, e],
            BIAS_STD,
        ));
    }
    if spec.shared_expert == SharedExpert::Gated {
        out.push(TensorSpec::weight_f32(
            blk(l, "ffn_gate_inp_shexp"),
            &[cfg.n_embd],
        ));
    }
    if spec.shared_expert != SharedExpert::None {
        swiglu(out, cfg, l, "_shexp", cfg.n_expert_shared * f);
    }
}
