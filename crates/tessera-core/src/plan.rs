//! `tessera plan`: where every weight of a model goes under a placement,
//! why, what each device holds, what crosses between devices per token,
//! and predicted decode and prompt speeds — without computing anything.
//!
//! The model is mapped, not read (CPU devices hold their weights in the
//! mapping), and the decode step's graph is scheduled to count the
//! activation copies between devices.
//!
//! The speed model ([`Speed`] per device, measured by [`crate::probe`]):
//! - decode, per token: every device streams the bytes of its weights a
//!   token touches (all of them, except only `n_expert_used / n_expert` of
//!   each routed expert stack and one row of an untied embedding table) at
//!   its measured GEMV rate for each weight's type; plus each graph node's
//!   fixed cost (starting and joining its device's threads); the devices take turns (one step's segments run one after
//!   another); each cross-device copy adds a fixed cost plus its bytes at
//!   the slower side's sweep bandwidth;
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
    /// Bytes/s one token streams through a matrix, per weight type.
    pub gemv: Vec<(GgmlType, f64)>,
    /// Flop/s of a prompt batch, per weight type.
    pub gemm: Vec<(GgmlType, f64)>,
    /// Fixed seconds per graph node (thread start and join).
    pub node_secs: f64,
}

impl Speed {
    fn gemv_of(&self, t: GgmlType) -> f64 {
        self.gemv
            .iter()
            .find(|g| g.0 == t)
            .map_or(self.sweep, |g| g.1)
    }

    fn gemm_of(&self, t: GgmlType) -> Option<f64> {
        self.gemm.iter().find(|g| g.0 == t).map(|g| g.1)
    }

    /// The measured speeds of a CPU device with `threads` threads for
    /// `types` (see [`crate::probe`]).
    pub fn measure_cpu(threads: usize, types: &[GgmlType]) -> Speed {
        let pool = tessera_quant::pool::ThreadPool::new(threads.max(1));
        Speed {
            sweep: crate::probe::sweep_bandwidth(threads),
            gemv: types
                .iter()
                .filter_map(|&t| Some((t, crate::probe::gemv_bandwidth(&pool, t)?)))
                .collect(),
            gemm: types
                .iter()
                .filter_map(|&t| Some((t, crate::probe::gemm_flops(&pool, t)?)))
                .collect(),
            node_secs: crate::probe::dispatch_secs(&pool),
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
    /// Predicted prompt processing speed, tokens/s.
    pub prompt_tps: f64,
    /// Context the KV sizes are for.
    pub n_ctx: usize,
}

/// Fixed cost of one cross-device copy (a pool hand-over), seconds.
const COPY_COST_S: f64 = 20e-6;

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
        d.token_secs += bytes as f64 * share / d.speed.gemv_of(w.ggml_type);
        // Products: 2 flops per weight value a token meets.
        let is_product = !matches!(role, Role::Norm | Role::Other)
            && (role != Role::Embedding || tied)
            && w.shape[1] > 1;
        if is_product {
            let values = (w.shape[0] * w.shape[1] * w.shape[2]) as f64 * share;
            let flops = d.speed.gemm_of(w.ggml_type).unwrap_or(d.speed.sweep / 2.0);
            d.prompt_secs += 2.0 * values / flops;
        }
    }
    // KV: per layer on its attention's device.
    let kv_row = 2 * (hp.n_embd_k_gqa() + hp.n_embd_v_gqa()) as u64;
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
    // Every node pays its device's fixed cost.
    let node_secs: f64 = sched
        .node_device
        .iter()
        .map(|&d| devices[d].speed.node_secs)
        .sum();
    let min_bw = devices
        .iter()
        .map(|d| d.speed.sweep)
        .fold(f64::INFINITY, f64::min);
    let secs: f64 = devices.iter().map(|d| d.token_secs).sum::<f64>()
        + copies as f64 * COPY_COST_S
        + copy_bytes as f64 / min_bw
        + node_secs;
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
        prompt_tps: 1.0 / prompt_secs.max(1e-12),
        n_ctx,
    })
}
