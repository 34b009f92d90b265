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
//!
//! Pinning ([`ThreadPool::pinned`]): each worker pins itself to one CPU of a
//! list (round-robin) before it takes its first job; the calling thread is
//! never pinned, since one caller drives the pools of several devices. The
//! protocol above is unchanged: a pinned worker is just a worker. The
//! affinity helpers ([`pin_current_thread`], [`thread_affinity`]) live here
//! because this is the lowest crate that spawns threads; `tessera-core`'s
//! `numa` module builds node topology on them.

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
    /// The CPUs the workers were pinned to (empty: not pinned).
    cpus: Vec<usize>,
    /// Why pinning failed, for the first worker it failed for.
    pin_error: Option<String>,
}

fn noop(_: usize) {}

impl ThreadPool {
    /// A pool of `n_threads` threads in all (at least 1).
    pub fn new(n_threads: usize) -> ThreadPool {
        Self::build(n_threads, &[])
    }

    /// A pool of `n_threads` threads in all (at least 1) whose workers are
    /// pinned round-robin to `cpus`: worker `i` (thread `tessera-cpu-{i}`) to
    /// `cpus[(i + 1) % cpus.len()]`, leaving `cpus[0]` to the caller's share
    /// when there are as many CPUs as threads. The *calling* thread is not
    /// pinned: it may drive several devices' pools in turn, and runs where
    /// the OS puts it.
    ///
    /// Each worker pins itself as it starts, and this returns once all have
    /// tried. A pin the OS refuses (a CPU outside the process's cpuset, no
    /// `sched_setaffinity` on this OS) leaves that worker unpinned and the
    /// pool fully working; [`ThreadPool::pin_error`] says why. Empty `cpus`
    /// is [`ThreadPool::new`].
    pub fn pinned(n_threads: usize, cpus: &[usize]) -> ThreadPool {
        Self::build(n_threads, cpus)
    }

    fn build(n_threads: usize, cpus: &[usize]) -> ThreadPool {
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
        let (pinned_tx, pinned_rx) = std::sync::mpsc::channel();
        let workers = (0..n_workers)
            .map(|i| {
                let s = Arc::clone(&shared);
                let cpu = (!cpus.is_empty()).then(|| cpus[(i + 1) % cpus.len()]);
                let pinned_tx = pinned_tx.clone();
                std::thread::Builder::new()
                    .name(format!("tessera-cpu-{i}"))
                    .spawn(move || {
                        if let Some(cpu) = cpu {
                            let r = pin_current_thread(&[cpu])
                                .map_err(|e| format!("worker {i} on cpu {cpu}: {e}"));
                            let _ = pinned_tx.send(r);
                        }
                        drop(pinned_tx);
                        worker(&s)
                    })
                    .expect("spawn a pool thread")
            })
            .collect();
        drop(pinned_tx);
        // When pinning, every worker sends its result: wait for all of them
        // (the channel closes once every worker has started) and keep the
        // first failure.
        let mut pin_error = None;
        if !cpus.is_empty() {
            for r in pinned_rx.iter() {
                if let Err(e) = r {
                    pin_error.get_or_insert(e);
                }
            }
        }
        ThreadPool {
            shared,
            workers,
            caller: Mutex::new(()),
            cpus: cpus.to_vec(),
            pin_error,
        }
    }

    /// The CPUs the workers were asked to be pinned to (empty: unpinned).
    pub fn cpus(&self) -> &[usize] {
        &self.cpus
    }

