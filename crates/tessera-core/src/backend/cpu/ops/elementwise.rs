//! Elementwise ops on f32 activations, with ggml-cpu's formulas:
//!
//! - [`add`], [`mul`]: same shape, or `y` one row broadcast over the rows of
//!   `x` (`x.len()` a multiple of `y.len()`); [`scale`].
//! - [`silu`], [`swiglu`] (`silu(gate) * up`): ggml's vector silu on groups
//!   of 8 values, libm's `expf` on the tail (see [`super::math`]).
//! - [`gelu`], [`geglu`] (`gelu(gate) * up`): the tanh GELU through ggml's
//!   f16 table (`GGML_GELU_FP16`, on in ggml-cpu), [`gelu_erf`]: the exact
//!   erf GELU.
//!
//! The data is taken as one flat array: ggml groups by 8 from each row's
//! start, which is the same whenever the row length is a multiple of 8
//! (every real FFN width). Work is split across the pool only when large,
//! at multiples of 64 values, so the result never depends on the pool.
//!
//! Shapes: `x`, `gate`, `up`, `out`: `[n]`; `y` of `add`/`mul`: `[n]` or `[n_cols]`.

use tessera_quant::pool::ThreadPool;

use super::math;
use super::{check_len, par_flat, shape, OpError};

/// Checks a binary op's shapes: `y` is `x`'s shape or one non-empty row
/// that divides it.
fn check_binary(op: &'static str, x: &[f32], y: &[f32], out: &[f32]) -> Result<(), OpError> {
    check_len(op, "out", out.len(), x.len())?;
    if y.len() != x.len() && (y.is_empty() || !x.len().is_multiple_of(y.len())) {
        return Err(shape(
            op,
            format!(
                "y has {} values: neither x's {} nor a row that divides it",
                y.len(),
                x.len()
            ),
        ));
    }
    Ok(())
}

/// `out = f(x, y)` with `y` broadcast by rows.
fn binary(
    op: &'static str,
    pool: &ThreadPool,
    x: &[f32],
    y: &[f32],
    out: &mut [f32],
    f: impl Fn(f32, f32) -> f32 + Sync,
) -> Result<(), OpError> {
    check_binary(op, x, y, out)?;
    if x.is_empty() {
        return Ok(());
    }
    par_flat(pool, out, |r, o| {
        let ys = y.iter().cycle().skip(r.start % y.len());
        for ((d, &a), &b) in o.iter_mut().zip(&x[r]).zip(ys) {
            *d = f(a, b);
        }
    });
    Ok(())
}

/// `out = x + y` (`y` same shape or one row broadcast).
pub fn add(pool: &ThreadPool, x: &[f32], y: &[f32], out: &mut [f32]) -> Result<(), OpError> {
    binary("add", pool, x, y, out, |a, b| a + b)
}

/// `out = x / y` (`y` same shape or one row broadcast).
pub fn div(pool: &ThreadPool, x: &[f32], y: &[f32], out: &mut [f32]) -> Result<(), OpError> {
    binary("div", pool, x, y, out, |a, b| a / b)
}

/// `out = x * y` (`y` same shape or one row broadcast).
pub fn mul(pool: &ThreadPool, x: &[f32], y: &[f32], out: &mut [f32]) -> Result<(), OpError> {
    binary("mul", pool, x, y, out, |a, b| a * b)
}

/// `out = f(x)` value by value, or by 64-aligned runs with `run`.
fn unary(
    op: &'static str,
    pool: &ThreadPool,
    x: &[f32],
    out: &mut [f32],
    run: impl Fn(&[f32], &mut [f32]) + Sync,
) -> Result<(), OpError> {
    check_len(op, "out", out.len(), x.len())?;
    par_flat(pool, out, |r, o| run(&x[r], o));
    Ok(())
}

/// `out = x * s`.
pub fn scale(pool: &ThreadPool, x: &[f32], s: f32, out: &mut [f32]) -> Result<(), OpError> {
    unary("scale", pool, x, out, |x, o| {
        o.iter_mut().zip(x).for_each(|(d, &a)| *d = a * s)
    })
}

