//! The architectures the generator knows, each described by one row of data
//! ([`ArchSpec`]): which optional blocks its layers have, how its GGUF
//! metadata is spelled, and the defaults of a tiny model of it.
//!
//! The rows follow llama.cpp's `src/models/<arch>.cpp` (`load_arch_hparams`
//! and `load_arch_tensors`) of the reference build: a tensor llama.cpp does
//! not create is an error there ("wrong number of tensors"), so a row lists
//! exactly the required tensors; optional ones (q/k/v biases, `exp_probs_b`)
//! are written where the real models have them.
//!
//! | arch | GGUF name | attention | FFN | what the row adds |
//! |---|---|---|---|---|
//! | `llama` | `llama` | standard | dense | tied output |
//! | `mixtral` | `llama` | standard | MoE | expert width in `feed_forward_length` |
//! | `qwen3` | `qwen3` | per-head q/k norm | dense | |
//! | `gemma3` | `gemma3` | per-head q/k norm | dense | post-norms, sliding window + pattern |
//! | `qwen3moe` | `qwen3moe` | per-head q/k norm | MoE | `expert_feed_forward_length` |
//! | `olmoe` | `olmoe` | full q/k norm | MoE | required output |
//! | `qwen2moe` | `qwen2moe` | q/k/v bias | MoE | sigmoid-gated shared expert |
//! | `glm4moe` | `glm4moe` | q/k/v bias, partial RoPE | dense lead + MoE | sigmoid + `exp_probs_b`, shared expert, `post_attention_norm` |
//! | `deepseek2` | `deepseek2` | MLA (optional q-LoRA), YaRN | dense lead + MoE | shared experts, softmax or sigmoid, groups, optionally fused `ffn_gate_up_exps` |
//! | `gpt-oss` | `gpt-oss` | q/k/v/o bias, sinks, alternating window, YaRN | MoE | router and expert biases |

use std::fmt;
use std::str::FromStr;

/// A model architecture the generator can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// Dense Llama (SmolLM2, Llama 2/3): `llama`.
    Llama,
    /// Mixtral: the `llama` architecture with `llama.expert_count` and
    /// `ffn_gate_inp` + `ffn_{gate,up,down}_exps` instead of the dense FFN.
    Mixtral,
    /// Qwen3 dense: per-head `attn_q_norm`/`attn_k_norm`, head size from
    /// `key_length`.
    Qwen3,
    /// Gemma 3: q/k norms, post-attention and post-FFN norms, sliding-window
    /// layers, embeddings scaled by √n_embd, GELU FFN.
    Gemma3,
    /// Qwen3 MoE: Qwen3 attention, MoE FFN sized by `expert_feed_forward_length`.
    Qwen3Moe,
    /// OLMoE: q/k norms over the whole projection (not per head), MoE FFN,
    /// untied output.
    Olmoe,
    /// Qwen2 MoE (Qwen1.5-MoE, Qwen2-57B-A14B): q/k/v biases, softmax router
    /// plus one shared expert gated by `sigmoid(ffn_gate_inp_shexp·x)`.
    Qwen2Moe,
    /// GLM-4.5 (`glm4moe`): q/k/v biases, partial RoPE, `post_attention_norm`
    /// before the FFN, leading dense layers, sigmoid router with
    /// `exp_probs_b`, normalised and scaled weights, shared experts.
    Glm4Moe,
    /// DeepSeek-V2/V3 and GLM-4.7-Flash (`deepseek2`): MLA attention
    /// (compressed KV of `kv_lora_rank`, optional q-LoRA, RoPE on a separate
    /// slice of each head, split `attn_k_b`/`attn_v_b`), leading dense layers,
    /// shared experts, softmax or sigmoid routing, optional expert groups.
    Deepseek2,
    /// gpt-oss (`gpt-oss`): q/k/v/output biases, attention sinks, alternating
    /// sliding-window layers, YaRN RoPE, router and expert biases, clamped
    /// SwiGLU (llama.cpp's `swiglu_oai`), softmax over the selected experts.
    GptOss,
}

/// How a layer attends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attention {
    /// `attn_q`, `attn_k`, `attn_v`, `attn_output` of `head_dim` per head.
    Standard,
    /// DeepSeek's multi-head latent attention, in the split form that
    /// `convert_hf_to_gguf.py` writes (`attn_kv_a_mqa`, `attn_k_b`, `attn_v_b`;
    /// q through `attn_q` or the q-LoRA `attn_q_a`/`attn_q_b`).
    Mla,
}

