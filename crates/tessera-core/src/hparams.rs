//! Hyperparameters of a model, read once from GGUF metadata into a typed
//! struct. A missing required key or a value out of range is an error that
//! names the key; optional keys take llama.cpp's defaults.

use tessera_gguf::{Metadata, Value};

use crate::error::{CoreError, Result};

/// How rotary position frequencies are scaled beyond the training context.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RopeScaling {
    /// No scaling.
    None,
    /// Positions divided by the factor.
    Linear,
    /// YaRN (NTK-by-parts with attention temperature).
    Yarn,
}

/// The hyperparameters every supported architecture reads.
#[derive(Clone, Debug)]
pub struct HParams {
    /// `general.architecture`.
    pub arch: String,
    /// Vocabulary size (rows of the embedding table).
    pub n_vocab: usize,
    /// Context length the model was trained with.
    pub n_ctx_train: usize,
    /// Width of the residual stream.
    pub n_embd: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_head`).
    pub n_head_kv: usize,
    /// Dimension of one key (and query) head.
    pub head_dim_k: usize,
    /// Dimension of one value head.
    pub head_dim_v: usize,
    /// Hidden width of the feed-forward network.
    pub n_ff: usize,
    /// Dimensions rotated by RoPE in each head (partial rotary when < head_dim_k).
    pub n_rot: usize,
    /// Epsilon of RMS norms.
    pub rms_eps: f32,
    /// Epsilon of layer norms.
    pub norm_eps: f32,
    /// RoPE base frequency.
    pub rope_freq_base: f32,
    /// RoPE base frequency of sliding-window layers (Gemma 3: 10 000).
    pub rope_freq_base_swa: f32,
    /// RoPE frequency scale (1 / scaling factor).
    pub rope_freq_scale: f32,
    /// RoPE scaling kind.
    pub rope_scaling: RopeScaling,
    /// Context the RoPE scaling refers to.
    pub n_ctx_orig: usize,
    /// Sliding-window size, when the model has sliding-window layers.
    pub n_swa: Option<usize>,
    /// Per layer: does it use the sliding window?
    pub swa_layers: Vec<bool>,
    /// Soft cap of the final logits (0 = none).
    pub final_logit_softcap: f32,
    /// Soft cap of attention scores (0 = none).
    pub attn_logit_softcap: f32,
    /// Experts per MoE layer (0 = dense).
    pub n_expert: usize,
    /// Experts each token uses.
    pub n_expert_used: usize,
    /// Width of one routed expert (`expert_feed_forward_length`, else `n_ff`).
    pub n_ff_exp: usize,
    /// Width of the shared experts (`expert_shared_feed_forward_length`,
    /// else `n_ff_exp × n_expert_shared`).
    pub n_ff_shexp: usize,
    /// Shared experts per MoE layer (`expert_shared_count`).
    pub n_expert_shared: usize,
    /// Leading layers with a dense FFN (`leading_dense_block_count`).
    pub n_layer_dense_lead: usize,
    /// Routed weights scaled by this (`expert_weights_scale`; 0 = none).
    pub expert_weights_scale: f32,
    /// Routed weights normalised to sum 1 (`expert_weights_norm`), if the
    /// file says; architectures with a fixed choice ignore it.
    pub expert_weights_norm: Option<bool>,
    /// Router gating (`expert_gating_func`), if the file says.
    pub expert_gating: Option<Gating>,
    /// Expert groups (`expert_group_count`; 0 or 1 = no grouping).
    pub n_expert_groups: usize,
    /// Groups each token draws from (`expert_group_used_count`).
    pub n_group_used: usize,
    /// M-RoPE sections (`rope.dimension_sections`; all 0 when absent).
    pub rope_sections: [u32; 4],
    /// DeepSeek's multi-head latent attention, when the file has it.
    pub mla: Option<Mla>,
    /// `rope.scaling.yarn_log_multiplier` (0 = none).
    pub rope_yarn_log_mul: f32,
    /// `rope.scaling.attn_factor` (default 1).
    pub rope_attn_factor: f32,
}

/// Multi-head latent attention sizes (DeepSeek-V2/V3, GLM-4.7-Flash).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mla {
    /// Rank of the query compression (`attention.q_lora_rank`; 0 = none).
    pub q_lora_rank: usize,
    /// Rank of the key/value compression (`attention.kv_lora_rank`).
    pub kv_lora_rank: usize,
    /// A query/key head before absorption (`attention.key_length_mla`):
    /// the rotated part (`n_rot`) plus the rest.
    pub head_dim_k: usize,
    /// A value head after `attn_v_b` (`attention.value_length_mla`).
    pub head_dim_v: usize,
}

/// How the router turns logits into expert probabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gating {
    /// Softmax over the experts (`expert_gating_func` 1).
    Softmax,
    /// Sigmoid of each logit (`expert_gating_func` 2).
    Sigmoid,
    /// The raw logits choose; the chosen ones' softmax weights them
    /// (`expert_gating_func` 3, gpt-oss).
    SoftmaxWeight,
}

fn bad(key: &str, reason: impl Into<String>) -> CoreError {
    CoreError::HParam {
        key: key.into(),
        reason: reason.into(),
    }
}

/// Reads `{arch}.*` keys with defaults and range checks.
struct Keys<'a> {
    meta: &'a Metadata,
    arch: &'a str,
}

impl Keys<'_> {
    fn key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.arch)
    }

    fn opt_u64(&self, suffix: &str) -> Result<Option<u64>> {
        let key = self.key(suffix);
        match self.meta.get(&key) {
            None => Ok(None),
            Some(Value::Array(_)) => Err(bad(&key, "per-layer values are not supported")),
            Some(_) => Ok(Some(self.meta.get_u64(&key)?)),
        }
    }

    /// A required count in `1..=max`.
    fn count(&self, suffix: &str, max: u64) -> Result<usize> {
        let key = self.key(suffix);
        let v = self
            .opt_u64(suffix)?
            .ok_or(tessera_gguf::GgufError::MissingKey { key: key.clone() })?;
        self.check(&key, v, max)
    }

    fn count_or(&self, suffix: &str, default: usize, max: u64) -> Result<usize> {
        match self.opt_u64(suffix)? {
            Some(v) => self.check(&self.key(suffix), v, max),
            None => Ok(default),
        }
    }

    fn check(&self, key: &str, v: u64, max: u64) -> Result<usize> {
        if v == 0 || v > max {
            return Err(bad(key, format!("{v} is outside 1..={max}")));
        }
        Ok(v as usize)
    }

    fn f32_or(&self, suffix: &str, default: f32) -> Result<f32> {
        let key = self.key(suffix);
        if self.meta.get(&key).is_none() {
            return Ok(default);
        }
        let v = self.meta.get_f64(&key)? as f32;
        if !v.is_finite() {
            return Err(bad(&key, format!("{v} is not finite")));
        }
        Ok(v)
    }
}

/// The MLA sizes, when `attention.kv_lora_rank` and
/// `attention.key_length_mla` are present (absorbed MLA).
fn mla(k: &Keys) -> Result<Option<Mla>> {
    let (Some(kv), Some(hk)) = (
        k.opt_u64("attention.kv_lora_rank")?,
        k.opt_u64("attention.key_length_mla")?,
    ) else {
        return Ok(None);
    };
    let kv_lora_rank = k.check(&k.key("attention.kv_lora_rank"), kv, MAX_DIM)?;
    let head_dim_k = k.check(&k.key("attention.key_length_mla"), hk, MAX_DIM)?;
    Ok(Some(Mla {
        q_lora_rank: k.opt_u64("attention.q_lora_rank")?.unwrap_or(0) as usize,
        kv_lora_rank,
        head_dim_k,
        head_dim_v: k.count_or("attention.value_length_mla", head_dim_k, MAX_DIM)?,
    }))
}

/// `rope.dimension_sections`: up to 4 integers (zeros when absent).
fn rope_sections(k: &Keys) -> Result<[u32; 4]> {
    let key = k.key("rope.dimension_sections");
    let mut out = [0u32; 4];
    let Some(v) = k.meta.get(&key) else {
        return Ok(out);
    };
    let Value::Array(a) = v else {
        return Err(bad(&key, "not an array"));
    };
    let vals: Vec<i64> = match a {
        tessera_gguf::Array::I32(v) => v.iter().map(|&x| i64::from(x)).collect(),
        tessera_gguf::Array::U32(v) => v.iter().map(|&x| i64::from(x)).collect(),
        other => {
            return Err(bad(
                &key,
                format!("{} is not an integer array", other.type_name()),
            ))
        }
    };
    for (o, &x) in out.iter_mut().zip(&vals) {
        *o = u32::try_from(x).map_err(|_| bad(&key, format!("{x} is out of range")))?;
    }
    Ok(out)
}

/// Limits that keep a hostile file from asking for absurd allocations.
const MAX_DIM: u64 = 1 << 20;
const MAX_LAYERS: u64 = 4096;
const MAX_HEADS: u64 = 4096;
const MAX_EXPERTS: u64 = 4096;

impl HParams {
    /// Reads the hyperparameters of `meta`'s architecture.
    pub fn from_metadata(meta: &Metadata) -> Result<HParams> {
        let arch = meta.architecture()?.to_string();
        let k = Keys { meta, arch: &arch };
        let n_embd = k.count("embedding_length", MAX_DIM)?;
        // Multi-token-prediction layers (GLM-4.5's `nextn`) are stored
        // after the trunk and counted in `block_count`; only the trunk runs.
        let n_layer_all = k.count("block_count", MAX_LAYERS)?;
        let n_nextn = k.opt_u64("nextn_predict_layers")?.unwrap_or(0) as usize;
        if n_nextn >= n_layer_all {
            return Err(bad(
                &k.key("nextn_predict_layers"),
                format!("{n_nextn} of {n_layer_all} layers"),
            ));
        }
        let n_layer = n_layer_all - n_nextn;
        let n_head = k.count("attention.head_count", MAX_HEADS)?;
        let n_head_kv = k.count_or("attention.head_count_kv", n_head, MAX_HEADS)?;
        if !n_head.is_multiple_of(n_head_kv) {
            return Err(bad(
                &k.key("attention.head_count_kv"),
                format!("{n_head} query heads are not a multiple of {n_head_kv} kv heads"),
            ));
        }
        let head_dim_k = k.count_or("attention.key_length", n_embd / n_head, MAX_DIM)?;
        let head_dim_v = k.count_or("attention.value_length", head_dim_k, MAX_DIM)?;
        let n_rot = k.count_or("rope.dimension_count", head_dim_k, MAX_DIM)?;
        if n_rot > head_dim_k || n_rot % 2 != 0 {
            return Err(bad(
                &k.key("rope.dimension_count"),
                format!("{n_rot} is odd or exceeds the head dimension {head_dim_k}"),
            ));
        }
        let n_vocab = match k.opt_u64("vocab_size")? {
            Some(v) => k.check(&k.key("vocab_size"), v, 1 << 24)?,
            None => meta
                .get_array("tokenizer.ggml.tokens")
                .map_err(|_| {
                    bad(
                        "tokenizer.ggml.tokens",
                        "missing: cannot tell the vocabulary size",
                    )
                })?
                .len(),
        };
        let rope_scaling = match meta
            .get(&k.key("rope.scaling.type"))
            .and_then(Value::as_str)
        {
            None | Some("none") => RopeScaling::None,
            Some("linear") => RopeScaling::Linear,
            Some("yarn") => RopeScaling::Yarn,
            Some(other) => {
                return Err(bad(
                    &k.key("rope.scaling.type"),
                    format!("`{other}` is not supported (none, linear, yarn)"),
                ))
            }
        };
        let factor = k.f32_or("rope.scaling.factor", k.f32_or("rope.scale_linear", 1.0)?)?;
        let rope_freq_scale = if rope_scaling == RopeScaling::None || factor == 0.0 {
            1.0
        } else {
            1.0 / factor
        };
        let n_ctx_train = k.count_or("context_length", 2048, 1 << 26)?;
        let n_swa = match k.opt_u64("attention.sliding_window")? {
            Some(0) | None => None,
            Some(w) => Some(k.check(&k.key("attention.sliding_window"), w, 1 << 26)?),
        };
        let swa_layers = swa_pattern(&k, n_layer, n_swa.is_some())?;
        let n_ff = k.count("feed_forward_length", MAX_DIM * 64)?;
        let n_expert = k.opt_u64("expert_count")?.unwrap_or(0) as usize;
        let n_expert_used = k.opt_u64("expert_used_count")?.unwrap_or(0) as usize;
        if n_expert > MAX_EXPERTS as usize || n_expert_used > n_expert {
            return Err(bad(
                &k.key("expert_used_count"),
                format!("{n_expert_used} of {n_expert} experts (at most {MAX_EXPERTS})"),
            ));
        }
        if n_expert > 0 && n_expert_used == 0 {
            return Err(bad(
                &k.key("expert_used_count"),
                format!("missing or 0 with {n_expert} experts"),
            ));
        }
        let n_ff_exp = k.count_or("expert_feed_forward_length", n_ff, MAX_DIM * 64)?;
        let n_expert_shared = k.opt_u64("expert_shared_count")?.unwrap_or(0) as usize;
        let expert_gating = match k.opt_u64("expert_gating_func")? {
            None | Some(0) => None,
            Some(1) => Some(Gating::Softmax),
            Some(2) => Some(Gating::Sigmoid),
            Some(3) => Some(Gating::SoftmaxWeight),
            Some(v) => {
                return Err(bad(
                    &k.key("expert_gating_func"),
                    format!("{v} is not supported (1 softmax, 2 sigmoid, 3 softmax of the chosen)"),
                ))
            }
        };
        let expert_weights_norm = match meta.get(&k.key("expert_weights_norm")) {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(bad(&k.key("expert_weights_norm"), "not a bool")),
        };
        let n_layer_dense_lead = k.opt_u64("leading_dense_block_count")?.unwrap_or(0) as usize;
        if n_layer_dense_lead > n_layer {
            return Err(bad(
                &k.key("leading_dense_block_count"),
                format!("{n_layer_dense_lead} of {n_layer} layers"),
            ));
        }
        Ok(HParams {
            n_vocab,
            n_ctx_train,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim_k,
            head_dim_v,
            n_ff,
            n_rot,
            rms_eps: k.f32_or("attention.layer_norm_rms_epsilon", 1e-5)?,
            norm_eps: k.f32_or("attention.layer_norm_epsilon", 1e-5)?,
            rope_freq_base: k.f32_or("rope.freq_base", 10_000.0)?,
            rope_freq_base_swa: k.f32_or("rope.freq_base_swa", 10_000.0)?,
            rope_freq_scale,
            rope_scaling,
            n_ctx_orig: k.count_or("rope.scaling.original_context_length", n_ctx_train, 1 << 26)?,
            n_swa,
            swa_layers,
            final_logit_softcap: k.f32_or("final_logit_softcapping", 0.0)?,
            attn_logit_softcap: k.f32_or("attn_logit_softcapping", 0.0)?,
            n_expert,
            n_expert_used,
            n_ff_exp,
            n_ff_shexp: k.count_or(
                "expert_shared_feed_forward_length",
                n_ff_exp * n_expert_shared.max(1),
                MAX_DIM * 64,
            )?,
            n_expert_shared,
            n_layer_dense_lead,
            expert_weights_scale: k.f32_or("expert_weights_scale", 0.0)?,
            expert_weights_norm,
            expert_gating,
            n_expert_groups: k.opt_u64("expert_group_count")?.unwrap_or(0) as usize,
            n_group_used: k.opt_u64("expert_group_used_count")?.unwrap_or(0) as usize,
            rope_sections: rope_sections(&k)?,
            mla: mla(&k)?,
            rope_yarn_log_mul: k.f32_or("rope.scaling.yarn_log_multiplier", 0.0)?,
            rope_attn_factor: k.f32_or("rope.scaling.attn_factor", 1.0)?,
            arch,
        })
    }

    /// Width of the keys of all kv heads of one token.
    pub fn n_embd_k_gqa(&self) -> usize {
        self.head_dim_k * self.n_head_kv
    }

    /// Width of the values of all kv heads of one token.
    pub fn n_embd_v_gqa(&self) -> usize {
        self.head_dim_v * self.n_head_kv
    }

    /// Bytes one token's keys and values take in one layer's F16 cache.
    pub fn kv_bytes_f16(&self) -> u64 {
        2 * (self.n_embd_k_gqa() + self.n_embd_v_gqa()) as u64
    }
}

/// Which layers use the sliding window: llama.cpp's rule (an explicit
/// per-layer array, or a period `n` where every `n`-th layer is global;
/// Gemma 3's default period is 6).
fn swa_pattern(k: &Keys, n_layer: usize, has_swa: bool) -> Result<Vec<bool>> {
    if !has_swa {
        return Ok(vec![false; n_layer]);
    }
    let key = k.key("attention.sliding_window_pattern");
    match k.meta.get(&key) {
        Some(Value::Array(a)) => match a {
            tessera_gguf::Array::Bool(v) if v.len() == n_layer => Ok(v.clone()),
            _ => Err(bad(
                &key,
                format!("expected {n_layer} bools, found {}", a.type_name()),
            )),
        },
        Some(_) => {
            let n = k.meta.get_u64(&key)? as usize;
            Ok((0..n_layer).map(|il| n == 0 || il % n < n - 1).collect())
        }
        None => {
            let n = match k.arch {
                "gemma3" => 6,
                "gpt-oss" => 2,
                _ => 0,
            };
            Ok((0..n_layer).map(|il| n == 0 || il % n < n - 1).collect())
        }
    }
}
