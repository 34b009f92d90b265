//! A loaded model: the GGUF file (mapped), its hyperparameters, tokenizer,
//! the backends it runs on and its weights placed on them.
//!
//! Placement today: every tensor on the CPU (device 0). The placement
//! issue replaces [`Model::load`]'s `device_of` with rules and a planner.

use std::path::Path;
use std::sync::Arc;

use tessera_gguf::GgufModel;
use tessera_tokenizer::Tokenizer;

use crate::arch;
use crate::backend::cpu::CpuBackend;
use crate::backend::Backend;
use crate::error::{CoreError, Result};
use crate::hparams::HParams;
use crate::kv::KvType;
use crate::sched;
use crate::session::Session;
use crate::weights::Weights;

/// How to load a model.
#[derive(Clone, Debug, Default)]
pub struct ModelParams {
    /// CPU threads (0: all available cores).
    pub n_threads: usize,
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
        let backends: Vec<Arc<dyn Backend>> = vec![Arc::new(CpuBackend::new("cpu", n_threads))];
        let weights = Weights::load(&gguf, &backends, |_| 0)?;
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
        let model = Model {
            layer_devices: vec![0; hparams.n_layer],
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
