//! Encoding throughput of a GGUF model's tokenizer on a text file.
//!
//! ```text
//! cargo run --release -p tessera-tokenizer --example encode_bench -- MODEL.gguf TEXT_FILE [REPEAT]
//! ```
//!
//! Prints the time to build the tokenizer from the file, then the best of
//! REPEAT (default 3) encodings of the whole file (BOS as the model wants it,
//! special tokens parsed: `llama-tokenize`'s defaults) in MB/s and tokens/s.
//! `scripts/bench-tokenizer.sh` runs it next to `llama-tokenize`.

use std::time::Instant;

use tessera_tokenizer::{EncodeOptions, Tokenizer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: encode_bench MODEL.gguf TEXT_FILE [REPEAT]".into());
    }
    let repeat: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(3);
    let text = std::fs::read_to_string(&args[2])?;
    let t0 = Instant::now();
    let tok = Tokenizer::from_gguf(&args[1])?;
    let load = t0.elapsed();
    let opts = EncodeOptions {
        add_special: tok.add_bos(),
        parse_special: true,
    };
    let mut best = f64::INFINITY;
    let mut n = 0;
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        n = tok.encode(&text, opts)?.len();
        best = best.min(t.elapsed().as_secs_f64());
    }
    let mb = text.len() as f64 / 1e6;
    println!(
        "load {:.3} s ({} BPE merges); encode {:.3} MB in {:.3} s = {:.2} MB/s, {} tokens = {:.0} tokens/s",
        load.as_secs_f64(),
        tok.hf_merges(),
        mb,
        best,
        mb / best,
        n,
        n as f64 / best
    );
    Ok(())
}
