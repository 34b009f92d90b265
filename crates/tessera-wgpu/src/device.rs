//! Discovery and the opened device.
//!
//! [`devices`] lists the adapters wgpu finds on the Vulkan, Metal and DX12
//! backends, named `<backend>:<index>` (`vulkan:0`, `metal:0`, `dx12:1` …).
//! Within a backend, adapters are ordered discrete GPU, integrated GPU,
//! virtual GPU, other, then CPU (software rasterisers such as Mesa's
//! lavapipe), each group in wgpu's enumeration order, so `vulkan:0` is the
//! best GPU the machine has. A machine without any adapter (no driver, no
//! Vulkan loader) gets an empty list, never a panic.
//!
//! [`Gpu`] is one opened device: the wgpu device and queue, created with the
//! adapter's own limits (lavapipe, for one, binds at most 128 MiB of a
//! storage buffer), the optional features it offers that the shaders use
//! (`SHADER_F16`, `SUBGROUP`), the validation errors wgpu reported (they are
//! collected, not panicked on) and the staging buffer reads go through.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{Result, WgpuError};

/// One adapter as [`devices`] reports it.
#[derive(Clone, Debug)]
pub struct DeviceDesc {
    /// `vulkan:0`, `metal:0`, `dx12:0` ….
    pub name: String,
    /// The adapter's name (`llvmpipe (LLVM 15.0.6, 256 bits)`, `NVIDIA GeForce …`).
    pub adapter: String,
    /// Driver and driver info.
    pub driver: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `VirtualGpu`, `Cpu` or `Other`.
    pub device_type: String,
    /// Device-local memory, bytes (0 when the platform does not say).
    pub total_memory: u64,
    /// Memory free now by the driver's budget, else `total_memory`.
    pub free_memory: u64,
    /// Whether the adapter offers f16 arithmetic in shaders.
    pub shader_f16: bool,
    /// Whether the adapter offers subgroup operations.
    pub subgroups: bool,
    /// Largest storage-buffer binding, bytes.
    pub max_binding: u64,
    /// Largest buffer, bytes.
    pub max_buffer: u64,
}

/// The backends tessera looks for adapters on.
fn backends() -> wgpu::Backends {
    wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12
}

/// The process-wide wgpu instance (`None` when this build has no backend
/// for the platform).
fn instance() -> Option<&'static wgpu::Instance> {
    static INSTANCE: OnceLock<Option<wgpu::Instance>> = OnceLock::new();
    INSTANCE
        .get_or_init(|| {
            if (wgpu::Instance::enabled_backend_features() & backends()).is_empty() {
                return None;
            }
            let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
            desc.backends = backends();
            Some(wgpu::Instance::new(desc))
        })
        .as_ref()
}

/// The prefix of device names on backend `b`.
fn prefix(b: wgpu::Backend) -> Option<&'static str> {
    match b {
        wgpu::Backend::Vulkan => Some("vulkan"),
        wgpu::Backend::Metal => Some("metal"),
        wgpu::Backend::Dx12 => Some("dx12"),
        _ => None,
    }
}

/// Rank of a device type in the listing (lower first).
fn type_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// The adapters with their tessera names, in listing order.
fn adapters() -> Vec<(String, wgpu::Adapter)> {
    let Some(instance) = instance() else {
        return Vec::new();
    };
    let mut all: Vec<wgpu::Adapter> = pollster::block_on(instance.enumerate_adapters(backends()));
    all.retain(|a| prefix(a.get_info().backend).is_some());
    all.sort_by_key(|a| {
        let i = a.get_info();
        (i.backend as u8, type_rank(i.device_type))
    });
    let mut out = Vec::new();
    let mut counts: Vec<(wgpu::Backend, usize)> = Vec::new();
    for a in all {
        let b = a.get_info().backend;
        let n = match counts.iter_mut().find(|(k, _)| *k == b) {
            Some((_, n)) => {
                *n += 1;
                *n - 1
            }
            None => {
                counts.push((b, 1));
                0
            }
        };
        if let Some(p) = prefix(b) {
            out.push((format!("{p}:{n}"), a));
        }
    }
    out
}

/// The wgpu devices this machine has; empty when there are none.
pub fn devices() -> Vec<DeviceDesc> {
    adapters()
        .into_iter()
        .map(|(name, a)| describe(name, &a))
        .collect()
}

