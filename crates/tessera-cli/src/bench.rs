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
//!
//! With a draft model (`-md`), each `tgN` also runs on text: greedy
//! generation of N tokens from `--spec-prompt` (end of generation
//! ignored), without the draft (`tgN text`) and speculating (`tgN
//! text+md`, `--draft-max` guesses per target pass), the two in turn;
//! tokens/s = N / generation time (the prompt not included). A summary line per N gives
//! the speed-up, the draft's acceptance rate, tokens per target pass and
//! whether both produced the same tokens; the draft's own `tgN` row shows
//! what a draft step costs.

use std::time::Instant;

use anyhow::Result;
use clap::Args as ClapArgs;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tessera_core::generate::{generate, GenerateParams};
use tessera_core::sample::SamplerConfig;
use tessera_core::speculative::{generate_speculative, SpecParams, SpecStats};
use tessera_core::{Logits, Model, Session, SessionParams};
use tessera_tokenizer::EncodeOptions;

use crate::common::{DraftArgs, ModelArgs};

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
    #[command(flatten)]
    draft: DraftArgs,
    /// With `-md`: the text the `tgN text` tests generate from.
    #[arg(
        long = "spec-prompt",
        default_value = "Write a long story about a lighthouse keeper and the sea."
    )]
    spec_prompt: String,
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
    /// Speculative rows: the draft model.
    #[serde(skip_serializing_if = "Option::is_none")]
    draft_model: Option<String>,
    /// Speculative rows: draft tokens verified and accepted, summed over
    /// the timed repetitions.
    #[serde(skip_serializing_if = "Option::is_none")]
    n_drafted: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n_accepted: Option<u64>,
    /// Speculative rows: accepted / drafted.
    #[serde(skip_serializing_if = "Option::is_none")]
    acceptance: Option<f64>,
    /// Speculative rows: target passes per generation (mean).
    #[serde(skip_serializing_if = "Option::is_none")]
    target_passes: Option<f64>,
    /// Speculative rows: avg_ts over the `text` row's.
    #[serde(skip_serializing_if = "Option::is_none")]
    speedup: Option<f64>,
    /// Speculative rows: whether the tokens equal the `text` row's.
    #[serde(skip_serializing_if = "Option::is_none")]
    identical: Option<bool>,
}

