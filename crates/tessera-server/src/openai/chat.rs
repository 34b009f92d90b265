//! `/v1/chat/completions`: the request (messages and options), the whole
//! answer and the chunks of a streamed one.

use serde::{Deserialize, Serialize};

use super::{Alternative, CommonParams, FinishReason, TokenLogprob, Usage};

/// A chat completion request.
#[derive(Clone, Debug, Deserialize)]
pub struct ChatCompletionRequest {
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// OpenAI's newer name for `max_tokens` (wins when both are given).
    #[serde(default)]
    pub max_completion_tokens: Option<i64>,
    /// Return each token's log-probability.
    #[serde(default)]
    pub logprobs: Option<bool>,
    /// With `logprobs`, this many alternatives per token (0 to 20).
    #[serde(default)]
    pub top_logprobs: Option<i64>,
    /// The fields shared with `/v1/completions`.
    #[serde(flatten)]
    pub common: CommonParams,
}

/// One message.
#[derive(Clone, Debug, Deserialize)]
pub struct ChatMessage {
    /// `system`, `developer` (read as `system`), `user`, `assistant` or `tool`.
    pub role: String,
    /// The text, or a list of parts of which the `text` ones are read;
    /// `null` is an empty message.
    #[serde(default)]
    pub content: Option<MessageContent>,
}

/// A message's content.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Parts (`{"type":"text","text":"…"}`; other types are refused).
    Parts(Vec<ContentPart>),
}

/// One part of a message.
#[derive(Clone, Debug, Deserialize)]
pub struct ContentPart {
    /// The part's type: only `text` is supported.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default)]
    pub text: Option<String>,
}

/// A whole chat completion.
#[derive(Clone, Debug, Serialize)]
pub struct ChatCompletion {
    /// `chatcmpl-…`.
    pub id: String,
    /// `chat.completion`.
    pub object: &'static str,
    /// Unix time, seconds.
    pub created: u64,
    /// The model's name.
    pub model: String,
    /// The server's build.
    pub system_fingerprint: &'static str,
    /// One choice.
    pub choices: Vec<ChatChoice>,
    /// Token counts.
    pub usage: Usage,
}

/// The answer.
#[derive(Clone, Debug, Serialize)]
pub struct ChatChoice {
    /// 0.
    pub index: u32,
    /// The assistant's message.
    pub message: AssistantMessage,
    /// Per-token log-probabilities, when asked for.
    pub logprobs: Option<ChatLogprobs>,
    /// `stop` or `length`.
    pub finish_reason: FinishReason,
}

/// The assistant's message.
#[derive(Clone, Debug, Serialize)]
pub struct AssistantMessage {
    /// `assistant`.
    pub role: &'static str,
    /// The text.
    pub content: String,
}

/// `logprobs` of a chat choice.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ChatLogprobs {
    /// One entry per generated token.
    pub content: Vec<ChatTokenLogprob>,
}

/// One token's entry.
#[derive(Clone, Debug, Serialize)]
pub struct ChatTokenLogprob {
    /// Its text.
    pub token: String,
    /// Its log-probability.
    pub logprob: f32,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// The most likely tokens at that step.
    pub top_logprobs: Vec<Alternative>,
}

impl From<&TokenLogprob> for ChatTokenLogprob {
    fn from(t: &TokenLogprob) -> Self {
        ChatTokenLogprob {
            token: t.token.clone(),
            logprob: t.logprob,
            bytes: t.bytes.clone(),
            top_logprobs: t.top.clone(),
        }
    }
}

/// One chunk of a streamed chat completion.
#[derive(Clone, Debug, Serialize)]
pub struct ChatChunk {
    /// The same id for every chunk of a completion.
    pub id: String,
    /// `chat.completion.chunk`.
    pub object: &'static str,
    /// Unix time, seconds.
    pub created: u64,
    /// The model's name.
    pub model: String,
    /// The server's build.
    pub system_fingerprint: &'static str,
    /// One choice, or none in the usage chunk.
    pub choices: Vec<ChunkChoice>,
    /// Token counts, in the last chunk when `stream_options.include_usage`
    /// (`null` in the others then; absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
}

/// A chunk's choice.
#[derive(Clone, Debug, Serialize)]
pub struct ChunkChoice {
    /// 0.
    pub index: u32,
    /// What this chunk adds.
    pub delta: Delta,
    /// This chunk's tokens' log-probabilities, when asked for.
    pub logprobs: Option<ChatLogprobs>,
    /// Set in the last chunk with a choice.
    pub finish_reason: Option<FinishReason>,
}

/// What a chunk adds to the message.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Delta {
    /// `assistant`, in the first chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// More text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}
