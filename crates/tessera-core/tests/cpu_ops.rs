//! The CPU ops against plain f64 references written here, on odd and
//! aligned shapes, with NaN-prefilled outputs (an unwritten value fails),
//! one- and two-thread pools (results must be bit-identical), the scalar
//! twins against the dispatched kernels, and the shape errors.

use half::f16;
use tessera_core::backend::cpu::ops::{
    self, math, AttnParams, KvType, KvView, OpError, RopeMode, RopeParams,
};
use tessera_quant::pool::ThreadPool;
use tessera_quant::GgmlType;
use tessera_testkit::rng::SplitMix64;

const RMS_NORM_TOL: f64 = 2e-6;
const LAYER_NORM_TOL: f64 = 4e-6;
/// The f32 angle cache (theta multiplied pair by pair) drifts from the f64
/// angle by a few ulps per pair times the position.
const ROPE_TOL: f64 = 2e-4;
const SOFTMAX_TOL: f64 = 1e-6;
/// Queries rounded to f16, the f16 value accumulator.
const ATTN_F16_TOL: f64 = 6e-3;
/// Queries and keys quantized to Q8_0.
const ATTN_Q8_0_TOL: f64 = 4e-2;
/// Dispatched (SIMD dot) against scalar attention.
const ATTN_TWIN_TOL: f64 = 2e-3;
const SILU_TOL: f64 = 1e-6;
/// GELU goes through an f16 table: half an f16 ulp of input and output.
const GELU_TABLE_TOL: f64 = 4e-3;
const GELU_ERF_TOL: f64 = 1e-6;

fn pools() -> [ThreadPool; 2] {
    [ThreadPool::new(1), ThreadPool::new(2)]
}

fn normals(seed: u64, n: usize) -> Vec<f32> {
    let mut r = SplitMix64::new(seed);
    (0..n).map(|_| r.normal()).collect()
}

fn nans(n: usize) -> Vec<f32> {
    vec![f32::NAN; n]
}

/// Largest |got - want| / max(1, |want|), failing on NaN or length mismatch.
#[track_caller]
fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0.0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(!g.is_nan(), "{what}: NaN at {i} (unwritten?)");
        let e = (f64::from(g) - w).abs() / w.abs().max(1.0);
        if e > worst.0 {
            worst = (e, i);
        }
    }
    assert!(
        worst.0 <= tol,
        "{what}: error {:.3e} > {tol:.1e} at {} (got {}, want {})",
        worst.0,
        worst.1,
        got[worst.1],
        want[worst.1]
    );
}

#[track_caller]
fn assert_bits_eq(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(
            x.to_bits(),
            y.to_bits(),
            "{what}: differs at {i}: {x} vs {y}"
        );
    }
}

/// Runs `f` on both pools into NaN-filled outputs of `n` values, checks the
/// two are bit-identical and returns one.
fn on_both_pools(n: usize, f: impl Fn(&ThreadPool, &mut [f32])) -> Vec<f32> {
    let outs: Vec<Vec<f32>> = pools()
        .iter()
        .map(|p| {
            let mut y = nans(n);
            f(p, &mut y);
            y
        })
        .collect();
    assert_bits_eq("1 vs 2 threads", &outs[0], &outs[1]);
    outs.into_iter().next().unwrap()
}

// ---------------------------------------------------------------- norms

fn rms_ref(x: &[f32], group: usize, eps: f32, w: Option<&[f32]>) -> Vec<f64> {
    x.chunks(group)
        .flat_map(|g| {
            let ms = g.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / group as f64;
            let s = 1.0 / (ms + f64::from(eps)).sqrt();
            g.iter()
                .enumerate()
                .map(move |(i, &v)| f64::from(v) * s * w.map_or(1.0, |w| f64::from(w[i])))
        })
        .collect()
}

#[test]
fn rms_norm_matches_reference() {
    // (groups, group): odd, aligned, and big enough to go parallel.
    for (n, group) in [(1, 5), (7, 13), (3, 64), (4, 128), (300, 96)] {
        let x = normals(1, n * group);
        let w = normals(2, group);
        for weight in [None, Some(&w[..])] {
            let y = on_both_pools(n * group, |p, y| {
                ops::rms_norm(p, &x, y, group, 1e-6, weight).unwrap()
            });
            assert_close(
                &format!("rms_norm {n}x{group}"),
                &y,
                &rms_ref(&x, group, 1e-6, weight),
                RMS_NORM_TOL,
            );
        }
    }
}

