//! OpenAI's wire format, as serde types: what the completion endpoints
//! accept and what they answer. Only the shapes live here; turning a
//! request into work (and refusing bad values) is `prepare`'s job.
//!
//! - [`chat`]: `/v1/chat/completions` (request, response, stream chunk).
//! - [`completion`]: `/v1/completions` (the same three).
//! - this file: what both share — the sampling fields, `stop`, usage and
//!   the per-token log-probabilities.

pub mod chat;
pub mod completion;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The fields both completion endpoints take. Unknown fields are ignored
/// (as OpenAI's clients send some this server has no use for); llama.cpp's
/// extras `top_k`, `min_p`, `repeat_penalty` and `n_probs` are read too.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct CommonParams {
    /// Ignored: the server has one model (any name is accepted).
    pub model: Option<String>,
    /// Most tokens to generate.
    pub max_tokens: Option<i64>,
    /// Sampling temperature, 0 to 2 (0: greedy).
    pub temperature: Option<f32>,
    /// Nucleus sampling, 0 to 1.
    pub top_p: Option<f32>,
    /// Keep the k most likely tokens (llama.cpp's extra; 0: off).
    pub top_k: Option<i32>,
    /// Min-p (llama.cpp's extra).
    pub min_p: Option<f32>,
    /// Repetition penalty (llama.cpp's extra; 1: off).
    pub repeat_penalty: Option<f32>,
    /// Presence penalty, -2 to 2.
    pub presence_penalty: Option<f32>,
    /// Frequency penalty, -2 to 2.
    pub frequency_penalty: Option<f32>,
    /// Seed of the random draw.
    pub seed: Option<i64>,
    /// Token id (as a string) → bias added to its logit, -100 to 100
    /// (-100 bans the token).
    pub logit_bias: Option<BTreeMap<String, f32>>,
    /// Up to 16 strings that end the completion (not included).
    pub stop: Option<Stop>,
    /// Completions per request: only 1 is supported.
    pub n: Option<i64>,
    /// Stream the answer as server-sent events.
    pub stream: Option<bool>,
    /// Stream settings.
    pub stream_options: Option<StreamOptions>,
    /// llama.cpp's name for the number of alternatives per token.
    pub n_probs: Option<i64>,
    /// Ignored.
    pub user: Option<String>,
}

/// `stop`: one string or several.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct StreamOptions {
    /// Send a last chunk with the token counts (and no choices).
    pub include_usage: bool,
}

/// Token counts of one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of the prompt (the whole rendered conversation).
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// The sum.
    pub total_tokens: usize,
    /// Of the prompt tokens, those found in the slot's KV cache.
    pub prompt_tokens_details: PromptTokensDetails,
}

/// `usage.prompt_tokens_details`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens reused from the KV cache (not evaluated again).
    pub cached_tokens: usize,
}

impl Usage {
    /// Counts with their total.
    pub fn new(prompt: usize, cached: usize, completion: usize) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            prompt_tokens_details: PromptTokensDetails {
                cached_tokens: cached,
            },
        }
    }
}

/// One generated token's log-probability and its most likely
/// alternatives, from the model's distribution at that step (the softmax
/// of the raw logits, before logit bias, penalties and temperature).
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    /// The token's text (lossy when its bytes are not whole UTF-8).
    pub token: String,
    /// The token's bytes.
    pub bytes: Vec<u8>,
    /// Its natural-log probability.
    pub logprob: f32,
    /// The most likely tokens at that step, best first.
    pub top: Vec<Alternative>,
}

/// One alternative token at a step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alternative {
    /// Its text.
    pub token: String,
    /// Its natural-log probability.
    pub logprob: f32,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// `finish_reason` of a choice: `stop` (end of turn or a stop string) or
/// `length` (`max_tokens` or a full context).
pub type FinishReason = &'static str;
