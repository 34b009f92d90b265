//! A unit of work and what comes back from it: [`GenRequest`] (prompt
//! tokens and how to generate, already checked), [`Job`] (a request on its
//! way to a slot, with the channel its [`Event`]s go back on and its
//! cancel flag) and [`Outcome`] (why and after how many tokens it ended).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tessera_core::sample::SamplerConfig;
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::openai::TokenLogprob;

/// What to generate, checked and tokenized.
#[derive(Clone, Debug)]
pub struct GenRequest {
    /// The whole prompt (a slot reuses what its cache holds of it).
    pub prompt: Vec<u32>,
    /// The sampler.
    pub sampler: SamplerConfig,
    /// Most tokens to generate (`None`: until end of generation or a full
    /// context).
    pub max_tokens: Option<usize>,
    /// Strings that end the text (not included).
    pub stop: Vec<String>,
    /// Log-probabilities: `None` for none, `Some(n)` for each token's and
    /// `n` alternatives.
    pub logprobs: Option<usize>,
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens`, or the context is full.
    Length,
    /// Cancelled: the client went away, the request timed out or the
    /// server is shutting down.
    Cancelled,
}

impl Finish {
    /// OpenAI's `finish_reason` (`None` for a cancelled generation, which
    /// is answered with an error instead).
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Finish::Stop => Some("stop"),
            Finish::Length => Some("length"),
            Finish::Cancelled => None,
        }
    }
}

/// How a generation ended.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// Why.
    pub finish: Finish,
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// Of those, the tokens the slot's cache already held.
    pub cached_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// The slot that ran it.
    pub slot: usize,
    /// Time in the queue.
    pub queued: Duration,
    /// Time to evaluate the prompt.
    pub prompt_time: Duration,
    /// Time to generate.
    pub gen_time: Duration,
}

/// What a slot sends back while it works on a job.
#[derive(Debug)]
pub enum Event {
    /// One generated token: the text it lets through (possibly empty: a
    /// character or a possible stop string not yet complete) and its
    /// log-probabilities when asked for. The tail held back at the end
    /// comes as a last `Token` with no log-probabilities.
    Token {
        /// Text to append.
        text: String,
        /// The token's log-probabilities.
        logprob: Option<TokenLogprob>,
    },
    /// The generation ended.
    Done(Outcome),
    /// The generation failed.
    Failed(ApiError),
}

/// Cancels a job: set by the handler when its client goes away or its
/// time is up, by the server at shutdown.
#[derive(Clone, Debug, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    /// Asks the job to stop (after the token being generated).
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether the job was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A request on its way to a slot.
#[derive(Debug)]
pub struct Job {
    /// What to generate.
    pub req: GenRequest,
    /// Where its events go.
    pub events: mpsc::UnboundedSender<Event>,
    /// Its cancel flag.
    pub cancel: CancelFlag,
    /// When it was queued.
    pub queued_at: std::time::Instant,
}

impl Job {
    /// Whether nobody waits for it any more (cancelled, or its receiver dropped).
    pub fn abandoned(&self) -> bool {
        self.cancel.is_cancelled() || self.events.is_closed()
    }
}
