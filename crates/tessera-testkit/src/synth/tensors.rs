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
//! | `blk.{l}.ffn_down_exps.weight` | `[n_ff_exp, n_embd, n_expert]` | weight type |
//! | `blk.{l}.post_ffw_norm.weight` (Gemma 3) | `[n_embd]` | F32 |
//!
//! Norms and the router stay F32 whatever the weight type, as
//! `convert_hf_to_gguf.py` keeps them.
//!
//! Values: a norm is `1 ± 0.1`; a matrix is uniform with standard deviation
//! `1/√n_in`, so activations keep unit scale through every layer and the
//! logits spread by about 1 (greedy decoding is not decided by rounding noise).

use super::arch::{ArchSpec, Ffn, OutputHead, QkNorm};
use super::fill::Init;
use super::SynthConfig;

/// Jitter of norm weights around 1.
const NORM_JITTER: f32 = 0.1;

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

    /// Number of values.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

fn blk(l: u64, role: &str) -> String {
    format!("blk.{l}.{role}.weight")
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
        attention_block(&mut out, cfg, &spec, l);
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
    out.push(TensorSpec::weight(
        blk(l, "attn_output"),
        &[n_q, cfg.n_embd],
    ));
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

fn ffn_block(out: &mut Vec<TensorSpec>, cfg: &SynthConfig, spec: &ArchSpec, l: u64) {
    out.push(TensorSpec::norm(blk(l, "ffn_norm"), cfg.n_embd));
    match spec.ffn {
        Ffn::Dense => {
            out.push(TensorSpec::weight(
                blk(l, "ffn_gate"),
                &[cfg.n_embd, cfg.n_ff],
            ));
            out.push(TensorSpec::weight(
                blk(l, "ffn_up"),
                &[cfg.n_embd, cfg.n_ff],
            ));
            out.push(TensorSpec::weight(
                blk(l, "ffn_down"),
                &[cfg.n_ff, cfg.n_embd],
            ));
        }
        Ffn::Moe => {
            let (e, f) = (cfg.n_expert, cfg.n_ff_exp);
            let mut router = TensorSpec::weight(blk(l, "ffn_gate_inp"), &[cfg.n_embd, e]);
            router.keep_f32 = true;
            out.push(router);
            out.push(TensorSpec::weight(
                blk(l, "ffn_gate_exps"),
                &[cfg.n_embd, f, e],
            ));
            out.push(TensorSpec::weight(
                blk(l, "ffn_up_exps"),
                &[cfg.n_embd, f, e],
            ));
            out.push(TensorSpec::weight(
                blk(l, "ffn_down_exps"),
                &[f, cfg.n_embd, e],
            ));
        }
    }
    if spec.post_norms {
        out.push(TensorSpec::norm(blk(l, "post_ffw_norm"), cfg.n_embd));
    }
}