#[test]
fn layer_norm_matches_reference() {
    for (n, group) in [(1, 5), (7, 13), (3, 64), (300, 96)] {
        let x: Vec<f32> = normals(3, n * group).iter().map(|v| v + 0.5).collect();
        let (w, b) = (normals(4, group), normals(5, group));
        let want: Vec<f64> = x
            .chunks(group)
            .flat_map(|g| {
                let mean = g.iter().map(|&v| f64::from(v)).sum::<f64>() / group as f64;
                let var = g
                    .iter()
                    .map(|&v| (f64::from(v) - mean).powi(2))
                    .sum::<f64>()
                    / group as f64;
                let s = 1.0 / (var + 1e-5).sqrt();
                let (w, b) = (&w, &b);
                g.iter().enumerate().map(move |(i, &v)| {
                    (f64::from(v) - mean) * s * f64::from(w[i]) + f64::from(b[i])
                })
            })
            .collect();
        let y = on_both_pools(n * group, |p, y| {
            ops::layer_norm(p, &x, y, group, 1e-5, Some(&w), Some(&b)).unwrap()
        });
        assert_close(
            &format!("layer_norm {n}x{group}"),
            &y,
            &want,
            LAYER_NORM_TOL,
        );
    }
}

// ---------------------------------------------------------------- rope

fn rope_params(n_rot: usize, mode: RopeMode, yarn: bool, ff: Option<&[f32]>) -> RopeParams<'_> {
    RopeParams {
        n_rot,
        mode,
        freq_base: 10000.0,
        freq_scale: if yarn { 0.25 } else { 1.0 },
        ext_factor: if yarn { 1.0 } else { 0.0 },
        attn_factor: 1.0,
        beta_fast: 32.0,
        beta_slow: 1.0,
        n_ctx_orig: 4096,
        freq_factors: ff,
    }
}

/// The textbook formulas in f64 (YaRN as in the paper's reference code).
fn rope_ref(x: &[f32], n_heads: usize, hd: usize, pos: &[i32], p: &RopeParams) -> Vec<f64> {
    let n_rot = p.n_rot;
    let corr = |beta: f64| {
        n_rot as f64 * (p.n_ctx_orig as f64 / (beta * 2.0 * std::f64::consts::PI)).ln()
            / (2.0 * f64::from(p.freq_base).ln())
    };
    let low = corr(f64::from(p.beta_fast)).floor().max(0.0);
    let high = corr(f64::from(p.beta_slow)).ceil().min(n_rot as f64 - 1.0);
    let mut out: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    for (t, &ps) in pos.iter().enumerate() {
        for h in 0..n_heads {
            let base = (t * n_heads + h) * hd;
            for i in 0..n_rot / 2 {
                let ff = p.freq_factors.map_or(1.0, |f| f64::from(f[i]));
                let extrap = f64::from(ps)
                    * f64::from(p.freq_base).powf(-2.0 * i as f64 / n_rot as f64)
                    / ff;
                let interp = f64::from(p.freq_scale) * extrap;
                let (mut theta, mut m) = (interp, f64::from(p.attn_factor));
                if p.ext_factor != 0.0 {
                    let y = (i as f64 - low) / (high - low).max(0.001);
                    let mix = (1.0 - y.clamp(0.0, 1.0)) * f64::from(p.ext_factor);
                    theta = interp * (1.0 - mix) + extrap * mix;
                    m *= 1.0 + 0.1 * (1.0 / f64::from(p.freq_scale)).ln();
                }
                let (a, b) = match p.mode {
                    RopeMode::Normal => (base + 2 * i, base + 2 * i + 1),
                    RopeMode::Neox => (base + i, base + i + n_rot / 2),
                };
                let (x0, x1) = (f64::from(x[a]), f64::from(x[b]));
                out[a] = (x0 * theta.cos() - x1 * theta.sin()) * m;
                out[b] = (x0 * theta.sin() + x1 * theta.cos()) * m;
            }
        }
    }
    out
}

