//! Hibernated conversations: with `--hibernate-dir`, the state a slot holds
//! (its KV cache and tokens) is written to a file when a request of
//! another conversation takes the slot, and read back into whichever slot
//! a later request continuing it gets — so more conversations than slots
//! keep their caches, the rest on disk, and none is evaluated again.
//!
//! The [`crate::slots::Scheduler`] decides under its lock ([`Store::plan`]),
//! when it gives a job to a slot: a hibernated state whose tokens share a
//! longer prefix with the prompt than the slot's own is restored into the
//! slot; the slot's state is saved first when the job would keep less than
//! half of it (llama.cpp's prompt cache keeps a slot's prompt on the same
//! rule) and it holds at least [`MIN_TOKENS`]. The slot's engine carries
//! the [`Orders`] out on its session before the job ([`apply`]): a restore
//! evaluates nothing, and a file that is refused (corrupt, another version
//! or model) is rebuilt from the tokens the store recorded. At most
//! [`HibernationConfig::max_files`] states are kept; the least recently
//! used file is removed beyond that.
//!
//! With [`HibernationConfig::idle`] (`--hibernate-idle`), a slot idle that
//! long has its session hibernated by the engine (its device memory
//! released, [`sweep_idle`]); its next job wakes it ([`prepare`]). Draft
//! sessions (`--draft-model`) are not part of a conversation's state:
//! they hibernate and wake with their slot when it idles, and are rebuilt
//! from the tokens otherwise ([`crate::speculative`]).

use std::path::PathBuf;
use std::time::Duration;

use tessera_core::{Residency, Session, Wake};

use crate::metrics::Metrics;
use crate::slots::{common_prefix, Scheduler};

/// A slot's state shorter than this is not worth a file.
pub const MIN_TOKENS: usize = 16;

/// Where hibernated conversations go.
#[derive(Clone, Debug)]
pub struct HibernationConfig {
    /// The directory of the files (created at start).
    pub dir: PathBuf,
    /// Most hibernated conversations kept (the least recently used file
    /// is removed beyond).
    pub max_files: usize,
    /// A slot idle this long hibernates its session (`None`: never).
    pub idle: Option<Duration>,
}

/// What a slot does with its session before it runs its job.
#[derive(Debug, Default)]
pub struct Orders {
    /// Save the session's state to this file first (and report with
    /// [`crate::slots::Scheduler::saved`] under this id).
    pub save: Option<(u64, PathBuf)>,
    /// Then replace it with this file's state, whose tokens are these.
    pub restore: Option<(PathBuf, Vec<u32>)>,
}

/// The hibernated states.
#[derive(Debug, Default)]
pub(crate) struct Store {
    config: Option<HibernationConfig>,
    entries: Vec<Entry>,
    next_id: u64,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    tokens: Vec<u32>,
    path: PathBuf,
    /// The file is written (a restore may read it).
    ready: bool,
    last_used: u64,
}

impl Store {
    /// A store writing to `config.dir`.
    pub(crate) fn new(config: Option<HibernationConfig>) -> Store {
        Store {
            config,
            ..Store::default()
        }
    }

    /// How long a slot may idle, and the file its session hibernates to.
    pub(crate) fn idle_policy(&self, slot: usize) -> Option<(Duration, PathBuf)> {
        let c = self.config.as_ref()?;
        let file = format!("slot-{}-{slot}.tshib", std::process::id());
        Some((c.idle?, c.dir.join(file)))
    }

    /// States hibernated now (written).
    pub(crate) fn count(&self) -> usize {
        self.entries.iter().filter(|e| e.ready).count()
    }

