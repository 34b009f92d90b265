//! Device memory: the activation arena and KV cache layers ([`CudaBuffer`],
//! the backend's [`DeviceBuffer`]), weights ([`DeviceWeight`]) and the
//! pinned host buffers uploads go through ([`Staging`]).
//!
//! Every copy is queued on the device's one stream; reads wait for it, so
//! a read sees every kernel queued before it. Weights are uploaded through
//! two pinned (page-locked) buffers in turn: the host fills one while the
//! device copies from the other, which is what makes the copies
//! asynchronous (copies from pageable memory are staged by the driver).

use std::any::Any;
use std::sync::Arc;

use cudarc::driver::{CudaEvent, CudaSlice, DevicePtr, PinnedHostSlice};
use tessera_core::backend::gpu::GpuError;
use tessera_core::backend::DeviceBuffer;
use tessera_gguf::GgmlType;

use crate::device::Gpu;
use crate::error::Result;

/// Bytes of each of the two pinned upload buffers.
pub const STAGING_BYTES: usize = 16 << 20;

/// `bytes` of device memory (at least 4, so that an empty tensor still has
/// an address), counted on `gpu`.
fn alloc(gpu: &Gpu, bytes: usize, zeroed: bool, what: &str) -> Result<CudaSlice<u8>> {
    let n = bytes.max(4);
    let r = if zeroed {
        gpu.stream.alloc_zeros::<u8>(n)
    } else {
        // SAFETY: the caller overwrites every byte before any kernel reads
        // it (weights are uploaded whole right after).
        unsafe { gpu.stream.alloc::<u8>(n) }
    };
    let b = r.map_err(|e| gpu.err(&format!("allocating {bytes} bytes for {what}"), e))?;
    gpu.count(n as u64, true);
    Ok(b)
}

/// The raw device address of `buf` (for kernel arguments).
pub(crate) fn addr(gpu: &Gpu, buf: &CudaSlice<u8>) -> u64 {
    // Event tracking is off (see `Gpu::open`): the guard records nothing.
    let (p, _guard) = buf.device_ptr(&gpu.stream);
    p
}

/// A buffer in device memory.
pub struct CudaBuffer {
    pub(crate) gpu: Arc<Gpu>,
    pub(crate) buf: CudaSlice<u8>,
    pub(crate) len: usize,
}

impl CudaBuffer {
    /// A zeroed buffer of `len` bytes.
    pub fn new(gpu: Arc<Gpu>, len: usize) -> Result<CudaBuffer> {
        let buf = alloc(&gpu, len, true, "a buffer")?;
        Ok(CudaBuffer { gpu, buf, len })
    }

    /// The device address of byte 0.
    pub fn addr(&self) -> u64 {
        addr(&self.gpu, &self.buf)
    }

    fn check_range(&self, offset: usize, n: usize) -> Result<()> {
        Ok(GpuError::check_range(&self.gpu.name, offset, n, self.len)?)
    }

    fn write_bytes(&mut self, offset: usize, src: &[u8]) -> Result<()> {
        self.check_range(offset, src.len())?;
        if src.is_empty() {
            return Ok(());
        }
        let mut view = self.buf.slice_mut(offset..offset + src.len());
        self.gpu
            .stream
            .memcpy_htod(src, &mut view)
            .map_err(|e| self.gpu.err("writing a buffer", e))?;
        // The source is pageable host memory the caller may free at once.
        self.gpu.sync()
    }

    fn read_bytes(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        self.check_range(offset, dst.len())?;
        if dst.is_empty() {
            return Ok(());
        }
        let view = self.buf.slice(offset..offset + dst.len());
        self.gpu
            .stream
            .memcpy_dtoh(&view, dst)
            .map_err(|e| self.gpu.err("reading a buffer", e))?;
        self.gpu.sync()
    }
}

impl Drop for CudaBuffer {
    fn drop(&mut self) {
        self.gpu.count(self.buf.len() as u64, false);
    }
}

impl DeviceBuffer for CudaBuffer {
    fn len(&self) -> usize {
        self.len
    }

    fn write(&mut self, offset: usize, src: &[u8]) -> tessera_core::Result<()> {
        Ok(self.write_bytes(offset, src)?)
    }

    fn read(&self, offset: usize, dst: &mut [u8]) -> tessera_core::Result<()> {
        Ok(self.read_bytes(offset, dst)?)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A weight in device memory, in its GGUF layout.
pub struct DeviceWeight {
    pub(crate) gpu: Arc<Gpu>,
    pub(crate) buf: CudaSlice<u8>,
    /// The tensor's name.
    pub name: String,
    /// Its type.
    pub ggml_type: GgmlType,
    /// Its size, bytes.
    pub bytes: usize,
}

impl DeviceWeight {
    /// Uploads `data` through `staging`.
    pub fn upload(
        gpu: Arc<Gpu>,
        staging: &mut Staging,
        name: &str,
        ggml_type: GgmlType,
        data: &[u8],
    ) -> Result<DeviceWeight> {
        let mut buf = alloc(&gpu, data.len(), false, name)?;
        staging.upload(&gpu, data, &mut buf)?;
        Ok(DeviceWeight {
            gpu,
            buf,
            name: name.to_string(),
            ggml_type,
            bytes: data.len(),
        })
    }

    /// The device address of byte 0.
    pub fn addr(&self) -> u64 {
        addr(&self.gpu, &self.buf)
    }
}

impl Drop for DeviceWeight {
    fn drop(&mut self) {
        self.gpu.count(self.buf.len() as u64, false);
    }
}

/// Two pinned host buffers that uploads alternate between, each with the
/// event of the last copy out of it.
#[derive(Default)]
pub struct Staging {
    bufs: Vec<(PinnedHostSlice<u8>, Option<CudaEvent>)>,
}

impl Staging {
    /// Copies `data` to the start of `dst`.
    fn upload(&mut self, gpu: &Gpu, data: &[u8], dst: &mut CudaSlice<u8>) -> Result<()> {
        if self.bufs.is_empty() {
            for _ in 0..2 {
                // SAFETY: the memory is written before it is copied from.
                let p = unsafe { gpu.ctx.alloc_pinned::<u8>(STAGING_BYTES) }
                    .map_err(|e| gpu.err("allocating pinned host memory", e))?;
                self.bufs.push((p, None));
            }
        }
        for (i, chunk) in data.chunks(STAGING_BYTES).enumerate() {
            let (pinned, done) = &mut self.bufs[i % 2];
            if let Some(ev) = done.take() {
                ev.synchronize()
                    .map_err(|e| gpu.err("waiting for an upload", e))?;
            }
            let host = pinned
                .as_mut_slice()
                .map_err(|e| gpu.err("mapping pinned memory", e))?;
            host[..chunk.len()].copy_from_slice(chunk);
            let at = i * STAGING_BYTES;
            let mut view = dst.slice_mut(at..at + chunk.len());
            // A plain slice of the pinned memory: the copy is a true
            // asynchronous DMA; the event says when the buffer is free.
            gpu.stream
                .memcpy_htod(&host[..chunk.len()], &mut view)
                .map_err(|e| gpu.err("uploading a weight", e))?;
            *done = Some(
                gpu.stream
                    .record_event(None)
                    .map_err(|e| gpu.err("recording an event", e))?,
            );
        }
        gpu.sync()
    }
}
