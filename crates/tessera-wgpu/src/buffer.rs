//! Device buffers: the activation arena and the KV cache layers
//! ([`WgpuBuffer`], the backend's [`DeviceBuffer`]), and weights
//! ([`DeviceWeight`]).
//!
//! Reads go through the device's staging buffer and wait for the queue;
//! writes are queued (`write_buffer`) and land before the next submission.
//! Offsets and lengths that are not multiples of 4 bytes are handled by
//! reading the surrounding words first.
//!
//! A weight is one buffer when it fits the device's largest buffer, else
//! chunks that overlap by [`CHUNK_OVERLAP`] bytes (more than any row), so
//! that every run of whole rows lies inside one chunk. Shaders never bind a
//! weight whole: each dispatch binds a window of whole rows no larger than
//! the binding limit (see `exec`), which is how tensors larger than a
//! binding (embeddings, fused expert stacks) are read in pieces.

use std::any::Any;
use std::sync::Arc;

use tessera_core::backend::gpu::GpuError;
use tessera_core::backend::DeviceBuffer;
use tessera_gguf::GgmlType;

use crate::device::{Counted, Gpu};
use crate::error::{Result, WgpuError};

/// Bytes shared by consecutive chunks of a weight larger than a buffer
/// (at most a quarter of a chunk): a row longer than this cannot be read
/// from a chunked weight (an error, not a wrong result).
pub const CHUNK_OVERLAP: u64 = 4 << 20;

/// A buffer in device memory.
pub struct WgpuBuffer {
    pub(crate) gpu: Arc<Gpu>,
    pub(crate) buf: wgpu::Buffer,
    pub(crate) len: usize,
    _counted: Counted,
}

impl WgpuBuffer {
    /// A zeroed buffer of `len` bytes.
    pub(crate) fn new(gpu: Arc<Gpu>, label: &str, len: usize) -> Result<WgpuBuffer> {
        let buf = gpu.storage_buffer(label, len as u64)?;
        let _counted = gpu.count(buf.size());
        Ok(WgpuBuffer {
            gpu,
            buf,
            len,
            _counted,
        })
    }

    /// The wgpu buffer.
    pub fn raw(&self) -> &wgpu::Buffer {
        &self.buf
    }

    fn check_range(&self, offset: usize, n: usize) -> Result<()> {
        Ok(GpuError::check_range(&self.gpu.name, offset, n, self.len)?)
    }

    fn write_bytes(&mut self, offset: usize, src: &[u8]) -> Result<()> {
        self.check_range(offset, src.len())?;
        if src.is_empty() {
            return Ok(());
        }
        if offset.is_multiple_of(4) && src.len().is_multiple_of(4) {
            self.gpu.write(&self.buf, offset as u64, src);
            return Ok(());
        }
        // Unaligned: read the covering words, patch, write them back.
        let start = offset & !3;
        let end = (offset + src.len())
            .next_multiple_of(4)
            .min(self.buf.size() as usize);
        let mut words = vec![0u8; end - start];
        self.gpu.read(&self.buf, start as u64, &mut words)?;
        words[offset - start..offset - start + src.len()].copy_from_slice(src);
        self.gpu.write(&self.buf, start as u64, &words);
        Ok(())
    }
}

impl DeviceBuffer for WgpuBuffer {
    fn len(&self) -> usize {
        self.len
    }

    fn write(&mut self, offset: usize, src: &[u8]) -> tessera_core::Result<()> {
        Ok(self.write_bytes(offset, src)?)
    }

    fn read(&self, offset: usize, dst: &mut [u8]) -> tessera_core::Result<()> {
        self.check_range(offset, dst.len())?;
        Ok(self.gpu.read(&self.buf, offset as u64, dst)?)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// One buffer of a weight: its bytes `start..start + buf.size()`.
pub struct Chunk {
    /// Byte offset of the chunk in the weight.
    pub start: u64,
    /// The buffer.
    pub buf: wgpu::Buffer,
    /// Bytes of the weight in it.
    pub len: u64,
    /// Its bytes in the device's count.
    pub counted: Counted,
}

/// A weight in device memory: [`tessera_core::backend::WeightData::Device`]
/// holds one.
pub struct DeviceWeight {
    /// The weight's name.
    pub name: String,
    /// Its type.
    pub ggml_type: GgmlType,
    /// Its bytes.
    pub bytes: u64,
    /// Its buffers (one unless larger than the device's largest buffer).
    pub chunks: Vec<Chunk>,
}

impl DeviceWeight {
    /// Uploads `bytes` to `gpu`.
    pub(crate) fn upload(
        gpu: &Gpu,
        name: &str,
        ggml_type: GgmlType,
        bytes: &[u8],
    ) -> Result<DeviceWeight> {
        let max = gpu.max_weight_buffer();
        let total = bytes.len() as u64;
        let mut chunks = Vec::new();
        if total <= max {
            let buf = gpu.upload(name, bytes)?;
            chunks.push(Chunk {
                start: 0,
                counted: gpu.count(buf.size()),
                buf,
                len: total,
            });
        } else {
            let overlap = CHUNK_OVERLAP.min(max / 4) & !255;
            if overlap == 0 {
                return Err(WgpuError::TooLarge {
                    device: gpu.name.clone(),
                    what: format!("weight {name}"),
                    bytes: total,
                    limit: max,
                });
            }
            let step = max - overlap;
            let mut start = 0u64;
            while start < total {
                let end = (start + max).min(total);
                let label = format!("{name}[{start}..{end}]");
                let buf = gpu.upload(&label, &bytes[start as usize..end as usize])?;
                chunks.push(Chunk {
                    start,
                    counted: gpu.count(buf.size()),
                    buf,
                    len: end - start,
                });
                if end == total {
                    break;
                }
                start += step;
            }
        }
        Ok(DeviceWeight {
            name: name.to_string(),
            ggml_type,
            bytes: total,
            chunks,
        })
    }

    /// The chunk holding bytes `a..b` entirely, and the offset of `a` in it.
    pub(crate) fn chunk_for(&self, a: u64, b: u64) -> Option<(&Chunk, u64)> {
        self.chunks
            .iter()
            .find(|c| a >= c.start && b <= c.start + c.len)
            .map(|c| (c, a - c.start))
    }
}
