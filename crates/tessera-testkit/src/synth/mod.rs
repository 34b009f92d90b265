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
//! - `config`: [`SynthConfig`], its defaults and validation.
//! - `keys`: the `{arch}.*` hyperparameter keys of a config.
//! - [`tensors`]: the tensor list built from shared blocks, with shapes.
//! - [`vocab`]: the built-in byte-level BPE vocabulary, or one copied from a GGUF.
//! - [`fill`]: the seeded generator and F16 encoding.
//! - [`fields`]: config fields by name (`set("n_embd", "256")`).
//! - `stream`: writing a file tensor by tensor (models of several GB).
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
mod config;
pub mod fields;
pub mod fill;
mod keys;
mod stream;
pub mod tensors;
pub mod vocab;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tessera_gguf::{GgmlType, GgufError, GgufWriter, Metadata, Value};

pub use arch::{Arch, ArchSpec};
pub use config::SynthConfig;
pub use tensors::{tensor_plan, TensorSpec};

use keys::hparams;

/// Largest model [`generate`] and [`to_bytes`] agree to build (they hold it
/// in memory).
pub const MAX_MODEL_BYTES: u64 = 1 << 30;

/// Largest model [`write`] agrees to build (it streams to the file, holding
/// one tensor at a time; the bound is an F32 upper bound of the size, a guard
/// against filling the disk by mistake).
pub const MAX_FILE_BYTES: u64 = 64 << 30;

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

/// Bytes of the tensor data of a model (without header and padding).
fn data_bytes(tensors: &[(TensorSpec, GgmlType)]) -> u64 {
    tensors
        .iter()
        .map(|(t, ty)| {
            let rows: u64 = t.dims[1..].iter().product();
            ty.row_bytes(t.dims[0])
                .unwrap_or(u64::MAX)
                .saturating_mul(rows)
        })
        .fold(0, u64::saturating_add)
}

/// Everything of the model `cfg` but the tensor values: the metadata and the
/// tensors with their storage types, in file order.
fn skeleton(cfg: &SynthConfig) -> Result<(Metadata, Vec<(TensorSpec, GgmlType)>), SynthError> {
    let tokenizer = cfg.vocab.metadata()?;
    let n_vocab = vocab::vocab_size(&tokenizer)
        .ok_or_else(|| SynthError::Config("the tokenizer has no token list".into()))?;
    cfg.validate(n_vocab)?;
    let spec = cfg.arch.spec();

    let mut w = Metadata::new();
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
    let tensors = tensor_plan(cfg, n_vocab)
        .into_iter()
        .map(|t| {
            let ty = if t.keep_f32 {
                GgmlType::F32
            } else {
                cfg.weight_type.ggml_type()
            };
            (t, ty)
        })
        .collect();
    Ok((w, tensors))
}

/// The stored bytes of tensor `t` of the model `cfg`.
fn tensor_bytes(cfg: &SynthConfig, t: &TensorSpec, ty: GgmlType) -> Vec<u8> {
    let values = t.init.values(cfg.seed, &t.name, t.n_elements() as usize);
    encode(&values, ty)
}

/// Builds the model `cfg` in memory (at most [`MAX_MODEL_BYTES`] of tensor
/// data; [`write`] streams larger ones to a file).
pub fn generate(cfg: &SynthConfig) -> Result<GgufWriter<'static>, SynthError> {
    let (metadata, tensors) = skeleton(cfg)?;
    let mut w = GgufWriter::new();
    *w.metadata_mut() = metadata;
    let bytes = data_bytes(&tensors);
    if bytes > MAX_MODEL_BYTES {
        return Err(SynthError::Config(format!(
            "the model would take {bytes} bytes, more than {MAX_MODEL_BYTES} in memory \
             (synth::write streams larger models to a file)"
        )));
    }
    for (t, ty) in tensors {
        let data = tensor_bytes(cfg, &t, ty);
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

/// Writes the model `cfg` to `path` (atomically: a temporary file renamed),
/// the same bytes as [`to_bytes`], holding one tensor at a time in memory
/// (see [`stream`]).
pub fn write(cfg: &SynthConfig, path: impl AsRef<Path>) -> Result<(), SynthError> {
    let (w, tensors) = skeleton(cfg)?;
    stream::write(w, &tensors, |t, ty| tensor_bytes(cfg, t, ty), path.as_ref())
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