/// The shared expert of an MoE layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedExpert {
    /// None.
    None,
    /// `ffn_{gate,up,down}_shexp` of width `n_expert_shared·n_ff_exp`
    /// (`expert_shared_feed_forward_length`), scaled by the sigmoid of
    /// `ffn_gate_inp_shexp` (Qwen2 MoE).
    Gated,
    /// `ffn_{gate,up,down}_shexp` of width `n_expert_shared·n_ff_exp`
    /// (`expert_shared_count`), added as is (GLM-4.5, DeepSeek).
    Counted,
}

/// Whether an architecture has an optional tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// llama.cpp never loads it (writing it is an error).
    Never,
    /// llama.cpp loads it when present.
    Optional,
    /// llama.cpp refuses the model without it.
    Required,
}

/// The sliding-window layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlidingWindow {
    /// Every layer attends globally.
    None,
    /// `attention.sliding_window` and `attention.sliding_window_pattern`
    /// (Gemma 3).
    Pattern,
    /// `attention.sliding_window`; even layers use the window, odd layers
    /// are global (gpt-oss: llama.cpp's fixed pattern 2).
    Alternating,
}

/// The router's gating function (`expert_gating_func`, `enum
/// llama_expert_gating_func_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gating {
    /// Softmax over all experts, then top-k (1).
    Softmax,
    /// Sigmoid per expert, top-k by sigmoid + `exp_probs_b` (2).
    Sigmoid,
}

impl Gating {
    /// The GGUF value.
    pub fn id(self) -> u32 {
        match self {
            Gating::Softmax => 1,
            Gating::Sigmoid => 2,
        }
    }
}

/// YaRN RoPE scaling (`rope.scaling.*`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Yarn {
    /// `rope.scaling.factor`.
    pub factor: f32,
    /// `rope.scaling.original_context_length`.
    pub original_context: u64,
    /// `rope.scaling.yarn_log_multiplier` (DeepSeek; 0 leaves it out).
    pub log_mul: f32,
}

/// Whether a layer normalises Q and K, and over what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QkNorm {
    /// No q/k norm.
    None,
    /// `attn_q_norm`/`attn_k_norm` of `[head_dim]`, applied to every head.
    PerHead,
    /// `attn_q_norm` of `[n_head·head_dim]`, `attn_k_norm` of
    /// `[n_head_kv·head_dim]`, applied before the split into heads (OLMoE).
    Full,
}

/// The feed-forward block of every layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ffn {
    /// `ffn_gate`, `ffn_up`, `ffn_down` of width `n_ff`.
    Dense,
    /// A router `ffn_gate_inp` and `n_expert` experts of width `n_ff_exp`.
    Moe,
}

/// Where the expert width of an MoE architecture is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpertWidthKey {
    /// `{arch}.feed_forward_length` is the expert width (Mixtral, OLMoE).
    FeedForwardLength,
    /// `{arch}.expert_feed_forward_length` is the expert width;
    /// `feed_forward_length` keeps the dense width (unused by Qwen3 MoE; the
    /// leading dense layers of GLM-4.5 and DeepSeek).
    ExpertFeedForwardLength,
}

/// Whether the output projection may share the token embedding.
///
/// Only `llama` is tied by default (like SmolLM2), so the tied path has a
/// synthetic model. The others get their own `output.weight` even where the
/// real small models are tied (Qwen3, Gemma 3): with random weights a tied
/// head favours the current token, and greedy continuations degenerate into
/// one token repeated, which makes weak golden outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputHead {
    /// `output.weight` is optional; the default is the row's `tied` flag.
    Optional {
        /// Default of [`super::SynthConfig::tie_embeddings`].
        tied: bool,
    },
    /// `output.weight` is required (OLMoE, Qwen2 MoE, gpt-oss).
    Required,
}

