//! `Sampler`: the chain that turns one step's logits into a token, in
//! llama.cpp's default order (`common_sampler_init` in `common/sampling.cpp`):
//! logit bias, penalties, top-k, typical-p, top-p, min-p, temperature, then
//! either the greedy pick (temperature <= 0) or a seeded draw from the
//! softmax of what is left.
//!
//! The random generator is `rand::rngs::StdRng` (ChaCha12 in rand 0.8)
//! seeded with `seed_from_u64`: the same seed and the same logits give the
//! same tokens for a given `rand` version (the lock file pins it).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::candidates::{Candidate, Candidates};
use super::penalties::Penalties;
use super::{stages, SampleError, SamplerConfig};

/// Picks one token per decoding step. Buffers are kept between calls, so
/// after the first `sample` a call allocates nothing.
#[derive(Debug)]
pub struct Sampler {
    cfg: SamplerConfig,
    n_vocab: usize,
    seed: u64,
    rng: StdRng,
    penalties: Penalties,
    cands: Candidates,
}

impl Sampler {
    /// A sampler for a vocabulary of `n_vocab` tokens; refuses any invalid
    /// setting (see [`SamplerConfig::validate`]).
    pub fn new(cfg: SamplerConfig, n_vocab: usize) -> Result<Self, SampleError> {
        cfg.validate(n_vocab)?;
        let seed = cfg.seed.unwrap_or_else(rand::random);
        Ok(Self {
            penalties: Penalties::new(&cfg, n_vocab),
            cands: Candidates::with_capacity(n_vocab),
            rng: StdRng::seed_from_u64(seed),
            seed,
            n_vocab,
            cfg,
        })
    }

    /// The settings this sampler was built with.
    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// The vocabulary size `sample` expects.
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// The seed in use: `config().seed`, or the random one picked for `None`.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Records a token in the penalty window. Call it for every prompt token
    /// and every generated token, as llama.cpp does. An id outside the
    /// vocabulary occupies a window slot but penalises nothing.
    pub fn accept(&mut self, token: u32) {
        self.penalties.accept(token);
    }

    /// Empties the penalty window and restarts the random generator from the
    /// seed (a fresh random seed when `config().seed` is `None`, as llama.cpp).
    pub fn reset(&mut self) {
        self.penalties.reset();
        if self.cfg.seed.is_none() {
            self.seed = rand::random();
        }
        self.rng = StdRng::seed_from_u64(self.seed);
    }

    /// Runs every stage except the final pick and returns the survivors with
    /// their logits after the last stage that changed them (temperature
    /// included when `temp > 0`). Useful to inspect the chain; does not
    /// touch the random generator.
    pub fn filter(&mut self, logits: &[f32]) -> Result<&[Candidate], SampleError> {
        if logits.len() != self.n_vocab {
            return Err(SampleError::LogitsLength {
                got: logits.len(),
                n_vocab: self.n_vocab,
            });
        }
        let c = &mut self.cands;
        c.load(logits)?;
        for &(token, bias) in &self.cfg.logit_bias {
            // Validated: token < n_vocab, and the list is in id order here.
            c.list[token as usize].logit += bias;
        }
        self.penalties.apply(&mut c.list);
        if c.max_logit() == f32::NEG_INFINITY {
            return Err(SampleError::AllTokensBanned);
        }
        stages::top_k(c, self.cfg.top_k);
        stages::typical(c, self.cfg.typical_p);
        stages::top_p(c, self.cfg.top_p);
        stages::min_p(c, self.cfg.min_p);
        stages::temperature(c, self.cfg.temp);
        Ok(&c.list)
    }

    /// Picks the next token from one step's logits (`n_vocab` of them; NaN
    /// and +inf are refused, -inf masks a token).
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32, SampleError> {
        self.filter(logits)?;
        let c = &mut self.cands;
        if self.cfg.temp <= 0.0 {
            return Ok(greedy(&c.list));
        }
        Ok(draw(c, self.rng.gen::<f64>()))
    }
}

/// The highest logit, lowest id on ties. `list` is never empty here: every
/// stage keeps at least one token.
fn greedy(list: &[Candidate]) -> u32 {
    list.iter()
        .copied()
        .reduce(|best, cand| {
            let better = cand.logit > best.logit || (cand.logit == best.logit && cand.id < best.id);
            if better {
                cand
            } else {
                best
            }
        })
        .map_or(0, |best| best.id)
}

/// Inverse-CDF draw from the softmax of the list with `u` uniform in [0, 1):
/// the first candidate whose running weight passes `u * total`, as
/// llama.cpp's `dist` sampler (strictly passes, so a weight-0 token is never
/// drawn).
fn draw(c: &mut Candidates, u: f64) -> u32 {
    c.exp_weights();
    let total: f64 = c.probs.iter().map(|&w| f64::from(w)).sum();
    let target = u * total;
    let mut run = 0.0f64;
    let mut last_nonzero = 0;
    for (i, &w) in c.probs.iter().enumerate() {
        if w > 0.0 {
            run += f64::from(w);
            last_nonzero = i;
            if run > target {
                return c.list[i].id;
            }
        }
    }
    // Rounding left `run` just short of `target`.
    c.list[last_nonzero].id
}
