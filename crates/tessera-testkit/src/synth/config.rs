//! [`SynthConfig`]: everything that determines a synthetic model, its
//! per-architecture defaults and the checks that llama.cpp would load it.

use super::arch::{
    Arch, Attention, ExpertWidthKey, Ffn, Gating, OutputHead, Presence, QkNorm, SharedExpert,
    SlidingWindow,
};
use super::{tensor_plan, SynthError, VocabSource, WeightType, MAX_FILE_BYTES};

/// Everything that determines a synthetic model.
///
/// [`SynthConfig::new`] gives a tiny model (2 layers, `n_embd` 64, 4 heads)
/// with the architecture's defaults; change fields as needed. The expert
/// fields are ignored by dense architectures, the MLA fields by all but
/// DeepSeek 2, and so on: a field only reaches the file where the
/// architecture has the key or tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthConfig {
    /// The architecture.
    pub arch: Arch,
    /// Seed of every weight value.
    pub seed: u64,
    /// Number of layers (`block_count`).
    pub n_layer: u64,
    /// Width of the residual stream (`embedding_length`).
    pub n_embd: u64,
    /// Query heads (`attention.head_count`).
    pub n_head: u64,
    /// Key/value heads (`attention.head_count_kv`); divides `n_head`.
    pub n_head_kv: u64,
    /// Size of one head (`attention.key_length` = `value_length`); even. For
    /// MLA: the q/k head size, no-RoPE part + RoPE part (`key_length_mla`).
    pub head_dim: u64,
    /// Rotated dimensions per head (`rope.dimension_count`); `None` is
    /// `head_dim`. For MLA: the RoPE part of a q/k head.
    pub n_rot: Option<u64>,
    /// For MLA: the value head size (`value_length_mla`); `None` is `head_dim`.
    pub head_dim_v: Option<u64>,
    /// For MLA: the compressed KV width (`attention.kv_lora_rank`).
    pub kv_lora_rank: u64,
    /// For MLA: the q-LoRA width (`attention.q_lora_rank`); 0 projects q
    /// directly with `attn_q` (DeepSeek-V2-Lite).
    pub q_lora_rank: u64,
    /// Width of a dense FFN (`feed_forward_length`).
    pub n_ff: u64,
    /// Experts per MoE layer (`expert_count`).
    pub n_expert: u64,
    /// Experts used per token (`expert_used_count`).
    pub n_expert_used: u64,
    /// Width of one expert (`expert_feed_forward_length` for most MoE
    /// architectures, `feed_forward_length` for Mixtral and OLMoE).
    pub n_ff_exp: u64,
    /// Multiplies the standard deviation of `ffn_gate_exps` and `ffn_up_exps`
    /// (default 1): values above 1 make expert activations large enough to
    /// reach gpt-oss's SwiGLU clamp (±7).
    pub exp_gate_up_scale: f32,
    /// Write the experts' gate and up projections as one fused
    /// `ffn_gate_up_exps` of `[n_embd, 2·n_ff_exp, n_expert]` (per expert the
    /// `n_ff_exp` gate rows, then the `n_ff_exp` up rows) instead of
    /// `ffn_gate_exps` + `ffn_up_exps`. Its values are exactly those of the
    /// two split tensors, so the fused model computes the same function.
    /// Only where llama.cpp's loader takes it (DeepSeek 2); default false.
    pub fused_gate_up: bool,
    /// Shared experts: the shared FFN is `n_expert_shared·n_ff_exp` wide
    /// (`expert_shared_count`, or `expert_shared_feed_forward_length` for
    /// Qwen2 MoE).
    pub n_expert_shared: u64,
    /// Leading layers with a dense FFN of width `n_ff`
    /// (`leading_dense_block_count`; GLM-4.5, DeepSeek).
    pub n_layer_dense_lead: u64,
    /// `expert_gating_func` (GLM-4.5, DeepSeek); `None` leaves it out.
    pub gating: Option<Gating>,
    /// `expert_weights_norm`: divide the top-k weights by their sum (written
    /// when true; GLM-4.5, DeepSeek).
    pub expert_weights_norm: bool,
    /// `expert_weights_scale`, the routed scaling factor (GLM-4.5, DeepSeek).
    pub expert_weights_scale: Option<f32>,
    /// `exp_probs_b.bias` in MoE layers, the selection bias of sigmoid
    /// routers (required by GLM-4.5, optional for DeepSeek).
    pub exp_probs_b: bool,
    /// `expert_group_count`: experts are chosen within the best groups; 0
    /// leaves the key out (no groups).
    pub n_expert_groups: u64,
    /// `expert_group_used_count`: groups kept per token.
    pub n_group_used: u64,
    /// Training context length (`context_length`).
    pub context_length: u64,
    /// Storage of the weight matrices.
    pub weight_type: WeightType,
    /// The tokenizer; the vocabulary size follows from it.
    pub vocab: VocabSource,
    /// Omit `output.weight` so the head reuses `token_embd` (ignored by
    /// architectures that require an output head).
    pub tie_embeddings: bool,
    /// `attention.layer_norm_rms_epsilon`.
    pub rms_eps: f32,
    /// `rope.freq_base`.
    pub rope_freq_base: f32,
    /// `rope.scaling.factor` of YaRN scaling; 0 writes no `rope.scaling.*`
    /// keys.
    pub rope_yarn_factor: f32,
    /// `rope.scaling.original_context_length` (with YaRN).
    pub rope_yarn_orig_ctx: u64,
    /// `rope.scaling.yarn_log_multiplier` (with YaRN; 0 leaves it out).
    pub rope_yarn_log_mul: f32,
    /// `attention.sliding_window` (Gemma 3, gpt-oss).
    pub sliding_window: u64,
    /// `attention.sliding_window_pattern` (Gemma 3 only): every n-th layer
    /// attends globally, the others use the window. `None` leaves the key
    /// out (llama.cpp then uses 6, which with 2 layers makes both local).
    pub swa_pattern: Option<u32>,
}

