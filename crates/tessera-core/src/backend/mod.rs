//! Backends: one object per device, chosen at run time (trait objects,
//! never type parameters).
//!
//! A backend reports what it is ([`DeviceInfo`]), says which ops it can run
//! ([`Backend::supports`]), makes weights available on its device
//! ([`Backend::load_weight`]), allocates buffers ([`Backend::alloc`]) and
//! computes a segment of a graph ([`Backend::compute`]). The scheduler
//! decides which nodes go to which backend; the session moves activations
//! between devices through [`DeviceBuffer::read`] / [`DeviceBuffer::write`].
//!
//! Backends built outside this crate (wgpu, CUDA: crates that depend on
//! this one) join through the provider registry: a [`BackendProvider`]
//! registered with [`register_provider`] lists its devices, which
//! [`crate::placement`] then accepts by name after the CPU devices, and
//! opens them when a model is loaded. What those GPU backends share (the
//! ops they cover, the checks of a node's shapes, their common errors)
//! is in [`gpu`].

pub mod cpu;
pub mod gpu;
pub mod host;

use std::any::Any;
use std::sync::{Arc, RwLock};

use tessera_gguf::GgmlType;

use crate::error::Result;
use crate::graph::{Graph, NodeId, Op, StepInputs};
use crate::kv::KvCache;
use crate::sched::BufferPlan;
use crate::weights::Weight;

pub use host::{HostBuffer, HostSlice};

/// What kind of device a backend drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// The CPU (or a subset of its cores).
    Cpu,
    /// A discrete or integrated GPU.
    Gpu,
}

/// A device as the planner and the user see it.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    /// `cpu`, `cpu:1`, `cuda:0`, `vulkan:0` ….
    pub name: String,
    /// CPU or GPU.
    pub kind: DeviceKind,
    /// Memory the device has, bytes.
    pub total_memory: u64,
    /// Memory free now, bytes.
    pub free_memory: u64,
    /// Estimated memory read bandwidth, GB/s (for the planner's speed model).
    pub bandwidth_gbs: f64,
}

/// Memory owned by one device: activations, KV cache.
pub trait DeviceBuffer: Send {
    /// Size in bytes.
    fn len(&self) -> usize;
    /// Whether the buffer is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copies `src` into the buffer at byte `offset`.
    fn write(&mut self, offset: usize, src: &[u8]) -> Result<()>;
    /// Copies bytes at `offset` into `dst`.
    fn read(&self, offset: usize, dst: &mut [u8]) -> Result<()>;
    /// The concrete buffer, for the backend that made it.
    fn as_any(&self) -> &dyn Any;
    /// The concrete buffer, mutably.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// A weight's data as a backend holds it.
pub enum WeightData {
    /// In host memory (for the CPU: the mapped file itself, zero copy).
    Host(HostSlice),
    /// In a device's memory, in the backend's own representation.
    Device(Box<dyn Any + Send + Sync>),
}

/// One segment of a graph to run on one device.
pub struct SegmentRun<'a> {
    /// The whole graph.
    pub graph: &'a Graph,
    /// The nodes to run, in order; all assigned to this backend.
    pub nodes: &'a [NodeId],
    /// Where each activation lives.
    pub plan: &'a BufferPlan,
    /// The model's weights (those read here are on this device).
    pub weights: &'a [Weight],
    /// The step's token ids, positions and output rows.
    pub step: &'a StepInputs<'a>,
}

/// A device that stores weights and computes graph segments.
pub trait Backend: Send + Sync {
    /// Name, kind, memory and bandwidth.
    fn info(&self) -> DeviceInfo;

    /// Host threads that drive this device's work (the CPU's pool size; 1
    /// for a GPU's submitting thread).
    fn threads(&self) -> usize {
        1
    }

    /// Whether this backend can run `op` when its weight inputs have types
    /// `weight_types` (empty for ops without weights).
    fn supports(&self, op: &Op, weight_types: &[GgmlType]) -> bool;

    /// Makes a weight whose bytes are in host memory available on this
    /// device. The CPU keeps the host slice; a GPU uploads it.
    fn load_weight(&self, name: &str, ggml_type: GgmlType, bytes: HostSlice) -> Result<WeightData>;

    /// A zeroed buffer of `bytes` bytes in this device's memory.
    fn alloc(&self, bytes: usize) -> Result<Box<dyn DeviceBuffer>>;

    /// Runs `run.nodes` with activations in `work` (laid out by
    /// `run.plan`) and the KV cache layers of this device in `kv`.
    fn compute(
        &self,
        run: &SegmentRun<'_>,
        work: &mut dyn DeviceBuffer,
        kv: &mut KvCache,
    ) -> Result<()>;

    /// Whether [`Backend::compute_multi_seq`] runs steps whose rows belong
    /// to several sequences. False unless the backend says otherwise:
    /// callers then run one step per sequence ([`crate::BatchDecoder`]).
    fn supports_multi_seq(&self) -> bool {
        false
    }

    /// As [`Backend::compute`], for a step whose row `t` is a token of the
    /// sequence whose cache is `kvs[seq[t]]`, at position `run.step.pos[t]`:
    /// attention stores each row's keys and values in that cache and
    /// attends it over that cache, as a one-token step of its sequence
    /// does (the rows of one sequence in order, at consecutive positions).
    fn compute_multi_seq(
        &self,
        run: &SegmentRun<'_>,
        work: &mut dyn DeviceBuffer,
        kvs: &mut [&mut KvCache],
        seq: &[usize],
    ) -> Result<()> {
        let _ = (run, work, kvs, seq);
        Err(crate::error::CoreError::Backend {
            device: self.info().name,
            reason: "steps over several sequences are not supported".into(),
        })
    }
}

/// Makes devices of kinds this crate does not build (`vulkan`, `metal`,
/// `cuda` …), for the crates that implement them.
pub trait BackendProvider: Send + Sync {
    /// The device kinds it answers to (the part of a name before `:`).
    fn kinds(&self) -> Vec<&'static str>;

    /// The names of its devices present on this machine (`vulkan:0` …), in
    /// order; empty when there are none. Called often: keep it cheap.
    fn devices(&self) -> Vec<String>;

    /// Opens device `name` (one of [`BackendProvider::devices`]).
    fn open(&self, name: &str) -> Result<Arc<dyn Backend>>;
}

static PROVIDERS: RwLock<Vec<Arc<dyn BackendProvider>>> = RwLock::new(Vec::new());

/// Adds `p` to the providers consulted for device names (once per kind:
/// a provider whose kinds are all registered already is not added again).
pub fn register_provider(p: Arc<dyn BackendProvider>) {
    let mut all = PROVIDERS.write().unwrap_or_else(|e| e.into_inner());
    let known: Vec<&str> = all.iter().flat_map(|q| q.kinds()).collect();
    if p.kinds().iter().all(|k| known.contains(k)) {
        return;
    }
    all.push(p);
}

/// The registered providers, in registration order.
pub fn providers() -> Vec<Arc<dyn BackendProvider>> {
    PROVIDERS.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The provider of device kind `kind` (`vulkan`), if one is registered.
pub fn provider_of(kind: &str) -> Option<Arc<dyn BackendProvider>> {
    providers().into_iter().find(|p| p.kinds().contains(&kind))
}

/// The names of every registered provider's devices, in order.
pub fn provided_devices() -> Vec<String> {
    providers().iter().flat_map(|p| p.devices()).collect()
}
