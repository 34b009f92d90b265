//! The GGUF tensor-name conventions: one table from the names llama.cpp's
//! converters write (`token_embd`, `blk.N.attn_q`, `blk.N.ffn_down_exps` …) to
//! a [`Role`], used by `inspect`, by placement rules (`--cpu-moe` means "the
//! tensors whose role is routed experts") and by the architectures.
//!
//! A name is `[blk.<layer>.]<base>[.<expert>].<suffix>` where the suffix is
//! `weight`, `bias`, `scale` …; [`parse_name`] splits it.

use std::fmt;

/// What a tensor is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Token embedding table (`token_embd`).
    TokenEmbd,
    /// Norm applied to the embeddings (`token_embd_norm`).
    TokenEmbdNorm,
    /// Learned position embeddings (`position_embd`).
    PosEmbd,
    /// Output projection to the vocabulary (`output`); absent when tied to `token_embd`.
    Output,
    /// Final norm (`output_norm`).
    OutputNorm,
    /// RoPE frequency factors (`rope_freqs`, `rope_factors_long/short`).
    RopeFreqs,
    /// Norm before attention (`attn_norm`, `attn_norm_2`).
    AttnNorm,
    /// Query projection (`attn_q`).
    AttnQ,
    /// Key projection (`attn_k`).
    AttnK,
    /// Value projection (`attn_v`).
    AttnV,
    /// Fused query/key/value projection (`attn_qkv`).
    AttnQkv,
    /// Attention output projection (`attn_output`).
    AttnOutput,
    /// Per-head query norm (`attn_q_norm`).
    AttnQNorm,
    /// Per-head key norm (`attn_k_norm`).
    AttnKNorm,
    /// Norm after attention (`post_attention_norm`, `attn_post_norm`).
    AttnPostNorm,
    /// Attention sinks (`attn_sinks`).
    AttnSinks,
    /// MLA: low-rank query down-projection (`attn_q_a`).
    AttnQA,
    /// MLA: query up-projection (`attn_q_b`).
    AttnQB,
    /// MLA: norm of the compressed query (`attn_q_a_norm`).
    AttnQANorm,
    /// MLA: compressed key/value + rope key projection (`attn_kv_a_mqa`).
    AttnKvAMqa,
    /// MLA: norm of the compressed key/value (`attn_kv_a_norm`).
    AttnKvANorm,
    /// MLA: key/value up-projection (`attn_kv_b`).
    AttnKvB,
    /// MLA: key up-projection, split form (`attn_k_b`).
    AttnKB,
    /// MLA: value up-projection, split form (`attn_v_b`).
    AttnVB,
    /// Norm before the feed-forward block (`ffn_norm`).
    FfnNorm,
    /// Norm after the feed-forward block (`post_ffw_norm`, `ffn_post_norm`).
    FfnPostNorm,
    /// Dense FFN gate projection (`ffn_gate`).
    FfnGate,
    /// Dense FFN up projection (`ffn_up`).
    FfnUp,
    /// Dense FFN down projection (`ffn_down`).
    FfnDown,
    /// MoE router (`ffn_gate_inp`).
    Router,
    /// Expert-selection bias (`exp_probs_b`).
    ExpertProbsBias,
    /// Routed experts' gate, 3-D (`ffn_gate_exps`).
    ExpertsGate,
    /// Routed experts' up, 3-D (`ffn_up_exps`).
    ExpertsUp,
    /// Routed experts' down, 3-D (`ffn_down_exps`).
    ExpertsDown,
    /// Routed experts' fused gate+up, 3-D (`ffn_gate_up_exps`).
    ExpertsGateUp,
    /// Shared experts' gate (`ffn_gate_shexp`).
    SharedGate,
    /// Shared experts' up (`ffn_up_shexp`).
    SharedUp,
    /// Shared experts' down (`ffn_down_shexp`).
    SharedDown,
    /// Gate of the shared expert's contribution (`ffn_gate_inp_shexp`).
    SharedExpertGate,
    /// Norm at the end of the layer (`layer_output_norm`).
    LayerOutputNorm,
    /// A name the table does not know.
    Other,
}

/// Broad class of a role: what placement rules and reports group by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoleClass {
    /// Token and position embeddings.
    Embedding,
    /// Output head and final norm.
    Output,
    /// Norm weights anywhere in a layer.
    Norm,
    /// Attention projections and their parameters.
    Attention,
    /// Dense feed-forward.
    Ffn,
    /// MoE router and its bias.
    Router,
    /// Routed experts (the tensors `--cpu-moe` keeps in CPU memory).
    Experts,
    /// Shared (always-active) experts.
    SharedExperts,
    /// Anything else.
    Other,
}

