//! Fuzzes the GGUF parser: `tessera_gguf::parse` must return `Ok` or `Err`
//! for any bytes, never panic, abort or allocate far more than the input's
//! size. When the bytes parse, the file is also opened with
//! `GgufFile::from_vec` and every tensor's data is read through
//! `tensor_data`, so a range the validator let through that does not fit the
//! file shows up as a panic.
//!
//! Allocation is watched by a counting global allocator: live heap bytes may
//! grow by at most [`ALLOC_FACTOR`] times the input size (plus a small
//! constant) during one run, or the run aborts, which libFuzzer reports as
//! a crash.

#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use libfuzzer_sys::fuzz_target;
use tessera_gguf::{parse, GgufFile};

/// Most heap bytes one run may hold, per input byte (the parser's own
/// bound is a small multiple; the input is also copied once).
const ALLOC_FACTOR: usize = 64;
/// Allowance on top, for fixed costs (hash-map seeds, error strings).
const ALLOC_SLACK: usize = 64 * 1024;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

struct Counting;

impl Counting {
    fn grow(size: usize) {
        let live = LIVE.fetch_add(size, Relaxed) + size;
        if live > LIMIT.load(Relaxed) {
            // No formatting here: it could allocate.
            let _ = std::io::stderr().write_all(b"fuzz/parse: allocation limit exceeded\n");
            std::process::abort();
        }
    }
}

// SAFETY: every call forwards to `System` with the same arguments; the
// counters have no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::grow(layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::grow(layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            Self::grow(new_size - layout.size());
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Relaxed);
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fuzz_target!(|data: &[u8]| {
    let budget = data
        .len()
        .saturating_mul(ALLOC_FACTOR)
        .saturating_add(ALLOC_SLACK);
    LIMIT.store(LIVE.load(Relaxed).saturating_add(budget), Relaxed);

    if let Ok(header) = parse(data) {
        let file = GgufFile::from_vec(data.to_vec()).expect("parse accepted these bytes");
        assert_eq!(file.tensors(), header.tensors.as_slice());
        assert!(file.data_offset() <= file.size() || file.tensors().is_empty());
        let mut sum = 0u64;
        for t in file.tensors() {
            let bytes = file.tensor_data(t);
            assert_eq!(bytes.len() as u64, t.n_bytes, "{}", t.name);
            assert!(t.n_elements > 0 && t.dims.len() <= tessera_gguf::MAX_DIMS);
            sum = bytes
                .iter()
                .fold(sum, |acc, &b| acc.wrapping_add(u64::from(b)));
        }
        for (key, value) in file.metadata().iter() {
            black_box((key.len(), value.type_name()));
        }
        black_box(sum);
    }

    LIMIT.store(usize::MAX, Relaxed);
});
