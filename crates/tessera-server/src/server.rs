//! [`Server`]: the slots started on a model, the router, and serving on a
//! listener until a shutdown signal — then new requests are refused
//! (503), those in flight get [`ServerConfig::shutdown_grace`] to finish,
//! the rest are cancelled (their clients get an error, not a cut
//! connection), and the engine thread is joined.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use axum::Router;
use tessera_tokenizer::ChatTemplates;
use tokio::net::TcpListener;

use crate::app::App;
use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::metrics::{KvLayout, Metrics};
use crate::slots::Scheduler;
use crate::{engine, routes};

/// A server on one model: its slots are running.
pub struct Server {
    app: Arc<App>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.app.config)
            .field("n_ctx", &self.app.n_ctx)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens `config.parallel` sessions on `model` (and as many on the
    /// draft model, with one), served by one engine thread in batched
    /// steps.
    pub fn new(model: tessera::Model, config: ServerConfig) -> Result<Server, ServerError> {
        if config.parallel == 0 {
            return Err(ServerError::Config("--parallel must be at least 1".into()));
        }
        if config.body_limit == 0 {
            return Err(ServerError::Config(
                "the body limit must be positive".into(),
            ));
        }
        let core = model.core();
        let templates = ChatTemplates::from_metadata(core.gguf().metadata(), core.tokenizer())?;
        // The context a session gets (as `Session::new` decides it).
        let mut n_ctx = match config.session.n_ctx {
            0 => core.hparams().n_ctx_train.min(4096),
            n => n,
        };
        if let Some(fit) = core.fit_ctx() {
            n_ctx = n_ctx.min(fit);
        }
        let sched = Arc::new(Scheduler::new(config.parallel, config.max_queue));
        if let Some(h) = &config.hibernation {
            std::fs::create_dir_all(&h.dir).map_err(|e| {
                ServerError::Config(format!(
                    "cannot create the hibernation directory {}: {e}",
                    h.dir.display()
                ))
            })?;
            sched.hibernate_to(h.clone());
        }
        let kv = KvLayout::of(core, &config.session, n_ctx);
        let mut metrics = Metrics::new(config.parallel, kv);
        if let Some(d) = &config.draft {
            tessera_core::speculative::check_draft(core, d.model.core()).map_err(|e| {
                ServerError::Config(format!(
                    "the draft model {} cannot draft for this model: {e}",
                    d.model.path().display()
                ))
            })?;
            metrics = metrics.with_draft();
        }
        let metrics = Arc::new(metrics);
        let threads = engine::spawn(
            &model,
            config.draft.as_ref(),
            &config.session,
            config.parallel,
            &sched,
            &metrics,
        )?;
        let app = App::new(config, model, templates, n_ctx, sched, metrics);
        Ok(Server {
            app: Arc::new(app),
            threads,
        })
    }

    /// The context size of each slot, tokens.
    pub fn context_size(&self) -> usize {
        self.app.n_ctx
    }

    /// The routes, for serving on a listener of one's own.
    pub fn router(&self) -> Router {
        routes::router(self.app.clone())
    }

    /// Serves on `listener` until `shutdown` completes, then drains (see
    /// the module docs) and stops the slots.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let app = self.app.clone();
        let signal = async move {
            shutdown.await;
            app.draining.store(true, Ordering::Relaxed);
            let (sched, grace) = (app.sched.clone(), app.config.shutdown_grace);
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                sched.cancel_all();
            });
        };
        let served = axum::serve(listener, self.router())
            .with_graceful_shutdown(signal)
            .await;
        self.app.sched.close();
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || join(threads)).await;
        served.map_err(ServerError::Io)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.app.sched.close();
        join(std::mem::take(&mut self.threads));
    }
}

fn join(threads: Vec<JoinHandle<()>>) {
    for t in threads {
        let _ = t.join();
    }
}

/// Completes on Ctrl-C or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Binds `addr` and serves until Ctrl-C or SIGTERM, on a runtime of its
/// own; `on_listening` is told the bound address (port 0 picks one).
pub fn run_blocking(
    server: Server,
    addr: SocketAddr,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), ServerError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("tessera-http")
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(addr).await?;
        on_listening(listener.local_addr()?);
        server.serve(listener, shutdown_signal()).await
    })
}
