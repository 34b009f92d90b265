//! `tessera bench`: prompt-processing and generation speed, measured the
//! way `llama-bench` measures it, printed as its table (or JSON).
//!
//! - `ppN`: a fresh context, one evaluation of N tokens (BOS, then random
//!   ids), in micro-batches of `-ub`; tokens/s = N / time.
//! - `tgN`: a fresh context, N single-token evaluations (BOS first, then
//!   random ids); tokens/s = N / time.
//!
//! One warm-up run of each test precedes `-r` timed repetitions; the table
//! shows mean ± sample standard deviation.

use std::time::Instant;

use anyhow::Result;
use clap::Args as ClapArgs;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tessera_core::{Logits, Model, Session};

use crate::common::ModelArgs;

/// Arguments of `tessera bench`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt lengths to test (`ppN`; 0 skips).
    #[arg(short = 'p', long = "n-prompt", value_delimiter = ',', default_values_t = vec![512])]
    n_prompt: Vec<usize>,
    /// Generation lengths to test (`tgN`; 0 skips).
    #[arg(short = 'n', long = "n-gen", value_delimiter = ',', default_values_t = vec![128])]
    n_gen: Vec<usize>,
    /// Repetitions per test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    repetitions: usize,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
}

/// One result row.
#[derive(Serialize)]
struct Row {
    model: String,
    size_bytes: u64,
    params: u64,
    backend: String,
    threads: usize,
    test: String,
    n_prompt: usize,
    n_gen: usize,
    avg_ts: f64,
    stddev_ts: f64,
    samples_ts: Vec<f64>,
}

fn random_tokens(model: &Model, n: usize, rng: &mut rand::rngs::StdRng) -> Vec<u32> {
    let tok = model.tokenizer();
    let n_vocab = model.hparams().n_vocab as u32;
    (0..n)
        .map(|i| match (i, tok.special().bos) {
            (0, Some(bos)) if tok.add_bos() => bos,
            _ => rng.gen_range(0..n_vocab),
        })
        .collect()
}

fn time_prompt(s: &mut Session, tokens: &[u32]) -> Result<f64> {
    s.clear();
    let t = Instant::now();
    s.eval(tokens, Logits::Last)?;
    Ok(tokens.len() as f64 / t.elapsed().as_secs_f64())
}

fn time_gen(s: &mut Session, tokens: &[u32]) -> Result<f64> {
    s.clear();
    let t = Instant::now();
    for tok in tokens {
        s.eval(std::slice::from_ref(tok), Logits::Last)?;
    }
    Ok(tokens.len() as f64 / t.elapsed().as_secs_f64())
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// Runs `tessera bench`.
pub fn run(args: &Args) -> Result<()> {
    anyhow::ensure!(args.repetitions > 0, "-r must be at least 1");
    let model = args.model.load()?;
    let threads = model.backends()[0].info().name.clone();
    let n_threads = match args.model.threads {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let tests: Vec<(String, usize, usize)> = args
        .n_prompt
        .iter()
        .filter(|&&n| n > 0)
        .map(|&n| (format!("pp{n}"), n, 0))
        .chain(
            args.n_gen
                .iter()
                .filter(|&&n| n > 0)
                .map(|&n| (format!("tg{n}"), 0, n)),
        )
        .collect();
    let name = args
        .model
        .path()?
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut rows = Vec::new();
    if !args.json {
        println!("| model                          |       size |     params | backend    | threads |            test |                  t/s |");
        println!("| ------------------------------ | ---------: | ---------: | ---------- | ------: | --------------: | -------------------: |");
    }
    for (test, n_prompt, n_gen) in tests {
        let mut sp = args.model.session()?;
        sp.n_ctx = n_prompt + n_gen;
        let mut s = model.session(&sp)?;
        let tokens = random_tokens(&model, n_prompt.max(n_gen), &mut rng);
        let run_once = |s: &mut Session| {
            if n_prompt > 0 {
                time_prompt(s, &tokens)
            } else {
                time_gen(s, &tokens)
            }
        };
        run_once(&mut s)?; // warm-up
        let samples = (0..args.repetitions)
            .map(|_| run_once(&mut s))
            .collect::<Result<Vec<_>>>()?;
        let (avg, sd) = mean_sd(&samples);
        let row = Row {
            model: name.clone(),
            size_bytes: model.gguf().file_size(),
            params: model.gguf().parameter_count(),
            backend: threads.to_uppercase(),
            threads: n_threads,
            test,
            n_prompt,
            n_gen,
            avg_ts: avg,
            stddev_ts: sd,
            samples_ts: samples,
        };
        if !args.json {
            println!(
                "| {:<30} | {:>6.2} MiB | {:>8.2} M | {:<10} | {:>7} | {:>15} | {:>20} |",
                truncate(&row.model, 30),
                row.size_bytes as f64 / (1 << 20) as f64,
                row.params as f64 / 1e6,
                row.backend,
                row.threads,
                row.test,
                format!("{:.2} ± {:.2}", row.avg_ts, row.stddev_ts)
            );
        }
        rows.push(row);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
