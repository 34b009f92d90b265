//! Architectures: one file per family, each a short graph built from the
//! shared [`blocks`]. [`build_graph`] picks the family from
//! `general.architecture`.

pub mod blocks;
pub mod builder;
pub mod deepseek2;
pub mod gemma3;
pub mod glm4moe;
pub mod gptoss;
pub mod llama;
pub mod moe;
pub mod olmoe;
pub mod qwen2;
pub mod qwen3;

use crate::error::{CoreError, Result};
use crate::graph::Graph;
use crate::hparams::HParams;
use crate::weights::Weights;

pub use builder::Builder;

/// The families tessera runs.
pub const SUPPORTED: &[&str] = &[
    "llama",
    "qwen2",
    "qwen2moe",
    "qwen3",
    "qwen3moe",
    "gemma3",
    "olmoe",
    "glm4moe",
    "gpt-oss",
    "deepseek2",
];

/// Checks that `arch` is supported.
pub fn check_supported(arch: &str) -> Result<()> {
    if SUPPORTED.contains(&arch) {
        Ok(())
    } else {
        Err(CoreError::UnsupportedArch {
            arch: arch.into(),
            supported: SUPPORTED.to_vec(),
        })
    }
}

/// The graph of one step of `n_tokens` tokens returning `n_out` rows of logits.
pub fn build_graph(
    hp: &HParams,
    weights: &Weights,
    n_tokens: usize,
    n_out: usize,
) -> Result<Graph> {
    let mut b = Builder::new(weights, n_tokens, n_out);
    let out = match hp.arch.as_str() {
        "llama" => llama::build(&mut b, hp)?,
        "qwen2" | "qwen2moe" => qwen2::build(&mut b, hp)?,
        "qwen3" | "qwen3moe" => qwen3::build(&mut b, hp)?,
        "olmoe" => olmoe::build(&mut b, hp)?,
        "glm4moe" => glm4moe::build(&mut b, hp)?,
        "gpt-oss" => gptoss::build(&mut b, hp)?,
        "deepseek2" => deepseek2::build(&mut b, hp)?,
        "gemma3" => gemma3::build(&mut b, hp)?,
        other => {
            return Err(CoreError::UnsupportedArch {
                arch: other.into(),
                supported: SUPPORTED.to_vec(),
            })
        }
    };
    Ok(b.finish(out))
}
