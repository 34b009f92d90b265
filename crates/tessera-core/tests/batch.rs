//! Batched decode steps over several sessions ([`BatchDecoder`]): every
//! session's logits equal, bit for bit, those of its own one-token step,
//! for sessions at different positions (one past 256 cells, where a
//! one-token step's attention takes ggml's split-KV path), with batches
//! that change membership from step to step. Covered: SmolLM2 Q4_1 and
//! Gemma 3 Q4_K_M (repacked Q4_K, sliding windows), synthetic MoE models
//! (`mul_mat_id`, gpt-oss's `add_id`, attention sinks and windows;
//! DeepSeek-2's MLA and per-head products) and the Q4_K_M MoE bench model.
//! Runs of several tokens per session (`decode_spans`, speculative
//! decoding's verification) give every row of a one-token step. Bad input
//! is refused before anything runs.

use tessera_core::{BatchDecoder, CoreError, Logits, Model, ModelParams, Session, SessionParams};
use tessera_testkit::env;
use tessera_testkit::synth::{Arch, SynthConfig, TempModel, WeightType};

fn load(path: &std::path::Path) -> Model {
    let p = ModelParams {
        n_threads: 2,
        ..ModelParams::default()
    };
    Model::load(path, &p).unwrap()
}

fn session(model: &Model) -> Session<'_> {
    model
        .session(&SessionParams {
            n_ctx: 512,
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

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Sessions after prompts of `lens` tokens decode `steps` tokens each
/// (greedy), batched and one at a time; every step's logits are equal bit
/// for bit. Odd steps leave the first session out of the batch.
fn batched_equals_single(model: &Model, what: &str, lens: &[usize], steps: usize) {
    let mut batched: Vec<Session<'_>> = lens.iter().map(|_| session(model)).collect();
    let mut single: Vec<Session<'_>> = lens.iter().map(|_| session(model)).collect();
    let mut next = Vec::new();
    for (i, &n) in lens.iter().enumerate() {
        let prompt = ids(model, n, i as u32 + 1);
        batched[i].eval(&prompt, Logits::Last).unwrap();
        let l = single[i].eval(&prompt, Logits::Last).unwrap();
        next.push(argmax(l));
    }
    let mut dec = BatchDecoder::new(model).unwrap();
    for step in 0..steps {
        let skip_first = step % 2 == 1 && lens.len() > 2;
        let members: Vec<usize> = (usize::from(skip_first)..lens.len()).collect();
        let toks: Vec<u32> = members.iter().map(|&i| next[i]).collect();
        let mut refs: Vec<&mut Session<'_>> = batched
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| members.contains(i))
            .map(|(_, s)| s)
            .collect();
        dec.decode(&mut refs, &toks).unwrap();
        for (&i, &t) in members.iter().zip(&toks) {
            let want = single[i].eval(&[t], Logits::Last).unwrap().to_vec();
            let got = batched[i].last_logits();
            let same = want.len() == got.len()
                && want
                    .iter()
                    .zip(got)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same,
                "{what}: step {step}, session {i} (position {}) of a batch of {}: \
                 batched logits differ from its one-token step",
                single[i].n_past() - 1,
                members.len()
            );
            assert_eq!(batched[i].tokens(), single[i].tokens(), "{what}: tokens");
            next[i] = argmax(&want);
        }
    }
    let c = dec.counts();
    assert_eq!(c.steps, steps as u64);
    assert_eq!(
        c.fallback_steps, 0,
        "{what}: the CPU runs multi-sequence steps"
    );
}

