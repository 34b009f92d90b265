//! Hugging Face sources, through `hf-hub`'s blocking API.
//!
//! hf-hub asks `{endpoint}/{repo}/resolve/{revision}/{file}` for the file's
//! ETag, commit and size (a `Range: bytes=0-0` request), then streams it
//! with `Range: bytes={have}-` into `blobs/<etag>.part` under its cache,
//! renames the blob into place when complete and links
//! `snapshots/<commit>/<file>` to it. An interrupted transfer leaves the
//! `.part` file, which the next attempt continues. Here each fetched file is
//! then checked (catalog size and sha256, else the sha256 the Hub reports as
//! the LFS ETag — the blob's name) and linked into the model cache under
//! its catalog name; a file that fails the check is deleted from hf-hub's
//! cache.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use hf_hub::api::sync::{Api, ApiBuilder};
use hf_hub::api::Progress;
use hf_hub::{Cache, Repo, RepoType};

use super::{verify, Event, HfSettings, ModelCache, SourceError};
use crate::catalog::{is_sha256, Source, Variant};

/// Transfer progress is reported at most once per this many bytes.
const REPORT_EVERY: u64 = 256 << 10;

fn repo_of(source: &Source) -> Option<Repo> {
    match source {
        Source::Hf { repo, revision, .. } => Some(Repo::with_revision(
            repo.clone(),
            RepoType::Model,
            revision.clone(),
        )),
        Source::Wheel { .. } => None,
    }
}

/// The variant's files when hf-hub's cache already holds all of them for
/// `source` (an `hf` source), in shard order.
pub(crate) fn cached(
    settings: &HfSettings,
    source: &Source,
    variant: &Variant,
) -> Option<Vec<PathBuf>> {
    let repo = Cache::new(settings.cache.clone()).repo(repo_of(source)?);
    source
        .hf_files(variant)
        .iter()
        .map(|(remote, _)| repo.get(remote))
        .collect()
}

