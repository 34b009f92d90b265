//! The op cases both GPU backends run against the CPU, built from the
//! shapes each backend's harness gives (so each keeps its own case list),
//! from one deterministic [`Rng`] stream: every builder draws its values in
//! a fixed order, so a backend's cases hold the same values from one
//! version of this module to the next.
//!
//! A [`Check`] is labelled and carries a tolerance class ([`Tol`]); the
//! backend names the figure of each class ([`Tolerances`]) and runs the
//! checks with [`Harness::run`]. Products and embeddings come with their
//! exact reference (an f64 product of the dequantized weights, the
//! dequantized rows), which a backend checks with its own tolerances.

use tessera_core::graph::{AttnCfg, Glu, Op, RopeCfg, TensorId, Unary};
use tessera_core::kv::{KvShape, KvType};
use tessera_gguf::GgmlType;

use super::case::{Case, Harness, KvSetup, Report};
use super::data::{decode, encode, product_f64, Rng};

/// The tolerance class of a case compared with the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tol {
    /// Data movement: exact.
    Copy,
    /// f32 arithmetic in another order.
    F32,
    /// Transcendentals: the device's and libm's last bits.
    Transcendental,
    /// Rope at positions up to a few thousand.
    Rope,
    /// GELU through ggml's f16 table.
    GeluF16,
    /// Attention over an F16 cache.
    AttnF16,
    /// Attention over a Q8_0 cache.
    AttnQ8,
}

/// A backend's figure (normalised MSE) for each [`Tol`].
#[derive(Clone, Copy, Debug)]
pub struct Tolerances {
    /// [`Tol::Copy`].
    pub copy: f64,
    /// [`Tol::F32`].
    pub f32: f64,
    /// [`Tol::Transcendental`].
    pub transcendental: f64,
    /// [`Tol::Rope`].
    pub rope: f64,
    /// [`Tol::GeluF16`].
    pub gelu_f16: f64,
    /// [`Tol::AttnF16`].
    pub attn_f16: f64,
    /// [`Tol::AttnQ8`].
    pub attn_q8: f64,
}

impl Tolerances {
    /// The figure of class `t`.
    pub fn of(&self, t: Tol) -> f64 {
        match t {
            Tol::Copy => self.copy,
            Tol::F32 => self.f32,
            Tol::Transcendental => self.transcendental,
            Tol::Rope => self.rope,
            Tol::GeluF16 => self.gelu_f16,
            Tol::AttnF16 => self.attn_f16,
            Tol::AttnQ8 => self.attn_q8,
        }
    }
}

/// One case compared with the CPU: steps (graph, inputs, positions), a KV
/// cache across them when it has attention, and its tolerance class.
pub struct Check {
    /// The report's label.
    pub label: String,
    /// The steps.
    pub steps: Vec<(Case, Vec<i32>)>,
    /// The KV cache, for attention.
    pub kv: Option<KvSetup>,
    /// The tolerance class.
    pub tol: Tol,
}

impl Check {
    /// A one-step check of `case` over `rows` tokens at position 0.
    pub fn step(label: String, case: Case, rows: usize, tol: Tol) -> Check {
        Check {
            label,
            steps: vec![(case, vec![0; rows])],
            kv: None,
            tol,
        }
    }
}

impl Harness {
    /// Compares every check with the CPU (one report line per GPU variant)
    /// with the figures of `tols`.
    pub fn run(&self, rep: &mut Report, checks: Vec<Check>, tols: &Tolerances) {
        for c in checks {
            self.compare_steps(rep, &c.label, &c.steps, c.kv, tols.of(c.tol));
        }
    }
}

/// The `b` operand of a binary op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bcast {
    /// `a`'s shape.
    Same,
    /// One row, broadcast.
    Row,
    /// One row, an F32 weight.
    Weight,
}

