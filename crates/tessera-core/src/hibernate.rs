//! Hibernation files: a session's state (token history, the last logits
//! row and the used KV rows of every layer) on disk, so its device memory
//! can be released and the state restored later without recomputation.
//!
//! [`crate::Session::hibernate`] and [`crate::Session::wake`] use this
//! module; it owns only the file: its layout, the atomic write, the
//! checks on reading, and the model fingerprint.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! magic        8 bytes  "TSRHIBR\0"
//! version      u32      FORMAT_VERSION
//! fingerprint  u64      model identity (see `fingerprint`)
//! n_layers     u32
//! k_type       u8       0 = F16, 1 = Q8_0
//! v_type       u8
//! reserved     u16      0
//! k_row_bytes  u64      bytes of one key row (n_head_kv * head_dim values)
//! v_row_bytes  u64
//! n_tokens     u64      cells in use = the token history's length
//! n_logits     u64      0, or n_vocab (the last evaluated row)
//! tokens       n_tokens × u32
//! logits       n_logits × f32
//! per layer    K rows 0..n_tokens (n_tokens × k_row_bytes),
//!              V rows 0..n_tokens (n_tokens × v_row_bytes)
//! crc32        u32      of every byte before it
//! ```
//!
//! Only the rows in use are written, not the whole `n_ctx` buffer. A file
//! is written to a temporary name in the same directory, synced, then
//! renamed over the target, so a reader sees the old file or the new one,
//! never a part. Reading checks the magic, the version, the fingerprint and
//! the shape against the session before it touches device memory, and the
//! checksum at the end; any failure is a [`HibernateError`], after which
//! the caller rebuilds the state from the token history.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::kv::{KvCache, KvType};
use crate::model::Model;

/// The file format's version; a file of another version is not read.
pub const FORMAT_VERSION: u32 = 1;

const MAGIC: [u8; 8] = *b"TSRHIBR\0";

/// Bytes of the fixed header (magic to n_logits).
const HEADER_BYTES: usize = 8 + 4 + 8 + 4 + 4 + 8 + 8 + 8 + 8;

/// Why a hibernation file could not be written or restored.
#[derive(Debug, thiserror::Error)]
pub enum HibernateError {
    /// The file could not be created, written, renamed or read.
    #[error("hibernation file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not one, is cut short, or its checksum does not match.
    #[error("hibernation file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file was written by another version of the format.
    #[error(
        "hibernation file {path} has format version {found}, this build reads {FORMAT_VERSION}"
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
    /// The file was written for another model or cache layout.
    #[error("hibernation file {path} does not fit this session: {reason}")]
    Incompatible {
        /// The file.
        path: PathBuf,
        /// Which field differs, and how.
        reason: String,
    },
    /// A device refused to give or take the cache rows.
    #[error("hibernation file {path}: device copy failed: {reason}")]
    Device {
        /// The file.
        path: PathBuf,
        /// The backend's error.
        reason: String,
    },
}

/// The model's identity as a hibernation file records it: FNV-1a 64 over
/// the GGUF's size, its architecture and name, every tensor's name, type,
/// dimensions and offset, and the first and last 256 bytes of each
/// tensor's data (two fine-tunes of one base differ there). A few
/// hundred kilobytes hashed: cheap enough to compute at every write.
pub fn fingerprint(model: &Model) -> u64 {
    let gguf = model.gguf();
    let mut h = Fnv::new();
    h.write(&gguf.file_size().to_le_bytes());
    for key in ["general.architecture", "general.name"] {
        h.write(gguf.metadata().get_str(key).unwrap_or("").as_bytes());
        h.write(&[0]);
    }
    for t in gguf.tensors() {
        let info = t.info;
        h.write(info.name.as_bytes());
        h.write(&[0]);
        h.write(&(info.ggml_type as u32).to_le_bytes());
        for d in &info.dims {
            h.write(&d.to_le_bytes());
        }
        h.write(&info.offset.to_le_bytes());
        let data = gguf.tensor_data(t);
        let n = data.len().min(256);
        h.write(&data[..n]);
        h.write(&data[data.len() - n..]);
    }
    h.0
}

