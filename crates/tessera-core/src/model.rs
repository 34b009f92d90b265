//! A loaded model: the GGUF file (mapped), its hyperparameters, tokenizer,
//! the backends it runs on and its weights placed on them.
//!
//! Placement: the devices of [`Placement::device_names`] (the CPU devices,
//! then those of the registered backend providers), each weight on the
//! device its rules give ([`crate::placement`]), each layer's KV cache with
//! its attention's weights.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use tessera_gguf::GgufModel;
use tessera_tokenizer::Tokenizer;

use crate::arch;
use crate::backend::cpu::CpuBackend;
use crate::backend::Backend;
use crate::error::{CoreError, Result};
use crate::fit::{self, FitItem};
use crate::hparams::HParams;
use crate::kv::KvType;
use crate::placement::{CpuLayout, Placement, Reason, Resolved};
use crate::rules::TensorFacts;
use crate::sched;
use crate::session::Session;
use crate::weights::Weights;

/// The weights that tell where a layer's attention (and KV cache) is, in
/// order of preference.
const ATTN_BASES: [&str; 5] = [
    "attn_q",
    "attn_qkv",
    "attn_q_a",
    "attn_kv_a_mqa",
    "attn_output",
];

/// The device of layer `il`'s attention: that of its first attention
/// weight found (the query projection, or MLA's), else device 0.
fn attention_device(weights: &Weights, il: usize) -> usize {
    ATTN_BASES
        .iter()
        .find_map(|base| weights.get(&format!("blk.{il}.{base}.weight")))
        .map_or(0, |(_, w)| w.device)
}

/// The CPU devices named `names`, laid out as `layout` says over
/// `n_threads` threads, and a warning for each device whose threads could
/// not be pinned.
pub fn cpu_backends(
    names: &[String],
    layout: CpuLayout,
    n_threads: usize,
) -> (Vec<Arc<dyn Backend>>, Vec<String>) {
    let mut warnings = Vec::new();
    let n_dev = names.len();
    // The threads shared out, the first devices taking the rest.
    let share = |i: usize| (n_threads / n_dev + usize::from(i < n_threads % n_dev)).max(1);
    let nodes = match layout {
        CpuLayout::Numa => crate::numa::nodes(),
        _ => Vec::new(),
    };
    let shared = (layout == CpuLayout::Shared)
        .then(|| Arc::new(tessera_quant::pool::ThreadPool::new(n_threads.max(1))));
    let backends = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let b = match (layout, nodes.get(i)) {
                (CpuLayout::Shared, _) => match &shared {
                    Some(pool) => CpuBackend::with_pool(name, pool.clone()),
                    None => CpuBackend::new(name, n_threads),
                },
                // A node's threads: its share, at most its cores.
                (CpuLayout::Numa, Some(node)) => CpuBackend::pinned(
                    name,
                    share(i).min(node.cpus.len().max(1)),
                    &node.cpus,
                    Some(node.id),
                ),
                _ => CpuBackend::new(name, share(i)),
            };
            if let Some(why) = b.pool().pin_error() {
                warnings.push(format!("{name}: threads not pinned ({why})"));
            }
            Arc::new(b) as Arc<dyn Backend>
        })
        .collect();
    (backends, warnings)
}

/// Backends, one per device, and warnings about them.
pub type BackendsAndWarnings = (Vec<Arc<dyn Backend>>, Vec<String>);

/// The devices named `names`: the CPU ones as [`cpu_backends`] makes them
/// (the threads shared out over them), the others opened by their
/// registered provider ([`crate::backend::register_provider`]).
pub fn create_backends(
    names: &[String],
    layout: CpuLayout,
    n_threads: usize,
) -> Result<BackendsAndWarnings> {
    let is_cpu = |n: &str| n == "cpu" || n.starts_with("cpu:");
    let cpu_names: Vec<String> = names.iter().filter(|n| is_cpu(n)).cloned().collect();
    let (cpus, warnings) = cpu_backends(&cpu_names, layout, n_threads);
    let mut cpus = cpus.into_iter();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        if is_cpu(name) {
            out.extend(cpus.next());
            continue;
        }
        let kind = name.split(':').next().unwrap_or("");
        let p = crate::backend::provider_of(kind).ok_or_else(|| {
            CoreError::Config(format!("device `{name}` is not available in this build"))
        })?;
        out.push(p.open(name)?);
    }
    Ok((out, warnings))
}

