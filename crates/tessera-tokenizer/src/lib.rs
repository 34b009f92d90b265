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
//!   (`tokenizer.ggml.*`) and encodes text to exactly the ids llama.cpp
//!   gives. Byte-level BPE (`gpt2`) splits text with llama.cpp's regexes for
//!   the file's `tokenizer.ggml.pre` ([`supported_pre_tokenizers`]; an unknown
//!   name is an error) and merges with the GGUF merges; SentencePiece
//!   (`llama`, e.g. Gemma 3) is Hugging Face BPE with byte fallback and one
//!   merge per way of writing a token as two tokens, ranked by score — the
//!   same algorithm as llama.cpp's score-driven bigram merging. The merging
//!   itself is the `tokenizers` crate's ([`Tokenizer::hf`] is the whole
//!   pipeline); tessera reproduces what llama.cpp does around it: the token
//!   attributes it derives at load time, cutting special tokens out of the
//!   text first (control tokens only with `parse_special`, user-defined ones
//!   always), BOS/EOS, the newline and end-of-generation ids.
//! - [`StreamDecoder`] turns ids back into text one token at a time without
//!   ever emitting a broken UTF-8 character; [`Tokenizer::decode`] is
//!   llama.cpp's `llama_detokenize`.
//! - [`ChatTemplates`] renders `tokenizer.chat_template` (and named
//!   alternatives) with minijinja and the Python-compatible extras Hugging
//!   Face templates rely on, with a documented fallback for models without one.
//!
//! Parity with llama.cpp is checked by the tests against fixtures written by
//! `scripts/make-tokenizer-fixtures.py` (`llama-tokenize` over a corpus of
//! several hundred strings, `llama-server --jinja` for chat templates).
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
