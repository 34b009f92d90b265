//! The GGUF writer: metadata and tensors out, with correct alignment.
//!
//! Writes GGUF v3 (little-endian). Tensor data is laid out in the order the
//! tensors were added, each padded to `general.alignment` (default 32), the
//! same layout gguf-py and llama.cpp produce, so their readers accept it.

use std::borrow::Cow;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::{GgufError, Result};
use crate::ggml_type::GgmlType;
use crate::metadata::{Metadata, DEFAULT_ALIGNMENT, KEY_ALIGNMENT};
use crate::parse::{align_up, MAGIC, MAX_DIMS};
use crate::value::{Array, Value};

/// Version the writer produces.
pub const WRITE_VERSION: u32 = 3;

struct PendingTensor<'a> {
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    data: Cow<'a, [u8]>,
}

/// Builds a GGUF file in memory and writes it out.
#[derive(Default)]
pub struct GgufWriter<'a> {
    metadata: Metadata,
    tensors: Vec<PendingTensor<'a>>,
}

impl<'a> GgufWriter<'a> {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets metadata `key` (replacing an earlier value in place).
    pub fn set(&mut self, key: impl Into<String>, value: Value) -> &mut Self {
        self.metadata.set(key, value);
        self
    }

    /// The metadata written so far.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Mutable access to the metadata (e.g. to copy a whole table).
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// Adds a tensor. `dims` are in GGML order (row length first); `data`
    /// must be exactly the tensor's size in `ggml_type`.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        ggml_type: GgmlType,
        dims: &[u64],
        data: impl Into<Cow<'a, [u8]>>,
    ) -> Result<&mut Self> {
        let name = name.into();
        let data = data.into();
        if dims.is_empty() || dims.len() > MAX_DIMS || dims.contains(&0) {
            return Err(GgufError::Write(format!(
                "tensor '{name}': dims {dims:?} must be 1 to {MAX_DIMS} non-zero values"
            )));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(GgufError::Write(format!("tensor '{name}' added twice")));
        }
        let rows: u64 = dims[1..].iter().product();
        let expected = ggml_type.row_bytes(dims[0]).map(|r| r * rows);
        if expected != Some(data.len() as u64) {
            return Err(GgufError::Write(format!(
                "tensor '{name}': {} {:?} needs {expected:?} bytes, got {}",
                ggml_type,
                dims,
                data.len()
            )));
        }
        self.tensors.push(PendingTensor {
            name,
            dims: dims.to_vec(),
            ggml_type,
            data,
        });
        Ok(self)
    }

    /// Writes the file to `w`.
    pub fn write(&self, w: &mut impl Write) -> Result<()> {
        let decls: Vec<TensorDecl> = self
            .tensors
            .iter()
            .map(|t| TensorDecl {
                name: t.name.clone(),
                ggml_type: t.ggml_type,
                dims: t.dims.clone(),
            })
            .collect();
        let mut s = GgufStreamWriter::new(w, &self.metadata, decls)?;
        for t in &self.tensors {
            s.write_data(&t.data)?;
            s.end_tensor()?;
        }
        s.finish().map(|_| ())
    }

    /// The file as bytes.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.write(&mut v)?;
        Ok(v)
    }

    /// Writes the file to `path` (through a temporary file renamed into place,
    /// so a failed write never leaves a half file under the final name).
    pub fn write_to_path(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".partial");
        let tmp = path.with_file_name(tmp_name);
        let file = std::fs::File::create(&tmp).map_err(|e| GgufError::io(&tmp, e))?;
        let mut w = BufWriter::new(file);
        self.write(&mut w)?;
        w.flush().map_err(|e| GgufError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| GgufError::io(path, e))
    }
}

/// A tensor of a file written by [`GgufStreamWriter`]: its data comes later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorDecl {
    /// Name.
    pub name: String,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Dimensions in GGML order (row length first).
    pub dims: Vec<u64>,
}

impl TensorDecl {
    /// Bytes of data, `None` when the shape does not fit the type's blocks.
    pub fn n_bytes(&self) -> Option<u64> {
        let rows: u64 = self.dims.get(1..)?.iter().product();
        self.ggml_type
            .row_bytes(*self.dims.first()?)?
            .checked_mul(rows)
    }
}

/// Writes a GGUF file whose tensors are produced one after another (a
/// quantizer's output): the header, with every tensor's type, shape and
/// offset, goes out first, then each tensor's bytes in declaration order
/// through [`write_data`](Self::write_data) (in as many pieces as wanted)
/// and [`end_tensor`](Self::end_tensor), which checks the size and pads to
/// the alignment. The layout is [`GgufWriter`]'s, byte for byte.
pub struct GgufStreamWriter<W: Write> {
    w: W,
    alignment: u64,
    sizes: Vec<(String, u64)>,
    /// The tensor being written and its bytes so far.
    current: usize,
    written: u64,
}

