//! Discovery and the opened device.
//!
//! [`devices`] lists the CUDA devices as `cuda:0`, `cuda:1` … in the
//! driver's order, with their name, memory and compute capability. The
//! driver library (libcuda) is loaded at run time; when it is absent, or
//! `cuInit` fails (no GPU, no kernel module), the list is empty and
//! [`probe`] says why — never a panic (cudarc panics when asked to use a
//! library it cannot load, so [`driver_present`] is checked first).
//!
//! [`Gpu`] is one opened device: its primary context, one stream that every
//! copy and kernel of tessera goes through (so they run in order without
//! events), the compiled kernel modules and a count of the memory tessera
//! holds there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::sys::CUdevice_attribute as Attr;
use cudarc::driver::{result as drv, CudaContext, CudaFunction, CudaModule, CudaStream};

use crate::error::{CudaError, Result};
use crate::kernels::{self, Source};

/// One CUDA device as [`devices`] reports it.
#[derive(Clone, Debug)]
pub struct DeviceDesc {
    /// `cuda:0`, `cuda:1` ….
    pub name: String,
    /// The ordinal of the driver.
    pub ordinal: usize,
    /// The GPU's name (`NVIDIA H100 80GB HBM3` …).
    pub gpu: String,
    /// Device memory, bytes.
    pub total_memory: u64,
    /// Compute capability (major, minor).
    pub compute_capability: (i32, i32),
    /// Peak memory bandwidth from the memory clock and bus width, GB/s
    /// (0 when the driver does not say).
    pub bandwidth_gbs: f64,
}

