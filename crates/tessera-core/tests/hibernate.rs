//! Hibernation on a real model (SmolLM2 Q4_1).
//!
//! - A session hibernated after k generated tokens and woken continues with
//!   exactly the tokens of an uninterrupted one, and the wake evaluates no
//!   token of the history (F16 and Q8_0 caches); its device memory is
//!   released while hibernated.
//! - A file restored into another session gives the same last logits (bit
//!   for bit) and the same continuation.
//! - A corrupt byte, another format version, a file cut short, a missing
//!   file and a file written by another model (Gemma 3) are detected: the
//!   session is rebuilt from its token history and still continues with
//!   the same tokens.

use std::path::{Path, PathBuf};

use tessera_core::generate::{generate, GenerateParams};
use tessera_core::hibernate::HibernateError;
use tessera_core::sample::SamplerConfig;
use tessera_core::{KvType, Model, ModelParams, Residency, Session, SessionParams, Wake};
use tessera_testkit::env;
use tessera_tokenizer::EncodeOptions;

const SMOL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Tokens generated in all, and before the hibernation.
const N_GEN: usize = 24;
const K: usize = 8;

fn load(file: &str) -> Option<Model> {
    let path = env::real_model(file)?;
    let params = ModelParams {
        n_threads: 2,
        ..ModelParams::default()
    };
    Some(Model::load(path, &params).unwrap())
}

fn session(model: &Model, kv: KvType) -> Session<'_> {
    model
        .session(&SessionParams {
            n_ctx: 256,
            type_k: kv,
            type_v: kv,
            ..SessionParams::default()
        })
        .unwrap()
}

fn prompt(model: &Model) -> Vec<u32> {
    let opts = EncodeOptions {
        add_special: true,
        parse_special: true,
    };
    model
        .tokenizer()
        .encode(
            "<|im_start|>user\nName three rivers of Europe and say where each one rises.<|im_end|>\n<|im_start|>assistant\n",
            opts,
        )
        .unwrap()
}

/// Greedy generation of `n` tokens after `prompt`.
fn gen(s: &mut Session<'_>, prompt: &[u32], n: usize) -> Vec<u32> {
    let params = GenerateParams {
        n_predict: Some(n),
        sampler: SamplerConfig::greedy(),
        stop: Vec::new(),
        ignore_eos: true,
    };
    generate(s, prompt, &params, |_| true).unwrap().0
}

fn dir(tag: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hibernate-{tag}"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The uninterrupted run, and a session left after `K` generated tokens
/// (the last one sampled, not yet evaluated, as `generate` leaves it).
fn reference_and_paused<'m>(model: &'m Model, kv: KvType) -> (Vec<u32>, Session<'m>, Vec<u32>) {
    let p = prompt(model);
    let whole = gen(&mut session(model, kv), &p, N_GEN);
    let mut s = session(model, kv);
    let first = gen(&mut s, &p, K);
    assert_eq!(first, whole[..K], "the first {K} tokens");
    (whole, s, first)
}

/// Continues a paused session: evaluates the K-th token, generates the rest.
fn finish(s: &mut Session<'_>, first: &[u32]) -> Vec<u32> {
    let mut all = first.to_vec();
    all.extend(gen(s, &first[K - 1..], N_GEN - K));
    all
}

