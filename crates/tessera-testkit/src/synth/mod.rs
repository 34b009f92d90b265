//! Synthetic models: tiny random-weight GGUF files of every architecture
//! tessera supports, seeded, byte-for-byte reproducible, and loadable by
//! llama.cpp, so unit tests run on them in milliseconds and golden outputs
//! for them come from llama.cpp.
//!
//! ```no_run
//! use tessera_testkit::synth::{self, Arch, SynthConfig, WeightType};
//!
//! let mut cfg = SynthConfig::new(Arch::Qwen3Moe);
//! cfg.seed = 7;
//! cfg.weight_type = WeightType::F16;
//! synth::write(&cfg, "qwen3moe-7.gguf")?;
//! # Ok::<(), synth::SynthError>(())
//! ```
//!
//! - [`arch`]: one data row per architecture (which blocks, which keys).
//! - [`tensors`]: the tensor list built from shared blocks, with shapes.
//! - [`vocab`]: the built-in byte-level BPE vocabulary, or one copied from a GGUF.
//! - [`fill`]: the seeded generator and F16 encoding.
//! - [`fields`]: config fields by name (`set("n_embd", "256")`).
//!
//! The same [`SynthConfig`] always gives the same bytes: values come from a
//! hand-written SplitMix64 stream per tensor (see [`fill`]), metadata and
//! tensors are written in a fixed order.
//!
//! To take a greedy continuation from llama.cpp (the reference build):
//!
//! ```text
//! llama-completion -m m.gguf -p "Hello world" -n 8 -no-cnv --temp 0 -s 1 \
//!     --ignore-eos --prompt-cache s.bin --prompt-cache-all </dev/null
//! ```
//!
//! Read the tokens from the session file `s.bin` (u32 magic `ggsn`, u32
//! version, u32 count, then the i32 token ids: prompt, then generated), not
//! from stdout: llama.cpp's logger is asynchronous and not flushed at exit,
//! and with a model this fast the printed text is often cut off or empty.

pub mod arch;
pub mod fields;
pub mod fill;
pub mod tensors;
pub mod vocab;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tessera_gguf::{GgmlType, GgufError, GgufWriter, Metadata, Value};

pub use arch::{Arch, ArchSpec};
pub use tensors::{tensor_plan, TensorSpec};

use arch::{ExpertWidthKey, Ffn, OutputHead, QkNorm};

/// Largest model the generator agrees to build (it holds it in memory).
pub const MAX_MODEL_BYTES: u64 = 1 << 30;

/// Why a synthetic model could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// The configuration is not a model llama.cpp would load.
    #[error("invalid synthetic model config: {0}")]
    Config(String),
    /// The tokenizer source could not be read.
    #[error("cannot take the tokenizer from {}: {reason}", path.display())]
    Vocab {
        /// The GGUF the tokenizer was to be copied from.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Writing the GGUF failed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A file-system operation around the GGUF failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path operated on.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Storage type of the weight matrices (norms and routers stay F32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightType {
    /// 32-bit float (`general.file_type` 0).
    F32,
    /// IEEE half (`general.file_type` 1).
    F16,
}

impl WeightType {
    /// The GGML type of a matrix.
    pub fn ggml_type(self) -> GgmlType {
        match self {
            WeightType::F32 => GgmlType::F32,
            WeightType::F16 => GgmlType::F16,
        }
    }

    /// `general.file_type` (`enum llama_ftype`: ALL_F32 = 0, MOSTLY_F16 = 1).
    pub fn file_type(self) -> u32 {
        match self {
            WeightType::F32 => 0,
            WeightType::F16 => 1,
        }
    }
}

/// Where the tokenizer comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VocabSource {
    /// The built-in byte-level BPE vocabulary ([`vocab`]); needs no file.
    Builtin,
    /// Every `tokenizer.*` key of this GGUF (e.g. the cached SmolLM2).
    Gguf(PathBuf),
}

