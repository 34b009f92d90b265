//! The backend's error type. Every failure names the device and what was
//! being done; [`WgpuError`] converts into [`tessera_core::CoreError::Backend`]
//! at the trait boundary.

use tessera_core::backend::gpu::{self, GpuError};
use tessera_core::CoreError;

/// Why a wgpu operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WgpuError {
    /// No adapter answers to the name asked for.
    #[error("no wgpu device `{name}` (devices: {})", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    NoDevice {
        /// The name asked for (`vulkan:0` …).
        name: String,
        /// The devices this machine has.
        available: Vec<String>,
    },
    /// The name is not `<backend>:<index>` with a wgpu backend.
    #[error("`{0}` is not a wgpu device name (expected vulkan:N, metal:N or dx12:N)")]
    BadName(String),
    /// The adapter refused to create a device.
    #[error("{device}: cannot open the device: {reason}")]
    RequestDevice {
        /// The device name.
        device: String,
        /// What wgpu said.
        reason: String,
    },
    /// wgpu reported a validation or out-of-memory error.
    #[error("{device}: {reason}")]
    Device {
        /// The device name.
        device: String,
        /// What failed.
        reason: String,
    },
    /// A buffer or binding would exceed the device's limits.
    #[error("{device}: {what} needs {bytes} bytes, more than the device's limit of {limit}")]
    TooLarge {
        /// The device name.
        device: String,
        /// What was being allocated or bound.
        what: String,
        /// Bytes asked for.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// An access outside a buffer, or an op given inputs the shaders
    /// cannot handle.
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

impl WgpuError {
    /// The device the error is about.
    pub fn device(&self) -> &str {
        match self {
            WgpuError::NoDevice { name, .. } => name,
            WgpuError::BadName(name) => name,
            WgpuError::RequestDevice { device, .. }
            | WgpuError::Device { device, .. }
            | WgpuError::TooLarge { device, .. } => device,
            WgpuError::Gpu(e) => e.device(),
        }
    }
}

impl From<WgpuError> for CoreError {
    fn from(e: WgpuError) -> CoreError {
        gpu::backend_error(e.device(), &e.to_string())
    }
}

/// Results of this crate.
pub type Result<T, E = WgpuError> = std::result::Result<T, E>;
