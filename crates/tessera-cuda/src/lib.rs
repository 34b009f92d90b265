//! tessera's CUDA backend (WIP skeleton).
pub mod error;
pub mod kernels;
