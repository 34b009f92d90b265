//! [`Active`]: one request in flight on a slot — its sampler, stop
//! strings, text stream, counts and events. The [`crate::engine`] has it
//! evaluate its prompt chunk by chunk ([`Active::prefill`]), then advances
//! it one token at a time ([`Active::advance`]), evaluating the tokens of
//! several requests in one batched step.
//!
//! It keeps `tessera_core::generate`'s semantics (the server has its own
//! loop because it needs each step's raw logits for log-probabilities and
//! a cancel flag checked at every token): the sampler sees the prompt,
//! text is released whole-character and stop-string-safe, an
//! end-of-generation token ends the turn and is not shown, a full context
//! ends it as `length`.

use std::time::{Duration, Instant};

use tessera_core::sample::{Sampler, StopStrings};
use tessera_core::{CoreError, Logits, Session};
use tessera_tokenizer::{StreamDecoder, Tokenizer};

use crate::error::ApiError;
use crate::job::{Event, Finish, Job, Outcome};
use crate::logprobs::Scratch;
use crate::metrics::Metrics;
use crate::slots::common_prefix;

/// What a request needs next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Evaluate this token (then call [`Active::advance`] with its logits).
    Eval(u32),
    /// It ended.
    Done(Finish),
}

/// A request being generated.
pub struct Active<'m> {
    /// The job: request, event channel, cancel flag.
    pub job: Job,
    /// The slot (session) it runs on.
    pub slot: usize,
    tok: &'m Tokenizer,
    sampler: Sampler,
    stops: StopStrings,
    stream: StreamDecoder<'m>,
    cached: usize,
    /// Prompt tokens in the session.
    evaluated: usize,
    n_gen: usize,
    queued: Duration,
    prompt_time: Duration,
    gen_start: Instant,
}

/// The engine's error as a client sees it.
pub fn engine_error(e: CoreError) -> ApiError {
    match e {
        CoreError::ContextFull { needed, n_ctx } => ApiError::invalid(format!(
            "the request needs {needed} tokens, more than the context of {n_ctx}"
        ))
        .code("context_length_exceeded"),
        CoreError::Input(m) => ApiError::invalid(m),
        e => ApiError::internal(e.to_string()),
    }
}

