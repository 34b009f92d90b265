//! The generation loop shared by the CLI, the SDK and the server: evaluate
//! a prompt, then sample, stream and evaluate one token at a time until the
//! token budget, an end-of-generation token, a stop string, the caller or a
//! full context ends it.

use std::time::{Duration, Instant};

use crate::error::{CoreError, Result};
use crate::sample::{Sampler, SamplerConfig, StopStrings};
use crate::session::{Logits, Session};

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateParams {
    /// Most tokens to generate (`None`: until something else stops it).
    pub n_predict: Option<usize>,
    /// The sampler chain.
    pub sampler: SamplerConfig,
    /// Strings that end the generation (not emitted).
    pub stop: Vec<String>,
    /// Keep going past end-of-generation tokens.
    pub ignore_eos: bool,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// `n_predict` tokens were generated.
    Length,
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// A stop string appeared.
    StopString,
    /// The callback asked to stop.
    Cancelled,
    /// The context is full.
    ContextFull,
}

/// Counts and timings of one generation.
#[derive(Clone, Copy, Debug)]
pub struct GenerateStats {
    /// Prompt tokens evaluated.
    pub n_prompt: usize,
    /// Time to evaluate them.
    pub prompt_time: Duration,
    /// Tokens generated (sampled).
    pub n_gen: usize,
    /// Time spent sampling and evaluating them.
    pub gen_time: Duration,
    /// Why it ended.
    pub stop: StopReason,
}

impl GenerateStats {
    /// Prompt tokens per second.
    pub fn prompt_tps(&self) -> f64 {
        self.n_prompt as f64 / self.prompt_time.as_secs_f64().max(1e-9)
    }

    /// Generated tokens per second.
    pub fn gen_tps(&self) -> f64 {
        self.n_gen as f64 / self.gen_time.as_secs_f64().max(1e-9)
    }
}

/// Evaluates `prompt` (after what `session` holds) and generates,
/// calling `on_text` with each piece of text as it becomes final; `on_text`
/// returns `false` to stop. Returns the generated token ids and the stats.
pub fn generate(
    session: &mut Session<'_>,
    prompt: &[u32],
    params: &GenerateParams,
    mut on_text: impl FnMut(&str) -> bool,
) -> Result<(Vec<u32>, GenerateStats)> {
    let model = session.model();
    let tok = model.tokenizer();
    let mut sampler = Sampler::new(params.sampler.clone(), model.hparams().n_vocab)?;
    for &t in session.tokens().iter().chain(prompt) {
        sampler.accept(t);
    }
    let mut stop_strings = StopStrings::new(params.stop.clone())?;
    let mut stream = tok.stream();
    let t0 = Instant::now();
    session.eval(prompt, Logits::Last)?;
    let prompt_time = t0.elapsed();
    let t1 = Instant::now();
    let mut out = Vec::new();
    let mut stop = StopReason::Length;
    loop {
        if params.n_predict.is_some_and(|n| out.len() >= n) {
            break;
        }
        let logits = session.last_logits();
        let t = sampler.sample(logits)?;
        sampler.accept(t);
        out.push(t);
        if tok.is_eog(t) && !params.ignore_eos {
            stop = StopReason::EndOfGeneration;
            break;
        }
        let piece = stream.push(t)?;
        let s = stop_strings.push(&piece);
        if !s.text.is_empty() && !on_text(&s.text) {
            stop = StopReason::Cancelled;
            break;
        }
        if s.stopped {
            stop = StopReason::StopString;
            break;
        }
        if params.n_predict.is_some_and(|n| out.len() >= n) {
            break;
        }
        match session.eval(&[t], Logits::Last) {
            Ok(_) => {}
            Err(CoreError::ContextFull { .. }) => {
                stop = StopReason::ContextFull;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    if stop != StopReason::StopString && stop != StopReason::Cancelled {
        let mut tail = stream.finish();
        tail.insert_str(0, &stop_strings.finish());
        if !tail.is_empty() {
            on_text(&tail);
        }
    }
    let stats = GenerateStats {
        n_prompt: prompt.len(),
        prompt_time,
        n_gen: out.len(),
        gen_time: t1.elapsed(),
        stop,
    };
    Ok((out, stats))
}
