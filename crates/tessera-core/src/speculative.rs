//! Speculative decoding: a small *draft* model guesses the next tokens, the
//! *target* model checks every guess in one batched pass, and the output is
//! the target's own.
//!
//! # The algorithm (llama.cpp's `speculative-simple`)
//!
//! Each round starts from the last token `t` the target sampled (not yet
//! evaluated by it):
//!
//! 1. **Draft.** The draft session catches up with the committed tokens and
//!    `t`, then proposes up to `n_max` tokens `d1 … dk` greedily (its
//!    argmax, one one-token step each). It stops early when its own
//!    probability of the pick (among its 10 most likely) falls below
//!    `p_min`; a draft shorter than `n_min` is dropped. `k` never exceeds
//!    what the token budget and the context can still take.
//! 2. **Verify.** The target evaluates `[t, d1 … dk]` in one pass and
//!    returns `k + 1` rows of logits: row `i` is its prediction after
//!    `d1 … di`.
//! 3. **Accept.** The target's sampler samples row 0; if that token equals
//!    `d1`, it samples row 1, and so on. The first token that differs from
//!    the draft's guess (or the token after the last guess, when all `k`
//!    were right) is sampled from the target's logits all the same and
//!    starts the next round. A round therefore yields between 1 and `k + 1`
//!    tokens for one target pass. The KV entries of rejected guesses are
//!    dropped with [`Session::truncate`], in both sessions.
//!
//! # Greedy: token-identical
//!
//! With `temp <= 0` the accepted tokens are the target's argmax at each
//! position, which is what [`generate`](crate::generate::generate)
//! produces — provided the verification pass computes each row exactly as
//! a one-token step would. Batched kernels round differently (ggml's GEMM
//! chains, the split-KV decode attention past 256 cells …) and can flip a
//! near-tie, so verification runs with [`Session::set_decode_exact`] on:
//! the target's rows come out bit for bit as one-token steps, and the
//! greedy output is the same token for token.
//!
//! # Sampling with a temperature
//!
//! This is llama.cpp's scheme, not the rejection sampling of Leviathan et
//! al.: every emitted token is drawn by the target's sampler (the same
//! chain, penalties and random stream as plain decoding), one draw per
//! emitted token in the same order; the draft only decides how many
//! positions one target pass covers. So the output follows the target's
//! distribution exactly, and with a fixed seed it is the same tokens as
//! plain decoding. The price: a guess survives with the target's
//! probability of it, where rejection sampling would keep it with
//! `min(1, p/q)` and resample from the residual, so acceptance is lower at
//! high temperatures.
//!
//! # The pieces
//!
//! [`generate_speculative`] runs the rounds for one session. A server
//! that verifies several sessions' guesses in one batched pass
//! ([`BatchDecoder::decode_spans`](crate::BatchDecoder::decode_spans))
//! runs the same round from its parts: [`n_guesses`] (how many a round
//! may draft), [`guess`] (the draft step; [`guess_batch`] for several
//! draft sessions in batched steps) and [`accept`] (walking the
//! verification rows with the caller's sampler).
//!
//! # Counters
//!
//! [`SpecStats`] counts one generation (drafted, accepted, target passes,
//! draft steps, time in each model); [`SpecCounters`] sums them across
//! generations and threads for a server's metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::batch::BatchDecoder;
use crate::error::{CoreError, Result};
use crate::generate::{GenerateParams, GenerateStats, StopReason};
use crate::model::Model;
use crate::sample::{Sampler, StopStrings};
use crate::session::{Logits, Session};

/// How much to draft.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpecParams {
    /// Most draft tokens per round (`--draft-max`).
    pub n_max: usize,
    /// Fewest draft tokens worth a verification pass (`--draft-min`): a
    /// shorter draft is dropped and the target decodes one token.
    pub n_min: usize,
    /// Stop drafting when the draft's probability of its pick, among its
    /// 10 most likely tokens (llama.cpp's draft sampler, top-k 10), is below
    /// this (`--draft-p-min`; 0 drafts `n_max` every round).
    pub p_min: f32,
}

impl Default for SpecParams {
    /// 8 tokens, no minimum, no probability floor.
    fn default() -> Self {
        SpecParams {
            n_max: 8,
            n_min: 0,
            p_min: 0.0,
        }
    }
}