/// One architecture, as data.
#[derive(Clone, Copy, Debug)]
pub struct ArchSpec {
    /// `general.architecture` and the prefix of the hyperparameter keys.
    pub gguf_name: &'static str,
    /// Standard or latent (MLA) attention.
    pub attention: Attention,
    /// Q/K normalisation.
    pub qk_norm: QkNorm,
    /// `attn_q.bias`, `attn_k.bias`, `attn_v.bias`.
    pub qkv_bias: bool,
    /// `attn_output.bias` (gpt-oss).
    pub out_bias: bool,
    /// `attn_sinks.weight`, one logit per head (gpt-oss).
    pub attn_sinks: bool,
    /// `n_head·head_dim` must be `n_embd` (llama.cpp creates `attn_q` and
    /// `attn_output` as `[n_embd, n_embd]`: Qwen2 MoE).
    pub q_width_is_n_embd: bool,
    /// `post_attention_norm` and `post_ffw_norm` in every layer (Gemma).
    pub post_norms: bool,
    /// Name of the norm before the FFN: `ffn_norm`, or `post_attention_norm`
    /// (GLM-4.5, gpt-oss).
    pub ffn_norm: &'static str,
    /// Dense or MoE FFN.
    pub ffn: Ffn,
    /// For MoE: which key carries the expert width.
    pub expert_width_key: ExpertWidthKey,
    /// For MoE: the shared expert.
    pub shared_expert: SharedExpert,
    /// For MoE: `ffn_gate_inp.bias` and `ffn_{gate,up,down}_exps.bias` (gpt-oss).
    pub moe_biases: bool,
    /// For MoE: `exp_probs_b.bias`, the selection bias of sigmoid routers.
    pub exp_probs_b: Presence,
    /// For MoE: llama.cpp's loader also takes the gate and up projections
    /// fused into one `ffn_gate_up_exps` (`create_tensor_gate_up_exps`:
    /// DeepSeek 2), so [`super::SynthConfig::fused_gate_up`] may be set.
    pub fused_gate_up: bool,
    /// Sliding-window layers.
    pub sliding_window: SlidingWindow,
    /// The output projection.
    pub output: OutputHead,
    /// Default head size of the tiny model (`n_head·head_dim` may differ
    /// from `n_embd`, as in Qwen3 and Gemma 3); for MLA the q/k head size
    /// (no-RoPE part + RoPE part).
    pub head_dim: u64,
    /// Default RoPE dimensions per head; `None` rotates the whole head.
    pub n_rot: Option<u64>,
    /// For MLA: default value head size.
    pub head_dim_v: Option<u64>,
    /// For MLA: default `attention.kv_lora_rank`.
    pub kv_lora_rank: u64,
    /// Default number of KV heads of the tiny model.
    pub n_head_kv: u64,
    /// Default shared experts (`n_expert_shared`).
    pub n_expert_shared: u64,
    /// Default leading dense layers (`leading_dense_block_count`).
    pub n_layer_dense_lead: u64,
    /// Default gating function written to the file (`None`: no key).
    pub gating: Option<Gating>,
    /// Default `expert_weights_norm` (normalise the top-k weights).
    pub expert_weights_norm: bool,
    /// Default `expert_weights_scale` (`None`: no key).
    pub expert_weights_scale: Option<f32>,
    /// Default YaRN scaling (`None`: no `rope.scaling.*` keys).
    pub yarn: Option<Yarn>,
    /// Default `attention.layer_norm_rms_epsilon`.
    pub rms_eps: f32,
    /// Default `rope.freq_base`.
    pub rope_freq_base: f32,
}

impl Arch {
    /// Every architecture, in a fixed order.
    pub const ALL: [Arch; 10] = [
        Arch::Llama,
        Arch::Mixtral,
        Arch::Qwen3,
        Arch::Gemma3,
        Arch::Qwen3Moe,
        Arch::Olmoe,
        Arch::Qwen2Moe,
        Arch::Glm4Moe,
        Arch::Deepseek2,
        Arch::GptOss,
    ];

