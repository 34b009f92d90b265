//! [`Conversation`]: a multi-turn chat with a [`Model`] through the model's
//! chat template.
//!
//! Each conversation has a thread of its own that owns its session (its KV
//! cache): requests go to it over a channel, text comes back as it is
//! generated. Several conversations on one model run at once and share the
//! weights. Each turn renders the whole conversation with the template and
//! evaluates only the tokens after what the session already holds, so the
//! cache is reused across turns (as `tessera chat` does).
//!
//! A reply ends at the end of the assistant's turn, at `max_tokens`, at a
//! stop string, when [`CancelHandle::cancel`] is called or when its
//! [`ReplyStream`] is dropped; what was generated until then stays in the
//! history.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use tessera_core::generate::{generate, GenerateParams, GenerateStats, StopReason};
use tessera_core::sample::SamplerConfig;
use tessera_tokenizer::{ChatRequest, EncodeOptions};

use crate::error::{Error, Result};
use crate::model::{Inner, Model};

/// How a conversation generates.
#[derive(Clone, Debug, Default)]
pub struct ConversationOptions {
    /// The system message that opens the conversation.
    pub system: Option<String>,
    /// The sampler (temperature, top-k/p, min-p, penalties, seed).
    pub sampling: SamplerConfig,
    /// Most tokens per reply (`None`: until the end of the turn or the
    /// context).
    pub max_tokens: Option<usize>,
    /// Strings that end a reply (not included in it).
    pub stop: Vec<String>,
}

impl ConversationOptions {
    /// The system message.
    pub fn system(mut self, text: impl Into<String>) -> Self {
        self.system = Some(text.into());
        self
    }

    /// The sampler.
    pub fn sampling(mut self, sampling: SamplerConfig) -> Self {
        self.sampling = sampling;
        self
    }

    /// Always the most likely token (temperature 0): the same reply every time.
    pub fn greedy(mut self) -> Self {
        self.sampling.temp = 0.0;
        self
    }

    /// Most tokens per reply.
    pub fn max_tokens(mut self, n: usize) -> Self {
        self.max_tokens = Some(n);
        self
    }

    /// One more stop string.
    pub fn stop(mut self, s: impl Into<String>) -> Self {
        self.stop.push(s.into());
        self
    }
}

/// Tokens a reply used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Tokens of the rendered conversation the model read (the whole
    /// prompt, including what the cache already held).
    pub prompt_tokens: usize,
    /// Of those, the tokens evaluated for this reply (the rest came from
    /// the cache).
    pub evaluated_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
}

/// Why a reply ended.
pub type FinishReason = StopReason;

/// A whole reply.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The text.
    pub text: String,
    /// Token counts.
    pub usage: Usage,
    /// Why it ended.
    pub finish: FinishReason,
    /// Counts and timings of the prompt evaluation and the generation.
    pub stats: GenerateStats,
}

/// Stops the reply being generated (from any thread).
#[derive(Clone, Debug)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    /// Ends the current reply after the token being generated.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// How a reply ended.
#[derive(Clone, Copy, Debug)]
struct End {
    usage: Usage,
    stats: GenerateStats,
}

impl End {
    /// The end of a reply that never started.
    fn failed() -> End {
        End {
            usage: Usage::default(),
            stats: GenerateStats {
                n_prompt: 0,
                prompt_time: Default::default(),
                n_gen: 0,
                gen_time: Default::default(),
                stop: StopReason::Cancelled,
            },
        }
    }
}

/// What the worker sends back for one request.
enum Chunk {
    Text(String),
    Done(Result<End>),
}

struct Job {
    message: String,
    out: tokio::sync::mpsc::UnboundedSender<Chunk>,
}

/// A multi-turn conversation with a model.
///
/// ```no_run
/// # async fn demo() -> Result<(), tessera::Error> {
/// let model = tessera::Model::load("smollm2:135m", Default::default()).await?;
/// let mut chat = tessera::Conversation::new(&model);
/// println!("{}", chat.submit("What is the capital of France?").await?.text);
/// # Ok(()) }
/// ```
pub struct Conversation {
    jobs: mpsc::Sender<Job>,
    cancel: Arc<AtomicBool>,
    total: Usage,
}

