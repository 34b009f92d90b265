//! `/v1/completions`: the request (a prompt and options), the whole answer
//! and the chunks of a streamed one (the same shape, `finish_reason` null
//! until the last).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{CommonParams, FinishReason, Usage};

/// A text completion request.
#[derive(Clone, Debug, Deserialize)]
pub struct CompletionRequest {
    /// The text to continue (one prompt per request).
    pub prompt: Prompt,
    /// Return each token's log-probability and this many alternatives (0 to 20).
    #[serde(default)]
    pub logprobs: Option<i64>,
    /// Return the prompt before the completion: only `false` is supported.
    #[serde(default)]
    pub echo: Option<bool>,
    /// Text after the completion: not supported.
    #[serde(default)]
    pub suffix: Option<String>,
    /// The fields shared with `/v1/chat/completions`.
    #[serde(flatten)]
    pub common: CommonParams,
}

/// `prompt`: text or token ids, one or a list (of which only one prompt
/// per request is supported).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// Text.
    Text(String),
    /// Token ids.
    Tokens(Vec<u32>),
    /// Several texts.
    Texts(Vec<String>),
    /// Several lists of token ids.
    TokenLists(Vec<Vec<u32>>),
}

/// A whole completion, or one chunk of a streamed one.
#[derive(Clone, Debug, Serialize)]
pub struct Completion {
    /// `cmpl-…`.
    pub id: String,
    /// `text_completion`.
    pub object: &'static str,
    /// Unix time, seconds.
    pub created: u64,
    /// The model's name.
    pub model: String,
    /// The server's build.
    pub system_fingerprint: &'static str,
    /// One choice (none in a stream's usage chunk).
    pub choices: Vec<CompletionChoice>,
    /// Token counts (whole answers, and a stream's usage chunk).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// The completion.
#[derive(Clone, Debug, Serialize)]
pub struct CompletionChoice {
    /// The text (this chunk's, when streamed).
    pub text: String,
    /// 0.
    pub index: u32,
    /// Log-probabilities, when asked for.
    pub logprobs: Option<CompletionLogprobs>,
    /// `stop` or `length`; null in the chunks before the last.
    pub finish_reason: Option<FinishReason>,
}

/// The legacy completions' `logprobs`: parallel lists, one entry per token.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CompletionLogprobs {
    /// Each token's text.
    pub tokens: Vec<String>,
    /// Each token's log-probability.
    pub token_logprobs: Vec<f32>,
    /// Each step's alternatives: text → log-probability.
    pub top_logprobs: Vec<BTreeMap<String, f32>>,
    /// Each token's byte offset in the completion's text.
    pub text_offset: Vec<usize>,
}
