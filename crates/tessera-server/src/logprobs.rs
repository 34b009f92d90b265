//! Log-probabilities of a step: the log-softmax of the raw logits, the
//! chosen token's value and the `n` most likely tokens, with a scratch
//! buffer kept between steps (a step allocates only its answer).

use tessera_tokenizer::Tokenizer;

use crate::openai::{Alternative, TokenLogprob};

/// Most alternatives a request may ask for per token.
pub const MAX_TOP: usize = 20;

/// Reusable buffers for [`Scratch::entry`].
#[derive(Debug, Default)]
pub struct Scratch {
    ids: Vec<u32>,
}

impl Scratch {
    /// The entry of token `chosen` at a step with `logits`, with the `n_top`
    /// most likely tokens (highest first, lowest id first on ties).
    pub fn entry(
        &mut self,
        logits: &[f32],
        chosen: u32,
        n_top: usize,
        tok: &Tokenizer,
    ) -> TokenLogprob {
        let lse = log_sum_exp(logits);
        let lp = |id: u32| {
            logits
                .get(id as usize)
                .map_or(f32::NEG_INFINITY, |&l| l - lse)
        };
        let top = self
            .top(logits, n_top.min(MAX_TOP))
            .iter()
            .map(|&id| {
                let bytes = piece(tok, id);
                Alternative {
                    token: String::from_utf8_lossy(&bytes).into_owned(),
                    logprob: lp(id),
                    bytes,
                }
            })
            .collect();
        let bytes = piece(tok, chosen);
        TokenLogprob {
            token: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
            logprob: lp(chosen),
            top,
        }
    }

    /// Ids of the `n` highest logits, best first.
    fn top(&mut self, logits: &[f32], n: usize) -> &[u32] {
        let n = n.min(logits.len());
        self.ids.clear();
        if n == 0 {
            return &self.ids;
        }
        self.ids.extend(0..logits.len() as u32);
        let order = |a: &u32, b: &u32| {
            logits[*b as usize]
                .total_cmp(&logits[*a as usize])
                .then(a.cmp(b))
        };
        self.ids.select_nth_unstable_by(n - 1, order);
        self.ids.truncate(n);
        self.ids.sort_unstable_by(order);
        &self.ids
    }
}

/// `ln Σ exp(l)`, computed from the maximum so nothing overflows.
pub fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return max;
    }
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    max + sum.ln() as f32
}

/// A token's bytes, control tokens rendered (`<|im_end|>`).
fn piece(tok: &Tokenizer, id: u32) -> Vec<u8> {
    tok.piece(id, true).map(<[u8]>::to_vec).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_sums_to_one() {
        let logits = [1.0f32, 2.0, 3.0, -1.0];
        let lse = log_sum_exp(&logits);
        let total: f32 = logits.iter().map(|l| (l - lse).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
        // Large logits do not overflow.
        assert!(log_sum_exp(&[1000.0, 1000.0]).is_finite());
    }

    #[test]
    fn top_is_sorted_and_ties_break_on_id() {
        let mut s = Scratch::default();
        let logits = [0.5f32, 3.0, 3.0, -2.0, 1.0];
        assert_eq!(s.top(&logits, 3), [1, 2, 4]);
        assert_eq!(s.top(&logits, 0), [] as [u32; 0]);
        assert_eq!(s.top(&logits, 9).len(), 5);
    }
}
