//! A decode step over several sessions at once: [`BatchDecoder::decode`]
//! evaluates the next token of each of `n` sessions in one graph of `n`
//! rows, so the matrix products (and `mul_mat_id`) read every weight once
//! for all of them — what lets a server's aggregate speed grow with its
//! clients on a memory-bound CPU, where one step per client re-reads the
//! whole model per token.
//!
//! Each session keeps its own KV cache: row `i` is session `i`'s token at
//! that session's own position, and attention stores and reads that row in
//! that session's cache ([`Backend::compute_multi_seq`]).
//!
//! Bit for bit: the graph is decode-exact ([`Graph::decode_exact`]): every
//! row is computed in the float order of a one-token step (the matrix
//! products in the GEMV chains, still reading each weight tile once for
//! all rows; attention one row at a time over its own cache), so each
//! session ends with the logits `session.eval(&[token], Logits::Last)`
//! gives, and its [`Session::last_logits`] holds them.
//!
//! [`BatchDecoder::decode_spans`] takes a run of tokens per session (the
//! rows of one session at consecutive positions, each attending to the
//! ones before it as one-token steps would): the verification pass of
//! speculative decoding for several sessions in one step.
//!
//! A step whose graph has a segment on a backend without multi-sequence
//! steps (wgpu today) runs as one step per session instead: slower, never
//! different.
//!
//! [`Graph::decode_exact`]: crate::graph::Graph::decode_exact
//! [`Session::last_logits`]: crate::Session::last_logits

use std::collections::HashMap;

use crate::backend::DeviceBuffer;
use crate::error::{CoreError, Result};
use crate::graph::StepInputs;
use crate::kv::KvCache;
use crate::model::Model;
use crate::sched::Schedule;
use crate::session::{read_output, run_segments, Logits, Session};

/// Runs decode steps over several sessions of one model. Per batch size
/// it builds and schedules the graph once; its arenas grow to the largest
/// batch seen, after which a step allocates nothing but a list of cache
/// references.
pub struct BatchDecoder<'m> {
    model: &'m Model,
    /// Per batch size: the graph, and whether every device it runs on
    /// takes multi-sequence steps (else: one step per session).
    schedules: HashMap<usize, (Schedule, bool)>,
    work: Vec<Box<dyn DeviceBuffer>>,
    staging: Vec<u8>,
    pos: Vec<i32>,
    out_rows: Vec<u32>,
    seq: Vec<usize>,
    /// The step's tokens, session after session, and how many each has.
    flat: Vec<u32>,
    lens: Vec<usize>,
    logits: Vec<f32>,
    /// Steps run, rows over all steps, steps run one session at a time.
    counts: BatchCounts,
}

/// What a [`BatchDecoder`] has run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchCounts {
    /// Calls of [`BatchDecoder::decode`].
    pub steps: u64,
    /// Tokens decoded over all of them (their batch sizes summed).
    pub rows: u64,
    /// Of the steps, those of several sessions run one session at a time
    /// (a backend without multi-sequence steps).
    pub fallback_steps: u64,
}

