//! The mixture-of-experts helpers around `mul_mat_id`, each giving
//! llama.cpp's `build_moe_ffn` bits on the CPU:
//!
//! - [`top_k_ids`]: the router's choice (ggml's `argsort_top_k`);
//! - [`gather_cols`]: the chosen experts' probabilities (`get_rows` on the
//!   probabilities viewed as `[1, n_expert, n_tokens]`);
//! - [`norm_sum`]: `weights / clamp(sum_rows(weights), min, ∞)`, the sum
//!   accumulated in f64 as `ggml_vec_sum_f32`;
//! - [`moe_sum`]: `mul(experts, weights)` then the chain of `add`s over the
//!   slots, in slot order;
//! - [`mul_rows`]: `x` times one factor per row (a shared expert's gate).
//!
//! Shapes: `n` tokens, `k` experts per token; ids and weights `[n, k]`,
//! expert outputs `[n·k, cols]` (token-major, slot-minor).

use super::routing::top_k;
use super::{check_len, shape, OpError};

/// The most experts a token may use.
pub const MAX_TOP_K: usize = 256;

/// Per row of `n_cols` values of `x`, the columns of the `k` largest into
/// `ids` (`[n_rows, k]`), largest first.
pub fn top_k_ids(x: &[f32], n_cols: usize, k: usize, ids: &mut [i32]) -> Result<(), OpError> {
    if k > MAX_TOP_K {
        return Err(shape(
            "top_k",
            format!("{k} experts per token (at most {MAX_TOP_K})"),
        ));
    }
    if n_cols == 0 || !x.len().is_multiple_of(n_cols) {
        return Err(shape(
            "top_k",
            format!("x has {} values in rows of {n_cols}", x.len()),
        ));
    }
    check_len("top_k", "ids", ids.len(), x.len() / n_cols * k)?;
    let mut vals = [0f32; MAX_TOP_K];
    for (row, ids) in x.chunks_exact(n_cols).zip(ids.chunks_mut(k.max(1))) {
        top_k(row, n_cols, k, ids, &mut vals[..k])?;
    }
    Ok(())
}

/// `out[t, s] = x[t, ids[t, s]]`: `x [n, n_cols]`, `ids`/`out` `[n, k]`.
pub fn gather_cols(x: &[f32], n_cols: usize, ids: &[i32], out: &mut [f32]) -> Result<(), OpError> {
    const OP: &str = "gather_cols";
    check_len(OP, "out", out.len(), ids.len())?;
    let n = x.len().checked_div(n_cols).unwrap_or(0);
    if n == 0 || !ids.len().is_multiple_of(n) {
        return Err(shape(OP, format!("{} ids for {n} rows", ids.len())));
    }
    let k = ids.len() / n;
    for ((row, ids), out) in x
        .chunks_exact(n_cols)
        .zip(ids.chunks_exact(k))
        .zip(out.chunks_exact_mut(k))
    {
        for (o, &id) in out.iter_mut().zip(ids) {
            *o = *usize::try_from(id)
                .ok()
                .and_then(|i| row.get(i))
                .ok_or_else(|| shape(OP, format!("id {id} outside 0..{n_cols}")))?;
        }
    }
    Ok(())
}

