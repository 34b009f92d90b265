//! Where the CLI finds a model: a path, or a file name in the model cache.
//!
//! The cache is `$TESSERA_MODELS`, default `~/.cache/tessera/models`, filled
//! by `scripts/fetch-models.sh`. With no model given, the default model
//! ([`DEFAULT_MODEL`]) is used.

use std::path::PathBuf;

use anyhow::{bail, Result};

/// The model used when none is named.
pub const DEFAULT_MODEL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The model cache directory.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TESSERA_MODELS") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache/tessera/models")
}

/// Resolves a model argument: an existing path, else a file in the cache.
pub fn resolve(model: Option<&str>) -> Result<PathBuf> {
    let name = model.unwrap_or(DEFAULT_MODEL);
    let as_path = PathBuf::from(name);
    if as_path.exists() {
        return Ok(as_path);
    }
    let cached = cache_dir().join(name);
    if cached.exists() {
        return Ok(cached);
    }
    if model.is_none() {
        bail!(
            "the default model {DEFAULT_MODEL} is not in {}; run scripts/fetch-models.sh first",
            cache_dir().display()
        );
    }
    bail!(
        "model '{name}' not found: no such file, and not in the model cache {}",
        cache_dir().display()
    )
}
