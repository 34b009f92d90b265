//! Residency: a session's KV cache is in device memory, or hibernated to a
//! file with its device memory released.
//!
//! [`Session::hibernate`] writes the state ([`crate::hibernate`]'s file:
//! the used KV rows, the token history, the last logits row) and frees
//! the KV buffers and activation arenas; the session keeps only its token
//! history (host memory). The next [`Session::eval`] — or an explicit
//! [`Session::wake`] — reallocates and reads the file back: no token is
//! evaluated again, and generation continues with exactly the tokens it
//! would have produced had the session never left. A file that is
//! corrupt, of another format version or of another model is detected
//! ([`HibernateError`]) and the state is rebuilt by evaluating the token
//! history instead ([`Wake::Rebuilt`]).
//!
//! [`Session::restore`] loads any session's file into this one (the
//! server's slots trade conversations this way).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Logits, Session};
use crate::error::Result;
use crate::hibernate::{self, HibernateError};

/// Where a session's KV cache is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Residency {
    /// In device memory.
    Resident,
    /// In a hibernation file; device memory released.
    Hibernated,
}

/// A hibernation file written.
#[derive(Clone, Debug)]
pub struct Saved {
    /// The file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Tokens (KV rows per layer) it holds.
    pub tokens: usize,
    /// Time to read the rows from the devices and write the file.
    pub time: Duration,
}

/// What bringing a session back took.
#[derive(Debug)]
pub enum Wake {
    /// It was resident: nothing to do.
    Resident,
    /// Read back from its file; nothing evaluated.
    Restored {
        /// Tokens restored.
        tokens: usize,
        /// Bytes read.
        bytes: u64,
        /// Time to reallocate and read.
        time: Duration,
    },
    /// The file could not be used; the token history was evaluated again.
    Rebuilt {
        /// Tokens evaluated.
        tokens: usize,
        /// Why the file was refused.
        reason: HibernateError,
        /// Time to reallocate and evaluate.
        time: Duration,
    },
}

impl Session<'_> {
    /// Whether the KV cache is in device memory or hibernated.
    pub fn residency(&self) -> Residency {
        match self.hibernated {
            Some(_) => Residency::Hibernated,
            None => Residency::Resident,
        }
    }

    /// The file a hibernated session will be restored from.
    pub fn hibernation_file(&self) -> Option<&Path> {
        self.hibernated.as_deref()
    }

    /// Tokens this session has run through the model since it was
    /// created (prompts, generated tokens, rebuilds; not restores).
    pub fn n_evaluated(&self) -> u64 {
        self.n_evaluated
    }

    /// Writes the state to `path` (atomically) and stays resident.
    pub fn save(&mut self, path: &Path) -> Result<Saved> {
        self.wake()?;
        let t0 = Instant::now();
        let fp = hibernate::fingerprint(self.model);
        let n_vocab = self.model.hparams().n_vocab;
        let logits = if self.logits.len() >= n_vocab {
            self.last_logits()
        } else {
            &[]
        };
        let written = hibernate::save(path, &self.kv, fp, &self.tokens, logits)?;
        Ok(Saved {
            path: path.to_path_buf(),
            bytes: written.bytes,
            tokens: self.tokens.len(),
            time: t0.elapsed(),
        })
    }

    /// Writes the state to `path` and releases the KV cache and the
    /// activation buffers. The token history stays; the next
    /// [`Session::eval`] or [`Session::wake`] restores the state. When the
    /// write fails the session stays resident and the error is returned.
    pub fn hibernate(&mut self, path: &Path) -> Result<Saved> {
        let saved = self.save(path)?;
        let backends = self.model.backends();
        self.kv.release(backends)?;
        for (w, b) in self.work.iter_mut().zip(backends) {
            *w = b.alloc(0)?;
        }
        // Their arenas are gone: a step plans them again.
        self.schedules.clear();
        self.hibernated = Some(path.to_path_buf());
        Ok(saved)
    }

    /// Brings a hibernated session back from its file, or rebuilt from its
    /// token history when the file cannot be used. Nothing to do for a
    /// resident session.
    pub fn wake(&mut self) -> Result<Wake> {
        let Some(path) = self.hibernated.clone() else {
            return Ok(Wake::Resident);
        };
        let history = self.tokens.clone();
        self.restore(&path, &history)
    }

    /// Replaces this session's state with the one in `path`, whose token
    /// history must begin with `history` (the state is cut to it). When the
    /// file is refused — corrupt, another format version, another model or
    /// cache layout, another history — the session evaluates `history`
    /// instead. Either way it ends resident, holding `history`.
    pub fn restore(&mut self, path: &Path, history: &[u32]) -> Result<Wake> {
        let t0 = Instant::now();
        if self.hibernated.take().is_some() {
            self.kv.reallocate(self.model.backends())?;
        }
        self.kv.truncate(0);
        self.tokens.clear();
        self.logits.clear();
        if history.is_empty() {
            // Nothing of the file is wanted.
            return Ok(Wake::Restored {
                tokens: 0,
                bytes: 0,
                time: t0.elapsed(),
            });
        }
        let fp = hibernate::fingerprint(self.model);
        let n_vocab = self.model.hparams().n_vocab;
        let loaded = hibernate::load(path, &mut self.kv, fp, n_vocab).and_then(|l| {
            if l.tokens.starts_with(history) {
                Ok(l)
            } else {
                Err(HibernateError::Incompatible {
                    path: path.to_path_buf(),
                    reason: "its token history is not the conversation's".into(),
                })
            }
        });
        match loaded {
            Ok(l) => {
                self.kv.advance(history.len());
                self.tokens.extend_from_slice(history);
                if l.tokens.len() == history.len() {
                    self.logits = l.logits;
                }
                Ok(Wake::Restored {
                    tokens: history.len(),
                    bytes: l.bytes,
                    time: t0.elapsed(),
                })
            }
            Err(reason) => {
                self.eval(history, Logits::Last)?;
                Ok(Wake::Rebuilt {
                    tokens: history.len(),
                    reason,
                    time: t0.elapsed(),
                })
            }
        }
    }
}
