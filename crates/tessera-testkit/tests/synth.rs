//! Tests of the synthetic model generator: every architecture generates and
//! re-opens with `tessera-gguf` with the tensors and keys llama.cpp expects
//! (the expectations here are written out independently of the generator's
//! tables), files are reproducible by seed, bad configs are errors, the CLI
//! writes the same bytes as the library, and llama.cpp loads every
//! architecture, generates 8 tokens and tokenizes the built-in vocabulary as
//! expected (skipped when llama.cpp is absent, failed in strict mode).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tessera_gguf::{GgmlType, GgufModel, Value};
use tessera_testkit::env;
use tessera_testkit::synth::{
    self, vocab, Arch, SynthConfig, SynthError, TempModel, VocabSource, WeightType,
};

/// Tensor roles of layer `l` of each architecture with the default config,
/// written out by hand from llama.cpp's `src/models/<arch>.cpp`; a role
/// without a `.` is a `.weight`.
fn expected_layer_roles(arch: Arch, l: u64) -> Vec<&'static str> {
    let attn = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output"];
    let qkv_bias = ["attn_q.bias", "attn_k.bias", "attn_v.bias"];
    let qk = ["attn_q_norm", "attn_k_norm"];
    let dense = ["ffn_norm", "ffn_gate", "ffn_up", "ffn_down"];
    let exps = ["ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"];
    let moe = [
        "ffn_norm",
        "ffn_gate_inp",
        "ffn_gate_exps",
        "ffn_up_exps",
        "ffn_down_exps",
    ];
    let shexp = ["ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp"];
    let mut v: Vec<&str> = attn.to_vec();
    match arch {
        Arch::Llama => v.extend(dense),
        Arch::Mixtral => v.extend(moe),
        Arch::Qwen3 => v.extend(qk.iter().chain(&dense)),
        Arch::Gemma3 => {
            v.extend(qk);
            v.push("post_attention_norm");
            v.extend(dense);
            v.push("post_ffw_norm");
        }
        Arch::Qwen3Moe | Arch::Olmoe => v.extend(qk.iter().chain(&moe)),
        Arch::Qwen2Moe => {
            v.extend(qkv_bias.iter().chain(&moe));
            v.push("ffn_gate_inp_shexp");
            v.extend(shexp);
        }
        Arch::Glm4Moe => {
            v.extend(qkv_bias);
            v.push("post_attention_norm");
            if l == 0 {
                v.extend(&dense[1..]);
            } else {
                v.extend(["ffn_gate_inp", "exp_probs_b.bias"]);
                v.extend(exps.iter().chain(&shexp));
            }
        }
        Arch::Deepseek2 => {
            v = vec![
                "attn_norm",
                "attn_q",
                "attn_kv_a_mqa",
                "attn_kv_a_norm",
                "attn_k_b",
                "attn_v_b",
                "attn_output",
            ];
            if l == 0 {
                v.extend(dense);
            } else {
                v.extend(moe.iter().chain(&shexp));
            }
        }
        Arch::GptOss => {
            v.extend(qkv_bias);
            v.extend(["attn_output.bias", "attn_sinks", "post_attention_norm"]);
            v.extend(["ffn_gate_inp", "ffn_gate_inp.bias"]);
            v.extend(exps);
            v.extend([
                "ffn_gate_exps.bias",
                "ffn_up_exps.bias",
                "ffn_down_exps.bias",
            ]);
        }
    }
    v
}

/// Whether the default config of `arch` has its own `output.weight`.
fn expected_untied(arch: Arch) -> bool {
    arch != Arch::Llama
}

fn expected_names(arch: Arch, n_layer: u64) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = ["token_embd.weight", "output_norm.weight"]
        .into_iter()
        .map(String::from)
        .collect();
    if expected_untied(arch) {
        names.insert("output.weight".into());
    }
    for l in 0..n_layer {
        for role in expected_layer_roles(arch, l) {
            if role.contains('.') {
                names.insert(format!("blk.{l}.{role}"));
            } else {
                names.insert(format!("blk.{l}.{role}.weight"));
            }
        }
    }
    names
}

