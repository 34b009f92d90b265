//! [`App`]: the state every handler shares — the model, its chat
//! templates, the settings, the scheduler, the metrics, whether the server
//! is draining — and the step from a checked request to a running
//! [`Generation`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tessera_tokenizer::ChatTemplates;
use tokio::sync::mpsc;

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::generation::Generation;
use crate::job::{CancelFlag, GenRequest, Job};
use crate::metrics::Metrics;
use crate::prepare;
use crate::slots::Scheduler;

/// What the handlers share.
pub struct App {
    /// The settings.
    pub config: ServerConfig,
    /// The model.
    pub model: tessera::Model,
    /// Its chat templates.
    pub templates: ChatTemplates,
    /// Tokens each slot holds.
    pub n_ctx: usize,
    /// The queue and the slots.
    pub sched: Arc<Scheduler>,
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// Set at shutdown: new requests are refused, those in flight go on.
    pub draining: Arc<AtomicBool>,
    /// Unix time of the start (the model's `created`).
    pub created: u64,
    next_id: AtomicU64,
}

impl App {
    /// The shared state.
    pub fn new(
        config: ServerConfig,
        model: tessera::Model,
        templates: ChatTemplates,
        n_ctx: usize,
        sched: Arc<Scheduler>,
        metrics: Arc<Metrics>,
    ) -> App {
        App {
            config,
            model,
            templates,
            n_ctx,
            sched,
            metrics,
            draining: Arc::default(),
            created: unix_now(),
            next_id: AtomicU64::new(1),
        }
    }

    /// What `prepare` needs.
    pub fn context(&self) -> prepare::Context<'_> {
        prepare::Context {
            tok: self.model.core().tokenizer(),
            templates: &self.templates,
            n_ctx: self.n_ctx,
            default_max_tokens: self.config.default_max_tokens,
        }
    }

    /// 503 once the server is shutting down.
    pub fn check_open(&self) -> Result<(), ApiError> {
        if self.draining.load(Ordering::Relaxed) {
            Err(ApiError::unavailable("the server is shutting down"))
        } else {
            Ok(())
        }
    }

    /// A new response id, `prefix-<n>`.
    pub fn new_id(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Queues `gen` for a slot; its events come back through the
    /// [`Generation`], which cancels the job when dropped.
    pub fn submit(&self, gen: GenRequest, arrived: Instant) -> Result<Generation, ApiError> {
        let (events, rx) = mpsc::unbounded_channel();
        let cancel = CancelFlag::default();
        self.sched.submit(Job {
            req: gen,
            events,
            cancel: cancel.clone(),
            queued_at: Instant::now(),
        })?;
        let deadline = self
            .config
            .request_timeout
            .map(|t| tokio::time::Instant::from_std(arrived + t));
        Ok(Generation::new(
            rx,
            cancel,
            deadline,
            self.config.request_timeout,
            self.draining.clone(),
        ))
    }
}

/// Seconds since 1970.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