#[test]
fn rope_matches_reference_normal_neox_partial_yarn_freq_factors() {
    let ff: Vec<f32> = (0..64).map(|i| 1.0 + i as f32 * 0.1).collect();
    for (n_tokens, n_heads, hd, n_rot) in [
        (3, 5, 12, 12),
        (7, 3, 64, 32),
        (1, 4, 128, 128),
        (40, 8, 64, 64),
    ] {
        let x = normals(10, n_tokens * n_heads * hd);
        let pos: Vec<i32> = (0..n_tokens as i32).map(|t| 3 * t + 1).collect();
        for mode in [RopeMode::Normal, RopeMode::Neox] {
            for yarn in [false, true] {
                for f in [None, Some(&ff[..])] {
                    let p = rope_params(n_rot, mode, yarn, f);
                    let y = on_both_pools(x.len(), |pool, y| {
                        ops::rope(pool, &x, y, n_tokens, n_heads, hd, &pos, &p).unwrap()
                    });
                    let what = format!(
                        "rope {mode:?} yarn={yarn} ff={} [{n_tokens},{n_heads},{hd}] n_rot={n_rot}",
                        f.is_some()
                    );
                    assert_close(&what, &y, &rope_ref(&x, n_heads, hd, &pos, &p), ROPE_TOL);
                    // Partial rotary: the tail of each head is copied bit for bit.
                    for (yh, xh) in y.chunks(hd).zip(x.chunks(hd)) {
                        assert_bits_eq("rope pass-through", &yh[n_rot..], &xh[n_rot..]);
                    }
                }
            }
        }
    }
}

#[test]
fn rope_at_position_zero_is_identity_without_yarn() {
    let x = normals(11, 2 * 64);
    let mut y = nans(x.len());
    let p = rope_params(64, RopeMode::Neox, false, None);
    ops::rope(&ThreadPool::new(1), &x, &mut y, 1, 2, 64, &[0], &p).unwrap();
    assert_bits_eq("rope pos 0", &y, &x);
}

// ---------------------------------------------------------------- softmax

fn softmax_ref(x: &[f32], n_cols: usize, scale: f32, mask: Option<&[f32]>) -> Vec<f64> {
    x.chunks(n_cols)
        .enumerate()
        .flat_map(|(r, row)| {
            let w: Vec<f64> = row
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let m = mask.map_or(0.0, |m| {
                        f64::from(m[if m.len() == n_cols { i } else { r * n_cols + i }])
                    });
                    f64::from(v) * f64::from(scale) + m
                })
                .collect();
            let max = w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = w.iter().map(|v| (v - max).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(move |v| v / s)
        })
        .collect()
}

#[test]
fn softmax_matches_reference_with_scale_and_masks() {
    for (n_rows, n_cols) in [(1, 5), (3, 7), (5, 11), (4, 32), (200, 131)] {
        let x = normals(20, n_rows * n_cols);
        let mut mrow = normals(21, n_cols);
        mrow[n_cols / 2] = f32::NEG_INFINITY;
        let mfull = normals(22, n_rows * n_cols);
        for mask in [None, Some(&mrow[..]), Some(&mfull[..])] {
            let y = on_both_pools(x.len(), |p, y| {
                ops::softmax(p, &x, y, n_cols, 0.7, mask).unwrap()
            });
            assert_close(
                &format!("softmax {n_rows}x{n_cols}"),
                &y,
                &softmax_ref(&x, n_cols, 0.7, mask),
                SOFTMAX_TOL,
            );
        }
    }
}

// ---------------------------------------------------------------- attention

struct Cache {
    bytes: Vec<u8>,
    stride: usize,
    dtype: KvType,
}

impl Cache {
    /// `n_cells` cells of `n_kv_head * hd` random values, with a few spare
    /// bytes per row so that the stride is not the row size.
    fn random(seed: u64, dtype: KvType, n_cells: usize, n_kv_head: usize, hd: usize) -> Cache {
        let cols = n_kv_head * hd;
        let stride = dtype.bytes(cols).unwrap() + 6;
        let mut bytes = vec![0xA5u8; stride * n_cells];
        let src = normals(seed, n_cells * cols);
        ops::kv_store(&src, cols, &mut bytes, dtype, stride, 0).unwrap();
        Cache {
            bytes,
            stride,
            dtype,
        }
    }

    fn view(&self, n_kv_head: usize, hd: usize) -> KvView<'_> {
        KvView {
            data: &self.bytes,
            dtype: self.dtype,
            row_stride_bytes: self.stride,
            n_kv_head,
            head_dim: hd,
        }
    }

    /// The stored values of head `kvh` of `cell`, in f64.
    fn head(&self, cell: usize, kvh: usize, hd: usize) -> Vec<f64> {
        let hb = self.dtype.bytes(hd).unwrap();
        let start = cell * self.stride + kvh * hb;
        let b = &self.bytes[start..start + hb];
        match self.dtype {
            KvType::F16 => b
                .chunks(2)
                .map(|c| f64::from(f16::from_le_bytes([c[0], c[1]]).to_f32()))
                .collect(),
            KvType::Q8_0 => b
                .chunks(34)
                .flat_map(|blk| {
                    let d = f64::from(f16::from_le_bytes([blk[0], blk[1]]).to_f32());
                    blk[2..].iter().map(move |&q| f64::from(q as i8) * d)
                })
                .collect(),
        }
    }
}

