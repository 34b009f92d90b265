//! tessera's wgpu backend: the graph's ops as WGSL compute shaders, run
//! through [`wgpu`] on Vulkan, Metal or DX12 (and on Mesa's lavapipe, a
//! Vulkan device on the CPU, which is how it is tested on machines without
//! a GPU).
//!
//! - [`devices`] lists the adapters as `vulkan:0`, `metal:0`, `dx12:0` …
//!   (empty when there are none, never a panic); [`WgpuBackend::new`]
//!   opens one.
//! - Weights are uploaded once ([`Backend::load_weight`]); activations live
//!   in one arena per device ([`Backend::alloc`]) laid out by the
//!   scheduler; the KV cache layers of attention placed here are buffers of
//!   this device too. Reads and writes go through a staging buffer.
//! - [`Backend::compute`] records the whole segment into one command
//!   encoder and submits it once (module `exec`); pipelines are compiled
//!   on first use and cached ([`pipelines`]).
//! - [`register`] makes the devices placement targets: after it, a model's
//!   devices are the CPU's then `vulkan:0` …, and `-ot "exps=cpu,.=vulkan:0"`
//!   or `--main-device 1` put weights there.
//! - [`Backend::supports`] says which ops and weight types the shaders
//!   cover ([`LIMITS`]); everything else falls back to the CPU through
//!   the scheduler. A shape a shader cannot handle is an error at run time,
//!   never a wrong result.
//!
//! Numerics: weights are dequantized in the shader exactly as
//! `tessera-quant` does (bit-exact values), products accumulate in f32; the
//! CPU backend quantizes activations for its integer dot products (Q8_0,
//! Q8_1, Q8_K, f16 for F16 weights), which the shaders can do too
//! ([`GpuOptions::cpu_activations`]: each product is then the CPU's up to
//! summation order), so the two agree to the tolerances the op harness
//! names (`tests/harness.rs`), not bit for bit. The crate's `README.md`
//! lists what is supported, what falls back and how to run the tests.

pub mod buffer;
pub mod dequant;
pub mod device;
pub mod error;
mod exec;
pub mod pipelines;
pub mod provider;

use std::sync::{Arc, Mutex};

use tessera_core::backend::gpu::{self, Limits};
use tessera_core::backend::{
    Backend, DeviceBuffer, DeviceInfo, DeviceKind, HostSlice, SegmentRun, WeightData,
};
use tessera_core::graph::Op;
use tessera_core::kv::KvCache;
use tessera_gguf::GgmlType;

pub use buffer::{DeviceWeight, WgpuBuffer};
pub use device::{canonical_name, devices, DeviceDesc, Gpu, GpuOptions};
pub use error::{Result, WgpuError};
pub use exec::{MAX_HEAD_DIM, MAX_TOP_K};
pub use provider::{register, WgpuProvider};

/// What the shaders take: the GPU op set ([`gpu::OPS`]) and `copy`, top-k
/// and attention heads up to [`MAX_TOP_K`] and [`MAX_HEAD_DIM`], weights of
/// the types [`reads_type`] accepts.
pub const LIMITS: Limits = Limits {
    max_top_k: MAX_TOP_K,
    max_head_dim: MAX_HEAD_DIM,
    reads_type,
    more_ops: &["copy"],
};

/// One wgpu device as a tessera backend.
pub struct WgpuBackend {
    gpu: Arc<Gpu>,
    cache: pipelines::Cache,
    scratch: Mutex<exec::Scratch>,
    profile: Option<exec::Profile>,
}

impl Drop for WgpuBackend {
    fn drop(&mut self) {
        if let Some(t) = self.profile.as_ref().and_then(|p| p.report(&self.gpu.name)) {
            eprint!("{t}");
        }
    }
}

impl WgpuBackend {
    /// Opens the device `name` (`vulkan:0`, `Vulkan0`, `metal:0` …) with
    /// the default options.
    pub fn new(name: &str) -> Result<WgpuBackend> {
        Self::with_options(name, GpuOptions::default())
    }

