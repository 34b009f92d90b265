//! 32 clients at once against 4 slots: every answer is the one the same
//! request gets alone (greedy), streamed and whole requests mixed, the
//! queue is used (its depth shows in `/metrics`) and drains to zero.
//!
//! Skipped without the model unless `TESSERA_STRICT=1`.

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

const CLIENTS: usize = 32;
const MAX_TOKENS: usize = 8;

const TOPICS: [&str; 8] = [
    "the sun",
    "the ocean",
    "a cat",
    "music",
    "winter",
    "a city",
    "trees",
    "the moon",
];
const ASKS: [&str; 4] = [
    "Write one sentence about",
    "Give me a fact about",
    "Describe in a few words",
    "What rhymes with",
];

fn request(i: usize, stream: bool) -> Value {
    let q = format!("{} {}.", ASKS[i % 4], TOPICS[i / 4]);
    let mut r = common::chat(&q, MAX_TOKENS);
    r["stream"] = json!(stream);
    r
}

async fn answer(c: &reqwest::Client, url: &str, i: usize, stream: bool) -> String {
    let req = request(i, stream);
    if stream {
        let (status, data) = common::post_stream(c, url, &req).await;
        assert_eq!(status, 200, "{data:?}");
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
        common::joined_deltas(&data)
    } else {
        let (status, v) = common::post(c, url, &req).await;
        assert_eq!(status, 200, "{v}");
        common::content(&v).to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_clients_get_their_single_client_answers() {
    let Some(server) = common::start(common::config(4)) else {
        return;
    };
    let c = common::client();
    let url = server.url("/v1/chat/completions");

    // Alone, one after the other.
    let mut alone = Vec::new();
    for i in 0..CLIENTS {
        alone.push(answer(&c, &url, i, false).await);
    }

    let metrics = c.get(server.url("/metrics")).send().await.unwrap();
    let before = decode_counts(&metrics.text().await.unwrap());

    // All at once, half of them streamed; /metrics watched meanwhile.
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move { answer(&c, &url, i, i % 2 == 0).await })
        })
        .collect();
    let watcher = {
        let (c, url) = (c.clone(), server.url("/metrics"));
        tokio::spawn(async move {
            let mut deepest = 0.0f64;
            for _ in 0..200 {
                let text = c.get(&url).send().await.unwrap().text().await.unwrap();
                let depth: f64 = text
                    .lines()
                    .find_map(|l| l.strip_prefix("tessera_queue_depth ")?.parse().ok())
                    .unwrap();
                deepest = deepest.max(depth);
                if deepest > 0.0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            deepest
        })
    };
    let mut together = Vec::new();
    for t in tasks {
        together.push(t.await.expect("client task"));
    }
    let elapsed = t0.elapsed();
    for (i, (a, b)) in alone.iter().zip(&together).enumerate() {
        assert_eq!(a, b, "client {i}: {:?}", request(i, false)["messages"][1]);
    }
    assert!(
        watcher.await.unwrap() > 0.0,
        "28 requests should have queued"
    );
    eprintln!("{CLIENTS} clients, 4 slots: {elapsed:.2?}");

    let text = c
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("\ntessera_queue_depth 0\n"), "{text}");
    assert!(text.contains("\ntessera_slots_busy 0\n"), "{text}");
    assert!(text.contains("\ntessera_sessions_resident 4\n"), "{text}");
    // The engine decoded several requests per step while all ran at once.
    let (steps, tokens) = decode_counts(&text);
    let batch = (tokens - before.1) / (steps - before.0);
    eprintln!("average decode batch while together: {batch:.2}");
    assert!(
        batch > 2.0,
        "average decode batch {batch} with 32 clients on 4 slots"
    );
}

/// `tessera_decode_steps_total` and `tessera_decode_tokens_total`.
fn decode_counts(metrics: &str) -> (f64, f64) {
    let get = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in\n{metrics}"))
    };
    (
        get("tessera_decode_steps_total"),
        get("tessera_decode_tokens_total"),
    )
}

/// Prompts evaluated in chunks of 8 tokens between the decode steps of
/// the others: a long prompt sent with three short ones gets the answer
/// it gets alone, and so do they.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_prompts_beside_decoding_requests() {
    let mut config = common::config(4);
    config.session.n_ubatch = 8;
    let Some(server) = common::start(config) else {
        return;
    };
    let c = common::client();
    let url = server.url("/v1/chat/completions");
    let long = format!(
        "Summarize this in five words: {}",
        "The quick brown fox jumps over the lazy dog by the river. ".repeat(8)
    );
    let questions = [
        long.as_str(),
        "Name a color.",
        "Count to three.",
        "Say hello.",
    ];
    let mut alone = Vec::new();
    for q in questions {
        let (status, v) = common::post(&c, &url, &common::chat(q, 8)).await;
        assert_eq!(status, 200, "{v}");
        alone.push(common::content(&v).to_string());
    }
    let tasks: Vec<_> = questions
        .iter()
        .map(|q| {
            let (c, url, req) = (c.clone(), url.clone(), common::chat(q, 8));
            tokio::spawn(async move {
                let (status, v) = common::post(&c, &url, &req).await;
                assert_eq!(status, 200, "{v}");
                common::content(&v).to_string()
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap(), alone[i], "request {i}");
    }
}
