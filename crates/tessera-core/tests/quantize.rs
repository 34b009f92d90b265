//! `tessera quantize` against `llama-quantize`: the same synthetic F16
//! models quantized by both, for every file type tessera offers, must be
//! the same file byte for byte.
//!
//! Three models exercise the rules: a dense llama of 8 layers (the
//! `use_more_bits` layers of Q4_K_M/Q5_K_M, grouped KV heads), the same
//! with rows of 96 values (every K-quant falls back to a 32-block type),
//! and an 8-expert Qwen3 MoE (the 8-expert rules, MXFP4_MOE).
//!
//! Skipped without the reference build (`LLAMA_BIN`, see `scripts/test.sh`)
//! unless `TESSERA_STRICT=1`.

use std::path::Path;

use tessera_core::quantize::{quantize_file, FileType, QuantizeParams};
use tessera_testkit::env;
use tessera_testkit::synth::{self, Arch, SynthConfig, WeightType};

fn dense(n_embd: u64) -> SynthConfig {
    let mut c = SynthConfig::new(Arch::Llama);
    c.n_layer = 8;
    c.n_embd = n_embd;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.head_dim = n_embd / 4;
    c.n_ff = 2 * n_embd;
    c.weight_type = WeightType::F16;
    c.seed = 7;
    c
}

fn moe() -> SynthConfig {
    let mut c = SynthConfig::new(Arch::Qwen3Moe);
    c.n_layer = 4;
    c.n_embd = 256;
    c.n_head = 4;
    c.n_head_kv = 4;
    c.head_dim = 64;
    c.n_expert = 8;
    c.n_expert_used = 2;
    c.n_ff_exp = 256;
    c.weight_type = WeightType::F16;
    c.seed = 11;
    c
}

/// The first differing byte and the tensor (or header) it is in.
fn first_difference(a: &[u8], b: &[u8], ours: &Path) -> String {
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let f = tessera_gguf::GgufFile::open(ours).unwrap();
    let start = f.data_offset() as usize;
    let place = if at < start {
        "in the header".to_string()
    } else {
        f.tensors()
            .iter()
            .find(|t| {
                let o = start + t.offset as usize;
                (o..o + t.n_bytes as usize).contains(&at)
            })
            .map_or("in padding".to_string(), |t| {
                format!("in tensor {} ({})", t.name, t.ggml_type)
            })
    };
    format!(
        "sizes {} (tessera) and {} (llama.cpp), first difference at byte {at} {place}",
        a.len(),
        b.len()
    )
}

#[test]
fn quantize_matches_llama_quantize() {
    let Some(tool) = env::llama_tool("llama-quantize") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("tessera-quantize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let models = [
        ("dense", dense(256)),
        ("dense-96", dense(96)),
        ("moe8", moe()),
    ];
    let common = [
        "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S",
        "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS", "F16", "BF16",
    ];
    let (mut n, mut failures) = (0, Vec::new());
    for (label, cfg) in &models {
        let src = dir.join(format!("{label}-f16.gguf"));
        synth::write(cfg, &src).unwrap();
        let moe_only = ["MXFP4_MOE"];
        let types = common
            .iter()
            .chain(if *label == "moe8" { &moe_only[..] } else { &[] });
        for &ty in types {
            let want = dir.join(format!("{label}-{ty}-llama.gguf"));
            let got = dir.join(format!("{label}-{ty}-tessera.gguf"));
            let out = std::process::Command::new(&tool)
                .env("LD_LIBRARY_PATH", tool.parent().unwrap())
                .args([src.as_os_str(), want.as_os_str()])
                .args([ty, "2"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "llama-quantize {label} {ty}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let params = QuantizeParams {
                ftype: FileType::parse(ty).unwrap(),
                threads: 2,
                allow_requantize: false,
            };
            quantize_file(&src, &got, &params, |_| {}).unwrap();
            let (a, b) = (std::fs::read(&got).unwrap(), std::fs::read(&want).unwrap());
            if a != b {
                failures.push(format!("{label} {ty}: {}", first_difference(&a, &b, &got)));
            } else {
                println!("{label} {ty}: {} bytes, identical", a.len());
            }
            n += 1;
            std::fs::remove_file(&want).ok();
            std::fs::remove_file(&got).ok();
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(n >= 4 * 3, "only {n} files compared");
}

/// A quantized input is refused unless requantizing is allowed, and the
/// error names the tensor; no output file is left behind.
#[test]
fn requantize_is_refused_by_default() {
    let mut cfg = dense(256);
    cfg.n_layer = 1;
    let dir = std::env::temp_dir().join(format!("tessera-requant-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (src, q8, again) = (
        dir.join("f16.gguf"),
        dir.join("q8.gguf"),
        dir.join("q4.gguf"),
    );
    synth::write(&cfg, &src).unwrap();
    let p = |ftype, allow_requantize| QuantizeParams {
        ftype,
        threads: 2,
        allow_requantize,
    };
    quantize_file(&src, &q8, &p(FileType::Q8_0, false), |_| {}).unwrap();
    let e = quantize_file(&q8, &again, &p(FileType::Q4_0, false), |_| {}).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("requantizing") && msg.contains("Q8_0"),
        "{msg}"
    );
    assert!(!again.exists() && !dir.join("q4.gguf.partial").exists());
    quantize_file(&q8, &again, &p(FileType::Q4_0, true), |_| {}).unwrap();
    let f = tessera_gguf::GgufFile::open(&again).unwrap();
    assert!(f
        .tensors()
        .iter()
        .any(|t| t.ggml_type == tessera_gguf::GgmlType::Q4_0));
    std::fs::remove_dir_all(&dir).ok();
}
