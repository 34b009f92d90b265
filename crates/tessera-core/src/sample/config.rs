//! `SamplerConfig`: the user's sampling settings, with llama.cpp's defaults
//! (`common_params_sampling` in llama.cpp's `common/common.h`) and the checks
//! that turn a bad setting into a [`SampleError`] before any token is sampled.

use super::SampleError;

/// Sampling settings. `Default` gives llama.cpp's defaults; every stage has a
/// value that turns it off (noted per field), as in llama.cpp.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// Temperature. Must be finite; `<= 0` samples greedily (argmax after the
    /// other stages, lowest token id on ties). Default 0.8.
    pub temp: f32,
    /// Keep the `top_k` highest logits; `<= 0` keeps all. Default 40.
    pub top_k: i32,
    /// Nucleus sampling: keep the smallest set of most likely tokens whose
    /// probability sums to at least `top_p`. In `[0, 1]`; 1 is off. Default 0.95.
    pub top_p: f32,
    /// Keep tokens whose probability is at least `min_p` times the most likely
    /// token's. In `[0, 1]`; 0 is off. Default 0.05.
    pub min_p: f32,
    /// Locally typical sampling. In `[0, 1]`; 1 is off. Default 1.0.
    pub typical_p: f32,
    /// Repetition penalty: a penalised positive logit is divided by it, a
    /// negative one multiplied. Finite and `> 0`; 1 is off. Default 1.0.
    pub repeat_penalty: f32,
    /// How many of the last accepted tokens the penalties look at: 0 is off,
    /// -1 means every token accepted since the last `reset` (the whole
    /// context, as llama.cpp's `-1 = ctx_size` used to; the llama.cpp this
    /// was checked against, in llama-cpp-python 0.3.36, clamps negative
    /// values to 0 in `llama_sampler_init_penalties`). Default 64.
    pub repeat_last_n: i32,
    /// Subtracted once per occurrence in the window. Finite; 0 is off. Default 0.
    pub frequency_penalty: f32,
    /// Subtracted once if the token occurs in the window. Finite; 0 is off. Default 0.
    pub presence_penalty: f32,
    /// `(token, bias)` pairs added to the logits before anything else; a
    /// token listed twice gets both. A bias must be finite or `-inf` (bans
    /// the token). Default empty.
    pub logit_bias: Vec<(u32, f32)>,
    /// Seed of the random draw; `None` picks a random one (readable back
    /// through [`Sampler::seed`](super::Sampler::seed)). Default `None`.
    pub seed: Option<u64>,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            temp: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            typical_p: 1.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            logit_bias: Vec::new(),
            seed: None,
        }
    }
}

impl SamplerConfig {
    /// Plain argmax over the logits: temperature 0, every filter and penalty
    /// off, no logit bias (llama.cpp's `--temp 0` with `--top-k 0 --top-p 1
    /// --min-p 0`).
    pub fn greedy() -> Self {
        Self {
            temp: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..Self::default()
        }
    }

    /// Checks every setting against a vocabulary of `n_vocab` tokens.
    pub fn validate(&self, n_vocab: usize) -> Result<(), SampleError> {
        if n_vocab == 0 || n_vocab > i32::MAX as usize {
            return Err(SampleError::InvalidVocabSize(n_vocab));
        }
        check_finite("temp", self.temp)?;
        check_unit("top_p", self.top_p)?;
        check_unit("min_p", self.min_p)?;
        check_unit("typical_p", self.typical_p)?;
        check_finite("repeat_penalty", self.repeat_penalty)?;
        if self.repeat_penalty <= 0.0 {
            return Err(invalid("repeat_penalty", self.repeat_penalty, POSITIVE));
        }
        if self.repeat_last_n < -1 {
            return Err(invalid("repeat_last_n", self.repeat_last_n, LAST_N));
        }
        check_finite("frequency_penalty", self.frequency_penalty)?;
        check_finite("presence_penalty", self.presence_penalty)?;
        for &(token, bias) in &self.logit_bias {
            if token as usize >= n_vocab {
                return Err(SampleError::BiasTokenOutOfRange { token, n_vocab });
            }
            if bias.is_nan() || bias == f32::INFINITY {
                return Err(SampleError::InvalidBias { token, bias });
            }
        }
        Ok(())
    }
}

const FINITE: &str = "must be a finite number";
const UNIT: &str = "must be between 0 and 1";
const POSITIVE: &str = "must be greater than 0 (1 turns it off)";
const LAST_N: &str = "must be -1 (whole context), 0 (off) or a positive window";

fn invalid(name: &'static str, value: impl ToString, expected: &'static str) -> SampleError {
    SampleError::InvalidSetting {
        name,
        value: value.to_string(),
        expected,
    }
}

fn check_finite(name: &'static str, value: f32) -> Result<(), SampleError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(invalid(name, value, FINITE))
    }
}

fn check_unit(name: &'static str, value: f32) -> Result<(), SampleError> {
    // `contains` is false for NaN, so NaN is refused here too.
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(invalid(name, value, UNIT))
    }
}
