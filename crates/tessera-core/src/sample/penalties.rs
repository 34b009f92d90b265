//! Repetition, frequency and presence penalties over a window of the last
//! accepted tokens, with llama.cpp's formula (`llama_sampler_penalties` in
//! `src/llama-sampler.cpp`): for a token seen `count > 0` times in the window,
//! a logit `<= 0` is multiplied by `repeat_penalty` and a positive one divided
//! by it, then `count * frequency_penalty + presence_penalty` is subtracted.

use std::collections::VecDeque;

use super::candidates::Candidate;
use super::SamplerConfig;

/// The penalty settings and the window of accepted tokens.
pub(crate) struct Penalties {
    /// Window length; `None` keeps every accepted token (`repeat_last_n = -1`).
    window: Option<usize>,
    repeat: f32,
    frequency: f32,
    presence: f32,
    /// The window's tokens, oldest first (unused when the window is unbounded).
    recent: VecDeque<u32>,
    /// Occurrences of each token id in the window; empty while the stage is off.
    counts: Vec<u32>,
}

/// Settings and window length only: `counts` spans the whole vocabulary.
impl std::fmt::Debug for Penalties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Penalties")
            .field("on", &self.is_on())
            .field("window", &self.window)
            .field("repeat", &self.repeat)
            .field("frequency", &self.frequency)
            .field("presence", &self.presence)
            .field("in_window", &self.recent.len())
            .finish_non_exhaustive()
    }
}

impl Penalties {
    /// The stage for `cfg` over `n_vocab` tokens (settings already validated).
    pub fn new(cfg: &SamplerConfig, n_vocab: usize) -> Self {
        let window = usize::try_from(cfg.repeat_last_n).ok();
        let off = cfg.repeat_last_n == 0
            || (cfg.repeat_penalty == 1.0
                && cfg.frequency_penalty == 0.0
                && cfg.presence_penalty == 0.0);
        Self {
            window,
            repeat: cfg.repeat_penalty,
            frequency: cfg.frequency_penalty,
            presence: cfg.presence_penalty,
            recent: VecDeque::new(),
            counts: if off { Vec::new() } else { vec![0; n_vocab] },
        }
    }

    fn is_on(&self) -> bool {
        !self.counts.is_empty()
    }

    /// Adds `token` to the window, dropping the oldest token when it is full.
    /// An id outside the vocabulary takes its place in the window, as in
    /// llama.cpp, but can never match a logit, so it is not counted.
    pub fn accept(&mut self, token: u32) {
        if !self.is_on() {
            return;
        }
        if let Some(window) = self.window {
            if self.recent.len() >= window {
                if let Some(old) = self.recent.pop_front() {
                    self.bump(old, false);
                }
            }
            self.recent.push_back(token);
        }
        self.bump(token, true);
    }

    fn bump(&mut self, token: u32, up: bool) {
        if let Some(n) = self.counts.get_mut(token as usize) {
            *n = if up {
                n.saturating_add(1)
            } else {
                n.saturating_sub(1)
            };
        }
    }

    /// Forgets every accepted token.
    pub fn reset(&mut self) {
        self.recent.clear();
        self.counts.fill(0);
    }

    /// Penalises `list`, whose candidates may be in any order.
    pub fn apply(&self, list: &mut [Candidate]) {
        if !self.is_on() {
            return;
        }
        for c in list {
            let count = self.counts.get(c.id as usize).copied().unwrap_or(0);
            if count == 0 {
                continue;
            }
            if c.logit <= 0.0 {
                c.logit *= self.repeat;
            } else {
                c.logit /= self.repeat;
            }
            c.logit -= count as f32 * self.frequency + self.presence;
        }
    }
}
