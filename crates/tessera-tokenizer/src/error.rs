//! Typed errors of the tokenizer and of the chat templates.
//!
//! Everything that comes from a model file (a missing key, a token list that
//! does not fit its scores, an unknown `tokenizer.ggml.pre`) is an error value
//! that names the key or the value at fault; nothing here panics on model data.

use tessera_gguf::GgufError;

/// Result alias of this crate.
pub type Result<T, E = TokenizerError> = std::result::Result<T, E>;

/// What can go wrong building a tokenizer or using it.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The GGUF file could not be read, or a metadata key is missing or of
    /// another type.
    #[error(transparent)]
    Gguf(#[from] GgufError),

    /// `tokenizer.ggml.model` names a tokenizer llama.cpp does not know.
    #[error("unknown tokenizer model '{model}' (tokenizer.ggml.model)")]
    UnknownModel {
        /// The value of `tokenizer.ggml.model`.
        model: String,
    },

    /// A tokenizer model llama.cpp knows but tessera does not implement.
    #[error("tokenizer model '{model}' is not supported: {reason}")]
    UnsupportedModel {
        /// The value of `tokenizer.ggml.model`.
        model: String,
        /// Why, and what is supported instead.
        reason: String,
    },

    /// `tokenizer.ggml.pre` names a pre-tokenizer llama.cpp does not know.
    #[error("unknown pre-tokenizer '{pre}' (tokenizer.ggml.pre); tessera does not guess one")]
    UnknownPre {
        /// The value of `tokenizer.ggml.pre`.
        pre: String,
    },

    /// A pre-tokenizer llama.cpp knows but tessera does not implement.
    #[error("pre-tokenizer '{pre}' (tokenizer.ggml.pre) is not supported: {reason}")]
    UnsupportedPre {
        /// The value of `tokenizer.ggml.pre`.
        pre: String,
        /// Why.
        reason: String,
    },

    /// The vocabulary in the file is inconsistent (lengths, duplicates, ids).
    #[error("bad vocabulary: {0}")]
    BadVocab(String),

    /// The Hugging Face `tokenizers` pipeline could not be built or failed.
    #[error("tokenizers: {context}: {message}")]
    Hf {
        /// What was being done.
        context: &'static str,
        /// The error `tokenizers` reported.
        message: String,
    },

    /// Encoding needs a special token the vocabulary does not have.
    #[error("the vocabulary has no {0} token, but the model asks for one to be added")]
    MissingSpecial(&'static str),

    /// A token id outside the vocabulary.
    #[error("token id {id} is out of range (vocabulary of {n_vocab} tokens)")]
    BadTokenId {
        /// The id.
        id: u32,
        /// The vocabulary size.
        n_vocab: usize,
    },
}

impl TokenizerError {
    pub(crate) fn hf(context: &'static str, e: impl std::fmt::Display) -> Self {
        TokenizerError::Hf {
            context,
            message: e.to_string(),
        }
    }
}