/// `name` in canonical form: `Vulkan0` → `vulkan:0`, `VULKAN:1` →
/// `vulkan:1`, `metal` → `metal:0`.
pub fn canonical_name(name: &str) -> Result<String> {
    let lower = name.trim().to_ascii_lowercase();
    let (kind, index) = match lower.split_once(':') {
        Some((k, i)) => (k.to_string(), i.to_string()),
        None => {
            let split = lower
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(lower.len());
            (lower[..split].to_string(), lower[split..].to_string())
        }
    };
    let index: usize = if index.is_empty() {
        0
    } else {
        index
            .parse()
            .map_err(|_| WgpuError::BadName(name.to_string()))?
    };
    match kind.as_str() {
        "vulkan" | "metal" | "dx12" => Ok(format!("{kind}:{index}")),
        _ => Err(WgpuError::BadName(name.to_string())),
    }
}

fn describe(name: String, a: &wgpu::Adapter) -> DeviceDesc {
    let info = a.get_info();
    let limits = a.limits();
    let features = a.features();
    let (total_memory, free_memory) = memory(a);
    DeviceDesc {
        name,
        adapter: info.name.clone(),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
        device_type: format!("{:?}", info.device_type),
        total_memory,
        free_memory,
        shader_f16: features.contains(wgpu::Features::SHADER_F16),
        subgroups: features.contains(wgpu::Features::SUBGROUP),
        max_binding: limits.max_storage_buffer_binding_size,
        max_buffer: limits.max_buffer_size,
    }
}

/// Device-local memory of `a` and how much of it is free, in bytes.
///
/// Vulkan: the device-local heaps (`vkGetPhysicalDeviceMemoryProperties`),
/// free from `VK_EXT_memory_budget` when the driver has it. A CPU adapter
/// (lavapipe) uses host memory, so it reports the host's. Elsewhere: 0
/// (unknown).
fn memory(a: &wgpu::Adapter) -> (u64, u64) {
    #[cfg(any(windows, all(unix, not(target_vendor = "apple"))))]
    if let Some(m) = vulkan_memory(a) {
        return m;
    }
    if a.get_info().device_type == wgpu::DeviceType::Cpu {
        return (
            tessera_core::numa::proc_meminfo("MemTotal"),
            tessera_core::numa::proc_meminfo("MemAvailable"),
        );
    }
    (0, 0)
}

#[cfg(any(windows, all(unix, not(target_vendor = "apple"))))]
fn vulkan_memory(a: &wgpu::Adapter) -> Option<(u64, u64)> {
    use ash::vk;
    // SAFETY: the hal adapter is only read (its instance and physical
    // device handles) while `a` keeps it alive; no Vulkan object is created
    // or destroyed.
    unsafe {
        let hal = a.as_hal::<wgpu::hal::api::Vulkan>()?;
        let inst = hal.shared_instance().raw_instance();
        let pd = hal.raw_physical_device();
        let has_budget = inst
            .enumerate_device_extension_properties(pd)
            .map(|exts| {
                exts.iter()
                    .any(|e| e.extension_name_as_c_str() == Ok(ash::ext::memory_budget::NAME))
            })
            .unwrap_or(false);
        let mut budget = vk::PhysicalDeviceMemoryBudgetPropertiesEXT::default();
        let mut props2 = vk::PhysicalDeviceMemoryProperties2::default();
        if has_budget {
            props2 = props2.push_next(&mut budget);
        }
        inst.get_physical_device_memory_properties2(pd, &mut props2);
        let props = props2.memory_properties;
        let n = (props.memory_heap_count as usize).min(props.memory_heaps.len());
        let (mut total, mut free) = (0u64, 0u64);
        for (i, h) in props.memory_heaps[..n].iter().enumerate() {
            if h.flags.contains(vk::MemoryHeapFlags::DEVICE_LOCAL) {
                total += h.size;
                free += if has_budget {
                    budget.heap_budget[i].saturating_sub(budget.heap_usage[i])
                } else {
                    h.size
                };
            }
        }
        (total > 0).then_some((total, free))
    }
}

/// One opened device and what the backend keeps beside it.
pub struct Gpu {
    /// `vulkan:0` ….
    pub name: String,
    /// What [`devices`] says about it.
    pub desc: DeviceDesc,
    /// The device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// The limits the device was created with (the adapter's own).
    pub limits: wgpu::Limits,
    /// Whether shaders may use subgroup operations.
    pub subgroups: bool,
    /// Whether shaders may use f16 arithmetic.
    pub shader_f16: bool,
    /// The largest subgroup the device may run (0: unknown).
    pub subgroup_max: u32,
    /// Validation and out-of-memory errors wgpu reported, not yet returned.
    errors: Arc<Mutex<Vec<String>>>,
    /// The buffer reads are copied through (grown on demand).
    staging: Mutex<Option<wgpu::Buffer>>,
    /// The options the device was opened with.
    pub opts: GpuOptions,
    /// Bytes of the weights and buffers allocated here and not yet freed.
    allocated: Arc<AtomicU64>,
}

