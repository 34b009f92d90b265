//! Speculative decoding on real models.
//!
//! - Decode-exact steps: `eval` of a batch with
//!   [`Session::set_decode_exact`] on returns, bit for bit, the logits of
//!   evaluating its tokens one at a time — past 256 cells too, where a
//!   one-token step's attention takes ggml's split-KV path — which is what
//!   makes verified drafts token-identical to plain decoding.
//! - Greedy generation with a draft gives the tokens, the text and the
//!   session state of `generate`, 320 tokens past a prompt (past 256
//!   cells): SmolLM2 Q8_0 with a Q4_0 draft (both requantized from the
//!   cached Q4_1, so acceptance is high), Gemma 3 Q4_K_M with a Q4_0 draft,
//!   SmolLM2 with a synthetic draft of its vocabulary (acceptance near 0),
//!   synthetic Llama and Gemma 3 pairs of different seeds and sizes, at
//!   several draft lengths.
//! - Seeded sampling with a temperature and penalties: the same tokens as
//!   `generate` with the same seed.
//! - Stop strings, end of generation, `n_predict`, cancellation and a full
//!   context end it where `generate` ends.
//! - A draft with another vocabulary is refused.
//! - Batched drafting (`guess_batch`, the server's): with the target as
//!   its own draft, every session's guesses are its greedy continuation,
//!   after a prompt and after a round that accepted some guesses.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tessera_core::generate::{generate, GenerateParams, GenerateStats, StopReason};
use tessera_core::quantize::{quantize_file, FileType, QuantizeParams};
use tessera_core::sample::SamplerConfig;
use tessera_core::speculative::{
    generate_speculative, guess_batch, DraftJob, SpecParams, SpecStats,
};
use tessera_core::{BatchDecoder, CoreError, Logits, Model, ModelParams, Session, SessionParams};
use tessera_testkit::env;
use tessera_testkit::synth::{Arch, SynthConfig, TempModel, VocabSource, WeightType};
use tessera_tokenizer::EncodeOptions;

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

/// `file` from the model cache requantized to `ftype`, made once under the
/// target directory's scratch space.
fn requantized(file: &str, ftype: FileType, tag: &str) -> Option<PathBuf> {
    let src = env::real_model(file)?;
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("spec-{tag}-{file}"));
    if !out.exists() {
        let part = out.with_extension(format!("part{}", std::process::id()));
        quantize_file(
            &src,
            &part,
            &QuantizeParams {
                ftype,
                threads: 2,
                allow_requantize: true,
            },
            |_| {},
        )
        .unwrap();
        std::fs::rename(&part, &out).unwrap();
    }
    Some(out)
}

fn load_path(path: &Path) -> Model {
    Model::load(
        path,
        &ModelParams {
            n_threads: 2,
            ..ModelParams::default()
        },
    )
    .unwrap()
}

/// SmolLM2 requantized to Q8_0 (target) and Q4_0 (draft), made once.
fn smollm2_pair() -> Option<&'static (PathBuf, PathBuf)> {
    static PAIR: OnceLock<Option<(PathBuf, PathBuf)>> = OnceLock::new();
    PAIR.get_or_init(|| {
        Some((
            requantized(env::SMOLLM2, FileType::Q8_0, "q8_0")?,
            requantized(env::SMOLLM2, FileType::Q4_0, "q4_0")?,
        ))
    })
    .as_ref()
}

fn greedy(n: usize) -> GenerateParams {
    GenerateParams {
        n_predict: Some(n),
        sampler: SamplerConfig::greedy(),
        stop: Vec::new(),
        ignore_eos: true,
    }
}

fn encode(model: &Model, text: &str) -> Vec<u32> {
    model
        .tokenizer()
        .encode(
            text,
            EncodeOptions {
                add_special: true,
                parse_special: true,
            },
        )
        .unwrap()
}

/// What one generation gave: tokens, streamed text, stats, the session's
/// tokens afterwards.
struct Run {
    tokens: Vec<u32>,
    text: String,
    stats: GenerateStats,
    state: Vec<u32>,
}

fn plain(model: &Model, n_ctx: usize, prompt: &[u32], p: &GenerateParams) -> Run {
    let mut s = model
        .session(&SessionParams {
            n_ctx,
            ..SessionParams::default()
        })
        .unwrap();
    let mut text = String::new();
    let (tokens, stats) = generate(&mut s, prompt, p, |t| {
        text.push_str(t);
        true
    })
    .unwrap();
    Run {
        tokens,
        text,
        stats,
        state: s.tokens().to_vec(),
    }
}