impl SynthConfig {
    /// A tiny model of `arch` with seed 0, F32 weights and the built-in vocabulary.
    pub fn new(arch: Arch) -> Self {
        let spec = arch.spec();
        let yarn = spec.yarn;
        SynthConfig {
            arch,
            seed: 0,
            n_layer: 2,
            n_embd: 64,
            n_head: 4,
            n_head_kv: spec.n_head_kv,
            head_dim: spec.head_dim,
            n_rot: spec.n_rot,
            head_dim_v: spec.head_dim_v,
            kv_lora_rank: spec.kv_lora_rank,
            q_lora_rank: 0,
            n_ff: 128,
            n_expert: 4,
            n_expert_used: 2,
            n_ff_exp: 32,
            exp_gate_up_scale: 1.0,
            fused_gate_up: false,
            n_expert_shared: spec.n_expert_shared,
            n_layer_dense_lead: spec.n_layer_dense_lead,
            gating: spec.gating,
            expert_weights_norm: spec.expert_weights_norm,
            expert_weights_scale: spec.expert_weights_scale,
            exp_probs_b: spec.exp_probs_b == Presence::Required,
            n_expert_groups: 0,
            n_group_used: 0,
            context_length: 256,
            weight_type: WeightType::F32,
            vocab: VocabSource::Builtin,
            tie_embeddings: matches!(spec.output, OutputHead::Optional { tied: true }),
            rms_eps: spec.rms_eps,
            rope_freq_base: spec.rope_freq_base,
            rope_yarn_factor: yarn.map_or(0.0, |y| y.factor),
            rope_yarn_orig_ctx: yarn.map_or(0, |y| y.original_context),
            rope_yarn_log_mul: yarn.map_or(0.0, |y| y.log_mul),
            sliding_window: 16,
            swa_pattern: Some(2),
        }
    }

    /// A conventional file name: `synth-{arch}-s{seed}-{f32|f16}.gguf`.
    pub fn file_name(&self) -> String {
        let t = match self.weight_type {
            WeightType::F32 => "f32",
            WeightType::F16 => "f16",
        };
        format!("synth-{}-s{}-{t}.gguf", self.arch, self.seed)
    }

    /// Rotated dimensions per head.
    pub fn rot_dims(&self) -> u64 {
        self.n_rot.unwrap_or(self.head_dim)
    }

    /// Value head size (MLA).
    pub fn value_dim(&self) -> u64 {
        self.head_dim_v.unwrap_or(self.head_dim)
    }

    /// Whether layer `l` has an MoE FFN.
    pub fn is_moe_layer(&self, l: u64) -> bool {
        self.arch.spec().ffn == Ffn::Moe && l >= self.n_layer_dense_lead
    }

