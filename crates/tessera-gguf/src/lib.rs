//! GGUF for tessera: a validating, zero-copy reader, a writer, and the table
//! of tensor-name conventions every other part of tessera uses.
//!
//! ```no_run
//! let model = tessera_gguf::GgufModel::open("model.gguf")?;
//! println!("{} with {} parameters", model.metadata().architecture()?, model.parameter_count());
//! # Ok::<(), tessera_gguf::GgufError>(())
//! ```
//!
//! - [`parse`] turns bytes into a validated [`Header`]; it is what the fuzzer drives.
//! - [`GgufFile`] is one mapped file; [`GgufModel`] a model, possibly split over shards.
//! - [`GgufWriter`] writes v3 files.
//! - [`names`] parses tensor names into layer, role and expert information.

mod error;
mod file;
mod ggml_type;
mod metadata;
mod model;
pub mod names;
mod parse;
mod value;
mod writer;

pub use error::{GgufError, Result};
pub use file::GgufFile;
pub use ggml_type::GgmlType;
pub use metadata::{Metadata, DEFAULT_ALIGNMENT, KEY_ALIGNMENT, KEY_ARCHITECTURE};
pub use model::{
    shard_paths, GgufModel, ModelTensor, KEY_SPLIT_COUNT, KEY_SPLIT_NO, KEY_SPLIT_TENSORS_COUNT,
    MAX_SHARDS,
};
pub use parse::{align_up, parse, Header, TensorInfo, MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS};
pub use value::{Array, Value, ValueType};
pub use writer::{GgufStreamWriter, GgufWriter, TensorDecl, WRITE_VERSION};
