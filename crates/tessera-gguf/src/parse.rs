//! The GGUF parser: bytes in, validated header out.
//!
//! Layout (little-endian): `"GGUF"`, version u32, tensor count u64, metadata
//! count u64, metadata entries (key string, type u32, value), tensor infos
//! (name string, n_dims u32, dims u64 × n_dims, type u32, offset u64), padding
//! to `general.alignment`, then the tensor data section.
//!
//! Nothing is allocated from a count before the count is checked against the
//! bytes left in the file, every size is computed with overflow checks, and
//! every tensor's data range is checked to lie, aligned and without overlap,
//! inside the data section. A hostile file therefore gets an [`GgufError`],
//! never a panic or an allocation larger than a small multiple of its size.
//! `tests/hostile/` (one file per kind of damage, each with the error it must
//! give) and the `parse` target of `fuzz/` hold the parser to that.

use std::collections::HashSet;

use crate::error::{GgufError, Result};
use crate::ggml_type::GgmlType;
use crate::metadata::{Metadata, DEFAULT_ALIGNMENT, KEY_ALIGNMENT};
use crate::value::{Array, Value, ValueType};

/// The GGUF magic, as the first four bytes of the file.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Most dimensions a tensor may have (`GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// Deepest nesting of arrays in metadata the reader accepts.
pub const MAX_ARRAY_DEPTH: usize = 8;

/// Fewest bytes a metadata entry takes: key length, value type, one byte of value.
const MIN_KV_SIZE: u64 = 8 + 4 + 1;
/// Fewest bytes a tensor info takes: name length, n_dims, one dim, type, offset.
const MIN_TENSOR_INFO_SIZE: u64 = 8 + 4 + 8 + 4 + 8;

/// One tensor as described in the file header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in GGML order: `dims[0]` is the row length (contiguous).
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Offset of the data, relative to the start of the data section.
    pub offset: u64,
    /// Number of elements (product of `dims`).
    pub n_elements: u64,
    /// Bytes of data.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Shape in the row-major order most people write (`[rows, cols]`):
    /// the reverse of [`TensorInfo::dims`].
    pub fn shape(&self) -> Vec<u64> {
        self.dims.iter().rev().copied().collect()
    }
}

/// A parsed, validated GGUF header.
#[derive(Clone, Debug)]
pub struct Header {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Metadata,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    /// Data alignment in bytes.
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
}

