//! tessera's CUDA backend: the graph's ops as CUDA C kernels compiled by
//! NVRTC at run time, driven through [`cudarc`] with the driver and NVRTC
//! loaded dynamically, so the crate builds (and its provider answers "no
//! CUDA device") on machines without any CUDA install.
//!
//! **Status: compiles, and CI compiles every kernel through NVRTC and
//! assembles it with ptxas for sm_80 and sm_90; it has never run on a
//! GPU.** The crate's `README.md` says what is there and what is not.
//!
//! - [`devices`] lists `cuda:0`, `cuda:1` … (name, memory, compute
//!   capability; empty without a driver), [`probe`] says why there are
//!   none; [`CudaBackend::new`] opens one.
//! - Weights are uploaded once through pinned staging buffers
//!   ([`buffer::Staging`]); activations live in one arena per device laid
//!   out by the scheduler; the KV cache layers of attention placed here are
//!   buffers of this device.
//! - [`Backend::compute`] queues the segment's kernels on the device's
//!   stream and waits once at the end (module `exec`); modules are compiled
//!   for the device's architecture at first use and the PTX cached on disk
//!   ([`kernels`]).
//! - [`register`] makes the devices placement targets.
//! - [`Backend::supports`] says which ops and weight types the kernels
//!   cover; everything else falls back to the CPU through the scheduler.

pub mod buffer;
pub mod device;
pub mod error;
mod exec;
pub mod kernels;
pub mod provider;

use std::sync::{Arc, Mutex};

use tessera_core::backend::gpu::{self, Limits};
use tessera_core::backend::{
    Backend, DeviceBuffer, DeviceInfo, DeviceKind, HostSlice, SegmentRun, WeightData,
};
use tessera_core::graph::Op;
use tessera_core::kv::KvCache;
use tessera_gguf::GgmlType;

pub use buffer::{CudaBuffer, DeviceWeight};
pub use device::{devices, driver_present, parse_name, probe, DeviceDesc, Gpu};
pub use error::{CudaError, Result};
pub use exec::{type_suffix, MAX_HEAD_DIM, MAX_TOP_K};
pub use provider::{register, CudaProvider};

/// What the kernels take: the GPU op set ([`gpu::OPS`]), top-k and
/// attention heads up to [`MAX_TOP_K`] and [`MAX_HEAD_DIM`], weights of the
/// types [`reads_type`] accepts.
pub const LIMITS: Limits = Limits {
    max_top_k: MAX_TOP_K,
    max_head_dim: MAX_HEAD_DIM,
    reads_type,
    more_ops: &[],
};

/// One CUDA device as a tessera backend.
pub struct CudaBackend {
    scratch: Mutex<exec::Scratch>,
    staging: Mutex<buffer::Staging>,
    gpu: Arc<Gpu>,
}

impl CudaBackend {
    /// Opens the device `name` (`cuda:0`, `CUDA0` …).
    pub fn new(name: &str) -> Result<CudaBackend> {
        let gpu = Arc::new(Gpu::open(name)?);
        Ok(CudaBackend {
            scratch: Mutex::new(exec::Scratch::default()),
            staging: Mutex::new(buffer::Staging::default()),
            gpu,
        })
    }

    /// The opened device.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }
}

/// Whether the kernels read weights of type `t` (products and embeddings).
pub fn reads_type(t: GgmlType) -> bool {
    type_suffix(t).is_some()
}

impl Backend for CudaBackend {
    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            name: self.gpu.name.clone(),
            kind: DeviceKind::Gpu,
            total_memory: self.gpu.desc.total_memory,
            free_memory: self.gpu.free_memory(),
            bandwidth_gbs: self.gpu.desc.bandwidth_gbs,
        }
    }

    fn supports(&self, op: &Op, weight_types: &[GgmlType]) -> bool {
        supports(op, weight_types)
    }

    fn load_weight(
        &self,
        name: &str,
        ggml_type: GgmlType,
        bytes: HostSlice,
    ) -> tessera_core::Result<WeightData> {
        let mut staging = self.staging.lock().unwrap_or_else(|e| e.into_inner());
        let w = DeviceWeight::upload(
            self.gpu.clone(),
            &mut staging,
            name,
            ggml_type,
            bytes.bytes(),
        )?;
        Ok(WeightData::Device(Box::new(w)))
    }

    fn alloc(&self, bytes: usize) -> tessera_core::Result<Box<dyn DeviceBuffer>> {
        Ok(Box::new(CudaBuffer::new(self.gpu.clone(), bytes)?))
    }

    fn compute(
        &self,
        run: &SegmentRun<'_>,
        work: &mut dyn DeviceBuffer,
        kv: &mut KvCache,
    ) -> tessera_core::Result<()> {
        let work = work
            .as_any()
            .downcast_ref::<CudaBuffer>()
            .ok_or_else(|| CudaError::Driver {
                device: self.gpu.name.clone(),
                what: "compute".into(),
                reason: "the work buffer is not on a CUDA device".into(),
            })?;
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        Ok(exec::compute(&self.gpu, &mut scratch, run, work, kv)?)
    }
}

/// What [`CudaBackend::supports`] answers (a free function so that it can
/// be checked without a device).
pub fn supports(op: &Op, weight_types: &[GgmlType]) -> bool {
    gpu::supports(&LIMITS, op, weight_types)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::graph::{AttnCfg, TensorId};

    #[test]
    fn supports_the_decode_path_and_refuses_the_rest() {
        let (w, x) = (TensorId(0), TensorId(1));
        let mm = Op::MatMul { w, x };
        for t in [
            GgmlType::Q4_0,
            GgmlType::Q4_K,
            GgmlType::Q6_K,
            GgmlType::BF16,
        ] {
            assert!(supports(&mm, &[t]), "{t:?}");
        }
        assert!(!supports(&mm, &[GgmlType::IQ2_XXS]));
        assert!(!supports(&Op::Copy { x }, &[]));
        assert!(supports(&Op::TopK { x, k: 8 }, &[]));
        assert!(!supports(&Op::TopK { x, k: 65 }, &[]));
        let cfg = AttnCfg {
            n_head: 8,
            n_head_kv: 2,
            head_dim: 2048,
            head_dim_v: 64,
            scale: 1.0,
            softcap: 0.0,
            window: None,
            sinks: None,
        };
        let att = Op::Attention {
            q: x,
            k: x,
            v: x,
            layer: 0,
            cfg,
        };
        assert!(!supports(&att, &[]));
    }
}
