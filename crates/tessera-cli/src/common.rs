//! Flags shared by `run`, `chat`, `bench` and `perplexity`, spelled as
//! llama.cpp spells them so habits carry over (`-m`, `-t`, `-c`, `-b`,
//! `-ub`, `-ctk`, `--temp`, `-md` …), and the model loading they share.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use tessera_core::kv::parse_kv_type;
use tessera_core::placement::parse_cpu_devices;
use tessera_core::sample::SamplerConfig;
use tessera_core::speculative::SpecParams;
use tessera_core::{Model, ModelParams, Placement, SessionParams, TensorOverride};

use crate::models;

/// llama.cpp's multi-letter short flags, rewritten to their long forms
/// before clap sees them (clap's short flags are one letter).
const LLAMA_SHORT: &[(&str, &str)] = &[
    ("-ub", "--ubatch-size"),
    ("-ctk", "--cache-type-k"),
    ("-ctv", "--cache-type-v"),
    ("-ngl", "--n-gpu-layers"),
    ("-fa", "--flash-attn"),
    ("-ot", "--override-tensor"),
    ("-ncmoe", "--n-cpu-moe"),
    ("-cmoe", "--cpu-moe"),
    ("-sm", "--split-mode"),
    ("-ts", "--tensor-split"),
    ("-mg", "--main-device"),
    ("-fitt", "--fit-target"),
    ("-fit", "--fit"),
    ("-md", "--draft-model"),
    ("-otd", "--override-tensor-draft"),
    ("-td", "--threads-draft"),
];

/// `argv` with llama.cpp's multi-letter short flags made long.
pub fn rewrite_args(args: impl Iterator<Item = String>) -> Vec<String> {
    args.map(|a| {
        LLAMA_SHORT
            .iter()
            .find(|(short, _)| a == *short)
            .map(|(_, long)| long.to_string())
            .unwrap_or(a)
    })
    .collect()
}

/// Which model, on how many threads, with what context.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// GGUF file, a file name in the model cache, or a catalog id
    /// (`tessera models`), downloaded on first use; default: the catalog's
    /// default (smollm2:135m).
    #[arg(short = 'm', long = "model")]
    pub model: Option<String>,
    /// CPU threads (default: all cores).
    #[arg(short = 't', long = "threads", default_value_t = 0)]
    pub threads: usize,
    /// Context size in tokens (0: the model's training context, at most 4096).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
    pub ctx_size: usize,
    /// Logical batch: most tokens per evaluation call.
    #[arg(short = 'b', long = "batch-size", default_value_t = 2048)]
    pub batch_size: usize,
    /// Physical batch: tokens per graph run (`-ub`).
    #[arg(long = "ubatch-size", default_value_t = 512)]
    pub ubatch_size: usize,
    /// KV cache type for keys: f16 or q8_0 (`-ctk`).
    #[arg(long = "cache-type-k", default_value = "f16")]
    pub cache_type_k: String,
    /// KV cache type for values: f16 or q8_0 (`-ctv`).
    #[arg(long = "cache-type-v", default_value = "f16")]
    pub cache_type_v: String,
    /// Tensor placement rules, llama.cpp's `-ot`: `<regex>=<device>[,…]`,
    /// the regex searched in tensor names, first match wins; repeatable.
    #[arg(long = "override-tensor")]
    pub override_tensor: Vec<String>,
    /// Split the CPU into devices `cpu:0` … `cpu:N-1`: `N` (the threads
    /// shared out between them), `N:shared` (all on the same threads) or
    /// `numa` (one per NUMA node, threads pinned, memory bound).
    #[arg(long = "cpu-devices", default_value = "1")]
    pub cpu_devices: String,
    /// A placement file: TOML rules matching names, layers, roles, types,
    /// sizes and shapes (docs/PLACEMENT.md), tried after `-ot`.
    #[arg(long = "placement")]
    pub placement: Option<PathBuf>,

    /// Keep every routed expert on the CPU (`-cmoe`).
    #[arg(long = "cpu-moe")]
    pub cpu_moe: bool,
    /// Keep the routed experts of the first N layers on the CPU (`-ncmoe`).
    #[arg(long = "n-cpu-moe", default_value_t = 0)]
    pub n_cpu_moe: usize,
    /// Memory budgets, `<device>=<size>[,…]` (e.g. `cpu:0=512MiB`): weights
    /// move to the next device until each fits (its KV cache at `-c` included).
    #[arg(long = "device-memory")]
    pub device_memory: Option<String>,
    /// How to spread the weights no rule placed over the devices (`-sm`):
    /// none (all on the main device), layer (consecutive layers per
    /// device) or row (every layer matrix cut by rows). Default: layer
    /// when `-ts` is given, else none.
    #[arg(long = "split-mode")]
    pub split_mode: Option<String>,
    /// Share of each device in the split, e.g. `3,1` (`-ts`; default: equal).
    #[arg(long = "tensor-split")]
    pub tensor_split: Option<String>,
    /// Device index that holds what is not split (`-mg`).
    #[arg(long = "main-device", default_value_t = 0)]
    pub main_device: usize,
    /// Use every device and let tessera choose the split (LM-Kit's
    /// FavorDistributedInference).
    #[arg(long = "distribute")]
    pub distribute: bool,
    /// Fit the model to the memory budgets by moving weights and, if need
    /// be, shrinking the context (`-fit`): on or off.
    #[arg(long = "fit", default_value = "on")]
    pub fit: String,
    /// Memory kept free on every budgeted device and on the host (`-fitt`),
    /// e.g. `512MiB`.
    #[arg(long = "fit-target", default_value = "0")]
    pub fit_target: String,
    /// The smallest context the fitter may shrink to.
    #[arg(long = "fit-ctx-min", default_value_t = 512)]
    pub fit_ctx_min: usize,
}

