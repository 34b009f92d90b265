//! Tokenizers and chat templates from GGUF files, with llama.cpp's results.
//!
//! ```no_run
//! use tessera_tokenizer::{EncodeOptions, Tokenizer};
//! let tok = Tokenizer::from_gguf("model.gguf")?;
//! let ids = tok.encode("Hello world", EncodeOptions::default())?;
//! let mut stream = tok.stream();
//! for &id in &ids {
//!     print!("{}", stream.push(id)?);
//! }
//! # Ok::<(), tessera_tokenizer::TokenizerError>(())
//! ```
//!
//! - [`Tokenizer`] reads the vocabulary stored in a GGUF file
//!   (`tokenizer.ggml.*`) and encodes text to the ids llama.cpp gives:
//!   byte-level BPE (`gpt2`, with the pre-tokenizer regexes of
//!   `tokenizer.ggml.pre`) and SentencePiece (`llama`). The merging itself
//!   runs in Hugging Face's `tokenizers` crate; tessera reproduces what
//!   llama.cpp does around it (special-token splitting, BOS/EOS, token
//!   attributes). Module [`hf`](crate::Tokenizer::hf) docs explain the mapping.
//! - [`StreamDecoder`] turns ids back into text one token at a time without
//!   ever emitting a broken UTF-8 character.
//! - [`ChatTemplates`] renders `tokenizer.chat_template` with minijinja and
//!   the Python-compatible extras Hugging Face templates rely on.
//!
//! Modules: `vocab` (llama.cpp's vocabulary loading rules), `pre`
//! (`tokenizer.ggml.pre` → regexes), `partition` (special-token splitting),
//! `hf` (the `tokenizers` pipeline), `tokenizer`, `stream`, `chat`.

mod chat;
mod error;
mod hf;
mod partition;
mod pre;
mod stream;
mod tokenizer;
mod vocab;

pub use chat::{
    ChatError, ChatRequest, ChatTemplate, ChatTemplates, TemplateSource, CHATML_TEMPLATE,
    GEMMA_TEMPLATE,
};
pub use error::{Result, TokenizerError};
pub use pre::supported_pre_tokenizers;
pub use stream::StreamDecoder;
pub use tokenizer::{DecodeOptions, EncodeOptions, Tokenizer};
pub use vocab::{keys, SpecialTokens, TokenAttr, VocabKind};