/// The name table: GGUF base name → role. Legacy per-expert names
/// (`blk.N.ffn_gate.E.weight`) are handled by [`parse_name`].
pub const ROLE_TABLE: &[(&str, Role)] = &[
    ("token_embd", Role::TokenEmbd),
    ("token_embd_norm", Role::TokenEmbdNorm),
    ("position_embd", Role::PosEmbd),
    ("output", Role::Output),
    ("output_norm", Role::OutputNorm),
    ("rope_freqs", Role::RopeFreqs),
    ("rope_factors_long", Role::RopeFreqs),
    ("rope_factors_short", Role::RopeFreqs),
    ("attn_norm", Role::AttnNorm),
    ("attn_norm_2", Role::AttnNorm),
    ("attn_q", Role::AttnQ),
    ("attn_k", Role::AttnK),
    ("attn_v", Role::AttnV),
    ("attn_qkv", Role::AttnQkv),
    ("attn_output", Role::AttnOutput),
    ("attn_q_norm", Role::AttnQNorm),
    ("attn_k_norm", Role::AttnKNorm),
    ("post_attention_norm", Role::AttnPostNorm),
    ("attn_post_norm", Role::AttnPostNorm),
    ("attn_sinks", Role::AttnSinks),
    ("attn_q_a", Role::AttnQA),
    ("attn_q_b", Role::AttnQB),
    ("attn_q_a_norm", Role::AttnQANorm),
    ("attn_kv_a_mqa", Role::AttnKvAMqa),
    ("attn_kv_a_norm", Role::AttnKvANorm),
    ("attn_kv_b", Role::AttnKvB),
    ("attn_k_b", Role::AttnKB),
    ("attn_v_b", Role::AttnVB),
    ("ffn_norm", Role::FfnNorm),
    ("post_ffw_norm", Role::FfnPostNorm),
    ("ffn_post_norm", Role::FfnPostNorm),
    ("ffn_gate", Role::FfnGate),
    ("ffn_up", Role::FfnUp),
    ("ffn_down", Role::FfnDown),
    ("ffn_gate_inp", Role::Router),
    ("exp_probs_b", Role::ExpertProbsBias),
    ("ffn_gate_exps", Role::ExpertsGate),
    ("ffn_up_exps", Role::ExpertsUp),
    ("ffn_down_exps", Role::ExpertsDown),
    ("ffn_gate_up_exps", Role::ExpertsGateUp),
    ("ffn_gate_shexp", Role::SharedGate),
    ("ffn_up_shexp", Role::SharedUp),
    ("ffn_down_shexp", Role::SharedDown),
    ("ffn_gate_inp_shexp", Role::SharedExpertGate),
    ("layer_output_norm", Role::LayerOutputNorm),
];

impl Role {
    /// The role of GGUF base name `base` (`attn_q`, `ffn_down_exps` …).
    pub fn from_base(base: &str) -> Role {
        ROLE_TABLE
            .iter()
            .find(|(b, _)| *b == base)
            .map_or(Role::Other, |&(_, r)| r)
    }

    /// The broad class of this role.
    pub fn class(self) -> RoleClass {
        use Role::*;
        match self {
            TokenEmbd | PosEmbd => RoleClass::Embedding,
            Output => RoleClass::Output,
            TokenEmbdNorm | OutputNorm | AttnNorm | AttnQNorm | AttnKNorm | AttnPostNorm
            | AttnQANorm | AttnKvANorm | FfnNorm | FfnPostNorm | LayerOutputNorm => RoleClass::Norm,
            RopeFreqs | AttnQ | AttnK | AttnV | AttnQkv | AttnOutput | AttnSinks | AttnQA
            | AttnQB | AttnKvAMqa | AttnKvB | AttnKB | AttnVB => RoleClass::Attention,
            FfnGate | FfnUp | FfnDown => RoleClass::Ffn,
            Router | ExpertProbsBias => RoleClass::Router,
            ExpertsGate | ExpertsUp | ExpertsDown | ExpertsGateUp => RoleClass::Experts,
            SharedGate | SharedUp | SharedDown | SharedExpertGate => RoleClass::SharedExperts,
            Other => RoleClass::Other,
        }
    }