impl VocabSource {
    /// SmolLM2's vocabulary from the model cache, or `None` (after
    /// [`crate::env::missing`]: a skip, or a panic in strict mode).
    pub fn smollm2() -> Option<VocabSource> {
        crate::env::real_model(crate::env::SMOLLM2).map(VocabSource::Gguf)
    }

    /// The `tokenizer.*` metadata of this source.
    pub fn metadata(&self) -> Result<Metadata, SynthError> {
        match self {
            VocabSource::Builtin => Ok(vocab::builtin_metadata()),
            VocabSource::Gguf(path) => vocab::metadata_from_gguf(path),
        }
    }
}

/// Everything that determines a synthetic model.
///
/// [`SynthConfig::new`] gives a tiny model (2 layers, `n_embd` 64, 4 heads)
/// with the architecture's defaults; change fields as needed. The expert
/// fields are ignored by dense architectures.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthConfig {
    /// The architecture.
    pub arch: Arch,
    /// Seed of every weight value.
    pub seed: u64,
    /// Number of layers (`block_count`).
    pub n_layer: u64,
    /// Width of the residual stream (`embedding_length`).
    pub n_embd: u64,
    /// Query heads (`attention.head_count`).
    pub n_head: u64,
    /// Key/value heads (`attention.head_count_kv`); divides `n_head`.
    pub n_head_kv: u64,
    /// Size of one head (`attention.key_length` = `value_length` =
    /// `rope.dimension_count`); even.
    pub head_dim: u64,
    /// Width of a dense FFN (`feed_forward_length`).
    pub n_ff: u64,
    /// Experts per MoE layer (`expert_count`).
    pub n_expert: u64,
    /// Experts used per token (`expert_used_count`).
    pub n_expert_used: u64,
    /// Width of one expert (`expert_feed_forward_length` for Qwen3 MoE,
    /// `feed_forward_length` for Mixtral and OLMoE).
    pub n_ff_exp: u64,
    /// Training context length (`context_length`).
    pub context_length: u64,
    /// Storage of the weight matrices.
    pub weight_type: WeightType,
    /// The tokenizer; the vocabulary size follows from it.
    pub vocab: VocabSource,
    /// Omit `output.weight` so the head reuses `token_embd` (ignored by
    /// architectures that require an output head, i.e. OLMoE).
    pub tie_embeddings: bool,
    /// `attention.layer_norm_rms_epsilon`.
    pub rms_eps: f32,
    /// `rope.freq_base`.
    pub rope_freq_base: f32,
    /// `attention.sliding_window` (Gemma 3 only).
    pub sliding_window: u64,
    /// `attention.sliding_window_pattern` (Gemma 3 only): every n-th layer
    /// attends globally, the others use the window. `None` leaves the key
    /// out (llama.cpp then uses 6, which with 2 layers makes both local).
    pub swa_pattern: Option<u32>,
}

impl SynthConfig {
    /// A tiny model of `arch` with seed 0, F32 weights and the built-in vocabulary.
    pub fn new(arch: Arch) -> Self {
        let spec = arch.spec();
        SynthConfig {
            arch,
            seed: 0,
            n_layer: 2,
            n_embd: 64,
            n_head: 4,
            n_head_kv: spec.n_head_kv,
            head_dim: spec.head_dim,
            n_ff: 128,
            n_expert: 4,
            n_expert_used: 2,
            n_ff_exp: 32,
            context_length: 256,
            weight_type: WeightType::F32,
            vocab: VocabSource::Builtin,
            tie_embeddings: matches!(spec.output, OutputHead::Optional { tied: true }),
            rms_eps: spec.rms_eps,
            rope_freq_base: spec.rope_freq_base,
            sliding_window: 16,
            swa_pattern: Some(2),
        }
    }

    /// A conventional file name: `synth-{arch}-s{seed}-{f32|f16}.gguf`.
    pub fn file_name(&self) -> String {
        let t = match self.weight_type {
            WeightType::F32 => "f32",
            WeightType::F16 => "f16",
        };
        format!("synth-{}-s{}-{t}.gguf", self.arch, self.seed)
    }

