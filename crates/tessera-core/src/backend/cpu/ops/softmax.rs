//! Row softmax as ggml's `soft_max_ext` (f32, no ALiBi, no sinks):
//! `w = x * scale + mask`, `max` over the row, `e = exp(w - max)` with ggml's
//! vector `expf` on groups of 8 ([`exp_sum_row`]), the sum in f64, then
//! `y = e * (1 / sum)` with the reciprocal taken in f64.
//!
//! Shapes: `x`, `y`: `[n_rows, n_cols]`; `mask`: `[n_cols]` (one row, shared
//! by every row) or `[n_rows, n_cols]`.

use tessera_quant::pool::ThreadPool;

use super::math::exp_sum_row;
use super::{check_len, par_rows, shape, OpError};

/// Softmax of each row of `n_cols` values of `x * scale + mask` into `y`.
pub fn softmax(
    pool: &ThreadPool,
    x: &[f32],
    y: &mut [f32],
    n_cols: usize,
    scale: f32,
    mask: Option<&[f32]>,
) -> Result<(), OpError> {
    const OP: &str = "softmax";
    if n_cols == 0 || !x.len().is_multiple_of(n_cols) {
        return Err(shape(
            OP,
            format!(
                "x has {} values, not a whole number of rows of {n_cols}",
                x.len()
            ),
        ));
    }
    check_len(OP, "y", y.len(), x.len())?;
    if let Some(m) = mask {
        if m.len() != n_cols && m.len() != x.len() {
            return Err(shape(
                OP,
                format!(
                    "mask has {} values, expected one row ({n_cols}) or all rows ({})",
                    m.len(),
                    x.len()
                ),
            ));
        }
    }
    par_rows(pool, y, n_cols, 1, |rows, out| {
        let xs = &x[rows.start * n_cols..rows.end * n_cols];
        for ((r, xr), yr) in rows
            .zip(xs.chunks_exact(n_cols))
            .zip(out.chunks_exact_mut(n_cols))
        {
            for (o, &v) in yr.iter_mut().zip(xr) {
                *o = v * scale;
            }
            if let Some(m) = mask {
                let mr = if m.len() == n_cols {
                    m
                } else {
                    &m[r * n_cols..(r + 1) * n_cols]
                };
                yr.iter_mut().zip(mr).for_each(|(o, &mv)| *o += mv);
            }
            let max = yr
                .iter()
                .fold(f32::NEG_INFINITY, |m, &v| if m > v { m } else { v });
            let sum = exp_sum_row(yr, max);
            let inv = (1.0 / sum) as f32;
            yr.iter_mut().for_each(|o| *o *= inv);
        }
    });
    Ok(())
}
