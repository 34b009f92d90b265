//! [`Model`]: a GGUF model loaded by path or catalog id, placed over the
//! devices as [`LoadOptions`] say, shared by every [`crate::Conversation`]
//! opened on it (the weights are loaded once).
//!
//! Loading runs on a thread of its own and is awaited, so it does not
//! block an async runtime, whichever runtime that is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tessera_core::placement::{CpuLayout, Placement, TensorOverride};
use tessera_core::{KvType, ModelParams, SessionParams};
use tessera_tokenizer::ChatTemplates;

use crate::catalog::Catalog;
use crate::download::{Event, ModelCache};
use crate::error::{Error, Result};
use crate::residency::{HibernateOptions, ResidencyStats, Residents};

/// What a load is doing, for a progress display.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum LoadProgress {
    /// A catalog model is being downloaded: `done` bytes of `file`.
    Download {
        /// The file.
        file: String,
        /// Bytes so far.
        done: u64,
        /// Bytes in all, when known.
        total: Option<u64>,
    },
    /// Something worth telling (a source that failed and was skipped).
    Note(String),
    /// The weights are being mapped and placed.
    Loading {
        /// The file.
        path: PathBuf,
    },
    /// The model is ready.
    Ready,
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(&LoadProgress) + Send + Sync>;

/// How to load a model: devices and placement, context, threads, caches.
///
/// ```
/// use tessera::LoadOptions;
/// use tessera_core::placement::TensorOverride;
/// let opts = LoadOptions::default()
///     .context(8192)
///     .threads(4)
///     .tensor_override(TensorOverride::cpu("exps"));
/// # let _ = opts;
/// ```
#[derive(Clone, Default)]
pub struct LoadOptions {
    /// Devices and placement rules (`-ot`, split mode, `--distribute`,
    /// fitting, budgets); see [`Placement`]'s builders.
    pub placement: Placement,
    /// CPU threads (0: all cores).
    pub threads: usize,
    /// Context size of each conversation, tokens (0: the model's training
    /// context, at most 4096).
    pub context: usize,
    /// Key and value cache types (F16 by default, or Q8_0).
    pub cache_types: Option<(KvType, KvType)>,
    /// Where catalog models are downloaded (default: `$TESSERA_MODELS` or
    /// `~/.cache/tessera/models`, Hugging Face settings from the
    /// environment).
    pub cache: Option<ModelCache>,
    /// Called as the load goes.
    pub progress: Option<ProgressFn>,
    /// When conversations hibernate: resident budget, idle time, directory.
    pub hibernation: HibernateOptions,
}

impl std::fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field("placement", &self.placement)
            .field("threads", &self.threads)
            .field("context", &self.context)
            .field("cache_types", &self.cache_types)
            .field("hibernation", &self.hibernation)
            .finish_non_exhaustive()
    }
}

impl LoadOptions {
    /// The context size, tokens.
    pub fn context(mut self, n_ctx: usize) -> Self {
        self.context = n_ctx;
        self
    }

    /// CPU threads.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }

    /// The whole placement.
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// One more tensor rule (llama.cpp's `-ot`), after those given so far.
    pub fn tensor_override(mut self, rule: TensorOverride) -> Self {
        self.placement = self.placement.with_override(rule);
        self
    }

    /// The rules of a placement file (TOML, `docs/PLACEMENT.md`).
    pub fn placement_file(mut self, path: impl AsRef<Path>) -> Result<Self> {
        self.placement.file_rules = tessera_core::rules::load_placement_file(path.as_ref())?;
        Ok(self)
    }

    /// Spread the model over every device, the split chosen by tessera
    /// (`--distribute`).
    pub fn distribute(mut self) -> Self {
        self.placement = self.placement.favor_distributed_inference();
        self
    }

    /// `n` CPU devices (`--cpu-devices`).
    pub fn cpu_devices(mut self, n: usize, layout: CpuLayout) -> Self {
        self.placement = self.placement.with_cpu_devices(n, layout);
        self
    }

    /// Key and value cache types.
    pub fn cache_types(mut self, k: KvType, v: KvType) -> Self {
        self.cache_types = Some((k, v));
        self
    }