/// Naive attention in f64 over the stored K/V values, with explicit masks.
fn attention_ref(q: &[f32], k: &Cache, v: &Cache, p: &AttnParams) -> Vec<f64> {
    let hd = p.head_dim;
    let mut out = Vec::new();
    for t in 0..p.n_tokens {
        for h in 0..p.n_head {
            let kvh = h * p.n_kv_head / p.n_head;
            let qh = &q[(t * p.n_head + h) * hd..][..hd];
            let qp = i64::from(p.q_pos[t]);
            let mut logits = Vec::new();
            for j in 0..p.n_kv {
                let d = qp - j as i64;
                if (p.causal && d < 0) || p.window.is_some_and(|w| d >= w as i64) {
                    continue;
                }
                let kh = k.head(j, kvh, hd);
                let mut s: f64 = qh
                    .iter()
                    .zip(&kh)
                    .map(|(&a, b)| f64::from(a) * b)
                    .sum::<f64>()
                    * f64::from(p.scale);
                if p.softcap != 0.0 {
                    s = f64::from(p.softcap) * (s / f64::from(p.softcap)).tanh();
                }
                logits.push((j, s));
            }
            let sink = p.sinks.map(|s| f64::from(s[h]));
            let max = logits
                .iter()
                .map(|l| l.1)
                .chain(sink)
                .fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = logits
                .iter()
                .map(|l| (l.1 - max).exp())
                .chain(sink.map(|s| (s - max).exp()))
                .sum();
            let mut acc = vec![0f64; hd];
            for &(j, s) in &logits {
                let w = (s - max).exp() / total;
                for (a, x) in acc.iter_mut().zip(v.head(j, kvh, hd)) {
                    *a += w * x;
                }
            }
            out.extend(acc);
        }
    }
    out
}

struct AttnCase {
    n_tokens: usize,
    n_head: usize,
    n_kv_head: usize,
    hd: usize,
    n_kv: usize,
    causal: bool,
    window: Option<usize>,
    softcap: f32,
    sinks: bool,
}

fn run_attention_case(c: &AttnCase, k_type: KvType, v_type: KvType, seed: u64) {
    let (k, v) = (
        Cache::random(seed, k_type, c.n_kv, c.n_kv_head, c.hd),
        Cache::random(seed + 1, v_type, c.n_kv, c.n_kv_head, c.hd),
    );
    let q = normals(seed + 2, c.n_tokens * c.n_head * c.hd);
    // The query tokens are the last n_tokens positions: a prefix is cached.
    let q_pos: Vec<i32> = (0..c.n_tokens)
        .map(|t| (c.n_kv - c.n_tokens + t) as i32)
        .collect();
    let sinks: Vec<f32> = normals(seed + 3, c.n_head);
    let p = AttnParams {
        n_tokens: c.n_tokens,
        n_head: c.n_head,
        n_kv_head: c.n_kv_head,
        head_dim: c.hd,
        n_kv: c.n_kv,
        kv_cells: 0,
        q_pos: &q_pos,
        causal: c.causal,
        window: c.window,
        scale: 1.0 / (c.hd as f32).sqrt(),
        softcap: c.softcap,
        sinks: c.sinks.then_some(&sinks[..]),
    };
    let (kv, vv) = (k.view(c.n_kv_head, c.hd), v.view(c.n_kv_head, c.hd));
    let n = q.len();
    let fast = on_both_pools(n, |pool, o| {
        ops::attention(pool, &q, kv, vv, o, &p).unwrap()
    });
    let scalar = on_both_pools(n, |pool, o| {
        ops::attention_scalar(pool, &q, kv, vv, o, &p).unwrap()
    });
    let tol = if k_type == KvType::Q8_0 || v_type == KvType::Q8_0 {
        ATTN_Q8_0_TOL
    } else {
        ATTN_F16_TOL
    };
    let what = format!(
        "attention K={k_type:?} V={v_type:?} tokens={} heads={}/{} hd={} n_kv={} causal={} window={:?} softcap={} sinks={}",
        c.n_tokens, c.n_head, c.n_kv_head, c.hd, c.n_kv, c.causal, c.window, c.softcap, c.sinks
    );
    let want = attention_ref(&q, &k, &v, &p);
    assert_close(&what, &scalar, &want, tol);
    assert_close(&what, &fast, &want, tol);
    let scalar64: Vec<f64> = scalar.iter().map(|&x| f64::from(x)).collect();
    assert_close(
        &format!("{what} (simd vs scalar)"),
        &fast,
        &scalar64,
        ATTN_TWIN_TOL,
    );
}

