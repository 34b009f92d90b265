//! The architectures the generator knows, each described by one row of data
//! ([`ArchSpec`]): which optional blocks its layers have, how its GGUF
//! metadata is spelled, and the defaults of a tiny model of it.
//!
//! The rows follow llama.cpp's `src/models/<arch>.cpp` (`load_arch_hparams`
//! and `load_arch_tensors`) of the reference build: a tensor llama.cpp does
//! not create is an error there ("wrong number of tensors"), so a row lists
//! exactly the required tensors, no optional ones.

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
    /// `feed_forward_length` keeps the (unused) dense width (Qwen3 MoE).
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
    /// `output.weight` is required (OLMoE).
    Required,
}

/// One architecture, as data.
#[derive(Clone, Copy, Debug)]
pub struct ArchSpec {
    /// `general.architecture` and the prefix of the hyperparameter keys.
    pub gguf_name: &'static str,
    /// Q/K normalisation.
    pub qk_norm: QkNorm,
    /// `post_attention_norm` and `post_ffw_norm` in every layer (Gemma).
    pub post_norms: bool,
    /// Dense or MoE FFN.
    pub ffn: Ffn,
    /// For MoE: which key carries the expert width.
    pub expert_width_key: ExpertWidthKey,
    /// Writes `attention.sliding_window` (and the pattern) (Gemma 3).
    pub sliding_window: bool,
    /// The output projection.
    pub output: OutputHead,
    /// Default head size of the tiny model (`n_head·head_dim` may differ
    /// from `n_embd`, as in Qwen3 and Gemma 3).
    pub head_dim: u64,
    /// Default number of KV heads of the tiny model.
    pub n_head_kv: u64,
    /// Default `attention.layer_norm_rms_epsilon`.
    pub rms_eps: f32,
    /// Default `rope.freq_base`.
    pub rope_freq_base: f32,
}

impl Arch {
    /// Every architecture, in a fixed order.
    pub const ALL: [Arch; 6] = [
        Arch::Llama,
        Arch::Mixtral,
        Arch::Qwen3,
        Arch::Gemma3,
        Arch::Qwen3Moe,
        Arch::Olmoe,
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
        }
    }

    /// The data row of this architecture.
    pub fn spec(self) -> ArchSpec {
        const LLAMA: ArchSpec = ArchSpec {
            gguf_name: "llama",
            qk_norm: QkNorm::None,
            post_norms: false,
            ffn: Ffn::Dense,
            expert_width_key: ExpertWidthKey::FeedForwardLength,
            sliding_window: false,
            output: OutputHead::Optional { tied: true },
            head_dim: 16,
            n_head_kv: 2,
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
        match self {
            Arch::Llama => LLAMA,
            Arch::Mixtral => ArchSpec {
                ffn: Ffn::Moe,
                output: OutputHead::Optional { tied: false },
                ..LLAMA
            },
            Arch::Qwen3 => QWEN3,
            Arch::Gemma3 => ArchSpec {
                gguf_name: "gemma3",
                post_norms: true,
                sliding_window: true,
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
                ffn: Ffn::Moe,
                output: OutputHead::Required,
                // OLMoE's k norm is [n_embd]: it needs n_head_kv = n_head
                // and n_head·head_dim = n_embd.
                n_head_kv: 4,
                ..LLAMA
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
