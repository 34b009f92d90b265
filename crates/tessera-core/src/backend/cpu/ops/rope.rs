//! Rotary position embedding, as ggml's `rope_ext` (forward, f32): normal
//! mode (LLaMA: rotates adjacent pairs `(2i, 2i+1)`) and NeoX mode (qwen2,
//! qwen3, gemma3: rotates `(i, i + n_rot/2)`), partial rotary (only the first
//! `n_rot` values of each head turn, the rest pass through), per-pair
//! frequency factors (LLaMA 3 long-context) and YaRN.
//!
//! Per token the cos/sin cache is built as ggml builds it: `theta` starts at
//! the position and is multiplied by `theta_scale = freq_base^(-2/n_rot)`
//! once per pair (so rounding accumulates the same way), each pair's angle
//! goes through `rope_yarn` (interpolation by `freq_scale`, the YaRN ramp
//! between the correction dims when `ext_factor != 0`, magnitude
//! `attn_factor`).
//!
//! Shapes: `x`, `y`: `[n_tokens, n_heads * head_dim]`; `pos`: `[n_tokens]`;
//! `freq_factors`: at least `[n_rot / 2]`.

use tessera_quant::pool::ThreadPool;

use super::{check_len, par_rows, shape, OpError, MAX_HEAD_DIM};
use crate::graph::RopeCfg;

/// Which values of a head form a rotated pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeMode {
    /// Pairs `(2i, 2i + 1)` (ggml `GGML_ROPE_TYPE_NORMAL`).
    Normal,
    /// Pairs `(i, i + n_rot / 2)` (ggml `GGML_ROPE_TYPE_NEOX`).
    Neox,
}

/// Parameters of [`rope`], with ggml's meanings.
#[derive(Clone, Copy, Debug)]
pub struct RopeParams<'a> {
    /// Values rotated at the start of each head (even, `<= head_dim`); ggml's `n_dims`.
    pub n_rot: usize,
    /// Pairing of the rotated values.
    pub mode: RopeMode,
    /// Base of the frequencies (`rope_freq_base`, e.g. 10000 or 1e6).
    pub freq_base: f32,
    /// Position interpolation factor (1 = none).
    pub freq_scale: f32,
    /// YaRN extrapolation mix (0 = YaRN off).
    pub ext_factor: f32,
    /// Magnitude scale of cos and sin (1 usually).
    pub attn_factor: f32,
    /// YaRN fast correction boundary (32 in llama.cpp).
    pub beta_fast: f32,
    /// YaRN slow correction boundary (1 in llama.cpp).
    pub beta_slow: f32,
    /// Training context length (`n_ctx_orig_yarn`).
    pub n_ctx_orig: usize,
    /// Per-pair divisors of the angle (`rope_freqs`), if the model has them.
    pub freq_factors: Option<&'a [f32]>,
}

