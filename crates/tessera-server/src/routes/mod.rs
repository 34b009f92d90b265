//! The HTTP surface: the router, the API-key check, the request counter,
//! the JSON body reader (OpenAI-shaped 4xx for a malformed or oversize
//! body) and the 404/405 answers.
//!
//! - [`chat`]: `POST /v1/chat/completions`.
//! - [`completions`]: `POST /v1/completions`.
//! - [`info`]: `GET /v1/models`, `/health`, `/metrics`.
//! - [`sse`]: a job's steps as server-sent events.
//!
//! The routes also answer without the `/v1` prefix, as llama.cpp's do.

pub mod chat;
pub mod completions;
pub mod info;
pub mod sse;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;

use crate::app::App;
use crate::error::ApiError;
use crate::prepare::{self, Prepared};

/// The router over `app`.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat::handle))
        .route("/chat/completions", post(chat::handle))
        .route("/v1/completions", post(completions::handle))
        .route("/completions", post(completions::handle))
        .route("/v1/models", get(info::models))
        .route("/models", get(info::models))
        .route("/health", get(info::health))
        .route("/v1/health", get(info::health))
        .route("/metrics", get(info::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(app.clone(), auth))
        .layer(middleware::from_fn_with_state(app.clone(), count))
        .layer(DefaultBodyLimit::max(app.config.body_limit))
        .with_state(app)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!("no route {} {}", req.method(), req.uri().path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// With an API key set, every route but the health check needs it.
async fn auth(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if let Some(key) = &app.config.api_key {
        let path = req.uri().path();
        let public = path == "/health" || path == "/v1/health";
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !public && !given.is_some_and(|g| same(g.as_bytes(), key.as_bytes())) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

/// Equality whose time does not depend on where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Counts answered requests by endpoint and status.
async fn count(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let endpoint = match req.uri().path() {
        "/v1/chat/completions" | "/chat/completions" => "chat_completions",
        "/v1/completions" | "/completions" => "completions",
        "/v1/models" | "/models" => "models",
        "/health" | "/v1/health" => "health",
        "/metrics" => "metrics",
        _ => "other",
    };
    let resp = next.run(req).await;
    app.metrics.request(endpoint, resp.status().as_u16());
    resp
}

/// Reads a JSON body: 413 above the size limit, 400 for malformed JSON or
/// a field of the wrong type. The content type is not checked (curl's
/// `-d` sends form-encoded headers with JSON bodies).
pub fn parse<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::with_status(
                status,
                format!("the request body is larger than the limit of {limit} bytes"),
            )
            .code("request_too_large")
        } else {
            ApiError::with_status(status, r.body_text())
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        use serde_json::error::Category;
        let what = match e.classify() {
            Category::Data => "invalid request",
            Category::Io | Category::Syntax | Category::Eof => "malformed JSON",
        };
        ApiError::invalid(format!("{what}: {e}"))
    })
}

/// Runs a `prepare` step (template rendering, tokenization: CPU work) off
/// the async executor.
pub async fn prepare_off_thread<F>(app: &Arc<App>, f: F) -> Result<Prepared, ApiError>
where
    F: FnOnce(&prepare::Context<'_>) -> Result<Prepared, ApiError> + Send + 'static,
{
    let app = app.clone();
    tokio::task::spawn_blocking(move || f(&app.context()))
        .await
        .map_err(|_| ApiError::internal("preparing the request failed"))?
}

/// A request under way: its options and its first step. An error before
/// the first token is returned as the HTTP status.
pub struct Started {
    /// The generation's events.
    pub gen: crate::generation::Generation,
    /// Its first step (not an error).
    pub first: crate::generation::Step,
    /// Answer as server-sent events.
    pub stream: bool,
    /// In a stream, end with a usage chunk.
    pub include_usage: bool,
    /// Log-probabilities were asked for.
    pub logprobs: bool,
}

/// What both generation routes do first: refuse when closing, parse the
/// body, check and tokenize it off the async threads with `prep`, queue the
/// work and wait for its first step.
pub async fn start<T, F>(
    app: &Arc<App>,
    body: Result<Bytes, BytesRejection>,
    prep: F,
) -> Result<Started, ApiError>
where
    T: DeserializeOwned + Send + 'static,
    F: FnOnce(&prepare::Context<'_>, &T) -> Result<Prepared, ApiError> + Send + 'static,
{
    let arrived = std::time::Instant::now();
    app.check_open()?;
    let req: T = parse(body, app.config.body_limit)?;
    let prepared = prepare_off_thread(app, move |cx| prep(cx, &req)).await?;
    let (stream, include_usage, logprobs) = (
        prepared.stream,
        prepared.include_usage,
        prepared.gen.logprobs.is_some(),
    );
    let mut gen = app.submit(prepared.gen, arrived)?;
    let first = gen.next().await;
    if let crate::generation::Step::Error(e) = first {
        return Err(e);
    }
    Ok(Started {
        gen,
        first,
        stream,
        include_usage,
        logprobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_comparison() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
    }

    #[test]
    fn bodies() {
        let ok: serde_json::Value = parse(Ok(Bytes::from_static(b"{\"a\":1}")), 10).unwrap();
        assert_eq!(ok["a"], 1);
        let bad = parse::<serde_json::Value>(Ok(Bytes::from_static(b"{\"a\":")), 10).unwrap_err();
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(bad.message.starts_with("malformed JSON"), "{}", bad.message);
        let bad = parse::<crate::openai::chat::ChatCompletionRequest>(
            Ok(Bytes::from_static(b"{\"messages\":5}")),
            10,
        )
        .unwrap_err();
        assert!(
            bad.message.starts_with("invalid request"),
            "{}",
            bad.message
        );
    }
}