impl Conversation {
    /// A conversation with default options.
    pub fn new(model: &Model) -> Conversation {
        Conversation::with_options(model, ConversationOptions::default())
    }

    /// A conversation with `options`.
    pub fn with_options(model: &Model, options: ConversationOptions) -> Conversation {
        let (jobs, rx) = mpsc::channel::<Job>();
        let cancel = Arc::new(AtomicBool::new(false));
        let inner = model.inner().clone();
        let flag = cancel.clone();
        // A failed spawn leaves `rx` dropped: every submit then reports the
        // worker as stopped.
        let _ = std::thread::Builder::new()
            .name("tessera-conversation".into())
            .spawn(move || worker(&inner, &options, &flag, rx));
        Conversation {
            jobs,
            cancel,
            total: Usage::default(),
        }
    }

    /// [`Conversation::submit`] on the calling thread, for programs without
    /// an async runtime.
    pub fn submit_blocking(&mut self, message: impl Into<String>) -> Result<Reply> {
        let mut stream = self.submit_stream(message);
        let mut text = String::new();
        while let Some(piece) = stream.next_blocking() {
            text.push_str(&piece?);
        }
        self.reply(text, &stream)
    }

    /// Sends a user message and waits for the whole reply.
    pub async fn submit(&mut self, message: impl Into<String>) -> Result<Reply> {
        let mut stream = self.submit_stream(message);
        let mut text = String::new();
        while let Some(piece) = std::future::poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await
        {
            text.push_str(&piece?);
        }
        self.reply(text, &stream)
    }

    /// Sends a user message; the reply comes as a stream of text pieces
    /// (each one final: UTF-8 whole, stop strings held back). After the
    /// stream ends, [`ReplyStream::usage`] and [`ReplyStream::finish`] tell
    /// the rest. Dropping the stream cancels the reply.
    pub fn submit_stream(&mut self, message: impl Into<String>) -> ReplyStream {
        let (out, rx) = tokio::sync::mpsc::unbounded_channel();
        self.cancel.store(false, Ordering::Relaxed);
        let sent = self.jobs.send(Job {
            message: message.into(),
            out,
        });
        ReplyStream {
            rx: sent.is_ok().then_some(rx),
            end: None,
        }
    }

    /// The whole reply of an ended stream, its counts added to the total.
    fn reply(&mut self, text: String, stream: &ReplyStream) -> Result<Reply> {
        let end = stream.end.ok_or(Error::Worker("conversation"))?;
        self.add(end.usage);
        Ok(Reply {
            text,
            usage: end.usage,
            finish: end.stats.stop,
            stats: end.stats,
        })
    }

    /// A handle that cancels the reply being generated.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle(self.cancel.clone())
    }

    /// Tokens used by the whole conversation so far (replies taken with
    /// [`Conversation::submit`], and streams after [`Conversation::record`]).
    pub fn usage(&self) -> Usage {
        self.total
    }

    /// Adds a finished stream's counts to [`Conversation::usage`].
    pub fn record(&mut self, stream: &ReplyStream) {
        if let Some(u) = stream.usage() {
            self.add(u);
        }
    }

    fn add(&mut self, u: Usage) {
        self.total.prompt_tokens += u.prompt_tokens;
        self.total.evaluated_tokens += u.evaluated_tokens;
        self.total.completion_tokens += u.completion_tokens;
    }
}

/// The text of one reply as it is generated.
pub struct ReplyStream {
    rx: Option<tokio::sync::mpsc::UnboundedReceiver<Chunk>>,
    end: Option<End>,
}

impl ReplyStream {
    /// The reply's token counts, once the stream has ended.
    pub fn usage(&self) -> Option<Usage> {
        self.end.map(|e| e.usage)
    }

    /// Why the reply ended, once the stream has ended.
    pub fn finish(&self) -> Option<FinishReason> {
        self.end.map(|e| e.stats.stop)
    }

    /// Counts and timings, once the stream has ended.
    pub fn stats(&self) -> Option<GenerateStats> {
        self.end.map(|e| e.stats)
    }

    /// The next piece, waiting on this thread: for programs without an
    /// async runtime (must not be called from inside one).
    pub fn next_blocking(&mut self) -> Option<Result<String>> {
        let Some(rx) = self.rx.as_mut() else {
            return self.close(None);
        };
        let chunk = rx.blocking_recv();
        self.take(chunk)
    }

