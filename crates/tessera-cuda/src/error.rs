//! The backend's error type. Every failure names the device (or `cuda`
//! before one is open) and what was being done; [`CudaError`] converts into
//! [`tessera_core::CoreError::Backend`] at the trait boundary.

use tessera_core::backend::gpu::{self, GpuError};
use tessera_core::CoreError;

/// Why a CUDA operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// The CUDA driver library (libcuda) cannot be loaded, or it reports no
    /// device.
    #[error("no CUDA device: {0}")]
    NoDevice(String),
    /// The name is not `cuda:N`, or there is no such device.
    #[error("no CUDA device `{name}` (devices: {})", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    BadName {
        /// The name asked for.
        name: String,
        /// The devices this machine has.
        available: Vec<String>,
    },
    /// NVRTC (libnvrtc) cannot be loaded.
    #[error("NVRTC is not available: {0}")]
    NoNvrtc(String),
    /// NVRTC rejected a kernel source.
    #[error("NVRTC: {source_name} for {arch}: {log}")]
    Compile {
        /// The kernel source file.
        source_name: &'static str,
        /// The target (`compute_80` …).
        arch: String,
        /// The compiler's log.
        log: String,
    },
    /// A driver call failed.
    #[error("{device}: {what}: {reason}")]
    Driver {
        /// The device name.
        device: String,
        /// What was being done.
        what: String,
        /// What the driver said.
        reason: String,
    },
    /// An access outside a buffer, or an op given inputs the kernels
    /// cannot handle.
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

impl CudaError {
    /// The device the error is about (`cuda` when none is).
    pub fn device(&self) -> &str {
        match self {
            CudaError::NoDevice(_) | CudaError::NoNvrtc(_) | CudaError::Compile { .. } => "cuda",
            CudaError::BadName { name, .. } => name,
            CudaError::Driver { device, .. } => device,
            CudaError::Gpu(e) => e.device(),
        }
    }
}

impl From<CudaError> for CoreError {
    fn from(e: CudaError) -> CoreError {
        gpu::backend_error(e.device(), &e.to_string())
    }
}

/// Results of this crate.
pub type Result<T, E = CudaError> = std::result::Result<T, E>;
