//! A session: one sequence's KV cache and the buffers its steps run in.
//!
//! [`Session::eval`] feeds tokens: they are cut into micro-batches of
//! `n_ubatch` tokens, each runs the graph scheduled for its shape (cached
//! per shape, so decode builds and plans its graph once), and the logits of
//! the requested rows come back. Activation arenas grow only when a new,
//! larger shape first appears; a decode step allocates nothing.
//!
//! Batches are computed in the batched kernels' float order (llama.cpp's),
//! which may round differently from one token at a time. With
//! [`Session::set_decode_exact`] on, every row of a step is computed as a
//! one-token step would compute it, so `eval(&[a, b, c], Logits::All)`
//! returns the bits of three one-token evals: what verifying a speculative
//! draft needs ([`crate::speculative`]).
//!
//! A session can be hibernated to a file and woken again
//! ([`residency`]: [`Session::hibernate`], [`Session::wake`]).

mod residency;

use std::collections::HashMap;
use std::path::PathBuf;

use crate::backend::{Backend, DeviceBuffer, SegmentRun};
use crate::error::{CoreError, Result};
use crate::graph::{Op, StepInputs};
use crate::kv::{KvCache, KvShape};
use crate::model::{Model, SessionParams};
use crate::sched::Schedule;

pub use residency::{Residency, Saved, Wake};

/// Which logits an [`Session::eval`] call returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// Only the last token's.
    Last,
    /// Every token's.
    All,
    /// The last `n` tokens' (perplexity scores the second half of a chunk).
    Tail(usize),
}

/// A sequence being evaluated.
pub struct Session<'m> {
    model: &'m Model,
    params: SessionParams,
    kv: KvCache,
    /// Per (tokens, output rows, decode-exact).
    schedules: HashMap<(usize, usize, bool), Schedule>,
    decode_exact: bool,
    work: Vec<Box<dyn DeviceBuffer>>,
    staging: Vec<u8>,
    pos: Vec<i32>,
    out_rows: Vec<u32>,
    logits: Vec<f32>,
    tokens: Vec<u32>,
    /// Tokens run through the model so far.
    n_evaluated: u64,
    /// The file the state is in while hibernated (device memory released).
    hibernated: Option<PathBuf>,
}

