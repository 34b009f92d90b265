//! Test support: a tiny HTTP server in Hugging Face's URL layout, temporary
//! folders, file hashing.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::Digest;

/// How the server answers for one file.
#[derive(Clone)]
pub struct Served {
    /// The bytes sent.
    pub body: Vec<u8>,
    /// The ETag (the Hub sends the LFS sha256).
    pub etag: String,
    /// Cut the first transfer (not the 1-byte metadata probe) halfway.
    pub cut_first: bool,
}

/// One request the server saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub range: Option<String>,
}

#[derive(Default)]
struct State {
    files: HashMap<String, Served>,
    cut_done: HashMap<String, bool>,
    log: Vec<Seen>,
}

/// A server on 127.0.0.1 answering `/{repo}/resolve/{revision}/{file}`
/// with `Range` support; anything else is a 404.
pub struct HubServer {
    pub url: String,
    state: Arc<Mutex<State>>,
}

pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

impl HubServer {
    pub fn start() -> HubServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let st = st.clone();
                std::thread::spawn(move || serve(stream, &st));
            }
        });
        HubServer { url, state }
    }

    /// Serves `body` as `file` of `repo` at revision `main`, with its
    /// sha256 as ETag.
    pub fn add(&self, repo: &str, file: &str, body: &[u8]) {
        self.add_with(
            repo,
            file,
            Served {
                body: body.to_vec(),
                etag: sha256(body),
                cut_first: false,
            },
        );
    }

    pub fn add_with(&self, repo: &str, file: &str, served: Served) {
        let path = format!("/{repo}/resolve/main/{file}");
        self.state.lock().unwrap().files.insert(path, served);
    }

    /// The requests seen so far for paths containing `part`.
    pub fn seen(&self, part: &str) -> Vec<Seen> {
        let st = self.state.lock().unwrap();
        st.log
            .iter()
            .filter(|s| s.path.contains(part))
            .cloned()
            .collect()
    }
}

fn serve(mut stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    let (served, cut) = {
        let mut st = state.lock().unwrap();
        st.log.push(Seen {
            path: path.clone(),
            range: range.clone(),
        });
        let served = st.files.get(&path).cloned();
        let probe = range.as_deref() == Some("bytes=0-0");
        let cut = match &served {
            Some(s) if s.cut_first && !probe => {
                let first = !st.cut_done.get(&path).copied().unwrap_or(false);
                st.cut_done.insert(path.clone(), true);
                first
            }
            _ => false,
        };
        (served, cut)
    };
    let Some(served) = served else {
        let body = "Entry not found";
        let _ = write!(
            stream,
            "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        return;
    };
    let size = served.body.len();
    let (start, end) = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
        Some(r) => {
            let (a, b) = r.split_once('-').unwrap_or((r, ""));
            let a: usize = a.parse().unwrap_or(0);
            let b: usize = if b.is_empty() {
                size.saturating_sub(1)
            } else {
                b.parse().unwrap_or(size - 1).min(size - 1)
            };
            (a, b)
        }
        None => (0, size.saturating_sub(1)),
    };
    if start >= size {
        let _ = write!(
            stream,
            "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{size}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        return;
    }
    let body = &served.body[start..=end];
    let status = if range.is_some() {
        "206 Partial Content"
    } else {
        "200 OK"
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{end}/{size}\r\nAccept-Ranges: bytes\r\nETag: \"{}\"\r\nX-Repo-Commit: {COMMIT}\r\nConnection: close\r\n\r\n",
        body.len(),
        served.etag
    );
    let _ = stream.write_all(head.as_bytes());
    if cut {
        // Half the promised bytes, then the connection drops.
        let _ = stream.write_all(&body[..body.len() / 2]);
        let _ = stream.flush();
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return;
    }
    let _ = stream.write_all(body);
    let _ = stream.flush();
}

/// A folder removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let d = std::env::temp_dir().join(format!("tessera-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deterministic test bytes.
pub fn bytes(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// The names of the entries of `dir`.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
