//! Token ids identical to llama.cpp's `llama-tokenize` on the committed corpus.
//!
//! The fixtures under `tests/fixtures/` are written by
//! `scripts/make-tokenizer-fixtures.py`: the corpus (prose, code, numbers,
//! whitespace runs, emoji and ZWJ sequences, CJK, Arabic/Hebrew, combining
//! marks, invalid-looking sequences, special-token text) and, per vocabulary,
//! the ids `llama-tokenize` printed with its defaults (BOS as the model wants
//! it, special tokens parsed), the ids with `--no-parse-special` where they
//! differ, and the special ids llama.cpp reported. Every comparison is exact;
//! a failure lists the strings that differ.

use std::path::PathBuf;

use serde_json::Value;
use tessera_gguf::{GgufModel, Metadata, Value as GgufValue};
use tessera_testkit::env;
use tessera_testkit::synth::vocab::builtin_metadata;
use tessera_tokenizer::{EncodeOptions, Tokenizer};

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run scripts/make-tokenizer-fixtures.py)",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn corpus() -> Vec<String> {
    fixture("corpus.json")["strings"]
        .as_array()
        .expect("corpus strings")
        .iter()
        .map(|s| s["text"].as_str().expect("text").to_string())
        .collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// llama-tokenize's defaults: BOS when the model adds it, specials parsed.
fn llama_tokenize(tok: &Tokenizer, text: &str, parse_special: bool) -> Vec<u32> {
    tok.encode(
        text,
        EncodeOptions {
            add_special: tok.add_bos(),
            parse_special,
        },
    )
    .unwrap_or_else(|e| panic!("encode {text:?}: {e}"))
}