impl<'m> Session<'m> {
    pub(crate) fn new(model: &'m Model, params: &SessionParams) -> Result<Session<'m>> {
        let hp = model.hparams();
        let mut params = params.clone();
        if params.n_ctx == 0 {
            params.n_ctx = hp.n_ctx_train.min(4096);
        }
        // The fitter found room only for a smaller context.
        if let Some(c) = model.fit_ctx() {
            params.n_ctx = params.n_ctx.min(c);
        }
        if params.n_ubatch == 0 || params.n_batch == 0 {
            return Err(CoreError::Config(
                "batch and micro-batch sizes must be positive".into(),
            ));
        }
        params.n_ubatch = params.n_ubatch.min(params.n_batch);
        let shape = KvShape {
            n_ctx: params.n_ctx,
            k_width: hp.n_embd_k_gqa(),
            v_width: hp.n_embd_v_gqa(),
            k_type: params.type_k,
            v_type: params.type_v,
        };
        let kv = KvCache::new(shape, model.layer_devices(), model.backends())?;
        let work = model
            .backends()
            .iter()
            .map(|b| b.alloc(0))
            .collect::<Result<Vec<_>>>()?;
        Ok(Session {
            model,
            params,
            kv,
            schedules: HashMap::new(),
            decode_exact: false,
            work,
            staging: Vec::new(),
            pos: Vec::new(),
            out_rows: Vec::new(),
            logits: Vec::new(),
            tokens: Vec::new(),
            n_evaluated: 0,
            hibernated: None,
        })
    }

    /// The model.
    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// Context size.
    pub fn n_ctx(&self) -> usize {
        self.kv.n_ctx()
    }

    /// Tokens evaluated so far (= the next position).
    pub fn n_past(&self) -> usize {
        self.kv.n_used()
    }

    /// The tokens evaluated so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Bytes of the KV cache.
    pub fn kv_bytes(&self) -> usize {
        self.kv.bytes()
    }

    /// The logits of the last row returned by [`Session::eval`].
    pub fn last_logits(&self) -> &[f32] {
        let n = self.model.hparams().n_vocab;
        &self.logits[self.logits.len().saturating_sub(n)..]
    }

    /// Whether steps of several tokens compute each row as a one-token
    /// step does (bit for bit the logits of evaluating the tokens one at a
    /// time), rather than in the batched kernels' order. Off by default:
    /// a prompt is computed as llama.cpp computes it. On CPU devices the
    /// matrix products keep reading each weight once per step (one-token
    /// float chains, several tokens per weight row) and attention takes,
    /// per row, the path a one-token step takes; a step is then about as
    /// fast as a batched one for the few tokens of a speculative draft.
    /// A backend that ignores it (not the CPU's) computes the batched order.
    pub fn set_decode_exact(&mut self, on: bool) {
        self.decode_exact = on;
    }

    /// Whether [`Session::set_decode_exact`] is on.
    pub fn decode_exact(&self) -> bool {
        self.decode_exact
    }

    /// Forgets everything after the first `n` tokens.
    pub fn truncate(&mut self, n: usize) {
        self.kv.truncate(n);
        self.tokens.truncate(self.kv.n_used());
    }

    /// Forgets every token.
    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Evaluates `tokens` after those already in the session and returns
    /// logits `[rows, n_vocab]`: one row (the last token) or one per token.
    /// A hibernated session is woken first.
    pub fn eval(&mut self, tokens: &[u32], which: Logits) -> Result<&[f32]> {
        self.wake()?;
        if tokens.is_empty() {
            return Err(CoreError::Input(
                "nothing to evaluate: the token list is empty".into(),
            ));
        }
        let n_vocab = self.model.hparams().n_vocab;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(CoreError::Input(format!(
                "token id {bad} is outside the vocabulary of {n_vocab}"
            )));
        }
        self.kv.check_room(tokens.len())?;
        let n_tail = match which {
            Logits::Last => 1,
            Logits::All => tokens.len(),
            Logits::Tail(n) => n.clamp(1, tokens.len()),
        };
        let first_out = tokens.len() - n_tail;
        self.logits.clear();
        self.logits.reserve(n_tail * n_vocab);
        let ub = self.params.n_ubatch;
        for (i, chunk) in tokens.chunks(ub).enumerate() {
            let end = i * ub + chunk.len();
            // Rows of this chunk at or after `first_out`; a chunk with none
            // still computes one row (discarded) so every graph has an output.
            let wanted = end.saturating_sub(first_out).min(chunk.len());
            self.step(chunk, wanted.max(1))?;
            if wanted > 0 {
                let exact = self.decode_exact && chunk.len() > 1;
                self.read_logits((chunk.len(), wanted, exact))?;
            }
        }
        Ok(&self.logits)
    }

    /// The cache, for a step over several sessions ([`crate::batch`]).
    pub(crate) fn kv_mut(&mut self) -> &mut KvCache {
        &mut self.kv
    }

    /// A step over several sessions stored `tokens` at the next positions
    /// and computed `logits` (the last one's row) for them.
    pub(crate) fn stepped(&mut self, tokens: &[u32], logits: &[f32]) {
        self.kv.advance(tokens.len());
        self.tokens.extend_from_slice(tokens);
        self.n_evaluated += tokens.len() as u64;
        self.logits.clear();
        self.logits.extend_from_slice(logits);
    }

