//! `tessera plan`: where every weight of a model goes under a placement,
//! why, what each device holds, what crosses between devices per token,
//! and a predicted decode speed — without computing anything.
//!
//! The model is mapped, not read (CPU devices hold their weights in the
//! mapping), and the decode step's graph is scheduled to count the
//! activation copies between devices.
//!
//! The speed model, per decoded token: every device reads the bytes of its
//! weights a token touches (all of them, except only `n_expert_used /
//! n_expert` of each routed expert stack and one row of the embedding
//! table) at its measured bandwidth; the devices take turns (one step's
//! segments run one after another); each cross-device copy adds a fixed
//! cost plus its bytes at the slower side's bandwidth.

use std::collections::BTreeMap;
use std::sync::Arc;

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
    /// Read bandwidth used by the speed model, bytes/s.
    pub bandwidth: f64,
    /// Weight bytes it holds.
    pub weight_bytes: u64,
    /// KV cache bytes at the planned context.
    pub kv_bytes: u64,
    /// Bytes it reads per decoded token.
    pub token_bytes: f64,
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
    /// Context the KV sizes are for.
    pub n_ctx: usize,
}

/// Fixed cost of one cross-device copy (a pool hand-over), seconds.
const COPY_COST_S: f64 = 20e-6;
/// Fixed cost per graph node (dispatch, synchronisation), seconds.
const NODE_COST_S: f64 = 3e-6;

/// Plans `path` under `params` for a context of `n_ctx` tokens; device `i`
/// reads at `bandwidth(i, threads)` bytes/s.
pub fn plan(
    path: &std::path::Path,
    params: &ModelParams,
    n_ctx: usize,
    bandwidth: impl Fn(usize, usize) -> f64,
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
            bandwidth: bandwidth(i, threads[i]),
            weight_bytes: 0,
            kv_bytes: 0,
            token_bytes: 0.0,
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
        devices[*dev].weight_bytes += bytes;
        devices[*dev].token_bytes += match role {
            Role::Experts => bytes as f64 * expert_share,
            // One row per token, unless it is also the LM head.
            Role::Embedding if !tied => bytes as f64 / w.shape[1].max(1) as f64,
            _ => bytes as f64,
        };
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
    let n_nodes = sched.graph.nodes.len();
    let min_bw = devices
        .iter()
        .map(|d| d.bandwidth)
        .fold(f64::INFINITY, f64::min);
    let secs: f64 = devices
        .iter()
        .map(|d| d.token_bytes / d.bandwidth)
        .sum::<f64>()
        + copies as f64 * COPY_COST_S
        + copy_bytes as f64 / min_bw
        + n_nodes as f64 * NODE_COST_S;
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
            .map(|(r, d, c)| {
                (
                    format!("{}={}", r.pattern, r.device),
                    placement.devices[*d].clone(),
                    *c,
                )
            })
            .collect(),
        warnings: placement.warnings.clone(),
        fit_moves: placement.fit_moves.clone(),
        copies,
        copy_bytes,
        decode_tps: 1.0 / secs,
        n_ctx,
    })
}

/// Read bandwidth of this machine with `threads` threads, bytes/s: the best
/// of a few passes summing a 256 MiB buffer (larger than any cache here).
pub fn measure_bandwidth(threads: usize) -> f64 {
    let words: usize = 32 << 20; // 256 MiB of u64
    let buf: Arc<Vec<u64>> = Arc::new((0..words as u64).collect());
    let threads = threads.max(1);
    let mut best = 0f64;
    for _ in 0..3 {
        let t0 = std::time::Instant::now();
        let sum: u64 = std::thread::scope(|s| {
            let chunk = words.div_ceil(threads);
            let handles: Vec<_> = buf
                .chunks(chunk)
                .map(|c| s.spawn(move || c.iter().fold(0u64, |a, &x| a.wrapping_add(x))))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(0))
                .fold(0, u64::wrapping_add)
        });
        std::hint::black_box(sum);
        best = best.max((words * 8) as f64 / t0.elapsed().as_secs_f64());
    }
    best
}
