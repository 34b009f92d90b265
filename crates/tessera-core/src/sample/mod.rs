//! The sampler chain (logits → token) and the stop-string helper for
//! streaming, with llama.cpp's semantics and defaults.
//!
//! - [`SamplerConfig`]: the settings (llama.cpp's defaults) and their checks.
//! - [`Sampler`]: logit bias → penalties → top-k → typical-p → top-p →
//!   min-p → temperature → greedy pick or seeded draw.
//! - [`StopStrings`]: cuts streamed text at the first stop string, holding
//!   back text that may be the start of one.
//! - [`SampleError`]: every refusal, as a value (nothing here panics on
//!   user input).
//!
//! Internals: `candidates` (the reusable working set), `penalties` (the
//! window of accepted tokens), `stages` (the filters).

mod candidates;
mod config;
mod error;
mod penalties;
mod sampler;
mod stages;
mod stop;

pub use candidates::Candidate;
pub use config::SamplerConfig;
pub use error::SampleError;
pub use sampler::Sampler;
pub use stop::{StopOutput, StopStrings};
