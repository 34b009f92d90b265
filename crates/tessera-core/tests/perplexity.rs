//! `tessera_core::perplexity` against `llama-perplexity` on the same text,
//! context and model (`fixtures/ppl/reference.json`, made by
//! `scripts/make-golden.py`): within [`PPL_REL_TOL`] for both real models.

use serde_json::Value;
use tessera_core::perplexity::perplexity;
use tessera_core::{Model, ModelParams, SessionParams};
use tessera_testkit::env;
use tessera_tokenizer::EncodeOptions;

/// The bound: within 0.5 % of llama.cpp's perplexity.
const PPL_REL_TOL: f64 = 0.005;

fn check(file: &str) {
    let Some(path) = env::real_model(file) else {
        return;
    };
    let dir = env::workspace_root().join("crates/tessera-core/tests/fixtures/ppl");
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let run = reference["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == file)
        .expect("reference run");
    let n_ctx = run["n_ctx"].as_u64().unwrap() as usize;
    let text = std::fs::read_to_string(dir.join(reference["text"].as_str().unwrap())).unwrap();
    let model = Model::load(
        &path,
        &ModelParams {
            n_threads: 2,
            ..ModelParams::default()
        },
    )
    .unwrap();
    let tokens = model
        .tokenizer()
        .encode(
            &text,
            EncodeOptions {
                add_special: true,
                parse_special: false,
            },
        )
        .unwrap();
    let mut s = model
        .session(&SessionParams {
            n_ctx,
            ..SessionParams::default()
        })
        .unwrap();
    let r = perplexity(&mut s, &tokens, n_ctx, None, |_, _| {}).unwrap();
    let want = run["ppl"].as_f64().unwrap();
    let rel = (r.ppl - want).abs() / want;
    eprintln!(
        "{file}: tessera PPL {:.4} +/- {:.5}, llama.cpp {want} +/- {}, {} chunks, relative difference {:.4} %",
        r.ppl,
        r.error.unwrap_or(0.0),
        run["ppl_error"],
        r.running.len(),
        rel * 100.0
    );
    assert_eq!(r.running.len() as u64, run["n_chunks"].as_u64().unwrap());
    assert!(
        rel <= PPL_REL_TOL,
        "{file}: PPL {} vs llama.cpp {want}: {:.3} % > {} %",
        r.ppl,
        rel * 100.0,
        PPL_REL_TOL * 100.0
    );
}

#[test]
fn smollm2_perplexity_matches_llama_cpp() {
    check(env::SMOLLM2);
}

#[test]
fn gemma3_perplexity_matches_llama_cpp() {
    check(env::GEMMA3);
}