fn speculative(
    target: &Model,
    draft: &Model,
    n_ctx: usize,
    prompt: &[u32],
    p: &GenerateParams,
    spec: &SpecParams,
) -> (Run, SpecStats) {
    let sp = SessionParams {
        n_ctx,
        ..SessionParams::default()
    };
    let mut t = target.session(&sp).unwrap();
    let mut d = draft.session(&sp).unwrap();
    let mut text = String::new();
    let (tokens, stats, st) = generate_speculative(&mut t, &mut d, prompt, p, spec, |x| {
        text.push_str(x);
        true
    })
    .unwrap();
    assert!(!t.decode_exact(), "decode-exact left on");
    (
        Run {
            tokens,
            text,
            stats,
            state: t.tokens().to_vec(),
        },
        st,
    )
}

/// Plain and speculative runs agree on everything observable.
fn assert_same(what: &str, a: &Run, b: &Run) {
    let first = a.tokens.iter().zip(&b.tokens).position(|(x, y)| x != y);
    assert!(
        a.tokens == b.tokens,
        "{what}: tokens differ (first at {first:?}; {} vs {} tokens)",
        a.tokens.len(),
        b.tokens.len()
    );
    assert_eq!(a.text, b.text, "{what}: text");
    assert_eq!(a.stats.stop, b.stats.stop, "{what}: stop reason");
    assert_eq!(a.stats.n_gen, b.stats.n_gen, "{what}: n_gen");
    assert_eq!(a.state, b.state, "{what}: session tokens afterwards");
}

fn report(what: &str, plain: &Run, spec: &Run, st: &SpecStats) {
    eprintln!(
        "{what}: {} tokens, drafted {}, accepted {} ({:.1} %), {} target passes; {:.1} t/s plain, {:.1} t/s speculative",
        spec.tokens.len(),
        st.n_drafted,
        st.n_accepted,
        100.0 * st.acceptance_rate(),
        st.n_target_passes,
        plain.stats.gen_tps(),
        spec.stats.gen_tps()
    );
}

const PROMPT: &str = "Write a long story about a lighthouse keeper and the sea.";

#[test]
fn greedy_is_token_identical_smollm2_q8_0_with_q4_0_draft() {
    let Some((target, draft)) = smollm2_pair() else {
        return;
    };
    let (target, draft) = (load_path(target), load_path(draft));
    let prompt = encode(&target, PROMPT);
    let p = greedy(320);
    let base = plain(&target, 1024, &prompt, &p);
    for n_max in [1, 4, 8] {
        let spec = SpecParams {
            n_max,
            ..SpecParams::default()
        };
        let (run, st) = speculative(&target, &draft, 1024, &prompt, &p, &spec);
        report(
            &format!("SmolLM2 Q8_0 / Q4_0 draft, n_max {n_max}"),
            &base,
            &run,
            &st,
        );
        assert_same(&format!("SmolLM2 Q8_0 / Q4_0, n_max {n_max}"), &base, &run);
        assert!(st.n_accepted > 0 && st.n_target_passes < 320);
    }
}

#[test]
fn greedy_is_token_identical_gemma3_with_q4_0_draft() {
    let Some(draft) = requantized(env::GEMMA3, FileType::Q4_0, "q4_0") else {
        return;
    };
    let target = load(env::GEMMA3).unwrap();
    let draft = load_path(&draft);
    let prompt = encode(&target, PROMPT);
    let p = greedy(300);
    let base = plain(&target, 1024, &prompt, &p);
    let (run, st) = speculative(&target, &draft, 1024, &prompt, &p, &SpecParams::default());
    report("Gemma 3 Q4_K_M / Q4_0 draft", &base, &run, &st);
    assert_same("Gemma 3 Q4_K_M / Q4_0", &base, &run);
}

/// A synthetic model for a vocabulary: seed and size set.
fn synth(arch: Arch, seed: u64, n_layer: u64, n_embd: u64, vocab: VocabSource) -> TempModel {
    let mut c = SynthConfig::new(arch);
    c.seed = seed;
    c.n_layer = n_layer;
    c.n_embd = n_embd;
    c.n_ff = 2 * n_embd;
    c.vocab = vocab;
    c.context_length = 1024;
    c.weight_type = WeightType::F16;
    TempModel::new(&c).unwrap()
}

