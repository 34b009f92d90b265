//! Hibernation in the server: 8 conversations taking turns in alternation
//! (3 turns each) over 2 slots. With `--hibernate-dir` every reply equals
//! the one the server gives without it (where each turn re-evaluates the
//! conversation), each turn after the first restores its conversation from
//! a file (`/metrics`: 16 restores, no rebuild) and finds its whole history
//! cached (`usage.prompt_tokens_details.cached_tokens`).
//!
//! With `--hibernate-idle`, an idle slot hibernates its session (shown in
//! `/metrics`) and the next turn restores it with the same reply; with a
//! draft model too (its draft session hibernated beside it).
//!
//! Skipped without the model unless `TESSERA_STRICT=1`.

mod common;

use serde_json::{json, Value};
use tessera_server::HibernationConfig;

const N_CONV: usize = 8;
const TURNS: usize = 3;

fn question(conv: usize, turn: usize) -> String {
    let topics = [
        "rivers", "birds", "stars", "bread", "trains", "rain", "chess", "salt",
    ];
    format!(
        "Tell me one fact about {} (part {}).",
        topics[conv],
        turn + 1
    )
}

async fn metrics(server: &common::TestServer) -> String {
    let c = common::client();
    let resp = c.get(server.url("/metrics")).send().await.expect("metrics");
    resp.text().await.expect("metrics text")
}

/// Per turn and conversation: the reply, the prompt tokens and the cached
/// ones; then the `/metrics` text.
async fn alternate(server: &common::TestServer) -> (Vec<(String, u64, u64)>, String) {
    let c = common::client();
    let url = server.url("/v1/chat/completions");
    let mut histories: Vec<Vec<Value>> = (0..N_CONV)
        .map(|i| {
            vec![json!({"role": "system", "content": format!("You are assistant number {i}.")})]
        })
        .collect();
    let mut out = Vec::new();
    for turn in 0..TURNS {
        for (i, h) in histories.iter_mut().enumerate() {
            h.push(json!({"role": "user", "content": question(i, turn)}));
            let req = json!({"messages": h, "temperature": 0, "max_tokens": 8});
            let (status, v) = common::post(&c, &url, &req).await;
            assert_eq!(status, 200, "{v}");
            let text = common::content(&v).to_string();
            h.push(json!({"role": "assistant", "content": text}));
            let usage = &v["usage"];
            out.push((
                text,
                usage["prompt_tokens"].as_u64().unwrap_or(0),
                usage["prompt_tokens_details"]["cached_tokens"]
                    .as_u64()
                    .unwrap_or(0),
            ));
        }
    }
    (out, metrics(server).await)
}

fn value(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing in\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_conversations_over_two_slots_with_hibernation() {
    let Some(plain) = common::start(common::config(2)) else {
        return;
    };
    let (want, plain_metrics) = alternate(&plain).await;
    plain.shutdown().expect("clean shutdown");

    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("server-hibernate");
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = common::config(2);
    config.hibernation = Some(HibernationConfig {
        dir: dir.clone(),
        max_files: 64,
        idle: None,
    });
    let server = common::start(config).expect("the model loaded once already");
    let (got, metrics) = alternate(&server).await;
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        let (turn, conv) = (k / N_CONV, k % N_CONV);
        assert_eq!(g.0, w.0, "conversation {conv}, turn {turn}: reply");
        assert_eq!(g.1, w.1, "conversation {conv}, turn {turn}: prompt tokens");
        if turn > 0 {
            // Its previous prompt and most of the reply come from the file.
            let before = &got[k - N_CONV];
            assert!(
                g.2 >= before.1,
                "conversation {conv}, turn {turn}: {} cached, the previous prompt had {}",
                g.2,
                before.1
            );
        }
    }
    assert_eq!(
        value(&metrics, "tessera_restores_total"),
        (N_CONV * (TURNS - 1)) as f64
    );
    assert_eq!(value(&metrics, "tessera_restore_rebuilds_total"), 0.0);
    assert!(value(&metrics, "tessera_sessions_hibernated") >= (N_CONV - 2) as f64);
    let cached = value(&metrics, "tessera_prompt_tokens_cached_total");
    let plain_cached = value(&plain_metrics, "tessera_prompt_tokens_cached_total");
    eprintln!(
        "cached prompt tokens: {cached} with hibernation, {plain_cached} without; \
         {} hibernations",
        value(&metrics, "tessera_hibernations_total")
    );
    assert!(cached > plain_cached);
    server.shutdown().expect("clean shutdown");
    // The files go with the server.
    let left = std::fs::read_dir(&dir).map_or(0, |d| d.count());
    assert_eq!(left, 0, "hibernation files left in {}", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_slot_hibernates_and_its_next_turn_restores() {
    idle_slot("server-hibernate-idle", false).await;
}

/// The same with a draft model (SmolLM2 drafting for itself): the slot's
/// draft session hibernates beside it (a second file) and wakes with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_slot_with_a_draft_hibernates_and_restores() {
    idle_slot("server-hibernate-idle-draft", true).await;
}

async fn idle_slot(dir: &str, draft: bool) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(dir);
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = common::config(1);
    config.hibernation = Some(HibernationConfig {
        dir: dir.clone(),
        max_files: 4,
        idle: Some(std::time::Duration::from_millis(200)),
    });
    if draft {
        let Some(model) = common::model() else {
            return;
        };
        config.draft = Some(tessera_server::DraftConfig {
            model,
            spec: Default::default(),
        });
    }
    let Some(server) = common::start(config) else {
        return;
    };
    let c = common::client();
    let url = server.url("/v1/chat/completions");
    let mut h = vec![json!({"role": "user", "content": question(0, 0)})];
    let ask = |h: &Vec<Value>| json!({"messages": h, "temperature": 0, "max_tokens": 8});
    let (_, first) = common::post(&c, &url, &ask(&h)).await;
    h.push(json!({"role": "assistant", "content": common::content(&first)}));
    h.push(json!({"role": "user", "content": question(0, 1)}));
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let m = metrics(&server).await;
    assert_eq!(value(&m, "tessera_hibernations_total"), 1.0);
    assert_eq!(value(&m, "tessera_sessions_hibernated"), 1.0);
    assert_eq!(value(&m, "tessera_sessions_resident"), 0.0);
    let files = std::fs::read_dir(&dir).map_or(0, |d| d.count());
    assert_eq!(files, 1 + usize::from(draft), "files in {}", dir.display());
    let (_, second) = common::post(&c, &url, &ask(&h)).await;
    let m = metrics(&server).await;
    assert_eq!(value(&m, "tessera_restores_total"), 1.0);
    assert_eq!(value(&m, "tessera_sessions_hibernated"), 0.0);
    let prompt1 = first["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
    let cached2 = second["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        cached2 >= prompt1,
        "{cached2} cached, the first prompt had {prompt1}"
    );
    server.shutdown().expect("clean shutdown");

    // The same two turns on a server without hibernation.
    let plain = common::start(common::config(1)).expect("the model loaded once already");
    let (_, again) = common::post(&c, &plain.url("/v1/chat/completions"), &ask(&h)).await;
    assert_eq!(common::content(&second), common::content(&again));
    plain.shutdown().expect("clean shutdown");
    let left = std::fs::read_dir(&dir).map_or(0, |d| d.count());
    assert_eq!(left, 0, "hibernation files left in {}", dir.display());
}
