//! `tessera serve`: the OpenAI-compatible HTTP server (`tessera-server`)
//! on one model, with the placement flags every command takes, and
//! optionally a draft model for speculative decoding (`-md`, its own
//! placement with `-otd`, `--draft-max` … as `run` and `bench` take them).
//!
//! ```sh
//! tessera serve -m smollm2:135m --parallel 4 --port 8080
//! curl http://127.0.0.1:8080/v1/chat/completions \
//!   -d '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":32}'
//! tessera serve -m big.gguf -md small.gguf -otd '.*=cpu' --draft-max 8
//! ```

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use tessera::LoadOptions;
use tessera_server::{Server, ServerConfig};

use crate::common::{DraftArgs, ModelArgs};

/// Arguments of `tessera serve`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    draft: DraftArgs,
    /// Address to listen on (loopback by default; another address exposes
    /// the server to the network — set --api-key).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Slots: requests served at once, each with its own KV cache of `-c`
    /// tokens; more requests wait in a queue.
    #[arg(long = "parallel", default_value_t = 1)]
    parallel: usize,
    /// Require `Authorization: Bearer <KEY>` on every route but /health
    /// (default: $TESSERA_API_KEY when set).
    #[arg(long = "api-key")]
    api_key: Option<String>,
    /// The model's name in /v1/models and in responses (default: the -m
    /// argument, or the file's name).
    #[arg(long)]
    alias: Option<String>,
    /// Largest request body, e.g. 4MiB (413 above).
    #[arg(long = "body-limit", default_value = "4MiB")]
    body_limit: String,
    /// Seconds a request may take, queue included (0: no limit).
    #[arg(long = "timeout", default_value_t = 600)]
    timeout: u64,
    /// Most requests waiting for a slot (503 above).
    #[arg(long = "max-queue", default_value_t = 256)]
    max_queue: usize,
    /// At shutdown (Ctrl-C, SIGTERM), seconds requests in flight may run
    /// before they are cancelled.
    #[arg(long = "shutdown-grace", default_value_t = 10)]
    shutdown_grace: u64,
    /// Most tokens per completion when a request does not say (-1: until
    /// the end of the turn or the context).
    #[arg(short = 'n', long = "n-predict", default_value_t = -1, allow_negative_numbers = true)]
    n_predict: i64,
    /// Hibernate the KV cache of a conversation that loses its slot to a
    /// file in DIR; a later request continuing it restores it into a slot
    /// with nothing evaluated again (default: the state is dropped).
    #[arg(long = "hibernate-dir", value_name = "DIR")]
    hibernate_dir: Option<std::path::PathBuf>,
    /// Most conversations kept hibernated (the least recently used file is
    /// removed beyond).
    #[arg(long = "hibernate-max", default_value_t = 256)]
    hibernate_max: usize,
    /// Seconds a slot may idle before its KV cache is hibernated to
    /// --hibernate-dir and its memory released (0: never).
    #[arg(long = "hibernate-idle", value_name = "SECS", default_value_t = 0)]
    hibernate_idle: u64,
}

/// Runs `tessera serve` until Ctrl-C or SIGTERM.
pub fn run(args: &Args) -> Result<()> {
    let addr = listen_addr(&args.host, args.port)?;
    if args.hibernate_idle > 0 && args.hibernate_dir.is_none() {
        bail!("--hibernate-idle needs --hibernate-dir (where the caches go)");
    }
    let path = args.model.path()?;
    let session = args.model.session()?;
    let options = LoadOptions {
        placement: args.model.placement()?,
        threads: args.model.threads,
        context: args.model.ctx_size,
        cache_types: Some((session.type_k, session.type_v)),
        ..LoadOptions::default()
    };
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(format!("loading {}", path.display()));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let model = tessera::Model::load_blocking(&path.to_string_lossy(), options);
    spinner.finish_and_clear();
    let model = model.with_context(|| format!("cannot load {}", path.display()))?;
    for w in &model.core().placement().warnings {
        eprintln!("warning: {w}");
    }
    let spec = args.draft.spec()?;
    let draft = match args.draft.load(&args.model, model.core())? {
        Some(d) => Some(tessera_server::DraftConfig {
            model: tessera::Model::from_core(d, session.clone())?,
            spec,
        }),
        None => None,
    };
    let api_key = args
        .api_key
        .clone()
        .or_else(|| std::env::var("TESSERA_API_KEY").ok())
        .filter(|k| !k.is_empty());
    if !addr.ip().is_loopback() && api_key.is_none() {
        eprintln!(
            "warning: listening on {} without --api-key: anyone who can reach it can use the model",
            addr.ip()
        );
    }
    let name = args
        .alias
        .clone()
        .unwrap_or_else(|| match &args.model.model {
            Some(m) if !std::path::Path::new(m).exists() => m.clone(),
            _ => path
                .file_name()
                .map_or_else(|| "model".into(), |f| f.to_string_lossy().into_owned()),
        });
    let config = ServerConfig {
        model_name: name,
        parallel: args.parallel,
        session: tessera_core::SessionParams {
            n_ctx: model.context_size(),
            ..session
        },
        api_key,
        body_limit: usize::try_from(tessera_core::fit::parse_size(&args.body_limit)?)
            .context("--body-limit is too large")?,
        request_timeout: (args.timeout > 0).then(|| Duration::from_secs(args.timeout)),
        max_queue: args.max_queue,
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        default_max_tokens: usize::try_from(args.n_predict).ok(),
        hibernation: args
            .hibernate_dir
            .clone()
            .map(|dir| tessera_server::HibernationConfig {
                dir,
                max_files: args.hibernate_max,
                idle: (args.hibernate_idle > 0).then(|| Duration::from_secs(args.hibernate_idle)),
            }),
        draft,
    };
    let server = Server::new(model, config)?;
    let n_ctx = server.context_size();
    tessera_server::run_blocking(server, addr, |a| {
        let draft = match &args.draft.draft_model {
            Some(d) => format!(", draft {d}, --draft-max {}", spec.n_max),
            None => String::new(),
        };
        eprintln!(
            "tessera serve: http://{a}/v1 ({} slot{} of {n_ctx} tokens{draft}); Ctrl-C stops",
            args.parallel,
            if args.parallel == 1 { "" } else { "s" }
        );
    })?;
    eprintln!("tessera serve: stopped");
    Ok(())
}

fn listen_addr(host: &str, port: u16) -> Result<SocketAddr> {
    let Some(addr) = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("--host {host}: not an address or a known host name"))?
        .next()
    else {
        bail!("--host {host}: resolves to no address");
    };
    Ok(addr)
}
