//! The numbers of tessera: how every GGML block type is laid out
//! ([`blocks`]), dequantized ([`dequant`]) and quantized ([`quantize`]), joined
//! in one table ([`dtype`]), and the CPU kernels that multiply them, with
//! run-time SIMD dispatch and a scalar twin for every kernel.

pub mod blocks;
pub mod dequant;
pub mod dtype;
pub mod kernels;
pub mod matmul;
pub mod pool;
pub mod quantize;

pub use dtype::{dequantize, info, quantize, DTypeInfo, QuantError};
pub use tessera_gguf::GgmlType;