/// What speculation did in one generation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SpecStats {
    /// Draft tokens sent to the target for verification (when the
    /// generation ends inside a round, that round's unexamined guesses
    /// count here and not as accepted).
    pub n_drafted: u64,
    /// Of those, the ones the target's sampler agreed with.
    pub n_accepted: u64,
    /// Target evaluations after the prompt (verification passes and plain
    /// one-token steps).
    pub n_target_passes: u64,
    /// Draft model evaluations (catching up, then one per guess).
    pub n_draft_steps: u64,
    /// Time in the draft model (its prompt included).
    pub draft_time: Duration,
    /// Time in the target's evaluations after the prompt.
    pub target_time: Duration,
}

impl SpecStats {
    /// Accepted / drafted (0 when nothing was drafted).
    pub fn acceptance_rate(&self) -> f64 {
        if self.n_drafted == 0 {
            0.0
        } else {
            self.n_accepted as f64 / self.n_drafted as f64
        }
    }

    /// Adds `other`'s counts and times to these.
    pub fn add(&mut self, other: &SpecStats) {
        self.n_drafted += other.n_drafted;
        self.n_accepted += other.n_accepted;
        self.n_target_passes += other.n_target_passes;
        self.n_draft_steps += other.n_draft_steps;
        self.draft_time += other.draft_time;
        self.target_time += other.target_time;
    }
}

/// [`SpecStats`] summed over generations, shareable between threads (a
/// server keeps one and reads it for its metrics).
#[derive(Debug, Default)]
pub struct SpecCounters {
    generations: AtomicU64,
    drafted: AtomicU64,
    accepted: AtomicU64,
    target_passes: AtomicU64,
    draft_steps: AtomicU64,
    draft_ns: AtomicU64,
    target_ns: AtomicU64,
}

impl SpecCounters {
    /// All zero.
    pub fn new() -> SpecCounters {
        SpecCounters::default()
    }

    /// Adds one generation's stats.
    pub fn record(&self, s: &SpecStats) {
        let add = |c: &AtomicU64, v: u64| c.fetch_add(v, Ordering::Relaxed);
        add(&self.generations, 1);
        add(&self.drafted, s.n_drafted);
        add(&self.accepted, s.n_accepted);
        add(&self.target_passes, s.n_target_passes);
        add(&self.draft_steps, s.n_draft_steps);
        add(&self.draft_ns, s.draft_time.as_nanos() as u64);
        add(&self.target_ns, s.target_time.as_nanos() as u64);
    }

    /// Generations recorded.
    pub fn generations(&self) -> u64 {
        self.generations.load(Ordering::Relaxed)
    }

    /// The sums so far.
    pub fn snapshot(&self) -> SpecStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SpecStats {
            n_drafted: get(&self.drafted),
            n_accepted: get(&self.accepted),
            n_target_passes: get(&self.target_passes),
            n_draft_steps: get(&self.draft_steps),
            draft_time: Duration::from_nanos(get(&self.draft_ns)),
            target_time: Duration::from_nanos(get(&self.target_ns)),
        }
    }
}

/// Checks that `draft` can draft for `target`: the same number of logits
/// and the same token for every id (a smaller model of the family, or
/// another quantization of the same model).
pub fn check_draft(target: &Model, draft: &Model) -> Result<()> {
    let (nt, nd) = (target.hparams().n_vocab, draft.hparams().n_vocab);
    if nt != nd {
        return Err(CoreError::Config(format!(
            "the draft model has {nd} logits per token, the target {nt}: a draft needs the target's vocabulary"
        )));
    }
    let (tt, td) = (target.tokenizer(), draft.tokenizer());
    if tt.n_vocab() != td.n_vocab() {
        return Err(CoreError::Config(format!(
            "the draft's vocabulary has {} tokens, the target's {}",
            td.n_vocab(),
            tt.n_vocab()
        )));
    }
    if let Some(id) = (0..tt.n_vocab() as u32).find(|&id| tt.token_text(id) != td.token_text(id)) {
        return Err(CoreError::Config(format!(
            "the draft's vocabulary differs from the target's at token {id} ({:?} vs {:?})",
            td.token_text(id).unwrap_or(""),
            tt.token_text(id).unwrap_or("")
        )));
    }
    Ok(())
}

