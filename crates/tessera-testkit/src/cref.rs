//! C reference harnesses: small C programs in `scripts/` that call the
//! reference llama.cpp build's ggml libraries, compiled at test time
//! ([`compile_harness`]) and run on files in a scratch directory
//! ([`run_harness`]). The bit-exactness tests compare tessera with them.
//!
//! A missing reference build or C compiler, or a harness that does not
//! build against it, goes through [`env::missing`]: the test is skipped, or
//! fails under `TESSERA_STRICT=1`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::env;

/// Compiles `source` (a path relative to the workspace root, such as
/// `scripts/ggml-dot-harness.c`) with `$CC` (default `cc`) against `libs`,
/// and returns the executable, or `None` (after [`env::missing`]).
///
/// `libs` are linked in order (`-l<lib>`); each one named `ggml*` must be
/// in the reference build (`LLAMA_BIN`, see [`env::llama_tool`]), which is
/// also the run-time library path. The include path has `scripts/` (for
/// `harness-io.h`) and the reference source tree's `ggml/include` when it
/// is there. The executable is built once per call, next to the test binary.
pub fn compile_harness(source: &str, libs: &[&str]) -> Option<PathBuf> {
    let mut bin = None;
    for lib in libs.iter().filter(|l| l.starts_with("ggml")) {
        let path = env::llama_tool(&format!("lib{lib}.so"))?;
        bin = Some(path.parent().expect("a file has a parent").to_path_buf());
    }
    let bin = bin.expect("compile_harness links at least one ggml library");
    // build/bin → the source tree's ggml/include.
    let include = bin.join("../../vendor/llama.cpp/ggml/include");
    let root = env::workspace_root();
    let src = root.join(source);
    let stem = src.file_stem().expect("a source file name");
    let dir = std::env::current_exe()
        .expect("the test binary's path")
        .parent()
        .expect("a file has a parent")
        .join("tessera-harness");
    std::fs::create_dir_all(&dir).expect("create the harness directory");
    let exe = dir.join(stem);
    // Built under a name of this process, then renamed: another test process
    // may be running the harness built before.
    let tmp = dir.join(format!("{}.{}", stem.to_string_lossy(), std::process::id()));

    let mut cc = Command::new(std::env::var_os("CC").unwrap_or_else(|| "cc".into()));
    cc.arg("-O2").arg("-I").arg(root.join("scripts"));
    if include.is_dir() {
        cc.arg("-I").arg(&include);
    }
    cc.arg("-o").arg(&tmp).arg(&src).arg("-L").arg(&bin);
    cc.args(libs.iter().map(|l| format!("-l{l}")));
    cc.arg(format!("-Wl,-rpath,{}", bin.display()));
    match cc.output() {
        Ok(o) if o.status.success() => {
            std::fs::rename(&tmp, &exe).expect("rename the built harness");
            Some(exe)
        }
        Ok(o) => {
            let headers = if include.is_dir() {
                String::new()
            } else {
                format!(" (no ggml headers at {})", include.display())
            };
            env::missing(&format!(
                "cannot build {source}{headers}: {}",
                String::from_utf8_lossy(&o.stderr)
            ))
        }
        Err(e) => env::missing(&format!("no C compiler (cc) for {source}: {e}")),
    }
}

/// The scratch directory of one harness run, with its input and output
/// files; removed when dropped.
pub struct HarnessDir(PathBuf);

impl HarnessDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The contents of file `name` in the directory (panics when unreadable).
    pub fn read(&self, name: &str) -> Vec<u8> {
        let p = self.0.join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
    }
}

impl Drop for HarnessDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// Runs `cmd` (a harness from [`compile_harness`] with its arguments) in a
/// fresh scratch directory holding `inputs` (file name, contents), so the
/// arguments name files relative to it. Panics with the harness's stderr
/// when it fails; returns the directory, to [`HarnessDir::read`] the
/// outputs from.
pub fn run_harness(mut cmd: Command, inputs: &[(&str, &[u8])]) -> HarnessDir {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let dir = HarnessDir(
        std::env::temp_dir().join(format!("tessera-harness-{}-{seq}", std::process::id())),
    );
    std::fs::create_dir_all(dir.path()).expect("create the scratch directory");
    for (name, data) in inputs {
        std::fs::write(dir.path().join(name), data).expect("write a harness input");
    }
    let out = cmd
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}