/// Bytes counted in a device's allocations while this lives.
#[derive(Debug)]
pub struct Counted {
    counter: Arc<AtomicU64>,
    bytes: u64,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// How to open a device.
#[derive(Clone, Copy, Debug)]
pub struct GpuOptions {
    /// Use subgroup operations when the adapter offers them
    /// (`TESSERA_WGPU_NO_SUBGROUPS=1` turns them off).
    pub subgroups: bool,
    /// Request f16 shader arithmetic when the adapter offers it.
    pub shader_f16: bool,
    /// Bind weights in windows of at most this many bytes (below the
    /// device's limit; for tests of the windowed path).
    pub max_weight_binding: Option<u64>,
    /// Store weights in buffers of at most this many bytes (below the
    /// device's limit; for tests of the chunked path).
    pub max_weight_buffer: Option<u64>,
    /// Round the activations of a product as the CPU backend does before
    /// its dot products (f16, bf16, Q8_0/Q8_1 or Q8_K by weight type), so
    /// that one product gives the CPU's numbers up to f32 summation order
    /// (the op harness checks the shaders so); off by default
    /// (`TESSERA_WGPU_CPU_ACTIVATIONS=1` turns it on): products in f32,
    /// more exact and one dispatch fewer. Through a whole model it does not
    /// bring the logits closer to the CPU's: any other difference (the last
    /// bit of an `exp`, a norm summed in f32 instead of f64) flips some
    /// roundings and the differences are as large again.
    pub cpu_activations: bool,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            subgroups: std::env::var_os("TESSERA_WGPU_NO_SUBGROUPS").is_none_or(|v| v == "0"),
            shader_f16: true,
            max_weight_binding: None,
            max_weight_buffer: None,
            cpu_activations: std::env::var_os("TESSERA_WGPU_CPU_ACTIVATIONS")
                .is_some_and(|v| v != "0"),
        }
    }
}