/// Sessions after prompts of `lens` tokens evaluate runs of `runs[i]`
/// tokens in one `decode_spans` step; every row equals, bit for bit, the
/// one-token step of a twin session, and each session ends holding its run.
fn spans_equal_single(model: &Model, what: &str, lens: &[usize], runs: &[usize]) {
    let mut batched: Vec<Session<'_>> = lens.iter().map(|_| session(model)).collect();
    let mut single: Vec<Session<'_>> = lens.iter().map(|_| session(model)).collect();
    for (i, &n) in lens.iter().enumerate() {
        let prompt = ids(model, n, i as u32 + 1);
        batched[i].eval(&prompt, Logits::Last).unwrap();
        single[i].eval(&prompt, Logits::Last).unwrap();
    }
    let spans: Vec<Vec<u32>> = runs
        .iter()
        .enumerate()
        .map(|(i, &r)| ids(model, r, 100 + i as u32))
        .collect();
    let refs: Vec<&[u32]> = spans.iter().map(Vec::as_slice).collect();
    let mut dec = BatchDecoder::new(model).unwrap();
    let mut sessions: Vec<&mut Session<'_>> = batched.iter_mut().collect();
    let rows = dec.decode_spans(&mut sessions, &refs).unwrap().to_vec();
    let n_vocab = model.hparams().n_vocab;
    assert_eq!(rows.len(), runs.iter().sum::<usize>() * n_vocab, "{what}");
    let mut row = rows.chunks_exact(n_vocab);
    for (i, span) in spans.iter().enumerate() {
        for (j, &t) in span.iter().enumerate() {
            let want = single[i].eval(&[t], Logits::Last).unwrap();
            let got = row.next().unwrap();
            assert!(
                want.iter()
                    .zip(got)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{what}: session {i}, token {j} of its run (position {}): \
                 the row differs from its one-token step",
                single[i].n_past() - 1
            );
        }
        assert_eq!(batched[i].tokens(), single[i].tokens(), "{what}: tokens");
        assert_eq!(batched[i].last_logits(), single[i].last_logits(), "{what}");
    }
    assert_eq!(dec.counts().fallback_steps, 0, "{what}");
}

#[test]
fn spans_equal_one_token_steps_smollm2() {
    let Some(path) = env::real_model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let m = load(&path);
    spans_equal_single(&m, "SmolLM2 Q4_1", &[5, 300, 37], &[4, 1, 6]);
}

#[test]
fn spans_equal_one_token_steps_synthetic() {
    for arch in [Arch::Llama, Arch::Gemma3] {
        let mut c = SynthConfig::new(arch);
        c.seed = 3;
        c.context_length = 512;
        c.weight_type = WeightType::F16;
        let file = TempModel::new(&c).unwrap();
        let m = load(file.path());
        spans_equal_single(&m, &format!("synthetic {arch:?}"), &[2, 30, 11], &[3, 5, 1]);
    }
}

#[test]
fn batched_steps_equal_one_token_steps_smollm2() {
    let Some(path) = env::real_model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let m = load(&path);
    batched_equals_single(&m, "SmolLM2 Q4_1", &[5, 300, 37], 4);
}

#[test]
fn batched_steps_equal_one_token_steps_gemma3() {
    let Some(path) = env::real_model("gemma-3-270m-q4_k_m.gguf") else {
        return;
    };
    let m = load(&path);
    batched_equals_single(&m, "Gemma 3 Q4_K_M", &[3, 40, 270], 3);
}

#[test]
fn batched_steps_equal_one_token_steps_moe_bench() {
    let Some(path) = env::real_model("synth-moe-bench-q4_k_m.gguf") else {
        return;
    };
    let m = load(&path);
    batched_equals_single(&m, "MoE bench Q4_K_M", &[4, 9, 17], 2);
}

#[test]
fn batched_steps_equal_one_token_steps_synthetic_moe() {
    for arch in [Arch::Qwen3Moe, Arch::GptOss, Arch::Deepseek2, Arch::Gemma3] {
        let mut c = SynthConfig::new(arch);
        c.seed = 7;
        c.context_length = 512;
        c.weight_type = WeightType::F16;
        let file = TempModel::new(&c).unwrap();
        let m = load(file.path());
        batched_equals_single(&m, &format!("synthetic {arch:?}"), &[2, 30, 11, 7], 4);
    }
}