/// Binds the pages of each weight to the NUMA node of its device (device
/// `i` is node `nodes()[i]`); the first refusal, as a warning.
fn bind_to_nodes(weights: &Weights) -> Option<String> {
    let nodes = crate::numa::nodes();
    let mut refused = None;
    for w in weights.as_slice().iter().filter(|w| w.parts.is_empty()) {
        let (Some(node), Some(bytes)) = (nodes.get(w.device), w.host_bytes()) else {
            continue;
        };
        if let Err(e) = crate::numa::bind_memory(bytes.as_ptr(), bytes.len(), node.id) {
            refused.get_or_insert(format!(
                "NUMA: weights stay where the OS put them (binding `{}` to node {}: {e})",
                w.name, node.id
            ));
        }
    }
    refused
}

/// Runs the fitter over `placed` (row-split matrices counted as their
/// parts, `rows`) against the `--device-memory` budgets less the
/// `--fit-target` margin and the compute buffers `reserve` (per device),
/// and, with no budgets, checks that the KV caches
/// fit the host's available memory; records the moves and returns the
/// context that fits (`None`: the one asked for).
fn fit_placement(
    gguf: &GgufModel,
    hparams: &HParams,
    placement: &Placement,
    placed: &mut [(usize, Reason)],
    rows: &HashMap<String, Vec<(usize, usize, usize)>>,
    resolved: &mut Resolved,
    reserve: &[u64],
) -> Result<Option<usize>> {
    let asked = fit_ctx_asked(placement);
    let ctx = fit::FitCtx {
        ctx: asked,
        floor: match placement.fit_ctx_floor {
            0 => 512,
            f => f,
        }
        .clamp(1, asked),
        // An F16 cache: 2 bytes per key and value element.
        kv_per_token: hparams.kv_bytes_f16(),
        enabled: !placement.no_fit,
    };
    let margin = placement.fit_target;
    let budgets: Vec<Option<u64>> = placement
        .budget_per_device()?
        .into_iter()
        .enumerate()
        .map(|(i, b)| b.map(|b| b.saturating_sub(margin + reserve.get(i).copied().unwrap_or(0))))
        .collect();
    if budgets.iter().all(Option::is_none) {
        // No budgets: the weights stay mapped; the KV caches, all in host
        // memory, must fit what the host has available.
        let available = crate::backend::cpu::CpuBackend::new("cpu", 1)
            .info()
            .free_memory;
        if available == 0 {
            return Ok(None);
        }
        let host = ["host memory".to_string()];
        let mut none: [(usize, Reason); 0] = [];
        let f = fit::fit(
            &[],
            &mut none,
            &[Some(available.saturating_sub(margin))],
            &host,
            ctx,
            |_, _| 0,
            hparams.n_layer,
        )?;
        resolved.fit_moves.extend(f.moves);
        return Ok((f.ctx < asked).then_some(f.ctx));
    }
    // A row-split matrix counts as its parts, each on its device.
    let mut items: Vec<FitItem> = Vec::new();
    let mut fit_placed: Vec<(usize, Reason)> = Vec::new();
    let mut whole_at: Vec<Option<usize>> = Vec::new();
    for (t, p) in gguf.tensors().zip(placed.iter()) {
        let name = t.info.name.as_str();
        let item = |bytes| FitItem {
            name,
            bytes,
            layer: fit::layer_of(name),
        };
        match rows.get(name) {
            Some(parts) => {
                let rows_total = parts.last().map_or(1, |p| p.2).max(1) as u64;
                for &(dev, r0, r1) in parts {
                    items.push(item(t.info.n_bytes * (r1 - r0) as u64 / rows_total));
                    fit_placed.push((dev, Reason::Rows));
                    whole_at.push(None);
                }
            }
            None => {
                whole_at.push(Some(fit_placed.len()));
                items.push(item(t.info.n_bytes));
                fit_placed.push(p.clone());
            }
        }
    }
    let index: HashMap<&str, usize> = items
        .iter()
        .enumerate()
        .map(|(i, it)| (it.name, i))
        .collect();
    let attn = |p: &[(usize, Reason)], il: usize| {
        ATTN_BASES
            .iter()
            .find_map(|b| index.get(format!("blk.{il}.{b}.weight").as_str()))
            .map_or(placement.main_device, |&i| p[i].0)
    };
    let f = fit::fit(
        &items,
        &mut fit_placed,
        &budgets,
        &resolved.devices,
        ctx,
        attn,
        hparams.n_layer,
    )?;
    resolved.fit_moves = f.moves;
    for (p, at) in placed.iter_mut().zip(whole_at) {
        if let Some(i) = at {
            *p = fit_placed[i].clone();
        }
    }
    Ok((f.ctx < asked).then_some(f.ctx))
}

