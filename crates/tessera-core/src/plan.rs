//! `tessera plan`: where every weight of a model goes under a placement,
//! why, what each device holds, what crosses between devices per token,
//! and predicted decode and prompt speeds — without computing anything.
//!
//! The model is mapped, not read (CPU devices hold their weights in the
//! mapping), and the decode step's graph is scheduled to count the
//! activation copies between devices.
//!
//! The speed model ([`Speed`] per device, measured by [`crate::probe`]):
//! - decode, per token: every product costs what the probe measured for
//!   one token through a matrix of its type and size (the GEMV curve, which
//!   holds the fixed cost of a product as well as the streaming rate); a
//!   routed expert stack costs one dispatch plus `n_expert_used` matrices of
//!   one expert's size; other weights (norms) their bytes at the sweep
//!   bandwidth; every other node the pool's dispatch cost; attention the
//!   CPU kernel's measured time for its head shapes at position 64 (the
//!   middle of tg128; on a declared device its KV read); copies
//!   between devices their bytes at the slower sweep bandwidth. The devices
//!   take turns (one step's segments run one after another), so their
//!   times add up;
//! - prompt processing, per token: 2 × the multiply-adds of the weights a
//!   token touches at the device's measured GEMM rate for each type
//!   (attention over the context is not counted).

use std::collections::BTreeMap;

use tessera_gguf::GgmlType;

use crate::error::Result;
use crate::graph::Op;
use crate::model::{Model, ModelParams};
use crate::placement::Reason;

/// What a weight does, for the plan's groups (and for placement by role).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// `token_embd`.
    Embedding,
    /// Attention projections (and MLA's).
    Attention,
    /// Dense FFN.
    Ffn,
    /// MoE router (`ffn_gate_inp`, `exp_probs_b`).
    Router,
    /// Routed expert stacks (`*_exps`).
    Experts,
    /// Shared experts (`*_shexp`).
    SharedExperts,
    /// Norm weights.
    Norm,
    /// The LM head (`output.weight`).
    Output,
    /// Anything else (rope factors, sinks …).
    Other,
}

impl Role {
    /// The role of weight `name`.
    pub fn of(name: &str) -> Role {
        let base = name
            .strip_suffix(".weight")
            .or(name.strip_suffix(".bias"))
            .unwrap_or(name);
        if name.starts_with("token_embd") {
            Role::Embedding
        } else if name.starts_with("output.") {
            Role::Output
        } else if base.contains("norm") {
            Role::Norm
        } else if base.contains("_exps") {
            Role::Experts
        } else if base.contains("_shexp") {
            Role::SharedExperts
        } else if base.contains("ffn_gate_inp") || base.contains("exp_probs_b") {
            Role::Router
        } else if base.contains(".attn_") {
            Role::Attention
        } else if base.contains(".ffn_") {
            Role::Ffn
        } else {
            Role::Other
        }
    }

    /// Lower-case name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Role::Embedding => "embedding",
            Role::Attention => "attention",
            Role::Ffn => "ffn",
            Role::Router => "router",
            Role::Experts => "experts",
            Role::SharedExperts => "shared_experts",
            Role::Norm => "norm",
            Role::Output => "output",
            Role::Other => "other",
        }
    }
}

/// One row of the plan: the weights of one role on one device, placed for
/// one reason.
#[derive(Clone, Debug)]
pub struct Group {
    /// Device index.
    pub device: usize,
    /// Role.
    pub role: Role,
    /// `rule #n` or `default`.
    pub reason: String,
    /// Tensors.
    pub tensors: usize,
    /// Bytes.
    pub bytes: u64,
}