/// [`generate`](crate::generate::generate) with a draft model: evaluates
/// `prompt` (after what `target` holds) and generates with the same
/// callback contract (`on_text` gets each final piece of text and returns
/// `false` to stop), the same stop rules and the same tokens, `spec.n_max`
/// guesses verified per target pass. `draft` is a session of a model that
/// passes [`check_draft`]; whatever it holds is reused as far as it agrees
/// with the target's tokens. On return `target` holds what
/// `generate` would leave (the prompt and every generated token but the
/// last); [`Session::decode_exact`] is as it was.
pub fn generate_speculative(
    target: &mut Session<'_>,
    draft: &mut Session<'_>,
    prompt: &[u32],
    params: &GenerateParams,
    spec: &SpecParams,
    on_text: impl FnMut(&str) -> bool,
) -> Result<(Vec<u32>, GenerateStats, SpecStats)> {
    check_draft(target.model(), draft.model())?;
    let exact = target.decode_exact();
    let r = run(target, draft, prompt, params, spec, on_text);
    target.set_decode_exact(exact);
    r
}

/// How one emitted token ended (or did not end) the generation.
enum Emit {
    Go,
    Stop(StopReason),
}

fn run(
    target: &mut Session<'_>,
    draft: &mut Session<'_>,
    prompt: &[u32],
    params: &GenerateParams,
    spec: &SpecParams,
    mut on_text: impl FnMut(&str) -> bool,
) -> Result<(Vec<u32>, GenerateStats, SpecStats)> {
    let model = target.model();
    let tok = model.tokenizer();
    let n_vocab = model.hparams().n_vocab;
    let mut sampler = Sampler::new(params.sampler.clone(), n_vocab)?;
    for &t in target.tokens().iter().chain(prompt) {
        sampler.accept(t);
    }
    let mut stop_strings = StopStrings::new(params.stop.clone())?;
    let mut stream = tok.stream();
    let mut st = SpecStats::default();
    let n_start = target.n_past();

    let t0 = Instant::now();
    target.eval(prompt, Logits::Last)?;
    // The draft catches up with the prompt here, so its prompt time is
    // prompt time (and reported in `draft_time` too).
    let mut drafting = spec.n_max > 0;
    if drafting {
        let td = Instant::now();
        drafting = catch_up(draft, target.tokens(), &mut st)?;
        st.draft_time += td.elapsed();
    }
    let prompt_time = t0.elapsed();

    let t1 = Instant::now();
    let mut out: Vec<u32> = Vec::new();
    let mut stop = StopReason::Length;
    // The target's logits rows to sample from, and the guesses they check:
    // row i follows guesses[..i].
    let mut rows: Vec<f32> = target.last_logits().to_vec();
    let mut guesses: Vec<u32> = Vec::new();
    let mut verify: Vec<u32> = Vec::new();
    let budget_left = |out: &[u32]| params.n_predict.map(|n| n.saturating_sub(out.len()));
    loop {
        if budget_left(&out) == Some(0) {
            break;
        }
        // Accept: sample row after row while the target agrees with the draft.
        let round = accept(&rows, n_vocab, &guesses, &mut st, |row| {
            let t = sampler.sample(row)?;
            sampler.accept(t);
            out.push(t);
            if let Emit::Stop(r) =
                emit(t, tok, params, &mut stream, &mut stop_strings, &mut on_text)?
            {
                stop = r;
                return Ok(None);
            }
            Ok((budget_left(&out) != Some(0)).then_some(t))
        })?;
        let Some(last) = round.next else {
            break;
        };
        // Drop the KV of the rejected guesses: keep the prompt and every
        // emitted token but `last`.
        target.truncate(n_start + prompt.len() + out.len() - 1);

        // Draft: as many guesses as the budget and the context can take.
        let room = target.n_ctx() - target.n_past();
        if room == 0 {
            stop = StopReason::ContextFull;
            break;
        }
        let k = n_guesses(spec, room, budget_left(&out));
        guesses.clear();
        if drafting {
            drafting = guess(draft, target.tokens(), last, k, spec, &mut guesses, &mut st)?;
        }

        // Verify: one target pass over `last` and the guesses, each row as a
        // one-token step computes it.
        verify.clear();
        verify.push(last);
        verify.extend_from_slice(&guesses);
        let tt = Instant::now();
        target.set_decode_exact(true);
        let which = if guesses.is_empty() {
            Logits::Last
        } else {
            Logits::All
        };
        match target.eval(&verify, which) {
            Ok(l) => {
                rows.clear();
                rows.extend_from_slice(l);
            }
            Err(CoreError::ContextFull { .. }) => {
                stop = StopReason::ContextFull;
                break;
            }
            Err(e) => return Err(e),
        }
        st.target_time += tt.elapsed();
        st.n_target_passes += 1;
    }
    if stop != StopReason::StopString && stop != StopReason::Cancelled {
        let mut tail = stream.finish();
        tail.insert_str(0, &stop_strings.finish());
        if !tail.is_empty() {
            on_text(&tail);
        }
    }
    // What `generate` leaves: the prompt and every token but the last.
    target.truncate(n_start + prompt.len() + out.len().saturating_sub(1));
    let stats = GenerateStats {
        n_prompt: prompt.len(),
        prompt_time,
        n_gen: out.len(),
        gen_time: t1.elapsed(),
        stop,
    };
    Ok((out, stats, st))
}