fn fnv1a64(ids: &[u32]) -> String {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for id in ids {
        for b in id.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
    format!("{}:{h:016x}", ids.len())
}

fn report(name: &str, mismatches: &[String], checked: usize) {
    eprintln!(
        "{name}: {} mismatches in {checked} encodings",
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "{name}: {} of {checked} encodings differ from llama.cpp:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The direct encode path and `tokenizers::Tokenizer::encode` give the same ids.
fn check_direct_equals_hf(name: &str, tok: &Tokenizer) {
    for text in corpus() {
        for parse_special in [true, false] {
            let opts = EncodeOptions {
                add_special: true,
                parse_special,
            };
            assert_eq!(
                tok.encode(&text, opts).unwrap(),
                tok.encode_via_hf_tokenizer(&text, opts).unwrap(),
                "{name}: {text:?}"
            );
        }
    }
}

/// Compares every string of the corpus (both parse modes) and the special ids.
fn check_full(name: &str, tok: &Tokenizer, fx: &Value) {
    check_direct_equals_hf(name, tok);
    let corpus = corpus();
    let expected = fx["ids"].as_array().expect("ids");
    assert_eq!(
        expected.len(),
        corpus.len(),
        "{name}: fixture and corpus differ in length"
    );
    let mut bad = Vec::new();
    let mut checked = 0;
    for (i, (text, exp)) in corpus.iter().zip(expected).enumerate() {
        let (exp, got) = (ids(exp), llama_tokenize(tok, text, true));
        checked += 1;
        if exp != got {
            bad.push(format!(
                "  #{i} {text:?}\n    llama.cpp {exp:?}\n    tessera   {got:?}"
            ));
        }
    }
    for (i, exp) in fx["ids_no_parse_special"].as_object().expect("map") {
        let i: usize = i.parse().expect("index");
        let (exp, got) = (ids(exp), llama_tokenize(tok, &corpus[i], false));
        checked += 1;
        if exp != got {
            bad.push(format!(
                "  #{i} (no parse_special) {:?}\n    llama.cpp {exp:?}\n    tessera   {got:?}",
                corpus[i]
            ));
        }
    }
    check_special(name, tok, &fx["special"]);
    report(name, &bad, checked);
}

fn check_special(name: &str, tok: &Tokenizer, want: &Value) {
    let s = tok.special();
    let have = [
        ("bos", s.bos),
        ("eos", s.eos),
        ("eot", s.eot),
        ("eom", s.eom),
        ("unk", s.unk),
        ("sep", s.sep),
        ("pad", s.pad),
        ("mask", s.mask),
        ("nl", s.nl),
        ("fim_pre", s.fim_pre),
        ("fim_suf", s.fim_suf),
        ("fim_mid", s.fim_mid),
        ("fim_pad", s.fim_pad),
        ("fim_rep", s.fim_rep),
        ("fim_sep", s.fim_sep),
    ];
    for (key, got) in have {
        let exp = want.get(key).and_then(Value::as_u64).map(|v| v as u32);
        assert_eq!(got, exp, "{name}: special token '{key}'");
    }
    let eog: Vec<u32> = tok.eog_ids().collect();
    assert_eq!(eog, ids(&want["eog"]), "{name}: end-of-generation tokens");
}

#[test]
fn smollm2_matches_llama_cpp() {
    let Some(path) = env::real_model(env::SMOLLM2) else {
        return;
    };
    let tok = Tokenizer::from_gguf(&path).expect("tokenizer");
    assert_eq!(tok.dropped_merges(), 0);
    assert!(tok.warnings().is_empty(), "{:?}", tok.warnings());
    check_full("smollm2 (gpt2/smollm)", &tok, &fixture("smollm2.json"));
}

#[test]
fn gemma3_matches_llama_cpp() {
    let Some(path) = env::real_model(env::GEMMA3) else {
        return;
    };
    let tok = Tokenizer::from_gguf(&path).expect("tokenizer");
    check_full("gemma3 (llama/SPM)", &tok, &fixture("gemma3.json"));
}

#[test]
fn synthetic_builtin_vocab_matches_llama_cpp() {
    let tok = Tokenizer::from_metadata(&builtin_metadata()).expect("tokenizer");
    check_full(
        "synth-builtin (gpt2/gpt-2)",
        &tok,
        &fixture("synth-builtin.json"),
    );
}

/// SmolLM2's vocabulary and merges under every other pre-tokenizer: the split
/// regexes of each `tokenizer.ggml.pre` against llama.cpp's (fixtures store
/// the token count and an FNV-1a hash of the ids per string).
#[test]
fn smollm2_vocab_under_each_pre_tokenizer_matches_llama_cpp() {
    let Some(path) = env::real_model(env::SMOLLM2) else {
        return;
    };
    let model = GgufModel::open(&path).expect("open");
    let base: Metadata = model.metadata().clone();
    let corpus = corpus();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("smollm2-pre-") && n.ends_with(".json"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "pre-tokenizer fixtures: {files:?}");
    let mut total_bad = Vec::new();
    let mut checked = 0;
    for file in &files {
        let pre = &file["smollm2-pre-".len()..file.len() - ".json".len()];
        let fx = fixture(file);
        let mut meta = base.clone();
        meta.set("tokenizer.ggml.pre", GgufValue::String(pre.to_string()));
        let tok = Tokenizer::from_metadata(&meta).unwrap_or_else(|e| panic!("{pre}: {e}"));
        check_special(pre, &tok, &fx["special"]);
        check_direct_equals_hf(pre, &tok);
        let hashes = fx["hashes"].as_array().expect("hashes");
        assert_eq!(hashes.len(), corpus.len());
        let mut bad = 0;
        for (i, (text, h)) in corpus.iter().zip(hashes).enumerate() {
            let got = llama_tokenize(&tok, text, true);
            checked += 1;
            if fnv1a64(&got) != h.as_str().expect("hash") {
                bad += 1;
                total_bad.push(format!("  pre {pre}: #{i} {text:?}\n    tessera {got:?}"));
            }
        }
        eprintln!("pre {pre}: {bad} mismatches in {} strings", corpus.len());
    }
    report("smollm2 vocab × pre-tokenizers", &total_bad, checked);
}