/// Binary ops (`b` as each of `bcasts`), unary functions and scale, and
/// GLUs over `[rows, cols]`.
pub fn elementwise(rng: &mut Rng, rows: usize, cols: usize, bcasts: &[Bcast]) -> Vec<Check> {
    let n = rows * cols;
    let mut out = Vec::new();
    type Mk = fn(TensorId, TensorId) -> Op;
    let binaries: [(&str, Mk); 3] = [
        ("add", |a, b| Op::Add { a, b }),
        ("mul", |a, b| Op::Mul { a, b }),
        ("div", |a, b| Op::Div { a, b }),
    ];
    for (name, mk) in binaries {
        for &bcast in bcasts {
            let mut c = Case::default();
            let a = c.input("a", rows, cols, rng.vec(n, 2.0));
            let bn = if bcast == Bcast::Same { n } else { cols };
            // Away from 0, for div.
            let bv: Vec<f32> = rng
                .vec(bn, 2.0)
                .into_iter()
                .map(|v| if v.abs() < 0.1 { v + 0.5 } else { v })
                .collect();
            let b = match bcast {
                Bcast::Same => c.input("b", rows, cols, bv),
                Bcast::Row => c.input("b", 1, cols, bv),
                Bcast::Weight => c.weight("bias", GgmlType::F32, [1, 1, cols], &bv),
            };
            c.node("y", mk(a, b), rows, cols);
            let label = format!("{name} [{rows}, {cols}] b {bcast:?}");
            out.push(Check::step(label, c, rows, Tol::Copy));
        }
    }
    for (name, op, tol) in [
        ("scale", None, Tol::Copy),
        ("silu", Some(Unary::Silu), Tol::Transcendental),
        ("gelu", Some(Unary::Gelu), Tol::GeluF16),
        ("gelu_erf", Some(Unary::GeluErf), Tol::Transcendental),
        ("tanh", Some(Unary::Tanh), Tol::Transcendental),
        ("sigmoid", Some(Unary::Sigmoid), Tol::Transcendental),
    ] {
        let mut c = Case::default();
        let x = c.input("x", rows, cols, rng.vec(n, 6.0));
        let op = match op {
            Some(f) => Op::Unary { x, f },
            None => Op::Scale { x, s: 0.37 },
        };
        c.node("y", op, rows, cols);
        out.push(Check::step(
            format!("{name} [{rows}, {cols}]"),
            c,
            rows,
            tol,
        ));
    }
    for (name, f, tol) in [
        ("swiglu", Glu::SwiGlu, Tol::Transcendental),
        ("geglu", Glu::GeGlu, Tol::GeluF16),
        ("swiglu_oai", Glu::SwiGluOai, Tol::Transcendental),
    ] {
        let mut c = Case::default();
        let gate = c.input("gate", rows, cols, rng.vec(n, 9.0));
        let up = c.input("up", rows, cols, rng.vec(n, 9.0));
        c.node("y", Op::Glu { gate, up, f }, rows, cols);
        out.push(Check::step(
            format!("{name} [{rows}, {cols}]"),
            c,
            rows,
            tol,
        ));
    }
    out
}

/// RMS norm and layer norm of `[rows, cols]` in groups of `group`, without
/// and with weight (and bias).
pub fn norms(rng: &mut Rng, rows: usize, cols: usize, group: usize) -> Vec<Check> {
    let n = rows * cols;
    let mut out = Vec::new();
    for with_w in [false, true] {
        let mut c = Case::default();
        let x = c.input("x", rows, cols, rng.vec(n, 3.0));
        let mut w = |c: &mut Case, name: &str, scale: f32| {
            with_w.then(|| c.weight(name, GgmlType::F32, [1, 1, group], &rng.vec(group, scale)))
        };
        let wt = w(&mut c, "norm.weight", 1.5);
        let op = Op::RmsNorm {
            x,
            w: wt,
            group,
            eps: 1e-6,
        };
        c.node("y", op, rows, cols);
        let label = format!("rms_norm [{rows}, {cols}] group {group} weight {with_w}");
        out.push(Check::step(label, c, rows, Tol::F32));
        let mut c = Case::default();
        let xv = rng.vec(n, 3.0).iter().map(|v| v + 0.7).collect();
        let x = c.input("x", rows, cols, xv);
        let mut w = |c: &mut Case, name: &str, scale: f32| {
            with_w.then(|| c.weight(name, GgmlType::F32, [1, 1, group], &rng.vec(group, scale)))
        };
        let (wt, b) = (w(&mut c, "ln.weight", 1.5), w(&mut c, "ln.bias", 0.5));
        let op = Op::LayerNorm {
            x,
            w: wt,
            b,
            group,
            eps: 1e-5,
        };
        c.node("y", op, rows, cols);
        let label = format!("layer_norm [{rows}, {cols}] group {group} weight+bias {with_w}");
        out.push(Check::step(label, c, rows, Tol::F32));
    }
    out
}

