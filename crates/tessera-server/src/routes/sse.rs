//! A job's steps as server-sent events: the endpoint's opening chunks,
//! one chunk per step with text or log-probabilities, the closing chunks
//! and `data: [DONE]`; a failure mid-stream (timeout, shutdown) is sent as
//! `data: {"error":{…}}` and ends the stream, as OpenAI does.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;

use crate::generation::{Generation, Step};
use crate::job::Outcome;
use crate::openai::TokenLogprob;

/// How an endpoint writes its chunks (each one JSON text).
pub trait Chunks: Send + 'static {
    /// Chunks before the first token.
    fn opening(&mut self) -> Vec<String>;
    /// The chunk of one step (`None`: nothing to send).
    fn step(&mut self, text: String, logprob: Option<TokenLogprob>) -> Option<String>;
    /// Chunks after the last token.
    fn closing(&mut self, outcome: &Outcome) -> Vec<String>;
}

struct State<C> {
    gen: Generation,
    chunks: C,
    pending: VecDeque<String>,
    first: Option<Step>,
    done: bool,
}

/// The event stream of `gen`, whose first step was `first`.
pub fn respond<C: Chunks>(gen: Generation, first: Step, mut chunks: C) -> Response {
    let pending = chunks.opening().into();
    let state = State {
        gen,
        chunks,
        pending,
        first: Some(first),
        done: false,
    };
    let events = stream::unfold(state, |mut s| async move {
        loop {
            if let Some(data) = s.pending.pop_front() {
                return Some((Ok::<_, Infallible>(Event::default().data(data)), s));
            }
            if s.done {
                return None;
            }
            let step = match s.first.take() {
                Some(f) => f,
                None => s.gen.next().await,
            };
            match step {
                Step::Text { text, logprob } => s.pending.extend(s.chunks.step(text, logprob)),
                Step::End(o) => {
                    s.pending.extend(s.chunks.closing(&o));
                    s.pending.push_back("[DONE]".into());
                    s.done = true;
                }
                Step::Error(e) => {
                    s.pending.push_back(e.body().to_string());
                    s.done = true;
                }
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
