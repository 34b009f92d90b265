//! Speculative decoding in the server: with SmolLM2 as its own draft
//! (`ServerConfig::draft`), greedy answers are those of a server without a
//! draft — one client after the other (the second time from the prefix
//! cache), streamed, and several clients at once on fewer slots — and
//! `/metrics` shows drafted and accepted tokens with an acceptance of 1
//! (a draft equal to the target agrees with every greedy pick). A draft
//! with another vocabulary is refused at start.
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
