//! Writing a synthetic model to a file one tensor at a time, so models of
//! several GB (benchmark models) need no more memory than their largest
//! tensor.
//!
//! Two passes over a temporary file, with `tessera-gguf` deciding the layout:
//!
//! 1. the [`GgufWriter`] writes the header with every tensor's data borrowed
//!    from one shared zero buffer, through [`SparseFile`], which skips all-zero
//!    writes (the file gets holes that read as zeros);
//! 2. the file is re-opened with [`GgufFile`] for the tensor offsets, and each
//!    tensor's bytes are made and written at its offset.
//!
//! The result is byte-identical to writing the in-memory model
//! ([`super::to_bytes`]): the header is the writer's, and the data section is
//! the same bytes at the same offsets.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tessera_gguf::{GgmlType, GgufFile, GgufWriter, Metadata};

use super::{SynthError, TensorSpec};

/// A file written sequentially in which runs of zero bytes are skipped
/// instead of written (holes read back as zeros).
struct SparseFile {
    file: File,
    pos: u64,
}

impl Write for SparseFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.iter().any(|&b| b != 0) {
            self.file.seek(SeekFrom::Start(self.pos))?;
            self.file.write_all(buf)?;
        }
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SynthError + '_ {
    move |source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes the model with metadata `metadata` and `tensors` (in file order,
/// with storage types) to `path`; `data(t, ty)` makes a tensor's bytes when
/// its turn comes.
pub(super) fn write(
    metadata: Metadata,
    tensors: &[(TensorSpec, GgmlType)],
    data: impl Fn(&TensorSpec, GgmlType) -> Vec<u8>,
    path: &Path,
) -> Result<(), SynthError> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".partial");
    let tmp: PathBuf = path.with_file_name(tmp_name);
    let result = write_layout(metadata, tensors, &tmp)
        .and_then(|()| fill(tensors, data, &tmp))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(io_err(path)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Pass 1: the header, and holes where the tensor data goes.
fn write_layout(
    metadata: Metadata,
    tensors: &[(TensorSpec, GgmlType)],
    tmp: &Path,
) -> Result<(), SynthError> {
    let size = |(t, ty): &(TensorSpec, GgmlType)| {
        let rows: u64 = t.dims[1..].iter().product();
        ty.row_bytes(t.dims[0]).map_or(0, |r| (r * rows) as usize)
    };
    // Zero pages are mapped lazily: this costs no memory until written.
    let zeros = vec![0u8; tensors.iter().map(size).max().unwrap_or(0)];
    let mut layout = GgufWriter::new();
    *layout.metadata_mut() = metadata;
    for t in tensors {
        layout.add_tensor(t.0.name.clone(), t.1, &t.0.dims, &zeros[..size(t)])?;
    }
    let file = File::create(tmp).map_err(io_err(tmp))?;
    let mut sparse = SparseFile { file, pos: 0 };
    layout.write(&mut sparse)?;
    sparse.file.set_len(sparse.pos).map_err(io_err(tmp))
}

/// Pass 2: every tensor's bytes at the offset the header gives it.
fn fill(
    tensors: &[(TensorSpec, GgmlType)],
    data: impl Fn(&TensorSpec, GgmlType) -> Vec<u8>,
    tmp: &Path,
) -> Result<(), SynthError> {
    let (data_offset, offsets) = {
        let parsed = GgufFile::open(tmp)?;
        let offsets: Vec<u64> = parsed.tensors().iter().map(|t| t.offset).collect();
        (parsed.data_offset(), offsets)
    };
    let file = OpenOptions::new()
        .write(true)
        .open(tmp)
        .map_err(io_err(tmp))?;
    for ((t, ty), off) in tensors.iter().zip(offsets) {
        file.write_all_at(&data(t, *ty), data_offset + off)
            .map_err(io_err(tmp))?;
    }
    Ok(())
}