    /// What a received chunk (or the channel's end) means.
    fn take(&mut self, chunk: Option<Chunk>) -> Option<Result<String>> {
        match chunk {
            Some(Chunk::Text(t)) => Some(Ok(t)),
            Some(Chunk::Done(Ok(end))) => {
                self.rx = None;
                self.end = Some(end);
                None
            }
            Some(Chunk::Done(Err(e))) => self.close(Some(e)),
            // The worker went away without a word.
            None => self.close(Some(Error::Worker("conversation"))),
        }
    }

    /// Ends the stream, with `error` as its last item if there is one (and
    /// none before the stream has ever ended).
    fn close(&mut self, error: Option<Error>) -> Option<Result<String>> {
        self.rx = None;
        if self.end.is_some() {
            return None;
        }
        self.end = Some(End::failed());
        Some(Err(error.unwrap_or(Error::Worker("conversation"))))
    }
}

impl Stream for ReplyStream {
    type Item = Result<String>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(rx) = self.rx.as_mut() else {
            return Poll::Ready(self.close(None));
        };
        match rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(chunk) => Poll::Ready(self.take(chunk)),
        }
    }
}

/// The conversation's thread: one session, the history, one job at a time.
fn worker(
    inner: &Inner,
    options: &ConversationOptions,
    cancel: &AtomicBool,
    jobs: mpsc::Receiver<Job>,
) {
    let mut session = match inner.core.session(&inner.session) {
        Ok(s) => s,
        Err(e) => {
            // Every request gets the reason.
            let msg = e.to_string();
            for job in jobs {
                let _ = job.out.send(Chunk::Done(Err(Error::Config(format!(
                    "cannot open a session: {msg}"
                )))));
            }
            return;
        }
    };
    let mut messages: Vec<(&'static str, String)> = Vec::new();
    if let Some(s) = &options.system {
        messages.push(("system", s.clone()));
    }
    let params = GenerateParams {
        n_predict: options.max_tokens,
        sampler: options.sampling.clone(),
        stop: options.stop.clone(),
        ignore_eos: false,
    };
    for job in jobs {
        messages.push(("user", job.message));
        let mut answer = String::new();
        let result = turn(inner, &mut session, &messages, &params, cancel, |t| {
            answer.push_str(t);
            job.out.send(Chunk::Text(t.to_string())).is_ok()
        });
        match result {
            Ok(_) => messages.push(("assistant", answer.trim().to_string())),
            // The turn did not happen: forget the message.
            Err(_) => {
                messages.pop();
            }
        }
        let _ = job.out.send(Chunk::Done(result));
    }
}

/// One turn: render, reuse the cached prefix, generate.
fn turn(
    inner: &Inner,
    session: &mut tessera_core::Session<'_>,
    messages: &[(&str, String)],
    params: &GenerateParams,
    cancel: &AtomicBool,
    mut on_text: impl FnMut(&str) -> bool,
) -> Result<End> {
    let tok = inner.core.tokenizer();
    let req = messages
        .iter()
        .fold(ChatRequest::new(), |r, (role, content)| {
            r.message(role, content)
        })
        .generation_prompt(true);
    let text = inner.templates.render(&req)?;
    let all = tok.encode(
        &text,
        EncodeOptions {
            add_special: true,
            parse_special: true,
        },
    )?;
    if all.len() >= session.n_ctx() {
        return Err(Error::ContextFull {
            tokens: all.len(),
            n_ctx: session.n_ctx(),
        });
    }
    let common = session
        .tokens()
        .iter()
        .zip(&all)
        .take_while(|(a, b)| a == b)
        .count();
    // At least one token is evaluated, so there are logits to sample from.
    let keep = common.min(all.len() - 1);
    session.truncate(keep);
    let (_, stats) = generate(session, &all[keep..], params, |piece| {
        !cancel.load(Ordering::Relaxed) && on_text(piece)
    })?;
    Ok(End {
        usage: Usage {
            prompt_tokens: all.len(),
            evaluated_tokens: all.len() - keep,
            completion_tokens: stats.n_gen,
        },
        stats,
    })
}