/// One greedy generation of `n` tokens from `prompt` (with `draft`, if
/// given): tokens/s of the generation, the tokens, the draft's stats.
fn time_text(
    target: &Model,
    draft: Option<&Model>,
    sp: &SessionParams,
    prompt: &[u32],
    n: usize,
    spec: &SpecParams,
) -> Result<(f64, Vec<u32>, SpecStats)> {
    let params = GenerateParams {
        n_predict: Some(n),
        sampler: SamplerConfig::greedy(),
        stop: Vec::new(),
        ignore_eos: true,
    };
    let mut s = target.session(sp)?;
    let (tokens, stats, st) = match draft {
        Some(d) => {
            let mut ds = d.session(sp)?;
            generate_speculative(&mut s, &mut ds, prompt, &params, spec, |_| true)?
        }
        None => {
            let (t, g) = generate(&mut s, prompt, &params, |_| true)?;
            (t, g, SpecStats::default())
        }
    };
    Ok((stats.gen_tps(), tokens, st))
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
            draft_model: None,
            n_drafted: None,
            n_accepted: None,
            acceptance: None,
            target_passes: None,
            speedup: None,
            identical: None,
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
            print_row(&row);
        }
        rows.push(row);
    }
    if let Some(draft) = args.draft.load(&args.model, &model)? {
        rows.extend(bench_draft(args, &model, &draft, n_threads)?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(())
}

fn print_row(row: &Row) {
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

fn file_name(m: &Model) -> String {
    m.gguf().shards()[0]
        .path()
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The `-md` tests: the draft's own `tgN`, then per N greedy text
/// generation without and with the draft, and a summary line.
fn bench_draft(args: &Args, target: &Model, draft: &Model, n_threads: usize) -> Result<Vec<Row>> {
    let spec = args.draft.spec()?;
    let prompt = target.tokenizer().encode(
        &args.spec_prompt,
        EncodeOptions {
            add_special: true,
            parse_special: true,
        },
    )?;
    anyhow::ensure!(!prompt.is_empty(), "--spec-prompt is empty");
    let mut rng = rand::rngs::StdRng::seed_from_u64(43);
    let mut rows = Vec::new();
    let mut summary = Vec::new();
    let row = |m: &Model, test: String, n_gen: usize, samples: Vec<f64>| {
        let (avg, sd) = mean_sd(&samples);
        Row {
            model: file_name(m),
            size_bytes: m.gguf().file_size(),
            params: m.gguf().parameter_count(),
            backend: m.backends()[0].info().name.to_uppercase(),
            threads: n_threads,
            test,
            n_prompt: 0,
            n_gen,
            avg_ts: avg,
            stddev_ts: sd,
            samples_ts: samples,
            draft_model: None,
            n_drafted: None,
            n_accepted: None,
            acceptance: None,
            target_passes: None,
            speedup: None,
            identical: None,
        }
    };
    for &n in args.n_gen.iter().filter(|&&n| n > 0) {
        // The draft's own decode speed (random tokens, as tgN).
        let mut sp = args.model.session()?;
        sp.n_ctx = n;
        let mut s = draft.session(&sp)?;
        let tokens = random_tokens(draft, n, &mut rng);
        time_gen(&mut s, &tokens)?;
        let samples = (0..args.repetitions)
            .map(|_| time_gen(&mut s, &tokens))
            .collect::<Result<Vec<_>>>()?;
        rows.push(row(draft, format!("tg{n}"), n, samples));

        // Without and with the draft in turn (a warm-up of each first), so
        // a change in the machine's load falls on both alike.
        sp.n_ctx = prompt.len() + n + spec.n_max + 1;
        let (mut plain, mut fast) = (Vec::new(), Vec::new());
        let mut total = SpecStats::default();
        let mut identical = true;
        for i in 0..=args.repetitions {
            let (ts, want, _) = time_text(target, None, &sp, &prompt, n, &spec)?;
            let (ts_md, toks, st) = time_text(target, Some(draft), &sp, &prompt, n, &spec)?;
            identical &= toks == want;
            if i > 0 {
                plain.push(ts);
                fast.push(ts_md);
                total.add(&st);
            }
        }
        rows.push(row(target, format!("tg{n} text"), n, plain));
        let mut r = row(target, format!("tg{n} text+md"), n, fast);
        let speedup = r.avg_ts / rows.last().map_or(f64::NAN, |p: &Row| p.avg_ts);
        r.draft_model = Some(file_name(draft));
        r.n_drafted = Some(total.n_drafted);
        r.n_accepted = Some(total.n_accepted);
        r.acceptance = Some(total.acceptance_rate());
        r.target_passes = Some(total.n_target_passes as f64 / args.repetitions as f64);
        r.speedup = Some(speedup);
        r.identical = Some(identical);
        summary.push(format!(
            "tg{n} with draft {} (--draft-max {}): {:.2} → {:.2} t/s, speed-up {:.2}×, acceptance {:.1} % ({} of {} drafted), {:.2} tokens per target pass, same tokens as without the draft: {}",
            file_name(draft),
            spec.n_max,
            rows.last().map_or(f64::NAN, |p: &Row| p.avg_ts),
            r.avg_ts,
            speedup,
            100.0 * total.acceptance_rate(),
            total.n_accepted,
            total.n_drafted,
            n as f64 / r.target_passes.unwrap_or(1.0).max(1.0),
            if identical { "yes" } else { "NO" }
        ));
        rows.push(r);
    }
    if !args.json {
        for r in &rows {
            print_row(r);
        }
        println!();
        for s in &summary {
            println!("{s}");
        }
    }
    Ok(rows)
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
