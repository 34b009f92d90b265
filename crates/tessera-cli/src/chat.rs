//! `tessera chat`: an interactive multi-turn conversation through the
//! model's chat template. Each turn renders the whole conversation, and
//! only the tokens after the common prefix with what the session already
//! holds are evaluated (the KV cache is reused across turns).

use std::io::{BufRead, Write};

use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use tessera_core::generate::{generate, GenerateParams, StopReason};
use tessera_tokenizer::{ChatRequest, ChatTemplates, EncodeOptions};

use crate::common::{ModelArgs, SamplingArgs};

/// Arguments of `tessera chat`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// A system message that starts the conversation.
    #[arg(long = "system", alias = "system-prompt")]
    system: Option<String>,
    /// Most tokens per answer (-1: until end of turn).
    #[arg(short = 'n', long = "n-predict", default_value_t = -1, allow_negative_numbers = true)]
    n_predict: i64,
    /// Print timings after each answer.
    #[arg(long)]
    timings: bool,
}

/// Runs `tessera chat`: reads user turns from stdin until EOF or `/exit`.
pub fn run(args: &Args) -> Result<()> {
    let model = args.model.load()?;
    let tok = model.tokenizer();
    let templates = ChatTemplates::from_metadata(model.gguf().metadata(), tok)?;
    let mut session = model.session(&args.model.session()?)?;
    let mut messages: Vec<(String, String)> = Vec::new();
    if let Some(s) = &args.system {
        messages.push(("system".into(), s.clone()));
    }
    let params = GenerateParams {
        n_predict: usize::try_from(args.n_predict).ok(),
        sampler: args.sampling.config()?,
        stop: Vec::new(),
        ignore_eos: false,
    };
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    eprintln!("tessera chat: type a message, /exit or end of input (Ctrl-D) to quit");
    loop {
        write!(out, "> ")?;
        out.flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line == "/exit" {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        messages.push(("user".into(), line.to_string()));
        let req = messages
            .iter()
            .fold(ChatRequest::new(), |r, (role, content)| {
                r.message(role, content)
            })
            .generation_prompt(true);
        let text = templates.apply("default", &req)?;
        let all = tok.encode(
            &text,
            EncodeOptions {
                add_special: true,
                parse_special: true,
            },
        )?;
        let common = session
            .tokens()
            .iter()
            .zip(&all)
            .take_while(|(a, b)| a == b)
            .count();
        // Keep at least one token to evaluate so there are logits to sample from.
        let keep = common.min(all.len() - 1);
        session.truncate(keep);
        if all.len() >= session.n_ctx() {
            bail!(
                "the conversation ({} tokens) no longer fits the context of {} (raise -c)",
                all.len(),
                session.n_ctx()
            );
        }
        let mut answer = String::new();
        let (_, stats) = generate(&mut session, &all[keep..], &params, |piece| {
            answer.push_str(piece);
            print!("{piece}");
            out.flush().is_ok()
        })?;
        println!();
        if stats.stop == StopReason::ContextFull {
            eprintln!(
                "tessera: the context of {} tokens is full (raise -c); the answer was cut",
                session.n_ctx()
            );
        }
        if args.timings {
            crate::run::print_timings(&stats);
        }
        messages.push(("assistant".into(), answer.trim().to_string()));
    }
    Ok(())
}
