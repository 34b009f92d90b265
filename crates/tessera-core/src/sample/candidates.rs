//! The candidate list the stages narrow down: one `(token id, logit)` per
//! surviving token, plus the scratch buffers the stages need. Everything here
//! keeps its capacity between calls, so after the first `sample` no stage
//! allocates.

use std::cmp::Ordering;

use super::SampleError;

/// One surviving token and its logit after the stages applied so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Token id (index into the logits).
    pub id: u32,
    /// Its logit after logit bias, penalties and (if it ran) temperature.
    pub logit: f32,
}

/// Highest logit first, lowest id first among equal logits: a total order,
/// so every sort and selection gives the same answer on every run.
pub(crate) fn by_logit_desc(a: &Candidate, b: &Candidate) -> Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// The working set of one `sample` call and its reusable scratch space.
#[derive(Default)]
pub(crate) struct Candidates {
    /// The survivors. Right after [`Candidates::load`], `list[i].id == i`.
    pub list: Vec<Candidate>,
    /// Whether `list` is in [`by_logit_desc`] order.
    pub sorted: bool,
    /// Per-position probabilities, for the stages that need them.
    pub probs: Vec<f32>,
    /// A second list to gather a reordered `list` into.
    pub spare: Vec<Candidate>,
    /// `(score, position)` pairs, for typical sampling.
    pub keys: Vec<(f32, u32)>,
}

/// Sizes only: the buffers hold up to a whole vocabulary.
impl std::fmt::Debug for Candidates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidates")
            .field("len", &self.list.len())
            .field("sorted", &self.sorted)
            .finish_non_exhaustive()
    }
}

impl Candidates {
    /// A set whose main list already holds `n_vocab` entries' worth of space.
    pub fn with_capacity(n_vocab: usize) -> Self {
        Self {
            list: Vec::with_capacity(n_vocab),
            ..Self::default()
        }
    }

    /// Refills the list from `logits`, refusing NaN and +inf.
    pub fn load(&mut self, logits: &[f32]) -> Result<(), SampleError> {
        self.list.clear();
        self.sorted = false;
        for (id, &logit) in (0u32..).zip(logits) {
            if logit.is_nan() || logit == f32::INFINITY {
                return Err(SampleError::InvalidLogit {
                    token: id,
                    value: logit,
                });
            }
            self.list.push(Candidate { id, logit });
        }
        Ok(())
    }

    /// The highest logit (-inf for an empty list).
    pub fn max_logit(&self) -> f32 {
        if self.sorted {
            return self.list.first().map_or(f32::NEG_INFINITY, |c| c.logit);
        }
        self.list
            .iter()
            .fold(f32::NEG_INFINITY, |m, c| m.max(c.logit))
    }

    /// Sorts the list by [`by_logit_desc`] unless it already is.
    pub fn sort(&mut self) {
        if !self.sorted {
            self.list.sort_unstable_by(by_logit_desc);
            self.sorted = true;
        }
    }

    /// Fills `probs` with `exp(logit - max)` per position (not normalised)
    /// and returns their sum, as llama.cpp's softmax does in `f32`.
    pub fn exp_weights(&mut self) -> f32 {
        let max = self.max_logit();
        self.probs.clear();
        self.probs
            .extend(self.list.iter().map(|c| (c.logit - max).exp()));
        self.probs.iter().sum()
    }

    /// Fills `probs` with the softmax of the list's logits.
    pub fn softmax(&mut self) {
        let sum = self.exp_weights();
        for p in &mut self.probs {
            *p /= sum;
        }
    }
}