/// One device in the plan.
#[derive(Clone, Debug)]
pub struct PlanDevice {
    /// Name.
    pub name: String,
    /// Threads of its pool.
    pub threads: usize,
    /// Its measured speeds.
    pub speed: Speed,
    /// Weight bytes it holds.
    pub weight_bytes: u64,
    /// KV cache bytes at the planned context.
    pub kv_bytes: u64,
    /// Bytes it reads per decoded token.
    pub token_bytes: f64,
    /// Seconds of its weight reads per decoded token.
    pub token_secs: f64,
    /// Seconds of its products per prompt token.
    pub prompt_secs: f64,
}

/// How fast a device computes, for the speed model.
#[derive(Clone, Debug, Default)]
pub struct Speed {
    /// Plain read bandwidth, bytes/s (copies, and types without a figure).
    pub sweep: f64,
    /// Per weight type, seconds one token takes through a matrix of a
    /// size: `(bytes, seconds)` points, by size.
    pub gemv: Vec<(GgmlType, Vec<(f64, f64)>)>,
    /// Flop/s of a prompt batch, per weight type.
    pub gemm: Vec<(GgmlType, f64)>,
    /// Fixed seconds per graph node (thread start and join).
    pub node_secs: f64,
    /// Threads of a CPU device (its attention is measured with the CPU
    /// backend's kernel); `None` for a declared device.
    pub cpu_threads: Option<usize>,
}

impl Speed {
    /// Seconds one token takes through a matrix of type `t` and `bytes`
    /// bytes: the measured curve, linear between its points and along its
    /// last segment beyond them (the streaming rate), never below the
    /// smallest point's time scaled down to `bytes` plus the node cost;
    /// without a curve, `bytes` at the sweep bandwidth plus the node cost.
    fn gemv_secs(&self, t: GgmlType, bytes: f64) -> f64 {
        let Some((_, pts)) = self.gemv.iter().find(|g| g.0 == t) else {
            return self.node_secs + bytes / self.sweep;
        };
        let seg = pts
            .windows(2)
            .find(|w| bytes <= w[1].0)
            .or(pts.windows(2).last());
        match seg {
            Some(&[(b0, s0), (b1, s1)]) => {
                let s = s0 + (bytes - b0) * (s1 - s0) / (b1 - b0);
                s.max(self.node_secs + bytes * s0 / b0)
            }
            _ => pts.first().map_or(0.0, |&(b, s)| s * bytes / b),
        }
    }
    fn gemm_of(&self, t: GgmlType) -> Option<f64> {
        self.gemm.iter().find(|g| g.0 == t).map(|g| g.1)
    }

    /// The speeds of a device declared for planning: its bandwidth for
    /// every read, its compute rate (if declared) for every type, and a
    /// fixed [`DECLARED_NODE_SECS`] per node.
    pub fn declared(d: &crate::placement::DeclaredDevice, types: &[GgmlType]) -> Speed {
        Speed {
            sweep: d.bandwidth,
            gemv: Vec::new(),
            gemm: d
                .flops
                .map(|f| types.iter().map(|&t| (t, f)).collect())
                .unwrap_or_default(),
            node_secs: DECLARED_NODE_SECS,
            cpu_threads: None,
        }
    }

    /// The measured speeds of a CPU device with `threads` threads for
    /// `types` (see [`crate::probe`]).
    pub fn measure_cpu(threads: usize, types: &[GgmlType]) -> Speed {
        let pool = tessera_quant::pool::ThreadPool::new(threads.max(1));
        Speed {
            sweep: crate::probe::sweep_bandwidth(threads),
            gemv: types
                .iter()
                .filter_map(|&t| Some((t, crate::probe::gemv_curve(&pool, t)?)))
                .collect(),
            gemm: types
                .iter()
                .filter_map(|&t| Some((t, crate::probe::gemm_flops(&pool, t)?)))
                .collect(),
            node_secs: crate::probe::dispatch_secs(&pool),
            cpu_threads: Some(threads.max(1)),
        }
    }
}

