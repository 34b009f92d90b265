//! The test environment: model cache, reference tools and strict mode.
//!
//! - `TESSERA_MODELS`: cache of the real models (default `~/.cache/tessera/models`),
//!   filled by `scripts/fetch-models.sh`.
//! - `TESSERA_PYTHON`: a Python with the `gguf` package (default: the venv made by
//!   `scripts/py-env.sh` at `~/.cache/tessera/venv`, else `python3`).
//! - `LLAMA_BIN`: directory of the reference llama.cpp binaries
//!   (`../shared/tools/llama-ref.sh` prints it).
//! - `TESSERA_STRICT=1` (set by CI): a missing prerequisite fails the test
//!   instead of skipping it, so CI cannot pass by skipping.

use std::path::{Path, PathBuf};

/// SmolLM2-135M-Instruct, Q4_1 (llama architecture).
pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Gemma 3 270M, Q4_K_M (gemma3 architecture).
pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from)
}

/// Whether missing prerequisites fail tests (`TESSERA_STRICT=1`).
pub fn strict() -> bool {
    std::env::var("TESSERA_STRICT").is_ok_and(|v| v == "1")
}

/// Directory of the cached real models.
pub fn models_dir() -> PathBuf {
    std::env::var_os("TESSERA_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/tessera/models"))
}

/// Reports a missing prerequisite: panics in strict mode, otherwise prints
/// why the test is skipped. Returns `None` so callers can `?`-style bail out.
pub fn missing<T>(what: &str) -> Option<T> {
    let msg = format!("{what} (run scripts/fetch-models.sh and scripts/py-env.sh, or see README)");
    if strict() {
        panic!("TESSERA_STRICT=1 and a prerequisite is missing: {msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

/// Path of the cached real model `name`, or `None` (after [`missing`]) when absent.
pub fn real_model(name: &str) -> Option<PathBuf> {
    let p = models_dir().join(name);
    if p.is_file() {
        Some(p)
    } else {
        missing(&format!("test model {} not found", p.display()))
    }
}

/// A Python interpreter that can `import gguf`, or `None` (after [`missing`]).
pub fn python_with_gguf() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("TESSERA_PYTHON") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(home().join(".cache/tessera/venv/bin/python"));
    candidates.push(PathBuf::from("python3"));
    for c in candidates {
        let ok = std::process::Command::new(&c)
            .args(["-c", "import gguf"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(c);
        }
    }
    missing("no Python with the `gguf` package")
}

/// Path of llama.cpp binary `tool` under `LLAMA_BIN` (or the default
/// llama-ref build dir), or `None` (after [`missing`]).
pub fn llama_tool(tool: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("LLAMA_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/tessera-ref/llama-cpp-python-0.3.36/build/bin"));
    let p = dir.join(tool);
    if p.is_file() {
        Some(p)
    } else {
        missing(&format!(
            "llama.cpp tool {} not found (set LLAMA_BIN)",
            p.display()
        ))
    }
}

/// The workspace root (for scripts and fixtures).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/<name> is two levels below the root")
        .to_path_buf()
}
