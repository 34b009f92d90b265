//! `POST /v1/completions`: a prompt continued by a slot, answered whole or
//! streamed, with the legacy `logprobs` lists.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::app::{unix_now, App};
use crate::error::ApiError;
use crate::job::Outcome;
use crate::openai::completion::{Completion, CompletionChoice, CompletionLogprobs};
use crate::openai::{TokenLogprob, Usage};
use crate::prepare;
use crate::routes::sse::{self, Chunks};
use crate::FINGERPRINT;

/// The handler.
pub async fn handle(
    State(app): State<Arc<App>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let super::Started {
        gen,
        first,
        stream,
        include_usage,
        logprobs,
    } = super::start(&app, body, prepare::completion).await?;
    let mut out = CompletionStream {
        id: app.new_id("cmpl"),
        created: unix_now(),
        model: app.config.model_name.clone(),
        include_usage,
        offset: 0,
    };
    if stream {
        return Ok(sse::respond(gen, first, out));
    }
    let (whole, o) = gen.collect(first).await?;
    let logprobs = logprobs.then(|| {
        let mut l = CompletionLogprobs::default();
        for (lp, offset) in &whole.logprobs {
            add(&mut l, lp, *offset);
        }
        l
    });
    let choice = CompletionChoice {
        text: whole.text,
        index: 0,
        logprobs,
        finish_reason: Some(o.finish.reason().unwrap_or("stop")),
    };
    out.include_usage = true;
    Ok(Json(out.completion(vec![choice], Some(usage(&o)))).into_response())
}

fn usage(o: &Outcome) -> Usage {
    Usage::new(o.prompt_tokens, o.cached_tokens, o.completion_tokens)
}

/// Appends one token to the parallel lists.
fn add(l: &mut CompletionLogprobs, lp: &TokenLogprob, offset: usize) {
    l.tokens.push(lp.token.clone());
    l.token_logprobs.push(lp.logprob);
    l.top_logprobs.push(
        lp.top
            .iter()
            .map(|a| (a.token.clone(), a.logprob))
            .collect::<BTreeMap<_, _>>(),
    );
    l.text_offset.push(offset);
}

/// The chunks of a streamed completion (and the whole answer's frame).
struct CompletionStream {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    /// Bytes of text sent so far.
    offset: usize,
}

impl CompletionStream {
    fn completion(&self, choices: Vec<CompletionChoice>, usage: Option<Usage>) -> Completion {
        Completion {
            id: self.id.clone(),
            object: "text_completion",
            created: self.created,
            model: self.model.clone(),
            system_fingerprint: FINGERPRINT,
            choices,
            usage: usage.filter(|_| self.include_usage),
        }
    }

    fn chunk(&self, choices: Vec<CompletionChoice>, usage: Option<Usage>) -> String {
        serde_json::to_string(&self.completion(choices, usage)).unwrap_or_default()
    }
}

impl Chunks for CompletionStream {
    fn opening(&mut self) -> Vec<String> {
        Vec::new()
    }

    fn step(&mut self, text: String, logprob: Option<TokenLogprob>) -> Option<String> {
        if text.is_empty() && logprob.is_none() {
            return None;
        }
        let logprobs = logprob.map(|lp| {
            let mut l = CompletionLogprobs::default();
            add(&mut l, &lp, self.offset);
            l
        });
        self.offset += text.len();
        let choice = CompletionChoice {
            text,
            index: 0,
            logprobs,
            finish_reason: None,
        };
        Some(self.chunk(vec![choice], None))
    }

    fn closing(&mut self, o: &Outcome) -> Vec<String> {
        let last = CompletionChoice {
            text: String::new(),
            index: 0,
            logprobs: None,
            finish_reason: o.finish.reason(),
        };
        let mut out = vec![self.chunk(vec![last], None)];
        if self.include_usage {
            out.push(self.chunk(Vec::new(), Some(usage(o))));
        }
        out
    }
}