    /// Checks that llama.cpp would accept the model, for `n_vocab` tokens.
    pub fn validate(&self, n_vocab: u64) -> Result<(), SynthError> {
        let bad = |msg: String| Err(SynthError::Config(msg));
        let spec = self.arch.spec();
        let moe = spec.ffn == Ffn::Moe;
        let mut sizes = vec![
            ("n_layer", self.n_layer),
            ("n_embd", self.n_embd),
            ("n_head", self.n_head),
            ("n_head_kv", self.n_head_kv),
            ("head_dim", self.head_dim),
            ("context_length", self.context_length),
            ("n_vocab", n_vocab),
        ];
        if moe {
            sizes.extend([
                ("n_expert", self.n_expert),
                ("n_expert_used", self.n_expert_used),
                ("n_ff_exp", self.n_ff_exp),
            ]);
        }
        if !moe || spec.expert_width_key == ExpertWidthKey::ExpertFeedForwardLength {
            sizes.push(("n_ff", self.n_ff));
        }
        if spec.sliding_window {
            sizes.push(("sliding_window", self.sliding_window));
        }
        for (name, v) in sizes {
            if v == 0 || v > u64::from(u32::MAX) {
                return bad(format!("{name} is {v}, must be 1 to {}", u32::MAX));
            }
        }
        // LLAMA_MAX_LAYERS and LLAMA_MAX_EXPERTS of llama-hparams.h (asserted, not reported).
        if self.n_layer > 512 {
            return bad(format!("n_layer {} exceeds llama.cpp's 512", self.n_layer));
        }
        if moe && self.n_expert > 1024 {
            return bad(format!(
                "n_expert {} exceeds llama.cpp's 1024",
                self.n_expert
            ));
        }
        if !self.n_head.is_multiple_of(self.n_head_kv) {
            return bad(format!(
                "n_head {} is not a multiple of n_head_kv {}",
                self.n_head, self.n_head_kv
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad(format!(
                "head_dim {} is odd; RoPE rotates pairs",
                self.head_dim
            ));
        }
        if moe && self.n_expert_used > self.n_expert {
            return bad(format!(
                "n_expert_used {} exceeds n_expert {}",
                self.n_expert_used, self.n_expert
            ));
        }
        if spec.qk_norm == QkNorm::Full
            && (self.n_head_kv != self.n_head || self.n_head * self.head_dim != self.n_embd)
        {
            return bad(format!(
                "{} needs n_head_kv = n_head and n_head·head_dim = n_embd (its q/k norms are [n_embd]); \
                 got n_head {}, n_head_kv {}, head_dim {}, n_embd {}",
                self.arch, self.n_head, self.n_head_kv, self.head_dim, self.n_embd
            ));
        }
        let plan = tensor_plan(self, n_vocab);
        let bytes: u64 = plan
            .iter()
            .map(|t| t.n_elements().saturating_mul(4)) // F32 upper bound
            .fold(0, u64::saturating_add);
        if bytes > MAX_MODEL_BYTES {
            return bad(format!(
                "the model would take {bytes} bytes, more than {MAX_MODEL_BYTES}"
            ));
        }
        Ok(())
    }
}

/// The hyperparameter keys of `cfg` (without the `{arch}.` prefix), in file order.
fn hparams(cfg: &SynthConfig, n_vocab: u64) -> Vec<(&'static str, Value)> {
    let spec = cfg.arch.spec();
    let u = |v: u64| Value::U32(v as u32); // validated to fit
    let moe = spec.ffn == Ffn::Moe;
    let ff_len = match (moe, spec.expert_width_key) {
        (true, ExpertWidthKey::FeedForwardLength) => cfg.n_ff_exp,
        _ => cfg.n_ff,
    };
    let mut kv = vec![
        ("vocab_size", u(n_vocab)),
        ("context_length", u(cfg.context_length)),
        ("embedding_length", u(cfg.n_embd)),
        ("block_count", u(cfg.n_layer)),
        ("feed_forward_length", u(ff_len)),
        ("attention.head_count", u(cfg.n_head)),
        ("attention.head_count_kv", u(cfg.n_head_kv)),
        ("attention.key_length", u(cfg.head_dim)),
        ("attention.value_length", u(cfg.head_dim)),
        ("attention.layer_norm_rms_epsilon", Value::F32(cfg.rms_eps)),
        ("rope.dimension_count", u(cfg.head_dim)),
        ("rope.freq_base", Value::F32(cfg.rope_freq_base)),
    ];
    if moe {
        kv.push(("expert_count", u(cfg.n_expert)));
        kv.push(("expert_used_count", u(cfg.n_expert_used)));
        if spec.expert_width_key == ExpertWidthKey::ExpertFeedForwardLength {
            kv.push(("expert_feed_forward_length", u(cfg.n_ff_exp)));
        }
    }
    if spec.sliding_window {
        kv.push(("attention.sliding_window", u(cfg.sliding_window)));
        if let Some(p) = cfg.swa_pattern {
            kv.push(("attention.sliding_window_pattern", Value::U32(p)));
        }
    }
    kv
}

/// Builds the model `cfg` in memory.
pub fn generate(cfg: &SynthConfig) -> Result<GgufWriter<'static>, SynthError> {
    let tokenizer = cfg.vocab.metadata()?;
    let n_vocab = vocab::vocab_size(&tokenizer)
        .ok_or_else(|| SynthError::Config("the tokenizer has no token list".into()))?;
    cfg.validate(n_vocab)?;
    let spec = cfg.arch.spec();

    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String(spec.gguf_name.into()));
    w.set("general.type", Value::String("model".into()));
    w.set(
        "general.name",
        Value::String(format!("tessera-synth {}", cfg.arch)),
    );
    w.set(
        "general.description",
        Value::String(format!(
            "synthetic random-weight {} model, seed {}",
            cfg.arch, cfg.seed
        )),
    );
    w.set("general.file_type", Value::U32(cfg.weight_type.file_type()));
    for (suffix, value) in hparams(cfg, n_vocab) {
        w.set(format!("{}.{suffix}", spec.gguf_name), value);
    }
    for (k, v) in tokenizer.iter() {
        w.set(k, v.clone());
    }