impl<'a> RopeParams<'a> {
    /// The parameters of the graph's rope `cfg`, with its frequency
    /// factors' values (the GPU backends derive their constants from it
    /// too: `backend::gpu::rope_consts`).
    pub fn from_cfg(cfg: &RopeCfg, freq_factors: Option<&'a [f32]>) -> RopeParams<'a> {
        RopeParams {
            n_rot: cfg.n_rot,
            mode: if cfg.neox {
                RopeMode::Neox
            } else {
                RopeMode::Normal
            },
            freq_base: cfg.freq_base,
            freq_scale: cfg.freq_scale,
            ext_factor: cfg.ext_factor,
            attn_factor: cfg.attn_factor,
            beta_fast: cfg.beta_fast,
            beta_slow: cfg.beta_slow,
            n_ctx_orig: cfg.n_ctx_orig,
            freq_factors,
        }
    }
}

/// One YaRN correction dim: `n_rot * ln(n_ctx_orig / (beta * 2π)) / (2 ln base)`.
fn corr_dim(n_rot: usize, n_ctx_orig: usize, beta: f32, base: f32) -> f32 {
    n_rot as f32 * (n_ctx_orig as f32 / (beta * 2.0 * std::f32::consts::PI)).ln()
        / (2.0 * base.ln())
}

/// ggml's `ggml_rope_yarn_corr_dims`: the pair range over which YaRN ramps.
pub fn yarn_corr_dims(p: &RopeParams) -> [f32; 2] {
    let start = corr_dim(p.n_rot, p.n_ctx_orig, p.beta_fast, p.freq_base).floor();
    let end = corr_dim(p.n_rot, p.n_ctx_orig, p.beta_slow, p.freq_base).ceil();
    [start.max(0.0), end.min(p.n_rot as f32 - 1.0)]
}

/// ggml's `rope_yarn_ramp` for the pair starting at value `i0`.
fn yarn_ramp(low: f32, high: f32, i0: usize) -> f32 {
    let y = ((i0 / 2) as f32 - low) / (high - low).max(0.001);
    1.0 - y.clamp(0.0, 1.0)
}

/// Fills `cache[i0], cache[i0 + 1]` with cos and sin of pair `i0 / 2` for
/// position `pos` (ggml's `ggml_rope_cache_init` with `rope_yarn`).
fn fill_cache(p: &RopeParams, corr: [f32; 2], theta_scale: f32, pos: i32, cache: &mut [f32]) {
    let mut theta = pos as f32;
    for (pair, cs) in cache.chunks_exact_mut(2).enumerate() {
        let ff = p.freq_factors.map_or(1.0, |f| f[pair]);
        let theta_extrap = theta / ff;
        let theta_interp = p.freq_scale * theta_extrap;
        let mut angle = theta_interp;
        let mut mscale = p.attn_factor;
        if p.ext_factor != 0.0 {
            let ramp_mix = yarn_ramp(corr[0], corr[1], 2 * pair) * p.ext_factor;
            angle = theta_interp * (1.0 - ramp_mix) + theta_extrap * ramp_mix;
            mscale *= 1.0 + 0.1 * (1.0 / p.freq_scale).ln();
        }
        cs[0] = angle.cos() * mscale;
        cs[1] = angle.sin() * mscale;
        theta *= theta_scale;
    }
}

/// Checks `rope`'s shapes.
fn check(
    x: &[f32],
    y: &[f32],
    dims: [usize; 3],
    pos: &[i32],
    p: &RopeParams,
) -> Result<(), OpError> {
    const OP: &str = "rope";
    let [n_tokens, n_heads, head_dim] = dims;
    let want = n_tokens
        .checked_mul(n_heads)
        .and_then(|v| v.checked_mul(head_dim))
        .ok_or_else(|| {
            shape(
                OP,
                format!("[{n_tokens}, {n_heads} * {head_dim}] overflows"),
            )
        })?;
    check_len(OP, "x", x.len(), want)?;
    check_len(OP, "y", y.len(), want)?;
    check_len(OP, "pos", pos.len(), n_tokens)?;
    if !p.n_rot.is_multiple_of(2) || p.n_rot > head_dim || p.n_rot > MAX_HEAD_DIM {
        return Err(shape(
            OP,
            format!(
                "n_rot {} must be even and at most head_dim {head_dim} (and {MAX_HEAD_DIM})",
                p.n_rot
            ),
        ));
    }
    if let Some(f) = p.freq_factors {
        if f.len() < p.n_rot / 2 {
            return Err(shape(
                OP,
                format!(
                    "freq_factors has {} values, need n_rot/2 = {}",
                    f.len(),
                    p.n_rot / 2
                ),
            ));
        }
    }
    Ok(())
}

/// Rotates the first `p.n_rot` values of every head of `x` by the angles of
/// each token's position, into `y`; the other values are copied.
///
/// Shapes: `x`, `y`: `[n_tokens, n_heads * head_dim]`; `pos`: `[n_tokens]`.
#[allow(clippy::too_many_arguments)]
pub fn rope(
    pool: &ThreadPool,
    x: &[f32],
    y: &mut [f32],
    n_tokens: usize,
    n_heads: usize,
    head_dim: usize,
    pos: &[i32],
    p: &RopeParams,
) -> Result<(), OpError> {
    check(x, y, [n_tokens, n_heads, head_dim], pos, p)?;
    let n_rot = p.n_rot;
    let row = n_heads * head_dim;
    let theta_scale = p.freq_base.powf(-2.0 / n_rot as f32);
    let corr = yarn_corr_dims(p);
    // ggml's pair offset: the partner of value `i` is `i + off`; normal mode
    // walks pairs by twos, NeoX by ones over the first half.
    let (off, stride) = match p.mode {
        RopeMode::Normal => (1, 2),
        RopeMode::Neox => (n_rot / 2, 1),
    };
    par_rows(pool, y, row, 1, |tokens, out| {
        let mut cache = [0f32; MAX_HEAD_DIM];
        let cache = &mut cache[..n_rot];
        for (t, (xr, yr)) in tokens.clone().zip(
            x[tokens.start * row..tokens.end * row]
                .chunks_exact(row)
                .zip(out.chunks_exact_mut(row)),
        ) {
            fill_cache(p, corr, theta_scale, pos[t], cache);
            for (xh, yh) in xr.chunks_exact(head_dim).zip(yr.chunks_exact_mut(head_dim)) {
                for (pair, cs) in cache.chunks_exact(2).enumerate() {
                    let i = pair * stride;
                    let (x0, x1) = (xh[i], xh[i + off]);
                    // As ggml-cpu compiles it (FMA contraction, read from
                    // its x86 build): the cos product fused, the sin
                    // product rounded first.
                    yh[i] = x0.mul_add(cs[0], -(x1 * cs[1]));
                    yh[i + off] = x0.mul_add(cs[1], x1 * cs[0]);
                }
                yh[n_rot..].copy_from_slice(&xh[n_rot..]);
            }
        }
    });
    Ok(())
}
