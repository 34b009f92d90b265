//! The hyperparameter metadata of a synthetic model: which `{arch}.*` keys
//! it has, steered by the architecture's [`super::ArchSpec`] row, with the
//! names of llama.cpp's `llama-arch.cpp` (`LLM_KV_*`).
//!
//! Keys a row does not use are not written, so the files of the first six
//! architectures are the same bytes as before the MoE fields existed.

use tessera_gguf::Value;

use super::arch::{Attention, ExpertWidthKey, Ffn, SharedExpert, SlidingWindow};
use super::SynthConfig;

/// The hyperparameter keys of `cfg` (without the `{arch}.` prefix), in file order.
pub(super) fn hparams(cfg: &SynthConfig, n_vocab: u64) -> Vec<(&'static str, Value)> {
    let spec = cfg.arch.spec();
    let u = |v: u64| Value::U32(v as u32); // validated to fit
    let moe = spec.ffn == Ffn::Moe;
    let mla = spec.attention == Attention::Mla;
    let ff_len = match (moe, spec.expert_width_key) {
        (true, ExpertWidthKey::FeedForwardLength) => cfg.n_ff_exp,
        _ => cfg.n_ff,
    };
    // MLA caches the compressed KV (+ the shared RoPE key) as one head.
    let (key_length, value_length) = if mla {
        (cfg.kv_lora_rank + cfg.rot_dims(), cfg.kv_lora_rank)
    } else {
        (cfg.head_dim, cfg.head_dim)
    };
    let mut kv = vec![
        ("vocab_size", u(n_vocab)),
        ("context_length", u(cfg.context_length)),
        ("embedding_length", u(cfg.n_embd)),
        ("block_count", u(cfg.n_layer)),
        ("feed_forward_length", u(ff_len)),
        ("attention.head_count", u(cfg.n_head)),
        ("attention.head_count_kv", u(cfg.n_head_kv)),
        ("attention.key_length", u(key_length)),
        ("attention.value_length", u(value_length)),
        ("attention.layer_norm_rms_epsilon", Value::F32(cfg.rms_eps)),
        ("rope.dimension_count", u(cfg.rot_dims())),
        ("rope.freq_base", Value::F32(cfg.rope_freq_base)),
    ];
    if mla {
        kv.extend([
            ("attention.key_length_mla", u(cfg.head_dim)),
            ("attention.value_length_mla", u(cfg.value_dim())),
            ("attention.q_lora_rank", u(cfg.q_lora_rank)),
            ("attention.kv_lora_rank", u(cfg.kv_lora_rank)),
        ]);
    }
    if cfg.rope_yarn_factor > 0.0 {
        kv.extend([
            ("rope.scaling.type", Value::String("yarn".into())),
            ("rope.scaling.factor", Value::F32(cfg.rope_yarn_factor)),
            (
                "rope.scaling.original_context_length",
                u(cfg.rope_yarn_orig_ctx),
            ),
        ]);
        if cfg.rope_yarn_log_mul > 0.0 {
            kv.push((
                "rope.scaling.yarn_log_multiplier",
                Value::F32(cfg.rope_yarn_log_mul),
            ));
        }
    }
    if moe {
        kv.push(("expert_count", u(cfg.n_expert)));
        kv.push(("expert_used_count", u(cfg.n_expert_used)));
        if spec.expert_width_key == ExpertWidthKey::ExpertFeedForwardLength {
            kv.push(("expert_feed_forward_length", u(cfg.n_ff_exp)));
        }
        match spec.shared_expert {
            SharedExpert::None => {}
            SharedExpert::Gated => kv.push((
                "expert_shared_feed_forward_length",
                u(cfg.n_expert_shared * cfg.n_ff_exp),
            )),
            SharedExpert::Counted => {
                kv.push(("expert_shared_count", u(cfg.n_expert_shared)));
                kv.push(("leading_dense_block_count", u(cfg.n_layer_dense_lead)));
                if let Some(g) = cfg.gating {
                    kv.push(("expert_gating_func", Value::U32(g.id())));
                }
                if let Some(scale) = cfg.expert_weights_scale {
                    kv.push(("expert_weights_scale", Value::F32(scale)));
                }
                if cfg.expert_weights_norm {
                    kv.push(("expert_weights_norm", Value::Bool(true)));
                }
            }
        }
        if cfg.n_expert_groups > 0 {
            kv.push(("expert_group_count", u(cfg.n_expert_groups)));
            kv.push(("expert_group_used_count", u(cfg.n_group_used)));
        }
    }
    match spec.sliding_window {
        SlidingWindow::None => {}
        SlidingWindow::Pattern => {
            kv.push(("attention.sliding_window", u(cfg.sliding_window)));
            if let Some(p) = cfg.swa_pattern {
                kv.push(("attention.sliding_window_pattern", Value::U32(p)));
            }
        }
        SlidingWindow::Alternating => {
            kv.push(("attention.sliding_window", u(cfg.sliding_window)));
        }
    }
    kv
}