/// How many guesses a round may draft: `spec.n_max`, fewer when the
/// target's context has only `room` cells left (the verification pass
/// needs one more, for the token the round starts from) or the generation
/// only `left` tokens (a round emits up to its guesses and one more).
pub fn n_guesses(spec: &SpecParams, room: usize, left: Option<usize>) -> usize {
    let k = spec.n_max.min(room.saturating_sub(1));
    left.map_or(k, |l| k.min(l.saturating_sub(1)))
}

/// The draft step of a round: up to `k` greedy guesses of `draft` after
/// `committed` (the tokens the target holds) and `next` (the token the
/// target sampled last, not yet evaluated), into `guesses` (cleared first;
/// left empty when shorter than `spec.n_min`). The draft keeps the longest
/// prefix it shares with `committed` and evaluates the rest first, so any
/// session of the draft model can serve (one rebuilt from nothing, or one
/// that drafted for another conversation). Returns whether drafting can go
/// on (false once the draft's context is full). Counts its steps and time
/// in `st`.
pub fn guess(
    draft: &mut Session<'_>,
    committed: &[u32],
    next: u32,
    k: usize,
    spec: &SpecParams,
    guesses: &mut Vec<u32>,
    st: &mut SpecStats,
) -> Result<bool> {
    guesses.clear();
    if k == 0 {
        return Ok(true);
    }
    let t0 = Instant::now();
    let r = propose(draft, committed, next, k, spec, guesses, st);
    st.draft_time += t0.elapsed();
    if guesses.len() < spec.n_min.max(1) {
        guesses.clear();
    }
    r
}

/// How [`accept`] ended a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// Guesses the target's sampler agreed with.
    pub n_accepted: usize,
    /// The token that starts the next round (the first that differs from
    /// the guesses, or the one after the last guess); `None` when the
    /// generation ended in this round.
    pub next: Option<u32>,
}

impl Accepted {
    /// Tokens of the verified run `[t, guesses…]` whose KV entries hold:
    /// `t` and the accepted guesses (the rest are to be truncated).
    pub fn kept(&self) -> usize {
        1 + self.n_accepted
    }
}

/// The accept step of a round: `rows` are the target's logits
/// (`[guesses.len() + 1, n_vocab]`; row `i` follows the round's first
/// token and `guesses[..i]`). `take` samples row 0 (and emits the token),
/// returning it, or `None` when the generation ends with it; while the
/// token equals the guess of its row, the next row is taken. Counts the
/// drafted and accepted guesses in `st`.
pub fn accept(
    rows: &[f32],
    n_vocab: usize,
    guesses: &[u32],
    st: &mut SpecStats,
    mut take: impl FnMut(&[f32]) -> Result<Option<u32>>,
) -> Result<Accepted> {
    if n_vocab == 0 || rows.len() != (guesses.len() + 1) * n_vocab {
        return Err(CoreError::Input(format!(
            "speculative decoding: {} logits for {} guesses and {n_vocab} tokens: expected one row per guess and one more",
            rows.len(),
            guesses.len()
        )));
    }
    st.n_drafted += guesses.len() as u64;
    let mut n_accepted = 0;
    for (i, row) in rows.chunks_exact(n_vocab).enumerate() {
        let Some(t) = take(row)? else {
            break;
        };
        if guesses.get(i) != Some(&t) {
            return Ok(Accepted {
                n_accepted,
                next: Some(t),
            });
        }
        n_accepted += 1;
        st.n_accepted += 1;
    }
    Ok(Accepted {
        n_accepted,
        next: None,
    })
}