#[test]
fn greedy_is_token_identical_smollm2_with_an_unrelated_draft() {
    let Some(vocab) = VocabSource::smollm2() else {
        return;
    };
    let target = load(env::SMOLLM2).unwrap();
    let d = synth(Arch::Llama, 7, 1, 64, vocab);
    let draft = load_path(d.path());
    let prompt = encode(&target, PROMPT);
    let p = greedy(96);
    let base = plain(&target, 512, &prompt, &p);
    let (run, st) = speculative(&target, &draft, 512, &prompt, &p, &SpecParams::default());
    report("SmolLM2 / synthetic draft", &base, &run, &st);
    assert_same("SmolLM2 / synthetic draft", &base, &run);
}

#[test]
fn greedy_is_token_identical_on_synthetic_pairs() {
    for arch in [Arch::Llama, Arch::Gemma3] {
        let t = synth(arch, 1, 2, 64, VocabSource::Builtin);
        let d = synth(arch, 2, 1, 32, VocabSource::Builtin);
        let (target, draft) = (load_path(t.path()), load_path(d.path()));
        let prompt = encode(&target, "the quick brown fox jumps over the lazy dog");
        let p = greedy(300);
        let base = plain(&target, 512, &prompt, &p);
        for n_max in [1, 2, 5, 16] {
            let spec = SpecParams {
                n_max,
                ..SpecParams::default()
            };
            let (run, st) = speculative(&target, &draft, 512, &prompt, &p, &spec);
            report(
                &format!("synthetic {} n_max {n_max}", arch.name()),
                &base,
                &run,
                &st,
            );
            assert_same(
                &format!("synthetic {}, n_max {n_max}", arch.name()),
                &base,
                &run,
            );
            // The target against itself as the draft accepts everything.
        }
        let (run, st) = speculative(&target, &target, 512, &prompt, &p, &SpecParams::default());
        assert_same(
            &format!("synthetic {}, self-draft", arch.name()),
            &base,
            &run,
        );
        assert_eq!(st.n_accepted, st.n_drafted, "a model agrees with itself");
    }
}

#[test]
fn seeded_sampling_is_token_identical() {
    let Some((target, draft)) = smollm2_pair() else {
        return;
    };
    let (target, draft) = (load_path(target), load_path(draft));
    let prompt = encode(&target, PROMPT);
    for seed in [1, 42] {
        let p = GenerateParams {
            n_predict: Some(128),
            sampler: SamplerConfig {
                temp: 0.8,
                repeat_penalty: 1.1,
                seed: Some(seed),
                ..SamplerConfig::default()
            },
            stop: Vec::new(),
            ignore_eos: true,
        };
        let base = plain(&target, 512, &prompt, &p);
        let (run, st) = speculative(&target, &draft, 512, &prompt, &p, &SpecParams::default());
        report(&format!("SmolLM2 temp 0.8 seed {seed}"), &base, &run, &st);
        assert_same(&format!("temp 0.8, seed {seed}"), &base, &run);
    }
}

#[test]
fn stops_where_generate_stops() {
    let Some((target, draft)) = smollm2_pair() else {
        return;
    };
    let (target, draft) = (load_path(target), load_path(draft));
    let prompt = encode(&target, "The capital of France is");
    let base = plain(&target, 512, &prompt, &greedy(40));
    // A stop string from the middle of the greedy text.
    let stop = base.text[base.text.len() / 2..][..4].to_string();
    let cases = [
        (
            "stop string",
            512,
            GenerateParams {
                stop: vec![stop],
                ..greedy(40)
            },
        ),
        ("n_predict 0", 512, greedy(0)),
        ("n_predict 1", 512, greedy(1)),
        ("n_predict 7", 512, greedy(7)),
        (
            "end of generation",
            512,
            GenerateParams {
                ignore_eos: false,
                ..greedy(200)
            },
        ),
        ("full context", prompt.len() + 20, greedy(100)),
    ];
    for (what, n_ctx, p) in cases {
        let a = plain(&target, n_ctx, &prompt, &p);
        let (b, _) = speculative(&target, &draft, n_ctx, &prompt, &p, &SpecParams::default());
        eprintln!("{what}: {:?} after {} tokens", a.stats.stop, a.tokens.len());
        assert_same(what, &a, &b);
    }
    let a = plain(&target, prompt.len() + 20, &prompt, &greedy(100));
    assert_eq!(a.stats.stop, StopReason::ContextFull);
}

