//! Host memory: the mapped model file ([`HostSlice`]) and 64-byte aligned
//! buffers ([`HostBuffer`]) that the CPU backend computes in.

use std::any::Any;
use std::sync::Arc;

use crate::backend::DeviceBuffer;
use crate::error::{CoreError, Result};

/// Bytes inside a shared owner (the memory-mapped model, or a vector),
/// kept alive by an `Arc`, so weights can be borrowed for the life of the
/// model without copies or lifetimes.
#[derive(Clone)]
pub struct HostSlice {
    _owner: Arc<dyn Any + Send + Sync>,
    ptr: *const u8,
    len: usize,
}

// SAFETY: the bytes are immutable and owned by `_owner`, which is Send + Sync.
unsafe impl Send for HostSlice {}
unsafe impl Sync for HostSlice {}

impl HostSlice {
    /// The bytes `select(&owner)` returns. They are borrowed from the
    /// `Arc`'s contents, which never move or change while the `Arc` lives
    /// (the types used here — a `GgufModel`, a `Vec<u8>` — have no interior
    /// mutability), so the slice stays valid as long as this value.
    pub fn new<T: Any + Send + Sync>(owner: Arc<T>, select: impl FnOnce(&T) -> &[u8]) -> HostSlice {
        let bytes = select(&owner);
        let (ptr, len) = (bytes.as_ptr(), bytes.len());
        HostSlice {
            _owner: owner,
            ptr,
            len,
        }
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` was borrowed from `_owner`'s contents, which
        // are alive and unchanged while `_owner` is (see `new`).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl std::fmt::Debug for HostSlice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostSlice({} bytes)", self.len)
    }
}

/// A zeroed, 64-byte aligned host buffer.
pub struct HostBuffer {
    words: Vec<Align64>,
    len: usize,
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Align64([u8; 64]);

impl Default for Align64 {
    fn default() -> Self {
        Align64([0; 64])
    }
}

impl HostBuffer {
    /// `bytes` zeroed bytes.
    pub fn new(bytes: usize) -> Result<HostBuffer> {
        let n = bytes.div_ceil(64);
        let mut words = Vec::new();
        words.try_reserve_exact(n).map_err(|_| CoreError::Backend {
            device: "cpu".into(),
            reason: format!("cannot allocate {bytes} bytes"),
        })?;
        words.resize(n, Align64::default());
        Ok(HostBuffer { words, len: bytes })
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `Align64` is plain bytes; `len <= 64 * words.len()`.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast(), self.len) }
    }

    /// The bytes, mutably.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast(), self.len) }
    }

    /// Raw base pointer (for the CPU backend's disjoint views).
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.words.as_mut_ptr().cast()
    }

    fn range(&self, offset: usize, n: usize) -> Result<std::ops::Range<usize>> {
        match offset.checked_add(n) {
            Some(end) if end <= self.len => Ok(offset..end),
            _ => Err(CoreError::Backend {
                device: "cpu".into(),
                reason: format!(
                    "access of {n} bytes at {offset} outside a buffer of {}",
                    self.len
                ),
            }),
        }
    }
}

impl DeviceBuffer for HostBuffer {
    fn len(&self) -> usize {
        self.len
    }

    fn write(&mut self, offset: usize, src: &[u8]) -> Result<()> {
        let r = self.range(offset, src.len())?;
        self.bytes_mut()[r].copy_from_slice(src);
        Ok(())
    }

    fn read(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        let r = self.range(offset, dst.len())?;
        dst.copy_from_slice(&self.bytes()[r]);
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