fn hibernated_session_continues_identically(kv: KvType) {
    let Some(model) = load(SMOL) else {
        return;
    };
    let (whole, mut s, first) = reference_and_paused(&model, kv);
    let path = dir("continue").join(format!("{kv:?}.hib"));
    let resident_bytes = s.kv_bytes();
    let n_past = s.n_past();
    let saved = s.hibernate(&path).unwrap();
    assert_eq!(saved.tokens, n_past);
    assert_eq!(s.residency(), Residency::Hibernated);
    assert_eq!(s.kv_bytes(), 0, "the KV buffers are released");
    assert_eq!(s.n_past(), n_past, "the history is kept");
    let before = s.n_evaluated();
    match s.wake().unwrap() {
        Wake::Restored { tokens, bytes, .. } => {
            assert_eq!(tokens, n_past);
            assert_eq!(bytes, saved.bytes);
        }
        other => panic!("expected a restore, got {other:?}"),
    }
    assert_eq!(s.n_evaluated(), before, "a restore evaluates nothing");
    assert_eq!(s.residency(), Residency::Resident);
    assert_eq!(s.kv_bytes(), resident_bytes);
    let all = finish(&mut s, &first);
    assert_eq!(all, whole, "{kv:?}: hibernated and woken vs uninterrupted");
    assert_eq!(
        s.n_evaluated() - before,
        (N_GEN - K) as u64,
        "only the new tokens were evaluated"
    );
    eprintln!(
        "{kv:?}: {} tokens, file {} bytes, hibernate {:?}",
        saved.tokens, saved.bytes, saved.time
    );
}

#[test]
fn hibernated_session_continues_identically_f16() {
    hibernated_session_continues_identically(KvType::F16);
}

#[test]
fn hibernated_session_continues_identically_q8_0() {
    hibernated_session_continues_identically(KvType::Q8_0);
}

#[test]
fn eval_wakes_and_another_session_restores_the_same_state() {
    let Some(model) = load(SMOL) else {
        return;
    };
    let (whole, mut s, first) = reference_and_paused(&model, KvType::F16);
    let logits = s.last_logits().to_vec();
    let path = dir("other").join("a.hib");
    s.hibernate(&path).unwrap();
    // Into a fresh session, whose own history is something else.
    let mut t = session(&model, KvType::F16);
    gen(&mut t, &[1, 2, 3], 2);
    let history = s.tokens().to_vec();
    let wake = t.restore(&path, &history).unwrap();
    assert!(matches!(wake, Wake::Restored { .. }), "{wake:?}");
    assert_eq!(t.tokens(), &history[..]);
    let same = t
        .last_logits()
        .iter()
        .zip(&logits)
        .all(|(a, b)| a.to_bits() == b.to_bits());
    assert!(same && t.last_logits().len() == logits.len(), "last logits");
    assert_eq!(
        finish(&mut t, &first),
        whole,
        "restored into another session"
    );
    // The hibernated one wakes on its next eval.
    assert_eq!(finish(&mut s, &first), whole, "woken by eval");
    assert_eq!(s.residency(), Residency::Resident);
}

#[test]
fn a_hibernated_session_can_be_cut_or_cleared() {
    let Some(model) = load(SMOL) else {
        return;
    };
    let (whole, mut s, _) = reference_and_paused(&model, KvType::F16);
    let p = prompt(&model);
    let path = dir("cut").join("a.hib");
    // Cut back to the prompt while hibernated: the wake reads only that.
    s.hibernate(&path).unwrap();
    s.truncate(p.len());
    let before = s.n_evaluated();
    let wake = s.wake().unwrap();
    assert!(
        matches!(wake, Wake::Restored { tokens, .. } if tokens == p.len()),
        "{wake:?}"
    );
    assert_eq!(s.n_evaluated(), before);
    assert_eq!(s.tokens(), &p[..]);
    // Cleared while hibernated: a new prompt runs as in a fresh session.
    s.hibernate(&path).unwrap();
    s.clear();
    assert_eq!(gen(&mut s, &p, N_GEN), whole);
}