impl ModelArgs {
    /// The model file.
    pub fn path(&self) -> Result<PathBuf> {
        models::resolve(self.model.as_deref())
    }

    /// Loads the model (with a spinner while it maps and checks the file).
    pub fn load(&self) -> Result<Model> {
        let path = self.path()?;
        let spinner = indicatif::ProgressBar::new_spinner();
        spinner.set_message(format!("loading {}", path.display()));
        spinner.enable_steady_tick(std::time::Duration::from_millis(120));
        let model = Model::load(
            &path,
            &ModelParams {
                n_threads: self.threads,
                placement: self.placement()?,
            },
        );
        spinner.finish_and_clear();
        let model = model.with_context(|| format!("cannot load {}", path.display()))?;
        for w in &model.placement().warnings {
            eprintln!("warning: {w}");
        }
        if let Some(c) = model.fit_ctx() {
            eprintln!(
                "note: the fitter reduced the context from {} to {c} tokens to fit the memory",
                self.ctx_size
            );
        }
        Ok(model)
    }

    /// The devices and rules of the placement flags.
    pub fn placement(&self) -> Result<Placement> {
        let (cpu_devices, cpu_layout) = parse_cpu_devices(&self.cpu_devices)?;
        let mut overrides = Vec::new();
        for ot in &self.override_tensor {
            overrides.extend(TensorOverride::parse_list(ot)?);
        }
        Ok(Placement {
            cpu_devices,
            cpu_layout,
            overrides,
            file_rules: match &self.placement {
                Some(path) => tessera_core::rules::load_placement_file(path)?,
                None => Vec::new(),
            },
            cpu_moe: self.cpu_moe,
            n_cpu_moe: self.n_cpu_moe,
            budgets: match &self.device_memory {
                Some(s) => tessera_core::fit::parse_budgets(s)?,
                None => Vec::new(),
            },
            fit_ctx: self.ctx_size,
            fit_ubatch: self.ubatch_size.min(self.batch_size),
            fit_ctx_floor: self.fit_ctx_min.min(self.ctx_size.max(1)),
            fit_target: tessera_core::fit::parse_size(&self.fit_target)?,
            no_fit: match self.fit.as_str() {
                "on" => false,
                "off" => true,
                other => bail!("--fit `{other}`: expected on or off"),
            },
            split_mode: self.split_mode.as_deref().map(str::parse).transpose()?,
            tensor_split: match &self.tensor_split {
                Some(s) => tessera_core::split::parse_tensor_split(s)?,
                None => Vec::new(),
            },
            main_device: self.main_device,
            distribute: self.distribute,
            declared: Vec::new(),
        })
    }

