//! The slots' engine: one thread owning every slot's session, looping
//!
//! 1. admit: each idle slot takes the job the [`Scheduler`] gave it
//!    ([`Scheduler::try_take`]) and keeps the prefix its cache shares with
//!    the prompt;
//! 2. prefill: the rest of the new prompts is evaluated in chunks of the
//!    sessions' micro-batch size, about one chunk's worth of tokens per
//!    loop, so a long prompt delays the others' next tokens by one chunk
//!    at a time; a request whose prompt is done samples its first token;
//! 3. decode: the tokens just sampled by every active request are
//!    evaluated in one batched step ([`BatchDecoder`]: one pass over the
//!    weights for all of them), then each request samples its next token
//!    from its own logits with its own sampler; with a draft model each
//!    request's draft first guesses what follows its token, the step
//!    verifies every request's token and guesses at once, and each
//!    request takes its rows while they agree with its guesses
//!    ([`crate::speculative`]);
//! 4. release: a request that ended gives its slot back
//!    ([`Scheduler::release`], recording what the cache holds for the
//!    longest-prefix choice) before its last event is sent.
//!
//! With no request active it sleeps until a job arrives
//! ([`Scheduler::wait_for_job`]). Batched steps are decode-exact, so each
//! request's tokens are those it gets alone. A panic while serving a
//! request fails it (500) and empties its session; the others go on.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

use tessera_core::speculative::{accept, SpecParams, SpecStats};
use tessera_core::{BatchDecoder, CoreError, Session, SessionParams};

use crate::error::{ApiError, ServerError};
use crate::hibernation;
use crate::job::{Event, Finish, Job, Outcome};
use crate::logprobs::Scratch;
use crate::metrics::Metrics;
use crate::request::{engine_error, Active, Next};
use crate::slots::{Scheduler, Waited};
use crate::speculative::{DraftConfig, Drafts};

/// Starts the engine thread with `n` slots (sessions); returns once every
/// session is open (or the first reason one could not be).
pub fn spawn(
    model: &tessera::Model,
    draft: Option<&DraftConfig>,
    params: &SessionParams,
    n: usize,
    sched: &Arc<Scheduler>,
    metrics: &Arc<Metrics>,
) -> Result<Vec<JoinHandle<()>>, ServerError> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (m, d, p, s, mx) = (
        model.clone(),
        draft.cloned(),
        params.clone(),
        sched.clone(),
        metrics.clone(),
    );
    let h = std::thread::Builder::new()
        .name("tessera-engine".into())
        .spawn(move || {
            let core = m.core();
            let draft = d.as_ref().map(|d| (d.model.core(), d.spec));
            match Engine::new(core, draft, &p, n, &s, &mx) {
                Ok(mut e) => {
                    let _ = ready_tx.send(Ok(()));
                    e.run();
                }
                Err(err) => {
                    let _ = ready_tx.send(Err(err));
                }
            }
        })
        .map_err(ServerError::Io)?;
    let failed = match ready_rx.recv() {
        Ok(Ok(())) => return Ok(vec![h]),
        Ok(Err((slot, source))) => ServerError::Session { slot, source },
        Err(_) => ServerError::Worker,
    };
    sched.close();
    let _ = h.join();
    Err(failed)
}

/// The sessions, the requests on them and the batched decoder.
struct Engine<'m, 'a> {
    sessions: Vec<Session<'m>>,
    active: Vec<Option<Active<'m>>>,
    /// Per slot: the token its request sampled last, to evaluate.
    pending: Vec<Option<u32>>,
    decoder: BatchDecoder<'m>,
    /// The draft model's sessions, with `--draft-model`.
    drafts: Option<Drafts<'m>>,
    n_vocab: usize,
    sched: &'a Scheduler,
    metrics: &'a Metrics,
    scratch: Scratch,
    /// The slots of the decode step under way, in order, and the token
    /// each sampled last.
    batch: Vec<usize>,
    next: Vec<u32>,
    /// Their tokens to evaluate: each slot's pending token and guesses.
    tokens: Vec<u32>,
    /// How many of `tokens` are each slot's.
    lens: Vec<usize>,
    /// Prompt tokens per prefill chunk (the sessions' micro-batch).
    chunk: usize,
}

