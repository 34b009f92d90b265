//! Speculative decoding in the server: with SmolLM2 as its own draft
//! (`ServerConfig::draft`), greedy answers are those of a server without a
//! draft — one client after the other (the second time from the prefix
//! cache), streamed, and several clients at once on fewer slots; a seeded
//! sampled answer is the same too — and
//! `/metrics` shows drafted and accepted tokens with an acceptance of 1
//! (a draft equal to the target agrees with every greedy pick). A draft
//! with another vocabulary is refused at start.
//!
//! `speed_with_and_without_a_draft` (ignored: a measurement) prints the
//! aggregate tokens/s of 1 and 4 greedy clients with and without a draft:
//!
//! ```sh
//! TESSERA_MODELS=~/.cache/tessera/models cargo test --release -p tessera-server \
//!   --test speculative -- --ignored --nocapture
//! ```
//!
//! SmolLM2 drafts for itself (the overhead at 100 % acceptance) unless
//! `TESSERA_SPEC_TARGET` and `TESSERA_SPEC_DRAFT` name other GGUF files.
//!
//! Skipped without the model unless `TESSERA_STRICT=1`.

mod common;

use serde_json::json;
use tessera_core::speculative::SpecParams;
use tessera_server::DraftConfig;
use tessera_testkit::synth::{Arch, SynthConfig, TempModel};

const MAX_TOKENS: usize = 24;

const QUESTIONS: [&str; 4] = [
    "Write a long story about a dragon who learns to cook.",
    "Explain in detail how a car engine works.",
    "Describe the history of Rome, century by century.",
    "Write a poem of many verses about the sea.",
];

/// Answer `i`, streamed or whole. The questions ask for more than
/// `MAX_TOKENS` tokens: a round cut short by an end of generation would
/// leave guesses unexamined (counted as drafted, not accepted).
async fn answer(c: &reqwest::Client, url: &str, i: usize, stream: bool) -> String {
    let mut req = common::chat(QUESTIONS[i % QUESTIONS.len()], MAX_TOKENS);
    req["stream"] = json!(stream);
    if stream {
        let (status, data) = common::post_stream(c, url, &req).await;
        assert_eq!(status, 200, "{data:?}");
        common::joined_deltas(&data)
    } else {
        let (status, v) = common::post(c, url, &req).await;
        assert_eq!(status, 200, "{v}");
        common::content(&v).to_string()
    }
}

/// A sampled answer (temperature 0.9, seed 7).
async fn seeded(c: &reqwest::Client, url: &str) -> String {
    let mut req = common::chat(QUESTIONS[0], MAX_TOKENS);
    req["temperature"] = json!(0.9);
    req["seed"] = json!(7);
    let (status, v) = common::post(c, url, &req).await;
    assert_eq!(status, 200, "{v}");
    common::content(&v).to_string()
}

/// A counter or gauge of a `/metrics` text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_answers_with_a_draft_equal_those_without() {
    let Some(plain) = common::start(common::config(2)) else {
        return;
    };
    let c = common::client();
    let url = plain.url("/v1/chat/completions");
    let mut want = Vec::new();
    for i in 0..QUESTIONS.len() {
        want.push(answer(&c, &url, i, false).await);
    }
    let sampled = seeded(&c, &url).await;
    let text = c.get(plain.url("/metrics")).send().await.unwrap();
    let text = text.text().await.unwrap();
    assert!(
        !text.contains("tessera_draft"),
        "no draft, no draft metrics"
    );
    drop(plain);

    let mut config = common::config(2);
    config.draft = Some(DraftConfig {
        model: common::model().expect("loaded above"),
        spec: SpecParams {
            n_max: 4,
            ..SpecParams::default()
        },
    });
    let server = common::start(config).expect("the model is there");
    let url = server.url("/v1/chat/completions");
    // One after the other, streamed and whole, then again (the prompts
    // now in the slots' caches, the draft sessions catching up).
    for round in 0..2 {
        for (i, w) in want.iter().enumerate() {
            let got = answer(&c, &url, i, (i + round) % 2 == 0).await;
            assert_eq!(&got, w, "round {round}, question {i}: {}", QUESTIONS[i]);
        }
    }
    // Six clients at once on two slots.
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move { answer(&c, &url, i, i % 3 == 0).await })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let got = t.await.expect("client task");
        assert_eq!(got, want[i % want.len()], "concurrent client {i}");
    }

    let text = c.get(server.url("/metrics")).send().await.unwrap();
    let text = text.text().await.unwrap();
    let drafted = metric(&text, "tessera_draft_tokens_total");
    let accepted = metric(&text, "tessera_draft_tokens_accepted_total");
    let passes = metric(&text, "tessera_draft_verify_passes_total");
    eprintln!("drafted {drafted}, accepted {accepted}, {passes} verification passes");
    assert!(drafted > 0.0 && passes > 0.0, "{text}");
    assert_eq!(accepted, drafted, "the draft is the target: {text}");
    assert_eq!(metric(&text, "tessera_draft_acceptance_rate"), 1.0);
    // Fewer decode steps than tokens: the guesses were taken several a pass.
    let steps = metric(&text, "tessera_decode_steps_total");
    let generated = metric(&text, "tessera_completion_tokens_total");
    assert!(
        steps < generated / 2.0,
        "{steps} steps for {generated} tokens"
    );
    // Sampling with a temperature and a seed (after the counts: the greedy
    // guesses meet sampled picks): every token is still drawn by the
    // request's sampler from the target's rows, in order.
    assert_eq!(seeded(&c, &url).await, sampled, "seeded sampling");
}