impl Gpu {
    /// Opens the device `name` (`vulkan:0`, `Vulkan0` …).
    pub fn open(name: &str, opts: GpuOptions) -> Result<Gpu> {
        let name = canonical_name(name)?;
        let all = adapters();
        let available: Vec<String> = all.iter().map(|(n, _)| n.clone()).collect();
        let Some((_, adapter)) = all.into_iter().find(|(n, _)| *n == name) else {
            return Err(WgpuError::NoDevice { name, available });
        };
        let desc = describe(name.clone(), &adapter);
        let subgroup_max = adapter.get_info().subgroup_max_size;
        let offered = adapter.features();
        let mut features = wgpu::Features::empty();
        if opts.subgroups && offered.contains(wgpu::Features::SUBGROUP) {
            features |= wgpu::Features::SUBGROUP;
        }
        if opts.shader_f16 && offered.contains(wgpu::Features::SHADER_F16) {
            features |= wgpu::Features::SHADER_F16;
        }
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("tessera"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| WgpuError::RequestDevice {
            device: name.clone(),
            reason: e.to_string(),
        })?;
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut v = sink.lock().unwrap_or_else(|p| p.into_inner());
            if v.len() < 16 {
                v.push(e.to_string());
            }
        }));
        Ok(Gpu {
            name,
            desc,
            limits: device.limits(),
            subgroups: device.features().contains(wgpu::Features::SUBGROUP),
            shader_f16: device.features().contains(wgpu::Features::SHADER_F16),
            subgroup_max,
            device,
            queue,
            errors,
            staging: Mutex::new(None),
            opts,
            allocated: Arc::default(),
        })
    }

    /// The errors wgpu reported since the last call, as one error.
    pub fn check(&self, doing: &str) -> Result<()> {
        let mut v = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if v.is_empty() {
            return Ok(());
        }
        let all = std::mem::take(&mut *v).join("; ");
        Err(self.err(format!("{doing}: {all}")))
    }

    /// Counts `bytes` as allocated until the returned value is dropped.
    pub fn count(&self, bytes: u64) -> Counted {
        self.allocated.fetch_add(bytes, Ordering::Relaxed);
        Counted {
            counter: self.allocated.clone(),
            bytes,
        }
    }

    /// Bytes of weights and buffers allocated through this device now.
    pub fn allocated(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }

    /// A device error.
    pub fn err(&self, reason: String) -> WgpuError {
        WgpuError::Device {
            device: self.name.clone(),
            reason,
        }
    }

    /// Largest byte range one storage binding may cover here (capped at
    /// 1 GiB so that byte offsets inside a binding fit a `u32`).
    pub fn max_binding(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(1 << 30) & !3
    }

    /// Largest window of a weight one dispatch binds.
    pub fn max_weight_binding(&self) -> u64 {
        self.max_binding()
            .min(self.opts.max_weight_binding.unwrap_or(u64::MAX))
            & !3
    }

    /// Largest buffer a weight is stored in.
    pub fn max_weight_buffer(&self) -> u64 {
        self.limits
            .max_buffer_size
            .min(self.opts.max_weight_buffer.unwrap_or(u64::MAX))
            & !255
    }

    /// Rows a matmul workgroup computes at least: one per subgroup with
    /// subgroups (64 lanes over the largest subgroup), else 1.
    pub fn matmul_rows_per_wg(&self) -> usize {
        if self.subgroups && self.subgroup_max > 0 {
            (64 / self.subgroup_max as usize).max(1)
        } else {
            1
        }
    }

    /// Alignment of a storage binding's offset.
    pub fn binding_align(&self) -> u64 {
        u64::from(self.limits.min_storage_buffer_offset_alignment).max(4)
    }

    /// A new storage buffer of `bytes` (rounded up to 4, at least 4).
    pub fn storage_buffer(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
        let size = bytes.max(4).next_multiple_of(4);
        if size > self.limits.max_buffer_size {
            return Err(WgpuError::TooLarge {
                device: self.name.clone(),
                what: label.to_string(),
                bytes: size,
                limit: self.limits.max_buffer_size,
            });
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(self.err(format!("allocating {label} ({size} bytes): {e}")));
        }
        Ok(buf)
    }

    /// A storage buffer holding `bytes` (padded to a multiple of 4).
    pub fn upload(&self, label: &str, bytes: &[u8]) -> Result<wgpu::Buffer> {
        let size = (bytes.len() as u64).max(4).next_multiple_of(4);
        if size > self.limits.max_buffer_size {
            return Err(WgpuError::TooLarge {
                device: self.name.clone(),
                what: label.to_string(),
                bytes: size,
                limit: self.limits.max_buffer_size,
            });
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: true,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(self.err(format!("allocating {label} ({size} bytes): {e}")));
        }
        {
            let mut view = buf
                .get_mapped_range_mut(..)
                .map_err(|e| self.err(format!("mapping {label}: {e}")))?;
            // The padding stays zero (wgpu zeroes new buffers).
            view.slice(..bytes.len()).copy_from_slice(bytes);
        }
        buf.unmap();
        self.check(&format!("uploading {label}"))?;
        Ok(buf)
    }

    /// Writes `src` into `buf` at `offset` (both multiples of 4).
    pub fn write(&self, buf: &wgpu::Buffer, offset: u64, src: &[u8]) {
        if !src.is_empty() {
            self.queue.write_buffer(buf, offset, src);
        }
    }

    /// Copies `dst.len()` bytes of `buf` at `offset` into `dst`, waiting for
    /// the queue's work before (through the staging buffer).
    pub fn read(&self, buf: &wgpu::Buffer, offset: u64, dst: &mut [u8]) -> Result<()> {
        if dst.is_empty() {
            return Ok(());
        }
        let start = offset & !3;
        let end = (offset + dst.len() as u64).next_multiple_of(4);
        let len = end - start;
        let mut staging = self.staging.lock().unwrap_or_else(|p| p.into_inner());
        if staging.as_ref().is_none_or(|s| s.size() < len) {
            *staging = Some(self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("tessera staging"),
                size: len.next_power_of_two().max(1 << 16),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        let Some(st) = staging.as_ref() else {
            return Err(self.err("no staging buffer".into()));
        };
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("tessera read"),
            });
        enc.copy_buffer_to_buffer(buf, start, st, 0, len);
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        st.map_async(wgpu::MapMode::Read, 0..len, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| self.err(format!("waiting for a read: {e}")))?;
        let mapped = rx
            .recv()
            .map_err(|e| self.err(format!("read never completed: {e}")))?;
        mapped.map_err(|e| self.err(format!("mapping the staging buffer: {e}")))?;
        {
            let view = st
                .get_mapped_range(0..len)
                .map_err(|e| self.err(format!("reading the staging buffer: {e}")))?;
            let skip = (offset - start) as usize;
            dst.copy_from_slice(&view[skip..skip + dst.len()]);
        }
        st.unmap();
        self.check("reading a buffer")
    }

    /// Waits until the queue is idle.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| self.err(format!("waiting for the queue: {e}")))?;
        Ok(())
    }
}
