//! The slot layer: `N` slots, each a session (a KV cache) that serves one
//! request at a time, and a first-come-first-served queue of the requests
//! waiting for one.
//!
//! A request goes to the idle slot whose cache shares the longest token
//! prefix with its prompt, as llama.cpp's server does: the next turn of a
//! conversation, or requests that open with the same system prompt,
//! evaluate only what is new. Among idle slots with equal prefixes the
//! least recently used is taken, so the caches most likely to be wanted
//! again stay. With hibernation on, states of conversations that lost
//! their slot are on disk and compete too ([`crate::hibernation`]): the
//! engine takes a job's [`Orders`] with [`Scheduler::take_orders`].
//!
//! [`Scheduler`] knows nothing about sessions, only the tokens each slot
//! holds. The engine (`engine`: one thread, batched decode steps) sleeps
//! in [`Scheduler::wait_for_job`] while it has nothing to do, takes the
//! jobs given to its idle slots with [`Scheduler::try_take`] at every
//! step and releases each slot as its request ends ([`Scheduler::take`]
//! serves a loop per slot instead).

use std::cmp::Reverse;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::ApiError;
use crate::hibernation::{HibernationConfig, Orders, Store};
use crate::job::{CancelFlag, Job};

/// The queue and the slots.
#[derive(Debug)]
pub struct Scheduler {
    state: Mutex<State>,
    wake: Condvar,
    max_queue: usize,
}

#[derive(Debug)]
struct State {
    queue: VecDeque<Job>,
    slots: Vec<Slot>,
    closed: bool,
    tick: u64,
    hibernated: Store,
}

#[derive(Debug, Default)]
struct Slot {
    /// What the slot's session holds, as of its last release.
    tokens: Vec<u32>,
    /// A job given to the slot, not yet taken by its engine.
    assigned: Option<Job>,
    /// What to save and restore before that job.
    orders: Orders,
    /// Given a job, or running one.
    busy: bool,
    /// The cancel flag of the job it runs.
    running: Option<CancelFlag>,
    /// When it was last released (a tick of the scheduler's clock).
    last_used: u64,
    /// Its session hibernated while idle (`--hibernate-idle`).
    hibernated: bool,
    /// When it became idle, until its idle time was dealt with.
    idle_since: Option<Instant>,
}

/// How [`Scheduler::wait_for_job_within`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited {
    /// A slot has a job.
    Job,
    /// The scheduler is closed.
    Closed,
    /// No job came in time.
    TimedOut,
}

/// The state of the slots and the queue at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Requests waiting for a slot.
    pub queue_depth: usize,
    /// Per slot: whether it is busy.
    pub busy: Vec<bool>,
    /// Conversations hibernated to disk.
    pub hibernated: usize,
}

