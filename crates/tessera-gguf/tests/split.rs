//! Split models (llama.cpp's `gguf-split` layout) open as one model: sets
//! written here with tessera's writer, and a real model split by llama.cpp's
//! own `llama-gguf-split` (when the reference build is present).

use std::path::{Path, PathBuf};
use std::process::Command;

use tessera_gguf::{GgmlType, GgufError, GgufModel, GgufWriter, Value};
use tessera_testkit::env;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tessera-split-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes a 3-shard set of 6 tensors `t0..t5`, 2 per shard, under `dir`.
fn write_set(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for shard in 0..3u16 {
        let mut w = GgufWriter::new();
        if shard == 0 {
            w.set("general.architecture", Value::String("llama".into()));
            w.set("llama.block_count", Value::U32(2));
        }
        w.set("split.no", Value::U16(shard))
            .set("split.count", Value::U16(3))
            .set("split.tensors.count", Value::I32(6));
        for t in 0..2 {
            let i = usize::from(shard) * 2 + t;
            let data: Vec<u8> = (0..4)
                .flat_map(|k| ((i * 10 + k) as f32).to_le_bytes())
                .collect();
            w.add_tensor(format!("t{i}"), GgmlType::F32, &[4], data)
                .unwrap();
        }
        let p = dir.join(format!("{prefix}-{:05}-of-00003.gguf", shard + 1));
        w.write_to_path(&p).unwrap();
        paths.push(p);
    }
    paths
}

#[test]
fn any_shard_opens_the_whole_set() {
    let dir = temp_dir("set");
    let paths = write_set(&dir, "tiny");
    for p in &paths {
        let m = GgufModel::open(p).unwrap();
        assert_eq!(m.shards().len(), 3);
        assert_eq!(m.tensor_count(), 6);
        assert_eq!(m.metadata().arch_u64("block_count").unwrap(), 2);
        let t = m.tensor("t5").expect("t5 is in the last shard");
        assert_eq!(t.shard, 2);
        let floats: Vec<f32> = m
            .tensor_data(t)
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(floats, [50.0, 51.0, 52.0, 53.0]);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_shard_is_a_clear_error() {
    let dir = temp_dir("missing");
    let paths = write_set(&dir, "tiny");
    std::fs::remove_file(&paths[1]).unwrap();
    let err = GgufModel::open(&paths[0]).unwrap_err();
    assert!(matches!(err, GgufError::BadSplit { .. }), "{err}");
    assert!(err.to_string().contains("shard 2 of 3"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn shards_out_of_place_are_refused() {
    let dir = temp_dir("swap");
    let paths = write_set(&dir, "tiny");
    // Swap shards 2 and 3: names and split.no disagree.
    let tmp = dir.join("swap.tmp");
    std::fs::rename(&paths[1], &tmp).unwrap();
    std::fs::rename(&paths[2], &paths[1]).unwrap();
    std::fs::rename(&tmp, &paths[2]).unwrap();
    let err = GgufModel::open(&paths[0]).unwrap_err();
    assert!(err.to_string().contains("expected shard 1 of 3"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_shard_with_a_foreign_name_is_refused() {
    let dir = temp_dir("name");
    let paths = write_set(&dir, "tiny");
    let odd = dir.join("renamed.gguf");
    std::fs::rename(&paths[0], &odd).unwrap();
    let err = GgufModel::open(&odd).unwrap_err();
    assert!(err.to_string().contains("-of-00003.gguf"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn llama_cpp_split_of_smollm2_reads_like_the_original() {
    let Some(model) = env::real_model(env::SMOLLM2) else {
        return;
    };
    let Some(tool) = env::llama_tool("llama-gguf-split") else {
        return;
    };
    let dir = temp_dir("llama");
    let out = Command::new(tool)
        .args(["--split", "--split-max-tensors", "100"])
        .arg(&model)
        .arg(dir.join("smol"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let split = GgufModel::open(dir.join("smol-00002-of-00003.gguf")).unwrap();
    let whole = GgufModel::open(&model).unwrap();
    assert_eq!(split.shards().len(), 3);
    assert_eq!(split.tensor_count(), whole.tensor_count());
    assert_eq!(split.parameter_count(), whole.parameter_count());
    assert_eq!(
        split.metadata().get("general.name"),
        whole.metadata().get("general.name")
    );
    for t in whole.tensors() {
        let s = split.tensor(&t.info.name).expect("tensor in the split set");
        assert_eq!(
            (s.info.ggml_type, &s.info.dims),
            (t.info.ggml_type, &t.info.dims)
        );
        assert!(
            split.tensor_data(s) == whole.tensor_data(t),
            "{}",
            t.info.name
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn llama_cpp_merges_a_set_written_by_tessera() {
    let Some(tool) = env::llama_tool("llama-gguf-split") else {
        return;
    };
    let dir = temp_dir("merge");
    let paths = write_set(&dir, "tiny");
    let merged = dir.join("merged.gguf");
    let out = Command::new(tool)
        .arg("--merge")
        .arg(&paths[0])
        .arg(&merged)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = GgufModel::open(&paths[0]).unwrap();
    let theirs = GgufModel::open(&merged).unwrap();
    assert_eq!(theirs.shards().len(), 1);
    assert_eq!(theirs.metadata().arch_u64("block_count").unwrap(), 2);
    assert_eq!(theirs.tensor_count(), 6);
    for t in ours.tensors() {
        let m = theirs.tensor(&t.info.name).unwrap();
        assert_eq!(
            theirs.tensor_data(m),
            ours.tensor_data(t),
            "{}",
            t.info.name
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