fn dims(m: &GgufModel, name: &str) -> Vec<u64> {
    m.tensor(name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
        .info
        .dims
        .clone()
}

fn meta_u64(m: &GgufModel, key: &str) -> u64 {
    m.metadata()
        .get_u64(key)
        .unwrap_or_else(|e| panic!("{key}: {e}"))
}

fn is_moe(arch: Arch) -> bool {
    !matches!(arch, Arch::Llama | Arch::Qwen3 | Arch::Gemma3)
}

/// The architectures of the first generator (checked in detail by
/// `every_arch_generates_with_the_expected_tensors_and_keys`; the MoE
/// architectures added later by `moe_architectures_have_llama_cpp_shapes`).
const FIRST_SIX: [Arch; 6] = [
    Arch::Llama,
    Arch::Mixtral,
    Arch::Qwen3,
    Arch::Gemma3,
    Arch::Qwen3Moe,
    Arch::Olmoe,
];

#[test]
fn every_arch_generates_with_the_expected_tensors_and_keys() {
    let n_vocab = vocab::builtin_tokens().len() as u64;
    for arch in Arch::ALL {
        let cfg = SynthConfig::new(arch);
        let file = TempModel::new(&cfg).unwrap();
        let m = GgufModel::open(file.path()).unwrap();
        let gguf_arch = if arch == Arch::Mixtral {
            "llama"
        } else {
            arch.name()
        };
        assert_eq!(m.metadata().architecture().unwrap(), gguf_arch);

        let names: BTreeSet<String> = m.tensors().map(|t| t.info.name.clone()).collect();
        assert_eq!(names, expected_names(arch, 2), "{arch}");
        assert_eq!(m.tensor_count(), names.len());
        assert!(m.tensors().all(|t| t.info.ggml_type == GgmlType::F32));
        if !FIRST_SIX.contains(&arch) {
            continue;
        }

        let key = |s: &str| format!("{gguf_arch}.{s}");
        assert_eq!(meta_u64(&m, &key("block_count")), 2);
        assert_eq!(meta_u64(&m, &key("embedding_length")), 64);
        assert_eq!(meta_u64(&m, &key("attention.head_count")), 4);
        assert_eq!(meta_u64(&m, &key("vocab_size")), n_vocab);
        let hd = meta_u64(&m, &key("attention.key_length"));
        assert_eq!(meta_u64(&m, &key("rope.dimension_count")), hd);
        let kv = meta_u64(&m, &key("attention.head_count_kv"));
        assert_eq!(
            m.metadata()
                .get_array("tokenizer.ggml.tokens")
                .unwrap()
                .len() as u64,
            n_vocab
        );

        assert_eq!(dims(&m, "token_embd.weight"), [64, n_vocab]);
        assert_eq!(dims(&m, "output_norm.weight"), [64]);
        assert_eq!(dims(&m, "blk.1.attn_q.weight"), [64, 4 * hd]);
        assert_eq!(dims(&m, "blk.1.attn_k.weight"), [64, kv * hd]);
        assert_eq!(dims(&m, "blk.1.attn_v.weight"), [64, kv * hd]);
        assert_eq!(dims(&m, "blk.1.attn_output.weight"), [4 * hd, 64]);
        match arch {
            Arch::Qwen3 | Arch::Gemma3 | Arch::Qwen3Moe => {
                assert_eq!(hd, 32, "{arch}: n_head·head_dim differs from n_embd");
                assert_eq!(dims(&m, "blk.0.attn_q_norm.weight"), [hd]);
                assert_eq!(dims(&m, "blk.0.attn_k_norm.weight"), [hd]);
            }
            Arch::Olmoe => {
                assert_eq!(kv, 4);
                assert_eq!(dims(&m, "blk.0.attn_q_norm.weight"), [64]);
                assert_eq!(dims(&m, "blk.0.attn_k_norm.weight"), [64]);
            }
            Arch::Llama | Arch::Mixtral => assert_eq!(hd, 16),
            _ => unreachable!("only the first six get here"),
        }
        if is_moe(arch) {
            assert_eq!(meta_u64(&m, &key("expert_count")), 4);
            assert_eq!(meta_u64(&m, &key("expert_used_count")), 2);
            assert_eq!(dims(&m, "blk.0.ffn_gate_inp.weight"), [64, 4]);
            assert_eq!(dims(&m, "blk.0.ffn_gate_exps.weight"), [64, 32, 4]);
            assert_eq!(dims(&m, "blk.0.ffn_up_exps.weight"), [64, 32, 4]);
            assert_eq!(dims(&m, "blk.0.ffn_down_exps.weight"), [32, 64, 4]);
        } else {
            assert_eq!(meta_u64(&m, &key("feed_forward_length")), 128);
            assert_eq!(dims(&m, "blk.0.ffn_gate.weight"), [64, 128]);
            assert_eq!(dims(&m, "blk.0.ffn_down.weight"), [128, 64]);
        }
        // The expert width: its own key for Qwen3 MoE, feed_forward_length otherwise.
        let expert_ff = m.metadata().get(&key("expert_feed_forward_length"));
        match arch {
            Arch::Qwen3Moe => {
                assert_eq!(expert_ff.and_then(Value::as_u64), Some(32));
                assert_eq!(meta_u64(&m, &key("feed_forward_length")), 128);
            }
            Arch::Mixtral | Arch::Olmoe => {
                assert!(expert_ff.is_none());
                assert_eq!(meta_u64(&m, &key("feed_forward_length")), 32);
            }
            _ => assert!(expert_ff.is_none()),
        }
        let window = m.metadata().get(&key("attention.sliding_window"));
        assert_eq!(window.is_some(), arch == Arch::Gemma3, "{arch}");
    }
}

fn meta_f32(m: &GgufModel, key: &str) -> f64 {
    m.metadata()
        .get_f64(key)
        .unwrap_or_else(|e| panic!("{key}: {e}"))
}

#[test]
fn moe_architectures_have_llama_cpp_shapes() {
    let n_vocab = vocab::builtin_tokens().len() as u64;
    let open =
        |arch| GgufModel::open(TempModel::new(&SynthConfig::new(arch)).unwrap().path()).unwrap();

    // Qwen2 MoE: q is [n_embd, n_embd]; shared expert 2 × 32 wide with a 1-D gate.
    let m = open(Arch::Qwen2Moe);
    assert_eq!(dims(&m, "blk.0.attn_q.weight"), [64, 64]);
    assert_eq!(dims(&m, "blk.0.attn_k.bias"), [32]);
    assert_eq!(dims(&m, "blk.1.ffn_gate_inp_shexp.weight"), [64]);
    assert_eq!(dims(&m, "blk.1.ffn_down_shexp.weight"), [64, 64]);
    assert_eq!(
        meta_u64(&m, "qwen2moe.expert_shared_feed_forward_length"),
        64
    );
    assert_eq!(meta_u64(&m, "qwen2moe.expert_feed_forward_length"), 32);

    // GLM-4.5: partial RoPE, layer 0 dense, sigmoid + exp_probs_b, scaled and normalised.
    let m = open(Arch::Glm4Moe);
    assert_eq!(meta_u64(&m, "glm4moe.rope.dimension_count"), 16);
    assert_eq!(meta_u64(&m, "glm4moe.attention.key_length"), 32);
    assert_eq!(meta_u64(&m, "glm4moe.leading_dense_block_count"), 1);
    assert_eq!(meta_u64(&m, "glm4moe.expert_shared_count"), 1);
    assert_eq!(meta_u64(&m, "glm4moe.expert_gating_func"), 2);
    assert_eq!(meta_f32(&m, "glm4moe.expert_weights_scale"), 2.5);
    assert!(m
        .metadata()
        .get_bool("glm4moe.expert_weights_norm")
        .unwrap());
    assert_eq!(dims(&m, "blk.0.ffn_gate.weight"), [64, 128]);
    assert_eq!(dims(&m, "blk.1.exp_probs_b.bias"), [4]);
    assert_eq!(dims(&m, "blk.1.ffn_up_shexp.weight"), [64, 32]);

    // DeepSeek 2 (V2-Lite style): MLA heads of 32 + 16, values 32, KV rank 64.
    let m = open(Arch::Deepseek2);
    let key = |s: &str| format!("deepseek2.{s}");
    assert_eq!(meta_u64(&m, &key("attention.head_count_kv")), 1);
    assert_eq!(meta_u64(&m, &key("attention.key_length")), 64 + 16);
    assert_eq!(meta_u64(&m, &key("attention.value_length")), 64);
    assert_eq!(meta_u64(&m, &key("attention.key_length_mla")), 48);
    assert_eq!(meta_u64(&m, &key("attention.value_length_mla")), 32);
    assert_eq!(meta_u64(&m, &key("attention.q_lora_rank")), 0);
    assert_eq!(meta_u64(&m, &key("attention.kv_lora_rank")), 64);
    assert_eq!(meta_u64(&m, &key("rope.dimension_count")), 16);
    assert_eq!(meta_u64(&m, &key("expert_gating_func")), 1);
    assert_eq!(meta_u64(&m, &key("expert_shared_count")), 2);
    assert_eq!(
        m.metadata().get_str(&key("rope.scaling.type")).unwrap(),
        "yarn"
    );
    assert_eq!(dims(&m, "blk.0.attn_q.weight"), [64, 4 * 48]);
    assert_eq!(dims(&m, "blk.0.attn_kv_a_mqa.weight"), [64, 64 + 16]);
    assert_eq!(dims(&m, "blk.0.attn_k_b.weight"), [32, 64, 4]);
    assert_eq!(dims(&m, "blk.0.attn_v_b.weight"), [64, 32, 4]);
    assert_eq!(dims(&m, "blk.0.attn_output.weight"), [4 * 32, 64]);
    assert_eq!(dims(&m, "blk.1.ffn_gate_shexp.weight"), [64, 2 * 32]);
    // GLM-4.7-Flash style: q-LoRA, sigmoid with exp_probs_b, groups.
    let mut cfg = SynthConfig::new(Arch::Deepseek2);
    for (k, v) in [
        ("q_lora_rank", "32"),
        ("gating", "sigmoid"),
        ("exp_probs_b", "true"),
        ("expert_weights_norm", "true"),
        ("expert_weights_scale", "1.8"),
        ("n_expert", "8"),
        ("n_expert_groups", "2"),
        ("n_group_used", "1"),
        ("rope_yarn_factor", "0"),
    ] {
        cfg.set(k, v).unwrap();
    }
    let m = GgufModel::open(TempModel::new(&cfg).unwrap().path()).unwrap();
    assert_eq!(dims(&m, "blk.0.attn_q_a.weight"), [64, 32]);
    assert_eq!(dims(&m, "blk.0.attn_q_a_norm.weight"), [32]);
    assert_eq!(dims(&m, "blk.0.attn_q_b.weight"), [32, 4 * 48]);
    assert!(m.tensor("blk.0.attn_q.weight").is_none());
    assert_eq!(dims(&m, "blk.1.exp_probs_b.bias"), [8]);
    assert_eq!(meta_u64(&m, &key("expert_group_count")), 2);
    assert_eq!(meta_u64(&m, &key("expert_group_used_count")), 1);
    assert!(m.metadata().get(&key("rope.scaling.type")).is_none());

    // gpt-oss: sinks per head, expert biases, alternating window, YaRN.
    let m = open(Arch::GptOss);
    assert_eq!(dims(&m, "blk.0.attn_sinks.weight"), [4]);
    assert_eq!(dims(&m, "blk.0.attn_output.bias"), [64]);
    assert_eq!(dims(&m, "blk.0.ffn_gate_exps.bias"), [32, 4]);
    assert_eq!(dims(&m, "blk.0.ffn_down_exps.bias"), [64, 4]);
    assert_eq!(meta_u64(&m, "gpt-oss.attention.sliding_window"), 16);
    assert!(m
        .metadata()
        .get("gpt-oss.attention.sliding_window_pattern")
        .is_none());
    assert_eq!(meta_f32(&m, "gpt-oss.rope.scaling.factor"), 32.0);
    assert_eq!(meta_u64(&m, "gpt-oss.vocab_size"), n_vocab);
}

#[test]
fn f16_weights_keep_norms_and_router_f32() {
    for arch in Arch::ALL {
        let mut cfg = SynthConfig::new(arch);
        cfg.weight_type = WeightType::F16;
        let f16 = GgufModel::open(TempModel::new(&cfg).unwrap().path()).unwrap();
        let f32 = GgufModel::open(TempModel::new(&SynthConfig::new(arch)).unwrap().path()).unwrap();
        assert_eq!(meta_u64(&f16, "general.file_type"), 1);
        assert_eq!(meta_u64(&f32, "general.file_type"), 0);
        for t in f16.tensors() {
            let keep_f32 = t.info.dims.len() == 1
                || t.info.name.ends_with("ffn_gate_inp.weight")
                || t.info.name.ends_with(".bias");
            let want = if keep_f32 {
                GgmlType::F32
            } else {
                GgmlType::F16
            };
            assert_eq!(t.info.ggml_type, want, "{}", t.info.name);
        }
        assert!(f16.file_size() < f32.file_size());
        // F16 values are the F32 values rounded.
        let a = f32_values(&f32, "blk.0.attn_q.weight");
        let b = f16_values(&f16, "blk.0.attn_q.weight");
        assert_eq!(a.len(), b.len());
        assert!(a
            .iter()
            .zip(&b)
            .all(|(x, y)| (x - y).abs() <= x.abs() / 1024.0 + 1e-7));
    }
}

fn f32_values(m: &GgufModel, name: &str) -> Vec<f32> {
    let t = m.tensor(name).unwrap();
    assert_eq!(t.info.ggml_type, GgmlType::F32);
    m.tensor_data(t)
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn f16_values(m: &GgufModel, name: &str) -> Vec<f32> {
    let t = m.tensor(name).unwrap();
    assert_eq!(t.info.ggml_type, GgmlType::F16);
    m.tensor_data(t)
        .chunks_exact(2)
        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect()
}

#[test]
fn values_are_small_finite_and_norms_near_one() {
    let m = GgufModel::open(
        TempModel::new(&SynthConfig::new(Arch::Gemma3))
            .unwrap()
            .path(),
    )
    .unwrap();
    for t in m.tensors() {
        let v = f32_values(&m, &t.info.name);
        assert!(v.iter().all(|x| x.is_finite()), "{}", t.info.name);
        if t.info.dims.len() == 1 {
            assert!(v.iter().all(|x| (0.9..=1.1).contains(x)), "{}", t.info.name);
        } else {
            let bound = 3f32.sqrt() / (t.info.dims[0] as f32).sqrt();
            assert!(v.iter().all(|x| x.abs() <= bound), "{}", t.info.name);
            assert!(v.iter().any(|&x| x != 0.0), "{}", t.info.name);
        }
    }
}

#[test]
fn same_seed_gives_the_same_bytes_and_other_seeds_differ() {
    for arch in Arch::ALL {
        let mut cfg = SynthConfig::new(arch);
        cfg.seed = 42;
        cfg.weight_type = WeightType::F16;
        let a = synth::to_bytes(&cfg).unwrap();
        assert_eq!(a, synth::to_bytes(&cfg).unwrap(), "{arch}");
        // Through a file as well.
        let file = TempModel::new(&cfg).unwrap();
        assert_eq!(std::fs::read(file.path()).unwrap(), a, "{arch}");

        cfg.seed = 43;
        let b = synth::to_bytes(&cfg).unwrap();
        assert_eq!(a.len(), b.len());
        assert_ne!(a, b, "{arch}");
    }
    // Different seeds change every weight tensor, not just the description.
    let mut cfg = SynthConfig::new(Arch::Qwen3);
    let m1 = GgufModel::open(TempModel::new(&cfg).unwrap().path()).unwrap();
    cfg.seed = 1;
    let m2 = GgufModel::open(TempModel::new(&cfg).unwrap().path()).unwrap();
    for t in m1.tensors() {
        let other = m2.tensor(&t.info.name).unwrap();
        assert_ne!(m1.tensor_data(t), m2.tensor_data(other), "{}", t.info.name);
    }
}

#[test]
fn a_tensor_does_not_depend_on_the_rest_of_the_model() {
    // Values come from (seed, name): adding layers leaves existing ones alone.
    let small = SynthConfig::new(Arch::Llama);
    let mut big = small.clone();
    big.n_layer = 3;
    let a = GgufModel::open(TempModel::new(&small).unwrap().path()).unwrap();
    let b = GgufModel::open(TempModel::new(&big).unwrap().path()).unwrap();
    assert_eq!(b.tensor_count(), a.tensor_count() + 9);
    for name in ["token_embd.weight", "blk.1.ffn_down.weight"] {
        assert_eq!(f32_values(&a, name), f32_values(&b, name));
    }
}

#[test]
fn fused_gate_up_holds_the_split_values() {
    let split = SynthConfig::new(Arch::Deepseek2);
    let mut fused = split.clone();
    fused.set("fused_gate_up", "true").unwrap();
    let a = GgufModel::open(TempModel::new(&split).unwrap().path()).unwrap();
    let b = GgufModel::open(TempModel::new(&fused).unwrap().path()).unwrap();
    let moe_layers = split.n_layer - split.n_layer_dense_lead;
    assert_eq!(b.tensor_count(), a.tensor_count() - moe_layers as usize);
    let (n_embd, f, e) = (split.n_embd, split.n_ff_exp, split.n_expert);
    for l in 0..split.n_layer {
        let fused_name = format!("blk.{l}.ffn_gate_up_exps.weight");
        if !split.is_moe_layer(l) {
            assert!(b.tensor(&fused_name).is_none());
            continue;
        }
        assert_eq!(dims(&b, &fused_name), [n_embd, 2 * f, e]);
        for role in ["ffn_gate_exps", "ffn_up_exps"] {
            assert!(b.tensor(&format!("blk.{l}.{role}.weight")).is_none());
        }
        let gate = f32_values(&a, &format!("blk.{l}.ffn_gate_exps.weight"));
        let up = f32_values(&a, &format!("blk.{l}.ffn_up_exps.weight"));
        let gu = f32_values(&b, &fused_name);
        let m = (n_embd * f) as usize; // one expert's gate (or up) matrix
        for x in 0..e as usize {
            assert_eq!(gu[2 * x * m..(2 * x + 1) * m], gate[x * m..(x + 1) * m]);
            assert_eq!(gu[(2 * x + 1) * m..(2 * x + 2) * m], up[x * m..(x + 1) * m]);
        }
    }
    // Every other tensor is the split model's.
    for t in b.tensors() {
        if !t.info.name.contains("gate_up_exps") {
            let other = a.tensor(&t.info.name).unwrap();
            assert_eq!(b.tensor_data(t), a.tensor_data(other), "{}", t.info.name);
        }
    }
    // exp_gate_up_scale reaches the fused tensor as well.
    let mut scaled = fused.clone();
    scaled.exp_gate_up_scale = 2.0;
    let c = GgufModel::open(TempModel::new(&scaled).unwrap().path()).unwrap();
    let name = "blk.1.ffn_gate_up_exps.weight";
    let (x, y) = (f32_values(&b, name), f32_values(&c, name));
    assert!(x
        .iter()
        .zip(&y)
        .all(|(x, y)| (2.0 * x - y).abs() <= 1e-6 * y.abs()));
}

#[test]
fn invalid_configs_are_errors() {
    let config_err = |cfg: SynthConfig| match synth::generate(&cfg) {
        Err(SynthError::Config(msg)) => msg,
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("accepted {cfg:?}"),
    };
    let mut c = SynthConfig::new(Arch::Olmoe);
    c.n_head_kv = 2;
    assert!(config_err(c).contains("n_head_kv = n_head"));
    let mut c = SynthConfig::new(Arch::Mixtral);
    c.n_expert_used = 5;
    assert!(config_err(c).contains("exceeds n_expert"));
    let mut c = SynthConfig::new(Arch::Qwen3);
    c.n_head_kv = 3;
    assert!(config_err(c).contains("multiple"));
    let mut c = SynthConfig::new(Arch::Llama);
    c.head_dim = 15;
    assert!(config_err(c).contains("odd"));
    let mut c = SynthConfig::new(Arch::Gemma3);
    c.n_layer = 0;
    assert!(config_err(c).contains("n_layer"));
    let mut c = SynthConfig::new(Arch::Olmoe);
    c.n_expert = 2000;
    c.n_expert_used = 2;
    assert!(config_err(c).contains("1024"));
    let mut c = SynthConfig::new(Arch::Llama);
    c.n_embd = 1 << 20;
    assert!(config_err(c).contains("bytes"));
    let mut c = SynthConfig::new(Arch::Deepseek2);
    c.n_head_kv = 2;
    assert!(config_err(c).contains("n_head_kv must be 1"));
    let mut c = SynthConfig::new(Arch::Glm4Moe);
    c.exp_probs_b = false;
    assert!(config_err(c).contains("requires exp_probs_b"));
    let mut c = SynthConfig::new(Arch::Qwen3Moe);
    c.exp_probs_b = true;
    assert!(config_err(c).contains("no exp_probs_b"));
    let mut c = SynthConfig::new(Arch::Deepseek2);
    c.n_expert_groups = 2;
    assert!(config_err(c).contains("groups"));
    let mut c = SynthConfig::new(Arch::Qwen2Moe);
    c.head_dim = 32;
    assert!(config_err(c).contains("n_head·head_dim = n_embd"));
    // llama.cpp loads a fused ffn_gate_up_exps for DeepSeek 2 only (of these).
    for arch in Arch::ALL.into_iter().filter(|&a| a != Arch::Deepseek2) {
        let mut c = SynthConfig::new(arch);
        c.fused_gate_up = true;
        assert!(config_err(c).contains("fused ffn_gate_up_exps"), "{arch}");
    }
    // A dense architecture ignores the expert fields.
    let mut c = SynthConfig::new(Arch::Llama);
    c.n_expert = 0;
    synth::generate(&c).unwrap();

    let mut c = SynthConfig::new(Arch::Llama);
    c.vocab = VocabSource::Gguf("/nonexistent/model.gguf".into());
    assert!(matches!(synth::generate(&c), Err(SynthError::Vocab { .. })));
}

#[test]
fn smollm2_vocabulary_is_copied_whole() {
    let Some(source) = VocabSource::smollm2() else {
        return;
    };
    let VocabSource::Gguf(path) = &source else {
        unreachable!()
    };
    let src = GgufModel::open(path).unwrap();
    let mut cfg = SynthConfig::new(Arch::Qwen3Moe);
    cfg.vocab = source.clone();
    let m = GgufModel::open(TempModel::new(&cfg).unwrap().path()).unwrap();
    let mut copied = 0;
    for (k, v) in src.metadata().iter() {
        if k.starts_with("tokenizer.") {
            assert_eq!(m.metadata().get(k), Some(v), "{k}");
            copied += 1;
        }
    }
    assert!(copied >= 8);
    let n_vocab = src
        .metadata()
        .get_array("tokenizer.ggml.tokens")
        .unwrap()
        .len() as u64;
    assert_eq!(n_vocab, 49152);
    assert_eq!(meta_u64(&m, "qwen3moe.vocab_size"), n_vocab);
    assert_eq!(dims(&m, "token_embd.weight"), [64, n_vocab]);
    assert_eq!(dims(&m, "output.weight"), [64, n_vocab]);
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!(
            "tessera-synth-test-{tag}-{}-{n}",
            std::process::id()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn cli_writes_the_same_bytes_as_the_library() {
    let dir = TempDir::new("cli");
    let out = dir.0.join("m.gguf");
    let status = Command::new(env!("CARGO_BIN_EXE_tessera-synth"))
        .args([
            "--arch",
            "qwen3moe",
            "--seed",
            "7",
            "--dtype",
            "f16",
            "--layers",
            "3",
            "--set",
            "n_ff_exp=48",
            "--set",
            "rms_eps=0.001",
            "-o",
        ])
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let mut cfg = SynthConfig::new(Arch::Qwen3Moe);
    cfg.seed = 7;
    cfg.weight_type = WeightType::F16;
    cfg.n_layer = 3;
    cfg.n_ff_exp = 48;
    cfg.rms_eps = 0.001;
    assert_eq!(std::fs::read(&out).unwrap(), synth::to_bytes(&cfg).unwrap());

    let bad = Command::new(env!("CARGO_BIN_EXE_tessera-synth"))
        .args(["--arch", "gpt5", "-o"])
        .arg(dir.0.join("x.gguf"))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!bad.success());
}

/// Runs `cmd` with stdin closed and output to files in `dir`, killing it after
/// `limit`. Returns (exit success, stdout, stderr).
fn run_with_timeout(mut cmd: Command, dir: &Path, limit: Duration) -> (bool, String, String) {
    let out_path = dir.join("stdout.txt");
    let err_path = dir.join("stderr.txt");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} ran longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
    (status.success(), read(&out_path), read(&err_path))
}

/// The tokens of a llama.cpp session file (`--prompt-cache`): magic `ggsn`,
/// version, count, then the token ids.
fn session_tokens(path: &Path) -> Vec<u32> {
    let d = std::fs::read(path).unwrap();
    let word = |i: usize| u32::from_le_bytes(d[4 * i..4 * i + 4].try_into().unwrap());
    assert_eq!(word(0), u32::from_be_bytes(*b"ggsn"), "not a session file");
    let n = word(2) as usize;
    (0..n).map(|i| word(3 + i)).collect()
}

fn builtin_id(token: &str) -> u32 {
    vocab::builtin_tokens()
        .iter()
        .position(|t| t == token)
        .unwrap_or_else(|| panic!("no token {token}")) as u32
}

const N_PREDICT: usize = 8;

/// Runs `llama-completion` greedily for [`N_PREDICT`] tokens on `model` and
/// returns the prompt + generated tokens. The tokens are read from a
/// session file rather than from stdout: llama.cpp's logger is asynchronous
/// and is not flushed at exit, so with a model this fast the printed text is
/// often cut off.
fn llama_complete(tool: &Path, model: &Path, dir: &Path) -> Vec<u32> {
    let session = dir.join("session.bin");
    let _ = std::fs::remove_file(&session);
    let mut cmd = Command::new(tool);
    cmd.arg("-m").arg(model);
    cmd.args([
        "-p",
        "Hello world",
        "-n",
        "8",
        "-no-cnv",
        "--temp",
        "0",
        "-s",
        "1",
    ]);
    cmd.args(["--ignore-eos", "-c", "64", "-t", "1", "--no-warmup"]);
    cmd.arg("--prompt-cache")
        .arg(&session)
        .arg("--prompt-cache-all");
    let (ok, stdout, stderr) = run_with_timeout(cmd, dir, Duration::from_secs(60));
    assert!(
        ok,
        "llama-completion failed on {}:\n{stdout}\n{stderr}",
        model.display()
    );
    session_tokens(&session)
}

#[test]
fn llama_cpp_loads_synthetic_models() {
    let Some(tool) = env::llama_tool("llama-completion") else {
        return;
    };
    let dir = TempDir::new("llama");
    let prompt = [
        vocab::BUILTIN_BOS,
        builtin_id("Hello"),
        builtin_id("Ġworld"),
    ];
    let n_vocab = vocab::builtin_tokens().len() as u32;
    for arch in Arch::ALL {
        for weight_type in [WeightType::F32, WeightType::F16] {
            let mut cfg = SynthConfig::new(arch);
            cfg.seed = 1;
            cfg.weight_type = weight_type;
            let model = TempModel::new(&cfg).unwrap();
            let tokens = llama_complete(&tool, model.path(), &dir.0);
            let what = format!("{arch} {weight_type:?}: {tokens:?}");
            assert_eq!(tokens[..3], prompt, "{what}");
            let generated = &tokens[3..];
            assert_eq!(generated.len(), N_PREDICT, "{what}");
            // --ignore-eos biases the end-of-generation tokens (ids 0 and 2) away.
            assert!(
                generated
                    .iter()
                    .all(|&t| t < n_vocab && t != 0 && t != vocab::BUILTIN_EOS),
                "{what}"
            );
            eprintln!("llama.cpp {what}");
        }
    }
}

#[test]
fn llama_cpp_runs_fused_gate_up_experts_like_split_ones() {
    let Some(tool) = env::llama_tool("llama-completion") else {
        return;
    };
    let dir = TempDir::new("llama-fused");
    let mut cfg = SynthConfig::new(Arch::Deepseek2);
    cfg.seed = 1;
    let split = llama_complete(&tool, TempModel::new(&cfg).unwrap().path(), &dir.0);
    cfg.fused_gate_up = true;
    let fused = llama_complete(&tool, TempModel::new(&cfg).unwrap().path(), &dir.0);
    // Same values in one tensor: the same greedy continuation.
    assert_eq!(fused, split);
    assert_eq!(fused.len(), 3 + N_PREDICT);
}

#[test]
fn llama_cpp_runs_a_model_with_the_smollm2_vocabulary() {
    let Some(tool) = env::llama_tool("llama-completion") else {
        return;
    };
    let Some(source) = VocabSource::smollm2() else {
        return;
    };
    let dir = TempDir::new("llama-smollm2");
    let mut cfg = SynthConfig::new(Arch::Gemma3);
    cfg.vocab = source;
    let model = TempModel::new(&cfg).unwrap();
    let tokens = llama_complete(&tool, model.path(), &dir.0);
    // SmolLM2 adds no BOS: "Hello" " world" then 8 generated tokens.
    assert_eq!(tokens.len(), 2 + N_PREDICT, "{tokens:?}");
    assert!(tokens.iter().all(|&t| t < 49152));
}

#[test]
fn llama_cpp_tokenizes_the_builtin_vocabulary() {
    let Some(tool) = env::llama_tool("llama-tokenize") else {
        return;
    };
    let dir = TempDir::new("tokenize");
    let model = TempModel::new(&SynthConfig::new(Arch::Llama)).unwrap();
    let mut cmd = Command::new(&tool);
    cmd.arg("-m").arg(model.path());
    cmd.args([
        "-p",
        "Hello world, the new low 123 ünï\n\n",
        "--ids",
        "--log-disable",
    ]);
    let (ok, stdout, stderr) = run_with_timeout(cmd, &dir.0, Duration::from_secs(60));
    assert!(ok, "llama-tokenize failed:\n{stdout}\n{stderr}");
    let ids: Vec<u32> = stdout
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(", ")
        .map(|s| s.parse().unwrap_or_else(|_| panic!("bad output {stdout}")))
        .collect();
    // GPT-2 split: "Hello" " world" "," " the" " new" " low" " 123" " ünï" "\n\n";
    // bytes of ü = C3 BC (Ã ¼), ï = C3 AF (Ã ¯).
    let expected: Vec<u32> = [
        "<|im_start|>",
        "Hello",
        "Ġworld",
        ",",
        "Ġthe",
        "Ġnew",
        "Ġlow",
        "Ġ1",
        "2",
        "3",
        "Ġ",
        "Ã",
        "¼",
        "n",
        "Ã",
        "¯",
        "ĊĊ",
    ]
    .iter()
    .map(|t| builtin_id(t))
    .collect();
    assert_eq!(ids, expected);
}
