//! Perplexity exactly as `llama-perplexity` computes it.
//!
//! The tokens are cut into `n_chunk = tokens / n_ctx` chunks of `n_ctx`;
//! each chunk is evaluated in a fresh context with its first token replaced
//! by BOS (when the model adds one), and its second half is scored: for
//! positions `j in n_ctx/2 .. n_ctx-1`, `-log softmax(logits[j])[token[j+1]]`
//! (f32 max and `expf`, summed in f64, as llama.cpp). The error estimate is
//! llama.cpp's: `ppl * sqrt((E[nll²] - E[nll]²) / (count - 1))`.

use crate::error::{CoreError, Result};
use crate::session::{Logits, Session};

/// The result of a perplexity run.
#[derive(Clone, Debug)]
pub struct Perplexity {
    /// `exp(mean NLL)`.
    pub ppl: f64,
    /// llama.cpp's ± estimate (`None` if the variance came out non-positive).
    pub error: Option<f64>,
    /// The running perplexity after each chunk (llama.cpp's `[i]value` list).
    pub running: Vec<f64>,
    /// Tokens scored.
    pub count: usize,
}

/// `-log p(tok)` under the softmax of `logits`.
pub fn nll(logits: &[f32], tok: u32) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| (l - max).exp() as f64).sum();
    -((logits[tok as usize] - max) as f64 - sum.ln())
}

/// Perplexity of `tokens` in chunks of `n_ctx` (at most `max_chunks`),
/// calling `progress(done, total)` after each chunk. The session's context
/// must hold `n_ctx` tokens; it is cleared per chunk.
pub fn perplexity(
    session: &mut Session<'_>,
    tokens: &[u32],
    n_ctx: usize,
    max_chunks: Option<usize>,
    mut progress: impl FnMut(usize, usize),
) -> Result<Perplexity> {
    if n_ctx < 4 || tokens.len() < 2 * n_ctx {
        return Err(CoreError::Input(format!(
            "perplexity with a context of {n_ctx} needs at least {} tokens, the text has {}",
            2 * n_ctx,
            tokens.len()
        )));
    }
    let tok = session.model().tokenizer();
    let bos = tok.special().bos.filter(|_| tok.add_bos());
    let n_vocab = session.model().hparams().n_vocab;
    let n_chunk = (tokens.len() / n_ctx).min(max_chunks.unwrap_or(usize::MAX));
    let first = n_ctx / 2;
    let (mut sum, mut sum2, mut count) = (0f64, 0f64, 0usize);
    let mut running = Vec::with_capacity(n_chunk);
    let mut chunk = vec![0u32; n_ctx];
    for i in 0..n_chunk {
        chunk.copy_from_slice(&tokens[i * n_ctx..(i + 1) * n_ctx]);
        if let Some(b) = bos {
            chunk[0] = b;
        }
        session.clear();
        let logits = session.eval(&chunk, Logits::Tail(n_ctx - first))?;
        for j in first..n_ctx - 1 {
            let row = &logits[(j - first) * n_vocab..(j - first + 1) * n_vocab];
            let v = nll(row, tokens[i * n_ctx + j + 1]);
            sum += v;
            sum2 += v * v;
        }
        count += n_ctx - first - 1;
        running.push((sum / count as f64).exp());
        progress(i + 1, n_chunk);
    }
    let mean = sum / count as f64;
    let ppl = mean.exp();
    let var = sum2 / count as f64 - mean * mean;
    let error = (var > 0.0).then(|| (var / (count as f64 - 1.0)).sqrt() * ppl);
    Ok(Perplexity {
        ppl,
        error,
        running,
        count,
    })
}
