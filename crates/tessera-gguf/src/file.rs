//! One GGUF file on disk, memory-mapped, with zero-copy tensor views.

use std::fs::File;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{GgufError, Result};
use crate::metadata::Metadata;
use crate::parse::{parse, Header, TensorInfo};

/// The bytes of a file: a read-only map of it, or an owned buffer.
enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// A validated GGUF file whose tensor data is read in place.
pub struct GgufFile {
    path: PathBuf,
    bytes: Bytes,
    header: Header,
}

impl GgufFile {
    /// Maps and validates the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| GgufError::io(path, e))?;
        // SAFETY: the map is read-only. A process that truncates or rewrites
        // the file while it is mapped can still change or fault the pages, as
        // with every mmap-based model loader; tessera never writes to files
        // it has mapped.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| GgufError::io(path, e))?;
        Self::from_bytes_at(path.to_path_buf(), Bytes::Mapped(map))
    }

    /// Validates a GGUF file held in memory (tests, fuzzing, downloads).
    pub fn from_vec(bytes: Vec<u8>) -> Result<Self> {
        Self::from_bytes_at(PathBuf::from("<memory>"), Bytes::Owned(bytes))
    }

    fn from_bytes_at(path: PathBuf, bytes: Bytes) -> Result<Self> {
        let header = parse(&bytes)?;
        Ok(GgufFile {
            path,
            bytes,
            header,
        })
    }

    /// Where the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// File size in bytes.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.header.version
    }

    /// The metadata table.
    pub fn metadata(&self) -> &Metadata {
        &self.header.metadata
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    /// Data alignment in bytes.
    pub fn alignment(&self) -> u64 {
        self.header.alignment
    }

    /// Absolute offset of the tensor data section.
    pub fn data_offset(&self) -> u64 {
        self.header.data_offset
    }

    /// The bytes of `tensor` (which must come from this file), without copying.
    ///
    /// # Panics
    ///
    /// If `tensor` describes a range outside this file, which a
    /// [`TensorInfo`] from [`GgufFile::tensors`] never does.
    pub fn tensor_data(&self, tensor: &TensorInfo) -> &[u8] {
        // Ranges were validated against the file size by `parse`.
        let start = (self.header.data_offset + tensor.offset) as usize;
        &self.bytes[start..start + tensor.n_bytes as usize]
    }
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.header.version)
            .field("metadata", &self.header.metadata.len())
            .field("tensors", &self.header.tensors.len())
            .finish()
    }
}
