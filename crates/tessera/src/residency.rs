//! Hibernation of conversations: which conversations of a model keep their
//! KV cache in device memory, and which are hibernated to disk.
//!
//! Every [`crate::Conversation`] registers with its model's [`Residents`].
//! Before a turn, a conversation asks for room ([`Residents::begin`]): when
//! more conversations would be resident than
//! [`HibernateOptions::max_resident`] allows, the least recently used idle
//! ones are told to hibernate, and the turn waits until they have (their
//! threads own their sessions). A conversation idle for
//! [`HibernateOptions::idle`] hibernates itself. A hibernated conversation
//! is restored by its next turn, from its file (no token evaluated again)
//! or, when the file is refused, rebuilt from its token history.
//!
//! Files go to [`HibernateOptions::dir`], else to the process-wide
//! directory ([`set_hibernate_dir`]), else to `tessera-hibernate` in the
//! system's temporary directory; each conversation has one file, removed
//! when the conversation is dropped.
//!
//! A wait for room never deadlocks: only idle conversations are chosen,
//! and a conversation waiting is not idle.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::Duration;

use tessera_core::Wake;

use crate::error::Result;

pub use tessera_core::Residency;

/// How the conversations of a model hibernate (part of
/// [`crate::LoadOptions`]).
#[derive(Clone, Debug, Default)]
pub struct HibernateOptions {
    /// Where the files go (`None`: [`hibernate_dir`]).
    pub dir: Option<PathBuf>,
    /// Most conversations resident at once (`None`: no limit). The least
    /// recently used idle one is hibernated to make room.
    pub max_resident: Option<usize>,
    /// A conversation idle this long hibernates (`None`: never on its own).
    pub idle: Option<Duration>,
}

static DIR: RwLock<Option<PathBuf>> = RwLock::new(None);

/// Sets the process-wide hibernation directory (used by models whose
/// [`HibernateOptions::dir`] is unset).
pub fn set_hibernate_dir(dir: impl Into<PathBuf>) {
    *DIR.write().unwrap_or_else(|e| e.into_inner()) = Some(dir.into());
}

/// The process-wide hibernation directory: the one set with
/// [`set_hibernate_dir`], else `tessera-hibernate` in the system's
/// temporary directory.
pub fn hibernate_dir() -> PathBuf {
    DIR.read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("tessera-hibernate"))
}

/// Counts over the conversations of a model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResidencyStats {
    /// Conversations whose KV cache is in device memory now.
    pub resident: usize,
    /// Conversations hibernated now.
    pub hibernated: usize,
    /// Hibernations so far.
    pub hibernations: u64,
    /// Restores from a file so far (nothing evaluated).
    pub restores: u64,
    /// Rebuilds from the token history after a file was refused.
    pub rebuilds: u64,
    /// Most conversations resident at once so far.
    pub peak_resident: usize,
}

/// A request to a conversation's thread to hibernate; it answers on the
/// channel once done (or failed).
pub(crate) type HibernateRequest = tokio::sync::oneshot::Sender<Result<()>>;

/// What a conversation's thread can be told besides its turns.
pub(crate) type Control = Box<dyn Fn(HibernateRequest) -> bool + Send>;

struct Entry {
    /// Its session holds device memory.
    resident: bool,
    /// Its session is hibernated (not yet restored).
    hibernated: bool,
    busy: bool,
    /// A hibernation was asked for and not yet done.
    evicting: bool,
    last_used: u64,
    /// Sends it a hibernation request; false once its thread is gone.
    control: Control,
}

#[derive(Default)]
struct State {
    entries: HashMap<u64, Entry>,
    next_id: u64,
    tick: u64,
    stats: ResidencyStats,
}

/// The residency of every conversation of one model.
pub(crate) struct Residents {
    opts: HibernateOptions,
    state: Mutex<State>,
}

