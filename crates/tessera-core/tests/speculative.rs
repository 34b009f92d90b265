//! Speculative decoding on real models.
//!
//! - Decode-exact steps: `eval` of a batch with
//!   [`Session::set_decode_exact`] on returns, bit for bit, the logits of
//!   evaluating its tokens one at a time — past 256 cells too, where a
//!   one-token step's attention takes ggml's split-KV path — which is what
//!   makes verified drafts token-identical to plain decoding.

use tessera_core::{Logits, Model, ModelParams, Session, SessionParams};
use tessera_testkit::env;

fn load(file: &str) -> Option<Model> {
    let path = env::real_model(file)?;
    Some(
        Model::load(
            &path,
            &ModelParams {
                n_threads: 2,
                ..ModelParams::default()
            },
        )
        .unwrap(),
    )
}

fn session(model: &Model) -> Session<'_> {
    model
        .session(&SessionParams {
            n_ctx: 1024,
            ..SessionParams::default()
        })
        .unwrap()
}

/// Deterministic pseudo-random token ids.
fn ids(model: &Model, n: usize, seed: u32) -> Vec<u32> {
    let n_vocab = model.hparams().n_vocab as u32;
    (0..n as u32)
        .map(|i| {
            (i.wrapping_mul(104_729)
                .wrapping_add(seed.wrapping_mul(7919)))
                % n_vocab
        })
        .collect()
}

/// After a prompt of `n_prompt` tokens, batches of 2..=9 tokens evaluated
/// decode-exact give the bits of one-token steps, every row.
fn decode_exact_batches(file: &str, n_prompt: usize) {
    let Some(model) = load(file) else {
        return;
    };
    let n_vocab = model.hparams().n_vocab;
    let prompt = ids(&model, n_prompt, 1);
    let cont = ids(&model, 9, 2);
    let mut s = session(&model);
    s.eval(&prompt, Logits::Last).unwrap();
    let mut single = Vec::new();
    for &t in &cont {
        single.extend_from_slice(s.eval(&[t], Logits::Last).unwrap());
    }
    s.set_decode_exact(true);
    for n in 2..=cont.len() {
        s.truncate(n_prompt);
        let batch = s.eval(&cont[..n], Logits::All).unwrap();
        for r in 0..n {
            let row = r * n_vocab..(r + 1) * n_vocab;
            let same = batch[row.clone()]
                .iter()
                .zip(&single[row])
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same,
                "{file}, prompt {n_prompt}: row {r} of a decode-exact batch of {n} differs from its one-token step"
            );
        }
    }
}

#[test]
fn decode_exact_batches_equal_one_token_steps_smollm2() {
    decode_exact_batches("SmolLM2-135M-Instruct.Q4_1.gguf", 20);
    decode_exact_batches("SmolLM2-135M-Instruct.Q4_1.gguf", 300);
}

#[test]
fn decode_exact_batches_equal_one_token_steps_gemma3() {
    decode_exact_batches("gemma-3-270m-q4_k_m.gguf", 20);
    decode_exact_batches("gemma-3-270m-q4_k_m.gguf", 300);
}
