//! Data movement and routing helpers (MoE expert selection and friends).
//!
//! - [`top_k`]: per row, the `k` largest values and their column indices,
//!   descending, ties broken by the lower index (a stable descending
//!   argsort, then the first `k`).
//! - [`concat`]: two row-major tensors side by side (along columns).
//! - [`copy`], [`transpose2d`].

use super::{check_len, shape, OpError};

/// For each row of `n_cols` values of `x`, the `k` largest into `vals_out`
/// and their columns into `ids_out` (both `[n_rows, k]`), largest first;
/// equal values keep column order. NaNs rank below every number.
pub fn top_k(
    x: &[f32],
    n_cols: usize,
    k: usize,
    ids_out: &mut [i32],
    vals_out: &mut [f32],
) -> Result<(), OpError> {
    const OP: &str = "top_k";
    if n_cols == 0 || !x.len().is_multiple_of(n_cols) || k > n_cols || n_cols > i32::MAX as usize {
        return Err(shape(
            OP,
            format!(
                "x has {} values in rows of {n_cols}, k = {k} (need 0 < k <= n_cols)",
                x.len()
            ),
        ));
    }
    let n_rows = x.len() / n_cols;
    check_len(OP, "ids_out", ids_out.len(), n_rows * k)?;
    check_len(OP, "vals_out", vals_out.len(), n_rows * k)?;
    if k == 0 {
        return Ok(());
    }
    for ((row, ids), vals) in x
        .chunks_exact(n_cols)
        .zip(ids_out.chunks_exact_mut(k))
        .zip(vals_out.chunks_exact_mut(k))
    {
        let mut filled = 0;
        for (j, &v) in row.iter().enumerate() {
            // First slot holding a smaller value (or a NaN, unless v is one).
            let pos = vals[..filled]
                .iter()
                .position(|&w| v > w || (w.is_nan() && !v.is_nan()))
                .unwrap_or(filled);
            if pos >= k {
                continue;
            }
            let end = filled.min(k - 1);
            vals.copy_within(pos..end, pos + 1);
            ids.copy_within(pos..end, pos + 1);
            vals[pos] = v;
            ids[pos] = j as i32;
            filled = (filled + 1).min(k);
        }
    }
    Ok(())
}

/// `out = [a | b]`: rows of `a` (`a_cols` wide) followed by the rows of `b`
/// (`b_cols` wide), same number of rows. Shapes: `a`: `[n, a_cols]`, `b`:
/// `[n, b_cols]`, `out`: `[n, a_cols + b_cols]`.
pub fn concat(
    a: &[f32],
    a_cols: usize,
    b: &[f32],
    b_cols: usize,
    out: &mut [f32],
) -> Result<(), OpError> {
    const OP: &str = "concat";
    let cols = a_cols + b_cols;
    if cols == 0 {
        return Err(shape(OP, "a_cols + b_cols is 0".into()));
    }
    let n_rows = out.len() / cols;
    check_len(OP, "out", out.len(), n_rows * cols)?;
    check_len(OP, "a", a.len(), n_rows * a_cols)?;
    check_len(OP, "b", b.len(), n_rows * b_cols)?;
    for (r, o) in out.chunks_exact_mut(cols).enumerate() {
        o[..a_cols].copy_from_slice(&a[r * a_cols..(r + 1) * a_cols]);
        o[a_cols..].copy_from_slice(&b[r * b_cols..(r + 1) * b_cols]);
    }
    Ok(())
}

/// `out = x`.
pub fn copy(x: &[f32], out: &mut [f32]) -> Result<(), OpError> {
    check_len("copy", "out", out.len(), x.len())?;
    out.copy_from_slice(x);
    Ok(())
}

/// `out[c, r] = x[r, c]`: `x` is `[n_rows, n_cols]`, `out` `[n_cols, n_rows]`.
pub fn transpose2d(
    x: &[f32],
    n_rows: usize,
    n_cols: usize,
    out: &mut [f32],
) -> Result<(), OpError> {
    const OP: &str = "transpose2d";
    let n = n_rows
        .checked_mul(n_cols)
        .ok_or_else(|| shape(OP, format!("[{n_rows}, {n_cols}] overflows")))?;
    check_len(OP, "x", x.len(), n)?;
    check_len(OP, "out", out.len(), n)?;
    for (r, row) in x.chunks_exact(n_cols.max(1)).enumerate().take(n_rows) {
        for (c, &v) in row.iter().enumerate() {
            out[c * n_rows + r] = v;
        }
    }
    Ok(())
}
