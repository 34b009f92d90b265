//! Test support shared by tessera's crates: where the real test models are
//! cached, how a test that needs an external prerequisite (a model, Python's
//! `gguf` package, llama.cpp) skips or fails, the C harnesses that run the
//! reference ggml ([`cref`]), a seeded generator for test data ([`rng`]),
//! (in [`synth`]) tiny synthetic models, and (feature `gpu`, in `gpu`) the
//! op harness and end-to-end driver the GPU backends' tests share.

pub mod cref;
pub mod env;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod rng;
pub mod synth;