impl<'m> Active<'m> {
    /// Starts `job` on `session`: checks it, sets up its sampler and stop
    /// strings and cuts the session back to the prefix it shares with the
    /// prompt (keeping at least the last prompt token to evaluate, so there
    /// are logits to sample from). The prompt is evaluated after, chunk by
    /// chunk ([`Active::prefill`]). The job comes back with the error when
    /// it cannot start.
    pub fn start(
        session: &mut Session<'m>,
        job: Job,
        slot: usize,
    ) -> Result<Active<'m>, Box<(Job, ApiError)>> {
        let queued = job.queued_at.elapsed();
        match Self::setup(session, &job) {
            Ok((sampler, stops, cached)) => {
                let tok = session.model().tokenizer();
                Ok(Active {
                    queued,
                    job,
                    slot,
                    tok,
                    sampler,
                    stops,
                    stream: tok.stream(),
                    cached,
                    evaluated: cached,
                    n_gen: 0,
                    prompt_time: Duration::ZERO,
                    gen_start: Instant::now(),
                })
            }
            Err(e) => Err(Box::new((job, e))),
        }
    }

    fn setup(
        session: &mut Session<'m>,
        job: &Job,
    ) -> Result<(Sampler, StopStrings, usize), ApiError> {
        let req = &job.req;
        let prompt = &req.prompt[..];
        if prompt.is_empty() {
            return Err(ApiError::invalid("the prompt is empty"));
        }
        if prompt.len() >= session.n_ctx() {
            return Err(engine_error(CoreError::ContextFull {
                needed: prompt.len() + 1,
                n_ctx: session.n_ctx(),
            }));
        }
        let n_vocab = session.model().hparams().n_vocab;
        let mut sampler = Sampler::new(req.sampler.clone(), n_vocab)
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        for &t in prompt {
            sampler.accept(t);
        }
        let stops = StopStrings::new(req.stop.clone())
            .map_err(|e| ApiError::invalid_param("stop", e.to_string()))?;
        let keep = common_prefix(session.tokens(), prompt).min(prompt.len() - 1);
        session.truncate(keep);
        Ok((sampler, stops, keep))
    }

    /// Tokens it may still generate (`None`: no `max_tokens`).
    pub fn tokens_left(&self) -> Option<usize> {
        self.job
            .req
            .max_tokens
            .map(|m| m.saturating_sub(self.n_gen))
    }

    /// Whether the whole prompt is evaluated (sampling may begin).
    pub fn prefilled(&self) -> bool {
        self.evaluated == self.job.req.prompt.len()
    }

    /// Evaluates the next `chunk` tokens (at most) of the prompt. Chunks
    /// of the session's micro-batch size cut the prompt where one `eval`
    /// of it would, so the result does not depend on the chunking.
    pub fn prefill(
        &mut self,
        session: &mut Session<'m>,
        chunk: usize,
        metrics: &Metrics,
    ) -> Result<(), ApiError> {
        let prompt = &self.job.req.prompt;
        let end = (self.evaluated + chunk.max(1)).min(prompt.len());
        let t0 = Instant::now();
        session
            .eval(&prompt[self.evaluated..end], Logits::Last)
            .map_err(engine_error)?;
        self.prompt_time += t0.elapsed();
        metrics.prompt_evaluated(end - self.evaluated);
        metrics.set_slot_tokens(self.slot, session.n_past());
        self.evaluated = end;
        if self.prefilled() {
            self.gen_start = Instant::now();
        }
        Ok(())
    }

    /// Samples the next token from `logits` (those of the last token
    /// evaluated for this request), sends its text, and says whether to
    /// evaluate it or why the request ended.
    pub fn advance(
        &mut self,
        logits: &[f32],
        scratch: &mut Scratch,
        metrics: &Metrics,
    ) -> Result<Next, ApiError> {
        let req = &self.job.req;
        let over = |n: usize| req.max_tokens.is_some_and(|m| n >= m);
        if over(self.n_gen) {
            return Ok(Next::Done(Finish::Length));
        }
        if self.job.cancel.is_cancelled() {
            return Ok(Next::Done(Finish::Cancelled));
        }
        let t = self
            .sampler
            .sample(logits)
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        let logprob = req.logprobs.map(|n| scratch.entry(logits, t, n, self.tok));
        self.sampler.accept(t);
        self.n_gen += 1;
        metrics.token_generated();
        if self.tok.is_eog(t) {
            return Ok(Next::Done(Finish::Stop));
        }
        let piece = self
            .stream
            .push(t)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let out = self.stops.push(&piece);
        let sent = self.job.events.send(Event::Token {
            text: out.text,
            logprob,
        });
        if sent.is_err() {
            return Ok(Next::Done(Finish::Cancelled));
        }
        if out.stopped {
            return Ok(Next::Done(Finish::Stop));
        }
        if over(self.n_gen) {
            return Ok(Next::Done(Finish::Length));
        }
        Ok(Next::Eval(t))
    }

    /// Ends the request: sends the text held back (unless it was cancelled
    /// or stopped) and gives back the job and how it went.
    pub fn finish(mut self, finish: Finish) -> (Job, Outcome) {
        if finish != Finish::Cancelled && !self.stops.is_stopped() {
            let mut tail = self.stops.finish();
            tail.push_str(&self.stream.finish());
            if !tail.is_empty() {
                let _ = self.job.events.send(Event::Token {
                    text: tail,
                    logprob: None,
                });
            }
        }
        let outcome = Outcome {
            finish,
            prompt_tokens: self.job.req.prompt.len(),
            cached_tokens: self.cached,
            completion_tokens: self.n_gen,
            slot: self.slot,
            queued: self.queued,
            prompt_time: self.prompt_time,
            gen_time: self.gen_start.elapsed(),
        };
        (self.job, outcome)
    }
}
