//! A persistent CPU thread pool for the kernels: work split into tasks that
//! threads claim from a shared counter, no per-op thread spawning.
//!
//! Design, for decode-speed ops (a few µs to a few ms each):
//! - The calling thread is one of the pool's threads: a pool of `n` threads
//!   has `n - 1` workers, and `run` does tasks itself while they do.
//! - Tasks are claimed dynamically (an atomic counter), so a thread that the
//!   OS preempts delays at most the task it holds; the others take the rest.
//! - `run` returns when every *task* is done, not when every worker has
//!   checked in: a worker that wakes late finds the job closed and leaves it
//!   alone. This is what keeps the pool fast when the machine is
//!   oversubscribed: throughput drops with the cores taken, it does not
//!   collapse waiting for a descheduled thread.
//! - Idle workers spin briefly (ops come back to back during decode), then
//!   yield, then sleep on a condition variable, so a busy neighbour process
//!   gets the cores back.
//!
//! Protocol: one atomic `state` holds the job's generation (high 32 bits), a
//! closed flag and the number of workers inside the job. A worker enters
//! with a compare-and-swap that succeeds only for the current, open job; the
//! caller, once all tasks are done, closes the job and waits only for the
//! workers inside it, which have nothing left to claim.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker polls for the next job before it sleeps.
const SPIN: Duration = Duration::from_micros(200);

/// `state` bit: the current job takes no new workers.
const CLOSED: u64 = 1 << 31;
/// `state` bits: workers inside the current job.
const ACTIVE: u64 = CLOSED - 1;

fn generation(state: u64) -> u64 {
    state >> 32
}

/// A job: a task function and its task count. The function pointer's lifetime
/// is erased; `run` does not return before every worker inside the job left.
#[derive(Clone, Copy)]
struct Job {
    f: *const (dyn Fn(usize) + Sync),
    n_tasks: usize,
}

struct Shared {
    /// Generation << 32 | CLOSED | workers inside.
    state: AtomicU64,
    job: UnsafeCell<Job>,
    next_task: AtomicUsize,
    done_tasks: AtomicUsize,
    shutdown: AtomicBool,
    panicked: Mutex<Option<Box<dyn std::any::Any + Send>>>,
    sleepers: AtomicUsize,
    sleep_lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the thread holding `ThreadPool::caller`,
// while the previous job is closed with no worker inside and before the new
// generation is published; workers read it only after entering the job (a
// successful compare-and-swap on `state` for that generation), and the job
// stays unchanged until the last of them has left.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

/// A pool of `n` threads (the caller plus `n - 1` workers).
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    caller: Mutex<()>,
}

fn noop(_: usize) {}