/// Softmax of `[rows, cols]`.
pub fn softmax(rng: &mut Rng, rows: usize, cols: usize) -> Check {
    let mut c = Case::default();
    let x = c.input("x", rows, cols, rng.vec(rows * cols, 8.0));
    c.node("p", Op::Softmax { x }, rows, cols);
    let label = format!("softmax [{rows}, {cols}]");
    Check::step(label, c, rows, Tol::Transcendental)
}

/// A rope configuration of the harness.
#[derive(Clone, Copy, Debug)]
pub struct RopeVariant {
    /// Its name.
    pub name: &'static str,
    /// Heads of a token.
    pub n_heads: usize,
    /// Values per head.
    pub head_dim: usize,
    /// The configuration (frequency factors added when `freq_factors`).
    pub cfg: RopeCfg,
    /// With per-pair frequency factors (a weight).
    pub freq_factors: bool,
}

/// Rope of 64 dimensions, normal pairing, base 10000, no scaling, no
/// YaRN (llama.cpp's beta 32/1), trained on 4096 positions.
pub const ROPE_BASE: RopeCfg = RopeCfg {
    n_rot: 64,
    neox: false,
    freq_base: 10000.0,
    freq_scale: 1.0,
    ext_factor: 0.0,
    attn_factor: 1.0,
    beta_fast: 32.0,
    beta_slow: 1.0,
    n_ctx_orig: 4096,
    freq_factors: None,
};

/// YaRN over [`ROPE_BASE`]: a quarter of the frequencies, NeoX pairing,
/// trained on 2048 positions.
pub const ROPE_YARN: RopeCfg = RopeCfg {
    freq_scale: 0.25,
    ext_factor: 1.0,
    n_ctx_orig: 2048,
    neox: true,
    ..ROPE_BASE
};

/// The rope variants: normal, NeoX, partial rotation, odd heads, frequency
/// factors, YaRN.
pub fn rope_variants() -> Vec<RopeVariant> {
    let base = ROPE_BASE;
    let v = |name, n_heads, head_dim, cfg, freq_factors| RopeVariant {
        name,
        n_heads,
        head_dim,
        cfg,
        freq_factors,
    };
    let neox = RopeCfg {
        n_rot: 128,
        neox: true,
        freq_base: 1e6,
        ..base
    };
    let partial = RopeCfg {
        n_rot: 32,
        neox: true,
        ..base
    };
    let yarn = ROPE_YARN;
    vec![
        v("normal", 4, 64, base, false),
        v("neox", 3, 128, neox, false),
        v("neox partial", 5, 96, partial, false),
        v(
            "normal partial odd heads",
            7,
            80,
            RopeCfg { n_rot: 16, ..base },
            false,
        ),
        v("freq factors", 2, 64, base, true),
        v("yarn", 3, 64, yarn, false),
    ]
}

/// Rope of variant `r` over tokens at `pos`.
pub fn rope(rng: &mut Rng, r: &RopeVariant, pos: &[i32]) -> Check {
    let n = pos.len();
    let width = r.n_heads * r.head_dim;
    let mut c = Case::default();
    let x = c.input("x", n, width, rng.vec(n * width, 2.0));
    let mut cfg = r.cfg;
    if r.freq_factors {
        let f: Vec<f32> = (0..cfg.n_rot / 2).map(|i| 1.0 + i as f32 * 0.37).collect();
        cfg.freq_factors = Some(c.weight("rope_freqs.weight", GgmlType::F32, [1, 1, f.len()], &f));
    }
    let op = Op::Rope {
        x,
        n_heads: r.n_heads,
        head_dim: r.head_dim,
        cfg,
    };
    c.node("r", op, n, width);
    let label = format!(
        "rope {} {}×{} rot {} pos {:?}",
        r.name,
        r.n_heads,
        r.head_dim,
        cfg.n_rot,
        &pos[..n.min(3)]
    );
    Check {
        label,
        steps: vec![(c, pos.to_vec())],
        kv: None,
        tol: Tol::Rope,
    }
}

