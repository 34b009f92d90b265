//! tessera's OpenAI-compatible HTTP server (axum on tokio).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let model = tessera::Model::load_blocking("smollm2:135m", Default::default())?;
//! let config = tessera_server::ServerConfig { parallel: 4, ..Default::default() };
//! let server = tessera_server::Server::new(model, config)?;
//! tessera_server::run_blocking(server, "127.0.0.1:8080".parse()?, |addr| {
//!     eprintln!("listening on http://{addr}")
//! })?;
//! # Ok(()) }
//! ```
//!
//! Routes: `POST /v1/chat/completions`, `POST /v1/completions` (whole or
//! streamed as server-sent events; `stop`, `max_tokens`, `temperature`,
//! `top_p`, `seed`, `logit_bias`, `logprobs`, `usage`), `GET /v1/models`,
//! `GET /health`, `GET /metrics` (Prometheus). Errors have OpenAI's shape.
//!
//! How a request flows:
//! - [`routes`] reads the body (size-limited), checks the API key, and
//!   [`prepare`] turns the request into a [`job::GenRequest`] (template,
//!   tokens, checked sampling values).
//! - [`slots`] queues it and gives it to the idle slot whose KV cache
//!   shares the longest prefix with its prompt; the [`engine`] (one
//!   thread) runs the prompts and decodes the next token of every active
//!   request in one batched step, each [`request::Active`] sampling its
//!   own and sending [`job::Event`]s back.
//! - [`generation`] reads those events under the request's deadline, and
//!   the route answers whole or as events ([`routes::sse`]).
//! - With a draft model ([`ServerConfig::draft`]), [`speculative`] drafts
//!   guesses per slot and the engine's batched step verifies them.
//! - [`metrics`] counts; [`server`] starts the slots, serves and drains at
//!   shutdown.

pub mod app;
pub mod config;
pub mod engine;
pub mod error;
pub mod generation;
pub mod hibernation;
pub mod job;
pub mod logprobs;
pub mod metrics;
pub mod openai;
pub mod prepare;
pub mod request;
pub mod routes;
pub mod server;
pub mod slots;
pub mod speculative;

pub use config::ServerConfig;
pub use error::{ApiError, ServerError};
pub use hibernation::HibernationConfig;
pub use server::{run_blocking, shutdown_signal, Server};
pub use speculative::DraftConfig;

/// `system_fingerprint` of every response: the server's version.
pub const FINGERPRINT: &str = concat!("tessera-", env!("CARGO_PKG_VERSION"));