impl ThreadPool {
    /// A pool of `n_threads` threads in all (at least 1).
    pub fn new(n_threads: usize) -> ThreadPool {
        let n_workers = n_threads.max(1) - 1;
        let noop: &'static (dyn Fn(usize) + Sync) = &noop;
        let shared = Arc::new(Shared {
            state: AtomicU64::new(CLOSED),
            job: UnsafeCell::new(Job {
                f: noop,
                n_tasks: 0,
            }),
            next_task: AtomicUsize::new(0),
            done_tasks: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            panicked: Mutex::new(None),
            sleepers: AtomicUsize::new(0),
            sleep_lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let workers = (0..n_workers)
            .map(|i| {
                let s = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("tessera-cpu-{i}"))
                    .spawn(move || worker(&s))
                    .expect("spawn a pool thread")
            })
            .collect();
        ThreadPool {
            shared,
            workers,
            caller: Mutex::new(()),
        }
    }

    /// A pool with one thread per available core.
    pub fn with_available_parallelism() -> ThreadPool {
        Self::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Threads in the pool, the caller included.
    pub fn n_threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `f(task)` for every task in `0..n_tasks` on the pool's threads and
    /// returns when all are done. A panic in a task is re-raised here.
    pub fn run(&self, n_tasks: usize, f: impl Fn(usize) + Sync) {
        if n_tasks == 0 {
            return;
        }
        if self.workers.is_empty() || n_tasks == 1 {
            (0..n_tasks).for_each(f);
            return;
        }
        let _guard = self.caller.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        let f: &(dyn Fn(usize) + Sync) = &f;
        // SAFETY: see `Shared`: the previous job is closed and empty, and `f`
        // outlives its use because we wait for the workers inside to leave.
        unsafe {
            *s.job.get() = Job {
                f: std::mem::transmute::<
                    *const (dyn Fn(usize) + Sync + '_),
                    *const (dyn Fn(usize) + Sync + 'static),
                >(f),
                n_tasks,
            };
        }
        s.next_task.store(0, Relaxed);
        s.done_tasks.store(0, Relaxed);
        let gen = generation(s.state.load(Relaxed)) + 1;
        s.state.store(gen << 32, SeqCst);
        if s.sleepers.load(SeqCst) > 0 {
            let _l = s.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }

        claim_tasks(s, f, n_tasks);
        wait_until(|| s.done_tasks.load(Acquire) == n_tasks);
        s.state.fetch_or(CLOSED, SeqCst);
        wait_until(|| s.state.load(Acquire) & ACTIVE == 0);
        if let Some(p) = s.panicked.lock().unwrap_or_else(|e| e.into_inner()).take() {
            resume_unwind(p);
        }
    }

    /// Splits `0..n` into chunks of at least `min_chunk` items (more chunks
    /// than threads, for balance) and runs `f(range)` for each on the pool.
    pub fn for_chunks(
        &self,
        n: usize,
        min_chunk: usize,
        f: impl Fn(std::ops::Range<usize>) + Sync,
    ) {
        let chunk = chunk_size(n, min_chunk, self.n_threads());
        let n_chunks = n.div_ceil(chunk.max(1));
        self.run(n_chunks, |c| {
            let start = c * chunk;
            f(start..(start + chunk).min(n));
        });
    }
}

/// Chunk size for `n` items over `threads` threads: about 4 chunks per
/// thread so that a late thread's share can be taken by the others, never
/// below `min_chunk`.
pub fn chunk_size(n: usize, min_chunk: usize, threads: usize) -> usize {
    n.div_ceil(threads * 4).max(min_chunk).max(1)
}

/// Claims and runs tasks until none is left. Every claimed task is counted
/// done, even one that panicked (its panic is kept for the caller).
fn claim_tasks(s: &Shared, f: &(dyn Fn(usize) + Sync), n_tasks: usize) {
    loop {
        let t = s.next_task.fetch_add(1, Relaxed);
        if t >= n_tasks {
            return;
        }
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(t))) {
            let mut slot = s.panicked.lock().unwrap_or_else(|e| e.into_inner());
            slot.get_or_insert(p);
        }
        s.done_tasks.fetch_add(1, Release);
    }
}

/// Spins briefly, then yields, until `done()`.
fn wait_until(done: impl Fn() -> bool) {
    let mut spins = 0u32;
    while !done() {
        if spins < 1 << 12 {
            std::hint::spin_loop();
            spins += 1;
        } else {
            std::thread::yield_now();
        }
    }
}

/// Enters the job of generation `gen` if it is still open.
fn try_enter(s: &Shared, gen: u64) -> bool {
    let mut cur = s.state.load(SeqCst);
    loop {
        if generation(cur) != gen || cur & CLOSED != 0 {
            return false;
        }
        match s.state.compare_exchange_weak(cur, cur + 1, SeqCst, SeqCst) {
            Ok(_) => return true,
            Err(now) => cur = now,
        }
    }
}

fn worker(s: &Shared) {
    // Generation 0 is the pool's start: a job posted before this thread got
    // here is still seen as new.
    let mut seen = 0;
    loop {
        // Wait for a new generation: spin, then yield, then sleep.
        let start = Instant::now();
        let mut spins = 0u32;
        while generation(s.state.load(SeqCst)) == seen && !s.shutdown.load(Relaxed) {
            if start.elapsed() < SPIN {
                std::hint::spin_loop();
                spins += 1;
                if spins.is_multiple_of(64) {
                    std::thread::yield_now();
                }
                continue;
            }
            let mut lock = s.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
            s.sleepers.fetch_add(1, SeqCst);
            while generation(s.state.load(SeqCst)) == seen && !s.shutdown.load(SeqCst) {
                lock = s.wake.wait(lock).unwrap_or_else(|e| e.into_inner());
            }
            s.sleepers.fetch_sub(1, SeqCst);
        }
        if s.shutdown.load(SeqCst) {
            return;
        }
        seen = generation(s.state.load(SeqCst));
        if !try_enter(s, seen) {
            continue; // finished or superseded before we got here
        }
        // SAFETY: see `Shared`: the job is fixed while we are inside it.
        let job = unsafe { *s.job.get() };
        let f = unsafe { &*job.f };
        claim_tasks(s, f, job.n_tasks);
        s.state.fetch_sub(1, Release);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.shutdown.store(true, SeqCst);
        {
            let _l = s.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn every_task_runs_once() {
        for threads in [1, 2, 3, 8] {
            let pool = ThreadPool::new(threads);
            for n in [0, 1, 2, 7, 1000] {
                let hits: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
                pool.run(n, |t| {
                    hits[t].fetch_add(1, SeqCst);
                });
                assert!(
                    hits.iter().all(|h| h.load(SeqCst) == 1),
                    "{threads} threads, {n} tasks"
                );
            }
        }
    }

    #[test]
    fn chunks_cover_the_range_exactly() {
        let pool = ThreadPool::new(3);
        for (n, min) in [(0, 1), (1, 1), (10, 3), (1000, 16), (17, 100)] {
            let sum = AtomicU64::new(0);
            let count = AtomicU64::new(0);
            pool.for_chunks(n, min, |r| {
                assert!(r.len() >= min.min(n) || r.end == n);
                count.fetch_add(r.len() as u64, SeqCst);
                sum.fetch_add(r.map(|i| i as u64).sum::<u64>(), SeqCst);
            });
            assert_eq!(count.load(SeqCst), n as u64);
            assert_eq!(sum.load(SeqCst), (0..n as u64).sum::<u64>());
        }
    }

    #[test]
    fn survives_sleeping_workers_and_many_jobs() {
        let pool = ThreadPool::new(4);
        let total = AtomicU64::new(0);
        for round in 0..2000 {
            if round % 500 == 0 {
                // Long enough for the workers to go to sleep.
                std::thread::sleep(Duration::from_millis(5));
            }
            pool.run(8, |_| {
                total.fetch_add(1, SeqCst);
            });
        }
        assert_eq!(total.load(SeqCst), 16000);
    }

    #[test]
    fn a_panicking_task_is_reraised_and_the_pool_still_works() {
        let pool = ThreadPool::new(3);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(64, |t| {
                if t == 40 {
                    panic!("task 40");
                }
            })
        }));
        assert!(r.is_err());
        let n = AtomicU64::new(0);
        pool.run(10, |_| {
            n.fetch_add(1, SeqCst);
        });
        assert_eq!(n.load(SeqCst), 10);
    }
}