/// The step's output rows of `[rows, cols]` (all of them, in the harness).
pub fn select_rows(rng: &mut Rng, rows: usize, cols: usize) -> Check {
    let mut c = Case::default();
    let x = c.input("x", rows, cols, rng.vec(rows * cols, 1.0));
    c.node("sel", Op::SelectRows { x }, rows, cols);
    Check::step(format!("select_rows [{rows}, {cols}]"), c, rows, Tol::Copy)
}

/// An MoE router over `[rows, cols]` logits: softmax, top-k (with ties:
/// values on a coarse grid), the chosen weights, normalised; then, with
/// `moe_sum_cols`, expert outputs of that width weighted and summed.
pub fn router(
    rng: &mut Rng,
    rows: usize,
    cols: usize,
    k: usize,
    moe_sum_cols: Option<usize>,
) -> Check {
    let mut c = Case::default();
    let xv = rng
        .vec(rows * cols, 1.0)
        .iter()
        .map(|v| (v * 8.0).round() / 8.0)
        .collect();
    let x = c.input("logits", rows, cols, xv);
    let probs = c.node("probs", Op::Softmax { x }, rows, cols);
    let ids = c.node("ids", Op::TopK { x: probs, k }, rows, k);
    let w = c.node("w", Op::GatherCols { x: probs, ids }, rows, k);
    let op = Op::NormSum {
        x: w,
        min_sum: 6.1e-5,
    };
    let wn = c.node("wn", op, rows, k);
    let mut label = format!("softmax → top_k → gather_cols → norm_sum [{rows}, {cols}] k {k}");
    if let Some(ec) = moe_sum_cols {
        let e = c.input("experts_out", rows * k, ec, rng.vec(rows * k * ec, 1.0));
        c.node("moe", Op::MoeSum { x: e, w: wn }, rows, ec);
        label.push_str(" → moe_sum");
    }
    Check::step(label, c, rows, Tol::Transcendental)
}

/// The group mask over `[rows, cols]` scores.
pub fn group_mask(
    rng: &mut Rng,
    rows: usize,
    cols: usize,
    n_groups: usize,
    n_used: usize,
) -> Check {
    let mut c = Case::default();
    let x = c.input("scores", rows, cols, rng.vec(rows * cols, 1.0));
    let op = Op::GroupMask {
        x,
        n_groups,
        n_used,
    };
    c.node("masked", op, rows, cols);
    let label = format!("group_mask [{rows}, {cols}] {n_groups} groups, {n_used} used");
    Check::step(label, c, rows, Tol::Copy)
}

/// An attention configuration of the harness.
#[derive(Clone, Copy, Debug)]
pub struct AttnCase {
    /// Its name.
    pub label: &'static str,
    /// Query heads.
    pub n_head: usize,
    /// KV heads.
    pub n_head_kv: usize,
    /// Key head dimension.
    pub head_dim: usize,
    /// Value head dimension (0: `head_dim`; DeepSeek's MLA: K 576, V 512).
    pub head_dim_v: usize,
    /// Sliding window.
    pub window: Option<usize>,
    /// Logit soft cap (0: none).
    pub softcap: f32,
    /// With per-head sink logits (a weight).
    pub sinks: bool,
    /// The cache's type (K and V).
    pub kv: KvType,
}

impl AttnCase {
    /// `n_head` query heads (`n_head_kv` KV heads) of `head_dim`, on an
    /// F16 cache, nothing else.
    pub const fn heads(
        label: &'static str,
        n_head: usize,
        n_head_kv: usize,
        head_dim: usize,
    ) -> AttnCase {
        AttnCase {
            label,
            n_head,
            n_head_kv,
            head_dim,
            ..AttnCase::BASE
        }
    }

    /// Four heads of 64 on an F16 cache, nothing else.
    pub const BASE: AttnCase = AttnCase {
        label: "",
        n_head: 4,
        n_head_kv: 4,
        head_dim: 64,
        head_dim_v: 0,
        window: None,
        softcap: 0.0,
        sinks: false,
        kv: KvType::F16,
    };
}

