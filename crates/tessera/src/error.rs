//! The SDK's error: one enum over what loading, downloading and talking to
//! a model can fail with, each with its cause.

use crate::catalog::CatalogError;
use crate::download::PullError;

/// Why an SDK call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The engine: a malformed or unsupported model, a placement that does
    /// not fit, a failed step.
    #[error(transparent)]
    Core(#[from] tessera_core::CoreError),
    /// The model catalog (an unknown id or quantization).
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Every source of a download failed (each reason listed).
    #[error(transparent)]
    Pull(#[from] PullError),
    /// The chat template could not render the conversation.
    #[error("chat template: {0}")]
    Chat(#[from] tessera_tokenizer::ChatError),
    /// Tokenizing the conversation failed.
    #[error(transparent)]
    Tokenizer(#[from] tessera_tokenizer::TokenizerError),
    /// The conversation no longer fits the context.
    #[error(
        "the conversation ({tokens} tokens) no longer fits the context of {n_ctx} tokens \
         (load the model with a larger context)"
    )]
    ContextFull {
        /// Tokens the conversation needs.
        tokens: usize,
        /// The context size.
        n_ctx: usize,
    },
    /// An option is out of range.
    #[error("{0}")]
    Config(String),
    /// The thread that runs a load or a conversation stopped unexpectedly.
    #[error("the {0} thread stopped unexpectedly")]
    Worker(&'static str),
}

/// The SDK's result.
pub type Result<T> = std::result::Result<T, Error>;