#[test]
fn cancelling_stops_at_the_same_text() {
    let Some((target, draft)) = smollm2_pair() else {
        return;
    };
    let (target, draft) = (load_path(target), load_path(draft));
    let prompt = encode(&target, PROMPT);
    let sp = SessionParams {
        n_ctx: 512,
        ..SessionParams::default()
    };
    let mut pieces = [Vec::new(), Vec::new()];
    for (i, pieces) in pieces.iter_mut().enumerate() {
        let mut t = target.session(&sp).unwrap();
        let mut on_text = |x: &str| {
            pieces.push(x.to_string());
            pieces.len() < 10
        };
        let stop = if i == 0 {
            generate(&mut t, &prompt, &greedy(100), &mut on_text)
                .unwrap()
                .1
                .stop
        } else {
            let mut d = draft.session(&sp).unwrap();
            let spec = SpecParams::default();
            generate_speculative(&mut t, &mut d, &prompt, &greedy(100), &spec, &mut on_text)
                .unwrap()
                .1
                .stop
        };
        assert_eq!(stop, StopReason::Cancelled);
    }
    assert_eq!(pieces[0], pieces[1]);
}

#[test]
fn a_draft_with_another_vocabulary_is_refused() {
    let (Some(target), Some(draft)) = (load(env::SMOLLM2), load(env::GEMMA3)) else {
        return;
    };
    let sp = SessionParams {
        n_ctx: 64,
        ..SessionParams::default()
    };
    let (mut t, mut d) = (target.session(&sp).unwrap(), draft.session(&sp).unwrap());
    let r = generate_speculative(
        &mut t,
        &mut d,
        &[1, 2, 3],
        &greedy(4),
        &SpecParams::default(),
        |_| true,
    );
    match r {
        Err(CoreError::Config(m)) => assert!(m.contains("draft"), "{m}"),
        other => panic!(
            "expected a configuration error, got {:?}",
            other.map(|r| r.0)
        ),
    }
}

/// The greedy continuation of `s` after `next`: `k` one-token steps.
fn continuation(s: &mut Session<'_>, next: u32, k: usize) -> Vec<u32> {
    let mut out = Vec::new();
    let mut t = next;
    while out.len() < k {
        let l = s.eval(&[t], Logits::Last).unwrap();
        t = (0..l.len()).fold(0, |b, i| if l[i] > l[b] { i } else { b }) as u32;
        out.push(t);
    }
    out
}

#[test]
fn batched_drafting_guesses_the_greedy_continuation() {
    let t = synth(Arch::Llama, 3, 2, 64, VocabSource::Builtin);
    let model = load_path(t.path());
    let spec = SpecParams {
        n_max: 4,
        ..SpecParams::default()
    };
    // Three targets (here: reference sessions) after prompts of 20, 30 and
    // 40 tokens; the second drafts nothing this round.
    let mut refs: Vec<Session<'_>> = (0..3).map(|_| session(&model)).collect();
    let mut drafts: Vec<Session<'_>> = (0..3).map(|_| session(&model)).collect();
    let mut committed: Vec<Vec<u32>> = (0..3).map(|i| ids(&model, 20 + 10 * i, i as u32)).collect();
    for (r, c) in refs.iter_mut().zip(&committed) {
        r.eval(c, Logits::Last).unwrap();
    }
    let mut dec = BatchDecoder::new(&model).unwrap();
    let mut guesses = vec![Vec::new(); 3];
    let mut st = vec![SpecStats::default(); 3];
    for round in 0..2 {
        let next: Vec<u32> = (0..3).map(|i| 7 + 31 * i as u32 + round).collect();
        let ks = [4, if round == 0 { 0 } else { 3 }, 2];
        let jobs: Vec<DraftJob<'_>> = (0..3)
            .map(|i| DraftJob {
                committed: &committed[i],
                next: next[i],
                k: ks[i],
            })
            .collect();
        let mut ds: Vec<&mut Session<'_>> = drafts.iter_mut().collect();
        let go = guess_batch(&mut dec, &mut ds, &jobs, &spec, &mut guesses, &mut st).unwrap();
        assert_eq!(go, [true; 3]);
        for i in 0..3 {
            let want = continuation(&mut refs[i], next[i], ks[i]);
            assert_eq!(guesses[i], want, "round {round}, session {i}");
            // The target accepts `next` and the first guess (if any); the
            // reference keeps their one-token steps (and takes one more
            // when it lacks one).
            committed[i].push(next[i]);
            committed[i].extend(guesses[i].first());
            refs[i].truncate(committed[i].len());
            let have = refs[i].n_past();
            if have < committed[i].len() {
                refs[i].eval(&committed[i][have..], Logits::Last).unwrap();
            }
        }
    }
    assert_eq!(
        st[1].n_draft_steps, 4,
        "session 1 drafted in the second round only"
    );
}
