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
//!
//! A conversation can be hibernated ([`Conversation::hibernate`]): its KV
//! cache goes to a file and its device memory is released; the next turn
//! restores it. The model's [`crate::HibernateOptions`] hibernate the least
//! recently used conversations when too many are resident, and idle ones
//! ([`crate::residency`]). The session is opened at the first turn.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use tessera_core::generate::{generate, GenerateParams, GenerateStats, StopReason};
use tessera_core::sample::SamplerConfig;
use tessera_tokenizer::{ChatRequest, EncodeOptions};

use crate::error::{Error, Result};
use crate::model::{Inner, Model};
use crate::residency::{HibernateRequest, Residency};

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

/// What a conversation's thread is asked to do.
enum Msg {
    Turn(Job),
    Hibernate(HibernateRequest),
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
    jobs: mpsc::Sender<Msg>,
    cancel: Arc<AtomicBool>,
    total: Usage,
    inner: Arc<Inner>,
    /// Its id among the model's residents.
    id: u64,
}

impl Conversation {
    /// A conversation with default options.
    pub fn new(model: &Model) -> Conversation {
        Conversation::with_options(model, ConversationOptions::default())
    }

    /// A conversation with `options`.
    pub fn with_options(model: &Model, options: ConversationOptions) -> Conversation {
        let (jobs, rx) = mpsc::channel::<Msg>();
        let cancel = Arc::new(AtomicBool::new(false));
        let inner = model.inner().clone();
        let control = jobs.clone();
        let id = inner.residents.register(Box::new(move |req| {
            control.send(Msg::Hibernate(req)).is_ok()
        }));
        let (worker_inner, flag) = (inner.clone(), cancel.clone());
        // A failed spawn leaves `rx` dropped: every submit then reports the
        // worker as stopped.
        let _ = std::thread::Builder::new()
            .name("tessera-conversation".into())
            .spawn(move || worker(&worker_inner, id, &options, &flag, rx));
        Conversation {
            jobs,
            cancel,
            total: Usage::default(),
            inner,
            id,
        }
    }

    /// Writes the conversation's KV cache to its hibernation file and
    /// releases its device memory; the next turn restores it (or rebuilds
    /// it from the token history if the file was damaged). Nothing to do
    /// before the first turn or when already hibernated.
    pub async fn hibernate(&self) -> Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Msg::Hibernate(tx))
            .map_err(|_| Error::Worker("conversation"))?;
        rx.await.map_err(|_| Error::Worker("conversation"))?
    }

    /// [`Conversation::hibernate`] on the calling thread (not from inside
    /// an async runtime).
    pub fn hibernate_blocking(&self) -> Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Msg::Hibernate(tx))
            .map_err(|_| Error::Worker("conversation"))?;
        rx.blocking_recv()
            .map_err(|_| Error::Worker("conversation"))?
    }

    /// Whether the KV cache is in device memory or hibernated (as of the
    /// last request the conversation's thread finished).
    pub fn residency(&self) -> Residency {
        self.inner.residents.residency(self.id)
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
        let sent = self.jobs.send(Msg::Turn(Job {
            message: message.into(),
            out,
        }));
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

impl Drop for Conversation {
    fn drop(&mut self) {
        // Its thread ends once every sender is gone, this registration's too.
        self.inner.residents.remove(self.id);
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

/// The conversation's thread: one session (opened at the first turn), the
/// history, one request at a time.
fn worker(
    inner: &Inner,
    id: u64,
    options: &ConversationOptions,
    cancel: &AtomicBool,
    jobs: mpsc::Receiver<Msg>,
) {
    let mut session: Option<tessera_core::Session<'_>> = None;
    let mut file: Option<PathBuf> = None;
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
    let idle = inner.residents.options().idle;
    loop {
        let resident = session
            .as_ref()
            .is_some_and(|s| s.residency() == Residency::Resident);
        let msg = match idle.filter(|_| resident) {
            Some(d) => match jobs.recv_timeout(d) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    let done = hibernate(inner, id, &mut session, &mut file);
                    inner.residents.hibernated(id, done.unwrap_or(false));
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match jobs.recv() {
                Ok(m) => m,
                Err(_) => break,
            },
        };
        let job = match msg {
            Msg::Hibernate(ack) => {
                let done = hibernate(inner, id, &mut session, &mut file);
                inner
                    .residents
                    .hibernated(id, *done.as_ref().unwrap_or(&false));
                let _ = ack.send(done.map(|_| ()));
                continue;
            }
            Msg::Turn(job) => job,
        };
        inner.residents.begin(id);
        let woken = open_or_wake(inner, &mut session);
        let resident = session
            .as_ref()
            .is_some_and(|s| s.residency() == Residency::Resident);
        let wake = woken.as_ref().ok().and_then(|w| w.as_ref());
        let result = match (&woken, session.as_mut()) {
            (Ok(_), Some(session)) => {
                messages.push(("user", job.message));
                let mut answer = String::new();
                let result = turn(inner, session, &messages, &params, cancel, |t| {
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
                result
            }
            (Err(e), _) => Err(Error::Config(format!("cannot open a session: {e}"))),
            (Ok(_), None) => Err(Error::Worker("conversation")),
        };
        inner.residents.end(id, resident, wake);
        let _ = job.out.send(Chunk::Done(result));
    }
    if let Some(f) = &file {
        crate::residency::remove_file(f);
    }
}

/// Opens the session at the first turn, or wakes it if it is hibernated
/// (how, when it was).
fn open_or_wake<'m>(
    inner: &'m Inner,
    session: &mut Option<tessera_core::Session<'m>>,
) -> tessera_core::Result<Option<tessera_core::Wake>> {
    match session {
        Some(s) if s.residency() == Residency::Hibernated => s.wake().map(Some),
        Some(_) => Ok(None),
        None => {
            *session = Some(inner.core.session(&inner.session)?);
            Ok(None)
        }
    }
}

/// Hibernates the session to the conversation's file; whether there was
/// anything to hibernate.
fn hibernate(
    inner: &Inner,
    id: u64,
    session: &mut Option<tessera_core::Session<'_>>,
    file: &mut Option<PathBuf>,
) -> Result<bool> {
    let Some(s) = session
        .as_mut()
        .filter(|s| s.residency() == Residency::Resident)
    else {
        return Ok(false);
    };
    if file.is_none() {
        *file = Some(inner.residents.file(id)?);
    }
    let path = file.as_deref().ok_or(Error::Worker("conversation"))?;
    s.hibernate(path)?;
    Ok(true)
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
