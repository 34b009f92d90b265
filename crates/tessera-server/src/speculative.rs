//! Speculative decoding in the server (`--draft-model`), per slot as
//! llama.cpp's server does it: every slot has a session of the draft
//! model beside its target session, and the engine's decode step becomes
//! a round of core's speculative decoding for every active request at
//! once:
//!
//! 1. **Draft** ([`Drafts::guess`], core's [`speculative::guess`]): each
//!    request's draft session catches up with the tokens its target
//!    session holds and proposes up to `--draft-max` greedy guesses after
//!    the token the request sampled last (fewer near `max_tokens` or the
//!    end of the context, none once the draft's own context is full).
//!    The draft steps run one slot after the other.
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

use tessera_core::speculative::{self, SpecParams, SpecStats};
use tessera_core::{CoreError, Session, SessionParams};

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

    /// The draft step for slot `slot`, whose target session is `target`
    /// and whose request sampled `next` last and may generate `left` more
    /// tokens after it: fills its guesses (none when it does
    /// not draft). A draft that fails (an error or a panic) stops
    /// drafting for the request, which goes on without guesses.
    pub fn guess(&mut self, slot: usize, target: &Session<'_>, next: u32, left: Option<usize>) {
        let guesses = &mut self.guesses[slot];
        guesses.clear();
        if !self.on[slot] {
            return;
        }
        let room = target.n_ctx() - target.n_past();
        let k = speculative::n_guesses(&self.spec, room, left);
        let (draft, spec, st) = (&mut self.sessions[slot], &self.spec, &mut self.stats[slot]);
        let ran = catch_unwind(AssertUnwindSafe(|| {
            speculative::guess(draft, target.tokens(), next, k, spec, guesses, st)
        }));
        if !matches!(ran, Ok(Ok(true))) {
            self.on[slot] = false;
        }
        if !matches!(ran, Ok(Ok(_))) {
            self.guesses[slot].clear();
            self.sessions[slot].clear();
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
