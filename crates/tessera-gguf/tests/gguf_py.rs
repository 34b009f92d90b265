//! Cross-check with gguf-py, llama.cpp's reference GGUF reader: on the real
//! test models and on files tessera's writer produces, both readers must see
//! the same metadata (keys, order, types, values) and the same tensors
//! (names, types, dims, sizes, data offsets, data bytes).
//!
//! Needs `scripts/fetch-models.sh` and `scripts/py-env.sh`; skipped without
//! them, failed without them under `TESSERA_STRICT=1` (CI).

use std::path::Path;
use std::process::Command;

use serde_json::Value as Json;
use tessera_gguf::{Array, GgmlType, GgufFile, GgufModel, GgufWriter, Value};
use tessera_testkit::env;

fn gguf_py_dump(path: &Path) -> Option<Json> {
    let python = env::python_with_gguf()?;
    let script = env::workspace_root().join("scripts/gguf_py_dump.py");
    let out = Command::new(python)
        .arg(script)
        .arg(path)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "gguf_py_dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("dump is JSON"))
}

/// gguf-py's type names for one of our values: `["ARRAY", "STRING"]` ….
fn py_types(v: &Value) -> Vec<String> {
    fn name(t: tessera_gguf::ValueType) -> &'static str {
        use tessera_gguf::ValueType::*;
        match t {
            U8 => "UINT8",
            I8 => "INT8",
            U16 => "UINT16",
            I16 => "INT16",
            U32 => "UINT32",
            I32 => "INT32",
            F32 => "FLOAT32",
            Bool => "BOOL",
            String => "STRING",
            Array => "ARRAY",
            U64 => "UINT64",
            I64 => "INT64",
            F64 => "FLOAT64",
        }
    }
    let mut out = vec![name(v.value_type()).to_string()];
    let mut arr = v.as_array();
    // gguf-py records no element type for an empty array.
    while let Some(a) = arr.filter(|a| !a.is_empty()) {
        out.push(name(a.element_type()).to_string());
        arr = match a {
            Array::Array(inner) => inner.first(),
            _ => None,
        };
    }
    out
}

/// Our value as the JSON gguf-py's `contents()` gives, arrays cut to `head`.
fn as_json(v: &Value, head: usize) -> Json {
    fn arr(a: &Array, head: usize) -> Json {
        fn f<T: Copy + Into<Json>>(v: &[T], head: usize) -> Json {
            Json::Array(v.iter().take(head).map(|&x| x.into()).collect())
        }
        match a {
            Array::U8(v) => f(v, head),
            Array::I8(v) => f(v, head),
            Array::U16(v) => f(v, head),
            Array::I16(v) => f(v, head),
            Array::U32(v) => f(v, head),
            Array::I32(v) => f(v, head),
            Array::F32(v) => f(v, head),
            Array::Bool(v) => f(v, head),
            Array::U64(v) => f(v, head),
            Array::I64(v) => f(v, head),
            Array::F64(v) => f(v, head),
            Array::String(v) => {
                Json::Array(v.iter().take(head).map(|s| s.as_str().into()).collect())
            }
            Array::Array(v) => {
                Json::Array(v.iter().take(head).map(|a| arr(a, usize::MAX)).collect())
            }
        }
    }
    match v {
        Value::U8(x) => (*x).into(),
        Value::I8(x) => (*x).into(),
        Value::U16(x) => (*x).into(),
        Value::I16(x) => (*x).into(),
        Value::U32(x) => (*x).into(),
        Value::I32(x) => (*x).into(),
        Value::F32(x) => (*x).into(),
        Value::Bool(x) => (*x).into(),
        Value::String(s) => s.as_str().into(),
        Value::U64(x) => (*x).into(),
        Value::I64(x) => (*x).into(),
        Value::F64(x) => (*x).into(),
        Value::Array(a) => arr(a, head),
    }
}

