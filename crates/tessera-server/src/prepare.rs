//! Turns an OpenAI request into a [`GenRequest`]: checks every value
//! (a bad one is a 400 naming the field), renders chat messages through
//! the model's template and tokenizes the prompt.
//!
//! Sampling starts from llama.cpp's defaults (temperature 0.8, top-k 40,
//! top-p 0.95, min-p 0.05), as llama.cpp's server does, and each field
//! the request sets replaces its default.

use tessera_core::sample::SamplerConfig;
use tessera_tokenizer::{ChatRequest, ChatTemplates, EncodeOptions, Tokenizer};

use crate::error::ApiError;
use crate::job::GenRequest;
use crate::logprobs::MAX_TOP;
use crate::openai::chat::{ChatCompletionRequest, MessageContent};
use crate::openai::completion::{CompletionRequest, Prompt};
use crate::openai::{CommonParams, Stop};

/// Most stop strings a request may give.
const MAX_STOP: usize = 16;

/// A checked request: the work and how to answer.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The work.
    pub gen: GenRequest,
    /// Answer as server-sent events.
    pub stream: bool,
    /// In a stream, end with a usage chunk.
    pub include_usage: bool,
}

/// What the checks need to know about the model and the server.
pub struct Context<'a> {
    /// The tokenizer.
    pub tok: &'a Tokenizer,
    /// The chat templates.
    pub templates: &'a ChatTemplates,
    /// Tokens a slot holds.
    pub n_ctx: usize,
    /// `max_tokens` when a request gives none.
    pub default_max_tokens: Option<usize>,
}

/// A chat request: the messages rendered with the model's template.
pub fn chat(cx: &Context<'_>, req: &ChatCompletionRequest) -> Result<Prepared, ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::invalid_param("messages", "`messages` is empty"));
    }
    let mut chat = ChatRequest::new().generation_prompt(true);
    for (i, m) in req.messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "developer" => "system",
            r @ ("system" | "user" | "assistant" | "tool") => r,
            other => {
                return Err(ApiError::invalid_param(
                    &format!("messages[{i}].role"),
                    format!("unknown role `{other}` (system, developer, user, assistant or tool)"),
                ))
            }
        };
        let content = match &m.content {
            None => String::new(),
            Some(MessageContent::Text(t)) => t.clone(),
            Some(MessageContent::Parts(parts)) => {
                let mut text = String::new();
                for p in parts {
                    match (p.kind.as_str(), &p.text) {
                        ("text", Some(t)) => text.push_str(t),
                        (kind, _) => {
                            return Err(ApiError::invalid_param(
                                &format!("messages[{i}].content"),
                                format!(
                                    "content part of type `{kind}` is not supported \
                                     (only `text` with a `text` field)"
                                ),
                            ))
                        }
                    }
                }
                text
            }
        };
        chat = chat.message(role, &content);
    }
    let text = cx
        .templates
        .apply("default", &chat)
        .map_err(|e| ApiError::invalid_param("messages", format!("chat template: {e}")))?;
    let prompt = encode(cx.tok, &text)?;
    let max = req.max_completion_tokens.or(req.common.max_tokens);
    let logprobs = if req.logprobs == Some(true) {
        let n = req.top_logprobs.or(req.common.n_probs).unwrap_or(0);
        Some(count("top_logprobs", n, MAX_TOP)?)
    } else if req.top_logprobs.is_some_and(|n| n > 0) {
        return Err(ApiError::invalid_param(
            "top_logprobs",
            "`top_logprobs` needs `logprobs: true`",
        ));
    } else if let Some(n) = req.common.n_probs.filter(|&n| n > 0) {
        // llama.cpp's spelling, without `logprobs`.
        Some(count("n_probs", n, MAX_TOP)?)
    } else {
        None
    };
    finish(cx, &req.common, ("messages", prompt), max, logprobs)
}

/// A text completion request.
pub fn completion(cx: &Context<'_>, req: &CompletionRequest) -> Result<Prepared, ApiError> {
    if req.echo == Some(true) {
        return Err(ApiError::invalid_param("echo", "`echo` is not supported"));
    }
    if req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid_param(
            "suffix",
            "`suffix` is not supported",
        ));
    }
    let one = || {
        ApiError::invalid_param(
            "prompt",
            "one prompt per request is supported (send the others separately)",
        )
    };
    let prompt = match &req.prompt {
        Prompt::Text(t) => encode(cx.tok, t)?,
        Prompt::Texts(ts) if ts.len() == 1 => encode(cx.tok, &ts[0])?,
        Prompt::Tokens(ids) => ids.clone(),
        Prompt::TokenLists(ls) if ls.len() == 1 => ls[0].clone(),
        _ => return Err(one()),
    };
    let n_vocab = cx.tok.n_vocab();
    if let Some(bad) = prompt.iter().find(|&&t| t as usize >= n_vocab) {
        return Err(ApiError::invalid_param(
            "prompt",
            format!("token id {bad} is outside the vocabulary of {n_vocab}"),
        ));
    }
    let logprobs = match req.logprobs.or(req.common.n_probs) {
        Some(n) => Some(count("logprobs", n, MAX_TOP)?),
        None => None,
    };
    finish(
        cx,
        &req.common,
        ("prompt", prompt),
        req.common.max_tokens,
        logprobs,
    )
}

