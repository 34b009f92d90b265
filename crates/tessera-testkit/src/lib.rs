//! Test support shared by tessera's crates: where the real test models are
//! cached, how a test that needs an external prerequisite (a model, Python's
//! `gguf` package, llama.cpp) skips or fails, the C harnesses that run the
//! reference ggml ([`cref`]), a seeded generator for test data ([`rng`]),
//! and (in [`synth`]) tiny synthetic models.

pub mod cref;
pub mod env;
pub mod rng;
pub mod synth;