/// Whether the CUDA driver library can be loaded.
pub fn driver_present() -> bool {
    // SAFETY: only tries to open the library by its candidate names.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

fn drv_err(device: &str, what: &str, e: drv::DriverError) -> CudaError {
    CudaError::Driver {
        device: device.to_string(),
        what: what.to_string(),
        reason: format!("{e:?}"),
    }
}

/// The devices, or why there are none.
pub fn probe() -> Result<Vec<DeviceDesc>> {
    if !driver_present() {
        return Err(CudaError::NoDevice(
            "the CUDA driver library (libcuda) cannot be loaded".into(),
        ));
    }
    drv::init().map_err(|e| CudaError::NoDevice(format!("cuInit failed: {e:?}")))?;
    let n = drv::device::get_count()
        .map_err(|e| CudaError::NoDevice(format!("cuDeviceGetCount failed: {e:?}")))?;
    let mut out = Vec::new();
    for ordinal in 0..n.max(0) as usize {
        let name = format!("cuda:{ordinal}");
        let dev = drv::device::get(ordinal as i32).map_err(|e| drv_err(&name, "cuDeviceGet", e))?;
        let gpu = drv::device::get_name(dev).map_err(|e| drv_err(&name, "cuDeviceGetName", e))?;
        // SAFETY: `dev` is a valid device handle from cuDeviceGet.
        let attr = |a: Attr| unsafe { drv::device::get_attribute(dev, a) }.unwrap_or(0);
        // SAFETY: as above.
        let total = unsafe { drv::device::total_mem(dev) }
            .map_err(|e| drv_err(&name, "cuDeviceTotalMem", e))?;
        let cc = (
            attr(Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
            attr(Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
        );
        // Double data rate: 2 transfers a clock of `bus` bits.
        let clock_khz = attr(Attr::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE) as f64;
        let bus_bits = attr(Attr::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH) as f64;
        out.push(DeviceDesc {
            name,
            ordinal,
            gpu,
            total_memory: total as u64,
            compute_capability: cc,
            bandwidth_gbs: 2.0 * clock_khz * 1e3 * bus_bits / 8.0 / 1e9,
        });
    }
    if out.is_empty() {
        return Err(CudaError::NoDevice("the driver reports 0 devices".into()));
    }
    Ok(out)
}

/// The devices of this machine; empty when there are none (or no driver).
pub fn devices() -> Vec<DeviceDesc> {
    probe().unwrap_or_default()
}

/// The ordinal of `cuda:N` (also `CUDA0`, llama.cpp's spelling).
pub fn parse_name(name: &str) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    let rest = lower.strip_prefix("cuda")?;
    rest.strip_prefix(':').unwrap_or(rest).parse().ok()
}

/// An opened device.
pub struct Gpu {
    /// `cuda:N`.
    pub name: String,
    /// What discovery said about it.
    pub desc: DeviceDesc,
    pub(crate) ctx: Arc<CudaContext>,
    pub(crate) stream: Arc<CudaStream>,
    /// `compute_XY`: what NVRTC compiles for.
    pub arch: String,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<String, CudaFunction>>,
    allocated: AtomicU64,
}

impl Gpu {
    /// Opens `name` (`cuda:0`, `CUDA0` …).
    pub fn open(name: &str) -> Result<Gpu> {
        let all = probe()?;
        let bad = || CudaError::BadName {
            name: name.to_string(),
            available: all.iter().map(|d| d.name.clone()).collect(),
        };
        let ordinal = parse_name(name).ok_or_else(bad)?;
        let desc = all
            .iter()
            .find(|d| d.ordinal == ordinal)
            .cloned()
            .ok_or_else(bad)?;
        let name = desc.name.clone();
        let ctx = CudaContext::new(ordinal).map_err(|e| drv_err(&name, "creating a context", e))?;
        // One stream orders all of tessera's work on the device, so the
        // per-buffer events cudarc records by default are not needed.
        // SAFETY: no buffer of this context exists yet, and every later
        // one is used on `stream` only.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx
            .new_stream()
            .map_err(|e| drv_err(&name, "creating a stream", e))?;
        let (ma, mi) = desc.compute_capability;
        Ok(Gpu {
            name,
            arch: format!("compute_{ma}{mi}"),
            desc,
            ctx,
            stream,
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
            allocated: AtomicU64::new(0),
        })
    }

    /// A driver error on this device.
    pub(crate) fn err(&self, what: &str, e: drv::DriverError) -> CudaError {
        drv_err(&self.name, what, e)
    }

    /// Memory free on the device now, bytes.
    pub fn free_memory(&self) -> u64 {
        self.ctx.mem_get_info().map_or(0, |(free, _)| free as u64)
    }

    /// Bytes tessera holds on the device.
    pub fn allocated(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }

    pub(crate) fn count(&self, bytes: u64, add: bool) {
        if add {
            self.allocated.fetch_add(bytes, Ordering::Relaxed);
        } else {
            self.allocated.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// Waits for everything queued on the device.
    pub fn sync(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| self.err("waiting for the stream", e))
    }

    /// Kernel `func` of module `src`, compiled (or read from the disk
    /// cache) and loaded at first use.
    pub fn function(&self, src: &Source, func: &str) -> Result<CudaFunction> {
        let key = format!("{}:{func}", src.name);
        let mut fns = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = fns.get(&key) {
            return Ok(f.clone());
        }
        let module = self.module(src)?;
        let f = module
            .load_function(func)
            .map_err(|e| self.err(&format!("loading kernel {func} of {}", src.name), e))?;
        fns.insert(key, f.clone());
        Ok(f)
    }

    fn module(&self, src: &Source) -> Result<Arc<CudaModule>> {
        let mut mods = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = mods.get(src.name) {
            return Ok(m.clone());
        }
        let ptx = kernels::ptx_cached(src, &self.arch)?;
        let m = self
            .ctx
            .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
            .map_err(|e| self.err(&format!("loading the PTX of {}", src.name), e))?;
        mods.insert(src.name, m.clone());
        Ok(m)
    }

    /// Compiles and loads every module now (instead of at first use).
    pub fn load_all(&self) -> Result<()> {
        for s in kernels::SOURCES {
            self.module(s)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_name("cuda:0"), Some(0));
        assert_eq!(parse_name("CUDA1"), Some(1));
        assert_eq!(parse_name("cuda:x"), None);
        assert_eq!(parse_name("vulkan:0"), None);
    }
}
