//! Fused attention over a KV cache, as ggml-cpu's `flash_attn_ext`
//! one-chunk path (`ggml_compute_forward_flash_attn_ext_f16_one_chunk`):
//!
//! 1. the query head is converted to the K cache's dot type (F16 for an F16
//!    cache, x86 Q8_0 for a Q8_0 cache) and dotted with each visible key by
//!    tessera-quant's kernel for that type;
//! 2. `s = dot * scale`, or with a softcap `s = softcap * tanh(dot * (scale /
//!    softcap))` (ggml folds the softcap into the scale first);
//! 3. masked keys are skipped (llama.cpp's mask is 0 or -inf);
//! 4. online softmax: running max `M`, sum `S`, and the value accumulator
//!    kept in f16 when V is F16 (ggml's `VKQ16`, `ggml_vec_mad_f16`) or in
//!    f32 otherwise (V dequantized first);
//! 5. the sink logit of the head, if any, joins `M` and `S` at the end;
//! 6. `out = acc / S` (0 when nothing was visible).
//!
//! Not mirrored: ggml's split-KV decode path (one query token, F16 cache,
//! 512+ cells, splits keys across threads, so its rounding depends on the
//! thread count) and its tiled prefill path; tessera always computes what
//! ggml's reference path computes, identical for any thread count.
//!
//! Shapes: `q`, `out`: `[n_tokens, n_head * head_dim]`; cache cells `0..n_kv`
//! of `k` and `v`, each `[n_kv_head * head_dim]`; `q_pos`: `[n_tokens]`;
//! `sinks`: `[n_head]`. GQA: head `h` reads KV head `h / (n_head / n_kv_head)`.

use tessera_quant::kernels::{dot_entry, SimdLevel, VecDot};
use tessera_quant::pool::ThreadPool;

use super::kv::{KvType, KvView};
use super::math;
use super::{check_len, par_rows_work, shape, OpError, MAX_HEAD_DIM};

/// Parameters of [`attention`].
#[derive(Clone, Copy, Debug)]
pub struct AttnParams<'a> {
    /// Query tokens.
    pub n_tokens: usize,
    /// Query heads (a multiple of `n_kv_head`).
    pub n_head: usize,
    /// KV heads.
    pub n_kv_head: usize,
    /// Values per head (K and V alike), at most [`MAX_HEAD_DIM`].
    pub head_dim: usize,
    /// Valid cache cells: `0..n_kv` (cell index = token position).
    pub n_kv: usize,
    /// Position of each query token.
    pub q_pos: &'a [i32],
    /// Key `j` is visible only if `j <= q_pos`.
    pub causal: bool,
    /// Sliding window (llama.cpp's standard SWA): key `j` is hidden when
    /// `q_pos - j >= window`.
    pub window: Option<usize>,
    /// Factor of the scores (usually `1 / sqrt(head_dim)`).
    pub scale: f32,
    /// Logit softcap (gemma2), 0 = off.
    pub softcap: f32,
    /// One extra logit per head that takes part in the softmax but has no
    /// value (ggml's attention sinks).
    pub sinks: Option<&'a [f32]>,
}

impl AttnParams<'_> {
    /// Whether query position `qp` sees key `j`.
    #[inline]
    fn visible(&self, qp: i32, j: usize) -> bool {
        let d = i64::from(qp) - j as i64;
        (!self.causal || d >= 0) && self.window.is_none_or(|w| d < w as i64)
    }
}

/// The inner kernels one attention call uses.
#[derive(Clone, Copy)]
struct Kernels {
    dot: VecDot,
    mad_f32: fn(&mut [f32], &[f32], f32),
    mad_f16: fn(&mut [u16], &[u8], f32),
}

impl Kernels {
    fn new(k_type: KvType, level: SimdLevel) -> Result<Kernels, OpError> {
        let entry = dot_entry(k_type.ggml_type()).ok_or_else(|| OpError::Unsupported {
            op: "attention",
            reason: format!("no dot kernel for a {:?} K cache", k_type),
        })?;
        let simd = level > SimdLevel::Scalar;
        Ok(Kernels {
            dot: entry.at(level),
            mad_f32: if simd {
                math::mad_f32
            } else {
                math::mad_f32_scalar
            },
            mad_f16: if simd {
                math::mad_f16
            } else {
                math::mad_f16_scalar
            },
        })
    }
}

/// Attention of every (token, head) of `q` over cells `0..p.n_kv` of the
/// cache, into `out`, with the best kernels this CPU has.
pub fn attention(
    pool: &ThreadPool,
    q: &[f32],
    k: KvView,
    v: KvView,
    out: &mut [f32],
    p: &AttnParams,
) -> Result<(), OpError> {
    run(pool, q, k, v, out, p, SimdLevel::detect())
}

/// [`attention`] with the portable scalar kernels only (the twin the tests
/// compare against).
pub fn attention_scalar(
    pool: &ThreadPool,
    q: &[f32],
    k: KvView,
    v: KvView,
    out: &mut [f32],
    p: &AttnParams,
) -> Result<(), OpError> {
    run(pool, q, k, v, out, p, SimdLevel::Scalar)
}