/// Expert-group routing (DeepSeek-V3's, as llama.cpp builds it): per row
/// of `n_cols` scores in `n_groups` groups, a group's score is the sum of
/// its two largest values (in f64, rounded to f32); the `n_used` best groups
/// keep their values, every other value becomes −∞.
pub fn group_mask(
    x: &[f32],
    n_cols: usize,
    n_groups: usize,
    n_used: usize,
    out: &mut [f32],
) -> Result<(), OpError> {
    const OP: &str = "group_mask";
    check_len(OP, "out", out.len(), x.len())?;
    if n_groups == 0
        || n_groups > MAX_TOP_K
        || n_cols == 0
        || !n_cols.is_multiple_of(n_groups)
        || n_cols / n_groups < 2
        || n_used > n_groups
        || !x.len().is_multiple_of(n_cols)
    {
        return Err(shape(
            OP,
            format!("{n_cols} experts in {n_groups} groups, {n_used} used"),
        ));
    }
    let per = n_cols / n_groups;
    let mut scores = [0f32; MAX_TOP_K];
    let mut keep = [0i32; MAX_TOP_K];
    let (mut best, mut best_ids) = ([0f32; 2], [0i32; 2]);
    for (row, out) in x.chunks_exact(n_cols).zip(out.chunks_exact_mut(n_cols)) {
        for (g, score) in row.chunks_exact(per).zip(scores.iter_mut()) {
            top_k(g, per, 2, &mut best_ids, &mut best)?;
            *score = (f64::from(best[0]) + f64::from(best[1])) as f32;
        }
        top_k_ids(&scores[..n_groups], n_groups, n_used, &mut keep[..n_used])?;
        out.fill(f32::NEG_INFINITY);
        for &g in &keep[..n_used] {
            let r = g as usize * per..(g as usize + 1) * per;
            out[r.clone()].copy_from_slice(&row[r]);
        }
    }
    Ok(())
}

/// Each row of `n_cols` values divided by its sum (in f64, rounded to f32),
/// the sum clamped below at `min_sum`.
pub fn norm_sum(x: &[f32], n_cols: usize, min_sum: f32, out: &mut [f32]) -> Result<(), OpError> {
    check_len("norm_sum", "out", out.len(), x.len())?;
    if n_cols == 0 || !x.len().is_multiple_of(n_cols) {
        return Err(shape(
            "norm_sum",
            format!("x has {} values in rows of {n_cols}", x.len()),
        ));
    }
    for (row, out) in x.chunks_exact(n_cols).zip(out.chunks_exact_mut(n_cols)) {
        let sum = row.iter().map(|&v| f64::from(v)).sum::<f64>() as f32;
        // ggml_clamp: MAX(MIN(x, max), min) with max = +inf.
        let sum = sum.max(min_sum);
        for (o, &v) in out.iter_mut().zip(row) {
            *o = v / sum;
        }
    }
    Ok(())
}

/// `out[t] = Σ_s x[t·k + s] · w[t, s]`: each product rounded to f32, the
/// products added in slot order. `x [n·k, cols]`, `w [n, k]`, `out [n, cols]`.
pub fn moe_sum(x: &[f32], w: &[f32], k: usize, out: &mut [f32]) -> Result<(), OpError> {
    const OP: &str = "moe_sum";
    let n = w.len().checked_div(k).unwrap_or(0);
    if n == 0 || !out.len().is_multiple_of(n) {
        return Err(shape(
            OP,
            format!("{} weights, {} outputs, k = {k}", w.len(), out.len()),
        ));
    }
    let cols = out.len() / n;
    check_len(OP, "x", x.len(), n * k * cols)?;
    for ((xs, ws), out) in x
        .chunks_exact(k * cols)
        .zip(w.chunks_exact(k))
        .zip(out.chunks_exact_mut(cols))
    {
        for (s, (xr, &ws)) in xs.chunks_exact(cols).zip(ws).enumerate() {
            if s == 0 {
                out.iter_mut().zip(xr).for_each(|(o, &v)| *o = v * ws);
            } else {
                out.iter_mut().zip(xr).for_each(|(o, &v)| *o += v * ws);
            }
        }
    }
    Ok(())
}

