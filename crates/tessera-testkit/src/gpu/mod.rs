//! What the GPU backends' tests share (`tessera-wgpu`, `tessera-cuda`;
//! feature `gpu`): each backend's test files keep only what is its own —
//! how it finds and opens its device, its skip rule, its tolerances (named
//! there, per backend), and the cases only it runs.
//!
//! - [`data`]: deterministic values, weights stored as a GGML type and
//!   read back, normalised MSE, f64 products;
//! - [`case`]: one-step graphs with inputs ([`Case`]), a buffer plan with
//!   guard gaps, running steps on a backend over a KV cache
//!   ([`run_steps`]), the CPU-against-GPU comparison ([`Harness`]) and
//!   the report;
//! - [`cases`]: the op cases both backends run (elementwise, norms,
//!   softmax, rope, routing, attention, products, embeddings), built from
//!   shape lists each backend gives, labelled, with a tolerance class
//!   ([`Tol`]) each backend maps to its own figure;
//! - [`e2e`]: real models decoded greedily on the CPU and on a device with
//!   the CPU's tokens fed to both (teacher forcing), compared step by step.

pub mod case;
pub mod cases;
pub mod data;
pub mod e2e;

pub use case::{plan, run_steps, Case, Harness, KvSetup, Outputs, Report};
pub use cases::{Check, Tol, Tolerances};
pub use data::{decode, encode, nmse, product_f64, Rng};

use std::io::Write;

/// One line to stderr, unbuffered (shows even when a test passes).
pub fn stderr(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Whether the environment variable `var` is `1` (e.g.
/// `TESSERA_REQUIRE_WGPU`: a missing device fails instead of skipping).
pub fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

/// A test's device is missing (`why`): fails when `require_var` is `1`,
/// else says so on stderr (the caller then skips).
pub fn skip(require_var: &str, why: &str) {
    assert!(!required(require_var), "{why} — but {require_var}=1");
    stderr(why);
}
