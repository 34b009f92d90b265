//! Speculative decoding in the server (`--draft-model`), per slot as
//! llama.cpp's server does it: every slot has a session of the draft
//! model beside its target session, and the engine's decode step becomes
//! a round of core's speculative decoding for every active request at
//! once:
//!
//! 1. **Draft** ([`Drafts::guess`], core's [`speculative::guess_batch`]):
//!    each request's draft session catches up with the tokens its target
//!    session holds (on its own: a new prompt is evaluated there, in one
//!    go, which delays the step), then the draft sessions propose up to
//!    `--draft-max` greedy guesses after the token each request sampled
//!    last (fewer near `max_tokens` or the end of the context, none once
//!    the draft's own context is full) in batched one-token steps of the
//!    draft model: one pass over its weights per guess position for all
//!    slots.
//! 2. **Verify**: one batched target pass
//!    ([`BatchDecoder::decode_spans`](tessera_core::BatchDecoder::decode_spans))
//!    evaluates every request's `[last token, guesses…]` — one pass over
//!    the weights for all slots, every row decode-exact (bit for bit a
//!    one-token step), so a request without guesses is an ordinary
//!    batched decode row.
//! 3. **Accept** (core's [`speculative::accept`]): each request samples
//!    its rows with its own sampler (the request's `Active::advance`:
//!    stop strings, log-probabilities, events) while its tokens equal the
//!    guesses; the KV entries of the rejected guesses are truncated.
//!
//! Greedy requests get exactly the tokens they get without a draft;
//! sampled ones follow core's scheme (every token drawn by the target's
//! sampler from the target's logits, in order; the draft only decides how
//! many positions a pass covers).
//!
//! Hibernation and the prefix cache concern the target sessions only.
//! A draft session is never saved with a conversation: when a slot
//! restores another conversation (or reuses a prefix), the next draft
//! step keeps the longest prefix the draft session shares with the
//! target's tokens and evaluates the rest — the draft cache is rebuilt
//! from the token history. A slot hibernated while idle
//! (`--hibernate-idle`) hibernates its draft session too (its memory
//! released; a file beside the target's), woken with it.

use std::panic::{catch_unwind, AssertUnwindSafe};

use tessera_core::speculative::{self, DraftJob, SpecParams, SpecStats};
use tessera_core::{BatchDecoder, CoreError, Session, SessionParams};

/// A draft model and how much it drafts ([`crate::ServerConfig::draft`]).
#[derive(Clone, Debug)]
pub struct DraftConfig {
    /// The draft: a model with the target's vocabulary (checked at start),
    /// loaded with its own placement.
    pub model: tessera::Model,
    /// Guesses per round (`--draft-max`, `--draft-min`, `--draft-p-min`).
    pub spec: SpecParams,
}

/// The slots' draft sessions and the round under way.
pub struct Drafts<'m> {
    spec: SpecParams,
    sessions: Vec<Session<'m>>,
    /// Batched steps over the draft sessions.
    decoder: BatchDecoder<'m>,
    /// Per slot: whether its request may draft (false once the draft's
    /// context is full or a draft step failed).
    on: Vec<bool>,
    /// Per slot: the guesses of the round under way.
    guesses: Vec<Vec<u32>>,
    /// Per slot: its request's counts so far.
    stats: Vec<SpecStats>,
}

impl<'m> Drafts<'m> {
    /// `n` sessions of `model`, with the slots' session settings; the
    /// failing slot and why when one cannot be opened.
    pub fn new(
        model: &'m tessera_core::Model,
        spec: SpecParams,
        params: &SessionParams,
        n: usize,
    ) -> Result<Drafts<'m>, (usize, CoreError)> {
        let sessions = (0..n)
            .map(|slot| model.session(params).map_err(|e| (slot, e)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Drafts {
            spec,
            sessions,
            decoder: BatchDecoder::new(model).map_err(|e| (0, e))?,
            on: vec![false; n],
            guesses: vec![Vec::new(); n],
            stats: vec![SpecStats::default(); n],
        })
    }