/// The context the fitter sizes KV caches for (0: 4096).
fn fit_ctx_asked(p: &Placement) -> usize {
    match p.fit_ctx {
        0 => 4096,
        c => c,
    }
}

/// The micro-batch the fitter sizes compute buffers for (0: 512).
fn fit_ubatch(p: &Placement) -> usize {
    match p.fit_ubatch {
        0 => 512,
        n => n,
    }
}

/// How to load a model.
#[derive(Clone, Debug, Default)]
pub struct ModelParams {
    /// CPU threads (0: all available cores), shared out over the CPU
    /// devices.
    pub n_threads: usize,
    /// Devices and rules.
    pub placement: Placement,
}

/// How to create a session.
#[derive(Clone, Debug)]
pub struct SessionParams {
    /// Context size in tokens (0: the model's training context, capped at 4096).
    pub n_ctx: usize,
    /// Largest number of tokens one `eval` call takes (llama.cpp's `-b`).
    pub n_batch: usize,
    /// Tokens per graph run (llama.cpp's `-ub`).
    pub n_ubatch: usize,
    /// Key cache type.
    pub type_k: KvType,
    /// Value cache type.
    pub type_v: KvType,
}

impl Default for SessionParams {
    fn default() -> Self {
        SessionParams {
            n_ctx: 4096,
            n_batch: 2048,
            n_ubatch: 512,
            type_k: KvType::F16,
            type_v: KvType::F16,
        }
    }
}

/// A model ready to run.
pub struct Model {
    gguf: Arc<GgufModel>,
    hparams: HParams,
    tokenizer: Tokenizer,
    backends: Vec<Arc<dyn Backend>>,
    weights: Weights,
    layer_devices: Vec<usize>,
    placement: Resolved,
    reasons: HashMap<String, Reason>,
    fit_ctx: Option<usize>,
}

impl Model {
    /// Opens `path` and places every tensor on the CPU.
    pub fn load(path: impl AsRef<Path>, params: &ModelParams) -> Result<Model> {
        let path = path.as_ref();
        let gguf = GgufModel::open(path)?;
        Self::from_gguf(Arc::new(gguf), params)
    }