    /// Checks that llama.cpp would accept the model, for `n_vocab` tokens.
    pub fn validate(&self, n_vocab: u64) -> Result<(), SynthError> {
        let bad = |msg: String| Err(SynthError::Config(msg));
        let spec = self.arch.spec();
        let moe = spec.ffn == Ffn::Moe;
        let mla = spec.attention == Attention::Mla;
        let mut sizes = vec![
            ("n_layer", self.n_layer),
            ("n_embd", self.n_embd),
            ("n_head", self.n_head),
            ("n_head_kv", self.n_head_kv),
            ("head_dim", self.head_dim),
            ("n_rot", self.rot_dims()),
            ("context_length", self.context_length),
            ("n_vocab", n_vocab),
        ];
        if moe {
            sizes.extend([
                ("n_expert", self.n_expert),
                ("n_expert_used", self.n_expert_used),
                ("n_ff_exp", self.n_ff_exp),
            ]);
        }
        if mla {
            sizes.extend([
                ("head_dim_v", self.value_dim()),
                ("kv_lora_rank", self.kv_lora_rank),
            ]);
        }
        if spec.shared_expert != SharedExpert::None {
            sizes.push(("n_expert_shared", self.n_expert_shared));
        }
        if !moe
            || spec.expert_width_key == ExpertWidthKey::ExpertFeedForwardLength
            || self.n_layer_dense_lead > 0
        {
            sizes.push(("n_ff", self.n_ff));
        }
        if spec.sliding_window != SlidingWindow::None {
            sizes.push(("sliding_window", self.sliding_window));
        }
        for (name, v) in sizes {
            if v == 0 || v > u64::from(u32::MAX) {
                return bad(format!("{name} is {v}, must be 1 to {}", u32::MAX));
            }
        }
        // LLAMA_MAX_LAYERS and LLAMA_MAX_EXPERTS of llama-hparams.h (asserted, not reported).
        if self.n_layer > 512 {
            return bad(format!("n_layer {} exceeds llama.cpp's 512", self.n_layer));
        }
        if moe && self.n_expert > 1024 {
            return bad(format!(
                "n_expert {} exceeds llama.cpp's 1024",
                self.n_expert
            ));
        }
        if !self.n_head.is_multiple_of(self.n_head_kv) {
            return bad(format!(
                "n_head {} is not a multiple of n_head_kv {}",
                self.n_head, self.n_head_kv
            ));
        }
        if !self.head_dim.is_multiple_of(2) || !self.rot_dims().is_multiple_of(2) {
            return bad(format!(
                "head_dim {} / n_rot {} is odd; RoPE rotates pairs",
                self.head_dim,
                self.rot_dims()
            ));
        }
        if self.rot_dims() > self.head_dim || (mla && self.rot_dims() == self.head_dim) {
            return bad(format!(
                "n_rot {} must be at most head_dim {} (less for MLA: the q/k head is no-RoPE + RoPE)",
                self.rot_dims(),
                self.head_dim
            ));
        }
        if mla && self.n_head_kv != 1 {
            return bad(format!(
                "{} (MLA) stores one compressed KV head: n_head_kv must be 1, got {}",
                self.arch, self.n_head_kv
            ));
        }
        if moe && self.n_expert_used > self.n_expert {
            return bad(format!(
                "n_expert_used {} exceeds n_expert {}",
                self.n_expert_used, self.n_expert
            ));
        }
        if moe && self.n_layer_dense_lead > 0 && spec.shared_expert != SharedExpert::Counted {
            return bad(format!(
                "{} has no leading dense layers (n_layer_dense_lead {})",
                self.arch, self.n_layer_dense_lead
            ));
        }
        if self.fused_gate_up && (!moe || !spec.fused_gate_up) {
            return bad(format!(
                "{}: llama.cpp does not load a fused ffn_gate_up_exps for this architecture",
                self.arch
            ));
        }
        if self.exp_probs_b && (!moe || spec.exp_probs_b == Presence::Never) {
            return bad(format!("{} has no exp_probs_b", self.arch));
        }
        if !self.exp_probs_b && moe && spec.exp_probs_b == Presence::Required {
            return bad(format!("{} requires exp_probs_b", self.arch));
        }
        if self.n_expert_groups > 0 {
            let g = self.n_expert_groups;
            if !moe
                || g >= self.n_expert
                || !self.n_expert.is_multiple_of(g)
                || self.n_expert / g < 2
                || (g > 1 && (self.n_group_used == 0 || self.n_group_used >= g))
            {
                return bad(format!(
                    "expert groups: n_expert {} must be a multiple of n_expert_groups {g} (≥ 2 experts \
                     per group, fewer groups than experts), 0 < n_group_used {} < n_expert_groups",
                    self.n_expert, self.n_group_used
                ));
            }
        }
        if spec.qk_norm == QkNorm::Full
            && (self.n_head_kv != self.n_head || self.n_head * self.head_dim != self.n_embd)
        {
            return bad(format!(
                "{} needs n_head_kv = n_head and n_head·head_dim = n_embd (its q/k norms are [n_embd]); \
                 got n_head {}, n_head_kv {}, head_dim {}, n_embd {}",
                self.arch, self.n_head, self.n_head_kv, self.head_dim, self.n_embd
            ));
        }
        if spec.q_width_is_n_embd && self.n_head * self.head_dim != self.n_embd {
            return bad(format!(
                "{} needs n_head·head_dim = n_embd; got n_head {}, head_dim {}, n_embd {}",
                self.arch, self.n_head, self.head_dim, self.n_embd
            ));
        }
        let plan = tensor_plan(self, n_vocab);
        let bytes: u64 = plan
            .iter()
            .map(|t| t.n_elements().saturating_mul(4)) // F32 upper bound
            .fold(0, u64::saturating_add);
        if bytes > MAX_FILE_BYTES {
            return bad(format!(
                "the model would take up to {bytes} bytes, more than {MAX_FILE_BYTES}"
            ));
        }
        Ok(())
    }
}
