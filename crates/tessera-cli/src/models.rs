//! Where the CLI finds a model: a path, a file name in the model cache, or
//! a catalog id (`smollm2:135m`, `qwen3:0.6b:q4_k_m`, `tessera models`
//! lists them). A catalog model not downloaded yet is pulled on first use —
//! with no model named, the catalog's default (`smollm2:135m`).
//!
//! The cache is `$TESSERA_MODELS`, default `~/.cache/tessera/models`
//! ([`tessera::download`] says how it is filled).

use std::path::PathBuf;

use anyhow::{bail, Result};
use tessera::download::{format_bytes, ModelCache};
use tessera::{Catalog, ModelEntry, Variant};

use crate::pull;

/// Resolves a model argument: an existing path, a file in the cache, a
/// catalog id or a catalog file name (pulled when missing); none: the
/// catalog's default (pulled when missing).
pub fn resolve(model: Option<&str>) -> Result<PathBuf> {
    let cache = ModelCache::from_env();
    let Some(name) = model else {
        let catalog = Catalog::load()?;
        let (entry, variant) = catalog.default_model()?;
        return ensure(&cache, entry, variant, true);
    };
    let as_path = PathBuf::from(name);
    if as_path.exists() {
        return Ok(as_path);
    }
    let cached = cache.dir().join(name);
    if cached.exists() {
        return Ok(cached);
    }
    let catalog = Catalog::load()?;
    if let Ok((entry, variant)) = catalog.resolve(name) {
        return ensure(&cache, entry, variant, false);
    }
    if let Some((entry, variant)) = by_file_name(&catalog, name) {
        return ensure(&cache, entry, variant, false);
    }
    bail!(
        "model '{name}' not found: no such file, not in the model cache {}, and not a catalog id (`tessera models` lists them)",
        cache.dir().display()
    )
}

/// The catalog variant whose file is `name`.
fn by_file_name<'c>(catalog: &'c Catalog, name: &str) -> Option<(&'c ModelEntry, &'c Variant)> {
    catalog
        .models
        .iter()
        .find_map(|m| m.variants.iter().find(|v| v.file == name).map(|v| (m, v)))
}

/// The variant's path, pulled first when it is not here.
fn ensure(
    cache: &ModelCache,
    entry: &ModelEntry,
    variant: &Variant,
    is_default: bool,
) -> Result<PathBuf> {
    if let Some(path) = cache.find(variant) {
        return Ok(path);
    }
    let size = variant
        .display_size()
        .map(|s| {
            format!(
                ", {}{}",
                if variant.size.is_some() { "" } else { "~" },
                format_bytes(s)
            )
        })
        .unwrap_or_default();
    eprintln!(
        "tessera: {}{} ({} {}{size}) is not downloaded yet; fetching it into {}",
        if is_default { "the default model " } else { "" },
        entry.id,
        entry.name,
        variant.quant,
        cache.dir().display()
    );
    pull::fetch(cache, variant)
}