/// Hibernates a paused session, spoils its file with `spoil`, and checks
/// that waking rebuilds it (the reason matching `expect`) and that it
/// continues with the uninterrupted tokens.
fn refused(tag: &str, spoil: impl FnOnce(&Path), expect: fn(&HibernateError) -> bool) {
    let Some(model) = load(SMOL) else {
        return;
    };
    let (whole, mut s, first) = reference_and_paused(&model, KvType::F16);
    let path = dir("refused").join(format!("{tag}.hib"));
    s.hibernate(&path).unwrap();
    spoil(&path);
    let before = s.n_evaluated();
    let n_past = s.n_past();
    match s.wake().unwrap() {
        Wake::Rebuilt { tokens, reason, .. } => {
            assert!(expect(&reason), "{tag}: unexpected reason {reason}");
            assert_eq!(tokens, n_past);
            eprintln!("{tag}: rebuilt ({reason})");
        }
        other => panic!("{tag}: expected a rebuild, got {other:?}"),
    }
    assert_eq!(s.n_evaluated() - before, n_past as u64, "{tag}: rebuilt");
    assert_eq!(finish(&mut s, &first), whole, "{tag}: rebuilt session");
}

fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut b = std::fs::read(path).unwrap();
    f(&mut b);
    std::fs::write(path, b).unwrap();
}

#[test]
fn corrupt_byte_is_detected_and_rebuilt() {
    let corrupt = |e: &HibernateError| matches!(e, HibernateError::Corrupt { .. });
    // A byte of the KV rows (past the header, tokens and logits).
    refused(
        "kv-byte",
        |p| edit(p, |b| *b.iter_mut().rev().nth(4096).unwrap() ^= 0x20),
        corrupt,
    );
    // A byte of the token history.
    refused("token-byte", |p| edit(p, |b| b[61] ^= 0x01), corrupt);
    refused(
        "cut-short",
        |p| edit(p, |b| b.truncate(b.len() / 2)),
        corrupt,
    );
}

#[test]
fn other_version_and_missing_file_are_detected_and_rebuilt() {
    refused(
        "version",
        |p| edit(p, |b| b[8] = b[8].wrapping_add(1)),
        |e| matches!(e, HibernateError::Version { .. }),
    );
    refused(
        "missing",
        |p| std::fs::remove_file(p).unwrap(),
        |e| matches!(e, HibernateError::Io { .. }),
    );
}

#[test]
fn another_models_file_is_detected_and_rebuilt() {
    let Some(gemma) = load("gemma-3-270m-q4_k_m.gguf") else {
        return;
    };
    let other = dir("refused").join("gemma-src.hib");
    let mut g = session(&gemma, KvType::F16);
    gen(&mut g, &[2, 106, 1645], 2);
    g.save(&other).unwrap();
    drop(g);
    refused(
        "other-model",
        |p| std::fs::copy(&other, p).map(|_| ()).unwrap(),
        |e| matches!(e, HibernateError::Incompatible { .. }),
    );
}

/// Figures (not a check): a SmolLM2 session of 1000 tokens hibernated,
/// restored, and rebuilt from its history instead, with the file's size.
/// `cargo test --release -p tessera-core --test hibernate figures -- --ignored --nocapture`
#[test]
#[ignore]
fn figures() {
    let Some(model) = load(SMOL) else {
        return;
    };
    let n_vocab = model.hparams().n_vocab as u32;
    let history: Vec<u32> = (0..1000u32).map(|i| (i * 7919 + 13) % n_vocab).collect();
    let mut s = model
        .session(&SessionParams {
            n_ctx: 2048,
            ..SessionParams::default()
        })
        .unwrap();
    s.eval(&history, tessera_core::Logits::Last).unwrap();
    let path = dir("figures").join("smollm2-1000.hib");
    let resident = s.kv_bytes();
    for _ in 0..3 {
        let saved = s.hibernate(&path).unwrap();
        let Wake::Restored { time, .. } = s.wake().unwrap() else {
            panic!("not restored");
        };
        eprintln!(
            "{} tokens: file {} bytes (KV buffers of n_ctx 2048: {resident} bytes), hibernate {:?}, restore {:?}",
            saved.tokens, saved.bytes, saved.time, time
        );
    }
    s.hibernate(&path).unwrap();
    std::fs::write(&path, b"spoilt").unwrap();
    let Wake::Rebuilt { time, .. } = s.wake().unwrap() else {
        panic!("not rebuilt");
    };
    eprintln!("rebuilt from the history instead: {time:?}");
}