fn flatten(v: &Json) -> Vec<Json> {
    match v {
        Json::Array(items) => items.iter().flat_map(flatten).collect(),
        leaf => vec![leaf.clone()],
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Asserts that gguf-py's dump of `file` matches what tessera read.
fn assert_same(file: &GgufFile, dump: &Json) {
    let meta = dump["metadata"].as_object().expect("metadata object");
    let ours: Vec<&str> = file.metadata().iter().map(|(k, _)| k).collect();
    let theirs: Vec<&str> = meta.keys().map(String::as_str).collect();
    let mut ours_sorted = ours.clone();
    ours_sorted.sort();
    let mut theirs_sorted = theirs.clone();
    theirs_sorted.sort();
    assert_eq!(ours_sorted, theirs_sorted, "metadata keys differ");
    for (key, value) in file.metadata().iter() {
        let entry = &meta[key];
        let types: Vec<String> = serde_json::from_value(entry["type"].clone()).unwrap();
        assert_eq!(py_types(value), types, "type of {key}");
        let mut ours = as_json(value, usize::MAX);
        if let Some(a) = value.as_array() {
            // gguf-py flattens nested arrays into their leaves.
            if let Array::Array(_) = a {
                ours = Json::Array(flatten(&ours));
            }
            let len = ours.as_array().map_or(0, Vec::len) as u64;
            assert_eq!(entry["len"].as_u64(), Some(len), "length of {key}");
            ours = Json::Array(ours.as_array().unwrap().iter().take(64).cloned().collect());
        }
        // Floats go through JSON as f64 on both sides: compare exactly.
        assert_eq!(ours, entry["value"], "value of {key}");
    }

    let tensors = dump["tensors"].as_array().expect("tensor list");
    assert_eq!(tensors.len(), file.tensors().len(), "tensor count");
    for (t, p) in file.tensors().iter().zip(tensors) {
        assert_eq!(p["name"], t.name.as_str());
        assert_eq!(
            p["type"].as_u64(),
            Some(u64::from(t.ggml_type.id())),
            "{}",
            t.name
        );
        let dims: Vec<u64> = serde_json::from_value(p["dims"].clone()).unwrap();
        assert_eq!(dims, t.dims, "dims of {}", t.name);
        assert_eq!(
            p["n_bytes"].as_u64(),
            Some(t.n_bytes),
            "bytes of {}",
            t.name
        );
        assert_eq!(
            p["abs_offset"].as_u64(),
            Some(file.data_offset() + t.offset),
            "data offset of {}",
            t.name
        );
        let data = file.tensor_data(t);
        assert_eq!(
            p["head"],
            hex(&data[..16.min(data.len())]),
            "head of {}",
            t.name
        );
        assert_eq!(
            p["tail"],
            hex(&data[data.len().saturating_sub(16)..]),
            "tail of {}",
            t.name
        );
    }
}

fn check_real_model(name: &str, arch: &str, params: u64) {
    let Some(path) = env::real_model(name) else {
        return;
    };
    let model = GgufModel::open(&path).expect("open real model");
    assert_eq!(model.metadata().architecture().unwrap(), arch);
    assert_eq!(model.parameter_count(), params);
    let Some(dump) = gguf_py_dump(&path) else {
        return;
    };
    assert_same(&model.shards()[0], &dump);
}

#[test]
fn smollm2_matches_gguf_py() {
    // 134.5M parameters, as llama.cpp's loader reports.
    check_real_model(env::SMOLLM2, "llama", 134_515_008);
}

#[test]
fn gemma3_matches_gguf_py() {
    // 268.1M parameters.
    check_real_model(env::GEMMA3, "gemma3", 268_098_176);
}

/// A file using every value type, nested arrays, several tensor types and a
/// non-default alignment.
fn every_kind_of_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String("llama".into()))
        .set("general.alignment", Value::U32(64))
        .set("t.u8", Value::U8(200))
        .set("t.i8", Value::I8(-100))
        .set("t.u16", Value::U16(60000))
        .set("t.i16", Value::I16(-30000))
        .set("t.u32", Value::U32(4_000_000_000))
        .set("t.i32", Value::I32(-2_000_000_000))
        .set("t.f32", Value::F32(1.0e-6))
        .set("t.bool", Value::Bool(true))
        .set("t.string", Value::String("héllo ▁world".into()))
        .set("t.u64", Value::U64(u64::MAX))
        .set("t.i64", Value::I64(i64::MIN))
        .set("t.f64", Value::F64(std::f64::consts::PI))
        .set(
            "t.strings",
            Value::Array(Array::String(vec!["a".into(), "".into(), "ü".into()])),
        )
        .set(
            "t.floats",
            Value::Array(Array::F32((0..100).map(|i| i as f32 * 0.5).collect())),
        )
        .set("t.bools", Value::Array(Array::Bool(vec![true, false])))
        .set("t.empty", Value::Array(Array::I32(vec![])))
        .set(
            "t.nested",
            Value::Array(Array::Array(vec![
                Array::I32(vec![1, 2, 3]),
                Array::I32(vec![4]),
            ])),
        );
    let f32s: Vec<u8> = (0..6 * 5).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let q4: Vec<u8> = (0..2 * 18 * 3).map(|i| i as u8).collect();
    let q6k: Vec<u8> = (0..210).map(|i| (i * 7) as u8).collect();
    w.add_tensor("a.weight", GgmlType::F32, &[6, 5], f32s)
        .unwrap();
    w.add_tensor("blk.0.attn_q.weight", GgmlType::Q4_0, &[64, 3], q4)
        .unwrap();
    w.add_tensor("c.weight", GgmlType::Q6_K, &[256], q6k)
        .unwrap();
    w.to_vec().unwrap()
}