    /// Opens the device `name` with `opts` (e.g. without subgroups, to test
    /// the fallback reductions).
    pub fn with_options(name: &str, opts: GpuOptions) -> Result<WgpuBackend> {
        let gpu = Arc::new(Gpu::open(name, opts)?);
        let scratch = Mutex::new(exec::Scratch::new(&gpu)?);
        Ok(WgpuBackend {
            gpu,
            cache: pipelines::Cache::default(),
            scratch,
            profile: exec::Profile::enabled().then(exec::Profile::default),
        })
    }

    /// The opened device.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Compiles every shader for every weight type now (instead of on first
    /// use): a shader the driver rejects shows up here.
    pub fn compile_all(&self) -> Result<()> {
        use pipelines::*;
        for k in [GET_ROWS, MATMUL, MATMUL_ID] {
            for t in dequant::TYPES {
                self.cache.get(&self.gpu, &k, Some(t))?;
            }
        }
        for k in [
            BINARY,
            UNARY,
            GLU,
            MUL_ROWS,
            SLICE_HEADS,
            CONCAT_HEADS,
            MOE_SUM,
            GATHER_COLS,
            ADD_ID,
            RMS_NORM,
            LAYER_NORM,
            SOFTMAX,
            ROPE,
            KV_STORE,
            ATTENTION,
            SELECT_ROWS,
            TOP_K,
            NORM_SUM,
            GROUP_MASK,
            ACT_ROUND,
        ] {
            self.cache.get(&self.gpu, &k, None)?;
        }
        Ok(())
    }

    /// Bandwidth guess for the planner (GB/s): wgpu does not report one.
    fn bandwidth(&self) -> f64 {
        match self.gpu.desc.device_type.as_str() {
            "DiscreteGpu" => 300.0,
            "IntegratedGpu" => 50.0,
            "Cpu" => 10.0,
            _ => 50.0,
        }
    }
}

/// Whether the shaders read weights of type `t` (matmul and embedding).
pub fn reads_type(t: GgmlType) -> bool {
    dequant::dq4(t).is_some()
}

impl Backend for WgpuBackend {
    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            name: self.gpu.name.clone(),
            kind: DeviceKind::Gpu,
            total_memory: self.gpu.desc.total_memory,
            // Free when the device was opened, less what tessera holds now.
            free_memory: self
                .gpu
                .desc
                .free_memory
                .saturating_sub(self.gpu.allocated()),
            bandwidth_gbs: self.bandwidth(),
        }
    }

    fn supports(&self, op: &Op, weight_types: &[GgmlType]) -> bool {
        gpu::supports(&LIMITS, op, weight_types)
    }

    fn load_weight(
        &self,
        name: &str,
        ggml_type: GgmlType,
        bytes: HostSlice,
    ) -> tessera_core::Result<WeightData> {
        let w = DeviceWeight::upload(&self.gpu, name, ggml_type, bytes.bytes())?;
        Ok(WeightData::Device(Box::new(w)))
    }

    fn alloc(&self, bytes: usize) -> tessera_core::Result<Box<dyn DeviceBuffer>> {
        Ok(Box::new(WgpuBuffer::new(
            self.gpu.clone(),
            "tessera buffer",
            bytes,
        )?))
    }

    fn compute(
        &self,
        run: &SegmentRun<'_>,
        work: &mut dyn DeviceBuffer,
        kv: &mut KvCache,
    ) -> tessera_core::Result<()> {
        let work = work.as_any().downcast_ref::<WgpuBuffer>().ok_or_else(|| {
            self.gpu
                .err("the work buffer is not on a wgpu device".into())
        })?;
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        Ok(exec::compute(
            &self.gpu,
            &self.cache,
            &mut scratch,
            run,
            work,
            kv,
            self.profile.as_ref(),
        )?)
    }
}
