//! Aggregate generation speed at 1, 4 and 16 concurrent clients on a
//! server of 16 slots (`--parallel 16`), ignored by default: it measures,
//! it does not check. Each client sends `ROUNDS` completions of exactly
//! `TOKENS` tokens (end-of-generation banned); the figure is all generated
//! tokens over the wall time. The average decode batch (requests per
//! engine step, from `/metrics`) is printed beside it. `REPEATS` runs of
//! each, in turn, so a change in the machine's load falls on all of them.
//!
//! ```sh
//! TESSERA_MODELS=~/.cache/tessera/models cargo test --release -p tessera-server \
//!   --test throughput -- --ignored --nocapture
//! ```

mod common;

use std::time::Instant;

use serde_json::{json, Value};

const TOKENS: usize = 32;
const ROUNDS: usize = 2;
const SLOTS: usize = 16;
const REPEATS: usize = 3;

/// A gauge of `/metrics`.
async fn gauge(c: &reqwest::Client, url: &str, name: &str) -> f64 {
    let text = c.get(url).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// (aggregate tokens/s, seconds, average decode batch).
async fn run(clients: usize, slots: usize) -> Option<(f64, f64, f64)> {
    let server = common::start(common::config(slots))?;
    let c = common::client();
    let url = server.url("/v1/completions");
    let bias: serde_json::Map<String, Value> = common::eog_ids()
        .iter()
        .map(|id| (id.to_string(), json!(-100)))
        .collect();
    // Warm up (first-shape graphs).
    let warm = json!({"prompt": "Hello", "max_tokens": 4, "temperature": 0});
    common::post(&c, &url, &warm).await;
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let (c, url, bias) = (c.clone(), url.clone(), bias.clone());
            tokio::spawn(async move {
                let mut n = 0;
                for r in 0..ROUNDS {
                    let req = json!({
                        "prompt": format!("Story {i}.{r}: Once upon a time"),
                        "max_tokens": TOKENS, "temperature": 0, "logit_bias": bias,
                    });
                    let (status, v) = common::post(&c, &url, &req).await;
                    assert_eq!(status, 200, "{v}");
                    n += v["usage"]["completion_tokens"].as_u64().unwrap();
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(total as usize, clients * ROUNDS * TOKENS);
    let batch = gauge(
        &c,
        &server.url("/metrics"),
        "tessera_decode_batch_size_average",
    )
    .await;
    Some((total as f64 / secs, secs, batch))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn aggregate_tokens_per_second() {
    eprintln!("clients  slots  tokens  seconds  aggregate tok/s  avg batch");
    for _ in 0..REPEATS {
        for clients in [1, 4, 16] {
            let Some((rate, secs, batch)) = run(clients, SLOTS).await else {
                return;
            };
            let tokens = clients * ROUNDS * TOKENS;
            eprintln!(
                "{clients:>7}  {SLOTS:>5}  {tokens:>6}  {secs:>7.2}  {rate:>15.1}  {batch:>9.2}"
            );
        }
    }
}
