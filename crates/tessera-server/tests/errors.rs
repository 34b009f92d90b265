//! Bad requests get the right 4xx with OpenAI's error shape, and the
//! server keeps serving: a missing or wrong API key (401; `/health` stays
//! open), malformed JSON and wrong types (400), out-of-range values (400,
//! naming the field), a prompt longer than the context (400,
//! `context_length_exceeded`), an oversize body (413), an unknown route
//! (404), a wrong method (405); then a per-request timeout (504, or an
//! error event mid-stream) and a shutdown that lets a request in flight
//! finish and cancels one that outlives the grace period.
//!
//! Skipped without the model unless `TESSERA_STRICT=1`.

mod common;

use std::time::Duration;

use serde_json::{json, Value};

const KEY: &str = "sekrit-key";

fn assert_error(status: u16, v: &Value, want: u16, kind: &str) {
    assert_eq!(status, want, "{v}");
    let e = &v["error"];
    assert_eq!(e["type"], kind, "{v}");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_openai_errors() {
    let mut config = common::config(1);
    config.api_key = Some(KEY.into());
    config.body_limit = 64 << 10;
    config.session.n_ctx = 256;
    let Some(server) = common::start(config) else {
        return;
    };
    let c = common::client();
    let chat = server.url("/v1/chat/completions");
    let send = |url: String, body: Vec<u8>, key: Option<&'static str>| {
        let c = c.clone();
        async move {
            let mut r = c
                .post(url)
                .header("content-type", "application/json")
                .body(body);
            if let Some(k) = key {
                r = r.bearer_auth(k);
            }
            let resp = r.send().await.expect("sent");
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            let v: Value =
                serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
            (status, v)
        }
    };
    let good = serde_json::to_vec(&common::chat("Hi", 2)).unwrap();

    // Authentication.
    let (s, v) = send(chat.clone(), good.clone(), None).await;
    assert_error(s, &v, 401, "authentication_error");
    assert_eq!(v["error"]["code"], "invalid_api_key");
    let (s, v) = send(chat.clone(), good.clone(), Some("wrong")).await;
    assert_error(s, &v, 401, "authentication_error");
    let models = c.get(server.url("/v1/models")).send().await.unwrap();
    assert_eq!(models.status(), 401);
    let health = c.get(server.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "/health needs no key");

    // Malformed bodies and bad values: 400 with the field named.
    let k = Some(KEY);
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("truncated JSON", b"{\"messages\": [".to_vec(), None),
        ("not JSON", b"hello".to_vec(), None),
        ("empty body", Vec::new(), None),
        ("wrong type", br#"{"messages": 5}"#.to_vec(), None),
        ("no messages", br#"{"model": "x"}"#.to_vec(), None),
        ("empty messages", br#"{"messages": []}"#.to_vec(), Some("messages")),
        (
            "unknown role",
            br#"{"messages": [{"role": "wizard", "content": "hi"}]}"#.to_vec(),
            Some("messages[0].role"),
        ),
        (
            "image part",
            br#"{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#.to_vec(),
            Some("messages[0].content"),
        ),
        (
            "temperature",
            br#"{"messages": [{"role": "user", "content": "hi"}], "temperature": 5}"#.to_vec(),
            Some("temperature"),
        ),
        (
            "top_p",
            br#"{"messages": [{"role": "user", "content": "hi"}], "top_p": -1}"#.to_vec(),
            Some("top_p"),
        ),
        (
            "n",
            br#"{"messages": [{"role": "user", "content": "hi"}], "n": 2}"#.to_vec(),
            Some("n"),
        ),
        (
            "max_tokens",
            br#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}"#.to_vec(),
            Some("max_tokens"),
        ),
        (
            "logit_bias key",
            br#"{"messages": [{"role": "user", "content": "hi"}], "logit_bias": {"abc": 1}}"#
                .to_vec(),
            Some("logit_bias"),
        ),
        (
            "logit_bias token",
            br#"{"messages": [{"role": "user", "content": "hi"}], "logit_bias": {"99999999": 1}}"#
                .to_vec(),
            Some("logit_bias"),
        ),
        (
            "top_logprobs without logprobs",
            br#"{"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2}"#.to_vec(),
            Some("top_logprobs"),
        ),
        (
            "too many top_logprobs",
            br#"{"messages": [{"role": "user", "content": "hi"}], "logprobs": true, "top_logprobs": 50}"#
                .to_vec(),
            Some("top_logprobs"),
        ),
        (
            "empty stop",
            br#"{"messages": [{"role": "user", "content": "hi"}], "stop": [""]}"#.to_vec(),
            Some("stop"),
        ),
    ];
    for (what, body, param) in cases {
        let (s, v) = send(chat.clone(), body, k).await;
        assert_error(s, &v, 400, "invalid_request_error");
        if let Some(p) = param {
            assert_eq!(v["error"]["param"], p, "{what}: {v}");
        }
    }

    // Completions: several prompts, a token outside the vocabulary, echo.
    let comp = server.url("/v1/completions");
    for (body, param) in [
        (json!({"prompt": ["a", "b"]}), "prompt"),
        (json!({"prompt": [1, 2, 999999999]}), "prompt"),
        (json!({"prompt": "a", "echo": true}), "echo"),
        (json!({"prompt": "a", "logprobs": 21}), "logprobs"),
    ] {
        let (s, v) = send(comp.clone(), serde_json::to_vec(&body).unwrap(), k).await;
        assert_error(s, &v, 400, "invalid_request_error");
        assert_eq!(v["error"]["param"], param, "{v}");
    }

    // A prompt longer than the context (256 tokens).
    let long = "word ".repeat(400);
    let (s, v) = send(
        chat.clone(),
        serde_json::to_vec(&common::chat(&long, 4)).unwrap(),
        k,
    )
    .await;
    assert_error(s, &v, 400, "invalid_request_error");
    assert_eq!(v["error"]["code"], "context_length_exceeded");

    // A body over the 64 KiB limit.
    let big = serde_json::to_vec(&common::chat(&"x".repeat(100 << 10), 4)).unwrap();
    let (s, v) = send(chat.clone(), big, k).await;
    assert_error(s, &v, 413, "invalid_request_error");

    // Unknown route, wrong method.
    let resp = c
        .get(server.url("/v1/nothing"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let (s, v) = (resp.status().as_u16(), resp.json::<Value>().await.unwrap());
    assert_error(s, &v, 404, "not_found_error");
    let resp = c.get(chat.clone()).bearer_auth(KEY).send().await.unwrap();
    let (s, v) = (resp.status().as_u16(), resp.json::<Value>().await.unwrap());
    assert_error(s, &v, 405, "invalid_request_error");

    // Still serving, and every refusal was counted.
    let (s, v) = send(chat.clone(), good, k).await;
    assert_eq!(s, 200, "{v}");
    let metrics = c
        .get(server.url("/metrics"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tessera_requests_total{endpoint=\"chat_completions\",status=\"400\"} 18"),
        "{metrics}"
    );
}

/// A request that would run to the end of the context: the
/// end-of-generation tokens are banned.
fn endless(stream: bool) -> Value {
    let bias: serde_json::Map<String, Value> = common::eog_ids()
        .iter()
        .map(|id| (id.to_string(), json!(-100)))
        .collect();
    json!({
        "prompt": "Once upon a time",
        "temperature": 0,
        "max_tokens": -1,
        "logit_bias": bias,
        "stream": stream,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_time_out() {
    let mut config = common::config(1);
    config.request_timeout = Some(Duration::from_secs(1));
    let Some(server) = common::start(config) else {
        return;
    };
    let c = common::client();
    let url = server.url("/v1/completions");
    let (s, v) = common::post(&c, &url, &endless(false)).await;
    assert_error(s, &v, 504, "timeout_error");
    // Streamed: tokens, then an error event instead of [DONE].
    let (s, data) = common::post_stream(&c, &url, &endless(true)).await;
    assert_eq!(s, 200);
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "timeout_error", "{data:?}");
    assert!(data.len() >= 2, "a token came first: {data:?}");
    // The slot was freed: a short request still works.
    let (s, v) = common::post(
        &c,
        &server.url("/v1/chat/completions"),
        &common::chat("Hi", 2),
    )
    .await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_or_cancels_in_flight_requests() {
    // A grace long enough for a short request: it completes.
    let Some(mut server) = common::start(common::config(2)) else {
        return;
    };
    let c = common::client();
    let mut short = common::chat("What is the capital of France?", 24);
    short["stream"] = json!(true);
    let resp = c
        .post(server.url("/v1/chat/completions"))
        .json(&short)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    server.begin_shutdown();
    let data = common::sse_data(&resp.text().await.unwrap());
    assert_eq!(data.last().unwrap(), "[DONE]", "{data:?}");
    assert!(common::joined_deltas(&data).contains("Paris"));
    server.shutdown().expect("serve returns cleanly");

    // A request that outlives the grace: cancelled with an error event.
    let mut config = common::config(2);
    config.shutdown_grace = Duration::from_millis(300);
    let Some(mut server) = common::start(config) else {
        return;
    };
    let url = server.url("/v1/completions");
    let resp = c.post(&url).json(&endless(true)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    server.begin_shutdown();
    let data = common::sse_data(&resp.text().await.unwrap());
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "unavailable_error", "{data:?}");
    server.shutdown().expect("serve returns cleanly");
    // Nothing listens any more.
    assert!(c.get(url).send().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_frees_its_slot() {
    // One slot with room for ~4000 tokens: were the abandoned request
    // not cancelled, the next one would wait for all of them.
    let mut config = common::config(1);
    config.session.n_ctx = 4096;
    let Some(server) = common::start(config) else {
        return;
    };
    let c = common::client();
    let mut resp = c
        .post(server.url("/v1/completions"))
        .json(&endless(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.chunk().await.unwrap().is_some(), "a first chunk");
    drop(resp);
    let t0 = std::time::Instant::now();
    let (s, v) = common::post(
        &c,
        &server.url("/v1/chat/completions"),
        &common::chat("Hi", 2),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "the slot was not freed: {:?}",
        t0.elapsed()
    );
}
