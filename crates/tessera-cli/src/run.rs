//! `tessera run`: complete a prompt and stream the text to stdout, timings
//! to stderr (as `llama-completion -no-cnv` does). With `-md` a draft
//! model speculates (`tessera_core::speculative`): the same text, and the
//! draft's acceptance on stderr.

use std::io::Write;

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use tessera_core::generate::{generate, GenerateParams, GenerateStats, StopReason};
use tessera_core::speculative::{generate_speculative, SpecStats};
use tessera_tokenizer::EncodeOptions;

use crate::common::{DraftArgs, ModelArgs, SamplingArgs};

/// Arguments of `tessera run`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    draft: DraftArgs,
    /// The prompt.
    #[arg(short = 'p', long = "prompt", conflicts_with = "file")]
    prompt: Option<String>,
    /// The prompt, given without -p: `tessera run "The capital of France is"`.
    #[arg(value_name = "PROMPT", conflicts_with_all = ["prompt", "file"])]
    prompt_arg: Option<String>,
    /// Read the prompt from a file.
    #[arg(short = 'f', long = "file")]
    file: Option<std::path::PathBuf>,
    /// Tokens to generate (-1: until end of generation or a full context).
    #[arg(short = 'n', long = "n-predict", default_value_t = -1, allow_negative_numbers = true)]
    n_predict: i64,
    /// Print the prompt before the generated text.
    #[arg(long)]
    echo: bool,
    /// Keep generating after end-of-generation tokens.
    #[arg(long = "ignore-eos")]
    ignore_eos: bool,
    /// Stop when this text is generated (repeatable; llama.cpp's `-r`).
    #[arg(short = 'r', long = "reverse-prompt", alias = "stop")]
    stop: Vec<String>,
}

/// The prompt text from `-p` or `-f`.
fn prompt_text(args: &Args) -> Result<String> {
    match (
        args.prompt.as_ref().or(args.prompt_arg.as_ref()),
        &args.file,
    ) {
        (Some(p), _) => Ok(p.clone()),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read prompt file {}", f.display())),
        (None, None) => bail!("no prompt: give one as an argument, with -p TEXT or -f FILE"),
    }
}

/// Prints llama.cpp-style timings to stderr.
pub fn print_timings(s: &GenerateStats) {
    let line = |what: &str, n: usize, secs: f64| {
        let ms = secs * 1e3;
        eprintln!(
            "tessera: {what:>17} = {ms:10.2} ms / {n:5} tokens ({:8.2} ms per token, {:8.2} tokens per second)",
            ms / n.max(1) as f64,
            n as f64 / secs.max(1e-9)
        );
    };
    line("prompt eval time", s.n_prompt, s.prompt_time.as_secs_f64());
    line("eval time", s.n_gen, s.gen_time.as_secs_f64());
}

/// Prints what the draft did to stderr.
pub fn print_spec(s: &GenerateStats, d: &SpecStats) {
    eprintln!(
        "tessera: draft: {} drafted, {} accepted ({:.1} %), {} target passes ({:.2} tokens per pass), {:.2} s in the draft, {:.2} s in the target",
        d.n_drafted,
        d.n_accepted,
        100.0 * d.acceptance_rate(),
        d.n_target_passes,
        s.n_gen as f64 / d.n_target_passes.max(1) as f64,
        d.draft_time.as_secs_f64(),
        d.target_time.as_secs_f64()
    );
}

/// Runs `tessera run`.
pub fn run(args: &Args) -> Result<()> {
    let text = prompt_text(args)?;
    if text.is_empty() {
        bail!("the prompt is empty: give some text with -p or -f");
    }
    let model = args.model.load()?;
    let draft = args.draft.load(&args.model, &model)?;
    let spec = args.draft.spec()?;
    let tok = model.tokenizer();
    let prompt = tok.encode(
        &text,
        EncodeOptions {
            add_special: true,
            parse_special: true,
        },
    )?;
    let sp = args.model.session()?;
    let mut session = model.session(&sp)?;
    if prompt.len() >= session.n_ctx() {
        bail!(
            "the prompt is {} tokens but the context holds {} (raise -c/--ctx-size)",
            prompt.len(),
            session.n_ctx()
        );
    }
    let params = GenerateParams {
        n_predict: usize::try_from(args.n_predict).ok(),
        sampler: args.sampling.config()?,
        stop: args.stop.clone(),
        ignore_eos: args.ignore_eos,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.echo {
        write!(out, "{text}")?;
        out.flush()?;
    }
    let mut write_err = None;
    let on_text = |piece: &str| match write!(out, "{piece}").and_then(|_| out.flush()) {
        Ok(()) => true,
        Err(e) => {
            write_err = Some(e);
            false
        }
    };
    let (stats, spec_stats) = match &draft {
        Some(d) => {
            let mut ds = d.session(&sp)?;
            let (_, s, st) =
                generate_speculative(&mut session, &mut ds, &prompt, &params, &spec, on_text)?;
            (s, Some(st))
        }
        None => (generate(&mut session, &prompt, &params, on_text)?.1, None),
    };
    if let Some(e) = write_err {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
    }
    writeln!(out)?;
    if stats.stop == StopReason::ContextFull {
        eprintln!(
            "tessera: the context of {} tokens is full; generation stopped (tessera does not shift the context: raise -c)",
            session.n_ctx()
        );
    }
    print_timings(&stats);
    if let Some(d) = &spec_stats {
        print_spec(&stats, d);
    }
    Ok(())
}