/// `out[r] = x[r] + b[ids[r]]` for every routed row `r` (ids flattened):
/// `x`/`out` `[n·k, cols]`, `b [n_expert, cols]`.
pub fn add_id(x: &[f32], b: &[f32], ids: &[i32], out: &mut [f32]) -> Result<(), OpError> {
    const OP: &str = "add_id";
    check_len(OP, "out", out.len(), x.len())?;
    if ids.is_empty() || !x.len().is_multiple_of(ids.len()) {
        return Err(shape(
            OP,
            format!("{} values for {} ids", x.len(), ids.len()),
        ));
    }
    let cols = x.len() / ids.len();
    for ((xr, &id), out) in x
        .chunks_exact(cols)
        .zip(ids)
        .zip(out.chunks_exact_mut(cols))
    {
        let br = usize::try_from(id)
            .ok()
            .and_then(|i| b.get(i * cols..(i + 1) * cols))
            .ok_or_else(|| shape(OP, format!("expert {id} has no bias row")))?;
        for ((o, &a), &c) in out.iter_mut().zip(xr).zip(br) {
            *o = a + c;
        }
    }
    Ok(())
}

/// gpt-oss's clamped SwiGLU, value by value (ggml's `swiglu_oai` with
/// `alpha` and `limit`; libm `expf`).
pub fn swiglu_oai(
    gate: &[f32],
    up: &[f32],
    alpha: f32,
    limit: f32,
    out: &mut [f32],
) -> Result<(), OpError> {
    check_len("swiglu_oai", "up", up.len(), gate.len())?;
    check_len("swiglu_oai", "out", out.len(), gate.len())?;
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        let x = g.min(limit);
        let y = u.clamp(-limit, limit);
        let glu = x / (1.0 + (alpha * -x).exp());
        *o = glu * (y + 1.0);
    }
    Ok(())
}

/// `out[t, c] = x[t, c] · s[t]`.
pub fn mul_rows(x: &[f32], s: &[f32], out: &mut [f32]) -> Result<(), OpError> {
    check_len("mul_rows", "out", out.len(), x.len())?;
    if s.is_empty() || !x.len().is_multiple_of(s.len()) {
        return Err(shape(
            "mul_rows",
            format!("{} values for {} row factors", x.len(), s.len()),
        ));
    }
    let cols = x.len() / s.len();
    for ((xr, &f), out) in x.chunks_exact(cols).zip(s).zip(out.chunks_exact_mut(cols)) {
        out.iter_mut().zip(xr).for_each(|(o, &v)| *o = v * f);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_helpers() {
        let probs = [0.1, 0.4, 0.2, 0.3, 0.25, 0.05, 0.6, 0.1];
        let mut ids = [0i32; 4];
        top_k_ids(&probs, 4, 2, &mut ids).unwrap();
        assert_eq!(ids, [1, 3, 2, 0]);
        let mut w = [0f32; 4];
        gather_cols(&probs, 4, &ids, &mut w).unwrap();
        assert_eq!(w, [0.4, 0.3, 0.6, 0.25]);
        let mut n = [0f32; 4];
        norm_sum(&w, 2, 6.1e-5, &mut n).unwrap();
        assert_eq!(
            n,
            [
                0.4 / (0.4f32 + 0.3),
                0.3 / (0.4f32 + 0.3),
                0.6 / 0.85,
                0.25 / 0.85
            ]
        );
        let x = [1.0, 2.0, 10.0, 20.0, 3.0, 4.0, 30.0, 40.0];
        let mut out = [0f32; 4];
        moe_sum(&x, &[0.5, 0.25, 2.0, 0.1], 2, &mut out).unwrap();
        assert_eq!(out, [0.5 + 2.5, 1.0 + 5.0, 6.0 + 3.0, 8.0 + 4.0]);
        assert!(gather_cols(&probs, 4, &[0, 9, 1, 1], &mut w).is_err());
        // Groups of 2: sums 0.5 and 0.5 (a tie: the first group wins), then
        // 0.3 and 0.7; one group kept per row.
        let mut m = [0f32; 8];
        group_mask(&probs, 4, 2, 1, &mut m).unwrap();
        let inf = f32::NEG_INFINITY;
        assert_eq!(m, [0.1, 0.4, inf, inf, inf, inf, 0.6, 0.1]);
        assert!(top_k_ids(&probs, 4, MAX_TOP_K + 1, &mut [0; 600]).is_err());
    }
}