/// Fetches `variant` from the `hf` source `source`, checks every file and
/// links it into the model cache; returns the path of the first.
pub(crate) fn fetch(
    cache: &ModelCache,
    source: &Source,
    variant: &Variant,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<PathBuf, SourceError> {
    let repo = repo_of(source).ok_or_else(|| SourceError::Hf("not an hf source".into()))?;
    let settings = cache.hf();
    let hub = Cache::new(absolute(&settings.cache));
    let api = ApiBuilder::from_cache(hub.clone())
        .with_endpoint(settings.endpoint.clone())
        .with_token(settings.token.clone())
        .with_progress(false)
        .with_retries(settings.retries)
        .with_user_agent("tessera", env!("CARGO_PKG_VERSION"))
        .build()
        .map_err(|e| SourceError::Hf(e.to_string()))?;
    let files = source.hf_files(variant);
    let single = files.len() == 1;
    let mut got: Vec<(PathBuf, String)> = Vec::new();
    let mut total = 0u64;
    for (remote, local) in &files {
        // The catalog's hash for a single file, else the Hub's own (the
        // blob's name).
        let size = if single { variant.size } else { None };
        let check = |path: &Path, on: &mut dyn FnMut(Event<'_>)| {
            let sha = if single { variant.sha256.clone() } else { None }.or_else(|| etag_sha(path));
            verify::check(path, local, size, sha.as_deref(), on)
        };
        // A copy already in hf-hub's cache that fails is deleted and
        // fetched again.
        let cached = hub.repo(repo.clone()).get(remote);
        let path = match cached {
            Some(p) if check(&p, on).is_ok() => p,
            other => {
                if let Some(p) = other {
                    remove_cached(&p);
                }
                let p = download(&api, &repo, remote, local, on)?;
                if let Err(e) = check(&p, on) {
                    remove_cached(&p);
                    return Err(e);
                }
                p
            }
        };
        total += std::fs::metadata(&path)
            .map_err(|source| SourceError::Io {
                path: path.clone(),
                source,
            })?
            .len();
        got.push((path, local.clone()));
    }
    if !single {
        if let Err(e) = verify::check_size(&variant.file, variant.size, total) {
            for (p, _) in &got {
                remove_cached(p);
            }
            return Err(e);
        }
    }
    link_into(cache, &got)
}

/// One file through hf-hub, progress forwarded to `on`.
fn download(
    api: &Api,
    repo: &Repo,
    remote: &str,
    local: &str,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<PathBuf, SourceError> {
    let progress = Forward {
        on,
        file: local,
        done: 0,
        total: 0,
        reported: 0,
    };
    let repo = api.repo(repo.clone());
    // hf-hub asserts on a few server answers; a panic there is a failed
    // source, not a crash.
    match catch_unwind(AssertUnwindSafe(|| {
        repo.download_with_progress(remote, progress)
    })) {
        Ok(Ok(path)) => Ok(path),
        Ok(Err(e)) => Err(SourceError::Hf(e.to_string())),
        Err(_) => Err(SourceError::HfPanicked),
    }
}

/// hf-hub's progress trait, forwarded as [`Event::Transfer`].
struct Forward<'a, 'f> {
    on: &'a mut dyn FnMut(Event<'_>),
    file: &'f str,
    done: u64,
    total: u64,
    reported: u64,
}

impl Forward<'_, '_> {
    fn report(&mut self) {
        self.reported = self.done;
        (self.on)(Event::Transfer {
            file: self.file,
            done: self.done,
            total: Some(self.total),
        });
    }
}

impl Progress for Forward<'_, '_> {
    fn init(&mut self, size: usize, _filename: &str) {
        self.total = size as u64;
        self.done = 0;
        self.report();
    }

    fn update(&mut self, size: usize) {
        self.done += size as u64;
        if self.done - self.reported >= REPORT_EVERY || self.done == self.total {
            self.report();
        }
    }

    fn finish(&mut self) {
        self.report();
    }
}

/// The sha256 hf-hub named the blob after (the Hub's ETag of an LFS file).
fn etag_sha(pointer: &Path) -> Option<String> {
    let target = std::fs::read_link(pointer).ok()?;
    let name = target.file_name()?.to_str()?;
    is_sha256(name).then(|| name.to_string())
}

/// Deletes a file from hf-hub's cache: the snapshot link and its blob.
pub(crate) fn remove_cached(pointer: &Path) {
    if let Ok(target) = std::fs::read_link(pointer) {
        let blob = match pointer.parent() {
            Some(dir) => dir.join(&target),
            None => target,
        };
        std::fs::remove_file(blob).ok();
    }
    std::fs::remove_file(pointer).ok();
}

/// Gives each `(file in hf-hub's cache, local name)` its name in the model
/// cache (a symbolic link, swapped in atomically); returns the first.
/// Where links cannot be made, the first file's own path.
pub(crate) fn link_into(
    cache: &ModelCache,
    files: &[(PathBuf, String)],
) -> Result<PathBuf, SourceError> {
    let Some((first, _)) = files.first() else {
        return Err(SourceError::Hf("no files".into()));
    };
    for (target, local) in files {
        let link = cache.dir().join(local);
        let tmp = cache
            .dir()
            .join(format!(".{local}.{}.link", std::process::id()));
        std::fs::remove_file(&tmp).ok();
        if symlink(&absolute(target), &tmp).is_err() {
            return Ok(first.clone());
        }
        std::fs::rename(&tmp, &link).map_err(|source| {
            std::fs::remove_file(&tmp).ok();
            SourceError::Io {
                path: link.clone(),
                source,
            }
        })?;
    }
    Ok(cache.dir().join(&files[0].1))
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(windows)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::windows::fs::symlink_file(target, link)
}

#[cfg(not(any(unix, windows)))]
fn symlink(_target: &Path, _link: &Path) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}