impl<'m> BatchDecoder<'m> {
    /// A decoder for sessions of `model`.
    pub fn new(model: &'m Model) -> Result<BatchDecoder<'m>> {
        let work = model
            .backends()
            .iter()
            .map(|b| b.alloc(0))
            .collect::<Result<Vec<_>>>()?;
        Ok(BatchDecoder {
            model,
            schedules: HashMap::new(),
            work,
            staging: Vec::new(),
            pos: Vec::new(),
            out_rows: Vec::new(),
            seq: Vec::new(),
            flat: Vec::new(),
            lens: Vec::new(),
            logits: Vec::new(),
            counts: BatchCounts::default(),
        })
    }

    /// What it has run so far.
    pub fn counts(&self) -> BatchCounts {
        self.counts
    }

    /// Evaluates `tokens[i]` after what `sessions[i]` holds, for every `i`,
    /// in one step; afterwards each session's `last_logits()` are its
    /// token's (bit for bit those of `eval(&[token], Logits::Last)`).
    ///
    /// Hibernated sessions are woken first. Every input is checked before
    /// anything runs (same model, one token per session, ids in the
    /// vocabulary, room in every cache): such an error leaves the sessions
    /// holding what they held. After an error of a backend while the step
    /// runs, each session has evaluated its token or not (see `n_past`).
    pub fn decode(&mut self, sessions: &mut [&mut Session<'m>], tokens: &[u32]) -> Result<()> {
        let n = sessions.len();
        if n == 0 || tokens.len() != n {
            return Err(CoreError::Input(format!(
                "a batched step needs one token per session: {} tokens for {n} sessions",
                tokens.len()
            )));
        }
        self.flat.clear();
        self.flat.extend_from_slice(tokens);
        self.lens.clear();
        self.lens.resize(n, 1);
        self.run(sessions)
    }

    /// [`BatchDecoder::decode`] with a run of tokens per session:
    /// evaluates `spans[i]` (one token or more) after what `sessions[i]`
    /// holds, for every `i`, in one step of `Σ spans[i].len()` rows, and
    /// returns the logits of every row, `[Σ spans[i].len(), n_vocab]`,
    /// session after session. Each row is bit for bit what a one-token
    /// step gives (`eval(span, Logits::All)` with
    /// [`Session::set_decode_exact`] on), and each session's
    /// `last_logits()` are its last token's. This is the verification
    /// pass of speculative decoding over several sessions at once: a
    /// session's last sampled token and its draft's guesses. Checks and
    /// errors as `decode`.
    pub fn decode_spans(
        &mut self,
        sessions: &mut [&mut Session<'m>],
        spans: &[&[u32]],
    ) -> Result<&[f32]> {
        let n = sessions.len();
        if n == 0 || spans.len() != n || spans.iter().any(|s| s.is_empty()) {
            return Err(CoreError::Input(format!(
                "a batched step needs a run of one token or more per session: {} runs for {n} sessions",
                spans.len()
            )));
        }
        self.flat.clear();
        self.lens.clear();
        for s in spans {
            self.flat.extend_from_slice(s);
            self.lens.push(s.len());
        }
        self.run(sessions)?;
        Ok(&self.logits)
    }

    /// Runs `self.flat`, `self.lens[i]` tokens for session `i`; leaves
    /// every row's logits in `self.logits`.
    fn run(&mut self, sessions: &mut [&mut Session<'m>]) -> Result<()> {
        let n_vocab = self.model.hparams().n_vocab;
        let mut at = 0;
        for (i, (s, &len)) in sessions.iter_mut().zip(&self.lens).enumerate() {
            let span = &self.flat[at..at + len];
            at += len;
            if !std::ptr::eq(s.model(), self.model) {
                return Err(CoreError::Input(format!(
                    "session {i} of the batch belongs to another model"
                )));
            }
            if let Some(&t) = span.iter().find(|&&t| t as usize >= n_vocab) {
                return Err(CoreError::Input(format!(
                    "token id {t} (session {i}) is outside the vocabulary of {n_vocab}"
                )));
            }
            // A hibernated session is woken first (as `eval` does).
            s.wake()?;
            if s.n_past() + len > s.n_ctx() {
                return Err(CoreError::ContextFull {
                    needed: s.n_past() + len,
                    n_ctx: s.n_ctx(),
                });
            }
        }
        let (n, rows) = (sessions.len(), self.flat.len());
        self.counts.steps += 1;
        self.counts.rows += rows as u64;
        self.logits.clear();
        if n == 1 || !self.prepare(rows)? {
            if n > 1 {
                self.counts.fallback_steps += 1;
            }
            // One session at a time, each row as a one-token step computes it.
            let mut at = 0;
            for (s, &len) in sessions.iter_mut().zip(&self.lens) {
                let span = &self.flat[at..at + len];
                at += len;
                let exact = s.decode_exact();
                s.set_decode_exact(true);
                let r = s
                    .eval(span, Logits::All)
                    .map(|l| self.logits.extend_from_slice(l));
                s.set_decode_exact(exact);
                r?;
            }
            return Ok(());
        }
        self.step(sessions)?;
        let mut at = 0;
        for (s, &len) in sessions.iter_mut().zip(&self.lens) {
            let last = &self.logits[(at + len - 1) * n_vocab..(at + len) * n_vocab];
            s.stepped(&self.flat[at..at + len], last);
            at += len;
        }
        Ok(())
    }

    /// Schedules the graph of `n` rows (once) and grows the arenas for it;
    /// whether every device it runs on takes multi-sequence steps.
    fn prepare(&mut self, n: usize) -> Result<bool> {
        if let Some((_, multi)) = self.schedules.get(&n) {
            return Ok(*multi);
        }
        let mut s = self.model.schedule(n, n)?;
        s.graph.decode_exact = true;
        let backends = self.model.backends();
        let multi = s
            .segments
            .iter()
            .all(|seg| seg.is_copy || backends[seg.device].supports_multi_seq());
        if multi {
            for (dev, &bytes) in s.plan.arena_bytes.iter().enumerate() {
                if self.work[dev].len() < bytes {
                    self.work[dev] = backends[dev].alloc(bytes)?;
                }
            }
        }
        self.schedules.insert(n, (s, multi));
        Ok(multi)
    }

    /// Runs the scheduled graph of the rows of `self.flat` (session `i`'s
    /// run at its own positions); leaves the logits in `self.logits`
    /// (`[rows, n_vocab]`).
    fn step(&mut self, sessions: &mut [&mut Session<'m>]) -> Result<()> {
        let n = self.flat.len();
        let (sched, _) = &self.schedules[&n];
        self.pos.clear();
        self.seq.clear();
        for (i, (s, &len)) in sessions.iter().zip(&self.lens).enumerate() {
            let p = s.n_past();
            self.pos.extend((p..p + len).map(|p| p as i32));
            self.seq.extend(std::iter::repeat_n(i, len));
        }
        self.out_rows.clear();
        self.out_rows.extend(0..n as u32);
        let tokens = &self.flat;
        let step = StepInputs {
            tokens,
            pos: &self.pos,
            out_rows: &self.out_rows,
        };
        let mut kvs: Vec<&mut KvCache> = sessions.iter_mut().map(|s| s.kv_mut()).collect();
        let seq = &self.seq;
        run_segments(
            self.model,
            sched,
            &step,
            &mut self.work,
            &mut self.staging,
            |b, run, work| b.compute_multi_seq(run, work, &mut kvs, seq),
        )?;
        self.logits.clear();
        read_output(sched, &self.work, &mut self.logits)
    }
}