    /// A model from an opened GGUF.
    pub fn from_gguf(gguf: Arc<GgufModel>, params: &ModelParams) -> Result<Model> {
        let n_dev = params.placement.device_names().len();
        let model = Self::placed(gguf.clone(), params, &vec![0; n_dev])?;
        let budgets = params.placement.budget_per_device()?;
        if budgets.iter().all(Option::is_none) {
            return Ok(model);
        }
        // The compute buffers of a prompt step, which the fitter could not
        // know before the graph existed: if a budgeted device is over with
        // them, fit again with them reserved.
        let ubatch = fit_ubatch(&params.placement);
        let arena = model.compute_bytes(ubatch)?;
        if model.over_budget(params, &budgets, &arena) {
            let model = Self::placed(gguf, params, &arena)?;
            let arena = model.compute_bytes(ubatch)?;
            if model.over_budget(params, &budgets, &arena) {
                return Err(CoreError::Config(format!(
                    "the model does not fit the device memory budgets with its compute buffers \
                     ({} bytes for a step of {} tokens)",
                    arena
                        .iter()
                        .map(|b| b.to_string())
                        .collect::<Vec<_>>()
                        .join(" + "),
                    ubatch
                )));
            }
            return Ok(model);
        }
        Ok(model)
    }

    /// Activation bytes each device needs for a prompt step of `n_tokens`
    /// tokens (one output row, as in generation).
    fn compute_bytes(&self, n_tokens: usize) -> Result<Vec<u64>> {
        let sched = self.schedule(n_tokens, 1)?;
        Ok(sched.plan.arena_bytes.iter().map(|&b| b as u64).collect())
    }

    /// Whether a budgeted device holds more than its budget less the
    /// margin: weights (row-split matrices as their parts), the KV caches
    /// at the fitted context, and `arena`.
    fn over_budget(&self, params: &ModelParams, budgets: &[Option<u64>], arena: &[u64]) -> bool {
        let mut need = arena.to_vec();
        need.resize(budgets.len(), 0);
        for w in self
            .weights
            .as_slice()
            .iter()
            .filter(|w| w.parts.is_empty())
        {
            need[w.device] += w.host_bytes().map_or(0, |b| b.len() as u64);
        }
        let ctx = self.fit_ctx.unwrap_or(fit_ctx_asked(&params.placement)) as u64;
        let kv = self.hparams.kv_bytes_f16() * ctx;
        for &d in &self.layer_devices {
            need[d] += kv;
        }
        let margin = params.placement.fit_target;
        budgets
            .iter()
            .zip(&need)
            .any(|(b, &n)| b.is_some_and(|b| n > b.saturating_sub(margin)))
    }