/// Attention `a` over a prompt of `prompt` tokens, then `decode` one-token
/// steps, on one cache.
pub fn attention(rng: &mut Rng, a: &AttnCase, prompt: usize, decode: usize) -> Check {
    let hd = a.head_dim;
    let hdv = if a.head_dim_v == 0 { hd } else { a.head_dim_v };
    let mut steps = Vec::new();
    let mut p = 0usize;
    let sinks: Vec<f32> = rng.vec(a.n_head, 2.0);
    for n in std::iter::once(prompt).chain(std::iter::repeat_n(1, decode)) {
        let mut c = Case::default();
        let q = c.input("q", n, a.n_head * hd, rng.vec(n * a.n_head * hd, 2.0));
        let k = c.input("k", n, a.n_head_kv * hd, rng.vec(n * a.n_head_kv * hd, 2.0));
        let vv = rng.vec(n * a.n_head_kv * hdv, 2.0);
        let v = c.input("v", n, a.n_head_kv * hdv, vv);
        let sinks = a
            .sinks
            .then(|| c.weight("attn_sinks", GgmlType::F32, [1, 1, a.n_head], &sinks));
        let cfg = AttnCfg {
            n_head: a.n_head,
            n_head_kv: a.n_head_kv,
            head_dim: hd,
            head_dim_v: hdv,
            scale: 1.0 / (hd as f32).sqrt(),
            softcap: a.softcap,
            window: a.window,
            sinks,
        };
        let op = Op::Attention {
            q,
            k,
            v,
            layer: 0,
            cfg,
        };
        c.node("attn", op, n, a.n_head * hdv);
        steps.push((c, (p..p + n).map(|x| x as i32).collect()));
        p += n;
    }
    let kv = KvSetup {
        shape: KvShape {
            n_ctx: p.next_multiple_of(32).max(64),
            k_width: a.n_head_kv * hd,
            v_width: a.n_head_kv * hdv,
            k_type: a.kv,
            v_type: a.kv,
        },
        n_layers: 1,
    };
    let tol = match a.kv {
        KvType::F16 => Tol::AttnF16,
        KvType::Q8_0 => Tol::AttnQ8,
    };
    let label = format!(
        "attention {} {:?} {}/{}×{hd}/{hdv} prompt {prompt} + {decode} decode",
        a.label, a.kv, a.n_head, a.n_head_kv
    );
    Check {
        label,
        steps,
        kv: Some(kv),
        tol,
    }
}

/// A product case with its exact reference: label, case (one step of
/// `tokens` rows), and the f64 product of the dequantized weights.
pub struct Product {
    /// The report's label.
    pub label: String,
    /// The graph: one product node.
    pub case: Case,
    /// Rows of the step.
    pub tokens: usize,
    /// The exact result.
    pub want: Vec<f32>,
}

/// `x · wᵀ`, `w` of type `t` `[rows, cols]`, `x` `[n, cols]`.
pub fn matmul(rng: &mut Rng, t: GgmlType, rows: usize, cols: usize, n: usize) -> Product {
    let mut c = Case::default();
    let wv = rng.vec(rows * cols, 1.0);
    let w = c.weight("w", t, [1, rows, cols], &wv);
    let xv = rng.vec(n * cols, 1.0);
    let want = product_f64(&decode(t, &encode(t, &wv), rows * cols), &xv, rows, cols);
    let x = c.input("x", n, cols, xv);
    c.node("y", Op::MatMul { w, x }, n, rows);
    Product {
        label: format!("matmul {t:?} w[{rows}, {cols}] x[{n}, {cols}]"),
        case: c,
        tokens: n,
        want,
    }
}

/// Columns of the head and expert products of type `t`: two blocks (13
/// for F32/F16/BF16).
fn stack_cols(t: GgmlType) -> usize {
    let bs = t.block_size() as usize;
    if bs == 1 {
        13
    } else {
        bs * 2
    }
}