impl Residents {
    pub(crate) fn new(opts: HibernateOptions) -> Residents {
        Residents {
            opts,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The options.
    pub(crate) fn options(&self) -> &HibernateOptions {
        &self.opts
    }

    /// A new conversation (idle; no session yet); its id.
    pub(crate) fn register(&self, control: Control) -> u64 {
        let mut st = self.lock();
        st.next_id += 1;
        st.tick += 1;
        let (id, tick) = (st.next_id, st.tick);
        st.entries.insert(
            id,
            Entry {
                resident: false,
                hibernated: false,
                busy: false,
                evicting: false,
                last_used: tick,
                control,
            },
        );
        st.update();
        id
    }

    /// The conversation is gone.
    pub(crate) fn remove(&self, id: u64) {
        let mut st = self.lock();
        st.entries.remove(&id);
        st.update();
    }

    /// The file of conversation `id`.
    pub(crate) fn file(&self, id: u64) -> Result<PathBuf> {
        let dir = self.opts.dir.clone().unwrap_or_else(hibernate_dir);
        std::fs::create_dir_all(&dir).map_err(|e| {
            crate::Error::Config(format!(
                "cannot create the hibernation directory {}: {e}",
                dir.display()
            ))
        })?;
        Ok(dir.join(format!("conversation-{}-{id}.tshib", std::process::id())))
    }

    /// Conversation `id` starts a turn: it is marked busy and the least
    /// recently used idle conversations are hibernated until it fits the
    /// budget (waiting for them). Over budget when every other resident
    /// conversation is busy.
    pub(crate) fn begin(&self, id: u64) {
        let waits: Vec<_> = {
            let mut st = self.lock();
            let Some(me) = st.entries.get_mut(&id) else {
                return;
            };
            me.busy = true;
            let Some(max) = self.opts.max_resident else {
                return;
            };
            let mut victims = Vec::new();
            loop {
                let resident = st
                    .entries
                    .iter()
                    .filter(|(&k, e)| k == id || (e.resident && !e.evicting))
                    .count();
                if resident <= max.max(1) {
                    break;
                }
                let lru = st
                    .entries
                    .iter()
                    .filter(|(&k, e)| k != id && e.resident && !e.evicting && !e.busy)
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(&k, _)| k);
                let Some(v) = lru else { break };
                let (tx, rx) = tokio::sync::oneshot::channel();
                let e = st.entries.get_mut(&v).expect("chosen from the map");
                e.evicting = true;
                if (e.control)(tx) {
                    victims.push(rx);
                } else {
                    // Its thread is gone: so is its memory.
                    e.resident = false;
                }
            }
            victims
        };
        // A failed hibernation leaves that one resident: the turn goes on.
        for rx in waits {
            let _ = rx.blocking_recv();
        }
    }

    /// Conversation `id` ended a turn (idle, most recently used, `resident`
    /// or not); `wake` is how its session came back, if it was hibernated.
    pub(crate) fn end(&self, id: u64, resident: bool, wake: Option<&Wake>) {
        let mut st = self.lock();
        st.tick += 1;
        let tick = st.tick;
        match wake {
            Some(Wake::Restored { .. }) => st.stats.restores += 1,
            Some(Wake::Rebuilt { .. }) => st.stats.rebuilds += 1,
            _ => {}
        }
        if let Some(e) = st.entries.get_mut(&id) {
            e.busy = false;
            e.resident = resident;
            e.hibernated = !resident && e.hibernated;
            e.last_used = tick;
        }
        st.update();
    }

    /// Conversation `id` answered a hibernation request: it hibernated
    /// (`done`), or had nothing to hibernate, or failed to.
    pub(crate) fn hibernated(&self, id: u64, done: bool) {
        let mut st = self.lock();
        if done {
            st.stats.hibernations += 1;
        }
        if let Some(e) = st.entries.get_mut(&id) {
            e.evicting = false;
            if done {
                e.resident = false;
                e.hibernated = true;
            }
        }
        st.update();
    }

    /// Where conversation `id`'s cache is.
    pub(crate) fn residency(&self, id: u64) -> Residency {
        match self.lock().entries.get(&id) {
            Some(e) if e.hibernated => Residency::Hibernated,
            _ => Residency::Resident,
        }
    }

    /// The counts.
    pub(crate) fn stats(&self) -> ResidencyStats {
        self.lock().stats
    }
}

impl State {
    /// Recounts the resident and hibernated conversations.
    fn update(&mut self) {
        let resident = self.entries.values().filter(|e| e.resident).count();
        self.stats.resident = resident;
        self.stats.hibernated = self.entries.values().filter(|e| e.hibernated).count();
        self.stats.peak_resident = self.stats.peak_resident.max(resident);
    }
}

/// Removes a conversation's file (when it is dropped).
pub(crate) fn remove_file(path: &Path) {
    let _ = std::fs::remove_file(path);
}