    /// Where catalog models are downloaded.
    pub fn model_cache(mut self, cache: ModelCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// When conversations hibernate.
    pub fn hibernation(mut self, opts: HibernateOptions) -> Self {
        self.hibernation = opts;
        self
    }

    /// A progress callback.
    pub fn on_progress(mut self, f: impl Fn(&LoadProgress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }
}

/// A loaded model. Cheap to clone: clones share the weights.
#[derive(Clone)]
pub struct Model {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) core: tessera_core::Model,
    pub(crate) templates: ChatTemplates,
    pub(crate) session: SessionParams,
    pub(crate) residents: Residents,
    path: PathBuf,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Loads `model`: a GGUF path, or a catalog id (`smollm2:135m`,
    /// `qwen3:0.6b:q8_0`) downloaded on first use.
    pub async fn load(model: impl Into<String>, options: LoadOptions) -> Result<Model> {
        let model = model.into();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("tessera-load".into())
            .spawn(move || {
                let _ = tx.send(Model::load_blocking(&model, options));
            })
            .map_err(|_| Error::Worker("load"))?;
        rx.await.map_err(|_| Error::Worker("load"))?
    }

    /// [`Model::load`] on the calling thread.
    pub fn load_blocking(model: &str, options: LoadOptions) -> Result<Model> {
        let report = |p: LoadProgress| {
            if let Some(f) = &options.progress {
                f(&p);
            }
        };
        let path = resolve(model, &options, &report)?;
        report(LoadProgress::Loading { path: path.clone() });
        let core = tessera_core::Model::load(
            &path,
            &ModelParams {
                n_threads: options.threads,
                placement: options.placement.clone(),
            },
        )?;
        let templates = ChatTemplates::from_metadata(core.gguf().metadata(), core.tokenizer())?;
        let mut session = SessionParams::default();
        if options.context > 0 {
            session.n_ctx = options.context;
        }
        if let Some(fit) = core.fit_ctx() {
            session.n_ctx = session.n_ctx.min(fit);
        }
        if let Some((k, v)) = options.cache_types {
            session.type_k = k;
            session.type_v = v;
        }
        report(LoadProgress::Ready);
        Ok(Model {
            inner: Arc::new(Inner {
                core,
                templates,
                session,
                residents: Residents::new(options.hibernation),
                path,
            }),
        })
    }

    /// A model the engine has already loaded (the CLI loads with its own
    /// flags and progress display), with the session settings every
    /// conversation on it uses.
    pub fn from_core(core: tessera_core::Model, session: SessionParams) -> Result<Model> {
        let templates = ChatTemplates::from_metadata(core.gguf().metadata(), core.tokenizer())?;
        let path = core.gguf().shards()[0].path().to_path_buf();
        Ok(Model {
            inner: Arc::new(Inner {
                core,
                templates,
                session,
                residents: Residents::new(HibernateOptions::default()),
                path,
            }),
        })
    }

    /// The file the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The engine's model: hyperparameters, tokenizer, placement.
    pub fn core(&self) -> &tessera_core::Model {
        &self.inner.core
    }

    /// The context size of each conversation, tokens.
    pub fn context_size(&self) -> usize {
        self.inner.session.n_ctx
    }

    /// How many of its conversations are resident and hibernated, and how
    /// many hibernations, restores and rebuilds there were.
    pub fn residency_stats(&self) -> ResidencyStats {
        self.inner.residents.stats()
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }
}

/// A path that exists, or a catalog id put in the cache.
fn resolve(model: &str, options: &LoadOptions, report: &dyn Fn(LoadProgress)) -> Result<PathBuf> {
    let path = Path::new(model);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    let catalog = Catalog::load()?;
    let (_, variant) = catalog.resolve(model)?;
    let cache = options.cache.clone().unwrap_or_else(ModelCache::from_env);
    if let Some(found) = cache.find(variant) {
        return Ok(found);
    }
    let path = cache.pull(variant, &mut |e| match e {
        Event::Transfer { file, done, total } => report(LoadProgress::Download {
            file: file.to_string(),
            done,
            total,
        }),
        Event::SourceFailed { source, error } => {
            report(LoadProgress::Note(format!("{source:?} failed: {error}")))
        }
        _ => {}
    })?;
    Ok(path)
}