/// Per-head products: 3 heads of `[7, cols]` of type `t`, 5 tokens.
pub fn mul_mat_heads(rng: &mut Rng, t: GgmlType) -> Product {
    let cols = stack_cols(t);
    let (heads, rows, n) = (3, 7, 5);
    let mut c = Case::default();
    let wv = rng.vec(heads * rows * cols, 1.0);
    let wd = decode(t, &encode(t, &wv), wv.len());
    let w = c.weight("wh", t, [heads, rows, cols], &wv);
    let xv = rng.vec(n * heads * cols, 1.0);
    let mut want = vec![0f32; n * heads * rows];
    for h in 0..heads {
        let xh: Vec<f32> = (0..n)
            .flat_map(|i| xv[(i * heads + h) * cols..(i * heads + h + 1) * cols].to_vec())
            .collect();
        let yh = product_f64(&wd[h * rows * cols..(h + 1) * rows * cols], &xh, rows, cols);
        for i in 0..n {
            want[(i * heads + h) * rows..(i * heads + h + 1) * rows]
                .copy_from_slice(&yh[i * rows..(i + 1) * rows]);
        }
    }
    let x = c.input("x", n, heads * cols, xv);
    c.node("y", Op::MatMulHeads { w, x }, n, heads * rows);
    Product {
        label: format!("mul_mat_heads {t:?} {heads} × [{rows}, {cols}], {n} tokens"),
        case: c,
        tokens: n,
        want,
    }
}

/// Expert products: 6 of `[11, cols]` of type `t`, 5 tokens × 3 slots, `x`
/// a row per token or (`per_slot`) per slot.
pub fn mul_mat_id(rng: &mut Rng, t: GgmlType, per_slot: bool) -> Product {
    let cols = stack_cols(t);
    let (ne, rows, n, k) = (6, 11, 5, 3);
    let mut c = Case::default();
    let wv = rng.vec(ne * rows * cols, 1.0);
    let wd = decode(t, &encode(t, &wv), wv.len());
    let w = c.weight("experts", t, [ne, rows, cols], &wv);
    let xr = if per_slot { n * k } else { n };
    let xv = rng.vec(xr * cols, 1.0);
    let ids: Vec<usize> = (0..n * k).map(|i| (i * 5 + i / k) % ne).collect();
    let mut want = Vec::new();
    for (u, &e) in ids.iter().enumerate() {
        let r = if per_slot { u } else { u / k };
        let xu = &xv[r * cols..(r + 1) * cols];
        let we = &wd[e * rows * cols..(e + 1) * rows * cols];
        want.extend(product_f64(we, xu, rows, cols));
    }
    let x = c.input("x", xr, cols, xv);
    let idv = ids.iter().map(|&e| f32::from_bits(e as u32)).collect();
    let ids = c.input("ids", n, k, idv);
    c.node("y", Op::MatMulId { w, x, ids }, n * k, rows);
    Product {
        label: format!(
            "mul_mat_id {t:?} {ne} × [{rows}, {cols}], {n}×{k} slots, x per slot {per_slot}"
        ),
        case: c,
        tokens: n,
        want,
    }
}

/// The embedding tables of type `t`: `(rows, cols)`, one block and three.
pub fn embed_shapes(t: GgmlType) -> [(usize, usize); 2] {
    let bs = t.block_size() as usize;
    [(7, if bs == 1 { 5 } else { bs }), (50, bs.max(4) * 3)]
}

/// Rows of a `[rows, cols]` table of type `t` for 5 tokens (repeats, the
/// first and last rows), with the dequantized rows as reference.
pub fn embed(rng: &mut Rng, t: GgmlType, rows: usize, cols: usize) -> Product {
    let mut c = Case::default();
    let tv = rng.vec(rows * cols, 1.0);
    let td = decode(t, &encode(t, &tv), tv.len());
    let table = c.weight("token_embd", t, [1, rows, cols], &tv);
    c.tokens = vec![3, 0, (rows - 1) as u32, 3, 1];
    let n = c.tokens.len();
    let want: Vec<f32> = c
        .tokens
        .iter()
        .flat_map(|&id| td[id as usize * cols..(id as usize + 1) * cols].to_vec())
        .collect();
    c.node("emb", Op::Embed { table }, n, cols);
    Product {
        label: format!("embed {t:?} [{rows}, {cols}], {n} tokens"),
        case: c,
        tokens: n,
        want,
    }
}