#[test]
fn attention_matches_reference() {
    let cases = [
        // decode, GQA 4:1, causal
        AttnCase {
            n_tokens: 1,
            n_head: 8,
            n_kv_head: 2,
            hd: 64,
            n_kv: 37,
            causal: true,
            window: None,
            softcap: 0.0,
            sinks: false,
        },
        // prefill continuing a cached prefix, odd head count, MHA
        AttnCase {
            n_tokens: 5,
            n_head: 3,
            n_kv_head: 3,
            hd: 32,
            n_kv: 13,
            causal: true,
            window: None,
            softcap: 0.0,
            sinks: false,
        },
        // sliding window + softcap (gemma2/3 style), GQA 2:1
        AttnCase {
            n_tokens: 7,
            n_head: 4,
            n_kv_head: 2,
            hd: 96,
            n_kv: 29,
            causal: true,
            window: Some(5),
            softcap: 50.0,
            sinks: false,
        },
        // sinks, non-causal, MQA
        AttnCase {
            n_tokens: 3,
            n_head: 6,
            n_kv_head: 1,
            hd: 128,
            n_kv: 11,
            causal: false,
            window: None,
            softcap: 0.0,
            sinks: true,
        },
        // big enough to run on the pool
        AttnCase {
            n_tokens: 16,
            n_head: 8,
            n_kv_head: 4,
            hd: 64,
            n_kv: 80,
            causal: true,
            window: Some(40),
            softcap: 30.0,
            sinks: true,
        },
    ];
    for (i, c) in cases.iter().enumerate() {
        for (kt, vt) in [
            (KvType::F16, KvType::F16),
            (KvType::Q8_0, KvType::Q8_0),
            (KvType::F16, KvType::Q8_0),
        ] {
            run_attention_case(c, kt, vt, 100 + i as u64 * 10);
        }
    }
}

#[test]
fn attention_with_nothing_visible_writes_zeros() {
    // window 1 and a query at position 3 over 2 cells: nothing visible.
    let k = Cache::random(1, KvType::F16, 2, 1, 32);
    let q = normals(2, 32);
    let p = AttnParams {
        n_tokens: 1,
        n_head: 1,
        n_kv_head: 1,
        head_dim: 32,
        n_kv: 2,
        kv_cells: 0,
        q_pos: &[3],
        causal: true,
        window: Some(1),
        scale: 1.0,
        softcap: 0.0,
        sinks: None,
    };
    let mut out = nans(32);
    ops::attention(
        &ThreadPool::new(1),
        &q,
        k.view(1, 32),
        k.view(1, 32),
        &mut out,
        &p,
    )
    .unwrap();
    assert!(out.iter().all(|&x| x == 0.0));
}