/// `out = 1 / (1 + exp(-x))` with libm's `expf` (ggml's `sigmoid`).
pub fn sigmoid(pool: &ThreadPool, x: &[f32], out: &mut [f32]) -> Result<(), OpError> {
    unary("sigmoid", pool, x, out, |x, o| {
        o.iter_mut()
            .zip(x)
            .for_each(|(d, &a)| *d = 1.0 / (1.0 + (-a).exp()))
    })
}

/// `out = x / (1 + exp(-x))` (ggml's `silu`).
pub fn silu(pool: &ThreadPool, x: &[f32], out: &mut [f32]) -> Result<(), OpError> {
    unary("silu", pool, x, out, math::silu_row)
}

/// [`silu`] of rows of `cols` values, each row split as ggml splits it
/// (vector formula on groups of 8 from the row's start, libm on its tail):
/// the same as [`silu`] when `cols` is a multiple of 8.
pub fn silu_rows(
    pool: &ThreadPool,
    x: &[f32],
    cols: usize,
    out: &mut [f32],
) -> Result<(), OpError> {
    if cols.is_multiple_of(math::LANES) {
        return silu(pool, x, out);
    }
    check_len("silu", "out", out.len(), x.len())?;
    for (x, o) in x.chunks(cols).zip(out.chunks_mut(cols)) {
        math::silu_row(x, o);
    }
    Ok(())
}

/// `out = gelu(x)`, tanh approximation through ggml's f16 table.
pub fn gelu(pool: &ThreadPool, x: &[f32], out: &mut [f32]) -> Result<(), OpError> {
    unary("gelu", pool, x, out, |x, o| {
        o.iter_mut().zip(x).for_each(|(d, &a)| *d = math::gelu(a))
    })
}

/// `out = 0.5 x (1 + erf(x / sqrt 2))` (ggml's `gelu_erf`).
pub fn gelu_erf(pool: &ThreadPool, x: &[f32], out: &mut [f32]) -> Result<(), OpError> {
    unary("gelu_erf", pool, x, out, |x, o| {
        o.iter_mut()
            .zip(x)
            .for_each(|(d, &a)| *d = math::gelu_erf(a))
    })
}

/// `out = tanh(x)` (ggml's `tanh`: libm `tanhf`).
pub fn tanh(pool: &ThreadPool, x: &[f32], out: &mut [f32]) -> Result<(), OpError> {
    unary("tanh", pool, x, out, |x, o| {
        o.iter_mut().zip(x).for_each(|(d, &a)| *d = a.tanh())
    })
}

/// `out = g(gate, up)` by 64-aligned runs.
fn glu(
    op: &'static str,
    pool: &ThreadPool,
    gate: &[f32],
    up: &[f32],
    out: &mut [f32],
    run: impl Fn(&[f32], &[f32], &mut [f32]) + Sync,
) -> Result<(), OpError> {
    check_len(op, "up", up.len(), gate.len())?;
    check_len(op, "out", out.len(), gate.len())?;
    par_flat(pool, out, |r, o| run(&gate[r.clone()], &up[r], o));
    Ok(())
}

/// `out = silu(gate) * up` (ggml's `swiglu`).
pub fn swiglu(pool: &ThreadPool, gate: &[f32], up: &[f32], out: &mut [f32]) -> Result<(), OpError> {
    glu("swiglu", pool, gate, up, out, math::swiglu_row)
}

/// `out = gelu(gate) * up` (ggml's `geglu`, f16-table GELU).
pub fn geglu(pool: &ThreadPool, gate: &[f32], up: &[f32], out: &mut [f32]) -> Result<(), OpError> {
    glu("geglu", pool, gate, up, out, |g, u, o| {
        for ((d, &a), &b) in o.iter_mut().zip(g).zip(u) {
            *d = math::geglu(a, b);
        }
    })
}
