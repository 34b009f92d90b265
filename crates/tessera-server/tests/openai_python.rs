//! OpenAI's own Python client (`pip install openai`) against the server:
//! a whole chat answer, the same answer streamed (with the usage chunk),
//! the model list, a text completion, a wrong key (`AuthenticationError`)
//! and a bad value (`BadRequestError`).
//!
//! The interpreter: `$TESSERA_OPENAI_PYTHON`, else `$TESSERA_PYTHON` or the
//! project's venv (`~/.cache/tessera/venv`) when it has `openai`, else a
//! venv made at `~/.cache/tessera/venv-openai` with `pip install openai`.
//! Without Python, pip or the package index the test is skipped with a
//! message, unless `TESSERA_STRICT=1`. Also skipped without the model.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tessera_testkit::env;

const SCRIPT: &str = r#"
import json, sys
import openai

base, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=120)
msgs = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]
r = client.chat.completions.create(model="smollm2-test", messages=msgs, max_tokens=24, temperature=0)
out = {"whole": r.choices[0].message.content, "finish": r.choices[0].finish_reason,
       "usage": r.usage.completion_tokens}
pieces, finish, usage = [], None, None
stream = client.chat.completions.create(model="smollm2-test", messages=msgs, max_tokens=24,
                                        temperature=0, stream=True,
                                        stream_options={"include_usage": True})
for chunk in stream:
    if chunk.choices:
        c = chunk.choices[0]
        if c.delta.content:
            pieces.append(c.delta.content)
        if c.finish_reason:
            finish = c.finish_reason
    if chunk.usage:
        usage = chunk.usage.completion_tokens
out.update(streamed="".join(pieces), stream_finish=finish, stream_usage=usage)
out["models"] = [m.id for m in client.models.list()]
c = client.completions.create(model="smollm2-test", prompt="The capital of France is",
                              max_tokens=4, temperature=0)
out["completion"] = c.choices[0].text
try:
    openai.OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0).models.list()
    out["bad_key"] = "accepted"
except openai.AuthenticationError as e:
    out["bad_key"] = e.status_code
try:
    client.chat.completions.create(model="smollm2-test", messages=msgs, temperature=5)
    out["bad_value"] = "accepted"
except openai.BadRequestError as e:
    out["bad_value"] = [e.status_code, e.body.get("param") if isinstance(e.body, dict) else None]
print(json.dumps(out))
"#;

fn has_openai(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A Python that can `import openai`, made if need be.
fn python_with_openai() -> Option<PathBuf> {
    let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
    let mut candidates: Vec<PathBuf> = ["TESSERA_OPENAI_PYTHON", "TESSERA_PYTHON"]
        .iter()
        .filter_map(std::env::var_os)
        .map(PathBuf::from)
        .collect();
    let venv = home.join(".cache/tessera/venv-openai");
    candidates.push(home.join(".cache/tessera/venv/bin/python"));
    candidates.push(venv.join("bin/python"));
    if let Some(p) = candidates.iter().find(|p| has_openai(p)) {
        return Some(p.clone());
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "openai"])
            .status()
            .is_ok_and(|s| s.success());
    let python = venv.join("bin/python");
    if made && has_openai(&python) {
        Some(python)
    } else {
        env::missing("no Python with the `openai` package, and `python3 -m venv` + `pip install openai` failed")
    }
}

#[test]
fn openai_python_client_talks_to_the_server() {
    let mut config = common::config(2);
    config.api_key = Some("test-key".into());
    let Some(server) = common::start(config) else {
        return;
    };
    let Some(python) = python_with_openai() else {
        return;
    };
    let out = Command::new(&python)
        .args(["-c", SCRIPT, &server.base, "test-key"])
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).expect("the script prints JSON");
    let whole = v["whole"].as_str().unwrap();
    assert!(whole.contains("Paris"), "{v}");
    assert_eq!(v["streamed"], v["whole"], "{v}");
    assert_eq!(v["stream_finish"], v["finish"], "{v}");
    assert_eq!(v["stream_usage"], v["usage"], "{v}");
    assert_eq!(v["models"], serde_json::json!(["smollm2-test"]));
    assert!(v["completion"].as_str().unwrap().contains("Paris"), "{v}");
    assert_eq!(v["bad_key"], 401, "{v}");
    assert_eq!(
        v["bad_value"],
        serde_json::json!([400, "temperature"]),
        "{v}"
    );
}
