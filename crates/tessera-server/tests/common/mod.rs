//! Test support: the real SmolLM2 model (loaded once per test binary), a
//! server on it on a thread and runtime of its own (so it outlives any one
//! test's runtime), and small HTTP helpers over `reqwest`.
//!
//! Everything skips (returns `None`) without the model, unless
//! `TESSERA_STRICT=1`.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::thread::JoinHandle;

use serde_json::Value;
use tessera::{LoadOptions, Model};
use tessera_server::{Server, ServerConfig, ServerError};
use tessera_testkit::env;

/// The model, loaded once.
pub fn model() -> Option<Model> {
    static MODEL: OnceLock<Option<Model>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = env::real_model(env::SMOLLM2)?;
            Some(
                Model::load_blocking(&path.to_string_lossy(), LoadOptions::default().threads(2))
                    .expect("SmolLM2 loads"),
            )
        })
        .clone()
}

/// A config for tests: `parallel` slots of 1024 tokens.
pub fn config(parallel: usize) -> ServerConfig {
    let mut c = ServerConfig {
        model_name: "smollm2-test".into(),
        parallel,
        ..ServerConfig::default()
    };
    c.session.n_ctx = 1024;
    c
}

/// A running server.
pub struct TestServer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), ServerError>>>,
}

impl TestServer {
    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Starts the shutdown (returns at once).
    pub fn begin_shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// Shuts down and waits for `serve` to return.
    pub fn shutdown(mut self) -> Result<(), ServerError> {
        self.begin_shutdown();
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("server thread")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.begin_shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A server on the model with `config`, or `None` (skipped) without the model.
pub fn start(config: ServerConfig) -> Option<TestServer> {
    Some(start_on(model()?, config))
}

/// A server on `model` with `config`.
pub fn start_on(model: Model, config: ServerConfig) -> TestServer {
    let server = Server::new(model, config).expect("server starts");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let _ = addr_tx.send(listener.local_addr()?);
            server
                .serve(listener, async move {
                    let _ = stopped.await;
                })
                .await
        })
    });
    let addr = addr_rx.recv().expect("server bound");
    TestServer {
        base: format!("http://{addr}"),
        stop: Some(stop),
        thread: Some(thread),
    }
}

/// A client with no proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// POSTs `body` (JSON) and returns the status and the JSON answer.
pub async fn post(c: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let resp = c.post(url).json(body).send().await.expect("request sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, json)
}

/// POSTs a streaming request; returns the status and the `data:` payloads
/// of the event stream, in order.
pub async fn post_stream(c: &reqwest::Client, url: &str, body: &Value) -> (u16, Vec<String>) {
    let resp = c.post(url).json(body).send().await.expect("request sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, sse_data(&text))
}

/// The `data:` payloads of an event stream.
pub fn sse_data(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.trim_start().to_string())
        .collect()
}

/// A chat request, greedy, `max_tokens` tokens at most.
pub fn chat(question: &str, max_tokens: usize) -> Value {
    serde_json::json!({
        "model": "anything",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": question}
        ],
        "temperature": 0,
        "max_tokens": max_tokens,
    })
}

/// The content of a whole chat answer.
pub fn content(v: &Value) -> &str {
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no content in {v}"))
}

/// Joins the streamed chat deltas (every chunk before `[DONE]`).
pub fn joined_deltas(data: &[String]) -> String {
    data.iter()
        .take_while(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).expect("chunk is JSON"))
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

/// The ids of the model's end-of-generation tokens (to ban them).
pub fn eog_ids() -> Vec<u32> {
    model()
        .map(|m| m.core().tokenizer().eog_ids().collect())
        .unwrap_or_default()
}