    /// Session settings.
    pub fn session(&self) -> Result<SessionParams> {
        if self.ubatch_size == 0 || self.batch_size == 0 {
            bail!("-b and -ub must be positive");
        }
        Ok(SessionParams {
            n_ctx: self.ctx_size,
            n_batch: self.batch_size,
            n_ubatch: self.ubatch_size,
            type_k: parse_kv_type(&self.cache_type_k)?,
            type_v: parse_kv_type(&self.cache_type_v)?,
        })
    }
}

/// A draft model for speculative decoding (`run`, `bench`, `serve`), with llama.cpp's
/// flag names (and their newer `--spec-draft-*` spellings as aliases).
#[derive(Args, Clone, Debug)]
pub struct DraftArgs {
    /// Draft model for speculative decoding (`-md`): a smaller model with
    /// the target's vocabulary, or a lower-bit quantization of the target.
    /// A path, a file in the model cache or a catalog id, as `-m`.
    #[arg(long = "draft-model", aliases = ["model-draft", "spec-draft-model"])]
    pub draft_model: Option<String>,
    /// Placement rules for the draft (`-otd`), as `-ot`: `<regex>=<device>`
    /// (e.g. `-otd ".*=cpu"` keeps the draft on the CPU); repeatable. The
    /// draft is placed on its own: the target's rules, split and budgets
    /// do not apply to it (the devices of `--cpu-devices` do).
    #[arg(
        long = "override-tensor-draft",
        aliases = ["spec-draft-override-tensor"]
    )]
    pub override_tensor_draft: Vec<String>,
    /// A placement file for the draft (TOML rules, as `--placement`).
    #[arg(long = "draft-placement")]
    pub draft_placement: Option<PathBuf>,
    /// Most draft tokens verified per target pass.
    #[arg(
        long = "draft-max",
        aliases = ["draft", "draft-n", "spec-draft-n-max"],
        default_value_t = SpecParams::default().n_max
    )]
    pub draft_max: usize,
    /// Fewest draft tokens worth a verification pass (a shorter draft is
    /// dropped and the target decodes one token).
    #[arg(
        long = "draft-min",
        aliases = ["draft-n-min", "spec-draft-n-min"],
        default_value_t = SpecParams::default().n_min
    )]
    pub draft_min: usize,
    /// Stop drafting when the draft's probability of its guess is below this.
    #[arg(
        long = "draft-p-min",
        aliases = ["spec-draft-p-min"],
        default_value_t = SpecParams::default().p_min
    )]
    pub draft_p_min: f32,
    /// CPU threads of the draft (`-td`; default: `-t`).
    #[arg(long = "threads-draft", aliases = ["spec-draft-threads"])]
    pub threads_draft: Option<usize>,
}

impl DraftArgs {
    /// How much to draft.
    pub fn spec(&self) -> Result<SpecParams> {
        if !(0.0..=1.0).contains(&self.draft_p_min) {
            bail!("--draft-p-min must be between 0 and 1");
        }
        Ok(SpecParams {
            n_max: self.draft_max,
            n_min: self.draft_min,
            p_min: self.draft_p_min,
        })
    }

