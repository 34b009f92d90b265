//! The filtering stages between the penalties and the draw, in llama.cpp's
//! default order: top-k, typical-p, top-p, min-p, temperature. Each follows
//! the matching `llama_sampler_*_apply` in llama.cpp's `src/llama-sampler.cpp`
//! with `min_keep = 0` (llama.cpp's default), and leaves at least one token.

use super::candidates::{by_logit_desc, Candidate, Candidates};

/// Above this many unsorted candidates, top-p sorts only as much of the list
/// as it needs, starting with the best [`TOP_P_FIRST_TRY`] (llama.cpp tries
/// the same 256 above 1024, then sorts everything).
const TOP_P_PARTIAL_ABOVE: usize = 1024;
const TOP_P_FIRST_TRY: usize = 256;

/// Keeps the `k` highest logits, sorted; `k <= 0` or `k >= len` keeps all.
/// Partial selection: O(n + k log k), not a full sort.
pub(crate) fn top_k(c: &mut Candidates, k: i32) {
    let Ok(k) = usize::try_from(k) else { return };
    if k == 0 || k >= c.list.len() {
        return;
    }
    if !c.sorted {
        c.list.select_nth_unstable_by(k - 1, by_logit_desc);
        c.list.truncate(k);
        c.list.sort_unstable_by(by_logit_desc);
        c.sorted = true;
    }
    c.list.truncate(k);
}

/// Locally typical sampling: ranks tokens by how far their surprisal
/// `-ln p` is from the entropy `H = -Σ p ln p` and keeps the closest ones
/// until their probabilities sum to more than `p`. Leaves the list in that
/// rank order (unsorted by logit). `p >= 1` is off.
pub(crate) fn typical(c: &mut Candidates, p: f32) {
    if p >= 1.0 {
        return;
    }
    c.sort();
    c.softmax();
    // Tokens with probability 0 add nothing (llama.cpp would add NaN).
    let entropy: f32 = c
        .probs
        .iter()
        .filter(|&&q| q > 0.0)
        .map(|&q| -q * q.ln())
        .sum();
    c.keys.clear();
    c.keys.extend(
        (0u32..)
            .zip(&c.probs)
            .map(|(pos, &q)| ((-q.ln() - entropy).abs(), pos)),
    );
    c.keys
        .sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut cum = 0.0f32;
    let mut keep = c.keys.len();
    for (i, &(_, pos)) in c.keys.iter().enumerate() {
        cum += c.probs[pos as usize];
        if cum > p {
            keep = i + 1;
            break;
        }
    }
    c.spare.clear();
    c.spare
        .extend(c.keys[..keep].iter().map(|&(_, pos)| c.list[pos as usize]));
    std::mem::swap(&mut c.list, &mut c.spare);
    c.sorted = false;
}

/// Nucleus sampling: keeps the most likely tokens until their probabilities
/// sum to at least `p`, and leaves them sorted. `p >= 1` is off.
///
/// A long unsorted list is not sorted whole: the best [`TOP_P_FIRST_TRY`]
/// are selected and sorted, then the next block of the same size as all
/// sorted so far (doubling), only while the mass is still short of `p`.
pub(crate) fn top_p(c: &mut Candidates, p: f32) {
    if p >= 1.0 {
        return;
    }
    let max = c.max_logit();
    let sum: f32 = c.list.iter().map(|x| (x.logit - max).exp()).sum();
    let len = c.list.len();
    let mut sorted_upto = if c.sorted || len <= TOP_P_PARTIAL_ABOVE {
        c.sort();
        len
    } else {
        0
    };
    let mut cum = 0.0f32;
    let mut keep = len;
    for i in 0..len {
        if i == sorted_upto {
            sorted_upto = i + sort_head(&mut c.list[i..], i.max(TOP_P_FIRST_TRY));
        }
        cum += (c.list[i].logit - max).exp() / sum;
        if cum >= p {
            keep = i + 1;
            break;
        }
    }
    c.list.truncate(keep);
    c.sorted = true;
}

/// Moves the best `n` of `tail` to its front in order (partial selection,
/// then a sort of those `n`) and returns how many are now in order.
fn sort_head(tail: &mut [Candidate], n: usize) -> usize {
    if n >= tail.len() {
        tail.sort_unstable_by(by_logit_desc);
        return tail.len();
    }
    tail.select_nth_unstable_by(n - 1, by_logit_desc);
    tail[..n].sort_unstable_by(by_logit_desc);
    n
}

/// Keeps tokens whose probability is at least `p` times the most likely
/// one's, i.e. whose logit is at least `max + ln p`. Keeps the order.
/// `p <= 0` is off.
pub(crate) fn min_p(c: &mut Candidates, p: f32) {
    if p <= 0.0 {
        return;
    }
    let floor = c.max_logit() + p.ln();
    c.list.retain(|cand| cand.logit >= floor);
}

/// Divides the logits by `temp` (> 0), after subtracting the maximum so that
/// a tiny temperature cannot overflow to +inf (the softmax is unchanged).
/// `temp <= 0` leaves the logits for the greedy pick.
pub(crate) fn temperature(c: &mut Candidates, temp: f32) {
    if temp <= 0.0 {
        return;
    }
    let max = c.max_logit();
    for cand in &mut c.list {
        cand.logit = (cand.logit - max) / temp;
    }
}
