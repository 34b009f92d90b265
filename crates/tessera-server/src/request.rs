//! [`Active`]: one request in flight on a slot — its sampler, stop
//! strings, text stream, counts and events — advanced one token at a time
//! by the [`crate::engine`], which evaluates the tokens (several requests'
//! in one batched step).
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
    /// Starts `job` on `session`: reuses the cached prefix and evaluates
    /// the rest of the prompt (at least its last token, so there are
    /// logits to sample from). The job comes back with the error when it
    /// cannot start.
    pub fn start(
        session: &mut Session<'m>,
        job: Job,
        slot: usize,
        metrics: &Metrics,
    ) -> Result<Active<'m>, Box<(Job, ApiError)>> {
        let queued = job.queued_at.elapsed();
        match Self::prefill(session, &job, slot, metrics) {
            Ok((sampler, stops, cached, prompt_time)) => {
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
                    n_gen: 0,
                    prompt_time,
                    gen_start: Instant::now(),
                })
            }
            Err(e) => Err(Box::new((job, e))),
        }
    }

    fn prefill(
        session: &mut Session<'m>,
        job: &Job,
        slot: usize,
        metrics: &Metrics,
    ) -> Result<(Sampler, StopStrings, usize, Duration), ApiError> {
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
        let t0 = Instant::now();
        session
            .eval(&prompt[keep..], Logits::Last)
            .map_err(engine_error)?;
        metrics.prompt_evaluated(prompt.len() - keep);
        metrics.set_slot_tokens(slot, session.n_past());
        Ok((sampler, stops, keep, t0.elapsed()))
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
