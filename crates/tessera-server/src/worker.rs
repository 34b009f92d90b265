//! The slots' engine today: one thread per slot, each owning a clone of the
//! model and one session (its KV cache), looping
//! [`Scheduler::take`] → [`generate`] → [`Scheduler::release`].
//!
//! [`generate`] is the server's own loop over `Session` and `Sampler`
//! (not `tessera_core::generate`) because it needs each step's raw logits
//! for log-probabilities and a cancel flag checked at every token. It
//! keeps `generate`'s semantics: the sampler sees the prompt, text is
//! released whole-character and stop-string-safe, an end-of-generation
//! token ends the turn and is not shown, a full context ends it as
//! `length`.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use tessera_core::sample::{Sampler, StopStrings};
use tessera_core::{CoreError, Logits, Session, SessionParams};

use crate::error::{ApiError, ServerError};
use crate::job::{Event, Finish, Job, Outcome};
use crate::logprobs::Scratch;
use crate::metrics::Metrics;
use crate::slots::{common_prefix, Scheduler};

/// Starts `n` slot threads, each with its own session; returns once every
/// session is open (or the first reason one could not be).
pub fn spawn(
    model: &tessera::Model,
    params: &SessionParams,
    n: usize,
    sched: &Arc<Scheduler>,
    metrics: &Arc<Metrics>,
) -> Result<Vec<JoinHandle<()>>, ServerError> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut handles = Vec::with_capacity(n);
    for slot in 0..n {
        let (m, p, s, mx, ready) = (
            model.clone(),
            params.clone(),
            sched.clone(),
            metrics.clone(),
            ready_tx.clone(),
        );
        let h = std::thread::Builder::new()
            .name(format!("tessera-slot-{slot}"))
            .spawn(move || slot_main(slot, &m, &p, &s, &mx, ready));
        match h {
            Ok(h) => handles.push(h),
            Err(e) => {
                stop(sched, handles);
                return Err(ServerError::Io(e));
            }
        }
    }
    drop(ready_tx);
    for _ in 0..n {
        let failed = match ready_rx.recv() {
            Ok((_, Ok(()))) => continue,
            Ok((slot, Err(source))) => ServerError::Session { slot, source },
            Err(_) => ServerError::Worker,
        };
        stop(sched, handles);
        return Err(failed);
    }
    Ok(handles)
}

fn stop(sched: &Scheduler, handles: Vec<JoinHandle<()>>) {
    sched.close();
    for h in handles {
        let _ = h.join();
    }
}

type Ready = std::sync::mpsc::Sender<(usize, Result<(), CoreError>)>;

fn slot_main(
    slot: usize,
    model: &tessera::Model,
    params: &SessionParams,
    sched: &Scheduler,
    metrics: &Metrics,
    ready: Ready,
) {
    let mut session = match model.core().session(params) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send((slot, Err(e)));
            return;
        }
    };
    let _ = ready.send((slot, Ok(())));
    let mut scratch = Scratch::default();
    while let Some(job) = sched.take(slot) {
        let orders = sched.take_orders(slot);
        crate::hibernation::apply(&mut session, orders, metrics, |id, ok| sched.saved(id, ok));
        // A panic in the engine must not take the slot down: the request
        // gets a 500 and the session starts over empty.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            generate(&mut session, &job, slot, metrics, &mut scratch)
        }));
        let event = match result {
            Ok(Ok(outcome)) => {
                metrics.finished(&outcome);
                Event::Done(outcome)
            }
            Ok(Err(e)) => Event::Failed(e),
            Err(_) => {
                session.clear();
                Event::Failed(ApiError::internal("the engine failed on this request"))
            }
        };
        // Release before answering: a client's next request, sent as soon
        // as it reads this answer, must find the slot idle and its cache
        // (its prefix) recorded.
        metrics.set_slot_tokens(slot, session.n_past());
        sched.release(slot, session.tokens());
        let _ = job.events.send(event);
    }
}

/// The engine's error as a client sees it.
fn engine_error(e: CoreError) -> ApiError {
    match e {
        CoreError::ContextFull { needed, n_ctx } => ApiError::invalid(format!(
            "the request needs {needed} tokens, more than the context of {n_ctx}"
        ))
        .code("context_length_exceeded"),
        CoreError::Input(m) => ApiError::invalid(m),
        e => ApiError::internal(e.to_string()),
    }
}

/// Runs one job on `session`: reuses the cached prefix, evaluates the
/// rest of the prompt, then samples, streams and evaluates one token at a
/// time.
pub fn generate(
    session: &mut Session<'_>,
    job: &Job,
    slot: usize,
    metrics: &Metrics,
    scratch: &mut Scratch,
) -> Result<Outcome, ApiError> {
    let queued = job.queued_at.elapsed();
    let model = session.model();
    let tok = model.tokenizer();
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
    // At least one token is evaluated, so there are logits to sample from.
    let keep = common_prefix(session.tokens(), prompt).min(prompt.len() - 1);
    session.truncate(keep);
    let mut sampler = Sampler::new(req.sampler.clone(), model.hparams().n_vocab)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    for &t in prompt {
        sampler.accept(t);
    }
    let mut stops = StopStrings::new(req.stop.clone())
        .map_err(|e| ApiError::invalid_param("stop", e.to_string()))?;
    let mut stream = tok.stream();

    let t0 = Instant::now();
    session
        .eval(&prompt[keep..], Logits::Last)
        .map_err(engine_error)?;
    let prompt_time = t0.elapsed();
    metrics.prompt_evaluated(prompt.len() - keep);
    metrics.set_slot_tokens(slot, session.n_past());

    let t1 = Instant::now();
    let mut n_gen = 0;
    let over = |n: usize| req.max_tokens.is_some_and(|m| n >= m);
    let finish = loop {
        if over(n_gen) {
            break Finish::Length;
        }
        if job.cancel.is_cancelled() {
            break Finish::Cancelled;
        }
        let logits = session.last_logits();
        let t = sampler
            .sample(logits)
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        let logprob = req.logprobs.map(|n| scratch.entry(logits, t, n, tok));
        sampler.accept(t);
        n_gen += 1;
        metrics.token_generated();
        if tok.is_eog(t) {
            break Finish::Stop;
        }
        let piece = stream
            .push(t)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let out = stops.push(&piece);
        if job
            .events
            .send(Event::Token {
                text: out.text,
                logprob,
            })
            .is_err()
        {
            break Finish::Cancelled;
        }
        if out.stopped {
            break Finish::Stop;
        }
        if over(n_gen) {
            break Finish::Length;
        }
        match session.eval(&[t], Logits::Last) {
            Ok(_) => {}
            Err(CoreError::ContextFull { .. }) => break Finish::Length,
            Err(e) => return Err(engine_error(e)),
        }
        metrics.set_slot_tokens(slot, session.n_past());
    };
    if finish != Finish::Cancelled && !stops.is_stopped() {
        let mut tail = stops.finish();
        tail.push_str(&stream.finish());
        if !tail.is_empty() {
            let _ = job.events.send(Event::Token {
                text: tail,
                logprob: None,
            });
        }
    }
    Ok(Outcome {
        finish,
        prompt_tokens: prompt.len(),
        cached_tokens: keep,
        completion_tokens: n_gen,
        slot,
        queued,
        prompt_time,
        gen_time: t1.elapsed(),
    })
}