/// FNV-1a, 64 bits: a stable hash (the standard library's may change
/// between Rust releases, and the fingerprint must not).
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// What a file's header says.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Header {
    version: u32,
    fingerprint: u64,
    n_layers: u32,
    k_type: KvType,
    v_type: KvType,
    k_row_bytes: u64,
    v_row_bytes: u64,
    n_tokens: u64,
    n_logits: u64,
}

fn kv_type_code(t: KvType) -> u8 {
    match t {
        KvType::F16 => 0,
        KvType::Q8_0 => 1,
    }
}

fn kv_type_of(code: u8) -> Option<KvType> {
    match code {
        0 => Some(KvType::F16),
        1 => Some(KvType::Q8_0),
        _ => None,
    }
}

impl Header {
    /// The header `kv` would be written with.
    fn of(kv: &KvCache, fingerprint: u64, n_tokens: usize, n_logits: usize) -> Header {
        let first = kv.layers().first();
        Header {
            version: FORMAT_VERSION,
            fingerprint,
            n_layers: kv.layers().len() as u32,
            k_type: first.map_or(KvType::F16, |l| l.k_type),
            v_type: first.map_or(KvType::F16, |l| l.v_type),
            k_row_bytes: first.map_or(0, |l| l.k_row_bytes) as u64,
            v_row_bytes: first.map_or(0, |l| l.v_row_bytes) as u64,
            n_tokens: n_tokens as u64,
            n_logits: n_logits as u64,
        }
    }

    fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        let mut w = 0;
        let mut put = |bytes: &[u8]| {
            b[w..w + bytes.len()].copy_from_slice(bytes);
            w += bytes.len();
        };
        put(&MAGIC);
        put(&self.version.to_le_bytes());
        put(&self.fingerprint.to_le_bytes());
        put(&self.n_layers.to_le_bytes());
        put(&[kv_type_code(self.k_type), kv_type_code(self.v_type), 0, 0]);
        put(&self.k_row_bytes.to_le_bytes());
        put(&self.v_row_bytes.to_le_bytes());
        put(&self.n_tokens.to_le_bytes());
        put(&self.n_logits.to_le_bytes());
        b
    }

    fn decode(b: &[u8; HEADER_BYTES], path: &Path) -> Result<Header, HibernateError> {
        let corrupt = |reason: &str| HibernateError::Corrupt {
            path: path.to_path_buf(),
            reason: reason.into(),
        };
        if b[..8] != MAGIC {
            return Err(corrupt("no hibernation magic at the start"));
        }
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default());
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default());
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(HibernateError::Version {
                path: path.to_path_buf(),
                found: version,
            });
        }
        let k_type = kv_type_of(b[24]).ok_or_else(|| corrupt("unknown key cache type"))?;
        let v_type = kv_type_of(b[25]).ok_or_else(|| corrupt("unknown value cache type"))?;
        Ok(Header {
            version,
            fingerprint: u64_at(12),
            n_layers: u32_at(20),
            k_type,
            v_type,
            k_row_bytes: u64_at(28),
            v_row_bytes: u64_at(36),
            n_tokens: u64_at(44),
            n_logits: u64_at(52),
        })
    }
}

/// A writer that keeps the CRC of what went through it.
struct Crc<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Crc<W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.crc.update(bytes);
        self.inner.write_all(bytes)
    }
}

/// What [`save`] wrote.
#[derive(Clone, Debug)]
pub struct Written {
    /// Bytes of the file.
    pub bytes: u64,
}

