//! `tessera inspect` end to end: the real models' summaries, the JSON form,
//! and clear errors with a non-zero exit code on bad input.

use std::process::{Command, Output};

use serde_json::Value as Json;
use tessera_testkit::env;

fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .output()
        .expect("run tessera")
}

fn inspect_json(model: &str) -> Option<Json> {
    let path = env::real_model(model)?;
    let out = tessera(&["inspect", "--json", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("JSON report"))
}

#[test]
fn smollm2_report() {
    let Some(r) = inspect_json(env::SMOLLM2) else {
        return;
    };
    assert_eq!(r["architecture"], "llama");
    assert_eq!(r["parameters"], 134_515_008);
    assert_eq!(r["hyperparameters"]["block_count"], 30);
    assert_eq!(r["hyperparameters"]["vocab_size"], 49152);
    assert_eq!(r["hyperparameters"]["context_length"], 8192);
    assert_eq!(r["hyperparameters"]["head_count"], 9);
    assert_eq!(r["hyperparameters"]["head_count_kv"], 3);
    // Quant mix: 210 Q4_1, 1 Q8_0 (token_embd), 61 F32 norms; largest first.
    let mix: Vec<(String, u64)> = r["quant_mix"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["dtype"].as_str().unwrap().to_string(),
                d["tensors"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        mix,
        [("Q4_1".into(), 210), ("Q8_0".into(), 1), ("F32".into(), 61)]
    );
    let tensors = r["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 272);
    let q = tensors
        .iter()
        .find(|t| t["name"] == "blk.7.attn_q.weight")
        .unwrap();
    assert_eq!(
        (q["layer"].as_u64(), q["role"].as_str()),
        (Some(7), Some("attn_q"))
    );
    assert_eq!(q["dims"], serde_json::json!([576, 576]));
    // Long arrays are elided with their length.
    let tokens = r["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == "tokenizer.ggml.tokens")
        .unwrap();
    assert_eq!(tokens["value"]["len"], 49152);
}

#[test]
fn gemma3_report() {
    let Some(r) = inspect_json(env::GEMMA3) else {
        return;
    };
    assert_eq!(r["architecture"], "gemma3");
    assert_eq!(r["parameters"], 268_098_176);
    assert_eq!(r["hyperparameters"]["block_count"], 18);
    assert_eq!(r["hyperparameters"]["vocab_size"], 262_144);
    let dtypes: Vec<&str> = r["quant_mix"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dtype"].as_str().unwrap())
        .collect();
    assert_eq!(dtypes, ["Q8_0", "Q5_0", "Q4_K", "Q6_K", "F32"]);
}

#[test]
fn text_report_has_the_summary_and_tables() {
    let Some(path) = env::real_model(env::SMOLLM2) else {
        return;
    };
    let out = tessera(&["inspect", path.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("architecture") && l.ends_with(" llama")),
        "{text}"
    );
    for needle in [
        "134.52M (134515008)",
        "quant mix",
        "metadata (",
        "tensors (272)",
        "blk.29.ffn_down.weight",
        "(49152 elements)",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn missing_file_is_an_error_with_exit_code() {
    let out = tessera(&["inspect", "/nonexistent/model.gguf"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn malformed_file_is_an_error_that_says_what() {
    let dir = std::env::temp_dir().join(format!("tessera-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.gguf");
    std::fs::write(&bad, b"GGUF\x03\0\0\0\x01").unwrap();
    let out = tessera(&["inspect", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("truncated") && err.contains("tensor count"),
        "{err}"
    );
    std::fs::write(&bad, b"PK\x03\x04 not a gguf").unwrap();
    let out = tessera(&["inspect", bad.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a GGUF file"));
    std::fs::remove_dir_all(&dir).unwrap();
}