    for t in tensor_plan(cfg, n_vocab) {
        let values = t.init.values(cfg.seed, &t.name, t.n_elements() as usize);
        let ty = if t.keep_f32 {
            GgmlType::F32
        } else {
            cfg.weight_type.ggml_type()
        };
        let data = encode(&values, ty);
        w.add_tensor(t.name, ty, &t.dims, data)?;
    }
    Ok(w)
}

/// `values` as little-endian F32 or F16 bytes.
fn encode(values: &[f32], ty: GgmlType) -> Vec<u8> {
    match ty {
        GgmlType::F16 => values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
        _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// The model `cfg` as GGUF bytes.
pub fn to_bytes(cfg: &SynthConfig) -> Result<Vec<u8>, SynthError> {
    Ok(generate(cfg)?.to_vec()?)
}

/// Writes the model `cfg` to `path` (atomically: a temporary file renamed).
pub fn write(cfg: &SynthConfig, path: impl AsRef<Path>) -> Result<(), SynthError> {
    Ok(generate(cfg)?.write_to_path(path)?)
}

/// A synthetic model written to a unique temporary file, removed on drop.
#[derive(Debug)]
pub struct TempModel {
    path: PathBuf,
}

impl TempModel {
    /// Writes `cfg` under the system temporary directory.
    pub fn new(cfg: &SynthConfig) -> Result<Self, SynthError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join("tessera-synth");
        std::fs::create_dir_all(&dir).map_err(|source| SynthError::Io {
            path: dir.clone(),
            source,
        })?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(
            "{}-{}-{n}.gguf",
            cfg.file_name().trim_end_matches(".gguf"),
            std::process::id()
        ));
        write(cfg, &path)?;
        Ok(TempModel { path })
    }

    /// Where the model is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempModel {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