#[test]
fn bad_batches_are_refused_before_anything_runs() {
    let c = SynthConfig::new(Arch::Llama);
    let file = TempModel::new(&c).unwrap();
    let m = load(file.path());
    let other = load(file.path());
    let mut a = session(&m);
    let mut b = session(&m);
    a.eval(&[1, 2, 3], Logits::Last).unwrap();
    b.eval(&[4], Logits::Last).unwrap();
    let mut dec = BatchDecoder::new(&m).unwrap();
    let n_vocab = m.hparams().n_vocab as u32;

    let e = dec.decode(&mut [&mut a, &mut b], &[1]).unwrap_err();
    assert!(matches!(e, CoreError::Input(_)), "{e}");
    let e = dec
        .decode(&mut [&mut a, &mut b], &[1, n_vocab])
        .unwrap_err();
    assert!(e.to_string().contains("vocabulary"), "{e}");
    let e = dec.decode(&mut [], &[]).unwrap_err();
    assert!(matches!(e, CoreError::Input(_)), "{e}");
    let e = dec
        .decode_spans(&mut [&mut a, &mut b], &[&[1, 2], &[]])
        .unwrap_err();
    assert!(matches!(e, CoreError::Input(_)), "{e}");
    let mut foreign = session(&other);
    let e = dec
        .decode(&mut [&mut a, &mut foreign], &[1, 2])
        .unwrap_err();
    assert!(e.to_string().contains("another model"), "{e}");

    let mut full = m
        .session(&SessionParams {
            n_ctx: 4,
            ..SessionParams::default()
        })
        .unwrap();
    full.eval(&[1, 2, 3, 4], Logits::Last).unwrap();
    let e = dec.decode(&mut [&mut a, &mut full], &[1, 2]).unwrap_err();
    assert!(matches!(e, CoreError::ContextFull { .. }), "{e}");

    // Nothing ran: the sessions hold what they held.
    assert_eq!(a.tokens(), &[1, 2, 3]);
    assert_eq!(b.tokens(), &[4]);
    assert_eq!(full.n_past(), 4);
    assert_eq!(dec.counts().steps, 0);
    // And a good batch still runs.
    dec.decode(&mut [&mut a, &mut b], &[5, 6]).unwrap();
    assert_eq!(a.tokens(), &[1, 2, 3, 5]);
    assert_eq!(b.tokens(), &[4, 6]);

    // A hibernated session is woken first, and steps as its twin does.
    let dir = std::env::temp_dir().join(format!("tessera-batch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut twin = session(&m);
    twin.eval(&[4], Logits::Last).unwrap();
    twin.eval(&[6], Logits::Last).unwrap();
    b.hibernate(&dir.join("b.state")).unwrap();
    dec.decode(&mut [&mut a, &mut b], &[7, 8]).unwrap();
    let want = twin.eval(&[8], Logits::Last).unwrap();
    assert_eq!(b.tokens(), &[4, 6, 8]);
    assert!(want
        .iter()
        .zip(b.last_logits())
        .all(|(x, y)| x.to_bits() == y.to_bits()));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Tokens per second of batched steps of 1, 4 and 16 sessions on SmolLM2
/// (a measurement, ignored by default: `--ignored --nocapture`).
#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn batched_step_speed() {
    let Some(path) = env::real_model("SmolLM2-135M-Instruct.Q4_1.gguf") else {
        return;
    };
    let m = load(&path);
    let mut dec = BatchDecoder::new(&m).unwrap();
    eprintln!("sessions  steps  ms/step  tokens/s");
    for n in [1usize, 2, 4, 8, 16] {
        let mut ss: Vec<Session<'_>> = (0..n).map(|_| session(&m)).collect();
        for (i, s) in ss.iter_mut().enumerate() {
            s.eval(&ids(&m, 8, i as u32), Logits::Last).unwrap();
        }
        let steps = 32;
        let mut t = std::time::Duration::ZERO;
        for step in 0..steps + 2 {
            let toks: Vec<u32> = ss.iter().map(|s| argmax(s.last_logits())).collect();
            let mut refs: Vec<&mut Session<'_>> = ss.iter_mut().collect();
            let t0 = std::time::Instant::now();
            dec.decode(&mut refs, &toks).unwrap();
            if step >= 2 {
                t += t0.elapsed();
            }
        }
        let ms = t.as_secs_f64() * 1e3 / steps as f64;
        eprintln!(
            "{n:>8}  {steps:>5}  {ms:>7.2}  {:>8.1}",
            n as f64 * 1e3 / ms
        );
    }
}