    /// The orders for a job with `prompt` given to a slot holding `held`,
    /// at `tick` of the scheduler's clock.
    pub(crate) fn plan(&mut self, held: &[u32], prompt: &[u32], tick: u64) -> Orders {
        if self.config.is_none() {
            return Orders::default();
        }
        let kept = common_prefix(held, prompt);
        let best = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.ready)
            .map(|(i, e)| (i, common_prefix(&e.tokens, prompt)))
            .max_by_key(|&(i, p)| (p, self.entries[i].last_used));
        let restore = best
            .filter(|&(_, p)| p > kept)
            .map(|(i, _)| self.entries.remove(i))
            .map(|e| (e.path, e.tokens));
        let keeps = if restore.is_some() { 0 } else { kept };
        let save = (held.len() >= MIN_TOKENS && keeps * 2 < held.len())
            .then(|| self.park(held, tick))
            .flatten();
        Orders { save, restore }
    }

    /// A new entry for `tokens`, not yet written; the least recently used
    /// ones beyond the limit are dropped with their files.
    fn park(&mut self, tokens: &[u32], tick: u64) -> Option<(u64, PathBuf)> {
        let config = self.config.as_ref()?;
        self.next_id += 1;
        let id = self.next_id;
        let path = config
            .dir
            .join(format!("slot-state-{}-{id}.tshib", std::process::id()));
        while self.entries.len() >= config.max_files.max(1) {
            let Some(lru) = (0..self.entries.len()).min_by_key(|&i| self.entries[i].last_used)
            else {
                break;
            };
            let e = self.entries.remove(lru);
            let _ = std::fs::remove_file(e.path);
        }
        self.entries.push(Entry {
            id,
            tokens: tokens.to_vec(),
            path: path.clone(),
            ready: false,
            last_used: tick,
        });
        Some((id, path))
    }

    /// Entry `id` was written (`ok`) or could not be (dropped).
    pub(crate) fn saved(&mut self, id: u64, ok: bool) {
        if ok {
            if let Some(e) = self.entries.iter_mut().find(|e| e.id == id) {
                e.ready = true;
            }
        } else {
            self.entries.retain(|e| e.id != id);
        }
    }

    /// Removes every file (at shutdown).
    pub(crate) fn clear(&mut self) {
        for e in self.entries.drain(..) {
            let _ = std::fs::remove_file(e.path);
        }
    }
}

