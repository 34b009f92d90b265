//! [`SynthConfig`] fields by name: `set("n_embd", "256")`, so a config can be
//! written as a flat map of changes to [`SynthConfig::new`] (the golden
//! fixtures' `config` objects, `tessera-synth --set FIELD=VALUE`) and
//! rebuilt from it.
//!
//! The names are the Rust field names. Values are decimal numbers, `true` /
//! `false`, `F32` / `F16` for `weight_type`, `builtin` or a GGUF path for
//! `vocab`, `softmax` / `sigmoid` for `gating`, and `none` for an absent
//! optional (`n_rot`, `head_dim_v`, `gating`, `expert_weights_scale`,
//! `swa_pattern`).

use std::str::FromStr;

use super::arch::Gating;
use super::{SynthConfig, SynthError, VocabSource, WeightType};

/// Every field [`SynthConfig::set`] knows, in struct order (`arch` is fixed
/// by [`SynthConfig::new`] and cannot be set).
pub const FIELDS: &[&str] = &[
    "seed",
    "n_layer",
    "n_embd",
    "n_head",
    "n_head_kv",
    "head_dim",
    "n_rot",
    "head_dim_v",
    "kv_lora_rank",
    "q_lora_rank",
    "n_ff",
    "n_expert",
    "n_expert_used",
    "n_ff_exp",
    "exp_gate_up_scale",
    "fused_gate_up",
    "n_expert_shared",
    "n_layer_dense_lead",
    "gating",
    "expert_weights_norm",
    "expert_weights_scale",
    "exp_probs_b",
    "n_expert_groups",
    "n_group_used",
    "context_length",
    "weight_type",
    "vocab",
    "tie_embeddings",
    "rms_eps",
    "rope_freq_base",
    "rope_yarn_factor",
    "rope_yarn_orig_ctx",
    "rope_yarn_log_mul",
    "sliding_window",
    "swa_pattern",
];

/// `none` or a value.
fn optional<T: FromStr>(field: &str, value: &str) -> Result<Option<T>, SynthError> {
    match value {
        "none" => Ok(None),
        _ => parse(field, value).map(Some),
    }
}

fn parse<T: FromStr>(field: &str, value: &str) -> Result<T, SynthError> {
    value.parse().map_err(|_| {
        SynthError::Config(format!(
            "{field}: cannot parse '{value}' as {}",
            std::any::type_name::<T>()
        ))
    })
}

impl SynthConfig {
    /// Sets the field named `field` from its text form `value`.
    pub fn set(&mut self, field: &str, value: &str) -> Result<(), SynthError> {
        let v = value;
        match field {
            "seed" => self.seed = parse(field, v)?,
            "n_layer" => self.n_layer = parse(field, v)?,
            "n_embd" => self.n_embd = parse(field, v)?,
            "n_head" => self.n_head = parse(field, v)?,
            "n_head_kv" => self.n_head_kv = parse(field, v)?,
            "head_dim" => self.head_dim = parse(field, v)?,
            "n_rot" => self.n_rot = optional(field, v)?,
            "head_dim_v" => self.head_dim_v = optional(field, v)?,
            "kv_lora_rank" => self.kv_lora_rank = parse(field, v)?,
            "q_lora_rank" => self.q_lora_rank = parse(field, v)?,
            "n_ff" => self.n_ff = parse(field, v)?,
            "n_expert" => self.n_expert = parse(field, v)?,
            "n_expert_used" => self.n_expert_used = parse(field, v)?,
            "n_ff_exp" => self.n_ff_exp = parse(field, v)?,
            "exp_gate_up_scale" => self.exp_gate_up_scale = parse(field, v)?,
            "fused_gate_up" => self.fused_gate_up = parse(field, v)?,
            "n_expert_shared" => self.n_expert_shared = parse(field, v)?,
            "n_layer_dense_lead" => self.n_layer_dense_lead = parse(field, v)?,
            "gating" => {
                self.gating = match v {
                    "none" => None,
                    "softmax" => Some(Gating::Softmax),
                    "sigmoid" => Some(Gating::Sigmoid),
                    _ => {
                        return Err(SynthError::Config(format!(
                            "gating: '{v}' is not softmax, sigmoid or none"
                        )))
                    }
                }
            }
            "expert_weights_norm" => self.expert_weights_norm = parse(field, v)?,
            "expert_weights_scale" => self.expert_weights_scale = optional(field, v)?,
            "exp_probs_b" => self.exp_probs_b = parse(field, v)?,
            "n_expert_groups" => self.n_expert_groups = parse(field, v)?,
            "n_group_used" => self.n_group_used = parse(field, v)?,
            "context_length" => self.context_length = parse(field, v)?,
            "weight_type" => {
                self.weight_type = match v.to_ascii_uppercase().as_str() {
                    "F32" => WeightType::F32,
                    "F16" => WeightType::F16,
                    _ => {
                        return Err(SynthError::Config(format!(
                            "weight_type: '{v}' is not F32 or F16"
                        )))
                    }
                }
            }
            "vocab" => {
                self.vocab = match v {
                    "builtin" => VocabSource::Builtin,
                    path => VocabSource::Gguf(path.into()),
                }
            }
            "tie_embeddings" => self.tie_embeddings = parse(field, v)?,
            "rms_eps" => self.rms_eps = parse(field, v)?,
            "rope_freq_base" => self.rope_freq_base = parse(field, v)?,
            "rope_yarn_factor" => self.rope_yarn_factor = parse(field, v)?,
            "rope_yarn_orig_ctx" => self.rope_yarn_orig_ctx = parse(field, v)?,
            "rope_yarn_log_mul" => self.rope_yarn_log_mul = parse(field, v)?,
            "sliding_window" => self.sliding_window = parse(field, v)?,
            "swa_pattern" => {
                self.swa_pattern = match v {
                    "none" => None,
                    _ => Some(parse(field, v)?),
                }
            }
            _ => {
                return Err(SynthError::Config(format!(
                    "unknown field '{field}' (known: {})",
                    FIELDS.join(", ")
                )))
            }
        }
        Ok(())
    }

    /// Sets a field from `FIELD=VALUE`.
    pub fn set_assignment(&mut self, assignment: &str) -> Result<(), SynthError> {
        let (field, value) = assignment
            .split_once('=')
            .ok_or_else(|| SynthError::Config(format!("'{assignment}' is not FIELD=VALUE")))?;
        self.set(field.trim(), value.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::Arch;

    #[test]
    fn every_field_can_be_set() {
        for &f in FIELDS {
            let mut c = SynthConfig::new(Arch::Gemma3);
            let value = match f {
                "weight_type" => "F16",
                "vocab" => "/x.gguf",
                "tie_embeddings" | "expert_weights_norm" | "exp_probs_b" | "fused_gate_up" => {
                    "true"
                }
                "swa_pattern" => "none",
                "gating" => "sigmoid",
                _ => "3",
            };
            c.set(f, value).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert_ne!(c, SynthConfig::new(Arch::Gemma3), "{f} changed nothing");
        }
    }

    #[test]
    fn bad_names_and_values_are_errors() {
        let mut c = SynthConfig::new(Arch::Qwen3Moe);
        assert!(c.set("n_embed", "3").is_err());
        assert!(c.set("n_embd", "-3").is_err());
        assert!(c.set("weight_type", "Q4_K").is_err());
        assert!(c.set_assignment("n_embd").is_err());
        c.set_assignment("n_ff_exp=256").unwrap();
        assert_eq!(c.n_ff_exp, 256);
    }
}