    /// Short snake-case name for reports (`attn_q`, `experts_down` …).
    pub fn name(self) -> &'static str {
        use Role::*;
        match self {
            TokenEmbd => "token_embd",
            TokenEmbdNorm => "token_embd_norm",
            PosEmbd => "pos_embd",
            Output => "output",
            OutputNorm => "output_norm",
            RopeFreqs => "rope_freqs",
            AttnNorm => "attn_norm",
            AttnQ => "attn_q",
            AttnK => "attn_k",
            AttnV => "attn_v",
            AttnQkv => "attn_qkv",
            AttnOutput => "attn_output",
            AttnQNorm => "attn_q_norm",
            AttnKNorm => "attn_k_norm",
            AttnPostNorm => "attn_post_norm",
            AttnSinks => "attn_sinks",
            AttnQA => "attn_q_a",
            AttnQB => "attn_q_b",
            AttnQANorm => "attn_q_a_norm",
            AttnKvAMqa => "attn_kv_a_mqa",
            AttnKvANorm => "attn_kv_a_norm",
            AttnKvB => "attn_kv_b",
            AttnKB => "attn_k_b",
            AttnVB => "attn_v_b",
            FfnNorm => "ffn_norm",
            FfnPostNorm => "ffn_post_norm",
            FfnGate => "ffn_gate",
            FfnUp => "ffn_up",
            FfnDown => "ffn_down",
            Router => "router",
            ExpertProbsBias => "expert_probs_bias",
            ExpertsGate => "experts_gate",
            ExpertsUp => "experts_up",
            ExpertsDown => "experts_down",
            ExpertsGateUp => "experts_gate_up",
            SharedGate => "shared_gate",
            SharedUp => "shared_up",
            SharedDown => "shared_down",
            SharedExpertGate => "shared_expert_gate",
            LayerOutputNorm => "layer_output_norm",
            Other => "other",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl RoleClass {
    /// Lower-case name for reports.
    pub fn name(self) -> &'static str {
        match self {
            RoleClass::Embedding => "embedding",
            RoleClass::Output => "output",
            RoleClass::Norm => "norm",
            RoleClass::Attention => "attention",
            RoleClass::Ffn => "ffn",
            RoleClass::Router => "router",
            RoleClass::Experts => "experts",
            RoleClass::SharedExperts => "shared_experts",
            RoleClass::Other => "other",
        }
    }
}

/// A tensor name taken apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorName<'a> {
    /// Layer index, for `blk.N.*` names.
    pub layer: Option<u32>,
    /// Base name without layer and suffix (`attn_q`).
    pub base: &'a str,
    /// Expert index, for legacy per-expert names (`blk.N.ffn_gate.E.weight`).
    pub expert: Option<u32>,
    /// Parameter kind after the last dot (`weight`, `bias`, `scale`), if any.
    pub suffix: Option<&'a str>,
    /// What the tensor is for.
    pub role: Role,
}

const SUFFIXES: &[&str] = &["weight", "bias", "scale", "scales", "input_scale"];

/// Splits a GGUF tensor name into layer, base, expert, suffix and role.
pub fn parse_name(name: &str) -> TensorName<'_> {
    let (layer, rest) = match name.strip_prefix("blk.").and_then(|r| r.split_once('.')) {
        Some((n, rest)) => match n.parse::<u32>() {
            Ok(l) => (Some(l), rest),
            Err(_) => (None, name),
        },
        None => (None, name),
    };
    let (mut base, suffix) = match rest.rsplit_once('.') {
        Some((b, s)) if SUFFIXES.contains(&s) => (b, Some(s)),
        _ => (rest, None),
    };
    let mut expert = None;
    if let Some((b, e)) = base.rsplit_once('.') {
        if let Ok(e) = e.parse::<u32>() {
            expert = Some(e);
            base = b;
        }
    }
    let mut role = Role::from_base(base);
    if expert.is_some() {
        // Legacy Mixtral layout: one 2-D tensor per expert.
        role = match role {
            Role::FfnGate => Role::ExpertsGate,
            Role::FfnUp => Role::ExpertsUp,
            Role::FfnDown => Role::ExpertsDown,
            _ => Role::Other,
        };
    }
    TensorName {
        layer,
        base,
        expert,
        suffix,
        role,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_layer_base_suffix_and_role() {
        let n = parse_name("blk.12.attn_q.weight");
        assert_eq!(
            (n.layer, n.base, n.suffix, n.role),
            (Some(12), "attn_q", Some("weight"), Role::AttnQ)
        );
        let n = parse_name("token_embd.weight");
        assert_eq!((n.layer, n.role), (None, Role::TokenEmbd));
        assert_eq!(parse_name("output.weight").role, Role::Output);
        assert_eq!(
            parse_name("blk.3.ffn_down_exps.weight").role.class(),
            RoleClass::Experts
        );
        assert_eq!(
            parse_name("blk.3.ffn_up_shexp.weight").role.class(),
            RoleClass::SharedExperts
        );
        assert_eq!(parse_name("blk.0.ffn_gate_inp.weight").role, Role::Router);
        assert_eq!(
            parse_name("blk.0.exp_probs_b.bias").role,
            Role::ExpertProbsBias
        );
        assert_eq!(
            parse_name("blk.0.attn_kv_a_mqa.weight").role,
            Role::AttnKvAMqa
        );
        assert_eq!(parse_name("blk.0.attn_q.bias").suffix, Some("bias"));
    }

    #[test]
    fn legacy_per_expert_names() {
        let n = parse_name("blk.1.ffn_gate.7.weight");
        assert_eq!(
            (n.layer, n.expert, n.role),
            (Some(1), Some(7), Role::ExpertsGate)
        );
    }

    #[test]
    fn unknown_names_are_other_not_errors() {
        assert_eq!(parse_name("blk.x.attn_q.weight").role, Role::Other);
        assert_eq!(parse_name("mm.projector").role, Role::Other);
        assert_eq!(parse_name("").role, Role::Other);
    }

    #[test]
    fn every_table_entry_round_trips() {
        for &(base, role) in ROLE_TABLE {
            let name = format!("blk.0.{base}.weight");
            assert_eq!(parse_name(&name).role, role, "{name}");
        }
    }
}