    /// Loads the draft model, if one is given, with its own placement on
    /// the target's devices, and checks it can draft for `target`.
    pub fn load(&self, target_args: &ModelArgs, target: &Model) -> Result<Option<Model>> {
        let Some(name) = &self.draft_model else {
            return Ok(None);
        };
        let path = models::resolve(Some(name)).context("cannot load the draft model (-md)")?;
        let base = target_args.placement()?;
        let mut overrides = Vec::new();
        for ot in &self.override_tensor_draft {
            overrides.extend(TensorOverride::parse_list(ot)?);
        }
        let placement = Placement {
            cpu_devices: base.cpu_devices,
            cpu_layout: base.cpu_layout,
            overrides,
            file_rules: match &self.draft_placement {
                Some(path) => tessera_core::rules::load_placement_file(path)?,
                None => Vec::new(),
            },
            fit_ctx: base.fit_ctx,
            fit_ubatch: base.fit_ubatch,
            fit_ctx_floor: base.fit_ctx_floor,
            fit_target: base.fit_target,
            no_fit: base.no_fit,
            ..Placement::default()
        };
        let model = Model::load(
            &path,
            &ModelParams {
                n_threads: self.threads_draft.unwrap_or(target_args.threads),
                placement,
            },
        )
        .with_context(|| format!("cannot load the draft model {}", path.display()))?;
        for w in &model.placement().warnings {
            eprintln!("warning: draft: {w}");
        }
        tessera_core::speculative::check_draft(target, &model)
            .with_context(|| format!("{} cannot draft for this model", path.display()))?;
        Ok(Some(model))
    }
}

/// The sampler chain's settings.
#[derive(Args, Clone, Debug)]
pub struct SamplingArgs {
    /// Temperature (0: greedy).
    #[arg(long, default_value_t = 0.8)]
    pub temp: f32,
    /// Top-k (0: off).
    #[arg(long = "top-k", default_value_t = 40)]
    pub top_k: i32,
    /// Top-p / nucleus (1.0: off).
    #[arg(long = "top-p", default_value_t = 0.95)]
    pub top_p: f32,
    /// Min-p (0.0: off).
    #[arg(long = "min-p", default_value_t = 0.05)]
    pub min_p: f32,
    /// Locally typical sampling p (1.0: off).
    #[arg(long = "typical", default_value_t = 1.0)]
    pub typical: f32,
    /// Repetition penalty (1.0: off).
    #[arg(long = "repeat-penalty", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Tokens the penalties look back over (0: off, -1: whole context).
    #[arg(
        long = "repeat-last-n",
        default_value_t = 64,
        allow_negative_numbers = true
    )]
    pub repeat_last_n: i32,
    /// Presence penalty (0.0: off).
    #[arg(long = "presence-penalty", default_value_t = 0.0)]
    pub presence_penalty: f32,
    /// Frequency penalty (0.0: off).
    #[arg(long = "frequency-penalty", default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// Random seed (default: random).
    #[arg(short = 's', long)]
    pub seed: Option<u64>,
    /// Logit bias `TOKEN_ID(+|-)BIAS`, e.g. `15043+1` or `15043-inf` (repeatable).
    #[arg(short = 'l', long = "logit-bias")]
    pub logit_bias: Vec<String>,
}

impl SamplingArgs {
    /// The sampler configuration.
    pub fn config(&self) -> Result<SamplerConfig> {
        let logit_bias = self
            .logit_bias
            .iter()
            .map(|s| parse_logit_bias(s))
            .collect::<Result<Vec<_>>>()?;
        Ok(SamplerConfig {
            temp: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            typical_p: self.typical,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            logit_bias,
            seed: self.seed,
        })
    }
}

/// Parses llama.cpp's `--logit-bias` syntax: `ID+BIAS`, `ID-BIAS`, `ID-inf`.
pub fn parse_logit_bias(s: &str) -> Result<(u32, f32)> {
    let at = s
        .char_indices()
        .skip(1)
        .find(|&(_, c)| c == '+' || c == '-')
        .map(|(i, _)| i)
        .with_context(|| format!("logit bias `{s}`: expected TOKEN_ID+BIAS or TOKEN_ID-BIAS"))?;
    let id: u32 = s[..at]
        .trim()
        .parse()
        .with_context(|| format!("logit bias `{s}`: `{}` is not a token id", &s[..at]))?;
    let bias: f32 = s[at..]
        .trim()
        .parse()
        .with_context(|| format!("logit bias `{s}`: `{}` is not a number", &s[at..]))?;
    Ok((id, bias))
}
