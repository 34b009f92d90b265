//! `tessera tokenize`: text → token ids with a model's tokenizer, printed the
//! way llama.cpp's `llama-tokenize` prints them.
//!
//! The defaults are `llama-tokenize`'s: BOS is added when the model asks for
//! it (`--no-bos` turns it off), special-token text such as `<|im_start|>` is
//! parsed into special tokens (`--no-parse-special` turns it off), and the
//! escapes `\n \r \t \' \" \\ \xNN` in the prompt are processed
//! (`--no-escape` turns it off). `--ids` prints `[1, 2, 3]`; otherwise each
//! token is printed as `%6d -> '<piece>'`.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use tessera_tokenizer::{EncodeOptions, Tokenizer};

use crate::models;

#[derive(clap::Args)]
pub struct Args {
    /// Model: a path to a .gguf file, or a file name in the model cache.
    /// Default: the default model.
    #[arg(short, long)]
    model: Option<String>,
    /// The text to tokenize.
    #[arg(short, long, conflicts_with_all = ["file", "stdin"])]
    prompt: Option<String>,
    /// Read the text from a file (verbatim).
    #[arg(short, long, conflicts_with = "stdin")]
    file: Option<PathBuf>,
    /// Read the text from standard input.
    #[arg(long)]
    stdin: bool,
    /// Print only the ids, as a list: [1, 2, 3].
    #[arg(long)]
    ids: bool,
    /// Do not add BOS, even if the model normally adds one.
    #[arg(long)]
    no_bos: bool,
    /// Treat special-token text (e.g. `<|im_start|>`) as plain text.
    #[arg(long)]
    no_parse_special: bool,
    /// Do not process escapes (\n, \r, \t, \', \", \\, \xNN).
    #[arg(long)]
    no_escape: bool,
    /// Print the number of tokens at the end.
    #[arg(long)]
    show_count: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let mut raw: Vec<u8> = if let Some(p) = &args.prompt {
        p.clone().into_bytes()
    } else if let Some(f) = &args.file {
        std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?
    } else if args.stdin {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("cannot read standard input")?;
        buf
    } else {
        bail!("give the text with --prompt, --file or --stdin");
    };
    if !args.no_escape {
        process_escapes(&mut raw);
    }
    let text = String::from_utf8(raw).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        anyhow::anyhow!("the text is not valid UTF-8 (at byte {at})")
    })?;

    let path = models::resolve(args.model.as_deref())?;
    let tok = Tokenizer::from_gguf(&path)
        .with_context(|| format!("cannot load the tokenizer of {}", path.display()))?;
    for w in tok.warnings() {
        eprintln!("warning: {w}");
    }
    let ids = tok.encode(
        &text,
        EncodeOptions {
            add_special: tok.add_bos() && !args.no_bos,
            parse_special: !args.no_parse_special,
        },
    )?;

    let mut out = std::io::stdout().lock();
    if args.ids {
        let list: Vec<String> = ids.iter().map(u32::to_string).collect();
        writeln!(out, "[{}]", list.join(", "))?;
    } else {
        for &id in &ids {
            write!(out, "{id:6} -> '")?;
            out.write_all(tok.piece(id, true)?)?;
            writeln!(out, "'")?;
        }
    }
    if args.show_count {
        writeln!(out, "Total number of tokens: {}", ids.len())?;
    }
    Ok(())
}

/// llama.cpp's `string_process_escapes`: `\n \r \t \' \" \\` and `\xNN`;
/// any other backslash sequence is kept as written.
fn process_escapes(s: &mut Vec<u8>) {
    let input = std::mem::take(s);
    let mut i = 0;
    while i < input.len() {
        let c = input[i];
        if c == b'\\' && i + 1 < input.len() {
            i += 1;
            let e = input[i];
            match e {
                b'n' => s.push(b'\n'),
                b'r' => s.push(b'\r'),
                b't' => s.push(b'\t'),
                b'\'' | b'"' | b'\\' => s.push(e),
                b'x' if i + 2 < input.len()
                    && strtol_hex2(input[i + 1], input[i + 2]).is_some() =>
                {
                    s.push(strtol_hex2(input[i + 1], input[i + 2]).unwrap_or(0));
                    i += 2;
                }
                _ => {
                    s.push(b'\\');
                    s.push(e);
                }
            }
        } else {
            s.push(c);
        }
        i += 1;
    }
}

/// `strtol(two chars, 16)` when it consumes both: `HH`, `+H`, `-H` or a
/// space then `H`; the value as a `char` (so `-1` is 0xFF).
fn strtol_hex2(a: u8, b: u8) -> Option<u8> {
    let hex = |c: u8| (c as char).to_digit(16);
    let lo = hex(b)?;
    match a {
        b'+' | b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r' => Some(lo as u8),
        b'-' => Some((lo as u8).wrapping_neg()),
        _ => Some((hex(a)? * 16 + lo) as u8),
    }
}

#[cfg(test)]
mod tests {
    use super::process_escapes;

    fn esc(s: &str) -> Vec<u8> {
        let mut v = s.as_bytes().to_vec();
        process_escapes(&mut v);
        v
    }

    #[test]
    fn escapes_like_llama_cpp() {
        assert_eq!(esc(r#"a\nb\tc\\d\'\"\q"#), b"a\nb\tc\\d'\"\\q");
        assert_eq!(esc(r"\x41\x4"), b"A\\x4");
        assert_eq!(esc(r"\x41"), b"A");
        assert_eq!(esc(r"\x-1\x 9"), [0xFF, 9]);
        assert_eq!(esc("end\\"), b"end\\");
    }
}
