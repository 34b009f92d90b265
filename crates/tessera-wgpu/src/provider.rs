//! The wgpu devices as a tessera backend provider: [`register`] makes
//! `vulkan:N`, `metal:N` and `dx12:N` placement targets
//! ([`tessera_core::backend::register_provider`]), listed after the CPU
//! devices, opened when a model places something on them.

use std::sync::{Arc, OnceLock};

use tessera_core::backend::{Backend, BackendProvider};

use crate::WgpuBackend;

/// The wgpu devices of this machine, listed once.
#[derive(Default)]
pub struct WgpuProvider {
    names: OnceLock<Vec<String>>,
}

impl BackendProvider for WgpuProvider {
    fn kinds(&self) -> Vec<&'static str> {
        vec!["vulkan", "metal", "dx12"]
    }

    fn devices(&self) -> Vec<String> {
        self.names
            .get_or_init(|| crate::devices().into_iter().map(|d| d.name).collect())
            .clone()
    }

    fn open(&self, name: &str) -> tessera_core::Result<Arc<dyn Backend>> {
        Ok(Arc::new(WgpuBackend::new(name)?))
    }
}

/// Registers the wgpu devices with tessera's placement (idempotent).
pub fn register() {
    tessera_core::backend::register_provider(Arc::new(WgpuProvider::default()));
}