impl Scheduler {
    /// `n_slots` idle, empty slots and a queue of at most `max_queue`.
    pub fn new(n_slots: usize, max_queue: usize) -> Scheduler {
        Scheduler {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                slots: (0..n_slots).map(|_| Slot::default()).collect(),
                closed: false,
                tick: 0,
                hibernated: Store::default(),
            }),
            wake: Condvar::new(),
            max_queue,
        }
    }

    /// Hibernates the states of conversations that lose their slot to
    /// `config.dir` (off by default).
    pub fn hibernate_to(&self, config: HibernationConfig) {
        self.lock().hibernated = Store::new(Some(config));
    }

    /// What slot `slot` must save and restore before the job it took.
    pub fn take_orders(&self, slot: usize) -> Orders {
        self.lock()
            .slots
            .get_mut(slot)
            .map(|s| std::mem::take(&mut s.orders))
            .unwrap_or_default()
    }

    /// How long slot `slot` may idle before its session hibernates, and
    /// to which file (`None`: it does not).
    pub fn idle_policy(&self, slot: usize) -> Option<(Duration, PathBuf)> {
        self.lock().hibernated.idle_policy(slot)
    }

    /// The idle slots holding tokens that have idled for `idle` (each
    /// returned once per idle spell), and how long until the next one
    /// has.
    pub fn idle_due(&self, idle: Duration) -> (Vec<usize>, Option<Duration>) {
        let now = Instant::now();
        let mut due = Vec::new();
        let mut next: Option<Duration> = None;
        for (i, s) in self.lock().slots.iter_mut().enumerate() {
            let Some(t) = s.idle_since.filter(|_| !s.busy && !s.tokens.is_empty()) else {
                continue;
            };
            let left = (t + idle).saturating_duration_since(now);
            if left.is_zero() {
                s.idle_since = None;
                due.push(i);
            } else {
                next = Some(next.map_or(left, |n| n.min(left)));
            }
        }
        (due, next)
    }

    /// Slot `slot`'s session hibernated while idle, or woke.
    pub fn slot_hibernated(&self, slot: usize, on: bool) {
        if let Some(s) = self.lock().slots.get_mut(slot) {
            s.hibernated = on;
        }
    }

    /// The state saved under `id` was written (`ok`) or could not be.
    pub fn saved(&self, id: u64, ok: bool) {
        self.lock().hibernated.saved(id, ok);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every
        // change is a single assignment or a queue push/pop).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `job` and gives it to a slot if one is idle. Refused when the
    /// queue is full or the server is shutting down.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        let mut st = self.lock();
        if st.closed {
            return Err(ApiError::unavailable("the server is shutting down"));
        }
        st.queue.retain(|j| !j.abandoned());
        if st.queue.len() >= self.max_queue {
            return Err(ApiError::unavailable(format!(
                "the server is busy: {} requests are waiting (retry later)",
                st.queue.len()
            )));
        }
        st.queue.push_back(job);
        self.dispatch(&mut st);
        Ok(())
    }

    /// The next job of `slot`, waiting for one; `None` once the scheduler
    /// is closed.
    pub fn take(&self, slot: usize) -> Option<Job> {
        let mut st = self.lock();
        loop {
            if let Some(job) = Self::start(&mut st, slot) {
                return Some(job);
            }
            if st.closed {
                return None;
            }
            st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits until some slot has a job to take (`true`), or the scheduler
    /// is closed (`false`): the engine's sleep while no request is active.
    pub fn wait_for_job(&self) -> bool {
        matches!(self.wait_for_job_within(None), Waited::Job)
    }

    /// [`Scheduler::wait_for_job`], waiting at most `limit`.
    pub fn wait_for_job_within(&self, limit: Option<Duration>) -> Waited {
        let deadline = limit.map(|d| Instant::now() + d);
        let mut st = self.lock();
        loop {
            if st.slots.iter().any(|s| s.assigned.is_some()) {
                return Waited::Job;
            }
            if st.closed {
                return Waited::Closed;
            }
            st = match deadline {
                None => self.wake.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Waited::TimedOut;
                    }
                    self.wake
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// The job given to `slot`, if there is one (does not wait).
    pub fn try_take(&self, slot: usize) -> Option<Job> {
        Self::start(&mut self.lock(), slot)
    }

    fn start(st: &mut State, slot: usize) -> Option<Job> {
        let s = st.slots.get_mut(slot)?;
        let job = s.assigned.take()?;
        s.running = Some(job.cancel.clone());
        Some(job)
    }

    /// `slot` finished its job; its session now holds `tokens`. The next
    /// waiting request may go to it.
    pub fn release(&self, slot: usize, tokens: &[u32]) {
        let mut st = self.lock();
        st.tick += 1;
        let tick = st.tick;
        if let Some(s) = st.slots.get_mut(slot) {
            s.tokens.clear();
            s.tokens.extend_from_slice(tokens);
            s.busy = false;
            s.running = None;
            s.last_used = tick;
            s.idle_since = Some(Instant::now());
        }
        self.dispatch(&mut st);
    }

    /// Gives waiting jobs to idle slots, in queue order.
    fn dispatch(&self, st: &mut State) {
        let mut given = false;
        while let Some(job) = st.queue.front() {
            if job.abandoned() {
                st.queue.pop_front();
                continue;
            }
            let Some(slot) = best_slot(&st.slots, &job.req.prompt) else {
                break;
            };
            let orders = st
                .hibernated
                .plan(&st.slots[slot].tokens, &job.req.prompt, st.tick);
            let s = &mut st.slots[slot];
            s.orders = orders;
            s.assigned = st.queue.pop_front();
            s.busy = true;
            s.idle_since = None;
            given = true;
        }
        if given {
            self.wake.notify_all();
        }
    }

    /// The queue depth and which slots are busy.
    pub fn snapshot(&self) -> Snapshot {
        let mut st = self.lock();
        st.queue.retain(|j| !j.abandoned());
        Snapshot {
            queue_depth: st.queue.len(),
            busy: st.slots.iter().map(|s| s.busy).collect(),
            hibernated: st.hibernated.count() + st.slots.iter().filter(|s| s.hibernated).count(),
        }
    }

    /// Cancels every job: those running stop after their current token,
    /// those waiting are dropped (their clients see the channel close).
    pub fn cancel_all(&self) {
        let mut guard = self.lock();
        let st = &mut *guard;
        for job in st.queue.drain(..) {
            job.cancel.cancel();
        }
        for s in &mut st.slots {
            if let Some(c) = &s.running {
                c.cancel();
            }
            if let Some(job) = s.assigned.take() {
                job.cancel.cancel();
                // Its orders are not carried out.
                let orders = std::mem::take(&mut s.orders);
                if let Some((id, _)) = orders.save {
                    st.hibernated.saved(id, false);
                }
                if let Some((path, _)) = orders.restore {
                    let _ = std::fs::remove_file(path);
                }
                // Nothing runs it now: the slot is idle again.
                s.busy = false;
            }
        }
    }

    /// Refuses new jobs, cancels the others and lets every engine's
    /// `take` return `None`.
    pub fn close(&self) {
        self.cancel_all();
        let mut st = self.lock();
        st.closed = true;
        st.hibernated.clear();
        drop(st);
        self.wake.notify_all();
    }
}

/// The idle slot sharing the longest prefix with `prompt`, the least
/// recently used among equals.
fn best_slot(slots: &[Slot], prompt: &[u32]) -> Option<usize> {
    slots
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.busy)
        .max_by_key(|(i, s)| {
            (
                common_prefix(&s.tokens, prompt),
                Reverse(s.last_used),
                Reverse(*i),
            )
        })
        .map(|(i, _)| i)
}

/// Length of the common prefix of `a` and `b`.
pub fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{Event, GenRequest};
    use tessera_core::sample::SamplerConfig;
    use tokio::sync::mpsc;

    fn job(prompt: &[u32]) -> (Job, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let job = Job {
            req: GenRequest {
                prompt: prompt.to_vec(),
                sampler: SamplerConfig::greedy(),
                max_tokens: Some(1),
                stop: Vec::new(),
                logprobs: None,
            },
            events: tx,
            cancel: CancelFlag::default(),
            queued_at: std::time::Instant::now(),
        };
        (job, rx)
    }

    #[test]
    fn longest_prefix_wins_then_least_recently_used() {
        let s = Scheduler::new(3, 8);
        // Fill the slots with three histories.
        for (slot, toks) in [[1, 2, 3], [4, 9, 9], [7, 7, 7]].iter().enumerate() {
            let (j, _rx) = job(toks);
            s.submit(j).unwrap();
            let got = s.try_take(slot).expect("the idle slots are taken in order");
            assert_eq!(got.req.prompt, toks);
            s.release(slot, toks);
        }
        let (j, _rx) = job(&[1, 2, 3, 4]);
        s.submit(j).unwrap();
        assert!(s.try_take(0).is_some(), "slot 0 holds [1,2,3]");
        s.release(0, &[1, 2, 3, 4, 5]);
        let (j, _rx) = job(&[7, 7, 1]);
        s.submit(j).unwrap();
        assert!(s.try_take(2).is_some(), "slot 2 holds [7,7,7]");
        s.release(2, &[7, 7, 1]);
        // No common prefix anywhere: the least recently used (slot 1).
        let (j, _rx) = job(&[5]);
        s.submit(j).unwrap();
        assert!(s.try_take(1).is_some());
    }

    #[test]
    fn queue_is_fifo_bounded_and_skips_abandoned_jobs() {
        let s = Scheduler::new(1, 2);
        let (a, _ra) = job(&[1]);
        s.submit(a).unwrap();
        let a = s.try_take(0).unwrap();
        let (b, rb) = job(&[2]);
        let (c, _rc) = job(&[3]);
        s.submit(b).unwrap();
        s.submit(c).unwrap();
        assert_eq!(s.snapshot().queue_depth, 2);
        let (d, _rd) = job(&[4]);
        let full = s.submit(d).unwrap_err();
        assert_eq!(full.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        // b's client goes away: c is next.
        drop(rb);
        assert_eq!(s.snapshot().queue_depth, 1);
        drop(a);
        s.release(0, &[1]);
        assert_eq!(s.try_take(0).unwrap().req.prompt, [3]);
    }

    #[test]
    fn close_cancels_and_wakes() {
        let s = std::sync::Arc::new(Scheduler::new(2, 4));
        let waiter = {
            let s = s.clone();
            std::thread::spawn(move || s.take(1).is_none())
        };
        let (a, _ra) = job(&[1]);
        s.submit(a).unwrap();
        let a = s.take(0).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        s.close();
        assert!(a.cancel.is_cancelled());
        assert!(waiter.join().unwrap());
        let (b, _rb) = job(&[2]);
        assert!(s.submit(b).is_err());
    }
}
