//! The engine's error type: every failure says what and where.

use tessera_gguf::GgmlType;

/// Why loading or running a model failed.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The GGUF file could not be read or lacks a key.
    #[error(transparent)]
    Gguf(#[from] tessera_gguf::GgufError),
    /// The tokenizer could not be built or failed.
    #[error(transparent)]
    Tokenizer(#[from] tessera_tokenizer::TokenizerError),
    /// A kernel refused its inputs.
    #[error(transparent)]
    Quant(#[from] tessera_quant::QuantError),
    /// The sampler refused its settings or logits.
    #[error(transparent)]
    Sample(#[from] crate::sample::SampleError),
    /// A CPU op refused its inputs.
    #[error("op {node}: {source}")]
    Op {
        /// The graph node (named per layer).
        node: String,
        /// What the op said.
        source: crate::backend::cpu::ops::OpError,
    },
    /// `general.architecture` names a family tessera does not implement.
    #[error("unsupported architecture `{arch}` (supported: {})", supported.join(", "))]
    UnsupportedArch {
        /// The file's architecture.
        arch: String,
        /// The ones tessera has.
        supported: Vec<&'static str>,
    },
    /// A hyperparameter is missing or out of range.
    #[error("bad hyperparameter `{key}`: {reason}")]
    HParam {
        /// The metadata key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor the architecture needs is absent or has the wrong shape.
    #[error("tensor `{name}`: {reason}")]
    Tensor {
        /// The GGUF tensor name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor's type has no kernel for the op that needs it.
    #[error("tensor `{name}` has type {ggml_type:?}, which tessera cannot compute yet ({op})")]
    UnsupportedType {
        /// The GGUF tensor name.
        name: String,
        /// Its type.
        ggml_type: GgmlType,
        /// The op that would read it.
        op: &'static str,
    },
    /// Invalid input to a session (empty prompt, bad token id …).
    #[error("{0}")]
    Input(String),
    /// The context is full: tessera does not shift or drop tokens.
    #[error(
        "context full: {needed} tokens needed, the context holds {n_ctx} (raise -c/--ctx-size)"
    )]
    ContextFull {
        /// Tokens the request would occupy.
        needed: usize,
        /// The context size.
        n_ctx: usize,
    },
    /// A configuration value is invalid.
    #[error("{0}")]
    Config(String),
    /// A hibernation file could not be written.
    #[error(transparent)]
    Hibernate(#[from] crate::hibernate::HibernateError),
    /// A backend failed.
    #[error("backend {device}: {reason}")]
    Backend {
        /// The device name.
        device: String,
        /// What failed.
        reason: String,
    },
}

/// Results of the engine.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