/// What sampling a row gave a request.
enum Sampled {
    /// Its next token, to evaluate.
    Eval(u32),
    /// It ended, or failed.
    End(Result<Finish, ApiError>),
    /// The request's code panicked (its session is to be emptied).
    Panicked,
}

impl<'m, 'a> Engine<'m, 'a> {
    fn new(
        model: &'m tessera_core::Model,
        draft: Option<(&'m tessera_core::Model, SpecParams)>,
        params: &SessionParams,
        n: usize,
        sched: &'a Scheduler,
        metrics: &'a Metrics,
    ) -> Result<Self, (usize, CoreError)> {
        let sessions = (0..n)
            .map(|slot| model.session(params).map_err(|e| (slot, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let drafts = draft
            .map(|(d, spec)| Drafts::new(d, spec, params, n))
            .transpose()?;
        Ok(Engine {
            sessions,
            active: (0..n).map(|_| None).collect(),
            pending: vec![None; n],
            decoder: BatchDecoder::new(model).map_err(|e| (0, e))?,
            drafts,
            n_vocab: model.hparams().n_vocab,
            sched,
            metrics,
            scratch: Scratch::default(),
            batch: Vec::with_capacity(n),
            next: Vec::with_capacity(n),
            tokens: Vec::with_capacity(n),
            lens: Vec::with_capacity(n),
            chunk: params.n_ubatch.min(params.n_batch).max(1),
        })
    }

    /// Serves until the scheduler is closed and no request is left;
    /// slots idle for `--hibernate-idle` are hibernated as it goes.
    fn run(&mut self) {
        loop {
            let drafts = self.drafts.as_mut().map(Drafts::sessions_mut);
            let next_idle =
                hibernation::sweep_idle(&mut self.sessions, drafts, self.sched, self.metrics);
            if self.active.iter().all(Option::is_none) {
                match self.sched.wait_for_job_within(next_idle) {
                    Waited::Job => {}
                    Waited::TimedOut => continue,
                    Waited::Closed => break,
                }
            }
            self.admit();
            self.prefill();
            self.decode();
        }
        let drafts = self.drafts.as_ref().map_or(&[][..], Drafts::sessions);
        for s in self.sessions.iter().chain(drafts) {
            hibernation::remove_slot_file(s);
        }
    }

    /// Starts the jobs given to idle slots.
    fn admit(&mut self) {
        for slot in 0..self.sessions.len() {
            if self.active[slot].is_some() {
                continue;
            }
            let Some(job) = self.sched.try_take(slot) else {
                continue;
            };
            // Hibernation: save what the slot holds, restore the job's
            // conversation, wake an idle-hibernated session.
            let draft = self.drafts.as_mut().map(|d| {
                d.start(slot);
                d.session_mut(slot)
            });
            hibernation::prepare(
                &mut self.sessions[slot],
                draft,
                self.sched,
                slot,
                self.metrics,
            );
            let events = job.events.clone();
            let session = &mut self.sessions[slot];
            let started = catch_unwind(AssertUnwindSafe(|| Active::start(session, job, slot)));
            match started {
                Ok(Ok(a)) => self.active[slot] = Some(a),
                Ok(Err(failed)) => {
                    let (job, e) = *failed;
                    self.end(slot, job, Err(e))
                }
                Err(_) => {
                    self.sessions[slot].clear();
                    self.release(slot);
                    let e = ApiError::internal("the engine failed on this request");
                    let _ = events.send(Event::Failed(e));
                }
            }
        }
    }

    /// Evaluates chunks of the prompts not yet evaluated, in slot order,
    /// until about one chunk's worth of tokens is spent; a request whose
    /// prompt is done samples its first token.
    fn prefill(&mut self) {
        let mut budget = self.chunk;
        for slot in 0..self.sessions.len() {
            if budget == 0 {
                break;
            }
            let Some(a) = self.active[slot].as_mut() else {
                continue;
            };
            if a.prefilled() {
                continue;
            }
            if a.job.abandoned() {
                self.finish(slot, Ok(Finish::Cancelled));
                continue;
            }
            let (session, metrics, chunk) = (&mut self.sessions[slot], self.metrics, self.chunk);
            let before = session.n_past();
            let ran = catch_unwind(AssertUnwindSafe(|| a.prefill(session, chunk, metrics)));
            budget = budget.saturating_sub(session.n_past().saturating_sub(before).max(1));
            match ran {
                Ok(Ok(())) if a.prefilled() => self.advance(slot),
                Ok(Ok(())) => {}
                Ok(Err(e)) => self.finish(slot, Err(e)),
                Err(_) => {
                    self.sessions[slot].clear();
                    self.finish(
                        slot,
                        Err(ApiError::internal("the engine failed on this request")),
                    );
                }
            }
        }
    }

    /// Samples slot `slot`'s next token from its session's last logits.
    fn advance(&mut self, slot: usize) {
        let Some(a) = self.active[slot].as_mut() else {
            return;
        };
        let row = self.sessions[slot].last_logits();
        match sample(a, row, &mut self.scratch, self.metrics) {
            Sampled::Eval(t) => self.pending[slot] = Some(t),
            end => self.settle(slot, end),
        }
    }

    /// Ends slot `slot`'s request as `end` says.
    fn settle(&mut self, slot: usize, end: Sampled) {
        match end {
            Sampled::Eval(t) => self.pending[slot] = Some(t),
            Sampled::End(how) => self.finish(slot, how),
            Sampled::Panicked => {
                self.sessions[slot].clear();
                self.finish(
                    slot,
                    Err(ApiError::internal("the engine failed on this request")),
                );
            }
        }
    }

    /// Evaluates every pending token (and its draft's guesses) in one
    /// step, then advances each request over its rows.
    fn decode(&mut self) {
        self.batch.clear();
        self.next.clear();
        self.tokens.clear();
        self.lens.clear();
        for slot in 0..self.sessions.len() {
            let Some(t) = self.pending[slot].take() else {
                continue;
            };
            let s = &self.sessions[slot];
            if s.n_past() + 1 > s.n_ctx() {
                // Its context is full: it ends as `length`.
                self.finish(slot, Ok(Finish::Length));
                continue;
            }
            self.batch.push(slot);
            self.next.push(t);
        }
        if self.batch.is_empty() {
            return;
        }
        // The draft step: each request's guesses (none without a draft).
        if let Some(d) = self.drafts.as_mut() {
            let mut jobs: Vec<_> = (self.batch.iter().zip(&self.next))
                .filter_map(|(&slot, &t)| {
                    let left = self.active[slot].as_ref().and_then(Active::tokens_left);
                    d.job(slot, &self.sessions[slot], t, left)
                })
                .collect();
            d.guess(&mut jobs);
        }
        for (&slot, &t) in self.batch.iter().zip(&self.next) {
            let guesses = self.drafts.as_ref().map_or(&[][..], |d| d.guesses(slot));
            self.tokens.push(t);
            self.tokens.extend_from_slice(guesses);
            self.lens.push(1 + guesses.len());
        }
        let batch = std::mem::take(&mut self.batch);
        let mut spans = Vec::with_capacity(batch.len());
        let mut at = 0;
        for &len in &self.lens {
            spans.push(&self.tokens[at..at + len]);
            at += len;
        }
        let mut sessions: Vec<&mut Session<'m>> = self
            .sessions
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| batch.contains(i))
            .map(|(_, s)| s)
            .collect();
        let decoder = &mut self.decoder;
        // (`decoder` moved into the body: the rows borrow it past the call.)
        let ran = catch_unwind(AssertUnwindSafe(move || {
            let decoder = decoder;
            decoder.decode_spans(&mut sessions, &spans)
        }));
        self.metrics.decode_step(batch.len());
        match ran {
            Ok(Ok(logits)) => {
                // Each request's rows: sampled while they agree with its
                // guesses; how the requests that ended did, for after.
                let mut ended = Vec::new();
                let mut at = 0;
                for (&slot, &len) in batch.iter().zip(&self.lens) {
                    let rows = &logits[at * self.n_vocab..(at + len) * self.n_vocab];
                    at += len;
                    let Some(a) = self.active[slot].as_mut() else {
                        continue;
                    };
                    let (scratch, metrics) = (&mut self.scratch, self.metrics);
                    let mut no_draft = SpecStats::default();
                    let (guesses, st) = match self.drafts.as_mut() {
                        Some(d) => d.round(slot),
                        None => (&[][..], &mut no_draft),
                    };
                    let mut end = None;
                    let round = accept(rows, self.n_vocab, guesses, st, |row| {
                        Ok(match sample(a, row, scratch, metrics) {
                            Sampled::Eval(t) => Some(t),
                            e => {
                                end = Some(e);
                                None
                            }
                        })
                    });
                    let s = &mut self.sessions[slot];
                    match round {
                        Ok(r) => {
                            // Keep the token and the accepted guesses.
                            s.truncate(s.n_past() - len + r.kept());
                            self.metrics.set_slot_tokens(slot, s.n_past());
                            if let Some(t) = r.next {
                                self.pending[slot] = Some(t);
                            }
                        }
                        Err(e) => end = Some(Sampled::End(Err(engine_error(e)))),
                    }
                    if let Some(e) = end {
                        ended.push((slot, e));
                    }
                }
                for (slot, e) in ended {
                    self.settle(slot, e);
                }
            }
            Ok(Err(e)) => {
                let e = engine_error(e);
                for &slot in &batch {
                    self.finish(slot, Err(e.clone()));
                }
            }
            Err(_) => {
                for &slot in &batch {
                    self.sessions[slot].clear();
                    self.finish(
                        slot,
                        Err(ApiError::internal("the engine failed on this request")),
                    );
                }
            }
        }
        self.batch = batch;
    }

    /// Ends slot `slot`'s request, with how it ended or why it failed.
    fn finish(&mut self, slot: usize, how: Result<Finish, ApiError>) {
        self.pending[slot] = None;
        let Some(a) = self.active[slot].take() else {
            return;
        };
        let (job, outcome) = a.finish(how.as_ref().copied().unwrap_or(Finish::Cancelled));
        self.end(slot, job, how.map(|_| outcome));
    }

    /// Releases `slot` (its cache recorded), then answers `job`.
    fn end(&mut self, slot: usize, job: Job, result: Result<Outcome, ApiError>) {
        if let Some(d) = &self.drafts {
            self.metrics.speculated(d.stats(slot));
        }
        let event = match result {
            Ok(outcome) => {
                self.metrics.finished(&outcome);
                Event::Done(outcome)
            }
            Err(e) => Event::Failed(e),
        };
        // Release before answering: a client's next request, sent as soon
        // as it reads this answer, must find the slot idle and its cache
        // (its prefix) recorded.
        self.release(slot);
        let _ = job.events.send(event);
    }

    fn release(&mut self, slot: usize) {
        let s = &self.sessions[slot];
        self.metrics.set_slot_tokens(slot, s.n_past());
        self.sched.release(slot, s.tokens());
    }
}

/// Samples `a`'s next token from `row` (the logits after its last token).
fn sample(a: &mut Active<'_>, row: &[f32], scratch: &mut Scratch, metrics: &Metrics) -> Sampled {
    match catch_unwind(AssertUnwindSafe(|| a.advance(row, scratch, metrics))) {
        Ok(Ok(Next::Eval(t))) => Sampled::Eval(t),
        Ok(Ok(Next::Done(f))) => Sampled::End(Ok(f)),
        Ok(Err(e)) => Sampled::End(Err(e)),
        Err(_) => Sampled::Panicked,
    }
}
