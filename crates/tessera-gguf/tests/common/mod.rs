//! Shared by the hostile-file tests: a small valid base file made with
//! [`GgufWriter`], and a map of where each of its fields lies, so that tests
//! can damage one field by byte surgery and predict the error offset.
//!
//! The walker here is written independently of `src/parse.rs` and only has
//! to understand the base file, which it also checks against the writer's
//! input (names, order, data offset).

#![allow(dead_code)] // each test target uses a different part of this module

use tessera_gguf::{Array, GgmlType, GgufWriter, Value};

/// Metadata keys of the base file, in file order.
pub const KEYS: [&str; 9] = [
    "general.architecture",
    "general.name",
    "general.alignment",
    "test.u32",
    "test.bool",
    "test.f32",
    "test.i64",
    "tokenizer.ggml.tokens",
    "test.nested",
];

/// Tensors of the base file: name, type, dims (GGML order), data bytes.
/// Names of equal length (so one can be renamed into another in place);
/// sizes chosen so that the last tensor ends the file (no trailing padding).
pub const TENSORS: [(&str, GgmlType, &[u64], u64); 3] = [
    ("blk.0.attn_k.weight", GgmlType::F32, &[4, 4], 64),
    ("blk.0.attn_q.weight", GgmlType::Q8_0, &[32, 2], 68),
    ("blk.0.attn_v.weight", GgmlType::F16, &[16], 32),
];

/// Data offsets of [`TENSORS`], relative to the data section.
pub const TENSOR_OFFSETS: [u64; 3] = [0, 64, 160];

/// A valid GGUF v3 file with metadata of several types (string, u32, bool,
/// f32, i64, an array of strings, an array of arrays) and three tensors.
pub fn base_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.set(KEYS[0], Value::String("llama".into()))
        .set(KEYS[1], Value::String("hostile base".into()))
        .set(KEYS[2], Value::U32(32))
        .set(KEYS[3], Value::U32(7))
        .set(KEYS[4], Value::Bool(true))
        .set(KEYS[5], Value::F32(1.5))
        .set(KEYS[6], Value::I64(-3))
        .set(
            KEYS[7],
            Value::Array(Array::String(vec!["a".into(), "bc".into(), "def".into()])),
        )
        .set(
            KEYS[8],
            Value::Array(Array::Array(vec![
                Array::U8(vec![1, 2]),
                Array::I32(vec![3]),
            ])),
        );
    for (i, (name, ty, dims, n_bytes)) in TENSORS.iter().enumerate() {
        let data: Vec<u8> = (0..*n_bytes)
            .map(|b| (b as u8) ^ (i as u8 * 0x55))
            .collect();
        w.add_tensor(*name, *ty, dims, data).expect("valid tensor");
    }
    w.to_vec().expect("base file")
}

/// A second valid file: GGUF v2, no tensors, one key (a fuzz seed).
pub fn metadata_only_v2() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String("llama".into()));
    let mut bytes = w.to_vec().expect("metadata-only file");
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    bytes
}

/// Where one metadata entry lies (absolute byte offsets).
#[derive(Clone, Debug)]
pub struct KvAt {
    pub key: String,
    /// The key's u64 length.
    pub key_len: usize,
    /// The key's bytes.
    pub key_bytes: usize,
    /// The u32 value type.
    pub type_id: usize,
    /// The value.
    pub value: usize,
    /// One past the value.
    pub end: usize,
}

/// Where one tensor info lies (absolute byte offsets).
#[derive(Clone, Debug)]
pub struct TensorAt {
    pub name: String,
    pub name_len: usize,
    pub name_bytes: usize,
    pub n_dims: usize,
    pub dims: usize,
    pub type_id: usize,
    pub offset: usize,
    pub end: usize,
}

/// The map of a file made by [`base_file`].
#[derive(Clone, Debug)]
pub struct Layout {
    pub kvs: Vec<KvAt>,
    pub tensors: Vec<TensorAt>,
    /// One past the last tensor info.
    pub header_end: usize,
    /// Start of the data section.
    pub data_offset: usize,
}

impl Layout {
    pub fn kv(&self, key: &str) -> &KvAt {
        self.kvs.iter().find(|k| k.key == key).expect("key in base")
    }

    pub fn tensor(&self, name: &str) -> &TensorAt {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .expect("tensor in base")
    }
}

struct Walk<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Walk<'_> {
    fn u32(&mut self) -> u32 {
        let v = u32::from_le_bytes(self.b[self.pos..self.pos + 4].try_into().unwrap());
        self.pos += 4;
        v
    }

    fn u64(&mut self) -> u64 {
        let v = u64::from_le_bytes(self.b[self.pos..self.pos + 8].try_into().unwrap());
        self.pos += 8;
        v
    }

    fn string(&mut self) -> String {
        let n = self.u64() as usize;
        let s = String::from_utf8(self.b[self.pos..self.pos + n].to_vec()).unwrap();
        self.pos += n;
        s
    }

    fn skip_value(&mut self, type_id: u32) {
        match type_id {
            0 | 1 | 7 => self.pos += 1,
            2 | 3 => self.pos += 2,
            4..=6 => self.pos += 4,
            10..=12 => self.pos += 8,
            8 => {
                self.string();
            }
            9 => {
                let et = self.u32();
                let n = self.u64();
                for _ in 0..n {
                    self.skip_value(et);
                }
            }
            t => panic!("base file has no value type {t}"),
        }
    }
}

/// Maps a file made by [`base_file`] (panics on anything else).
pub fn layout(b: &[u8]) -> Layout {
    let mut w = Walk { b, pos: 8 };
    let n_tensors = w.u64();
    let n_kv = w.u64();
    let mut kvs = Vec::new();
    for _ in 0..n_kv {
        let key_len = w.pos;
        let key = w.string();
        let type_id = w.pos;
        let t = w.u32();
        let value = w.pos;
        w.skip_value(t);
        kvs.push(KvAt {
            key,
            key_len,
            key_bytes: key_len + 8,
            type_id,
            value,
            end: w.pos,
        });
    }
    let mut tensors = Vec::new();
    for _ in 0..n_tensors {
        let name_len = w.pos;
        let name = w.string();
        let n_dims = w.pos;
        let nd = w.u32();
        let dims = w.pos;
        w.pos += 8 * nd as usize;
        let type_id = w.pos;
        w.pos += 4;
        let offset = w.pos;
        let data_offset = w.u64();
        assert_eq!(data_offset, TENSOR_OFFSETS[tensors.len()]);
        tensors.push(TensorAt {
            name,
            name_len,
            name_bytes: name_len + 8,
            n_dims,
            dims,
            type_id,
            offset,
            end: w.pos,
        });
    }
    let header_end = w.pos;
    let data_offset = header_end.div_ceil(32) * 32;
    let l = Layout {
        kvs,
        tensors,
        header_end,
        data_offset,
    };
    assert_eq!(
        l.kvs.iter().map(|k| k.key.as_str()).collect::<Vec<_>>(),
        KEYS
    );
    assert_eq!(
        l.tensors
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        TENSORS.map(|t| t.0)
    );
    assert_eq!(
        b.len() as u64,
        l.data_offset as u64 + TENSOR_OFFSETS[2] + TENSORS[2].3,
        "the last tensor ends the base file"
    );
    l
}