#[test]
fn a_draft_with_another_vocabulary_is_refused() {
    let Some(model) = common::model() else {
        return;
    };
    let file = TempModel::new(&SynthConfig::new(Arch::Llama)).unwrap();
    let draft = tessera::Model::load_blocking(
        &file.path().to_string_lossy(),
        tessera::LoadOptions::default().threads(1),
    )
    .unwrap();
    let mut config = common::config(1);
    config.draft = Some(DraftConfig {
        model: draft,
        spec: SpecParams::default(),
    });
    let e = tessera_server::Server::new(model, config).unwrap_err();
    assert!(e.to_string().contains("cannot draft"), "{e}");
}

/// Aggregate tokens/s of `clients` greedy clients, each one completion of
/// `n` tokens (end of generation banned), on a server of `clients` slots.
async fn speed(model: &tessera::Model, draft: Option<&tessera::Model>, clients: usize) -> f64 {
    let n = 64;
    let mut config = common::config(clients);
    config.draft = draft.map(|d| DraftConfig {
        model: d.clone(),
        spec: SpecParams {
            n_max: 4,
            ..SpecParams::default()
        },
    });
    let server = common::start_on(model.clone(), config);
    let c = common::client();
    let url = server.url("/v1/completions");
    let eog: Vec<u32> = model.core().tokenizer().eog_ids().collect();
    let bias: serde_json::Map<_, _> = eog.iter().map(|id| (id.to_string(), json!(-100))).collect();
    common::post(
        &c,
        &url,
        &json!({"prompt": "Hello", "max_tokens": 4, "temperature": 0}),
    )
    .await;
    let t0 = std::time::Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let (c, url, bias) = (c.clone(), url.clone(), bias.clone());
            tokio::spawn(async move {
                let req = json!({"prompt": format!("Story {i}: Once upon a time"),
                    "max_tokens": n, "temperature": 0, "logit_bias": bias});
                let (status, v) = common::post(&c, &url, &req).await;
                assert_eq!(status, 200, "{v}");
                v["usage"]["completion_tokens"].as_u64().unwrap()
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / t0.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn speed_with_and_without_a_draft() {
    let load = |p: String| {
        tessera::Model::load_blocking(&p, tessera::LoadOptions::default().threads(2)).unwrap()
    };
    let (target, draft) = match (
        std::env::var("TESSERA_SPEC_TARGET"),
        std::env::var("TESSERA_SPEC_DRAFT"),
    ) {
        (Ok(t), Ok(d)) => (load(t), load(d)),
        _ => {
            let Some(m) = common::model() else {
                return;
            };
            (m.clone(), m)
        }
    };
    eprintln!("clients  tok/s plain  tok/s draft (--draft-max 4)");
    for _ in 0..3 {
        for clients in [1, 4] {
            let plain = speed(&target, None, clients).await;
            let spec = speed(&target, Some(&draft), clients).await;
            eprintln!("{clients:>7}  {plain:>11.1}  {spec:>11.1}");
        }
    }
}