/// The checks both endpoints share; `source` names the field the prompt
/// came from.
fn finish(
    cx: &Context<'_>,
    c: &CommonParams,
    (source, prompt): (&str, Vec<u32>),
    max_tokens: Option<i64>,
    logprobs: Option<usize>,
) -> Result<Prepared, ApiError> {
    if prompt.is_empty() {
        return Err(ApiError::invalid_param(source, "the prompt is empty"));
    }
    if prompt.len() >= cx.n_ctx {
        return Err(ApiError::invalid_param(
            source,
            format!(
                "the prompt has {} tokens; the context holds {} \
                 (the prompt and at least one generated token)",
                prompt.len(),
                cx.n_ctx
            ),
        )
        .code("context_length_exceeded"));
    }
    if let Some(n) = c.n {
        if n != 1 {
            return Err(ApiError::invalid_param(
                "n",
                format!("`n` = {n}: only one choice per request is supported"),
            ));
        }
    }
    let max_tokens = match max_tokens {
        None => cx.default_max_tokens,
        Some(-1) => None,
        Some(n) if n >= 1 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        Some(n) => {
            return Err(ApiError::invalid_param(
                "max_tokens",
                format!("`max_tokens` = {n}: must be at least 1 (or -1: no limit)"),
            ))
        }
    };
    let stop = match &c.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s.clone()],
        Some(Stop::Many(v)) => v.clone(),
    };
    if stop.len() > MAX_STOP {
        return Err(ApiError::invalid_param(
            "stop",
            format!("{} stop strings: at most {MAX_STOP}", stop.len()),
        ));
    }
    if stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid_param("stop", "a stop string is empty"));
    }
    Ok(Prepared {
        gen: GenRequest {
            prompt,
            sampler: sampler(c, cx.tok.n_vocab())?,
            max_tokens,
            stop,
            logprobs,
        },
        stream: c.stream.unwrap_or(false),
        include_usage: c.stream_options.as_ref().is_some_and(|o| o.include_usage),
    })
}

/// The sampler: llama.cpp's defaults, then the request's fields.
fn sampler(c: &CommonParams, n_vocab: usize) -> Result<SamplerConfig, ApiError> {
    let mut s = SamplerConfig::default();
    if let Some(t) = c.temperature {
        s.temp = range("temperature", t, 0.0, 2.0)?;
    }
    if let Some(p) = c.top_p {
        s.top_p = range("top_p", p, 0.0, 1.0)?;
    }
    if let Some(k) = c.top_k {
        s.top_k = k;
    }
    if let Some(p) = c.min_p {
        s.min_p = range("min_p", p, 0.0, 1.0)?;
    }
    if let Some(p) = c.repeat_penalty {
        s.repeat_penalty = range("repeat_penalty", p, f32::MIN_POSITIVE, 100.0)?;
    }
    if let Some(p) = c.presence_penalty {
        s.presence_penalty = range("presence_penalty", p, -2.0, 2.0)?;
    }
    if let Some(p) = c.frequency_penalty {
        s.frequency_penalty = range("frequency_penalty", p, -2.0, 2.0)?;
    }
    s.seed = c.seed.map(|v| v as u64);
    for (key, &bias) in c.logit_bias.iter().flatten() {
        let id: u32 = key.trim().parse().map_err(|_| {
            ApiError::invalid_param(
                "logit_bias",
                format!("`logit_bias` key `{key}` is not a token id"),
            )
        })?;
        if id as usize >= n_vocab {
            return Err(ApiError::invalid_param(
                "logit_bias",
                format!("`logit_bias` token {id} is outside the vocabulary of {n_vocab}"),
            ));
        }
        let bias = range("logit_bias", bias, -100.0, 100.0)?;
        // OpenAI: -100 bans the token.
        s.logit_bias.push((
            id,
            if bias <= -100.0 {
                f32::NEG_INFINITY
            } else {
                bias
            },
        ));
    }
    s.validate(n_vocab)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(s)
}

fn range(name: &str, v: f32, lo: f32, hi: f32) -> Result<f32, ApiError> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(ApiError::invalid_param(
            name,
            format!("`{name}` = {v}: must be between {lo} and {hi}"),
        ))
    }
}

fn count(name: &str, n: i64, max: usize) -> Result<usize, ApiError> {
    usize::try_from(n)
        .ok()
        .filter(|&n| n <= max)
        .ok_or_else(|| {
            ApiError::invalid_param(name, format!("`{name}` = {n}: must be between 0 and {max}"))
        })
}

fn encode(tok: &Tokenizer, text: &str) -> Result<Vec<u32>, ApiError> {
    tok.encode(
        text,
        EncodeOptions {
            add_special: true,
            parse_special: true,
        },
    )
    .map_err(|e| ApiError::invalid_param("prompt", format!("cannot tokenize the prompt: {e}")))
}