/// Streams token `t` (end of generation, stop strings, the callback) as
/// `generate` does.
fn emit(
    t: u32,
    tok: &tessera_tokenizer::Tokenizer,
    params: &GenerateParams,
    stream: &mut tessera_tokenizer::StreamDecoder<'_>,
    stop_strings: &mut StopStrings,
    on_text: &mut impl FnMut(&str) -> bool,
) -> Result<Emit> {
    if tok.is_eog(t) && !params.ignore_eos {
        return Ok(Emit::Stop(StopReason::EndOfGeneration));
    }
    let piece = stream.push(t)?;
    let s = stop_strings.push(&piece);
    if !s.text.is_empty() && !on_text(&s.text) {
        return Ok(Emit::Stop(StopReason::Cancelled));
    }
    if s.stopped {
        return Ok(Emit::Stop(StopReason::StopString));
    }
    Ok(Emit::Go)
}

/// Brings `draft` to `committed`: keeps the longest prefix it shares
/// with them and evaluates the rest. Returns false when the draft's
/// context is full (drafting stops; generation goes on).
fn catch_up(draft: &mut Session<'_>, committed: &[u32], st: &mut SpecStats) -> Result<bool> {
    let p = shared_prefix(draft.tokens(), committed);
    draft.truncate(p);
    if p == committed.len() {
        return Ok(true);
    }
    st.n_draft_steps += 1;
    match draft.eval(&committed[p..], Logits::Last) {
        Ok(_) => Ok(true),
        Err(CoreError::ContextFull { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

fn shared_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Up to `k` greedy guesses of the draft after `committed` and `next`,
/// into `out`. Returns whether drafting can go on (false once the draft's
/// context is full).
fn propose(
    draft: &mut Session<'_>,
    committed: &[u32],
    next: u32,
    k: usize,
    spec: &SpecParams,
    out: &mut Vec<u32>,
    st: &mut SpecStats,
) -> Result<bool> {
    // What the draft lacks of `committed` (usually nothing), then `next`.
    let p = shared_prefix(draft.tokens(), committed);
    draft.truncate(p);
    let mut todo = committed[p..].to_vec();
    todo.push(next);
    let mut step = |draft: &mut Session<'_>, tokens: &[u32]| -> Result<Option<(u32, f32)>> {
        st.n_draft_steps += 1;
        match draft.eval(tokens, Logits::Last) {
            Ok(l) => Ok(Some(argmax(l, spec.p_min > 0.0))),
            Err(CoreError::ContextFull { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    };
    let mut pick = step(draft, &todo)?;
    while let Some(p) = pick {
        if !take(p, k, spec, out) {
            return Ok(true);
        }
        pick = step(draft, &out[out.len() - 1..])?;
    }
    Ok(false)
}

/// The draft's pick `(token, probability)`: kept as a guess unless its
/// probability is below `spec.p_min`; whether to draft one more (kept, and
/// fewer than `k` guesses so far).
fn take(pick: (u32, f32), k: usize, spec: &SpecParams, out: &mut Vec<u32>) -> bool {
    if pick.1 < spec.p_min {
        return false;
    }
    out.push(pick.0);
    out.len() < k
}

/// One session's part in [`guess_batch`]: as [`guess`]'s arguments.
#[derive(Clone, Copy, Debug)]
pub struct DraftJob<'a> {
    /// The tokens the target holds.
    pub committed: &'a [u32],
    /// The token the target sampled last, not yet evaluated.
    pub next: u32,
    /// Most guesses ([`n_guesses`]).
    pub k: usize,
}

/// [`guess`] for several sessions of one draft model at once: the steps
/// of all of them (the few committed tokens a session lacks and `next`,
/// then each guess) run as batched steps of `decoder` — one pass over the
/// draft's weights per guess position for every session still drafting; a
/// session lacking more than [`BATCHED_CATCH_UP`] tokens (a new prompt)
/// evaluates them on its own first. Fills `guesses[i]` (cleared first; left
/// empty when shorter than `spec.n_min`) and counts in `st[i]` (a batched
/// step's time shared out between its sessions); returns, per session,
/// whether drafting can go on (false once its context is full).
pub fn guess_batch<'m>(
    decoder: &mut BatchDecoder<'m>,
    drafts: &mut [&mut Session<'m>],
    jobs: &[DraftJob<'_>],
    spec: &SpecParams,
    guesses: &mut [Vec<u32>],
    st: &mut [SpecStats],
) -> Result<Vec<bool>> {
    let n = drafts.len();
    if jobs.len() != n || guesses.len() != n || st.len() != n {
        return Err(CoreError::Input(format!(
            "a batched draft step needs one job, guess list and stats per session: {} jobs, {} lists, {} stats for {n} sessions",
            jobs.len(),
            guesses.len(),
            st.len()
        )));
    }
    let mut go = vec![true; n];
    // The sessions still drafting and what each evaluates next: the
    // committed tokens it lacks (when few) and `next`, then its last guess.
    let mut live: Vec<usize> = Vec::with_capacity(n);
    let mut spans: Vec<Vec<u32>> = Vec::with_capacity(n);
    for (i, (d, job)) in drafts.iter_mut().zip(jobs).enumerate() {
        guesses[i].clear();
        if job.k == 0 {
            continue;
        }
        let t0 = Instant::now();
        let p = shared_prefix(d.tokens(), job.committed);
        d.truncate(p);
        let lag = &job.committed[p..];
        let caught_up = lag.len() <= BATCHED_CATCH_UP || {
            // A new prompt: evaluated on its own, as a prompt.
            st[i].n_draft_steps += 1;
            match d.eval(lag, Logits::Last) {
                Ok(_) => true,
                Err(CoreError::ContextFull { .. }) => false,
                Err(e) => return Err(e),
            }
        };
        st[i].draft_time += t0.elapsed();
        if caught_up {
            let mut span = if lag.len() <= BATCHED_CATCH_UP {
                lag.to_vec()
            } else {
                Vec::new()
            };
            span.push(job.next);
            live.push(i);
            spans.push(span);
        } else {
            go[i] = false;
        }
    }
    while !live.is_empty() {
        // A session without room for its span stops drafting.
        for j in (0..live.len()).rev() {
            let d = &drafts[live[j]];
            if d.n_past() + spans[j].len() > d.n_ctx() {
                go[live[j]] = false;
                live.remove(j);
                spans.remove(j);
            }
        }
        if live.is_empty() {
            break;
        }
        let t0 = Instant::now();
        let mut refs: Vec<&mut Session<'m>> = drafts
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| live.contains(i))
            .map(|(_, d)| &mut **d)
            .collect();
        let runs: Vec<&[u32]> = spans.iter().map(Vec::as_slice).collect();
        decoder.decode_spans(&mut refs, &runs)?;
        let share = t0.elapsed() / live.len() as u32;
        let mut j = 0;
        while j < live.len() {
            let i = live[j];
            st[i].n_draft_steps += 1;
            st[i].draft_time += share;
            let pick = argmax(drafts[i].last_logits(), spec.p_min > 0.0);
            if take(pick, jobs[i].k, spec, &mut guesses[i]) {
                spans[j].clear();
                spans[j].push(pick.0);
                j += 1;
            } else {
                live.remove(j);
                spans.remove(j);
            }
        }
    }
    for g in guesses.iter_mut() {
        if g.len() < spec.n_min.max(1) {
            g.clear();
        }
    }
    Ok(go)
}

/// Most committed tokens a draft session may lack for [`guess_batch`] to
/// evaluate them in its first batched step (with `next`); more — a new
/// prompt — are evaluated before, on their own.
const BATCHED_CATCH_UP: usize = 16;

/// The highest logit (lowest id on ties) and, when `want_p`, its
/// probability among the [`P_TOP_K`] highest (llama.cpp's draft sampler is
/// top-k 10), else 1.
fn argmax(logits: &[f32], want_p: bool) -> (u32, f32) {
    let mut best = 0usize;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    if !want_p {
        return (best as u32, 1.0);
    }
    // The P_TOP_K highest logits, largest first.
    let mut top = [f32::NEG_INFINITY; P_TOP_K];
    for &l in logits {
        if l > top[P_TOP_K - 1] {
            let mut j = P_TOP_K - 1;
            while j > 0 && top[j - 1] < l {
                top[j] = top[j - 1];
                j -= 1;
            }
            top[j] = l;
        }
    }
    let m = top[0];
    let sum: f32 = top.iter().map(|&l| (l - m).exp()).sum();
    (best as u32, 1.0 / sum)
}

/// Logits the draft's probability is taken over (see [`SpecParams::p_min`]).
const P_TOP_K: usize = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_generations() {
        let c = SpecCounters::new();
        let a = SpecStats {
            n_drafted: 10,
            n_accepted: 7,
            n_target_passes: 4,
            n_draft_steps: 12,
            draft_time: Duration::from_millis(30),
            target_time: Duration::from_millis(50),
        };
        c.record(&a);
        c.record(&a);
        let mut want = a;
        want.add(&a);
        assert_eq!(c.snapshot(), want);
        assert_eq!(c.generations(), 2);
        assert!((want.acceptance_rate() - 0.7).abs() < 1e-12);
        assert_eq!(SpecStats::default().acceptance_rate(), 0.0);
    }

    #[test]
    fn guesses_fit_the_context_and_the_budget() {
        let spec = SpecParams::default();
        assert_eq!(n_guesses(&spec, 100, None), 8);
        assert_eq!(
            n_guesses(&spec, 5, None),
            4,
            "the round's token needs a cell"
        );
        assert_eq!(
            n_guesses(&spec, 100, Some(3)),
            2,
            "a round emits guesses + 1"
        );
        assert_eq!(n_guesses(&spec, 1, Some(1)), 0);
        assert_eq!(n_guesses(&spec, 0, None), 0);
    }

    /// Rows of 3 logits whose argmax is `picks[i]`.
    fn rows(picks: &[u32]) -> Vec<f32> {
        picks
            .iter()
            .flat_map(|&p| (0..3).map(move |i| if i == p { 1.0 } else { 0.0 }))
            .collect()
    }

    #[test]
    fn accept_takes_rows_while_they_agree_with_the_guesses() {
        let take = |row: &[f32]| Ok(Some(argmax(row, false).0));
        let mut st = SpecStats::default();
        // All three guesses right: four tokens, the last starts the next round.
        let r = accept(&rows(&[1, 2, 0, 1]), 3, &[1, 2, 0], &mut st, take).unwrap();
        assert_eq!((r.n_accepted, r.next, r.kept()), (3, Some(1), 4));
        // The second guess wrong: its row's token starts the next round.
        let r = accept(&rows(&[1, 0, 2]), 3, &[1, 2], &mut st, take).unwrap();
        assert_eq!((r.n_accepted, r.next), (1, Some(0)));
        assert_eq!((st.n_drafted, st.n_accepted), (5, 4));
        // The generation ends at the first row: nothing more is taken.
        let mut taken = 0;
        let r = accept(&rows(&[1, 2]), 3, &[1], &mut st, |_| {
            taken += 1;
            Ok(None)
        })
        .unwrap();
        assert_eq!((r.n_accepted, r.next, taken), (0, None, 1));
        // Rows that do not match the guesses are refused.
        assert!(accept(&rows(&[1]), 3, &[1], &mut st, take).is_err());
    }

    #[test]
    fn argmax_takes_the_lowest_id_on_ties_and_its_probability() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0], false), (1, 1.0));
        let (id, p) = argmax(&[0.0, 0.0], true);
        assert_eq!(id, 0);
        assert!((p - 0.5).abs() < 1e-6);
        // Only the 10 highest count: 11 equal logits give 1/10.
        let (id, p) = argmax(&[2.0; 11], true);
        assert_eq!(id, 0);
        assert!((p - 0.1).abs() < 1e-6);
    }
}
