//! tessera's engine: the backend interface and the CPU backend, the graph an
//! architecture builds per step, the scheduler that runs it, the KV cache,
//! the sampler chain and the session that ties them together.
//!
//! ```no_run
//! use tessera_core::{Logits, Model, ModelParams, SessionParams};
//! let model = Model::load("SmolLM2-135M-Instruct.Q4_1.gguf", &ModelParams::default())?;
//! let mut s = model.session(&SessionParams::default())?;
//! let logits = s.eval(&[1, 2, 3], Logits::Last)?;
//! # Ok::<(), tessera_core::CoreError>(())
//! ```

pub mod arch;
pub mod backend;
pub mod batch;
pub mod error;
pub mod fit;
pub mod generate;
pub mod graph;
pub mod hibernate;
pub mod hparams;
pub mod kv;
pub mod model;
pub mod numa;
pub mod perplexity;
pub mod placement;
pub mod plan;
pub mod probe;
pub mod quantize;
pub mod rules;
pub mod sample;
pub mod sched;
pub mod session;
pub mod speculative;
pub mod split;
pub mod weights;

pub use batch::BatchDecoder;
pub use error::{CoreError, Result};
pub use hparams::HParams;
pub use kv::KvType;
pub use model::{Model, ModelParams, SessionParams};
pub use placement::{Placement, TensorOverride};
pub use session::{Logits, Residency, Saved, Session, Wake};