    /// Slot `slot` starts a request: it drafts, counts from zero.
    pub fn start(&mut self, slot: usize) {
        self.on[slot] = self.spec.n_max > 0;
        self.guesses[slot].clear();
        self.stats[slot] = SpecStats::default();
    }

    /// Slot `slot`'s part in the draft step, when its request drafts:
    /// `target` is its target session, `next` the token it sampled last
    /// and `left` how many more it may generate after it.
    pub fn job<'a>(
        &self,
        slot: usize,
        target: &'a Session<'_>,
        next: u32,
        left: Option<usize>,
    ) -> Option<(usize, DraftJob<'a>)> {
        if !self.on[slot] {
            return None;
        }
        let room = target.n_ctx() - target.n_past();
        let k = speculative::n_guesses(&self.spec, room, left);
        let committed = target.tokens();
        Some((slot, DraftJob { committed, next, k }))
    }

    /// The draft step of the slots of `jobs` (from [`Drafts::job`]): their
    /// draft sessions guess in batched steps (core's
    /// [`speculative::guess_batch`]); every other slot's guesses are
    /// cleared. A draft step that fails (an error or a panic) stops
    /// drafting for those requests, which go on without guesses.
    pub fn guess(&mut self, jobs: &mut [(usize, DraftJob<'_>)]) {
        for g in &mut self.guesses {
            g.clear();
        }
        if jobs.is_empty() {
            return;
        }
        jobs.sort_by_key(|(slot, _)| *slot);
        let slots: Vec<usize> = jobs.iter().map(|(slot, _)| *slot).collect();
        let list: Vec<DraftJob<'_>> = jobs.iter().map(|(_, j)| *j).collect();
        let mut guesses: Vec<Vec<u32>> = slots
            .iter()
            .map(|&s| std::mem::take(&mut self.guesses[s]))
            .collect();
        let mut stats: Vec<SpecStats> = slots.iter().map(|&s| self.stats[s]).collect();
        let (decoder, spec) = (&mut self.decoder, &self.spec);
        let mut sessions: Vec<&mut Session<'m>> = self
            .sessions
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| slots.contains(i))
            .map(|(_, s)| s)
            .collect();
        let ran = catch_unwind(AssertUnwindSafe(|| {
            speculative::guess_batch(
                decoder,
                &mut sessions,
                &list,
                spec,
                &mut guesses,
                &mut stats,
            )
        }));
        drop(sessions);
        for ((&slot, g), st) in slots.iter().zip(guesses).zip(stats) {
            self.guesses[slot] = g;
            self.stats[slot] = st;
        }
        match ran {
            Ok(Ok(go)) => {
                for (&slot, go) in slots.iter().zip(go) {
                    self.on[slot] &= go;
                }
            }
            _ => {
                for &slot in &slots {
                    self.on[slot] = false;
                    self.guesses[slot].clear();
                    self.sessions[slot].clear();
                }
            }
        }
    }

    /// Slot `slot`'s guesses of the round under way.
    pub fn guesses(&self, slot: usize) -> &[u32] {
        &self.guesses[slot]
    }

    /// Slot `slot`'s guesses of the round under way, and its request's
    /// counts (a verification pass counted when it has guesses).
    pub fn round(&mut self, slot: usize) -> (&[u32], &mut SpecStats) {
        let st = &mut self.stats[slot];
        if !self.guesses[slot].is_empty() {
            st.n_target_passes += 1;
        }
        (&self.guesses[slot], st)
    }

    /// Slot `slot`'s request counts so far.
    pub fn stats(&self, slot: usize) -> &SpecStats {
        &self.stats[slot]
    }

    /// Slot `slot`'s draft session.
    pub fn session_mut(&mut self, slot: usize) -> &mut Session<'m> {
        &mut self.sessions[slot]
    }

    /// Every slot's draft session.
    pub fn sessions(&self) -> &[Session<'m>] {
        &self.sessions
    }

    /// Every slot's draft session, to hibernate.
    pub fn sessions_mut(&mut self) -> &mut [Session<'m>] {
        &mut self.sessions
    }
}
