//! Shared by the CUDA backend's op tests (`harness.rs` on a device,
//! `kernels_host.rs` on the host): the tolerances, named here for CUDA,
//! and the buffer plan's alignment. The cases, graphs, runs and report
//! are `tessera_testkit::gpu`'s (shared with the wgpu backend). Each test
//! binary uses part of it.
#![allow(dead_code, unused_imports)]

pub use tessera_core::backend::gpu::WEIGHT_TYPES as TYPES;
pub use tessera_testkit::gpu::{
    decode, encode, nmse, product_f64, run_steps, stderr, Case, Harness, Report, Rng, Tolerances,
};

// ---- Tolerances (normalised MSE) ----------------------------------------

/// Data movement (select, slice, concat, gather, embeddings): exact.
pub const NMSE_COPY: f64 = 0.0;
/// f32 arithmetic in another order (sums, norms).
pub const NMSE_F32: f64 = 1e-10;
/// Transcendentals (exp, tanh, erf): the device's and libm's last bits.
pub const NMSE_TRANSCENDENTAL: f64 = 1e-9;
/// Rope at positions up to a few thousand.
pub const NMSE_ROPE: f64 = 1e-9;
/// GELU through ggml's f16 table: an input on an f16 rounding edge may
/// round the other way.
pub const NMSE_GELU_F16: f64 = 1e-7;
/// Attention over an F16 cache: below 64 query tokens the CPU rounds the
/// query to f16 and accumulates V in f16; the kernel keeps both in f32.
pub const NMSE_ATTN_F16: f64 = 1e-5;
/// Attention over a Q8_0 cache (both quantize the query the same way).
pub const NMSE_ATTN_Q8: f64 = 1e-6;
/// A product in f32 against an f64 product of the same dequantized weights.
pub const NMSE_EXACT_PRODUCT: f64 = 1e-10;

/// The figures above by tolerance class.
pub const TOL: Tolerances = Tolerances {
    copy: NMSE_COPY,
    f32: NMSE_F32,
    transcendental: NMSE_TRANSCENDENTAL,
    rope: NMSE_ROPE,
    gelu_f16: NMSE_GELU_F16,
    attn_f16: NMSE_ATTN_F16,
    attn_q8: NMSE_ATTN_Q8,
};

/// Activations of the harness's graphs: 256-byte aligned, 256-byte gaps.
pub const ALIGN: usize = 256;