/// The plan.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Devices.
    pub devices: Vec<PlanDevice>,
    /// Weight groups, by device then role.
    pub groups: Vec<Group>,
    /// Rules with their device and match count.
    pub rules: Vec<(String, String, usize)>,
    /// Warnings of the placement.
    pub warnings: Vec<String>,
    /// What the fitter moved.
    pub fit_moves: Vec<String>,
    /// Activation copies between devices per decode step, and their bytes.
    pub copies: usize,
    /// Bytes those copies move.
    pub copy_bytes: u64,
    /// Predicted decode speed, tokens/s.
    pub decode_tps: f64,
    /// Predicted prompt processing speed, tokens/s (`None`: a device has
    /// no compute rate for a type it multiplies).
    pub prompt_tps: Option<f64>,
    /// Context the KV sizes are for.
    pub n_ctx: usize,
}

/// Fixed cost per node of a declared device (about a GPU kernel launch).
pub const DECLARED_NODE_SECS: f64 = 4e-6;

/// The position in the context decode speed is predicted at: the middle
/// of `tessera bench`'s tg128 from an empty cache.
const DECODE_AT: usize = 64;

/// Plans `path` under `params` for a context of `n_ctx` tokens; device `i`
/// with `threads` threads holding weights of `types` computes at
/// `speed(i, threads, types)`.
pub fn plan(
    path: &std::path::Path,
    params: &ModelParams,
    n_ctx: usize,
    speed: impl Fn(usize, usize, &[GgmlType]) -> Speed,
) -> Result<Plan> {
    let model = Model::load(path, params)?;
    // The context the fitter found room for.
    let n_ctx = model.fit_ctx().map_or(n_ctx, |c| c.min(n_ctx));
    let hp = model.hparams();
    let placement = model.placement().clone();
    // The model's own placement (rules, then the fitter).
    let placed: Vec<(usize, Reason)> = model
        .weights()
        .as_slice()
        .iter()
        .map(|w| (w.device, model.reason_of(&w.name)))
        .collect();
    let threads: Vec<usize> = model
        .backends()
        .iter()
        .map(|b| b.threads().max(1))
        .collect();
    let mut devices: Vec<PlanDevice> = placement
        .devices
        .iter()
        .enumerate()
        .map(|(i, name)| PlanDevice {
            name: name.clone(),
            threads: threads[i],
            speed: {
                let mut types: Vec<GgmlType> = model
                    .weights()
                    .as_slice()
                    .iter()
                    .filter(|w| w.device == i && w.parts.is_empty())
                    .map(|w| w.ggml_type)
                    .collect();
                types.sort_by_key(|t| *t as u32);
                types.dedup();
                speed(i, threads[i], &types)
            },
            weight_bytes: 0,
            kv_bytes: 0,
            token_bytes: 0.0,
            token_secs: 0.0,
            prompt_secs: 0.0,
        })
        .collect();
    let mut groups: BTreeMap<(usize, Role, String), (usize, u64)> = BTreeMap::new();
    let tied = model.weights().get("output.weight").is_none();
    let expert_share = if hp.n_expert > 0 {
        hp.n_expert_used as f64 / hp.n_expert as f64
    } else {
        1.0
    };
    for (w, (dev, reason)) in model.weights().as_slice().iter().zip(&placed) {
        if !w.parts.is_empty() {
            continue; // a row-split matrix: its parts are counted
        }
        let bytes = w.host_bytes().map_or(0, |b| b.len() as u64);
        let role = Role::of(&w.name);
        let reason = match reason {
            Reason::Rule(i) => format!("rule #{}", i + 1),
            Reason::Default => "default".into(),
            Reason::Fit => "fit".into(),
            Reason::Split => "layer split".into(),
            Reason::Rows => "row split".into(),
        };
        let e = groups.entry((*dev, role, reason)).or_default();
        e.0 += 1;
        e.1 += bytes;
        let d = &mut devices[*dev];
        d.weight_bytes += bytes;
        let share = match role {
            Role::Experts => expert_share,
            // One row per token, unless it is also the LM head.
            Role::Embedding if !tied => 1.0 / w.shape[1].max(1) as f64,
            _ => 1.0,
        };
        d.token_bytes += bytes as f64 * share;
        // Products: matrices a token goes through (routed experts: the
        // `n_expert_used` chosen ones of the stack).
        let is_product = !matches!(role, Role::Norm | Role::Other)
            && (role != Role::Embedding || tied)
            && w.shape[1] > 1;
        d.token_secs += match role {
            // One product (one dispatch) reads the chosen experts'
            // matrices, each a separate stream from wherever it lies.
            Role::Experts if hp.n_expert > 0 => {
                let one = d
                    .speed
                    .gemv_secs(w.ggml_type, bytes as f64 / hp.n_expert as f64);
                d.speed.node_secs + hp.n_expert_used as f64 * (one - d.speed.node_secs).max(0.0)
            }
            _ if is_product => d.speed.gemv_secs(w.ggml_type, bytes as f64),
            _ => bytes as f64 * share / d.speed.sweep,
        };
        if is_product {
            let values = (w.shape[0] * w.shape[1] * w.shape[2]) as f64 * share;
            match d.speed.gemm_of(w.ggml_type) {
                Some(flops) => d.prompt_secs += 2.0 * values / flops,
                None => d.prompt_secs = f64::NAN,
            }
        }
    }
    // KV: per layer on its attention's device.
    let kv_row = hp.kv_bytes_f16();
    for &d in model.layer_devices() {
        devices[d].kv_bytes += kv_row * n_ctx as u64;
    }
    // Copies in the decode step.
    let sched = model.schedule(1, 1)?;
    let mut copies = 0;
    let mut copy_bytes = 0u64;
    for n in &sched.graph.nodes {
        if let Op::Copy { x } = n.op {
            copies += 1;
            copy_bytes += 4 * sched.graph.tensor(x).len() as u64;
        }
    }
    // Every node that is not a product (counted with its weight above)
    // pays its device's fixed cost; attention also reads the KV cache up
    // to the position the prediction is for.
    let kv_pos = DECODE_AT.min(n_ctx) as f64;
    let node_secs: f64 = sched
        .graph
        .nodes
        .iter()
        .zip(&sched.node_device)
        .map(|(n, &d)| match n.op {
            Op::MatMul { .. } | Op::MatMulId { .. } | Op::MatMulHeads { .. } => 0.0,
            // Run by the session itself (a memcpy): its bytes are below.
            Op::Copy { .. } => 0.0,
            Op::Attention { cfg, .. } => {
                let s = &devices[d].speed;
                s.cpu_threads
                    .and_then(|t| crate::probe::attention_secs(t, &cfg, kv_pos as usize))
                    .unwrap_or(s.node_secs + kv_row as f64 * kv_pos / s.sweep)
            }
            _ => devices[d].speed.node_secs,
        })
        .sum();
    let min_bw = devices
        .iter()
        .map(|d| d.speed.sweep)
        .fold(f64::INFINITY, f64::min);
    let secs: f64 =
        devices.iter().map(|d| d.token_secs).sum::<f64>() + copy_bytes as f64 / min_bw + node_secs;
    let prompt_secs: f64 = devices.iter().map(|d| d.prompt_secs).sum();
    Ok(Plan {
        devices,
        groups: groups
            .into_iter()
            .map(|((device, role, reason), (tensors, bytes))| Group {
                device,
                role,
                reason,
                tensors,
                bytes,
            })
            .collect(),
        rules: placement
            .rules
            .iter()
            .map(|r| (r.text.clone(), r.device.clone(), r.matches))
            .collect(),
        warnings: placement.warnings.clone(),
        fit_moves: placement.fit_moves.clone(),
        copies,
        copy_bytes,
        decode_tps: 1.0 / secs,
        prompt_tps: prompt_secs
            .is_finite()
            .then(|| 1.0 / prompt_secs.max(1e-12)),
        n_ctx,
    })
}
