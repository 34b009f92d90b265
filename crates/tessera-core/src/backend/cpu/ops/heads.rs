//! Per-head views made contiguous, for attention variants whose heads are
//! assembled from parts (DeepSeek's MLA): [`slice_heads`] takes columns
//! `start..start + len` of every head, [`concat_heads`] puts two tensors'
//! heads side by side, [`gather_head`]/[`scatter_head`] move one head of
//! every row to and from a packed `[n, head]` buffer (per-head products).
//!
//! Shapes: rows of `n_heads` heads; a head of `x` is `head_dim` values.

use super::{check_len, shape, OpError};

/// `out[t, h, :] = x[t, h, start..start + len]`: `x [n, n_heads·head_dim]`
/// → `out [n, n_heads·len]`.
pub fn slice_heads(
    x: &[f32],
    n_heads: usize,
    head_dim: usize,
    start: usize,
    len: usize,
    out: &mut [f32],
) -> Result<(), OpError> {
    const OP: &str = "slice_heads";
    if n_heads == 0 || head_dim == 0 || start + len > head_dim || len == 0 {
        return Err(shape(
            OP,
            format!("columns {start}..{} of heads of {head_dim}", start + len),
        ));
    }
    let n = x.len() / (n_heads * head_dim);
    check_len(OP, "x", x.len(), n * n_heads * head_dim)?;
    check_len(OP, "out", out.len(), n * n_heads * len)?;
    for (xh, oh) in x.chunks_exact(head_dim).zip(out.chunks_exact_mut(len)) {
        oh.copy_from_slice(&xh[start..start + len]);
    }
    Ok(())
}

/// `out[t, h, :] = [a[t, h, :] | b[t, h, :]]`: heads of `la` values of `a`
/// and `lb` of `b`, same number of heads and rows → heads of `la + lb`.
pub fn concat_heads(
    a: &[f32],
    la: usize,
    b: &[f32],
    lb: usize,
    out: &mut [f32],
) -> Result<(), OpError> {
    const OP: &str = "concat_heads";
    if la == 0 || lb == 0 || !a.len().is_multiple_of(la) || a.len() / la * lb != b.len() {
        return Err(shape(
            OP,
            format!(
                "{} values in heads of {la} beside {} in heads of {lb}",
                a.len(),
                b.len()
            ),
        ));
    }
    check_len(OP, "out", out.len(), a.len() + b.len())?;
    for ((ah, bh), oh) in a
        .chunks_exact(la)
        .zip(b.chunks_exact(lb))
        .zip(out.chunks_exact_mut(la + lb))
    {
        oh[..la].copy_from_slice(ah);
        oh[la..].copy_from_slice(bh);
    }
    Ok(())
}

/// Head `h` of every row of `x` (heads of `head_dim`, `n_heads` per row)
/// into the packed `out [n, head_dim]`.
pub fn gather_head(x: &[f32], n_heads: usize, head_dim: usize, h: usize, out: &mut [f32]) {
    for (row, o) in x
        .chunks_exact(n_heads * head_dim)
        .zip(out.chunks_exact_mut(head_dim))
    {
        o.copy_from_slice(&row[h * head_dim..(h + 1) * head_dim]);
    }
}

/// The packed `src [n, head_dim]` into head `h` of every row of `out`.
pub fn scatter_head(src: &[f32], n_heads: usize, head_dim: usize, h: usize, out: &mut [f32]) {
    for (row, s) in out
        .chunks_exact_mut(n_heads * head_dim)
        .zip(src.chunks_exact(head_dim))
    {
        row[h * head_dim..(h + 1) * head_dim].copy_from_slice(s);
    }
}
