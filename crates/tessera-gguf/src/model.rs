//! A model as one unit: a single GGUF file or a llama.cpp `gguf-split` set
//! (`name-00001-of-00003.gguf` …) opened together.
//!
//! In a split set every shard carries `split.no` (0-based), `split.count` and,
//! on the first shard, `split.tensors.count`; the model metadata lives in the
//! first shard. Opening any shard opens the whole set.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{GgufError, Result};
use crate::file::GgufFile;
use crate::metadata::Metadata;
use crate::parse::TensorInfo;

/// Key of a shard's 0-based index in a split set.
pub const KEY_SPLIT_NO: &str = "split.no";
/// Key of the number of shards in a split set.
pub const KEY_SPLIT_COUNT: &str = "split.count";
/// Key of the total tensor count of a split set.
pub const KEY_SPLIT_TENSORS_COUNT: &str = "split.tensors.count";

/// Most shards a split set can have (five-digit shard numbers).
pub const MAX_SHARDS: u64 = 99_999;

/// A tensor of a model and the shard that holds it.
#[derive(Clone, Copy, Debug)]
pub struct ModelTensor<'a> {
    /// Index of the shard in [`GgufModel::shards`].
    pub shard: usize,
    /// The tensor's description.
    pub info: &'a TensorInfo,
}

/// A model made of one or more GGUF files.
#[derive(Debug)]
pub struct GgufModel {
    shards: Vec<GgufFile>,
    index: HashMap<String, (usize, usize)>,
}

impl GgufModel {
    /// Opens the model at `path`; when it is a shard of a split set, opens all shards.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let first = GgufFile::open(path)?;
        let count = split_value(&first, KEY_SPLIT_COUNT)?.unwrap_or(1);
        if count <= 1 {
            return Self::from_shards(vec![first]);
        }
        if count > MAX_SHARDS {
            return Err(GgufError::BadSplit {
                path: path.to_path_buf(),
                reason: format!(
                    "split.count is {count}, more than the {MAX_SHARDS} the naming scheme allows"
                ),
            });
        }
        let paths = shard_paths(path, count)?;
        let mut shards = Vec::with_capacity(paths.len());
        for (i, p) in paths.iter().enumerate() {
            let shard = if p == path {
                GgufFile::open(p)?
            } else {
                GgufFile::open(p).map_err(|e| match e {
                    GgufError::Io { source, .. } => GgufError::BadSplit {
                        path: p.clone(),
                        reason: format!("shard {} of {count} cannot be opened: {source}", i + 1),
                    },
                    other => other,
                })?
            };
            shards.push(shard);
        }
        Self::from_shards(shards)
    }

    /// A model from shards already opened, in order; checks they form one set.
    pub fn from_shards(shards: Vec<GgufFile>) -> Result<Self> {
        let n = shards.len() as u64;
        let bad = |s: &GgufFile, reason: String| GgufError::BadSplit {
            path: s.path().to_path_buf(),
            reason,
        };
        if shards.is_empty() {
            return Err(GgufError::BadSplit {
                path: PathBuf::from("<none>"),
                reason: "a model needs at least one file".into(),
            });
        }
        if n > 1 {
            for (i, s) in shards.iter().enumerate() {
                let no = split_value(s, KEY_SPLIT_NO)?;
                let count = split_value(s, KEY_SPLIT_COUNT)?;
                if no != Some(i as u64) || count != Some(n) {
                    return Err(bad(
                        s,
                        format!(
                            "expected shard {i} of {n}, file says split.no={no:?} split.count={count:?}"
                        ),
                    ));
                }
            }
        }
        let mut index = HashMap::new();
        for (si, s) in shards.iter().enumerate() {
            for (ti, t) in s.tensors().iter().enumerate() {
                if index.insert(t.name.clone(), (si, ti)).is_some() {
                    return Err(bad(s, format!("tensor '{}' is in two shards", t.name)));
                }
            }
        }
        if n > 1 {
            if let Some(total) = split_value(&shards[0], KEY_SPLIT_TENSORS_COUNT)? {
                if total != index.len() as u64 {
                    return Err(bad(
                        &shards[0],
                        format!(
                            "split.tensors.count is {total}, the shards hold {}",
                            index.len()
                        ),
                    ));
                }
            }
        }
        Ok(GgufModel { shards, index })
    }

    /// The files of the model, in shard order.
    pub fn shards(&self) -> &[GgufFile] {
        &self.shards
    }

    /// Model metadata (that of the first shard).
    pub fn metadata(&self) -> &Metadata {
        self.shards[0].metadata()
    }

    /// Total size of the files in bytes.
    pub fn file_size(&self) -> u64 {
        self.shards.iter().map(GgufFile::size).sum()
    }

    /// Every tensor, shard by shard, in file order.
    pub fn tensors(&self) -> impl Iterator<Item = ModelTensor<'_>> {
        self.shards.iter().enumerate().flat_map(|(shard, s)| {
            s.tensors()
                .iter()
                .map(move |info| ModelTensor { shard, info })
        })
    }

    /// Number of tensors.
    pub fn tensor_count(&self) -> usize {
        self.index.len()
    }

    /// The tensor called `name`, if any.
    pub fn tensor(&self, name: &str) -> Option<ModelTensor<'_>> {
        let &(shard, i) = self.index.get(name)?;
        Some(ModelTensor {
            shard,
            info: &self.shards[shard].tensors()[i],
        })
    }

    /// The bytes of `tensor`, without copying.
    pub fn tensor_data(&self, tensor: ModelTensor<'_>) -> &[u8] {
        self.shards[tensor.shard].tensor_data(tensor.info)
    }

    /// Total number of weights (elements of every tensor).
    pub fn parameter_count(&self) -> u64 {
        self.tensors().map(|t| t.info.n_elements).sum()
    }
}

fn split_value(file: &GgufFile, key: &str) -> Result<Option<u64>> {
    match file.metadata().get(key) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| GgufError::BadMetadata {
            key: key.into(),
            reason: format!("must be a non-negative integer, found {}", v.type_name()),
        }),
    }
}

/// The paths of all `count` shards of the set `path` belongs to, from the
/// llama.cpp naming scheme `{prefix}-{no:05}-of-{count:05}.gguf` (1-based).
pub fn shard_paths(path: &Path, count: u64) -> Result<Vec<PathBuf>> {
    let bad = |reason: String| GgufError::BadSplit {
        path: path.to_path_buf(),
        reason,
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| bad("file name is not UTF-8".into()))?;
    let suffix = format!("-of-{count:05}.gguf");
    let stem = name.strip_suffix(&suffix).ok_or_else(|| {
        bad(format!(
            "split.count is {count} but the name does not end in '{suffix}'"
        ))
    })?;
    let prefix = stem
        .rsplit_once('-')
        .filter(|(_, no)| no.len() == 5 && no.bytes().all(|b| b.is_ascii_digit()))
        .map(|(p, _)| p)
        .ok_or_else(|| bad("name is not '<prefix>-NNNNN-of-NNNNN.gguf'".into()))?;
    let dir = path.parent().unwrap_or(Path::new(""));
    Ok((1..=count)
        .map(|i| dir.join(format!("{prefix}-{i:05}{suffix}")))
        .collect())
}
