//! The endpoints on the real SmolLM2 model, through a real HTTP client:
//! chat whole and streamed (the same text, usage, the cache reused on the
//! next request), completions with `max_tokens`, `stop`, `logprobs`,
//! seeds, `top_p` and `logit_bias`, and `/v1/models`, `/health`,
//! `/metrics`.
//!
//! Skipped without the model (`scripts/fetch-models.sh`) unless
//! `TESSERA_STRICT=1`.

mod common;

use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_whole_and_streamed() {
    let Some(server) = common::start(common::config(2)) else {
        return;
    };
    let c = common::client();
    let url = server.url("/v1/chat/completions");
    let req = common::chat("What is the capital of France?", 24);

    let (status, whole) = common::post(&c, &url, &req).await;
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["object"], "chat.completion");
    assert_eq!(whole["model"], "smollm2-test");
    assert!(whole["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let text = common::content(&whole).to_string();
    assert!(text.contains("Paris"), "{text:?}");
    assert_eq!(whole["choices"][0]["message"]["role"], "assistant");
    let usage = &whole["usage"];
    let n_prompt = usage["prompt_tokens"].as_u64().unwrap();
    let n_gen = usage["completion_tokens"].as_u64().unwrap();
    assert!(n_prompt > 10 && n_gen > 0 && n_gen <= 24, "{usage}");
    assert_eq!(usage["total_tokens"].as_u64().unwrap(), n_prompt + n_gen);
    let finish = whole["choices"][0]["finish_reason"].as_str().unwrap();
    assert!(finish == "stop" || finish == "length");

    // Streamed: a role chunk, the same text in deltas, the finish reason,
    // a usage chunk, then [DONE]. The prompt comes from the cache.
    let mut sreq = req.clone();
    sreq["stream"] = json!(true);
    sreq["stream_options"] = json!({"include_usage": true});
    let (status, data) = common::post_stream(&c, &url, &sreq).await;
    assert_eq!(status, 200, "{data:?}");
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["object"], "chat.completion.chunk");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(common::joined_deltas(&data), text);
    let last_choice = &chunks[chunks.len() - 2];
    assert_eq!(last_choice["choices"][0]["finish_reason"], finish);
    let su = &chunks[chunks.len() - 1];
    assert_eq!(su["choices"], json!([]));
    assert_eq!(su["usage"]["prompt_tokens"], usage["prompt_tokens"]);
    assert_eq!(su["usage"]["completion_tokens"], usage["completion_tokens"]);
    let cached = su["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert_eq!(
        cached,
        n_prompt - 1,
        "the same prompt again: all but one token cached"
    );
    assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"]));

    // The next turn reuses the cache for the whole first exchange.
    let next = json!({
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": text},
            {"role": "user", "content": "And of Italy?"}
        ],
        "temperature": 0, "max_tokens": 16
    });
    let (status, v) = common::post(&c, &url, &next).await;
    assert_eq!(status, 200, "{v}");
    let u = &v["usage"];
    assert!(
        u["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap()
            >= n_prompt,
        "{u}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_length_stop_and_logprobs() {
    let Some(server) = common::start(common::config(1)) else {
        return;
    };
    let c = common::client();
    let url = server.url("/v1/completions");
    let prompt = "The capital of France is";

    let (status, v) = common::post(
        &c,
        &url,
        &json!({"prompt": prompt, "max_tokens": 8, "temperature": 0, "logprobs": 3}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    let choice = &v["choices"][0];
    let text = choice["text"].as_str().unwrap().to_string();
    assert!(text.contains("Paris"), "{text:?}");
    assert_eq!(choice["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 8);
    // One entry per token, each the best of its three alternatives
    // (greedy), offsets increasing, the tokens spelling the text.
    let lp = &choice["logprobs"];
    let tokens: Vec<&str> = lp["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tokens.len(), 8);
    assert_eq!(tokens.concat(), text);
    for i in 0..8 {
        let chosen = lp["token_logprobs"][i].as_f64().unwrap();
        let top = lp["top_logprobs"][i].as_object().unwrap();
        assert!(!top.is_empty() && top.len() <= 3);
        let best = top
            .values()
            .map(|x| x.as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        assert!(
            chosen <= 0.0 && (chosen - best).abs() < 1e-5,
            "{chosen} vs {best}"
        );
    }
    let offsets: Vec<u64> = lp["text_offset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_u64().unwrap())
        .collect();
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]) && offsets[0] == 0);

    // Streamed: the same text in pieces, the finish reason in the last.
    let (status, data) = common::post_stream(
        &c,
        &url,
        &json!({"prompt": prompt, "max_tokens": 8, "temperature": 0, "stream": true}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let streamed: String = chunks
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(streamed, text);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );

    // A stop string: the text up to it, finish "stop".
    let word = text
        .split_whitespace()
        .find(|w| w.contains("Paris"))
        .unwrap();
    let (status, v) = common::post(
        &c,
        &url,
        &json!({"prompt": prompt, "max_tokens": 8, "temperature": 0, "stop": [word]}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let cut = v["choices"][0]["text"].as_str().unwrap();
    assert_eq!(cut, &text[..text.find(word).unwrap()]);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");

    // Token ids as the prompt give the same answer as the text.
    let ids = common::model()
        .unwrap()
        .core()
        .tokenizer()
        .encode(
            prompt,
            tessera_tokenizer::EncodeOptions {
                add_special: true,
                parse_special: true,
            },
        )
        .unwrap();
    let (status, v) = common::post(
        &c,
        &url,
        &json!({"prompt": ids, "max_tokens": 8, "temperature": 0}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["text"], text.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_fields_take_effect() {
    let Some(server) = common::start(common::config(1)) else {
        return;
    };
    let c = common::client();
    let url = server.url("/v1/completions");
    let ask = |extra: Value| {
        let mut v = json!({"prompt": "Once upon a time", "max_tokens": 10});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let text = |v: &Value| v["choices"][0]["text"].as_str().unwrap().to_string();

    let (_, greedy) = common::post(&c, &url, &ask(json!({"temperature": 0, "logprobs": 0}))).await;
    // A seed makes sampling repeatable.
    let seeded = ask(json!({"temperature": 1.0, "top_k": 0, "min_p": 0, "seed": 42}));
    let (s1, a) = common::post(&c, &url, &seeded).await;
    let (s2, b) = common::post(&c, &url, &seeded).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(text(&a), text(&b));
    // A tiny top_p leaves only the most likely token: greedy.
    let (_, narrow) = common::post(
        &c,
        &url,
        &ask(json!({"temperature": 1.0, "top_p": 0.0, "seed": 7})),
    )
    .await;
    assert_eq!(text(&narrow), text(&greedy));
    // Banning the first greedy token changes the first token.
    let first = greedy["choices"][0]["logprobs"]["tokens"][0]
        .as_str()
        .unwrap()
        .to_string();
    let tok = common::model().unwrap();
    let tok = tok.core().tokenizer();
    let id = (0..tok.n_vocab() as u32)
        .find(|&i| tok.piece(i, true).unwrap() == first.as_bytes())
        .expect("the first token's id");
    let (status, banned) = common::post(
        &c,
        &url,
        &ask(json!({"temperature": 0, "logit_bias": {id.to_string(): -100}, "logprobs": 0})),
    )
    .await;
    assert_eq!(status, 200, "{banned}");
    assert_ne!(
        banned["choices"][0]["logprobs"]["tokens"][0],
        first.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_health_and_metrics() {
    let Some(server) = common::start(common::config(2)) else {
        return;
    };
    let c = common::client();
    let models: Value = c
        .get(server.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "smollm2-test");
    assert_eq!(models["data"][0]["object"], "model");

    let health = c.get(server.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["slots_idle"], 2);

    let (status, _) = common::post(
        &c,
        &server.url("/v1/chat/completions"),
        &common::chat("Say hi.", 4),
    )
    .await;
    assert_eq!(status, 200);
    let resp = c.get(server.url("/metrics")).send().await.unwrap();
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in\n{text}"))
    };
    assert!(value("tessera_completion_tokens_total") >= 1.0);
    assert!(value("tessera_prompt_tokens_total") > 10.0);
    assert!(value("tessera_tokens_per_second") > 0.0);
    assert_eq!(value("tessera_queue_depth"), 0.0);
    assert_eq!(value("tessera_slots_total"), 2.0);
    assert_eq!(value("tessera_sessions_resident"), 1.0);
    assert!(value("tessera_kv_cache_used_bytes{device=\"cpu\"}") > 0.0);
    assert!(value("tessera_kv_cache_bytes{device=\"cpu\"}") > 0.0);
    assert_eq!(
        value("tessera_requests_total{endpoint=\"chat_completions\",status=\"200\"}"),
        1.0
    );
}
