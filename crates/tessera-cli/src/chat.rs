//! `tessera chat`: an interactive multi-turn conversation through the
//! model's chat template, on the SDK's [`tessera::Conversation`] (the KV
//! cache is reused across turns: only the new tokens are evaluated).

use std::io::{BufRead, Write};

use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use tessera::{Conversation, ConversationOptions, FinishReason};

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
    let model = tessera::Model::from_core(args.model.load()?, args.model.session()?)?;
    let mut chat = Conversation::with_options(
        &model,
        ConversationOptions {
            system: args.system.clone(),
            sampling: args.sampling.config()?,
            max_tokens: usize::try_from(args.n_predict).ok(),
            stop: Vec::new(),
        },
    );
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
        let mut reply = chat.submit_stream(line);
        while let Some(piece) = reply.next_blocking() {
            match piece {
                Ok(p) => {
                    print!("{p}");
                    out.flush()?;
                }
                Err(e) => bail!(e),
            }
        }
        println!();
        if reply.finish() == Some(FinishReason::ContextFull) {
            eprintln!(
                "tessera: the context of {} tokens is full (raise -c); the answer was cut",
                model.context_size()
            );
        }
        if let (true, Some(stats)) = (args.timings, reply.stats()) {
            crate::run::print_timings(&stats);
        }
    }
    Ok(())
}
