//! Typed errors of the GGUF reader and writer.
//!
//! Every parse error carries the byte offset where the problem was found and,
//! where there is one, the metadata key or tensor name it belongs to, so that
//! a user can tell *what* is wrong and *where* without a hex editor.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = GgufError> = std::result::Result<T, E>;

/// What can go wrong reading or writing a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened, mapped or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: magic is {found:02x?}, expected \"GGUF\"")]
    BadMagic { found: [u8; 4] },

    /// The file is a big-endian GGUF, which this reader refuses.
    #[error("big-endian GGUF (version {version}) is not supported; convert it to little-endian")]
    BigEndian { version: u32 },

    /// A version other than 2 or 3.
    #[error("unsupported GGUF version {version} (supported: 2, 3)")]
    UnsupportedVersion { version: u32 },

    /// The file ends before a structure that should be there.
    #[error("truncated file: {what} needs {needed} bytes at offset {offset}, but the file is {file_size} bytes")]
    Truncated {
        what: String,
        offset: u64,
        needed: u64,
        file_size: u64,
    },

    /// A count (of metadata, tensors, array elements, dims) that cannot fit in the file.
    #[error("{what} at offset {offset} is {count}, more than the {remaining} bytes left in the file can hold")]
    CountTooLarge {
        what: String,
        offset: u64,
        count: u64,
        remaining: u64,
    },

    /// A string that is not UTF-8.
    #[error("{what} at offset {offset} is not valid UTF-8")]
    BadUtf8 { what: String, offset: u64 },

    /// A metadata value type id that GGUF does not define.
    #[error("metadata key '{key}': unknown value type {type_id} at offset {offset}")]
    UnknownValueType {
        key: String,
        type_id: u32,
        offset: u64,
    },

    /// Arrays nested deeper than the reader allows.
    #[error("metadata key '{key}': arrays nested deeper than {max} levels at offset {offset}")]
    NestingTooDeep {
        key: String,
        max: usize,
        offset: u64,
    },

    /// The same metadata key twice.
    #[error("metadata key '{key}' appears twice (second at offset {offset})")]
    DuplicateKey { key: String, offset: u64 },

    /// A metadata value that breaks a rule of the format (e.g. a bad `general.alignment`).
    #[error("metadata key '{key}': {reason}")]
    BadMetadata { key: String, reason: String },

    /// A GGML tensor type id that this crate does not know.
    #[error("tensor '{tensor}': unknown GGML type id {type_id} at offset {offset}")]
    UnknownTensorType {
        tensor: String,
        type_id: u32,
        offset: u64,
    },

    /// A tensor whose description is invalid (dims, offset, overlap, alignment …).
    #[error("tensor '{tensor}': {reason}")]
    BadTensor { tensor: String, reason: String },

    /// A split model whose shards do not fit together.
    #[error("split model {path}: {reason}")]
    BadSplit { path: PathBuf, reason: String },

    /// A metadata key that was asked for is missing.
    #[error("metadata key '{key}' is missing")]
    MissingKey { key: String },

    /// A metadata key that was asked for has another type.
    #[error("metadata key '{key}' is {found}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },

    /// The writer was given something it cannot write.
    #[error("writer: {0}")]
    Write(String),
}

impl GgufError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        GgufError::Io {
            path: path.into(),
            source,
        }
    }
}
