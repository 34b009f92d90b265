//! `tessera perplexity`: perplexity of a text computed exactly as
//! `llama-perplexity` computes it.
//!
//! The text is tokenized (BOS added if the model adds one, special-token
//! text kept as text) and scored by [`tessera_core::perplexity`]. The
//! running perplexity is printed after the last chunk as `[i]ppl,` …; the
//! last line is `Final estimate: PPL = <ppl> +/- <err>`, as llama.cpp prints.

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use tessera_core::perplexity::perplexity;
use tessera_tokenizer::EncodeOptions;

use crate::common::ModelArgs;

/// Arguments of `tessera perplexity`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The text file.
    #[arg(short = 'f', long = "file")]
    file: std::path::PathBuf,
    /// Chunks to score (-1: all).
    #[arg(long = "chunks", default_value_t = -1, allow_negative_numbers = true)]
    chunks: i64,
}

/// Runs `tessera perplexity`.
pub fn run(args: &Args) -> Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let model = args.model.load()?;
    let tok = model.tokenizer();
    let n_ctx = args.model.ctx_size;
    if n_ctx < 4 {
        bail!("-c must be at least 4 for perplexity");
    }
    let tokens = tok.encode(
        &text,
        EncodeOptions {
            add_special: true,
            parse_special: false,
        },
    )?;
    if tokens.len() < 2 * n_ctx {
        bail!(
            "{} tokenizes to {} tokens; perplexity with a context of {n_ctx} needs at least {}",
            args.file.display(),
            tokens.len(),
            2 * n_ctx
        );
    }
    let mut sp = args.model.session()?;
    sp.n_ctx = n_ctx;
    let mut session = model.session(&sp)?;
    eprintln!(
        "perplexity: {} tokens, {} chunks of {n_ctx}",
        tokens.len(),
        tokens.len() / n_ctx
    );
    let bar = indicatif::ProgressBar::new((tokens.len() / n_ctx) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} chunks, eta {eta}")
            .expect("valid template"),
    );
    let max_chunks = usize::try_from(args.chunks).ok();
    let r = perplexity(&mut session, &tokens, n_ctx, max_chunks, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    let running: String = r
        .running
        .iter()
        .enumerate()
        .map(|(i, p)| format!("[{}]{p:.4},", i + 1))
        .collect();
    println!("{running}");
    match r.error {
        Some(err) => println!("Final estimate: PPL = {:.4} +/- {err:.5}", r.ppl),
        None => println!("Final estimate: PPL = {:.4}", r.ppl),
    }
    Ok(())
}
