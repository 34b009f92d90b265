//! `tessera run`, `bench` and `perplexity` end to end on small inputs, and
//! every kind of bad input ending in a clear message and a non-zero exit
//! code (never a panic).

use std::process::{Command, Output};

use tessera_gguf::{GgmlType, GgufFile, GgufWriter, Value};
use tessera_testkit::env;
use tessera_testkit::synth::{self, Arch, SynthConfig};

fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .output()
        .expect("run tessera")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails with the output when `o` succeeded or panicked.
fn assert_clean_failure(o: &Output, wants: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got success: {err}");
    assert_eq!(o.status.code(), Some(1), "exit code: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    for w in wants {
        assert!(err.contains(w), "`{w}` not in: {err}");
    }
}

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("tessera-cli-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// A synthetic llama re-written with `meta` edits and tensor type changes.
fn write_variant(
    path: &str,
    meta: impl Fn(&mut tessera_gguf::Metadata),
    retype: impl Fn(&str) -> Option<GgmlType>,
) {
    let bytes = synth::to_bytes(&SynthConfig::new(Arch::Llama)).unwrap();
    let src = GgufFile::from_vec(bytes).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in src.metadata().iter() {
        w.set(k, v.clone());
    }
    meta(w.metadata_mut());
    for t in src.tensors() {
        let ty = retype(&t.name).unwrap_or(t.ggml_type);
        w.add_tensor(t.name.clone(), ty, &t.dims, src.tensor_data(t).to_vec())
            .unwrap();
    }
    w.write_to_path(path).unwrap();
}

/// A temporary directory holding the synthetic llama as `llama.gguf`.
fn synth_llama(tag: &str) -> (TempDir, String) {
    let d = TempDir::new(tag);
    let m = d.path("llama.gguf");
    write_variant(&m, |_| {}, |_| None);
    (d, m)
}

#[test]
fn run_generates_greedy_text_with_timings() {
    let (_dir, m) = synth_llama("run");
    let o = tessera(&[
        "run",
        "-m",
        &m,
        "-p",
        "Hello world",
        "-n",
        "8",
        "--temp",
        "0",
        "-t",
        "2",
        "--ignore-eos",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("prompt eval time") && err.contains("tokens per second"),
        "{err}"
    );
    // Same seedless greedy run twice: same text.
    let o2 = tessera(&[
        "run",
        "-m",
        &m,
        "-p",
        "Hello world",
        "-n",
        "8",
        "--temp",
        "0",
        "-t",
        "1",
        "--ignore-eos",
    ]);
    assert_eq!(
        o.stdout, o2.stdout,
        "greedy output must not depend on the thread count"
    );
    assert!(!o.stdout.is_empty());
}

#[test]
fn empty_prompt_is_an_error() {
    let (_dir, m) = synth_llama("empty");
    assert_clean_failure(
        &tessera(&["run", "-m", &m, "-p", "", "-n", "4"]),
        &["prompt is empty"],
    );
}

#[test]
fn prompt_longer_than_the_context_is_an_error() {
    let (_dir, m) = synth_llama("long");
    let prompt = "word ".repeat(200);
    assert_clean_failure(
        &tessera(&["run", "-m", &m, "-p", &prompt, "-c", "64", "-n", "4"]),
        &["context holds 64"],
    );
}

#[test]
fn unknown_architecture_is_an_error() {
    let d = TempDir::new("arch");
    let m = d.path("mamba.gguf");
    write_variant(
        &m,
        |meta| meta.set("general.architecture", Value::String("mamba9".into())),
        |_| None,
    );
    assert_clean_failure(
        &tessera(&["run", "-m", &m, "-p", "hi"]),
        &["unsupported architecture `mamba9`", "llama"],
    );
}

#[test]
fn weight_type_without_a_kernel_is_an_error() {
    let d = TempDir::new("dtype");
    let m = d.path("i32.gguf");
    write_variant(
        &m,
        |_| {},
        |n| (n == "blk.1.attn_q.weight").then_some(GgmlType::I32),
    );
    assert_clean_failure(
        &tessera(&["run", "-m", &m, "-p", "hi"]),
        &["blk.1.attn_q.weight", "I32", "cannot compute"],
    );
}

#[test]
fn bad_placement_rules_are_errors_naming_the_rule() {
    let (_dir, m) = synth_llama("placement");
    let run = |extra: &[&str]| {
        let mut a = vec!["run", "-m", &m, "-p", "hi", "-n", "2"];
        a.extend_from_slice(extra);
        tessera(&a)
    };
    assert_clean_failure(
        &run(&["-ot", "blk.(=cpu"]),
        &["tensor override #1", "invalid regex"],
    );
    assert_clean_failure(
        &run(&["-ot", "attn=cpu", "-ot", "ffn=CUDA0"]),
        &["tensor override #2", "CUDA0", "not available", "cpu"],
    );
    assert_clean_failure(
        &run(&["--cpu-devices", "2", "-ot", "ffn=cpu:3"]),
        &["unknown device `cpu:3`", "cpu:0, cpu:1"],
    );
    assert_clean_failure(&run(&["-ot", "ffn"]), &["<regex>=<device>"]);
    assert_clean_failure(
        &run(&["--device-memory", "cpu=10KiB"]),
        &["does not fit", "cpu needs", "10240"],
    );
    assert_clean_failure(
        &run(&["--device-memory", "cuda:0=1GiB"]),
        &["device memory", "not available"],
    );
    assert_clean_failure(&run(&["--cpu-devices", "0"]), &["--cpu-devices"]);
    assert_clean_failure(&run(&["--fit", "maybe"]), &["--fit `maybe`", "on or off"]);
    assert_clean_failure(
        &run(&["--device-memory", "cpu=10KiB", "--fit", "off"]),
        &["does not fit", "--fit off"],
    );
    // Placement files: a missing file, a bad key, an unknown device.
    assert_clean_failure(
        &run(&["--placement", "/nonexistent/p.toml"]),
        &["/nonexistent/p.toml"],
    );
    let file = _dir.path("bad.toml");
    std::fs::write(&file, "[[rule]]\nrole = \"expert\"\ndevice = \"cpu\"\n").unwrap();
    assert_clean_failure(
        &run(&["--placement", &file]),
        &[
            "bad.toml rule #1 (line 2)",
            "unknown role `expert`",
            "experts",
        ],
    );
    std::fs::write(&file, "[[rule]]\nname = \"ffn\"\ndevice = \"CUDA0\"\n").unwrap();
    assert_clean_failure(
        &run(&["--placement", &file]),
        &["bad.toml rule #1", "CUDA0", "not available"],
    );
    // Split flags: unknown mode, bad proportions, conflicts, no such device.
    assert_clean_failure(&run(&["-sm", "rows"]), &["split mode `rows`", "layer"]);
    assert_clean_failure(
        &run(&["--cpu-devices", "2", "-ts", "1,x"]),
        &["tensor split", "`x`"],
    );
    assert_clean_failure(
        &run(&["--cpu-devices", "2", "-ts", "1,1,1"]),
        &["3 proportions for 2 devices"],
    );
    assert_clean_failure(
        &run(&["--cpu-devices", "2", "-sm", "none", "-ts", "1,1"]),
        &["--tensor-split", "not none"],
    );
    assert_clean_failure(
        &run(&["--cpu-devices", "2", "--distribute", "-sm", "row"]),
        &["--distribute", "--split-mode"],
    );
    assert_clean_failure(
        &run(&["--cpu-devices", "2", "-mg", "2"]),
        &["--main-device 2", "cpu:0, cpu:1"],
    );
}

#[test]
fn placement_rules_keep_the_output_and_plan_explains_them() {
    let (_dir, m) = synth_llama("placed");
    let args = [
        "run",
        "-m",
        &m,
        "-p",
        "hello world",
        "-n",
        "8",
        "--temp",
        "0",
    ];
    let one = tessera(&args);
    assert!(one.status.success(), "{}", stderr(&one));
    let mut split = args.to_vec();
    split.extend_from_slice(&[
        "--cpu-devices",
        "2",
        "-ot",
        r"blk\.1\.=cpu:1",
        "-ot",
        "nothing=cpu:1",
    ]);
    let two = tessera(&split);
    assert!(two.status.success(), "{}", stderr(&two));
    assert_eq!(one.stdout, two.stdout, "the placement changed the output");
    assert!(
        stderr(&two).contains("override #2 `nothing=cpu:1` matches no tensor"),
        "{}",
        stderr(&two)
    );
    let plan = tessera(&[
        "plan",
        "-m",
        &m,
        "--cpu-devices",
        "2",
        "-ot",
        r"blk\.1\.=cpu:1",
    ]);
    let out = String::from_utf8_lossy(&plan.stdout);
    assert!(plan.status.success(), "{}", stderr(&plan));
    assert!(out.contains("| cpu:1 | attention | rule #1 |"), "{out}");
    assert!(out.contains("predicted decode"), "{out}");
    // Row and layer splits give the same tokens, and plan shows them.
    for flags in [
        &["--cpu-devices", "2", "-sm", "row"][..],
        &["--cpu-devices", "2", "-sm", "layer", "-ts", "1,3"],
        &["--cpu-devices", "2", "--distribute"],
    ] {
        let mut a = args.to_vec();
        a.extend_from_slice(flags);
        let split = tessera(&a);
        assert!(split.status.success(), "{flags:?}: {}", stderr(&split));
        assert_eq!(one.stdout, split.stdout, "{flags:?} changed the output");
    }
    // A budget only a smaller context fits: the fitter halves it, says so,
    // and the tokens are the same.
    let weights = std::fs::metadata(&m).unwrap().len();
    let budget = format!("cpu={}", weights + 64 * 1024);
    let mut a = args.to_vec();
    a.extend_from_slice(&[
        "--device-memory",
        &budget,
        "-c",
        "1024",
        "--fit-ctx-min",
        "32",
        "-ub",
        "16",
    ]);
    let small = tessera(&a);
    assert!(small.status.success(), "{}", stderr(&small));
    assert_eq!(
        one.stdout, small.stdout,
        "a smaller context changed the output"
    );
    assert!(
        stderr(&small).contains("the fitter reduced the context from 1024 to"),
        "{}",
        stderr(&small)
    );
    // A placement file: FFN of layer 1 and up on cpu:1 by role and layers.
    let file = _dir.path("placement.toml");
    std::fs::write(
        &file,
        "[[rule]]\nrole = \"ffn\"\nlayers = \"1..\"\ndevice = \"cpu:1\"\n\
         [[rule]]\nname = \"nothing\"\ndevice = \"auto\"\n",
    )
    .unwrap();
    let mut a = args.to_vec();
    a.extend_from_slice(&["--cpu-devices", "2", "--placement", &file]);
    let placed = tessera(&a);
    assert!(placed.status.success(), "{}", stderr(&placed));
    assert_eq!(
        one.stdout, placed.stdout,
        "the placement file changed the output"
    );
    assert!(
        stderr(&placed).contains("placement.toml rule #2 (line 5) matches no tensor"),
        "{}",
        stderr(&placed)
    );
    let plan = tessera(&["plan", "-m", &m, "--cpu-devices", "2", "--placement", &file]);
    let out = String::from_utf8_lossy(&plan.stdout);
    assert!(out.contains("| cpu:1 | ffn | rule #1 |"), "{out}");
    // Planning for hardware this machine does not have: a small GPU
    // budget spills layers to the declared CPU.
    let plan = tessera(&[
        "plan",
        "-m",
        &m,
        "--devices",
        "CUDA0=300KiB@900GB/s,cpu=1GiB@50GB/s",
        "-c",
        "64",
        "-ub",
        "16",
    ]);
    let out = String::from_utf8_lossy(&plan.stdout);
    assert!(plan.status.success(), "{}", stderr(&plan));
    assert!(out.contains("| cuda:0 | — | 900.0 GB/s |"), "{out}");
    assert!(
        out.contains("fit step 1:") && out.contains("cuda:0 → cpu"),
        "{out}"
    );
    assert_clean_failure(
        &tessera(&["plan", "-m", &m, "--devices", "cuda:0=16GiB"]),
        &["--devices `cuda:0=16GiB`", "no bandwidth"],
    );
    let plan = tessera(&["plan", "-m", &m, "--cpu-devices", "2", "-sm", "row"]);
    let out = String::from_utf8_lossy(&plan.stdout);
    assert!(plan.status.success(), "{}", stderr(&plan));
    assert!(out.contains("| cpu:1 | ffn | row split |"), "{out}");
}

#[test]
fn missing_model_file_is_an_error() {
    assert_clean_failure(
        &tessera(&["run", "-m", "/nonexistent/model.gguf", "-p", "hi"]),
        &["/nonexistent/model.gguf"],
    );
}

#[test]
fn bad_sampling_settings_are_errors() {
    let (_dir, m) = synth_llama("sampling");
    assert_clean_failure(
        &tessera(&["run", "-m", &m, "-p", "hi", "--top-p", "1.5"]),
        &["top_p"],
    );
    assert_clean_failure(
        &tessera(&["run", "-m", &m, "-p", "hi", "-l", "abc+1"]),
        &["logit bias"],
    );
    assert_clean_failure(
        &tessera(&["run", "-m", &m, "-p", "hi", "-ctk", "q2_k"]),
        &["cache type"],
    );
}

#[test]
fn bench_prints_a_llama_bench_table() {
    let (_dir, m) = synth_llama("bench");
    let o = tessera(&[
        "bench", "-m", &m, "-p", "16", "-n", "4", "-r", "2", "-t", "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("| pp16 ") || out.contains("pp16 |"), "{out}");
    assert!(out.contains("tg4"), "{out}");
    let o = tessera(&[
        "bench", "-m", &m, "-p", "16", "-n", "4", "-r", "2", "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert!(v[0]["avg_ts"].as_f64().unwrap() > 0.0);
}

#[test]
fn perplexity_needs_enough_text() {
    let (d, m) = synth_llama("ppl");
    let f = d.path("short.txt");
    std::fs::write(&f, "just a few words").unwrap();
    assert_clean_failure(
        &tessera(&["perplexity", "-m", &m, "-f", &f, "-c", "128"]),
        &["needs at least 256"],
    );
}

#[test]
fn smollm2_runs_from_the_cache() {
    let Some(path) = env::real_model(env::SMOLLM2) else {
        return;
    };
    let o = tessera(&[
        "run",
        "-m",
        path.to_str().unwrap(),
        "-p",
        "The capital of France is",
        "-n",
        "8",
        "--temp",
        "0",
        "-t",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Paris"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn chat_answers_each_turn_and_reuses_the_conversation() {
    let Some(path) = env::real_model(env::SMOLLM2) else {
        return;
    };
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "chat",
            "-m",
            path.to_str().unwrap(),
            "--temp",
            "0",
            "-n",
            "12",
            "-t",
            "2",
            "--timings",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"What is the capital of France?\nAnd of Italy?\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        out.matches("> ").count(),
        3,
        "two answered turns and the final prompt: {out}"
    );
    // Two answers, each with its timings; the second turn evaluated only the
    // new tokens (its prompt is shorter than the whole conversation).
    let err = stderr(&o);
    let prompts: Vec<usize> = err
        .lines()
        .filter(|l| l.contains("prompt eval time"))
        .map(|l| {
            l.split('/')
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(prompts.len(), 2, "{err}");
    assert!(
        prompts[1] < prompts[0] + 12,
        "second turn re-evaluated the conversation: {prompts:?}"
    );
}

#[test]
fn a_full_context_stops_generation_with_a_message() {
    let (_dir, m) = synth_llama("full");
    let o = tessera(&[
        "run",
        "-m",
        &m,
        "-p",
        "Hello world",
        "-c",
        "16",
        "-n",
        "100",
        "--temp",
        "0",
        "--ignore-eos",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("context of 16 tokens is full"),
        "{}",
        stderr(&o)
    );
}
