//! The CUDA devices as a tessera backend provider: [`register`] makes
//! `cuda:N` placement targets ([`tessera_core::backend::register_provider`]),
//! listed after the CPU devices, opened when a model places something on
//! them. On a machine without the CUDA driver the provider lists no device
//! ([`crate::devices`] is empty, never a panic) and opening `cuda:0` is the
//! error "no CUDA device: …".

use std::sync::{Arc, OnceLock};

use tessera_core::backend::{Backend, BackendProvider};

use crate::CudaBackend;

/// The CUDA devices of this machine, listed once.
#[derive(Default)]
pub struct CudaProvider {
    names: OnceLock<Vec<String>>,
}

impl BackendProvider for CudaProvider {
    fn kinds(&self) -> Vec<&'static str> {
        vec!["cuda"]
    }

    fn devices(&self) -> Vec<String> {
        self.names
            .get_or_init(|| crate::devices().into_iter().map(|d| d.name).collect())
            .clone()
    }

    fn open(&self, name: &str) -> tessera_core::Result<Arc<dyn Backend>> {
        Ok(Arc::new(CudaBackend::new(name)?))
    }
}

/// Registers the CUDA devices with tessera's placement (idempotent).
pub fn register() {
    tessera_core::backend::register_provider(Arc::new(CudaProvider::default()));
}
