//! `tessera pull <id>[:quant]…`: download catalog models into the model
//! cache, and the progress display every pull uses (also the pull on
//! first use of `run`/`chat`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args as ClapArgs;
use indicatif::{ProgressBar, ProgressStyle};
use tessera::download::{format_bytes, Event, ModelCache};
use tessera::{Catalog, Variant};

/// Arguments of `tessera pull`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Catalog ids, each optionally with a quantization: `smollm2:135m`,
    /// `qwen3:0.6b:q4_k_m` (`tessera models` lists them).
    #[arg(required = true, value_name = "ID[:QUANT]")]
    models: Vec<String>,
}

/// Runs `tessera pull`: prints each model's path on stdout.
pub fn run(args: &Args) -> Result<()> {
    let catalog = Catalog::load()?;
    let cache = ModelCache::from_env();
    // All names are checked before anything is fetched.
    let wanted = args
        .models
        .iter()
        .map(|m| catalog.resolve(m))
        .collect::<Result<Vec<_>, _>>()?;
    for (entry, variant) in wanted {
        let here = cache.find(variant).is_some();
        eprintln!(
            "tessera: {} {} ({}) {}",
            entry.id,
            variant.quant,
            variant.file,
            if here {
                "is here; checking it"
            } else {
                "downloading"
            }
        );
        let path = fetch(&cache, variant)?;
        println!("{}", path.display());
    }
    Ok(())
}

/// Pulls `variant` with a progress display on stderr.
pub fn fetch(cache: &ModelCache, variant: &Variant) -> Result<PathBuf> {
    let mut ui = Display::default();
    let result = cache.pull(variant, &mut |e| ui.event(e));
    ui.clear();
    Ok(result?)
}

/// Renders [`Event`]s: a byte bar for transfers and checks, a spinner for
/// steps, a line for each failed source.
#[derive(Default)]
struct Display {
    bar: Option<(ProgressBar, String)>,
    sources: usize,
    index: usize,
}

impl Display {
    fn clear(&mut self) {
        if let Some((bar, _)) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// The bar keyed `key`, made with `make` when it is not the current one.
    fn bar(&mut self, key: String, make: impl FnOnce() -> ProgressBar) -> &ProgressBar {
        if self.bar.as_ref().is_none_or(|(_, k)| *k != key) {
            self.clear();
            self.bar = Some((make(), key));
        }
        &self.bar.as_ref().expect("just set").0
    }

    fn event(&mut self, e: Event<'_>) {
        match e {
            Event::Source {
                index,
                count,
                source,
            } => {
                self.clear();
                self.sources = count;
                self.index = index;
                eprintln!("tessera: from {source}");
            }
            Event::Step(step) => {
                let bar = self.bar(format!("step {step}"), ProgressBar::new_spinner);
                bar.set_message(step.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
            }
            Event::Transfer { file, done, total } => {
                let bar = self.bar(format!("get {file}"), || {
                    bytes_bar(total.unwrap_or(0), file.to_string())
                });
                if let Some(t) = total {
                    bar.set_length(t);
                }
                bar.set_position(done);
            }
            Event::Verify { file, done, total } => {
                let bar = self.bar(format!("sha {file}"), || {
                    bytes_bar(total, format!("sha256 {file}"))
                });
                bar.set_position(done);
            }
            Event::SourceFailed { source, error } => {
                self.clear();
                // The last failure is in the error that ends the pull.
                if self.index + 1 < self.sources {
                    eprintln!("tessera: {source} failed: {error}; trying the next source");
                }
            }
            Event::Done { path } => {
                self.clear();
                let size = std::fs::metadata(path)
                    .map(|m| format!(" ({})", format_bytes(m.len())))
                    .unwrap_or_default();
                eprintln!("tessera: ready: {}{size}", path.display());
            }
            _ => {}
        }
    }
}

fn bytes_bar(total: u64, message: String) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:32}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}