#[test]
fn kv_store_round_trips_within_type_precision_and_leaves_other_cells() {
    let cols = 2 * 64;
    let src = normals(30, 3 * cols);
    for dtype in [KvType::F16, KvType::Q8_0] {
        let stride = dtype.bytes(cols).unwrap() + 4;
        let mut cache = vec![0x5Au8; stride * 6];
        ops::kv_store(&src, cols, &mut cache, dtype, stride, 2).unwrap();
        assert!(
            cache[..2 * stride].iter().all(|&b| b == 0x5A),
            "{dtype:?}: cells before touched"
        );
        assert!(
            cache[5 * stride..].iter().all(|&b| b == 0x5A),
            "{dtype:?}: cells after touched"
        );
        let mut back = nans(cols);
        for t in 0..3 {
            let row = &cache[(2 + t) * stride..][..dtype.bytes(cols).unwrap()];
            dtype.to_f32(row, &mut back);
            for (blk_b, blk_s) in back
                .chunks(32)
                .zip(src[t * cols..(t + 1) * cols].chunks(32))
            {
                let amax = blk_s.iter().fold(0f32, |m, v| m.max(v.abs()));
                let tol = match dtype {
                    KvType::F16 => amax * 1e-3,
                    KvType::Q8_0 => amax / 127.0 * 0.51 + amax * 1e-3,
                };
                for (b, s) in blk_b.iter().zip(blk_s) {
                    assert!((b - s).abs() <= tol, "{dtype:?}: {b} vs {s}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------- elementwise

fn silu64(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

fn gelu_tanh64(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
}

/// Abramowitz–Stegun 7.1.26 is too coarse; use the series/continued erf via
/// libm's f64 erf through the C library.
fn erf64(x: f64) -> f64 {
    extern "C" {
        fn erf(x: f64) -> f64;
    }
    // SAFETY: C99 libm function of one double.
    unsafe { erf(x) }
}

/// An elementwise op's signature.
type UnaryOp = fn(&ThreadPool, &[f32], &mut [f32]) -> Result<(), OpError>;
/// Name, op, f64 reference, tolerance.
type UnaryCase = (&'static str, UnaryOp, fn(f64) -> f64, f64);

#[test]
fn unary_and_glu_ops_match_reference() {
    // 8-aligned, odd (tail path), and big (pool path, tail inside a chunk).
    for n in [5, 13, 64, 1003, 40_007] {
        let x: Vec<f32> = normals(40, n).iter().map(|v| v * 3.0).collect();
        let u = normals(41, n);
        let xd: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let ud: Vec<f64> = u.iter().map(|&v| f64::from(v)).collect();
        let unary: [UnaryCase; 3] = [
            ("silu", ops::silu, silu64, SILU_TOL),
            ("gelu", ops::gelu, gelu_tanh64, GELU_TABLE_TOL),
            (
                "gelu_erf",
                ops::gelu_erf,
                |x| 0.5 * x * (1.0 + erf64(x / 2f64.sqrt())),
                GELU_ERF_TOL,
            ),
        ];
        for (name, f, r, tol) in unary {
            let y = on_both_pools(n, |p, y| f(p, &x, y).unwrap());
            assert_close(
                &format!("{name} n={n}"),
                &y,
                &xd.iter().map(|&v| r(v)).collect::<Vec<_>>(),
                tol,
            );
        }
        let y = on_both_pools(n, |p, y| ops::swiglu(p, &x, &u, y).unwrap());
        let want: Vec<f64> = xd.iter().zip(&ud).map(|(&a, &b)| silu64(a) * b).collect();
        assert_close(&format!("swiglu n={n}"), &y, &want, SILU_TOL * 4.0);
        let y = on_both_pools(n, |p, y| ops::geglu(p, &x, &u, y).unwrap());
        let want: Vec<f64> = xd
            .iter()
            .zip(&ud)
            .map(|(&a, &b)| gelu_tanh64(a) * b)
            .collect();
        assert_close(&format!("geglu n={n}"), &y, &want, GELU_TABLE_TOL * 4.0);
        let y = on_both_pools(n, |p, y| ops::scale(p, &x, -0.5, y).unwrap());
        assert_close(
            &format!("scale n={n}"),
            &y,
            &xd.iter().map(|v| v * -0.5).collect::<Vec<_>>(),
            0.0,
        );
    }
}

#[test]
fn gelu_saturates_like_ggml() {
    let x = [-20.0f32, -10.0, 10.0, 25.0];
    let mut y = nans(4);
    ops::gelu(&ThreadPool::new(1), &x, &mut y).unwrap();
    assert_eq!(y, [0.0, 0.0, 10.0, 25.0]);
}

#[test]
fn add_and_mul_with_and_without_broadcast() {
    for (rows, cols) in [(1, 7), (5, 13), (300, 128)] {
        let x = normals(50, rows * cols);
        let full = normals(51, rows * cols);
        let row = normals(52, cols);
        for y in [&full, &row] {
            let yb = |i: usize| f64::from(y[i % y.len()]);
            let sum = on_both_pools(x.len(), |p, o| ops::add(p, &x, y, o).unwrap());
            let want: Vec<f64> = x
                .iter()
                .enumerate()
                .map(|(i, &a)| f64::from(a) + yb(i))
                .collect();
            assert_close("add", &sum, &want, 1e-7);
            let prod = on_both_pools(x.len(), |p, o| ops::mul(p, &x, y, o).unwrap());
            let want: Vec<f64> = x
                .iter()
                .enumerate()
                .map(|(i, &a)| f64::from(a) * yb(i))
                .collect();
            assert_close("mul", &prod, &want, 1e-7);
        }
    }
}

#[test]
fn scalar_twins_give_identical_bits() {
    for n in [7, 8, 64, 1001] {
        let x: Vec<f32> = normals(60, n).iter().map(|v| v * 8.0).collect();
        let u = normals(61, n);
        let (mut a, mut b) = (nans(n), nans(n));
        math::silu_row(&x, &mut a);
        math::silu_row_scalar(&x, &mut b);
        assert_bits_eq("silu_row", &a, &b);
        math::swiglu_row(&x, &u, &mut a);
        math::swiglu_row_scalar(&x, &u, &mut b);
        assert_bits_eq("swiglu_row", &a, &b);
        a.copy_from_slice(&x);
        b.copy_from_slice(&x);
        let (sa, sb) = (
            math::exp_sum_row(&mut a, 8.0),
            math::exp_sum_row_scalar(&mut b, 8.0),
        );
        assert_bits_eq("exp_sum_row", &a, &b);
        assert_eq!(sa.to_bits(), sb.to_bits());
    }
}

// ---------------------------------------------------------------- rows and routing

#[test]
fn get_rows_dequantizes_selected_rows() {
    let (n_rows, n_cols) = (9, 64);
    let w = normals(70, n_rows * n_cols);
    let ids = [4u32, 0, 8, 4];
    // F32: exact.
    let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut out = nans(ids.len() * n_cols);
    ops::get_rows(GgmlType::F32, &bytes, n_cols, &ids, &mut out).unwrap();
    for (o, &id) in out.chunks(n_cols).zip(&ids) {
        assert_bits_eq("get_rows f32", o, &w[id as usize * n_cols..][..n_cols]);
    }
    // Q8_0: the stored d * q.
    let mut q = vec![0u8; n_rows * n_cols / 32 * 34];
    tessera_quant::quantize(GgmlType::Q8_0, &w, &mut q).unwrap();
    ops::get_rows(GgmlType::Q8_0, &q, n_cols, &ids, &mut out).unwrap();
    for (o, &id) in out.chunks(n_cols).zip(&ids) {
        let row = &q[id as usize * 68..][..68];
        let want: Vec<f64> = row
            .chunks(34)
            .flat_map(|b| {
                let d = f64::from(f16::from_le_bytes([b[0], b[1]]).to_f32());
                b[2..].iter().map(move |&v| f64::from(v as i8) * d)
            })
            .collect();
        assert_close("get_rows q8_0", o, &want, 0.0);
    }
    // A bad id is an error.
    let e = ops::get_rows(GgmlType::F32, &bytes, n_cols, &[9], &mut out[..n_cols]).unwrap_err();
    assert!(matches!(e, OpError::Index { op: "get_rows", .. }), "{e}");
}

#[test]
fn top_k_is_a_stable_descending_argsort_prefix() {
    let mut r = SplitMix64::new(80);
    for (n_rows, n_cols, k) in [(1, 5, 5), (4, 13, 3), (7, 128, 8), (3, 11, 1)] {
        // Few distinct values so that ties happen.
        let x: Vec<f32> = (0..n_rows * n_cols).map(|_| r.below(6) as f32).collect();
        let (mut ids, mut vals) = (vec![-1i32; n_rows * k], nans(n_rows * k));
        ops::top_k(&x, n_cols, k, &mut ids, &mut vals).unwrap();
        for (row, (ir, vr)) in x.chunks(n_cols).zip(ids.chunks(k).zip(vals.chunks(k))) {
            let mut order: Vec<usize> = (0..n_cols).collect();
            order.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap()); // stable
            let want: Vec<i32> = order[..k].iter().map(|&i| i as i32).collect();
            assert_eq!(ir, &want[..], "row {row:?}");
            assert!(vr.iter().zip(ir).all(|(&v, &i)| v == row[i as usize]));
        }
    }
}

#[test]
fn concat_copy_transpose() {
    let (a, b) = (normals(90, 5 * 3), normals(91, 5 * 4));
    let mut out = nans(5 * 7);
    ops::concat(&a, 3, &b, 4, &mut out).unwrap();
    for r in 0..5 {
        assert_bits_eq("concat a", &out[r * 7..r * 7 + 3], &a[r * 3..r * 3 + 3]);
        assert_bits_eq("concat b", &out[r * 7 + 3..r * 7 + 7], &b[r * 4..r * 4 + 4]);
    }
    let mut t = nans(15);
    ops::transpose2d(&a, 5, 3, &mut t).unwrap();
    for r in 0..5 {
        for c in 0..3 {
            assert_eq!(t[c * 5 + r], a[r * 3 + c]);
        }
    }
    let mut back = nans(15);
    ops::transpose2d(&t, 3, 5, &mut back).unwrap();
    assert_bits_eq("transpose twice", &back, &a);
    let mut c = nans(15);
    ops::copy(&a, &mut c).unwrap();
    assert_bits_eq("copy", &c, &a);
}

// ---------------------------------------------------------------- errors

#[track_caller]
fn assert_shape_err(r: Result<(), OpError>, op: &str) {
    match r {
        Err(OpError::Shape { op: o, reason }) => {
            assert_eq!(o, op);
            assert!(!reason.is_empty());
        }
        other => panic!("{op}: expected a shape error, got {other:?}"),
    }
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let pool = ThreadPool::new(2);
    let x = normals(1, 12);
    let mut y = nans(12);
    let mut short = nans(11);
    assert_shape_err(
        ops::rms_norm(&pool, &x, &mut short, 4, 1e-6, None),
        "rms_norm",
    );
    assert_shape_err(ops::rms_norm(&pool, &x, &mut y, 5, 1e-6, None), "rms_norm");
    assert_shape_err(
        ops::rms_norm(&pool, &x, &mut y, 4, 1e-6, Some(&x[..3])),
        "rms_norm",
    );
    assert_shape_err(
        ops::layer_norm(&pool, &x, &mut y, 0, 1e-6, None, None),
        "layer_norm",
    );
    assert_shape_err(ops::softmax(&pool, &x, &mut y, 5, 1.0, None), "softmax");
    assert_shape_err(
        ops::softmax(&pool, &x, &mut y, 4, 1.0, Some(&x[..5])),
        "softmax",
    );
    let p = rope_params(4, RopeMode::Neox, false, None);
    assert_shape_err(ops::rope(&pool, &x, &mut y, 2, 2, 3, &[0, 1], &p), "rope"); // n_rot > head_dim
    assert_shape_err(ops::rope(&pool, &x, &mut y, 3, 1, 4, &[0, 1], &p), "rope"); // pos length
    let odd = rope_params(3, RopeMode::Normal, false, None);
    assert_shape_err(
        ops::rope(&pool, &x, &mut y, 3, 1, 4, &[0, 1, 2], &odd),
        "rope",
    );
    assert_shape_err(ops::add(&pool, &x, &x[..5], &mut y), "add");
    assert_shape_err(ops::mul(&pool, &x, &x, &mut short), "mul");
    assert_shape_err(ops::swiglu(&pool, &x, &x[..11], &mut y), "swiglu");
    assert_shape_err(ops::silu(&pool, &x, &mut short), "silu");
    assert_shape_err(ops::top_k(&x, 4, 5, &mut [0; 15], &mut [0.0; 15]), "top_k");
    assert_shape_err(ops::concat(&x, 3, &x, 2, &mut y), "concat");
    assert_shape_err(ops::transpose2d(&x, 5, 2, &mut y), "transpose2d");
    assert_shape_err(
        ops::kv_store(&x, 12, &mut [0u8; 100], KvType::Q8_0, 100, 0),
        "kv_store",
    );
    assert!(matches!(
        ops::kv_store(&x, 12, &mut [0u8; 30], KvType::F16, 24, 1),
        Err(OpError::Index { op: "kv_store", .. })
    ));

    // Attention: GQA ratio, cache too short, q length, sinks length.
    let k = Cache::random(1, KvType::F16, 4, 2, 32);
    let q = normals(2, 4 * 32);
    let mut out = nans(4 * 32);
    let base = AttnParams {
        n_tokens: 1,
        n_head: 4,
        n_kv_head: 2,
        head_dim: 32,
        n_kv: 4,
        kv_cells: 0,
        q_pos: &[3],
        causal: true,
        window: None,
        scale: 1.0,
        softcap: 0.0,
        sinks: None,
    };
    let kv = k.view(2, 32);
    ops::attention(&pool, &q, kv, kv, &mut out, &base).unwrap();
    let bad = [
        AttnParams { n_head: 3, ..base },
        AttnParams { n_kv: 5, ..base },
        AttnParams {
            n_tokens: 2,
            ..base
        },
        AttnParams {
            sinks: Some(&[0.0; 3]),
            ..base
        },
    ];
    for p in &bad {
        assert_shape_err(ops::attention(&pool, &q, kv, kv, &mut out, p), "attention");
    }
    let q8 = KvView {
        dtype: KvType::Q8_0,
        head_dim: 33,
        ..kv
    };
    assert_shape_err(
        ops::attention(
            &pool,
            &q,
            q8,
            q8,
            &mut out,
            &AttnParams {
                head_dim: 33,
                ..base
            },
        ),
        "attention",
    );
}
