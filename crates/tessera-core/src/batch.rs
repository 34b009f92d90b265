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
        let n_vocab = self.model.hparams().n_vocab;
        for (i, (s, &t)) in sessions.iter_mut().zip(tokens).enumerate() {
            if !std::ptr::eq(s.model(), self.model) {
                return Err(CoreError::Input(format!(
                    "session {i} of the batch belongs to another model"
                )));
            }
            if t as usize >= n_vocab {
                return Err(CoreError::Input(format!(
                    "token id {t} (session {i}) is outside the vocabulary of {n_vocab}"
                )));
            }
            // A hibernated session is woken first (as `eval` does).
            s.wake()?;
            if s.n_past() + 1 > s.n_ctx() {
                return Err(CoreError::ContextFull {
                    needed: s.n_past() + 1,
                    n_ctx: s.n_ctx(),
                });
            }
        }
        self.counts.steps += 1;
        self.counts.rows += n as u64;
        if n == 1 || !self.prepare(n)? {
            if n > 1 {
                self.counts.fallback_steps += 1;
            }
            for (s, &t) in sessions.iter_mut().zip(tokens) {
                s.eval(&[t], Logits::Last)?;
            }
            return Ok(());
        }
        self.step(sessions, tokens)?;
        let logits = &self.logits;
        for ((s, &t), row) in sessions
            .iter_mut()
            .zip(tokens)
            .zip(logits.chunks_exact(n_vocab))
        {
            s.stepped(t, row);
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

    /// Runs the scheduled graph of `tokens.len()` rows; leaves the logits
    /// in `self.logits` (`[n, n_vocab]`).
    fn step(&mut self, sessions: &mut [&mut Session<'m>], tokens: &[u32]) -> Result<()> {
        let n = tokens.len();
        let (sched, _) = &self.schedules[&n];
        self.pos.clear();
        self.pos.extend(sessions.iter().map(|s| s.n_past() as i32));
        self.out_rows.clear();
        self.out_rows.extend(0..n as u32);
        self.seq.clear();
        self.seq.extend(0..n);
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