    /// The name used on the command line and in file names.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Mixtral => "mixtral",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma3 => "gemma3",
            Arch::Qwen3Moe => "qwen3moe",
            Arch::Olmoe => "olmoe",
            Arch::Qwen2Moe => "qwen2moe",
            Arch::Glm4Moe => "glm4moe",
            Arch::Deepseek2 => "deepseek2",
            Arch::GptOss => "gpt-oss",
        }
    }

    /// The data row of this architecture.
    pub fn spec(self) -> ArchSpec {
        const LLAMA: ArchSpec = ArchSpec {
            gguf_name: "llama",
            attention: Attention::Standard,
            qk_norm: QkNorm::None,
            qkv_bias: false,
            out_bias: false,
            attn_sinks: false,
            q_width_is_n_embd: false,
            post_norms: false,
            ffn_norm: "ffn_norm",
            ffn: Ffn::Dense,
            expert_width_key: ExpertWidthKey::FeedForwardLength,
            shared_expert: SharedExpert::None,
            moe_biases: false,
            exp_probs_b: Presence::Never,
            fused_gate_up: false,
            sliding_window: SlidingWindow::None,
            output: OutputHead::Optional { tied: true },
            head_dim: 16,
            n_rot: None,
            head_dim_v: None,
            kv_lora_rank: 0,
            n_head_kv: 2,
            n_expert_shared: 0,
            n_layer_dense_lead: 0,
            gating: None,
            expert_weights_norm: false,
            expert_weights_scale: None,
            yarn: None,
            rms_eps: 1e-5,
            rope_freq_base: 10_000.0,
        };
        const QWEN3: ArchSpec = ArchSpec {
            gguf_name: "qwen3",
            qk_norm: QkNorm::PerHead,
            output: OutputHead::Optional { tied: false },
            head_dim: 32,
            rms_eps: 1e-6,
            rope_freq_base: 1_000_000.0,
            ..LLAMA
        };
        const MOE: ArchSpec = ArchSpec {
            ffn: Ffn::Moe,
            expert_width_key: ExpertWidthKey::ExpertFeedForwardLength,
            output: OutputHead::Optional { tied: false },
            ..LLAMA
        };
        match self {
            Arch::Llama => LLAMA,
            Arch::Mixtral => ArchSpec {
                expert_width_key: ExpertWidthKey::FeedForwardLength,
                ..MOE
            },
            Arch::Qwen3 => QWEN3,
            Arch::Gemma3 => ArchSpec {
                gguf_name: "gemma3",
                post_norms: true,
                sliding_window: SlidingWindow::Pattern,
                ..QWEN3
            },
            Arch::Qwen3Moe => ArchSpec {
                gguf_name: "qwen3moe",
                ffn: Ffn::Moe,
                expert_width_key: ExpertWidthKey::ExpertFeedForwardLength,
                output: OutputHead::Optional { tied: false },
                ..QWEN3
            },
            Arch::Olmoe => ArchSpec {
                gguf_name: "olmoe",
                qk_norm: QkNorm::Full,
                expert_width_key: ExpertWidthKey::FeedForwardLength,
                output: OutputHead::Required,
                // OLMoE's k norm is [n_embd]: it needs n_head_kv = n_head
                // and n_head·head_dim = n_embd.
                n_head_kv: 4,
                ..MOE
            },
            Arch::Qwen2Moe => ArchSpec {
                gguf_name: "qwen2moe",
                qkv_bias: true,
                q_width_is_n_embd: true,
                shared_expert: SharedExpert::Gated,
                output: OutputHead::Required,
                n_expert_shared: 2,
                rms_eps: 1e-6,
                rope_freq_base: 1_000_000.0,
                ..MOE
            },
            Arch::Glm4Moe => ArchSpec {
                gguf_name: "glm4moe",
                qkv_bias: true,
                ffn_norm: "post_attention_norm",
                shared_expert: SharedExpert::Counted,
                exp_probs_b: Presence::Required,
                head_dim: 32,
                n_rot: Some(16), // partial_rotary_factor 0.5
                n_expert_shared: 1,
                n_layer_dense_lead: 1,
                gating: Some(Gating::Sigmoid),
                expert_weights_norm: true,
                expert_weights_scale: Some(2.5),
                rope_freq_base: 1_000_000.0,
                ..MOE
            },
            // DeepSeek-V2-Lite's choices: no q-LoRA, softmax, 2 shared
            // experts, YaRN (factor 40 from 4096, mscale_all_dim 0.707).
            Arch::Deepseek2 => ArchSpec {
                gguf_name: "deepseek2",
                attention: Attention::Mla,
                shared_expert: SharedExpert::Counted,
                exp_probs_b: Presence::Optional,
                fused_gate_up: true,
                head_dim: 48,
                n_rot: Some(16),
                head_dim_v: Some(32),
                kv_lora_rank: 64,
                n_head_kv: 1, // MLA is MQA over the compressed KV
                n_expert_shared: 2,
                n_layer_dense_lead: 1,
                gating: Some(Gating::Softmax),
                expert_weights_scale: Some(1.0),
                yarn: Some(Yarn {
                    factor: 40.0,
                    original_context: 4096,
                    log_mul: 0.0707,
                }),
                rms_eps: 1e-6,
                ..MOE
            },
            Arch::GptOss => ArchSpec {
                gguf_name: "gpt-oss",
                qkv_bias: true,
                out_bias: true,
                attn_sinks: true,
                ffn_norm: "post_attention_norm",
                moe_biases: true,
                sliding_window: SlidingWindow::Alternating,
                output: OutputHead::Required,
                yarn: Some(Yarn {
                    factor: 32.0,
                    original_context: 4096,
                    log_mul: 0.0,
                }),
                rope_freq_base: 150_000.0,
                ..MOE
            },
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Arch::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = Arch::ALL.iter().map(|a| a.name()).collect();
                format!("unknown architecture '{s}' (known: {})", names.join(", "))
            })
    }
}