/// Hibernates the sessions of the slots idle for `--hibernate-idle`
/// (counted; their tokens in memory shown as 0), and their draft sessions
/// (`drafts`, with `--draft-model`) to files beside theirs; how long until
/// the next idle slot is due (`None`: no timeout, or no idle slot holding
/// tokens).
pub fn sweep_idle(
    sessions: &mut [Session<'_>],
    mut drafts: Option<&mut [Session<'_>]>,
    sched: &Scheduler,
    metrics: &Metrics,
) -> Option<Duration> {
    let (idle, _) = sched.idle_policy(0)?;
    let (due, next) = sched.idle_due(idle);
    for slot in due {
        let (Some((_, path)), Some(s)) = (sched.idle_policy(slot), sessions.get_mut(slot)) else {
            continue;
        };
        if s.residency() == Residency::Resident && s.hibernate(&path).is_ok() {
            metrics.hibernated();
            metrics.set_slot_tokens(slot, 0);
            sched.slot_hibernated(slot, true);
        }
        if let Some(d) = drafts.as_deref_mut().and_then(|d| d.get_mut(slot)) {
            if d.residency() == Residency::Resident && d.hibernate(&draft_file(&path)).is_err() {
                // Not saved: it is rebuilt from the tokens when it drafts.
                d.clear();
            }
        }
    }
    next
}

/// The file a slot's draft session hibernates to, beside the target's.
fn draft_file(target_file: &std::path::Path) -> PathBuf {
    target_file.with_extension("draft.tshib")
}

/// Before `slot` runs the job it took: carries out its [`Orders`] and
/// wakes its session (and its `draft` session) if it hibernated while
/// idle. A failed save costs only the cache (the state is dropped); a
/// refused file is rebuilt from its tokens; a failed rebuild leaves the
/// session empty (a draft session, too: it is rebuilt when it drafts).
pub fn prepare(
    session: &mut Session<'_>,
    draft: Option<&mut Session<'_>>,
    sched: &Scheduler,
    slot: usize,
    metrics: &Metrics,
) {
    if let Some(d) = draft {
        let file = d.hibernation_file().map(PathBuf::from);
        if d.wake().is_err() {
            d.clear();
        }
        if let Some(f) = file {
            let _ = std::fs::remove_file(f);
        }
    }
    let orders = sched.take_orders(slot);
    let idle_file = session.hibernation_file().map(PathBuf::from);
    if idle_file.is_some() {
        sched.slot_hibernated(slot, false);
        // Unless a restore replaces it unsaved, the state is read back.
        if orders.restore.is_none() || orders.save.is_some() {
            count_wake(session.wake(), session, metrics);
        }
    }
    if let Some((id, path)) = orders.save {
        let ok = session.save(&path).is_ok();
        if ok {
            metrics.hibernated();
        }
        sched.saved(id, ok);
    }
    if let Some((path, tokens)) = orders.restore {
        count_wake(session.restore(&path, &tokens), session, metrics);
        let _ = std::fs::remove_file(&path);
    }
    // The state is in memory again, or replaced.
    if let Some(f) = idle_file {
        let _ = std::fs::remove_file(f);
    }
}

fn count_wake(wake: tessera_core::Result<Wake>, session: &mut Session<'_>, metrics: &Metrics) {
    match wake {
        Ok(Wake::Restored { .. }) => metrics.restored(false),
        Ok(Wake::Rebuilt { .. }) => metrics.restored(true),
        Ok(Wake::Resident) => {}
        Err(_) => session.clear(),
    }
}

/// Removes the file a slot's session hibernated to while idle (at exit).
pub fn remove_slot_file(session: &Session<'_>) {
    if let Some(p) = session.hibernation_file() {
        let _ = std::fs::remove_file(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(max_files: usize) -> Store {
        Store::new(Some(HibernationConfig {
            dir: PathBuf::from("/nonexistent"),
            max_files,
            idle: None,
        }))
    }

    #[test]
    fn saves_what_a_job_discards_and_restores_the_longest_prefix() {
        let mut s = store(8);
        let a: Vec<u32> = (0..40).collect();
        let b: Vec<u32> = (100..140).collect();
        // A job of another conversation: the slot's state is saved.
        let o = s.plan(&a, &b, 1);
        let (id, _) = o.save.expect("saved");
        assert!(o.restore.is_none());
        assert_eq!(s.count(), 0, "not restorable before it is written");
        s.saved(id, true);
        assert_eq!(s.count(), 1);
        // The next turn of the first conversation, on a slot holding b: a
        // restored, b saved.
        let mut a2 = a.clone();
        a2.extend([7, 7]);
        let o = s.plan(&b, &a2, 2);
        assert_eq!(o.restore.as_ref().map(|r| &r.1), Some(&a));
        assert!(o.save.is_some());
        // A continuation of what the slot holds: nothing to do.
        let o = s.plan(&a, &a2, 3);
        assert!(o.save.is_none() && o.restore.is_none());
        // Short states are not saved.
        let o = s.plan(&a[..10], &b, 4);
        assert!(o.save.is_none());
    }

    #[test]
    fn failed_saves_are_dropped_and_the_oldest_files_go_beyond_the_limit() {
        let mut s = store(2);
        let states: Vec<Vec<u32>> = (0..3u32)
            .map(|k| (k * 100..k * 100 + 20).collect())
            .collect();
        let other: Vec<u32> = vec![9999; 20];
        for (t, st) in states.iter().enumerate() {
            let (id, _) = s.plan(st, &other, t as u64).save.unwrap();
            s.saved(id, true);
        }
        assert_eq!(s.count(), 2, "the oldest was dropped");
        let o = s.plan(&other, &states[0], 9);
        assert!(o.restore.is_none(), "state 0 is gone");
        let (id, _) = o.save.unwrap();
        s.saved(id, false);
        assert_eq!(s.count(), 1, "state 1 made room for the failed save");
        assert_eq!(
            s.plan(&[], &states[2], 10).restore.map(|r| r.1),
            Some(states[2].clone())
        );
    }

    #[test]
    fn off_without_a_directory() {
        let mut s = Store::new(None);
        let a: Vec<u32> = (0..40).collect();
        let o = s.plan(&a, &[1], 1);
        assert!(o.save.is_none() && o.restore.is_none());
    }
}