/// Parses and validates the header of a GGUF file held in `buf` (the whole
/// file: tensor ranges are checked against its length).
pub fn parse(buf: &[u8]) -> Result<Header> {
    let mut c = Cursor { buf, pos: 0 };
    let magic: [u8; 4] = c.array("magic")?;
    if magic != MAGIC {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = c.u32("version")?;
    match version {
        2 | 3 => {}
        v if matches!(v.swap_bytes(), 1..=3) => {
            return Err(GgufError::BigEndian {
                version: v.swap_bytes(),
            })
        }
        v => return Err(GgufError::UnsupportedVersion { version: v }),
    }

    let tensor_count_offset = c.pos as u64;
    let tensor_count = c.u64("tensor count")?;
    let kv_count_offset = c.pos as u64;
    let kv_count = c.u64("metadata count")?;
    c.check_count("metadata count", kv_count_offset, kv_count, MIN_KV_SIZE)?;
    c.check_count(
        "tensor count",
        tensor_count_offset,
        tensor_count,
        MIN_TENSOR_INFO_SIZE,
    )?;

    let mut metadata = Metadata::new();
    let mut alignment_offset = 0;
    for i in 0..kv_count {
        let key_offset = c.pos as u64;
        let key = c.string(|| format!("key of metadata entry {i}"))?;
        let type_offset = c.pos as u64;
        let type_id = c.u32_for(&key, "value type")?;
        let vt = ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
            key: key.clone(),
            type_id,
            offset: type_offset,
        })?;
        if key == KEY_ALIGNMENT {
            alignment_offset = c.pos as u64;
        }
        let value = c.value(&key, vt, 0)?;
        if metadata.insert(key.clone(), value).is_err() {
            return Err(GgufError::DuplicateKey {
                key,
                offset: key_offset,
            });
        }
    }

    let alignment = match metadata.get(KEY_ALIGNMENT) {
        None => DEFAULT_ALIGNMENT,
        Some(Value::U32(a)) if a.is_power_of_two() => u64::from(*a),
        Some(Value::U32(a)) => {
            return Err(GgufError::BadMetadata {
                key: KEY_ALIGNMENT.into(),
                reason: format!("{a} at offset {alignment_offset} is not a power of two"),
            })
        }
        Some(v) => {
            return Err(GgufError::BadMetadata {
                key: KEY_ALIGNMENT.into(),
                reason: format!(
                    "must be u32, found {} at offset {alignment_offset}",
                    v.type_name()
                ),
            })
        }
    };

    // The metadata has used up part of the file: check the tensor count
    // again, against what is left, before allocating for it.
    c.check_count(
        "tensor count",
        tensor_count_offset,
        tensor_count,
        MIN_TENSOR_INFO_SIZE,
    )?;
    let mut tensors = Vec::with_capacity(tensor_count as usize);
    let mut names = HashSet::with_capacity(tensor_count as usize);
    for i in 0..tensor_count {
        let info_offset = c.pos as u64;
        let info = c.tensor_info(i)?;
        if !names.insert(info.name.clone()) {
            return Err(GgufError::BadTensor {
                reason: format!("name appears twice (second at offset {info_offset})"),
                tensor: info.name,
            });
        }
        tensors.push(info);
    }

    let header_end = c.pos as u64;
    let file_size = buf.len() as u64;
    let data_offset = align_up(header_end, alignment).ok_or_else(|| GgufError::Truncated {
        what: "data section".into(),
        offset: header_end,
        needed: alignment,
        file_size,
    })?;
    if !tensors.is_empty() && data_offset > file_size {
        return Err(GgufError::Truncated {
            what: format!("padding before the data section (alignment {alignment})"),
            offset: header_end,
            needed: data_offset - header_end,
            file_size,
        });
    }
    validate_data_ranges(&tensors, alignment, data_offset, file_size)?;

    Ok(Header {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
    })
}

/// `v` rounded up to a multiple of `align` (a power of two), or `None` on overflow.
pub fn align_up(v: u64, align: u64) -> Option<u64> {
    Some(v.checked_add(align - 1)? & !(align - 1))
}

/// Checks that every tensor's data is aligned, inside the file and disjoint
/// from every other tensor's. `data_offset` is at most `file_size` when there
/// are tensors.
fn validate_data_ranges(
    tensors: &[TensorInfo],
    alignment: u64,
    data_offset: u64,
    file_size: u64,
) -> Result<()> {
    let bad = |t: &TensorInfo, reason: String| GgufError::BadTensor {
        tensor: t.name.clone(),
        reason,
    };
    for t in tensors {
        if t.offset % alignment != 0 {
            return Err(bad(
                t,
                format!(
                    "data offset {} is not a multiple of the alignment {alignment}",
                    t.offset
                ),
            ));
        }
        // Absolute start and end, so that the check below and the slice
        // `GgufFile::tensor_data` takes cannot overflow.
        let start = data_offset.checked_add(t.offset);
        match start.and_then(|s| s.checked_add(t.n_bytes)) {
            Some(end) if end <= file_size => {}
            // The header points past the end of the file: the usual sign of
            // a cut-off download, so name the tensor and what is missing.
            Some(_) => {
                return Err(GgufError::Truncated {
                    what: format!("data of tensor '{}'", t.name),
                    offset: data_offset + t.offset,
                    needed: t.n_bytes,
                    file_size,
                })
            }
            None => {
                return Err(bad(
                    t,
                    format!(
                    "data [{}, +{}) from the data section at offset {data_offset} ends past 2^64",
                    t.offset, t.n_bytes
                ),
                ))
            }
        }
    }
    let mut order: Vec<&TensorInfo> = tensors.iter().collect();
    order.sort_by_key(|t| t.offset);
    for pair in order.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.offset + a.n_bytes > b.offset {
            return Err(bad(
                b,
                format!(
                    "data at offset {} overlaps tensor '{}' ([{}, +{}))",
                    b.offset, a.name, a.offset, a.n_bytes
                ),
            ));
        }
    }
    Ok(())
}