    /// Why a worker could not be pinned (the first failure), if one could
    /// not; `None` for an unpinned pool or one whose pins all took.
    pub fn pin_error(&self) -> Option<&str> {
        self.pin_error.as_deref()
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

/// Largest CPU number the affinity helpers handle (Linux's `NR_CPUS` is at
/// most 8192).
const MAX_CPUS: usize = 1 << 16;

/// Pins the calling thread to `cpus` (`sched_setaffinity`). Err with the
/// OS's reason (e.g. a CPU outside the process's cpuset), or on an OS
/// without thread affinity; the thread's mask is unchanged then.
pub fn pin_current_thread(cpus: &[usize]) -> Result<(), String> {
    if cpus.is_empty() {
        return Err("no CPUs to pin to".into());
    }
    if let Some(&c) = cpus.iter().find(|&&c| c >= MAX_CPUS) {
        return Err(format!("cpu {c} out of range"));
    }
    sys::set_affinity(cpus)
}

/// The CPUs thread `tid` may run on (`sched_getaffinity`), sorted: `tid` 0
/// is the calling thread, a process id is that process's main thread. Err
/// with the OS's reason, or on an OS without thread affinity.
pub fn thread_affinity(tid: i32) -> Result<Vec<usize>, String> {
    sys::get_affinity(tid)
}

#[cfg(target_os = "linux")]
mod sys {
    use super::MAX_CPUS;

    const WORD: usize = 8 * std::mem::size_of::<libc::c_ulong>();

    pub fn set_affinity(cpus: &[usize]) -> Result<(), String> {
        let max = cpus.iter().copied().max().unwrap_or(0);
        // At least a whole cpu_set_t: the kernel reads `size` bytes.
        let words = (max / WORD + 1).max(std::mem::size_of::<libc::cpu_set_t>() / (WORD / 8));
        let mut mask = vec![0 as libc::c_ulong; words];
        for &c in cpus {
            mask[c / WORD] |= 1 << (c % WORD);
        }
        // SAFETY: `mask` is `words` initialised words, the size we pass; the
        // kernel only reads it.
        let r = unsafe {
            libc::sched_setaffinity(
                0,
                words * (WORD / 8),
                mask.as_ptr().cast::<libc::cpu_set_t>(),
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error().to_string())
        }
    }

    pub fn get_affinity(tid: i32) -> Result<Vec<usize>, String> {
        // The kernel wants room for all of its possible CPUs (EINVAL
        // otherwise): start at a cpu_set_t (1024) and grow.
        let mut words = std::mem::size_of::<libc::cpu_set_t>() / (WORD / 8);
        loop {
            let mut mask = vec![0 as libc::c_ulong; words];
            // SAFETY: the kernel writes at most `words` words into `mask`.
            let r = unsafe {
                libc::sched_getaffinity(
                    tid,
                    words * (WORD / 8),
                    mask.as_mut_ptr().cast::<libc::cpu_set_t>(),
                )
            };
            if r == 0 {
                let cpus = (0..words * WORD)
                    .filter(|&c| mask[c / WORD] >> (c % WORD) & 1 == 1)
                    .collect();
                return Ok(cpus);
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINVAL) && words * WORD < MAX_CPUS {
                words *= 2;
                continue;
            }
            return Err(e.to_string());
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    pub fn set_affinity(_cpus: &[usize]) -> Result<(), String> {
        Err("thread affinity is not supported on this OS".into())
    }

    pub fn get_affinity(_tid: i32) -> Result<Vec<usize>, String> {
        Err("thread affinity is not supported on this OS".into())
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

    #[test]
    fn a_pinned_pool_computes_like_an_unpinned_one() {
        let cpus = thread_affinity(0).unwrap_or_default();
        let sum = |pool: &ThreadPool| {
            let total = AtomicU64::new(0);
            pool.for_chunks(100_000, 64, |r| {
                total.fetch_add(r.map(|i| i as u64 * 3).sum::<u64>(), SeqCst);
            });
            total.load(SeqCst)
        };
        let pinned = ThreadPool::pinned(2, &cpus);
        assert_eq!(pinned.n_threads(), 2);
        assert_eq!(sum(&pinned), sum(&ThreadPool::new(2)));
        assert_eq!(sum(&pinned), 3 * (0..100_000u64).sum::<u64>());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn workers_are_pinned_and_the_caller_is_not() {
        let before = thread_affinity(0).expect("sched_getaffinity");
        // Ask for the CPUs in reverse, so that worker 0 gets a CPU it could
        // not have by accident of numbering when there are several.
        let cpus: Vec<usize> = before.iter().rev().copied().collect();
        let pool = ThreadPool::pinned(3, &cpus);
        assert_eq!(pool.cpus(), &cpus[..]);
        assert_eq!(pool.pin_error(), None, "pinning to our own CPUs");
        // Each thread records its mask from inside a task; a worker may miss
        // a job (the caller can finish it first), so retry a few times.
        let seen: Mutex<std::collections::BTreeMap<String, Vec<usize>>> = Default::default();
        for _ in 0..200 {
            pool.run(16, |_| {
                let name = std::thread::current().name().unwrap_or("").to_string();
                let mask = thread_affinity(0).expect("sched_getaffinity");
                seen.lock().unwrap().insert(name, mask);
                std::thread::sleep(Duration::from_micros(200));
            });
            let s = seen.lock().unwrap();
            if s.contains_key("tessera-cpu-0") && s.contains_key("tessera-cpu-1") {
                break;
            }
        }
        let seen = seen.into_inner().unwrap();
        for i in 0..2 {
            let name = format!("tessera-cpu-{i}");
            let mask = seen.get(&name).expect("worker ran a task");
            assert_eq!(mask, &vec![cpus[(i + 1) % cpus.len()]], "{name}");
        }
        assert_eq!(thread_affinity(0).unwrap(), before, "caller left unpinned");
    }

    #[test]
    fn a_refused_pin_leaves_a_working_pool() {
        // No machine has CPU 60000 in its mask (and it is under MAX_CPUS).
        let pool = ThreadPool::pinned(2, &[60_000]);
        #[cfg(target_os = "linux")]
        assert!(pool.pin_error().is_some_and(|e| e.contains("cpu 60000")));
        let n = AtomicU64::new(0);
        pool.run(50, |_| {
            n.fetch_add(1, SeqCst);
        });
        assert_eq!(n.load(SeqCst), 50);
        assert!(pin_current_thread(&[]).is_err());
        assert!(pin_current_thread(&[MAX_CPUS]).is_err());
    }
}