    /// Runs one micro-batch; leaves its logits in its output buffer.
    fn step(&mut self, chunk: &[u32], n_out: usize) -> Result<()> {
        let n = chunk.len();
        // One token is always computed in the one-token order.
        let key = (n, n_out, self.decode_exact && n > 1);
        if !self.schedules.contains_key(&key) {
            let mut s = self.model.schedule(n, n_out)?;
            s.graph.decode_exact = key.2;
            for (dev, &bytes) in s.plan.arena_bytes.iter().enumerate() {
                if self.work[dev].len() < bytes {
                    self.work[dev] = self.model.backends()[dev].alloc(bytes)?;
                }
            }
            self.schedules.insert(key, s);
        }
        let start = self.kv.n_used();
        self.pos.clear();
        self.pos.extend((start..start + n).map(|p| p as i32));
        self.out_rows.clear();
        self.out_rows.extend(((n - n_out) as u32)..n as u32);
        let sched = &self.schedules[&key];
        let step = StepInputs {
            tokens: chunk,
            pos: &self.pos,
            out_rows: &self.out_rows,
        };
        let kv = &mut self.kv;
        run_segments(
            self.model,
            sched,
            &step,
            &mut self.work,
            &mut self.staging,
            |b, run, work| b.compute(run, work, kv),
        )?;
        self.kv.advance(n);
        self.tokens.extend_from_slice(chunk);
        self.n_evaluated += n as u64;
        Ok(())
    }

    /// Appends the logits of the last step (`n_out` rows) to `self.logits`.
    fn read_logits(&mut self, key: (usize, usize, bool)) -> Result<()> {
        read_output(&self.schedules[&key], &self.work, &mut self.logits)
    }
}

/// Runs the segments of `sched` for one step: copy segments move tensors
/// between devices, the others go to `compute(backend, run, work buffer)`
/// (a session's `Backend::compute`, a batch's `compute_multi_seq`).
pub(crate) fn run_segments(
    model: &Model,
    sched: &Schedule,
    step: &StepInputs,
    work: &mut [Box<dyn DeviceBuffer>],
    staging: &mut Vec<u8>,
    mut compute: impl FnMut(&dyn Backend, &SegmentRun, &mut dyn DeviceBuffer) -> Result<()>,
) -> Result<()> {
    let backends = model.backends();
    for seg in &sched.segments {
        if seg.is_copy {
            for &n in &seg.nodes {
                copy_node(sched, n, work, staging)?;
            }
            continue;
        }
        let run = SegmentRun {
            graph: &sched.graph,
            nodes: &seg.nodes,
            plan: &sched.plan,
            weights: model.weights().as_slice(),
            step,
        };
        compute(
            backends[seg.device].as_ref(),
            &run,
            work[seg.device].as_mut(),
        )?;
    }
    Ok(())
}

/// Appends the graph output of the step just run (its logits rows) to `logits`.
pub(crate) fn read_output(
    sched: &Schedule,
    work: &[Box<dyn DeviceBuffer>],
    logits: &mut Vec<f32>,
) -> Result<()> {
    let out = sched
        .graph
        .output
        .ok_or_else(|| CoreError::Config("graph has no output".into()))?;
    let slot = sched
        .plan
        .slot(out)
        .ok_or_else(|| CoreError::Config("output has no buffer".into()))?;
    let len = sched.graph.tensor(out).len();
    let old = logits.len();
    logits.resize(old + len, 0.0);
    let dst: &mut [u8] = bytemuck::cast_slice_mut(&mut logits[old..]);
    work[slot.device].read(slot.offset, dst)
}

/// Runs the copy node `n`: reads its source on one device, writes it on another.
fn copy_node(
    sched: &Schedule,
    n: usize,
    work: &mut [Box<dyn DeviceBuffer>],
    staging: &mut Vec<u8>,
) -> Result<()> {
    let node = &sched.graph.nodes[n];
    let Op::Copy { x } = node.op else {
        return Err(CoreError::Config(format!(
            "{} is not a copy",
            sched.graph.node_name(n)
        )));
    };
    let missing = || CoreError::Config(format!("{} has no buffer", sched.graph.node_name(n)));
    let src = sched.plan.slot(x).ok_or_else(missing)?;
    let dst = sched.plan.slot(node.out).ok_or_else(missing)?;
    let bytes = sched.graph.tensor(x).len() * 4;
    staging.resize(bytes, 0);
    work[src.device].read(src.offset, staging)?;
    work[dst.device].write(dst.offset, staging)
}