impl<W: Write> GgufStreamWriter<W> {
    /// Writes the header of a file with `metadata` and `tensors`.
    pub fn new(mut w: W, metadata: &Metadata, tensors: Vec<TensorDecl>) -> Result<Self> {
        let io = |e| GgufError::io("<writer>", e);
        let alignment = match metadata.get(KEY_ALIGNMENT) {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) if a.is_power_of_two() => u64::from(*a),
            Some(v) => {
                return Err(GgufError::Write(format!(
                    "{KEY_ALIGNMENT} must be a power-of-two u32, found {v:?}"
                )))
            }
        };
        let mut head = Vec::new();
        head.extend_from_slice(&MAGIC);
        head.extend_from_slice(&WRITE_VERSION.to_le_bytes());
        head.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        head.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        for (key, value) in metadata.iter() {
            put_str(&mut head, key);
            head.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
            put_value(&mut head, value);
        }
        let mut offset = 0u64;
        let mut sizes = Vec::with_capacity(tensors.len());
        for (i, t) in tensors.iter().enumerate() {
            if t.dims.is_empty() || t.dims.len() > MAX_DIMS || t.dims.contains(&0) {
                return Err(GgufError::Write(format!(
                    "tensor '{}': dims {:?} must be 1 to {MAX_DIMS} non-zero values",
                    t.name, t.dims
                )));
            }
            if tensors[..i].iter().any(|u| u.name == t.name) {
                return Err(GgufError::Write(format!("tensor '{}' added twice", t.name)));
            }
            let n_bytes = t.n_bytes().ok_or_else(|| {
                GgufError::Write(format!(
                    "tensor '{}': {:?} is not whole blocks of {}",
                    t.name, t.dims, t.ggml_type
                ))
            })?;
            put_str(&mut head, &t.name);
            head.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                head.extend_from_slice(&d.to_le_bytes());
            }
            head.extend_from_slice(&t.ggml_type.id().to_le_bytes());
            head.extend_from_slice(&offset.to_le_bytes());
            sizes.push((t.name.clone(), n_bytes));
            offset = align_up(offset + n_bytes, alignment)
                .ok_or_else(|| GgufError::Write("data section overflows".into()))?;
        }
        let data_start = align_up(head.len() as u64, alignment).expect("small header");
        head.resize(data_start as usize, 0);
        w.write_all(&head).map_err(io)?;
        Ok(GgufStreamWriter {
            w,
            alignment,
            sizes,
            current: 0,
            written: 0,
        })
    }

    /// The next bytes of the current tensor.
    pub fn write_data(&mut self, data: &[u8]) -> Result<()> {
        let Some((name, size)) = self.sizes.get(self.current) else {
            return Err(GgufError::Write("data past the last tensor".into()));
        };
        if self.written + data.len() as u64 > *size {
            return Err(GgufError::Write(format!(
                "tensor '{name}': more than its {size} bytes"
            )));
        }
        self.w
            .write_all(data)
            .map_err(|e| GgufError::io("<writer>", e))?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Ends the current tensor: all its bytes written, padded to the alignment.
    pub fn end_tensor(&mut self) -> Result<()> {
        let Some((name, size)) = self.sizes.get(self.current) else {
            return Err(GgufError::Write("no tensor to end".into()));
        };
        if self.written != *size {
            return Err(GgufError::Write(format!(
                "tensor '{name}': {} of its {size} bytes written",
                self.written
            )));
        }
        let pad = align_up(*size, self.alignment).expect("checked in new") - size;
        self.w
            .write_all(&vec![0u8; pad as usize])
            .map_err(|e| GgufError::io("<writer>", e))?;
        self.current += 1;
        self.written = 0;
        Ok(())
    }

    /// Checks that every tensor was written and flushes; returns the writer.
    pub fn finish(mut self) -> Result<W> {
        if let Some((name, _)) = self.sizes.get(self.current) {
            return Err(GgufError::Write(format!(
                "tensor '{name}' and {} after it were not written",
                self.sizes.len() - self.current - 1
            )));
        }
        self.w.flush().map_err(|e| GgufError::io("<writer>", e))?;
        Ok(self.w)
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_str(out, s),
        Value::Array(a) => put_array(out, a),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

fn put_array(out: &mut Vec<u8>, a: &Array) {
    out.extend_from_slice(&(a.element_type() as u32).to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! le {
        ($v:expr) => {
            for x in $v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        Array::U8(v) => out.extend_from_slice(v),
        Array::I8(v) => le!(v),
        Array::U16(v) => le!(v),
        Array::I16(v) => le!(v),
        Array::U32(v) => le!(v),
        Array::I32(v) => le!(v),
        Array::F32(v) => le!(v),
        Array::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        Array::String(v) => v.iter().for_each(|s| put_str(out, s)),
        Array::Array(v) => v.iter().for_each(|a| put_array(out, a)),
        Array::U64(v) => le!(v),
        Array::I64(v) => le!(v),
        Array::F64(v) => le!(v),
    }
}
