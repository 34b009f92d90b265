//! `tessera`: the command-line tool.
//!
//! Subcommands live in their own modules; `main` only parses arguments and
//! turns errors into a message and a non-zero exit code. Built with
//! `--features wgpu`, the wgpu GPU devices (`vulkan:0` …) are registered
//! first, as placement targets after the CPU.

mod bench;
mod chat;
mod common;
mod inspect;
mod list;
mod models;
mod perplexity;
mod plan;
mod pull;
mod quantize;
mod run;
mod serve;
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
    /// Complete a prompt: stream the generated text to stdout, timings to stderr.
    Run(run::Args),
    /// Talk with a model through its chat template (multi-turn, interactive).
    Chat(chat::Args),
    /// Measure prompt processing and generation speed (as llama-bench does).
    Bench(bench::Args),
    /// Perplexity of a text file (as llama-perplexity computes it).
    Perplexity(perplexity::Args),
    /// Where each weight goes under the placement flags, why, what each
    /// device holds, and the predicted decode speed (a dry run).
    Plan(plan::Args),
    /// The devices tessera can place weights on, with their bandwidth.
    Devices(plan::DevicesArgs),
    /// The model catalog: ids, quantizations, sizes, and what is downloaded.
    Models(list::Args),
    /// Download catalog models (`tessera pull qwen3:0.6b[:q4_k_m]`).
    Pull(pull::Args),
    /// Quantize a model (`tessera quantize in.gguf out.gguf Q4_K_M`), as
    /// llama-quantize does, byte for byte.
    Quantize(quantize::Args),
    /// Serve the model over HTTP with OpenAI's API (chat and text
    /// completions, streamed or whole; models, health, metrics).
    Serve(serve::Args),
}

fn main() -> ExitCode {
    // `--features cuda`: cuda:N become placement targets (none without a
    // driver or GPU).
    #[cfg(feature = "cuda")]
    tessera_cuda::register();
    #[cfg(feature = "wgpu")]
    tessera_wgpu::register();
    let cli = Cli::parse_from(common::rewrite_args(std::env::args()));
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(&args),
        Command::Tokenize(args) => tokenize::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Chat(args) => chat::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Perplexity(args) => perplexity::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Devices(args) => plan::devices(&args),
        Command::Models(args) => list::run(&args),
        Command::Pull(args) => pull::run(&args),
        Command::Quantize(args) => quantize::run(&args),
        Command::Serve(args) => serve::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
