//! `tessera serve` end to end: the binary starts on SmolLM2 on a free port
//! (with SmolLM2 as its draft model, `-md`), says where it listens,
//! answers a chat completion over HTTP, refuses a request without the API
//! key, and stops cleanly (exit 0) on SIGTERM. A draft model that is not
//! there is a clear error (exit status not 0).
//!
//! Skipped without the model unless `TESSERA_STRICT=1`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use tessera_testkit::env;

/// One HTTP/1.1 request on a fresh connection; returns status and body.
fn http(addr: &str, method: &str, path: &str, key: Option<&str>, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

#[cfg(unix)]
#[test]
fn serve_answers_and_stops_on_sigterm() {
    let Some(model) = env::real_model(env::SMOLLM2) else {
        return;
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "-m"])
        .arg(&model)
        .args(["--port", "0", "-c", "512", "-t", "2", "--parallel", "2"])
        .args(["--api-key", "k1", "--alias", "smol"])
        .arg("-md")
        .arg(&model)
        .args(["--draft-max", "4", "-otd", ".*=cpu"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("tessera serve starts");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "exited before listening"
        );
        if let Some(rest) = line.split("http://").nth(1) {
            assert!(line.contains("--draft-max 4"), "{line}");
            break rest.split('/').next().unwrap().to_string();
        }
    };
    let chat = r#"{"messages":[{"role":"system","content":"You are a helpful assistant."},
        {"role":"user","content":"What is the capital of France?"}],"max_tokens":16,"temperature":0}"#;
    let (status, body) = http(&addr, "POST", "/v1/chat/completions", Some("k1"), chat);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("Paris") && body.contains("\"model\":\"smol\""),
        "{body}"
    );
    let (status, body) = http(&addr, "POST", "/v1/chat/completions", None, chat);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("invalid_api_key"), "{body}");

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = child.wait().unwrap();
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "exit {status:?}: {rest}");
    assert!(rest.contains("stopped"), "{rest}");
}

#[test]
fn serve_refuses_a_draft_model_that_is_not_there() {
    let Some(model) = env::real_model(env::SMOLLM2) else {
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "-m"])
        .arg(&model)
        .args(["--port", "0", "-c", "256", "-t", "1"])
        .args(["-md", "/nonexistent/draft.gguf"])
        .output()
        .expect("tessera runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("draft model")
            && err.contains("/nonexistent/draft.gguf")
            && err.contains("not found"),
        "{err}"
    );
}
