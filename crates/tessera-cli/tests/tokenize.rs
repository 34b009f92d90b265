//! `tessera tokenize` end to end: the same output as llama.cpp's
//! `llama-tokenize` (ids, pieces, BOS default, escapes, `--no-bos`,
//! `--no-parse-special`, `-f`), and clear errors on bad input.

use std::path::Path;
use std::process::{Command, Output};

use tessera_testkit::env;

fn run(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().expect("run")
}

fn tessera(args: &[&str]) -> Output {
    run(Path::new(env!("CARGO_BIN_EXE_tessera")), args)
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// llama-tokenize's output, without its log lines.
fn llama(args: &[&str]) -> Option<String> {
    let tool = env::llama_tool("llama-tokenize")?;
    let mut all = vec!["--log-disable"];
    all.extend_from_slice(args);
    Some(stdout(&run(&tool, &all)))
}

/// Runs the same arguments through both tools and compares stdout.
fn same(model: &Path, args: &[&str]) {
    let m = model.to_str().unwrap();
    let mut full = vec!["-m", m];
    full.extend_from_slice(args);
    let Some(want) = llama(&full) else {
        return;
    };
    let mut t = vec!["tokenize", "-m", m];
    t.extend_from_slice(args);
    let got = stdout(&tessera(&t));
    assert_eq!(got, want, "tessera tokenize {args:?}");
}

#[test]
fn ids_match_llama_tokenize() {
    let Some(smol) = env::real_model(env::SMOLLM2) else {
        return;
    };
    let Some(gemma) = env::real_model(env::GEMMA3) else {
        return;
    };
    let text = "Hello world, it's <|im_start|>user\\nhi<|im_end|> 12345 <start_of_turn>\\t🙂";
    for model in [&smol, &gemma] {
        same(model, &["-p", text, "--ids"]);
        same(model, &["-p", text, "--ids", "--no-bos"]);
        same(model, &["-p", text, "--ids", "--no-parse-special"]);
        same(model, &["-p", text, "--ids", "--no-escape"]);
        same(model, &["-p", text, "--show-count"]);
    }
}

#[test]
fn pieces_and_files_match_llama_tokenize() {
    let Some(gemma) = env::real_model(env::GEMMA3) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("tessera-tokenize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("in.txt");
    std::fs::write(
        &file,
        "Line one\n\n  two\\tthree\n<table>x</table>\u{10FFFF}\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    same(&gemma, &["-f", f]);
    same(&gemma, &["-f", f, "--ids", "--no-escape"]);
    if let Some(smol) = env::real_model(env::SMOLLM2) {
        same(&smol, &["-f", f]);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bos_default_follows_the_model() {
    let Some(gemma) = env::real_model(env::GEMMA3) else {
        return;
    };
    let g = gemma.to_str().unwrap();
    assert_eq!(
        stdout(&tessera(&["tokenize", "-m", g, "-p", "Hi", "--ids"])),
        "[2, 10979]\n"
    );
    assert_eq!(
        stdout(&tessera(&[
            "tokenize", "-m", g, "-p", "Hi", "--ids", "--no-bos"
        ])),
        "[10979]\n"
    );
}

#[test]
fn bad_input_is_an_error() {
    let o = tessera(&["tokenize", "-m", "/no/such/model.gguf", "-p", "x"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not found"));
    let Some(smol) = env::real_model(env::SMOLLM2) else {
        return;
    };
    let o = tessera(&[
        "tokenize",
        "-m",
        smol.to_str().unwrap(),
        "-p",
        "bad \\xff byte",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("UTF-8"));
    let o = tessera(&["tokenize", "-m", smol.to_str().unwrap()]);
    assert!(!o.status.success());
}