#[test]
fn writer_round_trips_through_tessera() {
    let bytes = every_kind_of_file();
    let file = GgufFile::from_vec(bytes.clone()).expect("parse what we wrote");
    assert_eq!(file.version(), 3);
    assert_eq!(file.alignment(), 64);
    assert_eq!(file.data_offset() % 64, 0);
    assert_eq!(file.metadata().get("t.u64"), Some(&Value::U64(u64::MAX)));
    assert_eq!(file.metadata().get("t.f32"), Some(&Value::F32(1.0e-6)));
    assert_eq!(file.tensors().len(), 3);
    for t in file.tensors() {
        assert_eq!(t.offset % 64, 0, "{} aligned", t.name);
    }
    let t = &file.tensors()[1];
    assert_eq!(
        file.tensor_data(t),
        (0..108).map(|i| i as u8).collect::<Vec<_>>()
    );

    // Writing what was read gives the same bytes.
    let mut w = GgufWriter::new();
    *w.metadata_mut() = file.metadata().clone();
    for t in file.tensors() {
        w.add_tensor(t.name.clone(), t.ggml_type, &t.dims, file.tensor_data(t))
            .unwrap();
    }
    assert_eq!(w.to_vec().unwrap(), bytes);
}

#[test]
fn writer_output_is_read_by_gguf_py() {
    let dir = std::env::temp_dir().join(format!("tessera-gguf-py-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("every-kind.gguf");
    std::fs::write(&path, every_kind_of_file()).unwrap();
    let file = GgufFile::open(&path).unwrap();
    if let Some(dump) = gguf_py_dump(&path) {
        assert_same(&file, &dump);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn writer_rejects_wrong_sizes() {
    let mut w = GgufWriter::new();
    assert!(w
        .add_tensor("x", GgmlType::Q4_0, &[33], vec![0u8; 18])
        .is_err());
    assert!(w
        .add_tensor("x", GgmlType::F32, &[4], vec![0u8; 12])
        .is_err());
    assert!(w.add_tensor("x", GgmlType::F32, &[], vec![]).is_err());
    w.add_tensor("x", GgmlType::F32, &[1], vec![0u8; 4])
        .unwrap();
    assert!(w
        .add_tensor("x", GgmlType::F32, &[1], vec![0u8; 4])
        .is_err());
}