/// A bounds-checked little-endian reader over the file bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: impl FnOnce() -> String) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                what: what(),
                offset: self.pos as u64,
                needed: n,
                file_size: self.buf.len() as u64,
            });
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N as u64, || what.to_string())?;
        Ok(s.try_into().expect("take returned N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn u32_for(&mut self, owner: &str, what: &str) -> Result<u32> {
        let s = self.take(4, || format!("{what} of '{owner}'"))?;
        Ok(u32::from_le_bytes(s.try_into().expect("4 bytes")))
    }

    fn u64_for(&mut self, owner: &str, what: &str) -> Result<u64> {
        let s = self.take(8, || format!("{what} of '{owner}'"))?;
        Ok(u64::from_le_bytes(s.try_into().expect("8 bytes")))
    }

    /// Errors unless `count` (read at `offset`) items of at least `min_size`
    /// bytes each fit in what is left of the file.
    fn check_count(&self, what: &str, offset: u64, count: u64, min_size: u64) -> Result<()> {
        let fits = count
            .checked_mul(min_size)
            .is_some_and(|need| need <= self.remaining());
        if fits {
            Ok(())
        } else {
            Err(GgufError::CountTooLarge {
                what: what.to_string(),
                offset,
                count,
                remaining: self.remaining(),
            })
        }
    }

    fn string(&mut self, what: impl Fn() -> String) -> Result<String> {
        let len = {
            let s = self.take(8, || format!("length of {}", what()))?;
            u64::from_le_bytes(s.try_into().expect("8 bytes"))
        };
        let start = self.pos as u64;
        let bytes = self.take(len, &what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(GgufError::BadUtf8 {
                what: what(),
                offset: start,
            }),
        }
    }

    fn value(&mut self, key: &str, vt: ValueType, depth: usize) -> Result<Value> {
        let what = || format!("value of '{key}'");
        Ok(match vt {
            ValueType::U8 => Value::U8(self.take(1, what)?[0]),
            ValueType::I8 => Value::I8(self.take(1, what)?[0] as i8),
            ValueType::Bool => Value::Bool(self.bool(key)?),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.fixed(key)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.fixed(key)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.fixed(key)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.fixed(key)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.fixed(key)?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.fixed(key)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.fixed(key)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.fixed(key)?)),
            ValueType::String => Value::String(self.string(what)?),
            ValueType::Array => Value::Array(self.array_value(key, depth + 1)?),
        })
    }

    fn fixed<const N: usize>(&mut self, key: &str) -> Result<[u8; N]> {
        let s = self.take(N as u64, || format!("value of '{key}'"))?;
        Ok(s.try_into().expect("N bytes"))
    }

    fn bool(&mut self, key: &str) -> Result<bool> {
        let offset = self.pos as u64;
        match self.take(1, || format!("value of '{key}'"))?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(GgufError::BadMetadata {
                key: key.into(),
                reason: format!("bool byte {b} at offset {offset} is neither 0 nor 1"),
            }),
        }
    }

    fn array_value(&mut self, key: &str, depth: usize) -> Result<Array> {
        let offset = self.pos as u64;
        if depth > MAX_ARRAY_DEPTH {
            return Err(GgufError::NestingTooDeep {
                key: key.into(),
                max: MAX_ARRAY_DEPTH,
                offset,
            });
        }
        let type_id = self.u32_for(key, "array element type")?;
        let et = ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
            key: key.into(),
            type_id,
            offset,
        })?;
        let len_offset = self.pos as u64;
        let n = self.u64_for(key, "array length")?;
        self.check_count(
            &format!("array length of '{key}'"),
            len_offset,
            n,
            et.min_size(),
        )?;
        let n = n as usize;

        // Fixed-size elements: one bounds check, then decode the slice.
        macro_rules! fixed {
            ($variant:ident, $t:ty) => {{
                let bytes = self.take((n * size_of::<$t>()) as u64, || format!("array '{key}'"))?;
                Array::$variant(
                    bytes
                        .chunks_exact(size_of::<$t>())
                        .map(|b| <$t>::from_le_bytes(b.try_into().expect("chunk")))
                        .collect(),
                )
            }};
        }
        Ok(match et {
            ValueType::U8 => fixed!(U8, u8),
            ValueType::I8 => fixed!(I8, i8),
            ValueType::U16 => fixed!(U16, u16),
            ValueType::I16 => fixed!(I16, i16),
            ValueType::U32 => fixed!(U32, u32),
            ValueType::I32 => fixed!(I32, i32),
            ValueType::F32 => fixed!(F32, f32),
            ValueType::U64 => fixed!(U64, u64),
            ValueType::I64 => fixed!(I64, i64),
            ValueType::F64 => fixed!(F64, f64),
            ValueType::Bool => Array::Bool((0..n).map(|_| self.bool(key)).collect::<Result<_>>()?),
            ValueType::String => Array::String(
                (0..n)
                    .map(|i| self.string(|| format!("element {i} of '{key}'")))
                    .collect::<Result<_>>()?,
            ),
            ValueType::Array => Array::Array(
                (0..n)
                    .map(|_| self.array_value(key, depth + 1))
                    .collect::<Result<_>>()?,
            ),
        })
    }

    fn tensor_info(&mut self, index: u64) -> Result<TensorInfo> {
        let name = self.string(|| format!("name of tensor {index}"))?;
        let bad = |reason: String| GgufError::BadTensor {
            tensor: name.clone(),
            reason,
        };
        let n_dims_offset = self.pos as u64;
        let n_dims = self.u32_for(&name, "n_dims")?;
        if n_dims == 0 || n_dims as usize > MAX_DIMS {
            return Err(bad(format!(
                "{n_dims} dimensions at offset {n_dims_offset} (must be 1 to {MAX_DIMS})"
            )));
        }
        let n_dims = n_dims as usize;
        let dims_offset = self.pos as u64;
        let mut dims = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            dims.push(self.u64_for(&name, "dimension")?);
        }
        let type_offset = self.pos as u64;
        let type_id = self.u32_for(&name, "type")?;
        let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownTensorType {
            tensor: name.clone(),
            type_id,
            offset: type_offset,
        })?;
        let offset = self.u64_for(&name, "data offset")?;

        if dims.contains(&0) {
            return Err(bad(format!(
                "dimensions {dims:?} at offset {dims_offset} contain a zero"
            )));
        }
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| {
                bad(format!(
                    "dimensions {dims:?} at offset {dims_offset} overflow the element count"
                ))
            })?;
        if dims[0] % ggml_type.block_size() != 0 {
            return Err(bad(format!(
                "row length {} at offset {dims_offset} is not a multiple of the {} block size {}",
                dims[0],
                ggml_type,
                ggml_type.block_size()
            )));
        }
        let n_bytes = ggml_type
            .row_bytes(dims[0])
            .and_then(|row| row.checked_mul(n_elements / dims[0]))
            .ok_or_else(|| {
                bad(format!(
                    "dimensions {dims:?} at offset {dims_offset} overflow the byte size"
                ))
            })?;
        Ok(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            n_elements,
            n_bytes,
        })
    }
}
