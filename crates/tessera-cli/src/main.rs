//! `tessera`: the command-line tool.
//!
//! Subcommands live in their own modules; `main` only parses arguments and
//! turns errors into a message and a non-zero exit code.

mod inspect;
mod models;
mod tokenize;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// tessera — run GGUF language models on the devices you have.
#[derive(Parser)]
#[command(name = "tessera", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what a GGUF model holds: architecture, sizes, quant mix, metadata, tensors.
    Inspect(inspect::Args),
    /// Turn text into token ids with a model's tokenizer (as llama-tokenize does).
    Tokenize(tokenize::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(&args),
        Command::Tokenize(args) => tokenize::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