    /// The model placed with `reserve` bytes per device kept for compute.
    fn placed(gguf: Arc<GgufModel>, params: &ModelParams, reserve: &[u64]) -> Result<Model> {
        let arch_name = gguf.metadata().architecture()?.to_string();
        arch::check_supported(&arch_name)?;
        let hparams = HParams::from_metadata(gguf.metadata())?;
        let tokenizer = Tokenizer::from_metadata(gguf.metadata())?;
        let n_threads = match params.n_threads {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n => n,
        };
        let owned: Vec<String> = gguf.tensors().map(|t| t.info.name.clone()).collect();
        let names: Vec<&str> = owned.iter().map(String::as_str).collect();
        let facts: Vec<TensorFacts> = gguf
            .tensors()
            .map(|t| TensorFacts::new(&t.info.name, t.info.ggml_type, t.info.n_bytes, &t.info.dims))
            .collect();
        let (mut placed, mut resolved) = params.placement.resolve(&facts, hparams.n_layer)?;
        // Row split: the matrices no rule placed, cut over the devices.
        let mut rows: HashMap<String, Vec<(usize, usize, usize)>> = HashMap::new();
        for (t, p) in gguf.tensors().zip(placed.iter_mut()) {
            if p.1 != Reason::Default {
                continue;
            }
            let d = &t.info.dims;
            let dim = |i: usize| d.get(i).copied().unwrap_or(1) as usize;
            let shape = [dim(2), dim(1), dim(0)];
            if let Some(parts) = params.placement.row_parts(&t.info.name, shape)? {
                p.1 = Reason::Rows;
                rows.insert(t.info.name.clone(), parts);
            }
        }
        let fit_ctx = fit_placement(
            &gguf,
            &hparams,
            &params.placement,
            &mut placed,
            &rows,
            &mut resolved,
            reserve,
        )?;
        let reasons: HashMap<String, Reason> = names
            .iter()
            .zip(&placed)
            .map(|(&n, p)| (n.to_string(), p.1.clone()))
            .collect();
        let device_of: HashMap<&str, usize> =
            names.iter().zip(&placed).map(|(&n, p)| (n, p.0)).collect();
        let (backends, pin_warnings) = if params.placement.declared.is_empty() {
            create_backends(&resolved.devices, params.placement.cpu_layout, n_threads)?
        } else {
            // Devices declared for planning are planned, not run: CPU
            // stand-ins compute them.
            cpu_backends(&resolved.devices, params.placement.cpu_layout, n_threads)
        };
        resolved.warnings.extend(pin_warnings);
        let weights = Weights::load(
            &gguf,
            &backends,
            |name| device_of.get(name).copied().unwrap_or(0),
            |name| rows.get(name).cloned(),
        )?;
        if params.placement.cpu_layout == CpuLayout::Numa {
            if let Some(why) = bind_to_nodes(&weights) {
                resolved.warnings.push(why);
            }
        }
        let mut reasons = reasons;
        for w in weights.as_slice() {
            for &i in &w.parts {
                reasons.insert(weights.as_slice()[i].name.clone(), Reason::Rows);
            }
        }
        let embd = weights
            .get("token_embd.weight")
            .ok_or_else(|| CoreError::Tensor {
                name: "token_embd.weight".into(),
                reason: "missing from the model".into(),
            })?;
        if embd.1.shape[1] != hparams.n_vocab || embd.1.shape[2] != hparams.n_embd {
            return Err(CoreError::Tensor {
                name: "token_embd.weight".into(),
                reason: format!(
                    "shape {:?} does not match n_vocab {} × n_embd {}",
                    &embd.1.shape[1..],
                    hparams.n_vocab,
                    hparams.n_embd
                ),
            });
        }
        let layer_devices = (0..hparams.n_layer)
            .map(|il| attention_device(&weights, il))
            .collect();
        let model = Model {
            fit_ctx,
            layer_devices,
            placement: resolved,
            reasons,
            gguf,
            hparams,
            tokenizer,
            backends,
            weights,
        };
        // Build and schedule the decode graph once: a missing tensor, a bad
        // shape or a type without a kernel fails here, at load.
        model.schedule(1, 1)?;
        Ok(model)
    }

    /// Hyperparameters.
    pub fn hparams(&self) -> &HParams {
        &self.hparams
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The GGUF file.
    pub fn gguf(&self) -> &GgufModel {
        &self.gguf
    }

    /// The backends (devices), device 0 first.
    pub fn backends(&self) -> &[Arc<dyn Backend>] {
        &self.backends
    }

    /// The weights.
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// The devices, the rules with their match counts, and warnings.
    pub fn placement(&self) -> &Resolved {
        &self.placement
    }

    /// Why weight `name` is on its device (`Default` for unknown names).
    pub fn reason_of(&self, name: &str) -> Reason {
        self.reasons.get(name).cloned().unwrap_or(Reason::Default)
    }

    /// The largest context the fitter found room for, when it had to
    /// reduce the one asked for; sessions are capped to it.
    pub fn fit_ctx(&self) -> Option<usize> {
        self.fit_ctx
    }

    /// Device of each layer's attention (and KV cache).
    pub fn layer_devices(&self) -> &[usize] {
        &self.layer_devices
    }

    /// The scheduled graph of a step of `n_tokens` tokens and `n_out` outputs.
    pub fn schedule(&self, n_tokens: usize, n_out: usize) -> Result<sched::Schedule> {
        let g = arch::build_graph(&self.hparams, &self.weights, n_tokens, n_out)?;
        sched::schedule(g, &self.weights, &self.layer_devices, &self.backends)
    }

    /// A new conversation state (KV cache and buffers).
    pub fn session(&self, params: &SessionParams) -> Result<Session<'_>> {
        Session::new(self, params)
    }
}