fn check(q: &[f32], k: &KvView, v: &KvView, out: &[f32], p: &AttnParams) -> Result<(), OpError> {
    const OP: &str = "attention";
    if p.n_kv_head == 0 || !p.n_head.is_multiple_of(p.n_kv_head) {
        return Err(shape(
            OP,
            format!(
                "n_head {} is not a multiple of n_kv_head {}",
                p.n_head, p.n_kv_head
            ),
        ));
    }
    if p.head_dim == 0 || p.head_dim > MAX_HEAD_DIM {
        return Err(shape(
            OP,
            format!("head_dim {} not in 1..={MAX_HEAD_DIM}", p.head_dim),
        ));
    }
    for (name, view) in [("k", k), ("v", v)] {
        if view.n_kv_head != p.n_kv_head || view.head_dim != p.head_dim {
            return Err(shape(
                OP,
                format!(
                    "{name} cache is [{} heads x {}], params say [{} x {}]",
                    view.n_kv_head, view.head_dim, p.n_kv_head, p.head_dim
                ),
            ));
        }
        view.check(OP, name, p.n_kv)?;
    }
    let want = p.n_tokens * p.n_head * p.head_dim;
    check_len(OP, "q", q.len(), want)?;
    check_len(OP, "out", out.len(), want)?;
    check_len(OP, "q_pos", p.q_pos.len(), p.n_tokens)?;
    if let Some(s) = p.sinks {
        check_len(OP, "sinks", s.len(), p.n_head)?;
    }
    Ok(())
}

fn run(
    pool: &ThreadPool,
    q: &[f32],
    k: KvView,
    v: KvView,
    out: &mut [f32],
    p: &AttnParams,
    level: SimdLevel,
) -> Result<(), OpError> {
    check(q, &k, &v, out, p)?;
    let kern = Kernels::new(k.dtype, level)?;
    let hd = p.head_dim;
    let work = out.len().saturating_mul(p.n_kv.max(1)).saturating_mul(2);
    par_rows_work(pool, out, hd, 1, work, |rows, out| {
        for (r, o) in rows.clone().zip(out.chunks_exact_mut(hd)) {
            let (t, h) = (r / p.n_head, r % p.n_head);
            one_head(&q[r * hd..(r + 1) * hd], &k, &v, p, t, h, kern, o);
        }
    });
    Ok(())
}

/// Attention of query token `t`, head `h` (query values `qh`) into `o`.
#[allow(clippy::too_many_arguments)]
fn one_head(
    qh: &[f32],
    k: &KvView,
    v: &KvView,
    p: &AttnParams,
    t: usize,
    h: usize,
    kern: Kernels,
    o: &mut [f32],
) {
    let hd = p.head_dim;
    let kvh = h / (p.n_head / p.n_kv_head);
    let qp = p.q_pos[t];
    // Checked by `KvView::check`: both are whole blocks.
    let k_bytes = k.head_bytes().unwrap_or(0);
    let v_bytes = v.head_bytes().unwrap_or(0);

    let mut q_buf = [0u8; 2 * MAX_HEAD_DIM];
    let q_conv = &mut q_buf[..k_bytes];
    k.dtype.from_f32(qh, q_conv);

    let mut acc32 = [0f32; MAX_HEAD_DIM];
    let mut acc16 = [0u16; MAX_HEAD_DIM];
    let mut v32 = [0f32; MAX_HEAD_DIM];
    let (acc32, acc16, v32) = (&mut acc32[..hd], &mut acc16[..hd], &mut v32[..hd]);
    let v_f16 = v.dtype == KvType::F16;

    let scale = if p.softcap != 0.0 {
        p.scale / p.softcap
    } else {
        p.scale
    };
    let mut m = f32::NEG_INFINITY;
    let mut s_sum = 0f32;
    for j in (0..p.n_kv).filter(|&j| p.visible(qp, j)) {
        let mut s = (kern.dot)(hd, k.head(j, kvh, k_bytes), q_conv) * scale;
        if p.softcap != 0.0 {
            s = p.softcap * s.tanh();
        }
        let (mut ms, mut vs) = (1f32, 1f32);
        if s > m {
            ms = (m - s).exp();
            m = s;
        } else {
            vs = (s - m).exp();
        }
        let vh = v.head(j, kvh, v_bytes);
        if v_f16 {
            if ms != 1.0 {
                math::scale_f16(acc16, ms);
            }
            (kern.mad_f16)(acc16, vh, vs);
        } else {
            if ms != 1.0 {
                acc32.iter_mut().for_each(|a| *a *= ms);
            }
            v.dtype.to_f32(vh, v32);
            (kern.mad_f32)(acc32, v32, vs);
        }
        s_sum = s_sum * ms + vs;
    }
    if v_f16 {
        for (a, &b) in acc32.iter_mut().zip(acc16.iter()) {
            *a = half::f16::from_bits(b).to_f32();
        }
    }
    if let Some(sinks) = p.sinks {
        let s = sinks[h];
        let (mut ms, mut vs) = (1f32, 1f32);
        if s > m {
            ms = (m - s).exp();
            acc32.iter_mut().for_each(|a| *a *= ms);
        } else {
            vs = (s - m).exp();
        }
        s_sum = s_sum * ms + vs;
    }
    let inv = if s_sum == 0.0 { 0.0 } else { 1.0 / s_sum };
    for (d, &a) in o.iter_mut().zip(acc32.iter()) {
        *d = a * inv;
    }
}