/// Writes `kv`'s first `tokens.len()` rows, `tokens` and `logits` to
/// `path`, atomically (temporary file in the same directory, synced,
/// renamed).
pub(crate) fn save(
    path: &Path,
    kv: &KvCache,
    fingerprint: u64,
    tokens: &[u32],
    logits: &[f32],
) -> Result<Written, HibernateError> {
    let io = |source| HibernateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = temp_name(path);
    let result = (|| {
        let file = File::create(&tmp).map_err(io)?;
        let mut w = Crc {
            inner: BufWriter::with_capacity(1 << 20, file),
            crc: crc32fast::Hasher::new(),
        };
        let header = Header::of(kv, fingerprint, tokens.len(), logits.len());
        w.put(&header.encode()).map_err(io)?;
        w.put(bytemuck::cast_slice(&le_u32(tokens))).map_err(io)?;
        w.put(bytemuck::cast_slice(&le_f32(logits))).map_err(io)?;
        let mut rows = Vec::new();
        for layer in kv.layers() {
            for (buf, row) in [(&layer.k, layer.k_row_bytes), (&layer.v, layer.v_row_bytes)] {
                rows.resize(row * tokens.len(), 0);
                buf.read(0, &mut rows).map_err(|e| HibernateError::Device {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
                w.put(&rows).map_err(io)?;
            }
        }
        let crc = w.crc.finalize();
        w.inner.write_all(&crc.to_le_bytes()).map_err(io)?;
        let file = w.inner.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        let bytes = file.metadata().map_err(io)?.len();
        drop(file);
        std::fs::rename(&tmp, path).map_err(io)?;
        sync_dir(path);
        Ok(Written { bytes })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `path` with a suffix unique to this process and call, in the same
/// directory (so the rename is atomic).
fn temp_name(path: &Path) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    path.with_file_name(name)
}

/// Syncs the directory holding `path`, so the rename survives a crash
/// (best effort: not every platform can open a directory).
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// The values as little-endian words (a no-op copy on little-endian hosts).
fn le_u32(v: &[u32]) -> Vec<u32> {
    v.iter().map(|x| x.to_le()).collect()
}

fn le_f32(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits().to_le()).collect()
}

/// What [`load`] read.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// The token history.
    pub tokens: Vec<u32>,
    /// The last logits row (empty when none was saved).
    pub logits: Vec<f32>,
    /// Bytes of the file.
    pub bytes: u64,
}

/// Reads `path` into `kv` (rows `0..n_tokens` of every layer; the caller
/// sets the cells in use) after checking it fits: format version, model
/// fingerprint, layer count, cache types, row sizes, `n_ctx`, vocabulary.
/// On an error the rows of `kv` may have been overwritten in part.
pub(crate) fn load(
    path: &Path,
    kv: &mut KvCache,
    fingerprint: u64,
    n_vocab: usize,
) -> Result<Loaded, HibernateError> {
    let io = |source| HibernateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let corrupt = |reason: String| HibernateError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let short = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            corrupt("the file is cut short".into())
        } else {
            io(e)
        }
    };
    let file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut crc = crc32fast::Hasher::new();
    let mut hb = [0u8; HEADER_BYTES];
    r.read_exact(&mut hb).map_err(short)?;
    crc.update(&hb);
    let h = Header::decode(&hb, path)?;
    let want = Header::of(kv, fingerprint, h.n_tokens as usize, h.n_logits as usize);
    let misfit = |what: &str, file: String, here: String| {
        Err(HibernateError::Incompatible {
            path: path.to_path_buf(),
            reason: format!("{what}: the file has {file}, the session {here}"),
        })
    };
    if h.fingerprint != want.fingerprint {
        return misfit(
            "model fingerprint",
            format!("{:016x}", h.fingerprint),
            format!("{:016x} (another model)", want.fingerprint),
        );
    }
    if (h.n_layers, h.k_type, h.v_type) != (want.n_layers, want.k_type, want.v_type) {
        return misfit(
            "layers and cache types",
            format!("{} {:?}/{:?}", h.n_layers, h.k_type, h.v_type),
            format!("{} {:?}/{:?}", want.n_layers, want.k_type, want.v_type),
        );
    }
    if (h.k_row_bytes, h.v_row_bytes) != (want.k_row_bytes, want.v_row_bytes) {
        return misfit(
            "row bytes (K/V)",
            format!("{}/{}", h.k_row_bytes, h.v_row_bytes),
            format!("{}/{}", want.k_row_bytes, want.v_row_bytes),
        );
    }
    if h.n_tokens > kv.n_ctx() as u64 {
        return misfit(
            "tokens",
            h.n_tokens.to_string(),
            format!("a context of {}", kv.n_ctx()),
        );
    }
    if h.n_logits != 0 && h.n_logits != n_vocab as u64 {
        return misfit(
            "logits per row",
            h.n_logits.to_string(),
            format!("a vocabulary of {n_vocab}"),
        );
    }
    // The sizes are now bounded by the session's own buffers: check the
    // file's length before reading (a short file is corrupt, not an OOM).
    let n = h.n_tokens as usize;
    let body = n as u64 * 4
        + h.n_logits * 4
        + h.n_layers as u64 * n as u64 * (h.k_row_bytes + h.v_row_bytes);
    let expected = HEADER_BYTES as u64 + body + 4;
    if file_len != expected {
        return Err(corrupt(format!(
            "{file_len} bytes, the header implies {expected}"
        )));
    }
    let mut read = |len: usize| -> Result<Vec<u8>, HibernateError> {
        let mut b = vec![0u8; len];
        r.read_exact(&mut b).map_err(short)?;
        crc.update(&b);
        Ok(b)
    };
    let tokens: Vec<u32> = read(n * 4)?
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
        return Err(corrupt(format!("token id {bad} outside the vocabulary")));
    }
    let logits: Vec<f32> = read(h.n_logits as usize * 4)?
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    for il in 0..h.n_layers as usize {
        let Some(layer) = kv.layer_mut(il) else {
            break;
        };
        let device = |e: crate::CoreError| HibernateError::Device {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let k = read(n * layer.k_row_bytes)?;
        layer.k.write(0, &k).map_err(device)?;
        let v = read(n * layer.v_row_bytes)?;
        layer.v.write(0, &v).map_err(device)?;
    }
    let mut tail = [0u8; 4];
    r.read_exact(&mut tail).map_err(short)?;
    let (stored, computed) = (u32::from_le_bytes(tail), crc.finalize());
    if stored != computed {
        return Err(corrupt(format!(
            "checksum {stored:08x} stored, {computed:08x} computed"
        )));
    }
    Ok(Loaded {
        tokens,
        logits,
        bytes: file_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_magic_and_version() {
        let h = Header {
            version: FORMAT_VERSION,
            fingerprint: 0x0123_4567_89ab_cdef,
            n_layers: 30,
            k_type: KvType::F16,
            v_type: KvType::Q8_0,
            k_row_bytes: 384,
            v_row_bytes: 204,
            n_tokens: 77,
            n_logits: 49152,
        };
        let p = Path::new("x.hib");
        let mut b = h.encode();
        assert_eq!(Header::decode(&b, p).unwrap(), h);
        b[8] = 9;
        assert!(matches!(
            Header::decode(&b, p),
            Err(HibernateError::Version { found: 9, .. })
        ));
        b[0] = b'X';
        assert!(matches!(
            Header::decode(&b, p),
            Err(HibernateError::Corrupt { .. })
        ));
    }

    #[test]
    fn fnv_is_the_published_function() {
        // FNV-1a 64 test vectors.
        let mut h = Fnv::new();
        h.write(b"");
        assert_eq!(h.0, 0xcbf2_9ce4_8422_2325);
        let mut h = Fnv::new();
        h.write(b"a");
        assert_eq!(h.0, 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn temp_names_stay_in_the_directory_and_differ() {
        let p = Path::new("/some/dir/conv.hib");
        let (a, b) = (temp_name(p), temp_name(p));
        assert_ne!(a, b);
        assert_eq!(a.parent(), p.parent());
    }
}
