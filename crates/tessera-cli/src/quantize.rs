//! `tessera quantize in.gguf out.gguf <type> [threads]`: llama-quantize's
//! command line and, without an importance matrix, its output byte for byte
//! ([`tessera_core::quantize`]).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use tessera_core::quantize::{quantize_file, FileType, QuantizeParams};

/// Arguments of `tessera quantize`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The model to quantize (F32, F16 or BF16 weights; a split GGUF by its
    /// first file).
    input: PathBuf,
    /// Where to write the result.
    output: PathBuf,
    /// The file type: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K_S, Q3_K_M,
    /// Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, IQ4_NL, IQ4_XS, F16,
    /// BF16, F32, MXFP4_MOE (or llama.cpp's number).
    #[arg(value_name = "TYPE")]
    ftype: String,
    /// Threads (default: all cores).
    threads: Option<usize>,
    /// Quantize tensors that are already quantized (worse than from F16).
    #[arg(long)]
    allow_requantize: bool,
}

/// Runs `tessera quantize`.
pub fn run(args: &Args) -> Result<()> {
    let ftype = FileType::parse(&args.ftype).map_err(anyhow::Error::msg)?;
    if args.input == args.output {
        bail!("the output must not be the input file");
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let params = QuantizeParams {
        ftype,
        threads: threads.max(1),
        allow_requantize: args.allow_requantize,
    };
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
            .expect("a valid template"),
    );
    let report = quantize_file(&args.input, &args.output, &params, |p| {
        bar.set_length(p.total as u64);
        bar.set_position(p.index as u64);
        bar.set_message(format!("{} {} → {}", p.name, p.from, p.to));
    })?;
    bar.finish_and_clear();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    eprintln!(
        "{}: {} tensors, {:.2} MiB → {:.2} MiB ({})",
        args.output.display(),
        report.tensors,
        mib(report.bytes_in),
        mib(report.bytes_out),
        ftype.name()
    );
    // Tensors whose rows the chosen type's blocks do not divide, grouped.
    let mut groups: Vec<(String, String, Vec<&str>)> = Vec::new();
    for (name, want, got) in &report.fallbacks {
        let (want, got) = (want.to_string(), got.to_string());
        match groups.iter_mut().find(|g| g.0 == want && g.1 == got) {
            Some(g) => g.2.push(name),
            None => groups.push((want, got, vec![name])),
        }
    }
    for (want, got, names) in &groups {
        eprintln!(
            "  {} tensor(s) written as {got} instead of {want} (row length not whole {want} blocks), e.g. {}",
            names.len(),
            names[0]
        );
    }
    Ok(())
}
