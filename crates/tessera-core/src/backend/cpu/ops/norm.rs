//! Normalisation over consecutive groups of values: a group is a row of
//! `[n_rows, group]` activations, or one head of q/k (`[n_tokens, n_head *
//! head_dim]` with `group = head_dim`, the q/k norm of qwen3 and gemma3).
//!
//! - [`rms_norm`]: ggml's `rms_norm` (sum of f32 squares in f64, `1/sqrtf`
//!   in f32), then `* weight` as ggml's `mul` (or its fused form, same bits).
//! - [`layer_norm`]: ggml's `norm` (f64 sum for the mean, the AVX2 grouping
//!   of `ggml_vec_cvar_f32` for the variance), then `* weight`, `+ bias`.

use tessera_quant::pool::ThreadPool;

use super::math::centered_var_row;
use super::{check_len, par_rows, shape, OpError};

/// Values per parallel chunk, at least.
const MIN_CHUNK_VALUES: usize = 4096;

/// Checks the shapes shared by both norms and returns the number of groups.
fn check(
    op: &'static str,
    x: &[f32],
    y: &[f32],
    group: usize,
    params: &[(&str, Option<&[f32]>)],
) -> Result<usize, OpError> {
    if group == 0 || !x.len().is_multiple_of(group) {
        return Err(shape(
            op,
            format!(
                "x has {} values, not a whole number of groups of {group}",
                x.len()
            ),
        ));
    }
    check_len(op, "y", y.len(), x.len())?;
    for &(name, p) in params {
        if let Some(p) = p {
            check_len(op, name, p.len(), group)?;
        }
    }
    Ok(x.len() / group)
}

/// RMS norm of each group of `group` values of `x` into `y`, times `weight`
/// (length `group`) if given: `y = x * (1 / sqrt(mean(x²) + eps)) * w`.
///
/// Shapes: `x`, `y`: `[n_groups * group]`; `weight`: `[group]`.
pub fn rms_norm(
    pool: &ThreadPool,
    x: &[f32],
    y: &mut [f32],
    group: usize,
    eps: f32,
    weight: Option<&[f32]>,
) -> Result<(), OpError> {
    check("rms_norm", x, y, group, &[("weight", weight)])?;
    par_rows(pool, y, group, MIN_CHUNK_VALUES / group, |rows, out| {
        let xs = &x[rows.start * group..rows.end * group];
        for (xr, yr) in xs.chunks_exact(group).zip(out.chunks_exact_mut(group)) {
            let sum: f64 = xr.iter().map(|&v| f64::from(v * v)).sum();
            let mean = (sum / group as f64) as f32;
            let scale = 1.0 / (mean + eps).sqrt();
            match weight {
                Some(w) => {
                    for ((o, &v), &wv) in yr.iter_mut().zip(xr).zip(w) {
                        *o = v * scale * wv;
                    }
                }
                None => {
                    for (o, &v) in yr.iter_mut().zip(xr) {
                        *o = v * scale;
                    }
                }
            }
        }
    });
    Ok(())
}

/// Layer norm of each group of `group` values of `x` into `y`:
/// `y = (x - mean) / sqrt(var + eps) * weight + bias`, `weight` and `bias`
/// (length `group`) each optional.
///
/// Shapes: `x`, `y`: `[n_groups * group]`; `weight`, `bias`: `[group]`.
pub fn layer_norm(
    pool: &ThreadPool,
    x: &[f32],
    y: &mut [f32],
    group: usize,
    eps: f32,
    weight: Option<&[f32]>,
    bias: Option<&[f32]>,
) -> Result<(), OpError> {
    check(
        "layer_norm",
        x,
        y,
        group,
        &[("weight", weight), ("bias", bias)],
    )?;
    par_rows(pool, y, group, MIN_CHUNK_VALUES / group, |rows, out| {
        let xs = &x[rows.start * group..rows.end * group];
        for (xr, yr) in xs.chunks_exact(group).zip(out.chunks_exact_mut(group)) {
            let sum = xr.iter().map(|&v| f64::from(v)).sum::<f64>() as f32;
            let mean = sum / group as f32;
            let variance = centered_var_row(xr, yr, mean) as f32;
            let scale = 1.0 / (variance + eps).sqrt();
            for o in yr.iter_mut() {
                *o *= scale;
            }
            if let Some(w) = weight {
                yr.iter_mut().zip(w).for_each(|(o, &wv)| *o *= wv);
            }
            if let Some(b) = bias {
                yr.iter_mut().zip(b).for_each(|(o, &bv)| *o += bv);
            }
        }
    });
    Ok(())
}
