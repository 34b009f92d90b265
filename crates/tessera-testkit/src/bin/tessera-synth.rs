//! `tessera-synth`: writes a tiny random-weight GGUF model of any supported
//! architecture (see `tessera_testkit::synth`).
//!
//! ```text
//! cargo run -p tessera-testkit --bin tessera-synth -- --arch qwen3moe --seed 7 \
//!     [--vocab builtin|smollm2|<path.gguf>] [--dtype f32|f16] [--set FIELD=VALUE ...] -o out.gguf
//! ```

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use tessera_gguf::GgufModel;
use tessera_testkit::env;
use tessera_testkit::synth::{self, Arch, SynthConfig, VocabSource, WeightType};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Dtype {
    F32,
    F16,
}

/// Write a tiny random-weight GGUF model that llama.cpp loads.
#[derive(Debug, Parser)]
#[command(name = "tessera-synth", version)]
struct Args {
    /// Architecture: llama, mixtral, qwen3, gemma3, qwen3moe, olmoe, qwen2moe,
    /// glm4moe, deepseek2, gpt-oss.
    #[arg(long)]
    arch: Arch,
    /// Seed of the weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Tokenizer: `builtin` (no download), `smollm2` (from the model cache)
    /// or the path of a GGUF whose `tokenizer.*` keys are copied.
    #[arg(long, default_value = "builtin")]
    vocab: String,
    /// Storage of the weight matrices (norms and routers stay F32).
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    dtype: Dtype,
    /// Output file [default: synth-{arch}-s{seed}-{dtype}.gguf].
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Number of layers.
    #[arg(long)]
    layers: Option<u64>,
    /// Embedding width.
    #[arg(long)]
    embd: Option<u64>,
    /// Query heads.
    #[arg(long)]
    heads: Option<u64>,
    /// Key/value heads.
    #[arg(long)]
    kv_heads: Option<u64>,
    /// Head size.
    #[arg(long)]
    head_dim: Option<u64>,
    /// Dense FFN width.
    #[arg(long)]
    ff: Option<u64>,
    /// Experts per MoE layer.
    #[arg(long)]
    experts: Option<u64>,
    /// Experts used per token.
    #[arg(long)]
    experts_used: Option<u64>,
    /// Width of one expert.
    #[arg(long)]
    ff_exp: Option<u64>,
    /// Training context length.
    #[arg(long)]
    ctx: Option<u64>,
    /// Any config field by its name in `SynthConfig`, e.g. `--set n_embd=256`
    /// (repeatable; applied after the other options). Fields: seed, n_layer,
    /// n_embd, n_head, n_head_kv, head_dim, n_rot, head_dim_v, kv_lora_rank,
    /// q_lora_rank, n_ff, n_expert, n_expert_used, n_ff_exp, exp_gate_up_scale,
    /// fused_gate_up, n_expert_shared,
    /// n_layer_dense_lead, gating (softmax|sigmoid|none), expert_weights_norm,
    /// expert_weights_scale, exp_probs_b, n_expert_groups, n_group_used,
    /// context_length, weight_type, vocab, tie_embeddings, rms_eps,
    /// rope_freq_base, rope_yarn_factor, rope_yarn_orig_ctx, rope_yarn_log_mul,
    /// sliding_window, swa_pattern.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    set: Vec<String>,
}

fn vocab_source(spec: &str) -> Result<VocabSource> {
    Ok(match spec {
        "builtin" => VocabSource::Builtin,
        "smollm2" => {
            let p = env::models_dir().join(env::SMOLLM2);
            if !p.is_file() {
                bail!("{} not found (run scripts/fetch-models.sh)", p.display());
            }
            VocabSource::Gguf(p)
        }
        path => VocabSource::Gguf(PathBuf::from(path)),
    })
}

fn main() -> Result<()> {
    let a = Args::parse();
    let mut cfg = SynthConfig::new(a.arch);
    cfg.seed = a.seed;
    cfg.vocab = vocab_source(&a.vocab)?;
    cfg.weight_type = match a.dtype {
        Dtype::F32 => WeightType::F32,
        Dtype::F16 => WeightType::F16,
    };
    let overrides = [
        (&mut cfg.n_layer, a.layers),
        (&mut cfg.n_embd, a.embd),
        (&mut cfg.n_head, a.heads),
        (&mut cfg.n_head_kv, a.kv_heads),
        (&mut cfg.head_dim, a.head_dim),
        (&mut cfg.n_ff, a.ff),
        (&mut cfg.n_expert, a.experts),
        (&mut cfg.n_expert_used, a.experts_used),
        (&mut cfg.n_ff_exp, a.ff_exp),
        (&mut cfg.context_length, a.ctx),
    ];
    for (field, value) in overrides {
        if let Some(v) = value {
            *field = v;
        }
    }
    for assignment in &a.set {
        cfg.set_assignment(assignment)?;
    }
    let out = a.output.unwrap_or_else(|| PathBuf::from(cfg.file_name()));
    synth::write(&cfg, &out).with_context(|| format!("writing {}", out.display()))?;
    let written = GgufModel::open(&out).context("re-opening the written model")?;
    println!(
        "{}: {} seed {} ({:?}), {} tensors, {} parameters, {} bytes",
        out.display(),
        cfg.arch,
        cfg.seed,
        cfg.weight_type,
        written.tensor_count(),
        written.parameter_count(),
        written.file_size()
    );
    Ok(())
}
