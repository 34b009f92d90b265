//! Checking a downloaded file: exact size and sha256, with progress.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{Event, SourceError};

/// How often hashing reports progress.
const REPORT_EVERY: u64 = 32 << 20;

/// The sha256 of everything `reader` yields, in lower-case hex, reporting
/// progress on `label` out of `total` bytes.
pub(crate) fn sha256_of(
    mut reader: impl Read,
    label: &str,
    total: u64,
    path: &Path,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<String, SourceError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    let mut reported = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|source| SourceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        done += n as u64;
        if done - reported >= REPORT_EVERY {
            reported = done;
            on(Event::Verify {
                file: label,
                done,
                total,
            });
        }
    }
    on(Event::Verify {
        file: label,
        done,
        total,
    });
    Ok(hex(&hasher.finalize()))
}

/// Checks the file at `path` (named `label` in messages) against an exact
/// size and a sha256, either optional.
pub(crate) fn check(
    path: &Path,
    label: &str,
    size: Option<u64>,
    sha256: Option<&str>,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<(), SourceError> {
    let io = |source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    check_size(label, size, len)?;
    if let Some(expected) = sha256 {
        let file = std::fs::File::open(path).map_err(io)?;
        let got = sha256_of(file, label, len, path, on)?;
        check_sha(label, expected, got)?;
    }
    Ok(())
}

pub(crate) fn check_size(label: &str, expected: Option<u64>, got: u64) -> Result<(), SourceError> {
    match expected {
        Some(expected) if expected != got => Err(SourceError::Size {
            file: label.to_string(),
            expected,
            got,
        }),
        _ => Ok(()),
    }
}

pub(crate) fn check_sha(label: &str, expected: &str, got: String) -> Result<(), SourceError> {
    if got.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(SourceError::Checksum {
            file: label.to_string(),
            expected: expected.to_string(),
            got,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A `Write` that hashes what passes through it.
pub(crate) struct HashingWriter<W> {
    pub inner: W,
    pub hasher: Sha256,
}

impl<W: std::io::Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The sha256 of everything written, in lower-case hex.
    pub fn finish(self) -> (W, String) {
        (self.inner, hex(&self.hasher.finalize()))
    }
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_abc() {
        let got = sha256_of(&b"abc"[..], "abc", 3, Path::new("abc"), &mut |_| {}).unwrap();
        assert_eq!(
            got,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
